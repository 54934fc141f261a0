"""Reports from results.jsonl (harness/report/), on records written with the
record types of harness.records (as the runner writes them).

The run below has eight matrix entries in seven batches, split into two
shards the way ``--shard K/2`` splits them (batch number modulo 2), with
one of every case status, a new and a known probe divergence, a known
divergence of the same family on another CPU, a new memory divergence and
a harness error.  Expected counts are worked out by hand in RUN_COUNTS."""
from __future__ import annotations

import dataclasses
import html.parser
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.qemu.boot import BatchStatus
from harness.records import (
    BatchRecord,
    CaseRecord,
    CaseStatus,
    DivergenceRecord,
    Permitted,
    Record,
    RunHeader,
    record_line,
)
from harness.report.families import divergence_families
from harness.report.html import render_html
from harness.report.junit import write_junit
from harness.report.load import load_run
from harness.report.summary import (
    Verdict,
    count_text,
    entry_results,
    render_summary,
    summary_table,
)
from harness.report.write import write_reports
from harness.vocabulary import DivergenceKind, aim_family

SEED = 7
VTCR_4K_40 = "0x80023558"    # T0SZ=24, SL0=1, IRGN0/ORGN0=1, SH0=3, TG0=4K, PS=40 bits
VTCR_4K_48 = "0x80053550"    # T0SZ=16, SL0=1, PS=48 bits
VTCR_64K_42 = "0x80027556"   # T0SZ=22, SL0=1, TG0=64K (0b01), PS=40 bits
VTCR_A32_40 = "0x80003558"   # AArch32: T0SZ=-8 (S=1), SL0=1
VTCR_RES_SL0 = "0x800235d8"  # 4K 40-bit with SL0=0b11 (reserved)

E1 = "aarch64/cortex-a53/4k/ipa40/sl0-1/L1x2-kvm"
E7 = "aarch64/cortex-a53/4k/ipa48/sl0-1/L0x1-kvm"
E2 = "aarch64/cortex-a57/64k/ipa42/sl0-1/L2x1-kvm"
E3 = "arm/cortex-a15/4k/ipa40/sl0-1/L1x1-kvm"
E5 = "arm/cortex-a7/4k/ipa40/sl0-1/L1x1-kvm"
E6 = "arm/max/4k/ipa40/sl0-1/L1x1-kvm"
E4 = "aarch64/cortex-a53/4k/ipa40/sl0-3/reserved-SL0"
E8 = "aarch64/cortex-a53/4k/ipa40/sl0-3/reserved-SL0-b"
INVALID = "invalid: reserved SL0 <x&y>"   # markup in a name: must come out escaped


def run_record(shard: str | None, batches: int = 7) -> RunHeader:
    k, _, n = (shard or "").partition("/")
    return RunHeader(seed=SEED, cases_per_entry=2, fanout=None,
                     shard=(int(k), int(n)) if shard else None, entries=8, batches=batches,
                     cases=16, argv=("s2diff", "run"), started="2026-01-01T00:00:00Z",
                     qemu=(("aarch64", "7.2.11"), ("arm", "7.2.11")), baseline=None)


def batch(n: int, arch: str, cpu: str, status: str = "completed", images: int = 4,
          diagnostic: str = "") -> BatchRecord:
    return BatchRecord(batch=n, arch=arch, cpu=cpu, status=BatchStatus(status), images=images,
                       images_done=images, elapsed=0.5 * (n + 1), argv=("qemu-system-x",),
                       qemu_version="7.2.11", diagnostic=diagnostic)


def case(entry: str, index: int, n: int, *, group: str, arch: str, cpu: str, vtcr: str,
         status: str, probes: int, passed: int, diverged: int = 0, not_run: int = 0,
         valid: bool = True) -> CaseRecord:
    return CaseRecord(key=f"{entry}#{index}", entry=entry, group=group, arch=arch, cpu=cpu,
                      vtcr=vtcr, vttbr="0x1000048000000", valid=valid, kvm=True, batch=n,
                      status=CaseStatus(status), probes=probes, passed=passed, diverged=diverged,
                      not_run=not_run)


def divergence(entry: str, index: int, n: int, probe: int | None, *, group: str, cpu: str,
               aim: str, expected: list[str], observed: str, known: str | None,
               kind: str = "probe", case_file: str | None = None,
               raw: dict | None = None) -> DivergenceRecord:
    raw = raw or {"kind": "PAR", "par": "0x40201b00", "esr": "0x0", "far": "0x0", "hpfar": "0x0"}
    return DivergenceRecord(
        kind=DivergenceKind(kind), key=f"{entry}#{index}", entry=entry, group=group, batch=n,
        probe=probe, ipa="0x40201000", at="S12E1W", aim=aim, arch="aarch64", cpu=cpu,
        granule="4k", config="aarch64 4k T0SZ=24 (40-bit IPA) SL0=1", vtcr=VTCR_4K_40,
        vttbr="0x1000048000000", expected=tuple(expected),
        permitted=(Permitted(f"stage-2 {expected[0]} fault", ("AArch64.S2CheckPermission",),
                             ("L 1 [0x48000008] = 0x0000000048001003 table",
                              "L 2 [0x48001010] = 0x00000000402000c1 block: S2AP=01")),),
        observed=observed, observed_text="PA 0x40201000", raw=tuple(raw.items()),
        qemu_version="7.2.11", argv=("qemu-system-aarch64",), known=known, case_file=case_file)


def batches_records() -> dict[int, list[Record]]:
    """The records of each batch, in the order the runner writes them."""
    a64 = dict(arch="aarch64")
    a32 = dict(arch="arm", vtcr=VTCR_A32_40, group="arm lpae")
    return {
        0: [batch(0, "aarch64", "cortex-a53"),
            case(E1, 0, 0, group="aarch64 4k", cpu="cortex-a53", vtcr=VTCR_4K_40, status="pass",
                 probes=10, passed=10, **a64),
            case(E1, 1, 0, group="aarch64 4k", cpu="cortex-a53", vtcr=VTCR_4K_40,
                 status="diverge", probes=10, passed=8, diverged=2, **a64),
            divergence(E1, 1, 0, 3, group="aarch64 4k", cpu="cortex-a53",
                       aim="L2 block S2AP=01 write", expected=["permission L2"], observed="ok",
                       known=None, case_file="cases/E1_1.json"),
            divergence(E1, 1, 0, 5, group="aarch64 4k", cpu="cortex-a53",
                       aim="L1 block OA beyond 40 bits", expected=["address-size L1"],
                       observed="ok", known="qemu-oa"),
            case(E7, 0, 0, group="aarch64 4k", cpu="cortex-a53", vtcr=VTCR_4K_48, status="pass",
                 probes=5, passed=5, **a64),
            case(E7, 1, 0, group="aarch64 4k", cpu="cortex-a53", vtcr=VTCR_4K_48, status="pass",
                 probes=5, passed=5, **a64)],
        1: [batch(1, "aarch64", "cortex-a57", images=2),
            case(E2, 0, 1, group="aarch64 64k", cpu="cortex-a57", vtcr=VTCR_64K_42,
                 status="pass", probes=6, passed=6, **a64),
            case(E2, 1, 1, group="aarch64 64k", cpu="cortex-a57", vtcr=VTCR_64K_42,
                 status="diverge", probes=6, passed=5, diverged=1, **a64),
            divergence(E2, 1, 1, 2, group="aarch64 64k", cpu="cortex-a57",
                       aim="L1 block OA beyond 42 bits", expected=["address-size L1"],
                       observed="ok", known="qemu-oa")],
        2: [batch(2, "arm", "cortex-a15", "timeout", images=2,
                  diagnostic="no end marker within 30 s; QEMU killed\nconsole: ..."),
            case(E3, 0, 2, cpu="cortex-a15", status="pass", probes=4, passed=4, **a32),
            case(E3, 1, 2, cpu="cortex-a15", status="timeout", probes=4, passed=2, not_run=2,
                 **a32)],
        3: [batch(3, "arm", "cortex-a7", "guest-error", images=2,
                  diagnostic="FATAL: unexpected exception in Hyp mode"),
            case(E5, 0, 3, cpu="cortex-a7", status="pass", probes=3, passed=3, **a32),
            case(E5, 1, 3, cpu="cortex-a7", status="guest-error", probes=3, passed=0, not_run=3,
                 **a32)],
        4: [batch(4, "aarch64", "cortex-a53", images=4,
                  diagnostic="images 3-4 not reached: results area full"),
            case(E4, 0, 4, group=INVALID, cpu="cortex-a53", vtcr=VTCR_RES_SL0, status="diverge",
                 probes=2, passed=2, diverged=1, valid=False, **a64),
            divergence(E4, 0, 4, None, group=INVALID, cpu="cortex-a53", kind="memory", aim="",
                       expected=["descriptor at 0x48001010 unchanged (0x402000c1) or updated "
                                 "as a permitted outcome allows"],
                       observed="descriptor written 0x402000c1 -> 0x402004c1", known=None,
                       raw={"pa": "0x48001010", "before": "0x402000c1", "after": "0x402004c1"}),
            case(E4, 1, 4, group=INVALID, cpu="cortex-a53", vtcr=VTCR_RES_SL0, status="pass",
                 probes=2, passed=2, valid=False, **a64),
            case(E8, 0, 4, group=INVALID, cpu="cortex-a53", vtcr=VTCR_RES_SL0, status="not-run",
                 probes=3, passed=0, not_run=3, valid=False, **a64),
            case(E8, 1, 4, group=INVALID, cpu="cortex-a53", vtcr=VTCR_RES_SL0, status="not-run",
                 probes=3, passed=0, not_run=3, valid=False, **a64)],
        5: [batch(5, "aarch64", "neoverse-n1", "harness-error", images=3,
                  diagnostic="Traceback (most recent call last):\n  File \"x.py\"\n"
                             "KeyError: 'granule'")],
        6: [batch(6, "arm", "max", "crashed", images=2, diagnostic="QEMU killed by SIGSEGV"),
            case(E6, 0, 6, cpu="max", status="crash", probes=5, passed=1, not_run=4, **a32),
            case(E6, 1, 6, cpu="max", status="crash", probes=5, passed=0, not_run=5, **a32)],
    }


def write_results(path: Path, records: list[Record | dict], tail: str = "") -> Path:
    """A results file of these records: typed ones as the writer writes
    them, dicts (records that break the format) as they are."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "results.jsonl", "w", encoding="utf-8") as f:
        for rec in records:
            f.write((json.dumps(rec, separators=(",", ":")) if isinstance(rec, dict)
                     else record_line(rec)) + "\n")
        f.write(tail)
    return path


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    """'full': the unsharded run; 's1', 's2': shards 1/2 and 2/2; batches
    finish out of order (as with several workers)."""
    recs = batches_records()
    order = [1, 0, 3, 2, 5, 4, 6]
    full = write_results(tmp_path / "full", [run_record(None)] + [r for n in order for r in recs[n]])
    s1 = write_results(tmp_path / "s1", [run_record("1/2", 4)] + [r for n in (4, 0, 2, 6) for r in recs[n]])
    s2 = write_results(tmp_path / "s2", [run_record("2/2", 3)] + [r for n in (5, 3, 1) for r in recs[n]])
    for d in (full, s1):
        (d / "cases").mkdir()
        (d / "cases" / "E1_1.json").write_text("{}")
    return {"full": full, "s1": s1, "s2": s2}


# Per group: entries, cases, probes, passed, known, new, skipped, timeouts,
# crashes, guest errors, not run.  known and new count diverging probes:
# E4's descriptor write is not a probe (writes_new below); not run counts
# probes (E3#1 2, E5#1 3, E6 4 + 5; E8 3 + 3).
RUN_COUNTS = {
    "aarch64 4k": (2, 4, 30, 28, 1, 1, 0, 0, 0, 0, 0),
    "aarch64 64k": (1, 2, 12, 11, 1, 0, 0, 0, 0, 0, 0),
    "arm lpae": (3, 6, 24, 10, 0, 0, 0, 1, 2, 1, 14),
    INVALID: (2, 4, 10, 4, 0, 0, 2, 0, 0, 0, 6),
    "total": (8, 16, 76, 53, 2, 1, 2, 1, 2, 1, 20),
}
FIELDS = ("entries", "cases", "probes", "passed", "known", "new", "skipped", "timeouts",
          "crashes", "guest_errors", "not_run")


def counts(row) -> tuple[int, ...]:
    return tuple(getattr(row, f) for f in FIELDS)


class TestLoadRun:
    def test_records_are_validated_and_sorted(self, dirs):
        """Every record is read; cases come out in (batch, key) order."""
        run = load_run([dirs["full"]])
        assert (len(run.batches), len(run.cases), len(run.divergences)) == (7, 16, 4)
        assert [b.batch for b in run.batches] == [0, 1, 2, 3, 4, 5, 6]
        assert [c.key for c in run.cases[:4]] == [f"{E1}#0", f"{E1}#1", f"{E7}#0", f"{E7}#1"]
        assert [(d.batch, d.probe) for d in run.divergences] == [(0, 3), (0, 5), (1, 2), (4, None)]
        assert run.cases[0].status is CaseStatus.PASS
        assert (run.cases[0].granule, run.cases[0].ia_bits) == ("4k", 40)
        e2 = next(c for c in run.cases if c.entry == E2)
        assert (e2.granule, e2.ia_bits) == ("64k", 42)
        e3 = next(c for c in run.cases if c.entry == E3)
        assert (e3.granule, e3.ia_bits) == ("4k", 40)
        assert run.warnings == ()

    def test_run_info(self, dirs):
        """Seed, matrix and QEMU versions come from the run and batch records."""
        info = load_run([dirs["full"]]).info
        assert (info.seed, info.cases_per_entry, info.entries) == (SEED, 2, 8)
        assert (info.batches_planned, info.batches_present) == (7, 7)
        assert info.complete and info.coverage == "all batches"
        assert info.qemu == (("aarch64", "7.2.11"), ("arm", "7.2.11"))

    def test_merged_shards_equal_the_unsharded_run(self, dirs):
        """Both shards together are exactly the unsharded run."""
        full = load_run([dirs["full"]])
        assert load_run([dirs["s1"], dirs["s2"]]) == full
        assert load_run([dirs["s2"], dirs["s1"]]) == full

    def test_merging_a_shard_twice_changes_nothing(self, dirs):
        """Records present in several inputs are kept once."""
        once = load_run([dirs["s1"], dirs["s2"]])
        assert load_run([dirs["s1"], dirs["s2"], dirs["s1"]]) == once
        assert load_run([dirs["full"], dirs["s2"], dirs["s1"]]) == once

    def test_a_run_stopped_early(self, tmp_path):
        """Fewer batch records than planned: the coverage says so."""
        recs = batches_records()
        d = write_results(tmp_path / "short", [run_record(None)] + [r for n in range(5) for r in recs[n]])
        assert load_run([d]).info.coverage == "5 of 7 batches (run stopped early)"
        d = write_results(tmp_path / "short1", [run_record("1/2", 4)] + recs[0])
        assert load_run([d]).info.coverage == "shards 1/2 (missing 2/2), 1 of 4 batches"

    def test_one_shard_is_incomplete(self, dirs):
        """A lone shard says which shards are missing and holds only its batches."""
        run = load_run([dirs["s2"]])
        assert not run.info.complete
        assert run.info.coverage == "shards 2/2 (missing 1/2)"
        assert [b.batch for b in run.batches] == [1, 3, 5]

    def test_reports_of_merged_shards_are_byte_identical(self, dirs, tmp_path):
        """summary.txt and junit.xml do not depend on sharding; report.html
        neither when written next to the merged records (as `s2diff merge`
        leaves them, case files copied)."""
        merged = write_results(tmp_path / "merged",
                               [json.loads(line) for d in ("s1", "s2")
                                for line in (dirs[d] / "results.jsonl").read_text().splitlines()])
        (merged / "cases").mkdir()
        a = write_reports(load_run([dirs["full"]]), dirs["full"] / "report")
        b = write_reports(load_run([merged]), merged / "report")
        c = write_reports(load_run([dirs["s2"], dirs["s1"], dirs["s2"]]), tmp_path / "out")
        for name in ("summary", "junit", "html"):
            assert a[name].read_bytes() == b[name].read_bytes(), name
        # Commands and links name case files relative to the report's
        # directory (docs/reports.md): the one difference, with the
        # report written elsewhere.
        def unplaced(p: Path) -> str:
            return re.sub(r"(\.\./)+(s1/|full/)?", "", p.read_text())
        for name in ("summary", "junit"):
            assert unplaced(a[name]) == unplaced(c[name]), name

    def test_torn_last_line_is_skipped(self, dirs):
        """A run killed mid-write loses only the torn line."""
        path = dirs["s2"] / "results.jsonl"
        path.write_text(path.read_text() + '{"type":"case","key":"x#0","ent')
        run = load_run([dirs["s1"], dirs["s2"]])
        assert run == load_run([dirs["full"]])
        assert run.warnings == (f"{path}: last line torn (run killed mid-write?), skipped",)

    def test_invalid_records_are_skipped_and_counted(self, dirs):
        """Unknown types and records missing a field are skipped with a warning."""
        recs = batches_records()
        bad_case = recs[1][1].to_json()
        del bad_case["group"]
        bad_div = dict(recs[1][3].to_json(), probe="two", key="other#0")
        d = write_results(dirs["s2"].parent / "bad",
                          [run_record(None), {"type": "coverage", "x": 1}, bad_case, bad_div,
                           {"type": "case", "key": 3}])
        run = load_run([d])
        assert (run.batches, run.cases, run.divergences) == ((), (), ())
        assert run.warnings == (
            f"{d / 'results.jsonl'}: skipped 4 invalid record(s): "
            "1 x case record: 'arch' missing; "
            "1 x case record: 'group' missing or not a string; "
            "1 x divergence record: 'probe' is not an integer or null; "
            "1 x unknown type 'coverage'",)

    def test_not_json_lines_is_a_usage_error(self, tmp_path):
        """A file with no JSON record in it is refused in one line."""
        d = tmp_path / "csv"
        d.mkdir()
        (d / "results.jsonl").write_text("batch,status\n0,completed\n")
        with pytest.raises(UsageError, match=r"not a results file \(no JSON Lines record in 2 lines\)"):
            load_run([d])
        (d / "results.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
        with pytest.raises(UsageError, match=r"not a results file \(no JSON Lines record in 1 lines\)"):
            load_run([d])

    def test_missing_directory_and_results(self, tmp_path):
        with pytest.raises(UsageError, match="no such directory"):
            load_run([tmp_path / "nope"])
        with pytest.raises(UsageError, match="no results.jsonl here"):
            load_run([tmp_path])
        with pytest.raises(UsageError, match="no run directory given"):
            load_run([])

    def test_different_runs_do_not_merge(self, dirs, tmp_path):
        other = write_results(tmp_path / "other", [dataclasses.replace(run_record("1/2"), seed=8)])
        with pytest.raises(UsageError, match="seed differs"):
            load_run([dirs["s2"], other])

    def test_newer_results_version_is_refused(self, tmp_path):
        d = write_results(tmp_path / "v2", [dict(run_record(None).to_json(), version=2)])
        with pytest.raises(UsageError, match="results version 2, this s2diff reads version 1"):
            load_run([d])

    def test_an_empty_results_file_is_refused(self, tmp_path):
        """A run killed before its first write left nothing to report on:
        one line, like any file with nothing readable (issue 6)."""
        d = write_results(tmp_path / "empty", [])
        with pytest.raises(UsageError, match=r"empty, not the results of a run"):
            load_run([d])


class TestSummary:
    def test_counts_per_group_and_totals(self, dirs):
        """Every column, per group and in total, as worked out by hand."""
        rows = summary_table(load_run([dirs["full"]]))
        assert {r.group: counts(r) for r in rows} == RUN_COUNTS
        assert [r.group for r in rows] == ["aarch64 4k", "aarch64 64k", "arm lpae", INVALID, "total"]
        assert [r.total for r in rows] == [False] * 4 + [True]

    def test_entry_verdicts(self, dirs):
        """Most severe first: new, then error, known, not run, pass."""
        verdicts = {e.entry: e.verdict for e in entry_results(load_run([dirs["full"]]))}
        assert verdicts == {E1: Verdict.NEW, E7: Verdict.PASS, E2: Verdict.KNOWN,
                            E3: Verdict.ERROR, E5: Verdict.ERROR, E6: Verdict.ERROR,
                            E4: Verdict.NEW, E8: Verdict.NOT_RUN}
        total = summary_table(load_run([dirs["full"]]))[-1]
        assert total.verdicts == ((Verdict.NEW, 2), (Verdict.ERROR, 3), (Verdict.KNOWN, 1),
                                  (Verdict.NOT_RUN, 1), (Verdict.PASS, 1))

    def test_skip_reason_is_the_batch_diagnostic(self, dirs):
        rows = {r.group: r for r in summary_table(load_run([dirs["full"]]))}
        assert rows[INVALID].skip_reasons == (("images 3-4 not reached: results area full", 2),)
        e8 = next(e for e in entry_results(load_run([dirs["full"]])) if e.entry == E8)
        assert e8.reason == ("2 of 2 case(s) not run (batch 4 completed: "
                             "images 3-4 not reached: results area full)")

    def test_probes_add_up(self, dirs):
        """passed + known + new + not run = probes in every row, and the
        descriptor write is counted apart (one unit per column)."""
        rows = summary_table(load_run([dirs["full"]]))
        for r in rows:
            assert r.passed + r.known + r.new + r.not_run == r.probes, r.group
        assert [(r.group, r.writes_new, r.writes_known) for r in rows if r.writes_new] == [
            (INVALID, 1, 0), ("total", 1, 0)]

    def test_rendered_text(self, dirs):
        """Aligned columns with their units named, within 80 columns; skip
        reasons and harness errors listed."""
        text = render_summary(load_run([dirs["full"]]))
        lines = text.splitlines()
        assert lines[:5] == ["s2diff summary",
                             "seed 7, 2 cases per entry, matrix of 8 entries",
                             "coverage: all batches",
                             "qemu: 7.2.11 (aarch64, arm)",
                             "batches: 7 (3 completed, 1 crashed, 1 guest-error, "
                             "1 harness-error, 1 timeout)"]
        assert lines[6].split() == ["unit:", "matrix", "cases", "probes", "probes", "probes",
                                    "probes", "probes", "cases"]
        assert lines[7].split() == ["group", "entries", "cases", "probes", "passed", "known",
                                    "new", "not", "run", "failed"]
        total = next(ln for ln in lines if ln.startswith("total"))
        assert len(lines[7]) == len(total)
        assert total.split() == ["total", "8", "16", "76", "53", "2", "1", "20", "4"]
        assert max(len(ln) for ln in lines) <= 80
        assert "descriptor writes against the reference (not probes): 1 new, 0 known" in lines
        assert "entries: 2 new, 3 timeout/crash, 1 known, 1 not run, 1 pass" in lines
        assert f"  {INVALID}: 2 case(s): images 3-4 not reached: results area" in lines
        assert "    full" in lines
        assert "  batch 5 (aarch64 neoverse-n1, 3 images): KeyError: 'granule'" in lines

    def test_narrow_width_shortens_group_names(self, dirs):
        """80 columns: the numbers keep their width, the group name gives
        way in its middle (names sharing a long start stay apart)."""
        text = render_summary(load_run([dirs["full"]]))
        assert "\ninvalid: r~ed SL0 <x&y> " in text
        assert max(len(ln) for ln in text.splitlines()) <= 80

    def test_counts_are_abbreviated_to_fit(self):
        """Up to 6 digits exact, beyond that one decimal and a unit."""
        assert [count_text(n) for n in (999_999, 1_000_000, 2_108_381, 113_812_345,
                                        1_234_567_890, 45_210)] == [
            "999999", "1.0M", "2.1M", "113.8M", "1.2G", "45210"]


class TestFamilies:
    def test_aim_family_drops_level_and_values(self):
        assert aim_family("L2 block S2AP=01 write") == "block S2AP=* write"
        assert aim_family("L1 block OA beyond 42 bits") == "block OA beyond N bits"
        assert aim_family("L-1 table in no memory") == "table in no memory"
        assert aim_family("IPA 0") == "IPA 0"

    def test_families(self, dirs):
        """New families first; one family spans two CPU models."""
        fams = divergence_families(load_run([dirs["full"]]))
        assert [(f.kind, f.expected, f.observed, f.aim, f.cpus, f.count, f.new, f.known_ids,
                 f.examples) for f in fams] == [
            ("memory", ("descriptor unchanged or a permitted update",),
             "descriptor written: set AF", "", ("cortex-a53",), 1, 1, (), (f"{E4}#0",)),
            ("probe", ("permission L2",), "ok", "block S2AP=* write", ("cortex-a53",), 1, 1, (),
             (f"{E1}#1",)),
            ("probe", ("address-size L1",), "ok", "block OA beyond N bits",
             ("cortex-a53", "cortex-a57"), 2, 0, ("qemu-oa",), (f"{E1}#1", f"{E2}#1")),
        ]


class TestJUnit:
    def test_parses_and_counts_match_the_summary(self, dirs, tmp_path):
        """One suite per group (plus harness errors), counts equal to the
        testcases' elements and to the summary's entry verdicts."""
        run = load_run([dirs["full"]])
        root = ET.parse(write_junit(run, tmp_path / "junit.xml")).getroot()
        assert root.tag == "testsuites"
        suites = {s.get("name"): s for s in root.findall("testsuite")}
        assert list(suites) == ["root causes", "aarch64 4k", "aarch64 64k", "arm lpae", INVALID,
                                "harness errors"]
        causes = suites["root causes"]
        # Two new root causes (E1's permission probe, E4's descriptor
        # write), one known (qemu-oa on two CPU models).
        assert [causes.get(k) for k in ("tests", "failures", "errors")] == ["3", "2", "0"]
        assert [tc.find("failure") is not None for tc in causes.findall("testcase")] == [
            True, True, False]
        for row in summary_table(run)[:-1]:
            s = suites[row.group]
            assert int(s.get("tests")) == row.entries == len(s.findall("testcase"))
            assert int(s.get("failures")) == row.verdict_count(Verdict.NEW) == len(s.findall("testcase/failure"))
            assert int(s.get("errors")) == row.verdict_count(Verdict.ERROR) == len(s.findall("testcase/error"))
            assert int(s.get("skipped")) == row.verdict_count(Verdict.NOT_RUN) == len(s.findall("testcase/skipped"))
            assert s.get("time") == "0.000"
        assert [root.get(k) for k in ("tests", "failures", "errors", "skipped")] == [
            "12", "4", "4", "1"]

    def test_testcase_contents(self, dirs, tmp_path):
        root = ET.parse(write_junit(load_run([dirs["full"]]), tmp_path / "j.xml")).getroot()
        cases = {(tc.get("classname"), tc.get("name")): tc for tc in root.iter("testcase")}
        failure = cases[("aarch64 4k", E1)].find("failure")
        assert failure.get("message") == (f"{E1}#1 probe 3 (L2 block S2AP=01 write): "
                                          "expected permission L2, observed ok")
        assert failure.text.splitlines()[-1] == "case file: cases/E1_1.json"
        known = cases[("aarch64 4k", E1)].find("system-out").text
        assert known.endswith("[known: qemu-oa]")
        assert list(cases[("aarch64 4k", E7)]) == []
        error = cases[("arm lpae", E3)].find("error")
        assert (error.get("type"), error.get("message")) == (
            "timeout", f"{E3}#1: timeout (batch 2 timeout: no end marker within 30 s; QEMU killed)")
        assert cases[(INVALID, E8)].find("skipped") is not None
        harness = cases[("harness errors", "batch 5 (aarch64 neoverse-n1)")].find("error")
        assert harness.get("message") == "harness error: KeyError: 'granule'"

    def test_timings_on_request(self, dirs, tmp_path):
        """With timings, a case costs its batch's elapsed time over its images."""
        root = ET.parse(write_junit(load_run([dirs["full"]]), tmp_path / "j.xml",
                                    timings=True)).getroot()
        e7 = next(tc for tc in root.iter("testcase") if tc.get("name") == E7)
        assert e7.get("time") == "0.250"   # batch 0: 0.5 s over 4 images, 2 cases


class _TagBalance(html.parser.HTMLParser):
    VOID = {"meta", "br", "hr", "img", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href"]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


class TestHtml:
    def test_well_formed_and_complete(self, dirs, tmp_path):
        """Tags balance, every divergence key is shown, new before known,
        names are escaped, the case file link resolves."""
        run = load_run([dirs["s1"], dirs["s2"]])
        path = write_reports(run, tmp_path / "r")["html"]
        text = path.read_text()
        parser = _TagBalance()
        parser.feed(text)
        parser.close()
        assert parser.errors == [] and parser.stack == []
        for d in run.divergences:
            assert html_escape(d.key) in text
        assert text.index("&mdash; new") < text.index("&mdash; known: qemu-oa")
        assert "&lt;x&amp;y&gt;" in text and "<x&y>" not in text
        links = {h for h in parser.hrefs if not h.startswith("#")}
        assert links == {"../s1/cases/E1_1.json"}
        assert (path.parent / links.pop()).resolve() == (dirs["s1"] / "cases" / "E1_1.json").resolve()
        ids = set(re.findall(r'id="([^"]+)"', text))
        assert {h[1:] for h in parser.hrefs if h.startswith("#")} <= ids
        assert "<script" not in text and "http" not in text

    def test_grid_and_families(self, dirs):
        """Valid entries in grids per arch and granule, the invalid group as
        a family list; every mark is a link to its entry's row."""
        text = render_html(load_run([dirs["full"]]))
        assert text.count('<table class="grid">') == 3
        assert text.index("aarch64 4k: CPU model &times; IPA bits") < text.index(
            "aarch64 64k: CPU model &times; IPA bits") < text.index(
            "arm 4k: CPU model &times; IPA bits")
        assert "Configuration families (groups with invalid configurations)" in text
        assert text.count('<a class="s new"') == 2
        assert text.count('<a class="s error"') == 3
        for target in re.findall(r'<a class="s [a-z-]+" href="#([^"]+)"', text):
            assert f'id="{target}"' in text

    def test_banner_and_root_causes(self, dirs):
        """The verdict first; root causes before the counts, the known one
        collapsed."""
        text = render_html(load_run([dirs["full"]]))
        assert text.index('<header class="banner new" id="verdict"><h1>NEW: 2 root causes') \
            < text.index('id="root-causes"') < text.index("<h2>Counts</h2>")
        assert '<details class="known-causes"><summary>1 known root cause (baseline: qemu-oa)' \
            in text

    def test_cap(self, dirs):
        text = render_html(load_run([dirs["full"]]), max_divergences=1)
        assert text.count('<section class="div') == 1
        assert "3 more divergence record(s) not shown" in text


def html_escape(s: str) -> str:
    import html
    return html.escape(s, quote=True)
