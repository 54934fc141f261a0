"""The open points of the reference audit (issue 15), each with its
citation; every expected set below is worked out by hand and differs from
what the reference permitted before the fix (said at each test).

Sources: the Sail translation of the Arm ASL (rems-project/sail-arm,
arm-v9.4-a) for the pseudocode; DDI 0487 M.a (Markdown rendering in
wuyongzheng/arm-md-specs) for the text: D8.7.1.1 (misprogramming the
Contiguous bit), G5.5.5.1 (possible errors in programming the AArch32
translation registers), D24.2.225 (VTTBR_EL2.BADDR), G8.2.173
(VTTBR.BADDR), K1.1 (the constraints Armv8 puts on behaviours that are
UNPREDICTABLE in Armv7).
"""
from __future__ import annotations

from reference.arch import Arch, AtKind
from reference.config import S2Config
from reference.cpus import get_cpu

from test_walk import T, TF, TT, page, results, table, words

A32 = Arch.AARCH32
R = AtKind.S12E1R
A15, MAX32 = get_cpu(A32, "cortex-a15"), get_cpu(A32, "max")
# VTCR 0x80003558: 40-bit IPA (T0SZ -8, S 1), start level 1 (SL0 1).
DESIGN = S2Config.from_vtcr(A32, 0x8000_3558, vttbr=TT)
C = 1 << 52


class TestAArch32ContiguousStageOA:
    """(a) AArch32.S2Walk sets walkstate.contiguous = desc[52] and
    AArch32.S2Translate computes ``oa = StageOA(ipa_64, d128, tgx,
    walkstate)``: with the Contiguous bit the OA keeps the descriptor's
    bits [39:tsize+4] and takes the rest from the IPA.  Before, AArch32
    permitted only the descriptor's own OA."""

    # Walk of IPA 0x4000_5234 from level 1: L1 index 1 (TT + 8) -> L2
    # table at TT + 0x2000, index 0 -> L3 table at TT + 0x3000, index 5
    # (TT + 0x3028).
    WALK = {TT + 8: table(TT + 0x2000), TT + 0x2000: table(TT + 0x3000)}

    def test_misprogrammed_page_of_a_set(self):
        # Entry 5 of its 16-page set has OA 0x5000_0000 (the set's base,
        # not base + 5 pages).  StageOA: 0x5000_0000[39:16] | IPA[15:0] =
        # 0x5000_5234.  The descriptor's own OA 0x5000_0234 is also
        # permitted (D8.7.1.1 RJQQTC: consistent with a programmed entry).
        # The old model gave only {0x5000_0234}.
        mem = words(self.WALK | {TT + 0x3028: page(0x5000_0000, C)})
        for cpu in (MAX32, A15):
            assert results(cpu, DESIGN, mem, 0x4000_5234) == {
                T(0x5000_5234, 3, 12, contiguous=1), T(0x5000_0234, 3, 12, contiguous=1)}

    def test_consistent_entry_has_one_oa(self):
        mem = words(self.WALK | {TT + 0x3028: page(0x5000_5000, C)})
        assert results(MAX32, DESIGN, mem, 0x4000_5234) == {T(0x5000_5234, 3, 12, contiguous=1)}

    def test_without_the_bit_no_stage_oa(self):
        mem = words(self.WALK | {TT + 0x3028: page(0x5000_0000)})
        assert results(MAX32, DESIGN, mem, 0x4000_5234) == {T(0x5000_0234, 3, 12)}

    def test_range_larger_than_the_ipa_space(self):
        # G5.5.5.1: "The address range translated by a set of blocks marked
        # as contiguous ... is larger than the size of the input address"
        # -> an implementation might "Treat such a block as causing a
        # Translation fault".  32-bit IPA (T0SZ 0, S 0) from level 1 (SL0
        # 1): 2 bits at level 1; a level-1 contiguous set spans 2^(30+4) >
        # 2^32.  IPA 0x4000_1234 -> index 1 (TT + 8), block at 0x8000_0000
        # (entry 1 of its set, programmed as the set's base): TF(1), StageOA
        # 0x8000_0000[39:34] | IPA[33:0] = 0x4000_1234, or the own OA
        # 0x8000_1234.  The old model gave only {0x8000_1234}.
        cfg = S2Config.from_vtcr(A32, 0x8000_0040, vttbr=TT)
        block = 0x8000_0000 | 0x7FC | 0b01 | C
        assert results(MAX32, cfg, words({TT + 8: block}), 0x4000_1234) == {
            TF(1), T(0x4000_1234, 1, 30, contiguous=1), T(0x8000_1234, 1, 30, contiguous=1)}
