"""Running one case file in QEMU: `s2diff probe` (show) and `s2diff repro`
(does it still diverge?), and the baseline tests.  A case is a stage-2 AT
case or an access case (harness.casefile.AnyCase)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from reference.access_case import AccessCase
from reference.arch import Arch
from reference.cpus import get_cpu
from reference.generate import Case
from reference.outcome import WalkResult
from reference.par import predict

from .baseline import EMPTY, Baseline
from .casefile import AnyCase
from .errors import UsageError
from .judge.case import judge_any_case
from .judge.compare import ProbeJudgement, ProbeStatus, judge_probe
from .plan import job_image
from .qemu.boot import BatchResult, BatchStatus, run_batch
from .qemu.job import row_observation
from .records import CaseCounts, Divergence
from .vocabulary import DivergenceKind


@dataclasses.dataclass(frozen=True)
class CaseDivergence:
    """A divergence of a case run alone, and the baseline entry that
    knows it (None: new)."""

    divergence: Divergence
    known: str | None


@dataclasses.dataclass(frozen=True)
class CaseRun:
    """One case executed in QEMU and judged: the named probes one by one
    (``judgements``), and all divergences as run records (``divergences``:
    named and fan-out probes, descriptor writes), each marked ``known``
    (a baseline entry id) or new (None)."""

    case: AnyCase
    batch: BatchResult
    permitted: tuple[WalkResult, ...]
    judgements: tuple[ProbeJudgement, ...]
    counts: CaseCounts
    divergences: tuple[CaseDivergence, ...]

    @property
    def new(self) -> tuple[CaseDivergence, ...]:
        return tuple(d for d in self.divergences if not d.known)

    @property
    def diverges(self) -> bool:
        """A divergence the baseline does not know."""
        return bool(self.new)

    @property
    def complete(self) -> bool:
        return self.batch.status is BatchStatus.COMPLETED


def run_case(case: AnyCase, *, cpu: str | None = None, qemu: str | Path | None = None,
             timeout: float | None = None, baseline: Baseline = EMPTY) -> CaseRun:
    """Execute ``case`` (optionally on another CPU model of the same
    architecture) in one QEMU boot and judge every probe (every step of an
    access case); divergences the ``baseline`` knows are marked so."""
    if cpu is not None and cpu != case.cpu.name:
        try:
            model = get_cpu(case.cpu.arch, cpu)
        except ValueError as exc:
            raise UsageError(f"--cpu: {exc}") from None
        case = dataclasses.replace(case, cpu=model)
    batch = run_batch(case.cpu.arch, case.cpu.name, [job_image(case)], qemu=qemu, timeout=timeout)
    image = batch.images[0]
    permitted: tuple[WalkResult, ...] = ()
    judgements: tuple[ProbeJudgement, ...] = ()
    if isinstance(case, Case):
        permitted = case.permitted()
        judgements = tuple(judge_probe(case.cpu.arch, res, p.ipa,
                                       row_observation(image.records[i]), case.cpu.arch_version)
                           for i, (p, res) in enumerate(zip(case.probes, permitted)))
    counts, divergences = judge_any_case(case, image)
    marked = []
    for d in divergences:
        entry = baseline.match(d, batch.qemu_version)
        marked.append(CaseDivergence(d, entry.id if entry else None))
    return CaseRun(case, batch, permitted, judgements, counts, tuple(marked))


def render_case_run(run: CaseRun, *, only_divergent: bool = False, trace: bool = False) -> str:
    """Per probe: the observation decoded beside the permitted outcomes."""
    arch: Arch = run.case.cpu.arch
    lines = [f"{run.case.cpu.arch.value} {run.case.cpu.name}: {run.case.config.describe()} "
             f"VTTBR={run.case.config.vttbr:#x}",
             f"QEMU {run.batch.qemu_version}: {run.batch.status.value}"
             + (f" ({run.batch.diagnostic.splitlines()[0]})" if run.batch.diagnostic else ""),
             f"command: {run.batch.command_line}"]
    at_probes = run.case.probes if isinstance(run.case, Case) else ()
    for i, (probe, res, verdict) in enumerate(zip(at_probes, run.permitted, run.judgements)):
        if only_divergent and verdict.status is not ProbeStatus.DIVERGE:
            continue
        mark = {ProbeStatus.PASS: "PASS", ProbeStatus.DIVERGE: "DIVERGE",
                ProbeStatus.NOT_RUN: "NOT-RUN",
                ProbeStatus.UNPREDICTABLE: "UNPREDICTABLE"}[verdict.status]
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
    probes = [m for m in run.divergences if m.divergence.kind is DivergenceKind.PROBE]
    named = {m.divergence.probe for m in probes}
    for m in run.divergences:
        d = m.divergence
        if d.kind is DivergenceKind.PROBE and d.probe is not None and d.probe < len(at_probes):
            continue  # shown above
        tag = f"KNOWN ({m.known})" if m.known else "DIVERGE"
        count = f" x{d.count} (e.g. IPAs {', '.join(d.ipas or ())})" if d.fanout else ""
        lines.append(f"{tag}: {d.aim or d.kind.value}: expected {' | '.join(d.expected)}, "
                     f"observed {d.observed}{count}")
        if d.kind in (DivergenceKind.ACCESS, DivergenceKind.DATA):
            lines.extend(f"    {line}" for line in d.observed_text.splitlines())
    known = {m.divergence.probe: m.known for m in run.divergences if m.known}
    for i in sorted(p for p in named & set(known) if p is not None):
        lines.append(f"KNOWN: probe {i} is baseline entry {known[i]}")
    c = run.counts
    if isinstance(run.case, Case):
        which = f"{len(run.case.probes)} named, {len(run.case.fanout)} fan-out"
    elif isinstance(run.case, AccessCase):
        which = f"{len(run.case.steps)} access and maintenance steps"
    else:
        which = f"{len(run.case.probes)} AT probes with stage 1 on"
    lines.append(f"SUMMARY: {c.probes} probes ({which}), {c.passed} passed, {c.diverged} diverged "
                 f"({len(run.new)} new divergence records), {c.not_run} not run")
    return "\n".join(lines)
