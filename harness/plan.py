"""Planning a run: the matrix entries cut into numbered batches of one
(arch, CPU model) each, round by round (:class:`Plan`, lazy), sharded, and
a batch's cases generated and turned into job images.

A run is a deterministic function of (matrix, seed, cases per entry): the
cases are cut into batches in a fixed order, and every batch is numbered.
``--shard K/N`` keeps the batches whose number is K-1 modulo N, so the
shards of a run together hold exactly its batches.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence

from reference.access_case import El1Window
from reference.arch import Arch
from reference.config import S2Config
from reference.cpus import CpuModel, get_cpu
from reference.generate import MemoryMap, OptIn
from reference.generate_s1 import Stage1Shape

from .errors import UsageError
from .kinds import (
    CaseKind,
    RunCase,
    case_window_bytes,
    generate_kind_case,
    kind_job_image,
    stage1_shape,
)
from .qemu.build import build_stub
from .qemu.builds import QemuBuild
from .qemu.elf import read_stub
from .qemu.job import JobImage

# What has nothing behind it on QEMU's virt machine: the unpopulated part of
# the RAM region above a 1 GiB RAM, and the hole between the virtio-mmio
# transports and the platform bus.  A walk reading there takes a
# synchronous External abort (measured, /tmp notes of the runner issue).
VIRT_EMPTY = (0xC0000000, 0x0B000000)


@dataclasses.dataclass(frozen=True)
class MatrixEntry:
    """One configuration of the matrix on one CPU model.

    ``group`` names the family for the summary (e.g. "aarch64 4k valid",
    "invalid: inconsistent SL"); ``name`` is unique within a matrix.
    ``model``: the CPU model to generate for when it is not the named
    table's (QEMU's max, as the QEMU in use reports it:
    harness.qemu.models).  ``opt_in``: scenarios the entry asks the
    generator for (reference.generate.OptIn).  ``kind``: what it generates
    (harness.kinds.CaseKind); ``stage1``: the stage-1 shape of a STAGE1
    entry, None for the model's shapes in turn, one per case
    (harness.kinds.stage1_shape)."""

    name: str
    group: str
    arch: Arch
    cpu: str
    config: S2Config
    valid: bool
    kvm: bool = False
    model: CpuModel | None = None
    opt_in: frozenset[OptIn] = frozenset()
    kind: CaseKind = CaseKind.AT
    stage1: Stage1Shape | None = None

    @property
    def cpu_model(self) -> CpuModel:
        return self.model or get_cpu(self.arch, self.cpu)

    def probe_estimate(self, fanout: int) -> int:
        """An upper bound of the probes one case of the entry has, for
        cutting batches to the stub's results area: an AT case up to
        MAX_SPANS placed entries with ``fanout`` bulk probes each (none for
        an opted-in scenario), an access case a few hundred steps, a
        stage-1 case about a hundred probes."""
        if self.kind is CaseKind.ACCESS:
            return ACCESS_PROBES
        if self.kind is CaseKind.STAGE1:
            return STAGE1_PROBES
        return MAX_SPANS * ((0 if self.opt_in else fanout) + 2)

    def cost_estimate(self, fanout: int) -> int:
        """A rough cost of one case of the entry, in AT probes: an access
        probe costs ~ACCESS_WEIGHT of them, a stage-1 probe ~STAGE1_WEIGHT.
        Only for ordering batches (Plan.tail): it decides no result."""
        weight = {CaseKind.ACCESS: ACCESS_WEIGHT, CaseKind.STAGE1: STAGE1_WEIGHT}
        return self.probe_estimate(fanout) * weight.get(self.kind, 1)

    @property
    def window_bytes(self) -> int:
        """PA window one case of the entry takes in the arena."""
        return case_window_bytes(self.kind, self.config, self.stage1, self.cpu_model)


@dataclasses.dataclass(frozen=True)
class CaseSpec:
    entry: MatrixEntry
    index: int

    @property
    def key(self) -> str:
        return f"{self.entry.name}#{self.index}"


@dataclasses.dataclass(frozen=True)
class Batch:
    number: int
    arch: Arch
    cpu: str
    specs: tuple[CaseSpec, ...]


@dataclasses.dataclass(frozen=True)
class Chunk:
    """The entries of one (arch, CPU) that one batch of a round holds:
    indices into the plan's entries."""

    arch: Arch
    cpu: str
    entries: tuple[int, ...]


def round_chunks(entries: Sequence[MatrixEntry], arena: tuple[int, int], max_images: int,
                 max_probes: int | None = None, fanout: int = 0) -> tuple[Chunk, ...]:
    """One round (one case of every entry) cut into batches of one
    (arch, CPU) each, limited to ``max_images`` images, to what fits the
    arena and, with ``max_probes``, to the probes the stub's results area
    holds (each case counted at its entry's probe_estimate for ``fanout``:
    an access or stage-1 case has a few hundred probes where an AT case with
    fan-out has ~10^5, so the first pack many to a boot), the machines'
    batches interleaved (so that a stop part-way through a round has run
    part of every CPU model, not all of a few)."""
    by_machine: dict[tuple[Arch, str], list[int]] = {}
    for i, entry in enumerate(entries):
        by_machine.setdefault((entry.arch, entry.cpu), []).append(i)
    per_machine: list[list[Chunk]] = []
    for (arch, cpu), indices in by_machine.items():
        cut: list[Chunk] = []
        current: list[int] = []
        used = probes = 0
        for i in indices:
            size = entries[i].window_bytes
            estimate = entries[i].probe_estimate(fanout) if max_probes is not None else 0
            if current and (len(current) >= max_images or used + size > arena[1] - arena[0]
                            or (max_probes is not None and probes + estimate > max_probes)):
                cut.append(Chunk(arch, cpu, tuple(current)))
                current, used, probes = [], 0, 0
            current.append(i)
            used += size
            probes += estimate
        if current:
            cut.append(Chunk(arch, cpu, tuple(current)))
        per_machine.append(cut)
    return tuple(c for round_ in itertools.zip_longest(*per_machine) for c in round_
                 if c is not None)


def _count_solutions(step: int, target: int, modulus: int, limit: int) -> int:
    """How many r in [0, limit) have r * step = target (mod modulus)."""
    g = math.gcd(step, modulus)
    if target % g:
        return 0
    m = modulus // g
    r0 = (target // g) * pow(step // g, -1, m) % m if m > 1 else 0
    return 0 if r0 >= limit else (limit - 1 - r0) // m + 1


@dataclasses.dataclass(frozen=True)
class Plan:
    """A run's batches, generated as they are needed (never all in memory:
    a plan of 10^5 cases per entry costs what a plan of one does).

    The run is a deterministic function of (matrix, seed, cases per entry):
    round r holds case r of every entry, cut into the same ``chunks`` every
    round; batch n is chunk n mod C of round block n div C (C chunks per
    round; a block is ``rounds_per_batch`` rounds, more than one only when
    a whole round is one chunk: the images of its rounds then run in round
    order in one boot).  Rounds go in order, so every entry runs its first
    case before any entry runs a second: a stop part-way (``--budget``,
    Ctrl-C) thins cases, never entries.  ``--shard K/N`` keeps the batches
    whose number is K-1 modulo N, so the shards of a run together hold
    exactly its batches.  ``tail``: the chunks, costliest first
    (MatrixEntry.cost_estimate): the order of the last block when it is
    not the first (see __iter__)."""

    entries: tuple[MatrixEntry, ...]
    cases_per_entry: int
    chunks: tuple[Chunk, ...]
    shard: tuple[int, int] | None = None
    rounds_per_batch: int = 1
    tail: tuple[int, ...] = ()

    @classmethod
    def of(cls, entries: Sequence[MatrixEntry], cases_per_entry: int, arena: tuple[int, int],
           max_images: int, shard: tuple[int, int] | None = None,
           max_probes: int | None = None, fanout: int = 0) -> Plan:
        entries = tuple(entries)
        chunks = round_chunks(entries, arena, max_images, max_probes, fanout)
        k = 1
        if len(chunks) == 1 and entries:
            size = sum(e.window_bytes for e in entries)
            k = max(1, min(max_images // len(entries), (arena[1] - arena[0]) // size,
                           cases_per_entry))
            if max_probes is not None:
                per_round = sum(e.probe_estimate(fanout) for e in entries)
                k = max(1, min(k, max_probes // max(per_round, 1)))
        cost = [sum(entries[i].cost_estimate(fanout) for i in c.entries) for c in chunks]
        tail = tuple(sorted(range(len(chunks)), key=lambda i: -cost[i]))
        return cls(entries, cases_per_entry, chunks, shard, k, tail)

    @property
    def blocks(self) -> int:
        """Round blocks: batches per chunk in the whole run."""
        return -(-self.cases_per_entry // self.rounds_per_batch)

    @property
    def total_batches(self) -> int:
        """Batches of the whole (unsharded) run."""
        return self.blocks * len(self.chunks)

    def in_shard(self, number: int) -> bool:
        return self.shard is None or number % self.shard[1] == self.shard[0] - 1

    def batch(self, number: int) -> Batch:
        block, index = divmod(number, len(self.chunks))
        chunk = self.chunks[index]
        k = self.rounds_per_batch
        rounds = range(block * k, min(block * k + k, self.cases_per_entry))
        return Batch(number, chunk.arch, chunk.cpu,
                     tuple(CaseSpec(self.entries[i], r) for r in rounds for i in chunk.entries))

    def __iter__(self) -> Iterator[Batch]:
        """The batches of this shard in the order they run: by number,
        except that the last round block, when it is not the first, runs
        its costliest chunks first (``tail``), so that the run's last
        batches are its shortest and the workers finish together (a long
        batch taken last leaves the other workers idle while it runs).
        The first round keeps its order: a budget stop in it loses
        entries, and its machines are interleaved."""
        k, n = self.shard or (1, 1)
        if self.blocks <= 1:
            yield from (self.batch(number) for number in range(k - 1, self.total_batches, n))
            return
        last = (self.blocks - 1) * len(self.chunks)
        yield from (self.batch(number) for number in range(k - 1, last, n))
        yield from (self.batch(last + i) for i in self.tail if self.in_shard(last + i))

    def chunk_rounds(self) -> list[int]:
        """Per chunk, how many of its cases (rounds) the shard holds."""
        c, k, blocks = len(self.chunks), self.rounds_per_batch, self.blocks
        out = []
        for i in range(c):
            if self.shard is None:
                out.append(self.cases_per_entry)
                continue
            shard_k, n = self.shard
            held = _count_solutions(c, (shard_k - 1 - i) % n, n, blocks)
            rounds = held * k
            if blocks and self.in_shard((blocks - 1) * c + i):
                rounds -= blocks * k - self.cases_per_entry     # the last block is short
            out.append(rounds)
        return out

    @property
    def batches(self) -> int:
        """Batches of this shard (computed, not generated)."""
        if self.shard is None:
            return self.total_batches
        k, n = self.shard
        return len(range(k - 1, self.total_batches, n))

    @property
    def cases(self) -> int:
        """Cases of this shard (computed, not generated)."""
        return sum(r * len(c.entries) for r, c in zip(self.chunk_rounds(), self.chunks))


def plan_batches(entries: Sequence[MatrixEntry], cases_per_entry: int, arena: tuple[int, int],
                 max_images: int, max_probes: int | None = None,
                 fanout: int = 0) -> list[Batch]:
    """Every batch of a run, in order (a list: for small runs and tests;
    a run iterates a Plan)."""
    return list(Plan.of(entries, cases_per_entry, arena, max_images, max_probes=max_probes,
                        fanout=fanout))


# CI systems' own variables for a job's index and count among parallel
# jobs (docs/ci.md): (index variable, count variable, first index).
SHARD_VARIABLES = (("CI_NODE_INDEX", "CI_NODE_TOTAL", 1),                       # GitLab CI
                   ("BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", 0),  # Buildkite
                   ("S2DIFF_SHARD_INDEX", "S2DIFF_SHARD_TOTAL", 1))             # any other


def shard_from_environment(env: Mapping[str, str]) -> tuple[int, int]:
    """``--shard auto``: (K, N) from the first CI system whose variables
    are set (SHARD_VARIABLES); UsageError naming them when none is, or
    when the values are not a shard."""
    for index, count, first in SHARD_VARIABLES:
        if index in env or count in env:
            try:
                k, n = int(env[index]) - first + 1, int(env[count])
            except (KeyError, ValueError):
                raise UsageError(f"--shard auto: {index}={env.get(index)!r} and {count}="
                                 f"{env.get(count)!r} are not a job index and count") from None
            if not 1 <= k <= n:
                raise UsageError(f"--shard auto: {index}={env[index]} is not one of the "
                                 f"{n} jobs of {count}")
            return k, n
    names = ", ".join(f"{i}/{c}" for i, c, _ in SHARD_VARIABLES)
    raise UsageError(f"--shard auto: none of {names} is set (docs/ci.md)")


def parse_shard(text: str, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """'K/N' with 1 <= K <= N, or 'auto' (shard_from_environment of
    ``env``, default os.environ)."""
    if text == "auto":
        return shard_from_environment(os.environ if env is None else env)
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard: {text!r} is not of the form K/N (e.g. 2/3)") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard: {text!r} needs 1 <= K <= N")
    return k, n


def generate_batch(batch: Batch, seed: int, arena: tuple[int, int], mmap: MemoryMap,
                   fanout: int = 0, el1: El1Window | None = None) -> list[RunCase]:
    """The cases of a batch, each in its own window of the arena.  ``el1``:
    the stub's EL1 window (harness.qemu.elf.el1_window), for access cases."""
    cases = []
    base = arena[0]
    for spec in batch.specs:
        e = spec.entry
        size = e.window_bytes
        # An opted-in scenario (a misaligned VTTBR) has no fan-out: the
        # span model cannot vouch for spans walked from two readings of the
        # root, so the bulk probes would be walked one by one (~30 s a case).
        shape = stage1_shape(e.cpu_model, e.stage1, spec.index) \
            if e.kind is CaseKind.STAGE1 else None
        cases.append(generate_kind_case(e.kind, e.cpu_model, e.config, seed, spec.key,
                                        (base, size), mmap, fanout=0 if e.opt_in else fanout,
                                        opt_in=e.opt_in, shape=shape, el1=el1))
        base += size
    return cases


# Upper bound of the entries a case places (spans): what the results area
# must hold per image is about fanout times this.
MAX_SPANS = 100
# Upper bounds of the probes of an access case (steps: ~100 for a 40-bit
# walk from level 1, more from level 0) and of a stage-1 case (~90).
ACCESS_PROBES = 400
STAGE1_PROBES = 200
# Cost of an access / stage-1 probe in AT probes (MatrixEntry.cost_estimate),
# measured end to end on one worker (bench.measure_e2e, cortex-a72 entries of
# one kind, 2 cases each, QEMU 7.2): AT ~1.0 M probes/s; access ~170 probes in
# ~0.085 s a case (each step a reference walk and a trap); stage 1 ~90 probes
# in ~0.1 s a case (two stages and the walk's own translations).
ACCESS_WEIGHT = 500
STAGE1_WEIGHT = 1000


def images_per_batch(max_images: int, fanout: int, max_probes: int) -> int:
    """Images per batch so that the probes fit the stub's results area."""
    per_image = MAX_SPANS * (fanout + 2)
    return max(1, min(max_images, max_probes // per_image))


def job_image(case: RunCase) -> JobImage:
    """The job image of a case of any kind (harness.kinds.kind_job_image);
    a stage-2 case's named probes come first, then its fan-out probes."""
    return kind_job_image(case)


@dataclasses.dataclass(frozen=True)
class Machine:
    """What a worker needs to run batches: the QEMU programs of each build
    (``qemu``: label -> arch -> program; a program None is the default
    one, harness.qemu.launcher.find_qemu), the stubs and their layouts."""

    qemu: dict[str, dict[str, str | None]]
    stubs: dict[str, str]
    arena: dict[str, tuple[int, int]]
    ram: dict[str, tuple[int, int]]
    max_probes: dict[str, int]

    def memory_map(self, arch: Arch) -> MemoryMap:
        return MemoryMap(ram=(self.ram[arch.value],), empty=VIRT_EMPTY)

    def qemu_path(self, label: str, arch: Arch) -> str | None:
        """The program QEMU build ``label`` runs for ``arch`` (None: the default)."""
        return self.qemu.get(label, {}).get(arch.value)


def prepare_machine(arches: Iterable[Arch],
                    qemu: Sequence[QemuBuild] | Mapping[Arch, str | None] = ()) -> Machine:
    """Build the stubs (once, in the parent) and read their layouts.
    ``qemu``: the QEMU builds of the run, or one unlabelled build given as
    a program per architecture (None: the default one)."""
    stubs, arena, ram, max_probes = {}, {}, {}, {}
    for arch in set(arches):
        path = build_stub(arch)
        layout = read_stub(path).layout
        stubs[arch.value] = str(path)
        arena[arch.value] = (layout.arena_start, layout.arena_end)
        ram[arch.value] = (layout.ram_base, layout.ram_size)
        max_probes[arch.value] = layout.max_probes
    if isinstance(qemu, Mapping):
        programs = {"": {a.value: (str(q) if q is not None else None) for a, q in qemu.items()}}
    else:
        programs = {b.label: {a.value: str(p) for a, p in b.paths.items()} for b in qemu}
    return Machine(qemu=programs, stubs=stubs, arena=arena, ram=ram, max_probes=max_probes)
