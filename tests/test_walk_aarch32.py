"""AArch32 (LPAE) stage-2 walk against the Arm ARM pseudocode.

AArch32.S2Translate / AArch32.S2Walk (Sail arm-v9.4-a): 4K granule only,
signed 4-bit T0SZ (IPA 32 - SInt(T0SZ) = 25..40 bits), start level
2 - SL0, 40-bit output.  Configuration faults (SL0 1x, T0SZ/SL0
inconsistent, IPA out of range) are Translation faults at *level 1*
("AArch64 reports this as a level 0 fault").  No hardware AF/dirty update.
Probes are ATS12NSOPR (AtKind.S12E1R) unless stated; stage 1 is off.
"""
from __future__ import annotations

import dataclasses

import pytest
import strategies as S
from hypothesis import given
from hypothesis import strategies as st
from test_walk import (
    AF,
    AFF,
    ASF,
    NO_RAM,
    PF,
    SEA,
    TF,
    TT,
    T,
    block,
    built,
    check_image_property,
    page,
    results,
    table,
    words,
)

from reference.arch import Arch, AtKind, Granule
from reference.config import S2Config
from reference.cpus import get_cpu
from reference.image import LeafAttrs

A32 = Arch.AARCH32
G4 = Granule.G4K
A15, A7, MAX = (get_cpu(A32, n) for n in ("cortex-a15", "cortex-a7", "max"))
V7 = [A15, A7]
R, W, R0, W0 = AtKind.S12E1R, AtKind.S12E1W, AtKind.S12E0R, AtKind.S12E0W


def cfg32(t0sz: int, sl0: int, vttbr: int = TT, s: int | None = None) -> S2Config:
    return S2Config(arch=A32, t0sz=t0sz, sl0=sl0, s=s, sh0=0b11, irgn0=1, orgn0=1, vttbr=vttbr)


# VTCR 0x80003558 (DESIGN.md): T0SZ -8 -> 40-bit IPA, S = 1, SL0 = 1 ->
# start level 1 resolving IPA[39:30] (10 bits: two concatenated tables).
# IPA 0x4000_1234 -> level-1 index 1 -> TT + 8.
DESIGN = S2Config.from_vtcr(A32, 0x8000_3558, vttbr=TT)


class TestBaseline:
    @pytest.mark.parametrize("cpu", [A15, A7, MAX])
    def test_design_vtcr(self, cpu):
        mem = words({TT + 8: block(0x4000_0000)})
        for at in AtKind:
            assert results(cpu, DESIGN, mem, 0x4000_1234, at) == {T(0x4000_1234, 1, 30)}

    def test_last_level1_entry(self):
        # IPA 0xFF_C000_1234: IPA[39:30] = 0x3FF, the last of 1024 entries in
        # the two concatenated tables: TT + 0x1FF8.
        mem = words({TT + 0x1FF8: block(0x4000_0000)})
        assert results(A15, DESIGN, mem, 0xFF_C000_1234) == {T(0x4000_1234, 1, 30)}


class TestConfiguration:
    @pytest.mark.parametrize("sl0", [0b10, 0b11])
    def test_sl0_1x_is_level1_translation_fault(self, sl0):
        # AArch32.S2Walk: SL0[1] = 1 (no level 0 in AArch32) -> TF level 1.
        assert results(A15, cfg32(-8, sl0), words({TT + 8: block(0x4000_0000)}),
                       0x4000_1234) == {TF(1)}

    def test_40bit_ipa_from_level2_is_inconsistent(self):
        # Level 2 resolves 22..34-bit IPAs; 40 bits would be 19 bits at level 2.
        assert results(MAX, cfg32(-8, 0b00), words({}), 0x1234) == {TF(1)}

    def test_25bit_ipa_from_level1_is_inconsistent(self):
        # T0SZ 7: 25-bit IPA; level 1 needs at least 31 bits.
        assert results(A15, cfg32(7, 0b01), words({}), 0x1234) == {TF(1)}

    def test_25bit_ipa_from_level2(self):
        # 25 - 21 = 4 bits at level 2: 16 entries; IPA 0x100_1234 -> index 8.
        mem = words({TT + 8 * 8: block(0x4000_0000)})
        assert results(A15, cfg32(7, 0b00), mem, 0x100_1234) == {T(0x4000_1234, 2, 21)}

    def test_32bit_ipa_from_level2_uses_4_tables(self):
        # T0SZ 0, SL0 0: 32 - 21 = 11 bits at level 2 = 4 concatenated tables.
        # IPA 0x4000_1234 -> IPA[31:21] = 0x200 -> TT + 0x1000 (in the 2nd table).
        mem = words({TT + 0x1000: block(0x4000_0000)})
        assert results(A7, cfg32(0, 0b00), mem, 0x4000_1234) == {T(0x4000_1234, 2, 21)}

    def test_ipa_out_of_range_is_level1(self):
        # AArch32.IPAIsOutOfRange: T0SZ 1 -> 31-bit IPA; IPA bit 31 set -> TF L1.
        # (The level-1 index IPA[30:30] of 0x8000_1234 is 0: entry 0 holds a
        # block, so only the range check can make this fault.)
        cfg = cfg32(1, 0b01)
        mem = words({TT: block(0x6000_0000), TT + 8: block(0x4000_0000)})
        assert results(A15, cfg, mem, 0x8000_1234) == {TF(1)}
        # IPA[30] = 1: the second of the two level-1 entries.
        assert results(A15, cfg, mem, 0x4000_1234) == {T(0x4000_1234, 1, 30)}

    @pytest.mark.parametrize("s, t0sz", [(0, -8), (1, 0)])
    def test_s_mismatch_makes_t0sz_unknown(self, s, t0sz):
        # VTCR.S != T0SZ[3]: CONSTRAINED UNPREDICTABLE (Unpredictable_RESVTCRS),
        # T0SZ is UNKNOWN: the union over T0SZ = -8..7 with SL0 = 1.
        #   T0SZ 2..7 (25..30 bits): IPA 0x4000_1234 (bit 30) out of range -> TF L1;
        #   T0SZ -8..1 (40..31 bits): consistent with level 1 (1..10 bits), the
        #   level-1 index is IPA[ia-1:30] = 1 in every case, the base TT is
        #   aligned for the largest root (8 KiB) -> the same block.
        mem = words({TT + 8: block(0x4000_0000)})
        assert results(A15, cfg32(t0sz, 0b01, s=s), mem, 0x4000_1234) == {
            TF(1), T(0x4000_1234, 1, 30)}

    def test_s_mismatch_from_level2(self):
        # SL0 = 0: T0SZ -8..-3 (35..40 bits) are inconsistent with level 2 ->
        # TF L1; T0SZ -2..7 (34..25 bits) index IPA[ia-1:21] = 0 for IPA 0x1234.
        mem = words({TT: block(0x4000_0000)})
        assert results(MAX, cfg32(0, 0b00, s=1), mem, 0x1234) == {TF(1), T(0x4000_1234, 2, 21)}


class TestVttbrBase:
    def test_low_bits_ignored(self):
        # AArch32.S2Walk: base = VTTBR[39:baselsb], baselsb = 10 + 3 for the
        # 8 KiB level-1 root of a 40-bit IPA; bit 0 (CnP) and [2:1] ignored.
        mem = words({TT + 8: block(0x4000_0000)})
        cfg = dataclasses.replace(DESIGN, vttbr=TT | 0x7)
        assert results(MAX, cfg, mem, 0x4000_1234) == {T(0x4000_1234, 1, 30)}

    def test_misaligned_bits_zero_or_corrupted(self):
        # VTTBR bits [12:3] set: a misaligned base (Arm ARM G8.2.173): bits
        # treated as zero (the block at TT + 8), or the walk address
        # corrupted in them (a zero word: Translation fault at level 1).
        mem = words({TT + 8: block(0x4000_0000)})
        cfg = dataclasses.replace(DESIGN, vttbr=TT | 0x1FFF)
        assert results(MAX, cfg, mem, 0x4000_1234) == {T(0x4000_1234, 1, 30), TF(1)}


class TestHighAddressBits:
    """Output-address bits [47:40] (40-bit output).  ARMv8 AArch32
    (AArch32.S2Walk): non-zero -> Address size fault (level 0 for VTTBR, the
    descriptor's level otherwise).  ARMv7 LPAE: the bits are UNK/SBZP, so the
    reference permits the fault and ignoring them."""

    MEM = words({TT + 8: block(0x4000_0000)})

    def test_vttbr_v8(self):
        cfg = dataclasses.replace(DESIGN, vttbr=1 << 40 | TT)
        assert results(MAX, cfg, self.MEM, 0x4000_1234) == {ASF(0)}

    @pytest.mark.parametrize("cpu", V7)
    def test_vttbr_v7(self, cpu):
        cfg = dataclasses.replace(DESIGN, vttbr=1 << 47 | TT)
        assert results(cpu, cfg, self.MEM, 0x4000_1234) == {ASF(0), T(0x4000_1234, 1, 30)}

    @pytest.mark.parametrize("cpu", [A15, MAX])
    def test_vttbr_vmid_is_not_address(self, cpu):
        # VTTBR[55:48] is the VMID, [63:56] are not address bits either.
        cfg = dataclasses.replace(DESIGN, vttbr=0xFFFF << 48 | TT)
        assert results(cpu, cfg, self.MEM, 0x4000_1234) == {T(0x4000_1234, 1, 30)}

    def test_block_v8_and_v7(self):
        mem = words({TT + 8: block(0x4000_0000, 1 << 40)})
        assert results(MAX, DESIGN, mem, 0x4000_1234) == {ASF(1)}
        assert results(A15, DESIGN, mem, 0x4000_1234) == {ASF(1), T(0x4000_1234, 1, 30)}

    def test_table_v8_and_v7(self):
        # Level-1 table with bit 40 set; the v7 reading ignores it and goes on
        # to the level-2 table at TT + 0x2000: IPA[29:21] = 0 -> 2 MiB block.
        mem = words({TT + 8: table(TT + 0x2000) | 1 << 40, TT + 0x2000: block(0x4020_0000)})
        assert results(MAX, DESIGN, mem, 0x4000_1234) == {ASF(1)}
        assert results(A7, DESIGN, mem, 0x4000_1234) == {ASF(1), T(0x4020_1234, 2, 21)}

    def test_page_v8(self):
        mem = words({TT + 8: table(TT + 0x2000), TT + 0x2000: table(TT + 0x3000),
                     TT + 0x3008: page(0x5000_0000, 1 << 47)})
        assert results(MAX, DESIGN, mem, 0x4000_1234) == {ASF(3)}


# A 3-level walk of IPA 0x4000_1234 from level 1 (DESIGN): L1 index 1
# (TT + 8) -> L2 table at TT + 0x2000, index IPA[29:21] = 0 -> L3 table at
# TT + 0x3000, index IPA[20:12] = 1 (TT + 0x3008) -> page at 0x5000_0000.
L1E, L2E, L3E = TT + 8, TT + 0x2000, TT + 0x3008
THREE = {L1E: table(TT + 0x2000), L2E: table(TT + 0x3000), L3E: page(0x5000_0000)}
ENTRY = {1: L1E, 2: L2E, 3: L3E}


def three(level=None, desc=None) -> dict:
    out = dict(THREE)
    if level is not None:
        out[ENTRY[level]] = desc
        for lower in range(level + 1, 4):
            out.pop(ENTRY[lower])
    return words(out)


class TestFaultsPerLevel:
    def test_page(self):
        assert results(A15, DESIGN, three(), 0x4000_1234) == {T(0x5000_0234, 3, 12)}

    @pytest.mark.parametrize("cpu", [A15, MAX])
    @pytest.mark.parametrize("level", [1, 2, 3])
    def test_invalid(self, cpu, level):
        # AArch32.DecodeDescriptorTypeLD: bit 0 clear -> Invalid.
        assert results(cpu, DESIGN, three(level, 0xFFFF_FFFF_FFFF_FFFE), 0x4000_1234) == {
            TF(level)}

    def test_0b01_at_level3(self):
        assert results(MAX, DESIGN, three(3, block(0x5000_0000)), 0x4000_1234) == {TF(3)}

    @pytest.mark.parametrize("level, desc", [
        (1, block(0x4000_0000) & ~AF), (2, block(0x4000_0000) & ~AF),
        (3, page(0x5000_0000) & ~AF),
    ])
    def test_access_flag(self, level, desc):
        # AArch32.S2Walk: AF = 0 -> Access flag fault (no hardware update).
        for at in AtKind:
            assert results(MAX, DESIGN, three(level, desc), 0x4000_1234, at) == {AFF(level)}

    def test_access_flag_beats_permission(self):
        desc = page(0x5000_0000) & ~(AF | 0b11 << 6)
        assert results(A15, DESIGN, three(3, desc), 0x4000_1234, W) == {AFF(3)}

    @pytest.mark.parametrize("s2ap, readable, writable", [
        (0b00, False, False), (0b01, True, False), (0b10, False, True), (0b11, True, True),
    ])
    @pytest.mark.parametrize("level", [1, 2, 3])
    def test_permissions(self, s2ap, readable, writable, level):
        # AArch32.S2HasPermissionsFault: write -> w == 0, else r == 0.
        # ATS12NSOU* (EL0) and ATS12NSOP* (EL1) differ only for execute.
        leaf = {1: block(0x4000_0000), 2: block(0x4000_0000), 3: page(0x5000_0000)}[level]
        pa, bits = {1: (0x4000_1234, 30), 2: (0x4000_1234, 21), 3: (0x5000_0234, 12)}[level]
        mem = three(level, leaf & ~(0b11 << 6) | s2ap << 6)
        ok = T(pa, level, bits, s2ap=s2ap)
        for at in (R, R0):
            assert results(A15, DESIGN, mem, 0x4000_1234, at) == ({ok} if readable else {PF(level)})
        for at in (W, W0):
            assert results(A15, DESIGN, mem, 0x4000_1234, at) == ({ok} if writable else {PF(level)})

    def test_external_abort(self):
        assert results(A15, dataclasses.replace(DESIGN, vttbr=NO_RAM), three(),
                       0x4000_1234) == {SEA(1)}
        assert results(A15, DESIGN, three(1, table(NO_RAM)), 0x4000_1234) == {SEA(2)}
        assert results(MAX, DESIGN, three(2, table(NO_RAM)), 0x4000_1234) == {SEA(3)}
        # Start level 2 (T0SZ 0, SL0 0): the first read is at level 2.
        assert results(A7, cfg32(0, 0b00, vttbr=NO_RAM), words({}), 0x1234) == {SEA(2)}

    def test_no_hardware_access_flag(self):
        # AArch32 VTCR has no HA/HD/DS: the AF = 0 fault stays.
        cfg = dataclasses.replace(DESIGN, ha=1, hd=1)
        assert results(MAX, cfg, three(3, page(0x5000_0000) & ~AF), 0x4000_1234) == {AFF(3)}


class TestAttributes:
    def test_xn_with_and_without_xnx(self):
        # XN = desc[54]; XNX = desc[53] only with FEAT_XNX (ID_MMFR4.XNX:
        # arm max yes, a15 no).  desc[54:53] = 0b01.
        mem = three(3, page(0x5000_0000, 1 << 53))
        assert results(MAX, DESIGN, mem, 0x4000_1234) == {T(0x5000_0234, 3, 12, xn=0b01)}
        assert results(A15, DESIGN, mem, 0x4000_1234) == {T(0x5000_0234, 3, 12, xn=0b00)}
        mem = three(3, page(0x5000_0000, 1 << 54))
        assert results(A15, DESIGN, mem, 0x4000_1234) == {T(0x5000_0234, 3, 12, xn=0b10)}

    def test_memattr_sh_and_dbm(self):
        # MemAttr desc[5:2], SH desc[9:8]; DBM (bit 51) does not exist in AArch32.
        desc = (0x5000_0000 | 0b11 | 0b0101 << 2 | 0b11 << 6 | 0b10 << 8 | AF | 1 << 51)
        assert results(A15, DESIGN, three(3, desc), 0x4000_1234) == {
            T(0x5000_0234, 3, 12, memattr=0b0101, sh=0b10, dbm=0)}

    def test_contiguous_set(self):
        # 16 contiguous 4K pages, consistently programmed: the hint changes nothing.
        maps = [(0x4000_0000 + i * 0x1000, 0x5000_0000 + i * 0x1000, 3, LeafAttrs(contiguous=1))
                for i in range(16)]
        cfg, mem = built(DESIGN, G4, 40, 1, maps)
        assert results(MAX, cfg, mem, 0x4000_7234) == {T(0x5000_7234, 3, 12, contiguous=1)}


@st.composite
def aarch32_images(draw):
    vc = draw(S.valid_aarch32_configs())
    maps = draw(S.mappings(vc))
    unmapped = draw(st.lists(st.integers(0, (1 << vc.ia_bits) - 1), max_size=4))
    ats = draw(st.lists(S.at_kinds(), min_size=1, max_size=4))
    return vc, maps, unmapped, ats


class TestBuiltImages:
    @given(aarch32_images())
    def test_walk_returns_the_mapping(self, image):
        """Probes inside a mapping translate to it (or meet its S2AP);
        probes elsewhere are Translation faults where the tables stop."""
        check_image_property(*image)

    @given(S.valid_aarch32_configs())
    def test_valid_configs_reach_the_walk(self, vc):
        """An empty image faults at the start level (never a level-1 config
        fault for a start level 2 configuration)."""
        assert results(vc.cpu, vc.config.with_vttbr(TT), words({}), 0) == {TF(vc.start_level)}
