"""Rule coverage: the ``rules`` of case records, their sum over a run
(harness.coverage), and the default nightly matrix reaching every rule the
stage-2 AT probes can reach -- computed without QEMU from the generator's
cases and the reference's permitted outcomes."""
from __future__ import annotations

import collections
import dataclasses
import json

import pytest
from test_records import ARENA, FANOUT, RAM, agreeing_image

from harness.coverage import (
    UNREACHABLE,
    RuleStatus,
    rule_coverage,
    unreachable_reason,
)
from harness.judge.case import judge_case
from harness.kinds import CaseKind
from harness.matrix import build_matrix
from harness.plan import VIRT_EMPTY, Batch, CaseSpec, generate_batch
from harness.records import CaseRecord, CaseStatus, InvalidRecord
from reference import rules as R
from reference.arch import Arch, AtKind, Granule
from reference.config import aarch64_config
from reference.coverage import count_rules, result_rules
from reference.cpus import get_cpu
from reference.generate import MemoryMap, generate_case
from reference.walk import walk

MMAP = MemoryMap(ram=(RAM,), empty=VIRT_EMPTY)


def record(key: str, arch: str, cpu: str, vtcr: str, rules: dict[str, int] | None,
           valid: bool = True) -> CaseRecord:
    return CaseRecord(key=key, entry=key, group="g", arch=arch, cpu=cpu, vtcr=vtcr, vttbr="0x0",
                      valid=valid, kvm=False, batch=0, status=CaseStatus.PASS, probes=1,
                      passed=1, diverged=0, not_run=0,
                      rules=None if rules is None else tuple(sorted(rules.items())))


def nightly_records(index: int = 0) -> list[CaseRecord]:
    """Case ``index`` of every entry of the default nightly matrix as the
    case records a run would write, ``rules`` from the named probes alone
    (a lower bound: the fan-out probes fall in the spans of named ones)."""
    out = []
    for e in build_matrix(probes=[CaseKind.AT]):     # AT cases: what generate_case makes
        cpu = get_cpu(e.arch, e.cpu)
        case = generate_case(cpu, e.config, 1, f"{e.name}#{index}",
                             (ARENA[0], e.window_bytes), MMAP, opt_in=e.opt_in)
        rules = count_rules((result_rules(cpu.arch, r), 1) for r in case.permitted())
        out.append(record(case.key, e.arch.value, e.cpu, f"{case.config.vtcr():#x}", rules,
                          e.valid))
    return out


@pytest.fixture(scope="module")
def nightly_recs():
    return nightly_records()


@pytest.fixture(scope="module")
def nightly(nightly_recs):
    return rule_coverage(nightly_recs)


class TestNightlyReachesEveryRule:
    def test_no_gap(self, nightly):
        """Every rule the stage-2 AT probes can reach is reached by the first
        case of the nightly matrix's entries, unless UNREACHABLE says why."""
        assert [r.rule.key for r in nightly.gaps()] == []
        unreached = [r.rule.key for r in nightly.matrix_rules() if not r.reached]
        assert all(unreachable_reason(R.by_key(k)) for k in unreached)

    def test_the_unreachable_list_is_not_stale(self, nightly):
        """A rule listed unreachable that the matrix reaches is a stale entry."""
        reached = {r.rule.key for r in nightly.rules if r.reached}
        assert sorted(set(UNREACHABLE) & reached) == []

    def test_every_rule_applies_somewhere(self, nightly):
        """No rule of the matrix's probes is inapplicable to every class of
        the nightly: its conditions would be wrong, or the matrix lacks it."""
        assert [r.rule.key for r in nightly.matrix_rules()
                if r.status is RuleStatus.NOT_APPLICABLE] == []

    def test_the_gap_check_can_fail(self, nightly_recs):
        """Without the VTTBR-beyond-PS family the start-level address check
        (the issue's example) is a gap."""
        records = [r for r in nightly_recs if "VTTBR-base-beyond-PS" not in r.entry]
        gaps = [r.rule.key for r in rule_coverage(records).gaps()]
        assert R.A64_S2_VTTBR_OA.key in gaps


class TestRuleCoverage:
    # cortex-a57 (PAMax 44), 4K, 40-bit IPA from level 1 and from level 0.
    A57_L1 = f"{aarch64_config(Granule.G4K, 40, 1, ps_bits=44).vtcr():#x}"
    A57_L0 = f"{aarch64_config(Granule.G4K, 40, 0, ps_bits=44).vtcr():#x}"

    def test_counts_and_cells(self):
        """Probes add up per rule; a walk rule's cells are classes, a
        configuration rule's the CPU; an applicable cell never reached is
        listed; a key this s2diff does not know is reported, not counted;
        a record without rules counts as a case, not for coverage."""
        page, l1 = R.A64_S2_DESC[(R.Desc.PAGE, 3)].key, R.A64_S2_DESC[(R.Desc.TABLE, 1)].key
        txsz = R.A64_S2_TXSZ_MAX_FAULT.key
        recs = [record("a", "aarch64", "cortex-a57", self.A57_L1, {page: 3, l1: 2}),
                record("b", "aarch64", "cortex-a57", self.A57_L1, {page: 4, "no.such.rule": 1}),
                record("c", "aarch64", "cortex-a57", self.A57_L0, {txsz: 5}, valid=False),
                record("d", "aarch64", "cortex-a57", self.A57_L1, None)]
        cov = rule_coverage(recs)
        rows = {r.rule.key: r for r in cov.rules}
        assert (cov.cases, cov.with_rules, cov.unknown) == (4, 3, ("no.such.rule",))
        assert rows[page].probes == 7 and rows[l1].probes == 2
        assert rows[page].reached_cells == ("aarch64 cortex-a57 4k L1 DS0",)
        # The level-0 class is an invalid case's: walk rules are not asked of it.
        assert rows[page].unreached_cells == ()
        assert rows[txsz].reached_cells == ("aarch64 cortex-a57",)
        # Table at level 0 applies to no valid class of the run (start level 1).
        assert rows[R.A64_S2_DESC[(R.Desc.TABLE, 0)].key].status is RuleStatus.NOT_APPLICABLE
        # Table at level 2 applies to the level-1 class and was not reached.
        l2 = rows[R.A64_S2_DESC[(R.Desc.TABLE, 2)].key]
        assert l2.status is RuleStatus.GAP
        assert l2.unreached_cells == ("aarch64 cortex-a57 4k L1 DS0",)
        # FEAT_HAFDBS rules do not apply to cortex-a57.
        assert rows[R.A64_S2_AF_AT_SETS.key].status is RuleStatus.NOT_APPLICABLE
        assert rows[R.A64_S2PIE_INDEX[0].key].status is RuleStatus.UNREACHABLE


class TestCaseRecordRules:
    def test_round_trip_and_old_files(self):
        """``rules`` is written as an object and read back; a record
        without it (an older file) reads as None; a bad value is refused."""
        rec = record("a", "aarch64", "cortex-a57", TestRuleCoverage.A57_L1, {"x.y": 3, "a.b": 1})
        data = json.loads(json.dumps(rec.to_json()))
        assert data["rules"] == {"a.b": 1, "x.y": 3}
        assert CaseRecord.from_json(data) == rec
        del data["rules"]
        assert CaseRecord.from_json(data).rules is None
        with pytest.raises(InvalidRecord, match="rules"):
            CaseRecord.from_json({**data, "rules": {"a.b": -1}})

    def test_judge_counts_named_and_fanout_probes(self):
        """The record's rules equal, rule by rule, the number of probes --
        named and fan-out -- whose permitted outcomes (walked one by one
        here) the rule decides: the span model's one outcome per span
        times its probes gives the same counts."""
        entries = [e for e in build_matrix(arch=Arch.AARCH64, cpus=["cortex-a57"], ipa_sizes=[40])
                   if e.valid][:2]
        batch = Batch(0, Arch.AARCH64, "cortex-a57", tuple(CaseSpec(e, 0) for e in entries))
        for case in generate_batch(batch, 11, ARENA, MMAP, FANOUT):
            counts, _ = judge_case(case, agreeing_image(case))
            want: collections.Counter[str] = collections.Counter()
            probes = [(p.ipa, p.at) for p in case.probes] + [
                (int(i), AtKind(int(a))) for i, a in zip(case.fanout.ipa, case.fanout.at)]
            for ipa, at in probes:
                for rid in result_rules(Arch.AARCH64, walk(case.cpu, case.config, case.memory(),
                                                           ipa, at)):
                    want[rid.key] += 1
            assert dict(counts.rules) == dict(want)
            assert counts.probes == len(probes) and len(case.fanout) > 0

    def test_probes_not_run_do_not_count(self):
        """A probe the guest did not run reaches no rule."""
        entry = next(e for e in build_matrix(arch=Arch.AARCH64, cpus=["cortex-a57"],
                                             ipa_sizes=[40]) if e.valid)
        (case,) = generate_batch(Batch(0, Arch.AARCH64, "cortex-a57", (CaseSpec(entry, 0),)),
                                 11, ARENA, MMAP, 0)
        image = agreeing_image(case)
        full, _ = judge_case(case, image)
        records = image.records.copy()
        records[0] = 0                                  # ObsKind.NOT_RUN
        fewer, _ = judge_case(case, dataclasses.replace(image, records=records))
        first = result_rules(Arch.AARCH64, case.permitted()[0])
        assert {k: dict(full.rules)[k] - v for k, v in dict(fewer.rules).items()
                if dict(full.rules)[k] != v} == {r.key: 1 for r in first}


class TestCli:
    def test_bad_input_is_one_line_and_exit_2(self, tmp_path, capsys):
        """No run directory, --build-dir without --qemu-src, a --qemu-src
        that is no QEMU tree, a directory without results: exit 2, one line."""
        from harness.cli import main
        for argv in (["coverage"], ["coverage", str(tmp_path), "--build-dir", str(tmp_path)],
                     ["coverage", "--qemu-src", str(tmp_path)], ["coverage", str(tmp_path)]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip()
            assert err.startswith("s2diff: error:") and "\n" not in err and "Traceback" not in err

    def test_tables_from_a_results_file(self, tmp_path, capsys):
        """The command reads the records of a results file alone and lists
        the gaps; --json carries every rule."""
        from harness.cli import main
        from harness.records import RecordSink
        page = R.A64_S2_DESC[(R.Desc.PAGE, 3)].key
        sink = RecordSink(tmp_path / "results.jsonl")
        sink.write([record("a", "aarch64", "cortex-a57", TestRuleCoverage.A57_L1, {page: 3})])
        sink.close()
        assert main(["coverage", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert out.startswith("Rule coverage: 1 of ") and "a64.s2.desc.table.L1" in out
        assert main(["coverage", str(tmp_path), "--json"]) == 0
        rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["rules"]}
        assert rows[page]["probes"] == 3 and len(rows) == len(R.rule_ids())
