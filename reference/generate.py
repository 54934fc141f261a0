"""Seeded generation of cases: a configuration, one table image and the
probes that exercise it.

A case is built from *scenarios*: each places one descriptor on purpose at
some level (a block, a page, an invalid or reserved entry, AF = 0, a
permission, an out-of-range output or table address, a table pointing where
no memory is) and probes it at its edges.  IPAs are chosen from a small set
of indices per level (first entry, last entry, the boundary between
concatenated start-level tables, and random ones), so scenarios share
tables and the edges of every table are reached.

The generator decides nothing about outcomes: it only aims.  What each
probe must produce comes from the walker (``Case.permitted``).  The same
(seed, key) always yields the same case, byte for byte: all randomness
comes from one ``random.Random`` seeded with a string.
"""
from __future__ import annotations

import dataclasses
import enum
import random
from typing import Callable

import numpy as np

from .arch import Arch, AtKind, Granule
from .bits import mask
from .config import FINAL_LEVEL, S2Config
from .cpus import CpuModel
from .image import (
    Conflict,
    Image,
    ImageBuilder,
    Layout,
    LeafAttrs,
    encode_leaf,
    encode_table,
    layout_for,
)
from .memory import Memory
from .outcome import WalkResult
from .walk import (
    S2Params,
    aarch64_block_desc_supported,
    aarch64_nss2_ttw_params,
    aarch64_physical_address_size,
    aarch64_s2_invalid_sl,
    aarch64_s2_start_level,
    aarch64_s2_tt_base_address,
    aarch64_s2_txsz_choices,
    aarch64_vttbr_misaligned_bits,
    contiguous_size,
    s2_inconsistent_sl,
    walk,
)


@dataclasses.dataclass(frozen=True)
class MemoryMap:
    """The guest's physical memory as the harness provides it.

    ``ram``: (base, size) ranges of RAM, zero-filled outside loaded images.
    ``empty``: addresses with nothing behind them (a walk reading there takes
    a synchronous External abort), at least one granule each."""

    ram: tuple[tuple[int, int], ...]
    empty: tuple[int, ...]


class OptIn(enum.Enum):
    """Scenarios a run asks for explicitly; without them a configuration
    generates the same cases as before they existed."""

    # VTTBR with RES0 base bits set (a start-level table base that is not
    # aligned to the table's size): CONSTRAINED UNPREDICTABLE, Arm ARM
    # D24.2.225 (VTTBR_EL2.BADDR) and G8.2.173 (VTTBR.BADDR).
    MISALIGNED_VTTBR = "misaligned-vttbr"
    # VTTBR with a base address bit beyond the output size: BADDR[51:48]
    # (VTTBR_EL2[5:2]) with DS = 1 or 64K + FEAT_LPA, else a bit of
    # [47:PS]; AArch32 VTTBR bits [47:40].  Every probe of the case then
    # meets the start-level address check (AArch64.S2Walk: Address size
    # fault, level 0; AArch32.S2Walk likewise on ARMv8).
    VTTBR_BEYOND_PS = "vttbr-beyond-ps"


@dataclasses.dataclass(frozen=True)
class Probe:
    """One AT probe: the IPA, the AT operation, and what it aims at."""

    ipa: int
    at: AtKind
    aim: str


@dataclasses.dataclass(frozen=True, eq=False)
class FanOut:
    """Bulk probes: ``count`` random IPAs in each span of placed entries.

    ``spans`` are (base IPA, bits): the 2^bits IPAs an entry placed by a
    scenario covers (clipped to what a probe can reach); row i probes
    ``ipa[i]`` with AtKind ``at[i]`` inside span ``span[i]``.  Spans are a
    grouping hint for the bulk comparison (reference.fast), which checks
    that a span really is uniform before using it."""

    spans: tuple[tuple[int, int], ...]
    ipa: np.ndarray
    at: np.ndarray
    span: np.ndarray

    def __len__(self) -> int:
        return len(self.ipa)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FanOut) and self.spans == other.spans
                and np.array_equal(self.ipa, other.ipa) and np.array_equal(self.at, other.at)
                and np.array_equal(self.span, other.span))

    @classmethod
    def empty(cls) -> "FanOut":
        return cls((), np.zeros(0, np.uint64), np.zeros(0, np.uint8), np.zeros(0, np.int32))


@dataclasses.dataclass(frozen=True)
class Case:
    """A configuration, its table image and its probes on one CPU model:
    ``probes`` each aimed at something and described, ``fanout`` bulk
    probes spread over the entries the scenarios placed."""

    key: str
    seed: int
    cpu: CpuModel
    config: S2Config
    image: Image
    memory_map: MemoryMap
    probes: tuple[Probe, ...]
    fanout: FanOut = dataclasses.field(default_factory=FanOut.empty)

    def memory(self) -> Memory:
        return Memory(ram=self.memory_map.ram, regions=self.image.regions)

    def permitted(self) -> tuple[WalkResult, ...]:
        """The walker's permitted outcomes for every probe, in probe order."""
        mem = self.memory()
        return tuple(walk(self.cpu, self.config, mem, p.ipa, p.at) for p in self.probes)


def build_layout(cpu: CpuModel, config: S2Config) -> Layout:
    """The geometry to build the image for.

    For a valid configuration: the one the walker will use.  For an invalid
    one, the first interpretation the architecture permits that still walks
    (e.g. the IMPLEMENTATION DEFINED granule for a reserved TG0, or T0SZ
    acting as its limit); failing that, the nearest consistent start level,
    so that the probes still have tables to find under any reading."""
    if config.arch is Arch.AARCH32:
        start = 2 - (config.sl0 & 1)
        ia = max(25, min(40, config.ia_bits))
        if s2_inconsistent_sl(Granule.G4K, ia, start):
            start = 1 if ia > 34 else 2
        return Layout(Granule.G4K, ia, start)
    for p0, _ in aarch64_nss2_ttw_params(cpu, config):
        for p, _ in aarch64_s2_txsz_choices(cpu, p0):
            if p is None:
                continue
            level = aarch64_s2_start_level(p)
            if (level is not None and aarch64_s2_invalid_sl(cpu, p) is None
                    and s2_inconsistent_sl(p.granule, p.ia_bits, level) is None):
                return dataclasses.replace(layout_for(cpu, config, level), granule=p.granule,
                                           ia_bits=p.ia_bits)
    params = aarch64_nss2_ttw_params(cpu, config)[0][0]
    ia = max(25, min(52, 64 - params.txsz))
    granule = params.granule
    for level in range(-1, FINAL_LEVEL + 1):
        if s2_inconsistent_sl(granule, ia, level) is None:
            return Layout(granule, ia, level)
    return Layout(granule, ia, FINAL_LEVEL)


class _Planner:
    """Picks IPAs and output addresses for scenarios, and records probes."""

    def __init__(self, cpu: CpuModel, config: S2Config, layout: Layout, builder: ImageBuilder,
                 mmap: MemoryMap, rng: random.Random) -> None:
        self.cpu, self.config, self.layout, self.b, self.mmap, self.rng = (
            cpu, config, layout, builder, mmap, rng)
        self.geo = layout.geo
        self.probes: list[Probe] = []
        self.spans: list[tuple[int, int]] = []
        self.oa_bits = self._oa_bits()
        # Highest IPA a placed entry can serve: stage 1 is off, so the IPA
        # is the input address: < 2^32 on AArch32, < 2^PAMax on AArch64.
        self.ipa_limit = min(1 << layout.ia_bits,
                             1 << (32 if cpu.arch is Arch.AARCH32 else cpu.pamax))
        # Highest IPA a probe can name: any 64-bit input address on AArch64
        # (beyond 2^PAMax a stage-1 Address size fault, beyond the IPA
        # size a Translation fault), a 32-bit VA on AArch32.
        self.probe_limit = 1 << (32 if cpu.arch is Arch.AARCH32 else 64)
        # A few random indices per level, chosen once, shared by scenarios.
        self.random_idx = {lvl: [rng.randrange(self._entries(lvl)) for _ in range(2)]
                           for lvl in range(layout.start_level, FINAL_LEVEL + 1)}

    def _oa_bits(self) -> int:
        if self.cpu.arch is Arch.AARCH32:
            return 40
        return aarch64_physical_address_size(self.cpu, self.config.ps, self.layout.granule)

    def _entries(self, level: int) -> int:
        """Entries worth indexing at ``level``: at the start level only
        those whose IPAs a probe can reach."""
        if level == self.layout.start_level:
            reachable = -(-self.ipa_limit >> self.geo.level_lsb(level))
            return min(self.geo.root_entries, max(1, reachable))
        return 1 << self.geo.stride

    def start_entries(self) -> int:
        """Start-level entries a probe can reach."""
        return self._entries(self.layout.start_level)

    def _candidates(self, level: int) -> list[int]:
        n = self._entries(level)
        cands = [0, n - 1] + self.random_idx[level]
        if level == self.layout.start_level and self.geo.concat > 1:
            per = 1 << self.geo.stride
            k = self.rng.randrange(1, self.geo.concat)
            cands += [k * per - 1, k * per]
        return cands

    def pick_ipa(self, leaf_level: int) -> int | None:
        """An IPA whose entry at ``leaf_level`` is still free, or None.

        Each level's index is an edge or shared candidate (so tables are
        shared and their first/last entries reached) or, one time in three,
        a fresh random index (so leaves at high levels do not use up the
        few candidates that deeper scenarios need as tables)."""
        for _ in range(32):
            ipa = 0
            for lvl in range(self.layout.start_level, leaf_level + 1):
                if self.rng.random() < 0.34:
                    idx = self.rng.randrange(self._entries(lvl))
                else:
                    idx = self.rng.choice(self._candidates(lvl))
                ipa |= idx << self.geo.level_lsb(lvl)
            if ipa >= self.ipa_limit:
                continue
            if self.b.free(ipa, leaf_level):
                return ipa
        return None

    def pick_oa(self, level: int, *, beyond: bool = False) -> int | None:
        """A block/page-aligned output address below 2^oa_bits (or, with
        ``beyond``, one with a bit at or above oa_bits that the descriptor
        can still encode)."""
        bits = self.geo.block_bits(level)
        limit = 52 if (self.layout.lpa64 or self.layout.ds) else 48
        if beyond:
            if self.oa_bits >= limit:
                return None
            top = self.rng.randrange(self.oa_bits, limit)
            return (1 << top | self.rng.getrandbits(self.oa_bits)) >> bits << bits
        usable = min(self.oa_bits, limit)  # what the descriptors can hold
        if usable <= bits:
            return 0
        choice = self.rng.random()
        if choice < 0.15:
            return ((1 << usable) - 1) >> bits << bits  # top of the output space
        return self.rng.getrandbits(usable) >> bits << bits

    def put(self, level: int, desc: int) -> int | None:
        """Write ``desc`` at ``level`` for a fresh IPA; the IPA, or None when
        no free entry (or no room in the window) was found."""
        ipa = self.pick_ipa(level)
        if ipa is None:
            return None
        try:
            self.b.plant(ipa, level, desc)
        except Conflict:
            return None
        self.add_span(ipa, level)
        return ipa

    def add_span(self, ipa: int, level: int) -> None:
        """Record the IPAs the entry for ``ipa`` at ``level`` covers,
        clipped (still aligned) to the IPAs a probe can reach."""
        bits = self.geo.level_lsb(level)
        base = ipa >> bits << bits
        while base + (1 << bits) > self.ipa_limit and bits > 0:
            bits -= 1
            base = ipa >> bits << bits
        self.spans.append((base, bits))

    def put_leaf(self, level: int, attrs: LeafAttrs, *, beyond: bool = False,
                 extra: int = 0) -> int | None:
        """A leaf with ``attrs`` (its output address beyond the output size
        with ``beyond``; ``extra`` descriptor bits ORed in) at a fresh IPA."""
        oa = self.pick_oa(level, beyond=beyond)
        if oa is None:
            return None
        return self.put(level, self.software_bits(encode_leaf(self.layout, level, oa, attrs))
                        | extra)

    def software_bits(self, desc: int) -> int:
        """``desc`` with, one time in two, random bits in [58:55]: reserved
        for software use in a stage-2 Block or Page descriptor (VMSAv8-64
        and the AArch32 Long-descriptor format), which no walk may read."""
        if self.rng.random() < 0.5:
            desc |= self.rng.getrandbits(4) << 55
        return desc

    def probe(self, ipa: int, at: AtKind, aim: str) -> None:
        if ipa < self.probe_limit:
            self.probes.append(Probe(ipa, at, aim))

    def probe_block(self, ipa: int, level: int, aim: str, at: AtKind | None = None) -> None:
        """Probe the first page, the last page and one page inside."""
        size = 1 << self.geo.block_bits(level)
        page = 1 << self.layout.granule.bits
        offsets = {0, size - page, self.rng.randrange(size // page) * page}
        for off in sorted(offsets):
            self.probe(ipa + off + self.rng.randrange(page) // 8 * 8, at or self.any_at(), aim)

    def any_at(self) -> AtKind:
        return self.rng.choice(list(AtKind))

    def read_at(self) -> AtKind:
        return self.rng.choice((AtKind.S12E1R, AtKind.S12E0R))

    def write_at(self) -> AtKind:
        return self.rng.choice((AtKind.S12E1W, AtKind.S12E0W))


def _layout_params(layout: Layout, config: S2Config) -> S2Params:
    """The AArch64 walk parameters of the layout the image is built for."""
    return S2Params(granule=layout.granule, txsz=64 - layout.ia_bits, sl0=config.sl0,
                    sl2=config.sl2, ds=int(layout.ds), ps=config.ps, ha=config.ha, hd=config.hd)


def _leaf_levels(cpu: CpuModel, layout: Layout, config: S2Config) -> list[tuple[int, bool]]:
    """(level, block allowed) for every level a leaf could sit at."""
    if cpu.arch is Arch.AARCH32:
        return [(lvl, True) for lvl in range(layout.start_level, FINAL_LEVEL + 1)
                if lvl >= 1]
    params = _layout_params(layout, config)
    return [(lvl, lvl == FINAL_LEVEL or aarch64_block_desc_supported(cpu, params, lvl))
            for lvl in range(layout.start_level, FINAL_LEVEL + 1)]


def misaligned_vttbr(cpu: CpuModel, config: S2Config, layout: Layout, vttbr: int,
                     rng: random.Random) -> int:
    """``vttbr`` with one to three of its RES0 base bits set (bit 3 up,
    below the start-level table size; never VTTBR_EL2[5:2] where they hold
    PA[51:48]), drawn from ``rng``; unchanged when the table is too small
    to have any (8 bytes, one descriptor)."""
    if cpu.arch is Arch.AARCH64:
        res0 = aarch64_vttbr_misaligned_bits(cpu, _layout_params(layout, config), mask(47, 3),
                                             layout.start_level)
    else:
        res0 = mask(39, 3) & (layout.geo.root_bytes - 1)
    bits = [b for b in range(64) if res0 >> b & 1]
    if not bits:
        return vttbr
    for b in rng.sample(bits, min(len(bits), rng.randint(1, 3))):
        vttbr |= 1 << b
    return vttbr


def vttbr_beyond_ps(cpu: CpuModel, config: S2Config, layout: Layout, vttbr: int,
                    rng: random.Random) -> int:
    """``vttbr`` with a base address bit at or beyond the output size, drawn
    from ``rng``: BADDR[51:48] (VTTBR_EL2[5:2]) where the register holds
    them (DS = 1, or 64K with FEAT_LPA and PS = 52 bits), else one bit of
    [47:PS]; on AArch32 one bit of VTTBR[47:40].  Unchanged when no bit
    the register holds lies beyond the output size."""
    if cpu.arch is Arch.AARCH32:
        return vttbr | 1 << rng.randrange(40, 48)
    params = _layout_params(layout, config)
    oa_bits = aarch64_physical_address_size(cpu, config.ps, layout.granule)
    if aarch64_s2_tt_base_address(cpu, params, 1 << 2, layout.start_level):
        # VTTBR_EL2[5:2] hold PA[51:48].
        if oa_bits >= 52:
            return vttbr
        return vttbr & ~mask(5, 2) | rng.randrange(1 << max(0, oa_bits - 48), 16) << 2
    if oa_bits >= 48:
        return vttbr
    return vttbr | 1 << rng.randrange(oa_bits, 48)


def _scenarios(pl: _Planner, cpu: CpuModel, config: S2Config, layout: Layout) -> None:
    """Place the scenarios of one case (see the module docstring).

    Deepest level first: with few reachable start-level entries (AArch32
    above 4 GiB) the tables deeper scenarios need are taken before shallow
    leaves use the entries up.  When the start level is that small, every
    other case puts its start-level scenarios first, in a shuffled order, so
    that the faults only a start-level entry can give are reached too."""
    rng = pl.rng
    small_root = pl.start_entries() <= 16
    order = list(reversed(_leaf_levels(cpu, layout, config)))
    if small_root and rng.random() < 0.5:
        order = order[-1:] + order[:-1]
    for level, allowed in order:
        steps = _level_scenarios(pl, cpu, layout, level, allowed)
        if small_root and level == layout.start_level:
            rng.shuffle(steps)
            if order[0][0] == level:
                # Start level first: leave half its entries for the tables
                # of deeper scenarios.
                steps = steps[:max(1, pl.start_entries() // 2)]
        for step in steps:
            step()
    # Edges of the IPA space: the first and last IPA, and just beyond.
    pl.probe(0, pl.any_at(), "IPA 0")
    pl.probe(pl.ipa_limit - (1 << layout.granule.bits), pl.any_at(), "top page of the IPA space")
    pl.probe(1 << layout.ia_bits, pl.any_at(), "first IPA beyond the IPA size")
    if cpu.arch is Arch.AARCH64:
        pl.probe(1 << cpu.pamax, pl.any_at(), "IPA at 2^PAMax (stage-1 address size)")


def _level_scenarios(pl: _Planner, cpu: CpuModel, layout: Layout, level: int,
                     allowed: bool) -> list[Callable[[], None]]:
    """The scenarios of one level, each a step that places its descriptor
    and its probes."""
    rng = pl.rng
    kind = "page" if level == FINAL_LEVEL else "block"
    steps: list[Callable[[], None]] = []

    def leaf(attrs: LeafAttrs, aims: tuple[tuple[str, Callable[[], AtKind]], ...],
             beyond: bool = False, whole_block: bool = False) -> Callable[[], None]:
        def step() -> None:
            ipa = pl.put_leaf(level, attrs, beyond=beyond)
            if ipa is None:
                return
            for i, (aim, at) in enumerate(aims):
                if whole_block and i == 0:
                    pl.probe_block(ipa, level, aim, at())
                else:
                    pl.probe(ipa, at(), aim)
        return step

    def raw(desc: int, aim: str) -> Callable[[], None]:
        def step() -> None:
            ipa = pl.put(level, desc)
            if ipa is not None:
                pl.probe(ipa, pl.any_at(), aim)
        return step

    if allowed and pl.config.s2pie:
        # Permission indirection: a leaf for every PIIndex, so that every
        # S2PIR_EL2 field (and, with the case's S2PIR, every encoding) is
        # reached, Dirty drawn for each, probed with reads and writes.
        for index in range(16):
            dirty = rng.randrange(2)
            attrs = LeafAttrs.indirect(index, dirty, memattr=rng.choice((0b1111, 0b0101)))
            what = f"L{level} {kind} PIIndex={index} Dirty={dirty}"
            steps.append(leaf(attrs, ((f"{what} read", pl.read_at), (f"{what} write", pl.write_at)),
                              whole_block=True))
    elif allowed:
        # Well-formed leaves with each S2AP, probed with reads and writes.
        for s2ap in (0b11, 0b01, 0b10, 0b00):
            attrs = LeafAttrs(s2ap=s2ap, xn=rng.randrange(4),
                              memattr=rng.choice((0b1111, 0b0101, 0b0000, 0b1010)))
            steps.append(leaf(attrs, ((f"L{level} {kind} S2AP={s2ap:02b} read", pl.read_at),
                                      (f"L{level} {kind} S2AP={s2ap:02b} write", pl.write_at)),
                              whole_block=True))
        # AF = 0: Access flag fault, or a hardware update under HA.
        steps.append(leaf(LeafAttrs(af=0, s2ap=rng.choice((0b11, 0b01))),
                          ((f"L{level} {kind} AF=0", pl.any_at),)))
        if cpu.arch is Arch.AARCH64 and not pl.config.s2pie:
            # DBM on a read-only leaf: dirty-state management under HA/HD
            # (under S2PIE bit 51 is PIIndex[1]: the PIIndex leaves cover it).
            steps.append(leaf(LeafAttrs(dbm=1, s2ap=0b01, af=rng.randrange(2)),
                              ((f"L{level} {kind} DBM read-only, write", pl.write_at),
                               (f"L{level} {kind} DBM read-only, read", pl.read_at))))
        # Output address beyond the output size.
        steps.append(leaf(LeafAttrs(), ((f"L{level} {kind} OA beyond {pl.oa_bits} bits",
                                         pl.any_at),), beyond=True))
        steps.append(lambda: _contiguous(pl, cpu, layout, level))
        steps.append(lambda: _contiguous_beyond_ipa(pl, cpu, layout, level))
        steps.append(lambda: _lone_contiguous(pl, cpu, layout, level))
        if level < FINAL_LEVEL and cpu.arch is Arch.AARCH64 and cpu.bbm in (1, 2):
            # FEAT_BBM level 1 or 2: a block with nT (bit 16) set may fault
            # (AArch64.BlocknTFaults, IMPLEMENTATION DEFINED).
            def nt_block() -> None:
                ipa = pl.put_leaf(level, LeafAttrs(s2ap=rng.choice((0b11, 0b01))), extra=1 << 16)
                if ipa is not None:
                    pl.probe_block(ipa, level, f"L{level} block with nT = 1", pl.any_at())
            steps.append(nt_block)
    else:
        steps.append(leaf(LeafAttrs(), ((f"L{level} block where no block is allowed",
                                         pl.any_at),)))
    # Reserved and invalid encodings.
    if level == FINAL_LEVEL:
        oa = pl.pick_oa(level) or 0
        steps.append(raw(encode_leaf(layout, level, oa) & ~0b10, "L3 reserved 0b01"))
        steps.append(raw(pl.software_bits(encode_leaf(layout, level, oa)) & ~0b01,
                         "L3 invalid (bit 0 clear)"))
        return steps
    steps.append(raw(rng.choice((0, 0b10, rng.getrandbits(64) & ~1)),
                     f"L{level} invalid (bit 0 clear)"))
    # A table pointing beyond the output size, and one pointing where there
    # is no memory.
    far = pl.pick_oa(FINAL_LEVEL, beyond=True)
    if far is not None and pl.mmap.empty:
        # Below the output size the address names no memory, so a walker
        # that ignores the high bits (ARMv7 LPAE may) takes a predictable
        # External abort instead of reading RAM.
        low = rng.choice(pl.mmap.empty) >> layout.granule.bits << layout.granule.bits
        far = far >> pl.oa_bits << pl.oa_bits | low
    if far is not None:
        steps.append(raw(encode_table(layout, far),
                         f"L{level} table address beyond {pl.oa_bits} bits"))
    if pl.mmap.empty:
        empty = rng.choice(pl.mmap.empty) >> layout.granule.bits << layout.granule.bits
        steps.append(raw(encode_table(layout, empty), f"L{level} table in no memory"))
    return steps


def _contiguous_ignored(cpu: CpuModel, layout: Layout, level: int) -> bool:
    """AArch64.ContiguousBit ignores bit 52 of 4K level-0 and 16K/64K
    level-1 blocks."""
    return cpu.arch is Arch.AARCH64 and ((level == 0 and layout.granule is Granule.G4K) or
                                         (level == 1 and layout.granule is not Granule.G4K))


def _contiguous_beyond_ipa(pl: _Planner, cpu: CpuModel, layout: Layout, level: int) -> None:
    """Where a contiguous set at ``level`` would span more than the IPA
    space (a start level with few entries): one leaf with the Contiguous
    bit, which may fault (AArch64.ContiguousBitFaults; AArch32, Arm ARM
    G5.5.5.1) or translate by StageOA (the other entries of its set are not
    programmed, so its own output address is permitted too)."""
    if _contiguous_ignored(cpu, layout, level):
        return
    if layout.geo.block_bits(level) + contiguous_size(layout.granule, level) <= layout.ia_bits:
        return
    ipa = pl.put_leaf(level, LeafAttrs(contiguous=1))
    if ipa is not None:
        pl.probe_block(ipa, level, f"L{level} contiguous entry, set larger than the IPA space",
                       pl.read_at())


def _lone_contiguous(pl: _Planner, cpu: CpuModel, layout: Layout, level: int) -> None:
    """A misprogrammed contiguous set: one entry with the Contiguous bit,
    the rest of its set not valid, its output address not the one StageOA
    gives (its index in the set differs from the index of its OA in the
    output span).  A lookup may then give StageOA or the entry's own OA
    (Arm ARM D8.7.1.1, RJQQTC); no other entry can be in a TLB."""
    if _contiguous_ignored(cpu, layout, level):
        return
    tsize, csize = layout.geo.block_bits(level), contiguous_size(layout.granule, level)
    ipa, oa = pl.pick_ipa(level), pl.pick_oa(level)
    if ipa is None or oa is None or pl.oa_bits < tsize + csize:
        return
    n = 1 << csize
    index = (ipa >> tsize) % n
    oa = oa >> (tsize + csize) << (tsize + csize) | ((index + 1) % n) << tsize
    try:
        pl.b.plant(ipa, level, pl.software_bits(encode_leaf(layout, level, oa,
                                                            LeafAttrs(contiguous=1))))
    except Conflict:
        return
    pl.add_span(ipa, level)
    pl.probe_block(ipa, level, f"L{level} lone contiguous entry, OA not its index in the set",
                   pl.read_at())


def _contiguous(pl: _Planner, cpu: CpuModel, layout: Layout, level: int) -> None:
    """A full, aligned, consistent contiguous set at ``level`` (where the
    contiguous bit applies), probed at its first and last entries."""
    if _contiguous_ignored(cpu, layout, level):
        return
    csize = contiguous_size(layout.granule, level)
    n = 1 << csize
    geo = layout.geo
    span_bits = geo.block_bits(level) + csize
    if level != layout.start_level and csize > layout.granule.stride:
        return
    ipa = pl.pick_ipa(level)
    if ipa is None:
        return
    ipa = ipa >> span_bits << span_bits
    if ipa + (1 << span_bits) > pl.ipa_limit:
        return
    if not all(pl.b.free(ipa + (i << geo.block_bits(level)), level) for i in range(n)):
        return
    oa = pl.pick_oa(level)
    if oa is None or pl.oa_bits < span_bits:
        return
    oa = oa >> span_bits << span_bits
    try:
        for i in range(n):
            step = i << geo.block_bits(level)
            pl.b.map(ipa + step, oa + step, level, LeafAttrs(contiguous=1))
            pl.add_span(ipa + step, level)
    except Conflict:
        return
    pl.probe(ipa, pl.read_at(), f"L{level} contiguous set, first entry")
    pl.probe(ipa + ((n - 1) << geo.block_bits(level)), pl.read_at(),
             f"L{level} contiguous set, last entry")


def fan_out(pl: _Planner, count: int) -> FanOut:
    """``count`` probes at random IPAs (any byte offset) in every span, with
    random AT kinds, drawn from a generator seeded by the case's rng."""
    if count <= 0 or not pl.spans:
        return FanOut.empty()
    gen = np.random.default_rng(pl.rng.getrandbits(64))
    spans = tuple(pl.spans)
    bases = np.array([b for b, _ in spans], dtype=np.uint64)
    sizes = np.array([1 << bits for _, bits in spans], dtype=np.uint64)
    span = np.repeat(np.arange(len(spans), dtype=np.int32), count)
    # Offsets uniform in [0, size): 64 random bits reduced modulo the size
    # (a power of two: the low bits, without numpy's slow 64-bit division).
    # A per-span value is repeated ``count`` times, as ``span`` is (a repeat
    # costs a fraction of indexing by ``span``).
    offsets = gen.integers(0, 1 << 63, size=len(span), dtype=np.uint64, endpoint=False)
    ipa = np.repeat(bases, count) + (offsets & np.repeat(sizes - np.uint64(1), count))
    # Each span is probed with one read and one write AT kind, its EL (0 or
    # 1) drawn per span: every kind is covered across spans, and a span
    # needs two models rather than four.
    el0_read = np.repeat(gen.integers(0, 2, size=len(spans), dtype=np.uint8), count)
    el0_write = np.repeat(gen.integers(0, 2, size=len(spans), dtype=np.uint8), count)
    is_write = gen.integers(0, 2, size=len(span), dtype=np.uint8)
    # AtKind codes: S12E1R 0, S12E1W 1, S12E0R 2, S12E0W 3.
    at = (is_write + 2 * np.where(is_write == 1, el0_write, el0_read)).astype(np.uint8)
    return FanOut(spans, ipa, at, span)


def s2pir_permutation(rng: random.Random) -> int:
    """An S2PIR_EL2 value holding each of the 16 Perm encodings exactly
    once (AArch64.S2IndirectBasePermissions), in an order drawn from
    ``rng``: with a leaf for every PIIndex, a case reaches every encoding."""
    value = 0
    for index, perm in enumerate(rng.sample(range(16), 16)):
        value |= perm << (4 * index)
    return value


def generate_case(cpu: CpuModel, config: S2Config, seed: int, key: str,
                  window: tuple[int, int], mmap: MemoryMap, fanout: int = 0,
                  opt_in: frozenset[OptIn] = frozenset()) -> Case:
    """One case for ``config`` on ``cpu``, its image inside ``window`` =
    (base PA, size in bytes).  ``key`` names the case within a run; the
    same (seed, key, window, fanout) gives the same case.  ``fanout``: bulk
    probes per placed entry (see FanOut).

    With VTCR_EL2.S2PIE set the case draws its S2PIR_EL2 (every encoding
    once, ``s2pir_permutation``; the config's own S2PIR is replaced) and
    places a leaf for every PIIndex at each leaf level; the case's config
    carries the S2PIR.  Without it nothing changes.

    ``opt_in``: scenarios asked for explicitly (OptIn); with
    MISALIGNED_VTTBR the case's VTTBR gets RES0 base bits set (the image
    stays where it is: the aligned reading finds it); with VTTBR_BEYOND_PS
    a base address bit beyond the output size (``vttbr_beyond_ps``)."""
    rng = random.Random(f"s2diff:{seed}:{key}")
    if config.s2pie:
        config = dataclasses.replace(config, s2pir=s2pir_permutation(rng))
    layout = build_layout(cpu, config)
    builder = ImageBuilder(layout, window[0], window[1],
                           vmid=1 + rng.randrange(255))
    planner = _Planner(cpu, config, layout, builder, mmap, rng)
    _scenarios(planner, cpu, config, layout)
    image = builder.build()
    fan = fan_out(planner, fanout)
    vttbr = image.vttbr
    if OptIn.MISALIGNED_VTTBR in opt_in:
        vttbr = misaligned_vttbr(cpu, config, layout, vttbr, rng)
    if OptIn.VTTBR_BEYOND_PS in opt_in:
        vttbr = vttbr_beyond_ps(cpu, config, layout, vttbr, rng)
    return Case(key=key, seed=seed, cpu=cpu, config=config.with_vttbr(vttbr), image=image,
                memory_map=mmap, probes=tuple(planner.probes), fanout=fan)
