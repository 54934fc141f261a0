"""Which architecture rules (reference.rules) a probe's permitted outcomes
apply, and the configuration class of a case.

A probe *reaches* a rule when the rule decides at least one of the
outcomes the architecture permits for it: the rules tagged on the outcome
(reference.rules.Rule), the descriptor type of each step of its walk trace
at that step's level, and the encoding the instruction shows for the
outcome (the PAR, or the Data Abort of an External abort on the walk).
What the emulator then did does not enter: coverage says what was put to
the test, the verdict says how it went.

Pure: no I/O.
"""
from __future__ import annotations

import collections
from typing import Iterable

from . import rules as R
from .arch import Arch, Granule
from .config import S2Config
from .cpus import CpuModel
from .outcome import (
    Fault,
    FaultKind,
    NestedTranslation,
    Outcome,
    TraceStep,
    Translation,
    WalkResult,
)
from .walk import (
    S2Params,
    aarch32_sl0_reserved,
    aarch64_block_desc_supported,
    aarch64_nss2_ttw_params,
    aarch64_s2_invalid_sl,
    aarch64_s2_start_level,
)

_DESC_KINDS = {d.value: d for d in R.Desc}


def trace_rule(arch: Arch, step: TraceStep) -> R.RuleId | None:
    """The descriptor-type rule of one walk step (None for a step that
    read no descriptor: no memory behind it, or never read)."""
    kind = _DESC_KINDS.get(step.kind)
    if kind is None:
        return None
    if arch is Arch.AARCH64:
        family = R.A64_S2_DESC if step.stage == 2 else R.A64_S1_DESC
    else:
        family = R.A32_S2_DESC if step.stage == 2 else R.A32_S1_DESC
    return family.get((kind, step.level))


def encoding_rule(arch: Arch, outcome: Outcome) -> R.RuleId | None:
    """The rule of what the instruction shows for ``outcome``: a PAR with
    a translation, a fault PAR (stage, PTW, FST), or the Data Abort an AT
    takes for a synchronous External abort on a walk."""
    a64 = arch is Arch.AARCH64
    result = outcome.result
    if isinstance(result, (Translation, NestedTranslation)):
        return R.PAR_A64_SUCCESS if a64 else R.PAR_A32_SUCCESS
    if not isinstance(result, Fault):
        return None
    if result.kind is FaultKind.SEA_ON_WALK:
        if not result.stage2:
            return R.ESR_S1_SEA[arch]
        return (R.ESR_A64_SEA if a64 else R.ESR_A32_SEA).get(result.level)
    if result.s1ptw:
        family = R.PAR_A64_PTW_FAULT if a64 else R.PAR_A32_PTW_FAULT
    elif result.stage2:
        family = R.PAR_A64_FAULT if a64 else R.PAR_A32_FAULT
    else:
        family = R.PAR_A64_S1_FAULT if a64 else R.PAR_A32_S1_FAULT
    return family.get((result.kind.value, result.level))


def outcome_rules(arch: Arch, outcome: Outcome) -> set[R.RuleId]:
    """Every rule that decides ``outcome``."""
    found = R.ids_of(outcome.rules)
    for step in outcome.trace:
        rid = trace_rule(arch, step)
        if rid is not None:
            found.add(rid)
    enc = encoding_rule(arch, outcome)
    if enc is not None:
        found.add(enc)
    return found


def result_rules(arch: Arch, result: WalkResult) -> frozenset[R.RuleId]:
    """The rules one probe reaches: those of every permitted outcome, and
    the ARMv7 UNPREDICTABLE rules that leave it unconstrained."""
    found = R.ids_of(result.unpredictable)
    for o in result.outcomes:
        found |= outcome_rules(arch, o)
    return frozenset(found)


def count_rules(per_probe: Iterable[tuple[frozenset[R.RuleId], int]]) -> dict[str, int]:
    """{rule key: probes} from (rules of a probe, how many probes had them)."""
    counts: collections.Counter[str] = collections.Counter()
    for ids, n in per_probe:
        for rid in ids:
            counts[rid.key] += n
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------------------
# Configuration classes
# ---------------------------------------------------------------------------

def config_class(cpu: CpuModel, config: S2Config) -> R.ConfigClass:
    """The class of ``config`` on ``cpu``: the granule TG0 names (None for
    the reserved encoding), the start level the SL fields give for it
    (None when AArch64.S2InvalidSL rejects them or AArch32 SL0 is
    reserved), the DS that acts (FEAT_LPA2 and 4K/16K only)."""
    if cpu.arch is Arch.AARCH32:
        start = None if aarch32_sl0_reserved(config.sl0) else 2 - config.sl0
        return R.ConfigClass(cpu.arch.value, Granule.G4K.label, start, 0, cpu.name)
    params = aarch64_nss2_ttw_params(cpu, config)[0][0]
    granule = config.granule
    start = None
    if granule is not None and aarch64_s2_invalid_sl(cpu, params) is None:
        start = aarch64_s2_start_level(params)
    return R.ConfigClass(cpu.arch.value, granule.label if granule else None, start,
                         params.ds, cpu.name)


def class_facts(cls: R.ConfigClass, cpu: CpuModel) -> R.ClassFacts:
    """The facts the rules' conditions read, for ``cls`` on ``cpu``: the
    levels at or below the start level where a block is allowed."""
    granule = next((g for g in Granule if g.label == cls.granule), None)
    if cpu.arch is Arch.AARCH32:
        blocks = frozenset({1, 2})
    elif granule is None:
        blocks = frozenset()
    else:
        # BlockDescSupported reads only the granule, DS and PAMax.
        params = S2Params(granule=granule, txsz=24, sl0=0, sl2=0, ds=cls.ds, ps=0, ha=0, hd=0)
        blocks = frozenset(lvl for lvl in range(-1, 3)
                           if aarch64_block_desc_supported(cpu, params, lvl))
    if cls.start_level is not None:
        # A walk from the start level never meets the levels above it.
        blocks = frozenset(lvl for lvl in blocks if lvl >= cls.start_level)
    return R.ClassFacts(cls, cpu, granule, blocks)
