"""End to end: `s2diff run` and the commands on its output (report, merge,
repro) against the real QEMU (issue 4: exit codes, an injected divergence,
baseline matching, shards, JUnit and HTML reports, --vtcr).

Every run is small (one or a few CPU models, one or two cases per matrix
entry: one QEMU boot per CPU model) so that the file takes seconds.  The
CLI is called in-process through harness.cli.main, except where the exit
status of the real process is the point.

The tests must hold on any QEMU (Debian 12's 7.2, Debian 13's 10.0, ...):
the divergences they need are planted, by a wrapper that runs the cases of
cortex-a57 (PAMax 44) on -cpu cortex-a53 (PAMax 40), and made known by a
baseline of the tests' own (PLANTED_BASELINE); where a test leans on a
QEMU bug of baseline.toml, it asks the entry's version range whether the
QEMU at hand has it.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import re
import shlex
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from harness.baseline import load_baseline
from harness.cli import main
from harness.qemu.launcher import find_qemu, qemu_version
from harness.report.html import MAX_HTML_DIVERGENCES
from harness.report.load import load_run
from harness.report.rootcause import root_causes
from harness.workers import case_file_name
from reference.arch import Arch

ROOT = Path(__file__).resolve().parent.parent

# Skipped with the reason when QEMU is missing, and a session error in CI
# (tests/conftest.py).
pytestmark = pytest.mark.qemu

# The small selection most tests use: 2 matrix entries of cortex-a57 (a
# 42-bit IPA), 2 cases each, run as cortex-a53 (the wrapper below).
A57 = ("--cpu", "cortex-a57", "--ipa", "42", "--granule", "4k", "--cases", "2")


@dataclasses.dataclass(frozen=True)
class Cli:
    code: int
    out: str
    err: str


# These tests are about the run's plumbing, not its volume: no fan-out keeps
# each QEMU boot to one batch, the divergences few enough to count one by
# one, and the file to seconds.  The bulk path is tested in test_fast.py and
# in QEMU by test_integration.py, and measured by `s2diff bench`.
TEST_FANOUT = ("--fanout", "0")


def s2diff(*args: object) -> Cli:
    """Run the s2diff command line in-process; its exit status and output."""
    if args and args[0] == "run" and "--fanout" not in args:
        args = (*args, *TEST_FANOUT)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return Cli(code, out.getvalue(), err.getvalue())


def records(out_dir: Path, kind: str) -> list[dict]:
    lines = (out_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def case_rows(out_dir: Path) -> set[tuple]:
    """(key, status, probes, passed, diverged, not_run) of every case record."""
    return {(c["key"], c["status"], c["probes"], c["passed"], c["diverged"], c["not_run"])
            for c in records(out_dir, "case")}


def divergence_rows(out_dir: Path) -> set[tuple]:
    """(key, probe, kind, observed, known) of every divergence record."""
    return {(d["key"], d["probe"], d["kind"], d["observed"], d["known"])
            for d in records(out_dir, "divergence")}


def only_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


# Columns of a summary.txt group line (harness/report/summary.py _HEADINGS), right-aligned
# numbers (these runs are small: no count is abbreviated).
SUMMARY_COLUMNS = ("entries", "cases", "probes", "passed", "known", "new", "not_run", "failed")


def summary_groups(summary: str) -> dict[str, dict[str, int]]:
    """Group name -> counts, from the table of summary.txt ('total' included)."""
    lines = summary.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("group "))
    table = {}
    for line in lines[head + 2:]:
        if not line:
            break
        if set(line) == {"-"}:
            continue
        words = line.split()
        if not words[-1].isdigit():
            break           # the table's foot note: passed + known + new + not run = probes
        group = " ".join(words[:-len(SUMMARY_COLUMNS)])
        table[group] = dict(zip(SUMMARY_COLUMNS, map(int, words[-len(SUMMARY_COLUMNS):])))
    return table


def summary_verdicts(summary: str) -> dict[str, int]:
    """'entries: 1 new, 0 timeout/crash, 5 known, 0 not run, 23 pass' -> counts."""
    line = next(l for l in summary.splitlines() if l.startswith("entries: "))
    return {label: int(n) for n, label in re.findall(r"(\d+) ([a-z/ ]+?)(?:,|$)", line[9:])}


# ---------------------------------------------------------------------------
# Shared runs of the small selection (each one QEMU boot)
# ---------------------------------------------------------------------------

# A baseline that knows the planted divergences: what the a53 does with the
# a57's walks (IPAs of 40 bits and more stop at stage 1, beyond PARange; a
# 42-bit IPA is below the a53's minimum T0SZ: Translation fault, level 0;
# QEMU 10 also checks the a57 images' output addresses above 40 bits
# against the a53's PARange: Address size faults at the leaf).
PLANTED_LABELS = {"stage-1 address-size L0", "translation L0"}
PLANTED_OTHER = re.compile(r"address-size L[1-3]")
PLANTED_ID = "planted-a57-run-as-a53"
# The a53's ID registers answering for the a57's are a cpu-model finding
# (harness.qemu.models): MIDR, ID_AA64MMFR0 and the PARange they give.
PLANTED_MODEL_ID = "planted-a53-model"
PLANTED_BASELINE = f"""version = 1

[[divergence]]
id = "{PLANTED_ID}"
title = "cortex-a57 cases run on -cpu cortex-a53 (tests/test_run.py's wrapper)"
verdict = "reference-limitation"
kind = "probe"
arch = "aarch64"
cpus = ["cortex-a57"]
observed = "stage-1 address-size L0|translation L0|address-size L[1-3]"
evidence = "planted by the tests: the emulated CPU is not the one modelled"
case = "none.json"

[[divergence]]
id = "{PLANTED_MODEL_ID}"
title = "-cpu cortex-a53 answers for cortex-a57: its ID registers are the a53's"
verdict = "reference-limitation"
kind = "cpu-model"
arch = "aarch64"
cpus = ["cortex-a57"]
evidence = "planted by the tests: the emulated CPU is not the one modelled"
case = "none.json"
"""


@pytest.fixture(scope="module")
def planted_baseline(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("planted-baseline") / "baseline.toml"
    path.write_text(PLANTED_BASELINE)
    return path


@pytest.fixture(scope="module")
def a57_known(tmp_path_factory, a53_wrapper, planted_baseline) -> tuple[Path, Cli]:
    """The planted divergences with a baseline that knows them."""
    out = tmp_path_factory.mktemp("a57-known")
    return out, s2diff("run", *A57, "--jobs", "1", "--qemu-aarch64", a53_wrapper,
                       "--baseline", planted_baseline, "--out", out)


@pytest.fixture(scope="module")
def a57_new(tmp_path_factory, a53_wrapper) -> tuple[Path, Cli]:
    """The same run with --no-baseline: every divergence is new."""
    out = tmp_path_factory.mktemp("a57-new")
    return out, s2diff("run", *A57, "--jobs", "1", "--qemu-aarch64", a53_wrapper,
                       "--no-baseline", "--out", out)


# ---------------------------------------------------------------------------
# 1. Exit codes
# ---------------------------------------------------------------------------

class TestExitCodes:

    def test_0_when_every_divergence_is_known(self, a57_known):
        """Divergences that all match the baseline exit 0 and are reported
        as KNOWN, per baseline entry, without case files."""
        out, run = a57_known
        assert run.code == 0, run.err
        divergences = records(out, "divergence")
        ids = {d["known"] for d in divergences}
        assert divergences and None not in ids
        assert ids == {PLANTED_ID, PLANTED_MODEL_ID}
        # The known root causes, one line each with their baseline entry
        # and probes (the terminal shows the first few, "... N more"): per
        # baseline entry, the causes' probes add up to its records' counts.
        said = collections.Counter()
        for entry_id, n in re.findall(r"^  ([\w.-]+): ([\d,]+) known probes", run.out, re.M):
            said[entry_id] += int(n.replace(",", ""))
        causes = root_causes(load_run([out]))
        assert len(said) and sum(said.values()) <= sum(c.known for c in causes)
        for entry_id in ids:
            count = sum(d.get("count", 1) for d in divergences
                        if d["known"] == entry_id and d["kind"] != "memory")
            assert sum(c.known for c in causes if entry_id in c.known_ids) == count, entry_id
        assert run.out.splitlines()[1].startswith("known only: ")
        assert "\nNEW: " not in run.out
        assert not (out / "cases").exists()

    def test_1_with_no_baseline(self, a57_new):
        """The same selection with --no-baseline: the planted divergences
        are new, so the run exits 1."""
        out, run = a57_new
        assert run.code == 1, run.err
        new = [d for d in records(out, "divergence") if d["known"] is None]
        assert len(new) == len(records(out, "divergence"))
        labels = {d["observed"] for d in new if d["kind"] != "cpu-model"}
        assert PLANTED_LABELS <= labels
        assert all(PLANTED_OTHER.fullmatch(label) for label in labels - PLANTED_LABELS), labels
        assert run.out.splitlines()[1].startswith("NEW: ")
        # Divergences of one case and one family are one record with a count.
        assert summary_groups(run.out)["total"]["new"] == sum(d.get("count", 1) for d in new
                                                              if d["kind"] == "probe")
        assert len({(d["key"], d["kind"], tuple(d["expected"]), d["observed"], d["aim"])
                    for d in new}) <= len(new)

    @pytest.mark.parametrize("args,option", [
        (("--shard", "0/3"), "--shard"),
        (("--shard", "4/3"), "--shard"),
        (("--shard", "1-3"), "--shard"),
        (("--shard", "a/b"), "--shard"),
        (("--cpu", "cortex-a99"), "--cpu"),
        (("--cpu", "cortex-a53,cortex-a57", "--vtcr", "0x80023558"), "--vtcr"),
        (("--cases", "0"), "--cases"),
        (("--baseline", "/nonexistent/baseline.toml"), "/nonexistent/baseline.toml"),
    ], ids=["shard-0", "shard-beyond-N", "shard-syntax", "shard-not-numbers", "unknown-cpu",
            "vtcr-on-two-cpus", "zero-cases", "missing-baseline"])
    def test_2_for_bad_usage(self, tmp_path, args, option):
        """Bad usage: exit 2, one line naming the culprit, no traceback, and
        nothing started (the output directory is not even created).  A
        later option overrides the --cpu and --cases given first."""
        out = tmp_path / "out"
        argv = ["run", "--cpu", "cortex-a57", "--cases", "1", *args, "--out", out]
        run = s2diff(*argv)
        assert run.code == 2
        line = only_line(run.err)
        assert line.startswith("s2diff: error: ") and option in line, line
        assert not out.exists()

    def test_2_for_unwritable_out(self, tmp_path):
        """--out below a regular file cannot be created (holds for root too)."""
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        run = s2diff("run", *A57, "--out", blocker / "out")
        assert run.code == 2
        line = only_line(run.err)
        assert line.startswith("s2diff: error: --out: cannot write to "), line

    def test_3_when_qemu_is_missing(self, tmp_path):
        """The real process (not main()'s return value) exits 3 with one
        line naming the missing binary."""
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", "run", *A57, "--qemu-aarch64", "/nonexistent",
             "--out", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 3, proc.stderr
        line = only_line(proc.stderr)
        assert line.startswith("s2diff: error: ") and "'/nonexistent' not found" in line, line


# ---------------------------------------------------------------------------
# 2. A divergence injected on purpose: the emulated CPU is not the one modelled
# ---------------------------------------------------------------------------

# Runs the real QEMU with `-cpu cortex-a57` replaced by `-cpu cortex-a53`: the
# guest then has PAMax 40 while the reference models the a57's 44.  A 42-bit
# IPA (T0SZ = 22) is legal on the a57 (AArch64.S2MinTxSZ: 64 - 44 = 20) but
# below the a53's minimum T0SZ of 24, and IPAs of 40 bits and more are beyond
# the a53's PARange.
WRAPPER = """#!/bin/bash
args=()
prev=
for a in "$@"; do
  if [ "$prev" = -cpu ] && [ "$a" = cortex-a57 ]; then a=cortex-a53; fi
  args+=("$a")
  prev=$a
done
exec {qemu} "${{args[@]}}"
"""


@pytest.fixture(scope="module")
def a53_wrapper(tmp_path_factory) -> Path:
    wrapper = tmp_path_factory.mktemp("wrapper") / "qemu-a57-as-a53"
    # The QEMU the tests run ($S2DIFF_QEMU_AARCH64, else PATH's).
    wrapper.write_text(WRAPPER.format(qemu=shlex.quote(str(find_qemu(Arch.AARCH64)))))
    wrapper.chmod(0o755)
    return wrapper


IPA42 = ("--cpu", "cortex-a57", "--ipa", "42", "--granule", "4k", "--cases", "2", "--jobs", "1")
START_LEVEL_0 = "aarch64/cortex-a57/4k/ipa42/sl0-2/L0x1"
KVM_CHOICE = "aarch64/cortex-a57/4k/ipa42/sl0-1/L1x8-kvm"


@pytest.fixture(scope="module")
def injected(tmp_path_factory, a53_wrapper) -> tuple[Path, Cli]:
    out = tmp_path_factory.mktemp("injected")
    return out, s2diff("run", *IPA42, "--qemu-aarch64", a53_wrapper, "--out", out)


class TestInjectedDivergence:

    def test_the_real_qemu_agrees_on_this_selection(self, tmp_path):
        """Control: without the wrapper the same run has no new divergence."""
        run = s2diff("run", *IPA42, "--out", tmp_path)
        assert run.code == 0, run.out + run.err
        assert all(d["known"] for d in records(tmp_path, "divergence"))
        assert {c["entry"] for c in records(tmp_path, "case")} == {START_LEVEL_0, KVM_CHOICE}

    def test_surfaces_as_new_divergences_with_case_files(self, injected, a53_wrapper):
        out, run = injected
        assert run.code == 1, run.err
        everything = records(out, "divergence")
        assert everything and all(d["known"] is None for d in everything)
        # The a53 answering for the a57 is itself a finding (harness.qemu.models):
        # its MIDR and PARange are not the a57's.
        model = {(d["key"], d["observed"]) for d in everything if d["kind"] == "cpu-model"}
        assert model == {("aarch64/cortex-a57/cpu-model/MIDR_EL1", "MIDR_EL1=0x410fd034"),
                         ("aarch64/cortex-a57/cpu-model/ID_AA64MMFR0_EL1",
                          "ID_AA64MMFR0_EL1=0x1122"),
                         ("aarch64/cortex-a57/cpu-model/pamax", "pamax=40")}
        divergences = [d for d in everything if d["kind"] != "cpu-model"]
        # What the a53 does with these walks: IPAs of 40 bits and more stop at
        # stage 1 (beyond PARange); the others meet a 42-bit IPA it cannot
        # have (T0SZ below its minimum): a level 0 Translation fault.
        labels = {d["observed"] for d in divergences}
        assert PLANTED_LABELS <= labels
        assert all(PLANTED_OTHER.fullmatch(label) for label in labels - PLANTED_LABELS), labels
        # The start-level-0 configuration walks on the a57 model.
        level0 = [d for d in divergences if d["entry"] == START_LEVEL_0]
        assert any(label.startswith("ok L") for d in level0 for label in d["expected"])
        assert {d["key"] for d in divergences} == {f"{e}#{i}" for e in (START_LEVEL_0, KVM_CHOICE)
                                                   for i in range(2)}
        # Case files of cases with new divergences (at most 3 per root
        # cause), each naming the divergences of its case.
        files = {d["case_file"] for d in divergences if d.get("case_file")}
        assert files == {f"cases/{p.name}" for p in (out / "cases").glob("*.json")}
        for d in divergences:
            if not d.get("case_file"):
                continue
            case = json.loads((out / d["case_file"]).read_text())
            assert case["key"] == d["key"]
            # The case file names the binary that ran and the CPU asked for.
            argv = case["qemu"]["argv"]
            assert argv[0] == str(a53_wrapper) and argv[argv.index("-cpu") + 1] == "cortex-a57"
            # The file numbers its probes itself (it keeps a sample of the
            # fan-out); run_probe is the run's number.
            assert any((e["run_probe"], e["kind"], e["expected"], e["observed"])
                       == (d["probe"], d["kind"], d["expected"], d["observed"])
                       for e in case["divergence"])

    @pytest.mark.parametrize("entry", [START_LEVEL_0, KVM_CHOICE])
    def test_repro_with_the_wrapper_still_diverges(self, injected, a53_wrapper, entry):
        out, _ = injected
        case = out / next(d["case_file"] for d in records(out, "divergence")
                          if d["key"].startswith(entry) and d.get("case_file"))
        run = s2diff("repro", case, "--qemu-aarch64", a53_wrapper)
        assert run.code == 1, run.out + run.err
        assert run.out.splitlines()[0].startswith("new divergence: ")

    def test_repro_with_the_real_qemu_no_longer_diverges(self, injected):
        out, _ = injected
        case = out / next(d["case_file"] for d in records(out, "divergence")
                          if d["key"].startswith(KVM_CHOICE) and d.get("case_file"))
        run = s2diff("repro", case)
        assert run.code == 0, run.out + run.err
        assert run.out.splitlines()[0].startswith("no divergence (the file records ")

    # Once a bug: repro counted divergences the baseline knows.  This case
    # also holds a level-0 block descriptor (qemu-7.2-block-at-invalid-level).
    def test_repro_of_the_start_level_0_case_with_the_real_qemu_no_longer_diverges(
            self, injected):
        out, _ = injected
        case = out / next(d["case_file"] for d in records(out, "divergence")
                          if d["key"].startswith(START_LEVEL_0) and d.get("case_file"))
        run = s2diff("repro", case)
        # On a QEMU the baseline entry applies to (7.2) the level-0 block is
        # a known divergence; on a later one (fixed in 8.2) nothing diverges.
        entry = next(e for e in load_baseline(ROOT / "baseline.toml").entries
                     if e.id == "qemu-7.2-block-at-invalid-level")
        if entry.applies_to(qemu_version(find_qemu(Arch.AARCH64))):
            assert run.out.splitlines()[0] == ("only known divergences: "
                                               "qemu-7.2-block-at-invalid-level"), run.out
        else:
            assert run.out.splitlines()[0].startswith("no divergence"), run.out
        assert run.code == 0


# ---------------------------------------------------------------------------
# 3. Baseline matching: known, new, stale
# ---------------------------------------------------------------------------

def _toml_entry(entry: dict) -> str:
    # JSON strings and arrays of strings are valid TOML basic strings and arrays.
    return "[[divergence]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())


class TestBaseline:

    def test_known_and_new_are_the_same_divergences(self, a57_known, a57_new):
        """The baseline classifies; it neither hides nor adds divergences."""
        def totals(out):
            # Known divergences are aggregated per (case, entry, kind,
            # expected, observed); compare diverging probes at that grain.
            t = collections.Counter()
            for d in records(out, "divergence"):
                if d["kind"] == "probe":    # the summary counts probes; writes apart
                    t[(d["key"], d["kind"], tuple(d["expected"]), d["observed"])] += \
                        d.get("count", 1)
            return t
        known, new = totals(a57_known[0]), totals(a57_new[0])
        assert known == new
        assert case_rows(a57_known[0]) == case_rows(a57_new[0])
        assert summary_groups(a57_known[1].out)["total"]["known"] == sum(known.values())
        assert summary_groups(a57_new[1].out)["total"]["new"] == sum(new.values())
        # Case files only for cases with new divergences, every one named
        # by its records, at most 3 per root cause (harness.report.casefiles).
        keys = {d["key"] for d in records(a57_new[0], "divergence")}
        files = {p.name for p in (a57_new[0] / "cases").glob("*.json")}
        assert files <= {case_file_name(k) for k in keys}
        named = {d["case_file"] for d in records(a57_new[0], "divergence") if d.get("case_file")}
        assert {f"cases/{f}" for f in files} == named
        causes = root_causes(load_run([a57_new[0]]))
        assert len(files) <= 3 * len(causes)
        # (a cpu-model finding has no case file: its records are the ID registers)
        # Every cause keeps one at least; a file kept for one cause also
        # names the others its case shows, so a cause may list more than 3.
        # (a cpu-model finding has no case file: its records are the ID registers)
        assert all(1 <= len(c.case_files) for c in causes
                   if not all("/cpu-model/" in k for k in c.cases))

    def test_stale_entry(self, tmp_path):
        """An entry that matches nothing although its case's configuration
        (arch, CPU model, VTCR) ran is STALE; one whose configuration did
        not run is not, nor is one that matched.  A cpu-model entry without
        a case file is STALE when a run used its model and it matched
        nothing."""
        data = tomllib.loads((ROOT / "baseline.toml").read_text())
        entries = [dict(e, case=[str(ROOT / c) for c in
                                 ([e["case"]] if isinstance(e["case"], str) else e["case"])])
                   if "case" in e else e for e in data["divergence"]]
        by_id = {e["id"]: e for e in entries}
        larger = by_id["qemu-7.2-ipa-larger-than-ps"]   # case: cortex-a72, VTCR 0x80013558
        lpa2 = by_id["qemu-7.2-lpa2-16k-start-level-0"]  # case: max
        never = "(?!)"  # a regular expression that matches nothing
        # The "never" copies apply to every QEMU version (the originals
        # only to those before their fix).
        entries += [{k: v for k, v in dict(larger, id="never-ipa-larger-than-ps",
                                           observed=never).items() if k != "qemu"},
                    {k: v for k, v in dict(lpa2, id="never-lpa2-16k-start-level-0",
                                           observed=never).items() if k != "qemu"},
                    # a case-less cpu-model entry of the model the run uses, and
                    # one of a model it does not use (not judged)
                    dict(id="never-a72-model", title="t", verdict="qemu-bug", evidence="e",
                         kind="cpu-model", arch="aarch64", cpus=["cortex-a72"], observed=never),
                    dict(id="never-a57-model", title="t", verdict="qemu-bug", evidence="e",
                         kind="cpu-model", arch="aarch64", cpus=["cortex-a57"], observed=never)]
        baseline = tmp_path / "baseline.toml"
        baseline.write_text("version = 1\n\n" + "\n".join(map(_toml_entry, entries)))
        out = tmp_path / "out"
        run = s2diff("run", "--cpu", "cortex-a72", "--cases", "2", "--jobs", "1",
                     "--baseline", baseline, "--out", out)
        assert run.code == 0, run.out + run.err
        stale = [line for line in run.out.splitlines() if line.startswith("STALE:")]
        assert stale == [f"STALE: baseline entry never-ipa-larger-than-ps matched nothing although "
                         f"its configuration ran (fixed? case: {larger['case'][0]})",
                         "STALE: baseline entry never-a72-model matched nothing although "
                         "its configuration ran (fixed? case: its -cpu model, cortex-a72)"]
        # The original entry took the divergences the copy could not, on a
        # QEMU its version range holds (QEMU 7.2); on a later one there is
        # nothing to take, and it is not stale: its range does not hold it.
        known = {d["known"] for d in records(out, "divergence")}
        version = qemu_version(find_qemu(Arch.AARCH64))
        has_bug = load_baseline(ROOT / "baseline.toml").entries[
            [e["id"] for e in data["divergence"]].index("qemu-7.2-ipa-larger-than-ps")
        ].applies_to(version)
        assert ("qemu-7.2-ipa-larger-than-ps" in known) == has_bug, version


# ---------------------------------------------------------------------------
# 4. Shards, merge and report
# ---------------------------------------------------------------------------

# Four CPU models: four batches, so shard 1/3 holds two of them (0 and 3).
SHARDED = ("--cpu", "cortex-a53,cortex-a57,cortex-a72,cortex-a76", "--cases", "1",
           "--seed", "5", "--no-baseline")


REPORTS = ("summary.txt", "junit.xml", "report.html")


def test_shards_merge_and_report_rebuild_the_unsharded_run(tmp_path, a53_wrapper):
    # The wrapper plants divergences in the cortex-a57 batch (on any QEMU).
    whole = tmp_path / "whole"
    run = s2diff("run", *SHARDED, "--jobs", "2", "--qemu-aarch64", a53_wrapper, "--out", whole)
    assert run.code == 1, run.err
    assert records(whole, "run")[0]["batches"] == 4
    shards = []
    for k in (1, 2, 3):
        shard = tmp_path / f"shard{k}"
        code = s2diff("run", *SHARDED, "--jobs", "1", "--shard", f"{k}/3", "--qemu-aarch64",
                      a53_wrapper, "--out", shard).code
        # The a57 batch is batch 1, in shard 2/3 (others may hold a bug of
        # the QEMU at hand: --no-baseline).
        assert code == 1 if k == 2 else code in (0, 1)
        shards.append(shard)
    assert [records(s, "run")[0]["batches"] for s in shards] == [2, 1, 1]
    assert [sorted(b["batch"] for b in records(s, "batch")) for s in shards] == [[0, 3], [1], [2]]

    # The shards partition the run: same cases and divergences, none twice.
    shard_cases = [case_rows(s) for s in shards]
    assert set().union(*shard_cases) == case_rows(whole)
    assert sum(map(len, shard_cases)) == len(case_rows(whole))
    assert set().union(*map(divergence_rows, shards)) == divergence_rows(whole)
    assert divergence_rows(whole)

    merged = tmp_path / "merged"
    merge = s2diff("merge", *shards, "--out", merged)
    assert merge.code == 1, merge.err
    for name in ("summary.txt", "junit.xml"):
        assert (merged / name).read_bytes() == (whole / name).read_bytes(), name
    # (report.html may differ: its case-file links are relative to where it lives.)
    assert "coverage: all batches" in (merged / "summary.txt").read_text()

    # `s2diff report DIR` rebuilds the run's own reports in place, byte for byte.
    written = {name: (whole / name).read_bytes() for name in REPORTS}
    for name in REPORTS:
        (whole / name).unlink()
    report = s2diff("report", whole)
    assert report.code == 1, report.err
    for name in REPORTS:
        assert (whole / name).read_bytes() == written[name], name


def test_a_missing_shard_is_refused_unless_allowed(tmp_path):
    """Merging two of three shards (or one shard twice) exits 1 naming the
    missing shard and writes nothing; --allow-partial merges them and
    every report says which shard is missing."""
    shards = []
    for k in (1, 2):
        shard = tmp_path / f"shard{k}"
        s2diff("run", "--cpu", "cortex-a53,cortex-a57,cortex-a72", "--cases", "1", "--jobs", "1",
               "--fanout", "0", "--shard", f"{k}/3", "--out", shard)
        shards.append(shard)
    merged = tmp_path / "merged"
    for inputs, missing in ((shards, "3/3"), ([shards[0], shards[0]], "2/3, 3/3")):
        merge = s2diff("merge", *inputs, "--out", merged)
        assert merge.code == 1
        assert only_line(merge.err).startswith(f"s2diff: error: shard(s) {missing} missing: ")
        assert not merged.exists()
    merge = s2diff("merge", *shards, "--out", merged, "--allow-partial")
    assert merge.code == 0, merge.err
    coverage = "shards 1/3, 2/3 (missing 3/3)"
    assert f"coverage: {coverage}" in (merged / "summary.txt").read_text().splitlines()
    props = ET.parse(merged / "junit.xml").getroot().find("properties")
    assert props is not None and props.find("property").get("value") == coverage
    assert coverage in (merged / "report.html").read_text()


def test_merge_refuses_a_mixed_set_naming_the_inputs(tmp_path):
    """Shards of different runs, or a shard with a whole run: exit 2, one
    line naming the two input files; no output."""
    args = ("run", "--cpu", "cortex-a53", "--cases", "1", "--jobs", "1", "--fanout", "0")
    a, b, whole = tmp_path / "a", tmp_path / "b", tmp_path / "whole"
    s2diff(*args, "--shard", "1/2", "--out", a)
    s2diff(*args, "--shard", "2/2", "--seed", "2", "--out", b)
    s2diff(*args, "--out", whole)
    merged = tmp_path / "merged"
    merge = s2diff("merge", a, b, "--out", merged)
    assert merge.code == 2
    assert only_line(merge.err) == (f"s2diff: error: cannot merge {a / 'results.jsonl'} and "
                                    f"{b / 'results.jsonl'}: they are of different runs (seed 1 "
                                    "and 2)")
    merge = s2diff("merge", a, whole, "--out", merged)
    assert merge.code == 2
    assert only_line(merge.err) == (f"s2diff: error: cannot merge {whole / 'results.jsonl'} (a "
                                    f"whole run) with {a / 'results.jsonl'} (shard 1/2)")
    assert not merged.exists()


# ---------------------------------------------------------------------------
# 5. JUnit XML and HTML
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["a57_known", "a57_new"])
def test_junit_parses_and_counts_match_the_summary(request, which):
    out, _ = request.getfixturevalue(which)
    summary = (out / "summary.txt").read_text()
    groups = summary_groups(summary)
    verdicts = summary_verdicts(summary)
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    causes = suites.pop("root causes", None)      # the first suite: one test case each
    assert causes is not None or which == "a57_known" and not records(out, "divergence")
    n_causes = len(causes.findall("testcase")) if causes is not None else 0
    new_causes = len(causes.findall("testcase/failure")) if causes is not None else 0
    # summary.txt fits 80 columns: a long group name loses its middle there.
    def short(name: str) -> str:
        def fits(g: str) -> bool:
            head, _, tail = g.partition("~")
            return g == name or bool(_) and name.startswith(head) and name.endswith(tail)
        return next(g for g in groups if fits(g))
    assert {short(n) for n in suites} == set(groups) - {"total"}
    for name, suite in suites.items():
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases) == groups[short(name)]["entries"], name
        for attr, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
            assert int(suite.get(attr)) == sum(c.find(tag) is not None for c in cases), (name, attr)
    assert int(root.get("tests")) == groups["total"]["entries"] + n_causes
    assert int(root.get("failures")) == verdicts["new"] + new_causes
    assert int(root.get("errors")) == verdicts["timeout/crash"]
    assert int(root.get("skipped")) == verdicts["not run"]
    # One test case per matrix entry; the failures are the entries with new divergences.
    testcases = {c.get("name"): c for s in suites.values() for c in s.iter("testcase")}
    # (and one per CPU model a named -cpu differs from: harness.judge.models)
    assert set(testcases) == {c["entry"] for c in records(out, "case")} | {
        d["entry"] for d in records(out, "divergence") if d["kind"] == "cpu-model"}
    assert {n for n, c in testcases.items() if c.find("failure") is not None} == \
        {d["entry"] for d in records(out, "divergence") if d["known"] is None}
    if which == "a57_new":
        assert verdicts["new"] > 0
    else:
        assert verdicts["new"] == 0 and verdicts["known"] > 0


def test_html_report_names_every_divergence(a57_new):
    out, _ = a57_new
    divergences = records(out, "divergence")
    assert 0 < len(divergences) <= MAX_HTML_DIVERGENCES, "selection too large for the HTML cap"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('<section class="div"') == len(divergences)
    for d in divergences:
        probe = "" if d["probe"] is None else f" probe {d['probe']}"   # a cpu-model record: none
        assert f"<h3>{d['key']}{probe} &mdash; new</h3>" in page, d["key"]
    assert f"Divergences ({len(divergences)} new and 0 known records)" in page


# ---------------------------------------------------------------------------
# 6. --vtcr: one hypervisor's configuration
# ---------------------------------------------------------------------------

def test_vtcr_validates_exactly_one_configuration(tmp_path):
    """KVM's 40-bit 4K VTCR_EL2 on cortex-a53: one matrix entry."""
    run = s2diff("run", "--vtcr", "0x80023558", "--cpu", "cortex-a53", "--cases", "3",
                 "--jobs", "1", "--out", tmp_path)
    assert run.code == 0, run.out + run.err
    header = records(tmp_path, "run")[0]
    assert (header["entries"], header["batches"], header["cases"]) == (1, 1, 3)
    cases = records(tmp_path, "case")
    entry = "aarch64/cortex-a53/vtcr-0x80023558"
    assert [c["key"] for c in cases] == [f"{entry}#{i}" for i in range(3)]
    assert {(c["vtcr"], c["cpu"], c["valid"], c["status"]) for c in cases} == \
        {("0x80023558", "cortex-a53", True, "pass")}
    assert summary_groups(run.out)["total"]["entries"] == 1
    assert len(list(ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"))) == 1
