"""The access-probe reference (reference.access, reference.syndrome),
field by field, with expected values worked out by hand from the
pseudocode (Sail arm-v9.4-a v8_base.sail) and the register text of DDI 0487
(D24.2.46 ESR_EL2, D24.2.49 FAR_EL2, G8.2.74 HSR).

Every image here is built by hand: one 4K-granule, 40-bit-IPA configuration
starting at level 1 (two concatenated level-1 tables), so IPA 0x8000_0000
is L1 index 2, and its pages sit in one level-3 table.  ESR values are
composed in the comments bit by bit:

    EC [31:26] | IL [25] | ISV [24] | SAS [23:22] | SSE [21] | SRT [20:16]
    | SF [15] | AR [14] | VNCR [13] | [12:11] | FnV [10] | EA [9] | CM [8]
    | S1PTW [7] | WnR [6] | DFSC [5:0]
"""
from __future__ import annotations

import struct

import pytest

from reference.access import (
    AbortStatus,
    AccessContext,
    AccessKind,
    AccessOp,
    Taken,
    access_outcomes,
    instruction_syndrome_valid,
    pattern_bytes,
)
from reference.arch import Arch, Granule
from reference.bits import mask
from reference.config import aarch32_config, aarch64_config
from reference.cpus import get_cpu
from reference.image import ImageBuilder, LeafAttrs, layout_for
from reference.memory import Memory, Region
from reference.syndrome import ProbeAddresses, Slot, feat_ras, ipa_valid, predict_access

A64, A32 = Arch.AARCH64, Arch.AARCH32
K = AccessKind
U64 = (1 << 64) - 1
RAM = ((0x4000_0000, 0x4000_0000),)
TABLES = 0x4800_0000
DATA = 0x4900_0000          # data chunks: PA DATA + 0x1000 * n
IPA = 0x8000_0000           # L1 index 2, L2 index 0: the pages below are L3 entries
EL1 = 0x4021_0000           # where the image maps the routine; insns at +0x100 / +0x104
INSNS = (EL1 + 0x100, EL1 + 0x104)

# Explicit data for the load tests (not the pattern): byte 0 has its top bit
# set, so sign extension shows at every width.
DATA_BYTES = bytes([0x9A, 0xBC, 0xDE, 0xF0, 0x12, 0x34, 0x56, 0x78,
                    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])

# Pages of the test image: IPA page index -> (PA page index, attrs, level).
RW = LeafAttrs()                                  # S2AP 11, AF 1, XN 00, Normal WB
PAGES = {
    0: LeafAttrs(),                                # RW data (DATA_BYTES)
    1: LeafAttrs(s2ap=0b01),                       # read-only
    2: LeafAttrs(s2ap=0b10),                       # write-only
    3: LeafAttrs(s2ap=0b00),                       # no access, executable
    4: LeafAttrs(xn=0b10),                         # RW, XN: no execution at EL0 or EL1
    5: LeafAttrs(af=0),                            # Access flag clear
    6: LeafAttrs(memattr=0b0000),                  # RW, Device-nGnRnE at stage 2
    7: LeafAttrs(memattr=0b0000, s2ap=0b01),       # read-only Device
    8: LeafAttrs(s2ap=0b01, dbm=1),                # read-only, DBM (dirty-state managed)
    9: LeafAttrs(af=0, s2ap=0b01),                 # AF clear, read-only
}
NO_L3 = 0x20       # page index with no L3 entry: Translation fault level 3
NO_L2 = IPA + (1 << 21)   # L2 entry 1 empty: Translation fault level 2
NO_L1 = 0x4000_0000 * 3   # L1 entry 3 empty: Translation fault level 1


def image(arch: Arch, cpu_name: str, *, ha: int = 0, hd: int = 0, sea_table: bool = False):
    cpu = get_cpu(arch, cpu_name)
    if arch is A64:
        config = aarch64_config(Granule.G4K, 40, 1, ps_bits=40, ha=ha, hd=hd)
    else:
        config = aarch32_config(40, 1)
    layout = layout_for(cpu, config, 1)
    b = ImageBuilder(layout, TABLES, 0x10_0000, vmid=3)
    for i, attrs in PAGES.items():
        b.map(IPA + 0x1000 * i, DATA + 0x1000 * i, 3, attrs)
    if sea_table:
        # A level-2 table descriptor for IPA 0xC000_0000 pointing where
        # virt has no memory: the walk takes an External abort at level 2.
        b.plant(0xC000_0000, 2, 0x10_0000_0000 | 0b11)
    img = b.build()
    data = [Region(DATA, DATA_BYTES + pattern_bytes(DATA + 16, 0x1000 - 16))]
    data += [Region(DATA + 0x1000 * i, pattern_bytes(DATA + 0x1000 * i, 0x40)) for i in PAGES if i]
    memory = Memory(ram=RAM, regions=img.regions + tuple(data))
    return cpu, config.with_vttbr(img.vttbr), memory


def predict(arch, cpu_name, kind, ipa, *, ctx=AccessContext(), **kw):
    cpu, config, memory = image(arch, cpu_name, **kw)
    outs = access_outcomes(cpu, config, memory, ipa, kind, ctx)
    return [e for o in outs for e in predict_access(cpu, kind, o, ProbeAddresses(ipa, INSNS))]


def only(expectations):
    assert len(expectations) == 1, [e.describe() for e in expectations]
    return expectations[0]


def esr(e) -> tuple[int, int]:
    return e.pattern(Slot.ESR)


class TestInstructionSyndromeValid:
    """ISV rule (ESR_EL2 ISV text): single GPR load/store, acquire/release
    included; exclusives, writeback, pairs, SIMD&FP, DC ZVA excluded."""

    @pytest.mark.parametrize("kind, isv", [
        (K.A64_LDRB_W, True), (K.A64_LDRSW_X, True), (K.A64_STR_XZR, True), (K.A64_LDAR_X, True),
        (K.A64_STLR_W, True), (K.A64_LDR_X_POST, False), (K.A64_STR_X_PRE, False),
        (K.A64_LDP_X, False), (K.A64_STP_X, False), (K.A64_LDXR_STXR, False),
        (K.A64_LDR_Q, False), (K.A64_STR_Q, False), (K.A64_DC_ZVA, False), (K.A64_IFETCH, False),
        (K.A32_LDRSH, True), (K.A32_STR_LR, True), (K.A32_LDA, True), (K.A32_LDRD, False),
        (K.A32_LDM, False), (K.A32_LDREX_STREX, False), (K.A32_LDR_POST, False),
        (K.A32_VLDR, False),
    ])
    def test_isv(self, kind, isv):
        assert instruction_syndrome_valid(kind.spec) is isv


class TestAArch64DataAbortSyndrome:
    """Stage-2 Translation fault, level 3 (DFSC 0b000111), for each kind:
    IPA page NO_L3 has no L3 entry.  EC 0x24 (Data Abort from a lower EL),
    IL 1; when ISV = 1: SAS/SSE/SRT/SF/AR from the instruction."""

    ipa = IPA + 0x1000 * NO_L3

    @pytest.mark.parametrize("kind, value", [
        # 0x9000_0000 EC | 0x0200_0000 IL | 0x0100_0000 ISV | SRT 3 << 16 | DFSC 7
        (K.A64_LDRB_W, 0x9303_0007),
        # SAS 0, SSE 1 (0x20_0000), SRT 6, SF 1 (0x8000)
        (K.A64_LDRSB_X, 0x9326_8007),
        # SAS 1 (0x40_0000), SSE 1, SRT 8, SF 0
        (K.A64_LDRSH_W, 0x9368_0007),
        # SAS 2 (0x80_0000), SSE 1, SRT 12 (0xC_0000), SF 1
        (K.A64_LDRSW_X, 0x93AC_8007),
        # SAS 3 (0xC0_0000), SSE 0: doubleword loads do not sign-extend, SRT 13, SF 1
        (K.A64_LDR_X, 0x93CD_8007),
        # SAS 1, SRT 15, WnR (0x40)
        (K.A64_STRH_W, 0x934F_0047),
        # SAS 3, SRT 31 (XZR), SF 1, WnR
        (K.A64_STR_XZR, 0x93DF_8047),
        # SAS 3, SRT 30, SF 1, AR (0x4000)
        (K.A64_LDAR_X, 0x93DE_C007),
        # SAS 0, SRT 5, SF 0, AR
        (K.A64_LDARB_W, 0x9305_4007),
        # SAS 2, SRT 3, AR, WnR
        (K.A64_STLR_W, 0x9383_4047),
        # ISV 0: IL 1 (RES1 when ISV = 0), ISS[23:14] 0
        (K.A64_LDR_X_POST, 0x9200_0007),
        (K.A64_STR_X_PRE, 0x9200_0047),
        (K.A64_LDP_X, 0x9200_0007),
        (K.A64_STP_X, 0x9200_0047),
        (K.A64_LDR_Q, 0x9200_0007),
        (K.A64_STR_Q, 0x9200_0047),
        # the LDXR faults first (a read)
        (K.A64_LDXR_STXR, 0x9200_0007),
    ])
    def test_esr_el2(self, kind, value):
        e = only(predict(A64, "cortex-a57", kind, self.ipa))
        assert e.taken is Taken.EL2
        assert esr(e) == (value, U64), f"{esr(e)[0]:#x}"

    def test_far_hpfar_elr_vector(self):
        """FAR_EL2 = the VA (= IPA); HPFAR_EL2.FIPA [47:4] = IPA[55:12] for
        a Translation fault (IPAValid), NS = 0; ELR_EL2 = the access
        instruction; VBAR_EL2 + 0x400 (lower EL, AArch64, synchronous)."""
        ipa = self.ipa + 0x18
        e = only(predict(A64, "cortex-a57", K.A64_LDR_X, ipa))
        assert e.pattern(Slot.FAR) == (ipa, U64)
        # IPA 0x8002_0018: IPA[55:12] = 0x8_0020, in [47:4]: 0x80_0200
        assert e.pattern(Slot.HPFAR) == ((ipa >> 12) << 4, U64)
        assert e.pattern(Slot.HPFAR)[0] == 0x0080_0200
        assert e.pattern(Slot.ELR) == (INSNS[0], U64)
        assert e.pattern(Slot.VECTOR) == (0x400, U64)

    @pytest.mark.parametrize("ipa, dfsc", [(NO_L2, 0b000110), (NO_L1, 0b000101)])
    def test_translation_fault_levels(self, ipa, dfsc):
        """L2 entry 1 empty -> level 2; L1 entry 3 empty -> level 1."""
        e = only(predict(A64, "cortex-a57", K.A64_LDR_W, ipa))
        assert esr(e)[0] & 0x3F == dfsc

    def test_ipa_beyond_ia_size(self):
        """IPA 2^40 on a 44-bit-PAMax CPU: stage 1 passes it, stage 2's
        AArch64.IPAIsOutOfRange gives Translation fault level 0 (0b000100)."""
        e = only(predict(A64, "cortex-a57", K.A64_LDR_W, 1 << 40))
        assert e.taken is Taken.EL2 and esr(e)[0] & 0x3F == 0b000100
        assert e.pattern(Slot.HPFAR)[0] == (1 << 40) >> 12 << 4


class TestPermissionsAndHpfar:
    """Permission faults: WnR says which permission failed; HPFAR_EL2 is
    UNKNOWN for them (IPAValid is FALSE for a stage-2 Permission fault)."""

    def test_store_to_read_only_page(self):
        # EC 0x24, IL, ISV, SAS 2, SRT 16 (0x10_0000), WnR, DFSC 0b001111 (permission L3)
        e = only(predict(A64, "cortex-a57", K.A64_STR_W, IPA + 0x1000))
        assert esr(e) == (0x9390_004F, U64)
        value, care = e.pattern(Slot.HPFAR)
        assert care & mask(47, 4) == 0 and care & (1 << 63) == 0
        assert care == mask(62, 48) | mask(3, 0) and value == 0    # RES0 bits only

    def test_load_from_write_only_page(self):
        # EC, IL, ISV, SAS 0, SRT 3, WnR 0, DFSC 0b001111
        e = only(predict(A64, "cortex-a57", K.A64_LDRB_W, IPA + 0x2000))
        assert esr(e) == (0x9303_000F, U64)

    def test_access_flag_fault_sets_hpfar(self):
        """AF = 0 with HA = 0: Access flag fault level 3 (0b001011); IPAValid."""
        ipa = IPA + 0x5000
        e = only(predict(A64, "cortex-a57", K.A64_LDR_X, ipa))
        assert esr(e)[0] & 0x3F == 0b001011
        assert e.pattern(Slot.HPFAR) == (ipa >> 12 << 4, U64)

    def test_ipa_valid_table(self):
        """IPAValid (v8_base.sail): stage 2, not on a stage-1 walk."""
        from reference.access import AbortRecord
        assert [ipa_valid(AbortRecord(s, 1, True, False)) for s in AbortStatus] == [
            True, True, True, False, False, False]   # AS, T, AF valid; P, SEA, alignment not
        assert not ipa_valid(AbortRecord(AbortStatus.TRANSLATION, 0, False, False))
        assert ipa_valid(AbortRecord(AbortStatus.PERMISSION, 1, True, False, s2fs1walk=True))


class TestExternalAbortOnWalk:
    """The level-2 entry of IPA 0xC000_0000 is a table descriptor pointing
    where virt has no memory, so the level-3 descriptor read aborts: DFSC
    0b010111 (External abort on the walk, level 3), EA
    IMPLEMENTATION DEFINED, HPFAR UNKNOWN (IPAValid FALSE); ISV: 0 with
    FEAT_RAS, IMPLEMENTATION DEFINED without."""

    def test_without_ras_both_isv(self):
        assert feat_ras(get_cpu(A64, "cortex-a57")) is False
        es = predict(A64, "cortex-a57", K.A64_LDR_W, 0xC000_0000, sea_table=True)
        assert [e.pattern(Slot.ESR) for e in es] == [
            # ISV 0: IL 1, DFSC 0x17; EA (bit 9) and HPFAR not cared
            (0x9200_0017, U64 & ~(1 << 9)),
            # ISV 1: SAS 2, SRT 11 (0xB_0000)
            (0x938B_0017, U64 & ~(1 << 9))]

    def test_with_ras_isv_0(self):
        assert feat_ras(get_cpu(A64, "max")) is True
        e = only(predict(A64, "max", K.A64_LDR_W, 0xC000_0000, sea_table=True))
        # ISV 0; WU [17:16], PFV [14] and EA [9] not cared
        assert e.pattern(Slot.ESR) == (0x9200_0017, U64 & ~(mask(17, 16) | (1 << 14) | (1 << 9)))
        assert e.pattern(Slot.HPFAR)[1] & mask(47, 4) == 0


class TestInstructionFetch:
    """AArch64.S2CheckPermissions (IFETCH) checks XN only, not S2AP; the
    Instruction Abort is EC 0x20, IL 1, IFSC in [5:0], FAR = ELR = target."""

    def test_executable_no_access_page_completes(self):
        """S2AP = 00, XN = 00: no read, but EL1 may execute (px = 1)."""
        e = only(predict(A64, "cortex-a57", K.A64_IFETCH, IPA + 0x3000))
        assert e.taken is Taken.COMPLETED
        # returns with HVC #2 (EC 0x16, IL 1, imm16 2) from target + 4
        assert esr(e) == (0x5A00_0002, mask(31, 25) | mask(15, 0))
        assert e.pattern(Slot.ELR) == (IPA + 0x3004, U64)

    def test_xn_page(self):
        """XN = 0b10: no execution at any EL: Permission fault level 3,
        0x8000_0000 EC 0x20 | 0x0200_0000 IL | IFSC 0b001111."""
        ipa = IPA + 0x4000
        e = only(predict(A64, "cortex-a57", K.A64_IFETCH, ipa))
        assert esr(e) == (0x8200_000F, U64)
        assert e.pattern(Slot.FAR) == (ipa, U64) and e.pattern(Slot.ELR) == (ipa, U64)

    def test_translation_fault(self):
        ipa = IPA + 0x1000 * NO_L3
        e = only(predict(A64, "cortex-a57", K.A64_IFETCH, ipa))
        assert esr(e) == (0x8200_0007, U64)
        assert e.pattern(Slot.HPFAR) == (ipa >> 12 << 4, U64)

    def test_device_memory_is_constrained_unpredictable(self):
        """INSTRDEVICE: a Permission fault, or the fetch proceeds."""
        es = predict(A64, "cortex-a57", K.A64_IFETCH, IPA + 0x6000)
        assert sorted(e.taken.name for e in es) == ["COMPLETED", "EL2"]
        fault = next(e for e in es if e.taken is Taken.EL2)
        assert esr(fault)[0] == 0x8200_000F

    def test_aarch32_needs_read_permission(self):
        """AArch32.S2HasPermissionsFault without FEAT_XNX: x = S2AP[0] AND
        NOT XN, so the S2AP = 00 page faults: HSR EC 0x20, IL UNK on ARMv7,
        IFSC 0b001111."""
        e = only(predict(A32, "cortex-a15", K.A32_IFETCH, IPA + 0x3000))
        assert esr(e) == (0x8000_000F, U64 & ~(1 << 25))
        e = only(predict(A32, "max", K.A32_IFETCH, IPA + 0x3000))
        assert esr(e) == (0x8200_000F, U64)            # ARMv8: IL RES1


class TestDcZva:
    """DC ZVA: AccessType_DCZero, a write (WnR 1) that is not cache
    maintenance (CM 0) and has no instruction syndrome (ISV 0)."""

    def test_stage1_alignment_fault_with_dc_0(self):
        """Stage 1 off, HCR_EL2.DC = 0: Device; AArch64.S1HasAlignmentFault
        (DCZero on Device) -> EL1: ESR_EL1 EC 0x25 (Data Abort, same EL),
        IL, WnR, DFSC 0b100001 = 0x9600_0061; FAR_EL1 = regval (unaligned)."""
        ipa = IPA + 0x28
        e = only(predict(A64, "cortex-a57", K.A64_DC_ZVA, ipa))
        assert e.taken is Taken.EL1
        assert esr(e) == (0x9600_0061, U64)
        assert e.pattern(Slot.FAR) == (ipa, U64)
        assert e.pattern(Slot.VECTOR) == (0x200, U64)

    def test_zeroes_the_block_with_dc_1(self):
        ctx = AccessContext(hcr_dc=True, dczva_bytes=64)
        cpu, config, memory = image(A64, "cortex-a57")
        (o,) = access_outcomes(cpu, config, memory, IPA + 0x48, K.A64_DC_ZVA, ctx)
        assert o.taken is Taken.COMPLETED and o.stores == ((DATA + 0x40, bytes(64)),)

    def test_read_only_page_permission_fault(self):
        """Write permission denied, Normal memory: EC 0x24, IL, WnR, DFSC 0b001111."""
        es = predict(A64, "cortex-a57", K.A64_DC_ZVA, IPA + 0x1010, ctx=AccessContext(hcr_dc=True))
        assert esr(only(es)) == (0x9200_004F, U64)
        assert only(es).pattern(Slot.FAR) == (IPA + 0x1010, U64)

    def test_device_alignment_before_permission(self):
        """Read-only Device page: AArch64.S2HasAlignmentFault comes before
        AArch64.S2CheckPermissions in AArch64.S2Translate: a stage-2
        Alignment fault to EL2, EC 0x24, IL, WnR, DFSC 0b100001; HPFAR
        UNKNOWN (IPAValid FALSE)."""
        e = only(predict(A64, "cortex-a57", K.A64_DC_ZVA, IPA + 0x7000, ctx=AccessContext(hcr_dc=True)))
        assert e.taken is Taken.EL2 and esr(e) == (0x9200_0061, U64)
        assert e.pattern(Slot.HPFAR)[1] & mask(47, 4) == 0


class TestStage1AddressSize:
    def test_ipa_beyond_pamax_faults_at_el1(self):
        """AArch64.S1DisabledOutput: VA (= IPA) bits above PAMax -> stage-1
        Address size fault level 0, taken to EL1: ESR_EL1 0x25 << 26 | IL
        = 0x9600_0000 for a load (WnR 0, DFSC 0)."""
        e = only(predict(A64, "cortex-a57", K.A64_LDR_X, 1 << 44))
        assert e.taken is Taken.EL1 and esr(e) == (0x9600_0000, U64)
        assert e.pattern(Slot.FAR) == (1 << 44, U64)


class TestCompletedAccesses:
    """Loads return the bytes at the translated PA, extended as the
    instruction says; stores write the probe's data."""

    @pytest.mark.parametrize("kind, values", [
        (K.A64_LDRB_W, (0x9A,)),
        (K.A64_LDRSB_W, (0xFFFF_FF9A,)),               # W register: 32-bit sign extension
        (K.A64_LDRSB_X, (0xFFFF_FFFF_FFFF_FF9A,)),
        (K.A64_LDRH_W, (0xBC9A,)),
        (K.A64_LDRSH_W, (0xFFFF_BC9A,)),
        (K.A64_LDR_W, (0xF0DE_BC9A,)),
        (K.A64_LDRSW_X, (0xFFFF_FFFF_F0DE_BC9A,)),
        (K.A64_LDR_X, (0x7856_3412_F0DE_BC9A,)),
        (K.A64_LDP_X, (0x7856_3412_F0DE_BC9A, 0x8877_6655_4433_2211)),
        (K.A64_LDR_Q, (0x7856_3412_F0DE_BC9A, 0x8877_6655_4433_2211)),
    ])
    def test_aarch64_loads(self, kind, values):
        e = only(predict(A64, "cortex-a57", kind, IPA))
        assert e.taken is Taken.COMPLETED
        got = tuple(e.pattern(s)[0] for s in (Slot.DATA0, Slot.DATA1)[:len(values)])
        assert got == values
        assert esr(e) == (0x5A00_0000, mask(31, 25) | mask(15, 0))    # HVC #0

    @pytest.mark.parametrize("kind, values", [
        (K.A32_LDRB, (0x9A,)), (K.A32_LDRSB, (0xFFFF_FF9A,)), (K.A32_LDRSH, (0xFFFF_BC9A,)),
        (K.A32_LDR, (0xF0DE_BC9A,)), (K.A32_LDRD, (0xF0DE_BC9A, 0x7856_3412)),
        (K.A32_VLDR, (0xF0DE_BC9A, 0x7856_3412)),
    ])
    def test_aarch32_loads(self, kind, values):
        e = only(predict(A32, "cortex-a15", kind, IPA))
        assert tuple(e.pattern(s)[0] for s in (Slot.DATA0, Slot.DATA1)[:len(values)]) == values
        assert esr(e) == (0x4A00_0000, mask(31, 25) | mask(15, 0))    # HVC #0 from PL1

    @pytest.mark.parametrize("kind, data", [
        (K.A64_STRB_W, b"\x88"), (K.A64_STRH_W, b"\x88\x77"), (K.A64_STR_W, b"\x88\x77\x66\x55"),
        (K.A64_STR_X, bytes.fromhex("8877665544332211")), (K.A64_STR_XZR, bytes(8)),
        (K.A64_STP_X, bytes.fromhex("8877665544332211") + bytes.fromhex("ffeeddccbbaa9988")),
        (K.A64_STR_Q, bytes.fromhex("8877665544332211") + bytes.fromhex("ffeeddccbbaa9988")),
    ])
    def test_stores(self, kind, data):
        cpu, config, memory = image(A64, "cortex-a57")
        ctx = AccessContext(store_data=(0x1122_3344_5566_7788, 0x8899_AABB_CCDD_EEFF))
        (o,) = access_outcomes(cpu, config, memory, IPA + 0x10, kind, ctx)
        assert o.stores == ((DATA + 0x10, data),)

    def test_aarch32_strd_stores_both_words(self):
        cpu, config, memory = image(A32, "cortex-a15")
        ctx = AccessContext(store_data=(0x1122_3344_5566_7788, 0))
        (o,) = access_outcomes(cpu, config, memory, IPA + 0x10, K.A32_STRD, ctx)
        assert o.stores == ((DATA + 0x10, bytes.fromhex("8877665544332211")),)


class TestExclusivePair:
    def test_store_exclusive_faults_on_read_only_page(self):
        """LDXR reads the read-only page; the STXR then takes the
        Permission fault: ELR = the second instruction, WnR 1, ISV 0:
        0x9200_004F."""
        e = only(predict(A64, "cortex-a57", K.A64_LDXR_STXR, IPA + 0x1000))
        assert esr(e) == (0x9200_004F, U64)
        assert e.pattern(Slot.ELR) == (INSNS[1], U64)

    def test_status_0_stores_status_1_does_not(self):
        cpu, config, memory = image(A64, "cortex-a57")
        outs = access_outcomes(cpu, config, memory, IPA + 0x8, K.A64_LDXR_STXR,
                               AccessContext(store_data=(5, 0)))
        assert sorted((o.values, o.stores) for o in outs) == [
            ((0x8877_6655_4433_2211, 0), ((DATA + 8, (5).to_bytes(8, "little")),)),
            ((0x8877_6655_4433_2211, 1), ())]


class TestHardwareUpdates:
    """AArch64.S2Translate with HA (and HD): a real access sets AF; an AT may
    not (reference.walk keeps both for AT); a store to a DBM page sets
    S2AP[1]."""

    def test_load_sets_af(self):
        cpu, config, memory = image(A64, "max", ha=1)
        (o,) = access_outcomes(cpu, config, memory, IPA + 0x5000, K.A64_LDR_X)
        assert o.taken is Taken.COMPLETED
        (w,) = o.writes
        assert w.new == w.old | (1 << 10)

    def test_store_sets_dirty_state(self):
        cpu, config, memory = image(A64, "max", ha=1, hd=1)
        (o,) = access_outcomes(cpu, config, memory, IPA + 0x8000, K.A64_STR_X)
        assert o.taken is Taken.COMPLETED
        (w,) = o.writes
        assert w.new == w.old | (1 << 7)            # S2AP[1]: writable now

    def test_store_without_hd_faults(self):
        e = only(predict(A64, "max", K.A64_STR_X, IPA + 0x8000, ha=1))
        assert esr(e)[0] & 0x3F == 0b001111

    def test_permission_fault_with_af_clear_may_set_af(self):
        """Unpredictable_AFUPDATE: both permitted."""
        cpu, config, memory = image(A64, "max", ha=1)
        outs = access_outcomes(cpu, config, memory, IPA + 0x9000, K.A64_STR_W)
        assert sorted(len(o.writes) for o in outs) == [0, 1]


class TestAArch32Hsr:
    """HSR of a Data Abort from PL1: SRT in [19:16], no SF, AR only in
    ARMv8; IL UNK on ARMv7 when ISV = 0, RES1 on ARMv8."""

    def test_ldrsh_translation_fault(self):
        # 0x9000_0000 EC 0x24 | IL | ISV | SAS 1 (0x40_0000) | SSE (0x20_0000)
        # | SRT 8 (0x8_0000) | DFSC 0b000111  ([63:32] zero: 32-bit register)
        ipa = IPA + 0x1000 * NO_L3
        e = only(predict(A32, "cortex-a15", K.A32_LDRSH, ipa))
        assert esr(e) == (0x9368_0007, U64)
        assert e.pattern(Slot.HPFAR) == (ipa >> 12 << 4, U64)
        assert e.pattern(Slot.FAR) == (ipa, U64)
        assert e.pattern(Slot.VECTOR) == (0x14, U64)

    def test_ldrd_il_v7_unknown_v8_one(self):
        ipa = IPA + 0x1000 * NO_L3
        e7 = only(predict(A32, "cortex-a15", K.A32_LDRD, ipa))
        e8 = only(predict(A32, "max", K.A32_LDRD, ipa))
        assert esr(e7) == (0x9000_0007, U64 & ~(1 << 25))
        assert esr(e8) == (0x9200_0007, U64)

    def test_stl_acquire_release(self):
        # IL, ISV, SAS 2, SRT 1, AR (0x4000), WnR, DFSC 0b001111: store to read-only
        e = only(predict(A32, "max", K.A32_STL, IPA + 0x1000))
        assert esr(e) == (0x9381_404F, U64)

    def test_str_lr_srt_14(self):
        e = only(predict(A32, "cortex-a15", K.A32_STR_LR, IPA + 0x1000))
        assert esr(e) == (0x938E_004F, U64)          # SAS 2, SRT 14, WnR, permission L3


class TestMismatchReporting:
    """A flipped bit is reported against the field that owns it."""

    def test_flipped_srt_bit(self):
        e = only(predict(A64, "cortex-a57", K.A64_LDRSW_X, IPA + 0x1000 * NO_L3))
        words = {s: e.pattern(s)[0] for s in Slot}
        assert e.mismatches(Taken.EL2, words) == []
        words[Slot.ESR] ^= 1 << 17
        ((f, seen),) = e.mismatches(Taken.EL2, words)
        assert (f.name, f.value, seen) == ("SRT", 12, 14)

    def test_wrong_report_mismatches_everything(self):
        e = only(predict(A64, "cortex-a57", K.A64_LDR_X, IPA))
        assert len(e.mismatches(Taken.EL2, {s: 0 for s in Slot})) == len(e.fields)


def test_kinds_cover_both_arches():
    """Every kind has its spec; the AArch32 v7 list leaves out LDA/STL."""
    v7 = AccessKind.for_arch(A32, 7)
    assert K.A32_LDA not in v7 and K.A32_LDA in AccessKind.for_arch(A32, 8)
    assert all(k.spec.op is not AccessOp.DC_ZVA for k in v7)
    assert struct.calcsize("<Q") == 8
