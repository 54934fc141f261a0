"""Subcommands on case files and runs: walk, probe, repro, run, report, merge.

Registered into harness.cli's SUBCOMMANDS (imported at the end of cli.py);
each is thin over the library functions named in its body.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from reference.arch import Arch
from reference.par import predict

from .casefile import load_case
from .cli import Streams, granule_list, hex_value, ipa_list, name_list, subcommand
from .errors import UsageError

DEFAULT_OUT = "s2diff-out"


def seconds(text: str) -> float:
    """A positive number of seconds ('inf': no limit; not 'nan')."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number of seconds")
    return value


def _qemu_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--qemu-aarch64", metavar="PATH",
                   help="qemu-system-aarch64 to use (default: $S2DIFF_QEMU_AARCH64, then PATH)")
    p.add_argument("--qemu-arm", metavar="PATH",
                   help="qemu-system-arm to use (default: $S2DIFF_QEMU_ARM, then PATH)")


def _qemu_for(args: argparse.Namespace, arch: Arch) -> str | None:
    return args.qemu_aarch64 if arch is Arch.AARCH64 else args.qemu_arm


# ---------------------------------------------------------------------------
# walk
# ---------------------------------------------------------------------------

def _walk_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", metavar="CASE", help="case file (docs/case-file.md)")
    p.add_argument("--probe", type=int, metavar="N", action="append",
                   help="only probe N (0-based; may be repeated)")


@subcommand("walk", "walk a case file's probes with the reference model (offline)",
            _walk_arguments)
def run_walk(args: argparse.Namespace, io: Streams) -> int:
    case = load_case(args.case)
    arch = case.cpu.arch
    wanted = set(args.probe or range(len(case.probes)))
    bad = [n for n in wanted if not 0 <= n < len(case.probes)]
    if bad:
        raise UsageError(f"--probe: {bad[0]} is not a probe of this case (it has "
                         f"{len(case.probes)}: 0..{len(case.probes) - 1})")
    print(f"{arch.value} {case.cpu.name}: {case.config.describe()} VTTBR={case.config.vttbr:#x}",
          file=io.out)
    for i, (probe, result) in enumerate(zip(case.probes, case.permitted())):
        if i not in wanted:
            continue
        print(f"probe {i}: {probe.at.name_for(arch)} IPA {probe.ipa:#x} ({probe.aim})", file=io.out)
        for o in result.outcomes:
            pred = predict(arch, o, probe.ipa, case.cpu.arch_version)
            print(f"  permitted: {o.describe()}", file=io.out)
            print(f"    {pred.report.value}: {pred.pattern.value:#x} on bits {pred.pattern.care:#x}"
                  + (f", FAR {pred.far:#x}" if pred.far is not None else ""), file=io.out)
            for rule in o.rules:
                print(f"    rule: {rule}", file=io.out)
            for step in o.trace:
                print(f"    {step.describe()}", file=io.out)
    return 0


# ---------------------------------------------------------------------------
# probe / repro
# ---------------------------------------------------------------------------

def _baseline_arguments(p: argparse.ArgumentParser) -> None:
    base = p.add_mutually_exclusive_group()
    base.add_argument("--baseline", type=Path, metavar="FILE",
                      help="known-divergence baseline (default: baseline.toml of the repository)")
    base.add_argument("--no-baseline", action="store_true", help="report every divergence as new")


def _baseline_of(args: argparse.Namespace):
    from .baseline import EMPTY, load_baseline
    if args.no_baseline:
        return EMPTY
    path = args.baseline or default_baseline()
    return load_baseline(path) if path else EMPTY


def _case_run_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by probe and repro: the case, where and how to run it."""
    p.add_argument("case", metavar="CASE", help="case file (docs/case-file.md)")
    p.add_argument("--cpu", metavar="NAME", help="run on another CPU model of the same architecture")
    p.add_argument("--timeout", type=seconds, metavar="SECONDS", help="QEMU timeout")
    _baseline_arguments(p)
    _qemu_arguments(p)


def _run_case_file(args: argparse.Namespace):
    from .single import run_case
    case = load_case(args.case)
    return run_case(case, cpu=args.cpu, qemu=_qemu_for(args, case.cpu.arch),
                    timeout=args.timeout, baseline=_baseline_of(args))


def _probe_arguments(p: argparse.ArgumentParser) -> None:
    _case_run_arguments(p)
    p.add_argument("--trace", action="store_true", help="print the walk of passing probes too")


@subcommand("probe", "run one case file in QEMU; print each observation beside the "
            "reference's permitted outcomes", _probe_arguments)
def run_probe(args: argparse.Namespace, io: Streams) -> int:
    from .single import render_case_run
    result = _run_case_file(args)
    print(render_case_run(result, trace=args.trace), file=io.out)
    if not result.complete:
        return 3
    return 1 if result.diverges else 0


@subcommand("repro", "re-run a case file in QEMU and say whether it still diverges in a way "
            "the baseline does not know (exit 1: it does, 0: it no longer does)",
            _case_run_arguments)
def run_repro(args: argparse.Namespace, io: Streams) -> int:
    from .casefile import load_case_data
    from .single import render_case_run
    if "expect" in load_case_data(args.case):
        # A crash or hang case (written by isolation): does QEMU still fail so?
        from .cli_debug import run_repro_crash
        return run_repro_crash(args, io)
    result = _run_case_file(args)
    print(render_case_run(result, only_divergent=True), file=io.out)
    if not result.complete:
        print(f"REPRO: QEMU did not complete the case ({result.batch.status.value})", file=io.out)
        return 3
    print("REPRO: still diverges" if result.diverges else "REPRO: no longer diverges", file=io.out)
    return 1 if result.diverges else 0


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------

NIGHTLY_CASES = 15
NIGHTLY_BUDGET = 330.0
# Bulk probes per placed entry: enough that QEMU, not the host, sets the
# pace (see `s2diff bench`), few enough to leave room for many cases.
NIGHTLY_FANOUT = 2048


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=[a.value for a in Arch], help="only this architecture")
    p.add_argument("--cpu", type=name_list, metavar="NAME[,NAME]", help="only these CPU models")
    p.add_argument("--granule", type=granule_list, metavar="4k,16k,64k", help="only these granules")
    p.add_argument("--ipa", type=ipa_list, metavar="BITS[,BITS]", help="only these IPA sizes")
    p.add_argument("--vtcr", type=hex_value, metavar="HEX",
                   help="validate exactly this VTCR value on the one --cpu given")
    p.add_argument("--seed", type=int, default=1, help="seed of the case generator (default 1)")
    p.add_argument("--cases", type=int, metavar="N",
                   help=f"cases per matrix entry (default {NIGHTLY_CASES})")
    p.add_argument("--fanout", type=int, metavar="N",
                   help=f"bulk probes per placed table entry (default {NIGHTLY_FANOUT}; 0: "
                        "only the named probes)")
    p.add_argument("--budget", type=seconds, metavar="SECONDS",
                   help=f"stop starting batches after this long (default {NIGHTLY_BUDGET:.0f} s "
                        "for the default matrix, none otherwise)")
    p.add_argument("--jobs", type=int, metavar="N", default=os.cpu_count() or 1,
                   help="worker processes (default: the number of cores)")
    p.add_argument("--shard", metavar="K/N", help="run only the K-th of N deterministic shards")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), metavar="DIR",
                   help=f"output directory (default ./{DEFAULT_OUT})")
    base = p.add_mutually_exclusive_group()
    base.add_argument("--baseline", type=Path, metavar="FILE",
                      help="known-divergence baseline (default: baseline.toml of the repository)")
    base.add_argument("--no-baseline", action="store_true", help="report every divergence as new")
    p.add_argument("--shrink", action="store_true",
                   help="shrink and localize one case of each new divergence family (writes "
                        "NAME.min.json and NAME.min.txt beside its case file)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out without repeating finished batches")
    _qemu_arguments(p)


def default_baseline() -> Path | None:
    path = Path(__file__).resolve().parent.parent / "baseline.toml"
    return path if path.is_file() else None


@subcommand("run", "the differential run over the configuration matrix (default: the "
            "nightly matrix)", _run_arguments)
def run_run(args: argparse.Namespace, io: Streams) -> int:
    from .baseline import load_baseline
    from .matrix import build_matrix
    from .progress import Progress
    from .run import RunOptions, parse_shard, run_matrix
    from .finish import finish_run

    if args.cases is not None and args.cases < 1:
        raise UsageError("--cases: must be at least 1")
    if args.jobs < 1:
        raise UsageError("--jobs: must be at least 1")
    if args.fanout is not None and args.fanout < 0:
        raise UsageError("--fanout: must be 0 or more")
    shard = parse_shard(args.shard) if args.shard else None
    arch = Arch(args.arch) if args.arch else None
    entries = build_matrix(arch=arch, cpus=args.cpu, granules=args.granule, ipa_sizes=args.ipa,
                           vtcr=args.vtcr)
    if not entries:
        raise UsageError("the selection leaves no configuration to run "
                         "(see `s2diff configs` for what each CPU model supports)")
    nightly = not any((args.arch, args.cpu, args.granule, args.ipa, args.vtcr is not None))
    baseline = None if args.no_baseline else (args.baseline or default_baseline())
    if baseline is not None:
        load_baseline(baseline)  # validate before starting anything
    opts = RunOptions(out=args.out, seed=args.seed,
                      cases_per_entry=args.cases or NIGHTLY_CASES,
                      budget=args.budget or (NIGHTLY_BUDGET if nightly else None),
                      jobs=args.jobs, shard=shard, baseline=baseline,
                      qemu={Arch.AARCH64: args.qemu_aarch64, Arch.AARCH32: args.qemu_arm},
                      resume=args.resume,
                      fanout=NIGHTLY_FANOUT if args.fanout is None else args.fanout)
    progress = Progress(enabled=io.tty)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    def started(header: dict) -> None:
        # The run's size, before anything runs (the probe count is an
        # estimate: each case places ~60 entries, each fanned out).
        probes = header["cases"] * (60 + 60 * opts.fanout)
        print(f"s2diff run: {header['entries']} configurations, {header['cases']} cases in "
              f"{header['batches']} batches, about {probes:,} probes "
              f"(seed {opts.seed}, {opts.cases_per_entry} cases per configuration, fan-out "
              f"{opts.fanout}{', budget %.0f s' % opts.budget if opts.budget else ''}); "
              f"output in {args.out}", file=io.out, flush=True)
        progress.start(header)

    try:
        with progress:
            outcome = run_matrix(entries, opts, argv=sys.argv, on_records=progress.update,
                                 on_start=started)
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = finish_run(args.out, outcome, baseline, io)
    if args.shrink and not outcome.interrupted:
        shrink_families(args.out, args, io)
    return code


SHRINK_LIMIT = 10


def shrink_families(out: Path, args: argparse.Namespace, io: Streams) -> None:
    """`run --shrink`: for each new divergence family (the report's:
    harness.vocabulary.FamilyKey), its first case file, shrunk and localized (harness.localize),
    at most SHRINK_LIMIT of them; a case that cannot be shrunk is said so."""
    from .finish import load_run
    from .localize import shrink_and_localize
    from .report import family_key
    from .errors import S2DiffError
    families, files = set(), set()
    for d in load_run([out]).divergences:
        family = family_key(d)
        if not d.is_new or not d.case_file or family in families or d.case_file in files:
            continue
        if len(files) == SHRINK_LIMIT:
            print(f"SHRINK: stopped after {SHRINK_LIMIT} families", file=io.out)
            break
        families.add(family)
        files.add(d.case_file)
        path = out / d.case_file
        arch = Arch(d.arch)
        print(f"SHRINK: {d.summary()}", file=io.out)
        try:
            report = shrink_and_localize(path, probe=d.probe, qemu=_qemu_for(args, arch))
        except S2DiffError as exc:
            print(f"  could not shrink {path}: {exc}", file=io.out)
            continue
        print("  " + "\n  ".join(report.splitlines()[-6:]), file=io.out)
        print(f"  written: {path.with_suffix('.min.json')}, {path.with_suffix('.min.txt')}",
              file=io.out)


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------
# report / merge
# ---------------------------------------------------------------------------

def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="output directory of a run (or of several shards)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where to write the reports (default: the first DIR)")


@subcommand("report", "rebuild summary, JUnit XML and HTML report from results.jsonl (offline)",
            _report_arguments)
def run_report(args: argparse.Namespace, io: Streams) -> int:
    from .finish import load_run, new_divergences, print_summary, write_reports
    run = load_run(args.dirs)
    out = args.out or args.dirs[0]
    written = write_reports(run, out)
    print_summary(run, io)
    for name, path in written.items():
        print(f"{name}: {path}", file=io.out)
    return 1 if new_divergences(run) else 0


def _merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="shard output directories")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="directory for the merged results and reports")


@subcommand("merge", "combine the outputs of shards into one results file and report (offline)",
            _merge_arguments)
def run_merge(args: argparse.Namespace, io: Streams) -> int:
    from .finish import load_run, merge_dirs, new_divergences, print_summary, write_reports
    merge_dirs(args.dirs, args.out)
    run = load_run([args.out])
    written = write_reports(run, args.out)
    print_summary(run, io)
    for name, path in written.items():
        print(f"{name}: {path}", file=io.out)
    return 1 if new_divergences(run) else 0
