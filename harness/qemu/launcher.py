"""The QEMU launcher: finding the emulator and its version, and
``QemuMachine``, the one class that owns a QEMU process.

After QEMU's python/qemu/machine.py: a context manager whose exit always
reaps QEMU (wait, SIGTERM, SIGKILL), an argv list never passed through a
shell, the console drained continuously so QEMU cannot block on it, and the
exact command line and version recorded.
"""
from __future__ import annotations

import ctypes
import os
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import pexpect

from reference.arch import Arch

from ..errors import QemuError, ToolMissing, UsageError

QEMU_PACKAGE = "qemu-system-arm"        # Debian ships both system emulators in it

_QEMU_DEFAULTS: Mapping[Arch, tuple[str, str]] = MappingProxyType({
    Arch.AARCH64: ("qemu-system-aarch64", "S2DIFF_QEMU_AARCH64"),
    Arch.AARCH32: ("qemu-system-arm", "S2DIFF_QEMU_ARM"),
})

_PR_SET_PDEATHSIG = 1

# What signal.signal accepts and returns.
_Handler = Union[Callable[[int, Optional[FrameType]], Any], int, signal.Handlers, None]

# Seconds the console is still read after QEMU has been reaped, for output
# on its way or written by a process still holding the pty (_drain_to_eof).
# QEMU alone closes the pty as it exits: EOF then comes at once.
DRAIN_AFTER_EXIT = 1.0

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


@lru_cache(maxsize=None)
def _cpus_of(path: str, mtime_ns: int) -> frozenset[str]:
    argv = [path, "-M", "virt", "-cpu", "help"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QemuError(f"{path} -cpu help failed: {exc}", argv=argv) from exc
    if proc.returncode != 0:
        raise QemuError(f"{path} -cpu help failed", argv=argv, returncode=proc.returncode,
                        output=proc.stdout + proc.stderr)
    # "Available CPUs:" then one "  NAME [description]" line per model.
    return frozenset(line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip())


def qemu_cpus(binary: Path | str) -> frozenset[str]:
    """The ``-cpu`` names ``binary`` offers on the virt machine (cached per
    binary and mtime): newer cores exist only in newer QEMU builds."""
    path = str(Path(binary).resolve())
    return _cpus_of(path, os.stat(path).st_mtime_ns)


def set_parent_death_signal(sig: int) -> None:
    """Have the kernel send ``sig`` to this process when the thread that
    created it dies (Linux prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _die_with_parent() -> None:
    # Runs in the forked child before exec: QEMU gets SIGKILL when the
    # thread that launched it dies, so a killed harness leaks no QEMU.
    set_parent_death_signal(signal.SIGKILL)


class SignalsHeld:
    """Holds SIGINT and SIGTERM while QEMU (or a worker) is forked.  CPython runs fork
    hooks written in Python (logging's, threading's) and only prints an
    exception raised in one, so a Ctrl-C, or a worker's order to stop
    (harness.run), landing there would be lost.  ``release`` then hands
    each signal caught meanwhile to its own handler.  Handlers can only be
    changed in the main thread; elsewhere nothing is held."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "SignalsHeld":
        self.caught: list[int] = []
        self.saved: dict[int, _Handler] = {}
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
        self._drained = False
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
        with SignalsHeld() as held:
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
        """Wait up to ``within`` s for QEMU to exit, draining meanwhile;
        once it has, the console is read to its end (_drain_to_eof)."""
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
        self._drain_to_eof()
        return True

    def _drain_to_eof(self) -> None:
        """Read what is left of the console once QEMU has been reaped: until
        EOF (the last holder of the pty closed it), at most
        DRAIN_AFTER_EXIT s.  pexpect reports EOF as soon as the child is
        dead and nothing is readable at that instant, although a line
        written as it exited -- by QEMU, or by a process still holding the
        console, such as the emulator under a launcher script that does not
        exec it -- may still be on its way (QEMUMachine and kunit's
        run_kernel drain in their ``finally`` too)."""
        child = self._child
        if child is None or self._drained or child.closed:
            return
        self._drained = True
        deadline = time.monotonic() + DRAIN_AFTER_EXIT
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([child.child_fd], [], [], left)
            if not ready:
                return
            try:
                # The base class reads the fd and decodes; spawn's own
                # read_nonblocking would answer EOF for a dead child.
                self._chunks.append(pexpect.spawnbase.SpawnBase.read_nonblocking(child, 65536))
            except pexpect.EOF:
                return

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
            if not child.isalive():
                self._drain_to_eof()
            child.close(force=True)

    def __enter__(self) -> "QemuMachine":
        self.launch()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # Leaving on an exception (Ctrl-C included) nobody waits for the
        # guest any more: skip the polite wait.
        self.shutdown(polite=0.0 if exc_type is not None else 1.0)
