"""Planning a run: the matrix entries cut into numbered batches of one
(arch, CPU model) each, sharded, and a batch's cases generated and turned
into job images.

A run is a deterministic function of (matrix, seed, cases per entry): the
cases are cut into batches in a fixed order, and every batch is numbered.
``--shard K/N`` keeps the batches whose number is K-1 modulo N, so the
shards of a run together hold exactly its batches.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from reference.arch import Arch, Granule
from reference.config import S2Config
from reference.cpus import get_cpu
from reference.generate import Case, MemoryMap, OptIn, generate_case

from .errors import UsageError
from .qemu.build import build_stub
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
    "invalid: inconsistent SL"); ``name`` is unique within a matrix;
    ``opt_in`` the generator's opt-in scenarios its cases use
    (reference.generate.OptIn, e.g. a VTTBR base beyond PS)."""

    name: str
    group: str
    arch: Arch
    cpu: str
    config: S2Config
    valid: bool
    kvm: bool = False
    opt_in: frozenset[OptIn] = frozenset()


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


def plan_batches(entries: Sequence[MatrixEntry], cases_per_entry: int, arena: tuple[int, int],
                 max_images: int) -> list[Batch]:
    """Cut the run into numbered batches of one (arch, CPU) each, limited to
    ``max_images`` images and to what fits the arena.

    Cases go round by round (case 0 of every entry, then case 1, ...) and
    the machines' batches alternate, so a run stopped early by --budget has
    fewer cases of every entry rather than none of the last CPU models."""
    by_machine: dict[tuple[Arch, str], list[CaseSpec]] = {}
    for i in range(cases_per_entry):
        for entry in entries:
            by_machine.setdefault((entry.arch, entry.cpu), []).append(CaseSpec(entry, i))
    per_machine: list[list[tuple[Arch, str, tuple[CaseSpec, ...]]]] = []
    for (arch, cpu), specs in by_machine.items():
        cut: list[tuple[Arch, str, tuple[CaseSpec, ...]]] = []
        current: list[CaseSpec] = []
        used = 0
        for spec in specs:
            size = window_bytes(spec.entry.config)
            if current and (len(current) >= max_images or used + size > arena[1] - arena[0]):
                cut.append((arch, cpu, tuple(current)))
                current, used = [], 0
            current.append(spec)
            used += size
        if current:
            cut.append((arch, cpu, tuple(current)))
        per_machine.append(cut)
    batches: list[Batch] = []
    for round_ in itertools.zip_longest(*per_machine):
        for item in round_:
            if item is not None:
                batches.append(Batch(len(batches), *item))
    return batches


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' with 1 <= K <= N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard: {text!r} is not of the form K/N (e.g. 2/3)") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard: {text!r} needs 1 <= K <= N")
    return k, n


def shard_batches(batches: Sequence[Batch], shard: tuple[int, int] | None) -> list[Batch]:
    if shard is None:
        return list(batches)
    k, n = shard
    return [b for b in batches if b.number % n == k - 1]


def generate_batch(batch: Batch, seed: int, arena: tuple[int, int], mmap: MemoryMap,
                   fanout: int = 0) -> list[Case]:
    """The cases of a batch, each image in its own window of the arena."""
    cases = []
    base = arena[0]
    for spec in batch.specs:
        size = window_bytes(spec.entry.config)
        cpu = get_cpu(spec.entry.arch, spec.entry.cpu)
        cases.append(generate_case(cpu, spec.entry.config, seed, spec.key, (base, size), mmap,
                                   fanout=fanout, opt_in=spec.entry.opt_in))
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
    """What a worker needs to run batches: QEMU binaries and stub paths."""

    qemu: dict[str, str | None]
    stubs: dict[str, str]
    arena: dict[str, tuple[int, int]]
    ram: dict[str, tuple[int, int]]
    max_probes: dict[str, int]

    def memory_map(self, arch: Arch) -> MemoryMap:
        return MemoryMap(ram=(self.ram[arch.value],), empty=VIRT_EMPTY)


def prepare_machine(arches: Iterable[Arch], qemu: dict[Arch, str | None]) -> Machine:
    """Build the stubs (once, in the parent) and read their layouts."""
    stubs, arena, ram, max_probes = {}, {}, {}, {}
    for arch in set(arches):
        path = build_stub(arch)
        layout = read_stub(path).layout
        stubs[arch.value] = str(path)
        arena[arch.value] = (layout.arena_start, layout.arena_end)
        ram[arch.value] = (layout.ram_base, layout.ram_size)
        max_probes[arch.value] = layout.max_probes
    return Machine(qemu={a.value: q for a, q in qemu.items()}, stubs=stubs, arena=arena, ram=ram,
                   max_probes=max_probes)
