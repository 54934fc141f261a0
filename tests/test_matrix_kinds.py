"""The matrix groups of the probe kinds (harness.matrix: s2pie, misaligned
VTTBR), the job image of an S2PIE case, and judging a probe the
architecture leaves UNPREDICTABLE (harness.judge.compare / bulk).  No QEMU."""
from __future__ import annotations

import dataclasses

import numpy as np

from harness.judge.bulk import judge_fanout
from harness.judge.compare import ProbeStatus, judge_probe
from harness.matrix import build_matrix, misaligned_vttbr_entries, s2pie_entries
from harness.plan import VIRT_EMPTY, Batch, CaseSpec, generate_batch, job_image
from harness.qemu.job import ObsKind, RawObservation
from reference.arch import Arch, AtKind, Granule
from reference.config import aarch32_config
from reference.cpus import CpuModel, get_cpu
from reference.generate import MemoryMap, OptIn, generate_case
from reference.walk import walk

A64, A32 = Arch.AARCH64, Arch.AARCH32
MMAP = MemoryMap(ram=((0x4000_0000, 0x4000_0000),), empty=VIRT_EMPTY)
ARENA = (0x4800_0000, 0x8000_0000)

# QEMU 11.1.3's max: ID_AA64MMFR3_EL1.S2PIE [15:12] = 1 (measured, see
# reference/cpus.py); the 7.2 table's max has no MMFR3 (S2PIE 0).
MAX = get_cpu(A64, "max")
MAX_S2PIE = CpuModel.from_id_registers(A64, "max", dict(MAX.id_regs)
                                       | {"ID_AA64MMFR3_EL1": 0x1000_0000_1100_1111})


class TestS2pieGroup:
    def test_only_models_with_feat_s2pie(self):
        assert not MAX.feat_s2pie and s2pie_entries(MAX, None, None) == []
        assert s2pie_entries(get_cpu(A64, "neoverse-n2"), None, None) == []
        assert s2pie_entries(get_cpu(A32, "max"), None, None) == []

    def test_kvm_choices_with_three_dirty_state_settings(self):
        """Every KVM choice of the model, with (HA, HD) = (0, 0), (1, 0),
        (1, 1) (max has HAFDBS 2), S2PIE set; names are unique."""
        entries = s2pie_entries(MAX_S2PIE, [40], [Granule.G4K, Granule.G64K])
        assert [(e.config.granule, e.config.ha, e.config.hd) for e in entries] == [
            (g, ha, hd) for g in (Granule.G4K, Granule.G64K) for ha, hd in ((0, 0), (1, 0), (1, 1))]
        assert all(e.config.s2pie == 1 and e.kvm and e.group == "aarch64 s2pie" for e in entries)
        assert len({e.name for e in entries}) == len(entries)
        assert entries[0].name == "aarch64/max/4k/ipa40/sl0-1-s2pie/kvm"

    def test_the_matrix_follows_the_model_given(self):
        """build_matrix with the model a QEMU reports for max: the s2pie
        group is there, and every max entry carries that model (the
        workers generate for it, not for the 7.2 table)."""
        entries = build_matrix(arch=A64, cpus=["max"], models={(A64, "max"): MAX_S2PIE})
        assert {e.group for e in entries} >= {"aarch64 s2pie", "aarch64 hafdbs"}
        assert all(e.model == MAX_S2PIE and e.cpu_model == MAX_S2PIE for e in entries)
        plain = build_matrix(arch=A64, cpus=["max"])
        assert "aarch64 s2pie" not in {e.group for e in plain}
        assert all(e.model is None for e in plain)

    def test_job_image_carries_s2pir(self):
        """The case draws S2PIR_EL2 (every Perm encoding once) and its job
        image carries it beside VTCR_EL2 with S2PIE (bit 36) set."""
        entry = next(e for e in build_matrix(arch=A64, cpus=["max"], ipa_sizes=[40],
                                             granules=[Granule.G4K], models={(A64, "max"): MAX_S2PIE})
                     if e.group == "aarch64 s2pie")
        (case,) = generate_batch(Batch(0, A64, "max", (CaseSpec(entry, 0),)), 1, ARENA, MMAP)
        assert case.cpu == MAX_S2PIE
        image = job_image(case)
        assert image.s2pir == case.config.s2pir
        assert sorted((image.s2pir >> (4 * i)) & 0xF for i in range(16)) == list(range(16))
        assert image.vtcr >> 36 & 1 == 1


class TestMisalignedVttbr:
    def test_one_kvm_choice_per_granule_with_the_opt_in(self):
        cpu = get_cpu(A64, "neoverse-n1")
        entries = misaligned_vttbr_entries(cpu)
        assert sorted(e.config.granule.label for e in entries) == ["16k", "4k", "64k"]
        assert all(e.opt_in == frozenset({OptIn.MISALIGNED_VTTBR}) for e in entries)

    def test_cases_get_a_misaligned_vttbr_and_no_fanout(self):
        """The generated VTTBR has RES0 base bits set (below the root
        table's size); the fan-out is dropped for these cases only."""
        entry = misaligned_vttbr_entries(get_cpu(A32, "cortex-a15"))[0]
        normal = dataclasses.replace(entry, opt_in=frozenset())
        batch = Batch(0, A32, "cortex-a15", (CaseSpec(entry, 0), CaseSpec(normal, 1)))
        odd, plain = generate_batch(batch, 5, ARENA, MMAP, fanout=8)
        # 40-bit IPA, SL0 = 1: level 1 resolves IPA[39:30], 1024 entries, an
        # 8 KiB root: VTTBR[12:3] must be 0 for an aligned base.
        assert odd.config.vttbr & 0x1FF8 != 0 and plain.config.vttbr & 0x1FF8 == 0
        assert len(odd.fanout) == 0 and len(plain.fanout) > 0


class TestUnpredictable:
    # cortex-a15 is ARMv7: a reserved VTCR.SL0 is UNPREDICTABLE there, with
    # no constraint (Arm ARM K1.1.32.2); ARMv8 makes it a level-1
    # Translation fault (AArch32.S2Walk), which is what the outcomes say.
    A15 = get_cpu(A32, "cortex-a15")
    CONFIG = dataclasses.replace(aarch32_config(40, 1), sl0=0b10)

    def _case(self, cpu):
        return generate_case(cpu, self.CONFIG, 3, "k", (0x4800_0000, 1 << 19), MMAP, fanout=16)

    def test_a_probe_outside_the_v8_outcomes_passes_as_unpredictable_on_v7(self):
        case = self._case(self.A15)
        result = walk(self.A15, case.config, case.memory(), 0x1000, AtKind.S12E1R)
        assert result.permits_anything
        # A successful translation, which the ARMv8 rule would forbid.
        ok = RawObservation(ObsKind.PAR, par=0x4000_0800)
        assert judge_probe(A32, result, 0x1000, ok, 7).status is ProbeStatus.UNPREDICTABLE
        assert ProbeStatus.UNPREDICTABLE.passed
        # The same observation on the ARMv8 AArch32 max diverges.
        v8 = get_cpu(A32, "max")
        v8_result = walk(v8, case.config, case.memory(), 0x1000, AtKind.S12E1R)
        assert not v8_result.permits_anything
        assert judge_probe(A32, v8_result, 0x1000, ok, 8).status is ProbeStatus.DIVERGE

    def test_bulk_passes_every_fanout_probe_on_v7_and_judges_them_on_v8(self):
        """Fan-out rows that all report a success: every one passes on the
        ARMv7 core, none on the ARMv8 one (each is a Translation fault
        there)."""
        for cpu, passed in ((self.A15, True), (get_cpu(A32, "max"), False)):
            case = self._case(cpu)
            n = len(case.fanout)
            rows = np.zeros((n, 8), dtype=np.uint64)
            rows[:, 0] = ObsKind.PAR.value
            rows[:, 1] = 0x4000_0800
            verdict = judge_fanout(case, rows)
            assert (verdict.passed, verdict.diverged) == ((n, 0) if passed else (0, n))
