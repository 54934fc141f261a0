"""Triage at a glance (harness/report/rootcause.py, text.py, casefiles.py,
harness/casefile.py), on hand-built records: no QEMU.

The configurations below are judged by the reference (reference.catalogue
.judge), never by a constant of the test: VTCR_EL2 0x80023598 is T0SZ = 24
(40-bit IPA), SL0 = 0b10 with TG0 = 4K (start level 0), PS = 0b010 (40
bits); AArch64.S2InconsistentSL accepts a 40-bit IPA from level 0 with 4K
(levels 0..3 resolve 48 bits; a 40-bit IPA needs 2 level-0 entries).  The
AArch32 VTCR 0x80003598 has SL0 = 0b10, reserved (AArch32.S2Walk): a
Translation fault at level 1 for every probe."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.casefile import case_for_file, load_case_data, regenerate_fanout, save_case
from harness.plan import VIRT_EMPTY
from harness.qemu.boot import BatchStatus, FailureKind
from harness.records import (
    BatchRecord,
    CaseRecord,
    CaseStatus,
    CrashRecord,
    DivergenceRecord,
    RunHeader,
    ShrinkRecord,
    record_line,
)
from harness.report.casefiles import prune_case_files
from harness.report.load import load_run
from harness.report.rootcause import CauseKind, config_verdict, root_causes
from harness.report.text import (
    family_presence_table,
    headline,
    presence_table,
    render_terminal,
    render_text,
)
from harness.vocabulary import FANOUT_AIM, DivergenceKind, FamilyKey
from reference.arch import Arch
from reference.cpus import get_cpu
from reference.generate import MemoryMap, generate_case

K1 = "0x80023598"
A32_RESERVED = "0x80003598"
VALID_4K_40 = "0x80023558"      # SL0 = 0b01: start level 1


def header(**kw) -> RunHeader:
    base = dict(seed=1, cases_per_entry=3, fanout=16, shard=None, entries=2, batches=2, cases=6,
                argv=("s2diff", "run"), started="", qemu=(("aarch64", "QEMU 7.2.22"),),
                baseline=None)
    base.update(kw)
    return RunHeader(**base)


def batch(n: int, arch: str = "aarch64", cpu: str = "max", **kw) -> BatchRecord:
    base = dict(batch=n, arch=arch, cpu=cpu, status=BatchStatus.COMPLETED, images=3,
                images_done=3, elapsed=1.0, argv=("qemu",), qemu_version="QEMU 7.2.22",
                diagnostic="")
    base.update(kw)
    return BatchRecord(**base)


def case(key: str, n: int, *, vtcr: str = K1, arch: str = "aarch64", cpu: str = "max",
         probes: int = 100, passed: int = 0, diverged: int = 100, entry: str | None = None,
         group: str = "--vtcr", valid: bool = True) -> CaseRecord:
    return CaseRecord(key=key, entry=entry or key.split("#")[0], group=group, arch=arch, cpu=cpu,
                      vtcr=vtcr, vttbr="0x48000000", valid=valid, kvm=False, batch=n,
                      status=CaseStatus.DIVERGE if diverged else CaseStatus.PASS,
                      probes=probes, passed=passed, diverged=diverged, not_run=0)


def div(key: str, n: int, probe: int, expected: str, observed: str, *, count: int = 1,
        vtcr: str = K1, arch: str = "aarch64", cpu: str = "max", aim: str = "L3 page",
        known: str | None = None, case_file: str | None = None,
        kind: DivergenceKind = DivergenceKind.PROBE, raw=None) -> DivergenceRecord:
    return DivergenceRecord(
        kind=kind, probe=probe, ipa="0x1000", at="S12E1R", aim=aim, arch=arch, cpu=cpu,
        granule="4k", config="", vtcr=vtcr, vttbr="0x48000000", expected=(expected,),
        permitted=None, observed=observed, observed_text="", raw=raw, count=count,
        key=key, entry=key.split("#")[0], group="--vtcr", batch=n, qemu_version="QEMU 7.2.22",
        argv=None, known=known, case_file=case_file)


def write(path: Path, records) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "results.jsonl", "w") as f:
        for r in records:
            f.write((json.dumps(r) if isinstance(r, dict) else record_line(r)) + "\n")
    return path


def k1_records(cases: int = 5) -> list:
    """A k1-like run: every probe of every case faults 'translation L0'
    whatever the reference expects (60 + 40 = 100 probes per case)."""
    recs: list = [header(cases=cases), batch(0)]
    for i in range(cases):
        key = f"aarch64/max/vtcr-{K1}#{i}"
        recs += [case(key, 0),
                 div(key, 0, 0, "ok L3", "translation L0", case_file=f"cases/k{i}.json"),
                 div(key, 0, 60, "ok L3", "translation L0", count=59, aim=FANOUT_AIM,
                     case_file=f"cases/k{i}.json"),
                 div(key, 0, 1, "permission L2", "translation L0", count=1,
                     case_file=f"cases/k{i}.json"),
                 div(key, 0, 70, "permission L2", "translation L0", count=39, aim=FANOUT_AIM,
                     case_file=f"cases/k{i}.json")]
    return recs


class TestConfigVerdict:
    def test_the_reference_judges_the_record(self):
        v = config_verdict("aarch64", "max", K1, "0x48000000")
        assert (v.valid, v.geometry) == (True, "4K, 40-bit IPA, start level 0, 40-bit output")
        v = config_verdict("arm", "cortex-a15", A32_RESERVED, "0x48000000")
        assert not v.valid and v.faults == ("translation L1",)
        assert v.rule_names == ("AArch32.S2Walk",)
        assert config_verdict("aarch64", "no-such-cpu", K1, "0") is None


class TestRootCauses:
    def test_a_rejected_configuration_is_one_root_cause(self, tmp_path):
        """Five cases, four families: one root cause named by the
        configuration, every probe counted, the families folded in."""
        run = load_run([write(tmp_path, k1_records())])
        causes = root_causes(run)
        assert len(causes) == 1
        c = causes[0]
        assert c.kind is CauseKind.CONFIGURATION and c.is_new
        assert c.title == ("QEMU rejects a configuration the architecture accepts: "
                           "4K, 40-bit IPA, start level 0, 40-bit output")
        assert (c.new, c.known, len(c.families), len(c.cases)) == (500, 0, 4, 5)
        assert "translation L0" in c.verdict and "VTCR_EL2" in c.verdict

    def test_a_case_that_mostly_passes_is_not_a_configuration(self, tmp_path):
        """The classifier can say no: with half the probes passing, the
        same records are families, not a configuration."""
        recs = k1_records(1)
        recs[2] = case(f"aarch64/max/vtcr-{K1}#0", 0, probes=200, passed=100, diverged=100)
        causes = root_causes(load_run([write(tmp_path, recs)]))
        assert {c.kind for c in causes} == {CauseKind.FAMILY}
        # ok L3 and permission L2 differ in kind: two family root causes.
        assert len(causes) == 2

    def test_a_configuration_the_reference_rejects(self, tmp_path):
        """AArch32 reserved SL0: QEMU's level-0 fault against the
        reference's level-1 one, named by the rule."""
        recs: list = [header(), batch(0, "arm", "cortex-a15")]
        for i in range(2):
            key = f"arm/cortex-a15/4k/ipa40/sl0-2/reserved-SL0#{i}"
            recs += [case(key, 0, vtcr=A32_RESERVED, arch="arm", cpu="cortex-a15", valid=False),
                     div(key, 0, 0, "translation L1", "translation L0", count=100,
                         vtcr=A32_RESERVED, arch="arm", cpu="cortex-a15")]
        causes = root_causes(load_run([write(tmp_path, recs)]))
        assert [(c.kind, c.title) for c in causes] == [
            (CauseKind.CONFIGURATION, "AArch32.S2Walk: SL0=0b10 is reserved")]

    def test_families_differing_by_level_are_one_root_cause(self, tmp_path):
        """ok L1/L2/L3 -> permission at the same levels (named and fan-out
        probes) is one disagreement: one root cause."""
        recs: list = [header(), batch(0, cpu="cortex-a76")]
        key = "aarch64/cortex-a76/4k/ipa40#0"
        recs += [case(key, 0, vtcr=VALID_4K_40, cpu="cortex-a76", probes=1000, passed=990,
                      diverged=10)]
        for level, probe in ((1, 3), (2, 4), (3, 5)):
            recs.append(div(key, 0, probe, f"ok L{level}", f"permission L{level}",
                            vtcr=VALID_4K_40, cpu="cortex-a76", aim=f"L{level} block DBM write"))
        causes = root_causes(load_run([write(tmp_path, recs)]))
        assert [(c.kind, c.title, len(c.families)) for c in causes] == [
            (CauseKind.FAMILY, "expected ok L1, L2, L3; QEMU permission L1, L2, L3", 3)]

    def test_a_localized_family_is_named_by_its_field(self, tmp_path):
        recs: list = [header(), batch(0, cpu="cortex-a76")]
        key = "aarch64/cortex-a76/4k/ipa40#0"
        recs += [case(key, 0, vtcr=VALID_4K_40, cpu="cortex-a76", probes=1000, passed=998,
                      diverged=2),
                 div(key, 0, 3, "ok L1", "permission L1", vtcr=VALID_4K_40, cpu="cortex-a76",
                     case_file="cases/a.json"),
                 div(key, 0, 4, "ok L2", "permission L2", vtcr=VALID_4K_40, cpu="cortex-a76",
                     case_file="cases/a.json"),
                 ShrinkRecord(family=FamilyKey("aarch64", "probe", ("ok L1",), "permission L1",
                                               "page"),
                              case_file="cases/a.json", probe=3, min_case="cases/a.min.json",
                              report="cases/a.min.txt", level=1, address="0x48001008",
                              field="S2AP (bits[7:6]) = 01 for AT S12E1W")]
        run = load_run([write(tmp_path, recs)])
        causes = root_causes(run)
        assert [(c.kind, c.title) for c in causes] == [
            (CauseKind.DESCRIPTOR, "L1 descriptor: S2AP (bits[7:6]) = 01 for AT S12E1W")]
        text = render_text(run, tmp_path)
        assert "minimal:   s2diff repro cases/a.min.json" in text
        assert "explained: cases/a.min.txt" in text

    def test_known_root_cause(self, tmp_path):
        recs: list = [header(), batch(0)]
        key = "aarch64/max/x#0"
        recs += [case(key, 0, vtcr=VALID_4K_40, probes=100, passed=99, diverged=1),
                 div(key, 0, 3, "address-size L1", "ok", vtcr=VALID_4K_40, known="qemu-oa")]
        run = load_run([write(tmp_path, recs)])
        causes = root_causes(run)
        assert [c.status for c in causes] == ["known (qemu-oa)"]
        assert headline(run, causes) == "known only: qemu-oa"


class TestTerminal:
    def test_k1_leads_with_one_root_cause_and_its_commands(self, tmp_path):
        out = write(tmp_path / "run", k1_records())
        text = render_terminal(load_run([out]))
        lines = text.splitlines()
        assert lines[0] == "NEW: 1 root cause of new divergences (500 probes)"
        assert lines[1].startswith(" 1. NEW  QEMU rejects a configuration the architecture")
        assert f"repro:     s2diff repro {out}/cases/k0.json" in text
        assert len(lines) < 40
        # Commands stay whole; everything else fits 80 columns.
        assert all(len(ln) <= 80 for ln in lines if "s2diff " not in ln)

    def test_clean_run(self, tmp_path):
        recs = [header(), batch(0), case("a#0", 0, vtcr=VALID_4K_40, probes=10, passed=10,
                                         diverged=0)]
        run = load_run([write(tmp_path, recs)])
        assert headline(run, root_causes(run)) == "CLEAN: all 10 probes passed"


class TestSeveralQemus:
    def test_root_causes_by_qemu_version(self, tmp_path):
        """The same batch on two QEMUs (records labelled): present on one,
        absent on the other; a third QEMU ran nothing of it."""
        recs: list = [{**header().to_json(), "qemus": [
            {"label": "7.2", "version": "QEMU 7.2.22"}, {"label": "11.1", "version": "QEMU 11.1.3"},
            {"label": "10.0", "version": "QEMU 10.0.13"}]}]
        key = "aarch64/max/x#0"
        for label, bad in (("7.2", True), ("11.1", False)):
            recs.append({**batch(0).to_json(), "qemu": label})
            recs.append({**case(key, 0, vtcr=VALID_4K_40, probes=100, passed=99 if bad else 100,
                                diverged=1 if bad else 0).to_json(), "qemu": label})
            if bad:
                recs.append({**div(key, 0, 3, "address-size L1", "ok", vtcr=VALID_4K_40).to_json(),
                             "qemu": label})
        run = load_run([write(tmp_path, recs)])
        assert len(run.cases) == 2      # the QEMU label is part of a record's identity
        causes = root_causes(run)
        table = presence_table(run, causes)
        # Columns by version number (not as strings, where 10.0 < 7.2).
        assert table[1].split() == ["7.2", "10.0", "11.1"]
        assert table[2].endswith("present  not run   absent")
        families = family_presence_table(run)
        assert families[0] == "divergence families x QEMU (present / absent / not run):"
        assert families[2].startswith("page: address-size L1 -> ok")
        assert families[2].endswith("present  not run   absent")
        # summary.txt carries both tables.
        text = render_text(run, tmp_path)
        assert table[0] in text and families[0] in text


def _crash(probe: int, signature: str, **kw) -> CrashRecord:
    """A crash record of probe ``probe`` of one max case on 10.0.2."""
    fields = dict(qemu="", qemu_version="QEMU 10.0.2", batch=0, arch="aarch64", cpu="max",
                  key="aarch64/max/x#0", entry="aarch64/max/x", group="--vtcr", probe=probe,
                  ipa="0x1000", at="S12E0R", aim="L1 block S2AP=00 read",
                  expected=("permission L1",), kind=FailureKind.CRASH, signature=signature,
                  signal=6, returncode=None, console="qemu-system-aarch64: ...",
                  case_file=None, reproduced=True)
    fields.update(kw)
    return CrashRecord(**fields)


class TestCrashes:
    def test_crash_records_group_by_signature(self, tmp_path):
        """Two probes, one signature: one crash family, first in the
        headline; a third crash of another signature is another family."""
        recs: list = [header(), batch(0)]
        sig = "target/arm/helper.c:N: do_ats_write: Assertion `x' failed. [SIGABRT]"
        for probe, signature in ((4, sig), (9, sig), (12, "hw/core/cpu.c:N: oops [SIGSEGV]")):
            recs.append(_crash(probe, signature,
                               case_file=f"cases/crash-{probe}.json" if probe != 9 else None,
                               reproduced=True if probe != 9 else None))
        run = load_run([write(tmp_path, recs)])
        causes = root_causes(run)
        assert [(c.kind, c.title) for c in causes] == [
            (CauseKind.CRASH, f"QEMU crash: {sig}"),
            (CauseKind.CRASH, "QEMU crash: hw/core/cpu.c:N: oops [SIGSEGV]")]
        assert causes[0].verdict == "QEMU crashes on 2 probes (aarch64 max, e.g. aarch64/max/x#0 probe 4)"
        assert headline(run, causes) == "CRASH: 2 crash families"


    def test_a_known_crash_family_says_how_many_probes_qemu_died_on(self, tmp_path):
        """In the terminal's known list a crash root cause gives its count
        of probes (it printed an empty count: 'ID:  -- QEMU crash: ...')."""
        recs: list = [header(), batch(0)]
        sig = "target/arm/helper.c:N: do_ats_write: Assertion `x' failed. [SIGABRT]"
        recs += [_crash(probe, sig, known="qemu-x-abort") for probe in (4, 9, 11)]
        text = render_terminal(load_run([write(tmp_path, recs)]), width=200)
        assert f"qemu-x-abort: 3 probes QEMU died on -- QEMU crash: {sig}" in text


    def test_a_crash_family_is_new_while_any_of_its_probes_is(self, tmp_path):
        """Two probes an entry describes and one it does not (its expected
        outcomes narrower than the family): the root cause is a new crash,
        whichever probe reproduced it; all three described: known."""
        sig = "target/arm/helper.c:N: do_ats_write: Assertion `x' failed. [SIGABRT]"
        mixed = [_crash(4, sig, known="qemu-x-abort"), _crash(9, sig, known="qemu-x-abort"),
                 _crash(11, sig, reproduced=None)]
        cause, = root_causes(load_run([write(tmp_path / "m", [header(), batch(0), *mixed])]))
        assert cause.is_new and cause.known_ids == ("qemu-x-abort",)
        known = [_crash(p, sig, known="qemu-x-abort") for p in (4, 9, 11)]
        cause, = root_causes(load_run([write(tmp_path / "k", [header(), batch(0), *known])]))
        assert not cause.is_new


class TestCaseFiles:
    def test_at_most_n_case_files_per_root_cause(self, tmp_path):
        """Five cases of one root cause: the first three (in run order)
        keep their files, the others are removed and unnamed."""
        out = write(tmp_path / "run", k1_records())
        (out / "cases").mkdir()
        for i in range(5):
            (out / "cases" / f"k{i}.json").write_text("{}")
        pruned = prune_case_files(out, 3)
        assert pruned.kept == ("cases/k0.json", "cases/k1.json", "cases/k2.json")
        assert pruned.removed == ("cases/k3.json", "cases/k4.json")
        assert sorted(p.name for p in (out / "cases").iterdir()) == ["k0.json", "k1.json",
                                                                      "k2.json"]
        run = load_run([out])
        assert {d.case_file for d in run.divergences} == {"cases/k0.json", "cases/k1.json",
                                                          "cases/k2.json", None}
        assert prune_case_files(out, 3).removed == ()

    def test_the_file_keeps_a_sample_and_regenerates_the_rest(self, tmp_path):
        """A generated case with 64 fan-out probes per entry: the file keeps
        the named probes and a few fan-out rows of the diverging entry; the
        whole fan-out comes back from the seed, identical."""
        cpu = get_cpu(Arch.AARCH64, "cortex-a57")
        from reference.arch import Granule
        from reference.config import aarch64_config
        config = aarch64_config(Granule.G4K, 40, 1, ps_bits=40)
        mmap = MemoryMap(ram=((0x40000000, 0x40000000),), empty=VIRT_EMPTY)
        full = generate_case(cpu, config, 5, "k#0", (0x48000000, 1 << 21), mmap, fanout=64)
        named = len(full.probes)
        row = 100
        d = div("k#0", 0, named + row, "ok L3", "translation L0", aim=FANOUT_AIM, count=64)
        kept, rows, renumber = case_for_file(full, [d])
        span = int(full.fanout.span[row])
        assert len(kept.fanout) == 4 and rows[named:][0] == named + min(
            np.nonzero(full.fanout.span == span)[0][:4].tolist() + [row])
        assert renumber[named + row] in range(named, named + 4)
        path = save_case(tmp_path / "c.json", kept, {"fanout_source": {"per_entry": 64}})
        from harness.casefile import load_case
        again, note = regenerate_fanout(load_case(path), load_case_data(path))
        assert note == f"fan-out regenerated from seed 5: {len(full.fanout):,} probes"
        assert again.fanout == full.fanout
        # Another generator (here: another seed in the file) is said so.
        data = load_case_data(path)
        data["seed"] = 6
        (tmp_path / "d.json").write_text(json.dumps(data))
        same, note = regenerate_fanout(load_case(tmp_path / "d.json"), data)
        assert "not regenerated" in note and len(same.fanout) == 4


@pytest.mark.parametrize("vtcr,valid", [(K1, True), ("0x800235d8", False)])
def test_vtcr_notice(vtcr, valid):
    """run --vtcr says the reference's verdict before it runs (SL0 = 0b11
    with 4K and a 40-bit IPA: start level -1 without FEAT_LPA2 on
    cortex-a53, AArch64.S2InvalidSL)."""
    from harness.cli.report import vtcr_notice
    from harness.matrix import build_matrix
    entry = build_matrix(arch=Arch.AARCH64, cpus=["max" if valid else "cortex-a53"],
                         vtcr=int(vtcr, 16))[0]
    lines = vtcr_notice(entry)
    if valid:
        assert lines[0] == (f"--vtcr {vtcr} on max: valid: 4k granule, 40-bit IPA, start level "
                            "0, 40-bit output")
    else:
        assert lines[0].startswith(f"--vtcr {vtcr} on cortex-a53: INVALID per the architecture")
        assert "AArch64.S2InvalidSL" in lines[0]
        assert "every probe must report stage-2 translation fault, level 0" in lines[1]
