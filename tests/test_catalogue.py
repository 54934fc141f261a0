"""Tests of reference/catalogue.py: the judge of one configuration, the
catalogue of valid configurations, and the KVM / Xen choices.

Geometry arithmetic used below (AArch64.S2InconsistentSL and
config.Geometry): a granule of 2^g bytes resolves stride = g - 3 bits per
level; the start level L resolves the IPA bits above
lsb(L) = g + (3 - L) * stride, i.e. start_bits = IPA - lsb(L), which must be
1 .. stride + 4; the start-level table holds 2^start_bits descriptors of 8
bytes, 2^max(0, start_bits - stride) concatenated tables.
    4K  (stride 9):  lsb(-1) = 48, lsb(0) = 39, lsb(1) = 30, lsb(2) = 21, lsb(3) = 12
    16K (stride 11): lsb(0) = 47, lsb(1) = 36, lsb(2) = 25, lsb(3) = 14
    64K (stride 13): lsb(1) = 42, lsb(2) = 29, lsb(3) = 16
"""
from __future__ import annotations

import pytest
from strategies import CPU_FACTS

from reference import catalogue as cat
from reference.arch import Arch, Granule
from reference.config import S2Config, aarch32_config, aarch64_config
from reference.cpus import CPUS, get_cpu
from reference.outcome import Fault, FaultKind

G4, G16, G64 = Granule.G4K, Granule.G16K, Granule.G64K
KVM, XEN = cat.Convention.KVM, cat.Convention.XEN


def a64(name: str):
    return get_cpu(Arch.AARCH64, name)


def a32(name: str):
    return get_cpu(Arch.AARCH32, name)


def rows(cpu, granule, ipa):
    """(start level, concatenated tables, root bytes, VTTBR alignment,
    output bits, DS, conventions) of every catalogue entry."""
    return [(e.start_level, e.geometry.concat, e.geometry.root_bytes, e.vttbr_align, e.oa_bits,
             e.config.ds, e.conventions)
            for e in cat.catalogue(cpu, [ipa], [granule])]


class TestKvmStartLevel:
    """kvm_get_vtcr: levels = ARM64_HW_PGTABLE_LEVELS(ipa - 4)
    = ((ipa - 4) - 4) // (PAGE_SHIFT - 3), at least 2; start level = 4 - levels."""

    @pytest.mark.parametrize("granule, ipa, level", [
        # 4K, PAGE_SHIFT - 3 = 9:
        (G4, 32, 2),   # (32-8)//9 = 24//9 = 2 levels -> L2; 32-21 = 11 bits: 4 tables
        (G4, 36, 1),   # 28//9 = 3 -> L1; 36-30 = 6 bits: 64 entries, 1 table
        (G4, 40, 1),   # 32//9 = 3 -> L1; 40-30 = 10 bits: 2 concatenated tables
        (G4, 42, 1),   # 34//9 = 3 -> L1; 12 bits: 8 tables
        (G4, 43, 1),   # 35//9 = 3 -> L1; 13 bits: 16 tables, the most allowed
        (G4, 44, 0),   # 36//9 = 4 -> L0; 44-39 = 5 bits
        (G4, 48, 0),   # 40//9 = 4 -> L0; 9 bits: 1 full table
        (G4, 52, 0),   # 44//9 = 4 -> L0; 13 bits: 16 tables (KVM never uses SL2/L-1)
        # 16K, PAGE_SHIFT - 3 = 11:
        (G16, 36, 2),  # 28//11 = 2 -> L2; 36-25 = 11 bits: 1 full table
        (G16, 40, 2),  # 32//11 = 2 -> L2; 15 bits: 16 tables
        (G16, 42, 1),  # 34//11 = 3 -> L1; 42-36 = 6 bits
        (G16, 48, 1),  # 40//11 = 3 -> L1; 12 bits: 2 tables
        (G16, 52, 0),  # 44//11 = 4 -> L0 (needs DS = 1); 52-47 = 5 bits
        # 64K, PAGE_SHIFT - 3 = 13:
        (G64, 32, 2),  # 24//13 = 1, raised to 2 -> L2; 32-29 = 3 bits
        (G64, 36, 2),  # 28//13 = 2 -> L2; 7 bits
        (G64, 42, 2),  # 34//13 = 2 -> L2; 13 bits: 1 full table
        (G64, 46, 2),  # 38//13 = 2 -> L2; 17 bits: 16 tables
        (G64, 47, 1),  # 39//13 = 3 -> L1; 47-42 = 5 bits
        (G64, 48, 1),  # 40//13 = 3 -> L1; 6 bits
    ])
    def test_formula(self, granule, ipa, level):
        """The start level follows the kernel's integer arithmetic."""
        assert cat.kvm_start_level(granule, ipa) == level

    @pytest.mark.parametrize("cpu", [c for c in CPUS.values() if c.arch is Arch.AARCH64],
                             ids=lambda c: c.name)
    def test_kvm_choice_is_listed_and_valid(self, cpu):
        """For every granule the CPU has and every IPA from 32 bits to PAMax,
        exactly one catalogue entry is KVM's choice."""
        for granule in cpu.s2_granules:
            for ipa in range(32, cpu.pamax + 1):
                marked = [e for e in cat.catalogue(cpu, [ipa], [granule]) if KVM in e.conventions]
                assert [e.start_level for e in marked] == [cat.kvm_start_level(granule, ipa)], \
                    (granule, ipa)


class TestCatalogue:
    """Entries with every value worked out by hand (see the module docstring)."""

    def test_4k_40_without_level_0(self):
        """cortex-a53 (PAMax 40): L1 with 2 tables only; level 0 needs PAMax >= 44.
        Root 2^10 entries * 8 = 8 KiB, VTTBR aligned to it; PS = PARange = 40."""
        assert rows(a64("cortex-a53"), G4, 40) == [(1, 2, 8192, 8192, 40, 0, (KVM, XEN))]

    def test_4k_40_with_level_0(self):
        """cortex-a57 (PAMax 44): also L0, resolving 40-39 = 1 bit: 2 entries, 16 bytes."""
        assert rows(a64("cortex-a57"), G4, 40) == [
            (0, 1, 16, 16, 44, 0, ()),
            (1, 2, 8192, 8192, 44, 0, (KVM, XEN)),
        ]

    def test_4k_36(self):
        """L1: 36-30 = 6 bits, 64 entries, 512 bytes.  L2 would need 15 bits
        (> 9 + 4) and L0 at least 40 bits."""
        assert rows(a64("cortex-a57"), G4, 36) == [(1, 1, 512, 512, 44, 0, (KVM, XEN))]

    def test_4k_48(self):
        """neoverse-n1 (PAMax 48): L0, 48-39 = 9 bits = one 4 KiB table."""
        assert rows(a64("neoverse-n1"), G4, 48) == [(0, 1, 4096, 4096, 48, 0, (KVM, XEN))]

    def test_4k_48_beyond_pamax(self):
        """AArch64.S2MinTxSZ: no IPA above PAMax (40 on cortex-a53)."""
        assert rows(a64("cortex-a53"), G4, 48) == []

    def test_4k_32_kvm_and_xen_differ(self):
        """KVM: 2 levels from L2, 32-21 = 11 bits = 4 tables (16 KiB).
        Xen ({32, T0SZ 32, root order 0, SL0 1}): L1, 2 bits = 4 entries (32 B)."""
        assert rows(a64("cortex-a53"), G4, 32) == [
            (1, 1, 32, 32, 40, 0, (XEN,)),
            (2, 4, 16384, 16384, 40, 0, (KVM,)),
        ]

    def test_4k_52_lpa2(self):
        """max (FEAT_LPA2): IPA > 48 needs DS = 1.  L-1 (SL2 = 1): 52-48 = 4
        bits, 16 entries, 128 B; L0: 13 bits, 16 tables, 64 KiB (KVM).
        With DS the output size is PAMax = 52."""
        assert rows(a64("max"), G4, 52) == [
            (-1, 1, 128, 128, 52, 1, ()),
            (0, 16, 65536, 65536, 52, 1, (KVM,)),
        ]
        minus1 = cat.catalogue(a64("max"), [52], [G4])[0]
        assert (minus1.config.sl2, minus1.config.sl0, minus1.config.t0sz) == (1, 0b00, 12)

    def test_16k_36(self):
        """L2: 36-25 = 11 bits = one full 16 KiB table."""
        assert rows(a64("neoverse-n1"), G16, 36) == [(2, 1, 16384, 16384, 48, 0, (KVM,))]

    def test_16k_40(self):
        """L1: 40-36 = 4 bits, 16 entries, 128 B (needs PAMax >= 42);
        L2: 15 bits = 16 concatenated tables, 256 KiB (KVM)."""
        assert rows(a64("neoverse-n1"), G16, 40) == [
            (1, 1, 128, 128, 48, 0, ()),
            (2, 16, 262144, 262144, 48, 0, (KVM,)),
        ]
        assert rows(a64("cortex-a35"), G16, 40) == [(2, 16, 262144, 262144, 40, 0, (KVM,))]

    def test_16k_48(self):
        """neoverse-n1: L1, 48-36 = 12 bits = 2 tables (KVM).  max adds L0
        with DS = 1 (1 bit, 16 B of descriptors, but the table base is at
        least 64-byte aligned when VTTBR_EL2[5:2] hold PA[51:48])."""
        assert rows(a64("neoverse-n1"), G16, 48) == [(1, 2, 32768, 32768, 48, 0, (KVM,))]
        assert rows(a64("max"), G16, 48) == [
            (0, 1, 16, 64, 52, 1, ()),
            (1, 2, 32768, 32768, 48, 0, (KVM,)),
        ]

    def test_64k_36_40_42(self):
        """L2 only: 7, 11 and 13 bits (128, 2048, 8192 entries); L1 needs
        at least 43 bits."""
        cpu = a64("cortex-a57")
        assert rows(cpu, G64, 36) == [(2, 1, 1024, 1024, 44, 0, (KVM,))]
        assert rows(cpu, G64, 40) == [(2, 1, 16384, 16384, 44, 0, (KVM,))]
        assert rows(cpu, G64, 42) == [(2, 1, 65536, 65536, 44, 0, (KVM,))]

    def test_64k_44(self):
        """L1: 44-42 = 2 bits, 32 B (PAMax 44 allows 64K L1); L2: 15 bits,
        4 tables, 256 KiB (KVM: (44-8)//13 = 2 levels)."""
        assert rows(a64("cortex-a57"), G64, 44) == [
            (1, 1, 32, 32, 44, 0, ()),
            (2, 4, 262144, 262144, 44, 0, (KVM,)),
        ]

    def test_64k_48(self):
        """L1: 6 bits, 512 B; L2 would need 19 bits (> 13 + 4)."""
        assert rows(a64("neoverse-n1"), G64, 48) == [(1, 1, 512, 512, 48, 0, (KVM,))]

    def test_missing_granule_gives_nothing(self):
        assert cat.catalogue(a64("cortex-a53"), [40], [G16]) == []

    def test_vtcr_values(self):
        """cortex-a53, 4K, 40-bit, L1: RES1 (1<<31) | PS 0b010 (0x20000) |
        TG0 0 | SH0 0b11 (0x3000) | ORGN0 0b01 (0x400) | IRGN0 0b01 (0x100) |
        SL0 0b01 (0x40) | T0SZ 24 (0x18) = 0x80023558."""
        (entry,) = cat.catalogue(a64("cortex-a53"), [40], [G4])
        assert entry.config.vtcr() == 0x80023558
        assert entry.other_oa_bits == (32, 36)
        assert entry.remark == "KVM's choice, Xen's choice"

    def test_remark_of_alternative(self):
        level0, _ = cat.catalogue(a64("cortex-a57"), [40], [G4])
        assert level0.remark == "legal alternative: 1 level more than KVM, no concatenation"

    def test_every_entry_has_the_architectures_geometry(self):
        """Each entry's start level and concatenation fit its IPA size as
        worked out here from the Arm ARM's walk, not from the catalogue's
        own judge (which built the entries, so re-judging them could not
        fail).  Below the start level each of the 4 - s - 1 levels resolves
        a full table, g - 3 bits (g: the granule's page-offset bits); the
        start level resolves the rest, at least 1 bit and at most g - 3 + 4
        (AArch64.S2InconsistentSL; AArch32.S2Walk the same with 4K), the
        bits beyond g - 3 by concatenating 2^(bits - (g - 3)) tables.  The
        IPA size stays within the CPU's PAMax as decoded by hand in
        strategies.CPU_FACTS (AArch64.S2MinTxSZ; 40 bits on AArch32), and
        only granules the CPU has appear."""
        checked = 0
        for key, cpu in CPUS.items():
            facts = CPU_FACTS[key]
            for e in cat.catalogue(cpu):
                g = e.granule.bits
                stride = g - 3
                levels = 4 - e.start_level
                assert e.geometry.levels == levels, e
                at_start = e.ia_bits - g - (levels - 1) * stride
                assert 1 <= at_start <= stride + 4, e
                assert e.geometry.concat == 1 << max(at_start - stride, 0), e
                assert e.ia_bits <= facts.pamax, e
                assert e.granule in facts.granules, e
                checked += 1
        assert checked > 100

    def test_aarch32(self):
        """AArch32 (4K, output 40 bits): 40-bit IPA from L1: 10 bits, 2 tables
        (KVM/arm and Xen).  32-bit: L1 with 2 bits (Xen), or L2 with 11 bits =
        4 tables.  35-bit: L1 only (5 bits, 256 B)."""
        cpu = a32("cortex-a15")
        assert rows(cpu, G4, 40) == [(1, 2, 8192, 8192, 40, 0, (KVM, XEN))]
        assert rows(cpu, G4, 32) == [(1, 1, 32, 32, 40, 0, (XEN,)),
                                     (2, 4, 16384, 16384, 40, 0, ())]
        assert rows(cpu, G4, 35) == [(1, 1, 256, 256, 40, 0, ())]
        (e,) = cat.catalogue(cpu, [40])
        assert e.config.vtcr() == 0x80003558   # T0SZ -8 = 0b1000, S = 1, SL0 = 1

    def test_default_sizes(self):
        assert {e.ia_bits for e in cat.catalogue(a64("max"))} == set(range(32, 53))
        assert {e.ia_bits for e in cat.catalogue(a32("max"))} == set(range(25, 41))


class TestLimits:
    def test_encodable_start_levels(self):
        """AArch64.S2StartLevel: 4K -1..3 (SL2:SL0), 16K 0..3, 64K 1..3."""
        assert cat.encodable_start_levels(G4) == (-1, 0, 1, 2, 3)
        assert cat.encodable_start_levels(G16) == (0, 1, 2, 3)
        assert cat.encodable_start_levels(G64) == (1, 2, 3)

    @pytest.mark.parametrize("cpu, granule, limits", [
        ("cortex-a53", G4, (25, 40)),   # MaxTxSZ 39 (no TTST), S2MinTxSZ 64 - 40
        ("neoverse-n1", G16, (25, 48)),
        ("max", G4, (16, 52)),          # TTST: MaxTxSZ 48; LPA2 with DS: 52
        ("max", G64, (17, 52)),         # TTST: MaxTxSZ 47 for 64K
    ])
    def test_ipa_limits(self, cpu, granule, limits):
        assert cat.ipa_limits(a64(cpu), granule) == limits


class TestXen:
    """xen/arch/arm/mmu/p2m.c pa_range_info: {PA size, T0SZ, root order, SL0}."""

    @pytest.mark.parametrize("row", [r for r in cat.XEN_AARCH64 if r[0] <= 48])
    def test_rows_are_valid_and_consistent(self, row):
        """On a CPU with that PA size, Xen's VTCR (4K, PS = the row's PA
        range) is valid and its root order is log2 of the concatenation."""
        pabits, t0sz, root_order, sl0 = row
        cpu = a64("max") if pabits > 44 else a64("cortex-a57") if pabits > 40 else a64("cortex-a53")
        config = S2Config(arch=Arch.AARCH64, t0sz=t0sz, sl0=sl0, tg0=0,
                          ps={32: 0, 36: 1, 40: 2, 42: 3, 44: 4, 48: 5}[pabits])
        v = cat.judge(cpu, config)
        assert v.valid
        assert (v.ia_bits, v.start_level, v.concat) == (pabits, 2 - sl0, 1 << root_order)
        assert cat.verdict_conventions(v)[-1] is XEN

    def test_52_bit_row_is_invalid(self):
        """{52, 12, 4, 2} leaves DS = 0: with FEAT_LPA the 4K minimum T0SZ is 16."""
        v = cat.judge(a64("max"), S2Config(arch=Arch.AARCH64, t0sz=12, sl0=2, ps=0b110))
        assert v.problems == ("AArch64.S2TxSZFaults: T0SZ 12 < minimum 16 with FEAT_LPA",)


def problem(cpu, config):
    v = cat.judge(cpu, config)
    assert not v.valid
    return v.problems, tuple(r.fault for r in v.readings)


TF0 = Fault(FaultKind.TRANSLATION, 0)
TF1 = Fault(FaultKind.TRANSLATION, 1)
ASF0 = Fault(FaultKind.ADDRESS_SIZE, 0)


class TestJudgeAArch64:
    """One test per rule: the problem names the pseudocode function."""

    def test_valid(self):
        v = cat.judge(a64("cortex-a53"), S2Config.from_vtcr(Arch.AARCH64, 0x80023558))
        assert v.valid and v.problems == () and v.choices == () and v.notes == ()
        assert (v.granule, v.ia_bits, v.start_level, v.levels, v.concat, v.root_bytes,
                v.vttbr_align, v.oa_bits) == (G4, 40, 1, 3, 2, 8192, 8192, 40)
        assert cat.verdict_conventions(v) == (KVM, XEN)

    def test_invalid_sl_level0_pamax(self):
        """0x80023598: SL0 = 0b10 -> 4K level 0, which needs PAMax >= 44."""
        assert problem(a64("cortex-a53"), S2Config.from_vtcr(Arch.AARCH64, 0x80023598)) == (
            ("AArch64.S2InvalidSL: start level 0 needs PAMax >= 44 (PAMax 40)",), (TF0,))

    def test_invalid_sl_16k_level1_pamax(self):
        assert problem(a64("cortex-a35"), aarch64_config(G16, 40, 1, ps_bits=40)) == (
            ("AArch64.S2InvalidSL: start level 1 needs PAMax >= 42 (PAMax 40)",), (TF0,))

    def test_invalid_sl_16k_level0_without_ds(self):
        assert problem(a64("neoverse-n1"), aarch64_config(G16, 48, 0, ps_bits=48)) == (
            ("AArch64.S2InvalidSL: start level 0 (SL0=0b11) needs DS=1",), (TF0,))

    def test_invalid_sl_64k_reserved(self):
        config = S2Config(arch=Arch.AARCH64, t0sz=24, sl0=0b11, tg0=0b01, ps=0b010)
        assert problem(a64("cortex-a53"), config) == (
            ("AArch64.S2InvalidSL: SL0=0b11 is reserved for 64K",), (TF0,))

    def test_invalid_sl_level3_without_ttst(self):
        config = S2Config(arch=Arch.AARCH64, t0sz=39, sl0=0b11, ps=0b010)
        assert problem(a64("cortex-a53"), config) == (
            ("AArch64.S2InvalidSL: start level 3 (SL0=0b11) needs FEAT_TTST",), (TF0,))

    def test_inconsistent_sl(self):
        """40-bit IPA from 4K level 2: 40-21 = 19 bits > 9 + 4."""
        config = S2Config(arch=Arch.AARCH64, t0sz=24, sl0=0b00, ps=0b010)
        assert problem(a64("cortex-a53"), config) == (
            ("AArch64.S2InconsistentSL: 40-bit IPA cannot start at level 2 with 4k "
             "(allowed 22..34 bits)",), (TF0,))

    def test_txsz_below_minimum_with_lpa(self):
        config = S2Config(arch=Arch.AARCH64, t0sz=12, sl0=0b10, ps=0b110)
        assert problem(a64("max"), config) == (
            ("AArch64.S2TxSZFaults: T0SZ 12 < minimum 16 with FEAT_LPA",), (TF0,))

    def test_txsz_below_minimum_without_lpa(self):
        """IMPLEMENTATION DEFINED: fault, or act as T0SZ 24 (a 40-bit walk from L1)."""
        v = cat.judge(a64("cortex-a53"), S2Config(arch=Arch.AARCH64, t0sz=16, sl0=0b01, ps=0b010))
        assert not v.valid
        assert v.choices == (
            "IMPLEMENTATION DEFINED (AArch64.S2TxSZFaults): T0SZ 16 < 24 faults",
            "IMPLEMENTATION DEFINED (AArch64.S2TxSZFaults): T0SZ 16 < 24 acts as 24")
        assert v.problems == ("IMPLEMENTATION DEFINED (AArch64.S2TxSZFaults): T0SZ 16 < 24 faults",)
        assert (v.ia_bits, v.start_level, v.concat) == (40, 1, 2)

    def test_txsz_above_maximum(self):
        """T0SZ 40 > 39: fault, or act as 39 (25 bits), inconsistent with L1."""
        v = cat.judge(a64("cortex-a53"), S2Config(arch=Arch.AARCH64, t0sz=40, sl0=0b01, ps=0b010))
        assert v.problems == (
            "IMPLEMENTATION DEFINED (AArch64.S2TxSZFaults): T0SZ 40 > 39 faults",
            "AArch64.S2InconsistentSL: 25-bit IPA cannot start at level 1 with 4k "
            "(allowed 31..43 bits)")
        assert [r.fault for r in v.readings] == [TF0, TF0]

    def test_reserved_tg0(self):
        """TG0 = 0b11: an IMPLEMENTATION DEFINED granule among those the CPU
        has (4K, 64K on cortex-a53); both walk, with different geometry:
        64K SL0 = 0b01 is level 2, 40-29 = 11 bits."""
        v = cat.judge(a64("cortex-a53"), S2Config.from_vtcr(Arch.AARCH64, 0x8002F558))
        assert v.valid and v.granule is None and v.start_level is None and v.ia_bits == 40
        assert [(r.granule, r.start_level, r.geometry.concat, r.geometry.root_bytes)
                for r in v.readings] == [(G4, 1, 2, 8192), (G64, 2, 1, 16384)]
        assert v.choices == (
            "IMPLEMENTATION DEFINED (AArch64.S2DecodeTG0, reserved TG0 0b11): granule 4k",
            "IMPLEMENTATION DEFINED (AArch64.S2DecodeTG0, reserved TG0 0b11): granule 64k")
        assert cat.verdict_conventions(v) == ()

    def test_unsupported_granule(self):
        v = cat.judge(a64("cortex-a53"), aarch64_config(G16, 40, 2, ps_bits=40))
        assert [r.granule for r in v.readings] == [G4, G64]
        assert v.choices[0] == ("IMPLEMENTATION DEFINED (AArch64.S2DecodeTG0, 16k not supported "
                                "at stage 2): granule 4k")

    def test_vttbr_beyond_output_size(self):
        config = S2Config.from_vtcr(Arch.AARCH64, 0x80023558, vttbr=1 << 40)
        assert problem(a64("cortex-a53"), config) == (
            ("AArch64.S2Walk: start-level table address 0x10000000000 is beyond the 40-bit "
             "output size (AArch64.OAOutOfRange)",), (ASF0,))

    def test_vttbr_misaligned_is_a_note(self):
        """Bit 12 lies below the 8 KiB root: a misaligned base (AArch64.S2TTBaseAddress aligns it)."""
        v = cat.judge(a64("cortex-a53"), S2Config.from_vtcr(Arch.AARCH64, 0x80023558,
                                                              vttbr=0x4000_1000))
        assert v.valid and v.readings[0].table_base == 0x4000_0000
        assert v.notes == ("VTTBR_EL2 bits 0x1000 lie below the 8192-byte table alignment: a "
                           "misaligned base, CONSTRAINED UNPREDICTABLE (Arm ARM D24.2.225): the "
                           "bits are treated as zero (AArch64.S2TTBaseAddress: the table at "
                           "0x40000000) or the walk address is corrupted in them",)

    def test_vttbr_high_bits_with_64k_lpa(self):
        """max, 64K, PS = 0b110: VTTBR_EL2[5:2] hold PA[51:48]; bit 2 is PA bit 48.
        With PS = 0b101 the same bit is a low address bit below the 512-byte root."""
        v = cat.judge(a64("max"), aarch64_config(G64, 48, 1, ps_bits=52, vttbr=0b100))
        assert v.valid and v.readings[0].table_base == 1 << 48 and v.notes == ()
        v = cat.judge(a64("max"), aarch64_config(G64, 48, 1, ps_bits=48, vttbr=0b100))
        assert v.valid and v.readings[0].table_base == 0 and len(v.notes) == 1

    def test_ps_capped_and_ha_ignored(self):
        """PS = 0b110 (52 bits) on PAMax 40 acts as 40; HA without FEAT_HAFDBS."""
        v = cat.judge(a64("cortex-a53"), S2Config.from_vtcr(Arch.AARCH64, 0x80263558))
        assert v.valid and v.oa_bits == 40
        assert v.notes == (
            "VTCR_EL2.HA=1 is ignored: no FEAT_HAFDBS (AArch64.NSS2TTWParams)",
            "PS=0b110 (52 bits) acts as 40 bits with 4k (AArch64.PhysicalAddressSize; PAMax 40)")

    def test_arch_mismatch(self):
        with pytest.raises(ValueError):
            cat.judge(a32("cortex-a15"), S2Config.from_vtcr(Arch.AARCH64, 0x80023558))


class TestJudgeAArch32:
    def test_valid(self):
        v = cat.judge(a32("cortex-a15"), S2Config.from_vtcr(Arch.AARCH32, 0x80003558))
        assert v.valid
        assert (v.ia_bits, v.start_level, v.concat, v.vttbr_align, v.oa_bits) == (40, 1, 2, 8192, 40)
        assert cat.verdict_conventions(v) == (KVM, XEN)

    def test_reserved_sl0(self):
        """SL0 = 0b1x: Translation fault at level 1 (AArch32 reports level 1)."""
        assert problem(a32("cortex-a15"), S2Config.from_vtcr(Arch.AARCH32, 0x80003598)) == (
            ("AArch32.S2Walk: SL0=0b10 is reserved",), (TF1,))

    def test_inconsistent_sl(self):
        """T0SZ 7 (S = 0): 25-bit IPA, level 1 needs 31..43 bits."""
        assert problem(a32("cortex-a15"), aarch32_config(25, 1)) == (
            ("AArch32.S2InconsistentSL: 25-bit IPA cannot start at level 1 with 4k "
             "(allowed 31..43 bits)",), (TF1,))

    def test_s_mismatch(self):
        """0x80003548: T0SZ = 0b1000 but S = 0: T0SZ is UNKNOWN, 16 readings;
        with SL0 = 1 IPA sizes 31..40 walk (T0SZ -8..1), 25..30 fault."""
        v = cat.judge(a32("cortex-a15"), S2Config.from_vtcr(Arch.AARCH32, 0x80003548))
        assert len(v.readings) == 16 and not v.valid
        assert [r.ia_bits for r in v.readings if r.walks] == list(range(40, 30, -1))
        assert all(c.startswith("CONSTRAINED UNPREDICTABLE (Unpredictable_RESVTCRS)")
                   for c in v.choices)

    def test_vttbr_high_bits_v8(self):
        config = S2Config.from_vtcr(Arch.AARCH32, 0x80003558, vttbr=1 << 41)
        assert problem(a32("max"), config) == (
            ("AArch32.S2Walk: VTTBR bits [47:40] non-zero",), (ASF0,))

    def test_vttbr_high_bits_v7(self):
        """ARMv7 LPAE: UNPREDICTABLE, fault or ignore: one reading of each."""
        v = cat.judge(a32("cortex-a15"), S2Config.from_vtcr(Arch.AARCH32, 0x80003558,
                                                            vttbr=1 << 41))
        assert not v.valid
        assert [r.fault for r in v.readings] == [ASF0, None]


class TestDecode:
    def test_vtcr_el2_fields(self):
        fields = {f.name: (f.value, f.meaning) for f in cat.decode_vtcr(Arch.AARCH64, 0x80023558, 1)}
        assert fields["T0SZ"] == (24, "40-bit IPA")
        assert fields["SL0"] == (1, "start level 1")
        assert fields["TG0"] == (0, "4K")
        assert fields["PS"] == (2, "40 bits")
        assert fields["SH0"] == (3, "Inner Shareable")
        assert fields["RES1"] == (1, "ok")

    def test_vtcr_aarch32_fields(self):
        fields = {f.name: (f.value, f.meaning) for f in cat.decode_vtcr(Arch.AARCH32, 0x80003558)}
        assert fields["T0SZ"] == (8, "-8 (40-bit IPA)")
        assert fields["S"][0] == 1

    def test_uninterpreted_bits(self):
        assert cat.uninterpreted_bits(Arch.AARCH64, 0x80023558) == 0
        assert cat.uninterpreted_bits(Arch.AARCH64, 0x80023558 | 1 << 20 | 1 << 40) == \
            1 << 20 | 1 << 40
        assert cat.uninterpreted_bits(Arch.AARCH32, 0x80003558 | 1 << 5) == 1 << 5
