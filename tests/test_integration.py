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
from harness.matrix import build_matrix
from harness.plan import generate_batch, job_image, plan_batches, prepare_machine
from harness.qemu.boot import BatchStatus, run_batch
from harness.qemu.boot import BatchStatus as _BS
from harness.qemu.builds import version_number
from harness.qemu.launcher import find_qemu
from harness.records import DivergenceRecord
from reference.arch import Arch
from reference.cpus import CPUS, ID_REGISTERS, CpuModel, model_differences
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


@pytest.mark.parametrize("arch,cpu", sorted(CPUS, key=lambda k: (k[0].value, k[1])),
                         ids=lambda v: v.value if isinstance(v, Arch) else v)
def test_id_registers_match_the_cpu_model_table(arch, cpu):
    """The guest reads the ID registers; they must equal the values the
    reference's CPU model is built from (reference/cpus.py)."""
    if cpu not in _virt_cpus(arch):
        pytest.skip(f"this QEMU has no -cpu {cpu}")
    result = run_batch(arch, cpu, [])
    assert result.status is BatchStatus.COMPLETED, result.diagnostic
    model = CPUS[(arch, cpu)]
    if cpu == "max" and not version_number(result.qemu_version).startswith("7.2."):
        # reference/cpus.py's max is QEMU 7.2's "all features QEMU
        # implements"; a later QEMU's max sets more ID register fields.
        # What the reference decodes from them for stage 2 (PAMax,
        # granules, FEAT_LPA/LPA2/TTST/XNX/HAFDBS/S2FWB/S2PIE) must agree.
        observed = CpuModel.from_id_registers(arch, cpu, dict(result.id_registers),
                                              arch_version=model.arch_version)
        names = set(ID_REGISTERS[arch])
        assert [d for d in model_differences(model, observed) if d.what not in names] == []
        return
    assert dict(result.id_registers) == dict(model.id_regs)


def _labels(result) -> tuple[str, int]:
    if isinstance(result, Translation):
        return ("translation-ok", result.level)
    return (result.kind.value, result.level)


@pytest.mark.parametrize("arch,cpu", [(Arch.AARCH64, "cortex-a53"), (Arch.AARCH64, "cortex-a57"),
                                      (Arch.AARCH64, "max"), (Arch.AARCH32, "cortex-a15"),
                                      (Arch.AARCH32, "max")],
                         ids=lambda v: v.value if isinstance(v, Arch) else v)
def test_generated_batches_agree_with_the_reference(arch, cpu, tmp_path):
    entries = build_matrix(arch=arch, cpus=[cpu])
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
    entries = build_matrix(arch=arch, cpus=[cpu])[::3]
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
    for c in cases:
        assert c["probes"] > 64 * 5           # the fan-out is there (5 entries or more)
        # Every probe passed or diverged; "diverged" also counts descriptor
        # writes (memory divergences), which are not probes.
        assert c["passed"] + c["diverged"] - memory[c["key"]] + c["not_run"] == c["probes"]
        assert c["not_run"] == 0
