"""Rule coverage of a real run in QEMU (a small matrix): every case record
carries its rules, `s2diff coverage` reads them back from the results file
alone, and its numbers hold together with the run's."""
from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.coverage import RuleStatus, rule_coverage
from harness.report.load import load_run
from reference import rules as R


@pytest.mark.qemu
def test_a_small_run_has_its_rules(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--cpu", "cortex-a57", "--granule", "4k", "--ipa", "40", "--cases", "1",
                 "--fanout", "4", "--jobs", "1", "--no-baseline", "--out", str(out)])
    assert code in (0, 1)                       # 1: a divergence of the QEMU in use
    run = load_run([out])
    ran = sum(c.probes - c.not_run for c in run.cases)
    assert run.cases and all(c.rules for c in run.cases) and ran > 0
    capsys.readouterr()
    assert main(["coverage", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["key"]: r for r in data["rules"]}
    assert data["cases_with_rules"] == data["cases"] == len(run.cases)
    # Every probe's outcomes have an encoding (PAR or abort): their rules
    # reach at least as many probes as ran; TG0 decides every probe below
    # 2^PAMax, so at most as many.
    encodings = sum(r["probes"] for k, r in rows.items() if k.startswith(("par.", "esr.")))
    assert encodings >= ran >= rows[R.A64_S2_TG0.key]["probes"] > 0
    # A cortex-a57 run reaches no FEAT_HAFDBS rule and none of AArch32.
    assert rows[R.A64_S2_AF_AT_SETS.key]["probes"] == 0
    assert all(r["probes"] == 0 for k, r in rows.items() if k.startswith("a32."))
    cov = rule_coverage(run.cases)
    assert cov.rules and not cov.unknown
    assert {r.rule.key for r in cov.rules if r.status is RuleStatus.REACHED} == {
        k for k, r in rows.items() if r["probes"]}
    # A one-granule run without the configuration families leaves gaps:
    # --fail-on-gap says so with exit 1.
    assert cov.gaps()
    assert main(["coverage", str(out), "--fail-on-gap"]) == 1
