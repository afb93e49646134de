"""DICOM read and written as bytes: the one layer under discovery and de-identification.

Nothing here imports the stages, :mod:`orbitct_app.discover` or :mod:`orbitct_app.deid`.
"""
