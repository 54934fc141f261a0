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


def plan_batches(entries: Sequence[MatrixEntry], cases_per_entry: int, arena: tuple[int, int],
                 max_images: int, max_probes: int | None = None,
                 fanout: int = 0) -> list[Batch]:
    """Cut the run into numbered batches of one (arch, CPU) each, limited to
    ``max_images`` images, to what fits the arena and, with ``max_probes``,
    to the probes the stub's results area holds (each case counted at its
    entry's probe_estimate for ``fanout``): an access or stage-1 case has a
    few hundred probes where an AT case with fan-out has ~10^5, so the
    first pack many to a boot.

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
        used = probes = 0
        for spec in specs:
            size = spec.entry.window_bytes
            estimate = spec.entry.probe_estimate(fanout) if max_probes is not None else 0
            if current and (len(current) >= max_images or used + size > arena[1] - arena[0]
                            or (max_probes is not None and probes + estimate > max_probes)):
                cut.append((arch, cpu, tuple(current)))
                current, used, probes = [], 0, 0
            current.append(spec)
            used += size
            probes += estimate
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
