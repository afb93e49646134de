"""orbitct-app: turn clinical CT DICOM exams into a de-identified, analysis-ready NIfTI dataset.

The library is quiet: its loggers carry only a ``NullHandler`` and handlers are attached by the
command line (``orbitct_app.cli``) or by the caller.
"""

import logging

__version__ = "0.1.0"
__all__ = ["__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
