"""Running one case file in QEMU: `s2diff probe` (show) and `s2diff repro`
(does it still diverge?), and the baseline tests."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from reference.arch import Arch
from reference.cpus import get_cpu
from reference.generate import Case
from reference.outcome import WalkResult
from reference.par import predict

from .compare import (MemoryChange, ProbeJudgement, ProbeStatus, judge_memory, judge_probe,
                      permitted_writes)
from .errors import UsageError
from .job import RawObservation
from .qemu import BatchResult, BatchStatus, run_batch
from .run import job_image


@dataclasses.dataclass(frozen=True)
class CaseRun:
    """One case executed in QEMU and judged."""

    case: Case
    batch: BatchResult
    permitted: tuple[WalkResult, ...]
    judgements: tuple[ProbeJudgement, ...]
    memory: tuple[MemoryChange, ...]

    @property
    def diverges(self) -> bool:
        return bool(self.memory) or any(j.status is ProbeStatus.DIVERGE for j in self.judgements)

    @property
    def complete(self) -> bool:
        return self.batch.status is BatchStatus.COMPLETED


def run_case(case: Case, *, cpu: str | None = None, qemu: str | Path | None = None,
             timeout: float | None = None) -> CaseRun:
    """Execute ``case`` (optionally on another CPU model of the same
    architecture) in one QEMU boot and judge every probe."""
    if cpu is not None and cpu != case.cpu.name:
        try:
            model = get_cpu(case.cpu.arch, cpu)
        except ValueError as exc:
            raise UsageError(f"--cpu: {exc}") from None
        case = dataclasses.replace(case, cpu=model)
    batch = run_batch(case.cpu.arch, case.cpu.name, [job_image(case)], qemu=qemu, timeout=timeout)
    permitted = case.permitted()
    image = batch.images[0]
    judgements = tuple(judge_probe(case.cpu.arch, res, p.ipa, obs, case.cpu.arch_version)
                       for p, res, obs in zip(case.probes, permitted, image.observations))
    memory: tuple[MemoryChange, ...] = ()
    if image.completed:
        memory = tuple(judge_memory([(r.pa, r.data) for r in case.image.regions],
                                    image.regions_after, permitted_writes(permitted)))
    return CaseRun(case, batch, permitted, judgements, memory)


def render_case_run(run: CaseRun, *, only_divergent: bool = False, trace: bool = False) -> str:
    """Per probe: the observation decoded beside the permitted outcomes."""
    arch: Arch = run.case.cpu.arch
    lines = [f"{run.case.cpu.arch.value} {run.case.cpu.name}: {run.case.config.describe()} "
             f"VTTBR={run.case.config.vttbr:#x}",
             f"QEMU {run.batch.qemu_version}: {run.batch.status.value}"
             + (f" ({run.batch.diagnostic.splitlines()[0]})" if run.batch.diagnostic else ""),
             f"command: {run.batch.command_line}"]
    for i, (probe, res, verdict) in enumerate(zip(run.case.probes, run.permitted, run.judgements)):
        if only_divergent and verdict.status is not ProbeStatus.DIVERGE:
            continue
        mark = {ProbeStatus.PASS: "PASS", ProbeStatus.DIVERGE: "DIVERGE",
                ProbeStatus.NOT_RUN: "NOT-RUN"}[verdict.status]
        lines.append(f"{mark}: probe {i} {probe.at.name_for(arch)} IPA {probe.ipa:#x} ({probe.aim})")
        lines.append(f"    observed: {verdict.observed}")
        for k, o in enumerate(res.outcomes):
            pred = predict(arch, o, probe.ipa, run.case.cpu.arch_version)
            hit = "=" if k in verdict.matched else " "
            lines.append(f"  {hit} permitted: {o.describe()} -> {pred.report.value} "
                         f"{pred.pattern.value:#x} (care {pred.pattern.care:#x})")
            lines.append(f"      rule: {o.rules[-1] if o.rules else ''}")
            if trace or verdict.status is ProbeStatus.DIVERGE:
                lines.extend(f"      {t.describe()}" for t in o.trace)
    for change in run.memory:
        lines.append(f"DIVERGE: descriptor at {change.pa:#x} written {change.before:#x} -> "
                     f"{change.after:#x}, which no permitted outcome allows")
    passed = sum(j.status is ProbeStatus.PASS for j in run.judgements)
    diverged = sum(j.status is ProbeStatus.DIVERGE for j in run.judgements) + len(run.memory)
    lines.append(f"SUMMARY: {len(run.judgements)} probes, {passed} passed, {diverged} diverged")
    return "\n".join(lines)


def observations(run: CaseRun) -> Sequence[RawObservation]:
    return run.batch.images[0].observations
