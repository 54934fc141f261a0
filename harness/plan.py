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

import numpy as np

from reference.arch import Arch, Granule
from reference.config import S2Config
from reference.cpus import get_cpu
from reference.generate import Case, MemoryMap, generate_case

from .errors import UsageError
from .qemu.build import build_stub
from .qemu.builds import QemuBuild
from .qemu.elf import read_stub
from .qemu.job import PROBE_DTYPE, JobImage

# What has nothing behind it on QEMU's virt machine: the unpopulated part of
# the RAM region above a 1 GiB RAM, and the hole between the virtio-mmio
# transports and the platform bus.  A walk reading there takes a
# synchronous External abort (measured, /tmp notes of the runner issue).
VIRT_EMPTY = (0xC0000000, 0x0B000000)


@dataclasses.dataclass(frozen=True)
class MatrixEntry:
    """One configuration of the matrix on one CPU model.

    ``group`` names the family for the summary (e.g. "aarch64 4k valid",
    "invalid: inconsistent SL"); ``name`` is unique within a matrix."""

    name: str
    group: str
    arch: Arch
    cpu: str
    config: S2Config
    valid: bool
    kvm: bool = False


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


def window_bytes(config: S2Config) -> int:
    """PA window reserved for one image: room for a full concatenated
    start level (16 tables) and ~60 next-level tables of the granule."""
    granule = config.granule or Granule.G4K
    return 1 << (granule.bits + 7)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """The entries of one (arch, CPU) that one batch of a round holds:
    indices into the plan's entries."""

    arch: Arch
    cpu: str
    entries: tuple[int, ...]


def round_chunks(entries: Sequence[MatrixEntry], arena: tuple[int, int],
                 max_images: int) -> tuple[Chunk, ...]:
    """One round (one case of every entry) cut into batches of one
    (arch, CPU) each, limited to ``max_images`` images and to what fits the
    arena, the machines' batches interleaved (so that a stop part-way
    through a round has run part of every CPU model, not all of a few)."""
    by_machine: dict[tuple[Arch, str], list[int]] = {}
    for i, entry in enumerate(entries):
        by_machine.setdefault((entry.arch, entry.cpu), []).append(i)
    per_machine: list[list[Chunk]] = []
    for (arch, cpu), indices in by_machine.items():
        cut: list[Chunk] = []
        current: list[int] = []
        used = 0
        for i in indices:
            size = window_bytes(entries[i].config)
            if current and (len(current) >= max_images or used + size > arena[1] - arena[0]):
                cut.append(Chunk(arch, cpu, tuple(current)))
                current, used = [], 0
            current.append(i)
            used += size
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
    exactly its batches."""

    entries: tuple[MatrixEntry, ...]
    cases_per_entry: int
    chunks: tuple[Chunk, ...]
    shard: tuple[int, int] | None = None
    rounds_per_batch: int = 1

    @classmethod
    def of(cls, entries: Sequence[MatrixEntry], cases_per_entry: int, arena: tuple[int, int],
           max_images: int, shard: tuple[int, int] | None = None) -> Plan:
        entries = tuple(entries)
        chunks = round_chunks(entries, arena, max_images)
        k = 1
        if len(chunks) == 1 and entries:
            size = sum(window_bytes(e.config) for e in entries)
            k = max(1, min(max_images // len(entries), (arena[1] - arena[0]) // size,
                           cases_per_entry))
        return cls(entries, cases_per_entry, chunks, shard, k)

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
        """The batches of this shard, in order."""
        k, n = self.shard or (1, 1)
        return (self.batch(number) for number in range(k - 1, self.total_batches, n))

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
                 max_images: int) -> list[Batch]:
    """Every batch of a run, in order (a list: for small runs and tests;
    a run iterates a Plan)."""
    return list(Plan.of(entries, cases_per_entry, arena, max_images))


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
                   fanout: int = 0) -> list[Case]:
    """The cases of a batch, each image in its own window of the arena."""
    cases = []
    base = arena[0]
    for spec in batch.specs:
        size = window_bytes(spec.entry.config)
        cpu = get_cpu(spec.entry.arch, spec.entry.cpu)
        cases.append(generate_case(cpu, spec.entry.config, seed, spec.key, (base, size), mmap,
                                   fanout=fanout))
        base += size
    return cases


# Upper bound of the entries a case places (spans): what the results area
# must hold per image is about fanout times this.
MAX_SPANS = 100


def images_per_batch(max_images: int, fanout: int, max_probes: int) -> int:
    """Images per batch so that the probes fit the stub's results area."""
    per_image = MAX_SPANS * (fanout + 2)
    return max(1, min(max_images, max_probes // per_image))


def job_image(case: Case) -> JobImage:
    """The job image of a case: its named probes, then its fan-out probes."""
    table = np.zeros(len(case.probes) + len(case.fanout), dtype=PROBE_DTYPE)
    named = len(case.probes)
    table["ipa"][:named] = [p.ipa for p in case.probes]
    table["kind"][:named] = [p.at.value for p in case.probes]
    table["ipa"][named:] = case.fanout.ipa
    table["kind"][named:] = case.fanout.at
    return JobImage(vtcr=case.config.vtcr(), vttbr=case.config.vttbr,
                    regions=tuple((r.pa, r.data) for r in case.image.regions), probes=table)


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
