"""The basic profile on the public real CT exams in ../shared/data (skipped when absent):
``all --profile basic`` converts every exam, and no identifying value or original UID is left."""

from __future__ import annotations

import re
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from orbitct_app.cli import main
from orbitct_app.deid import Action, audit, basic_profile, keys
from orbitct_app.errors import ExitCode
from orbitct_app.report.tables import read_csv

pytestmark = pytest.mark.realdata

HEAD, TILT, J2K = "philips_head_phantom", "philips_tilt_phantom", "siemens_body_j2k"
TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UT"}
MASKED = {Action.REMOVE, Action.EMPTY, Action.DUMMY, Action.REPLACE_PSEUDONYM}


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _masked_values(ds: Dataset) -> set[bytes]:
    """Values (5 characters or more) of attributes the basic profile masks, at any depth, that no
    attribute it keeps repeats (the phantom's PatientName is also a word of kept descriptions)."""
    actions = basic_profile().actions
    masked: set[bytes] = set()
    kept: set[bytes] = set()
    for elem in ds.iterall():
        if elem.VR not in TEXT_VRS or elem.value in (None, "") or elem.tag.is_private:
            continue
        value = str(elem.value).encode()
        (masked if actions.get(elem.tag) in MASKED else kept).add(value)
    kept_text = b"\\".join(kept)
    return {v for v in masked if len(v) >= 5 and v not in kept_text}


def _contains(data: bytes, value: bytes) -> bool:
    """Whether ``value`` is in ``data``; a value of digits only counts where it stands alone: the
    digits of a new 2.25 UID (from a fresh random key each run) hold a short number by chance."""
    if not value.isdigit():
        return value in data
    return re.search(rb"(?<![0-9])" + re.escape(value) + rb"(?![0-9])", data) is not None


@pytest.fixture(scope="module")
def basic_all(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("real-basic")
    exams, out, key = shared_data / "exams", base / "out", base / "keys" / "k"
    code = main([str(exams), str(out), "all", "--profile", "basic", "--deid-key", str(key),
                 "--map-dir", str(base / "maps"), "--n-procs", "2"])
    assert code == ExitCode.OK
    return exams, out, key


def test_every_exam_converted_and_the_audit_is_clean(basic_all: tuple[Path, Path, Path]) -> None:
    _, out, _ = basic_all
    index = read_csv(out / "series_index.csv")
    assert sorted(r["dicom_id"] for r in index) == [HEAD, HEAD, TILT, J2K]
    assert all(r["series_instance_uid"].startswith("2.25.") for r in index if r["series_instance_uid"])
    assert read_csv(out / "deid_audit.csv") == []


def test_no_original_uid_or_masked_value_left(basic_all: tuple[Path, Path, Path]) -> None:
    exams, out, _ = basic_all
    forbidden = {u.encode() for name in (HEAD, TILT, J2K) for u in audit.original_uids(exams / name)}
    values = _masked_values(pydicom.dcmread(exams / HEAD / "S2020" / "I10"))
    assert {b"PLASTIC", b"NOTTINGHAM"} <= values
    forbidden |= values
    assert len(forbidden) > 250
    for path in _files(out):
        data = path.read_bytes() + str(path.relative_to(out)).encode()
        assert [v for v in forbidden if _contains(data, v)] == [], path
    for path in _files(out / "anonymized" / HEAD):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert [e.tag for e in ds.iterall() if e.tag.is_private] == []
        assert "StudyDate" in ds and ds.StudyDate == "" and "StationName" not in ds
        assert ds.PatientName == HEAD and ds.PatientIdentityRemoved == "YES"


def test_j2k_exam_with_empty_uids_gets_keyed_uids_from_its_file_meta(basic_all: tuple[Path, Path, Path]) -> None:
    exams, out, key_path = basic_all
    key = keys.load_key(key_path)
    for src in _files(exams / J2K):
        a = pydicom.dcmread(src)
        name = src.name.replace(a.file_meta.MediaStorageSOPInstanceUID,
                                keys.new_uid(key, a.file_meta.MediaStorageSOPInstanceUID))
        b = pydicom.dcmread(out / "anonymized" / J2K / name)
        assert a.SOPInstanceUID == ""
        assert b.SOPInstanceUID == b.file_meta.MediaStorageSOPInstanceUID == keys.new_uid(
            key, a.file_meta.MediaStorageSOPInstanceUID
        )
        assert b.PixelData == a.PixelData and b.file_meta.TransferSyntaxUID == a.file_meta.TransferSyntaxUID
