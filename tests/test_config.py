"""Stage-2 geometry and the VTCR_EL2 / AArch32 VTCR codec.

Geometry rule (AArch64.S2SLTTEntryAddress / AArch64.TTEntryAddress /
AArch64.S2InconsistentSL): with g = granule bits (12, 14, 16) and
stride = g - 3 (9, 11, 13), level L resolves IPA bits from
lsb(L) = g + (3 - L) * stride upwards; the start level resolves every bit
from lsb(start) to IPA size - 1, i.e. start_bits = IPA size - lsb(start),
which must be 1 .. stride + 4.  Above a full table (stride bits) each extra
bit doubles the number of concatenated tables, up to 16.
"""
from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import (
    VTCR_A32_FIELDS,
    VTCR_EL2_FIELDS,
    aarch32_field_configs,
    aarch64_field_configs,
    vtcr_a32_values,
    vtcr_el2_values,
)

from reference.arch import Arch, Granule
from reference.config import S2Config, aarch32_config, aarch64_config, geometry

G4, G16, G64 = Granule.G4K, Granule.G16K, Granule.G64K
A64, A32 = Arch.AARCH64, Arch.AARCH32

# (granule, start level, IPA bits, start_bits, concatenated tables, root bytes)
# root bytes = 2^start_bits * 8.  "where" says what reaches it.
GEOMETRY_ROWS = [
    # -- 4K: lsb(3) = 12, lsb(2) = 21, lsb(1) = 30, lsb(0) = 39, lsb(-1) = 48
    (G4, 3, 16, 4, 1, 128),        # TTST minimum IPA (T0SZ 48): 16 - 12 = 4 bits, 16 entries
    (G4, 3, 21, 9, 1, 4096),       # TTST: one full table
    (G4, 3, 22, 10, 2, 8192),
    (G4, 3, 23, 11, 4, 16384),
    (G4, 3, 24, 12, 8, 32768),
    (G4, 3, 25, 13, 16, 65536),    # 25 - 12 = 13 = 9 + 4: the most S2InconsistentSL allows
    (G4, 2, 25, 4, 1, 128),        # smallest IPA without TTST (T0SZ 39)
    (G4, 2, 30, 9, 1, 4096),
    (G4, 2, 31, 10, 2, 8192),
    (G4, 2, 32, 11, 4, 16384),
    (G4, 2, 33, 12, 8, 32768),
    (G4, 2, 34, 13, 16, 65536),
    (G4, 1, 31, 1, 1, 16),         # one bit at level 1: two entries
    (G4, 1, 39, 9, 1, 4096),
    (G4, 1, 40, 10, 2, 8192),      # KVM's default 40-bit IPA: 2 concatenated tables
    (G4, 1, 41, 11, 4, 16384),     # needs PAMax >= 41 (a57: 44)
    (G4, 1, 42, 12, 8, 32768),
    (G4, 1, 43, 13, 16, 65536),
    (G4, 0, 40, 1, 1, 16),         # level 0 needs PAMax >= 44
    (G4, 0, 44, 5, 1, 256),        # a57/a72: 44-bit IPA from level 0
    (G4, 0, 48, 9, 1, 4096),       # 48-bit IPA, four levels (n1, max)
    (G4, 0, 49, 10, 2, 8192),      # > 48 bits: max with DS = 1 (FEAT_LPA2)
    (G4, 0, 50, 11, 4, 16384),
    (G4, 0, 51, 12, 8, 32768),
    (G4, 0, 52, 13, 16, 65536),
    (G4, -1, 49, 1, 1, 16),        # SL2 = 1, DS = 1: level -1
    (G4, -1, 52, 4, 1, 128),       # (a full level -1 table would be 57 bits: unreachable)
    # -- 16K: lsb(3) = 14, lsb(2) = 25, lsb(1) = 36, lsb(0) = 47
    (G16, 3, 16, 2, 1, 32),        # TTST minimum IPA
    (G16, 3, 25, 11, 1, 16384),
    (G16, 3, 26, 12, 2, 32768),
    (G16, 3, 27, 13, 4, 65536),
    (G16, 3, 28, 14, 8, 131072),
    (G16, 3, 29, 15, 16, 262144),  # 11 + 4 bits
    (G16, 2, 26, 1, 1, 16),
    (G16, 2, 36, 11, 1, 16384),
    (G16, 2, 37, 12, 2, 32768),
    (G16, 2, 38, 13, 4, 65536),
    (G16, 2, 39, 14, 8, 131072),
    (G16, 2, 40, 15, 16, 262144),
    (G16, 1, 37, 1, 1, 16),        # level 1 needs PAMax >= 42
    (G16, 1, 47, 11, 1, 16384),
    (G16, 1, 48, 12, 2, 32768),
    (G16, 1, 49, 13, 4, 65536),    # > 48 bits: DS = 1
    (G16, 1, 50, 14, 8, 131072),
    (G16, 1, 51, 15, 16, 262144),
    (G16, 0, 48, 1, 1, 16),        # level 0 only with DS = 1
    (G16, 0, 52, 5, 1, 256),
    # -- 64K: lsb(3) = 16, lsb(2) = 29, lsb(1) = 42
    (G64, 3, 17, 1, 1, 16),        # TTST minimum IPA for 64K (T0SZ 47)
    (G64, 3, 29, 13, 1, 65536),
    (G64, 3, 30, 14, 2, 131072),
    (G64, 3, 31, 15, 4, 262144),
    (G64, 3, 32, 16, 8, 524288),
    (G64, 3, 33, 17, 16, 1048576),
    (G64, 2, 30, 1, 1, 16),
    (G64, 2, 42, 13, 1, 65536),
    (G64, 2, 43, 14, 2, 131072),
    (G64, 2, 44, 15, 4, 262144),
    (G64, 2, 45, 16, 8, 524288),
    (G64, 2, 46, 17, 16, 1048576),
    (G64, 1, 43, 1, 1, 16),        # level 1 needs PAMax >= 44
    (G64, 1, 48, 6, 1, 512),
    (G64, 1, 52, 10, 1, 8192),     # FEAT_LPA; a full level-1 table (55 bits) is unreachable
]


class TestGeometry:
    """geometry(granule, ia_bits, start_level) against the hand table."""

    @pytest.mark.parametrize("granule, level, ia, start_bits, concat, root_bytes", GEOMETRY_ROWS)
    def test_start_level(self, granule, level, ia, start_bits, concat, root_bytes):
        geo = geometry(granule, ia, level)
        assert geo.start_bits == start_bits
        assert geo.concat == concat
        assert geo.root_entries == 1 << start_bits
        assert geo.root_bytes == root_bytes
        assert geo.consistent
        assert geo.levels == 3 - level + 1
        # One next-level table is one granule.
        assert geo.table_bytes == 1 << granule.value

    @pytest.mark.parametrize("granule, lsbs", [
        (G4, {-1: 48, 0: 39, 1: 30, 2: 21, 3: 12}),
        (G16, {0: 47, 1: 36, 2: 25, 3: 14}),
        (G64, {1: 42, 2: 29, 3: 16}),
    ])
    def test_level_lsb_is_block_size(self, granule, lsbs):
        # TranslationSize = granulebits + (3 - level) * stride: 4K blocks are
        # 512 GiB (L0), 1 GiB (L1), 2 MiB (L2); 16K 64 GiB (L1), 32 MiB (L2);
        # 64K 4 TiB (L1), 512 MiB (L2).
        geo = geometry(granule, 52, min(lsbs))
        for level, lsb in lsbs.items():
            assert geo.level_lsb(level) == lsb
            assert geo.block_bits(level) == lsb

    @pytest.mark.parametrize("granule, level, ia", [
        (G4, 1, 30),    # 0 bits left for level 1: too few (S2InconsistentSL)
        (G4, 1, 44),    # 14 bits = 32 tables: too many
        (G4, 2, 35),
        (G4, 0, 53),
        (G16, 2, 41),   # 16 bits
        (G16, 3, 14),
        (G64, 2, 47),
        (G64, 3, 34),
    ])
    def test_inconsistent(self, granule, level, ia):
        assert not geometry(granule, ia, level).consistent

    def test_index_spans_concatenated_tables(self):
        # 4K, 40-bit IPA from level 1: the level-1 index is IPA[39:30]
        # (10 bits across two tables), then IPA[29:21] and IPA[20:12].
        geo = geometry(G4, 40, 1)
        ipa = 0xC0_4040_1234  # bits 39:30 = 0x301, 29:21 = 0x002, 20:12 = 0x001
        assert (geo.index(1, ipa), geo.index(2, ipa), geo.index(3, ipa)) == (0x301, 0x002, 0x001)
        assert geo.level_msb(1) == 39 and geo.level_msb(2) == 29 and geo.level_msb(3) == 20

    def test_index_64k_level_2_root(self):
        # 64K, 42-bit IPA from level 2: IPA[41:29] (13 bits) then IPA[28:16].
        geo = geometry(G64, 42, 2)
        ipa = 0x3FF_FFFF_1234  # bits 41:29 = 0x1FFF, bits 28:16 = 0x1FFF
        assert (geo.index(2, ipa), geo.index(3, ipa)) == (0x1FFF, 0x1FFF)


class TestVtcrEl2Encoding:
    """VTCR_EL2: T0SZ[5:0] SL0[7:6] IRGN0[9:8] ORGN0[11:10] SH0[13:12]
    TG0[15:14] PS[18:16] VS[19] HA[21] HD[22] DS[32] SL2[33], RES1 bit 31."""

    def test_kvm_40bit_4k(self):
        # KVM's VTCR for a 40-bit IPA with 4K pages on a 40-bit PA host:
        # RES1 0x80000000 | PS 0b010 << 16 = 0x20000 | TG0 0 | SH0 0b11 << 12 =
        # 0x3000 | ORGN0 0b01 << 10 = 0x400 | IRGN0 0b01 << 8 = 0x100 |
        # SL0 0b01 << 6 = 0x40 | T0SZ 24 = 0x18  ->  0x80023558.
        cfg = S2Config(arch=A64, t0sz=24, sl0=1, tg0=0, ps=0b010, irgn0=1, orgn0=1, sh0=3)
        assert cfg.vtcr() == 0x8002_3558
        assert cfg.ia_bits == 40 and cfg.granule is G4
        assert aarch64_config(G4, 40, 1, ps_bits=40) == cfg

    def test_64k_42bit_level2(self):
        # 64K (TG0 0b01 << 14 = 0x4000), T0SZ 22, SL0 0b01 (level 2),
        # PS 0b100 (44 bits) << 16 = 0x40000: 0x80000000 + 0x40000 + 0x4000
        # + 0x3000 + 0x400 + 0x100 + 0x40 + 0x16 = 0x80047556.
        cfg = S2Config(arch=A64, t0sz=22, sl0=1, tg0=0b01, ps=0b100, irgn0=1, orgn0=1, sh0=3)
        assert cfg.vtcr() == 0x8004_7556
        assert cfg.granule is G64
        assert aarch64_config(G64, 42, 2, ps_bits=44) == cfg

    def test_16k_tg0_is_0b10(self):
        # VTCR_EL2.TG0: 0b10 = 16K (unlike TCR_EL1.TG1): T0SZ 28, SL0 0b01
        # (level 2), PS 0b010: 0x80000000 | 0x20000 | 0x8000 | 0x40 | 0x1c.
        cfg = S2Config(arch=A64, t0sz=28, sl0=1, tg0=0b10, ps=0b010)
        assert cfg.vtcr() == 0x8002_805C
        assert cfg.granule is G16

    def test_lpa2_level_minus1_with_hardware_updates(self):
        # 4K, T0SZ 12 (52-bit IPA), SL0 0 with SL2 1 (level -1), DS 1, PS 0b110,
        # HA 1, HD 1: 0x3_0000_0000 (SL2, DS) | 0x8000_0000 | 0x60_0000 (HD, HA)
        # | 0x6_0000 (PS) | 0x3500 | 0x0c  ->  0x3_8066_350C.
        cfg = S2Config(arch=A64, t0sz=12, sl0=0, sl2=1, ds=1, tg0=0, ps=0b110,
                       ha=1, hd=1, irgn0=1, orgn0=1, sh0=3)
        assert cfg.vtcr() == 0x3_8066_350C
        assert aarch64_config(G4, 52, -1, ps_bits=52, ds=1, ha=1, hd=1) == cfg

    def test_decode_kvm(self):
        cfg = S2Config.from_vtcr(A64, 0x8002_3558, vttbr=0x1_0000_4100_0000)
        assert (cfg.t0sz, cfg.sl0, cfg.tg0, cfg.ps, cfg.sh0, cfg.orgn0, cfg.irgn0) == (
            24, 1, 0, 0b010, 3, 1, 1)
        assert (cfg.ha, cfg.hd, cfg.ds, cfg.sl2, cfg.vs) == (0, 0, 0, 0, 0)
        assert cfg.vttbr == 0x1_0000_4100_0000

    def test_reserved_tg0_has_no_granule(self):
        assert S2Config.from_vtcr(A64, 0x8000_C018).granule is None

    def test_unmodelled_bits_are_dropped(self):
        # HWU62..59 [28:25], NSW [29], NSA [30], bit 20 are not walk fields.
        noisy = 0x8002_3558 | 0xF << 25 | 1 << 29 | 1 << 30 | 1 << 20
        assert S2Config.from_vtcr(A64, noisy).vtcr() == 0x8002_3558

    def test_field_overflow_is_rejected(self):
        with pytest.raises(ValueError):
            S2Config(arch=A64, t0sz=64, sl0=0).vtcr()

    @given(vtcr_el2_values())
    @example(0x8002_3558)
    @example(0x3_8066_350C)
    def test_value_round_trip(self, value):
        """decode then encode gives back every modelled bit (and RES1)."""
        assert S2Config.from_vtcr(A64, value).vtcr() == value

    @given(st.integers(0, (1 << 64) - 1))
    def test_any_value_keeps_exactly_the_modelled_fields(self, value):
        """Any 64-bit value decodes to its modelled fields, RES1 forced."""
        assert S2Config.from_vtcr(A64, value).vtcr() == value & VTCR_EL2_FIELDS | 1 << 31

    @given(aarch64_field_configs())
    def test_config_round_trip(self, cfg):
        """encode then decode gives back the configuration."""
        assert S2Config.from_vtcr(A64, cfg.vtcr(), vttbr=cfg.vttbr, s2pir=cfg.s2pir) == cfg


class TestVtcrAArch32:
    """AArch32 VTCR: T0SZ[3:0] (signed), S[4], SL0[7:6], IRGN0[9:8],
    ORGN0[11:10], SH0[13:12], RES1 bit 31; IPA size = 32 - SInt(T0SZ)
    (AArch32.S2IASize), 25 .. 40 bits."""

    def test_design_example_0x80003558(self):
        # 0x80003558: T0SZ[3:0] = 0b1000 = -8 -> 32 + 8 = 40-bit IPA; S[4] = 1
        # (= T0SZ[3], consistent); SL0[7:6] = 0b01 -> start level 1;
        # IRGN0 = ORGN0 = 0b01, SH0 = 0b11.
        cfg = S2Config.from_vtcr(A32, 0x8000_3558)
        assert (cfg.t0sz, cfg.s, cfg.sl0, cfg.irgn0, cfg.orgn0, cfg.sh0) == (-8, 1, 1, 1, 1, 3)
        assert cfg.ia_bits == 40
        assert cfg.granule is G4
        assert cfg.vtcr() == 0x8000_3558
        assert aarch32_config(40, 1) == S2Config(arch=A32, t0sz=-8, sl0=1, sh0=3,
                                                 irgn0=1, orgn0=1)
        assert aarch32_config(40, 1).vtcr() == 0x8000_3558

    @pytest.mark.parametrize("t0sz, raw, s, ia", [
        (7, 0b0111, 0, 25),     # smallest IPA: 32 - 7
        (0, 0b0000, 0, 32),
        (-1, 0b1111, 1, 33),    # two's complement in 4 bits, S = T0SZ[3] = 1
        (-8, 0b1000, 1, 40),
    ])
    def test_signed_t0sz(self, t0sz, raw, s, ia):
        cfg = S2Config(arch=A32, t0sz=t0sz, sl0=0)
        # S is filled in as T0SZ[3] when not given.
        assert cfg.vtcr() == 0x8000_0000 | s << 4 | raw
        back = S2Config.from_vtcr(A32, cfg.vtcr())
        assert (back.t0sz, back.s, back.ia_bits) == (t0sz, s, ia)

    def test_s_mismatch_is_kept(self):
        # S = 0 with T0SZ = 0b1000: the value is not rejected, only decoded
        # (the walk treats T0SZ as UNKNOWN, see test_walk_aarch32.py).
        cfg = S2Config.from_vtcr(A32, 0x8000_0048)
        assert (cfg.t0sz, cfg.s, cfg.sl0) == (-8, 0, 1)
        assert cfg.vtcr() == 0x8000_0048

    @given(vtcr_a32_values())
    @example(0x8000_3558)
    def test_value_round_trip(self, value):
        """decode then encode gives back every modelled bit (and RES1)."""
        assert S2Config.from_vtcr(A32, value).vtcr() == value

    @given(st.integers(0, (1 << 32) - 1))
    def test_any_value(self, value):
        """Any 32-bit value decodes to its modelled fields; T0SZ is signed."""
        cfg = S2Config.from_vtcr(A32, value)
        assert cfg.vtcr() == value & VTCR_A32_FIELDS | 1 << 31
        raw = value & 0xF
        assert cfg.t0sz == (raw if raw < 8 else raw - 16)
        assert 25 <= cfg.ia_bits <= 40

    @given(aarch32_field_configs())
    def test_config_round_trip(self, cfg):
        """encode then decode gives back the configuration."""
        assert S2Config.from_vtcr(A32, cfg.vtcr(), vttbr=cfg.vttbr) == cfg
