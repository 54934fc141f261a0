"""The generator's scenarios added to close rule-coverage gaps
(reference.generate): each aims where the rule is decided, and the
reference's outcomes -- worked out below from the pseudocode -- show it."""
from __future__ import annotations

import dataclasses

from reference.arch import Arch, Granule
from reference.bits import field
from reference.config import aarch32_config, aarch64_config
from reference.cpus import get_cpu
from reference.generate import MemoryMap, OptIn, generate_case
from reference.outcome import Fault, FaultKind, Translation

MMAP = MemoryMap(ram=((0x4000_0000, 0x4000_0000),), empty=(0xC000_0000, 0x0B00_0000))
WINDOW = (0x4800_0000, 1 << 20)
A64 = Arch.AARCH64


def case(cpu_name, config, key="k#0", opt_in=frozenset(), arch=A64):
    return generate_case(get_cpu(arch, cpu_name), config, 1, key, WINDOW, MMAP, opt_in=opt_in)


class TestVttbrBeyondPs:
    def test_ds_baddr_51_48(self):
        """DS = 1, PS = 48 bits: VTTBR_EL2[5:2] are BADDR[51:48]
        (AArch64.S2TTBaseAddress), so any non-zero value puts the start
        table at or above 2^48, beyond PS: every probe below 2^PAMax is an
        Address size fault at level 0 (AArch64.S2Walk, OAOutOfRange)."""
        c = case("max", aarch64_config(Granule.G4K, 48, 0, ps_bits=48, ds=1),
                 opt_in=frozenset({OptIn.VTTBR_BEYOND_PS}))
        assert field(c.config.vttbr, 5, 2) != 0
        results = [r for p, r in zip(c.probes, c.permitted()) if p.ipa < 1 << 48]
        assert results and all(r.outcomes[0].result == Fault(FaultKind.ADDRESS_SIZE, 0)
                               and len(r.outcomes) == 1 for r in results)

    def test_bit_above_ps(self):
        """Without DS, PS = 36 bits: one VTTBR_EL2 bit in [47:36]."""
        c = case("cortex-a57", aarch64_config(Granule.G4K, 36, 1, ps_bits=36),
                 opt_in=frozenset({OptIn.VTTBR_BEYOND_PS}))
        assert field(c.config.vttbr, 47, 36) != 0 and field(c.config.vttbr, 5, 2) == 0
        assert c.permitted()[0].outcomes[0].result == Fault(FaultKind.ADDRESS_SIZE, 0)

    def test_aarch32(self):
        """AArch32: a bit of VTTBR[47:40]; ARMv8 (max) faults (AArch32.S2Walk),
        ARMv7 LPAE may fault or ignore it (UNK/SBZP)."""
        v8 = case("max", aarch32_config(32, 1), opt_in=frozenset({OptIn.VTTBR_BEYOND_PS}),
                  arch=Arch.AARCH32)
        assert field(v8.config.vttbr, 47, 40) != 0
        assert {o.result for o in v8.permitted()[0].outcomes} == {Fault(FaultKind.ADDRESS_SIZE, 0)}
        v7 = case("cortex-a15", aarch32_config(32, 1), opt_in=frozenset({OptIn.VTTBR_BEYOND_PS}),
                  arch=Arch.AARCH32)
        assert Fault(FaultKind.ADDRESS_SIZE, 0) in {o.result for o in v7.permitted()[0].outcomes}
        assert len(v7.permitted()[0].outcomes) == 2

    def test_without_the_opt_in_nothing_changes(self):
        cfg = aarch64_config(Granule.G4K, 48, 0, ps_bits=48, ds=1)
        assert field(case("max", cfg).config.vttbr, 5, 2) == 0


class TestScenarios:
    def test_probes_beyond_the_ipa_size_and_pamax(self):
        """The edge probes at 2^IPA-size and 2^PAMax are made: Translation
        fault level 0 (AArch64.IPAIsOutOfRange) and a stage-1 Address size
        fault (AArch64.S1DisabledOutput, stage 1 off)."""
        c = case("cortex-a57", aarch64_config(Granule.G4K, 40, 1, ps_bits=44))
        by_aim = {p.aim: r for p, r in zip(c.probes, c.permitted())}
        assert by_aim["first IPA beyond the IPA size"].primary.result == \
            Fault(FaultKind.TRANSLATION, 0)
        assert by_aim["IPA at 2^PAMax (stage-1 address size)"].primary.result == \
            Fault(FaultKind.ADDRESS_SIZE, 0, stage2=False)

    def test_nt_blocks_on_bbm_models(self):
        """FEAT_BBM level 2 (neoverse-n2): a block with nT = 1 may fault or
        not (AArch64.BlocknTFaults, IMPLEMENTATION DEFINED): the Translation
        fault at the block's level and the walk going on (a translation, or
        the permission check of its S2AP) are both permitted; a model
        without FEAT_BBM gets no such block."""
        cfg = aarch64_config(Granule.G4K, 40, 1, ps_bits=40)
        c = case("neoverse-n2", cfg)
        nt = [r for p, r in zip(c.probes, c.permitted()) if "nT = 1" in p.aim]
        assert nt
        for r in nt:
            level = r.outcomes[-1].trace[-1].level
            results = [o.result for o in r.outcomes]
            assert Fault(FaultKind.TRANSLATION, level) in results and len(results) == 2
        assert not [p for p in case("cortex-a57", cfg).probes if "nT = 1" in p.aim]

    def test_lone_contiguous_entry(self):
        """A lone contiguous entry whose OA is not its index in the set:
        StageOA (OA bits below the set's span from the IPA) and the entry's
        own OA are both permitted, and they differ."""
        c = case("cortex-a57", aarch64_config(Granule.G4K, 40, 1, ps_bits=44))
        lone = [r for p, r in zip(c.probes, c.permitted()) if "lone contiguous" in p.aim]
        assert lone
        for r in lone:
            pas = {o.result.pa for o in r.outcomes if isinstance(o.result, Translation)}
            assert len(pas) == 2

    def test_contiguous_set_larger_than_the_ipa_space(self):
        """64K, 32-bit IPA from level 2: a 512 MiB block's set of 32 spans
        2^34 bytes, more than the IPA space: a contiguous leaf there may
        fault (AArch64.ContiguousBitFaults) or not."""
        # The start level has 8 entries, shared with its other scenarios
        # (drawn per case): some of the first cases place it.
        cases = [case("cortex-a57", aarch64_config(Granule.G64K, 32, 2, ps_bits=44), f"k#{i}")
                 for i in range(8)]
        big = [r for c in cases for p, r in zip(c.probes, c.permitted())
               if "larger than the IPA space" in p.aim]
        assert big and all(Fault(FaultKind.TRANSLATION, 2) in {o.result for o in r.outcomes}
                           and len(r.outcomes) > 1 for r in big)

    def test_software_bits_are_ignored(self):
        """Bits [58:55] of a leaf (reserved for software use) change nothing:
        the same case with them cleared has the same outcomes."""
        c = case("cortex-a57", aarch64_config(Granule.G4K, 40, 1, ps_bits=44))
        mem = c.memory()
        words = [(r.pa + i, int.from_bytes(r.data[i:i + 8], "little"))
                 for r in c.image.regions for i in range(0, len(r.data), 8)]
        marked = [(pa, w) for pa, w in words if w & 1 and field(w, 58, 55)]
        assert marked
        regions = []
        for r in c.image.regions:
            data = bytearray(r.data)
            for i in range(0, len(data), 8):
                w = int.from_bytes(data[i:i + 8], "little")
                if w & 1:
                    data[i:i + 8] = (w & ~(0xF << 55)).to_bytes(8, "little")
            regions.append(dataclasses.replace(r, data=bytes(data)))
        clean = dataclasses.replace(c, image=dataclasses.replace(c.image, regions=tuple(regions)))
        assert mem.regions != clean.memory().regions
        def results(x):
            return [tuple(o.result for o in r.outcomes) for r in x.permitted()]
        assert results(c) == results(clean)
