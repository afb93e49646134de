"""The ground truth :func:`write_exam` returns: what was written, where, and what was planted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from orbitct_app.synthetic.helpers import Vec3, vec_ras
from orbitct_app.synthetic.phantom import Phantom
from orbitct_app.synthetic.specs import SeriesSpec


@dataclass(frozen=True)
class PlantedValue:
    """One identifying value planted in every file of an exam, or in its Enhanced CT files.

    A value whose ``location`` starts with ``SharedFunctionalGroupsSequence`` or
    ``PerFrameFunctionalGroupsSequence`` (:attr:`in_functional_groups`) is planted only in the
    enhanced series that have that item (:attr:`SeriesTruth.planted` lists them per series;
    :meth:`ExamTruth.planted_in` gives the values of one file). Every other value is in every
    file of the exam.

    Attributes
    ----------
    keyword : str
        DICOM keyword, or ``"(gggg,eeee)"`` for a private element.
    value : str
        The planted value (ASCII).
    location : str
        ``"top"``, or a path such as ``"RequestAttributesSequence[0].ReferencedStudySequence[0]"``
        or ``"PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]"`` (0-based items);
        private sequences appear as ``"(0009,1010)[0]"``.
    scope : {"orbitct", "basic"}
        ``"orbitct"`` for the twelve masked attributes at any depth and for everything private;
        ``"basic"`` for the other identifying attributes.
    searchable : bool
        Whether the value is distinctive enough to search the raw bytes of files for.
    vr : str
        Value representation used.
    private : bool
        The element is private or lies inside a private sequence.
    """

    keyword: str
    value: str
    location: str
    scope: Literal["orbitct", "basic"]
    searchable: bool = True
    vr: str = ""
    private: bool = False

    @property
    def value_bytes(self) -> bytes:
        """The value as it is encoded in the files."""
        return self.value.encode("ascii")

    @property
    def depth(self) -> int:
        """Sequence nesting depth (0 at top level)."""
        return 0 if self.location == "top" else self.location.count("[")

    @property
    def in_functional_groups(self) -> bool:
        """Planted inside the Shared or Per-frame Functional Groups (Enhanced CT files only)."""
        return self.location.startswith(_FUNCTIONAL_GROUPS)


_FUNCTIONAL_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")


@dataclass(frozen=True)
class ExpectedSkip:
    """A series the pipeline is expected to leave out, and why (advisory)."""

    series_number: int
    series_instance_uid: str
    stage: Literal["anonymize", "extract"]
    reason: str


@dataclass
class SeriesTruth:
    """What was written for one series.

    Classic series: ``files``, ``sop_instance_uids``, ``positions_lps`` and ``rescale`` are in
    InstanceNumber order, one entry per file. ``positions_lps`` and ``orientation`` are
    empty/None for the summary capture.

    Enhanced series (``n_frames`` is not None): ``files`` and ``sop_instance_uids`` hold the one
    multi-frame file and its SOP Instance UID; ``positions_lps`` and ``rescale`` hold one entry
    per frame in frame order (frame ``f``, 1-based, is image ``f`` of the classic twin, so the
    frames follow the spec's ``order``); ``planted`` lists the identifiers planted inside this
    file's functional groups (also in :attr:`ExamTruth.planted`).
    """

    spec: SeriesSpec
    series_number: int
    series_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    files: list[Path] = field(default_factory=list)
    sop_instance_uids: list[str] = field(default_factory=list)
    positions_lps: list[Vec3] = field(default_factory=list)
    orientation: tuple[Vec3, Vec3] | None = None
    pixel_spacing: tuple[float, float] = (1.0, 1.0)
    rescale: list[tuple[float, float]] = field(default_factory=list)
    pixel_padding_value: int | None = None
    n_frames: int | None = None
    """NumberOfFrames of the multi-frame file of an enhanced series; None for a classic one."""
    planted: list[PlantedValue] = field(default_factory=list)
    """Identifiers planted only in this series' file (inside its functional groups)."""

    @property
    def is_enhanced(self) -> bool:
        """Written as one Enhanced CT (multi-frame) file."""
        return self.n_frames is not None

    @property
    def n_files(self) -> int:
        """Number of files written."""
        return len(self.files)

    @property
    def n_instances(self) -> int:
        """Number of images: files of a classic series, frames of an enhanced one.

        Frames count one each, as in discovery (``SeriesInfo.n_instances``).
        """
        return self.n_frames if self.n_frames is not None else len(self.files)

    @property
    def positions_ras(self) -> list[Vec3]:
        """ImagePositionPatient of each image (file or frame), in RAS."""
        return [vec_ras(p) for p in self.positions_lps]

    @property
    def slice_normal(self) -> Vec3 | None:
        """Row x column direction (LPS), or None without geometry."""
        if self.orientation is None:
            return None
        n = np.cross(self.orientation[0], self.orientation[1])
        return (float(n[0]), float(n[1]), float(n[2]))


@dataclass
class ExamTruth:
    """What was written for one exam folder ``path`` (= ``root / dicom_id``)."""

    dicom_id: str
    path: Path
    seed: int
    study_uid: str
    frame_of_reference_uid: str
    phantom: Phantom
    series: list[SeriesTruth] = field(default_factory=list)
    planted: list[PlantedValue] = field(default_factory=list)
    skipped_expectations: list[ExpectedSkip] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """Every file of the exam, series by series."""
        return [f for s in self.series for f in s.files]

    def series_by_number(self, number: int) -> SeriesTruth:
        """The series with SeriesNumber ``number``."""
        for s in self.series:
            if s.series_number == number:
                return s
        raise KeyError(number)

    def planted_in(self, path: Path) -> list[PlantedValue]:
        """The planted values that file ``path`` of this exam holds.

        Every value outside the functional groups, plus the functional-group values of the
        enhanced series the file belongs to.
        """
        path = Path(path)
        for s in self.series:
            if path in s.files:
                return [p for p in self.planted if not p.in_functional_groups] + list(s.planted)
        raise KeyError(path)

    @property
    def orbitct_forbidden_bytes(self) -> list[bytes]:
        """Byte strings that must not occur in any output file after orbitct de-identification."""
        return sorted({p.value_bytes for p in self.planted if p.scope == "orbitct" and p.searchable})

    @property
    def basic_forbidden_bytes(self) -> list[bytes]:
        """Searchable basic-scope values (for a later basic-profile de-identification)."""
        return sorted({p.value_bytes for p in self.planted if p.scope == "basic" and p.searchable})
