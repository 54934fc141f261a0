"""AArch64 stage-2 walk (reference.walk) against the Arm ARM pseudocode.

Every expected outcome set below is worked out by hand from the pseudocode
(Sail arm-v9.4-a: AArch64.S2Translate, AArch64.S2Walk and helpers; see the
comment on each case).  Probes are AT S12E1R unless stated: stage 1 is off,
so the IPA is the AT input address.

Table memory is either written word by word (``words``: descriptor values
spelled out in hex, so the test does not depend on the image builder) or
built with reference.image.ImageBuilder where only the shape matters.
"""
from __future__ import annotations

import dataclasses
import struct

import pytest
import strategies as S
from hypothesis import example, given, note
from hypothesis import strategies as st
from test_config import GEOMETRY_ROWS

from reference.arch import Arch, AtKind, Granule
from reference.config import S2Config
from reference.cpus import get_cpu
from reference.image import Conflict, ImageBuilder, Layout, LeafAttrs
from reference.memory import Memory, Region
from reference.outcome import DescriptorWrite, Fault, FaultKind, Translation
from reference.walk import walk

A64 = Arch.AARCH64
G4, G16, G64 = Granule.G4K, Granule.G16K, Granule.G64K
A35, A53, A57, A72, A76, N1, MAX = (get_cpu(A64, n) for n in (
    "cortex-a35", "cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1", "max"))
R, W, R0, W0 = AtKind.S12E1R, AtKind.S12E1W, AtKind.S12E0R, AtKind.S12E0W

RAM = S.RAM                  # QEMU virt: 1 GiB of RAM at 0x4000_0000
TT = 0x4100_0000             # where the tables go
NO_RAM = 0x0B00_0000         # nothing behind it: a read is an external abort

# Leaf attributes: MemAttr[5:2] = 0b1111, S2AP[7:6] = 0b11, SH[9:8] = 0b11, AF[10] = 1.
ATTRS = 0x7FC
# The same without SH: with DS = 1, bits [9:8] are OA[51:50].
ATTRS_DS = 0x4FC
AF = 1 << 10


def block(oa: int, extra: int = 0) -> int:
    return oa | ATTRS | 0b01 | extra


def page(oa: int, extra: int = 0) -> int:
    return oa | ATTRS | 0b11 | extra


def table(pa: int) -> int:
    return pa | 0b11


def words(entries: dict[int, int]) -> Memory:
    """RAM holding exactly these 64-bit descriptors (little-endian)."""
    return Memory(ram=RAM, regions=tuple(Region(pa, struct.pack("<Q", v))
                                         for pa, v in entries.items()))


def cfg64(t0sz: int, sl0: int, tg0: int = 0b00, ps: int = 0b010, vttbr: int = TT,
          **kw) -> S2Config:
    """VTCR_EL2 fields as programmed (SH0 = 0b11, IRGN0 = ORGN0 = 0b01 unless given)."""
    kw = {"sh0": 0b11, "irgn0": 1, "orgn0": 1} | kw
    return S2Config(arch=A64, t0sz=t0sz, sl0=sl0, tg0=tg0, ps=ps, vttbr=vttbr, **kw)


def results(cpu, cfg, memory, ipa, at=R) -> set:
    """The set of results the walker permits."""
    return {o.result for o in walk(cpu, cfg, memory, ipa, at).outcomes}


def outcomes(cpu, cfg, memory, ipa, at=R) -> set:
    """The set of (result, descriptor writes) the walker permits."""
    return {(o.result, o.writes) for o in walk(cpu, cfg, memory, ipa, at).outcomes}


def TF(level):
    return Fault(FaultKind.TRANSLATION, level)


def ASF(level):
    return Fault(FaultKind.ADDRESS_SIZE, level)


def AFF(level):
    return Fault(FaultKind.ACCESS_FLAG, level)


def PF(level):
    return Fault(FaultKind.PERMISSION, level)


def SEA(level):
    return Fault(FaultKind.SEA_ON_WALK, level)


def T(pa, level, block_bits, *, s2ap=0b11, xn=0, memattr=0b1111, sh=0b11, af=1,
      contiguous=0, dbm=0):
    return Translation(pa=pa, level=level, block_bits=block_bits, s2ap=s2ap, xn=xn,
                       memattr=memattr, sh=sh, af=af, contiguous=contiguous, dbm=dbm)


def built(cfg: S2Config, granule, ia_bits, start_level, maps=(), *, lpa64=False, ds=False):
    """(config with VTTBR, memory) for an ImageBuilder image holding ``maps``
    = [(ipa, oa, level, LeafAttrs)]."""
    b = ImageBuilder(Layout(granule, ia_bits, start_level, lpa64=lpa64, ds=ds), TT, 0x100_0000)
    for ipa, oa, level, attrs in maps:
        b.map(ipa, oa, level, attrs)
    img = b.build()
    return cfg.with_vttbr(img.vttbr), Memory(ram=RAM, regions=img.regions)


# 4K, 40-bit IPA (T0SZ 24), start level 1 (SL0 0b01), PS 40 bits: KVM's layout.
# Level-1 index = IPA[39:30]: IPA 0x4000_1234 -> index 1 -> descriptor at TT + 8.
KVM40 = cfg64(24, 0b01)


class TestBaseline:
    def test_level1_block(self):
        # 1 GiB block (level-1 lsb 30) at 0x4000_0000: PA = OA | IPA[29:0].
        mem = words({TT + 8: block(0x4000_0000)})
        for at in AtKind:
            assert results(A57, KVM40, mem, 0x4000_1234, at) == {T(0x4000_1234, 1, 30)}

    def test_config_and_cpu_must_agree(self):
        with pytest.raises(ValueError):
            walk(get_cpu(Arch.AARCH32, "max"), KVM40, words({}), 0, R)


# ---------------------------------------------------------------------------
# Configuration checks: all Translation faults at level 0 (AArch64.S2Translate)
# ---------------------------------------------------------------------------


class TestT0SZLimits:
    """AArch64.S2MinTxSZ / AArch64.MaxTxSZ / AArch64.S2TxSZFaults."""

    @pytest.mark.parametrize("tg0, ds, t0sz", [
        # max has FEAT_LPA: T0SZ below S2MinTxSZ always faults.
        (0b00, 0, 15),   # 4K, DS=0: ips = Min(48, PAMax 52) -> min T0SZ 16
        (0b10, 0, 15),   # 16K, DS=0: same cap, min 16
        (0b00, 1, 11),   # 4K, DS=1: ips = Min(52, 52) -> min 12
        (0b01, 0, 11),   # 64K: ips = Min(52, 52) -> min 12
    ])
    def test_below_min_with_lpa_faults(self, tg0, ds, t0sz):
        cfg = cfg64(t0sz, 0b10, tg0=tg0, ps=0b110, ds=ds)
        assert results(MAX, cfg, words({}), 0x1234) == {TF(0)}

    def test_below_min_without_lpa_is_impdef(self):
        # cortex-a57: PAMax 44, no FEAT_LPA -> min T0SZ 64 - 44 = 20.  T0SZ 19:
        # IMPLEMENTATION DEFINED fault (TF L0) or treated as 20 (44-bit IPA).
        # With SL0 = 0b10 (level 0, range 40..52 bits) the clamped config walks:
        # the 1 GiB block mapping IPA 0x4000_0000 translates.
        cfg, mem = built(cfg64(19, 0b10, ps=0b100), G4, 44, 0,
                         [(0x4000_0000, 0x4000_0000, 1, LeafAttrs())])
        assert results(A57, cfg, mem, 0x4000_1234) == {TF(0), T(0x4000_1234, 1, 30)}
        # From level 1 the clamped 44-bit IPA needs 14 bits (> 9 + 4):
        # S2InconsistentSL, so both choices fault.
        assert results(A57, dataclasses.replace(cfg, sl0=0b01), mem, 0x4000_1234) == {TF(0)}

    def test_min_is_accepted(self):
        cfg, mem = built(cfg64(20, 0b10, ps=0b100), G4, 44, 0,
                         [(0x4000_0000, 0x4000_0000, 1, LeafAttrs())])
        assert results(A57, cfg, mem, 0x4000_1234) == {T(0x4000_1234, 1, 30)}

    def test_above_max_without_ttst_is_impdef(self):
        # No FEAT_TTST: MaxTxSZ = 39.  T0SZ 40 (24-bit IPA): IMPDEF fault, or
        # treated as 39: 25-bit IPA from level 2 (4 bits, 16 entries).  IPA
        # 0x100_1234 has bit 24 set: in range only for the clamped size
        # (AArch64.IPAIsOutOfRange uses the clamped T0SZ); L2 index
        # IPA[24:21] = 8, 2 MiB block -> PA 0x4000_0000 | 0x1234.
        cfg, mem = built(cfg64(40, 0b00), G4, 25, 2,
                         [(0x100_0000, 0x4000_0000, 2, LeafAttrs())])
        assert results(A57, cfg, mem, 0x100_1234) == {TF(0), T(0x4000_1234, 2, 21)}
        assert results(A57, dataclasses.replace(cfg, t0sz=39), mem, 0x100_1234) == {
            T(0x4000_1234, 2, 21)}

    @pytest.mark.parametrize("tg0, granule, t0sz, ia, gbits", [
        # FEAT_TTST (max): MaxTxSZ 48 for 4K/16K (16-bit IPA), 47 for 64K.
        (0b00, G4, 49, 16, 12),
        (0b10, G16, 49, 16, 14),
        (0b01, G64, 48, 17, 16),
    ])
    def test_above_max_with_ttst_is_impdef(self, tg0, granule, t0sz, ia, gbits):
        # SL0 = 0b11 (4K: level 3 with TTST) / 0b00 (16K, 64K: level 3).
        sl0 = 0b11 if granule is G4 else 0b00
        cfg, mem = built(cfg64(t0sz, sl0, tg0=tg0), granule, ia, 3,
                         [(0x0, 0x4000_0000, 3, LeafAttrs())])
        # IPA 0x234 is in page 0: PA 0x4000_0234.
        assert results(MAX, cfg, mem, 0x234) == {TF(0), T(0x4000_0234, 3, gbits)}
        assert results(MAX, dataclasses.replace(cfg, t0sz=t0sz - 1), mem, 0x234) == {
            T(0x4000_0234, 3, gbits)}


class TestStartLevel:
    """AArch64.S2StartLevel / AArch64.S2InvalidSL / AArch64.S2InconsistentSL."""

    def test_64k_sl0_3_is_reserved(self):
        assert results(MAX, cfg64(22, 0b11, tg0=0b01), words({}), 0x1234) == {TF(0)}

    def test_4k_level3_needs_ttst(self):
        # 4K SL0 = 0b11 -> level 3 only with FEAT_TTST; 25-bit IPA at level 3
        # = 13 bits = 16 tables (allowed).
        cfg, mem = built(cfg64(39, 0b11), G4, 25, 3, [(0x1000, 0x4000_0000, 3, LeafAttrs())])
        assert results(A57, cfg, mem, 0x1234) == {TF(0)}
        assert results(MAX, cfg, mem, 0x1234) == {T(0x4000_0234, 3, 12)}

    def test_16k_level0_needs_ds(self):
        # 16K SL0 = 0b11 -> level 0, valid only with DS = 1 (FEAT_LPA2).
        # T0SZ 16: 48 bits from level 0 = 1 bit (48 - 47).
        cfg, mem = built(cfg64(16, 0b11, tg0=0b10, ps=0b110, ds=1, sh0=0b10), G16, 48, 0,
                         [(0x4000_0000, 0x4000_0000, 2, LeafAttrs())], ds=True)
        # 32 MiB block at level 2; with DS = 1 the SH comes from VTCR_EL2.SH0
        # (AArch64.S2NextWalkStateLeaf: s2_sh = walkparams.sh when DS = 1).
        assert results(MAX, cfg, mem, 0x4000_1234) == {T(0x4000_1234, 2, 25, sh=0b10)}
        assert results(MAX, dataclasses.replace(cfg, ds=0), mem, 0x4000_1234) == {TF(0)}
        # neoverse-n1 has no FEAT_LPA2: DS is read as 0.
        assert results(N1, cfg, mem, 0x4000_1234) == {TF(0)}

    @pytest.mark.parametrize("sl0", [0b01, 0b10, 0b11])
    def test_sl2_with_nonzero_sl0_is_reserved(self, sl0):
        # 4K with DS = 1: SL2:SL0 = 101, 110, 111 are invalid.
        cfg = cfg64(24, sl0, ps=0b110, ds=1, sl2=1)
        assert results(MAX, cfg, words({}), 0x1234) == {TF(0)}

    def test_sl2_acts_only_with_ds(self):
        # SL2 is effective as SL2 AND DS: with DS = 0, SL2:SL0 = 1:01 is level 1.
        cfg, mem = built(cfg64(24, 0b01, sl2=1), G4, 40, 1,
                         [(0x4000_0000, 0x4000_0000, 1, LeafAttrs())])
        assert results(MAX, cfg, mem, 0x4000_1234) == {T(0x4000_1234, 1, 30)}
        # Without FEAT_LPA2 (n1) DS and SL2 are both ignored.
        cfg_ds = dataclasses.replace(cfg, ds=1)
        assert results(N1, cfg_ds, mem, 0x4000_1234) == {T(0x4000_1234, 1, 30)}

    def test_level_minus1(self):
        # 4K, DS = 1, SL2:SL0 = 100: level -1, valid for 49..52-bit IPAs.
        # T0SZ 12: 52 - 48 = 4 bits at level -1.
        cfg, mem = built(cfg64(12, 0b00, ps=0b110, ds=1, sl2=1), G4, 52, -1,
                         [(0x4000_0000, 0x4000_0000, 1, LeafAttrs())], ds=True)
        assert results(MAX, cfg, mem, 0x4000_1234) == {T(0x4000_1234, 1, 30)}
        # T0SZ 16 (48 bits) leaves 0 bits for level -1: S2InconsistentSL.
        assert results(MAX, dataclasses.replace(cfg, t0sz=16), mem, 0x1234) == {TF(0)}

    @pytest.mark.parametrize("cpu, tg0, sl0, t0sz, valid", [
        # 4K level 0 (SL0 0b10) needs PAMax >= 44; 40-bit IPA from level 0
        # is otherwise consistent (1 bit).
        (A53, 0b00, 0b10, 24, False),
        (A35, 0b00, 0b10, 24, False),
        (A76, 0b00, 0b10, 24, False),
        (A57, 0b00, 0b10, 24, True),
        (A72, 0b00, 0b10, 24, True),
        # 16K level 1 (SL0 0b10) needs PAMax >= 42; 39-bit IPA = 3 bits at L1.
        (A35, 0b10, 0b10, 25, False),
        (A76, 0b10, 0b10, 25, False),
        (N1, 0b10, 0b10, 25, True),
        (MAX, 0b10, 0b10, 25, True),
        # 64K level 1 (SL0 0b10) needs PAMax >= 44; 44-bit IPA = 2 bits at L1.
        (A57, 0b01, 0b10, 20, True),
        (N1, 0b01, 0b10, 20, True),
    ])
    def test_pamax_thresholds(self, cpu, tg0, sl0, t0sz, valid):
        granule = {0b00: G4, 0b10: G16, 0b01: G64}[tg0]
        start = {G4: 0, G16: 1, G64: 1}[granule]
        # A level-2 block at IPA 0 (2 MiB / 32 MiB / 512 MiB).
        cfg, mem = built(cfg64(t0sz, sl0, tg0=tg0, ps=0b010), granule, 64 - t0sz, start,
                         [(0, 0x4000_0000, 2, LeafAttrs())])
        bits = {G4: 21, G16: 25, G64: 29}[granule]
        expected = {T(0x4000_1234, 2, bits)} if valid else {TF(0)}
        assert results(cpu, cfg, mem, 0x1234) == expected

    @pytest.mark.parametrize("cpu, tg0, sl0, t0sz, valid", [
        # 4K level 1: 31..43 bits (1..13 bits at level 1).
        (A57, 0b00, 0b01, 34, False),   # 30 bits: 0 bits at level 1
        (A57, 0b00, 0b01, 33, True),    # 31 bits: 2 entries
        (A57, 0b00, 0b01, 21, True),    # 43 bits: 16 concatenated tables
        (A57, 0b00, 0b01, 20, False),   # 44 bits: would be 32 tables
        # 4K level 2: 22..34 bits.
        (A57, 0b00, 0b00, 30, True),    # 34 bits: 16 tables
        (A57, 0b00, 0b00, 29, False),   # 35 bits
        # 16K level 2: 26..40 bits.
        (N1, 0b10, 0b01, 24, True),     # 40 bits: 16 tables
        (N1, 0b10, 0b01, 23, False),    # 41 bits
        # 64K level 2: 30..46 bits.
        (N1, 0b01, 0b01, 18, True),     # 46 bits: 16 tables
        (N1, 0b01, 0b01, 17, False),    # 47 bits
        # 64K level 3: 17..33 bits.
        (N1, 0b01, 0b00, 31, True),     # 33 bits
        (N1, 0b01, 0b00, 30, False),    # 34 bits
    ])
    def test_inconsistent(self, cpu, tg0, sl0, t0sz, valid):
        granule = {0b00: G4, 0b10: G16, 0b01: G64}[tg0]
        start = {(G4, 0b01): 1, (G4, 0b00): 2, (G16, 0b01): 2, (G64, 0b01): 2,
                 (G64, 0b00): 3}[(granule, sl0)]
        ia = 64 - t0sz
        # Map the last page of the IPA space: its start-level index is the
        # last entry of the (concatenated) start-level table.
        last = (1 << ia) - (1 << granule.value)
        mem = words({})
        cfg = cfg64(t0sz, sl0, tg0=tg0, ps=0b101)
        if valid:
            cfg, mem = built(cfg, granule, ia, start, [(last, 0x4000_0000, 3, LeafAttrs())])
        expected = {T(0x4000_0000, 3, granule.value)} if valid else {TF(0)}
        assert results(cpu, cfg, mem, last) == expected


class TestGranuleChoice:
    """AArch64.S2DecodeTG0: reserved TG0 and unsupported granules select an
    IMPLEMENTATION DEFINED granule: one outcome per supported granule."""

    # T0SZ 25 (39 bits), SL0 0b01: 4K -> level 1 (IPA[38:30]); 16K -> level 2
    # (IPA[38:25]); 64K -> level 2 (IPA[38:29]).  IPA 0x4000_1234:
    #   4K  L1 index 1    -> TT + 0x8
    #   64K L2 index 2    -> TT + 0x10
    #   16K L2 index 0x20 -> TT + 0x100
    MEM = words({TT + 0x8: block(0x4000_0000),       # 4K: 1 GiB block
                 TT + 0x10: block(0x6000_0000),      # 64K: 512 MiB block
                 TT + 0x100: block(0x4200_0000)})    # 16K: 32 MiB block
    AS_4K = T(0x4000_1234, 1, 30)
    AS_64K = T(0x6000_1234, 2, 29)
    AS_16K = T(0x4200_1234, 2, 25)

    def test_reserved_tg0_on_a53(self):
        # a53 supports 4K and 64K at stage 2.
        assert results(A53, cfg64(25, 0b01, tg0=0b11), self.MEM, 0x4000_1234) == {
            self.AS_4K, self.AS_64K}

    def test_unsupported_16k_on_a53(self):
        assert results(A53, cfg64(25, 0b01, tg0=0b10), self.MEM, 0x4000_1234) == {
            self.AS_4K, self.AS_64K}

    def test_reserved_tg0_on_max(self):
        assert results(MAX, cfg64(25, 0b01, tg0=0b11), self.MEM, 0x4000_1234) == {
            self.AS_4K, self.AS_16K, self.AS_64K}

    def test_supported_granules_are_taken_as_programmed(self):
        assert results(A53, cfg64(25, 0b01, tg0=0b00), self.MEM, 0x4000_1234) == {self.AS_4K}
        assert results(MAX, cfg64(25, 0b01, tg0=0b10), self.MEM, 0x4000_1234) == {self.AS_16K}
        assert results(MAX, cfg64(25, 0b01, tg0=0b01), self.MEM, 0x4000_1234) == {self.AS_64K}


class TestVttbrBase:
    """AArch64.S2TTBaseAddress: tablebase = VTTBR_EL2[47:1], then Align to the
    start-level table size (2^(start_bits + 3)); bit 0 is CnP.  A misaligned
    BADDR is not a fault, but CONSTRAINED UNPREDICTABLE (Arm ARM D24.2.225,
    VTTBR_EL2.BADDR): the RES0 bits are treated as zero (the pseudocode's
    Align), or the walk address is corrupted in those bits (see
    tests/test_audit.py for the corrupted reads)."""

    MEM = words({TT + 8: block(0x4000_0000)})

    @pytest.mark.parametrize("low", [0x1, 0x6])
    def test_low_bits_ignored(self, low):
        # KVM40: 10 bits at level 1 -> 8 KiB root.  Bit 0 is CnP; bits [2:1]
        # would misalign the descriptor fetch itself, which the model does
        # not express: taken as zero.
        cfg = dataclasses.replace(KVM40, vttbr=TT | low)
        assert results(A57, cfg, self.MEM, 0x4000_1234) == {T(0x4000_1234, 1, 30)}

    @pytest.mark.parametrize("low", [0x40, 0x1FF8, 0x1FFF])
    def test_misaligned_bits_zero_or_corrupted(self, low):
        # Bits [12:3] set: treated as zero gives the block at TT + 8; a
        # corrupted walk address may also read a zero word of the root (or
        # of the RAM beyond it): Translation fault at level 1.
        cfg = dataclasses.replace(KVM40, vttbr=TT | low)
        assert results(A57, cfg, self.MEM, 0x4000_1234) == {T(0x4000_1234, 1, 30), TF(1)}

    def test_bit_above_root_size_is_used(self):
        # Bit 13 is above the 8 KiB root: the root moves to TT + 0x2000 (empty).
        cfg = dataclasses.replace(KVM40, vttbr=TT | 0x2000)
        assert results(A57, cfg, self.MEM, 0x4000_1234) == {TF(1)}


class TestInputRange:
    def test_ipa_beyond_t0sz_is_stage2_translation_level0(self):
        # AArch64.IPAIsOutOfRange: T0SZ 32 (32-bit IPA), IPA bit 32 set.
        cfg = cfg64(32, 0b01)
        assert results(A57, cfg, words({}), 0x1_0000_1234) == {TF(0)}
        # In range, empty level-1 table: the walk's own Translation fault at level 1.
        assert results(A57, cfg, words({}), 0xFFFF_F000) == {TF(1)}

    @pytest.mark.parametrize("cpu, ipa", [
        (A53, 1 << 40), (A57, 1 << 44 | 0x1234), (A76, 1 << 40), (MAX, 1 << 52),
        (A57, 1 << 63),
    ])
    def test_ipa_beyond_pamax_is_stage1_address_size(self, cpu, ipa):
        # AArch64.S1DisabledOutput: stage 1 off, VA[63:PAMax] != 0 -> stage-1
        # Address size fault at level 0 (S = 0), before stage 2 is looked at
        # (even a configuration that would itself fault).
        s1 = Fault(FaultKind.ADDRESS_SIZE, 0, stage2=False)
        assert results(cpu, cfg64(16, 0b10), words({}), ipa) == {s1}
        assert results(cpu, cfg64(24, 0b11, tg0=0b01), words({}), ipa) == {s1}

    def test_ipa_beyond_pamax_check_uses_pamax_not_ps(self):
        # n1 (PAMax 48): IPA 2^44 + x passes stage 1 and, with a 40-bit IPA,
        # is a stage-2 Translation fault at level 0.
        assert results(N1, KVM40, words({}), 1 << 44 | 0x1234) == {TF(0)}


class TestConcatenation:
    """Every geometry row of test_config, walked on max: the last page of the
    IPA space uses the last entry of the (concatenated) start-level table."""

    @pytest.mark.parametrize("granule, level, ia, start_bits, concat, root_bytes", GEOMETRY_ROWS)
    def test_last_page(self, granule, level, ia, start_bits, concat, root_bytes):
        ds = int(granule is not G64 and (ia > 48 or level == -1 or (granule is G16 and level == 0)))
        sl0, sl2 = S.sl_fields(granule, level)
        cfg = cfg64(64 - ia, sl0, tg0=S.TG0[granule], ps=0b110, ds=ds, sl2=sl2, sh0=0b10)
        layout = Layout(granule, ia, level, lpa64=granule is G64, ds=bool(ds))
        b = ImageBuilder(layout, TT, 0x400_0000)
        last = (1 << ia) - (1 << granule.value)
        b.map(last, 0x4000_0000, 3)
        img = b.build()
        # The root is at TT (aligned to its size); the last root entry is at
        # TT + root_bytes - 8.
        assert img.root == TT
        assert b.slot_address(last, level) == TT + root_bytes - 8
        mem = Memory(ram=RAM, regions=img.regions)
        # SH: the descriptor's (0b11) unless DS = 1, then VTCR_EL2.SH0 (0b10).
        sh = 0b10 if ds else 0b11
        assert results(MAX, cfg.with_vttbr(img.vttbr), mem, last | 0x123) == {
            T(0x4000_0123, 3, granule.value, sh=sh)}


# ---------------------------------------------------------------------------
# Descriptor faults, level by level
# ---------------------------------------------------------------------------

# 4K, 48-bit IPA (T0SZ 16) from level 0 (SL0 0b10) on neoverse-n1 (PAMax 48),
# PS 0b101 (48 bits).  IPA 0x80_8060_4567: L0 index IPA[47:39] = 1,
# L1 index IPA[38:30] = 2, L2 index IPA[29:21] = 3, L3 index IPA[20:12] = 4,
# offset 0x567.
IPA4 = 0x80_8060_4567
CFG4 = cfg64(16, 0b10, ps=0b101)
L0E, L1E, L2E, L3E = TT + 1 * 8, TT + 0x1000 + 2 * 8, TT + 0x2000 + 3 * 8, TT + 0x3000 + 4 * 8
FOUR = {L0E: table(TT + 0x1000), L1E: table(TT + 0x2000), L2E: table(TT + 0x3000),
        L3E: page(0x4000_0000)}
ENTRY = {0: L0E, 1: L1E, 2: L2E, 3: L3E}


def four(level=None, desc=None, upto=3) -> Memory:
    """The 4-level walk of IPA4 with the entry at ``level`` replaced by
    ``desc`` and the entries below it dropped."""
    entries = {lvl: d for lvl, d in zip(range(4), (FOUR[L0E], FOUR[L1E], FOUR[L2E], FOUR[L3E]))}
    if level is not None:
        entries[level] = desc
        upto = level
    return words({ENTRY[lvl]: entries[lvl] for lvl in range(upto + 1)})


class TestTranslationFaults:
    def test_four_level_page(self):
        # Page at 0x4000_0000: PA = 0x4000_0000 | 0x567.
        assert results(N1, CFG4, four(), IPA4) == {T(0x4000_0567, 3, 12)}

    @pytest.mark.parametrize("level", [0, 1, 2, 3])
    @pytest.mark.parametrize("desc", [0, 0xFFFF_FFFF_FFFF_FFFE])
    def test_invalid_at_each_level(self, level, desc):
        # AArch64.DecodeDescriptorType: bit 0 clear -> Invalid, whatever the
        # other bits -> Translation fault at the level of the descriptor.
        assert results(N1, CFG4, four(level, desc), IPA4) == {TF(level)}

    def test_reserved_0b01_at_level3(self):
        # bits[1:0] = 0b01 at level 3: BlockDescSupported(level 3) is false.
        assert results(N1, CFG4, four(3, block(0x4000_0000)), IPA4) == {TF(3)}

    def test_blocks_at_levels_1_and_2(self):
        # Level 1: 1 GiB, PA = 0x4000_0000 | IPA[29:0] (0x0060_4567).
        assert results(N1, CFG4, four(1, block(0x4000_0000)), IPA4) == {T(0x4060_4567, 1, 30)}
        # Level 2: 2 MiB, PA = 0x4000_0000 | IPA[20:0] (0x0000_4567).
        assert results(N1, CFG4, four(2, block(0x4000_0000)), IPA4) == {T(0x4000_4567, 2, 21)}

    def test_block_address_bits_below_block_size_are_ignored(self):
        # AArch64.LeafBase takes descriptor[47:leafsize]: bits [29:12] of a
        # level-1 block are not part of the output address.
        assert results(N1, CFG4, four(1, block(0x4000_0000 | 0x3FFF_F000)), IPA4) == {
            T(0x4060_4567, 1, 30)}

    @pytest.mark.parametrize("cpu", [N1, A57, MAX])
    def test_4k_level0_block_needs_ds(self, cpu):
        # AArch64.BlockDescSupported: 4K level 0 only with DS = 1.
        assert results(cpu, cfg64(20, 0b10, ps=0b100), words({TT: block(0)}), 0x4000_1234) == {
            TF(0)}

    def test_4k_level0_block_with_ds(self):
        # max, DS = 1: 512 GiB block (level-0 lsb 39) at OA 0 -> PA = IPA.
        # SH from VTCR_EL2.SH0 (0b10) since descriptor[9:8] are OA[51:50].
        cfg = cfg64(16, 0b10, ps=0b110, ds=1, sh0=0b10)
        mem = words({TT: 0 | ATTRS_DS | 0b01})
        assert results(MAX, cfg, mem, 0x4000_1234) == {T(0x4000_1234, 0, 39, sh=0b10)}
        # On a57 DS is ignored (no FEAT_LPA2): reserved.
        assert results(A57, dataclasses.replace(cfg, t0sz=20, ps=0b100), mem, 0x4000_1234) == {
            TF(0)}

    def test_16k_level1_block_needs_ds(self):
        # 16K, T0SZ 17 (47 bits) from level 1 (SL0 0b10): IPA[46:36] -> index 0.
        # A 64 GiB (2^36) block at level 1 is only supported with DS = 1.
        mem = words({TT: 0 | ATTRS_DS | 0b01})
        assert results(MAX, cfg64(17, 0b10, tg0=0b10, ps=0b110), mem, 0x4000_1234) == {TF(1)}
        cfg = cfg64(17, 0b10, tg0=0b10, ps=0b110, ds=1, sh0=0b00)
        assert results(MAX, cfg, mem, 0x4000_1234) == {T(0x4000_1234, 1, 36, sh=0b00)}

    @pytest.mark.parametrize("cpu, ok", [(MAX, True), (N1, False), (A57, False)])
    def test_64k_level1_block_needs_52bit_pamax(self, cpu, ok):
        # 64K, T0SZ 20 (44 bits) from level 1 (SL0 0b10): IPA[43:42] -> index 0.
        # A 4 TiB (2^42) block at level 1 needs PAMax >= 52 (not PS, not DS):
        # PS here is 48 bits.
        mem = words({TT: block(0)})
        expected = {T(0x4000_1234, 1, 42)} if ok else {TF(1)}
        assert results(cpu, cfg64(20, 0b10, tg0=0b01, ps=0b101), mem, 0x4000_1234) == expected

    def test_level_minus1_never_holds_a_block(self):
        # 4K, DS = 1, level -1 (T0SZ 12): index IPA[51:48] = 0.
        cfg = cfg64(12, 0b00, ps=0b110, ds=1, sl2=1)
        assert results(MAX, cfg, words({TT: 0 | ATTRS_DS | 0b01}), 0x4000_1234) == {TF(-1)}
        assert results(MAX, cfg, words({TT: 0}), 0x4000_1234) == {TF(-1)}


class TestAddressSizeFaults:
    """AArch64.OAOutOfRange checks in AArch64.S2Walk.  PS 0b100 = 44 bits
    (IPA 48 bits > PS is legal: only PAMax bounds the IPA)."""

    CFG = dataclasses.replace(CFG4, ps=0b100)
    BAD = 1 << 44

    def test_vttbr_beyond_ps(self):
        cfg = dataclasses.replace(self.CFG, vttbr=self.BAD | TT)
        assert results(N1, cfg, four(), IPA4) == {ASF(0)}

    @pytest.mark.parametrize("cpu, cfg", [
        # Start-level table address beyond PS -> level 0 whatever the start level.
        (A57, cfg64(24, 0b01, ps=0b010, vttbr=1 << 40 | TT)),          # level 1, PS 40
        (A57, cfg64(30, 0b00, ps=0b000, vttbr=1 << 32 | TT)),          # level 2, PS 32
        (MAX, cfg64(44, 0b11, ps=0b001, vttbr=1 << 36 | TT)),          # level 3, PS 36
        (MAX, cfg64(20, 0b10, tg0=0b01, ps=0b100, vttbr=1 << 44 | TT)),  # 64K level 1
        # level -1 (DS = 1): VTTBR_EL2[5:2] = BADDR = PA[51:48] -> PA bit 48 > PS 48.
        (MAX, cfg64(12, 0b00, ps=0b101, ds=1, sl2=1, vttbr=TT | 0b0001 << 2)),
    ])
    def test_vttbr_beyond_ps_is_level0_for_any_start_level(self, cpu, cfg):
        assert results(cpu, cfg, words({}), 0x1000) == {ASF(0)}

    def test_vttbr_vmid_is_not_address(self):
        # VTTBR_EL2[63:48] is the VMID: never part of the base address.
        cfg = dataclasses.replace(self.CFG, vttbr=0xFFFF << 48 | TT)
        assert results(N1, cfg, four(), IPA4) == {T(0x4000_0567, 3, 12)}

    @pytest.mark.parametrize("level", [0, 1, 2])
    def test_next_table_beyond_ps_is_level_of_table_descriptor(self, level):
        nxt = {0: TT + 0x1000, 1: TT + 0x2000, 2: TT + 0x3000}[level]
        assert results(N1, self.CFG, four(level, table(self.BAD | nxt)), IPA4) == {ASF(level)}

    @pytest.mark.parametrize("level, desc", [
        (1, block(1 << 44)), (2, block(1 << 44)), (3, page(1 << 44)),
    ])
    def test_leaf_oa_beyond_ps_is_leaf_level(self, level, desc):
        assert results(N1, self.CFG, four(level, desc), IPA4) == {ASF(level)}

    def test_same_addresses_fit_48_bit_ps(self):
        # With PS 48: the leaf at 2^44 translates; the table at 2^44 is read,
        # and there is no memory there -> external abort at the next level.
        assert results(N1, CFG4, four(3, page(1 << 44)), IPA4) == {T(1 << 44 | 0x567, 3, 12)}
        assert results(N1, CFG4, four(1, table(1 << 44 | TT)), IPA4) == {SEA(2)}

    @pytest.mark.parametrize("ps", [0b101, 0b110, 0b111])
    def test_ps_above_pamax_is_capped(self, ps):
        # AArch64.PhysicalAddressSize: PS 48, 52 or 56 (0b111, FEAT_D128 only)
        # on a57 is Min(PS, PAMax 44) = 44 bits, not a fault: a 1 GiB block at
        # 2^44 is out of range, one at 2^43 is fine.
        cfg = dataclasses.replace(KVM40, ps=ps)
        assert results(A57, cfg, words({TT + 8: block(1 << 44)}), 0x4000_1234) == {ASF(1)}
        assert results(A57, cfg, words({TT + 8: block(1 << 43)}), 0x4000_1234) == {
            T(1 << 43 | 0x1234, 1, 30)}

    def test_4k_descriptor_bits_above_47_are_not_address_without_ds(self):
        # 4K without DS: the OA is descriptor[47:12] (AArch64.LeafBase);
        # bit 48 is not an address bit, so there is nothing beyond PS.
        assert results(N1, CFG4, four(3, page(1 << 48)), IPA4) == {T(0x567, 3, 12)}

    def test_address_size_beats_access_flag(self):
        # Leaf checks in order: OA out of range, then AF.
        assert results(N1, self.CFG, four(3, page(self.BAD) & ~AF), IPA4) == {ASF(3)}


class TestAddressSize52Bit:
    """52-bit output addresses (AArch64.LeafBase / AArch64.NextTableBase)."""

    # 64K, T0SZ 22 (42 bits) from level 2 (SL0 0b01): IPA[41:29] -> IPA
    # 0x4000_1234 is index 2 -> TT + 0x10.  512 MiB blocks.
    def cfg64k(self, ps):
        return cfg64(22, 0b01, tg0=0b01, ps=ps)

    def test_64k_lpa_oa_bits_15_12(self):
        # FEAT_LPA (max), 64K: descriptor[15:12] = OA[51:48].  bit 12 -> OA[48].
        mem = words({TT + 0x10: block(0x4000_0000, 1 << 12)})
        assert results(MAX, self.cfg64k(0b101), mem, 0x4000_1234) == {ASF(2)}
        assert results(MAX, self.cfg64k(0b110), mem, 0x4000_1234) == {
            T(1 << 48 | 0x4000_1234, 2, 29)}
        # Without FEAT_LPA (n1) bits [15:12] are not address bits: ignored.
        assert results(N1, self.cfg64k(0b110), mem, 0x4000_1234) == {T(0x4000_1234, 2, 29)}

    def test_64k_lpa_table_bits_15_12(self):
        mem = words({TT + 0x10: table(TT + 0x1_0000) | 1 << 12})
        assert results(MAX, self.cfg64k(0b101), mem, 0x4000_1234) == {ASF(2)}
        # PS 52: the next table is at 2^48 + TT: no memory there.
        assert results(MAX, self.cfg64k(0b110), mem, 0x4000_1234) == {SEA(3)}

    def test_64k_vttbr_baddr_5_2_needs_ps_0b110(self):
        # AArch64.S2TTBaseAddress: VTTBR_EL2[5:2] = PA[51:48] only for FEAT_LPA,
        # 64K and PS == 0b110; otherwise they are low address bits, aligned away.
        vttbr = TT | 0b0001 << 2
        mem = words({TT + 0x10: block(0x4000_0000)})
        cfg = dataclasses.replace(self.cfg64k(0b110), vttbr=vttbr)
        assert results(MAX, cfg, mem, 0x4000_1234) == {SEA(2)}   # table at 2^48 + TT
        cfg = dataclasses.replace(self.cfg64k(0b101), vttbr=vttbr)
        assert results(MAX, cfg, mem, 0x4000_1234) == {T(0x4000_1234, 2, 29)}

    # 4K DS = 1, T0SZ 24 from level 1: IPA 0x4000_1234 -> TT + 8 (1 GiB).
    @pytest.mark.parametrize("extra, pa_high", [
        (1 << 8, 1 << 50),    # descriptor[9:8] = OA[51:50]
        (1 << 9, 1 << 51),
        (1 << 48, 1 << 48),   # descriptor[49:48] = OA[49:48]
        (1 << 49, 1 << 49),
    ])
    def test_ds_oa_bits(self, extra, pa_high):
        mem = words({TT + 8: 0x4000_0000 | ATTRS_DS | 0b01 | extra})
        cfg48 = cfg64(24, 0b01, ps=0b101, ds=1, sh0=0b11)
        assert results(MAX, cfg48, mem, 0x4000_1234) == {ASF(1)}
        cfg52 = dataclasses.replace(cfg48, ps=0b110)
        assert results(MAX, cfg52, mem, 0x4000_1234) == {T(pa_high | 0x4000_1234, 1, 30)}

    def test_ds_table_bits(self):
        # DS = 1 table descriptor: descriptor[49:48] = next-table PA[49:48].
        mem = words({TT + 8: table(TT + 0x2000) | 1 << 48})
        cfg = cfg64(24, 0b01, ps=0b101, ds=1)
        assert results(MAX, cfg, mem, 0x4000_1234) == {ASF(1)}

    def test_without_ds_bits_49_48_are_not_address(self):
        # DS = 0: bits [49:48] are not OA bits (RES0, ignored); [9:8] are SH.
        mem = words({TT + 8: block(0x4000_0000, 1 << 48)})
        assert results(MAX, cfg64(24, 0b01, ps=0b110), mem, 0x4000_1234) == {
            T(0x4000_1234, 1, 30)}

    def test_16k_ds_oa_bits(self):
        # 16K, T0SZ 28 (36 bits) from level 2 (SL0 0b01): IPA[35:25] = 0x20 ->
        # TT + 0x100; descriptor[9] = OA[51] > PS 48.
        mem = words({TT + 0x100: 0x4000_0000 | ATTRS_DS | 0b01 | 1 << 9})
        assert results(MAX, cfg64(28, 0b01, tg0=0b10, ps=0b101, ds=1), mem, 0x4000_1234) == {
            ASF(2)}


class TestAccessFlag:
    @pytest.mark.parametrize("level, desc", [
        (1, block(0x4000_0000) & ~AF), (2, block(0x4000_0000) & ~AF),
        (3, page(0x4000_0000) & ~AF),
    ])
    def test_af0_faults_at_leaf_level(self, level, desc):
        # AArch64.S2Walk: AF = 0 and VTCR_EL2.HA = 0 -> Access flag fault.
        for at in AtKind:
            assert results(N1, CFG4, four(level, desc), IPA4, at) == {AFF(level)}

    def test_af0_at_level0_block(self):
        cfg = cfg64(16, 0b10, ps=0b110, ds=1)
        assert results(MAX, cfg, words({TT: ATTRS_DS & ~AF | 0b01}), 0x1234) == {AFF(0)}

    @pytest.mark.parametrize("at", list(AtKind))
    def test_access_flag_beats_permission(self, at):
        # S2AP = 0b00 (no access) and AF = 0: the AF check comes first
        # (AArch64.S2Walk, before AArch64.S2CheckPermissions).
        desc = page(0x4000_0000) & ~(AF | 0b11 << 6)
        assert results(N1, CFG4, four(3, desc), IPA4, at) == {AFF(3)}


class TestPermission:
    """AArch64.S2CheckPermissions: S2AP[0] = read, S2AP[1] = write; AT ...R
    checks read only, AT ...W write only; EL0 vs EL1 only matters for execute,
    which AT never checks, so S12E0x = S12E1x with stage 1 off."""

    @pytest.mark.parametrize("s2ap, readable, writable", [
        (0b00, False, False), (0b01, True, False), (0b10, False, True), (0b11, True, True),
    ])
    @pytest.mark.parametrize("level", [1, 2, 3])
    def test_matrix(self, s2ap, readable, writable, level):
        leaf = {1: block(0x4000_0000), 2: block(0x4000_0000), 3: page(0x4000_0000)}[level]
        desc = leaf & ~(0b11 << 6) | s2ap << 6
        pa, bits = {1: (0x4060_4567, 30), 2: (0x4000_4567, 21), 3: (0x4000_0567, 12)}[level]
        ok = T(pa, level, bits, s2ap=s2ap)
        mem = four(level, desc)
        for at in (R, R0):
            assert results(N1, CFG4, mem, IPA4, at) == ({ok} if readable else {PF(level)})
        for at in (W, W0):
            assert results(N1, CFG4, mem, IPA4, at) == ({ok} if writable else {PF(level)})

    def test_execute_never_does_not_matter_to_at(self):
        # XN[1:0] = desc[54:53] = 0b10: no execution; AT checks R/W only.
        # n1 has FEAT_XNX, so the reported XN is both bits.
        mem = four(3, page(0x4000_0000, 1 << 54 | 1 << 53))
        assert results(N1, CFG4, mem, IPA4, R0) == {T(0x4000_0567, 3, 12, xn=0b11)}
        # Without FEAT_XNX (a57) bit 53 is not XN.
        cfg = cfg64(20, 0b10, ps=0b100)
        mem57 = words({TT + 8 * 0: table(TT + 0x1000), TT + 0x1000 + 8: block(0x4000_0000, 1 << 53)})
        assert results(A57, cfg, mem57, 0x4000_1234) == {T(0x4000_1234, 1, 30, xn=0)}


class TestExternalAbort:
    """A descriptor read where there is no memory: synchronous External abort
    on the walk, at the level being fetched (AArch64.S2Walk/FetchDescriptor)."""

    def test_vttbr_outside_ram(self):
        assert results(N1, dataclasses.replace(CFG4, vttbr=NO_RAM), four(), IPA4) == {SEA(0)}
        assert results(A57, dataclasses.replace(KVM40, vttbr=NO_RAM), words({}), 0x1234) == {
            SEA(1)}

    @pytest.mark.parametrize("level", [0, 1, 2])
    def test_table_outside_ram(self, level):
        assert results(N1, CFG4, four(level, table(NO_RAM)), IPA4) == {SEA(level + 1)}

    def test_level_minus1_root_outside_ram(self):
        cfg = cfg64(12, 0b00, ps=0b110, ds=1, sl2=1, vttbr=NO_RAM)
        assert results(MAX, cfg, words({}), 0x1234) == {SEA(-1)}

    def test_level_minus1_bad_next_table(self):
        # A level -1 table descriptor whose next-table address has PA[48]
        # (descriptor[48] with DS = 1) beyond PS 48: Address size at level -1.
        cfg = cfg64(12, 0b00, ps=0b101, ds=1, sl2=1)
        assert results(MAX, cfg, words({TT: table(TT + 0x1000) | 1 << 48}), 0x1234) == {ASF(-1)}


class TestContiguous:
    """AArch64.ContiguousBit / ContiguousSize / StageOA / ContiguousBitFaults."""

    def test_consistent_set_of_16_pages(self):
        # 4K pages: a contiguous set is 16 entries (64 KiB), aligned.
        maps = [(0x4000_0000 + i * 0x1000, 0x5000_0000 + i * 0x1000, 3,
                 LeafAttrs(contiguous=1)) for i in range(16)]
        cfg, mem = built(KVM40, G4, 40, 1, maps)
        assert results(A57, cfg, mem, 0x4000_5234) == {T(0x5000_5234, 3, 12, contiguous=1)}

    def test_misprogrammed_set(self):
        # One page (index 5 of its set) with Contiguous = 1 whose OA
        # 0x5000_0000 does not match its position.  StageOA takes OA[15:0]
        # from the IPA: 0x5000_0000 | 0x5234; the descriptor's own OA
        # (0x5000_0000 | 0x234) is also permitted (misprogrammed contiguous
        # entries are CONSTRAINED UNPREDICTABLE).
        # Walk: L1 index 1 (TT + 8) -> L2 table at TT + 0x2000, index 0 ->
        # L3 table at TT + 0x3000, index 5 (TT + 0x3028).
        mem = words({TT + 8: table(TT + 0x2000), TT + 0x2000: table(TT + 0x3000),
                     TT + 0x3028: page(0x5000_0000, 1 << 52)})
        assert results(A57, KVM40, mem, 0x4000_5234) == {
            T(0x5000_5234, 3, 12, contiguous=1), T(0x5000_0234, 3, 12, contiguous=1)}

    @pytest.mark.parametrize("cfg, desc, expected", [
        # 64K level 1 (max): the Contiguous bit is ignored (not a 2^(42+5) range).
        (cfg64(20, 0b10, tg0=0b01, ps=0b101), block(0, 1 << 52), T(0x4000_1234, 1, 42)),
        # 16K level 1 (DS = 1): ignored.
        (cfg64(17, 0b10, tg0=0b10, ps=0b110, ds=1), 0 | ATTRS_DS | 0b01 | 1 << 52,
         T(0x4000_1234, 1, 36)),
        # 4K level 0 (DS = 1): ignored.
        (cfg64(16, 0b10, ps=0b110, ds=1), 0 | ATTRS_DS | 0b01 | 1 << 52, T(0x4000_1234, 0, 39)),
    ])
    def test_ignored_where_no_contiguous_range_exists(self, cfg, desc, expected):
        assert results(MAX, cfg, words({TT: desc}), 0x4000_1234) == {expected}

    def test_range_larger_than_ipa_space(self):
        # 16K, T0SZ 48 (16-bit IPA, FEAT_TTST) from level 3 (SL0 0b00):
        # IPA[15:14] indexes 4 entries; IPA 0x5234 -> index 1 (TT + 8).
        # A 16K page set is 128 entries: 14 + 7 = 21 bits > 16:
        # IMPLEMENTATION DEFINED Translation fault, or the translation, whose
        # StageOA takes OA[20:0] from the IPA (0x4000_0000 | 0x5234), or the
        # descriptor's own OA (0x4000_8000 | 0x1234).
        mem = words({TT + 8: page(0x4000_8000, 1 << 52)})
        cfg = cfg64(48, 0b00, tg0=0b10)
        assert results(MAX, cfg, mem, 0x5234) == {
            TF(3), T(0x4000_5234, 3, 14, contiguous=1), T(0x4000_9234, 3, 14, contiguous=1)}


class TestBlocknT:
    """AArch64.BlocknTFaults: with FEAT_BBM level 1 or 2, a block with nT
    (bit 16) = 1 may fault (IMPLEMENTATION DEFINED)."""

    def test_max_has_bbm2(self):
        mem = words({TT + 8: block(0x4000_0000, 1 << 16)})
        assert results(MAX, KVM40, mem, 0x4000_1234) == {TF(1), T(0x4000_1234, 1, 30)}

    def test_without_bbm_nt_is_ignored(self):
        mem = words({TT + 8: block(0x4000_0000, 1 << 16)})
        assert results(N1, KVM40, mem, 0x4000_1234) == {T(0x4000_1234, 1, 30)}

    def test_pages_have_no_nt(self):
        # At level 3 bit 16 is OA[16] of a 4K page, never nT.
        mem = words({TT + 8: table(TT + 0x2000), TT + 0x2000: table(TT + 0x3000),
                     TT + 0x3008: page(0x5000_0000 | 1 << 16)})
        assert results(MAX, KVM40, mem, 0x4000_1234) == {T(0x5001_0234, 3, 12)}


class TestHardwareUpdates:
    """VTCR_EL2.HA/HD (FEAT_HAFDBS) on AT: AArch64.S2Translate."""

    LEAF = TT + 8                       # KVM40: IPA 0x4000_1234 -> level-1 entry TT + 8
    AF0 = block(0x4000_0000) & ~AF      # 0x4000_03FD

    def test_values(self):
        assert self.AF0 == 0x4000_03FD

    @pytest.mark.parametrize("cpu", [A76, N1, MAX])
    def test_af_set_by_hardware(self, cpu):
        # HA = 1: no Access flag fault.  The successful AT may set the AF
        # (AArch64.SettingAccessFlagPermitted) and is not required to
        # (AT instructions are permitted but not required to update it).
        cfg = dataclasses.replace(KVM40, ha=1)
        ok = T(0x4000_1234, 1, 30, af=0)
        write = DescriptorWrite(self.LEAF, 0x4000_03FD, 0x4000_07FD)
        assert outcomes(cpu, cfg, words({self.LEAF: self.AF0}), 0x4000_1234) == {
            (ok, (write,)), (ok, ())}

    @pytest.mark.parametrize("cpu", [A57, A35, A53])
    def test_ha_ignored_without_hafdbs(self, cpu):
        cfg = dataclasses.replace(KVM40, ha=1, hd=1)
        assert outcomes(cpu, cfg, words({self.LEAF: self.AF0}), 0x4000_1234) == {(AFF(1), ())}

    def test_no_update_on_other_faults(self):
        # AArch64.SettingAccessFlagPermitted: only no fault (always) or a
        # Permission/Alignment fault (Unpredictable_AFUPDATE); an Address size
        # fault at the leaf (checked before the AF) never sets it.
        cfg = dataclasses.replace(KVM40, ha=1)
        desc = block(1 << 40) & ~AF
        assert outcomes(MAX, cfg, words({self.LEAF: desc}), 0x4000_1234) == {(ASF(1), ())}

    def test_ha_0_faults(self):
        assert outcomes(MAX, KVM40, words({self.LEAF: self.AF0}), 0x4000_1234) == {(AFF(1), ())}

    @pytest.mark.parametrize("cpu", [A76, N1, MAX])
    def test_permission_fault_with_af0(self, cpu):
        # S2AP = 0b01 (read-only), write AT: Permission fault; setting the AF is
        # CONSTRAINED UNPREDICTABLE (Unpredictable_AFUPDATE): both outcomes.
        desc = self.AF0 & ~(0b11 << 6) | 0b01 << 6          # 0x4000_037D
        cfg = dataclasses.replace(KVM40, ha=1)
        write = DescriptorWrite(self.LEAF, 0x4000_037D, 0x4000_077D)
        assert outcomes(cpu, cfg, words({self.LEAF: desc}), 0x4000_1234, W) == {
            (PF(1), ()), (PF(1), (write,))}

    @pytest.mark.parametrize("cpu", [A76, N1, MAX])
    @pytest.mark.parametrize("at", [W, W0])
    def test_dbm_write_at_does_not_set_dirty(self, cpu, at):
        # DBM = 1 (bit 51), S2AP = 0b01, HA = HD = 1: the entry counts as
        # writable, so the write AT succeeds; but AArch64.S2Translate excludes
        # AccessType_AT from the dirty-state update: no write at all (AF = 1).
        desc = block(0x4000_0000) & ~(0b11 << 6) | 0b01 << 6 | 1 << 51
        cfg = dataclasses.replace(KVM40, ha=1, hd=1)
        assert outcomes(cpu, cfg, words({self.LEAF: desc}), 0x4000_1234, at) == {
            (T(0x4000_1234, 1, 30, s2ap=0b01, dbm=1), ())}

    def test_dbm_write_at_with_af0_sets_only_af(self):
        desc = self.AF0 & ~(0b11 << 6) | 0b01 << 6 | 1 << 51      # 0x0008_0000_4000_037D
        cfg = dataclasses.replace(KVM40, ha=1, hd=1)
        ok = T(0x4000_1234, 1, 30, s2ap=0b01, dbm=1, af=0)
        # Only bit 10 changes; S2AP[1] (bit 7) stays 0.
        write = DescriptorWrite(self.LEAF, 0x0008_0000_4000_037D, 0x0008_0000_4000_077D)
        assert outcomes(MAX, cfg, words({self.LEAF: desc}), 0x4000_1234, W) == {
            (ok, (write,)), (ok, ())}

    @pytest.mark.parametrize("ha, hd", [(1, 0), (0, 1)])
    def test_dbm_needs_ha_and_hd(self, ha, hd):
        desc = block(0x4000_0000) & ~(0b11 << 6) | 0b01 << 6 | 1 << 51
        cfg = dataclasses.replace(KVM40, ha=ha, hd=hd)
        assert outcomes(MAX, cfg, words({self.LEAF: desc}), 0x4000_1234, W) == {(PF(1), ())}

    def test_dbm_ignored_without_hafdbs(self):
        desc = block(0x4000_0000) & ~(0b11 << 6) | 0b01 << 6 | 1 << 51
        cfg = dataclasses.replace(KVM40, ha=1, hd=1)
        assert outcomes(A57, cfg, words({self.LEAF: desc}), 0x4000_1234, W) == {(PF(1), ())}

    def test_hafdbs_level1_has_no_dirty_state(self):
        # A CPU with HAFDBS = 1 (Access flag only): HD is read as 0.
        regs = tuple((n, (v & ~0xF | 1) if n == "ID_AA64MMFR1_EL1" else v)
                     for n, v in MAX.id_regs)
        af_only = dataclasses.replace(MAX, id_regs=regs)
        assert af_only.hafdbs == 1
        cfg = dataclasses.replace(KVM40, ha=1, hd=1)
        desc = block(0x4000_0000) & ~(0b11 << 6) | 0b01 << 6 | 1 << 51
        assert outcomes(af_only, cfg, words({self.LEAF: desc}), 0x4000_1234, W) == {(PF(1), ())}
        ok = T(0x4000_1234, 1, 30, af=0)
        write = DescriptorWrite(self.LEAF, 0x4000_03FD, 0x4000_07FD)
        assert outcomes(af_only, cfg, words({self.LEAF: self.AF0}), 0x4000_1234) == {
            (ok, (write,)), (ok, ())}

    def test_read_on_dbm_page(self):
        desc = block(0x4000_0000) & ~(0b11 << 6) | 0b01 << 6 | 1 << 51
        cfg = dataclasses.replace(KVM40, ha=1, hd=1)
        assert outcomes(MAX, cfg, words({self.LEAF: desc}), 0x4000_1234, R) == {
            (T(0x4000_1234, 1, 30, s2ap=0b01, dbm=1), ())}


class TestTrace:
    def test_trace_of_four_level_walk(self):
        # One trace step per descriptor read, with the PA it was read from.
        o = walk(N1, CFG4, four(), IPA4, R).primary
        assert [(s.level, s.address, s.value) for s in o.trace] == [
            (0, L0E, FOUR[L0E]), (1, L1E, FOUR[L1E]), (2, L2E, FOUR[L2E]), (3, L3E, FOUR[L3E])]


# ---------------------------------------------------------------------------
# Property: a built image translates to exactly what it was built from
# ---------------------------------------------------------------------------


def expected_fault_level(vc: S.ValidConfig, accepted: list[S.Mapping], ipa: int) -> int:
    """Level of the Translation fault for an unmapped ``ipa``: the walk
    follows table entries while some mapping below that level shares the
    IPA's index path, and stops at the first empty entry."""
    level = vc.start_level
    while any(m.level > level and m.ipa >> S.level_lsb(vc.granule, level)
              == ipa >> S.level_lsb(vc.granule, level) for m in accepted):
        level += 1
    return level


def build_accepting(vc: S.ValidConfig, maps: list[S.Mapping]):
    """Build ``maps`` with ImageBuilder; the builder must refuse exactly the
    mappings that overlap one already accepted."""
    layout = Layout(vc.granule, vc.ia_bits, vc.start_level,
                    lpa64=vc.granule is G64 and vc.facts.lpa, ds=bool(vc.ds))
    b = ImageBuilder(layout, *S.TABLE_WINDOW)
    accepted: list[S.Mapping] = []
    for m in maps:
        overlaps = any(m.ipa < a.ipa + (1 << a.block_bits) and a.ipa < m.ipa + (1 << m.block_bits)
                       for a in accepted)
        if overlaps:
            with pytest.raises(Conflict):
                b.map(m.ipa, m.oa, m.level, m.attrs)
        else:
            b.map(m.ipa, m.oa, m.level, m.attrs)
            accepted.append(m)
    img = b.build()
    return vc.config.with_vttbr(img.vttbr), Memory(ram=RAM, regions=img.regions), accepted


def expected_for(vc: S.ValidConfig, m: S.Mapping, offset: int, at: AtKind):
    """What AT ``at`` at m.ipa + offset must give, from the mapping alone."""
    a = m.attrs
    if (m.oa + offset) >> vc.oa_size:
        return ASF(m.level)          # AArch64.OAOutOfRange, before AF and permissions
    if (a.s2ap & 0b10 == 0) if at.is_write else (a.s2ap & 0b01 == 0):
        return PF(m.level)
    if vc.config.arch is Arch.AARCH32:
        sh, dbm = a.sh, 0             # AArch32: no DS, no DBM
    else:
        sh, dbm = (vc.config.sh0 if vc.ds else a.sh), a.dbm
    xn = a.xn if vc.facts.xnx else a.xn & 0b10
    return Translation(pa=m.oa + offset, level=m.level, block_bits=m.block_bits, s2ap=a.s2ap,
                       xn=xn, memattr=a.memattr, sh=sh, af=1, contiguous=0, dbm=dbm)


def check_image_property(vc, maps, unmapped, ats):
    cfg, mem, accepted = build_accepting(vc, maps)
    note(cfg.describe())
    for i, m in enumerate(accepted):
        for j, off in enumerate(m.offsets):
            at = ats[(i + j) % len(ats)]
            got = results(vc.cpu, cfg, mem, m.ipa + off, at)
            assert got == {expected_for(vc, m, off, at)}, (hex(m.ipa + off), at)
    for ipa in unmapped:
        if any(m.contains(ipa) for m in accepted):
            continue
        assert results(vc.cpu, cfg, mem, ipa) == {TF(expected_fault_level(vc, accepted, ipa))}


@st.composite
def aarch64_images(draw):
    vc = draw(S.valid_aarch64_configs())
    maps = draw(S.mappings(vc))
    unmapped = draw(st.lists(st.integers(0, (1 << vc.ia_bits) - 1), max_size=4))
    ats = draw(st.lists(S.at_kinds(), min_size=1, max_size=4))
    return vc, maps, unmapped, ats


class TestBuiltImages:
    @given(aarch64_images())
    def test_walk_returns_the_mapping(self, image):
        """Probes inside a mapping translate to it (or meet its S2AP);
        probes elsewhere are Translation faults where the tables stop."""
        check_image_property(*image)

    @given(S.valid_aarch64_configs())
    @example(S.ValidConfig(MAX, cfg64(12, 0b00, ps=0b110, ds=1, sl2=1, sh0=0b01), G4, 52, -1,
                           1, 52, 52))
    def test_valid_configs_reach_the_walk(self, vc):
        """A configuration the hand rules call valid is not a level-0
        configuration fault: an empty image faults at the start level."""
        cfg = vc.config.with_vttbr(TT)
        assert results(vc.cpu, cfg, words({}), 0) == {TF(vc.start_level)}
