"""PAR codec: the PAR value (or the exception) an AT instruction produces
for an outcome, and the reverse.

AArch64 PAR_EL1 and the AArch32 64-bit (LPAE format) PAR, as
AArch64.EncodePAR / AArch32.EncodePARLD write them:

success (F = 0): PA in place (PAR_EL1 bits [51:12]; AArch32 bits [39:12]),
  bit 11 RES1 (AArch32: LPAE = 1), NS bit 9 UNKNOWN for a Non-secure
  regime, bit 10 IMPLEMENTATION DEFINED, SH bits [8:7], ATTR bits [63:56].
fault (F = 1): FST bits [6:1] = EncodeLDFSC(type, level), PTW bit 8 (a
  stage-2 fault on a stage-1 walk), S bit 9 (stage 2), bit 11 RES1, bits
  [63:48] IMPLEMENTATION DEFINED.

A synchronous External abort on the walk is not reported in the PAR: the
AT instruction takes a Data Abort (AArch64.AT), so its prediction is an
exception syndrome instead.

Memory attributes: the harness runs with stage 1 disabled and HCR_EL2.DC =
0 (HCR.DC = 0), so stage 1 yields Device-nGnRnE and the stage-2 combination
(S2CombineS1MemAttrs, FWB = 0) keeps it whatever the stage-2 MemAttr; a
Device result is reported with SH = 0b10 (PAREncodeShareability) and
ATTR = 0x00 (EncodePARAttrs).
"""
from __future__ import annotations

import dataclasses
import enum

from .arch import Arch
from .bits import bit, field, mask
from .outcome import Fault, FaultKind, Outcome, Translation, decode_fsc, encode_fsc

PAR_F = 1 << 0
PAR_PTW = 1 << 8
PAR_S = 1 << 9
PAR_NS = 1 << 9
PAR_IMPDEF10 = 1 << 10
PAR_RES1 = 1 << 11
U64 = (1 << 64) - 1

# Stage 1 off, HCR_EL2.DC = 0: Device-nGnRnE, reported outer shareable.
STAGE1_OFF_SH = 0b10
STAGE1_OFF_ATTR = 0x00

# ESR/HSR fields of a Data Abort (Arm ARM D19, ESR_EL2; G8, HSR).
EC_DABT_CUR = 0x25  # Data Abort taken without a change in exception level
ESR_IL = 1 << 25
ESR_CM = 1 << 8  # the abort came from a cache maintenance or AT instruction
ESR_WNR = 1 << 6  # always 1 for faults on AT instructions
ESR_S1PTW = 1 << 7


def pa_bits(arch: Arch) -> tuple[int, int]:
    """(hi, lo) of the PA field of the PAR."""
    return (51, 12) if arch is Arch.AARCH64 else (39, 12)


@dataclasses.dataclass(frozen=True)
class Pattern:
    """A register value the architecture permits: ``value`` on the bits of
    ``care``; the other bits are UNKNOWN or IMPLEMENTATION DEFINED."""

    value: int
    care: int

    def matches(self, raw: int) -> bool:
        return raw & self.care == self.value


class Report(enum.Enum):
    """How an AT instruction reports an outcome."""

    PAR = "par"
    EXCEPTION = "exception"


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The observable form of one permitted outcome: a PAR pattern, or an
    exception syndrome (ESR_EL2 / HSR) pattern and the fault address."""

    report: Report
    pattern: Pattern
    far: int | None = None


def encode_par_success(arch: Arch, pa: int, sh: int = STAGE1_OFF_SH,
                       attr: int = STAGE1_OFF_ATTR) -> Pattern:
    """AArch64.EncodePAR / AArch32.EncodePARLD for a translation: PA in
    place, bit 11 RES1 (LPAE), SH, ATTR; NS (UNKNOWN for a Non-secure
    regime) and bit 10 (IMPLEMENTATION DEFINED) not cared."""
    hi, lo = pa_bits(arch)
    value = (pa & mask(hi, lo)) | PAR_RES1 | sh << 7 | attr << 56
    return Pattern(value, U64 & ~(PAR_NS | PAR_IMPDEF10))


def encode_par_fault(arch: Arch, fault: Fault) -> Pattern:
    """AArch64.EncodePAR / AArch32.EncodePARLD for a fault: F, FST =
    EncodeLDFSC(type, level), PTW, S (stage 2), bit 11 RES1; bits [63:48]
    IMPLEMENTATION DEFINED, not cared."""
    value = (PAR_F | encode_fsc(fault.kind, fault.level) << 1
             | (PAR_PTW if fault.s1ptw else 0) | (PAR_S if fault.stage2 else 0) | PAR_RES1)
    return Pattern(value, mask(47, 0))


def predict(arch: Arch, outcome: Outcome, ipa: int, arch_version: int = 8) -> Prediction:
    """What an AT S12E* / ATS12NSO* probe of ``ipa`` shows for ``outcome``.

    The syndrome of a synchronous External abort on the walk: EC 0x25 (Data
    Abort without a change of exception level), CM = 1 and WnR = 1 (the
    abort came from an address translation instruction), S1PTW = 0, DFSC =
    EncodeLDFSC(SyncExternalOnWalk, level), and the fault address register
    holding the input address.  IL is 1 for a Data Abort with ISV = 0 from
    ARMv8 on; ARMv7's HSR does not define IL for such an abort, so it is
    not compared there."""
    result = outcome.result
    if isinstance(result, Translation):
        return Prediction(Report.PAR, encode_par_success(arch, result.pa))
    if not isinstance(result, Fault):
        raise ValueError("a stage-1-on outcome: its PAR comes from reference.at.predict")
    if result.kind is FaultKind.SEA_ON_WALK:
        esr = (EC_DABT_CUR << 26 | ESR_IL | ESR_CM | ESR_WNR
               | encode_fsc(result.kind, result.level))
        care = mask(31, 25) | ESR_CM | ESR_WNR | ESR_S1PTW | mask(5, 0)
        if arch is Arch.AARCH32 and arch_version < 8:
            care &= ~ESR_IL
            esr &= ~ESR_IL
        return Prediction(Report.EXCEPTION, Pattern(esr, care), far=ipa)
    return Prediction(Report.PAR, encode_par_fault(arch, result))


@dataclasses.dataclass(frozen=True)
class ParView:
    """A raw PAR decoded field by field."""

    raw: int
    f: int
    pa: int | None
    sh: int | None
    attr: int | None
    fst: int | None
    ptw: int | None
    s: int | None
    fault: tuple[FaultKind, int] | None

    def describe(self) -> str:
        if not self.f:
            return f"PAR {self.raw:#x}: PA {self.pa:#x} SH={self.sh:02b} ATTR={self.attr:#04x}"
        if self.fault is None:
            what = f"unknown FST {self.fst:#08b}"
        else:
            what = f"{'stage-2' if self.s else 'stage-1'} {self.fault[0].value} fault, level {self.fault[1]}"
        return f"PAR {self.raw:#x}: {what}{' PTW' if self.ptw else ''}"


def decode_par(arch: Arch, raw: int) -> ParView:
    """Decode a raw PAR_EL1 / 64-bit AArch32 PAR."""
    if raw & PAR_F:
        fst = field(raw, 6, 1)
        return ParView(raw=raw, f=1, pa=None, sh=None, attr=None, fst=fst, ptw=bit(raw, 8),
                       s=bit(raw, 9), fault=decode_fsc(fst))
    hi, lo = pa_bits(arch)
    return ParView(raw=raw, f=0, pa=raw & mask(hi, lo), sh=field(raw, 8, 7), attr=field(raw, 63, 56),
                   fst=None, ptw=None, s=None, fault=None)
