"""The anonymize stage: decide per series, de-identify each kept file, audit what was written.

The stage is :mod:`orbitct_app.anonymize.stage`; the de-identification itself is :mod:`orbitct_app.deid`.
"""
