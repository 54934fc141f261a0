"""CPU models built from raw ID register values, the newer named cores,
and the comparison of a named model with what a QEMU build reports.

Field positions (Arm ARM DDI 0487 M.a, D24.2 / G8.2):
ID_AA64MMFR0_EL1: PARange [3:0], TGran16 [23:20], TGran64 [27:24],
  TGran4 [31:28], TGran16_2 [35:32], TGran64_2 [39:36], TGran4_2 [43:40].
ID_AA64MMFR1_EL1: HAFDBS [3:0], XNX [31:28].
ID_AA64MMFR2_EL1: ST [31:28] (FEAT_TTST), FWB [43:40], BBM [55:52].
ID_AA64MMFR3_EL1: S2PIE [15:12].
ID_DFR0 (AArch32): CopDbg [3:0]; 0b0100/0b0101 ARMv7 debug ("not
  permitted in Armv8"), 0b0110 and up ARMv8 and later (G8.2.84).
"""
from __future__ import annotations

import pytest

from reference.arch import Arch, Granule
from reference.casefmt import CaseFormatError, case_from_data, case_to_data
from reference.cpus import CPUS, CpuModel, ModelDifference, get_cpu, model_differences

A64, A32 = Arch.AARCH64, Arch.AARCH32
G4, G16, G64 = Granule.G4K, Granule.G16K, Granule.G64K

# -cpu max of QEMU 10.0.2, 10.0.13 and 11.1.3 as the guest stub read it
# (the three agree on these four registers).
MAX_10 = {"MIDR_EL1": 0x000F0510, "ID_AA64MMFR0_EL1": 0x2100032310201126,
          "ID_AA64MMFR1_EL1": 0x0110112010312122, "ID_AA64MMFR2_EL1": 0x1221011112011011,
          "ID_AA64PFR0_EL1": 0x1301001120110222}
# ID_AA64MMFR3_EL1 of QEMU 10.2's max (target/arm/tcg/cpu64.c at v10.2.0,
# 698104725e): TCRX, SCTLRX, S1PIE, S2PIE, AIE, MEC, Spec_FPACC = 1.
MMFR3_10_2 = 0x1000_0000_1100_1111


def features(cpu: CpuModel) -> tuple:
    return (cpu.pamax, cpu.s2_granules, cpu.feat_lpa, cpu.feat_lpa2, cpu.feat_ttst, cpu.feat_xnx,
            cpu.hafdbs, cpu.feat_s2fwb, cpu.bbm, cpu.feat_s2pie)


class TestNewerCores:
    """The cores QEMU 8.x added, decoded by hand from their registers."""

    @pytest.mark.parametrize("name, expected", [
        # MMFR0 0x101122: PARange 2 -> 40; TGran16 = 1 -> 16K; TGran4 =
        # TGran64 = 0 -> both; _2 fields 0 -> as stage 1.  MMFR1 0x10212122:
        # HAFDBS 2, XNX 1.  MMFR2 0x1011: ST 0, FWB 0, BBM 0.
        ("cortex-a55", (40, (G4, G16, G64), False, False, False, True, 2, False, 0, False)),
        # MMFR0 0x1122: TGran16 = 0 -> no 16K.  MMFR1 0x11212100: HAFDBS 0,
        # XNX [31:28] = 1.  MMFR2 0x1011.
        ("a64fx", (40, (G4, G64), False, False, False, True, 0, False, 0, False)),
        # MMFR0 0x101125: PARange 5 -> 48.  MMFR2 0x0220011102101011: ST
        # [31:28] = 0, FWB [43:40] = 1, BBM [55:52] = 2.
        ("neoverse-v1", (48, (G4, G16, G64), False, False, False, True, 2, True, 2, False)),
        # MMFR0 0x22200101122: PARange 2 -> 40; TGran4_2 = TGran64_2 =
        # TGran16_2 = 2: supported at stage 2, not with 52 bits (that is 3).
        # MMFR2 0x1221011110101011: ST = 1, FWB = 1, BBM = 2.
        ("cortex-a710", (40, (G4, G16, G64), False, False, True, True, 2, True, 2, False)),
        # MMFR0 0x22200101125: as a710 with PARange 5 -> 48; MMFR2
        # 0x1221011112101011: ST = 1, FWB = 1, BBM = 2.
        ("neoverse-n2", (48, (G4, G16, G64), False, False, True, True, 2, True, 2, False)),
    ])
    def test_decoded(self, name, expected):
        assert features(get_cpu(A64, name)) == expected

    def test_qemu_names(self):
        # The -cpu names QEMU 10.0 and 11.1 list for the virt machine.
        for name in ("cortex-a55", "a64fx", "neoverse-v1", "cortex-a710", "neoverse-n2"):
            assert (A64, name) in CPUS


class TestFromIdRegisters:
    def test_named_models_rebuild(self):
        # Every named model is its ID registers: rebuilt from them it
        # decodes the same (description aside).
        for (arch, name), cpu in CPUS.items():
            again = CpuModel.from_id_registers(arch, name, dict(cpu.id_regs),
                                               arch_version=cpu.arch_version)
            assert again.features() == cpu.features()
            assert model_differences(cpu, again) == ()

    def test_qemu_10_max(self):
        # MMFR0 0x2100032310201126: PARange 6 -> 52 (FEAT_LPA); TGran4 [31:28]
        # = 1 and TGran16 [23:20] = 2 (52-bit), TGran4_2 = 3, TGran16_2 = 3,
        # TGran64_2 = 2 -> FEAT_LPA2, all granules.  MMFR1
        # 0x0110112010312122: HAFDBS 2, XNX 1.  MMFR2 0x1221011112011011: ST
        # 1, FWB 1, BBM 2.  No ID_AA64MMFR3_EL1 read: S2PIE 0.
        cpu = CpuModel.from_id_registers(A64, "max", MAX_10)
        assert features(cpu) == (52, (G4, G16, G64), True, True, True, True, 2, True, 2, False)
        assert cpu.s2_granule_52bit(G4) and cpu.s2_granule_52bit(G16)
        with_mmfr3 = CpuModel.from_id_registers(A64, "max", MAX_10 | {"ID_AA64MMFR3_EL1": MMFR3_10_2})
        assert with_mmfr3.feat_s2pie

    @pytest.mark.parametrize("reg, value, attr, expected", [
        ("ID_AA64MMFR0_EL1", 0x0, "pamax", 32),                    # PARange 0
        ("ID_AA64MMFR0_EL1", 0x1, "pamax", 36),
        ("ID_AA64MMFR0_EL1", 0x3, "pamax", 42),
        ("ID_AA64MMFR0_EL1", 0x4, "pamax", 44),
        ("ID_AA64MMFR0_EL1", 0x6, "feat_lpa", True),               # PARange 52
        ("ID_AA64MMFR0_EL1", 0x5, "feat_lpa", False),
        ("ID_AA64MMFR0_EL1", 0x0000_0100_0010_0005, "s2_granules", (G16, G64)),   # TGran4_2 = 1
        ("ID_AA64MMFR0_EL1", 0x0000_0003_0020_0006, "feat_lpa2", True),          # TGran16_2 = 3
        ("ID_AA64MMFR1_EL1", 0x1, "hafdbs", 1),
        ("ID_AA64MMFR1_EL1", 0x2, "hafdbs", 2),
        ("ID_AA64MMFR1_EL1", 0x1000_0000, "feat_xnx", True),
        ("ID_AA64MMFR2_EL1", 0x1000_0000, "feat_ttst", True),
        ("ID_AA64MMFR2_EL1", 0x100_0000_0000, "feat_s2fwb", True),
        ("ID_AA64MMFR2_EL1", 0x10_0000_0000_0000, "bbm", 1),
        ("ID_AA64MMFR3_EL1", 0x1000, "feat_s2pie", True),
        ("ID_AA64MMFR3_EL1", 0x0100, "feat_s2pie", False),         # S1PIE only
    ])
    def test_each_field(self, reg, value, attr, expected):
        regs = {"ID_AA64MMFR0_EL1": 0x2} | {reg: value}
        assert getattr(CpuModel.from_id_registers(A64, "x", regs), attr) == expected

    @pytest.mark.parametrize("dfr0, version", [
        (0x02010555, 7),    # QEMU cortex-a15 / cortex-a7: CopDbg 5 (v7.1 debug)
        (0x03010066, 8),    # QEMU arm max (Cortex-A57 view): CopDbg 6 (Armv8 debug)
        (0x00000004, 7),
        (0x0000000B, 8),
    ])
    def test_aarch32_version_from_id_dfr0(self, dfr0, version):
        regs = {"ID_MMFR0": 0x10201105, "ID_DFR0": dfr0}
        assert CpuModel.from_id_registers(A32, "c", regs).arch_version == version

    @pytest.mark.parametrize("arch, regs, kw, message", [
        (A64, {"ID_AA64MMFR0_EL1": 2, "ID_MMFR0": 1}, {}, "ID_MMFR0 is not an ID register"),
        (A64, {"ID_AA64MMFR0_EL1": 1 << 64}, {}, "is not a 64-bit value"),
        (A64, {"ID_AA64MMFR0_EL1": -1}, {}, "is not a 64-bit value"),
        (A64, {"ID_AA64MMFR1_EL1": 2}, {}, "ID_AA64MMFR0_EL1 is needed"),
        (A32, {"ID_MMFR0": 1 << 32}, {}, "is not a 32-bit value"),
        (A32, {"ID_MMFR0": 0x10201105}, {}, "arch_version is needed"),
        (A32, {"ID_DFR0": 0x0}, {}, "arch_version is needed"),
    ])
    def test_bad_input_is_one_clear_error(self, arch, regs, kw, message):
        with pytest.raises(ValueError, match=message):
            CpuModel.from_id_registers(arch, "x", regs, **kw)

    def test_explicit_version_wins(self):
        cpu = CpuModel.from_id_registers(A32, "c", {"ID_DFR0": 0x5}, arch_version=8)
        assert cpu.arch_version == 8


    def test_the_same_registers_are_the_same_model_whatever_the_description(self):
        """-cpu max of Debian's 10.0.2 and 10.0.13 report the same ID
        registers; a run on both compares their models (harness.cli.run)
        and ran max on the first only while the description ("as QEMU
        10.0.2 reports it") took part in the comparison."""
        regs = dict(get_cpu(Arch.AARCH64, "cortex-a72").id_regs)
        a = CpuModel.from_id_registers(Arch.AARCH64, "max", regs, description="as QEMU 10.0.2 reports it")
        b = CpuModel.from_id_registers(Arch.AARCH64, "max", regs, description="as QEMU 10.0.13 reports it")
        assert a == b and hash(a) == hash(b)
        regs["ID_AA64MMFR0_EL1"] ^= 1          # another PARange: another CPU
        assert CpuModel.from_id_registers(Arch.AARCH64, "max", regs) != a


class TestModelDifferences:
    def test_qemu_10_max_against_the_7_2_table(self):
        # The named "max" is QEMU 7.2's; QEMU 10's reports other values for
        # all four memory-model registers, and the decoded properties they
        # change: PARange, granules, LPA/LPA2, TTST stay; HAFDBS 2 both.
        diffs = model_differences(get_cpu(A64, "max"), CpuModel.from_id_registers(A64, "max", MAX_10))
        regs = [d.what for d in diffs if d.what.startswith("ID_")]
        assert regs == ["ID_AA64MMFR0_EL1", "ID_AA64MMFR1_EL1", "ID_AA64MMFR2_EL1",
                        "ID_AA64PFR0_EL1"]
        assert [d for d in diffs if not d.what.startswith(("ID_", "MIDR"))] == []

    def test_a_feature_difference_is_named(self):
        n1 = get_cpu(A64, "neoverse-n1")
        observed = CpuModel.from_id_registers(
            A64, "neoverse-n1", dict(n1.id_regs) | {"ID_AA64MMFR2_EL1": 0x1011 | 1 << 28})
        assert model_differences(n1, observed) == (
            ModelDifference("ID_AA64MMFR2_EL1", 0x1011, 0x1000_1011),
            ModelDifference("FEAT_TTST", False, True))
        assert model_differences(n1, observed)[0].describe() == (
            "ID_AA64MMFR2_EL1: model 0x1011, observed 0x10001011")

    def test_arch_must_match(self):
        with pytest.raises(ValueError):
            model_differences(get_cpu(A64, "max"), get_cpu(A32, "max"))


class TestCaseFileCarriesDerivedModels:
    def _case(self, cpu):
        from reference.config import aarch64_config
        from reference.generate import MemoryMap, generate_case
        mmap = MemoryMap(ram=((0x4000_0000, 0x4000_0000),), empty=(0x0B00_0000,))
        return generate_case(cpu, aarch64_config(G4, 48, 0, ps_bits=48), 1, "k",
                             (0x4100_0000, 0x200_0000), mmap)

    def test_named_model_writes_no_model(self):
        data = case_to_data(self._case(get_cpu(A64, "neoverse-n2")), with_outcomes=False)
        assert "cpu_model" not in data
        assert case_from_data(data).cpu == get_cpu(A64, "neoverse-n2")

    def test_derived_model_round_trips(self):
        cpu = CpuModel.from_id_registers(A64, "max", MAX_10, description="QEMU 10.0.13 max")
        data = case_to_data(self._case(cpu), with_outcomes=False)
        assert data["cpu_model"]["id_registers"]["ID_AA64MMFR0_EL1"] == "0x2100032310201126"
        assert case_from_data(data).cpu == cpu

    def test_bad_model_is_a_format_error(self):
        cpu = CpuModel.from_id_registers(A64, "max", MAX_10)
        data = case_to_data(self._case(cpu), with_outcomes=False)
        data["cpu_model"]["id_registers"]["ID_BOGUS"] = "0x1"
        with pytest.raises(CaseFormatError, match="cpu_model: ID_BOGUS is not an ID register"):
            case_from_data(data)
