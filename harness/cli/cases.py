"""Subcommands on one case file: walk (the reference alone, offline), probe
(run it in QEMU and show every observation) and repro (does it still
diverge, or still crash?)."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from reference.access_case import AccessCase, MaintExpectation
from reference.at import predict as at_predict
from reference.generate import Case
from reference.generate_s1 import S1Case
from reference.par import predict

from ..baseline import EMPTY, Baseline, default_baseline, load_baseline
from ..casefile import load_any_case, load_case_data, regenerate_fanout
from ..errors import UsageError
from ..qemu.models import FOLLOWS_THE_MACHINE
from ..single import (
    CaseRun,
    CaseVerdict,
    only_probe,
    recorded_divergences,
    render_case_run,
    run_case,
)
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


def _wanted(args: argparse.Namespace, count: int) -> set[int]:
    wanted = set(args.probe or range(count))
    bad = [n for n in wanted if not 0 <= n < count]
    if bad:
        raise UsageError(f"--probe: {bad[0]} is not a probe of this case (it has "
                         f"{count}: 0..{count - 1})")
    return wanted


def _walk_access(case: AccessCase, args: argparse.Namespace, io: Streams) -> Outcome:
    """An access case: each step with what the architecture permits."""
    wanted = _wanted(args, len(case.steps))
    print(f"{case.cpu.arch.value} {case.cpu.name}: {case.config.describe()} "
          f"VTTBR={case.config.vttbr:#x}; EL1 window mapped at {case.el1_ipa:#x}", file=io.out)
    for i, (step, expected) in enumerate(zip(case.steps, case.expectations())):
        if i not in wanted:
            continue
        print(f"step {i}: {step.aim}", file=io.out)
        if isinstance(expected, MaintExpectation):
            print("  permitted: completes, replacing "
                  + " or ".join(f"{v:#x}" for v in sorted(expected.old)), file=io.out)
            continue
        for e in expected:
            print(f"  permitted: {e.describe()}", file=io.out)
            for rule in e.outcome.rules + e.rules:
                print(f"    rule: {rule}", file=io.out)
            for f in e.fields:
                print(f"    {f.describe()}", file=io.out)
    return Outcome.OK


def _walk_s1(case: S1Case, args: argparse.Namespace, io: Streams) -> Outcome:
    """A stage-1-on case: each VA probe's permitted outcomes and the PAR
    (or exception) patterns they show (reference.at.predict)."""
    wanted = _wanted(args, len(case.probes))
    arch = case.cpu.arch
    print(f"{arch.value} {case.cpu.name}: {case.config.describe()} VTTBR={case.config.vttbr:#x}; "
          f"{case.stage1.config.describe()}; {case.stage1.hcr.describe()}", file=io.out)
    for i, (probe, result) in enumerate(zip(case.probes, case.permitted())):
        if i not in wanted:
            continue
        print(f"probe {i}: {probe.at.name_for(arch)} VA {probe.va:#x} ({probe.aim})", file=io.out)
        for o in result.outcomes:
            print(f"  permitted: {o.describe()}", file=io.out)
            for r in at_predict(case.cpu, o, probe.va):
                p = r.prediction
                print(f"    {p.report.value}: {p.pattern.value:#x} on bits {p.pattern.care:#x}"
                      + (f" ({'; '.join(r.rules)})" if r.rules else ""), file=io.out)
            for rule in o.rules:
                print(f"    rule: {rule}", file=io.out)
            for step in o.trace:
                print(f"    {step.describe()}", file=io.out)
    return Outcome.OK


def run_walk(args: argparse.Namespace, io: Streams) -> Outcome:
    case = load_any_case(args.case)
    if isinstance(case, AccessCase):
        return _walk_access(case, args, io)
    if isinstance(case, S1Case):
        return _walk_s1(case, args, io)
    arch = case.cpu.arch
    wanted = _wanted(args, len(case.probes))
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


def qemu_arg_list(values: list[str] | None) -> list[str]:
    """--qemu-arg values as QEMU arguments: each is split like a shell
    word list, so that "-d mmu,guest_errors" gives two."""
    out: list[str] = []
    for v in values or ():
        try:
            out += shlex.split(v)
        except ValueError as exc:
            raise UsageError(f"--qemu-arg {v!r}: {exc}") from None
    return out


def manual_arguments(p: argparse.ArgumentParser) -> None:
    """--keep and --qemu-arg: re-running a boot by hand (probe, repro, run)."""
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep the boot's stub, job and RAM files in DIR with rerun.sh, the "
                        "command that re-runs it by hand")
    p.add_argument("--qemu-arg", action="append", metavar="ARG",
                   help="extra QEMU arguments, e.g. --qemu-arg \"-d mmu,guest_errors\", "
                        "--qemu-arg=-S --qemu-arg=-s (repeatable; split like shell words)")


def _verbosity_arguments(p: argparse.ArgumentParser) -> None:
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="print the verdict line alone")
    loud.add_argument("-v", "--verbose", action="store_true",
                      help="print every probe with its permitted outcomes and walk")


def _case_run_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by probe and repro: the case, where and how to run it."""
    p.add_argument("case", metavar="CASE", help="case file (docs/case-file.md)")
    p.add_argument("--cpu", metavar="NAME", help="run on another CPU model of the same architecture")
    p.add_argument("--timeout", type=seconds, metavar="SECONDS", help="QEMU timeout")
    baseline_arguments(p)
    qemu_arguments(p)
    manual_arguments(p)
    _verbosity_arguments(p)


def _level(args: argparse.Namespace) -> int:
    return 0 if args.quiet else 2 if args.verbose else 1


def _run_case_file(args: argparse.Namespace, *, full_fanout: bool,
                   only: int | None = None) -> tuple[CaseRun, list[str]]:
    """Run the case file as the arguments say; the run and notes about it
    (the fan-out regenerated or not, the boot kept)."""
    data = load_case_data(args.case)
    case = load_any_case(args.case)
    notes: list[str] = []
    numbers: list[int] = []
    if only is not None:
        if not isinstance(case, Case):
            raise UsageError("--only: an access or stage-1 case runs whole (its probes depend "
                             "on each other's state)")
        case = only_probe(case, only)
        numbers = [only]
    elif full_fanout and isinstance(case, Case):
        case, note = regenerate_fanout(case, data)
        if note:
            notes.append(note)
    run = run_case(case, cpu=args.cpu, qemu=qemu_for(args, case.cpu.arch), timeout=args.timeout,
                   baseline=_baseline_of(args), keep=args.keep,
                   qemu_args=qemu_arg_list(args.qemu_arg), numbers=numbers)
    if args.keep is not None:
        notes.append(f"boot kept in {args.keep}; re-run it by hand: sh {args.keep / 'rerun.sh'}")
    other = model_mismatch(run)
    if other:
        notes.append(other)
    return run, notes


def model_mismatch(run: CaseRun) -> str | None:
    """A note when the case's CPU follows the machine (max) and the QEMU at
    hand reports other ID registers than the case records: the verdict is
    then the recorded model's, not this QEMU's max's (an 11.1.3 max case
    with FEAT_XS replayed on 7.2, whose max has no FEAT_XS)."""
    cpu = run.case.cpu
    seen = run.batch.id_registers
    if cpu.name not in FOLLOWS_THE_MACHINE or not seen:
        return None
    differ = [(name, value, int(seen[name])) for name, value in cpu.id_regs
              if name in seen and int(seen[name]) != value]
    if not differ:
        return None
    shown = ", ".join(f"{n} {here:#x} (the case: {there:#x})" for n, there, here in differ[:3])
    more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
    recorded = f" ({cpu.description})" if cpu.description else ""
    return (f"this QEMU's -cpu {cpu.name} reports other ID registers than the case's model"
            f"{recorded}: {shown}{more}; the verdict is that model's, not this QEMU's "
            f"{cpu.name}'s (`s2diff run --cpu {cpu.name}` generates for this QEMU's)")


def _probe_arguments(p: argparse.ArgumentParser) -> None:
    _case_run_arguments(p)
    p.add_argument("--only", type=int, metavar="N",
                   help="run probe N alone (numbered as `s2diff walk` and the case file number "
                        "them: named probes, then the file's fan-out probes)")
    p.add_argument("--trace", action="store_true", help="with -v: the walk of passing probes too")


_VERDICT_OUTCOME = {CaseVerdict.CRASH: Outcome.FOUND, CaseVerdict.NEW: Outcome.FOUND,
                    CaseVerdict.KNOWN: Outcome.OK, CaseVerdict.NONE: Outcome.OK}


def run_probe(args: argparse.Namespace, io: Streams) -> Outcome:
    result, notes = _run_case_file(args, full_fanout=False, only=args.only)
    print(render_case_run(result, level=_level(args), trace=args.trace, notes=notes), file=io.out)
    if not result.complete and result.verdict is not CaseVerdict.CRASH:
        return Outcome.INFRASTRUCTURE
    return _VERDICT_OUTCOME[result.verdict]


def run_repro(args: argparse.Namespace, io: Streams) -> Outcome:
    data = load_case_data(args.case)
    if "expect" in data:
        # A crash or hang case (written by isolation): does QEMU still fail so?
        return run_repro_crash(args, io)
    result, notes = _run_case_file(args, full_fanout=True)
    print(render_case_run(result, level=_level(args), recorded=recorded_divergences(data),
                          notes=notes), file=io.out)
    if not result.complete and result.verdict is not CaseVerdict.CRASH:
        return Outcome.INFRASTRUCTURE
    return _VERDICT_OUTCOME[result.verdict]


COMMANDS = (
    Subcommand("walk", "walk a case file's probes with the reference model (offline)",
               _walk_arguments, run_walk),
    Subcommand("probe", "run one case file in QEMU (its named and sampled fan-out probes, or "
               "--only one) and say what it shows first; -v: every observation beside the "
               "reference's permitted outcomes", _probe_arguments, run_probe),
    Subcommand("repro", "re-run a case file in QEMU (its fan-out regenerated from the seed) and "
               "answer in one line: new divergence (exit 1), only known divergences (exit 0), "
               "no divergence (exit 0), crash or hang reproduced (exit 1)",
               _case_run_arguments, run_repro),
)
