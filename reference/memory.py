"""The physical memory a walk reads: table images over zero-filled RAM.

A PA inside one of ``ram`` ranges reads as the image bytes placed there, or
zero where no image byte is placed (the harness guarantees zero-filled RAM
outside the images it loads).  A PA outside every RAM range has nothing
behind it: reading a descriptor there is a synchronous External abort on
the walk.
"""
from __future__ import annotations

import bisect
import dataclasses
import struct

_U64 = struct.Struct("<Q")


@dataclasses.dataclass(frozen=True)
class Region:
    """``data`` placed at physical address ``pa``."""

    pa: int
    data: bytes

    @property
    def end(self) -> int:
        return self.pa + len(self.data)


@dataclasses.dataclass(frozen=True)
class Memory:
    """Read-only view of physical memory for the walker.

    ``ram``: (base, size) ranges in bytes.  ``regions``: non-overlapping
    image regions, each inside RAM."""

    ram: tuple[tuple[int, int], ...]
    regions: tuple[Region, ...] = ()

    def __post_init__(self) -> None:
        regions = tuple(sorted(self.regions, key=lambda r: r.pa))
        object.__setattr__(self, "regions", regions)
        object.__setattr__(self, "_starts", [r.pa for r in regions])
        for a, b in zip(regions, regions[1:]):
            if a.end > b.pa:
                raise ValueError(f"image regions overlap at {b.pa:#x}")

    def is_ram(self, pa: int) -> bool:
        # A loop, not any() over a generator: a walk asks this for every
        # descriptor it reads, and the generator cost most of the read.
        for base, size in self.ram:
            if base <= pa < base + size:
                return True
        return False

    def ram_overlaps(self, lo: int, hi: int) -> bool:
        """Whether any byte of [lo, hi] (inclusive) is RAM."""
        return any(base <= hi and lo < base + size for base, size in self.ram)

    def read64(self, pa: int) -> int | None:
        """The little-endian 64-bit word at ``pa`` (8-byte aligned), or None
        when no memory is behind it."""
        if not self.is_ram(pa):
            return None
        i = bisect.bisect_right(self._starts, pa) - 1  # type: ignore[attr-defined]
        if i >= 0:
            region = self.regions[i]
            offset = pa - region.pa
            if offset + 8 <= len(region.data):
                return _U64.unpack_from(region.data, offset)[0]
        return 0
