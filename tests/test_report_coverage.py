"""Coverage in the reports (issue 12): a run that did not cover its matrix
says so in the summary's first lines, counts the entries that never ran
with the other verdicts, and lists each in JUnit as <skipped> -- per QEMU
in a run over several.  Records are written with the runner's record
types; the expected figures are counted by hand from the records below."""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.qemu.boot import BatchStatus
from harness.records import (
    BatchRecord,
    CaseRecord,
    CaseStatus,
    EndReason,
    EndRecord,
    NotRun,
    QemuInfo,
    RunHeader,
    record_line,
)
from harness.report.junit import write_junit
from harness.report.load import load_run
from harness.report.summary import coverage_headline, render_summary
from harness.report.text import render_text

A = "aarch64/max/4k/ipa40/sl0-1/L1x1"
B = "aarch64/max/4k/ipa48/sl0-0/L0x1"
C = "aarch64/max/64k/ipa42/sl0-1/L2x1"
BUDGET = "budget: not started within --budget 10 s"


def header(labels: tuple[str, ...]) -> RunHeader:
    return RunHeader(seed=1, cases_per_entry=1, fanout=None, shard=None, entries=3, batches=3,
                     cases=3 * len(labels), argv=("s2diff", "run"),
                     started="2026-11-30T00:00:00Z",
                     qemu=(("aarch64", f"QEMU emulator version {labels[0]}"),), baseline=None,
                     qemus=tuple(QemuInfo(v, f"QEMU emulator version {v}", f"/q/{v}", None)
                                 for v in labels) if len(labels) > 1 else ())


def ran(entry: str, qemu: str) -> list:
    return [BatchRecord(batch=0, arch="aarch64", cpu="max", status=BatchStatus.COMPLETED,
                        images=1, images_done=1, elapsed=1.0, argv=("qemu",),
                        qemu_version=qemu or "7.2.22", diagnostic="", qemu=qemu),
            CaseRecord(key=f"{entry}#0", entry=entry, group="aarch64 4k", arch="aarch64",
                       cpu="max", vtcr="0x80023558", vttbr="0x1000048000000", valid=True,
                       kvm=True, batch=0, status=CaseStatus.PASS, probes=4, passed=4,
                       diverged=0, not_run=0, qemu=qemu)]


def one_line(lines: list[str]) -> str:
    return " ".join(line.strip() for line in lines)


def write(d: Path, records: list) -> Path:
    d.mkdir()
    (d / "results.jsonl").write_text("".join(record_line(r) + "\n" for r in records))
    return d


def test_two_qemus_entry_run_on_one_only_is_skipped_for_the_other(tmp_path):
    """A ran on both QEMUs, B on 7.2.22 only, C on neither: 3 of 6 pairs.
    B on 10.0.13 is skipped in JUnit although B has case records (on the
    other QEMU); matching by entry alone would lose it (2 skipped, not 3)."""
    end = EndRecord(reason=EndReason.BUDGET, batches_planned=6, batches_run=3, cases_planned=6,
                    cases_run=3, entries=3,
                    entries_not_run=(NotRun(B, "10.0.13", BUDGET), NotRun(C, "7.2.22", BUDGET),
                                     NotRun(C, "10.0.13", BUDGET)),
                    elapsed=10.0)
    d = write(tmp_path / "r", [header(("7.2.22", "10.0.13")), *ran(A, "7.2.22"),
                               *ran(A, "10.0.13"), *ran(B, "7.2.22"), end])
    run = load_run([d])
    head = one_line(coverage_headline(run, str(d)))
    assert head.startswith("COVERAGE: 3 of 6 matrix (entry, QEMU) pairs ran, 3 never ran "
                           f"(3 x {BUDGET}); 3 of 6 cases ran.")
    # 10 s for 3 of 6 pairs: about 20 s for a first case of all six.
    assert "needs about --budget 20 at this run's pace" in head
    assert f"s2diff run --resume --out {d} continues" in head
    # Second line of summary.txt, before the root causes and the table.
    assert render_text(run).split("\n")[1].startswith("COVERAGE: 3 of 6")
    write_junit(run, tmp_path / "junit.xml")
    root = ET.parse(tmp_path / "junit.xml").getroot()
    skipped = sorted(tc.get("name") for tc in root.iter("testcase")
                     if tc.find("skipped") is not None)
    assert skipped == [f"{B} [10.0.13]", f"{C} [10.0.13]", f"{C} [7.2.22]"]
    assert root.get("skipped") == "3"


def test_one_qemu_never_run_entries_counted_with_the_verdicts(tmp_path):
    """A one-QEMU run's case records name no QEMU while its end record
    names the version: B and C never ran, A ran."""
    end = EndRecord(reason=EndReason.BUDGET, batches_planned=3, batches_run=1, cases_planned=3,
                    cases_run=1, entries=3,
                    entries_not_run=(NotRun(B, "7.2.22", BUDGET), NotRun(C, "7.2.22", BUDGET)),
                    elapsed=4.0)
    d = write(tmp_path / "r", [header(("7.2.22",)), *ran(A, ""), end])
    run = load_run([d])
    assert one_line(coverage_headline(run)).startswith(
        f"COVERAGE: 1 of 3 matrix entries ran, 2 never ran (2 x {BUDGET}); 1 of 3 cases ran. "
        "A first case of every entry needs about --budget 20")   # 4 s x 3 / 1, rounded up to 10 s
    assert "entries: 0 new, 0 timeout/crash, 0 known, 2 not run, 1 pass" in render_summary(run)


def test_complete_run_has_no_coverage_line(tmp_path):
    end = EndRecord(reason=EndReason.COMPLETE, batches_planned=1, batches_run=1, cases_planned=1,
                    cases_run=1, entries=1, entries_not_run=(), elapsed=1.0)
    run = load_run([write(tmp_path / "r", [header(("7.2.22",)), *ran(A, ""), end])])
    assert coverage_headline(run) == []
    assert "COVERAGE" not in render_text(run)


def test_partial_merge_says_so_first(tmp_path):
    """A shard 1/2 alone (merge --allow-partial): the second line names the
    missing shard."""
    end = EndRecord(reason=EndReason.COMPLETE, batches_planned=1, batches_run=1, cases_planned=1,
                    cases_run=1, entries=2, entries_not_run=(), elapsed=1.0, shard=(1, 2))
    first = dataclasses.replace(header(("7.2.22",)), shard=(1, 2))
    run = load_run([write(tmp_path / "r", [first, *ran(A, ""), end])])
    assert render_text(run).split("\n")[1].startswith("COVERAGE: shards 1/2 (missing 2/2)")
