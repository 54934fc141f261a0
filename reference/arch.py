"""Basic enumerations shared by the whole model: execution state, granule,
and the address-translation instructions a probe can use."""
from __future__ import annotations

import enum


class Arch(enum.Enum):
    """Execution state that owns stage 2 (EL2 in AArch64, Hyp mode in AArch32)."""

    AARCH64 = "aarch64"
    AARCH32 = "arm"


class Granule(enum.Enum):
    """Translation granule.  ``value`` is log2 of the granule size in bytes."""

    G4K = 12
    G16K = 14
    G64K = 16

    @property
    def bits(self) -> int:
        """log2(granule size in bytes): 12, 14 or 16."""
        return self.value

    @property
    def stride(self) -> int:
        """IPA bits resolved per lookup level: a table is one granule of
        8-byte descriptors, so stride = granule bits - 3."""
        return self.value - 3

    @property
    def label(self) -> str:
        return {12: "4k", 14: "16k", 16: "64k"}[self.value]

    @classmethod
    def from_label(cls, text: str) -> "Granule":
        for g in cls:
            if g.label == text.lower():
                return g
        raise ValueError(f"unknown granule {text!r} (allowed: 4k, 16k, 64k)")


class AtKind(enum.Enum):
    """The stage 1+2 address-translation operation a probe executes.

    AArch64 names: AT S12E1R/S12E1W/S12E0R/S12E0W.  The AArch32 equivalents
    are ATS12NSOPR/ATS12NSOPW/ATS12NSOUR/ATS12NSOUW.  ``code`` is the value
    stored in the job file (docs/job-abi.md)."""

    S12E1R = 0
    S12E1W = 1
    S12E0R = 2
    S12E0W = 3

    @property
    def code(self) -> int:
        return self.value

    @property
    def is_write(self) -> bool:
        return self in (AtKind.S12E1W, AtKind.S12E0W)

    @property
    def el(self) -> int:
        return 0 if self in (AtKind.S12E0R, AtKind.S12E0W) else 1

    def name_for(self, arch: Arch) -> str:
        if arch is Arch.AARCH64:
            return f"AT {self.name}"
        return {
            AtKind.S12E1R: "ATS12NSOPR",
            AtKind.S12E1W: "ATS12NSOPW",
            AtKind.S12E0R: "ATS12NSOUR",
            AtKind.S12E0W: "ATS12NSOUW",
        }[self]
