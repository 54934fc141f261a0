"""`s2diff bench`: throughput measured in one run on one machine.

(a) QEMU's raw rates, the stub in a tight loop with no host work: AT probes
    per second (one image, many probes on valid mappings), access probes
    per second (one image, many EL1 loads of one mapped page: each an ERET,
    the load and an HVC back) and image switches per second (many images
    sharing one set of tables, one probe each), each net of an empty boot
    taken just before it, over RAW_PAIRS pairs (the work of all the pairs
    over their summed extra time: a time average, as (b) is).  The AT rate
    is measured again after each run of (b): (b)/(a) uses the mean of them
    all, each run's own ratio is shown, and a spread of the raw rates is
    stated in the report.
(b) The harness end to end on a sample of the default nightly mix, run
    E2E_ROUNDS times with --jobs N (the rate over all the runs; the stage
    profile per run): generated, executed and compared probes and images
    per second; once with --jobs 1 (scaling).
(c) The naive baseline: one QEMU boot per case, where the case is one image
    with one probe, generated, walked and compared alone.

Ratios: (b)/(a) and (b)/(c).  Peak memory: the harness's own processes and
QEMU's, from getrusage of the processes waited for.
"""
from __future__ import annotations

import dataclasses
import math
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from reference.access import AccessKind
from reference.arch import Arch, AtKind, Granule
from reference.config import aarch64_config
from reference.cpus import get_cpu
from reference.generate import generate_case
from reference.image import ImageBuilder, LeafAttrs, layout_for

from .baseline import default_baseline
from .judge.case import judge_case
from .kinds import CaseKind
from .matrix import build_matrix
from .plan import Machine, MatrixEntry, job_image, prepare_machine
from .qemu.boot import BatchStatus, run_batch
from .qemu.elf import el1_window, read_stub
from .qemu.job import PROBE_DTYPE, JobImage
from .qemu.launcher import find_qemu, qemu_cpus
from .records import BatchRecord, CaseRecord, read_records
from .run import RunOptions, run_matrix

BENCH_CPU = "cortex-a57"
RAW_PROBES = 900_000
RAW_IMAGES = 20_000


@dataclasses.dataclass
class BenchResult:
    """All figures of one bench run (rates per second, memory in MiB)."""

    raw_at_per_s: float = 0.0
    # The raw AT rate measured just before the first run of (b) with --jobs
    # N and just after the last; raw_at_per_s is the mean of every raw AT
    # rate of raw_at_rates, so that (b)/(a) compares rates taken around the
    # same minutes of a machine whose speed drifts.
    raw_at_before_per_s: float = 0.0
    raw_at_after_per_s: float = 0.0
    # (b) is run E2E_ROUNDS times, each between two raw AT measurements:
    # every raw AT rate in order (before the first run, after each), and
    # each run's rate and its ratio to the raw rates either side of it.
    raw_at_rates: list = dataclasses.field(default_factory=list)
    e2e_rates: list = dataclasses.field(default_factory=list)
    ratios_per_round: list = dataclasses.field(default_factory=list)
    raw_access_per_s: float = 0.0
    e2e_access_per_s: float = 0.0
    raw_images_per_s: float = 0.0
    boot_s: float = 0.0
    e2e_probes_per_s: float = 0.0
    e2e_images_per_s: float = 0.0
    e2e_probes: int = 0
    e2e_images: int = 0
    e2e_seconds: float = 0.0
    jobs: int = 1
    e2e1_probes_per_s: float = 0.0
    naive_probes_per_s: float = 0.0
    fanout: int = 0
    peak_harness_mib: float = 0.0
    peak_qemu_mib: float = 0.0
    notes: list = dataclasses.field(default_factory=list)
    # Seconds per stage summed over the end-to-end run's batches (worker
    # side: generate, images, pack, qemu, unpack, boot, run, judge,
    # records; see harness.costs), wall time.
    profile: dict = dataclasses.field(default_factory=dict)
    # CPU seconds per stage over the same batches: the workers' own per
    # stage, and "qemu", QEMU's processes.  On a machine shared with other
    # work these hold still where wall times do not.
    profile_cpu: dict = dataclasses.field(default_factory=dict)

    @property
    def ratio_raw(self) -> float:
        return self.e2e_probes_per_s / self.raw_at_per_s if self.raw_at_per_s else 0.0

    @property
    def ratio_naive(self) -> float:
        return self.e2e_probes_per_s / self.naive_probes_per_s if self.naive_probes_per_s else 0.0

    scaling_measured: float = 0.0

    @property
    def scaling(self) -> float:
        return self.scaling_measured

    @property
    def host_cpu_per_probe(self) -> float:
        """Microseconds of worker CPU per end-to-end probe (all but QEMU)."""
        host = sum(v for k, v in self.profile_cpu.items() if k != "qemu")
        return host / self.e2e_probes * 1e6 if self.e2e_probes else 0.0

    @property
    def qemu_cpu_per_probe(self) -> float:
        """Microseconds of QEMU CPU per end-to-end probe (boots included)."""
        return self.profile_cpu.get("qemu", 0.0) / self.e2e_probes * 1e6 if self.e2e_probes else 0.0

    @property
    def ratio_host_over_qemu(self) -> float:
        """Host CPU over QEMU CPU per probe in (b): both measured in the
        same run, so the machine's drifting speed, which moves (b)/(a) by
        several per cent, cancels out."""
        qemu = self.qemu_cpu_per_probe
        return self.host_cpu_per_probe / qemu if qemu else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(ratio_e2e_over_raw=self.ratio_raw, ratio_e2e_over_naive=self.ratio_naive,
                 jobs_scaling=self.scaling, host_cpu_us_per_probe=self.host_cpu_per_probe,
                 qemu_cpu_us_per_probe=self.qemu_cpu_per_probe,
                 ratio_host_over_qemu_cpu=self.ratio_host_over_qemu)
        # A rate too short to measure is null in JSON (NaN is not JSON).
        def null(v: Any) -> Any:
            if isinstance(v, list):
                return [null(x) for x in v]
            return None if isinstance(v, float) and math.isnan(v) else v
        return {k: null(v) for k, v in d.items()}


RAW_PAGES = 512


def _one_image_tables(arena_base: int):
    """KVM's 4K, 40-bit, start-level-1 image on cortex-a57 mapping 512 pages:
    every probe is a three-level walk (DESIGN.md's 0.3 us figure)."""
    cpu = get_cpu(Arch.AARCH64, BENCH_CPU)
    config = aarch64_config(Granule.G4K, 40, 1, ps_bits=44)
    builder = ImageBuilder(layout_for(cpu, config, 1), arena_base, 1 << 20)
    for i in range(RAW_PAGES):
        builder.map(i << 12, (i + 0x100000) << 12, 3, LeafAttrs())
    image = builder.build()
    return config.with_vttbr(image.vttbr), image


def _probes(n: int, rng: np.random.Generator) -> np.ndarray:
    table = np.zeros(n, dtype=PROBE_DTYPE)
    table["ipa"] = rng.integers(0, RAW_PAGES << 12, size=n, dtype=np.uint64)
    table["kind"] = rng.integers(0, len(AtKind), size=n, dtype=np.uint32)
    return table


# Below this much time over an empty boot, a boot's work is lost in the
# noise of QEMU's start and exit: no rate is reported (bench --small).
MIN_NET_SECONDS = 0.010


def net_rate(n: int, seconds: float, empty: float) -> float:
    """``n`` per second of a boot net of an empty boot; NaN (printed "too
    short to measure") when the difference is below MIN_NET_SECONDS."""
    net = seconds - empty
    return n / net if net >= MIN_NET_SECONDS else float("nan")


def _rate_text(rate: float) -> str:
    return "too short to measure" if math.isnan(rate) else f"{rate:,.0f}"


# Boots per raw rate: RAW_PAIRS back-to-back (empty boot, loaded boot)
# pairs.  Pairs keep a slow drift of the machine's speed (a shared host) out
# of the difference: one median empty boot against one median loaded boot
# gave 1.54 to 2.23 M AT probes/s in six runs on one idle machine.  The
# rate is the work of all the pairs over the sum of their extra times (a
# time average, as (b)'s probes over its seconds is), not a median: pair
# by pair the rate moves by +-25% from one second to the next here (87 pairs
# in 60 s: 1.54 to 2.72 M/s), and over those 87 the time average of ten
# pairs scattered by 4% where the median of five scattered by 9%.  The AT
# rate of (b)/(a) is the mean of E2E_ROUNDS + 1 such rates (24 pairs).
RAW_PAIRS = 6


def _paired_rate(boot: Callable[[list], float], images: list, n: int,
                 pairs: int) -> tuple[float, float]:
    """(``n`` per second of ``images`` net of an empty boot -- ``pairs``
    times ``n`` over the summed extra time of ``pairs`` back-to-back
    (empty, loaded) boots --, median empty boot seconds)."""
    extra, empty = 0.0, []
    for _ in range(pairs):
        t_empty = boot([])
        extra += boot(images) - t_empty
        empty.append(t_empty)
    return net_rate(n * pairs, extra, 0.0), sorted(empty)[pairs // 2]


def measure_raw(arena_base: int, n_probes: int = RAW_PROBES,
                n_images: int = RAW_IMAGES, pairs: int = RAW_PAIRS) -> tuple[float, float, float]:
    """(AT probes/s, image switches/s, empty boot seconds), each rate net
    of an empty boot (_paired_rate); no image switches (NaN) with
    ``n_images`` 0."""
    config, image = _one_image_tables(arena_base)
    regions = tuple((r.pa, r.data) for r in image.regions)
    rng = np.random.default_rng(1)

    def boot(images) -> float:
        result = run_batch(Arch.AARCH64, BENCH_CPU, images)
        if result.status.value != "completed":
            raise RuntimeError(f"bench boot did not complete: {result.diagnostic}")
        return result.elapsed

    many_probes = [JobImage(config.vtcr(), config.vttbr, regions, _probes(n_probes, rng))]
    at_rate, empty = _paired_rate(boot, many_probes, n_probes, pairs)
    if not n_images:
        return at_rate, float("nan"), empty
    switches = [JobImage(config.vtcr(), config.vttbr, regions if i == 0 else (), _probes(1, rng))
                for i in range(n_images)]
    image_rate, _ = _paired_rate(boot, switches, n_images, pairs)
    return at_rate, image_rate, empty


RAW_ACCESSES = 100_000


def measure_access(machine: Machine, n_probes: int, out: Path,
                   entries: list[MatrixEntry]) -> tuple[float, float]:
    """(raw access probes/s in QEMU, access probes/s end to end).  Raw: one
    image mapping the stub's EL1 window and one RW page, ``n_probes`` LDR
    X loads of it (net of an empty boot, median of three).  End to end: a
    run of ``entries`` (access entries), generation and judging included --
    the host, not QEMU, sets that pace."""
    stub = Path(machine.stubs["aarch64"])
    el1 = el1_window(read_stub(stub))
    cpu = get_cpu(Arch.AARCH64, BENCH_CPU)
    config = aarch64_config(Granule.G4K, 40, 1, ps_bits=44)
    builder = ImageBuilder(layout_for(cpu, config, 1), machine.arena["aarch64"][0], 1 << 20)
    for off in range(0, el1.size, 1 << 12):
        builder.map(el1.pa + off, el1.pa + off, 3, LeafAttrs())
    page = machine.arena["aarch64"][0] + (1 << 20)
    builder.map(0x1000_0000, page, 3, LeafAttrs())
    image = builder.build()
    probes = np.zeros(n_probes, dtype=PROBE_DTYPE)
    probes["ipa"] = 0x1000_0000 + 8 * (np.arange(n_probes, dtype=np.uint64) % 512)
    probes["kind"] = AccessKind.A64_LDR_X.code

    def boot(images) -> float:
        result = run_batch(Arch.AARCH64, BENCH_CPU, images, stub=stub)
        if result.status.value != "completed":
            raise RuntimeError(f"bench boot did not complete: {result.diagnostic}")
        return result.elapsed

    job = [JobImage(config.vtcr(), image.vttbr, tuple((r.pa, r.data) for r in image.regions),
                    probes, el1_ipa=el1.pa)]
    empty = sorted(boot([]) for _ in range(3))[1]
    raw = net_rate(n_probes, sorted(boot(job) for _ in range(3))[1], empty)
    e2e = measure_e2e(entries, 1, 1, 0, out)[0] if entries else 0.0
    return raw, e2e


def _naive_one(args: tuple[MatrixEntry, int, int, Machine]) -> int:
    """One case of one probe: generate, boot, walk, compare."""
    entry, index, seed, machine = args
    cpu = get_cpu(entry.arch, entry.cpu)
    case = generate_case(cpu, entry.config, seed, f"{entry.name}#{index}",
                         machine.arena[entry.arch.value], machine.memory_map(entry.arch))
    case = dataclasses.replace(case, probes=case.probes[:1])
    result = run_batch(entry.arch, entry.cpu, [job_image(case)],
                       qemu=machine.qemu_path(next(iter(machine.qemu), ""), entry.arch),
                       stub=Path(machine.stubs[entry.arch.value]))
    counts, _ = judge_case(case, result.images[0])
    return counts.probes


def measure_naive(entries: list[MatrixEntry], machine: Machine, jobs: int, n: int) -> float:
    """Probes per second when every probe is its own case and boot."""
    work = [(entries[i % len(entries)], i, 1, machine) for i in range(n)]
    start = time.monotonic()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        probes = sum(pool.map(_naive_one, work))
    return probes / (time.monotonic() - start)


def _sample(entries: list[MatrixEntry], k: int) -> list[MatrixEntry]:
    """Every k-th entry of the nightly matrix: all families, a fraction of the cost."""
    return entries[::k]


def measure_e2e(entries: list[MatrixEntry], jobs: int, cases: int, fanout: int, out: Path,
                profile: dict | None = None,
                log: Callable[[str], None] = lambda _: None,
                profile_cpu: dict | None = None,
                ) -> tuple[float, float, int, int, float]:
    """(probes/s, images/s, probes, images, seconds) of a real run (no
    baseline matching cost omitted: the default baseline is used);
    ``profile`` gets the seconds per stage summed over the batches,
    ``profile_cpu`` the CPU seconds (harness.costs.Stopwatch)."""
    profile_cpu = {} if profile_cpu is None else profile_cpu
    shutil.rmtree(out, ignore_errors=True)
    opts = RunOptions(out=out, seed=1, cases_per_entry=cases, jobs=jobs,
                      baseline=default_baseline(), fanout=fanout, profile=True)
    start = time.monotonic()
    last = [start]

    def tick(records: list) -> None:
        if time.monotonic() - last[0] >= PROGRESS_INTERVAL:
            last[0] = time.monotonic()
            log(f"end to end, --jobs {jobs}: {time.monotonic() - start:.0f} s")
    outcome = run_matrix(entries, opts, on_records=tick)
    seconds = time.monotonic() - start
    probes = images = 0
    for rec in read_records(out / "results.jsonl"):
        if isinstance(rec, CaseRecord):
            probes += rec.probes
            images += 1
        elif isinstance(rec, BatchRecord) and rec.profile and profile is not None:
            for stage, spent in rec.profile:
                into, name = ((profile_cpu, stage[len("cpu."):]) if stage.startswith("cpu.")
                              else (profile, stage))
                into[name] = into.get(name, 0.0) + spent
    if outcome.batch_status.get(BatchStatus.COMPLETED, 0) != outcome.batch_status.total():
        raise RuntimeError(f"bench run had failed batches: {dict(outcome.batch_status)}")
    return probes / seconds, images / seconds, probes, images, seconds


# A drift of the raw AT rate across (b) above this is noted in the report.
RAW_DRIFT_NOTE = 0.10


def _mean_rate(*rates: float) -> float:
    """The mean of the rates that are not NaN (NaN when none is)."""
    rates = tuple(r for r in rates if not math.isnan(r))
    return sum(rates) / len(rates) if rates else float("nan")


def _spread(rates: list[float]) -> float:
    """(max - min) over the mean of the rates that are not NaN (0 when
    fewer than two are)."""
    known = [r for r in rates if not math.isnan(r)]
    if len(known) < 2 or not sum(known):
        return 0.0
    return (max(known) - min(known)) / _mean_rate(*known)


# Runs of (b), each followed by a raw AT measurement: the machine's speed
# moves by 10-20% from one minute to the next here, so one (b) against the
# raw rates around it gave 0.76 to 1.05 in four runs of the same code.
E2E_ROUNDS = 3


# ``--small``: every measurement, on a few entries, cases and probes: enough
# to show that bench works end to end, not to measure anything.
SMALL = {"sample": 60, "cases": 1, "naive": 2, "raw_probes": 2000, "raw_images": 20, "pairs": 1}


# Seconds between two progress lines of a bench.
PROGRESS_INTERVAL = 10.0


def run_bench(jobs: int, fanout: int, sample: int = 6, cases: int = 2,
              small: bool = False, log: Callable[[str], None] = lambda _: None) -> BenchResult:
    """The whole bench (well under two minutes on 2 cores; seconds with
    ``small``); ``log`` sees a line as each measurement starts, and every
    PROGRESS_INTERVAL s of the end-to-end runs."""
    res = BenchResult(jobs=jobs, fanout=fanout)
    started = time.monotonic()

    def step(text: str) -> None:
        log(f"{time.monotonic() - started:5.0f} s: {text}")
    naive, raw_probes, raw_images, pairs = 24, RAW_PROBES, RAW_IMAGES, RAW_PAIRS
    if small:
        sample, cases, naive = SMALL["sample"], SMALL["cases"], SMALL["naive"]
        raw_probes, raw_images = SMALL["raw_probes"], SMALL["raw_images"]
        pairs = SMALL["pairs"]
        res.notes.append("--small: a check that every measurement runs; the figures mean little")
    machine = prepare_machine([Arch.AARCH64, Arch.AARCH32], {})
    arena_base = machine.arena["aarch64"][0]
    step("(a) QEMU's raw rates")
    res.raw_at_before_per_s, res.raw_images_per_s, res.boot_s = measure_raw(
        arena_base, raw_probes, raw_images, pairs)
    available = {a: qemu_cpus(find_qemu(a)) for a in (Arch.AARCH64, Arch.AARCH32)}
    entries = _sample(build_matrix(available=available), sample)
    with tempfile.TemporaryDirectory(prefix="s2diff-bench-") as tmp:
        step("(a) access probes: QEMU's raw rate and end to end")
        access = [e for e in build_matrix(arch=Arch.AARCH64, cpus=[BENCH_CPU])
                  if e.kind is CaseKind.ACCESS]
        res.raw_access_per_s, res.e2e_access_per_s = measure_access(
            machine, raw_probes // 4 if small else RAW_ACCESSES, Path(tmp) / "a",
            access[:1] if small else access)
        rounds = 1 if small else E2E_ROUNDS
        res.raw_at_rates = [res.raw_at_before_per_s]
        seconds = 0.0
        for r in range(rounds):
            step(f"(b) end to end, {len(entries)} entries x {cases} cases, --jobs {jobs} "
                 f"({r + 1} of {rounds})")
            rate, _, probes, images, spent = measure_e2e(
                entries, jobs, cases, fanout, Path(tmp) / f"n{r}", res.profile, step,
                res.profile_cpu)
            if r and (probes, images) != (res.e2e_probes, res.e2e_images):
                raise RuntimeError(f"bench's runs differ: {probes:,} probes in {images} images, "
                                   f"then {res.e2e_probes:,} in {res.e2e_images}")
            res.e2e_probes, res.e2e_images = probes, images
            res.e2e_rates.append(rate)
            seconds += spent
            step(f"(a) QEMU's raw AT rate again, after (b) {r + 1}")
            res.raw_at_rates.append(measure_raw(arena_base, raw_probes, 0, pairs)[0])
            res.ratios_per_round.append(rate / _mean_rate(*res.raw_at_rates[-2:]))
        # Every run did the same work: the rate over all of them, the
        # profile per run.
        res.e2e_seconds = seconds / rounds
        res.e2e_probes_per_s = res.e2e_probes / res.e2e_seconds
        res.e2e_images_per_s = res.e2e_images / res.e2e_seconds
        for into in (res.profile, res.profile_cpu):
            into.update({k: v / rounds for k, v in into.items()})
        res.raw_at_after_per_s = res.raw_at_rates[-1]
        res.raw_at_per_s = _mean_rate(*res.raw_at_rates)
        spread = _spread(res.raw_at_rates)
        if spread > RAW_DRIFT_NOTE:
            res.notes.append(
                f"QEMU's raw AT rate moved by {spread:.0%} across (b) "
                f"({', '.join(f'{x:,.0f}' for x in res.raw_at_rates)}): the machine's speed "
                "drifted, (b)/(a) is that uncertain (see the ratio of each run)")
        if jobs > 1:
            # Scaling: the same work on one worker.
            step("(b) end to end again, --jobs 1 (scaling)")
            res.e2e1_probes_per_s = measure_e2e(entries, 1, cases, fanout, Path(tmp) / "1",
                                                log=step)[0]
            res.scaling_measured = res.e2e_probes_per_s / res.e2e1_probes_per_s
    step("(c) naive: one boot per one-probe case")
    res.naive_probes_per_s = measure_naive(entries, machine, jobs, naive)
    step("done")
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    res.peak_harness_mib = me
    res.peak_qemu_mib = children
    res.notes.append("peak memory: harness = this process (ru_maxrss); children = the largest "
                     "waited-for descendant (a worker or a QEMU, whose RSS counts the guest RAM "
                     "file pages it touched)")
    return res


def render(res: BenchResult) -> str:
    rows = [
        ("(a) QEMU raw: AT probes/s", _rate_text(res.raw_at_per_s)),
        ("    before (b), after each run of (b)",
         " / ".join(_rate_text(r) for r in res.raw_at_rates)),
        ("(a) QEMU raw: access probes/s", _rate_text(res.raw_access_per_s)),
        ("(b) end to end, access entries, 1 job: probes/s", f"{res.e2e_access_per_s:,.0f}"),
        ("(a) QEMU raw: image switches/s", _rate_text(res.raw_images_per_s)),
        ("    QEMU start + exit, empty job", f"{res.boot_s * 1000:.0f} ms"),
        (f"(b) end to end, nightly mix, {res.jobs} jobs: probes/s", f"{res.e2e_probes_per_s:,.0f}"),
        ("(b) end to end: images/s", f"{res.e2e_images_per_s:,.0f}"),
        ("    probes / images / seconds a run",
         f"{res.e2e_probes:,} / {res.e2e_images:,} / {res.e2e_seconds:.1f}"),
        ("(c) naive, one boot per one-probe case: probes/s", f"{res.naive_probes_per_s:,.1f}"),
        ("(b)/(a) end-to-end over raw AT rate", f"{res.ratio_raw:.2f}  (target >= 0.90)"),
        ("    each run of (b) over the raw rates around it",
         " / ".join(f"{r:.2f}" for r in res.ratios_per_round)),
        ("(b)/(c) end-to-end over naive", f"{res.ratio_naive:,.0f}x  (target >= 1000x)"),
        (f"--jobs {res.jobs} scaling over --jobs 1", f"{res.scaling:.2f}x  (target >= {0.8 * res.jobs:.1f}x)"),
        ("peak memory, harness process", f"{res.peak_harness_mib:.0f} MiB"),
        ("peak memory, largest child", f"{res.peak_qemu_mib:.0f} MiB"),
    ]
    total = sum(res.profile.values())
    if total:
        rows.append(("(b) where the worker time goes", f"{total:.1f} s a run"))
        rows += [(f"    {stage}", f"{spent:6.2f} s  {spent / total:4.0%}")
                 for stage, spent in sorted(res.profile.items(), key=lambda kv: -kv[1])]
    total_cpu = sum(res.profile_cpu.values())
    if total_cpu:
        rows.append(("(b) CPU per probe: host / QEMU",
                     f"{res.host_cpu_per_probe:.3f} / {res.qemu_cpu_per_probe:.3f} us"))
        rows.append(("(b) host CPU over QEMU CPU, same run",
                     f"{res.ratio_host_over_qemu:.2f}  (target < 1: the host side costs "
                     "less than a QEMU core per probe stream)"))
        rows += [(f"    {stage} (CPU)", f"{spent:6.2f} s  {spent / total_cpu:4.0%}")
                 for stage, spent in sorted(res.profile_cpu.items(), key=lambda kv: -kv[1])]
    width = max(len(a) for a, _ in rows)
    lines = [f"s2diff bench (fan-out {res.fanout} probes per placed entry)"]
    lines += [f"  {a.ljust(width)}  {b}" for a, b in rows]
    lines += [f"  note: {n}" for n in res.notes]
    return "\n".join(lines)
