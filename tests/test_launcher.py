"""QemuMachine with a fake emulator (no QEMU needed): what the process
writes as it exits reaches the console.

QEMU prints "terminating on signal 15" when it is stopped, and a guest's
last console line comes just before the process exits.  A launcher that
stops reading once it has reaped the process loses such a line whenever
the exit is seen before the line is read: measured with the fake below,
19 of 100 runs lost it before the launcher drained the console to EOF
after reaping (as QEMUMachine and kunit's run_kernel do in their
``finally``).

``S2DIFF_STRESS=N`` repeats the test N times (e.g. 100 when changing the
launcher); the default suite runs it a few times.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from harness.qemu.launcher import QemuMachine
from reference.arch import Arch

REPEAT = int(os.environ.get("S2DIFF_STRESS", "3"))

# Installs its SIGTERM handler, then says so through a file (so that the
# test never signals it before the handler is there), then waits.  On
# SIGTERM it writes the rest of its console -- more than one read of the
# pty takes -- and its last line, and exits at once, as QEMU does.
FAKE = """\
import os, signal, sys, time
def stop(signum, frame):
    sys.stderr.write("console tail\\n" * 1300)
    sys.stderr.write("qemu-system-aarch64: terminating on signal 15\\n")
    sys.stderr.flush()
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
open({ready!r}, "w").close()
while True:
    time.sleep(1)
"""


def fake_emulator(tmp_path: Path) -> tuple[Path, Path]:
    ready = tmp_path / "ready"
    script = tmp_path / "qemu-system-aarch64"
    script.write_text(f"#!{sys.executable}\n" + FAKE.format(ready=str(ready)))
    script.chmod(0o755)
    return script, ready


def wait_for(path: Path, limit: float = 60.0) -> None:
    """Wait for ``path`` to exist (a generous bound: the fake starts in
    milliseconds unless the machine is very busy)."""
    end = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > end:
            pytest.fail(f"the fake emulator never started ({path} missing)")
        time.sleep(0.005)


@pytest.mark.parametrize("attempt", range(REPEAT))
def test_line_written_while_exiting_is_captured(tmp_path, attempt):
    script, ready = fake_emulator(tmp_path)
    machine = QemuMachine(Arch.AARCH64, "cortex-a57", tmp_path / "stub.elf",
                          ram_file=tmp_path / "ram.bin", ram_size=1 << 20, qemu=script)
    with machine:
        wait_for(ready)
        machine.shutdown(polite=0.0)
    assert "terminating on signal 15" in machine.console
    assert machine.pid is not None and not Path(f"/proc/{machine.pid}").exists()
