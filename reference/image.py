"""Stage-2 table images: descriptor encoders and a builder that turns a
mapping description into tables placed inside a PA window.

The builder places the start-level table(s) at the bottom of the window,
aligned to their size (at least 64 bytes, which also satisfies the FEAT_LPA /
FEAT_LPA2 VTTBR alignment), and next-level tables after it, one granule
each.  Besides well-formed mappings it can plant any raw descriptor at any
level on purpose (invalid, reserved, AF = 0, out-of-range addresses, tables
pointing outside RAM, ...), which is how the generator reaches every fault.

The image's bytes are returned as regions holding only the tables' non-zero
spans; the rest of the window is zero-filled RAM (see memory.py).
"""
from __future__ import annotations

import dataclasses
import struct

from .arch import Arch, Granule
from .bits import field
from .config import FINAL_LEVEL, Geometry, S2Config, geometry
from .cpus import CpuModel
from .memory import Region


@dataclasses.dataclass(frozen=True)
class Layout:
    """How descriptors are encoded for a configuration: granule, IPA size,
    start level, and where PA[51:48] live (64K with FEAT_LPA: bits [15:12];
    DS = 1: bits [9:8] hold PA[51:50] and [49:48] PA[49:48])."""

    granule: Granule
    ia_bits: int
    start_level: int
    lpa64: bool = False
    ds: bool = False

    @property
    def geo(self) -> Geometry:
        return geometry(self.granule, self.ia_bits, self.start_level)


def layout_for(cpu: CpuModel, config: S2Config, start_level: int) -> Layout:
    """The layout the walker will apply to ``config`` on ``cpu`` (for a
    configuration whose granule is valid)."""
    granule = config.granule or Granule.G4K
    lpa64 = cpu.feat_lpa and granule is Granule.G64K
    ds = bool(config.ds) and cpu.s2_granule_52bit(granule)
    return Layout(granule, config.ia_bits, start_level, lpa64=lpa64, ds=ds)


def encode_address(layout: Layout, address: int, low_bits: int) -> int:
    """Descriptor bits holding ``address`` (aligned to 2^low_bits): bits
    [47:low_bits] in place, PA[51:48] where the layout keeps them."""
    desc = address & ((1 << 48) - 1) & ~((1 << low_bits) - 1)
    high = field(address, 51, 48)
    if layout.lpa64:
        desc |= high << 12
    elif layout.ds:
        desc |= (high >> 2) << 8 | (high & 0b11) << 48
    elif high:
        raise ValueError(f"address {address:#x} needs 52-bit descriptors")
    return desc


@dataclasses.dataclass(frozen=True)
class LeafAttrs:
    """Stage-2 leaf attributes (Arm ARM names).  Defaults: Normal
    write-back (MemAttr 0b1111), inner shareable, read/write, AF set."""

    s2ap: int = 0b11
    af: int = 1
    xn: int = 0
    memattr: int = 0b1111
    sh: int = 0b11
    dbm: int = 0
    contiguous: int = 0

    @classmethod
    def indirect(cls, pi_index: int, dirty: int, **kw: int) -> "LeafAttrs":
        """The attributes of a leaf under stage-2 permission indirection
        (VTCR_EL2.S2PIE = 1), whose descriptor bits mean other things
        (AArch64.S2ApplyOutputPerms): PIIndex[0] is bit 6 (S2AP[0]), Dirty
        bit 7 (S2AP[1]), PIIndex[1] bit 51 (DBM), PIIndex[3:2] bits [54:53]
        (XN[1:0])."""
        if not 0 <= pi_index < 16 or dirty not in (0, 1):
            raise ValueError(f"PIIndex {pi_index} / Dirty {dirty} out of range")
        return cls(s2ap=dirty << 1 | pi_index & 1, dbm=pi_index >> 1 & 1, xn=pi_index >> 2,
                   **kw)


def encode_leaf(layout: Layout, level: int, oa: int, attrs: LeafAttrs = LeafAttrs()) -> int:
    """A block (levels < 3, bits[1:0] = 0b01) or page (level 3, 0b11)
    descriptor.  With DS = 1, bits [9:8] carry PA[51:50], so SH comes from
    VTCR_EL2.SH0 and ``attrs.sh`` is not encoded."""
    desc = 0b11 if level == FINAL_LEVEL else 0b01
    desc |= encode_address(layout, oa, layout.geo.block_bits(level))
    desc |= attrs.memattr << 2 | attrs.s2ap << 6 | attrs.af << 10
    if not layout.ds:
        desc |= attrs.sh << 8
    desc |= attrs.dbm << 51 | attrs.contiguous << 52 | (attrs.xn >> 1) << 54 | (attrs.xn & 1) << 53
    return desc


def encode_table(layout: Layout, next_table: int) -> int:
    """A table descriptor (bits[1:0] = 0b11) pointing at ``next_table``.
    Stage-2 table descriptors carry no attributes."""
    return 0b11 | encode_address(layout, next_table, layout.granule.bits)


class Conflict(Exception):
    """The requested entry collides with one already in the image."""


@dataclasses.dataclass(frozen=True)
class Image:
    """A built image: ``regions`` to place in memory, the VTTBR value that
    points at its start-level table, and the window it occupies."""

    regions: tuple[Region, ...]
    vttbr: int
    root: int
    window: tuple[int, int]
    tables: tuple[tuple[int, int], ...]  # (level, PA) of every table

    @property
    def size(self) -> int:
        return sum(len(r.data) for r in self.regions)


class ImageBuilder:
    """Builds one stage-2 image for ``layout`` inside the PA window
    [base, base + size)."""

    def __init__(self, layout: Layout, base: int, size: int, vmid: int = 1) -> None:
        self.layout = layout
        self.geo = layout.geo
        root_align = max(self.geo.root_bytes, 64)
        self.root = -(-base // root_align) * root_align
        self.window = (base, size)
        self._next = self.root + max(self.geo.root_bytes, 64)
        self._next = -(-self._next // self.geo.table_bytes) * self.geo.table_bytes
        self.vmid = vmid
        # PA of a table -> (level, {index: descriptor})
        self._tables: dict[int, tuple[int, dict[int, int]]] = {self.root: (self.layout.start_level, {})}
        # (level, table PA, index) -> "table" | "leaf" | "plant"
        self._kinds: dict[tuple[int, int], str] = {}
        self._children: dict[tuple[int, int], int] = {}

    def _alloc(self, level: int) -> int:
        pa = self._next
        self._next += self.geo.table_bytes
        if self._next > self.window[0] + self.window[1]:
            raise Conflict("image window full")
        self._tables[pa] = (level, {})
        return pa

    def _table_for(self, ipa: int, level: int, create: bool = True) -> int:
        """PA of the table at ``level`` on the path of ``ipa``; creates the
        tables above it as needed."""
        table = self.root
        for lvl in range(self.layout.start_level, level):
            idx = self.geo.index(lvl, ipa)
            kind = self._kinds.get((table, idx))
            if kind is None:
                if not create:
                    raise Conflict("no table")
                nxt = self._alloc(lvl + 1)
                self._tables[table][1][idx] = encode_table(self.layout, nxt)
                self._kinds[(table, idx)] = "table"
                self._children[(table, idx)] = nxt
            elif kind != "table":
                raise Conflict(f"entry at level {lvl} for {ipa:#x} is a {kind}")
            table = self._decode_child(table, idx)
        return table

    def _decode_child(self, table: int, idx: int) -> int:
        """The next-level table a table entry written by this builder points at."""
        return self._children[(table, idx)]

    def free(self, ipa: int, level: int) -> bool:
        """Whether an entry for ``ipa`` at ``level`` can still be written."""
        table = self.root
        for lvl in range(self.layout.start_level, level):
            idx = self.geo.index(lvl, ipa)
            kind = self._kinds.get((table, idx))
            if kind is None:
                return True
            if kind != "table":
                return False
            table = self._decode_child(table, idx)
        return (table, self.geo.index(level, ipa)) not in self._kinds

    def slot_address(self, ipa: int, level: int) -> int:
        """PA of the descriptor for ``ipa`` at ``level`` (tables created as needed)."""
        table = self._table_for(ipa, level)
        return table + self.geo.index(level, ipa) * 8

    def _put(self, ipa: int, level: int, desc: int, kind: str) -> int:
        table = self._table_for(ipa, level)
        idx = self.geo.index(level, ipa)
        if (table, idx) in self._kinds:
            raise Conflict(f"entry at level {level} for {ipa:#x} already written")
        self._tables[table][1][idx] = desc
        self._kinds[(table, idx)] = kind
        return table + idx * 8

    def map(self, ipa: int, oa: int, level: int, attrs: LeafAttrs = LeafAttrs()) -> int:
        """Map the block or page containing ``ipa`` at ``level`` to ``oa``;
        returns the descriptor's PA."""
        return self._put(ipa, level, encode_leaf(self.layout, level, oa, attrs), "leaf")

    def plant(self, ipa: int, level: int, desc: int) -> int:
        """Write the raw descriptor ``desc`` for ``ipa`` at ``level``."""
        return self._put(ipa, level, desc, "plant")

    @staticmethod
    def _region(table: int, entries: dict[int, int], run: list[int]) -> Region:
        lo, hi = run[0], run[-1]
        data = bytearray((hi - lo + 1) * 8)
        for idx in run:
            struct.pack_into("<Q", data, (idx - lo) * 8, entries[idx])
        return Region(table + lo * 8, bytes(data))

    def build(self) -> Image:
        regions = []
        tables = []
        for pa, (level, entries) in sorted(self._tables.items()):
            tables.append((level, pa))
            # One region per run of written entries (gaps of more than 8
            # entries split a run): the zero-filled RAM supplies the rest.
            run: list[int] = []
            for idx in sorted(entries):
                if run and idx - run[-1] > 8:
                    regions.append(self._region(pa, entries, run))
                    run = []
                run.append(idx)
            if run:
                regions.append(self._region(pa, entries, run))
        vttbr = self.vmid << 48 | self.root
        if field(self.root, 51, 48):
            vttbr = self.vmid << 48 | field(self.root, 47, 6) << 6 | field(self.root, 51, 48) << 2
        return Image(regions=tuple(regions), vttbr=vttbr, root=self.root, window=self.window,
                     tables=tuple(tables))


def vttbr_vmid_bits(arch: Arch) -> tuple[int, int]:
    """(hi, lo) of VTTBR.VMID: [63:48] on AArch64, [55:48] on AArch32."""
    return (63, 48) if arch is Arch.AARCH64 else (55, 48)
