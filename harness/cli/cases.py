"""Subcommands on one case file: walk (the reference alone, offline), probe
(run it in QEMU and show every observation) and repro (does it still
diverge, or still crash?)."""
from __future__ import annotations

import argparse

from reference.par import predict

from ..baseline import EMPTY, Baseline, default_baseline, load_baseline
from ..casefile import load_case, load_case_data
from ..errors import UsageError
from ..single import CaseRun, render_case_run, run_case
from .common import (
    Outcome,
    Streams,
    Subcommand,
    baseline_arguments,
    qemu_arguments,
    qemu_for,
    seconds,
)
from .debug import run_repro_crash


def _walk_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", metavar="CASE", help="case file (docs/case-file.md)")
    p.add_argument("--probe", type=int, metavar="N", action="append",
                   help="only probe N (0-based; may be repeated)")


def run_walk(args: argparse.Namespace, io: Streams) -> Outcome:
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
    return Outcome.OK



# ---------------------------------------------------------------------------
# probe / repro
# ---------------------------------------------------------------------------

def _baseline_of(args: argparse.Namespace) -> Baseline:
    if args.no_baseline:
        return EMPTY
    path = args.baseline or default_baseline()
    return load_baseline(path) if path else EMPTY


def _case_run_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by probe and repro: the case, where and how to run it."""
    p.add_argument("case", metavar="CASE", help="case file (docs/case-file.md)")
    p.add_argument("--cpu", metavar="NAME", help="run on another CPU model of the same architecture")
    p.add_argument("--timeout", type=seconds, metavar="SECONDS", help="QEMU timeout")
    baseline_arguments(p)
    qemu_arguments(p)


def _run_case_file(args: argparse.Namespace) -> CaseRun:
    case = load_case(args.case)
    return run_case(case, cpu=args.cpu, qemu=qemu_for(args, case.cpu.arch),
                    timeout=args.timeout, baseline=_baseline_of(args))


def _probe_arguments(p: argparse.ArgumentParser) -> None:
    _case_run_arguments(p)
    p.add_argument("--trace", action="store_true", help="print the walk of passing probes too")


def run_probe(args: argparse.Namespace, io: Streams) -> Outcome:
    result = _run_case_file(args)
    print(render_case_run(result, trace=args.trace), file=io.out)
    if not result.complete:
        return Outcome.INFRASTRUCTURE
    return Outcome.FOUND if result.diverges else Outcome.OK


def run_repro(args: argparse.Namespace, io: Streams) -> Outcome:
    if "expect" in load_case_data(args.case):
        # A crash or hang case (written by isolation): does QEMU still fail so?
        return run_repro_crash(args, io)
    result = _run_case_file(args)
    print(render_case_run(result, only_divergent=True), file=io.out)
    if not result.complete:
        print(f"REPRO: QEMU did not complete the case ({result.batch.status.value})", file=io.out)
        return Outcome.INFRASTRUCTURE
    print("REPRO: still diverges" if result.diverges else "REPRO: no longer diverges", file=io.out)
    return Outcome.FOUND if result.diverges else Outcome.OK


COMMANDS = (
    Subcommand("walk", "walk a case file's probes with the reference model (offline)",
               _walk_arguments, run_walk),
    Subcommand("probe", "run one case file in QEMU; print each observation beside the "
               "reference's permitted outcomes", _probe_arguments, run_probe),
    Subcommand("repro", "re-run a case file in QEMU and say whether it still diverges in a way "
               "the baseline does not know (exit 1: it does, 0: it no longer does)",
               _case_run_arguments, run_repro),
)
