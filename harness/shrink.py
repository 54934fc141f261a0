"""Shrinking a divergent case: the fewest probes, descriptors and levels,
and the smallest IPA size, that still diverge *the same way*.

"The same way" (:class:`Signature`): the divergence has the same kind
(``probe``: the PAR/exception differs; ``memory``: a descriptor was written
in a way no permitted outcome allows), the same sorted labels of the
reference's permitted outcomes (harness.vocabulary.outcome_label:
"translation L1", "ok L3", ...) and the same observed label
(harness.vocabulary.observed_label: "ok", "translation L0", "exception EC
0x25 DFSC 0x17"; for memory, the descriptor bits set and cleared,
harness.vocabulary.memory_label).  Levels in labels are absolute Arm ARM levels,
so a candidate that moves the decisive descriptor to another level is a
different divergence.

Every candidate is checked in QEMU.  ``Lab`` runs a round of candidates in
as few boots as possible: candidates whose image windows do not overlap
share one boot, and candidates that are the same image with other probes
(no hardware updates, VTCR_EL2.HA = 0) share its tables.  Candidates with
different table contents at the same PAs cannot share a boot; they run one
boot each (only the fallback of the image step makes such candidates).

The steps, each a round:

1. probes: keep one divergent probe of the chosen family (the first one that
   diverges the same way alone), else delta-debug the other probes away;
2. image: keep only the descriptor words the reference's walk of that probe
   reads (every other word of RAM reads as zero), else delta-debug the other
   words away, one boot per candidate;
3. configuration: rebuild the walked path (:func:`rebuild`) under every
   simpler geometry of the same granule (fewer levels, then fewer IPA bits)
   and with the IPA's table indices cleared, keeping the decisive descriptor
   value and the other descriptors' non-address bits; keep the simplest
   candidate that still diverges the same way.  Skipped (and said so) when
   the walk cannot be rebuilt: the reference reads no descriptor, or its
   permitted outcomes walk different paths.
"""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from reference.arch import Arch, AtKind, Granule
from reference.bits import bit, mask
from reference.config import FINAL_LEVEL, S2Config, geometry
from reference.generate import Case, FanOut, Probe, build_layout
from reference.image import Image, Layout, encode_table
from reference.memory import Region
from reference.outcome import TraceStep
from reference.walk import contiguous_size, walk

from .qemu.build import build_stub
from .qemu.elf import read_stub
from .errors import S2DiffError, UsageError
from .qemu.job import ImageResult, RawObservation
from .qemu.boot import BatchResult, run_batch
from .vocabulary import DivergenceKind, Signature, memory_label, outcome_label

T = TypeVar("T")

# harness.run is imported inside the functions that need it: `s2diff run
# --shrink` makes run import this module, and a top-level import would be
# circular.


class ShrinkError(S2DiffError):
    """The case cannot be shrunk (it does not diverge, or QEMU does not
    complete it); exit 2, the message says why."""

    exit_code = 2


# ---------------------------------------------------------------------------
# Divergence signatures
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Found:
    """One divergence of a trial: the probe (index in the trial's case,
    fan-out probes after the named ones; for memory, the first named probe
    whose walk read the descriptor), that probe as a named Probe
    (``target``), its signature and the harness.run record."""

    probe: int | None
    target: Probe | None
    signature: Signature
    record: Mapping[str, Any]


def only(case: Case, probes: Sequence[Probe]) -> Case:
    """The case with exactly these named probes and no fan-out probes."""
    return dataclasses.replace(case, probes=tuple(probes), fanout=FanOut.empty())


def probe_count(case: Case) -> int:
    """Named and fan-out probes."""
    return len(case.probes) + len(case.fanout)


def reference_labels(case: Case, index: int) -> tuple[str, ...]:
    """Sorted labels of the reference's permitted outcomes of probe ``index``."""
    probe = case.probes[index]
    res = walk(case.cpu, case.config, case.memory(), probe.ipa, probe.at)
    return tuple(sorted({outcome_label(o.result) for o in res.outcomes}))


def find_divergences(case: Case, image: ImageResult) -> tuple[Found, ...]:
    """The divergences of ``case`` given its observations (harness.run.judge_case)."""
    from .run import judge_case
    _, records = judge_case(case, image)
    found = []
    for rec in records:
        index = rec.get("probe")
        if rec["kind"] == DivergenceKind.PROBE.value:
            sig = Signature(DivergenceKind.PROBE, tuple(rec["expected"]), rec["observed"])
            target = Probe(int(rec["ipa"], 16), AtKind[rec["at"]], rec["aim"])
        else:
            raw = rec["raw"]
            expected = reference_labels(case, index) if index is not None else ()
            sig = Signature(DivergenceKind.MEMORY, expected,
                            memory_label(int(raw["before"], 16), int(raw["after"], 16)))
            target = case.probes[index] if index is not None else None
        found.append(Found(index, target, sig, rec))
    return tuple(found)


# ---------------------------------------------------------------------------
# Running candidates
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Trial:
    """One candidate case run in QEMU.  ``image`` is None when the boot
    ended before the stub finished the candidate's image (crash, hang)."""

    case: Case
    image: ImageResult | None
    batch: BatchResult
    divergences: tuple[Found, ...]

    @property
    def completed(self) -> bool:
        return self.image is not None

    def shows(self, sig: Signature) -> bool:
        """It diverges the way ``sig`` says."""
        return any(f.signature == sig for f in self.divergences)

    @property
    def agrees(self) -> bool:
        """It completed and QEMU agrees with the reference everywhere."""
        return self.completed and not self.divergences

    def observation(self, index: int = 0) -> RawObservation:
        assert self.image is not None
        return self.image.observations[index]


def _spans(case: Case) -> list[tuple[int, int]]:
    base, size = case.image.window
    spans = [(base, base + size)] if size else []
    spans += [(r.pa, r.end) for r in case.image.regions]
    return spans


def _overlap(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> bool:
    return any(x0 < y1 and y0 < x1 for x0, x1 in a for y0, y1 in b)


def _shares_memory(a: Case, b: Case) -> bool:
    """Two candidates may use one copy of the tables: the same bytes at the
    same PAs, and no hardware updates (HA = 0) that one could see of the other."""
    return (a.image.regions == b.image.regions and a.image.window == b.image.window
            and a.memory_map == b.memory_map and a.config.ha == 0 and b.config.ha == 0)


@dataclasses.dataclass
class _Group:
    members: list[tuple[int, Case, int | None]]     # (candidate index, case, owner index)
    spans: list[tuple[int, int]]
    probes: int


class Lab:
    """Runs candidate cases of one CPU model in QEMU, packing each round
    into as few boots as possible; ``boots`` counts the boots made.

    ``qemu``: the binary (default: harness.qemu.find_qemu); ``timeout`` per
    boot in seconds (default: run_batch's)."""

    def __init__(self, arch: Arch, cpu: str, *, qemu: str | Path | None = None,
                 timeout: float | None = None) -> None:
        self.arch, self.cpu, self.qemu, self.timeout = arch, cpu, qemu, timeout
        self.stub = build_stub(arch)
        self.layout = read_stub(self.stub).layout
        self.boots = 0
        self.qemu_version = ""
        self.argv: tuple[str, ...] = ()

    @property
    def arena(self) -> tuple[int, int]:
        return self.layout.arena_start, self.layout.arena_end

    def run(self, cases: Sequence[Case]) -> list[Trial]:
        """Run every candidate; the trials in the same order."""
        groups: list[_Group] = []
        for i, case in enumerate(cases):
            if case.cpu.name != self.cpu or case.cpu.arch is not self.arch:
                raise UsageError(f"candidate on {case.cpu.name}, lab on {self.cpu}")
            spans = _spans(case)
            n = probe_count(case)
            for g in groups:
                if g.probes + n > self.layout.max_probes:
                    continue
                owner = next((j for j, c, o in g.members if o is None and _shares_memory(c, case)),
                             None)
                if owner is not None:
                    g.members.append((i, case, owner))
                    g.probes += n
                    break
                if not _overlap(g.spans, spans):
                    g.members.append((i, case, None))
                    g.spans += spans
                    g.probes += n
                    break
            else:
                groups.append(_Group([(i, case, None)], spans, n))
        trials: list[Trial | None] = [None] * len(cases)
        for g in groups:
            from .run import job_image
            images = []
            for _, case, owner in g.members:
                image = job_image(case)
                images.append(image if owner is None else dataclasses.replace(image, regions=()))
            batch = run_batch(self.arch, self.cpu, images, qemu=self.qemu, stub=self.stub,
                              timeout=self.timeout)
            self.boots += 1
            self.qemu_version, self.argv = batch.qemu_version, batch.argv
            by_index = {i: k for k, (i, _, _) in enumerate(g.members)}
            for k, (i, case, owner) in enumerate(g.members):
                image = batch.images[k]
                if owner is not None:
                    image = dataclasses.replace(image,
                                                regions_after=batch.images[by_index[owner]].regions_after)
                if not image.completed:
                    trials[i] = Trial(case, None, batch, ())
                else:
                    trials[i] = Trial(case, image, batch, find_divergences(case, image))
        return [t for t in trials if t is not None]


class Windows:
    """Hands out non-overlapping PA windows inside an arena (bytes)."""

    def __init__(self, arena: tuple[int, int]) -> None:
        self.next, self.end = arena

    def take(self, size: int, align: int) -> int:
        base = -(-self.next // align) * align
        if base + size > self.end:
            raise UsageError("the candidates of one round do not fit the stub's arena")
        self.next = base + size
        return base


# ---------------------------------------------------------------------------
# The walked path, and rebuilding it under another geometry
# ---------------------------------------------------------------------------

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
            value = path.terminal.value
        else:
            original = path.at(level)
            keep = (original.value & ~addr_mask) if original is not None else 0
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


# ---------------------------------------------------------------------------
# Delta debugging (Zeller's ddmin), for the fallbacks
# ---------------------------------------------------------------------------

def ddmin(items: Sequence[T], test_round: Callable[[list[list[T]]], list[bool]],
          budget: int, batched: bool) -> tuple[list[T], bool]:
    """A 1-minimal subset of ``items`` for which the test holds, by Zeller's
    ddmin: the test is known to hold for ``items`` and to fail for the empty
    set.  ``test_round`` checks a list of candidate subsets; with
    ``batched`` a whole round (every chunk, then every complement) is checked
    in one call, otherwise one candidate per call until one holds.
    ``budget``: at most that many candidates.  Returns (subset, finished)."""
    current = list(items)
    n = 2
    spent = 0
    while len(current) >= 2:
        size = -(-len(current) // n)
        chunks = [current[i:i + size] for i in range(0, len(current), size)]
        complements = ([[x for c in chunks if c is not d for x in c] for d in chunks]
                       if len(chunks) > 2 else [])
        candidates = chunks + complements
        hit = None
        if batched:
            if spent + len(candidates) > budget:
                return current, False
            spent += len(candidates)
            results = test_round(candidates)
            hit = next((k for k, ok in enumerate(results) if ok), None)
        else:
            for k, cand in enumerate(candidates):
                if spent >= budget:
                    return current, False
                spent += 1
                if test_round([cand])[0]:
                    hit = k
                    break
        if hit is not None:
            current = candidates[hit]
            n = 2 if hit < len(chunks) else max(n - 1, 2)
        elif n >= len(current):
            break
        else:
            n = min(2 * n, len(current))
    return current, True


# ---------------------------------------------------------------------------
# Shrinking
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Step:
    """What one step of the shrink did (for the explanation)."""

    name: str
    text: str
    boots: int


@dataclasses.dataclass(frozen=True)
class ShrinkResult:
    """The minimal case, the signature it keeps, its trial in QEMU, and the steps."""

    original: Case
    probe: int                      # the probe of the original case the shrink followed
    signature: Signature
    minimal: Case
    trial: Trial
    steps: tuple[Step, ...]
    boots: int
    path: WalkPath | None

    def summary(self) -> str:
        lines = [f"divergence: probe {self.probe}: {self.signature.describe()}", "steps:"]
        lines += [f"  {s.name}: {s.text}  [{s.boots} QEMU boot{'s' if s.boots != 1 else ''}]"
                  for s in self.steps]
        lines.append(f"QEMU boots: {self.boots}")
        return "\n".join(lines)


def _with_words(case: Case, words: Mapping[int, int]) -> Case:
    """The case with an image of exactly ``words`` {PA: value} (zero words
    dropped: RAM outside the regions reads as zero)."""
    regions = tuple(Region(pa, struct.pack("<Q", v)) for pa, v in sorted(words.items()) if v)
    return dataclasses.replace(case, image=dataclasses.replace(case.image, regions=regions))


def image_words(case: Case) -> dict[int, int]:
    """Every 8-byte word of the image's regions, {PA: value}."""
    words = {}
    for r in case.image.regions:
        for off in range(0, len(r.data) - 7, 8):
            words[r.pa + off] = struct.unpack_from("<Q", r.data, off)[0]
    return words


def walked_addresses(case: Case) -> set[int]:
    """PAs of every descriptor the reference reads for any probe, under any
    permitted outcome."""
    mem = case.memory()
    return {s.address for p in case.probes
            for o in walk(case.cpu, case.config, mem, p.ipa, p.at).outcomes
            for s in o.trace if s.value is not None}


def choose_target(trial: Trial, probe: int | None) -> Found:
    """The divergence to follow: that of probe ``probe`` (fan-out probes
    numbered after the named ones), else the first probe divergence, else
    the first memory divergence."""
    if probe is not None:
        n = probe_count(trial.case)
        if not 0 <= probe < n:
            raise UsageError(f"--probe: {probe} is not a probe of this case (it has "
                             f"{n}: 0..{n - 1})")
        hit = [f for f in trial.divergences if f.probe == probe]
        if not hit:
            raise ShrinkError(f"probe {probe} does not diverge on this QEMU")
        return hit[0]
    for kind in (DivergenceKind.PROBE, DivergenceKind.MEMORY):
        hit = [f for f in trial.divergences if f.signature.kind == kind and f.probe is not None]
        if hit:
            return hit[0]
    raise ShrinkError("no divergence attributable to a probe")


def first_trial(case: Case, lab: Lab) -> Trial:
    """Run the case as given; ShrinkError if QEMU does not complete it or it
    does not diverge."""
    trial = lab.run([case])[0]
    if not trial.completed:
        raise ShrinkError(f"QEMU did not complete the case ({trial.batch.status.value}: "
                          f"{trial.batch.diagnostic.splitlines()[0] if trial.batch.diagnostic else ''}); "
                          "isolate it with `s2diff isolate`")
    if not trial.divergences:
        raise ShrinkError(f"the case does not diverge on {trial.batch.qemu_version}: nothing to shrink")
    return trial


def shrink(case: Case, lab: Lab, *, probe: int | None = None, budget: int = 48) -> ShrinkResult:
    """Minimize ``case`` (see the module docstring).  ``probe``: follow this
    probe's divergence (default: the first divergent probe); ``budget``:
    candidates each delta-debugging fallback may try."""
    steps: list[Step] = []
    boots0 = lab.boots
    trial = first_trial(case, lab)
    target = choose_target(trial, probe)
    sig = target.signature
    members = [f for f in trial.divergences if f.signature == sig and f.target is not None]
    members = [target] + [f for f in members if f.probe != target.probe]
    total = probe_count(case)
    steps.append(Step("run", f"{total} probes ({len(case.probes)} named, {len(case.fanout)} "
                      f"fan-out), {len(trial.divergences)} divergence records, "
                      f"{len(members)} of them in this family", lab.boots - boots0))

    # 1. probes
    b = lab.boots
    current, best = trial.case, trial
    if total > 1:
        tries = members[:8]
        trials = lab.run([only(current, [f.target]) for f in tries])
        hit = next((t for t in trials if t.shows(sig)), None)
        if hit is not None:
            kept = tries[trials.index(hit)]
            text = f"kept probe {kept.probe} alone ({total - 1} removed)"
            current, best = hit.case, hit
        else:
            others = [p for p in case.probes if p != target.target]
            keep_trials: dict[tuple[int, ...], Trial] = {}

            def test_probes(cands: list[list[Probe]]) -> list[bool]:
                ts = lab.run([only(current, c + [target.target]) for c in cands])
                for c, t in zip(cands, ts):
                    keep_trials[tuple(id(p) for p in c)] = t
                return [t.shows(sig) for t in ts]

            rest, done = ddmin(others, test_probes, budget, batched=True)
            t = keep_trials.get(tuple(id(p) for p in rest))
            if t is None:
                t = lab.run([only(current, rest + [target.target])])[0]
            if t.shows(sig):
                current, best = t.case, t
            text = (f"no probe diverges the same way alone; delta debugging over the named "
                    f"probes kept {len(rest) + 1} of {total}" + ("" if done else " (budget spent)"))
        steps.append(Step("probes", text, lab.boots - b))

    # 2. image
    b = lab.boots
    words = image_words(current)
    walked = walked_addresses(current)
    mem = current.memory()
    walk_words = {a: mem.read64(a) or 0 for a in walked}
    before = sum(1 for v in words.values() if v)
    if {a: v for a, v in walk_words.items() if v} == {a: v for a, v in words.items() if v}:
        text = f"the image already holds only the {len(walk_words)} walked descriptor(s)"
    else:
        t = lab.run([_with_words(current, walk_words)])[0]
        if t.shows(sig):
            current, best = t.case, t
            text = (f"kept the {sum(1 for v in walk_words.values() if v)} non-zero descriptor(s) "
                    f"the walk reads; {before - sum(1 for v in walk_words.values() if v)} "
                    "words removed")
        else:
            extra = sorted(a for a, v in words.items() if v and a not in walk_words)
            trials_by: dict[tuple[int, ...], Trial] = {}

            def test_words(cands: list[list[int]]) -> list[bool]:
                results = []
                for c in cands:
                    tr = lab.run([_with_words(current, {**walk_words,
                                                        **{a: words[a] for a in c}})])[0]
                    trials_by[tuple(c)] = tr
                    results.append(tr.shows(sig))
                return results

            rest, done = ddmin(extra, test_words, budget, batched=False)
            if tuple(rest) in trials_by:
                best = trials_by[tuple(rest)]
                current = best.case
            text = (f"QEMU reads more than the reference's walk: delta debugging kept "
                    f"{len(rest)} extra word(s) of {len(extra)}" + ("" if done else " (budget spent)"))
    steps.append(Step("image", text, lab.boots - b))

    # 3. configuration
    b = lab.boots
    path: WalkPath | None = None
    if len(current.probes) != 1:
        text = "skipped: more than one probe is needed"
    else:
        try:
            path = walk_path(current, 0)
        except NotRebuildable as exc:
            text = f"skipped: {exc}"
        else:
            current, best, text = _simplify_geometry(current, best, path, sig, lab)
            try:
                path = walk_path(current, 0)
            except NotRebuildable:
                path = None
    steps.append(Step("configuration", text, lab.boots - b))
    assert target.probe is not None
    return ShrinkResult(original=case, probe=target.probe, signature=sig, minimal=current,
                        trial=best, steps=tuple(steps), boots=lab.boots - boots0, path=path)


def describe_geometry(case: Case) -> str:
    layout = build_layout(case.cpu, case.config)
    levels = FINAL_LEVEL - layout.start_level + 1
    return (f"{layout.granule.label} {layout.ia_bits}-bit IPA start level {layout.start_level} "
            f"({levels} level{'s' if levels > 1 else ''})")


def _simplify_geometry(current: Case, best: Trial, path: WalkPath, sig: Signature,
                       lab: Lab) -> tuple[Case, Trial, str]:
    layout = build_layout(current.cpu, current.config)
    now = (FINAL_LEVEL - layout.start_level + 1, layout.ia_bits, current.probes[0].ipa)
    windows = Windows(lab.arena)
    candidates = []
    checked = 0
    for choice in geometry_choices(current, 0, path):
        if choice.key >= now:
            continue
        checked += 1
        new_layout = build_layout(current.cpu, choice.config)
        size, align = rebuild_footprint(new_layout, path.terminal.level)
        try:
            base = windows.take(size, align)
        except UsageError:
            break
        cand = rebuild(current, 0, path, base=base, config=choice.config, ipa=choice.ipa)
        if reference_labels(cand, 0) != sig.expected:
            continue
        try:
            new_path = walk_path(cand, 0)
        except NotRebuildable:
            continue
        if (new_path.terminal.level, new_path.terminal.value) != (path.terminal.level,
                                                                   path.terminal.value):
            continue
        candidates.append((choice, cand))
    if not candidates:
        return current, best, (f"no simpler geometry keeps the reference's outcome "
                               f"({checked} tried by the reference)")
    trials = lab.run([c for _, c in candidates])
    for (choice, cand), t in zip(candidates, trials):
        if t.shows(sig):
            same = sum(1 for tt in trials if tt.shows(sig))
            text = (f"{describe_geometry(current)}, IPA {current.probes[0].ipa:#x} -> "
                    f"{describe_geometry(cand)}, IPA {choice.ipa:#x} (tables rebuilt at "
                    f"{cand.image.root:#x}; {same} of {len(candidates)} candidates diverge the "
                    "same way)")
            return cand, t, text
    return current, best, (f"none of the {len(candidates)} simpler geometries diverges the "
                           "same way in QEMU; kept the configuration")
