"""Run options: one frozen record, with every default defined here and nowhere else."""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from pathlib import Path
from typing import Literal

from orbitct_app.errors import UsageError
from orbitct_app.paths import find_exams
from orbitct_app.threads import usable_cores

DEFAULT_MIN_SLICES = 10
DEFAULT_PROFILE = "orbitct"
PROFILES = ("orbitct", "basic")
RETAIN_OPTIONS = ("patient-characteristics", "device-identity", "institution-identity", "safe-private")
"""The basic profile's retain options (``--retain``), as named in :class:`deid.RetainOption`."""
PIXEL_TEXT_MODES = ("off", "flag", "drop")
"""``--pixel-text``: skip the check for text burned into pixels, keep and report, or drop."""
DEFAULT_PIXEL_TEXT = "flag"
DEFAULT_SPACING_MM = 0.5
DEFAULT_SIZE = 512
SIZE_FIT: Literal["fit"] = "fit"
"""``--size fit``: the smallest multiple of :data:`FIT_MULTIPLE` voxels that holds the whole body."""
FIT_MULTIPLE = 32
MAX_GAP_SPACINGS = 3.0
"""Without ``--max-gap``, a slice gap wider than this many median slice spacings splits a stack."""
DEFAULT_BODY_THRESHOLD_HU = -200.0
CONTRAST_CHOICES = ("any", "without", "with")
"""``--contrast``: keep every series, only series without contrast evidence, or only with it."""
KERNEL_CHOICES = ("any", "soft", "sharp")
"""``--kernel``: keep every series, only soft-kernel series, or only sharp-kernel series."""
DEFAULT_CONTRAST = "any"
DEFAULT_KERNEL = "any"
LOG_NAME = "orbitct-app.log"


class Stage(str, enum.Enum):
    """What a run does: de-identify, convert, both in that order, or only report.

    ``report`` is the group level of the BIDS-App model: after participant-level runs (for
    example SLURM array tasks over disjoint exams) it rebuilds the top-level tables from every
    exam's record and lists the exams that failed or have no record.
    """

    ANONYMIZE = "anonymize"
    EXTRACT = "extract"
    ALL = "all"
    REPORT = "report"

    @property
    def anonymizes(self) -> bool:
        return self in (Stage.ANONYMIZE, Stage.ALL)

    @property
    def extracts(self) -> bool:
        return self in (Stage.EXTRACT, Stage.ALL)


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything a run needs to know; built by the command line or by a caller of the library.

    Paths are made absolute on construction. Call :meth:`validate` before running.
    """

    input_dir: Path
    output_dir: Path
    stage: Stage = Stage.ALL
    participant_labels: tuple[str, ...] = ()
    min_slices: int = DEFAULT_MIN_SLICES
    profile: str = DEFAULT_PROFILE
    in_place: bool = False
    thickness: tuple[float, float] | None = None
    spacing: float = DEFAULT_SPACING_MM
    size: int | Literal["fit"] = DEFAULT_SIZE
    """In-plane output size N (N x N), or :data:`SIZE_FIT` to hold the whole body mask."""
    max_gap: float | None = None
    """Split a stack where neighbouring slices are more than this many mm apart; None:
    :data:`MAX_GAP_SPACINGS` times the stack's median slice spacing."""
    body_threshold: float = DEFAULT_BODY_THRESHOLD_HU
    contrast: str = DEFAULT_CONTRAST
    """extract: ``any``, ``without`` (no contrast evidence) or ``with`` (:data:`CONTRAST_CHOICES`)."""
    kernel: str = DEFAULT_KERNEL
    """extract: ``any``, ``soft`` or ``sharp`` reconstruction kernels (:data:`KERNEL_CHOICES`)."""
    one_per_exam: bool = False
    """extract: convert one series per exam, the best by the ranking of :mod:`orbitct_app.extract.selection`."""
    n_procs: int = dataclasses.field(default_factory=usable_cores)
    log_path: Path | None = None
    force: bool = False
    deid_key: Path | None = None
    """File holding the secret key of the basic profile (created when absent)."""
    retain: tuple[str, ...] = ()
    """Retain options of the basic profile (:data:`RETAIN_OPTIONS`)."""
    shift_dates: bool = False
    """Basic profile: shift dates per patient instead of removing them (``--dates shift``)."""
    keep_burned_in: bool = False
    """Basic profile: keep series with burned-in annotation and secondary captures."""
    map_dir: Path | None = None
    """Where the original -> new UID and PatientID mapping files go (never inside OUTPUT_DIR)."""
    phi_list: Path | None = None
    """Identifying strings (one per line) the audit searches the output for."""
    dry_run: bool = False
    """anonymize: list what each rule would do, write no DICOM; extract: decide from the headers
    and write the reports, no NIfTI."""
    audit_only: bool = False
    """anonymize: only audit an earlier output."""
    pixel_text: str = DEFAULT_PIXEL_TEXT
    """anonymize: check kept series for text burned into their pixels (:data:`PIXEL_TEXT_MODES`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_dir", Path(self.input_dir).expanduser().absolute())
        object.__setattr__(self, "output_dir", Path(self.output_dir).expanduser().absolute())
        object.__setattr__(self, "stage", Stage(self.stage))
        object.__setattr__(self, "participant_labels", tuple(self.participant_labels))
        object.__setattr__(self, "retain", tuple(sorted(set(self.retain))))
        for name in ("deid_key", "map_dir", "phi_list"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value).expanduser().absolute())
        if self.log_path is None:
            object.__setattr__(self, "log_path", self.output_dir / "logs" / LOG_NAME)
        else:
            object.__setattr__(self, "log_path", Path(self.log_path).expanduser().absolute())

    # --- where things go -------------------------------------------------------------------
    @property
    def anonymized_dir(self) -> Path:
        """Root of the de-identified DICOM tree (INPUT_DIR itself with ``--in-place``)."""
        return self.input_dir if self.in_place else self.output_dir / "anonymized"

    @property
    def extract_source(self) -> Path:
        """Where ``extract`` reads exams: the anonymized tree for ``all``, else INPUT_DIR."""
        return self.anonymized_dir if self.stage is Stage.ALL else self.input_dir

    @property
    def nifti_dir(self) -> Path:
        return self.output_dir / "nifti"

    @property
    def state_dir(self) -> Path:
        """Per-exam report fragments and completion records (merged into the top-level CSVs)."""
        return self.output_dir / ".orbitct"

    OUTPUT_FOLDERS = ("anonymized", "nifti", "logs", ".orbitct")
    """The folders the app writes under OUTPUT_DIR."""

    def write_targets(self) -> list[tuple[str, Path]]:
        """Every place this run writes, named as the user knows it: OUTPUT_DIR, its folders and
        their exam folders as they exist now, the log, the mapping folder and the key."""
        targets: list[tuple[str, Path]] = [("OUTPUT_DIR", self.output_dir)]
        for name in self.OUTPUT_FOLDERS:
            folder = self.output_dir / name
            targets.append((f"OUTPUT_DIR/{name}", folder))
            if name in ("anonymized", "nifti") and folder.is_dir() and not folder.is_symlink():
                try:
                    children = sorted(folder.iterdir())
                except OSError:
                    children = []
                targets.extend((f"OUTPUT_DIR/{name}/{child.name}", child) for child in children)
        assert self.log_path is not None
        targets.append(("--log", self.log_path))
        for flag, value in (("--map-dir", self.map_dir), ("--deid-key", self.deid_key)):
            if value is not None:
                targets.append((flag, value))
        return targets

    def _validate_write_targets(self, inp: Path) -> None:
        """Nothing is written inside INPUT_DIR (unless --in-place) and nothing through a link
        the app did not make: every write target is resolved (links followed) and refused when
        it lands inside INPUT_DIR; OUTPUT_DIR's own folders and the log must not be links."""
        for label, path in self.write_targets():
            where = path.resolve()
            if where == inp or where.is_relative_to(inp):
                via = f" (through a link, at {where})" if where != path.absolute() else ""
                raise UsageError(f"{label} must not be inside INPUT_DIR: {path}{via}; orbitct-app never writes "
                                 "there (--in-place is the only way to change INPUT_DIR)")
            own = label == "--log" or (label.startswith("OUTPUT_DIR/") and label.count("/") == 1)
            if own and path.is_symlink():
                raise UsageError(f"{label} is a symbolic link ({path}): orbitct-app never writes through "
                                 "links; remove it or give another path")

    def validate(self) -> None:
        """Check the paths and values; raise :class:`UsageError` with a one-line reason."""
        inp, out = self.input_dir.resolve(), self.output_dir.resolve()
        if not self.input_dir.exists():
            raise UsageError(f"INPUT_DIR does not exist: {self.input_dir}")
        if not self.input_dir.is_dir():
            raise UsageError(f"INPUT_DIR is not a folder: {self.input_dir}")
        if out == inp:
            raise UsageError("OUTPUT_DIR must not be INPUT_DIR")
        if out.is_relative_to(inp):
            raise UsageError(f"OUTPUT_DIR must not be inside INPUT_DIR: {self.output_dir}")
        if inp.is_relative_to(out):
            raise UsageError(f"INPUT_DIR must not be inside OUTPUT_DIR: {self.input_dir}")
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise UsageError(f"OUTPUT_DIR is not a folder: {self.output_dir}")
        self._validate_write_targets(inp)
        existing = next(p for p in (self.output_dir, *self.output_dir.parents) if p.exists())
        if not existing.is_dir():
            raise UsageError(f"OUTPUT_DIR cannot be made: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"OUTPUT_DIR is not writable: {existing} (permission denied)")
        if self.in_place and not os.access(self.input_dir, os.W_OK | os.X_OK):
            raise UsageError(f"--in-place needs a writable INPUT_DIR: {self.input_dir}")
        if self.profile not in PROFILES:
            raise UsageError(f"unknown profile {self.profile!r}; choose from {', '.join(PROFILES)}")
        if self.min_slices < 0:
            raise UsageError("--min-slices must be >= 0")
        if self.thickness is not None:
            lo, hi = self.thickness
            if not (0 <= lo <= hi):
                raise UsageError("--thickness needs 0 <= MIN <= MAX")
        if not self.spacing > 0:
            raise UsageError("--spacing must be > 0")
        if self.size != SIZE_FIT and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1):
            raise UsageError(f"--size must be a whole number >= 1 or {SIZE_FIT!r}")
        if self.max_gap is not None and not (0 < self.max_gap < math.inf):
            raise UsageError("--max-gap must be a number of mm > 0")
        if self.contrast not in CONTRAST_CHOICES:
            raise UsageError(f"unknown --contrast {self.contrast!r}; choose from {', '.join(CONTRAST_CHOICES)}")
        if self.kernel not in KERNEL_CHOICES:
            raise UsageError(f"unknown --kernel {self.kernel!r}; choose from {', '.join(KERNEL_CHOICES)}")
        if self.n_procs < 1:
            raise UsageError("--n-procs must be >= 1")
        if self.in_place and not self.stage.anonymizes:
            raise UsageError("--in-place only applies to the anonymize and all stages")
        for label in self.participant_labels:
            if not label or "/" in label or label in (".", ".."):
                raise UsageError(f"invalid participant label: {label!r}")
        self._validate_deid(inp, out)
        self._validate_pixel_text()
        find_exams(self.input_dir, self.participant_labels)  # every requested label has an exam

    def _validate_deid(self, inp: Path, out: Path) -> None:
        """The de-identification options: key, retain options, mapping folder, phi list, modes."""
        basic = self.profile == "basic"
        for name in self.retain:
            if name not in RETAIN_OPTIONS:
                raise UsageError(f"unknown retain option {name!r}; choose from {', '.join(RETAIN_OPTIONS)}")
        if not basic:
            for given, flag in ((self.retain, "--retain"), (self.shift_dates, "--dates shift"),
                                (self.keep_burned_in, "--keep-burned-in"), (self.map_dir, "--map-dir"),
                                (self.deid_key, "--deid-key")):
                if given:
                    raise UsageError(f"{flag} only applies to --profile basic")
        if basic and self.stage.anonymizes and not self.audit_only and self.deid_key is None:
            raise UsageError(
                "--profile basic needs --deid-key PATH: a file holding the secret key that maps "
                "UIDs and dates (created with a random key if it does not exist; keep it outside "
                "OUTPUT_DIR and INPUT_DIR, the same file for every run and SLURM task)"
            )
        for name, flag in (("deid_key", "--deid-key"), ("map_dir", "--map-dir")):
            value = getattr(self, name)
            if value is None:
                continue
            where = value.resolve()
            if where.is_relative_to(out):
                raise UsageError(f"{flag} must not be inside OUTPUT_DIR: {value}")
            if where.is_relative_to(inp):
                raise UsageError(f"{flag} must not be inside INPUT_DIR: {value}")
        if self.deid_key is not None and self.deid_key.exists():
            if not self.deid_key.is_file():
                raise UsageError(f"--deid-key is not a file: {self.deid_key}")
            from orbitct_app.deid import keys  # (pydicom: not needed for --help)

            keys.load_key(self.deid_key)  # refused when others can read it or it is weak
        if self.map_dir is not None and self.map_dir.exists() and not self.map_dir.is_dir():
            raise UsageError(f"--map-dir is not a folder: {self.map_dir}")
        if self.phi_list is not None and not self.phi_list.is_file():
            raise UsageError(f"--phi-list is not a readable file: {self.phi_list}")
        if self.audit_only and self.stage is not Stage.ANONYMIZE:
            raise UsageError("--audit-only only applies to the anonymize stage")
        if self.dry_run and self.stage not in (Stage.ANONYMIZE, Stage.EXTRACT):
            raise UsageError(
                "--dry-run applies to the anonymize and extract stages, not to all: all extracts from "
                "the anonymized copy, which a dry run does not write (run anonymize --dry-run, or "
                "extract --dry-run on an anonymized tree)"
            )
        if self.dry_run and self.audit_only:
            raise UsageError("--dry-run and --audit-only exclude each other")

    @property
    def checks_pixel_text(self) -> bool:
        """Whether this run looks for text burned into the pixels of the series it keeps."""
        return self.stage.anonymizes and self.pixel_text != "off" and not self.audit_only

    def _validate_pixel_text(self) -> None:
        """``--pixel-text``: a known mode (that the OCR engine is there, the command line checks)."""
        if self.pixel_text not in PIXEL_TEXT_MODES:
            raise UsageError(
                f"unknown --pixel-text {self.pixel_text!r}; choose from {', '.join(PIXEL_TEXT_MODES)}"
            )

    def as_record(self) -> dict[str, object]:
        """The options as plain JSON-ready values (for logs and provenance)."""
        record: dict[str, object] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, Stage):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            record[field.name] = value
        return record
