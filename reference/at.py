"""Address translation instructions with stage 1 enabled, executed at EL2
(Hyp mode) for the EL1&0 regime: what they may produce, and what PAR (or
the abort syndrome) shows for it.

``at(cpu, s2config, s1config, hcr, memory, va, op)`` follows AArch64.AT /
AArch32.AT (Sail rems-project/sail-arm arm-v9.4-a v8_base.sail): stage 1
(reference.stage1, with its table walk translated by stage 2), then for the
S12 operations AArch64.S2Translate / AArch32.S2Translate of the output IPA
(reference.walk) and the attribute combination (S2CombineS1MemAttrs, or
AArch64.S2ApplyFWBMemAttrs with HCR_EL2.FWB; HCR_EL2.CD).  It returns every
permitted outcome, each with its rules, writes and trace, like
reference.walk.walk.

``predict(arch, outcome, va)`` turns an outcome into what the instruction
shows, as AArch64.EncodePAR / AArch32.EncodePARLD write it: a PAR pattern
per permitted (ATTR, SH) report (ReportedPARAttrs / ReportedPARShareability,
reference.memattrs), a fault PAR with FST, PTW (bit 8) and S (bit 9), or,
for a synchronous External abort, the Data Abort an AT at EL2 takes
(AArch64.AT: IsExternalAbort -> AArch64.Abort).  Stage-2 faults on the
walk are reported in the PAR because the AT runs at EL2 (AArch64.AT takes
the abort for them only when PSTATE.EL is EL1).

``abort_syndrome(fault, va, ...)`` is what ESR_EL2, FAR_EL2 and HPFAR_EL2
hold when such a fault is taken to EL2 as a Data Abort (AArch64.AbortSyndrome,
AArch64.FaultSyndrome, IPAValid): the syndrome of an AT from EL1 or of a
guest access that meets a stage-2 fault on its stage-1 walk.
"""
from __future__ import annotations

import dataclasses

from . import rules as R
from .arch import Arch
from .bits import bit, mask
from .config import S2Config
from .cpus import CpuModel
from .memattrs import (
    MemAttrs,
    MemType,
    normal_nc_mem_attr,
    reported_par_attrs,
    reported_par_shareability,
    s2_apply_fwb_mem_attrs,
    s2_combine_s1_mem_attrs,
    s2_decode_mem_attrs,
)
from .memory import Memory
from .outcome import (
    Fault,
    FaultKind,
    NestedTranslation,
    Outcome,
    Translation,
    WalkResult,
    encode_fsc,
)
from .par import (
    EC_DABT_CUR,
    ESR_CM,
    ESR_IL,
    ESR_S1PTW,
    ESR_WNR,
    U64,
    Pattern,
    Prediction,
    Report,
    encode_par_fault,
    encode_par_success,
)
from .s1config import Hcr, S1Config, S1ConfigA32
from .stage1 import AtOp, S1Output, Stage2, aarch32_s1_translate_ld, aarch64_s1_translate, feat_xs
from .walk import aarch32_s2_translate, aarch64_s2_translate

EC_DABT_LOWER = 0x24  # Data Abort from a lower exception level
HPFAR_FIPA = mask(47, 4)


def at(cpu: CpuModel, s2config: S2Config, s1config: S1Config | S1ConfigA32, hcr: Hcr,
       memory: Memory, va: int, op: AtOp) -> WalkResult:
    """Every outcome the architecture permits for ``op`` at ``va``.

    ``s1config`` is S1Config for an AArch64 CPU and S1ConfigA32 (LPAE) for
    an AArch32 one; ``memory`` holds the stage-2 and the stage-1 tables at
    their PAs.  Identical outcomes reached under different choices are
    merged, their rules joined."""
    if s2config.arch is not cpu.arch:
        raise ValueError(f"{cpu.name} is {cpu.arch.value}, config is {s2config.arch.value}")
    s2 = Stage2(cpu, s2config, hcr, memory)
    if cpu.arch is Arch.AARCH64:
        if not isinstance(s1config, S1Config):
            raise ValueError("an AArch64 CPU needs an S1Config (TCR_EL1, TTBR0_EL1, MAIR_EL1)")
        stage1 = aarch64_s1_translate(s2, s1config, va, op)
    else:
        if not isinstance(s1config, S1ConfigA32):
            raise ValueError("an AArch32 CPU needs an S1ConfigA32 (TTBCR, TTBR0, MAIR0/1)")
        stage1 = aarch32_s1_translate_ld(s2, s1config, va & 0xFFFF_FFFF, op)
    outcomes: list[Outcome] = []
    for r in stage1:
        if isinstance(r, Outcome):
            outcomes.append(r)
        elif not op.stage12:
            outcomes.append(r.path.outcome(NestedTranslation(va, r.ipa, r.leaf, None, r.attrs),
                                           R.AT_S1_ONLY.text(
                                               f"{op.name_for(cpu.arch)}: stage 1 only, PAR "
                                               "holds the IPA")))
        else:
            outcomes.extend(s2_translate_final(s2, r, va, op))
    return merge_outcomes(outcomes)


def s2_translate_final(s2: Stage2, r: S1Output, va: int, op: AtOp) -> list[Outcome]:
    """AArch64.S2Translate / AArch32.S2Translate of the stage-1 output for
    an AT S12* (the AT access: read or write permission), then the
    attributes of the two stages combined (:func:`combined_attrs`).  A
    stage-2 fault carries the IPA."""
    translate = aarch64_s2_translate if s2.config.arch is Arch.AARCH64 else aarch32_s2_translate
    out: list[Outcome] = []
    for o in translate(s2.cpu, s2.config, s2.memory, r.ipa, op.s2_kind):
        path = r.path.add(o.rules, o.trace, o.writes)
        if isinstance(o.result, Fault):
            out.append(path.outcome(dataclasses.replace(o.result, ipa=r.ipa)))
            continue
        assert isinstance(o.result, Translation)
        leaf_desc = o.trace[-1].value or 0
        fnxs = bit(leaf_desc, 11) if feat_xs(s2.cpu) is True else 0
        for attrs, rules in combined_attrs(s2, r.attrs, o.result, fnxs):
            out.append(path.add(rules).outcome(NestedTranslation(va, r.ipa, r.leaf, o.result, attrs)))
    return out


def combined_attrs(s2: Stage2, s1: MemAttrs | None, t: Translation,
                   fnxs: int = 0) -> list[tuple[MemAttrs | None, tuple[str, ...]]]:
    """The final attributes of AArch64.S2Translate / AArch32.S2Translate:
    the stage-2 attributes (S2DecodeMemAttrs; with HCR_EL2.FWB already
    combined by AArch64.S2ApplyFWBMemAttrs), Normal made Non-cacheable by
    HCR_EL2.CD (HCR2.CD) for a data access, then, without FWB,
    S2CombineS1MemAttrs.  UNKNOWN stage-1 attributes stay UNKNOWN."""
    if s1 is None:
        return [(None, ())]
    aarch64 = s2.config.arch is Arch.AARCH64
    if s2.fwb:
        choices = [(m, (R.S2_FWB.text("AArch64.S2ApplyFWBMemAttrs (HCR_EL2.FWB = 1)"),) + r)
                   for m, r in s2_apply_fwb_mem_attrs(s1, t.memattr, t.sh, fnxs)]
    else:
        choices = s2_decode_mem_attrs(t.memattr, t.sh, fnxs)
    out: list[tuple[MemAttrs | None, tuple[str, ...]]] = []
    for m, rules in choices:
        if s2.hcr.cd and m.memtype is MemType.NORMAL:
            m = normal_nc_mem_attr(m.xs)
            rules = rules + (R.S2_CD.text(
                "AArch64.S2Translate: HCR_EL2.CD = 1, stage-2 Normal is Non-cacheable"),)
        if not s2.fwb:
            m = s2_combine_s1_mem_attrs(s1, m, aarch64)
            rules = rules + (R.S2_COMBINE.text("S2CombineS1MemAttrs"),)
        out.append((m, rules))
    return out


def merge_outcomes(outcomes: list[Outcome]) -> WalkResult:
    """One outcome per distinct (result, writes), rules of the duplicates
    appended (as reference.walk.walk does)."""
    merged: dict[tuple, Outcome] = {}
    for o in outcomes:
        key = (o.result, o.writes)
        prev = merged.get(key)
        if prev is None:
            merged[key] = o
        else:
            merged[key] = dataclasses.replace(
                prev, rules=prev.rules + tuple(r for r in o.rules if r not in prev.rules))
    return WalkResult(tuple(merged.values()))


# ---------------------------------------------------------------------------
# What the instruction shows
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Reported:
    """One observable form of an outcome, with the reporting choices
    (ReportedPARAttrs, ReportedPARShareability) that permit it."""

    prediction: Prediction
    rules: tuple[str, ...] = ()


PAR_ATTR = mask(63, 56)
PAR_SH = mask(8, 7)


def predict(cpu: CpuModel, outcome: Outcome, va: int) -> tuple[Reported, ...]:
    """What an AT with stage 1 on, executed at EL2 on ``cpu``, shows for
    ``outcome``.

    Translation: PAR with F = 0, the PA (or the IPA for AT S1E*), bit 11
    RES1, NS and bit 10 not cared, one pattern per permitted (SH, ATTR)
    pair; UNKNOWN attributes leave SH and ATTR not cared.  Fault: PAR with
    F = 1, FST = EncodeLDFSC(type, level), PTW, S, bit 11 RES1
    (AArch64.EncodePAR / AArch32.EncodePARLD).  Synchronous External abort
    on either stage's walk: the Data Abort to EL2 (:func:`abort_syndrome`)."""
    arch, result = cpu.arch, outcome.result
    if isinstance(result, Fault):
        if result.kind is FaultKind.SEA_ON_WALK:
            esr, hpfar = abort_syndrome(result, by_at=True, write=False, from_lower=False)
            if arch is Arch.AARCH32 and cpu.arch_version < 8:
                # ARMv7's HSR does not define IL for an abort without a valid syndrome.
                esr = Pattern(esr.value & ~ESR_IL, esr.care & ~ESR_IL)
            return (Reported(Prediction(Report.EXCEPTION, esr, far=va)),)
        return (Reported(Prediction(Report.PAR, encode_par_fault(arch, result))),)
    if isinstance(result, Translation):
        raise ValueError("a stage-2-only Translation: use reference.par.predict")
    out = []
    if result.attrs is None:
        base = encode_par_success(arch, result.output, sh=0, attr=0)
        pattern = Pattern(base.value, base.care & ~(PAR_ATTR | PAR_SH))
        return (Reported(Prediction(Report.PAR, pattern), (R.PAR_ATTRS_UNKNOWN.text(
            "attributes UNKNOWN: SH and ATTR not compared"),)),)
    for sh, sh_rules in reported_par_shareability(result.attrs):
        for attr, attr_rules in reported_par_attrs(result.attrs, feat_xs(cpu)):
            out.append(Reported(Prediction(Report.PAR, encode_par_success(arch, result.output, sh, attr)),
                                sh_rules + attr_rules))
    return tuple(out)


def abort_syndrome(fault: Fault, *, by_at: bool, write: bool,
                   from_lower: bool) -> tuple[Pattern, Pattern | None]:
    """ESR_EL2 (HSR) and HPFAR_EL2 (HPFAR) for ``fault`` taken to EL2 as a
    Data Abort (AArch64.AbortSyndrome / AArch64.FaultSyndrome, IPAValid).

    ESR: EC 0x25 from EL2 itself, 0x24 from EL1 (``from_lower``); IL 1
    (ISV = 0 here); CM = 1 and WnR = 1 for an AT (``by_at``), else WnR =
    ``write``; S1PTW = PTW; DFSC = EncodeLDFSC(type, level).  The
    instruction syndrome (ISV and ISS[23:14]) is compared only when it must
    be 0: for a fault on the stage-1 walk (FaultSyndrome gives it only for a
    stage-2 fault that is not on the walk); bit 9 (EA) and bits [12:11]
    (RAS) are not compared.  HPFAR_EL2.FIPA = IPA[51:12] when IPAValid (a
    stage-2 Translation, Access flag, Address size fault, and Permission on
    the walk); None when HPFAR is UNKNOWN (stage-1 faults, External aborts).
    FAR_EL2 is the VA."""
    wnr = by_at or write
    esr = (EC_DABT_LOWER if from_lower else EC_DABT_CUR) << 26 | ESR_IL | (ESR_CM if by_at else 0) \
        | (ESR_WNR if wnr else 0) | (ESR_S1PTW if fault.s1ptw else 0) \
        | encode_fsc(fault.kind, fault.level)
    care = mask(31, 25) | ESR_CM | ESR_WNR | ESR_S1PTW | mask(5, 0)
    if not fault.stage2 or fault.s1ptw:
        care |= mask(24, 14)  # ISV and the instruction syndrome are 0
    ipa_kinds = {FaultKind.ACCESS_FLAG, FaultKind.TRANSLATION, FaultKind.ADDRESS_SIZE}
    if fault.s1ptw:
        ipa_kinds.add(FaultKind.PERMISSION)
    hpfar = None
    if fault.stage2 and fault.kind in ipa_kinds and fault.ipa is not None:
        hpfar = Pattern((fault.ipa >> 12) << 4 & HPFAR_FIPA, HPFAR_FIPA)
    return Pattern(esr & U64, care), hpfar
