"""classify_boot: how a boot ended, from what is known once it is over
(no QEMU).  Each row is one way a boot ends; the expected status follows
the rules in harness/qemu/boot.py's docstring and DESIGN.md ("trusting
QEMU's exit status alone" is the anti-pattern: COMPLETED needs exit 0, the
results header's COMPLETED and the end marker, all three)."""
from __future__ import annotations

import signal

import pytest

from harness.errors import QemuError
from harness.qemu.boot import (
    END_MARKER,
    BatchStatus,
    BootEnd,
    FailureKind,
    classify_boot,
    failure_kind,
)
from harness.qemu.job import GuestStatus
from harness.qemu.launcher import QemuExit

DONE = f"stub: 8 images\n{END_MARKER}\n"


def end(returncode: int | None = 0, sig: int | None = None, timed_out: bool = False,
        guest: GuestStatus = GuestStatus.COMPLETED, console: str = DONE, **kw) -> BootEnd:
    return BootEnd(exit=QemuExit(returncode, sig, timed_out, 0.25), guest=guest,
                   console=console, images=8, images_done=kw.pop("images_done", 8), limit=2.0,
                   argv=("qemu-system-aarch64", "-M", "virt"), **kw)


CASES = [
    # (what, the end, status, diagnostic)
    ("all three agree", end(), BatchStatus.COMPLETED, ""),
    ("a timeout wins even over a complete console",
     end(returncode=None, sig=signal.SIGKILL, timed_out=True, images_done=3),
     BatchStatus.TIMEOUT, "no end marker within 2.0 s; images done 3/8; QEMU stopped"),
    ("exit 0 and header COMPLETED without the end marker",
     end(console="stub: 8 images\n"), BatchStatus.CRASHED,
     "QEMU exited with status 0 without the end marker; images done 8/8; stub status "
     "COMPLETED\nlast console lines:\nstub: 8 images"),
    ("the end marker but exit 1", end(returncode=1), BatchStatus.CRASHED,
     "QEMU exited with status 1 after the end marker; images done 8/8; stub status "
     f"COMPLETED\nlast console lines:\nstub: 8 images\n{END_MARKER}"),
    ("killed by a signal mid-run",
     end(returncode=None, sig=signal.SIGSEGV, guest=GuestStatus.RUNNING, console="",
         images_done=5),
     BatchStatus.CRASHED, "QEMU killed by signal 11 (SIGSEGV) without the end marker; images "
                          "done 5/8; stub status RUNNING"),
    ("a signal number Python does not name",
     end(returncode=None, sig=99, guest=GuestStatus.RUNNING, console=""),
     BatchStatus.CRASHED, "QEMU killed by signal 99 (signal 99) without the end marker; images "
                          "done 8/8; stub status RUNNING"),
    ("the results area unreadable", end(unreadable="bad magic 0x0"), BatchStatus.CRASHED,
     "QEMU exited with status 0, leaving the results area unreadable (bad magic 0x0): "
     "nothing kept"),
    ("the stub's FATAL in the results header", end(guest=GuestStatus.FATAL, fatal="decoded"),
     BatchStatus.GUEST_ERROR, "decoded"),
    ("a FATAL line on the console, header and exit fine",
     end(console=f"FATAL: vector 0x200\n{END_MARKER}\n"), BatchStatus.GUEST_ERROR,
     "FATAL: vector 0x200"),
    ("both", end(guest=GuestStatus.FATAL, fatal="decoded", console="FATAL: job\n"),
     BatchStatus.GUEST_ERROR, "FATAL: job\ndecoded"),
    ("a stub that never started, killed (not a refusal)",
     end(returncode=None, sig=signal.SIGKILL, guest=GuestStatus.NOT_STARTED, console=""),
     BatchStatus.CRASHED, "QEMU killed by signal 9 (SIGKILL) without the end marker; images "
                          "done 8/8; stub status NOT_STARTED"),
]


@pytest.mark.parametrize("what, boot, status, diagnostic", CASES, ids=[c[0] for c in CASES])
def test_classify_boot(what, boot, status, diagnostic):
    assert classify_boot(boot) == (status, diagnostic)


def test_qemu_refusing_its_command_line_is_an_error_not_a_status():
    """Exit status 1 before the stub ran: QEMU did not accept the job at
    all, nothing about the batch is known (the runner records it as a
    harness error)."""
    boot = end(returncode=1, guest=GuestStatus.NOT_STARTED, console="qemu: bad option\n")
    with pytest.raises(QemuError, match="exited with status 1 before the stub ran") as info:
        classify_boot(boot)
    assert info.value.argv == ["qemu-system-aarch64", "-M", "virt"]
    assert info.value.output == "qemu: bad option\n"


@pytest.mark.parametrize("status, kind", [
    (BatchStatus.COMPLETED, None), (BatchStatus.CRASHED, FailureKind.CRASH),
    (BatchStatus.TIMEOUT, FailureKind.HANG), (BatchStatus.GUEST_ERROR, FailureKind.GUEST_ERROR),
    (BatchStatus.HARNESS_ERROR, None)])
def test_failure_kind(status, kind):
    assert failure_kind(status) is kind
