"""PAR codec (reference.par) and fault status codes (reference.outcome).

AArch64.EncodePAR / AArch32.EncodePARLD (Sail arm-v9.4-a):
success: F[0] = 0, SH[8:7], NS[9] UNKNOWN (Non-secure regime), bit 10
  IMPLEMENTATION DEFINED ("Non-Faulting PAR"), bit 11 RES1, PA[51:12]
  (AArch32 [39:12]), ATTR[63:56].  With stage 1 off and HCR_EL2.DC = 0 the
  result is Device-nGnRnE: SH = 0b10 (PAREncodeShareability), ATTR = 0x00
  (EncodePARAttrs).
fault: F = 1, FST[6:1] = EncodeLDFSC(statuscode, level), PTW[8], S[9],
  bit 11 RES1, bits [63:48] IMPLEMENTATION DEFINED ("Faulting PAR"), others 0.
External abort on the walk: AArch64.AT takes a Data Abort instead of
writing the PAR (ESR_ELx: EC 0b100101 = 0x25 for an abort taken without a
change of EL, IL = 1, CM = 1 and WnR = 1 for AT, DFSC 0b0101LL).
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.arch import Arch
from reference.bits import mask
from reference.outcome import Fault, FaultKind, Outcome, Translation, decode_fsc, encode_fsc
from reference.par import Pattern, Report, decode_par, encode_par_fault, encode_par_success, predict

A64, A32 = Arch.AARCH64, Arch.AARCH32
U64 = (1 << 64) - 1
TF, ASF, AFF, PF, SEA = (FaultKind.TRANSLATION, FaultKind.ADDRESS_SIZE, FaultKind.ACCESS_FLAG,
                         FaultKind.PERMISSION, FaultKind.SEA_ON_WALK)


def outcome(result) -> Outcome:
    return Outcome(result=result, rules=("test",))


def translation(pa: int) -> Translation:
    return Translation(pa=pa, level=3, block_bits=12, s2ap=3, xn=0, memattr=0xF, sh=3, af=1,
                       contiguous=0, dbm=0)


class TestFaultStatusCodes:
    """EncodeLDFSC: 0b0000LL Address size, 0b0001LL Translation, 0b0010LL
    Access flag, 0b0011LL Permission, 0b0101LL external abort on walk;
    level -1 (FEAT_LPA2): 0b101001 Address size, 0b101011 Translation,
    0b010011 external abort on walk."""

    @pytest.mark.parametrize("kind, level, fsc", [
        (ASF, 0, 0b000000), (ASF, 1, 0b000001), (ASF, 2, 0b000010), (ASF, 3, 0b000011),
        (TF, 0, 0b000100), (TF, 1, 0b000101), (TF, 2, 0b000110), (TF, 3, 0b000111),
        (AFF, 0, 0b001000), (AFF, 1, 0b001001), (AFF, 2, 0b001010), (AFF, 3, 0b001011),
        (PF, 0, 0b001100), (PF, 1, 0b001101), (PF, 2, 0b001110), (PF, 3, 0b001111),
        (SEA, 0, 0b010100), (SEA, 1, 0b010101), (SEA, 2, 0b010110), (SEA, 3, 0b010111),
        (ASF, -1, 0b101001), (TF, -1, 0b101011), (SEA, -1, 0b010011),
    ])
    def test_encode_decode(self, kind, level, fsc):
        assert encode_fsc(kind, level) == fsc
        assert decode_fsc(fsc) == (kind, level)

    @pytest.mark.parametrize("kind, level", [(AFF, -1), (PF, -1), (TF, 4), (ASF, -2)])
    def test_impossible_levels_are_rejected(self, kind, level):
        # Access flag and Permission faults only exist at levels 0..3.
        with pytest.raises((KeyError, ValueError)):
            encode_fsc(kind, level)

    @pytest.mark.parametrize("fsc", [
        0b100001,   # Alignment
        0b010000,   # synchronous External abort, not on a walk
        0b011011,   # parity error on walk, level -1 (not modelled)
        0b110000,   # TLB conflict
        0b101000,   # GPF on output
    ])
    def test_codes_a_stage2_walk_does_not_produce(self, fsc):
        assert decode_fsc(fsc) is None


class TestSuccessPattern:
    def test_design_example(self):
        # PA 0x12000: PA[47:12] in place | bit 11 | SH 0b10 << 7 = 0x100 -> 0x12900
        # on the cared bits; QEMU's 0x12b00 also has NS (bit 9), UNKNOWN here.
        p = encode_par_success(A64, 0x12000)
        assert p.value == 0x12900
        assert p.care == U64 & ~(1 << 9 | 1 << 10)
        assert p.matches(0x12B00)
        assert p.matches(0x12900)
        assert p.matches(0x12F00)              # bit 10 IMPDEF
        assert not p.matches(0x12B80)          # SH 0b11
        assert not p.matches(0x13B00)          # another PA
        assert not p.matches(0x12300)          # bit 11 RES1 clear
        assert not p.matches(0x12B01)          # F set
        assert not p.matches(0xFF00_0000_0001_2B00)   # ATTR 0xff

    def test_page_offset_not_reported(self):
        pred = predict(A64, outcome(translation(0x4000_1234)), 0x4000_1234)
        assert pred.report is Report.PAR
        assert pred.pattern == Pattern(0x4000_1900, U64 & ~(1 << 9 | 1 << 10))
        assert pred.pattern.matches(0x0000_0000_4000_1B00)   # QEMU baseline

    def test_52bit_pa(self):
        # PAR_EL1[51:48] = PA[51:48].
        assert encode_par_success(A64, 0xF_0000_4000_1234).value == 0xF_0000_4000_1900

    def test_aarch32_pa_is_bits_39_12(self):
        assert encode_par_success(A32, 0xFF_4000_1234).value == 0xFF_4000_1900
        # Bits above 39 are not part of the AArch32 PA field.
        assert encode_par_success(A32, 1 << 40 | 0x1000).value == 0x1900


class TestFaultPattern:
    @pytest.mark.parametrize("fault, value", [
        # F | FST << 1 | S << 9 | RES1 bit 11:
        (Fault(TF, 1), 0xA0B),                 # FST 0b000101
        (Fault(ASF, 1), 0xA03),                # FST 0b000001
        (Fault(AFF, 3), 0xA17),                # FST 0b001011
        (Fault(PF, 3), 0xA1F),                 # FST 0b001111
        (Fault(TF, 0), 0xA09),
        (Fault(TF, 3), 0xA0F),
        (Fault(ASF, 0), 0xA01),
        (Fault(AFF, 1), 0xA13),
        (Fault(PF, 1), 0xA1B),
        (Fault(ASF, 0, stage2=False), 0x801),  # stage-1 Address size (S = 0)
        (Fault(TF, -1), 0xA57),                # FST 0b101011
        (Fault(ASF, -1), 0xA53),               # FST 0b101001
        (Fault(TF, 1, s1ptw=True), 0xB0B),     # PTW bit 8
    ])
    @pytest.mark.parametrize("arch", [A64, A32])
    def test_values(self, arch, fault, value):
        p = encode_par_fault(arch, fault)
        assert p == Pattern(value, mask(47, 0))
        assert predict(arch, outcome(fault), 0x1234).pattern == p
        # Bits [63:48] are IMPLEMENTATION DEFINED.
        assert p.matches(0xFFFF_0000_0000_0000 | value)
        assert not p.matches(value | 1 << 12)
        assert not p.matches(value ^ 1 << 9)


class TestExternalAbort:
    @pytest.mark.parametrize("level, esr", [
        # EC 0x25 << 26 = 0x9400_0000, IL 1 << 25, CM 1 << 8, WnR 1 << 6,
        # DFSC 0b0101LL (0b010011 at level -1).
        (-1, 0x9600_0153), (0, 0x9600_0154), (1, 0x9600_0155), (2, 0x9600_0156),
        (3, 0x9600_0157),
    ])
    def test_prediction(self, level, esr):
        pred = predict(A64, outcome(Fault(SEA, level)), 0x4000_1234)
        assert pred.report is Report.EXCEPTION
        assert pred.pattern.value == esr
        assert pred.far == 0x4000_1234
        assert pred.pattern.matches(esr)

    def test_measured_and_rejected_syndromes(self):
        p = predict(A64, outcome(Fault(SEA, 1)), 0).pattern
        assert p.matches(0x9600_0155)          # QEMU 7.2, AT S12E1R, L1 table outside RAM
        assert not p.matches(0x9600_0115)      # WnR = 0
        assert not p.matches(0x9600_0055)      # CM = 0
        assert not p.matches(0x9600_01D5)      # S1PTW = 1
        assert not p.matches(0x9200_0155)      # EC 0x24 (from a lower EL)
        assert not p.matches(0x9600_0156)      # level 2


class TestDecode:
    def test_success(self):
        v = decode_par(A64, 0x0000_0000_4000_1B00)
        assert (v.f, v.pa, v.sh, v.attr, v.fault) == (0, 0x4000_1000, 0b10, 0x00, None)

    def test_success_attr(self):
        v = decode_par(A64, 0xFF00_0000_4000_1B80)
        assert (v.pa, v.sh, v.attr) == (0x4000_1000, 0b11, 0xFF)

    def test_fault(self):
        v = decode_par(A64, 0xFFFF_0000_0000_0A0B)
        assert (v.f, v.fst, v.s, v.ptw, v.fault, v.pa) == (1, 0b000101, 1, 0, (TF, 1), None)

    def test_stage1_fault(self):
        v = decode_par(A64, 0x801)
        assert (v.s, v.fault) == (0, (ASF, 0))

    def test_unknown_fst(self):
        v = decode_par(A64, 0xA43)    # FST 0b100001: Alignment
        assert v.fault is None and v.fst == 0b100001
        assert "unknown" in v.describe()

    def test_aarch32(self):
        assert decode_par(A32, 0x0000_0000_4000_1B00).pa == 0x4000_1000
        assert decode_par(A32, 0xA17).fault == (AFF, 3)

    @given(st.sampled_from([A64, A32]), st.sampled_from([ASF, TF, AFF, PF]),
           st.integers(0, 3), st.booleans(), st.booleans(), st.integers(0, 0xFFFF))
    def test_fault_round_trip(self, arch, kind, level, stage2, ptw, impdef):
        """Every fault encodes to a pattern that decodes back to it, whatever
        the IMPLEMENTATION DEFINED bits [63:48]."""
        fault = Fault(kind, level, stage2=stage2, s1ptw=ptw)
        p = encode_par_fault(arch, fault)
        raw = p.value | impdef << 48
        assert p.matches(raw)
        v = decode_par(arch, raw)
        assert (v.f, v.fault, v.s, v.ptw) == (1, (kind, level), int(stage2), int(ptw))

    @given(st.sampled_from([TF, ASF]), st.booleans())
    def test_level_minus1_round_trip(self, kind, stage2):
        """Level -1 codes decode back to level -1."""
        fault = Fault(kind, -1, stage2=stage2)
        assert decode_par(A64, encode_par_fault(A64, fault).value).fault == (kind, -1)

    @given(st.sampled_from([A64, A32]), st.integers(0, (1 << 52) - 1), st.booleans(),
           st.booleans())
    def test_success_round_trip(self, arch, pa, ns, bit10):
        """A success PAR decodes to the PA's page, SH 0b10 and ATTR 0,
        whatever the UNKNOWN NS bit and the IMPDEF bit 10."""
        p = predict(arch, outcome(translation(pa)), pa).pattern
        raw = p.value | ns << 9 | bit10 << 10
        assert p.matches(raw)
        v = decode_par(arch, raw)
        top = 51 if arch is A64 else 39
        assert (v.f, v.pa, v.sh, v.attr) == (0, pa & mask(top, 12), 0b10, 0)
