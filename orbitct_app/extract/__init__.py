"""The extract stage and its steps: select, build the volume, mask, resample, write NIfTI and QC.

The stage (:mod:`orbitct_app.extract.stage`) runs them in this order for each series of an exam.
"""
