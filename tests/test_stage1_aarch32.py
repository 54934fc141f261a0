"""AArch32 Long-descriptor stage 1 through AArch32 stage 2 (reference.stage1,
reference.at), worked by hand from the pseudocode (Sail arm-v9.4-a:
AArch32.S1TranslateLD, AArch32.S1WalkLD, AArch32.S1LDHasPermissionsFault,
AArch32.S2Translate, AArch32.S2HasPermissionsFault, AArch32.EncodePARLD).

The point for 32-bit ARM: a VA below 4 GiB reaches an IPA above 4 GiB
through an LPAE stage 1 (40-bit output), and the stage-1 tables themselves
sit at IPAs above 4 GiB.

Layout (4K everywhere):

* Stage 2: VTCR T0SZ -8 (40-bit IPA), SL0 1: start level 1 indexes
  IPA[39:30] in two concatenated tables at S2_L1 = 0x4100_0000.
* Stage 1: TTBCR.EAE 1, T0SZ 0, T1SZ 0 (TTBR0 covers the 4 GiB; start
  level 1: VA[31:30], 4 entries), TTBR0 = IPA 0x1_0000_0000.  Tables at
  IPAs 0x1_0000_0000 (L1), 0x1_0000_1000 (L2), 0x1_0000_2000 (L3); stage
  2 maps them (L1 index 4 -> L2 table 0x4100_2000 -> L3 table 0x4100_3000)
  to PAs 0x4200_0000 + 0x1000 * k.
* VA 0x8040_2123: VA[31:30] = 2, VA[29:21] = 2, VA[20:12] = 2: stage-1
  descriptors at IPAs 0x1_0000_0010, 0x1_0000_1010, 0x1_0000_2010; the
  L3 page maps IPA 0xAB_CDE0_0000.
* Stage 2 maps IPA 0xAB_CDE0_0000 (L1 index 0x2AF -> L2 table
  0x4100_4000, L2 index 0x6F) with a 2 MiB block to PA 0x12_3440_0000.
  So VA 0x8040_2123 -> IPA 0xAB_CDE0_0123 -> PA 0x12_3440_0123.
"""
from __future__ import annotations

import pytest
from test_stage1 import AF, S1_ATTRS, S2_ATTRS, only, s1_page, s2_block, s2_page, table, words

from reference.arch import Arch
from reference.at import at, predict
from reference.config import S2Config
from reference.cpus import get_cpu
from reference.outcome import Fault, FaultKind, NestedTranslation, Outcome
from reference.s1config import Hcr, S1ConfigA32, ttbcr
from reference.stage1 import AtOp

A32 = Arch.AARCH32
A15, A7, MAX = (get_cpu(A32, n) for n in ("cortex-a15", "cortex-a7", "max"))
ALL = [A15, A7, MAX]

S2_L1, S2_L2, S2_L3, S2_L2_OUT = 0x4100_0000, 0x4100_2000, 0x4100_3000, 0x4100_4000
S1_L1, S1_L2, S1_L3 = 0x1_0000_0000, 0x1_0000_1000, 0x1_0000_2000
S1_PA = 0x4200_0000
VA = 0x8040_2123
OUT_IPA, OUT_PA = 0xAB_CDE0_0000, 0x12_3440_0000


def base_tables() -> dict[int, int]:
    return {
        S2_L1 + 4 * 8: table(S2_L2),                   # IPA[39:30] = 4
        S2_L2: table(S2_L3),                           # IPA[29:21] = 0
        S2_L3 + 0: s2_page(S1_PA),                     # IPA 0x1_0000_0000
        S2_L3 + 8: s2_page(S1_PA + 0x1000),            # IPA 0x1_0000_1000
        S2_L3 + 16: s2_page(S1_PA + 0x2000),           # IPA 0x1_0000_2000
        S2_L1 + 0x2AF * 8: table(S2_L2_OUT),           # IPA 0xAB_CDE0_0000: IPA[39:30] = 0x2AF
        S2_L2_OUT + 0x6F * 8: s2_block(OUT_PA),        #                     IPA[29:21] = 0x6F
        S1_PA + 2 * 8: table(S1_L2),                   # VA[31:30] = 2
        S1_PA + 0x1000 + 2 * 8: table(S1_L3),          # VA[29:21] = 2
        S1_PA + 0x2000 + 2 * 8: s1_page(OUT_IPA),      # VA[20:12] = 2
    }


def s2cfg(t0sz: int = -8, sl0: int = 1) -> S2Config:
    return S2Config(arch=A32, t0sz=t0sz, sl0=sl0, sh0=0b11, irgn0=1, orgn0=1, vttbr=S2_L1)


def s1cfg(**kw) -> S1ConfigA32:
    tc = {k: kw.pop(k) for k in ("t0sz", "t1sz", "epd0", "epd1") if k in kw}
    return S1ConfigA32(ttbcr=ttbcr(**({"t0sz": 0} | tc)), ttbr0=kw.pop("ttbr0", S1_L1),
                       mair0=kw.pop("mair0", 0xFF), **kw)


def results(mem, op=AtOp.S12E1R, *, cpu=A15, s2=None, s1=None, hcr=Hcr(), va=VA) -> set:
    return {o.result for o in at(cpu, s2 or s2cfg(), s1 or s1cfg(), hcr, mem, va, op).outcomes}


def ptw(kind, level, ipa):
    return Fault(kind, level, stage2=True, s1ptw=True, ipa=ipa)


def s1f(kind, level):
    return Fault(kind, level, stage2=False)


class TestAbove4GiB:
    @pytest.mark.parametrize("cpu", ALL)
    def test_va_below_4gib_reaches_ipa_and_pa_above(self, cpu):
        r = only(results(words(base_tables()), cpu=cpu))
        assert isinstance(r, NestedTranslation)
        assert (r.ipa, r.output, r.s1.level, r.s2.level) == (OUT_IPA | 0x123, OUT_PA | 0x123, 3, 2)

    @pytest.mark.parametrize("cpu", ALL)
    def test_par_two_stages(self, cpu):
        # AArch32.EncodePARLD: PA[39:12] in place, LPAE bit 11, SH [8:7]
        # (ISH 0b11; 0b10 also admitted), ATTR [63:56] = 0xFF (MAIR0 Attr0
        # WB RWA over stage-2 WB, S2CombineS1MemAttrs with s2aarch64 false).
        o = at(cpu, s2cfg(), s1cfg(), Hcr(), words(base_tables()), VA, AtOp.S12E1R).primary
        assert {rep.prediction.pattern.value for rep in predict(cpu, o, VA)} == \
            {0xFF00_0012_3440_0980, 0xFF00_0012_3440_0900}

    def test_ats1cpr_reports_the_ipa_above_4gib(self):
        o = at(A15, s2cfg(), s1cfg(), Hcr(), words(base_tables()), VA, AtOp.S1E1R).primary
        assert o.result.output == OUT_IPA | 0x123
        assert predict(A15, o, VA)[0].prediction.pattern.value == 0xFF00_00AB_CDE0_0980
        assert AtOp.S1E1R.name_for(A32) == "ATS1CPR" and AtOp.S12E0W.name_for(A32) == "ATS12NSOUW"

    def test_stage1_tables_trace_above_4gib(self):
        o = at(A15, s2cfg(), s1cfg(), Hcr(), words(base_tables()), VA, AtOp.S12E1R).primary
        assert [(t.level, t.ipa) for t in o.trace if t.stage == 1] == \
            [(1, S1_L1 + 0x10), (2, S1_L2 + 0x10), (3, S1_L3 + 0x10)]


class TestS1PTW:
    def test_stage2_translation_fault_at_level3(self):
        # The S1 L2 table's page unmapped at stage 2 (L3 entry 1 invalid).
        # PAR: F | FST TF L3 (0b000111 << 1) | S2WLK bit 8 | FSTAGE bit 9 | LPAE = 0xB0F.
        mem = words(base_tables() | {S2_L3 + 8: 0})
        res = results(mem)
        assert res == {ptw(FaultKind.TRANSLATION, 3, S1_L2 + 0x10)}
        (rep,) = predict(A15, Outcome(next(iter(res)), ()), VA)
        assert rep.prediction.pattern.value == 0xB0F

    def test_ipa_out_of_range_is_level1(self):
        # Stage 2 with T0SZ 0 (32-bit IPA, SL0 1): the stage-1 table at IPA
        # 2^32 is beyond it: AArch32.IPAIsOutOfRange is a Translation fault
        # at level 1 (not 0 as in AArch64), on the walk.
        assert results(words(base_tables()), s2=s2cfg(t0sz=0, sl0=1)) == \
            {ptw(FaultKind.TRANSLATION, 1, S1_L1 + 0x10)}

    def test_permission_and_hcr_ptw(self):
        # AArch32.S2HasPermissionsFault for AccessType_TTW: HCR.PTW and
        # Device, or no read permission.
        device = s2_page(S1_PA + 0x2000, S2_ATTRS & ~(0b1111 << 2))
        no_read = s2_page(S1_PA + 0x2000, S2_ATTRS & ~(0b01 << 6))
        assert results(words(base_tables() | {S2_L3 + 16: device}), hcr=Hcr(ptw=1)) == \
            {ptw(FaultKind.PERMISSION, 3, S1_L3 + 0x10)}
        assert only(results(words(base_tables() | {S2_L3 + 16: device}))).output == OUT_PA | 0x123
        assert results(words(base_tables() | {S2_L3 + 16: no_read})) == \
            {ptw(FaultKind.PERMISSION, 3, S1_L3 + 0x10)}

    def test_access_flag(self):
        # AArch32 stage 2 has no hardware AF update: AF = 0 faults.
        mem = words(base_tables() | {S2_L3: s2_page(S1_PA, S2_ATTRS & ~AF)})
        assert results(mem, cpu=MAX) == {ptw(FaultKind.ACCESS_FLAG, 3, S1_L1 + 0x10)}


class TestStage1Faults:
    def test_each_level(self):
        assert results(words(base_tables() | {S1_PA + 16: 0})) == {s1f(FaultKind.TRANSLATION, 1)}
        assert results(words(base_tables() | {S1_PA + 0x1010: 0})) == {s1f(FaultKind.TRANSLATION, 2)}
        assert results(words(base_tables() | {S1_PA + 0x2010: s1_page(OUT_IPA) & ~0b10})) == \
            {s1f(FaultKind.TRANSLATION, 3)}
        assert results(words(base_tables() | {S1_PA + 0x2010: s1_page(OUT_IPA, S1_ATTRS & ~AF)})) == \
            {s1f(FaultKind.ACCESS_FLAG, 3)}

    def test_permission_pl0(self):
        # AP[2:1] = 10: PL1 read-only, no PL0 access.
        mem = words(base_tables() | {S1_PA + 0x2010: s1_page(OUT_IPA, S1_ATTRS & ~(0b11 << 6) | 0b10 << 6)})
        assert only(results(mem, AtOp.S12E1R)).output == OUT_PA | 0x123
        assert results(mem, AtOp.S12E0R) == {s1f(FaultKind.PERMISSION, 3)}
        assert results(mem, AtOp.S1E1W) == {s1f(FaultKind.PERMISSION, 3)}

    def test_va_in_neither_range(self):
        # T0SZ 2 (lower: VA < 2^30), T1SZ 2 (upper: VA >= 0xC000_0000):
        # VA 0x8040_2123 is in neither: AArch32.VAIsOutOfRange, TF level 1.
        assert results(words(base_tables()), s1=s1cfg(t0sz=2, t1sz=2)) == \
            {s1f(FaultKind.TRANSLATION, 1)}

    def test_epd0(self):
        assert results(words(base_tables()), s1=s1cfg(epd0=1)) == {s1f(FaultKind.TRANSLATION, 1)}

    def test_high_address_bits_v7_and_v8(self):
        # Table descriptor bits [47:40] non-zero at level 2: an Address size
        # fault in ARMv8 (AArch32.S1WalkLD); UNK/SBZP in ARMv7 LPAE, so the
        # fault and ignoring the bits are both permitted.
        mem = words(base_tables() | {S1_PA + 0x1010: table(S1_L3) | 0xAB << 40})
        assert results(mem, cpu=MAX) == {s1f(FaultKind.ADDRESS_SIZE, 2)}
        res = results(mem, cpu=A15)
        assert s1f(FaultKind.ADDRESS_SIZE, 2) in res
        assert {r.output for r in res if isinstance(r, NestedTranslation)} == {OUT_PA | 0x123}

    def test_stage1_disabled(self):
        # SCTLR.M = 0: the VA is the IPA (below 4 GiB): IPA 0x8040_2123 is
        # not mapped by stage 2 (L1 index 2 invalid): stage-2 TF level 1.
        assert results(words(base_tables()), s1=s1cfg(m=0)) == \
            {Fault(FaultKind.TRANSLATION, 1, ipa=VA)}


def test_mutated_expectation_fails():
    # The same probe with a wrong expected IPA or stage would not match.
    r = only(results(words(base_tables())))
    assert r.output != OUT_PA | 0x123 ^ 1 << 32
    assert results(words(base_tables() | {S2_L3 + 8: 0})) != {s1f(FaultKind.TRANSLATION, 3)}
