"""The descriptors the reference's walk of one probe reads (``WalkPath``),
and that walk rebuilt elsewhere or under another geometry of the same
granule, keeping the decisive descriptor's value and the other
descriptors' non-address bits (``rebuild``, ``geometry_choices``)."""
from __future__ import annotations

import dataclasses
import struct
from typing import Mapping

from reference.arch import Arch, Granule
from reference.bits import bit, mask
from reference.config import FINAL_LEVEL, S2Config, geometry
from reference.generate import Case, Probe, build_layout
from reference.image import Image, Layout, encode_table
from reference.memory import Region
from reference.outcome import TraceStep
from reference.walk import contiguous_size, walk

from .lab import only


class NotRebuildable(Exception):
    """The probe's walk cannot be rebuilt; the message says why."""


@dataclasses.dataclass(frozen=True)
class WalkPath:
    """The descriptors the reference's walk of one probe reads, in order
    (``steps``: trace steps with a value), and the last of them: the
    ``terminal`` descriptor, which decides the outcome (a leaf, an invalid
    entry, or a table whose next-level address is out of range or has no
    memory behind it)."""

    steps: tuple[TraceStep, ...]
    layout: Layout

    @property
    def terminal(self) -> TraceStep:
        return self.steps[-1]

    @property
    def start_level(self) -> int:
        return self.steps[0].level

    def at(self, level: int) -> TraceStep | None:
        return next((s for s in self.steps if s.level == level), None)


def longest_trace(case: Case, index: int) -> tuple[TraceStep, ...]:
    """The longest trace among the permitted outcomes of probe ``index``;
    NotRebuildable when the outcomes walk different paths (one trace is not
    a prefix of another)."""
    probe = case.probes[index]
    res = walk(case.cpu, case.config, case.memory(), probe.ipa, probe.at)
    traces = sorted((o.trace for o in res.outcomes), key=len)
    longest = traces[-1]
    for t in traces:
        if tuple(longest[:len(t)]) != tuple(t):
            raise NotRebuildable("the permitted outcomes walk different paths")
    return tuple(longest)


def walk_path(case: Case, index: int) -> WalkPath:
    """The path of probe ``index`` (NotRebuildable with the reason if it
    cannot be rebuilt: the reference reads no descriptor, the outcomes walk
    different paths, or the granule is an IMPLEMENTATION DEFINED choice)."""
    steps = tuple(s for s in longest_trace(case, index) if s.value is not None)
    if not steps:
        raise NotRebuildable("the reference faults before reading any descriptor "
                             "(a configuration fault): there is no walk to rebuild")
    if [s.level for s in steps] != list(range(steps[0].level, steps[0].level + len(steps))):
        raise NotRebuildable("the walk's levels are not consecutive")
    layout = build_layout(case.cpu, case.config)
    if case.cpu.arch is Arch.AARCH64 and case.config.granule is not layout.granule:
        raise NotRebuildable("TG0 does not name the granule the walk uses "
                             "(an IMPLEMENTATION DEFINED choice)")
    return WalkPath(steps, layout)


def table_address_mask(arch: Arch, layout: Layout) -> int:
    """Descriptor bits that hold the next-level table address: AArch64
    [47:granule] plus PA[51:48] where the layout keeps them (64K with
    FEAT_LPA: [15:12]; DS = 1: [9:8] and [49:48]); AArch32 [39:12]
    (AArch32.S2Walk; bits [47:40] must be zero, they are not address)."""
    if arch is Arch.AARCH32:
        return mask(39, 12)
    m = mask(47, layout.granule.bits)
    if layout.lpa64:
        m |= mask(15, 12)
    if layout.ds:
        m |= mask(9, 8) | mask(49, 48)
    return m


def vttbr_baddr_mask(arch: Arch) -> int:
    """VTTBR bits that hold the table address (and, with FEAT_LPA, PA[51:48]
    in [5:2]); the VMID and CnP are outside."""
    return mask(47, 1) if arch is Arch.AARCH64 else mask(39, 1)


def rebuild_footprint(layout: Layout, end_level: int) -> tuple[int, int]:
    """(size, alignment) in bytes of a rebuilt path from the layout's start
    level down to ``end_level``: the start-level table(s), then one table
    of one granule per further level."""
    geo = layout.geo
    root = max(geo.root_bytes, 64)
    first = -(-root // geo.table_bytes) * geo.table_bytes
    return first + (end_level - layout.start_level) * geo.table_bytes, max(root, geo.table_bytes)


def rebuild(case: Case, index: int, path: WalkPath, *, base: int,
            config: S2Config | None = None, ipa: int | None = None,
            replace: Mapping[int, int] | None = None) -> Case:
    """A one-probe case that walks ``path`` under ``config`` (default: the
    case's) from its start level, its tables placed at ``base`` (aligned as
    rebuild_footprint says).

    The terminal descriptor keeps its raw value at its level; each table
    descriptor above it points at the next rebuilt table and keeps the
    original descriptor's bits outside the address field.  ``replace``
    {level: raw value} puts that value at that level instead and ends the
    path there (the walk is not continued below a replaced descriptor).
    ``ipa`` replaces the probe's IPA; VTTBR keeps its VMID and CnP."""
    config = config or case.config
    layout = build_layout(case.cpu, config)
    replace = dict(replace or {})
    start = layout.start_level
    end = path.terminal.level
    for level in sorted(replace):
        if start <= level <= end:
            end = level
            break
    if start > end:
        raise NotRebuildable(f"start level {start} is below the decisive level {end}")
    geo = layout.geo
    size, align = rebuild_footprint(layout, end)
    if base % align:
        raise ValueError(f"base {base:#x} is not aligned to {align:#x}")
    probe = case.probes[index]
    ipa = probe.ipa if ipa is None else ipa
    first = base + (size - (end - start) * geo.table_bytes)
    tables = {start: base}
    for level in range(start + 1, end + 1):
        tables[level] = first + (level - start - 1) * geo.table_bytes
    addr_mask = table_address_mask(case.cpu.arch, layout)
    words: dict[int, int] = {}
    for level in range(start, end + 1):
        slot = tables[level] + geo.index(level, ipa) * 8
        if level in replace:
            value = replace[level]
        elif level == end:
            value = path.terminal.value or 0
        else:
            original = path.at(level)
            keep = (original.value or 0) & ~addr_mask if original is not None else 0
            value = encode_table(layout, tables[level + 1]) | keep
        assert value is not None
        words[slot] = value
    regions = tuple(Region(pa, struct.pack("<Q", v)) for pa, v in sorted(words.items()) if v)
    vttbr = (case.config.vttbr & ~vttbr_baddr_mask(case.cpu.arch)) | base
    image = Image(regions=regions, vttbr=vttbr, root=base, window=(base, size),
                  tables=tuple(sorted((lvl, pa) for lvl, pa in tables.items())))
    return dataclasses.replace(only(case, [Probe(ipa, probe.at, probe.aim)]),
                               config=config.with_vttbr(vttbr), image=image)


def config_with_geometry(case: Case, granule: Granule, ia_bits: int, start: int) -> S2Config | None:
    """The case's configuration with T0SZ and SL0 (and SL2) selecting
    ``ia_bits`` and ``start`` level, every other field kept; None when no
    encoding selects it (AArch64.S2StartLevel, AArch32: 2 - SL0)."""
    c = case.config
    if c.arch is Arch.AARCH32:
        if start not in (1, 2):
            return None
        t0sz = 32 - ia_bits
        s = c.s if c.s is not None else (c.t0sz >> 3) & 1
        if s != (c.t0sz >> 3) & 1:
            return None     # VTCR.S != T0SZ[3]: keep the misprogramming as it is
        return dataclasses.replace(c, t0sz=t0sz, sl0=2 - start, s=(t0sz >> 3) & 1)
    if granule is Granule.G4K:
        enc = {-1: (0b00, 1), 0: (0b10, 0), 1: (0b01, 0), 2: (0b00, 0), 3: (0b11, 0)}.get(start)
    else:
        enc = {0: (0b11, 0), 1: (0b10, 0), 2: (0b01, 0), 3: (0b00, 0)}.get(start)
    if enc is None:
        return None
    return dataclasses.replace(c, t0sz=64 - ia_bits, sl0=enc[0], sl2=enc[1])


def clear_indices(path: WalkPath, ipa: int) -> int:
    """``ipa`` with every table index above the terminal level cleared: only
    the offset inside the terminal entry (and inside its contiguous set,
    when bit 52 is set) decides the outcome of a rebuilt walk."""
    geo = path.layout.geo
    level = path.terminal.level
    low = geo.level_lsb(level)
    value = path.terminal.value or 0
    leaf = value & 0b11 == (0b11 if level == FINAL_LEVEL else 0b01)
    if leaf and bit(value, 52):
        low += contiguous_size(path.layout.granule, level)
    return ipa & ((1 << low) - 1)


@dataclasses.dataclass(frozen=True)
class GeometryChoice:
    """A simpler geometry tried by the configuration step."""

    levels: int
    ia_bits: int
    ipa: int
    config: S2Config

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.levels, self.ia_bits, self.ipa)


def geometry_choices(case: Case, index: int, path: WalkPath) -> list[GeometryChoice]:
    """Geometries of the same granule whose walk still reaches the terminal
    descriptor at its level, simplest first: fewest levels, then fewest IPA
    bits, then the smallest IPA.  Each keeps every VTCR field but T0SZ and
    SL0 (SL2); the reference must give it the same permitted outcomes and
    the same terminal descriptor (checked by the caller on the rebuilt case)."""
    granule = path.layout.granule
    probe = case.probes[index]
    ipas = sorted({probe.ipa, clear_indices(path, probe.ipa)})
    choices = []
    for start in range(path.start_level, path.terminal.level + 1):
        for ia_bits in range(25, 53):
            if not geometry(granule, ia_bits, start).consistent:
                continue
            config = config_with_geometry(case, granule, ia_bits, start)
            if config is None:
                continue
            layout = build_layout(case.cpu, config)
            if (layout.granule, layout.ia_bits, layout.start_level) != (granule, ia_bits, start):
                continue
            for ipa in ipas:
                if ipa >> ia_bits:
                    continue
                choices.append(GeometryChoice(FINAL_LEVEL - start + 1, ia_bits, ipa, config))
    return sorted(choices, key=lambda c: c.key)


def describe_geometry(case: Case) -> str:
    layout = build_layout(case.cpu, case.config)
    levels = FINAL_LEVEL - layout.start_level + 1
    return (f"{layout.granule.label} {layout.ia_bits}-bit IPA start level {layout.start_level} "
            f"({levels} level{'s' if levels > 1 else ''})")
