"""Executing batches: in worker processes (or the harness process with
--jobs 1), each task -- a batch on one QEMU -- is generated, run in QEMU
with crash-resume (harness.resume), judged, matched against the baseline
and turned into records; a case file is written per case with a new
divergence, and one per crash family with the single probe that
reproduces it.

The worker pool's signal handling lives here too: Ctrl-C is the parent's,
SIGTERM unwinds a worker's running batch so that its QEMU is stopped and
its batch directory removed.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import multiprocessing.connection
import os
import shlex
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from reference.access_case import AccessCase
from reference.generate import Case

from .baseline import EMPTY, Baseline, apply_baseline, load_baseline
from .casefile import divergence_case, save_case
from .costs import Stopwatch, keep_freed_memory
from .errors import InfrastructureError, QemuError, UsageError
from .findings import (
    Where,
    boot_cases,
    case_file_name,
    claim,
    crash_case_file,
    crash_record,
    isolate_failure,
)
from .judge.bulk import SAMPLE_IPAS
from .judge.case import judge_batch
from .kinds import RunCase, case_kind
from .plan import Batch, Machine, generate_batch, job_image
from .qemu.boot import BatchResult, BatchStatus, FailureKind
from .qemu.elf import el1_window, read_stub
from .qemu.launcher import SignalsHeld, set_parent_death_signal
from .records import (
    BatchRecord,
    CaseRecord,
    CaseStatus,
    CrashRecord,
    DivergenceRecord,
    Record,
)
from .resume import CrashEvent, ResumedRun, probe_key, probe_keys, run_resumable


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs besides the task."""

    seed: int
    machine: Machine
    out: str | None = None
    baseline: str | None = None
    timeout: float | None = None
    fanout: int = 0
    run_id: str = ""
    profile: bool = False
    qemu_args: tuple[str, ...] = ()
    keep: str | None = None         # keep each boot's files in KEEP/batch-N (rerun.sh)


@dataclasses.dataclass(frozen=True)
class Task:
    """One batch on one QEMU (``qemu``: the build's label, a key of
    Machine.qemu), with the quarantine keys the run has learnt on that
    QEMU so far (harness.resume: probes predicted to crash it)."""

    batch: Batch
    qemu: str = ""
    quarantine: tuple[tuple[str, int], ...] = ()


# Crashes per quarantine key this worker process has seen, per run and QEMU
# label: batches of the run it runs later start with them (the parent also
# passes what every worker saw, with each task).  Per run: with --jobs 1
# the harness process itself is the worker, and it may run several.
_LEARNT: dict[tuple[str, str], dict[str, int]] = {}


def execute_batch(task: Task | Batch, cfg: WorkerConfig) -> list[Record]:
    """Generate, run and judge one batch on one QEMU (runs in a worker
    process).

    Divergences are matched against the baseline here, and a case file is
    written under OUT/cases/ for every case with a new divergence.  A
    failure of the harness itself inside one batch is recorded as that
    batch's status ``harness-error`` with the traceback, and so is QEMU
    failing to run the batch (QemuError: it exited before the stub ran),
    with its command line and output; the run goes on.  Other
    infrastructure errors (no QEMU, no toolchain) propagate."""
    if isinstance(task, Batch):
        task = Task(task, next(iter(cfg.machine.qemu), ""))
    try:
        return _execute_batch(task, cfg)
    except QemuError as exc:
        output = "\n".join(exc.output.strip().splitlines()[-10:])
        return [_harness_error(task, f"{exc}\n{shlex.join(exc.argv)}\n{output}".rstrip(),
                               tuple(exc.argv))]
    except (InfrastructureError, UsageError):
        raise
    except Exception:
        return [_harness_error(task, traceback.format_exc())]


def _harness_error(task: Task, diagnostic: str, argv: tuple[str, ...] = ()) -> BatchRecord:
    """The batch record of a batch that produced no results."""
    batch = task.batch
    return BatchRecord(batch=batch.number, arch=batch.arch.value, cpu=batch.cpu,
                       status=BatchStatus.HARNESS_ERROR, images=len(batch.specs), images_done=0,
                       elapsed=0.0, argv=argv, qemu_version="", diagnostic=diagnostic,
                       qemu=task.qemu)


def _execute_batch(task: Task, cfg: WorkerConfig) -> list[Record]:
    batch, label = task.batch, task.qemu
    arch = batch.arch.value
    machine = cfg.machine
    qemu = machine.qemu_path(label, batch.arch)
    stub = Path(machine.stubs[arch])
    clock = Stopwatch()
    cases = generate_batch(batch, cfg.seed, machine.arena[arch], machine.memory_map(batch.arch),
                           cfg.fanout, el1=el1_window(read_stub(stub)))
    clock.lap("generate")
    quarantine = _LEARNT.setdefault((cfg.run_id, label), {})
    for key, n in task.quarantine:
        quarantine[key] = max(quarantine.get(key, 0), n)
    keys_of: dict[int, str] = {}

    def on_crash(event: CrashEvent) -> None:
        # Count the crash against the probe's predicted outcome: once it
        # is confirmed, such probes are held back (harness.resume).
        key = _probe_key(cases[event.image], event.probe)
        keys_of[id(event)] = key
        quarantine[key] = quarantine.get(key, 0) + 1

    images = [job_image(c) for c in cases]
    clock.lap("images")
    run = run_resumable(batch.arch, batch.cpu, images,
                        capacity=machine.max_probes[arch], qemu=qemu, stub=stub,
                        timeout=cfg.timeout, keys=lambda i: _probe_keys(cases[i]),
                        quarantine=quarantine, on_crash=on_crash, extra_args=cfg.qemu_args,
                        keep=_keep_dir(cfg, batch, label),
                        sequential=lambda i: isinstance(cases[i], AccessCase))
    result = run.result
    clock.lap("run", dict(result.stages))
    records = [_labelled(r, label) for r in judge_batch(batch, cases, result)]
    clock.lap("judge")
    records = _with_crash_counts(records, cases, run)
    baseline = _baseline(cfg.baseline) if cfg.baseline else EMPTY
    records = apply_baseline(baseline, records)
    crashes = [crash_record(batch, label, cases, result, ev, keys_of.get(id(ev), ""),
                            int(run.held[ev.image].sum())) for ev in run.crashes]
    crashes = [c for c in apply_baseline(baseline, crashes) if isinstance(c, CrashRecord)]
    if cfg.out:
        where = Where(out=Path(cfg.out), folder=_cases_folder(cfg, label), qemu=qemu, stub=stub,
                      timeout=cfg.timeout, capacity=machine.max_probes[arch])
        records = write_case_files(where.folder, cases, result, records,
                                   [spec.entry.name for spec in batch.specs])
        source = f"batch {batch.number}" + (f" on QEMU {label}" if label else "")
        crashes = [crash_case_file(where, source, cases, ev, rec)
                   for ev, rec in zip(run.crashes, crashes)]
        if run.unattributed is not None:
            _failed, segments = run.unattributed
            finding = isolate_failure(where, batch, boot_cases(cases, segments))
            records = [dataclasses.replace(r, isolated=finding) if isinstance(r, BatchRecord)
                       else r for r in records]
    records = aggregate_new(aggregate_known([compact_known(r) for r in records]))
    clock.lap("records")
    profile = tuple(clock.stages.items()) if cfg.profile else None
    records = [dataclasses.replace(r, boots=run.boots, profile=profile)
               if isinstance(r, BatchRecord) else r for r in records]
    return records + list(crashes)


_BASELINES: dict[tuple[str, int, int], Baseline] = {}


def _baseline(path: str) -> Baseline:
    """The baseline file, parsed once per worker process while it is
    unchanged (parsing it costs ~6 ms, a batch's judging ~50 ms)."""
    try:
        st = os.stat(path)
    except OSError:
        return load_baseline(path)      # its own error for a missing file
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _BASELINES:
        _BASELINES.clear()
        _BASELINES[key] = load_baseline(path)
    return _BASELINES[key]


def _probe_key(case: RunCase, row: int) -> str:
    """The quarantine key of a probe (harness.resume): an AT probe's from
    its predicted outcomes; an access or stage-1 probe's its own (case and
    row: such a probe is never held back for another's crashes)."""
    if isinstance(case, Case):
        return probe_key(case, row)
    return f"{case_kind(case).value}:{case.key}:{row}"


def _probe_keys(case: RunCase) -> np.ndarray:
    if isinstance(case, Case):
        return probe_keys(case)
    n = len(job_image(case).probes)
    return np.array([_probe_key(case, row) for row in range(n)], dtype=object)


def _labelled(rec: Record, label: str) -> Record:
    if isinstance(rec, (BatchRecord, CaseRecord, DivergenceRecord)):
        return dataclasses.replace(rec, qemu=label)
    return rec


def _with_crash_counts(records: list[Record], cases: Sequence[RunCase],
                       run: ResumedRun) -> list[Record]:
    """Case records with their probes QEMU died or hung on (``crashed``)
    and held back (``held``), and status crash (timeout) for a case with
    such a probe that did not diverge."""
    crashed = collections.Counter(cases[ev.image].key for ev in run.crashes)
    hung = {cases[ev.image].key for ev in run.crashes if ev.kind is FailureKind.HANG}
    held = {case.key: int(mask.sum()) for case, mask in zip(cases, run.held)}
    out: list[Record] = []
    for rec in records:
        if isinstance(rec, CaseRecord) and (crashed[rec.key] or held.get(rec.key)):
            status = rec.status
            if crashed[rec.key] and status is not CaseStatus.DIVERGE:
                status = CaseStatus.TIMEOUT if rec.key in hung else CaseStatus.CRASH
            rec = dataclasses.replace(rec, status=status, crashed=crashed[rec.key],
                                      held=held.get(rec.key, 0))
        out.append(rec)
    return out


def _keep_dir(cfg: WorkerConfig, batch: Batch, label: str) -> Path | None:
    """KEEP/batch-N (KEEP/LABEL/batch-N with several QEMUs) for --keep:
    where each boot's files stay, with rerun.sh (boot k > 0 of a batch in
    batch-N-k)."""
    if cfg.keep is None:
        return None
    folder = Path(cfg.keep)
    if len(cfg.machine.qemu) > 1:
        folder = folder / case_file_name(label)[:-len(".json")]
    return folder / f"batch-{batch.number}"


def _cases_folder(cfg: WorkerConfig, label: str) -> Path:
    """OUT/cases, or OUT/cases/LABEL when the run has several QEMUs (the
    same case may diverge on two of them)."""
    folder = Path(cfg.out or ".") / "cases"
    if len(cfg.machine.qemu) > 1:
        folder = folder / case_file_name(label)[:-len(".json")]
    return folder


def aggregate_known(records: list[Record]) -> list[Record]:
    """One record per (case, baseline entry, kind, expected, observed) for
    known divergences, ``count`` summed: a nightly run has tens of
    millions of known diverging probes, and the reports only count them.
    New divergences keep one record each (per fan-out group)."""
    out: list[Record] = []
    merged: dict[tuple, int] = {}
    for rec in records:
        if not isinstance(rec, DivergenceRecord) or rec.known is None:
            out.append(rec)
            continue
        key = (rec.key, rec.known, rec.kind, rec.expected, rec.observed)
        if key in merged:
            first = out[merged[key]]
            assert isinstance(first, DivergenceRecord)
            out[merged[key]] = dataclasses.replace(first, count=first.count + rec.count)
            continue
        merged[key] = len(out)
        out.append(dataclasses.replace(rec, ipas=None, span=None))
    return out


def compact_known(rec: Record) -> Record:
    """A known divergence without ``permitted``, ``raw`` and ``argv``: its
    baseline entry has the evidence and a reproducing case, and a nightly
    run has many thousands of them."""
    if isinstance(rec, DivergenceRecord) and rec.known is not None:
        return dataclasses.replace(rec, permitted=None, raw=None, argv=None)
    return rec


def write_case_files(folder: Path, cases: Sequence[RunCase], result: BatchResult,
                     records: list[Record], entries: Sequence[str] | None = None
                     ) -> list[Record]:
    """A case file (docs/case-file.md) in ``folder`` (OUT/cases, or its
    QEMU's subfolder) for each case that is the first of its matrix entry
    (``entries``: the entry of each case) in the run to show one of its new
    divergence families, with the observation, the QEMU command line and
    version added; the records of its new divergences with ``case_file``
    set (relative to OUT, the parent of the ``cases`` folder).  Later
    cases of an entry with only families it has shown add no file: on a
    QEMU that diverges everywhere the files would be most of the output."""
    new_by_key: dict[str, list[DivergenceRecord]] = {}
    for rec in records:
        if isinstance(rec, DivergenceRecord) and rec.known is None:
            new_by_key.setdefault(rec.key, []).append(rec)
    if not new_by_key:
        return records
    folder.mkdir(parents=True, exist_ok=True)
    root = next(p for p in (folder, *folder.parents) if p.name == "cases").parent
    written: dict[str, str] = {}
    for index, (case, image) in enumerate(zip(cases, result.images)):
        divs = new_by_key.get(case.key)
        if not divs:
            continue
        entry = entries[index] if entries is not None else case.key
        claimed = [claim(folder, "family-" + hashlib.sha1(
                   repr((entry, d.family)).encode()).hexdigest()[:16]) for d in divs]
        if not any(claimed):
            continue
        name = case_file_name(case.key)
        # What the file holds is the case file's business (harness.casefile).
        kept, extra = divergence_case(case, image, result.argv, result.qemu_version, divs)
        save_case(folder / name, kept, extra)
        written[case.key] = str((folder / name).relative_to(root))
    return [dataclasses.replace(r, case_file=written[r.key])
            if isinstance(r, DivergenceRecord) and r.known is None and r.key in written else r
            for r in records]


def aggregate_new(records: list[Record]) -> list[Record]:
    """One record per (case, divergence family) for new divergences
    (harness.vocabulary.FamilyKey: kind, permitted and observed labels,
    aim without level and values), ``count`` summed and the first few
    IPAs kept: on a QEMU that diverges everywhere a case has hundreds of
    fan-out groups of one root cause.  The first record of a family keeps
    its probe, registers and permitted outcomes (the case file has it)."""
    out: list[Record] = []
    merged: dict[tuple, int] = {}
    for rec in records:
        if not isinstance(rec, DivergenceRecord) or rec.known is not None:
            out.append(rec)
            continue
        key = (rec.key, rec.family)
        if key not in merged:
            merged[key] = len(out)
            out.append(rec)
            continue
        first = out[merged[key]]
        assert isinstance(first, DivergenceRecord)
        ipas = (*(first.ipas or ((first.ipa,) if first.ipa else ())),
                *(rec.ipas or ((rec.ipa,) if rec.ipa else ())))
        out[merged[key]] = dataclasses.replace(first, count=first.count + rec.count,
                                               ipas=tuple(dict.fromkeys(ipas))[:SAMPLE_IPAS])
    return out


def run_batches(tasks: Iterable[Task], cfg: WorkerConfig, jobs: int,
                sink: Callable[[list[Record]], None],
                deadline: float | None = None) -> int:
    """Execute ``tasks`` (taken from the iterable only as workers need them:
    a lazy plan stays lazy) on ``jobs`` worker processes, feeding each
    task's records to ``sink`` as it finishes.  Tasks not started by
    ``deadline`` (time.monotonic) are not taken.  Returns the number run.

    An exception here (KeyboardInterrupt included) stops the workers at
    once: tasks not started are cancelled and running ones abandoned,
    their QEMUs stopped and temporary directories removed."""
    done = 0
    queue = iter(tasks)
    if jobs <= 1:
        keep_freed_memory()
        for task in queue:
            if deadline is not None and time.monotonic() > deadline:
                break
            sink(execute_batch(task, cfg))
            done += 1
        return done
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init)
    try:
        pending: set[concurrent.futures.Future] = set()
        exhausted = False
        while True:
            while not exhausted and len(pending) < jobs and (
                    deadline is None or time.monotonic() < deadline):
                nxt = next(queue, None)
                if nxt is None:
                    exhausted = True
                    break
                # A submit may fork a worker: a signal landing in a fork
                # hook would be lost (harness.qemu.launcher.SignalsHeld).
                with SignalsHeld() as held:
                    pending.add(pool.submit(_execute_in_worker, nxt, cfg))
                held.release()
            if not pending:
                break
            finished, pending = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in finished:
                sink(fut.result())
                done += 1
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    return done


# Seconds a worker gets to stop its QEMU (QemuMachine.shutdown: SIGTERM,
# up to 3 s, SIGKILL) and remove its batch directory before it is killed.
WORKER_STOP_GRACE = 5.0


def _worker_init() -> None:
    """Signals in a worker process.  Ctrl-C is the parent's to handle (a
    terminal sends it to the whole process group): ignored here.  SIGTERM
    -- from the parent stopping the pool, or from the kernel when the
    parent dies -- unwinds the running batch like an exception, so that
    QemuMachine stops its QEMU and run_batch removes its directory."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    set_parent_death_signal(signal.SIGTERM)
    keep_freed_memory()


# Whether this worker process is inside execute_batch (_execute_in_worker),
# and whether it was told to stop.
_in_batch = False
_stopping = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """In a batch: unwind it (SystemExit, which execute_batch does not
    catch) so that QEMU is stopped and the batch directory removed, then
    _execute_in_worker leaves.  Anywhere else -- idle in the executor's
    queue, or sending a result, where the executor catches every exception
    and waits for more work, forever when the parent is gone -- leave now:
    there is nothing to clean up.  A second SIGTERM changes nothing: it
    must not cut the cleanup short."""
    global _stopping
    if _stopping:
        return
    _stopping = True
    if _in_batch:
        raise SystemExit(128 + signum)
    os._exit(128 + signum)


def _execute_in_worker(task: Task, cfg: WorkerConfig) -> list[Record]:
    """execute_batch in a worker process; leaves the process once SIGTERM
    has unwound the batch."""
    global _in_batch
    _in_batch = True
    try:
        records = execute_batch(task, cfg)
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    finally:
        _in_batch = False
    if _stopping:
        # The SystemExit was lost on the way: Python only prints one raised
        # in a fork hook (QemuMachine.launch holds signals across its own
        # fork, not across every fork).  The batch ended normally.
        os._exit(128 + signal.SIGTERM)
    return records


def _stop_pool(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Cancel what has not started and stop the workers now: SIGTERM, then
    SIGKILL after WORKER_STOP_GRACE seconds.  ``shutdown(wait=True)``
    would instead wait for every running batch to finish."""
    # The executor has no public list of its worker processes.
    workers = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        proc.terminate()
    # Wait on the sentinels, not join(): the executor's own thread reaps
    # these processes too, and a reaped pid must not be signalled again.
    left: dict[Any, multiprocessing.Process] = {proc.sentinel: proc for proc in workers}
    end = time.monotonic() + WORKER_STOP_GRACE
    while left and time.monotonic() < end:
        for ready in multiprocessing.connection.wait(list(left), end - time.monotonic()):
            del left[ready]
    for proc in left.values():
        proc.kill()
