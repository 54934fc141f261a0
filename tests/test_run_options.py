"""`s2diff run` options of issue 12: `--shard auto` from the CI system's
variables, `--resume --out DIR` alone with the recorded options, and the
progress lines of a run without a terminal."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from harness.cli import main
from harness.cli.progress import Heartbeat, Progress
from harness.errors import UsageError
from harness.plan import parse_shard
from harness.qemu.boot import BatchStatus
from harness.records import BatchRecord, CaseRecord, CaseStatus, DivergenceRecord, RunHeader

ROOT = Path(__file__).resolve().parent.parent


def s2diff(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


class TestShardAuto:
    @pytest.mark.parametrize("env, shard", [
        ({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}, (2, 3)),                  # GitLab: 1-based
        ({"BUILDKITE_PARALLEL_JOB": "0", "BUILDKITE_PARALLEL_JOB_COUNT": "4"}, (1, 4)),  # 0-based
        ({"S2DIFF_SHARD_INDEX": "5", "S2DIFF_SHARD_TOTAL": "5"}, (5, 5)),        # GitHub matrix
    ])
    def test_each_ci_systems_variables(self, env, shard):
        assert parse_shard("auto", env) == shard

    @pytest.mark.parametrize("env, message", [
        ({}, "none of CI_NODE_INDEX/CI_NODE_TOTAL"),
        ({"CI_NODE_INDEX": "4", "CI_NODE_TOTAL": "3"}, "CI_NODE_INDEX=4 is not one of the 3 jobs"),
        ({"BUILDKITE_PARALLEL_JOB": "2"}, "are not a job index and count"),
    ])
    def test_without_them_or_with_nonsense_it_is_bad_input(self, env, message):
        with pytest.raises(UsageError, match=message):
            parse_shard("auto", env)

    @pytest.mark.qemu
    def test_the_shard_is_recorded_resolved(self, tmp_path, monkeypatch):
        monkeypatch.setenv("CI_NODE_INDEX", "2")
        monkeypatch.setenv("CI_NODE_TOTAL", "2")
        code, out, err = s2diff("run", "--cpu", "cortex-a57", "--granule", "4k", "--cases", "2",
                                "--fanout", "0", "--jobs", "1", "--shard", "auto",
                                "--out", tmp_path)
        assert code == 0, out + err
        header = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
        assert header["shard"] == "2/2" and header["options"]["shard"] == "2/2"
        assert "shard 2/2" in out.splitlines()[0]


# Four batches of a second or two: at the nightly fan-out five rounds of the
# two entries fill a boot's results area (2,097,148 probes), so 16 cases
# are 5 + 5 + 5 + 1 rounds.  The run must outlast the two batches the test
# waits for.
RESUMABLE = ("run", "--cpu", "cortex-a57", "--granule", "4k", "--ipa", "40", "--cases", "16",
             "--seed", "9", "--jobs", "1", "--no-baseline")


@pytest.mark.qemu
def test_resume_alone_continues_with_the_recorded_options(tmp_path):
    """Interrupted after two batches, `--resume --out DIR` with nothing
    else ends with the report of the same run uninterrupted; an option
    given that differs from the recorded one is refused, naming it."""
    whole = tmp_path / "whole"
    assert s2diff(*RESUMABLE, "--out", whole)[0] in (0, 1)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *RESUMABLE, "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        end = time.monotonic() + 120
        while (not (out / "results.jsonl").exists()
               or (out / "results.jsonl").read_bytes().count(b'"type":"batch"') < 2):
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < end
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    code, _, err = s2diff("run", "--resume", "--out", out, "--cases", "17")
    assert code == 2
    assert err.strip() == (f"s2diff: error: --resume: the run in {out} was started with "
                           "--cases 16; --cases 17 differs (leave it out to continue with the "
                           "recorded value)")
    code, _, err = s2diff("run", "--resume", "--out", out, "--seed", "9", "--jobs", "2")
    assert code in (0, 1), err          # the same seed, given again; --jobs is free
    for name in ("summary.txt", "junit.xml"):
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name


def batch(n: int) -> BatchRecord:
    return BatchRecord(batch=n, arch="aarch64", cpu="cortex-a57", status=BatchStatus.COMPLETED,
                       images=1, images_done=1, elapsed=1.0, argv=(), qemu_version="v",
                       diagnostic="", qemu="7.2.22")


def case(n: int, entry: str) -> CaseRecord:
    return CaseRecord(key=f"{entry}#0", entry=entry, group="g", arch="aarch64", cpu="cortex-a57",
                      vtcr="0x80023558", vttbr="0x0", valid=True, kvm=False, batch=n,
                      status=CaseStatus.PASS, probes=1000, passed=1000, diverged=0, not_run=0,
                      qemu="7.2.22")


def test_progress_lines_without_a_terminal():
    """One plain line per interval: batches, entries, probes, new/known,
    elapsed and the time left, estimated from the batches this run did."""
    out = io.StringIO()
    progress = Progress(enabled=False, out=out, interval=0.0)
    header = RunHeader(seed=1, cases_per_entry=1, fanout=0, shard=None, entries=4, batches=4,
                       cases=4, argv=(), started="", qemu=(), baseline=None)
    progress.update([batch(0), case(0, "a")])           # a resumed run's finished batch
    progress.start(header)
    assert out.getvalue() == ""
    progress.update([case(1, "b"), batch(1)])
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("progress: 2/4 batches, 2/4 entries, 2,000 probes, 0 new, 0 known, ")
    assert "elapsed, about" in line and line.endswith("left")
    quiet = Progress(enabled=False, out=io.StringIO(), interval=3600.0)
    quiet.start(header)
    quiet.update([case(1, "b"), batch(1)])
    assert quiet.out.getvalue() == ""       # once per interval, not per batch
    known = DivergenceRecord.from_json({
        "kind": "probe", "expected": ["ok L3"], "observed": "translation L3", "arch": "aarch64",
        "cpu": "x", "key": "a#0", "entry": "a", "group": "g", "batch": 2, "known": "k",
        "count": 7})
    progress.update([known, batch(2)])
    assert "7 known" in out.getvalue().splitlines()[-1]


def test_heartbeat_a_line_per_stage_and_per_interval_of_work():
    """shrink and isolate without a terminal: a line as each stage starts,
    and one per interval as boots finish -- driven by an injected clock."""
    now = [100.0]
    lines: list[str] = []
    beat = Heartbeat("shrink", lines.append, interval=10.0, clock=lambda: now[0])
    beat.stage("pass probes")
    assert lines == ["shrink: 00:00 pass probes"]
    now[0] += 4
    beat.tick("3 QEMU boots")               # 4 s since the last line: quiet
    assert len(lines) == 1
    now[0] += 7
    beat.tick("5 QEMU boots")               # 11 s: a line, with the stage
    assert lines[-1] == "shrink: 00:11 pass probes: 5 QEMU boots"
    now[0] += 9
    beat.tick("6 QEMU boots")               # 9 s since that line: quiet
    beat.stage("localize")                  # a new stage: always
    assert lines[-2:] == ["shrink: 00:11 pass probes: 5 QEMU boots", "shrink: 00:20 localize"]
