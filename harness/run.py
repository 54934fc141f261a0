"""The differential run: matrix entries -> planned batches (harness.plan)
-> executed and judged in workers (harness.workers) -> records appended to
``results.jsonl`` (harness.records) as they arrive, flushed and fsync'd.

``run_matrix`` is the library entry point of `s2diff run`; ``--resume``
keeps the finished batches of an interrupted run and runs the rest.
"""
from __future__ import annotations

import collections
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from reference.arch import Arch

from .baseline import EMPTY, apply_baseline, load_baseline
from .errors import UsageError
from .plan import MatrixEntry, Plan, prepare_machine
from .qemu.boot import BatchStatus
from .qemu.builds import QemuBuild, default_build
from .qemu.launcher import qemu_cpus, qemu_version
from .records import (
    RECORDS,
    BatchRecord,
    CaseRecord,
    CrashRecord,
    DivergenceRecord,
    EndReason,
    EndRecord,
    InvalidRecord,
    Isolation,
    NotRun,
    QemuInfo,
    Record,
    RecordSink,
    ResultsVersionError,
    RunHeader,
    batch_id,
    parse_record,
    read_json_lines,
    rewrite_records,
)
from .vocabulary import entry_kind
from .workers import Task, WorkerConfig, run_batches

# The default (nightly) run: cases per matrix entry, seconds after which no
# batch is started, and bulk probes per placed entry -- enough that QEMU,
# not the host, sets the pace (see `s2diff bench`), few enough to leave
# room for many cases.
NIGHTLY_CASES = 15
# The budget bounds a runaway run, it does not size the nightly: measured on
# this project's 2-core machine (2026-11-30, QEMU 7.2.22) the default matrix
# (498 entries with the access, stage-1 and S2PIE kinds) took 13 min 16 s
# (6 min 38 s on 2026-12-01, with 2 M-probe boots), so 40 min leaves a
# slower CI machine, or a QEMU that diverges everywhere, three times the
# older figure before any entry loses cases (coverage first: entries
# are never lost, only later cases, and the summary says so).
NIGHTLY_BUDGET = 2400.0
NIGHTLY_FANOUT = 2048


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """A run as the command line asks for it (see `s2diff run --help`).

    ``qemus``: the QEMU builds to run every batch on (``--qemu``); without
    any, one build from ``qemu`` (a program per architecture, None: the
    default: $S2DIFF_QEMU_*, then PATH).  ``recorded``: the options as the
    run header records them for ``--resume`` (docs/results.md)."""

    out: Path
    seed: int = 1
    cases_per_entry: int = 8
    budget: float | None = None
    jobs: int = 1
    shard: tuple[int, int] | None = None
    baseline: Path | None = None
    qemu: dict[Arch, str | None] = dataclasses.field(default_factory=dict)
    max_images: int = 400
    timeout: float | None = None
    resume: bool = False
    fanout: int = 0
    qemu_args: tuple[str, ...] = ()     # --qemu-arg: more QEMU arguments for every boot
    keep: Path | None = None            # --keep DIR: keep every boot's files in DIR/batch-N
    qemus: tuple[QemuBuild, ...] = ()
    recorded: dict | None = None
    profile: bool = False
    # Per QEMU label, the (arch, CPU) not to run there and why (a CPU model
    # that differs from the first build's, for which the matrix was made).
    model_gaps: dict[str, dict[tuple[Arch, str], str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunOutcome:
    """What the end of a run needs, accumulated without keeping records
    (a nightly run's records stay on disk: memory does not grow with it).

    ``known_used``: baseline ids that matched; ``ran``: (arch, cpu, vtcr,
    QEMU version, kind of case) of every case executed; ``entries_ran``: (entry, QEMU
    label) pairs with a case; ``batch_status``: batches per status;
    ``findings``: crashes and hangs reproduced by one case (isolation of a
    boot no probe could be named for); ``crashes``: crash records;
    ``end``: the end record."""

    batches_planned: int = 0
    batches_run: int = 0
    cases_run: int = 0
    interrupted: bool = False
    known_used: set[str] = dataclasses.field(default_factory=set)
    ran: set[tuple[str, str, str, str, str]] = dataclasses.field(default_factory=set)
    entries_ran: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    batch_status: collections.Counter[BatchStatus] = dataclasses.field(
        default_factory=collections.Counter)
    new_divergences: int = 0
    findings: list[Isolation] = dataclasses.field(default_factory=list)
    crashes: list[CrashRecord] = dataclasses.field(default_factory=list)
    end: EndRecord | None = None

    def add(self, records: Iterable[Record]) -> None:
        versions: dict[tuple[int, str], str] = {}
        for rec in records:
            if isinstance(rec, BatchRecord):
                versions[rec.batch, rec.qemu] = rec.qemu_version
        for rec in records:
            if isinstance(rec, CaseRecord):
                self.ran.add((rec.arch, rec.cpu, rec.vtcr, versions.get((rec.batch, rec.qemu), ""),
                              entry_kind(rec.entry).value))
                self.entries_ran.add((rec.entry, rec.qemu))
                self.cases_run += 1
            elif isinstance(rec, DivergenceRecord):
                if rec.known:
                    self.known_used.add(rec.known)
                else:
                    self.new_divergences += 1
            elif isinstance(rec, CrashRecord):
                self.crashes.append(rec)
                if rec.known:
                    self.known_used.add(rec.known)
            elif isinstance(rec, BatchRecord):
                self.batch_status[rec.status] += 1
                if rec.isolated is not None and rec.isolated.reproduced:
                    self.findings.append(rec.isolated)

    @property
    def new_crash_families(self) -> set[tuple[str, str]]:
        """(QEMU label, signature) of new crashes that a re-run reproduced."""
        families = {(c.qemu, c.signature) for c in self.crashes
                    if c.known is None and c.reproduced is not None}
        return {f for f in families if any(c.reproduced for c in self.crashes
                                           if (c.qemu, c.signature) == f)}


# Run-header fields that must match for --resume (docs/results.md).
RESUME_KEYS = ("seed", "cases_per_entry", "fanout", "shard", "entries", "baseline")


def finished_batches(records: Iterable[Record]) -> set[tuple[int, str]]:
    """The batches whose records are all there: the batch record (written
    last, so a run killed mid-write leaves none) and, for each of its
    ``images`` cases, the case record and the divergence records it counts
    (``count`` each).  A record lost in the middle of the file, which no
    crash of the writer produces, then costs a re-run, not a result."""
    cases: dict[tuple[int, str], list[CaseRecord]] = collections.defaultdict(list)
    counted: collections.Counter[tuple[int, str, str]] = collections.Counter()
    batches: dict[tuple[int, str], BatchRecord] = {}
    for rec in records:
        if isinstance(rec, BatchRecord):
            batches[rec.batch, rec.qemu] = rec
        elif isinstance(rec, CaseRecord):
            cases[rec.batch, rec.qemu].append(rec)
        elif isinstance(rec, DivergenceRecord):
            counted[rec.batch, rec.qemu, rec.key] += rec.count
    # A harness error has no case records at all.
    return {n for n, b in batches.items()
            if b.status is BatchStatus.HARNESS_ERROR
            or (len(cases[n]) == b.images
                and all(c.diverged == counted[n[0], n[1], c.key] for c in cases[n]))}


def resume_records(path: Path, header: RunHeader) -> list[Record]:
    """The records of an interrupted run that ``--resume`` keeps: its run
    header and every record of its finished batches (finished_batches);
    its end record is dropped (the run goes on).  The results file is
    rewritten with just those, atomically, so that appending continues a
    consistent file."""
    records = read_results(path)
    runs = [r for r in records if isinstance(r, RunHeader)]
    if not runs:
        raise UsageError(f"--resume: {path} has no run header")
    old, new = runs[0].to_json(), header.to_json()
    for key in RESUME_KEYS:
        if old.get(key) != new.get(key):
            raise UsageError(f"--resume: the run in {path.parent} has {key}={old.get(key)!r}, "
                             f"this one {new.get(key)!r}; resume with the same options")
    finished = finished_batches(records)
    kept: list[Record] = [runs[0]]
    kept += [r for r in records if batch_id(r) in finished]
    rewrite_records(path, kept)
    return kept


def read_results(path: Path) -> list[Record]:
    """Every valid record of an existing results file (UsageError when
    there is none)."""
    if not path.is_file():
        raise UsageError(f"--resume: {path} does not exist (nothing to resume)")
    records: list[Record] = []
    for rec in read_json_lines(path):
        try:
            records.append(parse_record(rec))
        except (InvalidRecord, ResultsVersionError):
            continue
    return records


def prepare_out(out: Path) -> Path:
    """Create the output directory; UsageError if it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out: cannot write to {out} ({exc.strerror or exc})") from None
    return out


def qemu_builds(opts: RunOptions, arches: Sequence[Arch]) -> tuple[QemuBuild, ...]:
    """The QEMU builds of a run: ``--qemu`` ones, else one of the
    programs per architecture (defaults: $S2DIFF_QEMU_*, PATH)."""
    if opts.qemus:
        return opts.qemus
    return (default_build({a: opts.qemu.get(a) for a in arches}, arches),)


@dataclasses.dataclass(frozen=True)
class Coverage:
    """Which QEMU can run which (arch, CPU) of a plan: ``missing[label]``
    maps an (arch, CPU) the build cannot run to why."""

    labels: tuple[str, ...]
    missing: dict[str, dict[tuple[Arch, str], str]]

    @classmethod
    def of(cls, builds: Sequence[QemuBuild], machines: Iterable[tuple[Arch, str]],
           model_gaps: Mapping[str, Mapping[tuple[Arch, str], str]] | None = None) -> Coverage:
        """``model_gaps``: per build label, the (arch, CPU) it must not run
        and why (its CPU model differs from the one the matrix was made
        for: harness.qemu.models)."""
        missing: dict[str, dict[tuple[Arch, str], str]] = {}
        for b in builds:
            gaps = missing.setdefault(b.label, dict((model_gaps or {}).get(b.label, {})))
            for arch, cpu in sorted(set(machines), key=lambda m: (m[0].value, m[1])):
                if arch not in b.paths:
                    gaps[arch, cpu] = f"QEMU {b.label} has no {arch.value} emulator"
                elif cpu not in qemu_cpus(b.paths[arch]):
                    gaps[arch, cpu] = f"QEMU {b.label} has no -cpu {cpu}"
        return cls(tuple(b.label for b in builds), missing)

    def runs(self, label: str, arch: Arch, cpu: str) -> bool:
        return (arch, cpu) not in self.missing.get(label, {})

    def labels_for(self, arch: Arch, cpu: str) -> list[str]:
        return [label for label in self.labels if self.runs(label, arch, cpu)]


def _sizes(plan: Plan, coverage: Coverage) -> tuple[int, int]:
    """(batches, cases) of the plan's shard, counted once per QEMU that can
    run them -- computed, not generated."""
    batches = cases = 0
    k, c = plan.rounds_per_batch, len(plan.chunks)
    for i, (r, chunk) in enumerate(zip(plan.chunk_rounds(), plan.chunks)):
        n = len(coverage.labels_for(chunk.arch, chunk.cpu))
        shard_k, shard_n = plan.shard or (1, 1)
        blocks = sum(1 for b in range(plan.blocks) if (b * c + i) % shard_n == shard_k - 1) \
            if k > 1 else r
        batches += blocks * n
        cases += r * n * len(chunk.entries)
    return batches, cases


def _entries_in_shard(plan: Plan) -> list[MatrixEntry]:
    """The entries with at least one case in the plan's shard."""
    return [plan.entries[i] for r, chunk in zip(plan.chunk_rounds(), plan.chunks) if r
            for i in chunk.entries]


def run_matrix(entries: Sequence[MatrixEntry], opts: RunOptions, argv: Sequence[str] = (),
               on_records: Callable[[list[Record]], None] | None = None,
               on_start: Callable[[RunHeader], None] | None = None,
               preamble: Sequence[DivergenceRecord] = ()) -> RunOutcome:
    """Plan, execute and record a run of ``entries`` on every QEMU build.

    Batches are generated as workers take them (harness.plan.Plan), round
    by round: every entry's first case runs before any entry's second, on
    every QEMU.  Records go to OUT/results.jsonl as they arrive, the end
    record last; ``on_records`` sees each batch's records too (progress
    display; a resumed run's finished records first, then ``on_start``).
    ``preamble``: records that belong to no batch (harness.judge.models:
    CPU models that differ from their named table), matched against the
    baseline and written after the run header (again on --resume, which
    drops them with the unfinished batches).  Ctrl-C stops the run
    promptly: workers (and their QEMUs) are stopped, and everything
    finished stays recorded."""
    started_at = time.monotonic()
    out = prepare_out(opts.out)
    arches = sorted({e.arch for e in entries}, key=lambda a: a.value)
    builds = qemu_builds(opts, arches)
    machine = prepare_machine(arches, builds)
    arena = min((machine.arena[a.value] for a in arches), key=lambda r: r[1] - r[0])
    # Batches are cut by the probes each kind of case brings (an AT case with
    # fan-out fills the results area with a couple of images, an access or
    # stage-1 case has a few hundred probes) as well as by a count of images.
    max_probes = min(machine.max_probes[a.value] for a in arches)
    plan = Plan.of(entries, opts.cases_per_entry, arena, opts.max_images, opts.shard,
                   max_probes=max_probes, fanout=opts.fanout)
    coverage = Coverage.of(builds, {(e.arch, e.cpu) for e in entries}, opts.model_gaps)
    n_batches, n_cases = _sizes(plan, coverage)
    first = builds[0]
    header = RunHeader(
        seed=opts.seed, cases_per_entry=opts.cases_per_entry, fanout=opts.fanout,
        shard=opts.shard, entries=len(entries), batches=n_batches, cases=n_cases,
        argv=tuple(argv), started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        qemu=tuple((a.value, qemu_version(p)) for a, p in sorted(
            first.paths.items(), key=lambda kv: kv[0].value) if a in arches),
        baseline=str(opts.baseline) if opts.baseline else None,
        qemus=tuple(QemuInfo(b.label, b.version, *(
            str(b.paths[a]) if a in b.paths and a in arches else None
            for a in (Arch.AARCH64, Arch.AARCH32))) for b in builds),
        options=opts.recorded)
    outcome = RunOutcome(batches_planned=n_batches)
    kept: list[Record] = []
    finished: set[tuple[int, str]] = set()
    if opts.resume:
        kept = resume_records(out / RECORDS, header)
        finished = {(r.batch, r.qemu) for r in kept if isinstance(r, BatchRecord)}
        outcome.add(kept)
        outcome.batches_run = len(finished)
        sink = RecordSink(out / RECORDS)
    else:
        (out / RECORDS).unlink(missing_ok=True)
        sink = RecordSink(out / RECORDS)
        sink.write([header])
    if preamble:
        pre = apply_baseline(load_baseline(opts.baseline) if opts.baseline else EMPTY, preamble)
        sink.write(pre)
        outcome.add(pre)
    if on_records and kept:
        on_records([r for r in kept if not isinstance(r, RunHeader)])
    if on_start:
        on_start(header)
    # Crashes per quarantine key (harness.resume) and QEMU, from the crash
    # records: tasks started later hold back what keeps crashing QEMU.
    learnt: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for rec in kept:
        if isinstance(rec, CrashRecord) and rec.quarantine:
            learnt[rec.qemu][rec.quarantine] += 1

    def accept(records: list[Record]) -> None:
        # The batch record goes last: it marks the batch as finished, so a
        # run killed while writing leaves no finished-looking partial batch.
        ordered = [r for r in records if not isinstance(r, BatchRecord)] + \
                  [r for r in records if isinstance(r, BatchRecord)]
        sink.write(ordered)
        outcome.add(ordered)
        for rec in ordered:
            if isinstance(rec, CrashRecord) and rec.quarantine:
                learnt[rec.qemu][rec.quarantine] += 1
        if on_records:
            on_records(ordered)

    def tasks() -> Iterator[Task]:
        for batch in plan:
            for label in coverage.labels_for(batch.arch, batch.cpu):
                if (batch.number, label) not in finished:
                    yield Task(batch, label, tuple(sorted(learnt[label].items())))

    cfg = WorkerConfig(seed=opts.seed, machine=machine, out=str(out), fanout=opts.fanout,
                       baseline=str(opts.baseline) if opts.baseline else None,
                       timeout=opts.timeout, run_id=uuid.uuid4().hex, profile=opts.profile,
                       qemu_args=opts.qemu_args, keep=str(opts.keep) if opts.keep else None)
    deadline = time.monotonic() + opts.budget if opts.budget else None
    reason = EndReason.COMPLETE
    try:
        outcome.batches_run += run_batches(tasks(), cfg, opts.jobs, accept, deadline)
        if outcome.batches_run < n_batches:
            reason = EndReason.BUDGET
    except KeyboardInterrupt:
        outcome.interrupted = True
        outcome.batches_run = outcome.batch_status.total()
        reason = EndReason.INTERRUPTED
    finally:
        try:
            outcome.end = end_record(plan, coverage, outcome, reason, opts,
                                     time.monotonic() - started_at)
            sink.write([outcome.end])
        finally:
            sink.close()
    return outcome


def end_record(plan: Plan, coverage: Coverage, outcome: RunOutcome, reason: EndReason,
               opts: RunOptions, elapsed: float) -> EndRecord:
    """The end record: why the run stopped and which entries of this shard
    never ran on which QEMU, and why."""
    why = {EndReason.BUDGET: f"budget: not started within --budget {opts.budget:g} s"
           if opts.budget else "budget",
           EndReason.INTERRUPTED: "interrupted: not started before Ctrl-C or SIGTERM",
           EndReason.COMPLETE: "not run"}[reason]
    missing = []
    for entry in _entries_in_shard(plan):
        for label in coverage.labels:
            if (entry.name, label) in outcome.entries_ran:
                continue
            gap = coverage.missing.get(label, {}).get((entry.arch, entry.cpu))
            missing.append(NotRun(entry.name, label, gap or why))
    return EndRecord(reason=reason, batches_planned=outcome.batches_planned,
                     batches_run=outcome.batches_run,
                     cases_planned=_sizes(plan, coverage)[1], cases_run=outcome.cases_run,
                     entries=len(plan.entries), entries_not_run=tuple(missing),
                     elapsed=round(elapsed, 3), shard=plan.shard)
