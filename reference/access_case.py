"""Access cases: a stage-2 image, the data it maps, and a sequence of steps
-- access probes, descriptor writes with or without TLB maintenance, VTTBR
switches -- with what the architecture permits at each step.

Generation.  Every image maps the stub's EL1 window (its access routines
and EL1 vectors) with pages at ``el1_ipa``: the PA itself when the IPA
space reaches it, else the top of the IPA space.  Leaves are placed on
purpose at every level that can hold one, with each stage-2 permission,
execute-never, Access flag and memory type, their output address chosen so
that the page the probes touch is a *data page* of the case (a block maps
the RAM around it: a 1 GiB level-1 block of 0x4000_0000 maps all of virt's
RAM); invalid and reserved entries, output and table addresses beyond the
output size, a table where no memory is, IPAs beyond the IPA size and
beyond PAMax give the faults.  Each placed entry gets a few access probes
of random kinds, each on its own 64-byte *chunk* of data (the DC ZVA block
when larger), so that no probe sees another's store and memory after the
run says what every store did.

TLB behaviour (the architecture fixes it, an emulator's TLB must not
change it): a page is accessed twice (the same answer); its descriptor is
changed with the architected maintenance (DSB; TLBI IPAS2E1IS; DSB; TLBI
VMALLE1IS; DSB; ISB), after which only the new entry may be used, and
without it, after which the old entry is still permitted if it was a
valid translation -- an entry that gives a Translation, Address size or
Access flag fault is never held in a TLB, nor is an External abort on the
walk; and a second image with its own VMID, switched to and back without
TLB invalidation, never sees the other image's translations.

``AccessCase.expectations()`` replays the steps on the reference's view of
memory: each access probe is predicted (reference.access +
reference.syndrome) under the current tables and, for a descriptor changed
without maintenance, under its earlier values too.
"""
from __future__ import annotations

import dataclasses
import enum
import itertools
import random
import struct
from typing import Mapping, Union

from . import rules as R
from .access import (
    AccessContext,
    AccessKind,
    AccessOp,
    AccessOutcome,
    Taken,
    access_outcomes,
    fetch_target_bytes,
    pattern_bytes,
)
from .arch import Arch, Granule
from .config import FINAL_LEVEL, S2Config
from .cpus import CpuModel
from .generate import MemoryMap, build_layout
from .image import Conflict, Image, ImageBuilder, Layout, LeafAttrs, encode_leaf, encode_table
from .memory import Memory, Region
from .outcome import FaultKind
from .syndrome import Expectation, ProbeAddresses, predict_access
from .walk import S2Params, aarch64_block_desc_supported, aarch64_physical_address_size

CHUNK = 64                  # bytes of data per probe (at least the DC ZVA block)


class Tlbi(enum.IntFlag):
    """TLB maintenance after a descriptor write (the probe's flags word)."""

    NONE = 0
    IPAS2 = 1 << 0          # TLBI IPAS2E1IS, IPA >> 12 (AArch32: TLBIIPAS2IS)
    VMALLE1 = 1 << 1        # TLBI VMALLE1IS (AArch32: TLBIALLIS)
    VMALLS12 = 1 << 2       # TLBI VMALLS12E1IS (AArch32: TLBIALLNSNHIS)

    @property
    def complete(self) -> bool:
        """Whether the operations remove every entry built from the changed
        descriptor for the IPA: with stage 1 off, the combined stage 1+2
        entries need the stage-1 invalidation as well as the IPA one
        (Arm ARM D8.16, maintenance of stage 2 entries), or VMALLS12E1."""
        return bool(self & Tlbi.VMALLS12) or (Tlbi.IPAS2 | Tlbi.VMALLE1) in self


@dataclasses.dataclass(frozen=True)
class AccessStep:
    """An access probe: routine ``kind`` on ``ipa``.  ``hcr_dc``: run with
    HCR_EL2.DC = 1; ``data``: the two words a store takes its bytes from;
    ``chunk``: the PA of the data chunk the probe owns (None when it cannot
    reach memory)."""

    kind: AccessKind
    ipa: int
    aim: str
    hcr_dc: bool = False
    data: tuple[int, int] = (0, 0)
    chunk: int | None = None


@dataclasses.dataclass(frozen=True)
class DescWriteStep:
    """The stub writes ``value`` to the descriptor at ``pa`` then runs
    ``tlbi`` (for the IPA ``ipa``)."""

    pa: int
    value: int
    ipa: int
    tlbi: Tlbi
    aim: str


@dataclasses.dataclass(frozen=True)
class SetVttbrStep:
    """The stub switches VTTBR to ``vttbr`` (then TLBI VMALLS12E1 when ``tlbi``)."""

    vttbr: int
    tlbi: bool
    aim: str


Step = Union[AccessStep, DescWriteStep, SetVttbrStep]


@dataclasses.dataclass(frozen=True)
class El1Window:
    """The stub's EL1 window: ``size`` bytes at PA ``pa`` (64 KiB aligned),
    and the offset in it of each kind's access instruction(s)."""

    pa: int
    size: int
    insns: Mapping[AccessKind, tuple[int, ...]]


@dataclasses.dataclass(frozen=True)
class MaintExpectation:
    """A maintenance step completes; the value it replaced is one of
    ``old`` (the descriptor, or the VTTBR)."""

    old: frozenset[int]


@dataclasses.dataclass(frozen=True)
class AccessCase:
    """One image (and a second one for the VMID steps), its data chunks, the
    EL1 window mapping and the steps."""

    key: str
    seed: int
    cpu: CpuModel
    config: S2Config
    image: Image
    other: Image | None
    data: tuple[Region, ...]
    el1: El1Window
    el1_ipa: int
    memory_map: MemoryMap
    steps: tuple[Step, ...]

    def memory(self) -> Memory:
        regions = self.image.regions + (self.other.regions if self.other else ()) + self.data
        return Memory(ram=self.memory_map.ram, regions=regions)

    def addresses(self, step: AccessStep) -> ProbeAddresses:
        return ProbeAddresses(step.ipa, tuple(self.el1_ipa + o for o in self.el1.insns[step.kind]))

    def context(self, step: AccessStep) -> AccessContext:
        return AccessContext(hcr_dc=step.hcr_dc, dczva_bytes=_dczva(self.cpu), store_data=step.data)

    def expectations(self) -> tuple[tuple[Expectation, ...] | MaintExpectation, ...]:
        """What the architecture permits at each step, in step order.
        Computed once per case (generation and judging both need it, and
        it is most of their cost); the case is immutable, so the result is."""
        cached = self.__dict__.get("_expectations")
        if cached is None:
            cached = self._expectations_now()
            object.__setattr__(self, "_expectations", cached)
        return cached

    def _expectations_now(self) -> tuple[tuple[Expectation, ...] | MaintExpectation, ...]:
        state = _TableState(self.memory())
        vttbr = self.config.vttbr
        tables = {self.image.vttbr: self.image, **({self.other.vttbr: self.other} if self.other else {})}
        out: list[tuple[Expectation, ...] | MaintExpectation] = []
        for step in self.steps:
            if isinstance(step, DescWriteStep):
                out.append(MaintExpectation(frozenset(state.values(step.pa))))
                state.write(step.pa, step.value, step.tlbi.complete)
            elif isinstance(step, SetVttbrStep):
                out.append(MaintExpectation(frozenset({vttbr})))
                vttbr = step.vttbr
                if step.tlbi:
                    state.invalidate(tables[vttbr])
            else:
                out.append(self._predict(step, state, vttbr))
        return tuple(out)

    def _predict(self, step: AccessStep, state: "_TableState", vttbr: int) -> tuple[Expectation, ...]:
        config = self.config.with_vttbr(vttbr)
        addrs, ctx = self.addresses(step), self.context(step)
        found: list[Expectation] = []
        for memory, stale in state.variants():
            for o in access_outcomes(self.cpu, config, memory, step.ipa, step.kind, ctx):
                if stale and not _cacheable(o):
                    continue
                if stale:
                    o = dataclasses.replace(o, rules=o.rules + (R.ACC_STALE_TLB.text(
                        "descriptor changed without complete TLB maintenance: the old entry "
                        "may still be used"),))
                for e in predict_access(self.cpu, step.kind, o, addrs):
                    if all(e.fields != f.fields or e.outcome.stores != f.outcome.stores
                           or e.outcome.writes != f.outcome.writes for f in found):
                        found.append(e)
        return tuple(found)


def _dczva(cpu: CpuModel) -> int:
    return cpu.dczva_bytes if cpu.arch is Arch.AARCH64 else CHUNK


def _cacheable(o: AccessOutcome) -> bool:
    """Whether an outcome can come from a TLB entry: a translation (used or
    giving a Permission or Alignment fault).  Translation, Address size and
    Access flag faults and External aborts on the walk are never cached
    (Arm ARM D8.16, "TLB behavior")."""
    if o.taken is Taken.COMPLETED:
        return True
    assert o.abort is not None
    return o.abort.secondstage and o.abort.status.value not in (
        FaultKind.TRANSLATION.value, FaultKind.ADDRESS_SIZE.value, FaultKind.ACCESS_FLAG.value,
        FaultKind.SEA_ON_WALK.value)


class _TableState:
    """The descriptors as the reference replays the steps: the newest value
    of each, and for those changed without complete maintenance the older
    values a TLB may still hold."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.stale: dict[int, list[int]] = {}

    def values(self, pa: int) -> list[int]:
        current = self.memory.read64(pa)
        assert current is not None
        return [current] + self.stale.get(pa, [])

    def write(self, pa: int, value: int, complete: bool) -> None:
        old = self.values(pa)
        self.memory = _poke(self.memory, pa, value)
        self.stale.pop(pa, None)
        if not complete:
            self.stale[pa] = [v for v in old if v != value]

    def invalidate(self, image: Image) -> None:
        """TLBI VMALLS12E1 for the VMID of ``image``: its stale entries go."""
        for pa in list(self.stale):
            if any(r.pa <= pa < r.end for r in image.regions):
                del self.stale[pa]

    def variants(self):
        """(memory, stale) pairs: the newest tables, then every combination
        of older descriptor values."""
        yield self.memory, False
        pas = sorted(self.stale)
        for combo in itertools.product(*([None] + self.stale[pa] for pa in pas)):
            if all(v is None for v in combo):
                continue
            memory = self.memory
            for pa, v in zip(pas, combo):
                if v is not None:
                    memory = _poke(memory, pa, v)
            yield memory, True


def _poke(memory: Memory, pa: int, value: int) -> Memory:
    """``memory`` with the descriptor word at ``pa`` set to ``value``."""
    regions = []
    done = False
    for r in memory.regions:
        if r.pa <= pa < r.end:
            data = bytearray(r.data)
            struct.pack_into("<Q", data, pa - r.pa, value)
            r = Region(r.pa, bytes(data))
            done = True
        regions.append(r)
    if not done:
        regions.append(Region(pa, struct.pack("<Q", value)))
    return Memory(ram=memory.ram, regions=tuple(regions))


# --- generation -----------------------------------------------------------------

class _Data:
    """Allocates data pages (one granule each) in the data window and the
    chunks in them; records the bytes each chunk starts with."""

    def __init__(self, base: int, size: int, granule: Granule, chunk: int) -> None:
        self.next, self.end, self.page_bytes, self.chunk = base, base + size, 1 << granule.bits, chunk
        self.regions: list[Region] = []

    def page(self) -> int | None:
        pa = -(-self.next // self.page_bytes) * self.page_bytes
        if pa + self.page_bytes > self.end:
            return None
        self.next = pa + self.page_bytes
        return pa

    def fill(self, pa: int, data: bytes) -> None:
        self.regions.append(Region(pa, data))


class _Gen:
    def __init__(self, cpu: CpuModel, config: S2Config, layout: Layout, rng: random.Random,
                 builder: ImageBuilder, data: _Data, mmap: MemoryMap, el1: El1Window) -> None:
        self.cpu, self.config, self.layout, self.rng = cpu, config, layout, rng
        self.b, self.data, self.mmap, self.el1 = builder, data, mmap, el1
        self.geo = layout.geo
        self.arch = cpu.arch
        self.ipa_limit = min(1 << layout.ia_bits, 1 << (32 if self.arch is Arch.AARCH32 else cpu.pamax))
        self.kinds = AccessKind.for_arch(self.arch, cpu.arch_version)
        self.steps: list[Step] = []
        self.oa_bits = (40 if self.arch is Arch.AARCH32 else
                        aarch64_physical_address_size(cpu, config.ps, layout.granule))

    # -- entries ---------------------------------------------------------------

    def leaf_levels(self) -> list[int]:
        levels = []
        for lvl in range(self.layout.start_level, FINAL_LEVEL + 1):
            if self.arch is Arch.AARCH32:
                ok = lvl >= 1
            else:
                p = S2Params(granule=self.layout.granule, txsz=64 - self.layout.ia_bits,
                             sl0=self.config.sl0, sl2=self.config.sl2, ds=int(self.layout.ds),
                             ps=self.config.ps, ha=self.config.ha, hd=self.config.hd)
                ok = lvl == FINAL_LEVEL or aarch64_block_desc_supported(self.cpu, p, lvl)
            if ok:
                levels.append(lvl)
        return levels

    def free_ipa(self, level: int) -> int | None:
        """A block/page-aligned IPA below the limit whose entry at ``level``
        is still free."""
        lsb = self.geo.level_lsb(level)
        for _ in range(48):
            ipa = self.rng.randrange(max(1, self.ipa_limit >> lsb)) << lsb
            if ipa + (1 << lsb) <= self.ipa_limit or level == FINAL_LEVEL:
                if ipa < self.ipa_limit and self.b.free(ipa, level):
                    return ipa
        return None

    def data_leaf(self, level: int, attrs: LeafAttrs) -> tuple[int, int, int] | None:
        """A leaf at ``level`` whose mapping covers a fresh data page: returns
        (IPA of the data page, its PA, descriptor PA)."""
        page = self.data.page()
        if page is None:
            return None
        block = 1 << self.geo.block_bits(level)
        oa = page & ~(block - 1)
        if oa >> self.oa_bits:
            return None
        ipa = self.free_ipa(level)
        if ipa is None:
            return None
        try:
            desc_pa = self.b.map(ipa, oa, level, attrs)
        except Conflict:
            return None
        return ipa + (page - oa), page, desc_pa

    def plant(self, level: int, desc: int) -> int | None:
        ipa = self.free_ipa(level)
        if ipa is None:
            return None
        try:
            self.b.plant(ipa, level, desc)
        except Conflict:
            return None
        return ipa

    # -- probes ----------------------------------------------------------------

    def kind(self, op: AccessOp | None = None) -> AccessKind:
        kinds = [k for k in self.kinds if op is None or k.spec.op is op]
        return self.rng.choice(kinds)

    def probe(self, kind: AccessKind, page_ipa: int, page_pa: int | None, aim: str,
              chunk_index: int | None = None) -> None:
        """An access of ``kind`` inside the data page at (``page_ipa``,
        ``page_pa``); a fresh chunk of the page, filled with the pattern (a
        fetch target for IFETCH).  ``page_pa`` None: the page has no memory
        behind it (the probe must fault)."""
        spec = kind.spec
        chunk = max(CHUNK, _dczva(self.cpu))
        per_page = self.data.page_bytes // chunk
        index = self.rng.randrange(per_page) if chunk_index is None else chunk_index
        off = index * chunk
        if spec.op is AccessOp.DC_ZVA:
            sub = self.rng.randrange(chunk)
        elif spec.op is AccessOp.IFETCH:
            sub = self.rng.randrange(0, chunk - 8, 4)
        else:
            size = min(spec.size, 16)
            sub = self.rng.randrange(0, chunk - 16 + 1, size) if size else 0
        data = (self.rng.getrandbits(64), self.rng.getrandbits(64))
        hcr_dc = spec.op is AccessOp.DC_ZVA and self.rng.random() < 0.75
        pa = None if page_pa is None else page_pa + off
        if pa is not None and not any(r.pa == pa for r in self.data.regions):
            self.data.fill(pa, fetch_target_bytes(self.arch, pa, chunk, sub)
                           if spec.op is AccessOp.IFETCH else pattern_bytes(pa, chunk))
        self.steps.append(AccessStep(kind, page_ipa + off + sub, aim, hcr_dc, data, pa))

    def chunk_ipa(self, page_ipa: int, index: int) -> int:
        return page_ipa + index * max(CHUNK, _dczva(self.cpu))


def _el1_ipa(el1: El1Window, ipa_limit: int, granule: Granule) -> int:
    """Where the image maps the EL1 window: at its own PA when the IPA space
    reaches it (so ELR and FAR values read as stub addresses), else at the
    top of the IPA space."""
    span = -(-el1.size // (1 << granule.bits)) * (1 << granule.bits)
    if el1.pa + span <= ipa_limit:
        return el1.pa
    return (ipa_limit - max(span, 1 << 16)) & ~((1 << 16) - 1)


def _map_el1(b: ImageBuilder, el1: El1Window, el1_ipa: int, granule: Granule) -> None:
    page = 1 << granule.bits
    for off in range(0, el1.size, page):
        b.map(el1_ipa + off, el1.pa + off, FINAL_LEVEL, LeafAttrs())


def _el1_runs(case: AccessCase) -> bool:
    """Whether every permitted outcome of fetching the EL1 window's pages
    completes: otherwise the routines themselves would fault and the case
    cannot run access probes (an invalid configuration)."""
    memory = case.memory()
    for off in range(0, case.el1.size, 1 << 12):
        outs = access_outcomes(case.cpu, case.config, memory, case.el1_ipa + off,
                               AccessKind.A64_IFETCH if case.cpu.arch is Arch.AARCH64
                               else AccessKind.A32_IFETCH)
        if not outs or any(o.taken is not Taken.COMPLETED or o.pa != case.el1.pa + off for o in outs):
            return False
    return True


PERMISSIONS = ((0b11, "RW"), (0b01, "read-only"), (0b10, "write-only"), (0b00, "no access"))


def generate_access_case(cpu: CpuModel, config: S2Config, seed: int, key: str,
                         window: tuple[int, int], data_window: tuple[int, int], mmap: MemoryMap,
                         el1: El1Window, *, tlb: bool = True) -> AccessCase:
    """An access case for ``config`` on ``cpu``: tables in ``window`` (base
    PA, bytes; the second half holds the second image of the VMID steps),
    data pages in ``data_window``.  Deterministic in (seed, key).  A
    configuration under which the EL1 window cannot be executed gets a case
    without steps."""
    rng = random.Random(f"s2diff-access:{seed}:{key}")
    layout = build_layout(cpu, config)
    half = window[1] // 2
    vmid = 1 + rng.randrange(126)
    b = ImageBuilder(layout, window[0], half, vmid=vmid)
    chunk = max(CHUNK, _dczva(cpu))
    data = _Data(data_window[0], data_window[1], layout.granule, chunk)
    g = _Gen(cpu, config, layout, rng, b, data, mmap, el1)
    el1_ipa = _el1_ipa(el1, g.ipa_limit, layout.granule)
    _map_el1(b, el1, el1_ipa, layout.granule)
    probe_case = AccessCase(key, seed, cpu, config.with_vttbr(b.build().vttbr), b.build(), None, (),
                            el1, el1_ipa, mmap, ())
    if not _el1_runs(probe_case):
        return probe_case

    _scenarios(g)
    other = None
    if tlb:
        other = _tlb_steps(g, window[0] + half, half, el1_ipa, vmid)
    image = b.build()
    case = AccessCase(key, seed, cpu, config.with_vttbr(image.vttbr), image, other,
                      tuple(data.regions), el1, el1_ipa, mmap, tuple(g.steps))
    return _drop_unsafe(case)


def _scenarios(g: _Gen) -> None:
    """Leaves into data pages with every permission, XN, AF and memory
    type; then the faulting entries and addresses."""
    rng = g.rng
    levels = g.leaf_levels()
    for level in reversed(levels):
        kind = "page" if level == FINAL_LEVEL else "block"
        for s2ap, what in PERMISSIONS:
            attrs = LeafAttrs(s2ap=s2ap, xn=rng.randrange(4),
                              memattr=rng.choice((0b1111, 0b1111, 0b0101, 0b0000)))
            _leaf_probes(g, level, attrs, f"L{level} {kind} {what} XN={attrs.xn:02b} "
                                          f"MemAttr={attrs.memattr:04b}", 3)
        _leaf_probes(g, level, LeafAttrs(af=0), f"L{level} {kind} AF=0", 2)
        _leaf_probes(g, level, LeafAttrs(xn=0b00, memattr=0b0000), f"L{level} {kind} Device, executable",
                     1, AccessOp.IFETCH)
        _leaf_probes(g, level, LeafAttrs(), f"L{level} {kind} RW: fetch", 1, AccessOp.IFETCH)
        # Execute without read: permitted by AArch64 (XN only), not by AArch32.
        _leaf_probes(g, level, LeafAttrs(s2ap=0b10, xn=rng.choice((0b00, 0b11))),
                     f"L{level} {kind} write-only, executable: fetch", 1, AccessOp.IFETCH)
        _leaf_probes(g, level, LeafAttrs(), f"L{level} {kind} RW: DC ZVA", 1, AccessOp.DC_ZVA)
        _leaf_probes(g, level, LeafAttrs(memattr=0b0000), f"L{level} {kind} Device: DC ZVA", 1,
                     AccessOp.DC_ZVA)
        if g.arch is Arch.AARCH64:
            _leaf_probes(g, level, LeafAttrs(s2ap=0b01, dbm=1), f"L{level} {kind} DBM read-only", 2,
                         AccessOp.STORE)
        # Invalid entries and output addresses beyond the output size.
        ipa = g.plant(level, rng.choice((0, 0b10)))
        if ipa is not None:
            g.probe(g.kind(), ipa, None, f"L{level} invalid entry")
        _beyond_probe(g, level, kind)
        if level < FINAL_LEVEL:
            _table_fault_probes(g, level)
    if g.arch is Arch.AARCH64 or g.layout.ia_bits < 32:
        # (an AArch32 VA, = IPA with stage 1 off, has 32 bits)
        g.steps.append(AccessStep(g.kind(AccessOp.LOAD), 1 << g.layout.ia_bits,
                                  "IPA beyond the IPA size"))
    if g.arch is Arch.AARCH64 and g.cpu.pamax != g.layout.ia_bits:
        g.steps.append(AccessStep(g.kind(AccessOp.STORE), 1 << g.cpu.pamax,
                                  "IPA at 2^PAMax (stage-1 Address size fault)"))


def _leaf_probes(g: _Gen, level: int, attrs: LeafAttrs, aim: str, n: int,
                 op: AccessOp | None = None) -> None:
    if op is AccessOp.DC_ZVA and g.arch is Arch.AARCH32:
        return
    placed = g.data_leaf(level, attrs)
    if placed is None:
        return
    page_ipa, page_pa, _ = placed
    per_page = g.data.page_bytes // max(CHUNK, _dczva(g.cpu))
    for index in g.rng.sample(range(per_page), min(n, per_page)):
        g.probe(g.kind(op), page_ipa, page_pa, aim, index)


def _beyond_probe(g: _Gen, level: int, kind: str) -> None:
    """A leaf whose output address has a bit at or above the output size:
    an Address size fault (ARMv7 LPAE may ignore bits [47:40] instead: the
    low bits then name a data page, so that reading stays defined)."""
    limit = 52 if (g.layout.lpa64 or g.layout.ds) else 48
    if g.oa_bits >= limit:
        return
    page = g.data.page()
    if page is None:
        return
    block_bits = g.geo.block_bits(level)
    top = g.rng.randrange(g.oa_bits, limit)
    oa = (1 << top | page) >> block_bits << block_bits
    ipa = g.plant(level, encode_leaf(g.layout, level, oa, LeafAttrs()))
    if ipa is None:
        return
    g.probe(g.kind(), ipa + (page - (page >> block_bits << block_bits)), page,
            f"L{level} {kind} OA beyond {g.oa_bits} bits")


def _table_fault_probes(g: _Gen, level: int) -> None:
    """A table descriptor pointing beyond the output size, and one pointing
    where there is no memory (an External abort on the walk)."""
    gbits = g.layout.granule.bits
    limit = 52 if (g.layout.lpa64 or g.layout.ds) else 48
    if g.mmap.empty:
        empty = g.rng.choice(g.mmap.empty) >> gbits << gbits
        ipa = g.plant(level, encode_table(g.layout, empty))
        if ipa is not None:
            g.probe(g.kind(), ipa, None, f"L{level} table in no memory")
        if g.oa_bits < limit:
            far = (1 << g.rng.randrange(g.oa_bits, limit)) | empty
            ipa = g.plant(level, encode_table(g.layout, far))
            if ipa is not None:
                g.probe(g.kind(), ipa, None, f"L{level} table address beyond {g.oa_bits} bits")


def _tlb_steps(g: _Gen, base: int, size: int, el1_ipa: int, vmid: int) -> Image | None:
    """Repeat accesses, descriptor changes with and without maintenance, and
    a VMID switch to a second image that maps the same IPA elsewhere."""
    placed = g.data_leaf(FINAL_LEVEL, LeafAttrs())
    second = g.data.page()
    third = g.data.page()
    if placed is None or second is None or third is None:
        return None
    ipa, first, desc_pa = placed
    load = g.kind(AccessOp.LOAD)
    store = g.kind(AccessOp.STORE)
    g.probe(load, ipa, first, "TLB: first access", 0)
    g.steps.append(dataclasses.replace(g.steps[-1], aim="TLB: repeated access (a TLB hit)"))
    g.probe(store, ipa, first, "TLB: store after loads", 1)
    rw_second = encode_leaf(g.layout, FINAL_LEVEL, second, LeafAttrs())
    # TLBIIPAS2IS is ARMv8: ARMv7 Hyp invalidates stage 2 only wholesale.
    ipa_tlbi = not (g.arch is Arch.AARCH32 and g.cpu.arch_version < 8)
    full = Tlbi.IPAS2 | Tlbi.VMALLE1 if ipa_tlbi else Tlbi.VMALLS12
    g.steps.append(DescWriteStep(desc_pa, 0, ipa, full, "TLB: entry made invalid, full maintenance"))
    g.probe(load, ipa, first, "TLB: access after invalidation (Translation fault)", 2)
    g.steps.append(DescWriteStep(desc_pa, rw_second, ipa, Tlbi.VMALLS12,
                                 "TLB: new output address, TLBI VMALLS12E1IS"))
    g.probe(load, ipa, second, "TLB: access sees the new output address", 3)
    ro_second = encode_leaf(g.layout, FINAL_LEVEL, second, LeafAttrs(s2ap=0b01))
    g.steps.append(DescWriteStep(desc_pa, ro_second, ipa, Tlbi.NONE,
                                 "TLB: made read-only without maintenance"))
    g.probe(store, ipa, second, "TLB: store, old (RW) or new (read-only) entry", 4)
    if ipa_tlbi:
        g.steps.append(DescWriteStep(desc_pa, ro_second, ipa, Tlbi.IPAS2,
                                     "TLB: only TLBI IPAS2E1IS (combined entries may stay)"))
        g.probe(store, ipa, second, "TLB: store after incomplete maintenance", 5)
    g.steps.append(DescWriteStep(desc_pa, ro_second, ipa, full, "TLB: full maintenance"))
    g.probe(store, ipa, second, "TLB: store after full maintenance (Permission fault)", 6)
    g.steps.append(DescWriteStep(desc_pa, 0, ipa, Tlbi.NONE, "TLB: made invalid without maintenance"))
    g.probe(load, ipa, second, "TLB: load, old entry or Translation fault", 7)
    g.steps.append(DescWriteStep(desc_pa, rw_second, ipa, full, "TLB: restored, full maintenance"))

    # The second image: its own VMID, the EL1 window at the same IPA, the
    # same IPA mapped to the third data page.
    b2 = ImageBuilder(g.layout, base, size, vmid=vmid + 128)
    try:
        _map_el1(b2, g.el1, el1_ipa, g.layout.granule)
        b2.map(ipa - (ipa & ((1 << g.layout.granule.bits) - 1)), third, FINAL_LEVEL, LeafAttrs())
    except Conflict:
        return None
    other = b2.build()
    own = g.b.build().vttbr
    g.steps.append(SetVttbrStep(other.vttbr, True, "VMID: switch to the second image, TLBI"))
    g.probe(load, ipa, third, "VMID: second image's translation", 8)
    g.steps.append(SetVttbrStep(own, False, "VMID: back to the first image, no TLBI"))
    g.probe(load, ipa, second, "VMID: first image's translation again", 9)
    g.steps.append(SetVttbrStep(other.vttbr, False, "VMID: second image again, no TLBI"))
    g.probe(load, ipa, third, "VMID: second image's translation again", 10)
    g.steps.append(SetVttbrStep(own, False, "VMID: back to the first image"))
    return other


def _drop_unsafe(case: AccessCase) -> AccessCase:
    """Keep the access steps whose every permitted completion lands in the
    probe's own chunk (a probe must never write, or read, memory it does not
    own), and the maintenance steps."""
    kept: list[Step] = []
    kept_exp: list = []
    expectations = case.expectations()
    for step, exp in zip(case.steps, expectations):
        if isinstance(step, AccessStep):
            assert not isinstance(exp, MaintExpectation)
            chunk = max(CHUNK, _dczva(case.cpu))
            ok = bool(exp) and all(
                e.outcome.pa is None or (step.chunk is not None
                                         and step.chunk <= e.outcome.pa < step.chunk + chunk)
                for e in exp if e.taken is Taken.COMPLETED)
            if not ok:
                continue
        kept.append(step)
        kept_exp.append(exp)
    out = dataclasses.replace(case, steps=tuple(kept))
    # Dropping access steps changes no table state (only descriptor writes
    # and VTTBR switches do, and every one is kept): the expectations of the
    # kept steps are those just computed.
    object.__setattr__(out, "_expectations", tuple(kept_exp))
    return out
