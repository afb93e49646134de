"""The identifying values planted in the headers, for the de-identification tests to look for.

:class:`PhiPlan` plants them at the top level, at depth 1 to 3 inside standard sequences, in
private blocks and a private sequence, and inside an Enhanced CT object's functional groups; it
records each as a :class:`PlantedValue`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

from orbitct_app.synthetic.helpers import seeded_uid
from orbitct_app.synthetic.truth import PlantedValue

PRIVATE_CREATOR = "ORBITCT PHI TEST"
"""Private creator of the planted private blocks (groups 0x0009, 0x0011 and 0x0029)."""

ORBITCT_ATTRIBUTES: tuple[str, ...] = (
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
"""The twelve attributes the orbitct profile masks (at any depth)."""

BASIC_ATTRIBUTES: tuple[str, ...] = (
    "StationName",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "AcquisitionDateTime",
    "ContentDate",
    "ContentTime",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "InstitutionalDepartmentName",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "NameOfPhysiciansReadingStudy",
    "PatientBirthTime",
    "OtherPatientNames",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientComments",
    "DeviceSerialNumber",
    "StudyDescription",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepDescription",
    "ScheduledProcedureStepID",
    "ImageComments",
    "PatientTelephoneNumbers",
    "MilitaryRank",
    "BranchOfService",
    "RegionOfResidence",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "PatientReligiousPreference",
    "IssuerOfPatientID",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PatientWeight",
    "PatientSize",
)
"""Other identifying attributes, planted for a later basic-profile de-identification."""

_ORBITCT_CODES = {
    "PatientName": "PN",
    "PatientID": "ID",
    "PatientAddress": "AD",
    "ReferringPhysicianName": "RP",
    "PerformingPhysicianName": "PP",
    "OperatorsName": "OP",
    "InstitutionName": "IN",
    "InstitutionAddress": "IA",
    "AccessionNumber": "AN",
}


class PhiPlan:
    """Builds the planted identifiers; every :meth:`apply` writes identical values.

    The first :meth:`apply` records the :class:`PlantedValue` list. Values are unique per exam,
    per attribute and per location (except the one-letter PatientSex).
    """

    def __init__(self, exam_hash: str, seed: int, dicom_id: str) -> None:
        self.h = exam_hash
        self.hint = int(exam_hash, 16)
        self.seed = seed
        self.dicom_id = dicom_id
        self.planted: list[PlantedValue] = []
        self._values: dict[tuple[str, str], str] = {}
        self._records: dict[tuple[str, str], PlantedValue] = {}
        self._recording: list[tuple[str, str]] | None = None
        self._locs: dict[str, int] = {}
        self._n_dates = 0
        self._n_times = 0
        self._n_private = 0

    def _loc_index(self, location: str) -> int:
        return self._locs.setdefault(location, len(self._locs))

    def _new_value(self, keyword: str, vr: str, location: str) -> str:
        loc = self._loc_index(location)
        if vr == "DA":
            k = self._n_dates
            self._n_dates += 1
            if keyword == "PatientBirthDate":
                base = _dt.date(1935, 1, 1) + _dt.timedelta(days=self.hint % 12000)
            else:
                base = _dt.date(2021, 1, 1) + _dt.timedelta(days=self.hint % 900)
            return (base + _dt.timedelta(days=k)).strftime("%Y%m%d")
        if vr == "TM":
            k = self._n_times
            self._n_times += 1
            return f"{10 + (k // 60) % 10:02d}{k % 60:02d}{self.hint % 60:02d}.{self.hint % 900000 + 100000:06d}"
        if vr == "DT":
            date = self._new_value(keyword, "DA", location)
            return date + self._new_value(keyword, "TM", location)
        if vr == "AS":
            return f"{20 + self.hint % 50 + loc:03d}Y"
        if vr == "DS":
            if keyword == "PatientSize":
                return f"1.{50 + loc:02d}"
            return f"{55 + loc}.{self.hint % 10}"
        if keyword == "PatientSex":
            return "O"
        if keyword in _ORBITCT_CODES:
            code = _ORBITCT_CODES[keyword]
        else:
            code = f"B{BASIC_ATTRIBUTES.index(keyword):02d}"
        return f"PHI{self.h}{code}{loc:02d}"

    def _add(self, key: tuple[str, str], record: PlantedValue) -> None:
        self._values[key] = record.value
        self._records[key] = record
        self.planted.append(record)

    def _used(self, key: tuple[str, str]) -> str:
        if self._recording is not None and key not in self._recording:
            self._recording.append(key)
        return self._values[key]

    def value(self, location: str, keyword: str, *, in_private: bool = False) -> str:
        key = (location, keyword)
        if key not in self._values:
            vr = dictionary_VR(keyword)
            val = self._new_value(keyword, vr, location)
            orbitct = keyword in ORBITCT_ATTRIBUTES or in_private
            searchable = len(val) >= 4 and vr not in ("DS", "IS", "US", "SS", "FL", "FD")
            self._add(key, PlantedValue(keyword, val, location, "orbitct" if orbitct else "basic",
                                        searchable, vr, in_private))
        return self._used(key)

    def private_value(self, location: str, tag: str, vr: str) -> str:
        key = (location, tag)
        if key not in self._values:
            val = f"PHI{self.h}PV{self._n_private:03d}"
            self._n_private += 1
            self._add(key, PlantedValue(tag, val, location, "orbitct", True, vr, True))
        return self._used(key)

    # -- building ---------------------------------------------------------------------------

    def _fill(self, ds: Dataset, location: str, keywords: Sequence[str], *,
              in_private: bool = False) -> None:
        for kw in keywords:
            setattr(ds, kw, self.value(location, kw, in_private=in_private))

    def _private(self, ds: Dataset, location: str, group: int, offset: int, vr: str,
                 creator: str = PRIVATE_CREATOR) -> None:
        block = ds.private_block(group, creator, create=True)
        tag = block.get_tag(offset)
        label = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        val = self.private_value(location, label, vr)
        value: str | bytes = val
        if vr == "OB":
            value = b"\x01\x02" + val.encode("ascii") + b"\x03\x04"
        elif vr == "UN":
            value = val.encode("ascii")
        block.add_new(offset, vr, value)

    def apply(self, ds: Dataset) -> None:
        """Plant every identifier into ``ds`` (top level, sequences, private blocks)."""
        self._fill(ds, "top", ORBITCT_ATTRIBUTES)
        self._fill(ds, "top", BASIC_ATTRIBUTES)

        # depth 1, 2 and 3 inside a standard sequence
        loc1 = "RequestAttributesSequence[0]"
        ra = Dataset()
        self._fill(ra, loc1, ORBITCT_ATTRIBUTES)
        self._fill(ra, loc1, ("RequestedProcedureDescription", "RequestedProcedureID",
                              "ScheduledProcedureStepID", "StudyDate", "PatientComments"))
        loc2 = f"{loc1}.ReferencedStudySequence[0]"
        rs = Dataset()
        rs.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        rs.ReferencedSOPInstanceUID = seeded_uid(self.seed, self.dicom_id, "referenced-study")
        self._fill(rs, loc2, ORBITCT_ATTRIBUTES)
        self._fill(rs, loc2, ("StudyID", "StudyDescription"))
        loc3 = f"{loc2}.OtherPatientIDsSequence[0]"
        op3 = Dataset()
        self._fill(op3, loc3, ("PatientID", "PatientName", "IssuerOfPatientID"))
        op3.TypeOfPatientID = "TEXT"
        rs.OtherPatientIDsSequence = [op3]
        ra.ReferencedStudySequence = [rs]
        # private elements inside an item of a standard sequence
        self._private(ra, loc1, 0x0009, 0x01, "LO")
        self._private(ra, loc1, 0x0009, 0x03, "UN")
        ds.RequestAttributesSequence = [ra]

        items = []
        for k in range(2):
            loc = f"OtherPatientIDsSequence[{k}]"
            item = Dataset()
            self._fill(item, loc, ("PatientID", "IssuerOfPatientID"))
            item.TypeOfPatientID = "TEXT"
            items.append(item)
        ds.OtherPatientIDsSequence = items

        loc = "ReferencedPatientSequence[0]"
        rp = Dataset()
        rp.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.1.1"
        rp.ReferencedSOPInstanceUID = seeded_uid(self.seed, self.dicom_id, "referenced-patient")
        self._fill(rp, loc, ORBITCT_ATTRIBUTES)
        self._private(rp, loc, 0x0011, 0x01, "SH")
        ds.ReferencedPatientSequence = [rp]

        # top-level private block with a private sequence
        for offset, vr in ((0x01, "LO"), (0x02, "SH"), (0x03, "UN"), (0x04, "OB"), (0x05, "PN"),
                           (0x06, "LT")):
            self._private(ds, "top", 0x0009, offset, vr)
        block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
        block.add_new(0x07, "UL", 42)
        seq_tag = block.get_tag(0x10)
        seq_label = f"({seq_tag >> 16:04X},{seq_tag & 0xFFFF:04X})"
        p_items = []
        loc = f"{seq_label}[0]"
        item = Dataset()
        self._fill(item, loc, ("PatientName", "PatientID", "InstitutionName"), in_private=True)
        self._private(item, loc, 0x0009, 0x01, "LO")
        nested = Dataset()
        self._fill(nested, f"{loc}.OtherPatientIDsSequence[0]", ("PatientID",), in_private=True)
        item.OtherPatientIDsSequence = [nested]
        p_items.append(item)
        loc = f"{seq_label}[1]"
        item = Dataset()
        self._fill(item, loc, ("AccessionNumber", "ReferringPhysicianName"), in_private=True)
        self._private(item, loc, 0x0009, 0x02, "SH")
        p_items.append(item)
        block.add_new(0x10, "SQ", p_items)

        # a second group: a harmless creator in block 0x10, the planted one in block 0x11
        other = ds.private_block(0x0029, "ORBITCT OTHER", create=True)
        other.add_new(0x01, "US", 7)
        self._private(ds, "top", 0x0029, 0x01, "LO")
        self._private(ds, "top", 0x0029, 0x02, "OB")

    def apply_functional_groups(self, shared: Dataset,
                                frames: Sequence[Dataset]) -> list[PlantedValue]:
        """Plant identifiers inside the functional groups of an Enhanced CT object.

        ``shared`` is the item of the SharedFunctionalGroupsSequence (with a
        FrameAnatomySequence), ``frames`` the items of the PerFrameFunctionalGroupsSequence
        (each with a FrameContentSequence). The first and the last frame items are planted,
        directly and inside their FrameContentSequence item; the shared item directly, inside
        its FrameAnatomySequence item and that item's AnatomicRegionSequence item. Each of these
        items also gets a private block of :data:`PRIVATE_CREATOR`. In a legacy converted object,
        the items of the Unassigned Shared and (first and last frame) Per-frame Converted
        Attributes Sequences are planted too, with a private block each: where a converter puts
        the classic files' attributes that have no functional group.

        Returns
        -------
        list of PlantedValue
            The values written by this call (in this object only).
        """
        self._recording = []
        try:
            loc = "SharedFunctionalGroupsSequence[0]"
            self._fill(shared, loc, ("PatientName", "PatientID", "InstitutionName",
                                     "PerformingPhysicianName", "PhysiciansOfRecord"))
            self._private(shared, loc, 0x0009, 0x01, "LO")
            self._private(shared, loc, 0x0009, 0x04, "OB")
            anatomy = shared.FrameAnatomySequence[0]
            loc_a = f"{loc}.FrameAnatomySequence[0]"
            self._fill(anatomy, loc_a, ("OperatorsName", "AccessionNumber", "InstitutionAddress"))
            self._private(anatomy, loc_a, 0x0011, 0x01, "SH")
            self._fill(anatomy.AnatomicRegionSequence[0], f"{loc_a}.AnatomicRegionSequence[0]",
                       ("PatientName", "ReferringPhysicianName"))
            for index in sorted({0, len(frames) - 1}):
                item = frames[index]
                loc = f"PerFrameFunctionalGroupsSequence[{index}]"
                self._fill(item, loc, ("PatientName", "OperatorsName", "StationName"))
                self._private(item, loc, 0x0009, 0x01, "LO")
                self._private(item, loc, 0x0009, 0x03, "UN")
                loc_c = f"{loc}.FrameContentSequence[0]"
                self._fill(item.FrameContentSequence[0], loc_c,
                           ("InstitutionName", "ReferringPhysicianName", "PatientID"))
                self._private(item.FrameContentSequence[0], loc_c, 0x0009, 0x02, "SH")
                if "UnassignedPerFrameConvertedAttributesSequence" in item:
                    loc_u = f"{loc}.UnassignedPerFrameConvertedAttributesSequence[0]"
                    unassigned = item.UnassignedPerFrameConvertedAttributesSequence[0]
                    self._fill(unassigned, loc_u, ("OperatorsName", "PatientID", "InstitutionAddress"))
                    self._private(unassigned, loc_u, 0x0009, 0x01, "LO")
            if "UnassignedSharedConvertedAttributesSequence" in shared:
                loc_u = "SharedFunctionalGroupsSequence[0].UnassignedSharedConvertedAttributesSequence[0]"
                unassigned = shared.UnassignedSharedConvertedAttributesSequence[0]
                self._fill(unassigned, loc_u, ("PatientName", "InstitutionName", "StationName",
                                               "PerformingPhysicianName"))
                self._private(unassigned, loc_u, 0x0009, 0x02, "SH")
            return [self._records[key] for key in self._recording]
        finally:
            self._recording = None
