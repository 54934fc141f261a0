"""Stage-1 (EL1&0) configuration as programmed, and the HCR_EL2 / HCR bits
that change how the two stages meet.

Like ``S2Config`` these records hold register values as written, legal or
not: translating under a bad value produces the architected fault or the
permitted set, never an exception.  The fields are the raw registers
(TCR_EL1, TTBR0_EL1, ...) because that is what a guest stub writes; the
properties decode them by the Arm ARM field names (DDI 0487 D19.2 for the
AArch64 registers, G8.2 for TTBCR/TTBR0/MAIR0/MAIR1/SCTLR).
"""
from __future__ import annotations

import dataclasses

from .arch import Granule
from .bits import bit, field, place
from .config import PS_ENCODING, TG0_ENCODING

# SCTLR_EL1 RES1 bits of ARMv8.0 (29, 28, 23, 22, 20, 11), as the stub
# programs them today (docs/job-abi.md).
SCTLR_EL1_RES1 = 0x30D0_0800
SCTLR_M = 1 << 0
SCTLR_C = 1 << 2
SCTLR_WXN = 1 << 19
SCTLR_UWXN = 1 << 20  # AArch32 SCTLR only

# TCR_EL1.TG1 encoding (differs from TG0: 0b10 4K, 0b01 16K, 0b11 64K).
TG1_ENCODING = {Granule.G4K: 0b10, Granule.G16K: 0b01, Granule.G64K: 0b11}

HCR_VM = 1 << 0
HCR_PTW = 1 << 2
HCR_DC = 1 << 12
HCR_RW = 1 << 31
HCR_EL2_CD = 1 << 32
HCR_EL2_ID = 1 << 33
HCR_EL2_FWB = 1 << 46
HCR2_CD = 1 << 0   # AArch32 HCR2
HCR2_ID = 1 << 1


@dataclasses.dataclass(frozen=True)
class Hcr:
    """The hypervisor-control bits that act on an EL1&0 translation with
    stage 2 enabled (VM = 1 always; RW = 1 on AArch64).

    PTW: a stage-1 walk that stage 2 maps as Device takes a stage-2
    Permission fault.  DC: stage 1 behaves as disabled and its output is
    Normal Write-Back.  CD: stage-2 Normal data accesses become
    Non-cacheable.  ID: the same for instruction fetches (no effect on AT).
    FWB (AArch64 only, FEAT_S2FWB): stage 2 forces the attributes
    (AArch64.S2ApplyFWBMemAttrs)."""

    ptw: int = 0
    dc: int = 0
    cd: int = 0
    id: int = 0
    fwb: int = 0

    def hcr_el2(self) -> int:
        """HCR_EL2: RW | VM plus the bits above."""
        return (HCR_RW | HCR_VM | self.ptw * HCR_PTW | self.dc * HCR_DC
                | self.cd * HCR_EL2_CD | self.id * HCR_EL2_ID | self.fwb * HCR_EL2_FWB)

    def hcr(self) -> int:
        """The AArch32 HCR: VM plus PTW and DC."""
        return HCR_VM | self.ptw * HCR_PTW | self.dc * HCR_DC

    def hcr2(self) -> int:
        """The AArch32 HCR2: CD and ID."""
        return self.cd * HCR2_CD | self.id * HCR2_ID

    @classmethod
    def from_hcr_el2(cls, value: int) -> "Hcr":
        return cls(ptw=bit(value, 2), dc=bit(value, 12), cd=bit(value, 32), id=bit(value, 33),
                   fwb=bit(value, 46))

    def describe(self) -> str:
        on = [n.upper() for n in ("ptw", "dc", "cd", "id", "fwb") if getattr(self, n)]
        return "HCR " + ("|".join(on) if on else "VM only")


@dataclasses.dataclass(frozen=True)
class S1Config:
    """AArch64 EL1&0 stage 1: TCR_EL1, TTBR0_EL1, TTBR1_EL1, MAIR_EL1 and
    the SCTLR_EL1 bits that act on translation (M, C, WXN)."""

    tcr: int
    ttbr0: int
    mair: int
    ttbr1: int = 0
    m: int = 1
    c: int = 1
    wxn: int = 0

    def sctlr_el1(self) -> int:
        return SCTLR_EL1_RES1 | self.m * SCTLR_M | self.c * SCTLR_C | self.wxn * SCTLR_WXN

    # TCR_EL1 fields (D19.2) ------------------------------------------------
    @property
    def t0sz(self) -> int: return field(self.tcr, 5, 0)
    @property
    def epd0(self) -> int: return bit(self.tcr, 7)
    @property
    def irgn0(self) -> int: return field(self.tcr, 9, 8)
    @property
    def orgn0(self) -> int: return field(self.tcr, 11, 10)
    @property
    def sh0(self) -> int: return field(self.tcr, 13, 12)
    @property
    def tg0(self) -> int: return field(self.tcr, 15, 14)
    @property
    def t1sz(self) -> int: return field(self.tcr, 21, 16)
    @property
    def epd1(self) -> int: return bit(self.tcr, 23)
    @property
    def irgn1(self) -> int: return field(self.tcr, 25, 24)
    @property
    def orgn1(self) -> int: return field(self.tcr, 27, 26)
    @property
    def sh1(self) -> int: return field(self.tcr, 29, 28)
    @property
    def tg1(self) -> int: return field(self.tcr, 31, 30)
    @property
    def ips(self) -> int: return field(self.tcr, 34, 32)
    @property
    def tbi0(self) -> int: return bit(self.tcr, 37)
    @property
    def tbi1(self) -> int: return bit(self.tcr, 38)
    @property
    def ha(self) -> int: return bit(self.tcr, 39)
    @property
    def hd(self) -> int: return bit(self.tcr, 40)
    @property
    def hpd0(self) -> int: return bit(self.tcr, 41)
    @property
    def hpd1(self) -> int: return bit(self.tcr, 42)
    @property
    def e0pd0(self) -> int: return bit(self.tcr, 55)
    @property
    def e0pd1(self) -> int: return bit(self.tcr, 56)
    @property
    def ds(self) -> int: return bit(self.tcr, 59)

    def mair_attr(self, index: int) -> int:
        """AArch64.MAIRAttr: Attr<index> of MAIR_EL1 (FEAT_AIE not modelled)."""
        return field(self.mair, 8 * index + 7, 8 * index)

    def describe(self) -> str:
        return (f"stage 1 aarch64 TCR_EL1={self.tcr:#x} TTBR0_EL1={self.ttbr0:#x} "
                f"TTBR1_EL1={self.ttbr1:#x} MAIR_EL1={self.mair:#018x} "
                f"SCTLR_EL1={self.sctlr_el1():#x}")


def tcr_el1(*, t0sz: int, tg0: int, ips: int, irgn0: int = 0b01, orgn0: int = 0b01,
            sh0: int = 0b11, epd0: int = 0, t1sz: int = 25, tg1: int = 0b10, epd1: int = 1,
            irgn1: int = 0b01, orgn1: int = 0b01, sh1: int = 0b11, tbi0: int = 0, tbi1: int = 0,
            ha: int = 0, hd: int = 0, hpd0: int = 0, hpd1: int = 0, e0pd0: int = 0,
            e0pd1: int = 0, ds: int = 0) -> int:
    """A TCR_EL1 value from its fields.  Defaults: TTBR1 walks disabled
    (EPD1 = 1) with a valid T1SZ/TG1, inner-shareable write-back walks."""
    return (place(t0sz, 5, 0) | place(epd0, 7, 7) | place(irgn0, 9, 8) | place(orgn0, 11, 10)
            | place(sh0, 13, 12) | place(tg0, 15, 14) | place(t1sz, 21, 16) | place(epd1, 23, 23)
            | place(irgn1, 25, 24) | place(orgn1, 27, 26) | place(sh1, 29, 28)
            | place(tg1, 31, 30) | place(ips, 34, 32) | place(tbi0, 37, 37) | place(tbi1, 38, 38)
            | place(ha, 39, 39) | place(hd, 40, 40) | place(hpd0, 41, 41) | place(hpd1, 42, 42)
            | place(e0pd0, 55, 55) | place(e0pd1, 56, 56) | place(ds, 59, 59))


def aarch64_s1_config(granule: Granule, va_bits: int, *, ips_bits: int, ttbr0: int, mair: int,
                      **fields: int) -> S1Config:
    """An S1Config for TTBR0 walks of ``granule`` over a ``va_bits`` VA
    space with output size ``ips_bits``; ``fields`` are further TCR_EL1
    fields (see :func:`tcr_el1`) or ``m``, ``c``, ``wxn``, ``ttbr1``."""
    sctlr = {k: fields.pop(k) for k in ("m", "c", "wxn", "ttbr1") if k in fields}
    tcr = tcr_el1(t0sz=64 - va_bits, tg0=TG0_ENCODING[granule], ips=PS_ENCODING[ips_bits], **fields)
    return S1Config(tcr=tcr, ttbr0=ttbr0, mair=mair, **sctlr)


@dataclasses.dataclass(frozen=True)
class S1ConfigA32:
    """AArch32 PL1&0 stage 1 with the Long-descriptor format: TTBCR (EAE
    must be 1 for this model), the 64-bit TTBR0/TTBR1, MAIR0/MAIR1 and the
    SCTLR bits M, C, WXN, UWXN."""

    ttbcr: int
    ttbr0: int
    mair0: int
    mair1: int = 0
    ttbr1: int = 0
    m: int = 1
    c: int = 1
    wxn: int = 0
    uwxn: int = 0

    def sctlr_bits(self) -> int:
        """The SCTLR bits to set (the stub sets them read-modify-write: the
        RES1 set differs between ARMv7 and ARMv8)."""
        return self.m * SCTLR_M | self.c * SCTLR_C | self.wxn * SCTLR_WXN | self.uwxn * SCTLR_UWXN

    @property
    def eae(self) -> int: return bit(self.ttbcr, 31)
    @property
    def t0sz(self) -> int: return field(self.ttbcr, 2, 0)
    @property
    def epd0(self) -> int: return bit(self.ttbcr, 7)
    @property
    def irgn0(self) -> int: return field(self.ttbcr, 9, 8)
    @property
    def orgn0(self) -> int: return field(self.ttbcr, 11, 10)
    @property
    def sh0(self) -> int: return field(self.ttbcr, 13, 12)
    @property
    def t1sz(self) -> int: return field(self.ttbcr, 18, 16)
    @property
    def epd1(self) -> int: return bit(self.ttbcr, 23)
    @property
    def sh1(self) -> int: return field(self.ttbcr, 29, 28)

    def mair_attr(self, index: int) -> int:
        """AArch32.MAIRAttr over MAIR1:MAIR0."""
        mair = self.mair1 << 32 | self.mair0
        return field(mair, 8 * index + 7, 8 * index)

    def describe(self) -> str:
        return (f"stage 1 arm LPAE TTBCR={self.ttbcr:#010x} TTBR0={self.ttbr0:#x} "
                f"TTBR1={self.ttbr1:#x} MAIR0={self.mair0:#010x} MAIR1={self.mair1:#010x} "
                f"SCTLR|={self.sctlr_bits():#x}")


TTBCR_EAE = 1 << 31


def ttbcr(*, t0sz: int, t1sz: int = 0, epd0: int = 0, epd1: int = 0, irgn0: int = 0b01,
          orgn0: int = 0b01, sh0: int = 0b11) -> int:
    """A TTBCR value with EAE = 1 (Long-descriptor translation tables)."""
    return (TTBCR_EAE | place(t0sz, 2, 0) | place(epd0, 7, 7) | place(irgn0, 9, 8)
            | place(orgn0, 11, 10) | place(sh0, 13, 12) | place(t1sz, 18, 16) | place(epd1, 23, 23))
