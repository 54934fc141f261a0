"""CPU models: every stage-2 property decoded from the ID register values.

Each expected value is decoded here by hand, nibble by nibble, with the
field positions of the Arm ARM (DDI 0487, D19.2 / G8.2):

ID_AA64MMFR0_EL1: PARange [3:0], TGran16 [23:20], TGran64 [27:24],
  TGran4 [31:28], TGran16_2 [35:32], TGran64_2 [39:36], TGran4_2 [43:40].
  PARange 0b0010 = 40 bits, 0b0100 = 44, 0b0101 = 48, 0b0110 = 52 (FEAT_LPA).
  TGran4/TGran64: 0b0000 supported, 0b0001 (4K only) supported with 52-bit
  addresses (FEAT_LPA2), 0b1111 not supported.  TGran16: 0b0000 not
  supported, 0b0001 supported, 0b0010 supported with 52-bit addresses.
  TGranX_2: 0b0000 "as TGranX", 0b0001 not supported, 0b0010 supported,
  0b0011 supported with 52-bit addresses.
ID_AA64MMFR1_EL1: HAFDBS [3:0] (1 AF, 2 AF + dirty), XNX [31:28].
ID_AA64MMFR2_EL1: ST [31:28] (FEAT_TTST), FWB [43:40] (FEAT_S2FWB), BBM [55:52].
ID_MMFR4 (AArch32): XNX [11:8].
"""
from __future__ import annotations

import pytest
from strategies import CPU_FACTS

from reference.arch import Arch, Granule
from reference.cpus import CPUS, get_cpu

G4, G16, G64 = Granule.G4K, Granule.G16K, Granule.G64K


class TestIdRegisterValues:
    """The ID values are the ones QEMU 7.2 reports (DESIGN.md, qemu.md Part B)."""

    @pytest.mark.parametrize("name, mmfr0, mmfr1, mmfr2", [
        ("cortex-a35", 0x101122, 0, 0),
        ("cortex-a53", 0x1122, 0, 0),
        ("cortex-a57", 0x1124, 0, 0),
        ("cortex-a72", 0x1124, 0, 0),
        ("cortex-a76", 0x101122, 0x10212122, 0x1011),
        ("neoverse-n1", 0x101125, 0x10212122, 0x1011),
        ("max", 0x0000032310201126, 0x0000011010211122, 0x1021011010011011),
    ])
    def test_aarch64_registers(self, name, mmfr0, mmfr1, mmfr2):
        cpu = get_cpu(Arch.AARCH64, name)
        assert (cpu.reg("ID_AA64MMFR0_EL1"), cpu.reg("ID_AA64MMFR1_EL1"),
                cpu.reg("ID_AA64MMFR2_EL1")) == (mmfr0, mmfr1, mmfr2)

    def test_the_models_are_the_fifteen_the_readme_names(self):
        """The CPU models are the fifteen QEMU -cpu names the README lists, no
        more and no fewer, and the property tests' hand-decoded table
        (strategies.CPU_FACTS) holds exactly them, so that
        test_matches_strategy_facts checks every model.  A model added to
        reference/cpus.py without its facts decoded fails here."""
        a64 = ("cortex-a35", "cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76",
               "neoverse-n1", "max", "cortex-a55", "a64fx", "neoverse-v1", "cortex-a710",
               "neoverse-n2")
        a32 = ("cortex-a15", "cortex-a7", "max")
        expected = {(Arch.AARCH64, n) for n in a64} | {(Arch.AARCH32, n) for n in a32}
        assert set(CPUS) == expected
        assert set(CPU_FACTS) == expected

    def test_unknown_model_is_rejected_with_the_known_names(self):
        with pytest.raises(ValueError, match="cortex-a53"):
            get_cpu(Arch.AARCH64, "cortex-a9")


class TestPAMax:
    """PAMax = ID_AA64MMFR0_EL1.PARange [3:0]; 40 bits for AArch32 LPAE."""

    @pytest.mark.parametrize("arch, name, pamax", [
        (Arch.AARCH64, "cortex-a35", 40),   # 0x101122 [3:0] = 0x2 -> 40
        (Arch.AARCH64, "cortex-a53", 40),   # 0x1122   [3:0] = 0x2 -> 40
        (Arch.AARCH64, "cortex-a57", 44),   # 0x1124   [3:0] = 0x4 -> 44
        (Arch.AARCH64, "cortex-a72", 44),   # 0x1124   [3:0] = 0x4 -> 44
        (Arch.AARCH64, "cortex-a76", 40),   # 0x101122 [3:0] = 0x2 -> 40
        (Arch.AARCH64, "neoverse-n1", 48),  # 0x101125 [3:0] = 0x5 -> 48
        (Arch.AARCH64, "max", 52),          # ...1126  [3:0] = 0x6 -> 52
        (Arch.AARCH32, "cortex-a15", 40),   # LPAE: 40-bit physical addresses
        (Arch.AARCH32, "cortex-a7", 40),
        (Arch.AARCH32, "max", 40),
    ])
    def test_pamax(self, arch, name, pamax):
        assert get_cpu(arch, name).pamax == pamax


class TestGranules:
    """Stage-2 granules from TGranX_2, falling back to TGranX when 0."""

    @pytest.mark.parametrize("name, granules", [
        # 0x101122: TGran4 [31:28] = 0 (yes), TGran64 [27:24] = 0 (yes),
        # TGran16 [23:20] = 1 (yes); all _2 fields 0 -> as stage 1.
        ("cortex-a35", (G4, G16, G64)),
        # 0x1122: TGran16 [23:20] = 0 -> 16K not supported.
        ("cortex-a53", (G4, G64)),
        # 0x1124: as a53 for the granules.
        ("cortex-a57", (G4, G64)),
        ("cortex-a72", (G4, G64)),
        ("cortex-a76", (G4, G16, G64)),   # 0x101122 as a35
        ("neoverse-n1", (G4, G16, G64)),  # 0x101125: TGran16 = 1
        # max 0x0000032310201126: TGran4_2 [43:40] = 3, TGran64_2 [39:36] = 2,
        # TGran16_2 [35:32] = 3: all supported at stage 2.
        ("max", (G4, G16, G64)),
    ])
    def test_aarch64_stage2_granules(self, name, granules):
        cpu = get_cpu(Arch.AARCH64, name)
        assert cpu.s2_granules == granules
        for g in Granule:
            assert cpu.s2_granule_supported(g) == (g in granules)

    @pytest.mark.parametrize("name", ["cortex-a15", "cortex-a7", "max"])
    def test_aarch32_is_4k_only(self, name):
        # AArch32 stage 2 (VTCR) has no TG0: the granule is always 4K.
        assert get_cpu(Arch.AARCH32, name).s2_granules == (G4,)


class TestFeatures:
    """FEAT_LPA/LPA2/TTST/XNX/HAFDBS/S2FWB and BBM, field by field."""

    @pytest.mark.parametrize("name, lpa, lpa2, ttst, xnx, hafdbs, s2fwb, bbm", [
        # MMFR1 = MMFR2 = 0: nothing beyond ARMv8.0.
        ("cortex-a35", False, False, False, False, 0, False, 0),
        ("cortex-a53", False, False, False, False, 0, False, 0),
        ("cortex-a57", False, False, False, False, 0, False, 0),
        ("cortex-a72", False, False, False, False, 0, False, 0),
        # MMFR1 0x10212122: HAFDBS [3:0] = 2, XNX [31:28] = 1.
        # MMFR2 0x1011: ST [31:28] = 0, FWB [43:40] = 0, BBM [55:52] = 0.
        ("cortex-a76", False, False, False, True, 2, False, 0),
        ("neoverse-n1", False, False, False, True, 2, False, 0),
        # max: PARange 6 -> FEAT_LPA; TGran4 [31:28] = 1 and TGran16 [23:20] = 2
        # (and TGran4_2 = TGran16_2 = 3) -> FEAT_LPA2; MMFR1 0x0000011010211122:
        # HAFDBS = 2, XNX [31:28] = 1; MMFR2 0x1021011010011011: ST [31:28] = 1,
        # FWB [43:40] = 1, BBM [55:52] = 2.
        ("max", True, True, True, True, 2, True, 2),
    ])
    def test_aarch64(self, name, lpa, lpa2, ttst, xnx, hafdbs, s2fwb, bbm):
        cpu = get_cpu(Arch.AARCH64, name)
        assert (cpu.feat_lpa, cpu.feat_lpa2, cpu.feat_ttst, cpu.feat_xnx, cpu.hafdbs,
                cpu.feat_s2fwb, cpu.bbm) == (lpa, lpa2, ttst, xnx, hafdbs, s2fwb, bbm)

    @pytest.mark.parametrize("name, g4_52, g16_52", [
        ("cortex-a76", False, False),   # TGran4 = 0, TGran16 = 1: 48-bit only
        ("max", True, True),            # TGran4_2 = 3, TGran16_2 = 3
    ])
    def test_52bit_granules(self, name, g4_52, g16_52):
        cpu = get_cpu(Arch.AARCH64, name)
        assert cpu.s2_granule_52bit(G4) == g4_52
        assert cpu.s2_granule_52bit(G16) == g16_52
        # 52-bit addresses with 64K are FEAT_LPA (PARange), never "LPA2".
        assert cpu.s2_granule_52bit(G64) is False

    @pytest.mark.parametrize("name, xnx, version", [
        ("cortex-a15", False, 7),   # ID_MMFR4 = 0: XNX [11:8] = 0; ARMv7-A LPAE
        ("cortex-a7", False, 7),
        ("max", True, 8),           # ID_MMFR4 = 0x00011110: XNX [11:8] = 1; ARMv8-A AArch32
    ])
    def test_aarch32(self, name, xnx, version):
        cpu = get_cpu(Arch.AARCH32, name)
        assert (cpu.feat_xnx, cpu.arch_version) == (xnx, version)
        # No AArch64 features in AArch32 (no HA/HD, no LPA, no nT).
        assert (cpu.feat_lpa, cpu.feat_lpa2, cpu.feat_ttst, cpu.hafdbs, cpu.bbm) == (
            False, False, False, 0, 0)

    @pytest.mark.parametrize("key", sorted(CPU_FACTS, key=lambda k: (k[0].value, k[1])))
    def test_matches_strategy_facts(self, key):
        # The hand-written table the property tests rely on agrees with the
        # model (both were decoded from the same ID values above).
        f, cpu = CPU_FACTS[key], CPUS[key]
        assert (cpu.pamax, cpu.s2_granules, cpu.feat_lpa, cpu.feat_lpa2, cpu.feat_ttst,
                cpu.feat_xnx, cpu.hafdbs, cpu.feat_s2fwb, cpu.bbm, cpu.arch_version) == (
            f.pamax, f.granules, f.lpa, f.lpa2, f.ttst, f.xnx, f.hafdbs, f.s2fwb, f.bbm,
            f.arch_version)


class TestGranuleFieldDecoding:
    """The TGranX / TGranX_2 rules on synthetic ID values, one encoding each."""

    @staticmethod
    def cpu_with(mmfr0):
        import dataclasses
        base = get_cpu(Arch.AARCH64, "cortex-a53")
        regs = tuple((n, mmfr0 if n == "ID_AA64MMFR0_EL1" else v) for n, v in base.id_regs)
        return dataclasses.replace(base, id_regs=regs)

    @pytest.mark.parametrize("mmfr0, granules", [
        (0x0000_0000_0000_0002, (G4, G64)),             # TGran4 = TGran64 = 0, TGran16 = 0
        (0x0000_0000_F000_0002, (G64,)),                # TGran4 [31:28] = 0xF: no 4K
        (0x0000_0000_0F00_0002, (G4,)),                 # TGran64 [27:24] = 0xF: no 64K
        (0x0000_0000_0010_0002, (G4, G16, G64)),        # TGran16 [23:20] = 1
        (0x0000_0100_0000_0002, (G64,)),                # TGran4_2 [43:40] = 1: not at stage 2
        (0x0000_0010_0000_0002, (G4,)),                 # TGran64_2 [39:36] = 1: not at stage 2
        (0x0000_0002_0000_0002, (G4, G16, G64)),        # TGran16_2 [35:32] = 2: 16K at stage 2 only
        (0x0000_0001_0010_0002, (G4, G64)),             # TGran16_2 = 1 overrides TGran16 = 1
    ])
    def test_stage2_support(self, mmfr0, granules):
        assert self.cpu_with(mmfr0).s2_granules == granules
