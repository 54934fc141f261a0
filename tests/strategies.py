"""Hypothesis strategies for the unit tests of ``reference/``.

Everything a strategy needs to know about the architecture is written out
here by hand, from the Arm ARM pseudocode (Sail arm-v9.4-a), and *not* taken
from the reference model: the tables below are what the tests hold the model
against.  Where a strategy draws a CPU model it draws its name and reads the
facts from :data:`CPU_FACTS` (decoded by hand, field by field, in
tests/test_cpus.py); the model object is only passed to the code under test.

How examples shrink (Hypothesis shrinks every draw towards its simplest
value; these strategies are ordered so that the simplest value is also the
most readable configuration):

* CPU names are ``sampled_from`` a list ordered from the plainest core
  (cortex-a53) to QEMU ``max``: failures shrink towards the oldest CPU that
  still shows them.
* Granules shrink towards 4K, start levels towards the deepest (3, then 2,
  ...: the first entry of each allowed list), IPA sizes towards the smallest
  size the start level allows, PS towards 0b000 (32 bits), DS and every
  attribute bit towards 0.
* Mapping lists shrink towards fewer mappings; a mapping's level towards the
  first allowed leaf level (the page level 3), its block index and output
  block number towards 0, its probe offsets towards the first byte.
* Raw register values (VTCR_EL2 / VTCR) shrink towards 0, i.e. towards
  "only RES1 set".
"""
from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from reference.arch import Arch, AtKind, Granule
from reference.config import S2Config
from reference.cpus import CpuModel, get_cpu
from reference.image import LeafAttrs

# ---------------------------------------------------------------------------
# CPU facts, decoded by hand from the ID register values (see test_cpus.py)
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CpuFacts:
    """What a CPU model implements for stage 2, as the tests expect it."""

    name: str
    arch: Arch
    pamax: int
    granules: tuple[Granule, ...]
    lpa: bool          # FEAT_LPA: PARange = 0b0110
    lpa2: bool         # FEAT_LPA2: TGran4 = 0b0001 / TGran16 = 0b0010 (or _2 = 0b0011)
    ttst: bool         # FEAT_TTST: ID_AA64MMFR2_EL1.ST >= 1
    xnx: bool          # FEAT_XNX: ID_AA64MMFR1_EL1.XNX / ID_MMFR4.XNX >= 1
    hafdbs: int        # ID_AA64MMFR1_EL1.HAFDBS: 0 none, 1 AF, 2 AF + dirty
    s2fwb: bool        # FEAT_S2FWB: ID_AA64MMFR2_EL1.FWB >= 1
    bbm: int           # ID_AA64MMFR2_EL1.BBM
    arch_version: int  # 7: ARMv7-A LPAE, 8: ARMv8-A


_ALL = (Granule.G4K, Granule.G16K, Granule.G64K)
_NO16 = (Granule.G4K, Granule.G64K)
A64 = Arch.AARCH64
A32 = Arch.AARCH32

CPU_FACTS: dict[tuple[Arch, str], CpuFacts] = {(f.arch, f.name): f for f in (
    CpuFacts("cortex-a53", A64, 40, _NO16, False, False, False, False, 0, False, 0, 8),
    CpuFacts("cortex-a35", A64, 40, _ALL, False, False, False, False, 0, False, 0, 8),
    CpuFacts("cortex-a57", A64, 44, _NO16, False, False, False, False, 0, False, 0, 8),
    CpuFacts("cortex-a72", A64, 44, _NO16, False, False, False, False, 0, False, 0, 8),
    CpuFacts("cortex-a76", A64, 40, _ALL, False, False, False, True, 2, False, 0, 8),
    CpuFacts("neoverse-n1", A64, 48, _ALL, False, False, False, True, 2, False, 0, 8),
    CpuFacts("max", A64, 52, _ALL, True, True, True, True, 2, True, 2, 8),
    # Cores added from QEMU 8.x (values of target/arm/tcg/cpu64.c, decoded
    # nibble by nibble in tests/test_cpus.py TestNewerCores).
    CpuFacts("cortex-a55", A64, 40, _ALL, False, False, False, True, 2, False, 0, 8),
    CpuFacts("a64fx", A64, 40, _NO16, False, False, False, True, 0, False, 0, 8),
    CpuFacts("neoverse-v1", A64, 48, _ALL, False, False, False, True, 2, True, 2, 8),
    CpuFacts("cortex-a710", A64, 40, _ALL, False, False, True, True, 2, True, 2, 8),
    CpuFacts("neoverse-n2", A64, 48, _ALL, False, False, True, True, 2, True, 2, 8),
    CpuFacts("cortex-a7", A32, 40, (Granule.G4K,), False, False, False, False, 0, False, 0, 7),
    CpuFacts("cortex-a15", A32, 40, (Granule.G4K,), False, False, False, False, 0, False, 0, 7),
    CpuFacts("max", A32, 40, (Granule.G4K,), False, False, False, True, 0, False, 0, 8),
)}


def facts(cpu: CpuModel) -> CpuFacts:
    return CPU_FACTS[(cpu.arch, cpu.name)]


def cpu_names(arch: Arch) -> list[str]:
    return [name for (a, name) in CPU_FACTS if a is arch]


def cpus(arch: Arch) -> st.SearchStrategy[CpuModel]:
    """A CPU model of ``arch``; shrinks towards the plainest core."""
    return st.sampled_from(cpu_names(arch)).map(lambda n: get_cpu(arch, n))


# ---------------------------------------------------------------------------
# Stage-2 geometry rules, by hand
# ---------------------------------------------------------------------------

# AArch64.S2InconsistentSL: the IPA size a start level can resolve is
# [levels*stride + granulebits + 1, that + stride - 1 + 4] with
# levels = 3 - start level; written out per granule.
START_LEVEL_IPA: dict[Granule, dict[int, tuple[int, int]]] = {
    Granule.G4K: {3: (13, 25), 2: (22, 34), 1: (31, 43), 0: (40, 52), -1: (49, 61)},
    Granule.G16K: {3: (15, 29), 2: (26, 40), 1: (37, 51), 0: (48, 62)},
    Granule.G64K: {3: (17, 33), 2: (30, 46), 1: (43, 59)},
}


def level_lsb(granule: Granule, level: int) -> int:
    """Lowest IPA bit resolved at ``level`` = log2 of a leaf's size there:
    granule bits + (3 - level) * (granule bits - 3)."""
    g = granule.value
    return g + (3 - level) * (g - 3)


def start_level_valid(f: CpuFacts, granule: Granule, level: int, ds: int) -> bool:
    """AArch64.S2InvalidSL restated: 4K level -1 needs DS (SL2), level 0
    PAMax >= 44, level 3 FEAT_TTST; 16K level 0 needs DS, level 1 PAMax >= 42;
    64K level 1 needs PAMax >= 44 (level 0 does not exist)."""
    if granule is Granule.G4K:
        return {-1: bool(ds), 0: f.pamax >= 44, 1: True, 2: True, 3: f.ttst}[level]
    if granule is Granule.G16K:
        return {0: bool(ds), 1: f.pamax >= 42, 2: True, 3: True}[level]
    return {1: f.pamax >= 44, 2: True, 3: True}[level]


def ipa_size_limits(f: CpuFacts, granule: Granule, ds: int) -> tuple[int, int]:
    """(smallest, largest) IPA size that is neither below AArch64.MaxTxSZ's
    nor above AArch64.S2MinTxSZ's limit: 25 bits (16 with FEAT_TTST, 17 for
    64K) up to PAMax, capped at 48 bits for 4K/16K unless DS = 1."""
    lo = (17 if granule is Granule.G64K else 16) if f.ttst else 25
    hi = min(f.pamax, 52 if (granule is Granule.G64K or ds) else 48)
    return lo, hi


def block_levels(f: CpuFacts, granule: Granule, ds: int) -> set[int]:
    """AArch64.BlockDescSupported restated: 4K blocks at 1, 2 (0 with DS);
    16K at 2 (1 with DS); 64K at 2 (1 with PAMax 52)."""
    if granule is Granule.G4K:
        return {1, 2} | ({0} if ds else set())
    if granule is Granule.G16K:
        return {2} | ({1} if ds else set())
    return {2} | ({1} if f.pamax >= 52 else set())


def sl_fields(granule: Granule, level: int) -> tuple[int, int]:
    """(SL0, SL2) selecting ``level`` (inverse of AArch64.S2StartLevel):
    4K SL2:SL0 000 -> 2, 001 -> 1, 010 -> 0, 011 -> 3, 100 -> -1;
    16K/64K SL0 = 3 - level."""
    if granule is Granule.G4K:
        return {2: (0, 0), 1: (1, 0), 0: (2, 0), 3: (3, 0), -1: (0, 1)}[level]
    return 3 - level, 0


def output_address_size(f: CpuFacts, granule: Granule, ps: int) -> int:
    """AArch64.PhysicalAddressSize restated: PS decoded, capped at PAMax and
    at 48 bits unless FEAT_LPA and (64K or FEAT_LPA2)."""
    cap = 52 if (f.lpa and (granule is Granule.G64K or f.lpa2)) else 48
    return min(PS_BITS[ps], f.pamax, cap)


TG0 = {Granule.G4K: 0b00, Granule.G64K: 0b01, Granule.G16K: 0b10}
PS_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52, 7: 56}

# The RAM the walker sees (QEMU virt: 1 GiB at 0x40000000) and the window
# the tables are built in.
RAM = ((0x4000_0000, 0x4000_0000),)
TABLE_WINDOW = (0x4100_0000, 0x0100_0000)


@dataclasses.dataclass(frozen=True)
class ValidConfig:
    """A valid stage-2 configuration with what the tests need to know about
    it, worked out by hand: the effective granule, DS and start level,
    ``oa_bits``, the output addresses a descriptor can hold under it, and
    ``oa_size``, the output address size beyond which a leaf's output
    address is an Address size fault."""

    cpu: CpuModel
    config: S2Config
    granule: Granule
    ia_bits: int
    start_level: int
    ds: int
    oa_bits: int
    oa_size: int

    @property
    def facts(self) -> CpuFacts:
        return facts(self.cpu)


@st.composite
def valid_aarch64_configs(draw, cpu: CpuModel | None = None) -> ValidConfig:
    """A VTCR_EL2 that AArch64.S2Translate accepts on ``cpu`` (or a drawn
    CPU): supported granule, valid start level, IPA size inside both the
    start level's range and the T0SZ limits.  VTTBR is left 0 (the test
    builds the image and sets it).  DS is drawn even where it is ignored
    (64K, no FEAT_LPA2): the effective value is recorded."""
    if cpu is None:
        cpu = draw(cpus(Arch.AARCH64))
    f = facts(cpu)
    granule = draw(st.sampled_from(f.granules))
    ds_field = draw(st.integers(0, 1))
    ds = ds_field if (f.lpa2 and granule is not Granule.G64K) else 0
    lo, hi = ipa_size_limits(f, granule, ds)
    choices = []
    for level in sorted(START_LEVEL_IPA[granule], reverse=True):
        a, b = START_LEVEL_IPA[granule][level]
        if start_level_valid(f, granule, level, ds) and max(a, lo) <= min(b, hi):
            choices.append((level, max(a, lo), min(b, hi)))
    level, a, b = draw(st.sampled_from(choices))
    ia_bits = draw(st.integers(a, b))
    sl0, sl2 = sl_fields(granule, level)
    ps = draw(st.integers(0, 7))
    config = S2Config(arch=Arch.AARCH64, t0sz=64 - ia_bits, sl0=sl0, sl2=sl2,
                      tg0=TG0[granule], ps=ps, ds=ds_field,
                      sh0=draw(st.integers(0, 3)), irgn0=draw(st.integers(0, 3)),
                      orgn0=draw(st.integers(0, 3)))
    # Output addresses a leaf can carry: PS capped at PAMax (AArch64.
    # PhysicalAddressSize), and bits above 47 only exist in the descriptor
    # with 64K + FEAT_LPA (bits [15:12]) or DS = 1 (bits [9:8], [49:48]).
    wide = (granule is Granule.G64K and f.lpa) or ds
    oa_bits = min(PS_BITS[ps], f.pamax, 52 if wide else 48)
    return ValidConfig(cpu, config, granule, ia_bits, level, ds, oa_bits,
                       output_address_size(f, granule, ps))


@st.composite
def valid_aarch32_configs(draw, cpu: CpuModel | None = None) -> ValidConfig:
    """A VTCR that AArch32.S2Walk accepts: SL0 = 0 (level 2, 25..34-bit IPA)
    or SL0 = 1 (level 1, 31..40-bit IPA), S = T0SZ[3]; 40-bit output."""
    if cpu is None:
        cpu = draw(cpus(Arch.AARCH32))
    level = draw(st.sampled_from([2, 1]))
    a, b = {2: (25, 34), 1: (31, 40)}[level]
    ia_bits = draw(st.integers(a, b))
    config = S2Config(arch=Arch.AARCH32, t0sz=32 - ia_bits, sl0=2 - level,
                      sh0=draw(st.integers(0, 3)), irgn0=draw(st.integers(0, 3)),
                      orgn0=draw(st.integers(0, 3)))
    return ValidConfig(cpu, config, Granule.G4K, ia_bits, level, 0, 40, 40)


# ---------------------------------------------------------------------------
# Mappings
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mapping:
    """One leaf to build: the IPA block ``ipa`` (aligned to 2^block_bits)
    maps to ``oa`` at ``level`` with ``attrs``; ``offsets`` are the byte
    offsets inside the block the test probes."""

    ipa: int
    oa: int
    level: int
    block_bits: int
    attrs: LeafAttrs
    offsets: tuple[int, ...]

    def contains(self, ipa: int) -> bool:
        return self.ipa <= ipa < self.ipa + (1 << self.block_bits)


def leaf_levels(vc: ValidConfig) -> list[int]:
    """Levels a leaf may sit at, deepest first: pages at 3, blocks where
    BlockDescSupported allows them (AArch32: levels 1 and 2)."""
    if vc.config.arch is Arch.AARCH32:
        blocks = {1, 2}
    else:
        blocks = block_levels(vc.facts, vc.granule, vc.ds)
    return [lvl for lvl in (3, 2, 1, 0) if lvl >= vc.start_level and (lvl == 3 or lvl in blocks)]


@st.composite
def mappings(draw, vc: ValidConfig, max_size: int = 6) -> list[Mapping]:
    """Up to ``max_size`` leaves (possibly overlapping: the test decides
    which ones the builder must refuse) with random attributes and probe
    offsets.  The Access flag is 1 and Contiguous 0 so every probe inside a
    mapping must translate, meet its permission check, or (a block reaching
    beyond the output address size) take an Address size fault."""
    levels = leaf_levels(vc)
    out = []
    for _ in range(draw(st.integers(1, max_size))):
        level = draw(st.sampled_from(levels))
        lsb = level_lsb(vc.granule, level)
        ipa = draw(st.integers(0, (1 << (vc.ia_bits - lsb)) - 1)) << lsb
        oa = draw(st.integers(0, max(0, (1 << max(0, vc.oa_bits - lsb)) - 1))) << lsb
        attrs = LeafAttrs(s2ap=draw(st.integers(0, 3)), af=1, xn=draw(st.integers(0, 3)),
                          memattr=draw(st.integers(0, 15)), sh=draw(st.integers(0, 3)),
                          dbm=draw(st.integers(0, 1)), contiguous=0)
        offsets = tuple(draw(st.lists(st.integers(0, (1 << lsb) - 1), min_size=1, max_size=3)))
        out.append(Mapping(ipa, oa, level, lsb, attrs, offsets))
    return out


def at_kinds() -> st.SearchStrategy[AtKind]:
    """An AT operation; shrinks towards S12E1R."""
    return st.sampled_from(list(AtKind))


# ---------------------------------------------------------------------------
# Raw register values
# ---------------------------------------------------------------------------

# VTCR_EL2 fields the model keeps: T0SZ[5:0] SL0[7:6] IRGN0[9:8] ORGN0[11:10]
# SH0[13:12] TG0[15:14] PS[18:16] VS[19] HA[21] HD[22] DS[32] SL2[33] S2PIE[36].
VTCR_EL2_FIELDS = (0xF_FFFF | 1 << 21 | 1 << 22 | 1 << 32 | 1 << 33 | 1 << 36)
# AArch32 VTCR: T0SZ[3:0] S[4] SL0[7:6] IRGN0[9:8] ORGN0[11:10] SH0[13:12].
VTCR_A32_FIELDS = 0x3FDF
RES1_BIT31 = 1 << 31


def vtcr_el2_values() -> st.SearchStrategy[int]:
    """Any VTCR_EL2 value over the modelled fields, RES1 bit 31 set."""
    return st.integers(0, (1 << 37) - 1).map(lambda v: v & VTCR_EL2_FIELDS | RES1_BIT31)


def vtcr_a32_values() -> st.SearchStrategy[int]:
    """Any AArch32 VTCR value over the modelled fields, RES1 bit 31 set."""
    return st.integers(0, 0x3FFF).map(lambda v: v & VTCR_A32_FIELDS | RES1_BIT31)


@st.composite
def aarch64_field_configs(draw) -> S2Config:
    """An S2Config with every VTCR_EL2 field drawn independently (legal or
    not), a VTTBR_EL2 and an S2PIR_EL2 value."""
    return S2Config(arch=Arch.AARCH64, t0sz=draw(st.integers(0, 63)), sl0=draw(st.integers(0, 3)),
                    tg0=draw(st.integers(0, 3)), ps=draw(st.integers(0, 7)),
                    irgn0=draw(st.integers(0, 3)), orgn0=draw(st.integers(0, 3)),
                    sh0=draw(st.integers(0, 3)), ha=draw(st.integers(0, 1)),
                    hd=draw(st.integers(0, 1)), ds=draw(st.integers(0, 1)),
                    sl2=draw(st.integers(0, 1)), vs=draw(st.integers(0, 1)),
                    vttbr=draw(st.integers(0, (1 << 64) - 1)), s2pie=draw(st.integers(0, 1)),
                    s2pir=draw(st.integers(0, (1 << 64) - 1)))


@st.composite
def aarch32_field_configs(draw) -> S2Config:
    """An AArch32 S2Config with signed T0SZ (-8..7) and an explicit S bit
    (equal to T0SZ[3] or not)."""
    return S2Config(arch=Arch.AARCH32, t0sz=draw(st.integers(-8, 7)), s=draw(st.integers(0, 1)),
                    sl0=draw(st.integers(0, 3)), irgn0=draw(st.integers(0, 3)),
                    orgn0=draw(st.integers(0, 3)), sh0=draw(st.integers(0, 3)),
                    vttbr=draw(st.integers(0, (1 << 64) - 1)))
