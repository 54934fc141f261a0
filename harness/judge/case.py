"""Judging a case, and a batch of cases, as results records
(harness.records, docs/results.md).

The named probes are judged one by one with the readable walker
(harness.judge.compare), the fan-out probes in bulk (harness.judge.bulk),
and the table memory after the run against the descriptor updates the
permitted outcomes allow; an access case step by step
(harness.judge.access).  Pure functions of the cases and the boot's
result.
"""
from __future__ import annotations

from collections.abc import Sequence

from reference.access_case import AccessCase
from reference.arch import AtKind
from reference.coverage import count_rules, result_rules
from reference.generate import Case
from reference.generate_s1 import S1Case
from reference.outcome import WalkResult

from ..kinds import RunCase
from ..plan import Batch
from ..qemu.boot import BatchResult, BatchStatus
from ..qemu.job import ImageResult, RawObservation, row_observation
from ..records import (
    BatchRecord,
    CaseCounts,
    CaseRecord,
    CaseStatus,
    Divergence,
    DivergenceRecord,
    Permitted,
    Record,
    Span,
)
from ..vocabulary import (
    FANOUT_AIM,
    DivergenceKind,
    memory_expected,
    memory_observed,
    memory_observed_text,
    memory_raw,
    observed_label,
    outcome_label,
    raw_observation,
)
from .access import judge_access_image
from .bulk import judge_fanout
from .compare import (
    MemoryChange,
    ProbeStatus,
    judge_memory,
    judge_probe,
    permitted_writes,
)
from .stage1 import judge_s1_image


def judge_batch(batch: Batch, cases: Sequence[RunCase], result: BatchResult) -> list[Record]:
    """The records of one executed batch: the batch record first, then per
    case its case record and its divergence records (without ``known``:
    harness.baseline.apply_baseline marks them)."""
    records: list[Record] = [BatchRecord(
        batch=batch.number, arch=batch.arch.value, cpu=batch.cpu, status=result.status,
        images=len(cases), images_done=result.images_done, elapsed=round(result.elapsed, 4),
        argv=tuple(result.argv), qemu_version=result.qemu_version,
        diagnostic=result.diagnostic)]
    for spec, case, image in zip(batch.specs, cases, result.images):
        counts, divergences = judge_any_case(case, image)
        records.append(CaseRecord(
            key=case.key, entry=spec.entry.name, group=spec.entry.group,
            arch=case.cpu.arch.value, cpu=case.cpu.name, vtcr=f"{case.config.vtcr():#x}",
            vttbr=f"{case.config.vttbr:#x}", valid=spec.entry.valid, kvm=spec.entry.kvm,
            batch=batch.number, status=case_status(result.status, image.completed, counts),
            probes=counts.probes, passed=counts.passed, diverged=counts.diverged,
            not_run=counts.not_run, rules=counts.rules))
        records += [DivergenceRecord.of(d, key=case.key, entry=spec.entry.name,
                                        group=spec.entry.group, batch=batch.number,
                                        qemu_version=result.qemu_version,
                                        argv=tuple(result.argv)) for d in divergences]
    return records


def judge_any_case(case: RunCase, image: ImageResult) -> tuple[CaseCounts, list[Divergence]]:
    """Counts and divergences of a case of any kind (harness.kinds): AT
    probes with fan-out (judge_case), access steps (harness.judge.access),
    stage-1-on AT probes (harness.judge.stage1)."""
    if isinstance(case, AccessCase):
        return judge_access_image(case, image)
    if isinstance(case, S1Case):
        return judge_s1_image(case, image)
    assert isinstance(case, Case), type(case)
    return judge_case(case, image)


def judge_case(case: Case, image: ImageResult) -> tuple[CaseCounts, list[Divergence]]:
    """Counts and divergences (without run context) for one case's
    observations: the named probes one by one with the readable walker,
    the fan-out probes in bulk.  The counts carry the rules every probe
    that ran reached (reference.coverage), whatever its verdict."""
    permitted = case.permitted()
    arch = case.cpu.arch
    named = len(case.probes)
    passed = diverged = not_run = 0
    divergences: list[Divergence] = []
    reached = []
    for i, (probe, res) in enumerate(zip(case.probes, permitted)):
        obs = row_observation(image.records[i])
        verdict = judge_probe(arch, res, probe.ipa, obs, case.cpu.arch_version)
        if verdict.status is not ProbeStatus.NOT_RUN:
            reached.append((result_rules(arch, res), 1))
        if verdict.status.passed:
            passed += 1
        elif verdict.status is ProbeStatus.NOT_RUN:
            not_run += 1
        else:
            diverged += 1
            divergences.append(_divergence(case, i, probe.ipa, probe.at, probe.aim, res, obs,
                                           verdict.observed))
    bulk = judge_fanout(case, image.records[named:])
    passed += bulk.passed
    not_run += bulk.not_run
    diverged += bulk.diverged
    for f in bulk.divergences:
        base, bits = case.fanout.spans[int(case.fanout.span[f.row])]
        divergences.append(_divergence(case, named + f.row, f.ipa, f.at, FANOUT_AIM, f.result,
                                       f.obs, f.text, count=f.count, ipas=f.ipas,
                                       span=Span(f"{base:#x}", bits)))
    if image.completed:
        before = tuple((r.pa, r.data) for r in case.image.regions)
        for change in judge_memory(before, image.regions_after,
                                   permitted_writes(permitted) + bulk.writes):
            diverged += 1
            divergences.append(_memory_divergence(case, permitted, change))
    rules = tuple(count_rules(reached + bulk.rules).items())
    return CaseCounts(named + len(case.fanout), passed, diverged, not_run, rules=rules), divergences


def case_status(batch_status: BatchStatus, completed: bool, counts: CaseCounts) -> CaseStatus:
    """A case diverges if any of its probes does; else it passes if its
    image completed; else it shares how its boot ended."""
    if counts.diverged:
        return CaseStatus.DIVERGE
    if completed:
        return CaseStatus.PASS
    return {BatchStatus.TIMEOUT: CaseStatus.TIMEOUT, BatchStatus.CRASHED: CaseStatus.CRASH,
            BatchStatus.GUEST_ERROR: CaseStatus.GUEST_ERROR}.get(batch_status, CaseStatus.NOT_RUN)


def _granule(case: Case) -> str | None:
    """The granule TG0 names (None for the reserved encoding)."""
    g = case.config.granule
    return g.label if g else None


def _permitted(result: WalkResult | None) -> tuple[Permitted, ...]:
    if result is None:
        return ()
    return tuple(Permitted(o.describe(), tuple(o.rules), tuple(t.describe() for t in o.trace))
                 for o in result.outcomes)


def _divergence(case: Case, index: int, ipa: int, at: AtKind, aim: str, res: WalkResult,
                obs: RawObservation, observed: str, count: int = 1,
                ipas: tuple[str, ...] | None = None, span: Span | None = None) -> Divergence:
    arch = case.cpu.arch
    return Divergence(
        kind=DivergenceKind.PROBE, probe=index, ipa=f"{ipa:#x}", at=at.name, aim=aim,
        arch=arch.value, cpu=case.cpu.name, granule=_granule(case),
        config=case.config.describe(), vtcr=f"{case.config.vtcr():#x}",
        vttbr=f"{case.config.vttbr:#x}",
        expected=tuple(sorted({outcome_label(o.result) for o in res.outcomes})),
        permitted=_permitted(res), observed=observed_label(arch, obs), observed_text=observed,
        raw=tuple(raw_observation(obs).items()), count=count, ipas=ipas, span=span)


def _memory_divergence(case: Case, permitted: Sequence[WalkResult],
                       change: MemoryChange) -> Divergence:
    """A descriptor write no permitted outcome allows; attributed to the
    first probe whose walk read that descriptor."""
    index = next((i for i, r in enumerate(permitted)
                  for o in r.outcomes for t in o.trace if t.address == change.pa), None)
    probe = case.probes[index] if index is not None else None
    return Divergence(
        kind=DivergenceKind.MEMORY, probe=index,
        ipa=f"{probe.ipa:#x}" if probe else None, at=probe.at.name if probe else None,
        aim=probe.aim if probe else "", arch=case.cpu.arch.value, cpu=case.cpu.name,
        granule=_granule(case), config=case.config.describe(),
        vtcr=f"{case.config.vtcr():#x}", vttbr=f"{case.config.vttbr:#x}",
        expected=(memory_expected(change.pa, change.before),),
        permitted=_permitted(permitted[index] if index is not None else None),
        observed=memory_observed(change.before, change.after),
        observed_text=memory_observed_text(change.pa, change.before, change.after),
        raw=tuple(memory_raw(change.pa, change.before, change.after).items()))
