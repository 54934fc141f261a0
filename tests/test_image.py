"""Descriptor encoders, the table-image builder and the memory view.

Descriptor layout (Arm ARM D8.3, stage 2, 64-bit descriptors):
bits[1:0] 0b01 block / 0b11 table or page; MemAttr [5:2]; S2AP [7:6];
SH [9:8]; AF [10]; OA [47:granule or block size]; DBM [51];
Contiguous [52]; XN[1:0] = [54:53].  PA[51:48]: 64K with FEAT_LPA in
bits [15:12]; with DS = 1 PA[51:50] in [9:8] and PA[49:48] in [49:48].
VTTBR_EL2: VMID [63:48], BADDR [47:1]; with a 52-bit base BADDR[5:2]
holds PA[51:48] (AArch64.S2TTBaseAddress).
"""
from __future__ import annotations

import struct

import pytest
from test_walk import FOUR, IPA4, L0E, L1E, L2E, L3E, TT

from reference.arch import Arch, AtKind, Granule
from reference.config import S2Config
from reference.cpus import get_cpu
from reference.image import (
    Conflict,
    ImageBuilder,
    Layout,
    LeafAttrs,
    encode_leaf,
    encode_table,
    layout_for,
    vttbr_vmid_bits,
)
from reference.memory import Memory, Region
from reference.walk import walk

G4, G16, G64 = Granule.G4K, Granule.G16K, Granule.G64K
A64 = Arch.AARCH64


def q(value: int) -> bytes:
    return struct.pack("<Q", value)


class TestEncodeLeaf:
    L40 = Layout(G4, 40, 1)

    def test_default_block_and_page(self):
        # 0b01 | MemAttr 0b1111 << 2 (0x3C) | S2AP 0b11 << 6 (0xC0) | SH 0b11 << 8
        # (0x300) | AF (0x400) = 0x7FD; a page has bits[1:0] = 0b11.
        assert encode_leaf(self.L40, 1, 0x4000_0000) == 0x4000_07FD
        assert encode_leaf(self.L40, 2, 0x4000_0000) == 0x4000_07FD
        assert encode_leaf(self.L40, 3, 0x4000_0000) == 0x4000_07FF

    def test_every_attribute(self):
        # 0b01 | 0b0101 << 2 (0x14) | 0b01 << 6 (0x40) | 0b10 << 8 (0x200), AF 0,
        # DBM 1 << 51, Contiguous 1 << 52, XN 0b10 -> bit 54.
        attrs = LeafAttrs(s2ap=0b01, af=0, xn=0b10, memattr=0b0101, sh=0b10, dbm=1,
                          contiguous=1)
        assert encode_leaf(self.L40, 2, 0x20_0000, attrs) == 0x0058_0000_0020_0255
        # XN 0b01 -> bit 53.
        assert encode_leaf(self.L40, 3, 0, LeafAttrs(xn=0b01)) == 0x0020_0000_0000_07FF

    def test_oa_bits_below_the_block_are_dropped(self):
        # 2 MiB block: OA[20:0] are not descriptor bits.
        assert encode_leaf(self.L40, 2, 0x4012_3456) == 0x4000_07FD

    def test_ds_oa_51_48(self):
        layout = Layout(G4, 52, 0, ds=True)
        # PA[51:50] = 0b11 -> [9:8], PA[49:48] = 0b11 -> [49:48]; SH not encoded.
        assert encode_leaf(layout, 1, 0xF_0000_4000_0000) == 0x0003_0000_4000_07FD
        assert encode_leaf(layout, 1, 1 << 50 | 0x4000_0000, LeafAttrs(sh=0b11)) == 0x4000_05FD
        assert encode_leaf(layout, 1, 1 << 49 | 0x4000_0000) == 0x0002_0000_4000_04FD

    def test_lpa64_oa_51_48(self):
        layout = Layout(G64, 42, 2, lpa64=True)
        # PA[51:48] = 0x5 -> bits [15:12].
        assert encode_leaf(layout, 2, 0x5_0000_4000_0000) == 0x4000_57FD

    def test_52bit_address_needs_a_52bit_layout(self):
        with pytest.raises(ValueError):
            encode_leaf(self.L40, 1, 1 << 48)


class TestEncodeTable:
    def test_plain(self):
        # bits[1:0] = 0b11, next-table address [47:12]; no attributes at stage 2.
        assert encode_table(Layout(G4, 40, 1), 0x4100_2000) == 0x4100_2003
        assert encode_table(Layout(G4, 40, 1), 0x4100_2FFF) == 0x4100_2003
        # 64K: address [47:16].
        assert encode_table(Layout(G64, 42, 2), 0x4101_0000) == 0x4101_0003

    def test_52bit(self):
        assert encode_table(Layout(G4, 52, -1, ds=True), 1 << 48 | 0x4100_2000) == (
            0x0001_0000_4100_2003)
        assert encode_table(Layout(G64, 52, 1, lpa64=True), 1 << 48 | 0x4101_0000) == (
            0x4101_1003)


class TestBuilder:
    def test_four_levels_match_the_hand_built_walk(self):
        # The same tables test_walk.py writes by hand: root (level 0, 4 KiB)
        # at TT, then one table per level, each one granule after the last.
        b = ImageBuilder(Layout(G4, 48, 0), TT, 0x10_0000)
        assert b.map(IPA4, 0x4000_0000, 3) == L3E
        img = b.build()
        assert img.root == TT
        assert img.vttbr == 1 << 48 | TT          # VMID 1
        assert img.tables == ((0, TT), (1, TT + 0x1000), (2, TT + 0x2000), (3, TT + 0x3000))
        assert img.regions == (Region(L0E, q(FOUR[L0E])), Region(L1E, q(FOUR[L1E])),
                               Region(L2E, q(FOUR[L2E])), Region(L3E, q(FOUR[L3E])))
        assert img.size == 32
        assert img.window == (TT, 0x10_0000)

    def test_regions_span_only_the_used_entries(self):
        b = ImageBuilder(Layout(G4, 40, 1), TT, 0x10_0000)
        b.map(0x4000_0000, 0x4000_0000, 1)     # L1 index 1
        b.map(0xC000_0000, 0x8000_0000, 1)     # L1 index 3
        (region,) = b.build().regions
        assert region == Region(TT + 8, q(0x4000_07FD) + q(0) + q(0x8000_07FD))

    def test_root_is_aligned_to_its_size(self):
        # 40 bits from level 1: 1024 entries = 8 KiB, so a base of TT + 0x100
        # rounds up to TT + 0x2000; the next tables follow, granule aligned.
        b = ImageBuilder(Layout(G4, 40, 1), TT + 0x100, 0x10_0000)
        b.map(0x4000_1000, 0x5000_0000, 3)
        img = b.build()
        assert img.root == TT + 0x2000
        assert img.tables == ((1, TT + 0x2000), (2, TT + 0x4000), (3, TT + 0x5000))
        assert img.vttbr == 1 << 48 | TT + 0x2000

    def test_small_root_is_64_byte_aligned(self):
        # 31 bits from level 1: 2 entries (16 bytes); the root is at least
        # 64-byte aligned (AArch64.S2TTBaseAddress with a 52-bit base).
        b = ImageBuilder(Layout(G4, 31, 1), TT + 8, 0x10_0000)
        b.map(0x4000_1000, 0x5000_0000, 2)
        img = b.build()
        assert img.root == TT + 0x40
        assert img.tables == ((1, TT + 0x40), (2, TT + 0x1000))

    def test_concatenated_root_then_tables(self):
        # 64K, 33 bits from level 3: 2^17 entries = 16 tables = 1 MiB root.
        b = ImageBuilder(Layout(G64, 33, 3), TT, 0x100_0000)
        assert b.map((1 << 33) - 0x1_0000, 0x4000_0000, 3) == TT + 0x10_0000 - 8
        b2 = ImageBuilder(Layout(G64, 46, 2), TT, 0x100_0000)
        b2.map(0, 0x4000_0000, 3)
        assert b2.build().tables == ((2, TT), (3, TT + 0x10_0000))

    def test_conflicts(self):
        b = ImageBuilder(Layout(G4, 40, 1), TT, 0x10_0000)
        b.map(0x4000_0000, 0x4000_0000, 2)               # 2 MiB block
        with pytest.raises(Conflict):
            b.map(0x4000_0000, 0x5000_0000, 2)           # same slot
        with pytest.raises(Conflict):
            b.map(0x4010_0000, 0x5000_0000, 3)           # a page inside the block
        with pytest.raises(Conflict):
            b.map(0x4000_0000, 0x4000_0000, 1)           # a block over the L2 table
        assert b.free(0x4020_0000, 2) and not b.free(0x4000_0000, 2)
        assert not b.free(0x4000_0000, 3)

    def test_window_full(self):
        b = ImageBuilder(Layout(G4, 40, 1), TT, 0x3000)  # room for root (8 KiB) + 1 table
        b.map(0x4000_0000, 0x4000_0000, 2)
        with pytest.raises(Conflict):
            b.map(0x8000_0000, 0x4000_0000, 2)

    def test_plant_and_slot_address(self):
        b = ImageBuilder(Layout(G4, 40, 1), TT, 0x10_0000)
        assert b.slot_address(0x4000_1000, 3) == TT + 0x3008
        assert b.plant(0x4000_1000, 3, 0xDEAD_0001) == TT + 0x3008
        assert b.build().regions[-1] == Region(TT + 0x3008, q(0xDEAD_0001))
        with pytest.raises(Conflict):
            b.plant(0x4000_1000, 3, 0)

    def test_52bit_root_in_vttbr(self):
        # Root at PA 2^48 + TT: VTTBR = VMID << 48 | BADDR[47:6] | PA[51:48] << 2.
        base = 1 << 48 | TT
        b = ImageBuilder(Layout(G4, 52, -1, ds=True), base, 0x10_0000, vmid=0x2A)
        b.map(0x4000_0000, 0x4000_0000, 1)
        img = b.build()
        assert img.vttbr == 0x002A_0000_4100_0004
        # The walker finds the root there (max, 4K, DS = 1, level -1).
        cfg = S2Config(arch=A64, t0sz=12, sl0=0, sl2=1, ds=1, ps=0b110, sh0=0b11,
                       vttbr=img.vttbr)
        mem = Memory(ram=((1 << 48, 1 << 32),), regions=img.regions)
        (o,) = walk(get_cpu(A64, "max"), cfg, mem, 0x4000_1234, AtKind.S12E1R).outcomes
        assert (o.result.pa, o.result.level) == (0x4000_1234, 1)


class TestLayoutFor:
    @pytest.mark.parametrize("cpu, tg0, ds, lpa64, ds_eff", [
        ("max", 0b01, 0, True, False),       # 64K + FEAT_LPA: bits [15:12]
        ("max", 0b01, 1, True, False),       # DS is ignored for 64K
        ("neoverse-n1", 0b01, 0, False, False),
        ("max", 0b00, 1, False, True),       # 4K + DS with FEAT_LPA2
        ("neoverse-n1", 0b00, 1, False, False),   # no FEAT_LPA2: DS ignored
        ("max", 0b10, 1, False, True),
    ])
    def test_layout(self, cpu, tg0, ds, lpa64, ds_eff):
        cfg = S2Config(arch=A64, t0sz=24, sl0=1, tg0=tg0, ds=ds)
        layout = layout_for(get_cpu(A64, cpu), cfg, 1)
        assert (layout.lpa64, layout.ds, layout.ia_bits, layout.start_level) == (
            lpa64, ds_eff, 40, 1)

    def test_vmid_fields(self):
        assert vttbr_vmid_bits(Arch.AARCH64) == (63, 48)
        assert vttbr_vmid_bits(Arch.AARCH32) == (55, 48)


class TestMemory:
    RAM = ((0x4000_0000, 0x1000),)

    def test_reads(self):
        mem = Memory(ram=self.RAM, regions=(Region(0x4000_0010, q(0x1122_3344_5566_7788)),))
        assert mem.read64(0x4000_0010) == 0x1122_3344_5566_7788   # little-endian
        assert mem.read64(0x4000_0008) == 0                        # zero-filled RAM
        assert mem.read64(0x4000_0FF8) == 0
        assert mem.read64(0x4000_1000) is None                     # past the end of RAM
        assert mem.read64(0x3FFF_FFF8) is None

    def test_overlapping_regions_are_rejected(self):
        with pytest.raises(ValueError):
            Memory(ram=self.RAM, regions=(Region(0x4000_0000, bytes(16)),
                                          Region(0x4000_0008, bytes(8))))

    def test_region_end(self):
        assert Region(0x4000_0000, bytes(24)).end == 0x4000_0018
