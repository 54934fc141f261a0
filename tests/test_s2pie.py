"""FEAT_S2PIE: stage-2 permission indirection (VTCR_EL2.S2PIE, S2PIR_EL2).

Every expectation below is worked out by hand from the pseudocode (Sail
arm-v9.4-a v8_base.sail) and the Arm ARM text (DDI 0487 M.a, D8.4.2.2
"Stage 2 Indirect permissions", Table D8-82; D8.5.2 "The dirty state"):

- AArch64.NSS2TTWParams: s2pie = VTCR_EL2.S2PIE and s2pir = S2PIR_EL2 when
  HaveS2PIExt() (ID_AA64MMFR3_EL1.S2PIE [15:12] >= 1), else 0.
- AArch64.S2ApplyOutputPerms (s2pie = 1): PIIndex = desc[54:53]:desc[51]:
  desc[6]; permissions.s2pi = S2PIR_EL2[4*PIIndex+3 : 4*PIIndex];
  permissions.s2dirty = desc[7].  No S2AP, XN or DBM.
- AArch64.S2IndirectBasePermissions: the 16 encodings (R, W):
  0000 NoAccess, 0001 reserved = NoAccess, 0101 reserved = NoAccess: (0, 0);
  0010 MRO, 0011 MRO-TL1, 0110 MRO-TL0, 0111 MRO-TL01: (1, 0);
  0100 WO: (0, 1); 10xx RO(+X): (1, 0); 11xx RW(+X): (1, 1).
  Execute (pX/uX) is never checked by AT.
- CreateAccDescAT: accdesc.read = NOT write.  In AArch64.S2CheckPermissions
  (final branch, the one AT takes) "accdesc.read && r == 0" faults, then
  "accdesc.write && w == 0", then the dirty check "accdesc.write &&
  !(HA:HD == 11) && s2pie && s2dirty == 0" (Permission fault, dirtybit).
  So AT ...R needs R only, AT ...W needs W only (and Dirty = 1 unless HA
  = HD = 1); the EL of the AT (S12E1* or S12E0*) changes only X.
- AArch64.S2Translate: the dirty-state update (desc[7] := 1 under S2PIE)
  excludes AccessType_AT; the Access flag update follows
  AArch64.SettingAccessFlagPermitted (Permission fault:
  Unpredictable_AFUPDATE, both outcomes).

Layout used throughout: 4K granule, 40-bit IPA, start level 1 (KVM's), a
1 GiB level-1 block for IPA 0x4000_0000 (index 1, descriptor at TT + 8)
mapping PA 0x4000_0000.  Block descriptor bits: [1:0] = 0b01, MemAttr
[5:2] = 0b1111 (0x3C), SH [9:8] = 0b11 (0x300), AF [10] (0x400); PIIndex
and Dirty bits as each test says.
"""
from __future__ import annotations

import dataclasses
import struct

import pytest
import strategies as S

from reference import catalogue as cat
from reference.arch import Arch, AtKind, Granule
from reference.casefmt import CaseFormatError, case_from_data, case_to_data
from reference.config import S2Config, aarch64_config
from reference.cpus import get_cpu
from reference.fast import span_model
from reference.memory import Memory, Region
from reference.outcome import DescriptorWrite, Fault, FaultKind, Translation
from reference.par import predict
from reference.walk import (
    S2_BASE_PERMS,
    aarch64_s2_indirect_base_permissions,
    aarch64_s2_pi_index,
    s2pir_perm,
    walk,
)

A64 = Arch.AARCH64
R, W, R0, W0 = AtKind.S12E1R, AtKind.S12E1W, AtKind.S12E0R, AtKind.S12E0W
RAM = S.RAM
TT = 0x4100_0000
LEAF = TT + 8                 # level-1 index 1: IPA[39:30] = 1
IPA = 0x4000_1234
MAX = get_cpu(A64, "max")     # QEMU 7.2's max: ID_AA64MMFR3_EL1 = 0, no FEAT_S2PIE
# QEMU 10.2's -cpu max sets ID_AA64MMFR3_EL1 TCRX, SCTLRX, S1PIE, S2PIE, AIE,
# MEC and Spec_FPACC to 1 (target/arm/tcg/cpu64.c aarch64_max_tcg_initfn at
# v10.2.0, commit 4983e3ccc9 "Enable FEAT_S1PIE and FEAT_S2PIE on -cpu max").
MMFR3_MAX_10_2 = 0x1000_0000_1100_1111
S2PIE_CPU = dataclasses.replace(MAX, id_regs=MAX.id_regs + (("ID_AA64MMFR3_EL1", MMFR3_MAX_10_2),))

BLOCK = 0x4000_0000 | 0x400 | 0x300 | 0x3C | 0b01      # AF, SH, MemAttr, block: 0x4000_077D
DIRTY = 1 << 7


def pi_bits(index: int) -> int:
    """Descriptor bits holding PIIndex: [54:53] = PIIndex[3:2], [51] =
    PIIndex[1], [6] = PIIndex[0] (AArch64.S2ApplyOutputPerms)."""
    return (index >> 2) << 53 | (index >> 1 & 1) << 51 | (index & 1) << 6


def s2pir_with(index: int, perm: int, others: int = 0b0000) -> int:
    """S2PIR_EL2 with Perm<index> = ``perm`` and every other field ``others``."""
    value = 0
    for m in range(16):
        value |= (perm if m == index else others) << (4 * m)
    return value


def cfg(s2pir: int, *, s2pie: int = 1, ha: int = 0, hd: int = 0) -> S2Config:
    return dataclasses.replace(aarch64_config(Granule.G4K, 40, 1, ps_bits=40, vttbr=TT,
                                              ha=ha, hd=hd), s2pie=s2pie, s2pir=s2pir)


def words(entries: dict[int, int]) -> Memory:
    return Memory(ram=RAM, regions=tuple(Region(pa, struct.pack("<Q", v))
                                         for pa, v in entries.items()))


def outcomes(cpu, config, desc, at) -> set:
    return {(o.result, o.writes) for o in walk(cpu, config, words({LEAF: desc}), IPA, at).outcomes}


def PF(level: int) -> Fault:
    return Fault(FaultKind.PERMISSION, level)


def TI(index: int, perm: int, *, dirty: int = 1, af: int = 1) -> Translation:
    """The level-1 block translation of IPA under S2PIE: no S2AP/XN/DBM."""
    return Translation(pa=IPA, level=1, block_bits=30, s2ap=0, xn=0, memattr=0b1111, sh=0b11,
                       af=af, contiguous=0, dbm=0, pi_index=index, base_perm=perm, dirty=dirty)


# (encoding, read permitted, write permitted), from Table D8-82 and the
# (r, w) columns of AArch64.S2IndirectBasePermissions.
PERMS = [
    (0b0000, False, False),   # NoAccess
    (0b0001, False, False),   # Reserved, treated as NoAccess
    (0b0010, True, False),    # MRO: no data write (RCW/MMU writes only)
    (0b0011, True, False),    # MRO-TL1
    (0b0100, False, True),    # WO: write without read
    (0b0101, False, False),   # Reserved, treated as NoAccess
    (0b0110, True, False),    # MRO-TL0
    (0b0111, True, False),    # MRO-TL01
    (0b1000, True, False),    # RO
    (0b1001, True, False),    # RO+uX: execute does not matter to AT
    (0b1010, True, False),    # RO+pX
    (0b1011, True, False),    # RO+puX
    (0b1100, True, True),     # RW
    (0b1101, True, True),     # RW+uX
    (0b1110, True, True),     # RW+pX
    (0b1111, True, True),     # RW+puX
]


class TestFeature:
    def test_decoded_from_id_aa64mmfr3(self):
        # S2PIE is ID_AA64MMFR3_EL1 [15:12]; 0x...1111 has it = 1.
        assert S2PIE_CPU.feat_s2pie is True
        # QEMU 7.2's max lists no ID_AA64MMFR3_EL1: it reads as 0 (RAZ).
        assert MAX.reg("ID_AA64MMFR3_EL1") == 0 and MAX.feat_s2pie is False
        only_s1pie = dataclasses.replace(MAX, id_regs=MAX.id_regs + (("ID_AA64MMFR3_EL1", 0x100),))
        assert only_s1pie.feat_s2pie is False          # S1PIE [11:8] is another feature
        assert get_cpu(Arch.AARCH32, "max").feat_s2pie is False


class TestBasePermissionTable:
    @pytest.mark.parametrize("enc, r, w", PERMS)
    def test_each_encoding(self, enc, r, w):
        perm = aarch64_s2_indirect_base_permissions(enc)
        assert (perm.encoding, bool(perm.r), bool(perm.w)) == (enc, r, w)

    def test_execute_columns(self):
        # pX/uX: 1001 uX, 1010 pX, 1011 puX and the same for 11xx; none elsewhere.
        x = {p.encoding: (p.px, p.ux) for p in S2_BASE_PERMS}
        assert [e for e, v in x.items() if v != (0, 0)] == [
            0b1001, 0b1010, 0b1011, 0b1101, 0b1110, 0b1111]
        assert x[0b1001] == (0, 1) and x[0b1010] == (1, 0) and x[0b1111] == (1, 1)

    def test_mro_variants(self):
        assert {p.encoding for p in S2_BASE_PERMS if p.mro} == {0b0010, 0b0011, 0b0110, 0b0111}

    @pytest.mark.parametrize("index", range(16))
    def test_pi_index_and_s2pir_field(self, index):
        assert aarch64_s2_pi_index(BLOCK | pi_bits(index)) == index
        # S2PIR_EL2 0xFEDC_BA98_7654_3210: Perm<m> = m.
        assert s2pir_perm(0xFEDC_BA98_7654_3210, index) == index


class TestAtPermissions:
    """One block, PIIndex i, S2PIR_EL2.Perm<i> = each encoding; Dirty = 1
    so the dirty check never fires; HA = HD = 0."""

    @pytest.mark.parametrize("enc, r, w", PERMS)
    @pytest.mark.parametrize("at", list(AtKind), ids=lambda a: a.name)
    def test_encoding(self, enc, r, w, at):
        index = (enc * 7 + 3) % 16         # the index is not the encoding
        # The other 15 fields hold the opposite of what is tested (RW where
        # this one denies, NoAccess where it permits): a walker reading the
        # wrong field gets the other answer.
        allowed = w if at.is_write else r
        others = 0b0000 if allowed else 0b1100
        config = cfg(s2pir_with(index, enc, others))
        desc = BLOCK | pi_bits(index) | DIRTY
        want = TI(index, enc) if allowed else PF(1)
        assert outcomes(S2PIE_CPU, config, desc, at) == {(want, ())}

    def test_direct_permissions_read_the_same_bits_otherwise(self):
        # The descriptor with PIIndex = 1 has bit 6 set: S2AP = 0b01 (RO)
        # under Direct permissions.  With Perm1 = WO the two readings are
        # opposite, so the S2PIE path is what decides.
        config = cfg(s2pir_with(1, 0b0100))
        desc = BLOCK | pi_bits(1) | 0        # bit 7 (S2AP[1] / Dirty) clear
        s2ap_ro = Translation(pa=IPA, level=1, block_bits=30, s2ap=0b01, xn=0, memattr=0b1111,
                              sh=0b11, af=1, contiguous=0, dbm=0)
        # VTCR_EL2.S2PIE = 0: S2AP = 0b01: read ok, write faults.
        direct = dataclasses.replace(config, s2pie=0)
        assert outcomes(S2PIE_CPU, direct, desc, R) == {(s2ap_ro, ())}
        assert outcomes(S2PIE_CPU, direct, desc, W) == {(PF(1), ())}
        # S2PIE = 1: WO, Dirty = 0, HA = HD = 0: read faults (R = 0), write
        # faults on the dirty state (W = 1 but writable-clean).
        assert outcomes(S2PIE_CPU, config, desc, R) == {(PF(1), ())}
        assert outcomes(S2PIE_CPU, config, desc, W) == {(PF(1), ())}
        # ... and with Dirty = 1 the write goes through.
        assert outcomes(S2PIE_CPU, config, desc | DIRTY, W) == {(TI(1, 0b0100), ())}

    def test_cpu_without_s2pie_ignores_vtcr_s2pie(self):
        # AArch64.NSS2TTWParams: s2pie = 0 without HaveS2PIExt(): Direct
        # permissions.  S2AP = 0b11 from bits 6 and 7: RW.
        config = cfg(s2pir_with(1, 0b0000))
        desc = BLOCK | pi_bits(1) | DIRTY
        rw = Translation(pa=IPA, level=1, block_bits=30, s2ap=0b11, xn=0, memattr=0b1111,
                         sh=0b11, af=1, contiguous=0, dbm=0)
        assert outcomes(MAX, config, desc, W) == {(rw, ())}
        # The same on the S2PIE CPU: Perm1 = NoAccess.
        assert outcomes(S2PIE_CPU, config, desc, W) == {(PF(1), ())}

    def test_rule_names_the_s2pir_field(self):
        config = cfg(s2pir_with(5, 0b1000))
        o = walk(S2PIE_CPU, config, words({LEAF: BLOCK | pi_bits(5) | DIRTY}), IPA, W).primary
        assert o.rules[-1] == ("AArch64.S2CheckPermissions: PIIndex=5 -> "
                               "S2PIR_EL2.Perm5=1000 (RO) denies write")


class TestDirtyState:
    """Perm<3> = RW; the descriptor's Dirty bit 7 = 0 (writable-clean)."""

    RW = s2pir_with(3, 0b1100)
    CLEAN = BLOCK | pi_bits(3)                  # 0x0008_0000_4000_077D | bit 6

    @pytest.mark.parametrize("ha, hd", [(0, 0), (1, 0), (0, 1)])
    @pytest.mark.parametrize("at", [W, W0], ids=lambda a: a.name)
    def test_write_faults_unless_ha_and_hd(self, ha, hd, at):
        # !(HA:HD == 11) && s2pie && s2dirty == 0: Permission fault.
        assert outcomes(S2PIE_CPU, cfg(self.RW, ha=ha, hd=hd), self.CLEAN, at) == {(PF(1), ())}

    @pytest.mark.parametrize("at", [R, R0], ids=lambda a: a.name)
    def test_read_is_not_affected(self, at):
        assert outcomes(S2PIE_CPU, cfg(self.RW), self.CLEAN, at) == {(TI(3, 0b1100, dirty=0), ())}

    @pytest.mark.parametrize("at", [W, W0], ids=lambda a: a.name)
    def test_ha_hd_write_succeeds_and_at_leaves_it_clean(self, at):
        # HA = HD = 1: no dirty fault; AArch64.S2Translate never sets
        # desc[7] for AccessType_AT (Arm ARM RRKMHW): no write at all.
        assert outcomes(S2PIE_CPU, cfg(self.RW, ha=1, hd=1), self.CLEAN, at) == {
            (TI(3, 0b1100, dirty=0), ())}

    def test_hd_needs_the_dirty_level_of_hafdbs(self):
        # ID_AA64MMFR1_EL1.HAFDBS = 1 (AF only): HD reads as 0, so the
        # write faults even with VTCR_EL2.HD = 1.
        regs = tuple((n, (v & ~0xF | 1) if n == "ID_AA64MMFR1_EL1" else v)
                     for n, v in S2PIE_CPU.id_regs)
        af_only = dataclasses.replace(S2PIE_CPU, id_regs=regs)
        assert outcomes(af_only, cfg(self.RW, ha=1, hd=1), self.CLEAN, W) == {(PF(1), ())}

    def test_wo_clean_faults_on_write_and_read(self):
        wo = s2pir_with(3, 0b0100)
        assert outcomes(S2PIE_CPU, cfg(wo), self.CLEAN, W) == {(PF(1), ())}   # dirty check
        assert outcomes(S2PIE_CPU, cfg(wo), self.CLEAN, R) == {(PF(1), ())}   # R = 0
        assert outcomes(S2PIE_CPU, cfg(wo, ha=1, hd=1), self.CLEAN, W) == {
            (TI(3, 0b0100, dirty=0), ())}

    def test_dirty_fault_rule(self):
        o = walk(S2PIE_CPU, cfg(self.RW), words({LEAF: self.CLEAN}), IPA, W).primary
        assert "Permission fault due to dirty state" in o.rules[-1]
        # An RO entry denies the write before the dirty check is reached.
        ro = walk(S2PIE_CPU, cfg(s2pir_with(3, 0b1000)), words({LEAF: self.CLEAN}), IPA, W)
        assert ro.primary.rules[-1].endswith("(RO) denies write")

    def test_bit51_is_not_dbm(self):
        # Bit 51 is PIIndex[1] under S2PIE: with bits 51 and 6 the index is
        # 3.  Perm3 = RO, HA = HD = 1: the write faults, whereas Direct
        # permissions (S2AP = 0b01 with DBM) would make it writable.
        ro = cfg(s2pir_with(3, 0b1000), ha=1, hd=1)
        assert outcomes(S2PIE_CPU, ro, self.CLEAN, W) == {(PF(1), ())}
        direct = dataclasses.replace(ro, s2pie=0)
        writable = Translation(pa=IPA, level=1, block_bits=30, s2ap=0b01, xn=0, memattr=0b1111,
                               sh=0b11, af=1, contiguous=0, dbm=1)
        assert outcomes(S2PIE_CPU, direct, self.CLEAN, W) == {(writable, ())}

    def test_af_clear_with_dirty_fault_may_set_af(self):
        # AF = 0, HA = 1, HD = 0: the walk does not fault on AF (HA = 1);
        # the dirty-state Permission fault makes the AF update CONSTRAINED
        # UNPREDICTABLE (AArch64.SettingAccessFlagPermitted): both outcomes.
        desc = self.CLEAN & ~(1 << 10)
        write = DescriptorWrite(LEAF, desc, desc | 1 << 10)
        assert outcomes(S2PIE_CPU, cfg(self.RW, ha=1), desc, W) == {(PF(1), ()), (PF(1), (write,))}

    def test_af_clear_with_ha_hd_sets_only_af(self):
        # HA = HD = 1, AF = 0: success; the AF may be set, bit 7 never (AT).
        desc = self.CLEAN & ~(1 << 10)
        ok = TI(3, 0b1100, dirty=0, af=0)
        write = DescriptorWrite(LEAF, desc, desc | 1 << 10)
        assert outcomes(S2PIE_CPU, cfg(self.RW, ha=1, hd=1), desc, W) == {(ok, ()), (ok, (write,))}


class TestReporting:
    def test_par_of_a_dirty_fault(self):
        # Permission fault, level 1: FST = 0b001101; PAR = F | FST << 1 |
        # S (bit 9) | RES1 (bit 11) = 0xa1b.
        o = walk(S2PIE_CPU, cfg(TestDirtyState.RW), words({LEAF: TestDirtyState.CLEAN}), IPA, W)
        pred = predict(A64, o.primary, IPA)
        assert pred.pattern.value == 0xA1B

    def test_translation_describe(self):
        assert "PIIndex=3 Perm=1100 Dirty=0" in TI(3, 0b1100, dirty=0).describe()

    def test_span_model_agrees_with_the_walker(self):
        # The fast path reuses the walker's answer across the block.
        config = cfg(s2pir_with(9, 0b1100))
        mem = words({LEAF: BLOCK | pi_bits(9) | DIRTY})
        model = span_model(S2PIE_CPU, config, mem, 0x4000_0000, 30, W)
        assert model is not None
        for ipa in (0x4000_0000, 0x5234_5678, 0x7FFF_FFF8):
            assert model.result_for(ipa).outcomes[0].result == walk(
                S2PIE_CPU, config, mem, ipa, W).outcomes[0].result


class TestConfiguration:
    def test_vtcr_bit_36(self):
        c = cfg(0x1234)
        assert c.vtcr() == aarch64_config(Granule.G4K, 40, 1, ps_bits=40).vtcr() | 1 << 36
        assert S2Config.from_vtcr(A64, c.vtcr(), TT, 0x1234) == c
        assert "S2PIE=1 S2PIR_EL2=0x0000000000001234" in c.describe()

    def test_s2pir_is_aarch64_only(self):
        with pytest.raises(ValueError):
            S2Config.from_vtcr(Arch.AARCH32, 0x80003558, 0, s2pir=1)

    def test_decode_vtcr_names_s2pie(self):
        fields = {f.name: f.value for f in cat.decode_vtcr(A64, 0x80023558 | 1 << 36, 1)}
        assert fields["S2PIE"] == 1
        assert cat.uninterpreted_bits(A64, 0x80023558 | 1 << 36) == 0

    def test_judge_notes_s2pie_ignored_without_the_feature(self):
        note = ("VTCR_EL2.S2PIE=1 is ignored: no FEAT_S2PIE; S2AP and XN give the permissions "
                "(AArch64.NSS2TTWParams)")
        assert note in cat.judge(MAX, cfg(0)).notes
        assert note not in cat.judge(S2PIE_CPU, cfg(0)).notes


class TestCaseFile:
    def _case(self, config):
        from reference.generate import MemoryMap, generate_case
        return generate_case(S2PIE_CPU, config, 1, "k", (0x4100_0000, 0x40_0000),
                             MemoryMap(ram=RAM, empty=(0x0B00_0000,)))

    def test_s2pir_round_trips(self):
        # S2PIE_CPU is not the named table's "max": the case file carries
        # its ID registers (cpu_model), so reading it back finds S2PIE.
        case = self._case(cfg(0xFEDC_BA98_7654_3210))
        data = case_to_data(case, with_outcomes=False)
        assert data["config"]["s2pir"] == hex(case.config.s2pir)
        assert data["cpu_model"]["id_registers"]["ID_AA64MMFR3_EL1"] == hex(MMFR3_MAX_10_2)
        back = case_from_data(data)
        assert (back.config.s2pie, back.config.s2pir) == (1, case.config.s2pir)
        assert back.cpu.feat_s2pie and back.permitted() == case.permitted()

    def test_no_s2pir_key_without_s2pie(self):
        case = self._case(aarch64_config(Granule.G4K, 40, 1, ps_bits=40))
        assert "s2pir" not in case_to_data(case, with_outcomes=False)["config"]

    def test_s2pir_rejected_for_arm(self):
        from reference.config import aarch32_config
        from reference.generate import MemoryMap, generate_case
        case = generate_case(get_cpu(Arch.AARCH32, "max"), aarch32_config(40, 1), 1, "k",
                             (0x4100_0000, 0x40_0000), MemoryMap(ram=RAM, empty=(0x0B00_0000,)))
        data = case_to_data(case, with_outcomes=False)
        data["config"]["s2pir"] = "0x1"
        with pytest.raises(CaseFormatError, match="config.s2pir"):
            case_from_data(data)


class TestGenerator:
    """Generated S2PIE cases reach every PIIndex and every S2PIR encoding."""

    MMAP_RAM = RAM
    WINDOW = (0x4100_0000, 0x200_0000)

    def _case(self, config, seed=3, cpu=S2PIE_CPU):
        from reference.generate import MemoryMap, generate_case
        return generate_case(cpu, config, seed, "s2pie", self.WINDOW,
                             MemoryMap(ram=RAM, empty=(0x0B00_0000,)))

    @pytest.mark.parametrize("granule, ia, level", [(Granule.G4K, 40, 1), (Granule.G64K, 42, 2),
                                                    (Granule.G16K, 36, 2)])
    def test_every_index_and_encoding_is_reached(self, granule, ia, level):
        config = dataclasses.replace(aarch64_config(granule, ia, level, ps_bits=40), s2pie=1)
        case = self._case(config)
        # S2PIR_EL2 holds each encoding once.
        fields = sorted(s2pir_perm(case.config.s2pir, m) for m in range(16))
        assert fields == list(range(16))
        # Walk every probe: at the final level, the leaves reached carry
        # all 16 PIIndex values, each probed with a read and a write AT.
        seen: dict[int, set[bool]] = {}
        for probe, result in zip(case.probes, case.permitted()):
            o = result.primary
            if isinstance(o.result, Translation) and o.result.level == 3:
                seen.setdefault(o.result.pi_index, set()).add(probe.at.is_write)
            elif o.result == PF(3) and "PIIndex=" in probe.aim:
                seen.setdefault(aarch64_s2_pi_index(o.trace[-1].value), set()).add(
                    probe.at.is_write)
        assert set(seen) == set(range(16))
        assert all(v == {False, True} for v in seen.values())

    def test_same_seed_same_s2pir(self):
        config = dataclasses.replace(aarch64_config(Granule.G4K, 40, 1, ps_bits=40), s2pie=1)
        assert self._case(config).config.s2pir == self._case(config).config.s2pir
        assert self._case(config, seed=4).config.s2pir != self._case(config).config.s2pir

    def test_off_without_s2pie(self):
        case = self._case(aarch64_config(Granule.G4K, 40, 1, ps_bits=40), cpu=S2PIE_CPU)
        assert case.config.s2pir == 0 and case.config.s2pie == 0
        assert not any("PIIndex" in p.aim for p in case.probes)
        assert any("S2AP=" in p.aim for p in case.probes)

    def test_leaf_attrs_indirect_encoding(self):
        from reference.image import Layout, LeafAttrs, encode_leaf
        layout = Layout(Granule.G4K, 40, 1)
        for index in range(16):
            for dirty in (0, 1):
                desc = encode_leaf(layout, 3, 0x4000_0000, LeafAttrs.indirect(index, dirty))
                assert aarch64_s2_pi_index(desc) == index and desc >> 7 & 1 == dirty
        with pytest.raises(ValueError):
            LeafAttrs.indirect(16, 0)

    @pytest.mark.parametrize("ha, hd", [(0, 0), (1, 1), (1, 0)])
    def test_span_model_equals_the_walker_on_generated_cases(self, ha, hd):
        # The bulk path's claim (reference.fast) checked probe by probe on
        # a generated S2PIE case with fan-out.
        from reference.generate import MemoryMap, generate_case
        config = dataclasses.replace(aarch64_config(Granule.G4K, 40, 1, ps_bits=40, ha=ha, hd=hd),
                                     s2pie=1)
        case = generate_case(S2PIE_CPU, config, 5, "fan", self.WINDOW,
                             MemoryMap(ram=RAM, empty=(0x0B00_0000,)), fanout=6)
        memory, fan, modelled = case.memory(), case.fanout, 0
        for i in range(len(fan)):
            at, ipa = AtKind(int(fan.at[i])), int(fan.ipa[i])
            base, bits = fan.spans[int(fan.span[i])]
            model = span_model(S2PIE_CPU, case.config, memory, base, bits, at)
            if model is None:
                continue
            modelled += 1
            readable = walk(S2PIE_CPU, case.config, memory, ipa, at)
            assert {(o.result, o.writes) for o in model.result_for(ipa).outcomes} == \
                {(o.result, o.writes) for o in readable.outcomes}
        assert modelled >= len(fan) // 2
