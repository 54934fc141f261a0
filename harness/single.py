"""Running one case file in QEMU: `s2diff probe` (show) and `s2diff repro`
(does it still diverge?), and the baseline tests.

Every run of a case ends in one verdict (:class:`CaseVerdict`), said in one
line before anything else: a new divergence, only known divergences (named),
no divergence, or QEMU crashed or hung.  The body after it never
contradicts it: each divergence line says whether it is new or known.

A case is a stage-2 AT case, an access case or a stage-1-on case
(harness.casefile.AnyCase); only an AT case has named probes shown one by
one with their permitted outcomes (`s2diff walk` shows the others')."""
from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reference.access_case import AccessCase
from reference.arch import Arch, AtKind
from reference.cpus import get_cpu
from reference.generate import Case, FanOut, Probe
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
from .vocabulary import FANOUT_AIM, DivergenceKind


@dataclasses.dataclass(frozen=True)
class CaseDivergence:
    """A divergence of a case run alone, and the baseline entry that
    knows it (None: new)."""

    divergence: Divergence
    known: str | None


class CaseVerdict(enum.Enum):
    """The answer of `probe` and `repro`, most severe first."""

    CRASH = "crash"
    NEW = "new"
    KNOWN = "known"
    NONE = "none"


@dataclasses.dataclass(frozen=True)
class CaseRun:
    """One case executed in QEMU and judged: the named probes one by one
    (``judgements``), and all divergences as run records (``divergences``:
    named and fan-out probes, descriptor writes), each marked ``known``
    (a baseline entry id) or new (None).  ``numbers``: the probe numbers
    to show for the case's probes (the case file's, when one probe was
    taken out of it with ``--only``)."""

    case: AnyCase
    batch: BatchResult
    permitted: tuple[WalkResult, ...]
    judgements: tuple[ProbeJudgement, ...]
    counts: CaseCounts
    divergences: tuple[CaseDivergence, ...]
    numbers: tuple[int, ...] = ()

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

    @property
    def verdict(self) -> CaseVerdict:
        if self.batch.status in (BatchStatus.CRASHED, BatchStatus.TIMEOUT):
            return CaseVerdict.CRASH
        if self.new:
            return CaseVerdict.NEW
        if self.divergences:
            return CaseVerdict.KNOWN
        return CaseVerdict.NONE

    def number(self, index: int | None) -> int | None:
        """The probe number to show for the case's probe ``index``."""
        if index is None or not self.numbers:
            return index
        return self.numbers[index] if index < len(self.numbers) else index


def only_probe(case: Case, index: int) -> Case:
    """The case with probe ``index`` alone (named probes first, then the
    fan-out probes, numbered as `s2diff walk` and the case file number
    them); a fan-out probe becomes a named one."""
    named = len(case.probes)
    total = named + len(case.fanout)
    if not 0 <= index < total:
        raise UsageError(f"--only: {index} is not a probe of this case (it has {total}: "
                         f"0..{total - 1})")
    if index < named:
        probe = case.probes[index]
    else:
        row = index - named
        probe = Probe(int(case.fanout.ipa[row]), AtKind(int(case.fanout.at[row])), FANOUT_AIM)
    return dataclasses.replace(case, probes=(probe,), fanout=FanOut.empty())


def run_case(case: AnyCase, *, cpu: str | None = None, qemu: str | Path | None = None,
             timeout: float | None = None, baseline: Baseline = EMPTY,
             keep: Path | None = None, qemu_args: Sequence[str] = (),
             numbers: Sequence[int] = ()) -> CaseRun:
    """Execute ``case`` (optionally on another CPU model of the same
    architecture) in one QEMU boot and judge every probe; divergences the
    ``baseline`` knows are marked so.  ``keep``: keep the boot's stub, job
    and RAM files in that directory, with rerun.sh; ``qemu_args``: more
    QEMU arguments; ``numbers``: probe numbers to show (see CaseRun)."""
    if cpu is not None and cpu != case.cpu.name:
        try:
            model = get_cpu(case.cpu.arch, cpu)
        except ValueError as exc:
            raise UsageError(f"--cpu: {exc}") from None
        case = dataclasses.replace(case, cpu=model)
    batch = run_batch(case.cpu.arch, case.cpu.name, [job_image(case)], qemu=qemu, timeout=timeout,
                      keep_dir=keep, extra_args=tuple(qemu_args))
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
    return CaseRun(case, batch, permitted, judgements, counts, tuple(marked), tuple(numbers))


# ---------------------------------------------------------------------------
# What a run of a case file says
# ---------------------------------------------------------------------------

def _label(d: Divergence) -> str:
    """expected/observed of a divergence as one phrase (memory: the bits)."""
    return f"expected {' | '.join(d.expected)}, observed {d.observed}"


def recorded_divergences(data: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """(kind, expected, observed) of the divergences a case file records
    (its ``divergence`` key), in order, duplicates once."""
    out = []
    for d in data.get("divergence") or ():
        if isinstance(d, dict) and isinstance(d.get("expected"), list):
            item = (str(d.get("kind", "probe")), tuple(str(e) for e in d["expected"]),
                    str(d.get("observed", "")))
            if item not in out:
                out.append(item)
    return out


def _probes_of(run: CaseRun, ds: Sequence[CaseDivergence]) -> int:
    return sum(d.divergence.count for d in ds
               if d.divergence.kind in (DivergenceKind.PROBE, DivergenceKind.ACCESS))


def verdict_line(run: CaseRun, recorded: Sequence[tuple[str, tuple[str, ...], str]] = ()) -> str:
    """The one line `probe` and `repro` answer first."""
    v = run.verdict
    if v is CaseVerdict.CRASH:
        what = "hang" if run.batch.status is BatchStatus.TIMEOUT else "crash"
        first = run.batch.diagnostic.splitlines()[0] if run.batch.diagnostic else ""
        return f"{what} reproduced: {first}".rstrip(": ")
    seen = {(d.divergence.kind.value, d.divergence.expected, d.divergence.observed)
            for d in run.divergences}
    if v is CaseVerdict.NEW:
        n = _probes_of(run, run.new)
        writes = sum(1 for d in run.new
                     if d.divergence.kind in (DivergenceKind.MEMORY, DivergenceKind.DATA))
        what = ", ".join(x for x in (f"{n:,} probe{'s' if n != 1 else ''}" if n else "",
                                     f"{writes} descriptor write{'s' if writes != 1 else ''}"
                                     if writes else "") if x)
        line = f"new divergence: {what}"
        if recorded and not any(r in seen for r in recorded):
            line += " -- not the one the file records (" + _label_of(recorded[0]) + ")"
        return line
    if v is CaseVerdict.KNOWN:
        ids = sorted({d.known for d in run.divergences if d.known})
        return f"only known divergences: {', '.join(ids)}"
    if recorded:
        return (f"no divergence (the file records {len(recorded)}: "
                f"{_label_of(recorded[0])}{', ...' if len(recorded) > 1 else ''})")
    return "no divergence"


def _label_of(rec: tuple[str, tuple[str, ...], str]) -> str:
    kind, expected, observed = rec
    return f"expected {' | '.join(expected)}, observed {observed}" + (
        " [memory]" if kind == "memory" else "")


def _where(run: CaseRun, ds: Sequence[CaseDivergence], limit: int = 6) -> str:
    numbers = [run.number(d.divergence.probe) for d in ds if d.divergence.probe is not None]
    probes = sorted(dict.fromkeys(p for p in numbers if p is not None))
    if not probes:
        return ""
    return (f"probe{'s' if len(probes) > 1 else ''} " + ", ".join(str(p) for p in probes[:limit])
            + (" ..." if len(probes) > limit else ""))


def _divergence_lines(run: CaseRun, detailed: bool) -> list[str]:
    """The divergences, each line saying NEW or KNOWN (id) and the probes
    it covers.  By default one line per (status, observed) with the
    reference's outcomes folded in (a configuration QEMU rejects is one
    line); ``detailed``: one line per (status, expected, observed, aim)."""
    groups: dict[tuple, list[CaseDivergence]] = collections.defaultdict(list)
    for d in run.divergences:
        dv = d.divergence
        key = (d.known or "", dv.kind.value, dv.observed)
        groups[key + ((dv.expected, dv.aim) if detailed else ())].append(d)
    lines = []
    for key, ds in sorted(groups.items(), key=lambda kv: (kv[0][0] != "", kv[0])):
        known, kind, observed = key[:3]
        tag = f"KNOWN ({known})" if known else "NEW"
        count = sum(d.divergence.count for d in ds)
        unit = "descriptor write" if kind == "memory" else "probe"
        head = f"{tag}: {count:,} {unit}{'s' if count != 1 else ''}"
        where = _where(run, ds)
        if detailed:
            dv = ds[0].divergence
            lines.append(f"{head} ({dv.aim or kind}): {_label(dv)}" + (f"; {where}" if where else ""))
            if dv.kind in (DivergenceKind.ACCESS, DivergenceKind.DATA):
                lines.extend(f"    {line}" for line in dv.observed_text.splitlines())
            continue
        by_expected: collections.Counter[str] = collections.Counter()
        for d in ds:
            by_expected[" | ".join(d.divergence.expected)] += d.divergence.count
        expected = "; ".join(f"{e} ({n:,})" for e, n in by_expected.most_common(4))
        if len(by_expected) > 4:
            expected += f"; {len(by_expected) - 4} more"
        lines.append(f"{head}: QEMU {observed}, the reference {expected}"
                     + (f"; {where}" if where else ""))
    return lines


def _probe_lines(run: CaseRun, trace: bool) -> list[str]:
    """Every named probe: its verdict, the observation decoded and the
    permitted outcomes with the walk (``-v``)."""
    arch: Arch = run.case.cpu.arch
    known = {d.divergence.probe: d.known for d in run.divergences
             if d.divergence.kind is DivergenceKind.PROBE}
    lines = []
    at_probes = run.case.probes if isinstance(run.case, Case) else ()
    for i, (probe, res, verdict) in enumerate(zip(at_probes, run.permitted, run.judgements)):
        if verdict.status is ProbeStatus.DIVERGE:
            mark = f"KNOWN ({known[i]})" if known.get(i) else "NEW"
        else:
            mark = {ProbeStatus.PASS: "PASS", ProbeStatus.NOT_RUN: "NOT-RUN",
                    ProbeStatus.UNPREDICTABLE: "UNPREDICTABLE"}[verdict.status]
        lines.append(f"{mark}: probe {run.number(i)} {probe.at.name_for(arch)} IPA "
                     f"{probe.ipa:#x} ({probe.aim})")
        lines.append(f"    observed: {verdict.observed}")
        for k, o in enumerate(res.outcomes):
            pred = predict(arch, o, probe.ipa, run.case.cpu.arch_version)
            hit = "=" if k in verdict.matched else " "
            lines.append(f"  {hit} permitted: {o.describe()} -> {pred.report.value} "
                         f"{pred.pattern.value:#x} (care {pred.pattern.care:#x})")
            lines.append(f"      rule: {o.rules[-1] if o.rules else ''}")
            if trace or verdict.status is ProbeStatus.DIVERGE:
                lines.extend(f"      {t.describe()}" for t in o.trace)
    return lines


def render_case_run(run: CaseRun, *, level: int = 1, trace: bool = False,
                    recorded: Sequence[tuple[str, tuple[str, ...], str]] = (),
                    notes: Sequence[str] = ()) -> str:
    """What `probe`/`repro` print: the verdict line first; at ``level`` 1
    (the default) the divergences one line per kind (NEW or KNOWN), the
    counts, QEMU and its command line; at 2 (``-v``) every probe with its
    permitted outcomes as well (``trace``: walks of passing probes too);
    at 0 (``-q``) the verdict line alone."""
    out = [verdict_line(run, recorded)]
    if level <= 0:
        return out[0]
    c = run.counts
    case = run.case
    out.append(f"{case.cpu.arch.value} {case.cpu.name}: {case.config.describe()} "
               f"VTTBR={case.config.vttbr:#x}")
    if level >= 2:
        out += _probe_lines(run, trace)
    out += _divergence_lines(run, detailed=level >= 2)
    if isinstance(case, Case):
        which = f"{len(case.probes)} named, {len(case.fanout):,} fan-out"
    elif isinstance(case, AccessCase):
        which = f"{len(case.steps)} access and maintenance steps"
    else:
        which = f"{len(case.probes)} AT probes with stage 1 on"
    out.append(f"probes: {c.probes:,} ({which}), "
               f"{c.passed:,} passed, {_probes_of(run, run.divergences):,} diverged "
               f"({_probes_of(run, run.new):,} new), {c.not_run:,} not run")
    out += list(notes)
    status = run.batch.status.value + (f" ({run.batch.diagnostic.splitlines()[0]})"
                                       if run.batch.diagnostic else "")
    out.append(f"QEMU {run.batch.qemu_version}: {status}")
    kept = run.batch.argv and any(a.startswith("file=") or "mem-path=" in a for a in run.batch.argv)
    out.append(f"command: {run.batch.command_line}")
    if kept and not any("kept in" in n for n in notes):
        out.append("(its job and RAM files are gone; --keep DIR keeps them, --qemu-arg adds "
                   "QEMU arguments)")
    return "\n".join(out)
