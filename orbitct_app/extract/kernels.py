"""Reconstruction kernels (ConvolutionKernel) classified as soft or sharp, by a vendor table.

A kernel name means something only for its vendor, so the table is data: per vendor, how its
Manufacturer reads and its rules, each an exact name or a pattern whose number decides. A
series is ``soft`` (soft tissue, brain, standard body), ``sharp`` (bone, lung, edge-enhancing,
high resolution) or ``unknown`` (no ConvolutionKernel, or a name no rule of the vendor knows).
When the Manufacturer is empty or names another vendor, every vendor's rules are tried and a
class is given only when they agree (kernel names of different vendors do not overlap:
``STANDARD`` is GE's, ``H30s`` Siemens's, ``FC13`` Canon's).

Sources (the kernel table of ``docs/extraction.md`` lists the same):

- Siemens: names are a family (B body, H head, I/J iterative body/head, Q quantitative,
  U ultra-high resolution; a second letter r/f/l/v/c/... gives the variant) and a resolution
  index; higher numbers are sharper (Siemens SOMATOM kernel naming, e.g.
  https://www.diagnosticradphys.com/physicspulse/ct/siemens-reconstruction-kernels). Below 50
  is soft (B30f, H30s, Br40d, J40s), 50 and above sharp (B50f, H60s, Hr60f, B70f).
- GE: STANDARD, SOFT, DETAIL are soft-tissue algorithms; BONE, BONEPLUS, LUNG, EDGE sharp.
- Philips: A (smooth), B (standard), C (medium, the counterpart of Siemens 40-49), and the
  brain filters UA/UB/UC are soft; D, E (sharp), L (lung) and the high-resolution Y filters
  YA-YF are sharp. (``UB`` is the kernel of the public Philips head exams in ../shared/data.)
- Canon/Toshiba: FC01-FC29 are body and head soft-tissue functions (FC03 and FC13 soft tissue,
  e.g. https://cbiit.github.io/bridg-model/ ConvolutionKernel example "FC03 (Toshiba)" and
  https://synapse.koreamed.org/articles/1099806: FC13 soft tissue, FC55 lung), FC30-FC39 bone,
  FC50-FC59 lung and FC80-FC89 high resolution are sharp; FL01-FL04 are lung functions.
  Suffixed variants (FC13-H, a hybrid) and other numbers stay unknown.
- United Imaging: no vendor document was found; the rule reads only what the name says itself
  (a token SOFT or SMOOTH, or SHARP), e.g. ``B_SOFT_B`` soft, ``L_SHARP_B`` sharp.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Literal

KernelKind = Literal["soft", "sharp", "unknown"]
SOFT: KernelKind = "soft"
SHARP: KernelKind = "sharp"
UNKNOWN: KernelKind = "unknown"
KERNEL_ORDER: dict[KernelKind, int] = {SOFT: 0, UNKNOWN: 1, SHARP: 2}
"""How ``--one-per-exam`` ranks kernels: soft first, then unknown (it may be soft), then sharp."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule of a vendor: a name pattern (full match, case-insensitive) and its class.

    With ``sharp_from``, the pattern's ``number`` group decides: below it soft, from it sharp;
    with ``number_range``, the rule applies only when the number lies in that closed range.
    """

    pattern: str
    kind: KernelKind | None = None
    sharp_from: int | None = None
    number_range: tuple[int, int] | None = None

    def classify(self, name: str) -> KernelKind | None:
        match = re.fullmatch(self.pattern, name, flags=re.IGNORECASE)
        if match is None:
            return None
        if "number" in match.groupdict():
            number = int(match["number"])
            if self.number_range is not None and not self.number_range[0] <= number <= self.number_range[1]:
                return None
            if self.sharp_from is not None:
                return SOFT if number < self.sharp_from else SHARP
        return self.kind


@dataclasses.dataclass(frozen=True)
class Vendor:
    """A vendor: its name, how its Manufacturer values read, and its kernel rules."""

    name: str
    manufacturer: str
    """Pattern searched (case-insensitively) in the Manufacturer attribute."""
    rules: tuple[Rule, ...]

    def classify(self, name: str) -> KernelKind | None:
        for rule in self.rules:
            kind = rule.classify(name)
            if kind is not None:
                return kind
        return None


def _names(kind: KernelKind, *names: str) -> Rule:
    return Rule("|".join(re.escape(n) for n in names), kind)


VENDORS: tuple[Vendor, ...] = (
    Vendor("Siemens", r"\bSIEMENS\b", (
        # family, resolution index, optional variant letter (s, f, d, h, u ...): H30s, Br40d, Hr60f, J40s, B70f
        Rule(r"(?:B|Bf|Bh|Bl|Br|Bv|D|H|Hc|Hf|Hr|Hv|I|J|Q|Qr|Ur)(?P<number>\d{2})[a-z]?", sharp_from=50),
    )),
    Vendor("GE", r"^\s*GE\b|\bGE MEDICAL\b|\bGE HEALTHCARE\b|\bGENERAL ELECTRIC\b", (
        _names(SOFT, "STANDARD", "SOFT", "DETAIL"),
        _names(SHARP, "BONE", "BONEPLUS", "LUNG", "EDGE"),
    )),
    Vendor("Philips", r"\bPHILIPS\b", (
        _names(SOFT, "A", "B", "C", "UA", "UB", "UC"),
        _names(SHARP, "D", "E", "L", "YA", "YB", "YC", "YD", "YE", "YF"),
    )),
    Vendor("Canon/Toshiba", r"TOSHIBA|\bCANON", (  # also CANON_MEC
        Rule(r"FC(?P<number>\d{2})", SOFT, number_range=(1, 29)),
        Rule(r"FC(?P<number>\d{2})", SHARP, number_range=(30, 39)),
        Rule(r"FC(?P<number>\d{2})", SHARP, number_range=(50, 59)),
        Rule(r"FC(?P<number>\d{2})", SHARP, number_range=(80, 89)),
        Rule(r"FL0[1-4]", SHARP),
    )),
    Vendor("United Imaging", r"\bUIH\b|\bUNITED IMAGING\b", (
        Rule(r"(?:[A-Z]+_)?(?:SOFT|SMOOTH)(?:_[A-Z0-9]+)*", SOFT),
        Rule(r"(?:[A-Z]+_)?SHARP(?:_[A-Z0-9]+)*", SHARP),
    )),
)
"""The kernel table (see the module docstring for the sources)."""


@dataclasses.dataclass(frozen=True)
class KernelClass:
    """The class of a series' kernel and what it was read from."""

    kind: KernelKind
    kernel: str
    """The kernel name (ConvolutionKernel's first value), '' when absent."""
    vendor: str = ""
    """The vendor whose rule gave the class ('' when unknown)."""

    @property
    def evidence(self) -> str:
        """The kernel and how it was classified, for reasons: 'ConvolutionKernel H60s, Siemens'."""
        if not self.kernel:
            return "no ConvolutionKernel"
        if self.kind == UNKNOWN:
            return f"ConvolutionKernel {self.kernel} is not in the kernel table"
        return f"ConvolutionKernel {self.kernel}, {self.vendor}"


def kernel_name(value: Any) -> str:
    """The kernel name of a ConvolutionKernel value: its first value, stripped.

    Siemens writes a second value (``Hr60f\\3``: the iterative strength), which is not part of
    the name.
    """
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return str(value or "").split("\\")[0].strip()


def vendor_of(manufacturer: str) -> Vendor | None:
    """The vendor whose Manufacturer pattern matches, or None."""
    for vendor in VENDORS:
        if re.search(vendor.manufacturer, manufacturer or "", flags=re.IGNORECASE):
            return vendor
    return None


def classify_kernel(convolution_kernel: Any, manufacturer: str = "") -> KernelClass:
    """Classify a ConvolutionKernel value (a string or a list of values) for a Manufacturer.

    The vendor's rules decide when the Manufacturer names a vendor of the table; otherwise every
    vendor's rules are tried and the class is given only when the vendors that know the name agree.
    """
    name = kernel_name(convolution_kernel)
    if not name:
        return KernelClass(UNKNOWN, "")
    vendor = vendor_of(manufacturer)
    candidates: Sequence[Vendor] = (vendor,) if vendor is not None else VENDORS
    found = {(v.name, kind) for v in candidates if (kind := v.classify(name)) is not None}
    kinds = {kind for _, kind in found}
    if len(kinds) != 1:
        return KernelClass(UNKNOWN, name)
    (kind,) = kinds
    return KernelClass(kind, name, " or ".join(sorted(v for v, _ in found)))
