"""QEMU launcher (``QemuMachine``) and batch runner (``run_batch``).

One class owns the QEMU process, after QEMU's python/qemu/machine.py: a
context manager whose exit always reaps QEMU (wait, SIGTERM, SIGKILL), an
argv list never passed through a shell, the console drained continuously so
QEMU cannot block on it, and the exact command line and version recorded.

``run_batch`` packs a job, boots the stub once with file-backed guest RAM
(``memory-backend-file,share=on``), and reads the results area and the
table regions straight out of that file after QEMU has gone, however it
went: the pages of a shared file mapping stay in the file even when QEMU
is SIGKILLed.  Runs are classified, never raised: COMPLETED, GUEST_ERROR,
CRASHED, TIMEOUT; only trouble that prevents a run at all (no QEMU, QEMU
refusing its command line) raises.
"""
from __future__ import annotations

import ctypes
import enum
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Sequence

import pexpect

from harness.build import build_stub
from harness.elfsyms import StubElf, read_stub
from harness.errors import QemuError, ToolMissing, UsageError
from harness.job import (FatalInfo, FatalReason, GuestStatus, ImageResult, JobImage,
                         JobResults, RamFile, pack_job, unpack_results)
from reference.arch import Arch

QEMU_PACKAGE = "qemu-system-arm"        # Debian ships both system emulators in it

_QEMU_DEFAULTS: Mapping[Arch, tuple[str, str]] = MappingProxyType({
    Arch.AARCH64: ("qemu-system-aarch64", "S2DIFF_QEMU_AARCH64"),
    Arch.AARCH32: ("qemu-system-arm", "S2DIFF_QEMU_ARM"),
})

END_MARKER = "EXIT: STATUS=0"
_FATAL_LINE = re.compile(r"^FATAL:.*$", re.MULTILINE)

_PR_SET_PDEATHSIG = 1


class BatchStatus(enum.Enum):
    """How one boot ended."""

    COMPLETED = "completed"         # end marker, exit 0, results header COMPLETED
    GUEST_ERROR = "guest-error"     # the stub reported FATAL (unexpected exception, bad job)
    CRASHED = "crashed"             # QEMU died (signal), exited non-zero or without the end marker
    TIMEOUT = "timeout"             # no end within the timeout; QEMU was killed


@dataclass(frozen=True)
class QemuExit:
    """How the QEMU process ended.  ``returncode`` when it exited,
    ``signal`` when a signal killed it; ``elapsed`` in seconds from launch
    to reaping."""

    returncode: int | None
    signal: int | None
    timed_out: bool
    elapsed: float


# --- finding QEMU -------------------------------------------------------------

def find_qemu(arch: Arch, override: Path | str | None = None) -> Path:
    """The QEMU system emulator for ``arch``: ``override`` (a path or a
    name on PATH), else ``$S2DIFF_QEMU_AARCH64`` / ``$S2DIFF_QEMU_ARM``,
    else qemu-system-aarch64 / qemu-system-arm from PATH."""
    default, env = _QEMU_DEFAULTS[arch]
    wanted = str(override) if override is not None else os.environ.get(env) or default
    found = shutil.which(wanted)
    if found is None:
        raise ToolMissing(f"QEMU binary {wanted!r} not found (set {env} or install the "
                          f"Debian package {QEMU_PACKAGE})")
    return Path(found)


@lru_cache(maxsize=None)
def _version_of(path: str, mtime_ns: int) -> str:
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QemuError(f"{path} --version failed: {exc}", argv=[path, "--version"]) from exc
    if proc.returncode != 0 or not proc.stdout:
        raise QemuError(f"{path} --version failed", argv=[path, "--version"],
                        returncode=proc.returncode, output=proc.stdout + proc.stderr)
    return proc.stdout.splitlines()[0].strip()


def qemu_version(binary: Path | str) -> str:
    """First line of ``binary --version`` (cached per binary and mtime)."""
    path = str(Path(binary).resolve())
    return _version_of(path, os.stat(path).st_mtime_ns)


def set_parent_death_signal(sig: int) -> None:
    """Have the kernel send ``sig`` to this process when the thread that
    created it dies (Linux prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _die_with_parent() -> None:
    # Runs in the forked child before exec: QEMU gets SIGKILL when the
    # thread that launched it dies, so a killed harness leaks no QEMU.
    set_parent_death_signal(signal.SIGKILL)


class _SignalsHeld:
    """Holds SIGINT and SIGTERM while QEMU is forked.  CPython runs fork
    hooks written in Python (logging's, threading's) and only prints an
    exception raised in one, so a Ctrl-C, or a worker's order to stop
    (harness.run), landing there would be lost.  ``release`` then hands
    each signal caught meanwhile to its own handler.  Handlers can only be
    changed in the main thread; elsewhere nothing is held."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "_SignalsHeld":
        self.caught: list[int] = []
        self.saved: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self._SIGNALS:
                self.saved[sig] = signal.signal(sig, lambda n, _frame: self.caught.append(n))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self.saved.items():
            # None: a handler installed outside Python; the default is closest.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def release(self) -> None:
        """Run the saved handler of each signal caught (it may raise)."""
        for sig in self.caught:
            handler = self.saved[sig]
            if callable(handler):
                handler(sig, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), sig)


# --- the launcher ---------------------------------------------------------------

class QemuMachine:
    """One QEMU process running a stub ELF on the ``virt`` machine.

    Use as a context manager: ``__enter__`` launches, ``__exit__`` always
    reaps (polite wait, SIGTERM, SIGKILL), Ctrl-C included.  Guest RAM is
    the file ``ram_file`` (``ram_size`` bytes, shared mapping), so it can be
    read after QEMU is gone.  ``loaders``: raw blobs (path, guest address)
    placed with ``-device loader,force-raw=on``."""

    def __init__(self, arch: Arch, cpu: str, kernel: Path, *, ram_file: Path, ram_size: int,
                 loaders: Sequence[tuple[Path, int]] = (), qemu: Path | str | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.arch = arch
        self.cpu = cpu
        self.binary = find_qemu(arch, qemu)
        mib = ram_size // (1024 * 1024)
        if mib * 1024 * 1024 != ram_size:
            raise UsageError(f"guest RAM size {ram_size:#x} is not a whole number of MiB")
        # secure=off: without EL3 QEMU starts the ELF at EL2 / in Hyp mode.
        machine = "virt,virtualization=on,secure=off,memory-backend=ram"
        argv = [str(self.binary),
                "-M", machine, "-cpu", cpu, "-m", f"{mib}M",
                "-object", f"memory-backend-file,id=ram,size={mib}M,mem-path={ram_file},share=on",
                "-nodefaults", "-display", "none", "-monitor", "none", "-nic", "none",
                "-serial", "stdio", "-no-reboot",
                "-semihosting-config", "enable=on,target=native",
                "-kernel", str(kernel)]
        for path, addr in loaders:
            argv += ["-device", f"loader,file={path},addr={addr:#x},force-raw=on"]
        argv += list(extra_args)
        self.argv: tuple[str, ...] = tuple(argv)
        self._child: pexpect.spawn | None = None
        self._chunks: list[str] = []
        self._launched_at = 0.0
        self._exit: QemuExit | None = None

    @property
    def command_line(self) -> str:
        """The argv as one shell-quoted line, for copy and paste."""
        return shlex.join(self.argv)

    @property
    def version(self) -> str:
        """``qemu --version`` of the binary this machine runs (cached)."""
        return qemu_version(self.binary)

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def console(self) -> str:
        """Everything QEMU wrote so far: PL011 (stdout) and QEMU's and the
        semihosting console's stderr, interleaved, with LF line ends."""
        return "".join(self._chunks).replace("\r\n", "\n")

    def launch(self) -> None:
        if self._child is not None:
            raise QemuError("QemuMachine launched twice", argv=list(self.argv))
        with _SignalsHeld() as held:
            try:
                self._child = pexpect.spawn(self.argv[0], list(self.argv[1:]), echo=False,
                                            encoding="utf-8", codec_errors="replace",
                                            preexec_fn=_die_with_parent)
            except (OSError, pexpect.ExceptionPexpect) as exc:
                raise QemuError(f"cannot start QEMU: {exc}", argv=list(self.argv)) from exc
        # ptyprocess sleeps 0.1 s after closing the pty "to let the child
        # exit"; we reap the child ourselves, and 0.1 s is 3x a whole boot.
        self._child.delayafterclose = 0.0
        self._child.ptyproc.delayafterclose = 0.0
        self._launched_at = time.monotonic()
        try:
            held.release()
        except BaseException:
            # Not launched as far as the caller knows: its __exit__ will not run.
            self.shutdown(polite=0.0)
            raise

    def _drain(self, timeout: float) -> bool:
        """Read console output for up to ``timeout`` s; False at EOF."""
        assert self._child is not None
        try:
            self._chunks.append(self._child.read_nonblocking(65536, timeout=max(timeout, 0)))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            return False
        return True

    def _reap(self, within: float) -> bool:
        """Wait up to ``within`` s for QEMU to exit, draining meanwhile."""
        assert self._child is not None
        deadline = time.monotonic() + within
        open_ = True
        while self._child.isalive():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if open_:
                open_ = self._drain(min(left, 0.05))
            else:
                time.sleep(min(left, 0.01))
        return True

    def _record_exit(self, timed_out: bool) -> QemuExit:
        assert self._child is not None
        child = self._child
        self._exit = QemuExit(child.exitstatus, child.signalstatus, timed_out,
                              time.monotonic() - self._launched_at)
        return self._exit

    def wait(self, timeout: float) -> QemuExit:
        """Drain the console until QEMU exits or ``timeout`` seconds after
        launch; on timeout QEMU is stopped (SIGTERM, then SIGKILL)."""
        if self._child is None:
            raise QemuError("QemuMachine.wait before launch", argv=list(self.argv))
        if self._exit is not None:
            return self._exit
        deadline = self._launched_at + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.shutdown(polite=0.0)
                return self._record_exit(timed_out=True)
            if not self._drain(min(left, 0.5)):
                break
        # EOF: QEMU closed the pty, normally because it is exiting.
        if not self._reap(max(deadline - time.monotonic(), 1.0)):
            self.shutdown(polite=0.0)
            return self._record_exit(timed_out=True)
        return self._record_exit(timed_out=False)

    def shutdown(self, polite: float = 1.0, term_grace: float = 3.0) -> None:
        """Make sure QEMU is gone: wait ``polite`` s, then SIGTERM and wait
        ``term_grace`` s, then SIGKILL.  Idempotent."""
        child = self._child
        if child is None:
            return
        try:
            if child.isalive() and not self._reap(polite):
                for sig, grace in ((signal.SIGTERM, term_grace), (signal.SIGKILL, 10.0)):
                    try:
                        os.kill(child.pid, sig)
                        # A stopped QEMU (SIGSTOP, a debugger) acts on
                        # SIGTERM only once continued; SIGKILL needs no help.
                        os.kill(child.pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
                    if self._reap(grace):
                        break
        finally:
            if self._exit is None and not child.isalive():
                self._record_exit(timed_out=False)
            child.close(force=True)

    def __enter__(self) -> "QemuMachine":
        self.launch()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # Leaving on an exception (Ctrl-C included) nobody waits for the
        # guest any more: skip the polite wait.
        self.shutdown(polite=0.0 if exc_type is not None else 1.0)


# --- decoding a FATAL report --------------------------------------------------

_EC_NAMES = {
    0x00: "unknown reason", 0x01: "WFI/WFE", 0x03: "MCR/MRC (cp15)", 0x04: "MCRR/MRRC (cp15)",
    0x05: "MCR/MRC (cp14)", 0x06: "LDC/STC", 0x07: "SIMD/FP access", 0x0C: "MRRC (cp14)",
    0x0E: "illegal execution state", 0x11: "SVC (AArch32)", 0x12: "HVC (AArch32)",
    0x13: "SMC (AArch32)", 0x15: "SVC (AArch64)", 0x16: "HVC (AArch64)", 0x17: "SMC (AArch64)",
    0x18: "MSR/MRS/system instruction", 0x20: "instruction abort from a lower EL",
    0x21: "instruction abort without a change in EL", 0x22: "PC alignment",
    0x24: "data abort from a lower EL", 0x25: "data abort without a change in EL",
    0x26: "SP alignment", 0x2F: "SError", 0x30: "breakpoint (lower EL)",
    0x31: "breakpoint (same EL)", 0x32: "software step (lower EL)",
    0x33: "software step (same EL)", 0x34: "watchpoint (lower EL)",
    0x35: "watchpoint (same EL)", 0x38: "BKPT (AArch32)", 0x3C: "BRK (AArch64)",
}

_FSC_GROUPS = {0b0000: "address size fault", 0b0001: "translation fault",
               0b0010: "access flag fault", 0b0011: "permission fault",
               0b0101: "synchronous external abort on translation table walk",
               0b0111: "synchronous parity/ECC error on translation table walk"}

_VECTORS = {
    Arch.AARCH64: {0x000: "current EL, SP_EL0", 0x200: "current EL, SP_ELx",
                   0x400: "lower EL, AArch64", 0x600: "lower EL, AArch32"},
    Arch.AARCH32: {0x00: "reset (unused)", 0x04: "undefined instruction", 0x08: "HVC/SVC",
                   0x0C: "prefetch abort", 0x10: "data abort", 0x14: "hyp trap",
                   0x18: "IRQ", 0x1C: "FIQ"},
}


def describe_vector(arch: Arch, offset: int) -> str:
    """Name of the vector at ``offset`` in VBAR_EL2 / HVBAR."""
    if arch is Arch.AARCH64:
        base = _VECTORS[arch].get(offset & ~0x1FF, "?")
        kind = ("synchronous", "IRQ", "FIQ", "SError")[(offset >> 7) & 3]
        return f"{base}, {kind}"
    return _VECTORS[arch].get(offset, "?")


def describe_esr(esr: int) -> str:
    """ESR_EL2 / HSR decoded to EC name, IL and, for aborts, the fault status."""
    ec = (esr >> 26) & 0x3F
    il = (esr >> 25) & 1
    iss = esr & 0x1FFFFFF
    text = f"EC {ec:#04x} ({_EC_NAMES.get(ec, 'reserved')}), IL={il}, ISS {iss:#x}"
    if ec in (0x20, 0x21, 0x24, 0x25):
        fsc = iss & 0x3F
        group = _FSC_GROUPS.get(fsc >> 2)
        if group is not None:
            text += f", FSC {fsc:#04x}: {group}, level {fsc & 3}"
        elif fsc == 0x10:
            text += f", FSC {fsc:#04x}: synchronous external abort (not on a walk)"
        elif fsc == 0x21:
            text += f", FSC {fsc:#04x}: alignment fault"
        else:
            text += f", FSC {fsc:#04x}"
        if ec in (0x24, 0x25):
            text += f", WnR={(iss >> 6) & 1}, S1PTW={(iss >> 7) & 1}"
    return text


def describe_fatal(stub: StubElf, fatal: FatalInfo) -> str:
    """Human text for a FATAL stop: the reason, the decoded syndrome, the
    faulting PC's symbol and the stub's code around it."""
    if fatal.reason is not FatalReason.EXCEPTION:
        return f"stub refused the job: {fatal.reason.name} (detail {fatal.detail:#x})"
    return "\n".join([
        f"unexpected exception at EL2: vector {fatal.vector:#x} "
        f"({describe_vector(stub.arch, fatal.vector)})",
        f"ESR {fatal.esr:#x}: {describe_esr(fatal.esr)}",
        f"ELR {fatal.elr:#x} <{stub.symbolize(fatal.elr)}>  FAR {fatal.far:#x}",
        stub.disassemble(fatal.elr),
    ])


# --- batches ---------------------------------------------------------------------

@dataclass(frozen=True)
class BatchResult:
    """One boot of a stub over a batch of images.

    ``images``: one ImageResult per input image; an image the stub did not
    reach has every observation NOT_RUN (an image cut short keeps the
    records of the probes it finished; ``completed`` tells which).
    ``id_registers`` by name (harness.job.ID_REGISTER_NAMES); ``argv`` the
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
              hang_after: int | None = None, stub: Path | None = None) -> BatchResult:
    """Run ``images`` in one boot of the ``arch`` stub on ``-cpu cpu``.

    ``timeout`` in seconds (default: default_timeout); ``workdir``: where the
    temporary directory (job blob, RAM file, console log) is made (default:
    default_workdir()), removed on every path; ``keep_dir``: use and keep this directory instead;
    ``hang_after``: fault-injection hook, the stub spins after that image
    index; ``stub``: a prebuilt stub ELF (default: build_stub(arch)).

    Raises UsageError for a job the stub cannot take, ToolMissing/BuildError
    for a missing toolchain, QemuError when QEMU does not start at all.
    Every other outcome is a BatchResult status."""
    stub_elf = read_stub(stub or build_stub(arch))
    if stub_elf.arch is not arch:
        raise UsageError(f"{stub_elf.path} is a {stub_elf.arch.value} stub, not {arch.value}")
    layout = stub_elf.layout
    blob = pack_job(layout, images, hang_after)
    binary = find_qemu(arch, qemu)
    limit = default_timeout(images) if timeout is None else timeout

    if keep_dir is not None:
        keep_dir.mkdir(parents=True, exist_ok=True)
        tmp = keep_dir
    else:
        root = workdir or default_workdir()
        sweep_stale_batch_dirs(root)
        tmp = Path(tempfile.mkdtemp(prefix=f"{BATCH_DIR_PREFIX}{os.getpid()}-", dir=root))
    try:
        job_path = tmp / "job.bin"
        job_path.write_bytes(blob)
        ram_path = tmp / "ram.bin"
        # A fresh RAM file reads as zeros: results records of probes the
        # stub never reached are then NOT_RUN (kind 0).
        ram_path.unlink(missing_ok=True)
        machine = QemuMachine(arch, cpu, stub_elf.path, ram_file=ram_path,
                              ram_size=layout.ram_size, loaders=((job_path, layout.job_start),),
                              qemu=binary)
        version = machine.version
        (tmp / "cmdline.txt").write_text(machine.command_line + "\n")
        try:
            with machine:
                qexit = machine.wait(limit)
        finally:
            (tmp / "console.log").write_text(machine.console)
        console = machine.console
        unreadable = ""
        if ram_path.exists():
            with RamFile(ram_path, layout.ram_base) as ram:
                try:
                    results = unpack_results(layout, ram, images)
                except UsageError as exc:
                    # Not the job's fault (pack_job and the stub checked
                    # it): something scribbled on the results area.
                    unreadable = str(exc)
                    results = _empty_results(images)
        else:
            results = _empty_results(images)
    finally:
        if keep_dir is None:
            _remove_tree(tmp)

    fatal_line = _FATAL_LINE.search(console)
    how = (f"killed by signal {qexit.signal} ({signal.Signals(qexit.signal).name})"
           if qexit.signal is not None else f"exited with status {qexit.returncode}")
    if qexit.timed_out:
        status = BatchStatus.TIMEOUT
        diagnostic = (f"no end marker within {limit:.1f} s; images done "
                      f"{results.images_done}/{len(images)}; QEMU stopped")
    elif unreadable:
        status = BatchStatus.CRASHED
        diagnostic = f"QEMU {how}, leaving the results area unreadable ({unreadable}): nothing kept"
    elif results.status is GuestStatus.FATAL or fatal_line:
        status = BatchStatus.GUEST_ERROR
        parts = [fatal_line.group(0)] if fatal_line else []
        if results.fatal is not None:
            parts.append(describe_fatal(stub_elf, results.fatal))
        diagnostic = "\n".join(parts)
    elif (qexit.returncode == 0 and results.status is GuestStatus.COMPLETED
          and END_MARKER in console):
        status = BatchStatus.COMPLETED
        diagnostic = ""
    elif (results.status is GuestStatus.NOT_STARTED and qexit.signal is None
          and qexit.returncode != 0):
        raise QemuError(f"QEMU exited with status {qexit.returncode} before the stub ran",
                        argv=list(machine.argv), returncode=qexit.returncode, output=console)
    else:
        status = BatchStatus.CRASHED
        tail = "\n".join(console.strip().splitlines()[-5:])
        marker = "after the end marker" if END_MARKER in console else "without the end marker"
        diagnostic = (f"QEMU {how} {marker}; images done "
                      f"{results.images_done}/{len(images)}; stub status "
                      f"{results.status.name}" + (f"\nlast console lines:\n{tail}" if tail else ""))

    return BatchResult(status=status, arch=arch, cpu=cpu, images=results.images,
                       images_done=results.images_done, probes_done=results.probes_done,
                       id_registers=results.id_registers, guest_status=results.status,
                       fatal=results.fatal, argv=machine.argv, qemu_version=version,
                       console=console, elapsed=qexit.elapsed, returncode=qexit.returncode,
                       signal=qexit.signal, diagnostic=diagnostic)
