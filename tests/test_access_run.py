"""Access probes in the run (issue 13): access cases as matrix entries,
their records (kinds access and data, harness.judge.access), their case
files (reference.access_casefmt) and `s2diff repro` / `walk` of one.

The unit part builds records the way an emulator following the reference
would; the QEMU part runs the access group of one CPU model through the
whole pipeline.  What the architecture says about each field is in
tests/test_access_case.py and tests/test_syndrome.py; the three QEMU
families of test_access.py are recognised here by the same predicates."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_access import KNOWN as KNOWN_QEMU_FAMILIES
from test_access_case import _case, _memory_after, _records_from_reference

from harness.judge.access import judge_access_image
from harness.matrix import access_entries, build_matrix
from harness.qemu.job import ImageResult
from harness.run import RunOptions, run_matrix
from harness.vocabulary import DivergenceKind, access_record_label
from reference.access import Taken
from reference.access_case import AccessStep, MaintExpectation
from reference.access_casefmt import access_case_from_data, access_case_to_data
from reference.arch import Arch
from reference.casefmt import CaseFormatError
from reference.cpus import get_cpu

A64, A32 = Arch.AARCH64, Arch.AARCH32
ROOT = Path(__file__).resolve().parent.parent


def _image(case, records=None, after=None, completed=True):
    return ImageResult(_records_from_reference(case) if records is None else records,
                       _memory_after(case) if after is None else after, completed)


class TestRecords:
    def test_a_reference_run_has_no_divergence(self):
        case = _case()
        counts, divergences = judge_access_image(case, _image(case))
        assert divergences == []
        assert (counts.probes, counts.passed, counts.not_run) == (len(case.steps),) * 2 + (0,)

    def test_a_flipped_srt_bit_is_one_access_divergence_naming_the_field(self):
        """ESR_EL2.SRT [20:16] of one stage-2 abort with an instruction
        syndrome, one bit flipped: the label says where it ended as the
        reference does, and which field differs."""
        case = _case()
        exps = case.expectations()
        i = next(i for i, e in enumerate(exps) if not isinstance(e, MaintExpectation)
                 and len(e) == 1 and e[0].taken is Taken.EL2
                 and any(f.name == "SRT" for f in e[0].fields))
        records = _records_from_reference(case)
        records[i, 2] ^= np.uint64(1 << 16)
        counts, (d,) = judge_access_image(case, _image(case, records))
        assert d.kind is DivergenceKind.ACCESS and d.probe == i
        status = exps[i][0].outcome.abort
        level = f" L{status.level}" if status.level is not None else ""
        assert d.expected == (f"EL2 {status.status.value}{level}",)
        assert d.observed == f"EL2 {status.status.value}{level}; differs in SRT"
        assert d.aim.endswith(f"[{case.steps[i].kind.spec.op.value}]")
        assert d.at == case.steps[i].kind.name and d.ipa == f"{case.steps[i].ipa:#x}"
        assert counts.diverged == 1 and counts.passed == counts.probes - 1

    def test_steps_not_reached_are_not_run_and_memory_is_not_judged(self):
        case = _case()
        records = _records_from_reference(case)
        records[len(records) // 2:] = 0
        counts, divergences = judge_access_image(case, _image(case, records, after=(),
                                                              completed=False))
        assert divergences == [] and counts.not_run == len(records) - len(records) // 2

    def test_a_lost_store_is_a_data_divergence(self):
        case = _case()
        exps = case.expectations()
        i, step = next((i, s) for i, s in enumerate(case.steps) if isinstance(s, AccessStep)
                       and len(exps[i]) == 1 and exps[i][0].outcome.stores)
        after = dict(_memory_after(case))
        after[step.chunk] = bytes(len(after[step.chunk]))      # zeros: not what it stored
        _, (d,) = judge_access_image(case, _image(case, after=tuple(after.items())))
        assert d.kind is DivergenceKind.DATA and d.probe == i
        assert d.observed == "data chunk holds other bytes"

    @pytest.mark.parametrize("arch, kind, esr, label", [
        (A64, 3, 0x5A00_0000, "completed"),                     # ACCESS_DONE (HVC #0)
        (A64, 2, 0x9200_000F, "EL2 permission L3"),             # EC 0x24, DFSC 0b001111
        (A64, 2, 0x8200_0006, "EL2 translation L2"),            # EC 0x20 (instruction abort)
        (A64, 2, 0x9200_0015, "EL2 sea-on-walk L1"),            # DFSC 0b010101
        (A64, 4, 0x9600_0021, "EL1 alignment"),                 # EC 0x25, DFSC 0b100001
        (A32, 4, 0x0000_0001, "EL1 alignment"),                 # short-descriptor DFSR.FS 0b00001
        (A64, 2, 0x5E00_0000, "EL2 EC 0x17"),                   # not an abort
    ])
    def test_record_labels(self, arch, kind, esr, label):
        """The observed label decodes where the record ended and the fault
        status its syndrome encodes (EncodeLDFSC, Arm ARM D24.2.46)."""
        assert access_record_label(arch, kind, esr) == label


class TestCaseFile:
    @pytest.mark.parametrize("arch", [A64, A32])
    def test_round_trip(self, arch):
        case = _case(arch=arch, cpu="cortex-a57" if arch is A64 else "cortex-a15")
        data = json.loads(json.dumps(access_case_to_data(case)))
        again = access_case_from_data(data)
        # The configuration is read back from its register values (an
        # AArch32 VTCR.S comes back as the bit it is, not as "derived").
        assert (again.config.vtcr(), again.config.vttbr) == (case.config.vtcr(), case.config.vttbr)
        assert dataclasses.replace(again, config=case.config) == case
        assert again.expectations() == case.expectations()
        assert all("expected" in s for s in data["steps"])

    def test_bad_step_is_a_format_error(self):
        data = access_case_to_data(_case(), with_expected=False)
        data["steps"][0]["kind"] = "A32_LDR"
        with pytest.raises(CaseFormatError, match=r"steps\[0\].kind: A32_LDR is not an access "
                                                   "kind of aarch64"):
            access_case_from_data(data)


def test_the_matrix_has_access_entries_on_every_model_and_granule():
    """Every model the QEMU in use has, every stage-2 granule of it, both
    architectures: KVM's 40-bit choice as an access entry."""
    entries = build_matrix()
    have = {(e.arch, e.cpu, e.config.granule) for e in entries if e.group.endswith("access")}
    from reference.cpus import CPUS
    for (arch, name), cpu in CPUS.items():
        for g in cpu.s2_granules:
            assert (arch, name, g) in have, (arch, name, g)
    n1 = access_entries(get_cpu(A64, "neoverse-n1"))
    assert [e.config.granule.label + ("-hahd" if e.config.hd else "") for e in n1] == [
        "4k", "16k", "64k", "4k-hahd"]


@pytest.mark.qemu
def test_access_entries_run_end_to_end(tmp_path):
    """cortex-a57's access entries through run_matrix: case records for
    every case, every divergence one of the known QEMU families (judged
    again from the case file), case files that `walk` reads and `repro`
    re-runs: the DC ZVA family still diverges."""
    entries = [e for e in build_matrix(arch=A64, cpus=["cortex-a57"])
               if e.group == "aarch64 access"]
    outcome = run_matrix(entries, RunOptions(out=tmp_path, seed=2, cases_per_entry=2, jobs=1))
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    cases = [r for r in records if r["type"] == "case"]
    divergences = [r for r in records if r["type"] == "divergence"]
    assert len(cases) == 2 * len(entries) and all(c["not_run"] == 0 for c in cases)
    assert sum(c["probes"] for c in cases) >= 60 * len(cases)     # ~85-100 steps a case
    assert outcome.new_divergences == len(divergences)
    assert {d["kind"] for d in divergences} <= {"access", "data"}
    # Every divergence is one of the families test_access.py recognises.
    from harness.casefile import load_any_case
    from harness.judge.access import judge_access_case as judge
    cpu = get_cpu(A64, "cortex-a57")
    files = sorted({d["case_file"] for d in divergences})
    assert files, "no divergence: the DC ZVA family should show on every QEMU measured"
    for name in files:
        path = tmp_path / name
        case = load_any_case(path)
        data = json.loads(path.read_text())
        rows = np.array([[int(v, 16) if isinstance(v, str) else v for v in
                          (p["kind_code"],) + tuple(p[w] for w in ("data0", "esr", "far", "hpfar",
                                                                      "vector", "elr", "data1"))]
                         for p in data["observed"]["probes"]], dtype=np.uint64)
        j = judge(case, rows, ())
        for v in j.divergences:
            assert any(pred(cpu, v.step, v) for pred in KNOWN_QEMU_FAMILIES.values()), v.describe()
    walk = subprocess.run([sys.executable, "-m", "harness.cli", "walk", str(tmp_path / files[0]),
                           "--probe", "0"], capture_output=True, text=True, cwd=ROOT)
    assert walk.returncode == 0 and walk.stdout.splitlines()[1].startswith("step 0: ")
    repro = subprocess.run([sys.executable, "-m", "harness.cli", "repro",
                            str(tmp_path / files[0]), "--no-baseline"],
                           capture_output=True, text=True, cwd=ROOT)
    assert repro.returncode == 1, repro.stdout + repro.stderr
    assert repro.stdout.splitlines()[0].startswith("new divergence: "), repro.stdout
    assert "access and maintenance steps" in repro.stdout
