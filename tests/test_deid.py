"""The de-identification tables and the walker, on hand-built data sets (no files of the stage)."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from orbitct_app import options
from orbitct_app.deid import (
    BASIC,
    ORBITCT,
    PROFILES,
    Action,
    Profile,
    RetainOption,
    apply_profile,
    basic_profile,
    check_pseudonym,
    get_profile,
    keys,
    mark_deidentified,
    remove_private,
    table_e1_1,
)
from orbitct_app.deid.apply import PRIVATE_RULE
from orbitct_app.deid.profiles import DUMMY_VALUES, table
from orbitct_app.errors import DeidError, ProfileError

TWELVE = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "AccessionNumber",
)
# VR-valid marker values: each unique, so a leak names the attribute and the place it came from.
_MARKER_VALUE = {
    "PatientBirthDate": "19{:02d}0101",
    "PatientAge": "{:03d}Y",
    "PatientSex": "MK{:04d}",
}
EXPECTED = {
    "PatientName": "exam_007",
    "PatientID": "exam_007",
    **dict.fromkeys(TWELVE[2:], ""),
}


class Markers:
    """Hands out unique, VR-valid marker values and remembers them."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def __call__(self, keyword: str = "") -> str:
        n = len(self.values) + 1
        value = _MARKER_VALUE.get(keyword, "MRK{:04d}X").format(n)
        self.values.append(value)
        return value


def _plant_twelve(ds: Dataset, mark: Markers) -> None:
    for keyword in TWELVE:
        setattr(ds, keyword, mark(keyword))


def _plant_private(ds: Dataset, mark: Markers, group: int = 0x0029) -> None:
    block = ds.private_block(group, "MARKER CREATOR", create=True)
    block.add_new(0x10, "LO", mark())
    block.add_new(0x11, "LT", mark())
    inner = Dataset()
    inner.PatientName = mark("PatientName")  # a standard keyword inside a private sequence
    inner.add_new(0x00100021, "LO", mark())  # IssuerOfPatientID: only inside the private sequence
    block.add_new(0x12, "SQ", Sequence([inner]))


def nested_dataset(mark: Markers) -> Dataset:
    """Twelve attributes and private elements at top level and at depths 1, 2 and 3."""
    deepest = Dataset()
    _plant_twelve(deepest, mark)
    _plant_private(deepest, mark, 0x0011)
    middle = Dataset()
    _plant_twelve(middle, mark)
    _plant_private(middle, mark, 0x0019)
    middle.ReferencedStudySequence = Sequence([deepest])
    item = Dataset()
    _plant_twelve(item, mark)
    _plant_private(item, mark, 0x0009)
    item.ReferencedImageSequence = Sequence([middle])
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDescription = "HEAD"
    ds.SeriesNumber = 3
    _plant_twelve(ds, mark)
    _plant_private(ds, mark)
    ds.RequestAttributesSequence = Sequence([item, Dataset()])
    other = Dataset()
    other.PatientID = mark()
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = 16
    ds.PixelData = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    return ds


def _private_tags(ds: Dataset) -> list[str]:
    return [str(e.tag) for e in ds.iterall() if e.tag.is_private]


def _all_values(ds: Dataset, keyword: str) -> list[str]:
    return [str(e.value) for e in ds.iterall() if e.keyword == keyword]


def _to_bytes(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _roundtrip(data: bytes) -> tuple[Dataset, bytes]:
    """Read ``data``, de-identify with the orbitct profile, write; return the result and bytes."""
    ds = pydicom.dcmread(io.BytesIO(data))
    apply_profile(ds, ORBITCT, pseudonym="exam_007")
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(out.getvalue())), out.getvalue()


# --- the orbitct profile ------------------------------------------------------------------------


def test_orbitct_table_names_exactly_the_twelve_attributes() -> None:
    """The twelve, and Data Set Trailing Padding (meaningless, so removed wherever it is)."""
    keywords = {pydicom.datadict.keyword_for_tag(tag) for tag in ORBITCT.actions}
    assert keywords == {*TWELVE, "DataSetTrailingPadding"}
    assert ORBITCT.actions[pydicom.tag.Tag("DataSetTrailingPadding")] is Action.REMOVE
    assert ORBITCT.remove_private
    assert ORBITCT.actions[pydicom.tag.Tag("PatientName")] is Action.REPLACE_PSEUDONYM
    assert ORBITCT.actions[pydicom.tag.Tag("PatientID")] is Action.REPLACE_PSEUDONYM
    assert {ORBITCT.actions[pydicom.tag.Tag(kw)] for kw in TWELVE[2:]} == {Action.EMPTY}


def test_twelve_replaced_and_private_removed_at_every_depth() -> None:
    mark = Markers()
    ds = nested_dataset(mark)
    assert len(_private_tags(ds)) == 16
    stats = apply_profile(ds, ORBITCT, pseudonym="exam_007")
    assert _private_tags(ds) == []
    for keyword, expected in EXPECTED.items():
        found = _all_values(ds, keyword)
        assert found, keyword
        assert set(found) == {expected}, keyword
    # 12 at each of four depths, plus PatientID in OtherPatientIDsSequence
    assert stats.replaced == 12 * 4 + 1
    # creator + 3 elements per block, one block per depth; private sequences counted once
    assert stats.private_removed == 4 * 4
    text = str(ds)
    assert not [v for v in mark.values if v in text]


def test_other_attributes_and_pixel_data_untouched() -> None:
    ds = nested_dataset(Markers())
    pixels = ds.PixelData
    apply_profile(ds, ORBITCT, pseudonym="exam_007")
    assert ds.PixelData is pixels
    assert ds.StudyDescription == "HEAD" and ds.SeriesNumber == 3
    item = ds.RequestAttributesSequence[0]
    assert item.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert len(ds.RequestAttributesSequence) == 2  # the empty item stays


def test_absent_attributes_are_not_added() -> None:
    ds = Dataset()
    ds.PatientName = "SOMEONE"
    ds.Modality = "CT"
    apply_profile(ds, ORBITCT, pseudonym="exam_007")
    assert set(ds.dir()) == {"PatientName", "Modality"}


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_file_roundtrip_leaves_no_marker_in_the_bytes(syntax: str) -> None:
    mark = Markers()
    data = _to_bytes(nested_dataset(mark), syntax)
    assert sum(v.encode() in data for v in mark.values) == len(mark.values)  # all planted
    result, out = _roundtrip(data)
    assert [v for v in mark.values if v.encode() in out] == []
    assert _private_tags(result) == []
    assert set(_all_values(result, "PatientName")) == {"exam_007"}
    assert result.PixelData == b"\x01\x02\x03\x04\x05\x06\x07\x08"


def test_elements_outside_the_table_stay_raw() -> None:
    """Values the profile does not name are never decoded, so they are written byte for byte."""
    ds = pydicom.dcmread(io.BytesIO(_to_bytes(nested_dataset(Markers()))))
    apply_profile(ds, ORBITCT, pseudonym="exam_007")
    assert isinstance(ds.get_item("StudyDescription"), RawDataElement)
    assert isinstance(ds.get_item("PixelData"), RawDataElement)
    assert not isinstance(ds.get_item("PatientName"), RawDataElement)


@pytest.mark.parametrize("undefined_length", [True, False])
def test_standard_sequence_stored_as_un_is_walked(undefined_length: bool) -> None:
    """A standard sequence with VR UN (e.g. after a private-syntax conversion) is still cleaned."""
    top = Dataset()
    top.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    top.SOPInstanceUID = generate_uid()
    top.PatientName = "TOPNAME"
    data = _to_bytes(top)
    item = Dataset()
    item.PatientName = "NESTEDUN1"
    item.add_new(0x00091010, "LO", "PRIVUN01")
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, item)
    body = buffer.getvalue()
    if undefined_length:
        value = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + body
        value += struct.pack("<HHLHHL", 0xFFFE, 0xE00D, 0, 0xFFFE, 0xE0DD, 0)
        length = 0xFFFFFFFF
    else:
        value = struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body
        length = len(value)
    # (0040,0275) RequestAttributesSequence as explicit VR "UN", after every other element
    element = struct.pack("<HH", 0x0040, 0x0275) + b"UN\0\0" + struct.pack("<L", length) + value
    result, out = _roundtrip(data + element)
    assert b"NESTEDUN1" not in out and b"PRIVUN01" not in out and b"TOPNAME" not in out
    assert str(result.RequestAttributesSequence[0].PatientName) == "exam_007"


def test_private_sequence_goes_with_everything_in_it() -> None:
    ds = Dataset()
    inner = Dataset()
    inner.PatientName = "INSIDEPRIV"
    inner.ReferencedImageSequence = Sequence([Dataset()])
    block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    block.add_new(0x01, "SQ", Sequence([inner]))
    assert remove_private(ds) == 2  # creator and sequence
    assert len(ds) == 0


def test_private_creators_alone_and_odd_groups_removed() -> None:
    ds = Dataset()
    ds.add_new(0x00090010, "LO", "CREATOR ONLY")
    ds.add_new(0x00190000, "UL", 4)  # private group length
    ds.add_new(0x7FE10010, "LO", "SIEMENS CSA NON-IMAGE")
    ds.Modality = "CT"
    assert remove_private(ds) == 3
    assert ds.dir() == ["Modality"]


# --- a second table, same code ------------------------------------------------------------------


def test_a_second_profile_is_a_second_table() -> None:
    profile = Profile(
        name="test",
        remove_private=False,
        actions=table(
            PatientName=Action.DUMMY,
            PatientBirthDate=Action.DUMMY,
            PatientAge=Action.DUMMY,
            StudyID=Action.REMOVE,
            InstitutionName=Action.KEEP,
            ReferencedStudySequence=Action.EMPTY,
            ReferencedImageSequence=Action.KEEP,
            SeriesNumber=Action.DUMMY,
            StudyInstanceUID=Action.DUMMY,
        ),
    )
    ds = Dataset()
    ds.PatientName = "A^B"
    ds.PatientBirthDate = "19700101"
    ds.PatientAge = "054Y"
    ds.StudyID = "1234"
    ds.InstitutionName = "KEPT"
    ds.SeriesNumber = 7
    ds.StudyInstanceUID = "1.2.3"
    ds.ReferencedStudySequence = Sequence([Dataset()])
    nested = Dataset()
    nested.StudyID = "99"
    nested.PatientName = "C^D"
    ds.ReferencedImageSequence = Sequence([nested])
    ds.add_new(0x00290010, "LO", "KEPT CREATOR")
    stats = apply_profile(ds, profile, pseudonym="unused")
    assert ds.PatientName == DUMMY_VALUES["PN"]
    assert ds.PatientBirthDate == DUMMY_VALUES["DA"]
    assert ds.PatientAge == DUMMY_VALUES["AS"]
    assert ds.SeriesNumber == DUMMY_VALUES["IS"]
    assert ds.StudyInstanceUID == ""  # no dummy UID: U is the basic profile's job
    assert "StudyID" not in ds and "StudyID" not in ds.ReferencedImageSequence[0]
    assert ds.ReferencedImageSequence[0].PatientName == DUMMY_VALUES["PN"]  # KEEP walks items
    assert ds.InstitutionName == "KEPT"
    assert len(ds.ReferencedStudySequence) == 0
    assert ds[0x00290010].value == "KEPT CREATOR"  # remove_private=False
    assert stats.removed == 2 and stats.private_removed == 0


def test_profile_table_is_validated() -> None:
    with pytest.raises(ProfileError, match="cannot hold a pseudonym"):
        Profile(name="bad", actions=table(PatientBirthDate=Action.REPLACE_PSEUDONYM))
    with pytest.raises(ProfileError, match="unknown DICOM keyword"):
        table(PatientNaem=Action.EMPTY)


def test_profiles_known_to_the_command_line() -> None:
    assert set(PROFILES) == set(options.PROFILES)
    assert get_profile("orbitct") is ORBITCT
    assert get_profile("basic").name == "basic"
    with pytest.raises(ProfileError, match="takes no retain"):
        get_profile("orbitct", shift_dates=True)
    with pytest.raises(ProfileError, match="unknown profile"):
        get_profile("strict")


@pytest.mark.parametrize(
    ("pseudonym", "fragment"),
    [
        ("", "empty"),
        ("x" * 65, "longer than 64"),
        ("exam\\1", "backslash"),
        ("exam\n1", "printable ASCII"),
        ("exämen", "printable ASCII"),
    ],
)
def test_unusable_pseudonyms(pseudonym: str, fragment: str) -> None:
    with pytest.raises(DeidError, match=fragment):
        apply_profile(Dataset(), ORBITCT, pseudonym=pseudonym)


def test_usable_pseudonym() -> None:
    assert check_pseudonym("sub-001_ses-01") == "sub-001_ses-01"


def test_mark_deidentified_replaces_earlier_marks() -> None:
    ds = Dataset()
    mark_deidentified(ds, ORBITCT.method("9.9"))
    mark_deidentified(ds, ORBITCT.method("9.9"))
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == "orbitct-app 9.9 profile orbitct"


# --- the basic profile (PS3.15 Annex E): table, keys, walker ------------------------------------

KEY = b"k" * 32


def test_every_row_of_table_e1_1_has_its_basic_action() -> None:
    assert len(table_e1_1.ROWS) > 450
    expected = {"D": Action.DUMMY, "Z": Action.EMPTY, "X": Action.REMOVE, "U": Action.REMAP_UID,
                "Z/D": Action.EMPTY, "X/Z": Action.REMOVE, "X/D": Action.REMOVE, "X/Z/D": Action.REMOVE,
                "X/Z/U*": Action.KEEP}
    for row in table_e1_1.ROWS:
        if row.tag >> 16 == 0x0002:
            assert row.tag not in BASIC.actions  # file meta: rebuilt whole
        elif row.tag in (Tag("PatientName"), Tag("PatientID")):
            assert BASIC.actions[Tag(row.tag)] is Action.REPLACE_PSEUDONYM
        else:
            assert BASIC.actions[Tag(row.tag)] is expected[row.basic], hex(row.tag)


@pytest.mark.parametrize(
    ("keyword", "action"),
    [
        ("StudyDate", Action.EMPTY), ("SeriesDate", Action.REMOVE), ("PatientBirthDate", Action.EMPTY),
        ("InstanceCreationDate", Action.REMOVE),  # not in the table: a DA, removed by VR
        ("SOPInstanceUID", Action.REMAP_UID), ("ReferencedSOPInstanceUID", Action.REMAP_UID),
        ("FrameOfReferenceUID", Action.REMAP_UID), ("IrradiationEventUID", Action.REMAP_UID),
        ("ReferencedImageSequence", Action.KEEP), ("SourceImageSequence", Action.KEEP),
        ("RequestAttributesSequence", Action.REMOVE), ("OtherPatientIDsSequence", Action.REMOVE),
        ("StationName", Action.REMOVE), ("DeviceSerialNumber", Action.REMOVE),
        ("PatientAge", Action.REMOVE), ("PatientSex", Action.EMPTY), ("AccessionNumber", Action.EMPTY),
        ("ContentSequence", Action.DUMMY), ("SeriesDescription", Action.REMOVE),
    ],
)
def test_basic_actions(keyword: str, action: Action) -> None:
    assert BASIC.actions[Tag(keyword)] is action


@pytest.mark.parametrize("keyword", ["SOPClassUID", "ReferencedSOPClassUID", "TransferSyntaxUID",
                                     "CodingSchemeUID", "Rows", "PixelSpacing", "ImagePositionPatient",
                                     "ImageOrientationPatient", "RescaleSlope", "PixelPaddingValue",
                                     "Modality", "SeriesNumber", "InstanceNumber", "BurnedInAnnotation"])
def test_basic_keeps_what_extraction_needs_and_structural_uids(keyword: str) -> None:
    assert Tag(keyword) not in BASIC.actions


def test_retain_options_modify_the_table_and_are_recorded() -> None:
    profile = basic_profile(frozenset({RetainOption.PATIENT_CHARACTERISTICS, RetainOption.DEVICE_IDENTITY,
                                       RetainOption.INSTITUTION_IDENTITY}), shift_dates=True)
    for keyword in ("PatientSex", "PatientAge", "PatientWeight", "PatientSize", "EthnicGroup",
                    "StationName", "DeviceSerialNumber", "InstitutionName", "InstitutionAddress"):
        assert profile.actions[Tag(keyword)] is Action.KEEP, keyword
    assert profile.actions[Tag("DeviceUID")] is Action.KEEP
    assert profile.actions[Tag("Allergies")] is Action.REMOVE  # its C (free text) is not cleaned: removed
    assert profile.actions[Tag("StudyDate")] is Action.SHIFT_DATE
    assert profile.actions[Tag("InstanceCreationDate")] is Action.SHIFT_DATE
    assert profile.actions[Tag("PatientBirthDate")] is Action.EMPTY  # no C for it: still emptied
    assert profile.actions[Tag("TimezoneOffsetFromUTC")] is Action.REMOVE  # C, but not a date VR
    assert [c for c, _ in profile.codes] == ["113100", "113107", "113109", "113112", "113108"]
    assert profile.temporal == "MODIFIED" and BASIC.temporal == "REMOVED"
    assert BASIC.codes == (("113100", "Basic Application Confidentiality Profile"),)
    assert basic_profile(frozenset(), False) is BASIC  # built once per set of options


def test_new_uids_are_valid_keyed_and_deterministic() -> None:
    uid = keys.new_uid(KEY, "1.2.840.113619.2.55.3.1234")
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", uid) and len(uid) <= 64
    value = int(uid[5:])
    assert value >> 76 & 0xF == 8 and value >> 62 & 0x3 == 2  # a version 8 UUID
    assert uid == keys.new_uid(KEY, "1.2.840.113619.2.55.3.1234")
    assert uid != keys.new_uid(b"j" * 32, "1.2.840.113619.2.55.3.1234")
    assert uid != keys.new_uid(KEY, "1.2.840.113619.2.55.3.1235")
    mapping = keys.UidMap(KEY)
    assert mapping("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"  # registered: kept
    assert mapping("1.2.3.4\0") == keys.new_uid(KEY, "1.2.3.4")
    assert mapping.mapped == {"1.2.3.4": keys.new_uid(KEY, "1.2.3.4")}


def test_date_offsets_and_shifts() -> None:
    offsets = {keys.date_offset_days(KEY, f"patient{n}") for n in range(200)}
    assert all(-3652 <= o <= -365 for o in offsets) and len(offsets) > 150
    assert keys.date_offset_days(KEY, "patient1") == keys.date_offset_days(KEY, "patient1")
    assert keys.shift_date("20200301", -1) == "20200229"
    assert keys.shift_date("20200301101500.5+0100", -1) == "20200229101500.5+0100"
    assert keys.shift_date("2020", -1) is None and keys.shift_date("20201341", 3) is None


def test_key_file_created_once_and_refused_when_short(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "k"
    key, created = keys.ensure_key(path)
    assert created and len(key) == 64 and path.stat().st_mode & 0o777 == 0o600
    assert keys.ensure_key(path) == (key, False)
    assert keys.key_fingerprint(key) != keys.key_fingerprint(b"x" * 32)
    (tmp_path / "short").write_text("secret\n")
    (tmp_path / "short").chmod(0o600)
    with pytest.raises(Exception, match="fewer than 16 bytes"):
        keys.load_key(tmp_path / "short")


def _basic_dataset() -> Dataset:
    ds = nested_dataset(Markers())
    ds.StudyInstanceUID = "1.2.3.4.5"
    ds.StudyDate = "20210315"
    ds.AcquisitionDateTime = "20210315101112"
    ds.StudyTime = "101112"
    ds.InstanceCreationDate = "20210316"
    ds.PatientWeight = "71.5"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ds.ReferencedImageSequence = Sequence([ref])
    ds.add_new(0x60003000, "OW", b"\x01\x02")  # overlay data
    ds.add_new(0x60020010, "US", 8)  # overlay rows of a second overlay
    ds.add_new(0x50000005, "US", 1)  # a curve element
    ge = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    ge.add_new(0x27, "SH", "0.984:1")  # safe: scan pitch ratio
    ge.add_new(0x28, "LO", "NOT SAFE")
    return ds


def test_basic_walker_remaps_uids_everywhere_and_removes_groups() -> None:
    ds = _basic_dataset()
    sop = ds.SOPInstanceUID
    uids = keys.UidMap(KEY)
    stats = apply_profile(ds, BASIC, pseudonym="exam_007", uids=uids, count_rules=True)
    assert ds.SOPInstanceUID == keys.new_uid(KEY, sop) == ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert ds.ReferencedImageSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.StudyInstanceUID == keys.new_uid(KEY, "1.2.3.4.5")
    assert set(uids.mapped) == {sop, "1.2.3.4.5"}
    assert _private_tags(ds) == [] and not [t for t in ds.keys() if t >> 16 in (0x5000, 0x6000, 0x6002)]
    assert ds.StudyDate == "" and "AcquisitionDateTime" not in ds and "InstanceCreationDate" not in ds
    assert "PatientWeight" not in ds and "RequestAttributesSequence" not in ds
    assert ds.PatientName == "exam_007"
    assert stats.rules is not None
    assert stats.rules[(int(Tag("SOPInstanceUID")), "U")] == 1
    assert stats.rules[(PRIVATE_RULE, "X")] == 7 and stats.rules[(0x60003000, "X")] == 1


def test_basic_walker_shifts_dates_and_keeps_safe_private() -> None:
    ds = _basic_dataset()
    profile = basic_profile(frozenset({RetainOption.SAFE_PRIVATE}), shift_dates=True)
    apply_profile(ds, profile, pseudonym="exam_007", uids=keys.UidMap(KEY), date_offset=-10)
    assert ds.StudyDate == "20210305" and ds.InstanceCreationDate == "20210306"
    assert ds.AcquisitionDateTime == "20210305101112" and ds.StudyTime == "101112"
    assert sorted(_private_tags(ds)) == ["(0043,0010)", "(0043,1027)"]  # creator and the safe element
    assert ds[0x00431027].value == "0.984:1"


def test_basic_walker_needs_the_key() -> None:
    with pytest.raises(DeidError, match="no UID map"):
        apply_profile(_basic_dataset(), BASIC, pseudonym="exam_007")
    shifting = basic_profile(frozenset(), shift_dates=True)
    with pytest.raises(DeidError, match="no date offset"):
        apply_profile(_basic_dataset(), shifting, pseudonym="exam_007", uids=keys.UidMap(KEY))


def test_code_sequence_and_temporal_mark() -> None:
    ds = Dataset()
    profile = basic_profile(frozenset({RetainOption.SAFE_PRIVATE}), shift_dates=True)
    mark_deidentified(ds, profile.method_values("9.9"), codes=profile.codes, temporal=profile.temporal)
    assert list(ds.DeidentificationMethod) == ["orbitct-app 9.9 profile basic", "dates shifted", "retain safe-private"]
    assert [(i.CodeValue, i.CodingSchemeDesignator) for i in ds.DeidentificationMethodCodeSequence] == [
        ("113100", "DCM"), ("113107", "DCM"), ("113111", "DCM")]
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_uid_like_tokens_in_names_and_text_are_remapped() -> None:
    uids = keys.UidMap(KEY)
    name = "CT.1.3.12.2.1107.5.1.4.60064.300000221208"
    assert keys.remap_uid_tokens(name, uids) == "CT." + keys.new_uid(KEY, "1.3.12.2.1107.5.1.4.60064.300000221208")
    kept = "python 3.11.7, UID 2.25.1234, CT Image Storage 1.2.840.10008.5.1.4.1.1.2, IM0001.dcm"
    assert keys.remap_uid_tokens(kept, uids) == kept
    assert keys.remap_uid_tokens("file 1.2.3.4.dcm", None) == "file <uid>.dcm"
