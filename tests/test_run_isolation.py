"""A batch that crashes QEMU during `s2diff run` before the stub has
started (so that no probe is in flight: crash-resume has nothing to name,
tests/test_crash_resume.py) is split down to the image that does it, and
the finding is a case file `s2diff repro` re-runs.

The crash is planted with tests/fakes/qemu_marker.py: a QEMU wrapper that
dies of SIGSEGV when the job holds an image whose VMID is the marker, and
otherwise runs the real QEMU."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import records, s2diff

pytestmark = pytest.mark.qemu

MARKER = Path(__file__).resolve().parent / "fakes" / "qemu_marker.py"
SELECTION = ("--cpu", "cortex-a57", "--granule", "4k", "--ipa", "40", "--cases", "2",
             "--fanout", "0", "--jobs", "1", "--seed", "4")


def test_crashing_batch_is_isolated_to_one_case(tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    assert s2diff("run", *SELECTION, "--out", clean)[0] == 0
    cases = records(clean, "case")
    vmid = int(cases[-1]["vttbr"], 16) >> 48
    wrapper = tmp_path / "qemu-system-aarch64"
    wrapper.symlink_to(MARKER)
    monkeypatch.setenv("S2DIFF_MARKER_VMID", f"{vmid:x}")
    monkeypatch.setenv("S2DIFF_MARKER_REAL", "/usr/bin/qemu-system-aarch64")

    crashed = tmp_path / "crashed"
    code, text = s2diff("run", *SELECTION, "--qemu-aarch64", wrapper, "--out", crashed)
    batch = next(b for b in records(crashed, "batch") if b["batch"] == cases[-1]["batch"])
    assert batch["status"] == "crashed"
    finding = batch["isolated"]
    assert finding["reproduced"] and finding["kind"] == "crash", finding
    # The isolated case is one with the marker VMID, and nothing was called
    # a divergence: the crash is a finding with its own case.
    case_file = crashed / finding["case_file"]
    data = json.loads(case_file.read_text())
    assert int(data["config"]["vttbr"], 16) >> 48 == vmid
    assert data["expect"]["kind"] == "crash" and data["expect"]["signal_name"] == "SIGSEGV"
    assert not records(crashed, "divergence") and not records(crashed, "crash")
    assert code == 1 and "FINDING: QEMU crash" in text
    # Every other batch ran to the end on the real QEMU behind the wrapper.
    assert {b["status"] for b in records(crashed, "batch")
            if b["batch"] != batch["batch"]} <= {"completed"}

    # repro re-runs it: it still fails under the wrapper, not under the real QEMU.
    assert s2diff("repro", case_file, "--qemu-aarch64", wrapper)[0] == 1
    monkeypatch.delenv("S2DIFF_MARKER_VMID")
    code, text = s2diff("repro", case_file)
    assert code == 0 and text.startswith("no crash: QEMU completes the case")
