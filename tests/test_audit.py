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

from test_walk import TF, TT, T, page, results, table, words

from reference.arch import Arch, AtKind
from reference.config import S2Config
from reference.cpus import get_cpu

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


class TestMisalignedVttbr:
    """(b) A VTTBR whose RES0 base bits are set.  Arm ARM D24.2.225
    (VTTBR_EL2.BADDR): "If any VTTBR_EL2[47:0] bit that is defined as RES0
    has the value 1 ... the translation table base address might be
    misaligned, with effects that are CONSTRAINED UNPREDICTABLE, and must
    be one of the following: Bits[x-1:0] of the translation table base
    address are treated as if all the bits are zero ...; The result of the
    calculation of an address for a translation table walk using this
    register can be corrupted in those bits that are nonzero."  G8.2.173
    says the same of the AArch32 VTTBR for bits [x-1:3].  The pseudocode
    (AArch64.S2TTBaseAddress Align(), AArch32.S2Walk VTTBR[39:baselsb]) is
    the first reading; the model permitted only that one before."""

    # 40-bit IPA from level 1: an 8 KiB root (x = 13).  IPA 0x4000_1234
    # -> index 1 -> TT + 8.  With VTTBR bit 3 set, the corrupted address
    # may have bit 3 clear: TT + 0, the entry of index 0.
    ROOT = {TT + 8: 0x4000_0000 | 0x7FC | 0b01, TT: 0x8000_0000 | 0x7FC | 0b01}

    def test_aarch64_corrupted_read_of_another_root_entry(self):
        import dataclasses

        from test_walk import A57, KVM40
        cfg = dataclasses.replace(KVM40, vttbr=TT | 0x8)
        # Treated as zero: TT + 8 -> 0x4000_1234.  Corrupted (bit 3 = 0):
        # TT + 0 -> block at 0x8000_0000 -> 0x8000_1234.
        assert results(A57, cfg, words(self.ROOT), 0x4000_1234) == {
            T(0x4000_1234, 1, 30), T(0x8000_1234, 1, 30)}
        # The aligned VTTBR reads only TT + 8.
        assert results(A57, KVM40, words(self.ROOT), 0x4000_1234) == {T(0x4000_1234, 1, 30)}

    def test_aarch32_v8_corrupted_read(self):
        import dataclasses
        cfg = dataclasses.replace(DESIGN, vttbr=TT | 0x8)
        assert results(MAX32, cfg, words(self.ROOT), 0x4000_1234) == {
            T(0x4000_1234, 1, 30), T(0x8000_1234, 1, 30)}

    def test_access_flag_update_at_the_corrupted_address(self):
        # HA = 1, the corrupted address's block has AF = 0: the AF update
        # (permitted, not required) writes the word at TT + 0.
        import dataclasses

        from test_walk import KVM40, N1

        from reference.outcome import DescriptorWrite
        from reference.walk import walk
        af0 = 0x8000_0000 | 0x3FC | 0b01
        cfg = dataclasses.replace(KVM40, vttbr=TT | 0x8, ha=1)
        mem = words({TT + 8: self.ROOT[TT + 8], TT: af0})
        writes = {w for o in walk(N1, cfg, mem, 0x4000_1234, R).outcomes for w in o.writes}
        assert writes == {DescriptorWrite(TT, af0, af0 | 1 << 10)}

    def test_rules_name_the_choice(self):
        import dataclasses

        from test_walk import A57, KVM40

        from reference.walk import walk
        cfg = dataclasses.replace(KVM40, vttbr=TT | 0x8)
        rules = [r for o in walk(A57, cfg, words(self.ROOT), 0x4000_1234, R).outcomes
                 for r in o.rules if "misaligned" in r]
        assert rules == [
            "CONSTRAINED UNPREDICTABLE (VTTBR_EL2 base misaligned, RES0 bits 0x8 set): the bits "
            "are treated as zero",
            "CONSTRAINED UNPREDICTABLE (VTTBR_EL2 base misaligned, RES0 bits 0x8 set): walk "
            f"address corrupted in those bits, first descriptor read at {TT:#x} (a non-zero word)"]

    def test_reads_cover_zero_and_no_memory(self):
        # A synthetic memory: RAM [0x1000, 0x1020), a non-zero word at
        # 0x1008.  Aligned address 0x1000, corrupted bits 0x28 (bits 3 and
        # 5): the set {0x1000, 0x1008, 0x1020, 0x1028}.  Listed: the aligned
        # 0x1000 (first), 0x1008 (non-zero word), 0x1000 is also the zero
        # word (already listed), 0x1020 has no memory behind it.
        import struct

        from reference.memory import Memory, Region
        from reference.walk import misaligned_base_reads
        mem = Memory(ram=((0x1000, 0x20),), regions=(Region(0x1008, struct.pack("<Q", 5)),))
        reads = [pa for pa, _ in misaligned_base_reads(mem, 0x1000, 0x28, "VTTBR")]
        assert reads == [0x1000, 0x1008, 0x1020]
        assert [pa for pa, _ in misaligned_base_reads(mem, 0x1000, 0, "VTTBR")] == [0x1000]

    def test_subset_search_against_brute_force(self):
        import random

        from reference.walk import _subset_at_or_above
        rng = random.Random(7)
        for _ in range(300):
            free = rng.getrandbits(12) & ~0b111
            base = rng.getrandbits(16) & ~free & ~0b111
            members = sorted(base | s for s in range(1 << 16) if s & ~free == 0)
            for target in (rng.randrange(1 << 17) for _ in range(10)):
                want = next((m for m in members if m >= target), None)
                assert _subset_at_or_above(base, free, target) == want

    def test_generator_opt_in(self):
        # OptIn.MISALIGNED_VTTBR sets 1-3 RES0 base bits of the case's
        # VTTBR; without it the VTTBR is the image's aligned root.
        from reference.arch import Granule
        from reference.config import aarch32_config, aarch64_config
        from reference.generate import MemoryMap, OptIn, generate_case
        mmap = MemoryMap(ram=((0x4000_0000, 0x4000_0000),), empty=(0x0B00_0000,))
        a57 = get_cpu(Arch.AARCH64, "cortex-a57")
        for cpu, config, root_bytes in ((a57, aarch64_config(Granule.G4K, 40, 1, ps_bits=40), 8192),
                                        (MAX32, aarch32_config(40, 1), 8192)):
            plain = generate_case(cpu, config, 1, "k", (0x4100_0000, 0x200_0000), mmap)
            odd = generate_case(cpu, config, 1, "k", (0x4100_0000, 0x200_0000), mmap,
                                opt_in=frozenset({OptIn.MISALIGNED_VTTBR}))
            extra = odd.config.vttbr ^ plain.config.vttbr
            assert plain.config.vttbr == plain.image.vttbr
            assert extra and extra & ~(root_bytes - 1) == 0 and extra & 0b111 == 0
            assert 1 <= bin(extra).count("1") <= 3
            assert odd.probes == plain.probes
            # Some probe now has more than one permitted outcome.
            assert any(len(a.outcomes) > len(b.outcomes)
                       for a, b in zip(odd.permitted(), plain.permitted()))


class TestArmv7Unpredictable:
    """(c) ARMv7 LPAE cores (cortex-a15, cortex-a7: arch_version 7).  The
    ARMv7 manual (DDI 0406C) was not reachable here; DDI 0487 K1.1 is the
    primary source used: "From the introduction of Armv8, the
    architecture defines architecturally required constraints on many
    behaviors that are UNPREDICTABLE in Armv7", listing K1.1.32.1
    (Misprogramming VTCR.S), K1.1.32.2 (Misprogramming VTCR.{SL0, T0SZ}:
    "a stage 2 level 1 Translation Fault is generated") and K1.1.15
    (Translation Table Base Address alignment).  So on ARMv7 those cases
    are UNPREDICTABLE: any observation is permitted, and the outcomes
    listed stay ARMv8's.  Before, ARMv7 cores were held to the ARMv8
    constraint alone (WalkResult had no such statement)."""

    MEM = words({TT + 8: 0x4000_0000 | 0x7FC | 0b01})

    def _walk(self, cpu, vtcr, vttbr=TT, ipa=0x4000_1234):
        from reference.walk import walk
        return walk(cpu, S2Config.from_vtcr(A32, vtcr, vttbr=vttbr), self.MEM, ipa, R)

    def test_reserved_sl0(self):
        # VTCR 0x80003598: T0SZ -8, S 1, SL0 0b10.
        v7, v8 = self._walk(A15, 0x8000_3598), self._walk(MAX32, 0x8000_3598)
        assert {o.result for o in v7.outcomes} == {o.result for o in v8.outcomes} == {TF(1)}
        assert v7.unpredictable == ("UNPREDICTABLE (ARMv7; Arm ARM K1.1.32.2): VTCR.SL0=10 "
                                    "is reserved",)
        assert v7.permits_anything and not v8.permits_anything

    def test_sl0_inconsistent_with_t0sz(self):
        # VTCR 0x80003547: T0SZ 7 (25-bit IPA), S 0, SL0 1: level 1 needs
        # at least 31 bits.
        v7 = self._walk(A15, 0x8000_3547, ipa=0x1234)
        assert v7.permits_anything and "inconsistent" in v7.unpredictable[0]
        assert not self._walk(MAX32, 0x8000_3547, ipa=0x1234).permits_anything

    def test_s_not_t0sz3(self):
        # VTCR 0x80003548: T0SZ -8 with S = 0.
        assert self._walk(A15, 0x8000_3548).unpredictable[0].endswith("VTCR.S != T0SZ[3]")
        assert not self._walk(MAX32, 0x8000_3548).permits_anything

    def test_misaligned_vttbr(self):
        assert self._walk(A15, 0x8000_3558, vttbr=TT | 0x10).unpredictable == (
            "UNPREDICTABLE (ARMv7; Arm ARM K1.1.15): VTTBR base misaligned",)
        assert not self._walk(MAX32, 0x8000_3558, vttbr=TT | 0x10).permits_anything

    def test_valid_configuration_is_constrained(self):
        r = self._walk(A15, 0x8000_3558)
        assert not r.permits_anything and {o.result for o in r.outcomes} == {T(0x4000_1234, 1, 30)}

    def test_judge_notes_it(self):
        from reference import catalogue as cat
        v = cat.judge(A15, S2Config.from_vtcr(A32, 0x8000_3598, vttbr=TT))
        assert any(n.startswith("UNPREDICTABLE (ARMv7; Arm ARM K1.1.32.2)") for n in v.notes)
        assert not any("UNPREDICTABLE (ARMv7" in n
                       for n in cat.judge(MAX32, S2Config.from_vtcr(A32, 0x8000_3598)).notes)

    def test_span_model_keeps_the_statement(self):
        from reference.fast import span_model
        cfg = S2Config.from_vtcr(A32, 0x8000_3598, vttbr=TT)
        model = span_model(A15, cfg, self.MEM, 0x4000_0000, 12, R)
        assert model is not None and model.result_for(0x4000_0234).permits_anything

    def test_case_file_says_so(self):
        from reference.casefmt import case_to_data
        from reference.generate import MemoryMap, generate_case
        mmap = MemoryMap(ram=((0x4000_0000, 0x4000_0000),), empty=(0x0B00_0000,))
        cfg = S2Config.from_vtcr(A32, 0x8000_3598)
        probes = case_to_data(generate_case(A15, cfg, 1, "k", (0x4100_0000, 0x200_0000),
                                            mmap))["probes"]
        assert probes and all(p["unpredictable"] for p in probes)
        probes = case_to_data(generate_case(MAX32, cfg, 1, "k", (0x4100_0000, 0x200_0000),
                                            mmap))["probes"]
        assert not any("unpredictable" in p for p in probes)
