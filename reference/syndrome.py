"""What the stub observes for each outcome of an access probe: the syndrome,
fault-address and return-address registers of an abort, or the values a
completed access hands back -- field by field, each tagged with the rule
that decides it.

An outcome (reference.access.AccessOutcome) becomes one or more
``Expectation``s: a where-it-ended (``Taken``) and a tuple of ``FieldRule``
-- bits [hi:lo] of one observed slot (ESR, FAR, HPFAR, ELR, vector offset,
the two data words) with the value the architecture fixes, or ``None``
where it leaves the bits UNKNOWN or IMPLEMENTATION DEFINED.  A coupled
choice (an IMPLEMENTATION DEFINED ISV with its instruction syndrome) is
two Expectations, not two don't-cares.

Sources (Sail translation of the Arm ASL, rems-project/sail-arm
arm-v9.4-a, v8_base.sail; register text from DDI 0487, D24.2.46 ESR_EL2,
D24.2.49 FAR_EL2, D24.2.76 HPFAR_EL2, G8.2.74 HSR):

- AArch64.DataAbort / AArch64.InstructionAbort: a stage-2 fault of an EL1
  access is taken to EL2 (route_to_el2 = IsSecondStage(fault)); a stage-1
  fault (stage 1 off: Address size beyond PAMax, Alignment on Device) to
  EL1.  Preferred return: ThisInstrAddr -- the faulting access, or the
  fetched address.
- AArch64.ExceptionClass: Data Abort 0x24, Instruction Abort 0x20, +1
  when taken to the current EL; IL = 1 for A64.  AArch64.ReportException:
  IL = 1 for EC 0x24/0x25 with ISV = 0; FAR_ELx = the faulting VA; when
  IPAValid(fault), HPFAR_EL2<47:4> = IPA<55:12> and HPFAR_EL2.NS = 0
  (Non-secure), else HPFAR_EL2<47:4> UNKNOWN.
- IPAValid: for a stage-2 fault not on a stage-1 walk, Access flag,
  Translation and Address size only (not Permission, not Alignment, not
  an External abort on the walk).
- AArch64.FaultSyndrome: ISS<24:14> = LSInstructionSyndrome() for a
  stage-2 fault not on a stage-1 walk that is not a synchronous External
  abort (on the walk: IMPLEMENTATION DEFINED without FEAT_RAS, 0 with it);
  CM (bit 8) and WnR = 1 only for DC/IC/AT (DC ZVA is AccessType_DCZero,
  not DC); otherwise WnR = fault.write; EA = fault.extflag for External
  aborts, else 0; S1PTW = fault.s2fs1walk; DFSC = EncodeLDFSC.
- LSInstructionSyndrome (the ISS rules of ESR_EL2 and HSR): ISV per
  reference.access.instruction_syndrome_valid; SAS = log2(size); SSE for
  sign-extending byte/halfword/word loads, else 0; SRT = Rt; SF = 64-bit
  register (AArch64 only); AR = acquire/release (ARMv8).
- AArch32.FaultSyndrome / AArch32.ReportHypEntry: HSR = EC:IL:ISS, HDFAR
  (data) or HIFAR (prefetch) = VA<31:0>, HPFAR<31:4> = IPA<39:12> when
  IPAValid.  ARMv7 differences, as permitted sets: HSR.IL is UNK for a
  Prefetch Abort and for a Data Abort without a valid syndrome (ARMv8:
  RES1); ARMv7 has no AR bit; an ARMv7 Address size fault (descriptor bits
  [47:40], UNPREDICTABLE there) leaves HPFAR unconstrained.
"""
from __future__ import annotations

import dataclasses
import enum

from . import rules as R
from .access import (
    AbortRecord,
    AbortStatus,
    AccessKind,
    AccessOp,
    AccessOutcome,
    Taken,
    instruction_syndrome_valid,
)
from .arch import Arch
from .bits import field, mask
from .cpus import CpuModel
from .outcome import encode_fsc

FSC_ALIGNMENT = 0b100001


class Slot(enum.Enum):
    """The words of a result record an access probe fills (docs/job-abi.md)."""

    ESR = "esr"         # ESR_EL2 / HSR; ESR_EL1 for an EL1 abort; the HVC's syndrome on completion
    FAR = "far"         # FAR_EL2 / HDFAR / HIFAR; FAR_EL1 for an EL1 abort
    HPFAR = "hpfar"     # HPFAR_EL2 / HPFAR
    ELR = "elr"         # ELR_EL2 / ELR_hyp; ELR_EL1 for an EL1 abort
    VECTOR = "vector"   # vector offset the stub was entered at
    DATA0 = "data0"     # first value the routine hands back
    DATA1 = "data1"     # second value (pair, Q register, store-exclusive status)


@dataclasses.dataclass(frozen=True)
class FieldRule:
    """Bits [hi:lo] of ``slot`` (architectural name ``register``.``name``)
    must equal ``value``; ``None``: UNKNOWN / IMPLEMENTATION DEFINED, not
    compared.  ``rule``: the pseudocode or register text that decides it."""

    slot: Slot
    register: str
    name: str
    hi: int
    lo: int
    value: int | None
    rule: str

    def observed(self, raw: int) -> int:
        return field(raw, self.hi, self.lo)

    def matches(self, raw: int) -> bool:
        return self.value is None or self.observed(raw) == self.value

    def describe(self) -> str:
        bits = f"[{self.hi}]" if self.hi == self.lo else f"[{self.hi}:{self.lo}]"
        want = "any (not compared)" if self.value is None else f"{self.value:#x}"
        return f"{self.register}.{self.name}{bits} = {want}  ({self.rule})"


@dataclasses.dataclass(frozen=True)
class Expectation:
    """One observation the architecture permits for an access probe."""

    taken: Taken
    fields: tuple[FieldRule, ...]
    outcome: AccessOutcome
    rules: tuple[str, ...] = ()

    def mismatches(self, taken: Taken, words: dict[Slot, int]) -> list[tuple[FieldRule, int | None]]:
        """The fields an observation (where it ended, the slot values)
        disagrees with, with the observed field value; [] when it matches.
        A different ``taken`` is reported as a mismatch of every field."""
        if taken is not self.taken:
            return [(f, None) for f in self.fields]
        return [(f, f.observed(words[f.slot])) for f in self.fields if not f.matches(words[f.slot])]

    def pattern(self, slot: Slot) -> tuple[int, int]:
        """(value, care mask) the fields put on ``slot``."""
        value = care = 0
        for f in self.fields:
            if f.slot is slot and f.value is not None:
                care |= mask(f.hi, f.lo)
                value |= f.value << f.lo
        return value, care

    def describe(self) -> str:
        return f"{self.taken.value}: {self.outcome.describe()}"


@dataclasses.dataclass(frozen=True)
class ProbeAddresses:
    """Addresses the prediction needs, as the EL1 (PL1) routine sees them
    (stage 1 off: VA = IPA).  ``va``: the address in the routine's base
    register (the probe's IPA); ``insns``: the address of each access
    instruction of the routine (where the image maps the stub's EL1 window,
    plus the instruction's offset in it)."""

    va: int
    insns: tuple[int, ...]


def encode_ldfsc(status: AbortStatus, level: int | None) -> int:
    """EncodeLDFSC: the 6-bit long-descriptor fault status code."""
    if status is AbortStatus.ALIGNMENT:
        return FSC_ALIGNMENT
    assert status.fault_kind is not None and level is not None
    return encode_fsc(status.fault_kind, level)


def ipa_valid(abort: AbortRecord) -> bool:
    """IPAValid(fault): whether HPFAR gets the faulting IPA."""
    if abort.s2fs1walk:
        return abort.status in (AbortStatus.ACCESS_FLAG, AbortStatus.PERMISSION,
                                AbortStatus.TRANSLATION, AbortStatus.ADDRESS_SIZE)
    if abort.secondstage:
        return abort.status in (AbortStatus.ACCESS_FLAG, AbortStatus.TRANSLATION,
                                AbortStatus.ADDRESS_SIZE)
    return False


def feat_ras(cpu: CpuModel) -> bool:
    """FEAT_RAS: ID_AA64PFR0_EL1.RAS [31:28] >= 1, or ID_PFR0.RAS [31:28]
    >= 1 for AArch32 (0, reserved, on ARMv7)."""
    if cpu.arch is Arch.AARCH64:
        return field(cpu.reg("ID_AA64PFR0_EL1"), 31, 28) >= 1
    return field(cpu.reg("ID_PFR0"), 31, 28) >= 1


def _isv_choices(cpu: CpuModel, kind: AccessKind, abort: AbortRecord) -> list[tuple[bool, str]]:
    """(ISV, rule) alternatives for a Data Abort taken to EL2 (Hyp)."""
    spec = kind.spec
    if not abort.secondstage or abort.s2fs1walk:
        return [(False, R.SYN_ISV["not-stage2"].text(
            "AArch64/AArch32.FaultSyndrome: no instruction syndrome for a fault "
            "that is not a stage-2 fault or is on a stage-1 walk"))]
    syndrome = instruction_syndrome_valid(spec)
    why = (R.SYN_ISV["valid"].text(
               "ISV: a single general-purpose register load/store without writeback")
           if syndrome else R.SYN_ISV["invalid"].text(
               "ISV: 0 for pairs, multiple and SIMD&FP registers, exclusives, writeback and "
               "cache maintenance (no AArch64.SetLSInstructionSyndrome)"))
    if abort.external:
        ras = feat_ras(cpu)
        if ras:
            return [(False, R.SYN_ISV["ras"].text(
                "ISV: 0 for any synchronous External abort with FEAT_RAS"))]
        if not syndrome:
            return [(False, why)]
        return [(False, R.SYN_ISV["impdef-0"].text(
                    "IMPLEMENTATION DEFINED (no FEAT_RAS): ISV 0 on an External abort on "
                    "the stage-2 walk")),
                (True, R.SYN_ISV["impdef-1"].text(
                    "IMPLEMENTATION DEFINED (no FEAT_RAS): ISV 1 on an External abort on "
                    "the stage-2 walk"))]
    return [(syndrome, why)]


def _iss_syndrome_fields(arch: Arch, cpu: CpuModel, kind: AccessKind, isv: bool, reg: str,
                         abort: AbortRecord, isv_rule: str) -> list[FieldRule]:
    """ISS<24:14> of a Data Abort: ISV and, when it is 1, SAS/SSE/SRT/SF/AR;
    when it is 0, those bits are RES0 (TopLevel, WU, FnP, PFV aside)."""
    spec = kind.spec
    e = Slot.ESR
    out = [FieldRule(e, reg, "ISV", 24, 24, int(isv), isv_rule)]
    if isv:
        sas = {1: 0, 2: 1, 4: 2, 8: 3}[spec.size]
        sse = int(spec.signed and spec.op is AccessOp.LOAD and spec.size < 8)
        out += [FieldRule(e, reg, "SAS", 23, 22, sas, f"LSInstructionSyndrome: {spec.size}-byte access"),
                FieldRule(e, reg, "SSE", 21, 21, sse,
                          "LSInstructionSyndrome: sign-extending byte/halfword/word load"
                          if sse else "LSInstructionSyndrome: SSE is 0 for all other operations")]
        if arch is Arch.AARCH64:
            out += [FieldRule(e, reg, "SRT", 20, 16, spec.rt, f"LSInstructionSyndrome: Rt = {spec.rt}"),
                    FieldRule(e, reg, "SF", 15, 15, int(spec.reg64),
                              "LSInstructionSyndrome: 64-bit register" if spec.reg64 else
                              "LSInstructionSyndrome: 32-bit register"),
                    FieldRule(e, reg, "AR", 14, 14, int(spec.acqrel),
                              "LSInstructionSyndrome: acquire/release semantics"
                              if spec.acqrel else "LSInstructionSyndrome: no acquire/release")]
        else:
            ar_rule = ("LSInstructionSyndrome: acquire/release semantics" if spec.acqrel else
                       "LSInstructionSyndrome: no acquire/release" if cpu.arch_version >= 8 else
                       "ARMv7 HSR: no AR bit, reserved")
            out += [FieldRule(e, reg, "RES0", 20, 20, 0, "HSR bit 20 RES0"),
                    FieldRule(e, reg, "SRT", 19, 16, spec.rt, f"LSInstructionSyndrome: Rt = {spec.rt}"),
                    FieldRule(e, reg, "RES0", 15, 15, 0, "HSR bit 15 RES0"),
                    FieldRule(e, reg, "AR", 14, 14, int(spec.acqrel), ar_rule)]
        return out
    res0 = "ISV = 0: ISS[23:14] RES0"
    if arch is Arch.AARCH64 and abort.external and feat_ras(cpu):
        # With FEAT_RASv2 bits [17:16] are WU and with FEAT_PFAR bit 14 PFV
        # for an External abort; the model decodes neither feature, only
        # that a CPU without FEAT_RAS has neither.
        return out + [FieldRule(e, reg, "ISS[23:18]", 23, 18, 0, res0),
                      FieldRule(e, reg, "WU", 17, 16, None,
                                "ISV = 0 External abort: WU (FEAT_RASv2) IMPLEMENTATION DEFINED"),
                      FieldRule(e, reg, "FnP", 15, 15, 0, res0),
                      FieldRule(e, reg, "PFV", 14, 14, None,
                                "ISV = 0 External abort: PFV (FEAT_PFAR) IMPLEMENTATION DEFINED")]
    return out + [FieldRule(e, reg, "ISS[23:14]", 23, 14, 0,
                            res0 + " (TopLevel needs FEAT_THE, FnP SVE/SME, PFV an External abort)")]


def _zero_extended(slot: Slot, reg: str) -> FieldRule:
    return FieldRule(slot, reg, "[63:32]", 63, 32, 0, "32-bit register, zero-extended by the stub")


def _abort_to_el2(cpu: CpuModel, kind: AccessKind, outcome: AccessOutcome, addrs: ProbeAddresses
                  ) -> list[Expectation]:
    """AArch64.DataAbort/InstructionAbort to EL2, AArch64.AbortSyndrome,
    AArch64.ReportException (and AArch32.ReportHypEntry for Hyp)."""
    abort = outcome.abort
    assert abort is not None
    spec = kind.spec
    arch = spec.arch
    fetch = spec.op is AccessOp.IFETCH
    va = addrs.va
    elr = va if fetch else addrs.insns[outcome.insn]
    out = []
    for isv, isv_rule in ([(False, "")] if fetch else _isv_choices(cpu, kind, abort)):
        if arch is Arch.AARCH64:
            fields = _aarch64_esr(cpu, kind, abort, fetch, isv, isv_rule, "ESR_EL2", to_el2=True)
            fields += [FieldRule(Slot.FAR, "FAR_EL2", "VA", 63, 0, va,
                                 "AArch64.ReportException: FAR_EL2 = the faulting VA (= IPA, stage 1 off)"),
                       FieldRule(Slot.ELR, "ELR_EL2", "", 63, 0, elr,
                                 "preferred return: ThisInstrAddr (the faulting instruction)"
                                 if not fetch else "preferred return: the fetched address"),
                       FieldRule(Slot.VECTOR, "VBAR_EL2", "offset", 63, 0, 0x400,
                                 "synchronous exception from a lower EL using AArch64")]
            fields += _hpfar_aarch64(abort, va)
        else:
            fields = _aarch32_hsr(cpu, kind, abort, fetch, isv, isv_rule)
            far = "HIFAR" if fetch else "HDFAR"
            fields += [_zero_extended(Slot.FAR, far),
                       FieldRule(Slot.FAR, far, "VA", 31, 0, va,
                                 f"AArch32.ReportHypEntry: {far} = the faulting VA (= IPA, stage 1 off)"),
                       _zero_extended(Slot.ELR, "ELR_hyp"),
                       FieldRule(Slot.ELR, "ELR_hyp", "", 31, 0, elr,
                                 "preferred return: the faulting instruction"
                                 if not fetch else "preferred return: the fetched address"),
                       FieldRule(Slot.VECTOR, "HVBAR", "offset", 63, 0, 0x14,
                                 "exception from a Non-secure PL1 mode taken to Hyp mode: Hyp trap entry")]
            fields += _hpfar_aarch32(cpu, abort, va)
        out.append(Expectation(Taken.EL2, tuple(fields), outcome,
                               outcome.rules + ((isv_rule,) if isv_rule else ())))
    return out


def _aarch64_esr(cpu: CpuModel, kind: AccessKind, abort: AbortRecord, fetch: bool, isv: bool,
                 isv_rule: str, reg: str, to_el2: bool) -> list[FieldRule]:
    """ESR_ELx of an abort from EL1 (AArch64.ExceptionClass, AArch64.FaultSyndrome)."""
    e = Slot.ESR
    if to_el2:
        ec = 0x20 if fetch else 0x24
        ec_rule = "AArch64.ExceptionClass: taken from a lower EL"
    else:
        ec = 0x21 if fetch else 0x25
        ec_rule = "AArch64.ExceptionClass: taken to the current EL (+1)"
    what = "Instruction Abort" if fetch else "Data Abort"
    out = [FieldRule(e, reg, "RES0", 63, 56, 0, "ESR_ELx[63:56] RES0"),
           FieldRule(e, reg, "ISS2", 55, 32, 0,
                     "AArch64.FaultSyndrome: ISS2 only for LS64/GCS/THE/POE/PIE/MTE faults, none enabled"),
           FieldRule(e, reg, "EC", 31, 26, ec, f"{ec_rule}: {what}"),
           FieldRule(e, reg, "IL", 25, 25, 1,
                     "AArch64.ExceptionClass: IL is 1 for an Instruction Abort" if fetch else
                     "AArch64.ReportException: IL = 1 (ISV = 0) / 32-bit A64 instruction")]
    if fetch:
        return out + [FieldRule(e, reg, "RES0", 24, 13, 0,
                                "Instruction Abort ISS[24:13] RES0 (TopLevel needs FEAT_THE)"),
                      FieldRule(e, reg, "SET", 12, 11, 0,
                                "AArch64.FaultSyndrome: SET only for a synchronous External abort (0x10)")
                      ] + _iss_low(reg, abort, fetch, "AArch64")
    out += _iss_syndrome_fields(Arch.AARCH64, cpu, kind, isv, reg, abort, isv_rule
                                or "ESR_EL1: ISV is 0 but for FEAT_LS64 accesses")
    return out + [FieldRule(e, reg, "VNCR", 13, 13, 0, "not an access through VNCR_EL2"),
                  FieldRule(e, reg, "LST/SET", 12, 11, 0,
                            "AArch64.FaultSyndrome: LST only for LS64, SET only for SyncExternal (0x10)")
                  ] + _iss_low(reg, abort, fetch, "AArch64")


def _iss_low(reg: str, abort: AbortRecord, fetch: bool, state: str) -> list[FieldRule]:
    """ISS[10:0] of an abort, the same in ESR_ELx and HSR: FnV, EA, CM
    (Data Abort) or RES0, S1PTW, WnR (Data Abort) or RES0, and the fault
    status code (``state``.FaultSyndrome)."""
    e = Slot.ESR
    fsc = FieldRule(e, reg, "IFSC" if fetch else "DFSC", 5, 0, encode_ldfsc(abort.status, abort.level),
                    f"EncodeLDFSC({abort.status.value}, level {abort.level})")
    if fetch:
        cm = FieldRule(e, reg, "RES0", 8, 8, 0, "Instruction/Prefetch Abort ISS[8] RES0")
        wnr = FieldRule(e, reg, "RES0", 6, 6, 0, "Instruction/Prefetch Abort ISS[6] RES0")
    else:
        cm = FieldRule(e, reg, "CM", 8, 8, 0,
                       f"{state}.FaultSyndrome: CM only for AccessType DC/IC/AT (DC ZVA is DCZero)")
        wnr = FieldRule(e, reg, "WnR", 6, 6, int(abort.write),
                        f"{state}.FaultSyndrome: WnR = fault.write "
                        + ("(a store, DC ZVA or the store-exclusive)" if abort.write else "(a read)"))
    return [FieldRule(e, reg, "FnV", 10, 10, 0, "FnV: RES0 unless the FSC is 0b010000"),
            FieldRule(e, reg, "EA", 9, 9, None if abort.external else 0,
                      "EA: IMPLEMENTATION DEFINED classification of an External abort"
                      if abort.external else "EA: 0 for an abort that is not an External abort"),
            cm,
            FieldRule(e, reg, "S1PTW", 7, 7, int(abort.s2fs1walk),
                      f"{state}.FaultSyndrome: S1PTW = fault.s2fs1walk"),
            wnr, fsc]


def _hpfar_aarch64(abort: AbortRecord, ipa: int) -> list[FieldRule]:
    """AArch64.ReportException: HPFAR_EL2<47:4> = ipaddress<55:12> and NS =
    0 when IPAValid, else <47:4> UNKNOWN (and NS not written)."""
    valid = ipa_valid(abort)
    why = ("IPAValid: Translation/Access flag/Address size fault at stage 2"
           if valid else f"IPAValid is FALSE for a {abort.status.value} fault: HPFAR_EL2 UNKNOWN")
    return [FieldRule(Slot.HPFAR, "HPFAR_EL2", "NS", 63, 63, 0 if valid else None,
                      "AArch64.ReportException: NS = 0 outside Secure EL2" if valid else why),
            FieldRule(Slot.HPFAR, "HPFAR_EL2", "RES0", 62, 48, 0, "HPFAR_EL2[62:48] RES0"),
            FieldRule(Slot.HPFAR, "HPFAR_EL2", "FIPA", 47, 4, field(ipa, 55, 12) if valid else None,
                      "AArch64.ReportException: HPFAR_EL2<47:4> = IPA<55:12>" if valid else why),
            FieldRule(Slot.HPFAR, "HPFAR_EL2", "RES0", 3, 0, 0, "HPFAR_EL2[3:0] RES0")]


def _hpfar_aarch32(cpu: CpuModel, abort: AbortRecord, ipa: int) -> list[FieldRule]:
    """AArch32.ReportHypEntry: HPFAR<31:4> = ipaddress<39:12> when IPAValid."""
    valid = ipa_valid(abort)
    if valid and cpu.arch_version < 8 and abort.status is AbortStatus.ADDRESS_SIZE:
        fipa, why = None, ("ARMv7 LPAE: descriptor address bits [47:40] non-zero is "
                           "UNPREDICTABLE, HPFAR not constrained")
    elif valid:
        fipa, why = field(ipa, 39, 12), "AArch32.ReportHypEntry: HPFAR<31:4> = IPA<39:12>"
    else:
        fipa, why = None, f"IPAValid is FALSE for a {abort.status.value} fault: HPFAR<31:4> UNKNOWN"
    return [_zero_extended(Slot.HPFAR, "HPFAR"),
            FieldRule(Slot.HPFAR, "HPFAR", "FIPA", 31, 4, fipa, why),
            FieldRule(Slot.HPFAR, "HPFAR", "RES0", 3, 0, 0, "HPFAR[3:0] RES0")]


def _aarch32_hsr(cpu: CpuModel, kind: AccessKind, abort: AbortRecord, fetch: bool, isv: bool,
                 isv_rule: str) -> list[FieldRule]:
    """HSR of an abort from PL1 taken to Hyp (AArch32.ExceptionClass,
    AArch32.FaultSyndrome, AArch32.ReportHypEntry)."""
    e, reg = Slot.ESR, "HSR"
    v7 = cpu.arch_version < 8
    if fetch or not isv:
        il = FieldRule(e, reg, "IL", 25, 25, None if v7 else 1,
                       "ARMv7 HSR: IL is UNK for a Prefetch Abort or a Data Abort without a valid ISS"
                       if v7 else "HSR.IL RES1 for a Prefetch Abort / a Data Abort with ISV = 0")
    else:
        il = FieldRule(e, reg, "IL", 25, 25, 1, "AArch32.ExceptionClass: 32-bit A32 instruction")
    out = [_zero_extended(e, reg),
           FieldRule(e, reg, "EC", 31, 26, 0x20 if fetch else 0x24,
                     "AArch32.ExceptionClass: Prefetch Abort from a lower mode" if fetch else
                     "AArch32.ExceptionClass: Data Abort from a lower mode"),
           il]
    if fetch:
        return out + [FieldRule(e, reg, "RES0", 24, 11, 0, "HSR Prefetch Abort ISS[24:11] RES0")
                      ] + _iss_low(reg, abort, fetch, "AArch32")
    out += _iss_syndrome_fields(Arch.AARCH32, cpu, kind, isv, reg, abort, isv_rule)
    return out + [FieldRule(e, reg, "RES0", 13, 11, 0, "HSR ISS[13:11] RES0 for a synchronous Data Abort")
                  ] + _iss_low(reg, abort, fetch, "AArch32")


def _abort_to_el1(cpu: CpuModel, kind: AccessKind, outcome: AccessOutcome, addrs: ProbeAddresses
                  ) -> list[Expectation]:
    """A stage-1 fault (stage 1 off: Address size beyond PAMax; Alignment of
    DC ZVA on Device memory) taken to EL1, where the stub's EL1 vectors hand
    ESR_EL1/FAR_EL1/ELR_EL1 over with HVC.  AArch64 only: the AArch32 PL1
    routines take no stage-1 fault (IPAs below 4 GiB, aligned)."""
    abort = outcome.abort
    assert abort is not None and kind.arch is Arch.AARCH64
    fetch = kind.spec.op is AccessOp.IFETCH
    elr = addrs.va if fetch else addrs.insns[outcome.insn]
    fields = _aarch64_esr(cpu, kind, abort, fetch, False, "", "ESR_EL1", to_el2=False)
    fields += [FieldRule(Slot.FAR, "FAR_EL1", "VA", 63, 0, addrs.va,
                         "AArch64.ReportException: FAR_EL1 = the faulting VA"
                         + (" (DC ZVA: AArch64.DataMemZero aborts at regval)"
                            if kind.spec.op is AccessOp.DC_ZVA else "")),
               FieldRule(Slot.ELR, "ELR_EL1", "", 63, 0, elr, "preferred return: ThisInstrAddr"),
               FieldRule(Slot.VECTOR, "VBAR_EL1", "offset", 63, 0, 0x200,
                         "synchronous exception to the current EL using SP_EL1")]
    return [Expectation(Taken.EL1, tuple(fields), outcome, outcome.rules)]


HVC_EC = {Arch.AARCH64: 0x16, Arch.AARCH32: 0x12}


def _completed(kind: AccessKind, outcome: AccessOutcome, addrs: ProbeAddresses) -> list[Expectation]:
    """A completed access: the routine's values, and the HVC it returns
    with: immediate 0 from the routine, 2 from the fetch target."""
    arch = kind.arch
    fetch = kind.spec.op is AccessOp.IFETCH
    reg = "ESR_EL2" if arch is Arch.AARCH64 else "HSR"
    imm = 2 if fetch else 0
    fields = [FieldRule(Slot.ESR, reg, "EC", 31, 26, HVC_EC[arch],
                        "HVC from AArch64 EL1" if arch is Arch.AARCH64 else "HVC from PL1"),
              FieldRule(Slot.ESR, reg, "IL", 25, 25, 1, "32-bit HVC instruction"),
              FieldRule(Slot.ESR, reg, "imm16", 15, 0, imm,
                        "the fetch target holds HVC #2" if fetch else "the routine ends with HVC #0")]
    if fetch:
        fields.append(FieldRule(Slot.ELR, "ELR_EL2" if arch is Arch.AARCH64 else "ELR_hyp", "",
                                63, 0, addrs.va + 4,
                                "HVC's preferred return is the next instruction: fetched at the target"))
    names = {Arch.AARCH64: ("x5", "x6"), Arch.AARCH32: ("r5", "r6")}[arch]
    for slot, name, value in zip((Slot.DATA0, Slot.DATA1), names, outcome.values):
        fields.append(FieldRule(slot, name, "", 63, 0, value,
                                "the value loaded from the translated PA" if slot is Slot.DATA0
                                or kind.spec.op is not AccessOp.EXCLUSIVE else
                                "the store-exclusive status"))
    return [Expectation(Taken.COMPLETED, tuple(fields), outcome, outcome.rules)]


def predict_access(cpu: CpuModel, kind: AccessKind, outcome: AccessOutcome,
                   addrs: ProbeAddresses) -> list[Expectation]:
    """The observations the architecture permits for ``outcome`` of an
    access probe ``kind`` (a list: coupled IMPLEMENTATION DEFINED choices
    give more than one)."""
    if kind.arch is not cpu.arch:
        raise ValueError(f"{kind.name} does not run on {cpu.name} ({cpu.arch.value})")
    if outcome.taken is Taken.EL2:
        return _abort_to_el2(cpu, kind, outcome, addrs)
    if outcome.taken is Taken.EL1:
        return _abort_to_el1(cpu, kind, outcome, addrs)
    return _completed(kind, outcome, addrs)
