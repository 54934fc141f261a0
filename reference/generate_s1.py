"""Seeded generation of stage-1-on cases: a stage-2 configuration (from the
catalogue, as reference.generate takes it), a stage-1 configuration, one
two-stage image (reference.s1image) and the AT probes that exercise it.

The data model extends reference.generate's: :class:`S1Case` has the
fields of ``Case`` (key, seed, cpu, config with VTTBR, the stage-2 image,
memory_map, probes, fanout) plus ``stage1`` (:class:`Stage1Part`: the
stage-1 registers, HCR bits and the stage-1 table bytes at their PAs); a
probe (:class:`S1Probe`) carries a VA and an :class:`~reference.stage1.AtOp`
where ``Probe`` carries an IPA and an AtKind.  ``permitted()`` returns one
WalkResult per probe, as ``Case.permitted`` does, from reference.at.at.

A case is built from *scenarios* that each plant one thing at stage 1 or
in how stage 2 maps the stage-1 tables, and probe it:

* well-formed stage-1 leaves at every level with drawn AP, AttrIndx and SH,
  their output IPA mapped by stage 2 with drawn S2AP, MemAttr and SH (the
  attribute combination and both stages' permissions);
* stage-1 faults: invalid and reserved descriptors, AF = 0 (with TCR_EL1.HA
  drawn), output and next-table addresses beyond IPS, a VA out of range,
  TTBR1 walks disabled;
* stage-2 faults of the access: an output IPA that stage 2 does not map or
  that lies beyond its input size;
* S1PTW: the table a VA's walk reads at some level is placed (by stage 2)
  unmapped, read-only (the fault needs a hardware AF update: its leaf has
  AF = 0), with no access, as Device (HCR_EL2.PTW drawn), with AF = 0,
  beyond PS, or on a PA with no memory; or a table descriptor points at an
  IPA stage 2 does not map or beyond its input size;
* sometimes (one case in eight) the root table's page itself, which every
  probe of the case meets.

HCR_EL2 bits (PTW, FWB where FEAT_S2FWB, CD, rarely DC) and SCTLR_EL1.C
are drawn per case.  The generator only aims: what each probe must give
comes from the reference.  The same (seed, key, window) always gives the
same case.
"""
from __future__ import annotations

import dataclasses
import functools
import random
from typing import Callable

from .arch import Arch, Granule
from .config import FINAL_LEVEL, PS_BITS, S2Config
from .cpus import CpuModel
from .generate import FanOut, MemoryMap, build_layout
from .image import Conflict, Image, Layout, LeafAttrs, encode_table
from .memory import Memory, Region
from .outcome import WalkResult
from .s1config import Hcr, S1Config, S1ConfigA32, aarch64_s1_config, ttbcr
from .s1image import (
    S1LeafAttrs,
    S1Table,
    TablePlacement,
    TwoStageImageBuilder,
    aarch32_s1_layout,
    aarch64_s1_layout,
    encode_s1_leaf,
    encode_s1_table,
)
from .stage1 import AtOp, aarch64_have_s1_tg, block_desc_supported
from .walk import aarch64_physical_address_size

# MAIR_EL1 / MAIR1:MAIR0 attributes the generator draws from: Normal WB
# RWA, NC, Device-nGnRnE, Device-nGnRE, WT RA, WB transient RWA, outer NC
# inner WB, Device-GRE.  None is reserved without FEAT_XS (the CPU models
# do not say whether they have it).
MAIR_ATTRS = (0xFF, 0x44, 0x00, 0x04, 0xAA, 0x77, 0x4F, 0x0C)

# Stage-2 MemAttr values drawn for output mappings (weights favour Normal WB).
S2_MEMATTRS = (0b1111, 0b1111, 0b1111, 0b0101, 0b1010, 0b0000, 0b0010, 0b1101, 0b0110,
               0b0111, 0b0100)


@dataclasses.dataclass(frozen=True)
class Stage1Shape:
    """The stage-1 dimension of the matrix: the granule and VA size of the
    TTBR0 walk (AArch32: 4K and 32 - TTBCR.T0SZ bits) and where its
    tables sit in IPA space: at the bottom, or at the top of what stage 2
    maps (AArch32: above 4 GiB when the IPA size allows)."""

    granule: Granule
    va_bits: int
    tables_high: bool

    @property
    def label(self) -> str:
        return f"s1-{self.granule.label}-va{self.va_bits}-{'high' if self.tables_high else 'low'}"


def stage1_shapes(cpu: CpuModel) -> list[Stage1Shape]:
    """Every shape a CPU can run: each stage-1 granule it has
    (AArch64.HaveS1TG) with 39- and 48-bit VAs (4K also 36), both table
    placements; AArch32: 32- and 30-bit VAs (T0SZ 0 and 2)."""
    if cpu.arch is Arch.AARCH32:
        return [Stage1Shape(Granule.G4K, bits, high) for bits in (32, 30) for high in (False, True)]
    out: list[Stage1Shape] = []
    for g in Granule:
        if not aarch64_have_s1_tg(cpu, g):
            continue
        for bits in ((36, 39, 48) if g is Granule.G4K else (39, 48)):
            out.extend(Stage1Shape(g, bits, high) for high in (False, True))
    return out


@dataclasses.dataclass(frozen=True)
class S1Probe:
    """One AT probe with stage 1 on: the VA, the operation, the aim."""

    va: int
    at: AtOp
    aim: str


@dataclasses.dataclass(frozen=True)
class Stage1Part:
    """The stage-1 side of a case: its registers (``config``), the HCR
    bits, the stage-1 tables (IPA, level, PA, how stage 2 maps them) and
    their bytes at PAs (``regions``), inside ``pa_window``."""

    config: S1Config | S1ConfigA32
    hcr: Hcr
    shape: Stage1Shape
    regions: tuple[Region, ...]
    tables: tuple[S1Table, ...]
    ipa_window: tuple[int, int]
    pa_window: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class S1Case:
    """A stage-1-on case: the fields of reference.generate.Case plus the
    stage-1 part; ``probes`` are VA probes."""

    key: str
    seed: int
    cpu: CpuModel
    config: S2Config
    image: Image
    memory_map: MemoryMap
    probes: tuple[S1Probe, ...]
    stage1: Stage1Part
    fanout: FanOut = dataclasses.field(default_factory=FanOut.empty)

    def memory(self) -> Memory:
        """RAM with the stage-2 and the stage-1 tables in place."""
        return Memory(ram=self.memory_map.ram, regions=self.image.regions + self.stage1.regions)

    def permitted(self) -> tuple[WalkResult, ...]:
        """The reference's permitted outcomes for every probe, in order."""
        from .at import at
        mem = self.memory()
        return tuple(at(self.cpu, self.config, self.stage1.config, self.stage1.hcr, mem, p.va, p.at)
                     for p in self.probes)


def s1_window_bytes(config: S2Config, shape: Stage1Shape) -> int:
    """PA window one stage-1-on case needs: the stage-2 half as for a
    stage-2 case (128 granules), and 64 stage-1 table slots (a slot is the
    larger granule)."""
    s2_granule = config.granule or Granule.G4K
    slot = max(1 << s2_granule.bits, 1 << shape.granule.bits)
    return 2 * max(1 << (s2_granule.bits + 7), 64 * slot)


# ---------------------------------------------------------------------------

class _Planner:
    """Picks VAs, IPAs and output addresses; records probes."""

    def __init__(self, cpu: CpuModel, rng: random.Random, b: TwoStageImageBuilder,
                 s1_layout: Layout, s2_layout: Layout, ipa_bits: int, out_bits: int,
                 ips_bits: int, s2_oa_bits: int, s1_allowed: dict[int, bool],
                 s2_allowed: dict[int, bool], mmap: MemoryMap) -> None:
        self.cpu, self.rng, self.b = cpu, rng, b
        self.s1l, self.s2l = s1_layout, s2_layout
        self.ipa_bits, self.out_bits, self.ips_bits, self.s2_oa_bits = ipa_bits, out_bits, ips_bits, s2_oa_bits
        self.s1_allowed, self.s2_allowed, self.mmap = s1_allowed, s2_allowed, mmap
        self.probes: list[S1Probe] = []
        # VA ranges whose walk meets a table placed on purpose (or a table
        # pointer planted on purpose): no other scenario may use them.
        self.reserved: list[tuple[int, int]] = []
        self.va_limit = 1 << s1_layout.ia_bits
        # A few random indices per level, chosen once and shared by
        # scenarios, so that tables are shared and their edges reached.
        self.random_idx = {lvl: [rng.randrange(self._entries(lvl)) for _ in range(2)]
                           for lvl in range(s1_layout.start_level, FINAL_LEVEL + 1)}

    def _entries(self, level: int) -> int:
        geo = self.s1l.geo
        return geo.root_entries if level == self.s1l.start_level else 1 << geo.stride

    def pick_va(self, level: int, *, fresh_from: int | None = None) -> int | None:
        """A VA whose stage-1 entry at ``level`` is free; with
        ``fresh_from`` also the entry at that (shallower) level, so the
        tables below it are new and this VA's alone."""
        geo = self.s1l.geo
        for _ in range(32):
            va = 0
            for lvl in range(self.s1l.start_level, level + 1):
                if self.rng.random() < 0.34:
                    idx = self.rng.randrange(self._entries(lvl))
                else:
                    idx = self.rng.choice([0, self._entries(lvl) - 1] + self.random_idx[lvl])
                va |= idx << geo.level_lsb(lvl)
            if fresh_from is not None and not self.b.s1.free(va, fresh_from):
                continue
            if any(lo <= va < hi for lo, hi in self.reserved):
                continue
            if self.b.s1.free(va, level):
                return va
        return None

    def reserve(self, va: int, level: int) -> None:
        """Keep other scenarios out of the VAs the entry for ``va`` at
        ``level`` covers."""
        bits = self.s1l.geo.block_bits(level)
        base = va >> bits << bits
        self.reserved.append((base, base + (1 << bits)))

    def pick_ipa(self, bits: int, *, beyond: bool = False) -> int:
        """A 2^bits-aligned output IPA that stage 2 can map (below the
        stage-2 input size and stage 1's output size, away from the
        stage-1 table window), or with ``beyond`` one at or above the
        stage-2 input size but below IPS."""
        if beyond:
            top = self.rng.randrange(self.ipa_bits, self.out_bits)
            return (1 << top | self.rng.getrandbits(top)) >> bits << bits
        lo, size = self.b.s1_window
        for _ in range(32):
            ipa = self.rng.getrandbits(min(self.ipa_bits, self.out_bits)) >> bits << bits
            big = 1 << max(bits, self.s2l.geo.block_bits(self.s2l.start_level))
            if ipa // big != lo // big and ipa // big != (lo + size - 1) // big:
                return ipa
        return (lo + size) >> bits << bits

    def pick_pa(self, bits: int) -> int:
        return self.rng.getrandbits(min(self.s2_oa_bits, 48)) >> bits << bits

    def s2_map(self, ipa: int, attrs: LeafAttrs) -> None:
        """Stage 2 maps the IPA at a drawn level (a block where allowed)."""
        levels = [lvl for lvl, ok in self.s2_allowed.items() if ok]
        level = self.rng.choice(levels)
        bits = self.s2l.geo.block_bits(level)
        if not self.b.s2.free(ipa, level):
            return
        try:
            self.b.map_ipa(ipa >> bits << bits, self.pick_pa(bits), level, attrs)
        except Conflict:
            pass

    def probe(self, va: int, op: AtOp, aim: str) -> None:
        self.probes.append(S1Probe(va, op, aim))

    def ops(self, n: int) -> list[AtOp]:
        """``n`` operations, at least one stage-1+2 read and one write."""
        first = [self.rng.choice((AtOp.S12E1R, AtOp.S12E0R)), self.rng.choice((AtOp.S12E1W, AtOp.S12E0W))]
        return (first + self.rng.sample(list(AtOp), len(AtOp)))[:n]


def _s1_leaf_levels(cpu: CpuModel, layout: Layout, arch: Arch) -> dict[int, bool]:
    """Stage-1 levels a leaf could be at, and whether a block is allowed there."""
    out = {}
    for lvl in range(layout.start_level, FINAL_LEVEL + 1):
        if arch is Arch.AARCH32:
            out[lvl] = True
        else:
            out[lvl] = lvl == FINAL_LEVEL or block_desc_supported(cpu, layout.granule, int(layout.ds), lvl)
    return out


def _s2_leaf_levels(cpu: CpuModel, config: S2Config, layout: Layout) -> dict[int, bool]:
    """Stage-2 levels and whether a block may be placed there
    (AArch64.BlockDescSupported; AArch32: levels 1 and 2)."""
    if config.arch is Arch.AARCH32:
        return {lvl: lvl >= 1 for lvl in range(layout.start_level, FINAL_LEVEL + 1)}
    return {lvl: lvl == FINAL_LEVEL or block_desc_supported(cpu, layout.granule, int(layout.ds), lvl)
            for lvl in range(layout.start_level, FINAL_LEVEL + 1)}


def generate_s1_case(cpu: CpuModel, config: S2Config, shape: Stage1Shape, seed: int, key: str,
                     window: tuple[int, int], mmap: MemoryMap) -> S1Case:
    """One stage-1-on case for ``config`` (a valid stage-2 configuration,
    e.g. a catalogue entry) and ``shape`` on ``cpu``, inside ``window`` =
    (base PA, size in bytes, at least :func:`s1_window_bytes`): stage-2
    tables in its first half, stage-1 tables at PAs in its second half."""
    rng = random.Random(f"s2diff-s1:{seed}:{key}")
    arch = cpu.arch
    s2_layout = build_layout(cpu, config)
    ipa_bits = s2_layout.ia_bits
    if arch is Arch.AARCH64:
        s2_oa_bits = aarch64_physical_address_size(cpu, config.ps, s2_layout.granule)
        cap = aarch64_physical_address_size(cpu, 0b101, shape.granule)        # 48 or PAMax
        ips_bits = min((b for b in PS_BITS.values() if b >= min(ipa_bits, cap)), default=cap)
        ips_bits = min(ips_bits, cap)
        s1_layout = aarch64_s1_layout(cpu.feat_lpa, shape.granule, shape.va_bits)
        out_bits = ips_bits
    else:
        s2_oa_bits, ips_bits, out_bits = 40, 40, 40
        s1_layout = aarch32_s1_layout(32 - shape.va_bits)
    page = max(1 << shape.granule.bits, 1 << s2_layout.granule.bits)
    half = window[1] // 2
    s1_pa = -(-(window[0] + half) // page) * page
    slots = max(8, (window[0] + window[1] - s1_pa) // page)
    tw_size = min(64, slots) * page
    reach = min(ipa_bits, out_bits)
    if shape.tables_high:
        tw_base = ((1 << reach) - tw_size - page * rng.randrange(1, 64)) // page * page
    else:
        tw_base = page * rng.randrange(1, 64)
    empty = [a >> 16 << 16 for a in mmap.empty]
    vmid = 1 + rng.randrange(255)
    b = TwoStageImageBuilder(s1_layout, (tw_base, tw_size), s1_pa, s2_layout, (window[0], half),
                             vmid=vmid, oa_bits=s2_oa_bits, no_memory=empty[0] if empty else None)
    # CD is HCR2.CD on AArch32, a register ARMv8 added: not on an ARMv7 core.
    hcr = Hcr(ptw=int(rng.random() < 0.5),
              fwb=int(arch is Arch.AARCH64 and cpu.feat_s2fwb and rng.random() < 0.3),
              cd=int(cpu.arch_version >= 8 and rng.random() < 0.1), dc=int(rng.random() < 0.04))
    mair = list(MAIR_ATTRS)
    rng.shuffle(mair)
    mair_value = sum(a << (8 * i) for i, a in enumerate(mair))
    ha = int(arch is Arch.AARCH64 and cpu.hafdbs >= 1 and rng.random() < 0.5)
    hd = int(ha and cpu.hafdbs >= 2 and rng.random() < 0.5)
    c = int(rng.random() >= 0.1)

    pl = _Planner(cpu, rng, b, s1_layout, s2_layout, ipa_bits, out_bits, ips_bits, s2_oa_bits,
                  _s1_leaf_levels(cpu, s1_layout, arch), _s2_leaf_levels(cpu, config, s2_layout), mmap)
    root_placement = None
    if rng.random() < 0.125:
        root_placement = rng.choice(_feasible_placements(pl))
        b.place(tw_base, root_placement)
    _scenarios(pl, arch, ha)
    image = b.build()
    if arch is Arch.AARCH64:
        s1: S1Config | S1ConfigA32 = aarch64_s1_config(
            shape.granule, shape.va_bits, ips_bits=ips_bits, ttbr0=image.ttbr, mair=mair_value,
            ha=ha, hd=hd, c=c)
    else:
        s1 = S1ConfigA32(ttbcr=ttbcr(t0sz=32 - shape.va_bits), ttbr0=image.ttbr,
                         mair0=mair_value & 0xFFFF_FFFF, mair1=mair_value >> 32, c=c)
    part = Stage1Part(config=s1, hcr=hcr, shape=shape, regions=image.s1_regions,
                      tables=image.s1_tables, ipa_window=(tw_base, tw_size),
                      pa_window=(s1_pa, window[0] + window[1] - s1_pa))
    probes = tuple(pl.probes)
    if root_placement is not None:
        probes = tuple(dataclasses.replace(p, aim=f"{p.aim} (root table page {root_placement.value})")
                       for p in probes)
    if hcr.dc:
        probes = tuple(dataclasses.replace(p, aim=f"{p.aim} (HCR_EL2.DC = 1: stage 1 off)")
                       for p in probes)
    return S1Case(key=key, seed=seed, cpu=cpu, config=config.with_vttbr(image.s2.vttbr),
                  image=image.s2, memory_map=mmap, probes=probes, stage1=part)


def _feasible_placements(pl: _Planner) -> list[TablePlacement]:
    """The placements other than MAPPED this case can make."""
    out: list[TablePlacement] = [p for p in TablePlacement if p is not TablePlacement.MAPPED]
    limit = 52 if (pl.s2l.lpa64 or pl.s2l.ds) else 48
    if pl.s2_oa_bits >= limit:
        out.remove(TablePlacement.BEYOND_PS)
    if pl.b.no_memory is None:
        out.remove(TablePlacement.NO_MEMORY)
    return out


def _scenarios(pl: _Planner, arch: Arch, ha: int) -> None:
    """Place the scenarios of one case (see the module docstring), deepest
    level first so that shallow leaves do not use up the entries deeper
    scenarios need as tables."""
    rng = pl.rng
    steps: list[Callable[[], None]] = []
    for level, allowed in sorted(pl.s1_allowed.items(), reverse=True):
        steps.extend(_level_scenarios(pl, arch, level, allowed, ha))
    for placement in _feasible_placements(pl):
        steps.append(functools.partial(_table_placement, pl, placement))
    steps.append(functools.partial(_table_pointer, pl, "unmapped"))
    if pl.out_bits > pl.ipa_bits:
        steps.append(functools.partial(_table_pointer, pl, "beyond"))
    if pl.b.no_memory is not None:
        steps.append(functools.partial(_table_pointer, pl, "s2-table-no-memory"))
    rng.shuffle(steps)
    for step in steps:
        step()
    # Edges of the VA space.
    top_page = pl.va_limit - (1 << pl.s1l.granule.bits)
    pl.probe(0, rng.choice(list(AtOp)), "VA 0")
    pl.probe(top_page, rng.choice(list(AtOp)), "top page of the VA range")
    if arch is Arch.AARCH64:
        pl.probe(pl.va_limit, rng.choice(list(AtOp)), "first VA beyond the TTBR0 range")
        pl.probe(0xFFFF_FFFF_FFFF_F000, rng.choice(list(AtOp)), "TTBR1 range (EPD1 = 1)")
    elif pl.va_limit < 1 << 32:
        pl.probe(pl.va_limit, rng.choice(list(AtOp)), "first VA beyond the TTBR0 range (TTBR1, T1SZ 0)")


def _level_scenarios(pl: _Planner, arch: Arch, level: int, allowed: bool,
                     ha: int) -> list[Callable[[], None]]:
    rng = pl.rng
    kind = "page" if level == FINAL_LEVEL else "block"
    bits = pl.s1l.geo.block_bits(level)
    steps: list[Callable[[], None]] = []

    def leaf(attrs: S1LeafAttrs, aim: str, *, s2: LeafAttrs | None = LeafAttrs(),
             beyond_ips: bool = False, beyond_s2: bool = False, n_ops: int = 3) -> Callable[[], None]:
        def step() -> None:
            va = pl.pick_va(level)
            if va is None:
                return
            if beyond_ips:
                ipa = (1 << rng.randrange(pl.ips_bits, 48) | rng.getrandbits(pl.ips_bits)) >> bits << bits
            else:
                ipa = pl.pick_ipa(bits, beyond=beyond_s2)
            try:
                pl.b.map(va, ipa, level, attrs)
            except Conflict:
                return
            offsets = {0, (1 << bits) - (1 << pl.s1l.granule.bits)}
            va_first = va + rng.randrange(1 << pl.s1l.granule.bits) // 8 * 8
            if s2 is not None and not beyond_ips and not beyond_s2:
                pl.s2_map(ipa + (va_first - va), s2)
            for i, op in enumerate(pl.ops(n_ops)):
                off = sorted(offsets)[i % len(offsets)] if i else 0
                pl.probe(va_first + off, op, aim)
        return step

    if allowed:
        for _ in range(3):
            a = S1LeafAttrs(attrindx=rng.randrange(8), ap=rng.randrange(4),
                            sh=rng.choice((0b11, 0b11, 0b10, 0b00, 0b01)))
            s2 = LeafAttrs(s2ap=rng.choice((0b11, 0b11, 0b01, 0b10, 0b00)),
                           memattr=rng.choice(S2_MEMATTRS), sh=rng.choice((0b11, 0b10, 0b00)))
            steps.append(leaf(a, f"S1 L{level} {kind} AP={a.ap:02b} AttrIndx={a.attrindx} "
                                 f"SH={a.sh:02b}; S2 S2AP={s2.s2ap:02b} MemAttr={s2.memattr:04b} "
                                 f"SH={s2.sh:02b}", s2=s2, n_ops=4))
        steps.append(leaf(S1LeafAttrs(af=0), f"S1 L{level} {kind} AF=0{' (HA)' if ha else ''}"))
        if arch is Arch.AARCH64:
            steps.append(leaf(S1LeafAttrs(ap=0b10, dbm=1), f"S1 L{level} {kind} DBM read-only"))
            if pl.ips_bits < 48:
                steps.append(leaf(S1LeafAttrs(), f"S1 L{level} {kind} output beyond IPS",
                                  beyond_ips=True, n_ops=1))
        steps.append(leaf(S1LeafAttrs(), f"S1 L{level} {kind} output not mapped by stage 2",
                          s2=None, n_ops=2))
        if pl.out_bits > pl.ipa_bits:
            steps.append(leaf(S1LeafAttrs(), f"S1 L{level} {kind} output beyond the stage-2 input size",
                              beyond_s2=True, n_ops=1))
    else:
        steps.append(leaf(S1LeafAttrs(), f"S1 L{level} block where none is allowed", n_ops=1))

    def raw(desc: int, aim: str) -> Callable[[], None]:
        def step() -> None:
            va = pl.pick_va(level)
            if va is None:
                return
            try:
                pl.b.plant(va, level, desc)
            except Conflict:
                return
            pl.probe(va + rng.randrange(1 << bits) // 8 * 8, rng.choice(list(AtOp)), aim)
        return step

    steps.append(raw(rng.choice((0, 0b10, rng.getrandbits(64) & ~1)), f"S1 L{level} invalid"))
    if level == FINAL_LEVEL:
        steps.append(raw(encode_s1_leaf(pl.s1l, level, pl.pick_ipa(bits)) & ~0b10, "S1 L3 reserved 0b01"))
    elif arch is Arch.AARCH64 and pl.ips_bits < 48:
        far = (1 << rng.randrange(pl.ips_bits, 48)) >> pl.s1l.granule.bits << pl.s1l.granule.bits
        steps.append(raw(encode_s1_table(pl.s1l, far), f"S1 L{level} next table beyond IPS"))
    return steps


def _table_placement(pl: _Planner, placement: TablePlacement) -> None:
    """S1PTW: the stage-1 table at a drawn level below the root, on the
    path of a fresh VA, is placed ``placement`` by stage 2.  For READ_ONLY
    it is the last-level table and the leaf has AF = 0, so that a hardware
    AF update (TCR_EL1.HA) needs to write it."""
    start = pl.s1l.start_level
    if start == FINAL_LEVEL:
        return
    # A read-only page matters to the table that holds the leaf (the AF
    # update writes there): the last level.
    level = (FINAL_LEVEL if placement is TablePlacement.READ_ONLY
             else pl.rng.randrange(start + 1, FINAL_LEVEL + 1))
    va = pl.pick_va(FINAL_LEVEL, fresh_from=level - 1)
    if va is None:
        return
    ipa = pl.pick_ipa(pl.s1l.granule.bits)
    try:
        pl.b.map(va, ipa, FINAL_LEVEL, S1LeafAttrs(af=0 if placement is TablePlacement.READ_ONLY else 1))
        pl.b.place(pl.b.table_ipa(va, level), placement)
    except Conflict:
        return
    pl.reserve(va, level - 1)
    pl.s2_map(ipa, LeafAttrs())
    for op in pl.ops(2):
        pl.probe(va + pl.rng.randrange(1 << pl.s1l.granule.bits) // 8 * 8, op,
                 f"S1 L{level} table page {placement.value} at stage 2")


def _table_pointer(pl: _Planner, mode: str) -> None:
    """S1PTW: a table descriptor at a drawn level points at an IPA that
    stage 2 does not map ("unmapped"), that is at or above its input size
    ("beyond"), or whose stage-2 walk meets a table in no memory
    ("s2-table-no-memory": an External abort on the stage-2 walk)."""
    start = pl.s1l.start_level
    if start == FINAL_LEVEL:
        return
    level = pl.rng.randrange(start, FINAL_LEVEL)
    va = pl.pick_va(level)
    if va is None:
        return
    target = pl.pick_ipa(pl.s1l.granule.bits, beyond=mode == "beyond")
    try:
        if mode == "s2-table-no-memory":
            s2_level = pl.s2l.start_level
            if s2_level == FINAL_LEVEL or not pl.b.s2.free(target, s2_level):
                return
            empty = pl.b.no_memory
            assert empty is not None
            pl.b.s2.plant(target, s2_level, encode_table(pl.s2l, empty))
        pl.b.plant(va, level, encode_s1_table(pl.s1l, target))
    except Conflict:
        return
    pl.reserve(va, level)
    aim = {"unmapped": "an IPA not mapped by stage 2",
           "beyond": "an IPA beyond the stage-2 input size",
           "s2-table-no-memory": "an IPA whose stage-2 table is in no memory"}[mode]
    pl.probe(va + pl.rng.randrange(1 << pl.s1l.geo.block_bits(level)) // 8 * 8,
             pl.rng.choice(list(AtOp)), f"S1 L{level} table descriptor to {aim}")
