"""AArch64 stage 1 with stage 2 (reference.stage1, reference.at) against the
Arm ARM pseudocode, worked by hand.

Every expected value below is derived from the pseudocode (Sail
arm-v9.4-a v8_base.sail: AArch64.S1Translate, AArch64.S1Walk,
AArch64.S2Translate, AArch64.S2CheckPermissions, AArch64.EncodePAR,
AArch64.FaultSyndrome, IPAValid); the comment on each case says how.
Table memory is written word by word (``words``) so the tests do not depend
on the image builder.

The fixed layout (4K granules at both stages):

* Stage 2: VTCR_EL2 T0SZ 24 (40-bit IPA), SL0 1 (start level 1: IPA[39:30]
  indexes two concatenated tables at S2_L1 = 0x4100_0000), PS 40 bits.
  The L2 table is at 0x4100_2000, the L3 table at 0x4100_3000.
* Stage 1: TCR_EL1 T0SZ 25 (39-bit VA, start level 1: VA[38:30]), IPS 40
  bits, TTBR0_EL1 = IPA 0x8000_0000.  Its tables are at IPAs 0x8000_0000
  (L1), 0x8000_1000 (L2), 0x8000_2000 (L3); stage 2 maps them with L3
  pages to PAs 0x4200_0000, 0x4200_1000, 0x4200_2000.
* The probe VA 0x0040_2123: VA[38:30] = 0, VA[29:21] = 2, VA[20:12] = 2.
  So the stage-1 descriptors are at IPAs 0x8000_0000 (L1), 0x8000_1010
  (L2) and 0x8000_2010 (L3); the L3 page maps IPA 0x9000_0000.
* Stage 2 maps IPA 0x9000_0000 (L1 index 2, L2 index 0x80) with a 2 MiB
  block at 0x4100_2400 to PA 0x5000_0000: VA 0x0040_2123 -> IPA
  0x9000_0123 -> PA 0x5000_0123.
"""
from __future__ import annotations

import struct

import pytest

from reference.arch import Arch, Granule
from reference.at import abort_syndrome, at, predict
from reference.config import S2Config
from reference.cpus import get_cpu
from reference.memattrs import Cacheability, MemType, Shareability
from reference.memory import Memory, Region
from reference.outcome import DescriptorWrite, Fault, FaultKind, NestedTranslation
from reference.par import Report
from reference.s1config import Hcr, S1Config, aarch64_s1_config, tcr_el1
from reference.stage1 import AtOp

A64 = Arch.AARCH64
A53, A57, N1, MAX = (get_cpu(A64, n) for n in ("cortex-a53", "cortex-a57", "neoverse-n1", "max"))
RAM = ((0x4000_0000, 0x4000_0000),)
NO_RAM = 0x0B00_0000

S2_L1, S2_L2, S2_L3 = 0x4100_0000, 0x4100_2000, 0x4100_3000
S1_L1, S1_L2, S1_L3 = 0x8000_0000, 0x8000_1000, 0x8000_2000       # IPAs
S1_L1_PA, S1_L2_PA, S1_L3_PA = 0x4200_0000, 0x4200_1000, 0x4200_2000
VA = 0x0040_2123
OUT_IPA, OUT_PA = 0x9000_0000, 0x5000_0000

# Stage-2 leaf: MemAttr[5:2] 0b1111, S2AP[7:6] 0b11, SH[9:8] 0b11, AF[10].
S2_ATTRS = 0x7FC
# Stage-1 leaf: AttrIndx 0, AP[7:6] 0b01 (EL1 and EL0 read/write), SH 0b11, AF.
S1_ATTRS = 1 << 10 | 0b11 << 8 | 0b01 << 6
AF = 1 << 10


def table(addr: int) -> int:
    return addr | 0b11


def s2_page(pa: int, attrs: int = S2_ATTRS) -> int:
    return pa | attrs | 0b11


def s2_block(pa: int, attrs: int = S2_ATTRS) -> int:
    return pa | attrs | 0b01


def s1_page(ipa: int, attrs: int = S1_ATTRS) -> int:
    return ipa | attrs | 0b11


def base_tables() -> dict[int, int]:
    """The descriptors of the layout in the module docstring, by PA."""
    return {
        # stage 2
        S2_L1 + 2 * 8: table(S2_L2),                     # IPA[39:30] = 2
        S2_L2 + 0 * 8: table(S2_L3),                     # IPA 0x8000_0000: IPA[29:21] = 0
        S2_L2 + 0x80 * 8: s2_block(OUT_PA),              # IPA 0x9000_0000: IPA[29:21] = 0x80
        S2_L3 + 0 * 8: s2_page(S1_L1_PA),                # IPA 0x8000_0000
        S2_L3 + 1 * 8: s2_page(S1_L2_PA),                # IPA 0x8000_1000
        S2_L3 + 2 * 8: s2_page(S1_L3_PA),                # IPA 0x8000_2000
        # stage 1
        S1_L1_PA + 0 * 8: table(S1_L2),
        S1_L2_PA + 2 * 8: table(S1_L3),
        S1_L3_PA + 2 * 8: s1_page(OUT_IPA),
    }


def words(entries: dict[int, int]) -> Memory:
    return Memory(ram=RAM, regions=tuple(Region(pa, struct.pack("<Q", v))
                                         for pa, v in entries.items() if v is not None))


def s2cfg(**kw) -> S2Config:
    kw = {"t0sz": 24, "sl0": 0b01, "tg0": 0b00, "ps": 0b010, "sh0": 0b11, "irgn0": 1,
          "orgn0": 1, "vttbr": S2_L1} | kw
    return S2Config(arch=A64, **kw)


def s1cfg(ips_bits: int = 40, ttbr0: int = S1_L1, mair: int = 0xFF, **kw) -> S1Config:
    return aarch64_s1_config(Granule.G4K, 39, ips_bits=ips_bits, ttbr0=ttbr0, mair=mair, **kw)


def results(mem: Memory, op: AtOp = AtOp.S12E1R, *, cpu=MAX, s2=None, s1=None, hcr=Hcr(),
            va: int = VA) -> set:
    return {o.result for o in at(cpu, s2 or s2cfg(), s1 or s1cfg(), hcr, mem, va, op).outcomes}


def outcomes(mem: Memory, op: AtOp = AtOp.S12E1R, **kw) -> set:
    cpu, s2, s1, hcr = kw.get("cpu", MAX), kw.get("s2") or s2cfg(), kw.get("s1") or s1cfg(), kw.get("hcr", Hcr())
    return {(o.result, o.writes) for o in at(cpu, s2, s1, hcr, mem, kw.get("va", VA), op).outcomes}


def ptw(kind: FaultKind, level: int, ipa: int) -> Fault:
    return Fault(kind, level, stage2=True, s1ptw=True, ipa=ipa)


def s1f(kind: FaultKind, level: int) -> Fault:
    return Fault(kind, level, stage2=False)


def only(res: set):
    assert len(res) == 1, res
    return next(iter(res))


# ---------------------------------------------------------------------------

class TestTranslation:
    @pytest.mark.parametrize("cpu", [A53, A57, N1, MAX])
    def test_two_stages(self, cpu):
        # The whole path of the module docstring: VA -> IPA 0x9000_0123 -> PA 0x5000_0123.
        r = only(results(words(base_tables()), cpu=cpu))
        assert isinstance(r, NestedTranslation)
        assert (r.ipa, r.output) == (OUT_IPA | 0x123, OUT_PA | 0x123)
        assert (r.s1.level, r.s1.block_bits, r.s2.level, r.s2.block_bits) == (3, 12, 2, 21)

    def test_stage1_only_reports_the_ipa(self):
        # AT S1E1R stops after AArch64.S1Translate: PAR.PA is the IPA.
        r = only(results(words(base_tables()), AtOp.S1E1R))
        assert r.s2 is None and r.output == OUT_IPA | 0x123

    def test_par_of_a_two_stage_translation(self):
        # MAIR Attr0 0xFF (Normal WB RWA) ISH, stage 2 MemAttr 0b1111 ISH:
        # S2CombineS1MemAttrs keeps WB with stage-1 hints -> ATTR 0xFF, SH
        # ISH = 0b11.  PAR = ATTR << 56 | PA[47:12] | bit 11 | SH << 7.
        o = at(MAX, s2cfg(), s1cfg(), Hcr(), words(base_tables()), VA, AtOp.S12E1R).primary
        pats = {rep.prediction.pattern.value for rep in predict(MAX, o, VA)}
        # ReportedPARShareability also admits Outer Shareable (0b10).
        assert pats == {0xFF00_0000_5000_0980, 0xFF00_0000_5000_0900}

    def test_descriptor_trace_shows_both_stages(self):
        o = at(MAX, s2cfg(), s1cfg(), Hcr(), words(base_tables()), VA, AtOp.S12E1R).primary
        s1_steps = [(t.level, t.ipa, t.address) for t in o.trace if t.stage == 1]
        assert s1_steps == [(1, S1_L1, S1_L1_PA), (2, S1_L2 + 0x10, S1_L2_PA + 0x10),
                            (3, S1_L3 + 0x10, S1_L3_PA + 0x10)]
        # Each stage-1 fetch is preceded by a 3-level stage-2 walk, and the
        # final IPA by a 2-level one: 3 * 3 + 2 stage-2 reads.
        assert sum(t.stage == 2 for t in o.trace) == 11


class TestS1PTWAtEachStage2Level:
    """A stage-2 fault on a stage-1 descriptor fetch: FaultRecord.secondstage
    and s2fs1walk set, the level is the stage-2 walk's, the IPA is the
    stage-1 descriptor's (AArch64.S2Translate called from AArch64.S1Walk)."""

    def test_level1(self):
        # S2 L1 entry for IPA[39:30] = 2 invalid: the first fetch (S1 L1 at
        # IPA 0x8000_0000) takes a Translation fault at stage-2 level 1.
        mem = words(base_tables() | {S2_L1 + 16: 0})
        for op in AtOp:
            assert results(mem, op) == {ptw(FaultKind.TRANSLATION, 1, S1_L1)}

    def test_level2(self):
        mem = words(base_tables() | {S2_L2: 0})
        assert results(mem) == {ptw(FaultKind.TRANSLATION, 2, S1_L1)}

    def test_level3_on_the_last_stage1_fetch(self):
        # Only the S1 L3 table's page is unmapped: levels 1 and 2 are read,
        # the fetch of the L3 descriptor (IPA 0x8000_2010) faults at S2 L3.
        mem = words(base_tables() | {S2_L3 + 16: 0})
        assert results(mem, AtOp.S1E1R) == {ptw(FaultKind.TRANSLATION, 3, S1_L3 + 0x10)}

    def test_level0_ipa_beyond_the_stage2_input_size(self):
        # TTBR0 = IPA 2^40 + 0x8000_0000 with IPS 44: inside stage 1's output
        # size, beyond VTCR_EL2.T0SZ's 40 bits: AArch64.IPAIsOutOfRange, a
        # Translation fault at level 0 (reported at level 0 by AArch64).
        ttbr = 1 << 40 | S1_L1
        for cpu in (A57, N1, MAX):   # PAMax >= 44
            assert results(words(base_tables()), cpu=cpu, s1=s1cfg(ips_bits=44, ttbr0=ttbr)) == \
                {ptw(FaultKind.TRANSLATION, 0, ttbr)}

    def test_permission_no_read(self):
        # S2AP = 00 on the page of the S1 L2 table: a TTW access needs read
        # permission (AArch64.S2CheckPermissions, r == 0), for AT W too.
        mem = words(base_tables() | {S2_L3 + 8: s2_page(S1_L2_PA, S2_ATTRS & ~(0b11 << 6))})
        for op in (AtOp.S12E1R, AtOp.S12E1W, AtOp.S1E0W):
            assert results(mem, op) == {ptw(FaultKind.PERMISSION, 3, S1_L2 + 0x10)}

    def test_write_only_page_still_faults(self):
        # S2AP = 10 (write, no read): the walk reads, so it faults.
        mem = words(base_tables() | {S2_L3 + 8: s2_page(S1_L2_PA, S2_ATTRS & ~(0b01 << 6))})
        assert results(mem) == {ptw(FaultKind.PERMISSION, 3, S1_L2 + 0x10)}

    def test_access_flag(self):
        mem = words(base_tables() | {S2_L3 + 8: s2_page(S1_L2_PA, S2_ATTRS & ~AF)})
        assert results(mem) == {ptw(FaultKind.ACCESS_FLAG, 3, S1_L2 + 0x10)}

    def test_access_flag_with_vtcr_ha(self):
        # VTCR_EL2.HA = 1 (max has FEAT_HAFDBS): no fault; the AT may or may
        # not set the stage-2 AF of that page (reference.walk's AT rule).
        desc = s2_page(S1_L2_PA, S2_ATTRS & ~AF)
        res = outcomes(words(base_tables() | {S2_L3 + 8: desc}), s2=s2cfg(ha=1))
        pa = {r.output for r, _ in res}
        assert pa == {OUT_PA | 0x123}
        assert {w for _, w in res} == {(), (DescriptorWrite(S2_L3 + 8, desc, desc | AF),)}

    def test_address_size(self):
        # The S2 page for the S1 L1 table outputs PA 2^40 | ...: beyond PS 40.
        mem = words(base_tables() | {S2_L3: s2_page(1 << 40 | S1_L1_PA)})
        assert results(mem) == {ptw(FaultKind.ADDRESS_SIZE, 3, S1_L1)}

    def test_hcr_ptw_device(self):
        # The S1 L3 table's page is Device-nGnRnE at stage 2 (MemAttr 0b0000).
        # HCR_EL2.PTW = 1: a Permission fault on the walk; PTW = 0: the walk
        # reads it (as Normal Non-cacheable) and the translation succeeds.
        mem = words(base_tables() | {S2_L3 + 16: s2_page(S1_L3_PA, S2_ATTRS & ~(0b1111 << 2))})
        assert results(mem, hcr=Hcr(ptw=1)) == {ptw(FaultKind.PERMISSION, 3, S1_L3 + 0x10)}
        assert only(results(mem, hcr=Hcr(ptw=0))).output == OUT_PA | 0x123

    def test_hcr_ptw_device_with_fwb(self):
        # With HCR_EL2.FWB = 1 Device is MemAttr[2] = 0 (AArch64.S2ApplyFWBMemAttrs):
        # MemAttr 0b1011 is Device-GRE there, Normal WT/WB without FWB.
        mem = words(base_tables() | {S2_L3 + 16: s2_page(S1_L3_PA, S2_ATTRS & ~(0b1111 << 2) | 0b1011 << 2)})
        assert results(mem, hcr=Hcr(ptw=1, fwb=1)) == {ptw(FaultKind.PERMISSION, 3, S1_L3 + 0x10)}
        assert only(results(mem, hcr=Hcr(ptw=1))).output == OUT_PA | 0x123

    def test_stage2_table_without_memory(self):
        # The S2 L1 entry points the L2 table at a PA with no memory: the
        # fetch of the S2 L2 descriptor is an External abort on the stage-2
        # walk at level 2, PTW (a stage-2 fault).
        mem = words(base_tables() | {S2_L1 + 16: table(NO_RAM)})
        assert results(mem) == {ptw(FaultKind.SEA_ON_WALK, 2, S1_L1)}


class TestStage1Faults:
    def test_l1_invalid(self):
        assert results(words(base_tables() | {S1_L1_PA: 0})) == {s1f(FaultKind.TRANSLATION, 1)}

    def test_l2_invalid(self):
        assert results(words(base_tables() | {S1_L2_PA + 16: 0b10})) == {s1f(FaultKind.TRANSLATION, 2)}

    def test_l3_invalid_and_reserved(self):
        assert results(words(base_tables() | {S1_L3_PA + 16: 0})) == {s1f(FaultKind.TRANSLATION, 3)}
        # 0b01 at level 3 is reserved: AArch64.DecodeDescriptorType -> invalid.
        assert results(words(base_tables() | {S1_L3_PA + 16: s1_page(OUT_IPA) & ~0b10})) == \
            {s1f(FaultKind.TRANSLATION, 3)}

    def test_l0_with_48bit_va(self):
        # T0SZ 16: 48-bit VA, start level 0 (VA[47:39]); the L0 descriptor at
        # IPA 0x8000_0000 is the same word, now read at level 0: invalid.
        s1 = aarch64_s1_config(Granule.G4K, 48, ips_bits=40, ttbr0=S1_L1, mair=0xFF)
        assert results(words(base_tables() | {S1_L1_PA: 0}), s1=s1) == {s1f(FaultKind.TRANSLATION, 0)}

    def test_access_flag(self):
        mem = words(base_tables() | {S1_L3_PA + 16: s1_page(OUT_IPA, S1_ATTRS & ~AF)})
        assert results(mem) == {s1f(FaultKind.ACCESS_FLAG, 3)}

    def test_access_flag_with_tcr_ha(self):
        # TCR_EL1.HA = 1: AT may set the stage-1 AF or not; the update is a
        # write of the S1 L3 descriptor (PA 0x4200_2010) through stage 2.
        desc = s1_page(OUT_IPA, S1_ATTRS & ~AF)
        res = outcomes(words(base_tables() | {S1_L3_PA + 16: desc}), s1=s1cfg(ha=1))
        assert {w for _, w in res} == {(), (DescriptorWrite(S1_L3_PA + 16, desc, desc | AF),)}
        assert {r.output for r, _ in res} == {OUT_PA | 0x123}

    def test_access_flag_update_on_a_read_only_stage2_page(self):
        # Same, but stage 2 maps the S1 L3 table read-only (S2AP 01): not
        # updating is permitted; updating is a TTW write that stage 2
        # denies: a stage-2 Permission fault on the walk, level 3.
        desc = s1_page(OUT_IPA, S1_ATTRS & ~AF)
        mem = words(base_tables() | {S1_L3_PA + 16: desc,
                                     S2_L3 + 16: s2_page(S1_L3_PA, S2_ATTRS & ~(0b10 << 6))})
        res = results(mem, s1=s1cfg(ha=1))
        assert ptw(FaultKind.PERMISSION, 3, S1_L3 + 0x10) in res
        assert {r.output for r in res if isinstance(r, NestedTranslation)} == {OUT_PA | 0x123}
        assert len(res) == 2

    def test_permission(self):
        # AP = 10: EL1 read-only, no EL0 access.
        mem = words(base_tables() | {S1_L3_PA + 16: s1_page(OUT_IPA, S1_ATTRS & ~(0b11 << 6) | 0b10 << 6)})
        assert only(results(mem, AtOp.S12E1R)).output == OUT_PA | 0x123
        for op in (AtOp.S12E1W, AtOp.S12E0R, AtOp.S12E0W, AtOp.S1E1W, AtOp.S1E0R):
            assert results(mem, op) == {s1f(FaultKind.PERMISSION, 3)}

    def test_aptable(self):
        # APTable = 01 on the L1 table descriptor: no EL0 access below it;
        # EL1 keeps read/write (AArch64.S1DirectBasePermissions).
        mem = words(base_tables() | {S1_L1_PA: table(S1_L2) | 0b01 << 61})
        assert only(results(mem, AtOp.S12E1W)).output == OUT_PA | 0x123
        assert results(mem, AtOp.S12E0R) == {s1f(FaultKind.PERMISSION, 3)}
        # With TCR_EL1.HPD0 = 1 (max has FEAT_HPDS) APTable is ignored.
        assert only(results(mem, AtOp.S12E0R, s1=s1cfg(hpd0=1))).output == OUT_PA | 0x123

    def test_block_at_level2(self):
        # S1 L2 entry a 2 MiB block to IPA 0x9000_0000: VA[20:0] carried.
        mem = words(base_tables() | {S1_L2_PA + 16: OUT_IPA | S1_ATTRS | 0b01})
        r = only(results(mem))
        assert (r.ipa, r.s1.level, r.s1.block_bits) == (OUT_IPA | 0x2123, 2, 21)

    def test_start_table_beyond_ips(self):
        # IPS 32 bits, TTBR0 at IPA 2^32: AArch64.S1Walk checks the start-level
        # descriptor address first: Address size fault at level 0, stage 1.
        assert results(words(base_tables()), s1=s1cfg(ips_bits=32, ttbr0=1 << 32)) == \
            {s1f(FaultKind.ADDRESS_SIZE, 0)}

    def test_next_table_beyond_ips(self):
        mem = words(base_tables() | {S1_L1_PA: table(1 << 32)})
        assert results(mem, s1=s1cfg(ips_bits=32)) == {s1f(FaultKind.ADDRESS_SIZE, 1)}

    def test_output_beyond_ips(self):
        mem = words(base_tables() | {S1_L3_PA + 16: s1_page(1 << 32)})
        assert results(mem, s1=s1cfg(ips_bits=32)) == {s1f(FaultKind.ADDRESS_SIZE, 3)}

    def test_va_out_of_range_and_epd(self):
        # 39-bit VA: VA bit 39 set is out of the lower range -> TF level 0.
        assert results(words(base_tables()), va=1 << 39 | VA) == {s1f(FaultKind.TRANSLATION, 0)}
        # An upper-range VA with TCR_EL1.EPD1 = 1 (the default here): TF level 0.
        assert results(words(base_tables()), va=0xFFFF_FFC0_0000_0000) == {s1f(FaultKind.TRANSLATION, 0)}
        assert results(words(base_tables()), s1=s1cfg(epd0=1)) == {s1f(FaultKind.TRANSLATION, 0)}

    def test_stage1_table_without_memory(self):
        # Stage 2 maps the S1 L2 table's page to a PA with no memory: the
        # stage-1 descriptor fetch takes an External abort on the stage-1
        # walk at level 2 (FetchDescriptor; not a stage-2 fault).
        mem = words(base_tables() | {S2_L3 + 8: s2_page(NO_RAM)})
        assert results(mem) == {s1f(FaultKind.SEA_ON_WALK, 2)}

    def test_final_stage2_fault_is_not_ptw(self):
        # The output IPA 0x9000_0000 unmapped at S2 L2: a stage-2 Translation
        # fault on the access itself (PTW = 0) at level 2, IPA reported.
        mem = words(base_tables() | {S2_L2 + 0x400: 0})
        assert results(mem) == {Fault(FaultKind.TRANSLATION, 2, ipa=OUT_IPA | 0x123)}
        # AT S1E1R does not translate the IPA: no fault.
        assert only(results(mem, AtOp.S1E1R)).output == OUT_IPA | 0x123


class TestStage1Off:
    def test_dc_makes_stage1_disabled(self):
        # HCR_EL2.DC = 1: AArch64.S1Enabled is false, the VA is the IPA.
        mem = words(base_tables() | {S2_L2: s2_block(0x4000_0000)})   # IPA 0x8000_0000 -> 0x4000_0000
        r = only(results(mem, hcr=Hcr(dc=1), va=0x8000_0123))
        assert (r.s1, r.ipa, r.output) == (None, 0x8000_0123, 0x4000_0123)
        # Attributes: Normal WB RWA NSH (S1DisabledOutput) combined with
        # stage-2 WB ISH: WB, Inner Shareable.
        assert r.attrs.memtype is MemType.NORMAL and r.attrs.inner.attrs is Cacheability.WB
        assert r.attrs.shareability is Shareability.ISH

    def test_sctlr_m_off_beyond_pamax(self):
        # SCTLR_EL1.M = 0, VA 2^40 on a 40-bit-PA cortex-a53: stage-1 Address
        # size fault at level 0 (AArch64.S1DisabledOutput).
        assert results(words(base_tables()), cpu=A53, s1=s1cfg(m=0), va=1 << 40) == \
            {s1f(FaultKind.ADDRESS_SIZE, 0)}


class TestPar:
    """PAR_EL1 for faults (AArch64.EncodePAR): F bit 0, FST [6:1] =
    EncodeLDFSC(type, level), PTW bit 8, S bit 9, bit 11 RES1."""

    @pytest.mark.parametrize("fault, par", [
        # TF L3 on the walk: FST 0b000111 -> 0x0F | PTW | S | bit 11.
        (ptw(FaultKind.TRANSLATION, 3, S1_L3 + 0x10), 0xB0F),
        # Permission L3 on the walk: FST 0b001111 -> 0x1F.
        (ptw(FaultKind.PERMISSION, 3, S1_L2 + 0x10), 0xB1F),
        # Address size L3 on the walk: FST 0b000011 -> 0x07.
        (ptw(FaultKind.ADDRESS_SIZE, 3, S1_L1), 0xB07),
        # Translation L0 on the walk: FST 0b000100 -> 0x09.
        (ptw(FaultKind.TRANSLATION, 0, 1 << 40), 0xB09),
        # Access flag L3 on the walk: FST 0b001011 -> 0x17.
        (ptw(FaultKind.ACCESS_FLAG, 3, S1_L2 + 0x10), 0xB17),
        # Stage-1 TF L2: S = 0, PTW = 0: 0x80D.
        (s1f(FaultKind.TRANSLATION, 2), 0x80D),
        # Final stage-2 TF L2: S = 1, PTW = 0: 0xA0D.
        (Fault(FaultKind.TRANSLATION, 2, ipa=OUT_IPA), 0xA0D),
    ])
    def test_fault_par(self, fault, par):
        from reference.outcome import Outcome
        (rep,) = predict(MAX, Outcome(fault, ()), VA)
        assert rep.prediction.report is Report.PAR
        assert rep.prediction.pattern.value == par
        assert rep.prediction.pattern.matches(par | 0xABCD << 48)  # bits [63:48] IMPLEMENTATION DEFINED


class TestAbortSyndrome:
    """ESR_EL2 / HPFAR_EL2 for the same faults taken as a Data Abort
    (AArch64.AbortSyndrome, AArch64.FaultSyndrome, IPAValid)."""

    def test_external_abort_on_the_stage1_walk_from_at(self):
        # AT at EL2 meets an External abort on the stage-1 walk at level 2:
        # EC 0x25 (0x9400_0000) | IL (0x0200_0000) | CM (0x100) | WnR (0x40)
        # | DFSC 0b010110 (0x16); S1PTW 0.
        from reference.outcome import Outcome
        (rep,) = predict(MAX, Outcome(s1f(FaultKind.SEA_ON_WALK, 2), ()), VA)
        assert rep.prediction.report is Report.EXCEPTION
        assert rep.prediction.pattern.value == 0x9600_0156 and rep.prediction.far == VA

    def test_external_abort_on_the_stage2_walk_is_s1ptw(self):
        from reference.outcome import Outcome
        (rep,) = predict(MAX, Outcome(ptw(FaultKind.SEA_ON_WALK, 2, S1_L1), ()), VA)
        assert rep.prediction.pattern.value == 0x9600_01D6   # + S1PTW (0x80)

    def test_guest_load_meets_s1ptw_translation_fault(self):
        # A load from EL1: EC 0x24 (0x9000_0000) | IL | S1PTW (0x80) | DFSC
        # TF L3 (0x07); ISV and ISS[23:14] are 0 for a fault on the walk.
        # HPFAR_EL2.FIPA = IPA[51:12] = 0x80002 in bits [47:4] -> 0x80_0020.
        esr, hpfar = abort_syndrome(ptw(FaultKind.TRANSLATION, 3, S1_L3 + 0x10),
                                    by_at=False, write=False, from_lower=True)
        assert esr.value == 0x9200_0087
        assert esr.care & (1 << 24)                 # ISV compared (must be 0)
        assert hpfar is not None and hpfar.value == 0x80_0020

    def test_hpfar_validity(self):
        # IPAValid: on the walk a Permission fault has a valid IPA; on the
        # access itself it does not; stage-1 faults never.
        perm = Fault(FaultKind.PERMISSION, 3, ipa=OUT_IPA)
        assert abort_syndrome(perm, by_at=False, write=True, from_lower=True)[1] is None
        assert abort_syndrome(ptw(FaultKind.PERMISSION, 3, S1_L1), by_at=False, write=True,
                              from_lower=True)[1] is not None
        assert abort_syndrome(s1f(FaultKind.TRANSLATION, 3), by_at=False, write=False,
                              from_lower=True)[1] is None


class TestComparisonCanFail:
    """The PAR patterns are sharp: flipping any compared bit of a permitted
    value takes it outside every permitted pattern."""

    @pytest.mark.parametrize("mem_update, op", [
        ({}, AtOp.S12E1R),                                     # translation
        ({S2_L3 + 16: 0}, AtOp.S12E1R),                        # S1PTW TF L3
        ({S1_L2_PA + 16: 0}, AtOp.S1E1W),                      # stage-1 TF L2
    ])
    def test_single_bit_flips_are_caught(self, mem_update, op):
        mem = words(base_tables() | mem_update)
        (o,) = at(MAX, s2cfg(), s1cfg(), Hcr(), mem, VA, op).outcomes
        pats = [rep.prediction.pattern for rep in predict(MAX, o, VA)]
        good = pats[0].value
        assert any(p.matches(good) for p in pats)
        for b in range(64):
            flipped = good ^ (1 << b)
            if all(not (p.care >> b) & 1 for p in pats):
                continue                               # a bit no pattern compares
            if any(p.matches(flipped) for p in pats):
                # only a bit where another permitted report differs (SH)
                assert b in (7, 8), b
                continue
            assert not any(p.matches(flipped) for p in pats)

    def test_mutated_expectation_fails(self):
        # A wrong expected fault (level 2 instead of 3) is not what the
        # model says: the same assertion style as above would fail.
        mem = words(base_tables() | {S2_L3 + 16: 0})
        assert results(mem) != {ptw(FaultKind.TRANSLATION, 2, S1_L3 + 0x10)}
        assert results(mem) != {Fault(FaultKind.TRANSLATION, 3, ipa=S1_L3 + 0x10)}   # PTW missing


def test_tcr_fields_round_trip():
    # TCR_EL1 encoding (D19.2): T0SZ [5:0], TG0 [15:14], IPS [34:32], HA [39], EPD1 [23].
    s1 = S1Config(tcr=tcr_el1(t0sz=25, tg0=0b10, ips=0b101, ha=1), ttbr0=0, mair=0)
    assert (s1.t0sz, s1.tg0, s1.ips, s1.ha, s1.epd1, s1.tg1) == (25, 0b10, 0b101, 1, 1, 0b10)
    assert s1.tcr == 25 | 0b10 << 14 | 0b101 << 32 | 1 << 39 | 1 << 23 | 25 << 16 | 0b10 << 30 \
        | 0b01 << 8 | 0b01 << 10 | 0b11 << 12 | 0b01 << 24 | 0b01 << 26 | 0b11 << 28
