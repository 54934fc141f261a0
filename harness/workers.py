"""Executing batches: in worker processes (or the harness process with
--jobs 1), each batch is generated, run in QEMU, judged, matched against
the baseline and turned into records; a case file is written per case with
a new divergence, and a batch that crashed or hung QEMU is isolated down
to one case.

The worker pool's signal handling lives here too: Ctrl-C is the parent's,
SIGTERM unwinds a worker's running batch so that its QEMU is stopped and
its batch directory removed.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing.connection
import os
import shlex
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .baseline import EMPTY, apply_baseline, load_baseline
from .casefile import divergence_case, save_case
from .debug.isolate import IsolateError, failure_of, isolate, isolation_extra
from .errors import InfrastructureError, QemuError, UsageError
from .judge.case import judge_batch
from .kinds import RunCase
from .plan import Batch, Machine, generate_batch, job_image
from .qemu.boot import BatchResult, BatchStatus, run_batch
from .qemu.elf import el1_window, read_stub
from .qemu.job import JobImage
from .qemu.launcher import set_parent_death_signal
from .records import BatchRecord, DivergenceRecord, Isolation, Record


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs besides the batch."""

    seed: int
    machine: Machine
    out: str | None = None
    baseline: str | None = None
    timeout: float | None = None
    fanout: int = 0
    qemu_args: tuple[str, ...] = ()
    keep: str | None = None         # keep each boot's files in KEEP/batch-N (rerun.sh)


def execute_batch(batch: Batch, cfg: WorkerConfig) -> list[Record]:
    """Generate, run and judge one batch (runs in a worker process).

    Divergences are matched against the baseline here, and a case file is
    written under OUT/cases/ for every case with a new divergence.  A
    failure of the harness itself inside one batch is recorded as that
    batch's status ``harness-error`` with the traceback, and so is QEMU
    failing to run the batch (QemuError: it exited before the stub ran),
    with its command line and output; the run goes on.  Other
    infrastructure errors (no QEMU, no toolchain) propagate."""
    try:
        return _execute_batch(batch, cfg)
    except QemuError as exc:
        output = "\n".join(exc.output.strip().splitlines()[-10:])
        return [_harness_error(batch, f"{exc}\n{shlex.join(exc.argv)}\n{output}".rstrip(),
                               tuple(exc.argv))]
    except (InfrastructureError, UsageError):
        raise
    except Exception:
        return [_harness_error(batch, traceback.format_exc())]


def _harness_error(batch: Batch, diagnostic: str, argv: tuple[str, ...] = ()) -> BatchRecord:
    """The batch record of a batch that produced no results."""
    return BatchRecord(batch=batch.number, arch=batch.arch.value, cpu=batch.cpu,
                       status=BatchStatus.HARNESS_ERROR, images=len(batch.specs), images_done=0,
                       elapsed=0.0, argv=argv, qemu_version="", diagnostic=diagnostic)


def _execute_batch(batch: Batch, cfg: WorkerConfig) -> list[Record]:
    arch = batch.arch.value
    machine = cfg.machine
    cases = generate_batch(batch, cfg.seed, machine.arena[arch], machine.memory_map(batch.arch),
                           cfg.fanout, el1=el1_window(read_stub(Path(machine.stubs[arch]))))
    result = run_boots(batch, [job_image(c) for c in cases], cfg)
    records = judge_batch(batch, cases, result)
    baseline = load_baseline(cfg.baseline) if cfg.baseline else EMPTY
    records = apply_baseline(baseline, records)
    if cfg.out:
        records = write_case_files(Path(cfg.out), cases, result, records)
        if result.status in (BatchStatus.CRASHED, BatchStatus.TIMEOUT):
            finding = isolate_failure(batch, cases, cfg)
            records = [dataclasses.replace(r, isolated=finding) if isinstance(r, BatchRecord)
                       else r for r in records]
    return aggregate_known([compact_known(r) for r in records])


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


# Seconds each isolation boot may take: a hang costs this much per
# bisection step, so it is kept short (a healthy single image takes ms).
ISOLATE_TIMEOUT = 10.0


def isolate_failure(batch: Batch, cases: Sequence[RunCase], cfg: WorkerConfig) -> Isolation:
    """Split a batch that crashed or hung QEMU down to the image and probe
    that do it (harness.debug.isolate); a failure that reproduces from one
    case is a finding with its case file (kind crash or hang, `s2diff repro`
    re-runs it); one that does not is recorded as such and stays an
    infrastructure event, never a divergence."""
    arch = batch.arch.value
    # A QEMU that fails without any image is broken, not made to fail by a
    # case: that is infrastructure, whatever a single case then shows.
    empty = run_batch(batch.arch, batch.cpu, [], qemu=cfg.machine.qemu.get(arch),
                      stub=Path(cfg.machine.stubs[arch]), timeout=ISOLATE_TIMEOUT)
    if failure_of(empty) is not None:
        return Isolation(False, why=f"QEMU fails with an empty job too ({empty.status.value}): "
                                    "not caused by a case")
    try:
        iso = isolate(cases, qemu=cfg.machine.qemu.get(arch),
                      timeout=min(cfg.timeout or ISOLATE_TIMEOUT, ISOLATE_TIMEOUT))
    except IsolateError as exc:
        return Isolation(False, why=str(exc))
    if not iso.complete:
        return Isolation(False, why="fails only as a set of images", boots=iso.boots)
    assert cfg.out is not None
    name = case_file_name(f"{iso.case.key}-{iso.failure.kind.value}")
    folder = Path(cfg.out) / "cases"
    folder.mkdir(parents=True, exist_ok=True)
    save_case(folder / name, iso.case, isolation_extra(iso, f"batch {batch.number}"))
    return Isolation(True, kind=iso.failure.kind, key=iso.case.key, probe=iso.probe,
                     case_file=f"cases/{name}", boots=iso.boots)


def run_boots(batch: Batch, images: Sequence[JobImage], cfg: WorkerConfig) -> BatchResult:
    """Run a batch's images in as few QEMU boots as the stub's results area
    allows (usually one), combined into one BatchResult: statuses other than
    completed win, counts and times add up."""
    machine = cfg.machine
    arch = batch.arch.value
    capacity = machine.max_probes[arch]
    chunks: list[list[JobImage]] = [[]]
    probes = 0
    for image in images:
        if chunks[-1] and probes + len(image.probes) > capacity:
            chunks.append([])
            probes = 0
        chunks[-1].append(image)
        probes += len(image.probes)
    def keep_dir(i: int) -> Path | None:
        if cfg.keep is None:
            return None
        return Path(cfg.keep) / (f"batch-{batch.number}" + (f"-{i}" if len(chunks) > 1 else ""))
    results = [run_batch(batch.arch, batch.cpu, chunk, qemu=machine.qemu.get(arch),
                         stub=Path(machine.stubs[arch]), timeout=cfg.timeout,
                         keep_dir=keep_dir(i), extra_args=cfg.qemu_args)
               for i, chunk in enumerate(chunks)]
    if len(results) == 1:
        return results[0]
    worst = next((r for r in results if r.status is not BatchStatus.COMPLETED), results[0])
    return dataclasses.replace(
        worst, images=tuple(im for r in results for im in r.images),
        images_done=sum(r.images_done for r in results),
        probes_done=sum(r.probes_done for r in results),
        elapsed=sum(r.elapsed for r in results),
        console="".join(r.console for r in results),
        diagnostic="\n".join(r.diagnostic for r in results if r.diagnostic))


def compact_known(rec: Record) -> Record:
    """A known divergence without ``permitted``, ``raw`` and ``argv``: its
    baseline entry has the evidence and a reproducing case, and a nightly
    run has many thousands of them."""
    if isinstance(rec, DivergenceRecord) and rec.known is not None:
        return dataclasses.replace(rec, permitted=None, raw=None, argv=None)
    return rec


def case_file_name(key: str) -> str:
    """A file name for a case key: only [A-Za-z0-9._-], so that no key can
    name a path outside the cases directory."""
    safe = "".join(c if c.isascii() and c.isalnum() or c in "._-" else "_" for c in key)
    return safe.strip("._") + ".json"


def write_case_files(out: Path, cases: Sequence[RunCase], result: BatchResult,
                     records: list[Record]) -> list[Record]:
    """One case file per case with a new divergence (docs/case-file.md),
    with the observation, the QEMU command line and version added; the
    records with the new divergences' ``case_file`` set."""
    new_by_key: dict[str, list[DivergenceRecord]] = {}
    for rec in records:
        if isinstance(rec, DivergenceRecord) and rec.known is None:
            new_by_key.setdefault(rec.key, []).append(rec)
    if not new_by_key:
        return records
    folder = out / "cases"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for case, image in zip(cases, result.images):
        divs = new_by_key.get(case.key)
        if not divs:
            continue
        name = case_file_name(case.key)
        # What the file holds is the case file's business (harness.casefile).
        kept, extra = divergence_case(case, image, result.argv, result.qemu_version, divs)
        save_case(folder / name, kept, extra)
        written[case.key] = f"cases/{name}"
    return [dataclasses.replace(r, case_file=written[r.key])
            if isinstance(r, DivergenceRecord) and r.known is None and r.key in written else r
            for r in records]


def run_batches(batches: Sequence[Batch], cfg: WorkerConfig, jobs: int,
                sink: Callable[[list[Record]], None],
                deadline: float | None = None) -> int:
    """Execute ``batches`` on ``jobs`` worker processes, feeding each
    batch's records to ``sink`` as it finishes.  Batches not started by
    ``deadline`` (time.monotonic) are skipped.  Returns the number run.

    An exception here (KeyboardInterrupt included) stops the workers at
    once: batches not started are cancelled and running ones abandoned,
    their QEMUs stopped and temporary directories removed."""
    done = 0
    if jobs <= 1:
        for batch in batches:
            if deadline is not None and time.monotonic() > deadline:
                break
            sink(execute_batch(batch, cfg))
            done += 1
        return done
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init)
    try:
        pending: set[concurrent.futures.Future] = set()
        queue = list(batches)
        queue.reverse()
        while queue or pending:
            while queue and len(pending) < jobs and (deadline is None or time.monotonic() < deadline):
                pending.add(pool.submit(_execute_in_worker, queue.pop(), cfg))
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


def _execute_in_worker(batch: Batch, cfg: WorkerConfig) -> list[Record]:
    """execute_batch in a worker process; leaves the process once SIGTERM
    has unwound the batch."""
    global _in_batch
    _in_batch = True
    try:
        records = execute_batch(batch, cfg)
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
