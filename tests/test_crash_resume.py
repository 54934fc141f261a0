"""Crash-resume (issue 10 item 3, docs/results.md `crash`): when QEMU dies
while it runs a probe, the probe in flight becomes a crash record, a new
boot starts at the next probe, and every other probe is judged exactly as
in a clean run; a crash family's single probe is written as a case file
that reproduces it; after three crashes on probes of one predicted
outcome, such probes are held back.

The abort is planted with tests/fakes/qemu_abort.py, a wrapper that aborts
(SIGABRT, with an assertion on stderr) exactly while the stub runs the
probe chosen by job content; the real QEMU runs everything else.  The
last test runs a real QEMU build that aborts on a common probe (Debian's
10.0.2, /work/notes/triage: do_ats_write asserts on an AT whose stage-2
walk takes a Permission fault), when one is at hand."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import records, s2diff

from harness.kinds import CaseKind
from harness.matrix import build_matrix
from harness.plan import Plan, generate_batch, job_image, prepare_machine
from harness.qemu import builds
from harness.qemu.boot import BatchStatus
from harness.qemu.elf import read_stub
from harness.qemu.launcher import find_qemu
from harness.resume import CONFIRM, probe_key, run_resumable
from harness.run import RunOptions
from reference.arch import Arch, Granule

pytestmark = pytest.mark.qemu

FAKE = Path(__file__).resolve().parent / "fakes" / "qemu_abort.py"
SEED = 5
SELECTION = ("--cpu", "cortex-a57", "--granule", "4k", "--ipa", "40", "--cases", "2",
             "--jobs", "1", "--seed", str(SEED))


def planned_cases(fanout: int) -> list:
    """The cases the SELECTION run generates (the plan is a pure function
    of the matrix, the seed and the fan-out), in batch order."""
    entries = build_matrix(arch=Arch.AARCH64, cpus=["cortex-a57"], granules=[Granule.G4K],
                           ipa_sizes=[40], probes=[CaseKind.AT])
    machine = prepare_machine([Arch.AARCH64])
    arena = machine.arena["aarch64"]
    plan = Plan.of(entries, 2, arena, RunOptions(out=Path()).max_images,
                   max_probes=machine.max_probes["aarch64"], fanout=fanout)
    return [c for batch in plan
            for c in generate_batch(batch, SEED, arena, machine.memory_map(Arch.AARCH64), fanout)]


def ipa_of(case, row: int) -> int:
    named = len(case.probes)
    return case.probes[row].ipa if row < named else int(case.fanout.ipa[row - named])


def first_of_its_ipa(case, rows) -> list[int]:
    """The rows whose IPA no earlier probe of the case has: the fake aborts
    at the first probe of a planted IPA."""
    table = job_image(case).probes
    return [r for r in rows if int(np.argmax(table["ipa"] == ipa_of(case, r))) == r]


@pytest.fixture
def wrapper(tmp_path, monkeypatch):
    path = tmp_path / "bin" / "qemu-system-aarch64"
    path.parent.mkdir()
    path.symlink_to(FAKE)
    # The wrapper runs the QEMU the tests run ($S2DIFF_QEMU_AARCH64, PATH).
    monkeypatch.setenv("S2DIFF_ABORT_REAL", str(find_qemu(Arch.AARCH64)))
    # Where the results header is in the guest RAM file: from the stub's
    # symbols (docs/job-abi.md), as the harness reads it.
    layout = read_stub(Path(prepare_machine([Arch.AARCH64]).stubs["aarch64"])).layout
    monkeypatch.setenv("S2DIFF_ABORT_RESULTS", f"{layout.results_start - layout.ram_base:#x}")
    return path


def plant(monkeypatch, case, rows) -> None:
    monkeypatch.setenv("S2DIFF_ABORT_VMID", f"{case.config.vttbr >> 48:x}")
    monkeypatch.setenv("S2DIFF_ABORT_IPA", ",".join(f"{ipa_of(case, r):x}" for r in rows))


def by_key(out: Path, kind: str) -> dict[str, dict]:
    return {r["key"]: r for r in records(out, kind)}


def divergence_rows(out: Path) -> set[tuple]:
    return {(d["key"], d["probe"], d["kind"], d["observed"]) for d in records(out, "divergence")}


@pytest.mark.parametrize("fanout, where", [(0, "named"), (8, "fan-out")])
def test_a_planted_abort_is_one_crash_and_everything_else_is_judged(
        tmp_path, wrapper, monkeypatch, fanout, where):
    clean = tmp_path / "clean"
    assert s2diff("run", *SELECTION, "--fanout", fanout, "--out", clean)[0] == 0
    cases = planned_cases(fanout)
    case = cases[1]
    named = len(case.probes)
    rows = range(named, named + len(case.fanout)) if where == "fan-out" else range(3, named)
    row = first_of_its_ipa(case, rows)[len(rows) // 3]
    plant(monkeypatch, case, [row])

    out = tmp_path / "planted"
    code, text = s2diff("run", *SELECTION, "--fanout", fanout, "--qemu-aarch64", wrapper,
                        "--out", out)
    assert code == 1, text             # a crash that reproduces is a finding
    (crash,) = records(out, "crash")
    assert (crash["key"], crash["probe"], crash["ipa"]) == (case.key, row,
                                                            f"{ipa_of(case, row):#x}")
    assert crash["signature"] == ("target/arm/helper.c:N: do_ats_write: Assertion "
                                  "`planted_abort_for_tests' failed. [SIGABRT]")
    assert crash["signal"] == 6 and crash["kind"] == "crash" and crash["known"] is None
    # The probe alone was run again under the wrapper, and died the same way.
    assert crash["reproduced"] is True
    data = json.loads((out / crash["case_file"]).read_text())
    assert [int(p["ipa"], 16) for p in data["probes"]] == [ipa_of(case, row)]
    assert data["expect"]["signature"] == crash["signature"]

    # The batch went on in a second boot; every other probe of every case
    # is judged as in the clean run.
    batch = next(b for b in records(out, "batch") if b["batch"] == crash["batch"])
    assert (batch["status"], batch["boots"], batch["images_done"]) == ("crashed", 2,
                                                                      batch["images"])
    planted, reference = by_key(out, "case"), by_key(clean, "case")
    assert planted.keys() == reference.keys()
    for key, c in planted.items():
        ref = reference[key]
        if key != case.key:
            assert c == ref
            continue
        assert (c["status"], c["crashed"], c["not_run"]) == ("crash", 1, 1)
        assert "held" not in c          # one crash holds nothing back
        assert c["passed"] + c["diverged"] + 1 == ref["passed"] + ref["diverged"]
    assert divergence_rows(out) == {d for d in divergence_rows(clean)
                                    if not (d[0] == case.key and d[1] == row)}
    summary = (out / "summary.txt").read_text()
    total = sum(c["probes"] for c in planted.values())
    assert f"probes: {total - 1} of {total} judged; QEMU died or hung on 1, 0 held back" in summary

    # repro-crash: still fails under the wrapper, completes on the real QEMU.
    assert s2diff("repro", out / crash["case_file"], "--qemu-aarch64", wrapper)[0] == 1
    monkeypatch.delenv("S2DIFF_ABORT_VMID")
    code, text = s2diff("repro", out / crash["case_file"])
    assert code == 0 and text.startswith("no crash: QEMU completes the case"), text


def test_after_three_crashes_on_one_predicted_outcome_its_probes_are_held_back(
        tmp_path, wrapper, monkeypatch):
    """Four probes of one AT kind and one predicted outcome planted in one
    image: QEMU dies on the first three (each a boot), the fourth is held
    back, and so are that key's probes of the batch run afterwards."""
    cases = planned_cases(0)
    case = cases[1]
    keys = {}
    for row in first_of_its_ipa(case, range(len(case.probes))):
        keys.setdefault(probe_key(case, row), []).append(row)
    key, rows = max(keys.items(), key=lambda kv: len(kv[1]))
    assert len(rows) > CONFIRM, keys
    plant(monkeypatch, case, rows[:CONFIRM + 1])
    out = tmp_path / "planted"
    code, text = s2diff("run", *SELECTION, "--fanout", 0, "--qemu-aarch64", wrapper,
                        "--out", out)
    assert code == 1, text
    crashes = records(out, "crash")
    assert [(c["probe"], c["quarantine"]) for c in crashes] == [(r, key) for r in rows[:CONFIRM]]
    assert [c["reproduced"] for c in crashes] == [True, None, None]
    c = by_key(out, "case")[case.key]
    assert c["crashed"] == CONFIRM and c["held"] == len(rows) - CONFIRM
    later = [c for c in records(out, "case") if c["batch"] > crashes[0]["batch"]]
    held_later = sum(c.get("held", 0) for c in later)
    expected_later = sum(1 for other in cases if other.key in {c["key"] for c in later}
                         for r in range(len(other.probes)) if probe_key(other, r) == key)
    assert held_later == expected_later


def test_a_batch_larger_than_the_results_area_runs_in_several_boots(tmp_path):
    """Every boot respects the results area: with room for 50 probes, a
    67-probe image runs in two boots, and its records come back in place;
    with room for the first image and 10 more, the first image's records
    are its boot's own and the second's come from two boots."""
    cases = planned_cases(0)[:2]
    images = [job_image(c) for c in cases]
    whole = run_resumable(Arch.AARCH64, "cortex-a57", images, capacity=10**6)
    assert whole.boots == 1
    total = sum(len(i.probes) for i in images)
    for capacity in (50, len(images[0].probes) + 10):
        split = run_resumable(Arch.AARCH64, "cortex-a57", images, capacity=capacity)
        assert split.boots == -(-total // capacity) > 1
        assert split.result.status is BatchStatus.COMPLETED
        for a, b in zip(whole.result.images, split.result.images):
            assert np.array_equal(a.records, b.records) and a.completed and b.completed
            assert a.regions_after == b.regions_after


def test_a_boot_killed_while_the_stub_copies_the_tables_leaves_no_trace_in_memory(monkeypatch):
    """The stub says RUNNING, then copies every table region into place,
    then runs probes.  A boot killed during the copy wrote no probe
    record; its regions read back half zeros that no probe wrote.  The
    resumed run must not take those zeros for hardware updates: on
    cortex-a57 (no FEAT_HAFDBS: AT writes no descriptor) every image's
    tables after the run are exactly the ones it was given."""
    import harness.resume as resume
    from harness.qemu.job import GuestStatus, ImageResult

    images = [job_image(c) for c in planned_cases(0)[:2]]
    real = resume.run_batch
    calls = []

    def killed_in_the_copy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(len(calls))
        if len(calls) > 1:
            return result
        half = tuple(ImageResult(np.zeros_like(im.records),
                                 tuple((pa, bytes(len(d) // 2) + d[len(d) // 2:])
                                       for pa, d in im.regions_after), False)
                     for im in result.images)
        return dataclasses.replace(result, status=BatchStatus.CRASHED, images=half,
                                   guest_status=GuestStatus.RUNNING, images_done=0,
                                   probes_done=0, signal=9, returncode=None)

    monkeypatch.setattr(resume, "run_batch", killed_in_the_copy)
    run = run_resumable(Arch.AARCH64, "cortex-a57", images, capacity=10**6)
    assert len(calls) == 2 and len(run.crashes) == 1 and run.crashes[0].probe == 0
    for image, got in zip(images, run.result.images):
        assert got.completed
        assert got.regions_after == image.regions


def crashing_qemu() -> Path | None:
    """A QEMU build whose AT aborts on a stage-2 Permission fault (family A
    of the triage: 9.2 <= version < 10.0.13): $S2DIFF_TEST_CRASHING_QEMU,
    or Debian bookworm-backports' 10.0.2 in the build cache."""
    candidates = [os.environ.get("S2DIFF_TEST_CRASHING_QEMU")]
    cached = builds.find_cached("bookworm-backports")
    candidates += [str(cached.bin) if cached else None, "/work/qemu-cache/bookworm-backports/bin"]
    for c in candidates:
        if c and Path(c).is_dir():
            try:
                build = builds.resolve(c)
            except Exception:
                continue
            number = tuple(int(x) for x in builds.version_number(build.version).split("."))
            if (9, 2) <= number < (10, 0, 13):
                return Path(c)
    return None


def test_a_real_qemu_that_aborts_on_a_common_probe(tmp_path):
    """QEMU 10.0.2 aborts on every AT whose stage-2 walk takes a Permission
    fault (do_ats_write: Assertion `!res.cacheattrs.is_s2_format').  Both
    architectures, a 40-bit 4K configuration each, with fan-out: the run
    ends (exit 1) with one crash family, its single probe reproducing it,
    every other probe judged, no harness error."""
    qemu = crashing_qemu()
    if qemu is None:
        pytest.skip("no QEMU build with the do_ats_write abort (9.2 <= version < 10.0.13) at "
                    "hand: s2diff qemu fetch bookworm-backports, or set "
                    "S2DIFF_TEST_CRASHING_QEMU")
    out = tmp_path / "out"
    code, text = s2diff("run", "--cpu", "max", "--granule", "4k", "--ipa", "40", "--cases", "1",
                        "--fanout", "64", "--jobs", "2", "--no-baseline", "--qemu", qemu,
                        "--out", out)
    assert code == 1, text
    crashes = records(out, "crash")
    assert {c["signature"] for c in crashes} == {
        "target/arm/helper.c:N: do_ats_write: Assertion `!res.cacheattrs.is_s2_format' failed. "
        "[SIGABRT]"}
    # The reference says each of them ends in a stage-2 Permission fault.
    # (one of them when the reference permits more than one outcome)
    assert all(c["expected"] and any(e.startswith("permission L") for e in c["expected"])
               for c in crashes), [c["expected"] for c in crashes]
    assert {c["arch"] for c in crashes} == {"aarch64", "arm"}
    (first,) = [c for c in crashes if c["reproduced"] is not None]
    assert first["reproduced"] is True and (out / first["case_file"]).is_file()
    option, name = (("--qemu-aarch64", "qemu-system-aarch64") if first["arch"] == "aarch64"
                    else ("--qemu-arm", "qemu-system-arm"))
    assert s2diff("repro", out / first["case_file"], option, qemu / name)[0] == 1
    batches = records(out, "batch")
    assert "harness-error" not in {b["status"] for b in batches}
    cases = records(out, "case")
    for c in cases:
        assert c["passed"] + c["diverged"] + c["not_run"] >= c["probes"]
        assert c["not_run"] == c.get("crashed", 0) + c.get("held", 0), c
    judged = sum(c["passed"] for c in cases)
    assert judged > 0.5 * sum(c["probes"] for c in cases)
    assert "probes: " in (out / "summary.txt").read_text()
