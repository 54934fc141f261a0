"""The job ABI between the host and the guest stubs (docs/job-abi.md).

Longer than 500 lines because the ABI is defined once: packing and
unpacking of every record kind mirror each other and stay side by side.

A *job* is one blob loaded into guest RAM: stage-2 table regions to copy to
their PAs, images (VTCR, VTTBR, where the image maps the stub's EL1 window,
a run of probes) and probes (IPA, kind, flags, two data words; the kinds are
AT instructions, EL1/PL1 access routines and maintenance, see
docs/job-abi.md).
The stub writes a *results* area: a header (status, progress counters, ID
registers, fatal details) and one fixed-size record per probe.

Every guest address comes from the stub ELF's symbols (``JobLayout``, read
by harness.qemu.elf); the record layouts below are the ABI itself, versioned
by ``ABI_VERSION`` and checked against the stub's ``__s2_abi_version``.

Packing and unpacking are pure functions on bytes, so they are tested
without QEMU.  Both work on whole tables at once (array/memoryview) because
one boot carries thousands of images and ~10^5 probes.
"""
from __future__ import annotations

import array
import enum
import functools
import mmap
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from reference.access import AccessKind
from reference.arch import Arch
from reference.stage1 import AtOp

from ..errors import UsageError

ABI_VERSION = 3
JOB_MAGIC = 0x424A3253          # b"S2JB" read as a little-endian u32
RESULTS_MAGIC = 0x53523253      # b"S2RS"
HANG_OFF = 0xFFFF_FFFF          # hang_after value meaning "never"

# Job blob: header, then the image, probe and region tables, then region data.
_JOB_HEADER = struct.Struct("<6I5Q")   # magic version n_images n_probes n_regions hang_after
JOB_HEADER_SIZE = _JOB_HEADER.size      # + image/probe/region/data offsets, total size
IMAGE_RECORD_SIZE = 88                  # vtcr vttbr u64, first_probe n_probes u32, el1_ipa s2pir
#                                         hcr sctlr tcr ttbr0 ttbr1 mair u64
PROBE_RECORD_SIZE = 32                  # ipa u64, kind u32, flags u32, data u64, data2 u64
REGION_RECORD_SIZE = 24                 # pa u64, len u64, offset-in-job u64
_IMAGE_RECORD = struct.Struct("<QQIIQQQQQQQQ")
assert _IMAGE_RECORD.size == IMAGE_RECORD_SIZE
_REGION_RECORD = struct.Struct("<QQQ")

# Results: header of u64 slots, then one record of RECORD_WORDS u64 per probe.
RESULTS_HEADER_SIZE = 0x100
RECORD_WORDS = 8                        # kind par|data0 esr far hpfar vector elr data1
RECORD_SIZE = RECORD_WORDS * 8
_RH_STATUS, _RH_IMAGES_DONE, _RH_PROBES_DONE = 1, 2, 3        # u64 slot indices
_RH_FATAL = 4                           # reason vector esr elr far detail (slots 4..9)
_RH_IDREGS = 0x80 // 8                  # 16 slots
ID_SLOTS = 16

# Guest memory accesses with the MMU off are Device/Strongly-ordered and
# fault when unaligned, so regions are copied in aligned 8-byte words.
REGION_ALIGN = 8

_LITTLE = sys.byteorder == "little"

ID_REGISTER_NAMES: Mapping[Arch, tuple[str, ...]] = MappingProxyType({
    Arch.AARCH64: ("MIDR_EL1", "ID_AA64MMFR0_EL1", "ID_AA64MMFR1_EL1",
                   "ID_AA64MMFR2_EL1", "ID_AA64PFR0_EL1", "DCZID_EL0", "ID_AA64MMFR3_EL1",
                   "ID_AA64PFR1_EL1", "ID_AA64ISAR1_EL1"),
    Arch.AARCH32: ("MIDR", "ID_MMFR0", "ID_MMFR3", "ID_MMFR4", "ID_PFR1", "ID_PFR0", "ID_DFR0"),
})
"""Names of the ID-register slots, in slot order (docs/job-abi.md)."""


class ObsKind(enum.Enum):
    """What the stub recorded for one probe (word 0 of its record)."""

    NOT_RUN = 0
    PAR = 1         # the AT completed; ``par`` holds PAR_EL1 / the 64-bit PAR
    EXCEPTION = 2   # an exception taken to EL2/Hyp (the AT's, or an access routine's);
                    # esr/far/hpfar/vector/elr hold it
    ACCESS_DONE = 3     # the access routine returned (HVC); word 1 and 7 hold its values
    EL1_EXCEPTION = 4   # an exception taken to EL1 and handed over: ESR_EL1/FAR_EL1/ELR_EL1
    MAINT_DONE = 5      # a descriptor write or VTTBR switch ran; word 1 the value replaced


class GuestStatus(enum.Enum):
    """Results-header status as the stub left it."""

    NOT_STARTED = 0     # the stub never ran (the RAM file starts zeroed)
    RUNNING = 1         # started, did not reach the end (crash, hang, kill)
    COMPLETED = 2
    FATAL = 3           # unexpected exception or job error; see FatalInfo


class FatalReason(enum.Enum):
    """Why the stub stopped with GuestStatus.FATAL."""

    NONE = 0
    EXCEPTION = 1       # an exception that was not a probe's
    BAD_MAGIC = 2       # the job header's magic is wrong (no job loaded?)
    BAD_VERSION = 3     # job built for another ABI version
    BAD_KIND = 4        # probe kind the stub does not run; detail = the kind
    BAD_REGION = 5      # region outside the arena or not 8-byte aligned; detail = its PA


@dataclass(frozen=True)
class JobLayout:
    """Guest addresses of the stub ELF (its ``__s2_*`` symbols), in bytes.

    Areas are half-open [start, end)."""

    arch: Arch
    abi_version: int
    ram_base: int
    ram_size: int
    results_start: int
    results_end: int
    job_start: int
    job_end: int
    arena_start: int
    arena_end: int

    SYMBOLS = ("__s2_abi_version", "__s2_ram_base", "__s2_ram_size",
               "__s2_results_start", "__s2_results_end", "__s2_job_start",
               "__s2_job_end", "__s2_arena_start", "__s2_arena_end")

    @classmethod
    def from_symbols(cls, arch: Arch, symbols: Mapping[str, int]) -> "JobLayout":
        missing = [s for s in cls.SYMBOLS if s not in symbols]
        if missing:
            raise UsageError(f"stub ELF lacks the job-ABI symbols {', '.join(missing)}")
        return cls(arch, *(symbols[s] for s in cls.SYMBOLS))

    @property
    def max_probes(self) -> int:
        """How many probe records fit in the results area."""
        return (self.results_end - self.results_start - RESULTS_HEADER_SIZE) // RECORD_SIZE

    @property
    def job_capacity(self) -> int:
        """Bytes available for the job blob."""
        return self.job_end - self.job_start


@dataclass(frozen=True, slots=True)
class JobProbe:
    """One AT operation on one input address: the IPA with stage 1 off
    (VA == IPA), the VA with stage 1 on.  ``at``: an AtKind (0..3) or a
    reference.stage1.AtOp (0..7); only its ``code`` is used."""

    ipa: int
    at: Any


# What an image runs under unless it says otherwise: stage 2 alone.
# HCR_EL2 = RW | VM, SCTLR_EL1 = its v8.0 RES1 bits (M = 0); AArch32 HCR =
# VM (HCR2 0) and no SCTLR bit set (the stub clears M, C, WXN, UWXN).
DEFAULT_HCR = MappingProxyType({Arch.AARCH64: 0x8000_0001, Arch.AARCH32: 0x1})
DEFAULT_SCTLR = MappingProxyType({Arch.AARCH64: 0x30D0_0800, Arch.AARCH32: 0})
HCR_VM = 1 << 0
HCR_RW = 1 << 31


@dataclass(frozen=True)
class JobImage:
    """One stage-2 configuration (and stage 1, when on) and the probes run
    under it.

    ``regions`` are table bytes to place at a PA in the arena before the
    batch starts: (pa, data), pa and len(data) multiples of 8.  ``vtcr`` is
    the VTCR_EL2 / VTCR value (32-bit on AArch32), ``vttbr`` the 64-bit
    VTTBR, ``s2pir`` S2PIR_EL2 (AArch64; the stub writes it only on a CPU
    with FEAT_S2PIE).  ``probes``: JobProbe (AT) records or a PROBE_DTYPE
    array (any kind).  ``el1_ipa``: the IPA at which the image maps the
    stub's EL1 window (its access routines and EL1 vectors); only access
    probes use it.  The EL1&0 regime (docs/job-abi.md): ``hcr`` HCR_EL2
    (AArch32: HCR | HCR2 << 32), ``sctlr`` SCTLR_EL1 (AArch32: the SCTLR
    bits M, C, WXN, UWXN to set), ``tcr`` TCR_EL1 (TTBCR), ``ttbr0``,
    ``ttbr1``, ``mair`` MAIR_EL1 (MAIR0 | MAIR1 << 32); None for ``hcr``
    and ``sctlr`` means stage 2 alone (DEFAULT_HCR, DEFAULT_SCTLR)."""

    vtcr: int
    vttbr: int
    regions: tuple[tuple[int, bytes], ...]
    probes: Sequence[JobProbe] | np.ndarray    # rows of PROBE_DTYPE, as probe_table takes
    el1_ipa: int = 0
    s2pir: int = 0
    hcr: int | None = None
    sctlr: int | None = None
    tcr: int = 0
    ttbr0: int = 0
    ttbr1: int = 0
    mair: int = 0


@dataclass(frozen=True, slots=True)
class RawObservation:
    """One probe's raw registers, unjudged (PAR with ``kind`` PAR; ESR/HSR,
    FAR/HDFAR, HPFAR, vector offset and ELR with ``kind`` EXCEPTION)."""

    kind: ObsKind
    par: int = 0
    esr: int = 0
    far: int = 0
    hpfar: int = 0
    vector: int = 0
    elr: int = 0


NOT_RUN = RawObservation(ObsKind.NOT_RUN)


def row_observation(row) -> RawObservation:
    """A results-table row (RECORD_WORDS u64: kind par esr far hpfar vector
    elr reserved) as an observation."""
    kind, *values = (int(v) for v in row[:7])
    return NOT_RUN if kind == ObsKind.NOT_RUN.value else RawObservation(ObsKind(kind), *values)


@dataclass(frozen=True)
class FatalInfo:
    """The stub's own account of a fatal stop (results header slots 4..9)."""

    reason: FatalReason
    vector: int
    esr: int
    elr: int
    far: int
    detail: int


@dataclass(frozen=True)
class ImageResult:
    """Observations of one image's probes, in probe order, and its table
    regions as read back after the run ((pa, bytes), same order as the
    image's ``regions``).  ``completed``: the stub finished every probe of
    the image (index < images_done).

    ``records`` is the raw results table of the image, one row of
    RECORD_WORDS u64 per probe (kind par esr far hpfar vector elr
    reserved): the bulk comparison reads it directly; ``observations``
    builds the value objects on first use."""

    records: np.ndarray
    regions_after: tuple[tuple[int, bytes], ...]
    completed: bool

    @classmethod
    def not_run(cls, n_probes: int) -> "ImageResult":
        return cls(np.zeros((n_probes, RECORD_WORDS), dtype=np.uint64), (), False)

    @functools.cached_property
    def observations(self) -> tuple[RawObservation, ...]:
        return tuple(row_observation(row) for row in self.records.tolist())


@dataclass(frozen=True)
class JobResults:
    """Everything the results area says, per image."""

    status: GuestStatus
    images_done: int
    probes_done: int
    id_registers: Mapping[str, int]
    images: tuple[ImageResult, ...]
    fatal: FatalInfo | None


# --- guest RAM as the host sees it -------------------------------------------

@runtime_checkable
class RamReader(Protocol):
    """Reads guest physical memory: ``read(pa, length)`` returns exactly
    ``length`` bytes (zeros where nothing was ever written)."""

    def read(self, pa: int, length: int) -> bytes: ...


@dataclass(frozen=True)
class RamBytes:
    """Guest RAM held in memory, ``data[0]`` at physical address ``base``."""

    base: int
    data: bytes | bytearray | memoryview

    def read(self, pa: int, length: int) -> bytes:
        off = pa - self.base
        if off < 0 or off + length > len(self.data):
            raise UsageError(f"read of {length} bytes at PA {pa:#x} is outside the recorded RAM")
        return bytes(self.data[off:off + length])


@dataclass(frozen=True)
class SparseRam:
    """Recorded pieces of guest RAM ((pa, bytes) chunks); a read must fall
    inside one chunk.  Enough to replay unpacking from a saved run."""

    chunks: tuple[tuple[int, bytes], ...]

    def read(self, pa: int, length: int) -> bytes:
        for base, data in self.chunks:
            if base <= pa and pa + length <= base + len(data):
                return bytes(data[pa - base:pa - base + length])
        raise UsageError(f"read of {length} bytes at PA {pa:#x} is outside the recorded RAM")


class RamFile:
    """Guest RAM backed by a file (QEMU memory-backend-file), file offset 0
    at PA ``base``.  Bytes past the end of a short file read as zero.

    Holds the file open (one open for thousands of region reads); use as a
    context manager or call close()."""

    def __init__(self, path: Path, base: int) -> None:
        self.path = Path(path)
        self.base = base
        self._fd: int | None = os.open(self.path, os.O_RDONLY)
        self._map: mmap.mmap | None = None

    def view(self, pa: int, length: int) -> memoryview | bytes:
        """The ``length`` bytes at ``pa`` without copying them: a view of
        the file mapped read-only (a batch's results area is tens of MB;
        read() would copy it and fault in as many fresh pages).  The mapping
        lives as long as any view of it, after close() and after the file is
        unlinked.  A range past the end of the file (a short RAM file: QEMU
        died before sizing it) is read() instead, zeros and all: a mapping
        would fault there."""
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        off = pa - self.base
        if off < 0:
            raise UsageError(f"PA {pa:#x} is below the RAM base {self.base:#x}")
        if not length or off + length > os.fstat(self._fd).st_size:
            return self.read(pa, length)
        if self._map is None:
            self._map = mmap.mmap(self._fd, 0, prot=mmap.PROT_READ)
        return memoryview(self._map)[off:off + length]

    def read(self, pa: int, length: int) -> bytes:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        off = pa - self.base
        if off < 0:
            raise UsageError(f"PA {pa:#x} is below the RAM base {self.base:#x}")
        data = os.pread(self._fd, length, off)
        return data + bytes(length - len(data))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        # Not mmap.close(): views handed out by view() may still be alive;
        # the mapping goes with the last of them.
        self._map = None

    def __enter__(self) -> "RamFile":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- packing ------------------------------------------------------------------

def _align(n: int, a: int = 8) -> int:
    return (n + a - 1) & ~(a - 1)


def _check_regions(layout: JobLayout, images: Sequence[JobImage]) -> None:
    spans = []
    for i, image in enumerate(images):
        for pa, data in image.regions:
            n = len(data)
            if pa % REGION_ALIGN or n % REGION_ALIGN:
                raise UsageError(f"image {i}: region at PA {pa:#x} ({n} bytes) is not "
                                 f"{REGION_ALIGN}-byte aligned in address and length")
            if n == 0:
                raise UsageError(f"image {i}: empty region at PA {pa:#x}")
            if pa < layout.arena_start or pa + n > layout.arena_end:
                raise UsageError(f"image {i}: region [{pa:#x}, {pa + n:#x}) is outside the arena "
                                 f"[{layout.arena_start:#x}, {layout.arena_end:#x})")
            spans.append((pa, pa + n, i))
    spans.sort()
    for (a0, a1, ai), (b0, b1, bi) in zip(spans, spans[1:]):
        if b0 < a1:
            raise UsageError(f"regions overlap: image {ai} [{a0:#x}, {a1:#x}) and "
                             f"image {bi} [{b0:#x}, {b1:#x})")


PROBE_DTYPE = np.dtype([("ipa", "<u8"), ("kind", "<u4"), ("flags", "<u4"),
                        ("data", "<u8"), ("data2", "<u8")])
assert PROBE_DTYPE.itemsize == PROBE_RECORD_SIZE


def probe_table(probes: Sequence[JobProbe] | np.ndarray) -> np.ndarray:
    """Probes as rows of PROBE_DTYPE: a JobProbe sequence, or an array of
    that dtype already (the bulk path builds those directly)."""
    if isinstance(probes, np.ndarray):
        if probes.dtype != PROBE_DTYPE:
            raise UsageError(f"probe array of dtype {probes.dtype}, expected {PROBE_DTYPE}")
        return probes
    table = np.zeros(len(probes), dtype=PROBE_DTYPE)
    try:
        table["ipa"] = [p.ipa for p in probes]
        table["kind"] = [p.at.value for p in probes]
    except (OverflowError, TypeError, AttributeError, ValueError) as exc:
        raise UsageError(f"probe with an IPA outside 0..2^64-1 or a kind that is not an AT "
                         f"operation: {exc}") from exc
    return table


KIND_DESC_WRITE = 128     # ipa = descriptor PA, data = new value, data2 = IPA for TLBI IPAS2E1IS
KIND_SET_VTTBR = 129      # data = the VTTBR to switch to


@functools.lru_cache(maxsize=None)
def probe_kinds(arch: Arch) -> np.ndarray:
    """Every probe kind code the ``arch`` stub runs: AT, its access
    routines, maintenance (docs/job-abi.md)."""
    codes = [op.code for op in AtOp] + [k.code for k in AccessKind if k.arch is arch]
    return np.array(sorted(codes + [KIND_DESC_WRITE, KIND_SET_VTTBR]), dtype=np.uint32)


@functools.lru_cache(maxsize=None)
def _runnable_kinds(arch: Arch) -> np.ndarray:
    """A lookup table over kind codes: True for the kinds probe_kinds lists."""
    codes = probe_kinds(arch)
    runs = np.zeros(int(codes.max()) + 1, dtype=bool)
    runs[codes] = True
    return runs


def _regime(arch: Arch, i: int, im: JobImage) -> tuple[int, ...]:
    """(s2pir, hcr, sctlr, tcr, ttbr0, ttbr1, mair) of an image record,
    checked against the registers they go to."""
    narrow = arch is Arch.AARCH32
    hcr = DEFAULT_HCR[arch] if im.hcr is None else im.hcr
    sctlr = DEFAULT_SCTLR[arch] if im.sctlr is None else im.sctlr
    values = {"VTCR": (im.vtcr, 32 if narrow else 64), "VTTBR": (im.vttbr, 64),
              "EL1 window IPA": (im.el1_ipa, 32 if narrow else 64), "S2PIR": (im.s2pir, 64),
              "HCR": (hcr, 64), "SCTLR": (sctlr, 32 if narrow else 64),
              "TCR": (im.tcr, 32 if narrow else 64), "TTBR0": (im.ttbr0, 64),
              "TTBR1": (im.ttbr1, 64), "MAIR": (im.mair, 64)}
    for name, (value, bits) in values.items():
        if not 0 <= value < 1 << bits:
            raise UsageError(f"image {i}: {name} {value:#x} does not fit {bits} bits")
    if narrow and im.s2pir:
        raise UsageError(f"image {i}: S2PIR_EL2 exists only for AArch64 (FEAT_S2PIE)")
    needed = HCR_VM | (0 if narrow else HCR_RW)
    if hcr & needed != needed:
        raise UsageError(f"image {i}: HCR {hcr:#x} lacks VM{'' if narrow else ' or RW'} "
                         "(the stub runs EL1&0 with stage 2 on, AArch64 at EL1)")
    return (im.s2pir, hcr, sctlr, im.tcr, im.ttbr0, im.ttbr1, im.mair)


@dataclass(frozen=True)
class PackedJob:
    """A checked job blob, kept as its pieces (prepare_job): written to a
    file piece by piece (``write``), the ~10^6 probe rows straight from the
    images' arrays, with no blob of the whole job built in memory (a fresh
    30-80 MB buffer cost ~12 ms of page faults a boot, more than the rest of
    packing); ``to_bytes`` builds the blob where one is wanted."""

    head: bytes                     # job header and image records
    tables: tuple[np.ndarray, ...]  # each image's probe rows (PROBE_DTYPE, contiguous)
    region_records: bytes
    data: tuple[bytes | bytearray | memoryview, ...]   # each region's bytes, in order
    size: int

    def pieces(self) -> Iterator[bytes | bytearray | memoryview]:
        yield self.head
        for table in self.tables:
            if len(table):
                yield table.view(np.uint8).data
        yield self.region_records
        # Each region's length is a multiple of REGION_ALIGN (_check_regions):
        # the data follow each other with no padding.
        yield from self.data

    def write(self, path: Path | str) -> None:
        with open(path, "wb") as f:
            for piece in self.pieces():
                f.write(piece)

    def to_bytes(self) -> bytearray:
        blob = bytearray(self.size)
        at = 0
        for piece in self.pieces():
            blob[at:at + len(piece)] = piece
            at += len(piece)
        assert at == self.size
        return blob


def pack_job(layout: JobLayout, images: Sequence[JobImage], hang_after: int | None = None) -> bytearray:
    """Serialise ``images`` into a job blob for the stub described by
    ``layout`` (prepare_job, as one bytearray)."""
    return prepare_job(layout, images, hang_after).to_bytes()


def prepare_job(layout: JobLayout, images: Sequence[JobImage],
                hang_after: int | None = None) -> PackedJob:
    """Check ``images`` for the stub described by ``layout`` and lay out
    their job blob (PackedJob).

    ``hang_after``: image index after which the stub spins forever (a fault-
    injection hook for timeout tests); None = never.  Raises UsageError for
    anything the stub cannot run: regions outside the arena, overlapping or
    misaligned; values too wide for the architecture; a blob or a probe count
    that does not fit the job or results area."""
    if layout.abi_version != ABI_VERSION:
        raise UsageError(f"stub speaks job ABI {layout.abi_version}, the harness {ABI_VERSION}")
    if hang_after is None:
        hang = HANG_OFF
    elif 0 <= hang_after < HANG_OFF:
        hang = hang_after
    else:
        raise UsageError(f"hang_after must be an image index, not {hang_after}")
    _check_regions(layout, images)

    narrow = layout.arch is Arch.AARCH32
    n_images = len(images)
    n_probes = sum(len(im.probes) for im in images)
    n_regions = sum(len(im.regions) for im in images)
    if n_probes > layout.max_probes:
        raise UsageError(f"{n_probes} probes do not fit the results area (max {layout.max_probes})")

    image_off = JOB_HEADER_SIZE
    probe_off = image_off + IMAGE_RECORD_SIZE * n_images
    region_off = probe_off + PROBE_RECORD_SIZE * n_probes
    data_off = region_off + REGION_RECORD_SIZE * n_regions
    total = data_off + sum(_align(len(d)) for im in images for _, d in im.regions)
    if total > layout.job_capacity:
        raise UsageError(f"job blob of {total} bytes exceeds the job area ({layout.job_capacity} bytes)")

    head = bytearray(probe_off)
    _JOB_HEADER.pack_into(head, 0, JOB_MAGIC, ABI_VERSION, n_images, n_probes, n_regions, hang,
                          image_off, probe_off, region_off, data_off, total)
    first = 0
    for i, im in enumerate(images):
        regime = _regime(layout.arch, i, im)
        _IMAGE_RECORD.pack_into(head, image_off + IMAGE_RECORD_SIZE * i,
                                im.vtcr, im.vttbr, first, len(im.probes), im.el1_ipa, *regime)
        first += len(im.probes)

    # Probe table: (ipa u64, kind u32, flags u32, data u64, data2 u64) rows,
    # each image's rows as they are (a batch carries ~10^6 of them).
    tables = tuple(np.ascontiguousarray(probe_table(im.probes)) for im in images)
    runs = _runnable_kinds(layout.arch)
    for table in tables:
        if not len(table):
            continue
        kinds = table["kind"]
        known = kinds < len(runs)
        if not known.all() or not runs[kinds].all():
            bad = kinds[~known | ~runs[np.minimum(kinds, len(runs) - 1)]]
            raise UsageError(f"probe kind {int(bad.min())} is not one the {layout.arch.value} "
                             "stub runs")
        if narrow and int(table["ipa"].max()) >= 1 << 32:
            raise UsageError("AArch32 probes need input addresses below 4 GiB (a 32-bit VA; "
                             "with stage 1 off VA == IPA)")

    records = bytearray(REGION_RECORD_SIZE * n_regions)
    data: list[bytes | bytearray | memoryview] = []
    data_at = data_off
    r = 0
    for im in images:
        for pa, region in im.regions:
            _REGION_RECORD.pack_into(records, REGION_RECORD_SIZE * r, pa, len(region), data_at)
            data.append(region)
            data_at += _align(len(region))
            r += 1
    return PackedJob(bytes(head), tables, bytes(records), tuple(data), total)


# --- unpacking ---------------------------------------------------------------

_OBS_KINDS = {k.value: k for k in ObsKind}


def _u64s(data: bytes) -> list[int]:
    words = array.array("Q")
    words.frombytes(data)
    if not _LITTLE:
        words.byteswap()
    return words.tolist()


def _as_reader(layout: JobLayout, ram: RamReader | bytes | bytearray | memoryview) -> RamReader:
    if isinstance(ram, RamReader):
        return ram
    return RamBytes(layout.ram_base, ram)


def read_results_header(layout: JobLayout, ram: RamReader | bytes | bytearray | memoryview) -> list[int]:
    """The results header as u64 slots (for progress polling while QEMU runs)."""
    return _u64s(_as_reader(layout, ram).read(layout.results_start, RESULTS_HEADER_SIZE))


def unpack_results(layout: JobLayout, ram: RamReader | bytes | bytearray | memoryview,
                   images: Sequence[JobImage]) -> JobResults:
    """Decode the results area and the table regions after a run.

    ``ram``: a RamReader, or the whole guest RAM as bytes starting at
    ``layout.ram_base``.  ``images``: the images the job was packed from
    (probe counts and region PAs).  Works whatever the run's end: a probe
    the stub did not record is ObsKind.NOT_RUN; a results area the stub
    never initialised gives GuestStatus.NOT_STARTED."""
    reader = _as_reader(layout, ram)
    head = read_results_header(layout, reader)
    started = head[0] == (ABI_VERSION << 32) | RESULTS_MAGIC
    if not started and head[0] != 0:
        raise UsageError(f"results header magic {head[0]:#x} is not that of job ABI {ABI_VERSION}")
    try:
        status = GuestStatus(head[_RH_STATUS]) if started else GuestStatus.NOT_STARTED
    except ValueError as exc:
        raise UsageError(f"results status {head[_RH_STATUS]} is unknown") from exc
    images_done = head[_RH_IMAGES_DONE]
    probes_done = head[_RH_PROBES_DONE]
    n_all = sum(len(im.probes) for im in images)
    if images_done > len(images) or probes_done > n_all:
        # The stub only ever counts up to the job's own sizes.
        raise UsageError(f"results header counts {images_done} images / {probes_done} probes "
                         f"for a job of {len(images)} / {n_all}: not written by the stub")

    names = ID_REGISTER_NAMES[layout.arch]
    id_regs = MappingProxyType(dict(zip(names, head[_RH_IDREGS:_RH_IDREGS + len(names)])))

    fatal = None
    if status is GuestStatus.FATAL:
        reason, vector, esr, elr, far, detail = head[_RH_FATAL:_RH_FATAL + 6]
        try:
            fr = FatalReason(reason)
        except ValueError as exc:
            raise UsageError(f"fatal reason {reason} is unknown") from exc
        fatal = FatalInfo(fr, vector, esr, elr, far, detail)

    n_probes = sum(len(im.probes) for im in images)
    where, size = layout.results_start + RESULTS_HEADER_SIZE, n_probes * RECORD_SIZE
    raw = reader.view(where, size) if isinstance(reader, RamFile) else reader.read(where, size)
    table = np.frombuffer(raw, dtype="<u8").reshape(n_probes, RECORD_WORDS)
    if n_probes:
        # ObsKind values are 0, 1, 2: anything larger is not a record.
        top = int(table[:, 0].max())
        if top > max(_OBS_KINDS):
            raise UsageError(f"result record kind {top} is unknown")

    results = []
    start = 0
    for index, im in enumerate(images):
        end = start + len(im.probes)
        after = tuple((pa, reader.read(pa, len(data))) for pa, data in im.regions)
        results.append(ImageResult(table[start:end], after, index < images_done))
        start = end
    return JobResults(status, images_done, probes_done, id_regs, tuple(results), fatal)
