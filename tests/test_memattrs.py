"""Attribute combination of the two stages and what PAR_EL1.ATTR / SH report
(reference.memattrs through reference.at), worked by hand.

Each row is one AT S12E1R of the layout of tests/test_stage1.py with the
stage-1 MAIR attribute and descriptor SH, the stage-2 block's MemAttr and SH
and the HCR_EL2 bits changed.  Expected values come from the pseudocode
(Sail arm-v9.4-a): S1DecodeMemAttrs / DecodeLDFAttr (MAIR nibble 0b0000dd00
Device, 0b0100 NC, 0b00RW WT transient, 0b01RW WB transient, 0b10RW WT,
0b11RW WB), S2DecodeMemAttrs (MemAttr[3:2] = 00 Device, else outer [3:2],
inner [1:0]: 01 NC, 10 WT, 11 WB), S2CombineS1MemAttrs (Device wins, the
stricter Device type; NC wins over WT over WB with stage-1 hints;
S2CombineS1Shareability: OSH > ISH > NSH), AArch64.S2ApplyFWBMemAttrs
(FWB MemAttr[2:0]: 0dd Device, 101 NC or stage-1 Device, 110 forced WB with
stage-1 hints or RWA, 111 stage 1), HCR_EL2.CD, EncodePARAttrs and
PAREncodeShareability (0b10 for Device and NC/NC).
"""
from __future__ import annotations

import dataclasses

import pytest
from test_stage1 import (
    AF,
    N1,
    OUT_PA,
    S1_ATTRS,
    S1_L3_PA,
    S2_L2,
    VA,
    base_tables,
    s1_page,
    s1cfg,
    s2_block,
    s2cfg,
    words,
)
from test_stage1 import MAX as MAX_7_2

from reference.at import at, predict
from reference.memattrs import (
    HINT_RA,
    HINT_RWA,
    AttrHints,
    Cacheability,
    DeviceType,
    MemType,
    Shareability,
    decode_ldf_attr,
    device_attrs,
    encode_par_attrs,
    normal_attrs,
    reported_par_attrs,
    reported_par_shareability,
    s1_decode_mem_attrs,
    s2_combine_s1_mem_attrs,
    s2_decode_mem_attrs,
)
from reference.par import PAR_RES1
from reference.s1config import Hcr
from reference.stage1 import AtOp, feat_xs

# The rows below hold for a CPU whose FEAT_XS the model does not know (both
# encodings of an XS = 0 result are then in the set): QEMU 7.2's max
# without its ID_AA64ISAR1_EL1.  test_feat_xs_known_narrows_the_set shows
# what a known FEAT_XS does.
MAX = dataclasses.replace(MAX_7_2, id_regs=tuple((n, v) for n, v in MAX_7_2.id_regs
                                                 if n != "ID_AA64ISAR1_EL1"))

OUT_IPA = 0x9000_0000
ISH, OSH, NSH = 0b11, 0b10, 0b00


def par_reports(mair0: int, s1_sh: int, s2_memattr: int, s2_sh: int, hcr: Hcr = Hcr(),
                cpu=MAX, **s1kw) -> set[tuple[int, int]]:
    """(ATTR, SH) of every PAR the reference permits for the row."""
    s1_desc = s1_page(OUT_IPA, S1_ATTRS & ~(0b11 << 8) | s1_sh << 8)
    s2_desc = s2_block(OUT_PA, s2_memattr << 2 | 0b11 << 6 | s2_sh << 8 | AF)
    mem = words(base_tables() | {S1_L3_PA + 16: s1_desc, S2_L2 + 0x80 * 8: s2_desc})
    out = set()
    for o in at(cpu, s2cfg(), s1cfg(mair=mair0, **s1kw), hcr, mem, VA, AtOp.S12E1R).outcomes:
        for rep in predict(MAX, o, VA):
            value = rep.prediction.pattern.value
            assert value & 0xFFFF_FFFF_F000 == OUT_PA and value & PAR_RES1
            out.add((value >> 56, value >> 7 & 0b11))
    return out


def architected(mair0, s1_sh, s2_memattr, s2_sh, hcr=Hcr(), cpu=MAX, va=VA,
                **kw) -> set[tuple[int, int]]:
    """The (ATTR, SH) reports that no ReportedPAR* implementation choice is
    needed for: EncodePARAttrs / PAREncodeShareability, under either
    reading of FEAT_XS (the CPU models do not say whether they have it)."""
    s1_desc = s1_page(OUT_IPA, S1_ATTRS & ~(0b11 << 8) | s1_sh << 8)
    s2_desc = s2_block(OUT_PA, s2_memattr << 2 | 0b11 << 6 | s2_sh << 8 | AF)
    mem = words(base_tables() | {S1_L3_PA + 16: s1_desc, S2_L2 + 0x80 * 8: s2_desc})
    res = at(cpu, s2cfg(), s1cfg(mair=mair0, **kw), hcr, mem, va, AtOp.S12E1R)
    assert not any(o.is_fault for o in res.outcomes)
    return {(rep.prediction.pattern.value >> 56, rep.prediction.pattern.value >> 7 & 0b11)
            for o in res.outcomes for rep in predict(cpu, o, va)
            if not any("(ReportedPAR" in r for r in rep.rules)}


# XS: S1DecodeMemAttrs gives a Write-Back stage 1 XS = 0 (any other
# stage 1 XS = 1), S2DecodeMemAttrs a stage 2 XS = NOT FnXS = 1;
# S2CombineS1MemAttrs takes XS 0 for a WB/WB result, else the AND of the
# stages, and S2ApplyFWBMemAttrs stage 1's XS (0 for forced WB).
# EncodePARAttrs reports XS = 0 as 0x40 for NC/NC and as bit 0 = 1 for
# Device, FEAT_XS encodings; without FEAT_XS XS is not encoded (0x44, bit 0
# = 0).  The CPU models do not say whether they have FEAT_XS, so where XS
# is 0 both values are in the set.

# (MAIR Attr0, S1 SH, S2 MemAttr, S2 SH) -> ({ATTR}, SH), FWB = 0, CD = 0.
FWB0 = [
    # Both Normal WB RWA: WB with stage-1 hints; ISH + ISH = ISH.
    (0xFF, ISH, 0b1111, ISH, {0xFF}, ISH),
    # Stage 2 NC/NC wins, XS 0 AND 1 = 0: 0x40 or 0x44; NC/NC is reported OSH.
    (0xFF, NSH, 0b0101, NSH, {0x40, 0x44}, OSH),
    # ... after a WT stage 1 (XS 1): only 0x44.
    (0xAA, ISH, 0b0101, ISH, {0x44}, OSH),
    # Stage 2 WT/WT: WT non-transient with stage-1 RWA: nibble 0b1011 (the
    # 0xA0 form needs the RA hint alone).
    (0xFF, NSH, 0b1010, NSH, {0xBB}, NSH),
    # Stage-1 Device-nGnRE (XS = NOT attr[0] = 1) over stage-2 Normal: 0x04, SH 0b10.
    (0x04, ISH, 0b1111, ISH, {0x04}, OSH),
    # Stage-2 Device-nGRE (MemAttr 0b0010) over stage-1 WB: XS 0 -> 0x09 or 0x08.
    (0xFF, ISH, 0b0010, ISH, {0x08, 0x09}, OSH),
    # Device + Device: the stricter type: GRE + nGnRE -> nGnRE; GRE + nGnRnE -> nGnRnE.
    (0x0C, ISH, 0b0001, ISH, {0x04}, OSH),
    (0x00, ISH, 0b0011, ISH, {0x00}, OSH),
    # Stage-1 WB transient RWA (0x77) stays 0x77 over WB.
    (0x77, ISH, 0b1111, ISH, {0x77}, ISH),
    # ... and over WT becomes WT *transient* RWA (hints and transient from
    # stage 1, S2CombineS1AttrHints): nibble 0b0011 -> 0x33.
    (0x77, ISH, 0b1010, ISH, {0x33}, ISH),
    # Outer NC, inner WB over WB: 0x4F; not NC/NC so SH stays ISH.
    (0x4F, ISH, 0b1111, ISH, {0x4F}, ISH),
    # Shareability: OSH + NSH = OSH; NSH + ISH = ISH; NSH + NSH = NSH.
    (0xFF, OSH, 0b1111, NSH, {0xFF}, OSH),
    (0xFF, NSH, 0b1111, ISH, {0xFF}, ISH),
    (0xFF, NSH, 0b1111, NSH, {0xFF}, NSH),
    # WT RA non-transient over WB: 0xAA.
    (0xAA, ISH, 0b1111, ISH, {0xAA}, ISH),
    # Stage 2 outer WB, inner NC (MemAttr 0b1101): outer 0xF, inner 0x4.
    (0xFF, ISH, 0b1101, ISH, {0xF4}, ISH),
]
NC_XS0 = {(0x40, OSH), (0x44, OSH)}


def test_feat_xs_known_narrows_the_set():
    """Stage 2 NC/NC over a WB stage 1 (XS 0 AND 1 = 0): with FEAT_XS
    unknown both 0x40 and 0x44; QEMU 7.2's max (ID_AA64ISAR1_EL1.XS = 0:
    no FEAT_XS, XS not encoded) only 0x44; with XS = 1 (QEMU 10's max,
    ISAR1 0x0111211110211502) only the FEAT_XS encoding 0x40."""
    assert feat_xs(MAX) is None and feat_xs(MAX_7_2) is False
    with_xs = dataclasses.replace(MAX_7_2, id_regs=tuple(
        (n, 0x0111_2111_1021_1502 if n == "ID_AA64ISAR1_EL1" else v) for n, v in MAX_7_2.id_regs))
    assert feat_xs(with_xs) is True
    assert architected(0xFF, NSH, 0b0101, NSH) == {(0x40, OSH), (0x44, OSH)}
    assert architected(0xFF, NSH, 0b0101, NSH, cpu=MAX_7_2) == {(0x44, OSH)}
    assert architected(0xFF, NSH, 0b0101, NSH, cpu=with_xs) == {(0x40, OSH)}


class TestCombinationWithoutFWB:
    @pytest.mark.parametrize("mair, s1_sh, s2_attr, s2_sh, attrs, sh", FWB0)
    def test_row(self, mair, s1_sh, s2_attr, s2_sh, attrs, sh):
        assert architected(mair, s1_sh, s2_attr, s2_sh) == {(a, sh) for a in attrs}

    def test_reserved_stage2_cacheability(self):
        # MemAttr 0b0100: outer 01 (NC), inner 00 reserved -> CONSTRAINED
        # UNPREDICTABLE NC, WT or WB (S2DecodeCacheability).  Combined with
        # 0xFF: inner NC (-> 0x44, NC/NC so SH 0b10), WT RWA (0x4B), WB RWA (0x4F).
        assert architected(0xFF, ISH, 0b0100, ISH) == NC_XS0 | {(0x4B, ISH), (0x4F, ISH)}

    def test_hcr_cd(self):
        # HCR_EL2.CD = 1: stage-2 Normal becomes NC before the combination.
        assert architected(0xFF, ISH, 0b1111, ISH, Hcr(cd=1)) == NC_XS0
        # Stage-1 Device still wins.
        assert architected(0x04, ISH, 0b1111, ISH, Hcr(cd=1)) == {(0x04, OSH)}

    def test_sctlr_c_off(self):
        # SCTLR_EL1.C = 0: stage-1 Normal is NC (AArch64.S1DCacheEnabled).
        # NormalNCMemAttr keeps the WB stage 1's XS 0.
        assert architected(0xFF, ISH, 0b1111, ISH, c=0) == NC_XS0

    def test_fwb_without_feat_s2fwb_is_ignored(self):
        # neoverse-n1 has no FEAT_S2FWB: HCR_EL2.FWB does not act, so MemAttr
        # 0b0110 is outer NC, inner WT: with 0xFF -> 0x4B.
        assert architected(0xFF, ISH, 0b0110, ISH, Hcr(fwb=1), cpu=N1) == {(0x4B, ISH)}


# (MAIR Attr0, S2 MemAttr) -> ({ATTR}, SH) with FWB = 1 (both SH fields ISH).
FWB1 = [
    # 0b111: the stage-1 attributes.
    (0xFF, 0b1111, {0xFF}, ISH),
    (0xFF, 0b0111, {0xFF}, ISH),            # MemAttr[3] is not used by FWB
    # 0b110: forced WB (XS 0); stage-1 Device -> RWA non-transient.  Its
    # shareability: the stage-1 descriptor's SH (ISH) is combined, or, where
    # the implementation applies effective shareability at stage 1 (an
    # IMPLEMENTATION DEFINED choice of AArch64.S1Translate), Device's OSH.
    (0x00, 0b0110, {0xFF}, {ISH, OSH}),
    # stage-1 NC -> RWA (the same choice: NC/NC is OSH when effective);
    # stage-1 WT RA -> WB with the RA hint: 0b1110.
    (0x44, 0b0110, {0xFF}, {ISH, OSH}),
    (0xAA, 0b0110, {0xEE}, ISH),
    # 0b101: NC with stage 1's XS (0 for WB: 0x40 or 0x44), or stage 1's Device.
    (0xFF, 0b0101, {0x40, 0x44}, OSH),
    (0x04, 0b0101, {0x04}, OSH),
    # 0b0dd: Device dd with stage 1's XS, combined with a stage-1 Device type.
    (0xFF, 0b0010, {0x08, 0x09}, OSH),
    (0x00, 0b0010, {0x00}, OSH),
]


class TestCombinationWithFWB:
    @pytest.mark.parametrize("mair, s2_attr, attrs, sh", FWB1)
    def test_row(self, mair, s2_attr, attrs, sh):
        shs = sh if isinstance(sh, set) else {sh}
        assert architected(mair, ISH, s2_attr, ISH, Hcr(fwb=1)) == {(a, s) for a in attrs
                                                                    for s in shs}

    def test_cd_after_fwb(self):
        # AArch64.S2Translate applies CD to the FWB-combined Normal attributes
        # (NormalNCMemAttr keeps XS 0 of the WB result).
        assert architected(0xFF, ISH, 0b0111, ISH, Hcr(fwb=1, cd=1)) == NC_XS0


class TestReportedSets:
    def test_transient_may_be_reported_non_transient(self):
        # ReportedPARAttrs admits dropping the Transient hint: 0x33 -> 0xBB.
        assert par_reports(0x77, ISH, 0b1010, ISH) >= {(0x33, ISH), (0xBB, ISH)}
        assert {a for a, _ in par_reports(0x77, ISH, 0b1010, ISH)} == {0x33, 0xBB}

    def test_shareability_may_be_reported_wider(self):
        # NSH may be reported ISH or OSH; ISH as OSH; Device/NC only 0b10.
        assert {s for _, s in par_reports(0xFF, NSH, 0b1111, NSH)} == {NSH, ISH, OSH}
        assert {s for _, s in par_reports(0xFF, ISH, 0b1111, ISH)} == {ISH, OSH}
        assert par_reports(0x04, NSH, 0b1111, NSH) == {(0x04, OSH)}

    def test_no_other_attribute_is_admitted(self):
        # WT reported as NC, other hints, or a stronger Device type are not in the sets.
        assert {a for a, _ in par_reports(0xAA, ISH, 0b1111, ISH)} == {0xAA}
        assert {a for a, _ in par_reports(0x0C, ISH, 0b1111, ISH)} == {0x0C}


class TestStage1Off:
    """Stage 1 disabled: the VA is the IPA; VA 0x9000_0123 is in the
    stage-2 block at IPA 0x9000_0000."""

    def test_dc_zero_device(self):
        # SCTLR_EL1.M = 0, HCR_EL2.DC = 0: Device-nGnRnE (XS 1), whatever
        # stage 2 says (S2CombineS1MemAttrs): ATTR 0x00, SH 0b10 -- the
        # value the existing stage-1-off prediction uses (reference.par).
        assert architected(0xFF, ISH, 0b1111, ISH, m=0, va=OUT_IPA | 0x123) == {(0x00, OSH)}

    def test_dc_one_write_back(self):
        # HCR_EL2.DC = 1: Normal WB RWA Non-shareable + stage-2 WB ISH -> 0xFF ISH.
        assert architected(0x00, ISH, 0b1111, ISH, Hcr(dc=1), va=OUT_IPA | 0x123) == {(0xFF, ISH)}

    def test_fwb_forced_wb_beats_stage1_off_device(self):
        # With FWB MemAttr 0b110, even stage 1 off (Device-nGnRnE) is WB RWA;
        # Device's shareability (OSH, S1DisabledOutput) combines to OSH.
        assert architected(0x00, ISH, 0b0110, ISH, Hcr(fwb=1), m=0,
                           va=OUT_IPA | 0x123) == {(0xFF, OSH)}


class TestDecoders:
    def test_ldf_nibbles(self):
        # DecodeLDFAttr: 0b0111 WB transient RWA; 0b1010 WT RA; 0b0100 NC;
        # 0b1000 WT no-allocate, non-transient (transient needs a hint).
        assert decode_ldf_attr(0b0111) == AttrHints(Cacheability.WB, HINT_RWA, True)
        assert decode_ldf_attr(0b1010) == AttrHints(Cacheability.WT, HINT_RA, False)
        assert decode_ldf_attr(0b0100).attrs is Cacheability.NC
        assert decode_ldf_attr(0b1000) == AttrHints(Cacheability.WT, 0, False)

    def test_reserved_mair_is_unknown(self):
        # 0x40 without FEAT_XS, 0x08|0b01 Device with bit 0, and an inner
        # nibble 0b0000 under a Normal outer: S1ConstrainUnpredictableRESMAIR.
        for attr in (0x40, 0xA0, 0x05, 0xF0, 0x80):
            ((m, rules),) = s1_decode_mem_attrs(attr, ISH, True)
            assert m is None and "RESMAIR" in rules[0]
        # With FEAT_XS 0x40 is Normal NC with XS 0, reported 0x40.
        ((m, _),) = s1_decode_mem_attrs(0x40, ISH, True, feat_xs=True)
        assert m is not None and encode_par_attrs(m) == 0x40

    def test_reserved_mair_leaves_par_attr_uncompared(self):
        o = at(MAX, s2cfg(), s1cfg(mair=0x40), Hcr(), words(base_tables()), VA, AtOp.S12E1R).primary
        (rep,) = predict(MAX, o, VA)
        assert rep.prediction.pattern.care & (0xFF << 56 | 0b11 << 7) == 0

    def test_reserved_shareability(self):
        # SH 0b01 is CONSTRAINED UNPREDICTABLE: NSH, ISH or OSH.
        assert {m.shareability for m, _ in s1_decode_mem_attrs(0xFF, 0b01, True)} == set(Shareability)

    def test_combine_device_xs(self):
        # Device + Device on AArch64 stage 2: XS is the AND of both (1 & 1).
        m = s2_combine_s1_mem_attrs(device_attrs(DeviceType.GRE), device_attrs(DeviceType.nGRE), True)
        assert (m.memtype, m.device, m.xs, encode_par_attrs(m)) == (MemType.DEVICE, DeviceType.nGRE, 1, 0x08)

    def test_aarch32_stage2_keeps_stage1_xs(self):
        wt = AttrHints(Cacheability.WT, HINT_RA, False)
        s1 = normal_attrs(wt, wt, Shareability.ISH)            # XS 1 (not WB)
        ((s2, _),) = s2_decode_mem_attrs(0b1111, ISH, fnxs=1)   # XS 0 at stage 2
        assert s2_combine_s1_mem_attrs(s1, s2, s2aarch64=False).xs == 1
        assert s2_combine_s1_mem_attrs(s1, s2, s2aarch64=True).xs == 0

    def test_reported_sets_start_with_the_architected_value(self):
        m = normal_attrs(decode_ldf_attr(0xF), decode_ldf_attr(0xF), Shareability.NSH)
        assert reported_par_attrs(m)[0] == (0xFF, ("EncodePARAttrs",))
        assert reported_par_shareability(m)[0] == (0b00, ("PAREncodeShareability",))


def test_a_wrong_combination_would_be_caught():
    # If stage-2 WT did not win over stage-1 WB (a plausible emulator bug),
    # PAR.ATTR would read 0xFF; the permitted set for that row excludes it.
    assert (0xFF, ISH) not in par_reports(0xFF, ISH, 0b1010, ISH)
    # ... and a stage-2 Device type lost to stage-1 Normal likewise.
    assert all(a != 0xFF for a, _ in par_reports(0xFF, ISH, 0b0010, ISH))
