"""Fault injection (issue 6): QEMU killed, stopped, printing garbage or
failing in other ways; results files torn and corrupted; the harness itself
interrupted and resumed.  What must hold whatever happens: the batch is
classified (never a divergence unless reproducible), finished images are
kept and judged, the other batches go on, no QEMU process and no batch
directory is left behind, and the exit code is the documented one
(docs/results.md, harness/finish.py: a crash is not a divergence).

QEMU faults come from tests/fakes/qemu_fault.py, a wrapper passed as the
QEMU binary that runs the real one with the fault its environment names.
Each test gets its own batch directory root (S2DIFF_TMPDIR, on /dev/shm
when possible) so that leftovers are seen exactly: the directory must be
empty afterwards and no process may name it in its command line.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from conftest import qemu_children
from test_guest import NOT_RUN, par_of_image, small_batch

from harness.cli import Streams, main
from harness.cli.common import EXIT_CODES
from harness.cli.run import finish_run
from harness.matrix import build_matrix
from harness.qemu.boot import BatchStatus, run_batch
from harness.qemu.build import build_stub
from harness.qemu.elf import read_stub
from harness.qemu.launcher import find_qemu
from harness.records import RECORDS, parse_record
from harness.run import RunOptions, finished_batches, run_matrix
from reference.arch import Arch

ROOT = Path(__file__).resolve().parent.parent
FAKE = Path(__file__).resolve().parent / "fakes" / "qemu_fault.py"
def qemu_aarch64() -> str:
    """The QEMU the tests run ($S2DIFF_QEMU_AARCH64, else PATH's)."""
    return str(find_qemu(Arch.AARCH64))

BASELINE = ROOT / "baseline.toml"



@functools.cache
def images_done_offset() -> int:
    """Byte offset of the results header's images_done (u64 slot 2,
    docs/job-abi.md) in the guest RAM file, which starts at the RAM base."""
    lay = read_stub(build_stub(Arch.AARCH64)).layout
    return lay.results_start - lay.ram_base + 2 * 8

# Skipped with the reason when QEMU is missing, and a session error in CI
# (tests/conftest.py).
pytestmark = pytest.mark.qemu


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def processes_naming(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose command line
    contains ``text`` (zombies have an empty one and are not listed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append((int(entry.name), cmdline))
    return found


def batch_root(prefix: str) -> Path:
    """A fresh directory for batch directories (S2DIFF_TMPDIR), on
    /dev/shm like the default when possible."""
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=where))


def wait_until_gone(text: str, within: float) -> list[tuple[int, str]]:
    """The processes naming ``text`` still alive after ``within`` seconds."""
    end = time.monotonic() + within
    while (left := processes_naming(text)) and time.monotonic() < end:
        time.sleep(0.05)
    return left


@dataclasses.dataclass
class FakeQemu:
    """The fault wrapper, armed through the environment (see qemu_fault.py).
    ``workdir``: the root of the batch directories (S2DIFF_TMPDIR)."""

    path: Path
    state: Path
    workdir: Path
    monkeypatch: pytest.MonkeyPatch

    def arm(self, fault: str, delay: float = 0.0, boots: tuple[int, ...] | None = None,
            at_image: int | None = None) -> None:
        """The next boots get ``fault``: for kill and stop, ``delay``
        seconds after the wrapper starts or, with ``at_image``, once the
        stub has finished that many images; only ``boots`` (numbers from
        0) when given."""
        for old in self.state.iterdir():
            old.unlink()
        env = {"S2DIFF_FAKE_FAULT": fault, "S2DIFF_FAKE_DELAY": repr(delay),
               "S2DIFF_FAKE_BOOTS": None if boots is None else ",".join(map(str, boots)),
               "S2DIFF_FAKE_AT_IMAGE": None if at_image is None else str(at_image),
               "S2DIFF_FAKE_PROGRESS": f"{images_done_offset():#x}"}
        for name, value in env.items():
            if value is None:
                self.monkeypatch.delenv(name, raising=False)
            else:
                self.monkeypatch.setenv(name, value)

    def boots(self) -> list[dict]:
        """What each boot of the wrapper recorded (pid, argv, fault), in order."""
        return sorted((json.loads(p.read_text()) for p in self.state.glob("boot-*.json")),
                      key=lambda b: b["boot"])

    def assert_clean(self) -> None:
        """No process left naming the batch directories, none left in them."""
        assert wait_until_gone(str(self.workdir), 1.0) == []
        assert list(self.workdir.iterdir()) == []


@pytest.fixture
def fake_qemu(monkeypatch, tmp_path) -> FakeQemu:
    workdir = batch_root("s2diff-test-faults-")
    state = tmp_path / "boots"
    state.mkdir()
    monkeypatch.setenv("S2DIFF_TMPDIR", str(workdir))
    monkeypatch.setenv("S2DIFF_FAKE_REAL", qemu_aarch64())
    monkeypatch.setenv("S2DIFF_FAKE_STATE", str(state))
    fake = FakeQemu(FAKE, state, workdir, monkeypatch)
    fake.arm("none")
    yield fake
    try:
        fake.assert_clean()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# A small matrix cut into many batches: 2 entries of -cpu max x 6 cases, 2
# images per batch = 6 boots of ~0.1 s.  Its only divergences are in the
# baseline, on every QEMU version measured (7.2 to 11.1): the 64K entry
# meets qemu-7.2-high-oa-bits-ignored (QEMU >= 7.0), which the tests of
# damaged results files need (a divergence record to damage).
SMALL_NAMES = ("aarch64/max/4k/ipa40/sl0-1/L1x2-kvm",
               "aarch64/max/64k/ipa44/sl0-2/start-level-against-PAMax")
SMALL_CASES = 6
SMALL_IMAGES = 2


@dataclasses.dataclass(frozen=True)
class SmallRun:
    code: int
    out: Path
    records: tuple[dict, ...]
    stdout: str
    stderr: str

    def of(self, kind: str) -> list[dict]:
        return [r for r in self.records if r["type"] == kind]

    def batches(self) -> dict[int, dict]:
        return {b["batch"]: b for b in self.of("batch")}

    def cases(self) -> dict[str, dict]:
        return {c["key"]: c for c in self.of("case")}

    def divergences(self) -> set[tuple]:
        return {(d["key"], d["probe"], d["kind"], d["observed"], d["known"])
                for d in self.of("divergence")}


def small_run(out: Path, qemu: Path | None = None, resume: bool = False) -> SmallRun:
    """The SMALL matrix through run_matrix and finish_run (in this process,
    one batch at a time), as `s2diff run` does it."""
    opts = RunOptions(out=out, seed=7, cases_per_entry=SMALL_CASES, jobs=1, baseline=BASELINE,
                      qemu={Arch.AARCH64: str(qemu) if qemu else None},
                      max_images=SMALL_IMAGES, resume=resume)
    entries = [e for e in build_matrix(arch=Arch.AARCH64, cpus=["max"]) if e.name in SMALL_NAMES]
    assert len(entries) == len(SMALL_NAMES)
    outcome = run_matrix(entries, opts)
    io_ = Streams(out=io.StringIO(), err=io.StringIO(), tty=False)
    code = EXIT_CODES[finish_run(out, outcome, BASELINE, io_)]
    lines = (out / RECORDS).read_text(encoding="utf-8").splitlines()
    return SmallRun(code, out, tuple(map(json.loads, lines)), io_.out.getvalue(), io_.err.getvalue())


@pytest.fixture(scope="module")
def clean_small(tmp_path_factory) -> SmallRun:
    """The SMALL run on the real QEMU: what every faulty run is held to."""
    run = small_run(tmp_path_factory.mktemp("clean"))
    assert run.code == 0, run.stdout + run.stderr
    assert {b["status"] for b in run.of("batch")} == {"completed"}
    assert len(run.of("batch")) == SMALL_CASES
    return run


BATCH_FIELDS_THAT_VARY = ("status", "images_done", "elapsed", "argv", "diagnostic", "isolated")


def not_reproduced(batch: dict, run: SmallRun) -> bool:
    """A crashed or hung batch that no re-run reproduces: an infrastructure
    event, no finding.  Either QEMU died with a probe in flight (crash
    records, docs/results.md: the batch was resumed at the next probe, and
    that probe alone completes), or with none (isolation, harness.debug.isolate,
    re-ran the boot's images and found no single case that fails)."""
    if "isolated" in batch:
        return batch["isolated"]["reproduced"] is False
    crashes = [c for c in run.of("crash") if c["batch"] == batch["batch"]]
    return bool(crashes) and all(c["reproduced"] is not True for c in crashes)


def assert_nothing_lost(run: SmallRun, clean: SmallRun, faulty: set[int]) -> None:
    """Batches not in ``faulty`` are as in the clean run; in a faulty batch
    every case whose image the stub finished is judged exactly as in the
    clean run, the others are counted as not run (or partly run), and no
    divergence appears that the clean run does not have."""
    batches = run.batches()
    assert sorted(batches) == sorted(clean.batches())
    cases = run.cases()
    assert sorted(cases) == sorted(clean.cases())
    for number, batch in batches.items():
        ref = clean.batches()[number]
        # A faulty batch may also take more boots (crash-resume: a boot
        # after the kill); every other batch is one boot as in the clean run.
        vary = BATCH_FIELDS_THAT_VARY + (("boots",) if number in faulty else ())
        assert ({k: v for k, v in batch.items() if k not in vary}
                == {k: v for k, v in ref.items() if k not in vary})
        if number not in faulty:
            assert batch["status"] == "completed", batch
    for key, case in cases.items():
        ref = clean.cases()[key]
        if case["batch"] not in faulty or case == ref:
            assert case == ref
            continue
        status = batches[case["batch"]]["status"]
        assert case["status"] in ({"crashed": "crash"}.get(status, status), "diverge"), case
        assert case["passed"] + case["diverged"] + case["not_run"] == case["probes"]
        assert case["passed"] <= ref["passed"] and case["diverged"] <= ref["diverged"]
    assert run.divergences() <= clean.divergences()


# ---------------------------------------------------------------------------
# QEMU killed with SIGKILL
# ---------------------------------------------------------------------------

N_IMAGES = 2000


class TestSigkill:

    def test_at_random_points_of_a_batch(self, fake_qemu):
        """SIGKILL at random times from launch to past the end, and at
        random points of the stub's progress: each boot is CRASHED
        (killed) or COMPLETED (the kill came late), the images below
        images_done hold their observations and the later ones none."""
        arch = Arch.AARCH64
        images = small_batch(arch, N_IMAGES)
        calibration = run_batch(arch, "cortex-a57", images, qemu=fake_qemu.path)
        assert calibration.status is BatchStatus.COMPLETED
        rng = random.Random(6)
        # Delays count from the wrapper's start as elapsed does from the
        # launch: they spread over the whole boot.
        span = calibration.elapsed
        kills = [("time", span * (i + rng.random()) / 5) for i in range(5)]
        kills += [("image", rng.randrange(1, N_IMAGES)) for _ in range(5)]
        seen = []
        for how, when in kills:
            if how == "time":
                fake_qemu.arm("kill", delay=when)
            else:
                fake_qemu.arm("kill", at_image=when)
            r = run_batch(arch, "cortex-a57", images, qemu=fake_qemu.path, timeout=20)
            seen.append((how, round(when, 3), r.status.name, r.images_done))
            if r.status is BatchStatus.CRASHED:
                assert r.signal == signal.SIGKILL and "SIGKILL" in r.diagnostic, r.diagnostic
            else:
                assert r.status is BatchStatus.COMPLETED, seen
                assert r.images_done == N_IMAGES
            done = r.images_done
            assert [im.completed for im in r.images] == [True] * done + [False] * (N_IMAGES - done)
            assert all(im.observations == (par_of_image(j),) for j, im in enumerate(r.images[:done]))
            # The image being run when the kill came may have its probe's
            # record (the kind word is written last), the later ones not.
            assert all(im.observations in ((NOT_RUN,), (par_of_image(done),))
                       for im in r.images[done:done + 1])
            assert all(im.observations == (NOT_RUN,) for im in r.images[done + 1:])
            assert not qemu_children()
            fake_qemu.assert_clean()
        assert any(s == "CRASHED" and done == 0 for _, _, s, done in seen), seen
        assert any(s == "CRASHED" and 0 < done < N_IMAGES for _, _, s, done in seen), seen

    @pytest.mark.parametrize("when", ["time-0", "time-1", "time-2", "after-image-0"])
    def test_in_one_batch_of_a_run(self, fake_qemu, clean_small, tmp_path, when):
        """A run whose third boot is killed at a random time, or once its
        first image is done: that batch is crashed (or completed, if the
        kill came late), resumed after the probe in flight when there was
        one, with every probe that ran judged as in a clean run; every
        other batch completes, and the exit code is 0 (a crash that no
        re-run reproduces is no finding, and a crash is not a divergence)."""
        if when.startswith("time"):
            fake_qemu.arm("kill", random.Random(when).uniform(0.0, 0.15), boots=(2,))
        else:
            fake_qemu.arm("kill", at_image=1, boots=(2,))
        run = small_run(tmp_path / "out", qemu=fake_qemu.path)
        assert run.code == 0, run.stdout + run.stderr
        batch = run.batches()[2]
        assert batch["status"] in ("crashed", "completed")
        if when == "after-image-0" and batch["status"] == "crashed":
            # The kill is sent once the first image is done; the second may
            # finish before it lands, and on a loaded machine the whole
            # (small) boot may, which is the "completed" case above.
            assert batch["images_done"] >= 1, batch
        # Isolation re-runs a crashed batch on later (unfaulted) boots.
        assert batch["status"] == "completed" or not_reproduced(batch, run)
        assert_nothing_lost(run, clean_small, faulty={2})


# ---------------------------------------------------------------------------
# QEMU stopped with SIGSTOP until the timeout
# ---------------------------------------------------------------------------

STOP_TIMEOUT = 1.0


class TestSigstop:

    def test_stopped_qemu_is_a_timeout_and_is_killed(self, fake_qemu):
        """QEMU stopped mid-batch: TIMEOUT after the timeout, QEMU gone at
        once (a stopped process acts on SIGTERM only when continued), the
        finished images kept.  The stub parks once image ``half`` is done
        (images_done = half + 1) and the stop is sent when images_done
        reaches half + 1, so it lands while the stub is parked: exactly
        half + 1 images are done whatever the machine's speed.  (Sent at
        images_done = half it raced image ``half``: CI once saw 1000 of
        1001.)"""
        arch = Arch.AARCH64
        half = N_IMAGES // 2
        fake_qemu.arm("stop", at_image=half + 1)
        r = run_batch(arch, "cortex-a57", small_batch(arch, N_IMAGES), qemu=fake_qemu.path,
                      timeout=STOP_TIMEOUT, hang_after=half)
        assert (fake_qemu.state / "signalled-0").exists(), "the stop never came"
        assert r.status is BatchStatus.TIMEOUT, r.diagnostic
        assert r.images_done == half + 1
        assert all(im.observations == (par_of_image(j),) for j, im in enumerate(r.images[:half + 1]))
        assert all(im.observations == (NOT_RUN,) for im in r.images[half + 1:])
        (boot,) = fake_qemu.boots()
        assert not Path(f"/proc/{boot['pid']}").exists()
        # SIGTERM (with SIGCONT) ended it, not the SIGKILL that follows
        # when QEMU ignores it: it acted on the SIGTERM at once.
        assert "terminating on signal 15" in r.console
        assert r.signal != signal.SIGKILL

    def test_stopped_and_deaf_to_sigterm_is_killed(self, fake_qemu):
        """An emulator that ignores SIGTERM and stops again whenever it is
        continued still dies: SIGKILL acts on a stopped process."""
        fake_qemu.arm("deaf")
        r = run_batch(Arch.AARCH64, "cortex-a57", small_batch(Arch.AARCH64, 4),
                      qemu=fake_qemu.path, timeout=STOP_TIMEOUT)
        assert r.status is BatchStatus.TIMEOUT
        assert r.signal == signal.SIGKILL
        assert r.images_done == 0 and all(im.observations == (NOT_RUN,) for im in r.images)
        (boot,) = fake_qemu.boots()
        assert not Path(f"/proc/{boot['pid']}").exists()


# ---------------------------------------------------------------------------
# Garbage on the console, a bad exit after the stub finished, no end marker
# ---------------------------------------------------------------------------

class TestConsoleAndExit:

    @pytest.mark.parametrize("fault, status, diagnostic", [
        ("garbage-first", "completed", ""),
        ("garbage", "completed", ""),
        ("no-marker", "crashed", "QEMU exited with status 0 without the end marker"),
        ("exit-1", "crashed", "QEMU exited with status 1 after the end marker"),
        ("segv", "crashed", "QEMU killed by signal 11 (SIGSEGV) after the end marker"),
        ("abort", "crashed", "QEMU killed by signal 6 (SIGABRT) after the end marker"),
    ])
    def test_every_boot_faulty(self, fake_qemu, clean_small, tmp_path, fault, status, diagnostic):
        """Console noise (a fake end marker included) changes nothing; an
        emulator that loses its end marker, or exits badly after the stub
        finished, makes the batch crashed -- never a divergence: every
        image finished, so every case is judged as in the clean run.  As
        the emulator fails whatever it runs -- an empty job too -- the crash
        is not attributable to a case: no finding, and since no batch
        completed, an infrastructure failure (exit 3, DESIGN.md)."""
        fake_qemu.arm(fault)
        run = small_run(tmp_path / "out", qemu=fake_qemu.path)
        batches = run.batches().values()
        assert {b["status"] for b in batches} == {status}
        assert all(b["diagnostic"].startswith(diagnostic) for b in batches), \
            [b["diagnostic"] for b in batches]
        assert all(b["images_done"] == b["images"] for b in batches)
        assert run.cases() == clean_small.cases()
        assert run.divergences() == clean_small.divergences()
        if status == "completed":
            assert run.code == 0, run.stdout + run.stderr
            assert all("isolated" not in b for b in batches)
            assert len(fake_qemu.boots()) == SMALL_CASES
        else:
            assert run.code == 3, run.stdout + run.stderr
            findings = [b["isolated"] for b in batches]
            assert all(not f["reproduced"] and "empty job" in f["why"] for f in findings), findings
            assert "FINDING" not in run.stdout

    def test_results_area_scribbled_on(self, fake_qemu, clean_small, tmp_path):
        """Garbage in the results header after a run (not the job's fault:
        the stub checked the job) makes that batch crashed with nothing
        kept -- not a bad-usage error that ends the whole run."""
        fake_qemu.arm("corrupt-results", boots=(1,))
        run = small_run(tmp_path / "out", qemu=fake_qemu.path)
        assert run.code == 0, run.stdout + run.stderr
        batch = run.batches()[1]
        assert batch["status"] == "crashed"
        assert "leaving the results area unreadable (results header magic" in batch["diagnostic"]
        lost = [c for c in run.cases().values() if c["batch"] == 1]
        assert {(c["status"], c["not_run"] == c["probes"]) for c in lost} == {("crash", True)}
        assert not_reproduced(batch, run)
        assert_nothing_lost(run, clean_small, faulty={1})


# ---------------------------------------------------------------------------
# QEMU refusing to start
# ---------------------------------------------------------------------------

class TestRefusal:

    def test_one_boot_refused_the_run_goes_on(self, fake_qemu, clean_small, tmp_path):
        """An emulator that exits 1 before the stub runs, for one boot: that
        batch is recorded as an infrastructure failure with the emulator's
        words, the others run, and the exit code is 0 (something ran)."""
        fake_qemu.arm("refuse", boots=(1,))
        run = small_run(tmp_path / "out", qemu=fake_qemu.path)
        assert run.code == 0, run.stdout + run.stderr
        batch = run.batches()[1]
        assert batch["status"] == "harness-error"
        assert "QEMU exited with status 1 before the stub ran" in batch["diagnostic"]
        assert "fake fault: refusing to start" in batch["diagnostic"]
        assert {b["status"] for n, b in run.batches().items() if n != 1} == {"completed"}
        others = {k: c for k, c in clean_small.cases().items() if c["batch"] != 1}
        assert run.cases() == others
        assert "harness errors" in run.stdout

    def test_every_boot_refused_is_exit_3(self, fake_qemu, tmp_path):
        """Nothing could run: exit 3 (infrastructure failure)."""
        fake_qemu.arm("refuse")
        run = small_run(tmp_path / "out", qemu=fake_qemu.path)
        assert run.code == 3, run.stdout + run.stderr
        assert {b["status"] for b in run.of("batch")} == {"harness-error"}
        assert run.of("case") == []


# ---------------------------------------------------------------------------
# A results file torn or corrupted: report on what is readable, resume from it
# ---------------------------------------------------------------------------

def s2diff(*args: object) -> tuple[int, str, str]:
    """The command line in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("s2diff: error: "), err
    assert "Traceback" not in err
    return lines[0]


def parse(line: bytes) -> dict | None:
    try:
        return json.loads(line)
    except ValueError:
        return None


def corrupt(clean: SmallRun, out: Path, how: str) -> Path:
    """A copy of the clean run's output directory with its results file
    damaged ``how``; the path of the damaged file."""
    shutil.copytree(clean.out, out)
    path = out / RECORDS
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    mid = len(lines) // 2
    kinds = [(parse(line) or {}).get("type") for line in lines]
    case = kinds.index("case", mid)
    divergence = kinds.index("divergence", mid)
    damaged = {
        # A run killed while writing its last record.
        "torn-last-line": data[:-len(lines[-1]) // 2],
        # Cut in the middle of the file: the batches after the cut are gone.
        "truncated": b"".join(lines[:mid]) + lines[mid][:17],
        "garbage-line-inserted": b"".join(lines[:mid] + [b"\x1b[2J{garbage\n"] + lines[mid:]),
        "binary-line-inserted": b"".join(lines[:mid] + [b"\xff\xfe\x00\x80\n"] + lines[mid:]),
        # A record of a finished batch garbled: that batch has lost a record.
        "case-line-garbled": b"".join(lines[:case] + [lines[case][:40] + b"\x00\n"]
                                      + lines[case + 1:]),
        "divergence-line-garbled": b"".join(lines[:divergence] + [b"{\"type\": \"divergence\"\n"]
                                            + lines[divergence + 1:]),
        "header-garbled": b"{\"type\":\"run\",\"vers\n" + b"".join(lines[1:]),
        "empty": b"",
        "all-garbage": b"not json\n[1, 2]\n\"text\"\n{}\n",
    }[how]
    path.write_bytes(damaged)
    return path


def summary_total(summary: str) -> list[int]:
    """The numbers of the summary's total line (entries, cases, probes, ...)."""
    (line,) = [line for line in summary.splitlines() if line.startswith("total ")]
    return [int(n) for n in line.split()[1:]]


READABLE = ("torn-last-line", "truncated", "garbage-line-inserted", "binary-line-inserted",
            "case-line-garbled", "divergence-line-garbled")


class TestDamagedResults:

    @pytest.mark.parametrize("how", [
        *READABLE,
    ])
    def test_report_uses_what_is_readable(self, clean_small, tmp_path, how):
        """`s2diff report` rebuilds the reports from the readable records
        and says what it skipped (a torn end silently); no new divergence
        appears."""
        out = tmp_path / "out"
        damaged = corrupt(clean_small, out, how)
        cases = sum(1 for line in damaged.read_bytes().splitlines()
                    if (parse(line) or {}).get("type") == "case")
        code, stdout, err = s2diff("report", out)
        assert code == 0, err
        assert "Traceback" not in err
        assert summary_total((out / "summary.txt").read_text())[1] == cases
        assert (cases < len(clean_small.cases())) == (how in ("truncated", "case-line-garbled"))
        if how not in ("truncated", "torn-last-line"):
            assert "skipped" in err, err

    @pytest.mark.parametrize("how", [
        "empty",
        "all-garbage",
    ])
    def test_report_of_nothing_readable_is_one_line(self, clean_small, tmp_path, how):
        out = tmp_path / "out"
        corrupt(clean_small, out, how)
        code, _, err = s2diff("report", out)
        assert code == 2
        assert str(out / RECORDS) in one_error_line(err)

    @pytest.mark.parametrize("how", READABLE)
    def test_resume_completes_the_run(self, clean_small, fake_qemu, tmp_path, how):
        """--resume keeps the finished batches that are readable in full,
        runs the rest, and ends with the clean run's reports."""
        out = tmp_path / "out"
        damaged = corrupt(clean_small, out, how)
        batches = [parse(line) for line in damaged.read_bytes().splitlines()
                   if line.startswith(b"{\"type\":\"batch\"")]
        readable = [b for b in batches if b]
        fake_qemu.arm("none")
        run = small_run(out, qemu=fake_qemu.path, resume=True)
        assert run.code == 0, run.stdout + run.stderr
        assert run.cases() == clean_small.cases()
        assert run.divergences() == clean_small.divergences()
        assert (out / "summary.txt").read_text() == (clean_small.out / "summary.txt").read_text()
        assert (out / "junit.xml").read_text() == (clean_small.out / "junit.xml").read_text()
        # What was not finished, or lost a record, ran again; the other
        # batches kept their records.
        lost = how.endswith("-garbled")
        assert len(fake_qemu.boots()) == SMALL_CASES - len(readable) + lost
        kept = [b for b in readable if b in run.records]
        assert len(kept) == len(readable) - lost

    @pytest.mark.parametrize("how, why", [
        ("header-garbled", "has no run header"),
        ("empty", "has no run header"),
        ("all-garbage", "has no run header"),
    ])
    def test_resume_refuses_without_a_header(self, clean_small, fake_qemu, tmp_path, how, why):
        out = tmp_path / "out"
        corrupt(clean_small, out, how)
        code, _, err = s2diff("run", "--cpu", "cortex-a57", "--ipa", "40", "--granule", "4k",
                              "--cases", SMALL_CASES, "--seed", 7, "--jobs", 1, "--resume",
                              "--qemu-aarch64", fake_qemu.path, "--out", out)
        assert code == 2
        assert why in one_error_line(err)
        assert fake_qemu.boots() == []


# ---------------------------------------------------------------------------
# The harness interrupted (SIGINT, SIGTERM) or killed, then resumed
# ---------------------------------------------------------------------------

# 29 batches of about 0.1 s (the default fan-out makes small batches) on
# two workers: about 3 s in all.  --jobs is added per test.
RUN_ARGS = ("run", "--cpu", "cortex-a57", "--cases", "2", "--seed", "3")


@dataclasses.dataclass(frozen=True)
class Harness:
    """Where a run as a real process keeps things: ``out``, and ``workdir``
    for its batch directories (S2DIFF_TMPDIR)."""

    out: Path
    workdir: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("S2DIFF_")}
        return {**env, "S2DIFF_TMPDIR": str(self.workdir)}

    def start(self, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "harness.cli", *RUN_ARGS, *extra,
                                 "--out", str(self.out)], cwd=ROOT, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, *extra: str) -> tuple[int, str, str]:
        proc = self.start(*extra)
        out, err = proc.communicate(timeout=300)
        return proc.returncode, out, err

    def batches_recorded(self) -> int:
        try:
            return (self.out / RECORDS).read_bytes().count(b'{"type":"batch"')
        except FileNotFoundError:
            return 0


@pytest.fixture
def harness(tmp_path):
    workdir = batch_root("s2diff-test-harness-")
    yield Harness(tmp_path / "out", workdir)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The output directory of the same run, never interrupted."""
    workdir = batch_root("s2diff-test-harness-")
    try:
        h = Harness(tmp_path_factory.mktemp("uninterrupted"), workdir)
        code, out, err = h.run("--jobs", "2")
        assert code == 0, out + err
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return h.out


def finished_lines(path: Path) -> list[bytes]:
    """The lines of the batches an interrupted run finished."""
    records = [(line, parse(line)) for line in path.read_bytes().splitlines()]
    done = finished_batches([parse_record(r) for _, r in records if isinstance(r, dict)])
    # finished_batches names a batch by (batch, QEMU label) (docs/results.md).
    return [line for line, r in records if isinstance(r, dict) and "batch" in r
            and (r["batch"], r.get("qemu", "")) in done]


class TestInterrupted:

    # SIGKILL with --jobs 1 is left out: the batch directory of a process
    # killed outright stays behind (test_qemu_dies_with_the_process_...).
    @pytest.mark.parametrize("sig, jobs", [(signal.SIGINT, 2), (signal.SIGTERM, 2),
                                           (signal.SIGKILL, 2), (signal.SIGINT, 1)],
                             ids=["SIGINT", "SIGTERM", "SIGKILL", "SIGINT-jobs-1"])
    def test_stops_promptly_and_resumes_to_the_same_report(self, harness, uninterrupted, sig,
                                                            jobs):
        """Signalled after a few batches: SIGINT and SIGTERM end the run
        promptly with exit 130, its records on disk (the reports are left
        to `s2diff report`: rebuilding them takes seconds on a long run),
        SIGKILL at once; either way no worker, QEMU or batch directory is
        left, no finished batch is lost, and --resume with the same options
        ends with the uninterrupted run's summary.txt and junit.xml, byte
        for byte (whatever the number of workers)."""
        proc = harness.start("--jobs", str(jobs))
        try:
            end = time.monotonic() + 120
            while harness.batches_recorded() < 4 and proc.poll() is None:
                assert time.monotonic() < end, "the run recorded no batch in 120 s"
                time.sleep(0.02)
            assert proc.poll() is None, "the run ended before it could be interrupted"
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
        else:
            assert proc.returncode == 130, out + err
            assert "Traceback" not in err
            assert err.splitlines()[-1].startswith("interrupted: "), err
            assert f"s2diff report {harness.out}" in err.splitlines()[-1]
        # Workers are forked from the harness: their command lines name --out.
        assert wait_until_gone(str(harness.out), 5.0) == []
        assert wait_until_gone(str(harness.workdir), 1.0) == []
        assert [(d.name, sorted(f.name for f in d.iterdir()))
                for d in harness.workdir.iterdir()] == [], err
        finished = finished_lines(harness.out / RECORDS)
        total = len([r for r in map(parse, (uninterrupted / RECORDS).read_bytes().splitlines())
                     if r and r["type"] == "batch"])
        done = sum(1 for line in finished if line.startswith(b'{"type":"batch"'))
        assert 4 <= done < total

        code, out, err = harness.run("--jobs", str(jobs), "--resume")
        assert code == 0, out + err
        final = (harness.out / RECORDS).read_bytes().splitlines()
        assert set(finished) <= set(final)
        for name in ("summary.txt", "junit.xml"):
            assert (harness.out / name).read_bytes() == (uninterrupted / name).read_bytes(), name


# ---------------------------------------------------------------------------
# How QEMU is run, and the exit codes of a run that cannot start
# ---------------------------------------------------------------------------

# Options that would give the guest a network, a disk or host files.
FORBIDDEN_OPTIONS = {"-netdev", "-net", "-drive", "-hda", "-hdb", "-cdrom", "-sd", "-mtdblock",
                     "-pflash", "-virtfs", "-fsdev", "-chardev", "-usb", "-usbdevice", "-bios",
                     "-initrd", "-append", "-dtb", "-qmp", "-gdb", "-s", "-plugin", "-loadvm"}


def test_qemu_command_line_has_no_defaults_network_or_extra_files(fake_qemu, tmp_path):
    """Every boot runs with -nodefaults, no network interface (-nic none),
    no monitor, no display, and no file but the stub, the job blob and the
    RAM file (both in the batch directory); the batch records name the
    exact command line QEMU got."""
    run = small_run(tmp_path / "out", qemu=fake_qemu.path)
    boots = fake_qemu.boots()
    assert len(boots) == SMALL_CASES
    recorded = sorted(tuple(b["argv"][1:]) for b in run.of("batch"))
    assert recorded == sorted(tuple(b["argv"][1:]) for b in boots)
    stub = read_stub(build_stub(Arch.AARCH64)).path
    for boot in boots:
        argv = boot["argv"]
        assert argv[0] == qemu_aarch64()
        options = {a for a in argv[1:] if a.startswith("-")}
        assert options & FORBIDDEN_OPTIONS == set()
        assert "-nodefaults" in options
        for option, value in (("-nic", "none"), ("-monitor", "none"), ("-display", "none"),
                              ("-serial", "stdio"), ("-kernel", str(stub))):
            assert option_values(argv, option) == [value], (option, argv)
        (loader,) = option_values(argv, "-device")
        batch_dir = Path(loader.split("file=")[1].split(",")[0]).parent
        assert batch_dir.parent == fake_qemu.workdir
        assert loader.startswith(f"loader,file={batch_dir}/job.bin,")
        (backend,) = option_values(argv, "-object")
        assert f"mem-path={batch_dir}/ram.bin," in backend


def option_values(argv: list[str], option: str) -> list[str]:
    """The values ``option`` is given in a command line."""
    return [argv[i + 1] for i, a in enumerate(argv) if a == option]


class TestCannotStart:

    @pytest.mark.parametrize("how", ["path", "name", "environment"])
    def test_missing_qemu_is_exit_3_naming_the_package(self, tmp_path, monkeypatch, how):
        """No QEMU: one line naming what was looked for and the Debian
        package, exit 3 (infrastructure), nothing run."""
        argv = ["run", "--cpu", "cortex-a57", "--cases", "1", "--out", tmp_path / "out"]
        wanted = {"path": "/nonexistent/qemu-system-aarch64", "name": "qemu-system-aarch64-nope",
                  "environment": "/nonexistent/from-env"}[how]
        if how == "environment":
            monkeypatch.setenv("S2DIFF_QEMU_AARCH64", wanted)
        else:
            argv += ["--qemu-aarch64", wanted]
        code, _, err = s2diff(*argv)
        assert code == 3
        line = one_error_line(err)
        assert repr(wanted) in line and "Debian package qemu-system-arm" in line, line
        assert not (tmp_path / "out" / RECORDS).exists()

    @pytest.mark.parametrize("how", ["below-a-file", "is-a-file", "in-proc"])
    def test_unwritable_out_is_exit_2(self, tmp_path, how):
        """An --out that cannot be written (even by root): one line, exit 2."""
        blocker = tmp_path / "file"
        blocker.write_text("")
        out = {"below-a-file": blocker / "out", "is-a-file": blocker,
               "in-proc": Path("/proc/s2diff-out")}[how]
        code, _, err = s2diff("run", "--cpu", "cortex-a57", "--cases", "1", "--out", out)
        assert code == 2
        assert one_error_line(err).startswith(f"s2diff: error: --out: cannot write to {out} (")


def test_qemu_dies_with_the_process_that_launched_it(tmp_path):
    """A harness process SIGKILLed while its QEMU runs (parked by the
    stub's hang_after hook) takes the QEMU with it: PR_SET_PDEATHSIG.
    (Its batch directory stays behind: nothing of it runs after SIGKILL.
    With --jobs 2 and more the workers outlive it long enough to clean
    up, see TestInterrupted.)"""
    workdir = tmp_path / "batches"
    workdir.mkdir()
    script = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/tests']\n"
              "from harness.qemu.boot import run_batch\n"
              "from reference.arch import Arch\n"
              "from test_guest import small_batch\n"
              "run_batch(Arch.AARCH64, 'cortex-a57', small_batch(Arch.AARCH64, 4), hang_after=0,"
              " timeout=60, workdir=__import__('pathlib').Path(sys.argv[2]))\n")
    harness = subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(workdir)])
    try:
        end = time.monotonic() + 60
        while not (qemus := processes_naming(f"mem-path={workdir}/")):
            assert harness.poll() is None and time.monotonic() < end, "QEMU never started"
            time.sleep(0.02)
        harness.kill()
        harness.wait()
        assert wait_until_gone(f"mem-path={workdir}/", 2.0) == [], qemus
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
