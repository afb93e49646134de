"""DICOM read and written as bytes: the one layer under discovery and de-identification.

:mod:`~orbitct_app.dicomio.parse` reads elements from a Part 10 file's bytes and holds the tag
constants (the undefined length, items and delimiters, pixel data); :mod:`~orbitct_app.dicomio.structure`
walks a whole file and bounds it (lengths, nesting, inflation); :mod:`~orbitct_app.dicomio.header`
gives a header's values as pydicom does, discovery's fast path; :mod:`~orbitct_app.dicomio.pixels`
reads the pixel data element's header and extent; :mod:`~orbitct_app.dicomio.write` writes Part 10
files (the one encoder of element headers); :mod:`~orbitct_app.dicomio.chunks` copies byte ranges
in bounded chunks. Nothing here imports the stages, :mod:`orbitct_app.discover` or
:mod:`orbitct_app.deid`.
"""
