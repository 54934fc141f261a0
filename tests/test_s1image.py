"""Two-stage images (reference.s1image) walk back to the mapping they were
built from, through both stages (reference.at).

The strategies know the architecture by hand (Arm ARM, AArch64.S1StartLevel
and AArch32.S1WalkLD's start level: 3 - floor((VA bits - 1 - granule bits)
/ stride), stride = granule bits - 3; which levels hold blocks,
AArch64.BlockDescSupported; the AP[2:1] table of
AArch64.S1DirectBasePermissions): the expected IPA/PA of each probe is
the mapping itself, not the model's arithmetic.

How examples shrink: CPU names towards the first listed (the plainest
core), granules towards 4K, VA sizes towards the smallest, mapping lists
towards one mapping, levels towards the last level (a page), block numbers
and offsets towards 0, AP towards 0b00.
"""
from __future__ import annotations

import dataclasses

from hypothesis import assume, given, note
from hypothesis import strategies as st

from reference.arch import Arch, Granule
from reference.at import at
from reference.config import aarch32_config, aarch64_config
from reference.cpus import get_cpu
from reference.image import Conflict, Layout, LeafAttrs
from reference.memory import Memory
from reference.outcome import Fault, FaultKind, NestedTranslation
from reference.s1config import Hcr, S1ConfigA32, aarch64_s1_config, ttbcr
from reference.s1image import (
    S1LeafAttrs,
    TablePlacement,
    TwoStageImageBuilder,
    aarch32_s1_layout,
    aarch64_s1_layout,
    encode_s1_leaf,
)
from reference.stage1 import AtOp

RAM = ((0x4000_0000, 0x4000_0000),)
S2_WINDOW = (0x4800_0000, 0x80_0000)
S1_PA = 0x4900_0000
S1_IPA = 0x8000_0000           # AArch64: stage-1 tables at IPA 2 GiB
S1_IPA_A32 = 0x1_0000_0000     # AArch32: above 4 GiB
OUT_LO = 1 << 36                # output IPAs from 64 GiB up (away from the tables)

# Stage-1 granules by hand from ID_AA64MMFR0_EL1 (TGran4/16/64): cortex-a53
# and cortex-a57 have no 16K granule.
A64_GRANULES = {"cortex-a53": (Granule.G4K, Granule.G64K), "cortex-a57": (Granule.G4K, Granule.G64K),
                "neoverse-n1": (Granule.G4K, Granule.G16K, Granule.G64K),
                "max": (Granule.G4K, Granule.G16K, Granule.G64K)}


def start_level(granule_bits: int, va_bits: int) -> int:
    return 3 - (va_bits - 1 - granule_bits) // (granule_bits - 3)


def level_bits(granule_bits: int, level: int) -> int:
    """log2 of what one entry at ``level`` maps: granule + (3 - level) * stride."""
    return granule_bits + (3 - level) * (granule_bits - 3)


def leaf_levels(granule_bits: int, start: int, arch: Arch) -> list[int]:
    """Levels a leaf may be at, the page level first (BlockDescSupported
    without DS: 4K blocks at 1 and 2, 16K and 64K at 2; AArch32: 1 and 2)."""
    blocks = {12: (1, 2), 14: (2,), 16: (2,)}[granule_bits] if arch is Arch.AARCH64 else (1, 2)
    return [3] + [lvl for lvl in blocks if lvl >= start]


@dataclasses.dataclass(frozen=True)
class Mapping:
    level: int
    va_block: int      # index of the VA block (of the level's size) in the VA space
    ipa_block: int     # index of the output IPA block above OUT_LO
    ap: int
    offset: int        # byte offset of the probe inside the block
    pa_page: int       # the stage-2 page number the probed IPA page maps to


@st.composite
def two_stage(draw, arch: Arch):
    if arch is Arch.AARCH64:
        name = draw(st.sampled_from(list(A64_GRANULES)))
        granule = draw(st.sampled_from(A64_GRANULES[name]))
        va_bits = draw(st.sampled_from((39, 48)))
    else:
        name = draw(st.sampled_from(("cortex-a15", "max")))
        granule, va_bits = Granule.G4K, draw(st.sampled_from((32, 31, 30)))
    gbits = granule.bits
    start = start_level(gbits, va_bits)
    maps = []
    for _ in range(draw(st.integers(1, 4))):
        level = draw(st.sampled_from(leaf_levels(gbits, start, arch)))
        size_bits = level_bits(gbits, level)
        blocks = 1 << (va_bits - size_bits)
        maps.append(Mapping(
            level=level, va_block=draw(st.integers(0, min(blocks, 1 << 20) - 1)),
            ipa_block=draw(st.integers(0, ((1 << 39) >> size_bits) - 1)),
            ap=draw(st.sampled_from((0b00, 0b01))),
            offset=draw(st.integers(0, (1 << size_bits) - 1)) // 8 * 8,
            pa_page=draw(st.integers(0, (1 << 28) - 1))))
    return get_cpu(arch, name), granule, va_bits, maps


def build(cpu, granule, va_bits, maps, *, wrong_leaf: bool = False):
    """(s2 config, s1 config, memory, [(va, ipa, pa, mapping)]) of a
    two-stage image for ``maps``; ``wrong_leaf`` encodes every stage-1
    leaf one block too far (a builder bug, for the mutation test)."""
    s2_layout = Layout(Granule.G4K, 40, 1)
    if cpu.arch is Arch.AARCH64:
        s1_layout = aarch64_s1_layout(cpu.feat_lpa, granule, va_bits)
        window = S1_IPA
    else:
        s1_layout = aarch32_s1_layout(32 - va_bits)
        window = S1_IPA_A32
    b = TwoStageImageBuilder(s1_layout, (window, 0x100_0000), S1_PA, s2_layout, S2_WINDOW)
    probes = []
    for m in maps:
        size_bits = s1_layout.geo.block_bits(m.level)
        va = m.va_block << size_bits
        ipa = OUT_LO + (m.ipa_block << size_bits)
        try:
            if wrong_leaf:
                b.plant(va, m.level, encode_s1_leaf(s1_layout, m.level, ipa + (1 << size_bits),
                                                    S1LeafAttrs(ap=m.ap)))
            else:
                b.map(va, ipa, m.level, S1LeafAttrs(ap=m.ap))
            probe_ipa = ipa + m.offset
            if not b.s2.free(probe_ipa, 3):
                raise Conflict("stage-2 page taken")
            b.map_ipa(probe_ipa, m.pa_page << 12, 3, LeafAttrs())
        except Conflict:
            assume(False)
        probes.append((va + m.offset, probe_ipa, (m.pa_page << 12) | (m.offset & 0xFFF), m))
    img = b.build()
    assert all(t.placement is TablePlacement.MAPPED for t in img.s1_tables)
    if cpu.arch is Arch.AARCH64:
        s2 = aarch64_config(Granule.G4K, 40, 1, ps_bits=40, vttbr=img.s2.vttbr)
        s1 = aarch64_s1_config(granule, va_bits, ips_bits=40, ttbr0=img.ttbr, mair=0xFF)
    else:
        s2 = aarch32_config(40, 1, vttbr=img.s2.vttbr)
        s1 = S1ConfigA32(ttbcr=ttbcr(t0sz=32 - va_bits), ttbr0=img.ttbr, mair0=0xFF)
    return s2, s1, Memory(ram=RAM, regions=img.regions), probes


def mismatches(cpu, s2, s1, mem, probes) -> list[str]:
    """What differs from the mapping: AT S12E1R gives exactly the PA, AT
    S1E1R the IPA; AT S12E0R is allowed by AP 01 and a stage-1 Permission
    fault at the leaf level with AP 00 (EL1 only)."""
    bad = []
    for va, ipa, pa, m in probes:
        for op, want in ((AtOp.S12E1R, pa), (AtOp.S1E1R, ipa)):
            res = at(cpu, s2, s1, Hcr(), mem, va, op).outcomes
            got = [o.result for o in res]
            if len(got) != 1 or not isinstance(got[0], NestedTranslation) or got[0].output != want:
                bad.append(f"{op.name} VA {va:#x}: want {want:#x}, got {[g.describe() for g in got]}")
        el0 = {o.result for o in at(cpu, s2, s1, Hcr(), mem, va, AtOp.S12E0R).outcomes}
        if m.ap == 0b00 and el0 != {Fault(FaultKind.PERMISSION, m.level, stage2=False)}:
            bad.append(f"S12E0R VA {va:#x} with AP 00: {el0}")
        if m.ap == 0b01 and {getattr(r, "output", None) for r in el0} != {pa}:
            bad.append(f"S12E0R VA {va:#x} with AP 01: {el0}")
    return bad


class TestWalksBack:
    @given(two_stage(Arch.AARCH64))
    def test_aarch64(self, drawn):
        """An AArch64 two-stage image walks back to its mapping."""
        cpu, granule, va_bits, maps = drawn
        note(f"{cpu.name} {granule.label} {va_bits}-bit VA {maps}")
        assert mismatches(cpu, *build(cpu, granule, va_bits, maps)) == []

    @given(two_stage(Arch.AARCH32))
    def test_aarch32(self, drawn):
        """An AArch32 LPAE two-stage image (tables and outputs above 4 GiB)
        walks back to its mapping."""
        cpu, granule, va_bits, maps = drawn
        note(f"{cpu.name} {va_bits}-bit VA {maps}")
        assert mismatches(cpu, *build(cpu, granule, va_bits, maps)) == []


def test_a_wrong_image_is_caught():
    # The same check fails for an image whose stage-1 leaf points one block
    # too far: the property is not vacuous.
    cpu = get_cpu(Arch.AARCH64, "max")
    maps = [Mapping(level=3, va_block=5, ipa_block=7, ap=0b01, offset=0x123 & ~7, pa_page=0x4242)]
    assert mismatches(cpu, *build(cpu, Granule.G4K, 39, maps)) == []
    assert len(mismatches(cpu, *build(cpu, Granule.G4K, 39, maps, wrong_leaf=True))) >= 2
