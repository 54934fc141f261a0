"""Judging a stage-1-on case (reference.generate_s1.S1Case): every VA probe
against the outcomes reference.at.at permits, in the form reference.at.predict
says the AT shows them (a PAR per permitted (SH, ATTR) report, a fault PAR
with PTW and S, or the Data Abort of a synchronous External abort), and the
table memory (stage-1 and stage-2 descriptors) against the hardware
updates the permitted outcomes allow.  Pure.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from reference.at import predict
from reference.generate_s1 import S1Case
from reference.outcome import WalkResult
from reference.par import Prediction, Report

from ..qemu.job import ImageResult, ObsKind, RawObservation, row_observation
from ..records import CaseCounts, Divergence, Permitted
from ..vocabulary import (
    DivergenceKind,
    memory_expected,
    memory_observed,
    memory_observed_text,
    memory_raw,
    observed_label,
    outcome_label,
    par_difference,
    raw_observation,
)
from .compare import ProbeStatus, judge_memory, observation_matches, permitted_writes


@dataclasses.dataclass(frozen=True)
class S1Judgement:
    """One probe: its status, the outcomes it matched (indices) and, for a
    divergence, the PAR fields that differ from the nearest permitted
    report of the same form (empty when the form differs)."""

    status: ProbeStatus
    matched: tuple[int, ...]
    fields: tuple[str, ...] = ()


def judge_s1_probe(case: S1Case, result: WalkResult, va: int,
                   obs: RawObservation) -> S1Judgement:
    if obs.kind is ObsKind.NOT_RUN:
        return S1Judgement(ProbeStatus.NOT_RUN, ())
    reports = [(i, r.prediction) for i, o in enumerate(result.outcomes)
               for r in predict(case.cpu, o, va)]
    matched = tuple(sorted({i for i, p in reports if observation_matches(p, obs)}))
    if matched:
        return S1Judgement(ProbeStatus.PASS, matched)
    if result.permits_anything:
        return S1Judgement(ProbeStatus.UNPREDICTABLE, ())
    return S1Judgement(ProbeStatus.DIVERGE, (), _nearest_fields(case, reports, obs))


def _nearest_fields(case: S1Case, reports: list[tuple[int, Prediction]],
                    obs: RawObservation) -> tuple[str, ...]:
    """The fewest PAR fields an observed PAR differs in from a PAR report
    of the same kind (success or fault); () for an exception."""
    if obs.kind is not ObsKind.PAR:
        return ()
    best: list[str] | None = None
    for _, p in reports:
        if p.report is not Report.PAR or (p.pattern.value & 1) != (obs.par & 1):
            continue
        diff = par_difference(case.cpu.arch, obs.par, p.pattern.value, p.pattern.care)
        if best is None or len(diff) < len(best):
            best = diff
    return tuple(best or ())


def _observed(case: S1Case, obs: RawObservation, j: S1Judgement) -> str:
    label = observed_label(case.cpu.arch, obs)
    return f"{label}; differs in {', '.join(j.fields)}" if j.fields else label


def judge_s1_image(case: S1Case, image: ImageResult) -> tuple[CaseCounts, list[Divergence]]:
    """Counts and divergences (harness.records) of a stage-1-on case's run.
    A divergence's ``ipa`` is the probe's VA (the input address) and its
    ``at`` the operation (S12E1R, S1E0W, ...)."""
    arch = case.cpu.arch
    permitted = case.permitted()
    passed = not_run = 0
    divergences: list[Divergence] = []
    common: dict[str, Any] = dict(arch=arch.value, cpu=case.cpu.name,
                  granule=case.config.granule.label if case.config.granule else None,
                  config=f"{case.config.describe()}; {case.stage1.config.describe()}; "
                         f"{case.stage1.hcr.describe()}",
                  vtcr=f"{case.config.vtcr():#x}", vttbr=f"{case.config.vttbr:#x}")
    for i, (probe, result) in enumerate(zip(case.probes, permitted)):
        obs = row_observation(image.records[i])
        j = judge_s1_probe(case, result, probe.va, obs)
        if j.status.passed:
            passed += 1
            continue
        if j.status is ProbeStatus.NOT_RUN:
            not_run += 1
            continue
        divergences.append(Divergence(
            kind=DivergenceKind.PROBE, probe=i, ipa=f"{probe.va:#x}", at=probe.at.name,
            aim=probe.aim, expected=tuple(sorted({outcome_label(o.result)
                                                  for o in result.outcomes})),
            permitted=tuple(Permitted(o.describe(), tuple(o.rules),
                                      tuple(t.describe() for t in o.trace))
                            for o in result.outcomes),
            observed=_observed(case, obs, j), observed_text=obs_text(obs),
            raw=tuple(raw_observation(obs).items()), **common))
    if image.completed:
        before = tuple((r.pa, r.data) for r in case.image.regions + case.stage1.regions)
        for change in judge_memory(before, image.regions_after, permitted_writes(permitted)):
            index = next((k for k, r in enumerate(permitted) for o in r.outcomes
                          for t in o.trace if t.address == change.pa), None)
            owner = case.probes[index] if index is not None else None
            divergences.append(Divergence(
                kind=DivergenceKind.MEMORY, probe=index,
                ipa=f"{owner.va:#x}" if owner else None, at=owner.at.name if owner else None,
                aim=owner.aim if owner else "",
                expected=(memory_expected(change.pa, change.before),), permitted=None,
                observed=memory_observed(change.before, change.after),
                observed_text=memory_observed_text(change.pa, change.before, change.after),
                raw=tuple(memory_raw(change.pa, change.before, change.after).items()), **common))
    return CaseCounts(len(case.probes), passed, len(divergences), not_run), divergences


def obs_text(obs: RawObservation) -> str:
    if obs.kind is ObsKind.PAR:
        return f"PAR {obs.par:#x}"
    return (f"exception ESR={obs.esr:#x} (EC {obs.esr >> 26:#x}, DFSC {obs.esr & 0x3f:#04x}) "
            f"FAR={obs.far:#x} HPFAR={obs.hpfar:#x}")
