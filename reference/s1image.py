"""Two-stage table images: stage-1 tables placed in IPA space, and the
stage-2 image that maps them (or, on purpose, does not).

A stage-1 table lives at an IPA; the walk reads it through stage 2
(AArch64.S1Walk -> AArch64.S2Translate).  :class:`TwoStageImageBuilder`
builds the stage-1 tables with reference.image.ImageBuilder inside an IPA
window (their descriptors are VMSAv8-64 / AArch32 LPAE stage-1 descriptors,
encoded here), builds the stage-2 image in a PA window with
reference.image.ImageBuilder, and maps every page of stage-1 tables by
stage 2 with a :class:`TablePlacement`: a normal read/write mapping to a PA
in RAM, or one thing wrong on purpose (unmapped, read-only, no access,
Device, Access flag clear, output beyond PS, a PA with no memory).  The
stage-1 table bytes are placed at the PAs stage 2 gives them; a table
whose page stage 2 does not map to RAM has no bytes anywhere (no walk can
read it).

Stage-1 tables get one ``page_bytes`` slot each (the larger of the two
granules), so a placement given to one table's page never covers another
table.
"""
from __future__ import annotations

import dataclasses
import enum

from .arch import Granule
from .bits import field
from .config import FINAL_LEVEL
from .image import Conflict, Image, ImageBuilder, Layout, LeafAttrs, encode_address
from .memory import Region


@dataclasses.dataclass(frozen=True)
class S1LeafAttrs:
    """Stage-1 block/page attributes (Arm ARM names): AttrIndx[2:0] (bits
    [4:2]), AP[2:1] (bits [7:6]; default 0b01: EL1 and EL0 read/write), SH
    (bits [9:8]), AF (10), nG (11), DBM (51, AArch64), Contiguous (52),
    PXN (53), UXN/XN (54)."""

    attrindx: int = 0
    ap: int = 0b01
    sh: int = 0b11
    af: int = 1
    ng: int = 0
    dbm: int = 0
    contiguous: int = 0
    pxn: int = 0
    uxn: int = 0


def encode_s1_leaf(layout: Layout, level: int, oa: int, attrs: S1LeafAttrs = S1LeafAttrs()) -> int:
    """A stage-1 block (bits[1:0] = 0b01) or page (level 3, 0b11)
    descriptor.  With DS = 1 bits [9:8] hold OA[51:50] and SH comes from
    TCR_EL1, so ``attrs.sh`` is not encoded."""
    desc = 0b11 if level == FINAL_LEVEL else 0b01
    desc |= encode_address(layout, oa, layout.geo.block_bits(level))
    desc |= attrs.attrindx << 2 | attrs.ap << 6 | attrs.af << 10 | attrs.ng << 11
    if not layout.ds:
        desc |= attrs.sh << 8
    return desc | attrs.dbm << 51 | attrs.contiguous << 52 | attrs.pxn << 53 | attrs.uxn << 54


def encode_s1_table(layout: Layout, next_table: int, aptable: int = 0) -> int:
    """A stage-1 table descriptor (bits[1:0] = 0b11) with APTable (bits
    [62:61]); PXNTable/UXNTable/NSTable are 0."""
    return 0b11 | encode_address(layout, next_table, layout.granule.bits) | aptable << 61


def s1_ttbr(root: int) -> int:
    """TTBR0_EL1 / TTBR0 (ASID 0, CnP 0) for a start-level table at IPA
    ``root``: BADDR in place, IPA[51:48] in bits [5:2] when the root is
    above 2^48 (AArch64.S1TTBaseAddress with 52-bit addresses)."""
    if field(root, 51, 48):
        return field(root, 47, 6) << 6 | field(root, 51, 48) << 2
    return root


class TablePlacement(enum.Enum):
    """How stage 2 maps a page of stage-1 tables."""

    MAPPED = "mapped"            # read/write Normal Write-Back, AF set: the walk reads it
    READ_ONLY = "read-only"      # S2AP = 01: readable; a hardware update's write faults
    NO_ACCESS = "no-access"      # S2AP = 00: the fetch is a stage-2 Permission fault
    DEVICE = "device"            # Device-nGnRnE: a Permission fault with HCR_EL2.PTW
    AF_CLEAR = "af-clear"        # AF = 0: Access flag fault (or a stage-2 AF update)
    UNMAPPED = "unmapped"        # no stage-2 entry: stage-2 Translation fault
    BEYOND_PS = "beyond-ps"      # output address beyond VTCR.PS: stage-2 Address size fault
    NO_MEMORY = "no-memory"      # a PA with nothing behind it: External abort on the walk

    @property
    def readable(self) -> bool:
        """Whether the stage-1 bytes are in RAM at the mapped PA."""
        return self in (TablePlacement.MAPPED, TablePlacement.READ_ONLY, TablePlacement.NO_ACCESS,
                        TablePlacement.DEVICE, TablePlacement.AF_CLEAR)

    def leaf_attrs(self) -> LeafAttrs:
        """The stage-2 leaf attributes of a page with this placement.  The
        encodings mean the same with HCR_EL2.FWB = 1: MemAttr 0b1111 is
        "stage 1's attributes" there (Normal Write-Back stage-1 walks stay
        so) and 0b0000 is Device-nGnRnE."""
        if self is TablePlacement.READ_ONLY:
            return LeafAttrs(s2ap=0b01)
        if self is TablePlacement.NO_ACCESS:
            return LeafAttrs(s2ap=0b00)
        if self is TablePlacement.DEVICE:
            return LeafAttrs(memattr=0b0000)
        if self is TablePlacement.AF_CLEAR:
            return LeafAttrs(af=0)
        return LeafAttrs()


@dataclasses.dataclass(frozen=True)
class S1Table:
    """A stage-1 table: its level, IPA and the PA its bytes are at (None
    when stage 2 does not map it to RAM)."""

    level: int
    ipa: int
    pa: int | None
    placement: TablePlacement


@dataclasses.dataclass(frozen=True)
class TwoStageImage:
    """A built two-stage image: the stage-2 image, the stage-1 tables with
    their bytes at PAs, and the TTBR value of the stage-1 root."""

    s2: Image
    s1_regions: tuple[Region, ...]
    s1_root: int
    ttbr: int
    s1_tables: tuple[S1Table, ...]
    s1_window: tuple[int, int]

    @property
    def regions(self) -> tuple[Region, ...]:
        """Every region to place in memory (stage-2 and stage-1 tables)."""
        return tuple(sorted(self.s2.regions + self.s1_regions, key=lambda r: r.pa))


class TwoStageImageBuilder:
    """Stage-1 tables in the IPA window ``s1_window`` = (IPA, size), their
    bytes at ``s1_pa`` onwards (same offsets), stage-2 tables in the PA
    window ``s2_window``.

    ``no_memory``: a PA (granule aligned, nothing behind it) for
    NO_MEMORY placements; ``oa_bits``: the stage-2 output size, for
    BEYOND_PS.  Stage 2 maps the stage-1 window only through
    :meth:`place`: ``map_ipa`` refuses IPAs inside it."""

    def __init__(self, s1_layout: Layout, s1_window: tuple[int, int], s1_pa: int,
                 s2_layout: Layout, s2_window: tuple[int, int], *, vmid: int = 1,
                 oa_bits: int = 48, no_memory: int | None = None) -> None:
        self.s1_layout, self.s2_layout = s1_layout, s2_layout
        self.page_bytes = max(1 << s1_layout.granule.bits, 1 << s2_layout.granule.bits)
        if s1_window[0] % self.page_bytes or s1_pa % self.page_bytes:
            raise ValueError(f"stage-1 window and PA must be {self.page_bytes:#x}-byte aligned")
        self.s1 = _SpacedBuilder(s1_layout, s1_window[0], s1_window[1], self.page_bytes)
        self.s2 = ImageBuilder(s2_layout, s2_window[0], s2_window[1], vmid=vmid)
        self.s1_window, self.s1_pa = s1_window, s1_pa
        self.oa_bits, self.no_memory = oa_bits, no_memory
        self._placement: dict[int, TablePlacement] = {}
        # The stage-2 tables down to the last level for the whole stage-1
        # window are made now, so mapping the table pages at build() never
        # needs room in the stage-2 window that other mappings took.
        for ipa in range(s1_window[0], s1_window[0] + s1_window[1], 1 << s2_layout.granule.bits):
            self.s2.slot_address(ipa, FINAL_LEVEL)

    # -- stage 1 ---------------------------------------------------------
    def map(self, va: int, ipa: int, level: int, attrs: S1LeafAttrs = S1LeafAttrs()) -> int:
        """Stage 1 maps the block/page of ``va`` at ``level`` to ``ipa``;
        returns the descriptor's IPA."""
        return self.s1.plant(va, level, encode_s1_leaf(self.s1_layout, level, ipa, attrs))

    def plant(self, va: int, level: int, desc: int) -> int:
        """Write a raw stage-1 descriptor for ``va`` at ``level``."""
        return self.s1.plant(va, level, desc)

    def table_ipa(self, va: int, level: int) -> int:
        """IPA of the stage-1 table at ``level`` on the path of ``va``
        (tables above it created as needed)."""
        slot = self.s1.slot_address(va, level)
        if level == self.s1_layout.start_level:
            return self.s1.root
        return slot & ~((1 << self.s1_layout.granule.bits) - 1)

    def place(self, table_ipa: int, placement: TablePlacement) -> None:
        """How stage 2 maps the page of the stage-1 table at ``table_ipa``."""
        self._placement[table_ipa - table_ipa % self.page_bytes] = placement

    def pa_of(self, ipa: int) -> int:
        """The PA a mapped stage-1 table IPA gets (same offset as in the window)."""
        return self.s1_pa + (ipa - self.s1_window[0])

    # -- stage 2 ---------------------------------------------------------
    def map_ipa(self, ipa: int, pa: int, level: int, attrs: LeafAttrs = LeafAttrs()) -> int:
        """Stage 2 maps the block/page of ``ipa`` at ``level`` to ``pa``
        (Conflict inside the stage-1 window, or where an entry is taken)."""
        bits = self.s2_layout.geo.block_bits(level)
        lo, size = self.s1_window
        start = ipa >> bits << bits
        if start < lo + size and lo < start + (1 << bits):
            raise Conflict(f"IPA {ipa:#x} at level {level} overlaps the stage-1 table window")
        return self.s2.map(ipa, pa, level, attrs)

    def build(self) -> TwoStageImage:
        s1_image = self.s1.build()
        s2_page = 1 << self.s2_layout.granule.bits
        tables = []
        for level, ipa in s1_image.tables:
            page = ipa - ipa % self.page_bytes
            placement = self._placement.get(page, TablePlacement.MAPPED)
            tables.append(S1Table(level, ipa, self.pa_of(ipa) if placement.readable else None,
                                  placement))
            for off in range(0, self.page_bytes, s2_page):
                self._map_table_page(page + off, placement)
        regions = []
        for region in s1_image.regions:
            page = region.pa - region.pa % self.page_bytes
            if self._placement.get(page, TablePlacement.MAPPED).readable:
                regions.append(Region(self.pa_of(region.pa), region.data))
        return TwoStageImage(s2=self.s2.build(), s1_regions=tuple(regions), s1_root=s1_image.root,
                             ttbr=s1_ttbr(s1_image.root), s1_tables=tuple(tables),
                             s1_window=self.s1_window)

    def _map_table_page(self, ipa: int, placement: TablePlacement) -> None:
        if placement is TablePlacement.UNMAPPED:
            return
        pa = self.pa_of(ipa)
        if placement is TablePlacement.BEYOND_PS:
            if self.oa_bits >= (52 if self.s2_layout.lpa64 or self.s2_layout.ds else 48):
                raise Conflict("no output address beyond PS fits a descriptor")
            pa |= 1 << self.oa_bits
        elif placement is TablePlacement.NO_MEMORY:
            if self.no_memory is None:
                raise Conflict("no PA without memory given")
            pa = self.no_memory
        self.s2.map(ipa, pa, FINAL_LEVEL, placement.leaf_attrs())


class _SpacedBuilder(ImageBuilder):
    """An ImageBuilder whose next-level tables are ``spacing`` bytes apart,
    so that each stage-1 table has stage-2 pages of its own."""

    def __init__(self, layout: Layout, base: int, size: int, spacing: int) -> None:
        super().__init__(layout, base, size)
        self._spacing = spacing
        self._next = -(-self._next // spacing) * spacing

    def _alloc(self, level: int) -> int:
        if self._next + self._spacing > self.window[0] + self.window[1]:
            raise Conflict("image window full")
        pa = super()._alloc(level)
        self._next = pa + self._spacing
        return pa


def aarch32_s1_layout(t0sz: int) -> Layout:
    """The Long-descriptor stage-1 geometry of AArch32.S1WalkLD for TTBR0
    with TTBCR.T0SZ: 4K granule, 32 - T0SZ bits, start level 1 or 2."""
    ia_bits = 32 - t0sz
    return Layout(Granule.G4K, ia_bits, FINAL_LEVEL - (ia_bits - 1 - 12) // 9)


def aarch64_s1_layout(cpu_feat_lpa: bool, granule: Granule, va_bits: int, ds: bool = False) -> Layout:
    """The stage-1 geometry of AArch64.S1Walk (start level from
    AArch64.S1StartLevel) and where its descriptors keep PA[51:48]."""
    start = FINAL_LEVEL - (va_bits - 1 - granule.bits) // granule.stride
    return Layout(granule, va_bits, start, lpa64=cpu_feat_lpa and granule is Granule.G64K, ds=ds)
