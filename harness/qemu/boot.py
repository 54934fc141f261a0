"""One boot of a guest stub over a batch of images: ``run_batch`` packs the
job, boots the stub once with file-backed guest RAM
(``memory-backend-file,share=on``), and reads the results area and the
table regions straight out of that file after QEMU has gone, however it
went: the pages of a shared file mapping stay in the file even when QEMU is
SIGKILLed.  Runs are classified, never raised: COMPLETED, GUEST_ERROR,
CRASHED, TIMEOUT; only trouble that prevents a run at all (no QEMU, QEMU
refusing its command line) raises.
"""
from __future__ import annotations

import enum
import os
import re
import shlex
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Sequence

from reference.arch import Arch

from ..errors import QemuError, UsageError
from .build import build_stub
from .elf import read_stub
from .fatal import describe_fatal
from .job import (
    FatalInfo,
    GuestStatus,
    ImageResult,
    JobImage,
    JobResults,
    RamFile,
    prepare_job,
    unpack_results,
)
from .launcher import QemuExit, QemuMachine, find_qemu

END_MARKER = "EXIT: STATUS=0"
_FATAL_LINE = re.compile(r"^FATAL:.*$", re.MULTILINE)


class BatchStatus(enum.Enum):
    """How a batch ended: its boot (classify_boot), or the harness failing
    on it (HARNESS_ERROR, set by the runner: QEMU refused to start, or
    s2diff itself raised; the batch then has no case records).  The values
    are the ``status`` of results.jsonl batch records."""

    COMPLETED = "completed"         # end marker, exit 0, results header COMPLETED
    GUEST_ERROR = "guest-error"     # the stub reported FATAL (unexpected exception, bad job)
    CRASHED = "crashed"             # QEMU died (signal), exited non-zero or without the end marker
    TIMEOUT = "timeout"             # no end within the timeout; QEMU was killed
    HARNESS_ERROR = "harness-error"


class FailureKind(enum.Enum):
    """How a boot failed, as a crash/hang case file records it (its
    ``expect.kind``); see failure_kind."""

    CRASH = "crash"                 # QEMU died: a signal, or an exit without the end marker
    HANG = "hang"                   # no end within the timeout
    GUEST_ERROR = "guest-error"     # the stub stopped with FATAL


def failure_kind(status: BatchStatus) -> FailureKind | None:
    """The failure a batch status stands for (None: completed, or not a boot)."""
    return {BatchStatus.CRASHED: FailureKind.CRASH, BatchStatus.TIMEOUT: FailureKind.HANG,
            BatchStatus.GUEST_ERROR: FailureKind.GUEST_ERROR}.get(status)


@dataclass(frozen=True)
class BootEnd:
    """What is known when a boot is over: how the process ended
    (``exit``), the results header's status (``guest``), the console, the
    job's size and the stub's progress, the timeout in seconds
    (``limit``), why the results area could not be read (``unreadable``,
    "" when it could), the stub's FATAL report decoded (``fatal``, "" when
    none) and the command line (for the error of a QEMU that did not start)."""

    exit: QemuExit
    guest: GuestStatus
    console: str
    images: int
    images_done: int
    limit: float
    unreadable: str = ""
    fatal: str = ""
    argv: tuple[str, ...] = ()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify_boot(end: BootEnd) -> tuple[BatchStatus, str]:
    """How a boot ended, and a diagnostic for any status but COMPLETED.

    Never QEMU's exit status alone: COMPLETED needs exit 0, the results
    header's COMPLETED and the end marker on the console.  A timeout wins
    over everything; then an unreadable results area (CRASHED); then the
    stub's FATAL (header or console line: GUEST_ERROR).  A QEMU that exits
    non-zero before the stub ran at all is not a batch outcome: QemuError
    (it refused its command line).  Pure: no I/O."""
    q = end.exit
    how = (f"killed by signal {q.signal} ({_signal_name(q.signal)})"
           if q.signal is not None else f"exited with status {q.returncode}")
    fatal_line = _FATAL_LINE.search(end.console)
    if q.timed_out:
        return BatchStatus.TIMEOUT, (f"no end marker within {end.limit:.1f} s; images done "
                                     f"{end.images_done}/{end.images}; QEMU stopped")
    if end.unreadable:
        return BatchStatus.CRASHED, (f"QEMU {how}, leaving the results area unreadable "
                                     f"({end.unreadable}): nothing kept")
    if end.guest is GuestStatus.FATAL or fatal_line:
        parts = [fatal_line.group(0)] if fatal_line else []
        if end.fatal:
            parts.append(end.fatal)
        return BatchStatus.GUEST_ERROR, "\n".join(parts)
    if q.returncode == 0 and end.guest is GuestStatus.COMPLETED and END_MARKER in end.console:
        return BatchStatus.COMPLETED, ""
    if end.guest is GuestStatus.NOT_STARTED and q.signal is None and q.returncode != 0:
        raise QemuError(f"QEMU exited with status {q.returncode} before the stub ran",
                        argv=list(end.argv), returncode=q.returncode, output=end.console)
    tail = "\n".join(end.console.strip().splitlines()[-5:])
    marker = "after the end marker" if END_MARKER in end.console else "without the end marker"
    return BatchStatus.CRASHED, (f"QEMU {how} {marker}; images done "
                                 f"{end.images_done}/{end.images}; stub status {end.guest.name}"
                                 + (f"\nlast console lines:\n{tail}" if tail else ""))



# --- batches ---------------------------------------------------------------------

@dataclass(frozen=True)
class BatchResult:
    """One boot of a stub over a batch of images.

    ``images``: one ImageResult per input image; an image the stub did not
    reach has every observation NOT_RUN (an image cut short keeps the
    records of the probes it finished; ``completed`` tells which).
    ``id_registers`` by name (harness.qemu.job.ID_REGISTER_NAMES); ``argv`` the
    exact QEMU command line; ``console`` its output; ``elapsed`` seconds;
    ``diagnostic`` a human explanation of any status but COMPLETED."""

    status: BatchStatus
    arch: Arch
    cpu: str
    images: tuple[ImageResult, ...]
    images_done: int
    probes_done: int
    id_registers: Mapping[str, int]
    guest_status: GuestStatus
    fatal: FatalInfo | None
    argv: tuple[str, ...]
    qemu_version: str
    console: str
    elapsed: float
    returncode: int | None
    signal: int | None
    diagnostic: str
    # Seconds spent per stage of run_batch: "pack" (the job blob), "qemu"
    # (QEMU's process from launch to reaping), "unpack" (the results area
    # and regions read back), "boot" (the rest: stub ELF, batch directory,
    # RAM file).  For `s2diff bench`'s profile.
    stages: tuple[tuple[str, float], ...] = ()

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)


def default_timeout(images: Sequence[JobImage]) -> float:
    """Seconds allowed for a batch: a fixed start allowance plus ~30x the
    measured per-image and per-probe costs (docs/job-abi.md), since CI
    machines are slower and noisier than the one measured."""
    n_probes = sum(len(im.probes) for im in images)
    table_bytes = sum(len(d) for im in images for _, d in im.regions)
    return 20.0 + 200e-6 * len(images) + 10e-6 * n_probes + table_bytes / 20e6


def default_workdir() -> Path | None:
    """Where batch directories go: ``$S2DIFF_TMPDIR``, else /dev/shm when
    writable, else the system default (None).  Guest RAM is a file there;
    on tmpfs the pages QEMU dirties cost no disk writeback, which measured
    3x faster for batches with per-image tables (docs/job-abi.md)."""
    env = os.environ.get("S2DIFF_TMPDIR")
    if env:
        return Path(env)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def _remove_tree(path: Path) -> None:
    """shutil.rmtree, finished even when an exception (Ctrl-C, a worker's
    order to stop) interrupts it: a batch directory holds a RAM file of up
    to a GiB, in /dev/shm by default."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _empty_results(images: Sequence[JobImage]) -> JobResults:
    return JobResults(GuestStatus.NOT_STARTED, 0, 0, MappingProxyType({}),
                      tuple(ImageResult.not_run(len(im.probes))
                            for im in images), None)


BATCH_DIR_PREFIX = "s2diff-qemu-"


def sweep_stale_batch_dirs(root: Path | None) -> None:
    """Remove batch directories whose harness process is gone (killed with
    SIGKILL, it could not clean up): their name carries its PID.  A guest
    RAM file there can hold up to 1 GiB of /dev/shm."""
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    try:
        entries = list(base.glob(f"{BATCH_DIR_PREFIX}*-*"))
    except OSError:
        return
    for d in entries:
        pid = d.name[len(BATCH_DIR_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(d, ignore_errors=True)


def run_batch(arch: Arch, cpu: str, images: Sequence[JobImage], *,
              qemu: Path | str | None = None, timeout: float | None = None,
              workdir: Path | None = None, keep_dir: Path | None = None,
              hang_after: int | None = None, stub: Path | None = None,
              extra_args: Sequence[str] = ()) -> BatchResult:
    """Run ``images`` in one boot of the ``arch`` stub on ``-cpu cpu``.

    ``timeout`` in seconds (default: default_timeout); ``workdir``: where the
    temporary directory (job blob, RAM file, console log) is made (default:
    default_workdir()), removed on every path; ``keep_dir``: use and keep this directory instead;
    ``hang_after``: fault-injection hook, the stub spins after that image
    index; ``stub``: a prebuilt stub ELF (default: build_stub(arch));
    ``extra_args``: more QEMU arguments (``-d mmu``, ``-s -S``, ``-trace ...``).
    With ``keep_dir`` the directory also gets a copy of the stub and
    ``rerun.sh``, the command line that re-runs this boot by hand.

    Raises UsageError for a job the stub cannot take, ToolMissing/BuildError
    for a missing toolchain, QemuError when QEMU does not start at all.
    Every other outcome is a BatchResult status."""
    started = time.monotonic()
    stub_elf = read_stub(stub or build_stub(arch))
    if stub_elf.arch is not arch:
        raise UsageError(f"{stub_elf.path} is a {stub_elf.arch.value} stub, not {arch.value}")
    layout = stub_elf.layout
    t = time.monotonic()
    job = prepare_job(layout, images, hang_after)
    t_pack = time.monotonic() - t
    binary = find_qemu(arch, qemu)
    limit = default_timeout(images) if timeout is None else timeout

    kernel = stub_elf.path
    if keep_dir is not None:
        keep_dir = Path(keep_dir).resolve()     # the command line must work from anywhere
        keep_dir.mkdir(parents=True, exist_ok=True)
        tmp = keep_dir
        # The kept directory re-runs on its own: the stub goes with it.
        kernel = keep_dir / "stub.elf"
        if kernel.resolve() != stub_elf.path.resolve():
            shutil.copyfile(stub_elf.path, kernel)
    else:
        root = workdir or default_workdir()
        sweep_stale_batch_dirs(root)
        tmp = Path(tempfile.mkdtemp(prefix=f"{BATCH_DIR_PREFIX}{os.getpid()}-", dir=root))
    try:
        job_path = tmp / "job.bin"
        job.write(job_path)
        ram_path = tmp / "ram.bin"
        # A fresh RAM file reads as zeros: results records of probes the
        # stub never reached are then NOT_RUN (kind 0).
        ram_path.unlink(missing_ok=True)
        machine = QemuMachine(arch, cpu, kernel, ram_file=ram_path,
                              ram_size=layout.ram_size, loaders=((job_path, layout.job_start),),
                              qemu=binary, extra_args=extra_args)
        version = machine.version
        (tmp / "cmdline.txt").write_text(machine.command_line + "\n")
        if keep_dir is not None:
            rerun = tmp / "rerun.sh"
            rerun.write_text("#!/bin/sh\n# Re-runs this QEMU boot by hand (kept by s2diff --keep);"
                             " extra QEMU arguments may follow.\n"
                             f"exec {machine.command_line} \"$@\"\n")
            rerun.chmod(0o755)
        try:
            with machine:
                qexit = machine.wait(limit)
        finally:
            (tmp / "console.log").write_text(machine.console)
        console = machine.console
        unreadable = ""
        t = time.monotonic()
        if ram_path.exists():
            with RamFile(ram_path, layout.ram_base) as ram:
                try:
                    results = unpack_results(layout, ram, images)
                except UsageError as exc:
                    # Not the job's fault (prepare_job and the stub checked
                    # it): something scribbled on the results area.
                    unreadable = str(exc)
                    results = _empty_results(images)
        else:
            results = _empty_results(images)
        t_unpack = time.monotonic() - t
    finally:
        if keep_dir is None:
            _remove_tree(tmp)
    wall = time.monotonic() - started

    status, diagnostic = classify_boot(BootEnd(
        exit=qexit, guest=results.status, console=console, images=len(images),
        images_done=results.images_done, limit=limit, unreadable=unreadable,
        fatal=describe_fatal(stub_elf, results.fatal) if results.fatal is not None else "",
        argv=machine.argv))
    return BatchResult(status=status, arch=arch, cpu=cpu, images=results.images,
                       images_done=results.images_done, probes_done=results.probes_done,
                       id_registers=results.id_registers, guest_status=results.status,
                       fatal=results.fatal, argv=machine.argv, qemu_version=version,
                       console=console, elapsed=qexit.elapsed, returncode=qexit.returncode,
                       signal=qexit.signal, diagnostic=diagnostic,
                       stages=(("pack", t_pack), ("qemu", qexit.elapsed), ("unpack", t_unpack),
                               ("boot", max(wall - t_pack - qexit.elapsed - t_unpack, 0.0))))
