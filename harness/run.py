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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from reference.arch import Arch

from .errors import UsageError
from .plan import (
    MatrixEntry,
    images_per_batch,
    plan_batches,
    prepare_machine,
    shard_batches,
)
from .qemu.boot import BatchStatus
from .qemu.launcher import find_qemu, qemu_version
from .records import (
    RECORDS,
    BatchRecord,
    CaseRecord,
    DivergenceRecord,
    EndRecord,
    InvalidRecord,
    Isolation,
    Record,
    RecordSink,
    ResultsVersionError,
    RunHeader,
    batch_id,
    parse_record,
    read_json_lines,
    rewrite_records,
)
from .workers import WorkerConfig, run_batches

# The default (nightly) run: cases per matrix entry, seconds after which no
# batch is started, and bulk probes per placed entry -- enough that QEMU,
# not the host, sets the pace (see `s2diff bench`), few enough to leave
# room for many cases.
NIGHTLY_CASES = 15
NIGHTLY_BUDGET = 330.0
NIGHTLY_FANOUT = 2048


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """A run as the command line asks for it (see `s2diff run --help`)."""

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


@dataclasses.dataclass
class RunOutcome:
    """What the end of a run needs, accumulated without keeping records
    (a nightly run's records stay on disk: memory does not grow with it).

    ``known_used``: baseline ids that matched; ``ran``: (arch, cpu, vtcr) of
    every case executed; ``batch_status``: batches per status;
    ``findings``: crashes and hangs reproduced by one case."""

    batches_planned: int = 0
    batches_run: int = 0
    interrupted: bool = False
    known_used: set[str] = dataclasses.field(default_factory=set)
    ran: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)
    batch_status: collections.Counter[BatchStatus] = dataclasses.field(
        default_factory=collections.Counter)
    new_divergences: int = 0
    findings: list[Isolation] = dataclasses.field(default_factory=list)

    def add(self, records: Iterable[Record]) -> None:
        for rec in records:
            if isinstance(rec, CaseRecord):
                self.ran.add((rec.arch, rec.cpu, rec.vtcr))
            elif isinstance(rec, DivergenceRecord):
                if rec.known:
                    self.known_used.add(rec.known)
                else:
                    self.new_divergences += 1
            elif isinstance(rec, BatchRecord):
                self.batch_status[rec.status] += 1
                if rec.isolated is not None and rec.isolated.reproduced:
                    self.findings.append(rec.isolated)


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
    header and every record of its finished batches (finished_batches).
    The results file is rewritten with just those, atomically, so that
    appending continues a consistent file."""
    if not path.is_file():
        raise UsageError(f"--resume: {path} does not exist (nothing to resume)")
    records: list[Record] = []
    for rec in read_json_lines(path):
        try:
            records.append(parse_record(rec))
        except (InvalidRecord, ResultsVersionError):
            continue
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


def run_matrix(entries: Sequence[MatrixEntry], opts: RunOptions, argv: Sequence[str] = (),
               on_records: Callable[[list[Record]], None] | None = None,
               on_start: Callable[[RunHeader], None] | None = None) -> RunOutcome:
    """Plan, execute and record a run of ``entries``.

    Records go to OUT/results.jsonl as they arrive; ``on_records`` sees
    each batch's records too (progress display).  Ctrl-C stops the run
    promptly: workers (and their QEMUs) are stopped, and everything finished
    stays recorded."""
    out = prepare_out(opts.out)
    arches = sorted({e.arch for e in entries}, key=lambda a: a.value)
    machine = prepare_machine(arches, {a: opts.qemu.get(a) for a in arches})
    arena = min((machine.arena[a.value] for a in arches), key=lambda r: r[1] - r[0])
    per_batch = images_per_batch(opts.max_images, opts.fanout,
                                 min(machine.max_probes[a.value] for a in arches))
    batches = shard_batches(plan_batches(entries, opts.cases_per_entry, arena, per_batch),
                            opts.shard)
    header = RunHeader(
        seed=opts.seed, cases_per_entry=opts.cases_per_entry, fanout=opts.fanout,
        shard=opts.shard, entries=len(entries), batches=len(batches),
        cases=sum(len(b.specs) for b in batches), argv=tuple(argv),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        qemu=tuple((a.value, qemu_version(find_qemu(a, opts.qemu.get(a)))) for a in arches),
        baseline=str(opts.baseline) if opts.baseline else None)
    outcome = RunOutcome(batches_planned=len(batches))
    kept: list[Record] = []
    if opts.resume:
        kept = resume_records(out / RECORDS, header)
        finished = {r.batch for r in kept if isinstance(r, BatchRecord)}
        batches = [b for b in batches if b.number not in finished]
        kept = [r for r in kept if not isinstance(r, EndRecord)]
        outcome.add(kept)
        outcome.batches_run = len(finished)
        sink = RecordSink(out / RECORDS)
    else:
        (out / RECORDS).unlink(missing_ok=True)
        sink = RecordSink(out / RECORDS)
        sink.write([header])
    if on_start:
        on_start(header)
    if on_records and kept:
        on_records([r for r in kept if not isinstance(r, RunHeader)])

    def accept(records: list[Record]) -> None:
        # The batch record goes last: it marks the batch as finished, so a
        # run killed while writing leaves no finished-looking partial batch.
        ordered = [r for r in records if not isinstance(r, BatchRecord)] + \
                  [r for r in records if isinstance(r, BatchRecord)]
        sink.write(ordered)
        outcome.add(ordered)
        if on_records:
            on_records(ordered)

    cfg = WorkerConfig(seed=opts.seed, machine=machine, out=str(out), fanout=opts.fanout,
                       baseline=str(opts.baseline) if opts.baseline else None,
                       timeout=opts.timeout)
    deadline = time.monotonic() + opts.budget if opts.budget else None
    try:
        outcome.batches_run += run_batches(batches, cfg, opts.jobs, accept, deadline)
    except KeyboardInterrupt:
        outcome.interrupted = True
        outcome.batches_run = outcome.batch_status.total()
    finally:
        sink.close()
    return outcome
