#!/usr/bin/env python3
"""A stand-in for qemu-system-aarch64 / qemu-system-arm that runs the real
emulator with a fault injected, for tests/test_faults.py.

Pass it as ``--qemu-aarch64`` (or ``qemu=`` of run_batch / RunOptions).  The
harness gives QEMU its own environment, so the fault is chosen by variables:

``S2DIFF_FAKE_REAL``   path of the real emulator (required)
``S2DIFF_FAKE_FAULT``  what to do, one of FAULTS below (default ``none``)
``S2DIFF_FAKE_DELAY``  seconds after start for ``kill`` and ``stop``
``S2DIFF_FAKE_AT_IMAGE`` for ``kill`` and ``stop`` instead of a delay: when the
                       stub's images_done reaches this number, read from the
                       guest RAM file at byte ``S2DIFF_FAKE_PROGRESS`` (hex)
``S2DIFF_FAKE_BOOTS``  comma-separated boot numbers (0-based) that get the
                       fault; the others run unchanged (default: every boot)
``S2DIFF_FAKE_STATE``  directory; boot N leaves ``boot-N.json`` there with its
                       pid, argv and fault, and ``signalled-N`` once ``kill``
                       or ``stop`` has sent its signal to a live emulator

Boots are numbered in the order they start (an O_EXCL file per boot, so
parallel workers get distinct numbers).  ``--version`` and ``-cpu help``
(queries, not boots) always run the real emulator unchanged.

Modes ``kill``, ``stop`` and ``garbage-first`` exec the real emulator, so
the harness's child *is* QEMU, as without the wrapper; ``deaf`` and
``refuse`` do not run it; the others run it as a child (which gets SIGKILL
when the wrapper dies) and post-process its console, its exit or its RAM.
"""
from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import time

END_MARKER = b"EXIT: STATUS=0"

FAULTS = {
    "none": "run the real emulator unchanged",
    "kill": "SIGKILL the emulator DELAY seconds after start (or at image AT_IMAGE)",
    "stop": "SIGSTOP the emulator DELAY seconds after start (or at image AT_IMAGE)",
    "garbage-first": "write binary garbage, a fake end marker included, then exec the emulator",
    "garbage": "interleave garbage with the emulator's console lines",
    "no-marker": "drop the end marker from the console",
    "exit-1": "exit with status 1 after the emulator exited (successfully)",
    "segv": "die by SIGSEGV after the emulator exited (successfully)",
    "abort": "die by SIGABRT after the emulator exited (successfully)",
    "deaf": "ignore SIGTERM and stop, again whenever continued, without running the emulator",
    "corrupt-results": "after the emulator exited (successfully), scribble on the results "
                       "header in the guest RAM file (at byte S2DIFF_FAKE_PROGRESS - 0x10)",
    "refuse": "exit with status 1 at once, as an emulator refusing its command line does",
}


def garbage(rng: random.Random) -> bytes:
    """Console noise: invalid UTF-8, NUL, CR, ANSI escapes, a long line,
    and lines that look like the stub's own reports."""
    pieces = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
        b"\xff\xfe\xc3\x28\x00\r\x1b[31m\x1b[2J",
        b"A" * rng.randrange(1000, 70000),
        b"INFO: hang_after reached\n",
        END_MARKER + b"\n",
        b"\r\n",
    ]
    rng.shuffle(pieces)
    return b"".join(pieces)


def boot_number(state: str | None, record: dict) -> int:
    """Claim the next boot number in ``state`` (0 without a directory)."""
    if not state:
        return 0
    n = 0
    while True:
        try:
            fd = os.open(os.path.join(state, f"boot-{n}.json"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            n += 1
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({**record, "boot": n}, f)
        return n


def signal_later(pid: int, sig: int, when, note: str | None) -> None:
    """Send ``sig`` to ``pid`` once ``when()`` is true (polled every
    0.2 ms), from a detached grandchild that holds none of the console's
    descriptors (else the harness would not see the console close when
    QEMU exits), then create the file ``note``.  The grandchild ends when
    ``pid`` does."""
    if os.fork():
        os.wait()
        return
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, 1 << 16)
    try:
        while not when():
            os.kill(pid, 0)
            time.sleep(0.0002)
        os.kill(pid, sig)
        if note:
            open(note, "w").close()
    except ProcessLookupError:
        pass
    os._exit(0)


def after(delay: float):
    end = time.monotonic() + delay
    return lambda: time.monotonic() >= end


def ram_file(argv: list[str]) -> str:
    """The guest RAM file QEMU is given (memory-backend-file's mem-path)."""
    return next(part.split("=", 1)[1] for arg in argv for part in arg.split(",")
                if part.startswith("mem-path="))


def at_image(argv: list[str], image: int, offset: int):
    """True once the u64 at ``offset`` of the guest RAM file (the results
    header's images_done) is at least ``image``."""
    ram = ram_file(argv)

    def reached() -> bool:
        try:
            with open(ram, "rb") as f:
                f.seek(offset)
                return int.from_bytes(f.read(8) or b"\0", "little") >= image
        except FileNotFoundError:
            return False
    return reached


def _child_setup() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)     # PR_SET_PDEATHSIG: die with the wrapper


def run_child(argv: list[str], fault: str, rng: random.Random) -> int:
    """Run the real emulator as a child, copying its console with the
    fault applied; the child's exit status."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
    out = sys.stdout.buffer
    for line in child.stdout:
        if fault == "no-marker" and END_MARKER in line:
            line = line.replace(END_MARKER, b"")
        out.write(line)
        if fault == "garbage":
            out.write(garbage(rng) + b"\n")
        out.flush()
    return child.wait()


def main() -> None:
    real = os.environ["S2DIFF_FAKE_REAL"]
    argv = [real] + sys.argv[1:]
    if "--version" in sys.argv[1:] or sys.argv[1:] == ["-M", "virt", "-cpu", "help"]:
        os.execv(real, argv)     # queries, not boots
    fault = os.environ.get("S2DIFF_FAKE_FAULT", "none")
    if fault not in FAULTS:
        sys.exit(f"qemu_fault.py: unknown S2DIFF_FAKE_FAULT {fault!r}")
    boots = os.environ.get("S2DIFF_FAKE_BOOTS")
    n = boot_number(os.environ.get("S2DIFF_FAKE_STATE"),
                    {"pid": os.getpid(), "argv": argv, "fault": fault})
    if boots is not None and n not in {int(b) for b in boots.split(",") if b}:
        fault = "none"
    rng = random.Random(n)
    if fault == "refuse":
        sys.stderr.write(f"{os.path.basename(real)}: fake fault: refusing to start\n")
        sys.exit(1)
    if fault == "deaf":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            os.kill(os.getpid(), signal.SIGSTOP)
    if fault in ("kill", "stop"):
        image = os.environ.get("S2DIFF_FAKE_AT_IMAGE")
        when = (at_image(argv, int(image), int(os.environ["S2DIFF_FAKE_PROGRESS"], 16)) if image
                else after(float(os.environ.get("S2DIFF_FAKE_DELAY", "0"))))
        state = os.environ.get("S2DIFF_FAKE_STATE")
        signal_later(os.getpid(), signal.SIGKILL if fault == "kill" else signal.SIGSTOP, when,
                     os.path.join(state, f"signalled-{n}") if state else None)
    if fault == "garbage-first":
        sys.stdout.buffer.write(garbage(rng))
        sys.stdout.flush()
    if fault in ("none", "kill", "stop", "garbage-first"):
        os.execv(real, argv)
    status = run_child(argv, fault, rng)
    if status != 0:
        sys.exit(status if status > 0 else 128 - status)
    if fault == "corrupt-results":
        with open(ram_file(argv), "r+b") as f:
            f.seek(int(os.environ["S2DIFF_FAKE_PROGRESS"], 16) - 0x10)
            f.write(bytes(rng.randrange(256) for _ in range(0x20)))
    if fault == "exit-1":
        sys.exit(1)
    if fault in ("segv", "abort"):
        sig = signal.SIGSEGV if fault == "segv" else signal.SIGABRT
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)


if __name__ == "__main__":
    main()
