"""The differential run: matrix entries -> seeded cases -> batches in QEMU
-> comparison -> records.

A run is a deterministic function of (matrix, seed, cases per entry): the
cases are cut into batches of one (arch, CPU model) each, in a fixed order,
and every batch is numbered.  ``--shard K/N`` keeps the batches whose number
is K-1 modulo N, so the shards of a run together hold exactly its batches.
Workers (processes) generate, execute and judge whole batches; the parent
appends their records to ``results.jsonl`` (flushed and fsync'd) as they
arrive and writes a case file per divergence.
"""
from __future__ import annotations

import base64
import collections
import concurrent.futures
import dataclasses
import itertools
import json
import multiprocessing.connection
import os
import shlex
import signal
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from reference.arch import Arch, Granule
from reference.config import S2Config
from reference.cpus import get_cpu
from reference.generate import Case, FanOut, MemoryMap, generate_case
from reference.outcome import WalkResult

from .baseline import EMPTY, apply_baseline, load_baseline
from .qemu.build import build_stub
from .casefile import save_case
from .bulk import judge_fanout
from .compare import ProbeStatus, judge_memory, judge_probe, permitted_writes
from .qemu.elf import read_stub
from .errors import InfrastructureError, QemuError, UsageError
from .qemu.job import PROBE_DTYPE, JobImage, row_observation
from .qemu.boot import BatchStatus, run_batch
from .qemu.launcher import set_parent_death_signal
from .vocabulary import (FANOUT_AIM, memory_expected, memory_observed, memory_observed_text,
                         memory_raw, observed_label, outcome_label, raw_observation)

RECORDS = "results.jsonl"

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


def judge_batch(batch: Batch, cases: Sequence[Case], result) -> list[dict[str, Any]]:
    """Records for one executed batch (see docs/results.md)."""
    records: list[dict[str, Any]] = [{
        "type": "batch", "batch": batch.number, "arch": batch.arch.value, "cpu": batch.cpu,
        "status": result.status.value, "images": len(cases), "images_done": result.images_done,
        "elapsed": round(result.elapsed, 4), "argv": list(result.argv),
        "qemu_version": result.qemu_version, "diagnostic": result.diagnostic,
    }]
    for spec, case, image in zip(batch.specs, cases, result.images):
        counts, divergences = judge_case(case, image)
        status = _case_status(result.status, image.completed, counts)
        records.append({
            "type": "case", "key": case.key, "entry": spec.entry.name, "group": spec.entry.group,
            "arch": case.cpu.arch.value, "cpu": case.cpu.name, "vtcr": f"{case.config.vtcr():#x}",
            "vttbr": f"{case.config.vttbr:#x}", "valid": spec.entry.valid, "kvm": spec.entry.kvm,
            "batch": batch.number, "status": status, **counts,
        })
        for d in divergences:
            d.update({"key": case.key, "entry": spec.entry.name, "group": spec.entry.group,
                      "batch": batch.number, "qemu_version": result.qemu_version,
                      "argv": list(result.argv)})
            records.append(d)
    return records


def judge_case(case: Case, image) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Counts and divergence records (without run context) for one case's
    observations (an ImageResult): the named probes one by one with the
    readable walker, the fan-out probes in bulk (harness.bulk)."""
    permitted = case.permitted()
    arch = case.cpu.arch
    named = len(case.probes)
    counts = {"probes": named + len(case.fanout), "passed": 0, "diverged": 0, "not_run": 0}
    divergences = []
    for i, (probe, res) in enumerate(zip(case.probes, permitted)):
        obs = row_observation(image.records[i])
        verdict = judge_probe(arch, res, probe.ipa, obs, case.cpu.arch_version)
        if verdict.status is ProbeStatus.PASS:
            counts["passed"] += 1
        elif verdict.status is ProbeStatus.NOT_RUN:
            counts["not_run"] += 1
        else:
            counts["diverged"] += 1
            divergences.append(_divergence(case, i, probe.ipa, probe.at, probe.aim, res, obs,
                                           verdict.observed))
    bulk = judge_fanout(case, image.records[named:])
    counts["passed"] += bulk.passed
    counts["not_run"] += bulk.not_run
    counts["diverged"] += bulk.diverged
    for row, res, obs, count, ipas, at, ipa, text in bulk.divergences:
        span = int(case.fanout.span[row])
        base, bits = case.fanout.spans[span]
        d = _divergence(case, named + row, ipa, at, FANOUT_AIM, res, obs, text)
        d.update({"count": count, "ipas": ipas, "span": {"base": f"{base:#x}", "bits": bits}})
        divergences.append(d)
    if image.completed:
        before = tuple((r.pa, r.data) for r in case.image.regions)
        for change in judge_memory(before, image.regions_after,
                                   permitted_writes(permitted) + bulk.writes):
            counts["diverged"] += 1
            divergences.append(_memory_divergence(case, permitted, change))
    return counts, divergences



def _case_status(batch_status: BatchStatus, completed: bool, counts: dict[str, int]) -> str:
    if counts["diverged"]:
        return "diverge"
    if completed:
        return "pass"
    return {BatchStatus.TIMEOUT: "timeout", BatchStatus.CRASHED: "crash",
            BatchStatus.GUEST_ERROR: "guest-error"}.get(batch_status, "not-run")


def _granule(case: Case) -> str | None:
    """The granule TG0 names (None for the reserved encoding)."""
    g = case.config.granule
    return g.label if g else None


def _divergence(case: Case, index: int, ipa: int, at, aim: str, res: WalkResult, obs,
                observed: str) -> dict[str, Any]:
    arch = case.cpu.arch
    return {
        "type": "divergence", "kind": "probe", "probe": index, "ipa": f"{ipa:#x}",
        "at": at.name, "aim": aim, "arch": arch.value, "cpu": case.cpu.name,
        "granule": _granule(case),
        "config": case.config.describe(), "vtcr": f"{case.config.vtcr():#x}",
        "vttbr": f"{case.config.vttbr:#x}",
        "expected": sorted({outcome_label(o.result) for o in res.outcomes}),
        "permitted": [{"result": o.describe(), "rules": list(o.rules),
                       "trace": [t.describe() for t in o.trace]} for o in res.outcomes],
        "observed": observed_label(arch, obs), "observed_text": observed,
        "raw": raw_observation(obs),
    }


def _memory_divergence(case: Case, permitted: Sequence[WalkResult], change) -> dict[str, Any]:
    """A descriptor write no permitted outcome allows; attributed to the
    first probe whose walk read that descriptor."""
    index = next((i for i, r in enumerate(permitted)
                  for o in r.outcomes for t in o.trace if t.address == change.pa), None)
    probe = case.probes[index] if index is not None else None
    return {
        "type": "divergence", "kind": "memory", "probe": index,
        "ipa": f"{probe.ipa:#x}" if probe else None, "at": probe.at.name if probe else None,
        "aim": probe.aim if probe else "", "arch": case.cpu.arch.value, "cpu": case.cpu.name,
        "granule": _granule(case),
        "config": case.config.describe(), "vtcr": f"{case.config.vtcr():#x}",
        "vttbr": f"{case.config.vttbr:#x}",
        "expected": [memory_expected(change.pa, change.before)],
        "permitted": [{"result": o.describe(), "rules": list(o.rules),
                       "trace": [t.describe() for t in o.trace]}
                      for o in (permitted[index].outcomes if index is not None else ())],
        "observed": memory_observed(change.before, change.after),
        "observed_text": memory_observed_text(change.pa, change.before, change.after),
        "raw": memory_raw(change.pa, change.before, change.after),
    }


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


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs besides the batch."""

    seed: int
    machine: Machine
    out: str | None = None
    baseline: str | None = None
    timeout: float | None = None
    fanout: int = 0


def execute_batch(batch: Batch, cfg: WorkerConfig) -> list[dict[str, Any]]:
    """Generate, run and judge one batch (runs in a worker process).

    Divergences are matched against the baseline here, and a case file is
    written under OUT/cases/ for every case with a new divergence.  A
    failure of the harness itself inside one batch is recorded as that
    batch's status ``harness-error`` with the traceback, and so is QEMU
    failing to run the batch (QemuError: it exited before the stub ran),
    with its command line and output; the run goes on.  Other
    infrastructure errors (no QEMU, no toolchain) propagate."""
    try:
        return _execute_batch(batch, cfg)
    except QemuError as exc:
        output = "\n".join(exc.output.strip().splitlines()[-10:])
        return [_harness_error(batch, f"{exc}\n{shlex.join(exc.argv)}\n{output}".rstrip(),
                               list(exc.argv))]
    except (InfrastructureError, UsageError):
        raise
    except Exception:
        return [_harness_error(batch, traceback.format_exc())]


def _harness_error(batch: Batch, diagnostic: str, argv: list[str] | None = None) -> dict[str, Any]:
    """The batch record of a batch that produced no results."""
    return {"type": "batch", "batch": batch.number, "arch": batch.arch.value,
            "cpu": batch.cpu, "status": "harness-error", "images": len(batch.specs),
            "images_done": 0, "elapsed": 0.0, "argv": argv or [], "qemu_version": "",
            "diagnostic": diagnostic}


def _execute_batch(batch: Batch, cfg: WorkerConfig) -> list[dict[str, Any]]:
    arch = batch.arch.value
    machine = cfg.machine
    cases = generate_batch(batch, cfg.seed, machine.arena[arch], machine.memory_map(batch.arch),
                           cfg.fanout)
    result = run_boots(batch, [job_image(c) for c in cases], cfg)
    records = judge_batch(batch, cases, result)
    baseline = load_baseline(cfg.baseline) if cfg.baseline else EMPTY
    records = apply_baseline(baseline, records)
    if cfg.out:
        write_case_files(Path(cfg.out), cases, result, records)
        if result.status in (BatchStatus.CRASHED, BatchStatus.TIMEOUT):
            finding = isolate_failure(batch, cases, cfg)
            next(r for r in records if r.get("type") == "batch")["isolated"] = finding
    return aggregate_known([compact_known(r) for r in records])


def aggregate_known(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (case, baseline entry, kind, expected, observed) for
    known divergences, ``count`` summed: a nightly run has tens of
    millions of known diverging probes, and the reports only count them.
    New divergences keep one record each (per fan-out group)."""
    out: list[dict[str, Any]] = []
    merged: dict[tuple, dict[str, Any]] = {}
    for rec in records:
        if rec.get("type") != "divergence" or not rec.get("known"):
            out.append(rec)
            continue
        key = (rec["key"], rec["known"], rec["kind"], tuple(rec.get("expected", ())),
               rec.get("observed"))
        if key in merged:
            merged[key]["count"] = merged[key].get("count", 1) + rec.get("count", 1)
            continue
        merged[key] = dict(rec)
        merged[key].pop("ipas", None)
        merged[key].pop("span", None)
        out.append(merged[key])
    return out


# Seconds each isolation boot may take: a hang costs this much per
# bisection step, so it is kept short (a healthy single image takes ms).
ISOLATE_TIMEOUT = 10.0


def isolate_failure(batch: Batch, cases: Sequence[Case], cfg: WorkerConfig) -> dict[str, Any]:
    """Split a batch that crashed or hung QEMU down to the image and probe
    that do it (harness.isolate); a failure that reproduces from one case
    is a finding with its case file (kind crash or hang, `s2diff repro`
    re-runs it); one that does not is recorded as such and stays an
    infrastructure event, never a divergence."""
    from .isolate import IsolateError, failure_of, isolate, isolation_extra
    arch = batch.arch.value
    # A QEMU that fails without any image is broken, not made to fail by a
    # case: that is infrastructure, whatever a single case then shows.
    empty = run_batch(batch.arch, batch.cpu, [], qemu=cfg.machine.qemu.get(arch),
                      stub=Path(cfg.machine.stubs[arch]), timeout=ISOLATE_TIMEOUT)
    if failure_of(empty) is not None:
        return {"reproduced": False,
                "why": f"QEMU fails with an empty job too ({empty.status.value}): not caused by a case"}
    try:
        iso = isolate(cases, qemu=cfg.machine.qemu.get(arch),
                      timeout=min(cfg.timeout or ISOLATE_TIMEOUT, ISOLATE_TIMEOUT))
    except IsolateError as exc:
        return {"reproduced": False, "why": str(exc)}
    if not iso.complete:
        return {"reproduced": False, "why": "fails only as a set of images", "boots": iso.boots}
    name = case_file_name(f"{iso.case.key}-{iso.failure.kind.value}")
    folder = Path(cfg.out) / "cases"
    folder.mkdir(parents=True, exist_ok=True)
    save_case(folder / name, iso.case, isolation_extra(iso, f"batch {batch.number}"))
    return {"reproduced": True, "kind": iso.failure.kind.value, "key": iso.case.key,
            "probe": iso.probe, "case_file": f"cases/{name}", "boots": iso.boots}


def run_boots(batch: Batch, images: Sequence[JobImage], cfg: WorkerConfig):
    """Run a batch's images in as few QEMU boots as the stub's results area
    allows (usually one), combined into one BatchResult: statuses other than
    completed win, counts and times add up."""
    machine = cfg.machine
    arch = batch.arch.value
    capacity = machine.max_probes[arch]
    chunks: list[list[JobImage]] = [[]]
    probes = 0
    for image in images:
        if chunks[-1] and probes + len(image.probes) > capacity:
            chunks.append([])
            probes = 0
        chunks[-1].append(image)
        probes += len(image.probes)
    results = [run_batch(batch.arch, batch.cpu, chunk, qemu=machine.qemu.get(arch),
                         stub=Path(machine.stubs[arch]), timeout=cfg.timeout) for chunk in chunks]
    if len(results) == 1:
        return results[0]
    worst = next((r for r in results if r.status is not BatchStatus.COMPLETED), results[0])
    return dataclasses.replace(
        worst, images=tuple(im for r in results for im in r.images),
        images_done=sum(r.images_done for r in results),
        probes_done=sum(r.probes_done for r in results),
        elapsed=sum(r.elapsed for r in results),
        console="".join(r.console for r in results),
        diagnostic="\n".join(r.diagnostic for r in results if r.diagnostic))


# Fields a known divergence does not need in results.jsonl: its baseline
# entry has the evidence and a reproducing case, and a nightly run has many
# thousands of them.
_KNOWN_DROPS = ("permitted", "raw", "argv")


def compact_known(rec: dict[str, Any]) -> dict[str, Any]:
    if rec.get("type") == "divergence" and rec.get("known"):
        return {k: v for k, v in rec.items() if k not in _KNOWN_DROPS}
    return rec


def case_file_name(key: str) -> str:
    """A file name for a case key: only [A-Za-z0-9._-], so that no key can
    name a path outside the cases directory."""
    safe = "".join(c if c.isascii() and c.isalnum() or c in "._-" else "_" for c in key)
    return safe.strip("._") + ".json"


def write_case_files(out: Path, cases: Sequence[Case], result, records: list[dict[str, Any]]) -> None:
    """One case file per case with a new divergence (docs/case-file.md),
    with the observation, the QEMU command line and version added."""
    new_by_key: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("type") == "divergence" and rec.get("known") is None:
            new_by_key.setdefault(rec["key"], []).append(rec)
    if not new_by_key:
        return
    folder = out / "cases"
    folder.mkdir(parents=True, exist_ok=True)
    for case, image in zip(cases, result.images):
        divs = new_by_key.get(case.key)
        if not divs:
            continue
        name = case_file_name(case.key)
        kept, rows, renumber = case_for_file(case, divs)
        observed = []
        for row in rows:
            o = row_observation(image.records[row])
            observed.append(raw_observation(o))
        extra = {
            "observed": {"probes": observed,
                         "regions_after": [{"pa": f"{pa:#x}", "data": base64.b64encode(d).decode()}
                                           for pa, d in image.regions_after]},
            "qemu": {"argv": list(result.argv), "version": result.qemu_version},
            "divergence": [{"probe": renumber.get(d["probe"], d["probe"]), "kind": d["kind"],
                            "expected": d["expected"], "observed": d["observed"]} for d in divs],
        }
        save_case(folder / name, kept, extra)
        for d in divs:
            d["case_file"] = f"cases/{name}"


def case_for_file(case: Case, divs: Sequence[dict[str, Any]]) -> tuple[Case, list[int], dict]:
    """The case as its file keeps it: every named probe, and of the fan-out
    probes only those of the entries (spans) where a probe diverged — a
    nightly case has ~150,000 of them.  Returns the case, the original
    probe rows kept (in order) and the renumbering of probe indices."""
    named = len(case.probes)
    fan = case.fanout
    spans = {int(fan.span[d["probe"] - named]) for d in divs
             if d.get("probe") is not None and d["probe"] >= named}
    keep = np.isin(fan.span, np.array(sorted(spans), dtype=np.int32)) if spans else \
        np.zeros(len(fan), dtype=bool)
    rows = list(range(named)) + [named + int(i) for i in np.nonzero(keep)[0]]
    renumber = {old: new for new, old in enumerate(rows)}
    trimmed = FanOut(fan.spans, fan.ipa[keep], fan.at[keep], fan.span[keep])
    return dataclasses.replace(case, fanout=trimmed), rows, renumber


class RecordSink:
    """Appends JSON Lines records to ``path``: each write is flushed and
    fsync'd so that nothing finished is lost if the run is killed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "a", encoding="utf-8")

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        for rec in records:
            self._f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a results file; a torn last line (killed mid-write), or
    any line that is not a JSON object with a ``type`` (not even UTF-8), is
    skipped."""
    with open(path, "rb") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:      # JSONDecodeError, UnicodeDecodeError
                continue
            if isinstance(rec, dict) and "type" in rec:
                yield rec


def run_batches(batches: Sequence[Batch], cfg: WorkerConfig, jobs: int,
                sink: Callable[[list[dict[str, Any]]], None],
                deadline: float | None = None) -> int:
    """Execute ``batches`` on ``jobs`` worker processes, feeding each
    batch's records to ``sink`` as it finishes.  Batches not started by
    ``deadline`` (time.monotonic) are skipped.  Returns the number run.

    An exception here (KeyboardInterrupt included) stops the workers at
    once: batches not started are cancelled and running ones abandoned,
    their QEMUs stopped and temporary directories removed."""
    done = 0
    if jobs <= 1:
        for batch in batches:
            if deadline is not None and time.monotonic() > deadline:
                break
            sink(execute_batch(batch, cfg))
            done += 1
        return done
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init)
    try:
        pending: set[concurrent.futures.Future] = set()
        queue = list(batches)
        queue.reverse()
        while queue or pending:
            while queue and len(pending) < jobs and (deadline is None or time.monotonic() < deadline):
                pending.add(pool.submit(_execute_in_worker, queue.pop(), cfg))
            if not pending:
                break
            finished, pending = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in finished:
                sink(fut.result())
                done += 1
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    return done


# Seconds a worker gets to stop its QEMU (QemuMachine.shutdown: SIGTERM,
# up to 3 s, SIGKILL) and remove its batch directory before it is killed.
WORKER_STOP_GRACE = 5.0


def _worker_init() -> None:
    """Signals in a worker process.  Ctrl-C is the parent's to handle (a
    terminal sends it to the whole process group): ignored here.  SIGTERM
    -- from the parent stopping the pool, or from the kernel when the
    parent dies -- unwinds the running batch like an exception, so that
    QemuMachine stops its QEMU and run_batch removes its directory."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    set_parent_death_signal(signal.SIGTERM)


# Whether this worker process is inside execute_batch (_execute_in_worker),
# and whether it was told to stop.
_in_batch = False
_stopping = False


def _on_sigterm(signum, frame):
    """In a batch: unwind it (SystemExit, which execute_batch does not
    catch) so that QEMU is stopped and the batch directory removed, then
    _execute_in_worker leaves.  Anywhere else -- idle in the executor's
    queue, or sending a result, where the executor catches every exception
    and waits for more work, forever when the parent is gone -- leave now:
    there is nothing to clean up.  A second SIGTERM changes nothing: it
    must not cut the cleanup short."""
    global _stopping
    if _stopping:
        return
    _stopping = True
    if _in_batch:
        raise SystemExit(128 + signum)
    os._exit(128 + signum)


def _execute_in_worker(batch: Batch, cfg: WorkerConfig) -> list[dict[str, Any]]:
    """execute_batch in a worker process; leaves the process once SIGTERM
    has unwound the batch."""
    global _in_batch
    _in_batch = True
    try:
        records = execute_batch(batch, cfg)
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    finally:
        _in_batch = False
    if _stopping:
        # The SystemExit was lost on the way: Python only prints one raised
        # in a fork hook (QemuMachine.launch holds signals across its own
        # fork, not across every fork).  The batch ended normally.
        os._exit(128 + signal.SIGTERM)
    return records


def _stop_pool(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Cancel what has not started and stop the workers now: SIGTERM, then
    SIGKILL after WORKER_STOP_GRACE seconds.  ``shutdown(wait=True)``
    would instead wait for every running batch to finish."""
    # The executor has no public list of its worker processes.
    workers = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        proc.terminate()
    # Wait on the sentinels, not join(): the executor's own thread reaps
    # these processes too, and a reaped pid must not be signalled again.
    left = {proc.sentinel: proc for proc in workers}
    end = time.monotonic() + WORKER_STOP_GRACE
    while left and time.monotonic() < end:
        for ready in multiprocessing.connection.wait(list(left), end - time.monotonic()):
            del left[ready]
    for proc in left.values():
        proc.kill()


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """A run as the command line asks for it (see `s2diff run --help`)."""

    out: Path
    seed: int = 1
    cases_per_entry: int = 8
    budget: float | None = None
    jobs: int = 1
    shard: tuple[int, int] | None = None
    baseline: Path | None = None
    qemu: dict = dataclasses.field(default_factory=dict)
    max_images: int = 400
    timeout: float | None = None
    resume: bool = False
    fanout: int = 0


@dataclasses.dataclass
class RunOutcome:
    """What the end of a run needs, accumulated without keeping records
    (a nightly run's records stay on disk: memory does not grow with it).

    ``known_used``: baseline ids that matched; ``ran``: (arch, cpu, vtcr) of
    every case executed; ``batch_status``: batches per status."""

    batches_planned: int = 0
    batches_run: int = 0
    interrupted: bool = False
    known_used: set = dataclasses.field(default_factory=set)
    ran: set = dataclasses.field(default_factory=set)
    batch_status: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    new_divergences: int = 0
    findings: list = dataclasses.field(default_factory=list)

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        for rec in records:
            kind = rec.get("type")
            if kind == "case":
                self.ran.add((rec.get("arch"), rec.get("cpu"), rec.get("vtcr")))
            elif kind == "divergence":
                if rec.get("known"):
                    self.known_used.add(rec["known"])
                else:
                    self.new_divergences += 1
            elif kind == "batch":
                self.batch_status[rec.get("status")] += 1
                if (rec.get("isolated") or {}).get("reproduced"):
                    self.findings.append(rec["isolated"])


RESUME_KEYS = ("seed", "cases_per_entry", "fanout", "shard", "entries", "baseline")


def finished_batches(records: Sequence[dict[str, Any]]) -> set[int]:
    """The batches whose records are all there: the batch record (written
    last, so a run killed mid-write leaves none) and, for each of its
    ``images`` cases, the case record and the divergence records it counts
    (``count`` each).  A record lost in the middle of the file, which no
    crash of the writer produces, then costs a re-run, not a result."""
    cases: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
    counted: collections.Counter = collections.Counter()
    batches = {}
    for rec in records:
        number, kind = rec.get("batch"), rec.get("type")
        if not isinstance(number, int):
            continue
        if kind == "batch":
            batches[number] = rec
        elif kind == "case":
            cases[number].append(rec)
        elif kind == "divergence":
            count = rec.get("count", 1)
            counted[number, rec.get("key")] += count if isinstance(count, int) else 1
    # A harness error has no case records at all.
    return {n for n, b in batches.items()
            if b.get("status") == "harness-error"
            or (len(cases[n]) == b.get("images")
                and all(c.get("diverged") == counted[n, c.get("key")] for c in cases[n]))}


def resume_records(path: Path, header: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of an interrupted run that ``--resume`` keeps: its run
    header and every record of its finished batches (finished_batches).
    The results file is rewritten with just those, atomically, so that
    appending continues a consistent file."""
    if not path.is_file():
        raise UsageError(f"--resume: {path} does not exist (nothing to resume)")
    records = list(read_records(path))
    runs = [r for r in records if r.get("type") == "run"]
    if not runs:
        raise UsageError(f"--resume: {path} has no run header")
    old = runs[0]
    for key in RESUME_KEYS:
        if old.get(key) != header.get(key):
            raise UsageError(f"--resume: the run in {path.parent} has {key}={old.get(key)!r}, "
                             f"this one {header.get(key)!r}; resume with the same options")
    finished = finished_batches(records)
    kept = [old] + [r for r in records if r.get("type") != "run"
                    and isinstance(r.get("batch"), int) and r["batch"] in finished]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in kept:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return kept


def prepare_out(out: Path) -> Path:
    """Create the output directory; UsageError if it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out: cannot write to {out} ({exc.strerror or exc})") from None
    return out


def run_matrix(entries: Sequence[MatrixEntry], opts: RunOptions, argv: Sequence[str] = (),
               on_records: Callable[[list[dict[str, Any]]], None] | None = None,
               on_start: Callable[[dict[str, Any]], None] | None = None) -> RunOutcome:
    """Plan, execute and record a run of ``entries``.

    Records go to OUT/results.jsonl as they arrive; ``on_records`` sees
    each batch's records too (progress display).  Ctrl-C stops the run
    promptly: workers (and their QEMUs) are stopped, and everything finished
    stays recorded."""
    from .qemu.launcher import find_qemu, qemu_version
    out = prepare_out(opts.out)
    arches = sorted({e.arch for e in entries}, key=lambda a: a.value)
    machine = prepare_machine(arches, {a: opts.qemu.get(a) for a in arches})
    arena = min((machine.arena[a.value] for a in arches), key=lambda r: r[1] - r[0])
    per_batch = images_per_batch(opts.max_images, opts.fanout,
                                 min(machine.max_probes[a.value] for a in arches))
    batches = shard_batches(plan_batches(entries, opts.cases_per_entry, arena, per_batch),
                            opts.shard)
    header = {
        "type": "run", "version": 1, "seed": opts.seed, "cases_per_entry": opts.cases_per_entry,
        "fanout": opts.fanout,
        "shard": f"{opts.shard[0]}/{opts.shard[1]}" if opts.shard else None,
        "entries": len(entries), "batches": len(batches),
        "cases": sum(len(b.specs) for b in batches), "argv": list(argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "qemu": {a.value: qemu_version(find_qemu(a, opts.qemu.get(a))) for a in arches},
        "baseline": str(opts.baseline) if opts.baseline else None,
    }
    outcome = RunOutcome(batches_planned=len(batches))
    if opts.resume:
        kept = resume_records(out / RECORDS, header)
        finished = {r["batch"] for r in kept if r.get("type") == "batch"}
        batches = [b for b in batches if b.number not in finished]
        outcome.add(kept)
        outcome.batches_run = len(finished)
        sink = RecordSink(out / RECORDS)
    else:
        kept = []
        (out / RECORDS).unlink(missing_ok=True)
        sink = RecordSink(out / RECORDS)
        sink.write([header])
    if on_start:
        on_start(header)
    if on_records and kept:
        on_records([r for r in kept if r.get("type") != "run"])

    def accept(records: list[dict[str, Any]]) -> None:
        # The batch record goes last: it marks the batch as finished, so a
        # run killed while writing leaves no finished-looking partial batch.
        ordered = [r for r in records if r.get("type") != "batch"] + \
                  [r for r in records if r.get("type") == "batch"]
        sink.write(ordered)
        outcome.add(ordered)
        if on_records:
            on_records(ordered)

    cfg = WorkerConfig(seed=opts.seed, machine=machine, out=str(out), fanout=opts.fanout,
                       baseline=str(opts.baseline) if opts.baseline else None,
                       timeout=opts.timeout)
    deadline = time.monotonic() + opts.budget if opts.budget else None
    try:
        outcome.batches_run += run_batches(batches, cfg, opts.jobs, accept, deadline)
    except KeyboardInterrupt:
        outcome.interrupted = True
        outcome.batches_run = outcome.batch_status.total()
    finally:
        sink.close()
    return outcome
