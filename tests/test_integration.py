"""Integration: generated batches in the real QEMU, every raw observation
compared with the reference (issue: guest stubs and QEMU runner).

CPU models with 40-bit (cortex-a53), 44-bit (cortex-a57) and 52-bit (max)
PAMax on qemu-system-aarch64, and ARMv7 (cortex-a15) and ARMv8 (max)
AArch32 on qemu-system-arm.  Every disagreement must be a known
divergence of baseline.toml (each a QEMU bug with its evidence)."""
from __future__ import annotations

import collections
import functools
import subprocess
from pathlib import Path

import pytest

from harness.baseline import load_baseline
from harness.judge.case import judge_batch
from harness.judge.compare import ProbeStatus, judge_probe
from harness.kinds import CaseKind
from harness.matrix import build_matrix
from harness.plan import generate_batch, job_image, plan_batches, prepare_machine
from harness.qemu.boot import BatchStatus, run_batch
from harness.qemu.boot import BatchStatus as _BS
from harness.qemu.builds import version_number
from harness.qemu.launcher import find_qemu
from harness.qemu.models import machine_model, observed_model
from harness.records import DivergenceRecord
from reference.arch import Arch
from reference.cpus import CPUS, ModelDifference, model_differences
from reference.outcome import Translation

ROOT = Path(__file__).resolve().parent.parent
BASELINE = load_baseline(ROOT / "baseline.toml")

pytestmark = pytest.mark.qemu


@functools.lru_cache(maxsize=None)
def _virt_cpus(arch: Arch) -> frozenset[str]:
    """The -cpu names the QEMU in use lists for the virt machine (newer
    cores, e.g. neoverse-n2, exist only from QEMU 8.x on)."""
    out = subprocess.run([str(find_qemu(arch)), "-M", "virt", "-cpu", "help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return frozenset(line.split()[0] for line in out.splitlines()[1:] if line.strip())


# Where a QEMU build's named core reports other ID registers than its
# model, with the QEMU commit that explains it (reference/cpus.py): the
# registers and values each (core, QEMU version prefix) must differ in.
KNOWN_MODEL_DIFFERENCES = {
    # QEMU 8.1 7d8c283e10 stops advertising memory-mapped trace, which TCG
    # does not implement (ID_DFR0.MMapTrc [19:16]); 7.2 still reports it.
    ("cortex-a15", "7.2"): {"ID_DFR0": (0x0200_0505, 0x0201_0505)},
    ("cortex-a7", "7.2"): {"ID_DFR0": (0x0200_0505, 0x0201_0505)},
    # QEMU 11.1.3 reports ID_AA64ISAR1_EL1.BF16 [47:44] = 0 for neoverse-v1,
    # which has FEAT_BF16 (8676007eff, QEMU 9.2 "now report the presence of
    # FEAT_BF16"); not stage-2 relevant, reported as a cpu-model finding.
    ("neoverse-v1", "11.1"): {"ID_AA64ISAR1_EL1": (0x0011_1000_1021_1302,
                                                   0x0011_0000_1021_1302)},
}


@pytest.mark.parametrize("arch,cpu", sorted(CPUS, key=lambda k: (k[0].value, k[1])),
                         ids=lambda v: v.value if isinstance(v, Arch) else v)
def test_id_registers_match_the_cpu_model_table(arch, cpu):
    """The guest reads the ID registers.  A named core's must equal the
    values its model is built from (reference/cpus.py), but for the known
    differences above, which model_differences names register by register
    and which change no stage-2 property; max follows its QEMU: its model
    is what the registers decode to (harness.qemu.models)."""
    if cpu not in _virt_cpus(arch):
        pytest.skip(f"this QEMU has no -cpu {cpu}")
    result = run_batch(arch, cpu, [])
    assert result.status is BatchStatus.COMPLETED, result.diagnostic
    observed = observed_model(arch, cpu, result.id_registers, result.qemu_version)
    assert observed.arch_version == CPUS[(arch, cpu)].arch_version
    mm = machine_model(arch, cpu)
    assert dict(mm.registers) == dict(result.id_registers)
    if cpu == "max":
        assert mm.model == observed and mm.differences == ()
        return
    version = version_number(result.qemu_version)
    known = next((d for (name, v), d in KNOWN_MODEL_DIFFERENCES.items()
                  if name == cpu and version.startswith(v)), {})
    assert model_differences(CPUS[(arch, cpu)], observed) == tuple(
        ModelDifference(reg, model, seen) for reg, (model, seen) in known.items())
    assert mm.model == CPUS[(arch, cpu)]


def _labels(result) -> tuple[str, int]:
    if isinstance(result, Translation):
        return ("translation-ok", result.level)
    return (result.kind.value, result.level)


@pytest.mark.parametrize("arch,cpu", [(Arch.AARCH64, "cortex-a53"), (Arch.AARCH64, "cortex-a57"),
                                      (Arch.AARCH64, "max"), (Arch.AARCH32, "cortex-a15"),
                                      (Arch.AARCH32, "max")],
                         ids=lambda v: v.value if isinstance(v, Arch) else v)
def test_generated_batches_agree_with_the_reference(arch, cpu, tmp_path):
    entries = build_matrix(arch=arch, cpus=[cpu], probes=[CaseKind.AT])
    machine = prepare_machine([arch], {arch: None})
    arena = machine.arena[arch.value]
    batches = plan_batches(entries, 3, arena, 400)
    reached: dict[str, set[tuple[str, int]]] = collections.defaultdict(set)
    new = []
    for batch in batches:
        cases = generate_batch(batch, 7, arena, machine.memory_map(arch))
        result = run_batch(arch, cpu, [job_image(c) for c in cases])
        assert result.status is BatchStatus.COMPLETED, result.diagnostic
        for case, image in zip(cases, result.images):
            granule = case.config.granule.label if case.config.granule else "reserved"
            for probe, res, obs in zip(case.probes, case.permitted(), image.observations):
                verdict = judge_probe(arch, res, probe.ipa, obs, case.cpu.arch_version)
                assert verdict.status is not ProbeStatus.NOT_RUN
                for i in verdict.matched:
                    reached[granule].add(_labels(res.outcomes[i].result))
        for rec in judge_batch(batch, cases, result):
            if isinstance(rec, DivergenceRecord) and BASELINE.match(rec, rec.qemu_version) is None:
                new.append(rec)
    assert not new, "new divergences:\n" + "\n".join(
        f"{d.key} probe {d.probe}: expected {d.expected} observed {d.observed}"
        for d in new[:20])
    # Coverage: every outcome kind at every level of a 4K walk was both
    # predicted and observed (levels 1-3; level 0 and -1 exist only for some
    # configurations), and translations at every level of every granule.
    cpu_model = CPUS[(arch, cpu)]
    for granule in (g.label for g in cpu_model.s2_granules):
        for level in (2, 3):
            assert ("translation-ok", level) in reached[granule], (granule, level)
            assert ("translation", level) in reached[granule], (granule, level)
            assert ("permission", level) in reached[granule], (granule, level)
    kinds = ["translation", "address-size", "access-flag", "permission", "sea-on-walk"]
    if cpu_model.arch_version < 8:
        # ARMv7 LPAE may ignore descriptor bits [47:40] (the reference
        # permits both), and QEMU does: no Address size fault is required.
        kinds.remove("address-size")
    for kind in kinds:
        levels = {lvl for k, lvl in reached["4k"] if k == kind}
        assert {2, 3} <= levels, (kind, sorted(levels))
    if arch is Arch.AARCH64:
        # Configuration faults and IPAs out of range: level 0 on AArch64
        # (AArch64.S2Translate); AArch32 reports them at level 1.
        assert ("translation", 0) in reached["4k"]


@pytest.mark.parametrize("arch,cpu", [(Arch.AARCH64, "cortex-a57"), (Arch.AARCH64, "max"),
                                      (Arch.AARCH32, "cortex-a15")],
                         ids=lambda v: v.value if isinstance(v, Arch) else v)
def test_fan_out_probes_agree_with_the_reference(arch, cpu, tmp_path):
    """The bulk path end to end: fan-out probes in QEMU, judged by the span
    models, give no divergence outside the baseline, and every probe of
    every case is accounted for."""
    from harness.run import RunOptions, run_matrix
    entries = build_matrix(arch=arch, cpus=[cpu], probes=[CaseKind.AT])[::3]
    outcome = run_matrix(entries, RunOptions(out=tmp_path, seed=3, cases_per_entry=1, jobs=1,
                                             baseline=ROOT / "baseline.toml", fanout=64))
    assert outcome.batch_status.get(_BS.COMPLETED) == outcome.batch_status.total()
    assert outcome.new_divergences == 0
    import json
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    cases = [c for c in records if c["type"] == "case"]
    memory = collections.Counter(d["key"] for d in records
                                 if d["type"] == "divergence" and d["kind"] == "memory")
    assert len(cases) == len(entries)
    opted_in = {e.name for e in entries if e.opt_in}
    for c in cases:
        # The fan-out is there (5 entries or more), except in an opted-in
        # scenario (a misaligned VTTBR: named probes only, harness.plan).
        assert c["probes"] > 64 * 5 or c["entry"] in opted_in
        # Every probe passed or diverged; "diverged" also counts descriptor
        # writes (memory divergences), which are not probes.
        assert c["passed"] + c["diverged"] - memory[c["key"]] + c["not_run"] == c["probes"]
        assert c["not_run"] == 0
