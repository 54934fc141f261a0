"""Stage-2 configuration: VTCR/VTTBR as a value type, and the geometry every
other module derives from it.

``S2Config`` holds the raw architectural fields (VTCR_EL2 or the AArch32
VTCR) exactly as programmed, legal or not: an invalid configuration is not an
exception, walking under it produces the architected fault (see walk.py).

``geometry(granule, ia_bits, start_level)`` is the one function that says
how an input address is cut into table indices; everything (catalogue,
walker, image builder) goes through it.
"""
from __future__ import annotations

import dataclasses
import functools

from .arch import Arch, Granule
from .bits import bit, field, place

FINAL_LEVEL = 3

# VTCR_EL2.TG0 encoding (Arm ARM D19.2, VTCR_EL2): note 0b01 is 64K and 0b10
# is 16K, unlike TCR_EL1.TG1.
TG0_ENCODING = {Granule.G4K: 0b00, Granule.G64K: 0b01, Granule.G16K: 0b10}
TG0_DECODING = {v: k for k, v in TG0_ENCODING.items()}

# VTCR_EL2.PS -> output address size in bits (AArch64.PhysicalAddressSize).
# 0b111 (56 bits) exists only with FEAT_D128, which the model does not implement;
# the size is capped by PAMax anyway.
PS_BITS = {0b000: 32, 0b001: 36, 0b010: 40, 0b011: 42, 0b100: 44, 0b101: 48, 0b110: 52, 0b111: 56}
PS_ENCODING = {bits: enc for enc, bits in PS_BITS.items() if bits != 56}

VTCR_EL2_RES1 = 1 << 31
VTCR_A32_RES1 = 1 << 31


@dataclasses.dataclass(frozen=True)
class Geometry:
    """How a ``ia_bits``-bit input address is resolved from ``start_level``.

    Levels are counted the Arm ARM way: 3 is the final (page) level, -1 the
    extra level that FEAT_LPA2 adds for 4K.  Sizes are in bytes unless a
    name ends in ``_bits`` (log2 of a size, or a count of address bits).
    """

    granule: Granule
    ia_bits: int
    start_level: int
    # Derived in __post_init__; not part of the value (equality, hash, repr).
    _lsb: dict[int, int] = dataclasses.field(init=False, repr=False, compare=False)
    _msb: dict[int, int] = dataclasses.field(init=False, repr=False, compare=False)
    _stride: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Field extents per level, computed once: walks ask for them on
        # every descriptor they read.
        gbits, stride = self.granule.bits, self.granule.stride
        lsb = {lvl: gbits + (FINAL_LEVEL - lvl) * stride for lvl in range(-1, FINAL_LEVEL + 1)}
        msb = {lvl: (self.ia_bits - 1 if lvl == self.start_level else lsb[lvl] + stride - 1)
               for lvl in lsb}
        object.__setattr__(self, "_lsb", lsb)
        object.__setattr__(self, "_msb", msb)
        object.__setattr__(self, "_stride", stride)

    @property
    def stride(self) -> int:
        return self._stride

    @property
    def levels(self) -> int:
        """Number of lookup levels, start level and final level included."""
        return FINAL_LEVEL - self.start_level + 1

    def level_lsb(self, level: int) -> int:
        """Lowest input-address bit indexed at ``level``; also log2 of the
        size of the block (or page) a leaf at ``level`` maps:
        granule bits + (3 - level) * stride (TranslationSize in the ASL)."""
        return self._lsb[level]

    def level_msb(self, level: int) -> int:
        """Highest input-address bit indexed at ``level``.  At the start
        level this is ia_bits - 1, which spans the concatenated tables."""
        return self._msb[level]

    @property
    def start_bits(self) -> int:
        """Input-address bits resolved at the start level (1 .. stride + 4
        when consistent: AArch64.S2InconsistentSL)."""
        return self.ia_bits - self.level_lsb(self.start_level)

    @property
    def consistent(self) -> bool:
        """The start level can resolve this IPA size: at least one bit, at
        most a full table plus 4 bits of concatenation (16 tables)."""
        return 1 <= self.start_bits <= self.stride + 4

    @property
    def concat(self) -> int:
        """Number of concatenated tables at the start level (1 to 16)."""
        return 1 << max(0, self.start_bits - self.stride)

    @property
    def root_entries(self) -> int:
        """Descriptors in the start-level table(s), all concatenated tables counted."""
        return 1 << self.start_bits

    @property
    def root_bytes(self) -> int:
        """Size in bytes of the start-level table(s): 8 bytes per descriptor."""
        return self.root_entries * 8

    @property
    def table_bytes(self) -> int:
        """Size in bytes of one full next-level table: one granule."""
        return 1 << self.granule.bits

    def index(self, level: int, ia: int) -> int:
        """Index of the descriptor for ``ia`` in the table at ``level``
        (at the start level, across the concatenated tables)."""
        lsb = self._lsb[level]
        return (ia >> lsb) & ((1 << (self._msb[level] - lsb + 1)) - 1)

    def block_bits(self, level: int) -> int:
        """log2 of the bytes a leaf at ``level`` maps."""
        return self.level_lsb(level)


@functools.lru_cache(maxsize=1024)
def geometry(granule: Granule, ia_bits: int, start_level: int) -> Geometry:
    """The geometry of a stage-2 walk; see :class:`Geometry` (immutable,
    so one instance per distinct argument set serves every walk)."""
    return Geometry(granule, ia_bits, start_level)


@dataclasses.dataclass(frozen=True)
class S2Config:
    """A stage-2 configuration as programmed: VTCR fields plus VTTBR.

    Fields carry the architectural names.  For AArch32 (``arch`` AARCH32)
    ``t0sz`` is the signed 4-bit VTCR.T0SZ (-8 .. 7) and ``s`` is VTCR.S,
    which the architecture requires to equal T0SZ[3]; TG0, PS, HA, HD, DS,
    SL2 and S2PIE do not exist there and must be 0.

    ``s2pie`` is VTCR_EL2.S2PIE (bit 36, FEAT_S2PIE) and ``s2pir`` the value
    of S2PIR_EL2, the register it selects the stage-2 permissions from
    (AArch64.NSS2TTWParams reads both); S2PIR_EL2 is not part of VTCR, so
    ``vtcr()`` does not hold it.
    """

    arch: Arch
    t0sz: int
    sl0: int
    tg0: int = 0
    ps: int = 0
    irgn0: int = 0
    orgn0: int = 0
    sh0: int = 0
    ha: int = 0
    hd: int = 0
    ds: int = 0
    sl2: int = 0
    vs: int = 0
    s: int | None = None
    vttbr: int = 0
    s2pie: int = 0
    s2pir: int = 0

    # -- register encodings ------------------------------------------------

    def vtcr(self) -> int:
        """The register value: VTCR_EL2 (64-bit) or the AArch32 VTCR (32-bit)."""
        if self.arch is Arch.AARCH64:
            return (VTCR_EL2_RES1
                    | place(self.t0sz, 5, 0) | place(self.sl0, 7, 6)
                    | place(self.irgn0, 9, 8) | place(self.orgn0, 11, 10)
                    | place(self.sh0, 13, 12) | place(self.tg0, 15, 14)
                    | place(self.ps, 18, 16) | place(self.vs, 19, 19)
                    | place(self.ha, 21, 21) | place(self.hd, 22, 22)
                    | place(self.ds, 32, 32) | place(self.sl2, 33, 33)
                    | place(self.s2pie, 36, 36))
        s = self.s if self.s is not None else (self.t0sz >> 3) & 1
        return (VTCR_A32_RES1
                | place(self.t0sz & 0xF, 3, 0) | place(s, 4, 4)
                | place(self.sl0, 7, 6) | place(self.irgn0, 9, 8)
                | place(self.orgn0, 11, 10) | place(self.sh0, 13, 12))

    @classmethod
    def from_vtcr(cls, arch: Arch, value: int, vttbr: int = 0, s2pir: int = 0) -> "S2Config":
        """Decode a VTCR value (with the VTTBR and, for AArch64, the
        S2PIR_EL2 that go with it).  Bits the model does not interpret are
        dropped."""
        if arch is Arch.AARCH64:
            return cls(arch=arch, t0sz=field(value, 5, 0), sl0=field(value, 7, 6),
                       irgn0=field(value, 9, 8), orgn0=field(value, 11, 10),
                       sh0=field(value, 13, 12), tg0=field(value, 15, 14),
                       ps=field(value, 18, 16), vs=bit(value, 19), ha=bit(value, 21),
                       hd=bit(value, 22), ds=bit(value, 32), sl2=bit(value, 33),
                       s2pie=bit(value, 36), vttbr=vttbr, s2pir=s2pir)
        if s2pir:
            raise ValueError("S2PIR_EL2 exists only for AArch64 (FEAT_S2PIE)")
        raw = field(value, 3, 0)
        return cls(arch=arch, t0sz=raw - 16 if raw & 8 else raw, s=bit(value, 4),
                   sl0=field(value, 7, 6), irgn0=field(value, 9, 8),
                   orgn0=field(value, 11, 10), sh0=field(value, 13, 12), vttbr=vttbr)

    def with_vttbr(self, vttbr: int) -> "S2Config":
        return dataclasses.replace(self, vttbr=vttbr)

    # -- convenience views ---------------------------------------------------

    @property
    def granule(self) -> Granule | None:
        """The granule TG0 names, or None for the reserved encoding 0b11."""
        if self.arch is Arch.AARCH32:
            return Granule.G4K
        return TG0_DECODING.get(self.tg0)

    @property
    def ia_bits(self) -> int:
        """Input (IPA) size in bits as programmed: 64 - T0SZ, or 32 - T0SZ (AArch32)."""
        return (64 if self.arch is Arch.AARCH64 else 32) - self.t0sz

    def describe(self) -> str:
        g = self.granule.label if self.granule else f"TG0={self.tg0:#b}"
        if self.arch is Arch.AARCH64:
            extra = "".join(f" {n}=1" for n in ("ha", "hd", "ds", "sl2") if getattr(self, n))
            if self.s2pie:
                extra += f" S2PIE=1 S2PIR_EL2={self.s2pir:#018x}"
            return (f"aarch64 {g} T0SZ={self.t0sz} ({self.ia_bits}-bit IPA) SL0={self.sl0} "
                    f"PS={self.ps:#05b}{extra} VTCR_EL2={self.vtcr():#x}")
        return (f"arm {g} T0SZ={self.t0sz} ({self.ia_bits}-bit IPA) SL0={self.sl0} "
                f"VTCR={self.vtcr():#010x}")


def aarch64_config(granule: Granule, ia_bits: int, start_level: int, *, ps_bits: int,
                   ds: int = 0, ha: int = 0, hd: int = 0, vttbr: int = 0,
                   sh0: int = 0b11, irgn0: int = 0b01, orgn0: int = 0b01) -> S2Config:
    """Build the VTCR_EL2 fields that select ``start_level`` for ``granule``
    (the inverse of AArch64.S2StartLevel).  Inner/outer write-back and
    inner-shareable walks are the defaults, as Linux KVM programs them."""
    sl2 = 0
    if granule is Granule.G4K:
        sl0 = {2: 0b00, 1: 0b01, 0: 0b10, 3: 0b11, -1: 0b00}[start_level]
        sl2 = 1 if start_level == -1 else 0
    else:
        sl0 = {3: 0b00, 2: 0b01, 1: 0b10, 0: 0b11}[start_level]
    return S2Config(arch=Arch.AARCH64, t0sz=64 - ia_bits, sl0=sl0, tg0=TG0_ENCODING[granule],
                    ps=PS_ENCODING[ps_bits], irgn0=irgn0, orgn0=orgn0, sh0=sh0, ha=ha, hd=hd,
                    ds=ds, sl2=sl2, vttbr=vttbr)


def aarch32_config(ia_bits: int, start_level: int, *, vttbr: int = 0,
                   sh0: int = 0b11, irgn0: int = 0b01, orgn0: int = 0b01) -> S2Config:
    """The AArch32 VTCR fields for an IPA size and start level (SL0 = 0 is
    level 2, SL0 = 1 is level 1); S is set to T0SZ[3] as required."""
    sl0 = {2: 0b00, 1: 0b01}[start_level]
    return S2Config(arch=Arch.AARCH32, t0sz=32 - ia_bits, sl0=sl0, sh0=sh0,
                    irgn0=irgn0, orgn0=orgn0, vttbr=vttbr)
