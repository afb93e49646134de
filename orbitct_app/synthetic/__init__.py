"""Synthetic head CT exams written as DICOM, with their ground truth.

The generator evaluates an analytic head phantom at the exact world position of every pixel, so
the geometry of each written series is correct by construction. It returns what it wrote
(:class:`ExamTruth`): the phantom with its dense markers and uniform inserts, per-series slice
positions and orientations, and the identifying values it planted in the headers so that the
de-identification tests can search the output for them.

All coordinates are DICOM patient coordinates, LPS, in millimetres: x grows towards the
patient's Left, y towards Posterior, z towards Superior. RAS is ``(-x, -y, z)``.

Gantry tilt convention: an axial series with tilt ``t`` degrees has the row direction
``(1, 0, 0)`` and the column direction ``(0, cos t, -sin t)``; the slice normal (row x column)
is ``(0, sin t, cos t)``. A positive tilt therefore makes the image plane run inferiorly as it
goes posteriorly (the usual orbitomeatal head tilt); both signs are supported. Slices are
stepped along the table axis z, not along the normal, so a tilted series is a sheared stack.

Enhanced CT: with ``write_exam(..., enhanced=True)`` (or ``SeriesSpec(enhanced=True)``) an axial
or coronal series is written as one Enhanced CT Image Storage file (PS3.3 A.38) whose frames are
exactly the images of the classic series written with the same seed and spec (same pixels, same
ImagePositionPatient, same rescale, frame ``f`` = InstanceNumber ``f``). Geometry and rescale
live in the functional groups: PlanePosition, FrameContent (and PixelValueTransformation with
``per_slice_rescale``) per frame; PixelMeasures, PlaneOrientation, PixelValueTransformation,
CTImageFrameType, FrameAnatomy, FrameVOILUT, IrradiationEventIdentification (and the CT
acquisition macros for an ORIGINAL series) shared. The dimension index is (StackID,
InStackPositionNumber), both in FrameContent; InStackPositionNumber is 1 at the lowest z (y for
a coronal series) whatever the frame order. Scouts and summary captures stay classic. An
enhanced series has its own Series and SOP Instance UIDs; study and frame of reference are the
classic twin's.

Legacy Converted Enhanced CT: ``SeriesSpec(enhanced=True, legacy_converted=True)`` writes the
same frames as a Legacy Converted Enhanced CT Image Storage object (PS3.3 A.70), as a converter
makes from classic files: ImageType as the classic files have it, no CT-specific macros; each
frame's ConversionSourceAttributesSequence names the classic twin's SOP Instance UID, and the
attributes without a functional group of their own go to the Unassigned Shared Converted
Attributes (kVp, kernel, tilt ...) and Unassigned Per-frame Converted Attributes (acquisition
and content time, slice location, InstanceNumber) sequences, where identifiers are planted too.

The package's modules, each building on those before it: ``helpers`` (LPS/RAS, seeded digests and
UIDs, DS strings), ``phantom`` (the phantom), ``burned_text`` (text in the pixels or an overlay
plane), ``specs`` (what a series should look like), ``truth`` (what was written), ``planted``
(the identifiers planted), ``geometry`` (where the images lie), ``headers`` (the attributes of
every file, and writing one), ``enhanced`` (the multi-frame header), ``series`` (one series:
its pixels, its classic files or its one Enhanced CT file) and ``exam`` (:func:`write_exam`,
:func:`write_sample_dataset`). Everything public is imported from here.

Examples
--------
>>> from pathlib import Path
>>> truth = write_exam(Path("/tmp/synth"), "exam_001", seed=1)  # doctest: +SKIP
>>> [m.center_lps for m in truth.phantom.markers][:1]  # doctest: +SKIP
[(-34.0, -30.0, 97.0)]
"""

from orbitct_app.synthetic.burned_text import BurnedText, TextPosition
from orbitct_app.synthetic.exam import write_exam, write_sample_dataset
from orbitct_app.synthetic.helpers import Vec3, lps_to_ras
from orbitct_app.synthetic.phantom import Phantom, Sphere
from orbitct_app.synthetic.planted import BASIC_ATTRIBUTES, ORBITCT_ATTRIBUTES, PRIVATE_CREATOR
from orbitct_app.synthetic.specs import (
    HU_MAX,
    HU_MIN,
    MANUFACTURER,
    SUPPORTED_TRANSFER_SYNTAXES,
    SeriesKind,
    SeriesSpec,
    default_series,
)
from orbitct_app.synthetic.truth import ExamTruth, ExpectedSkip, PlantedValue, SeriesTruth

__all__ = [
    # writing exams
    "write_exam",
    "write_sample_dataset",
    "default_series",
    # what to write
    "SeriesSpec",
    "SeriesKind",
    "BurnedText",
    "TextPosition",
    "Phantom",
    "Sphere",
    # what was written
    "ExamTruth",
    "SeriesTruth",
    "PlantedValue",
    "ExpectedSkip",
    # constants
    "BASIC_ATTRIBUTES",
    "ORBITCT_ATTRIBUTES",
    "PRIVATE_CREATOR",
    "MANUFACTURER",
    "HU_MIN",
    "HU_MAX",
    "SUPPORTED_TRANSFER_SYNTAXES",
    # coordinates
    "Vec3",
    "lps_to_ras",
]
