"""Subcommands for debugging a divergence or a crash: shrink, localize,
isolate, repro-crash, bisect (docs/debugging.md); each is thin over
harness.debug.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn

from reference.arch import Arch
from reference.generate import Case

from ..baseline import EMPTY, Baseline, default_baseline, load_baseline
from ..casefile import load_any_case, load_case, load_case_data, save_case
from ..debug.bisect import DEFAULT_CONFIGURE_ARGS, Abort, BisectOptions, BisectVerdict, bisect_step
from ..debug.explain import explain_case
from ..debug.isolate import (
    ReproVerdict,
    isolate,
    isolation_extra,
    parse_expect,
    repro_crash,
)
from ..debug.lab import Lab, choose_target, first_trial, only
from ..debug.localize import localize
from ..debug.minimize import conclusion, shrink_case_file
from ..errors import S2DiffError, UsageError
from ..records import RECORDS, RecordSink, ShrinkRecord
from ..report.load import load_run
from ..report.rootcause import CauseKind, assign, root_causes
from ..report.write import write_reports
from .common import (
    EXIT_CODES,
    Outcome,
    Streams,
    Subcommand,
    baseline_arguments,
    positive,
    qemu_arguments,
    qemu_for,
)
from .progress import Heartbeat

# ---------------------------------------------------------------------------
# shrink / localize
# ---------------------------------------------------------------------------

def _divergent_case_arguments(p: argparse.ArgumentParser, probe_help: str) -> None:
    """Arguments shared by shrink and localize."""
    p.add_argument("case", type=Path, metavar="CASE", help="a divergent case file")
    p.add_argument("--probe", type=int, metavar="N", help=probe_help)
    p.add_argument("--timeout", type=positive, metavar="SECONDS", help="QEMU timeout per boot")
    qemu_arguments(p)


def _shrink_arguments(p: argparse.ArgumentParser) -> None:
    _divergent_case_arguments(p, "follow probe N's divergence (default: the first divergent "
                                 "probe the baseline does not explain)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="minimal case file to write (default: CASE's name with .min.json; the "
                        "report goes beside it with .txt)")
    baseline_arguments(p)


def baseline_of(args: argparse.Namespace) -> Baseline:
    """The baseline the arguments name (--baseline, --no-baseline, default)."""
    if getattr(args, "no_baseline", False):
        return EMPTY
    path = getattr(args, "baseline", None) or default_baseline()
    return load_baseline(path) if path else EMPTY


def run_shrink(args: argparse.Namespace, io: Streams) -> Outcome:
    case = load_case(args.case)
    # Progress on stderr (stdout holds the conclusion): each pass, and a
    # line per INTERVAL s of boots -- a shrink of a large case is minutes.
    beat = Heartbeat("shrink", lambda line: print(line, file=io.err, flush=True))
    report = shrink_case_file(args.case, out=args.out, probe=args.probe,
                              qemu=qemu_for(args, case.cpu.arch), timeout=args.timeout,
                              baseline=baseline_of(args), stage=beat.stage, on_boot=beat.tick)
    # The conclusion and the steps; the walk and the variants are in the report.
    head = report.text.split("\n== the minimal case ==")[0].rstrip("\n")
    print(head, file=io.out)
    print(f"explained and localized in full: {report.report_file}", file=io.out)
    return Outcome.OK


# Root causes `run --shrink` shrinks, at most.
SHRINK_LIMIT = 10


def _file_probe(case_file: Path, run_probe: int | None) -> int | None:
    """The probe number, in the case file, of the run's probe ``run_probe``
    (a case file keeps a sample of the fan-out and renumbers it)."""
    if run_probe is None:
        return None
    data = load_case_data(case_file)
    for d in data.get("divergence") or ():
        if isinstance(d, dict) and d.get("run_probe") == run_probe:
            return d.get("probe")
    return run_probe


def _relative(path: Path, run_dir: Path) -> str:
    return Path(os.path.relpath(path, run_dir)).as_posix()


def shrink_root_causes(out: Path, args: argparse.Namespace, io: Streams) -> None:
    """`run --shrink`: for each new root cause of the run in ``out`` (up to
    SHRINK_LIMIT), its first case file shrunk and localized, following a
    new divergence of that root cause; each result said in a few lines
    (the conclusion, not the variants) and recorded as a shrink record, so
    that the reports link the minimal case and its explanation."""
    run = load_run([out])
    causes = [c for c in root_causes(run)
              if c.is_new and c.kind is not CauseKind.CRASH and c.case_files]
    records: list[ShrinkRecord] = []
    assigned = dict(zip(run.divergences, assign(run)))
    baseline = baseline_of(args)
    for n, cause in enumerate(causes[:SHRINK_LIMIT], 1):
        file, base = cause.case_files[0]
        path = Path(base or out) / file
        # Follow the root cause's largest family, a named probe of it when
        # there is one (named probes are the stable ones to shrink).
        mine = [d for d in run.divergences if d.is_new and d.case_file == file
                and assigned[d].key == cause.key]
        rank = {f.key: i for i, f in enumerate(cause.families)}
        follow = min(mine, key=lambda d: (d.fanout, rank.get(d.family, len(rank)),
                                          d.probe if d.probe is not None else -1))
        print(f"SHRINK {n}/{min(len(causes), SHRINK_LIMIT)}: {cause.title}", file=io.out,
              flush=True)
        try:
            probe = _file_probe(path, follow.probe)
            beat = Heartbeat(f"  shrink {n}", lambda line: print(line, file=io.out, flush=True))
            report = shrink_case_file(path, probe=probe, qemu=qemu_for(args, Arch(follow.arch)),
                                      baseline=baseline, stage=beat.stage, on_boot=beat.tick)
        except S2DiffError as exc:
            print(f"  could not shrink {path}: {' '.join(str(exc).split())}", file=io.out)
            records.append(ShrinkRecord(family=follow.family, case_file=file, probe=follow.probe,
                                        min_case=None, report=None, level=None, address=None,
                                        field="", note=f"could not shrink: {exc}"))
            continue
        loc = report.localization
        for line in conclusion(report.shrink, loc, report.case_file)[1:]:
            print(f"  {line}", file=io.out)
        print(f"  explained: {report.report_file}", file=io.out, flush=True)
        records.append(ShrinkRecord(
            family=follow.family, case_file=file, probe=follow.probe,
            min_case=_relative(report.case_file, Path(base or out)),
            report=_relative(report.report_file, Path(base or out)), level=loc.level,
            address=None if loc.address is None else f"{loc.address:#x}", field=loc.field,
            note=f"the divergence followed is known ({report.shrink.known})"
            if report.shrink.known else ""))
    if len(causes) > SHRINK_LIMIT:
        print(f"SHRINK: stopped after {SHRINK_LIMIT} root causes ({len(causes) - SHRINK_LIMIT} "
              "left; s2diff shrink CASE does one)", file=io.out)
    if records:
        sink = RecordSink(out / RECORDS)
        try:
            sink.write(records)
        finally:
            sink.close()
        written = write_reports(load_run([out]), out)
        print(f"reports updated with the shrinks: {written['summary']}, {written['html']}",
              file=io.out)


def _localize_arguments(p: argparse.ArgumentParser) -> None:
    _divergent_case_arguments(p, "the divergent probe to localize (default: the first)")


def run_localize(args: argparse.Namespace, io: Streams) -> Outcome:
    case = load_case(args.case)
    lab = Lab(case.cpu.arch, case.cpu.name, qemu=qemu_for(args, case.cpu.arch),
              timeout=args.timeout)
    trial = first_trial(case, lab)
    target = choose_target(trial, args.probe)
    if target.target is None:
        raise UsageError(f"the divergence of probe {target.probe} is not one probe's")
    single = only(case, [target.target])
    base = lab.run([single])[0]
    if not base.shows(target.signature):
        raise UsageError(f"probe {target.probe} does not diverge the same way when run alone; "
                         "shrink the case first (s2diff shrink)")
    loc = localize(single, lab, target.signature, base)
    print(f"probe {target.probe}: {target.signature.describe()}", file=io.out)
    print(explain_case(single, base, number=target.probe), file=io.out)
    print(loc.render(), file=io.out)
    print(f"QEMU boots: {lab.boots}", file=io.out)
    return Outcome.OK


# ---------------------------------------------------------------------------
# isolate / repro-crash
# ---------------------------------------------------------------------------

def _isolate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cases", nargs="+", type=Path, metavar="CASE",
                   help="case files run together in one boot, as a batch (their image windows "
                        "must not overlap); one case file is bisected over its probes")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="crash/hang case file to write (default: crash-IMAGE-PROBE.json beside "
                        "the first CASE)")
    p.add_argument("--timeout", type=positive, metavar="SECONDS",
                   help="QEMU timeout per boot (a hang costs this much per bisection step)")
    qemu_arguments(p)


def run_isolate(args: argparse.Namespace, io: Streams) -> Outcome:
    cases = [load_case(p) for p in args.cases]
    arch = cases[0].cpu.arch
    iso = isolate(cases, qemu=qemu_for(args, arch), timeout=args.timeout,
                  log=lambda line: print(line, file=io.out, flush=True))
    source = args.cases[0] if len(args.cases) == 1 else args.cases[iso.image]
    out = args.out or args.cases[0].with_name(f"crash-{iso.image}-{iso.probe}.json")
    save_case(out, iso.case, isolation_extra(iso, str(source)))
    probe = iso.case.probes[0] if isinstance(iso.case, Case) and iso.case.probes else None
    where = (f"image {iso.image} ({source})" + (f", probe {iso.probe}: "
             f"{probe.at.name_for(arch)} IPA {probe.ipa:#x} ({probe.aim})" if probe else ""))
    print(f"ISOLATED: {iso.failure.describe()} -- {where}"
          + ("" if iso.complete else " (incomplete: the failure needs more than one)"),
          file=io.out)
    if not iso.probe_needed:
        print("note: the image fails with no probe at all", file=io.out)
    print(f"QEMU boots: {iso.boots}; written: {out} (re-run: s2diff repro-crash {out})",
          file=io.out)
    return Outcome.OK


def _repro_crash_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", type=Path, metavar="CASE", help="a crash/hang case file (key expect)")
    p.add_argument("--timeout", type=positive, metavar="SECONDS", help="QEMU timeout")
    qemu_arguments(p)


def run_repro_crash(args: argparse.Namespace, io: Streams) -> Outcome:
    data = load_case_data(args.case)
    case = load_any_case(args.case)     # an isolated access case too
    expected = parse_expect(data)
    if expected is None:
        raise UsageError(f"{args.case}: no 'expect' key: not a crash/hang case (use s2diff repro)")
    rep = repro_crash(case, expected, qemu=qemu_for(args, case.cpu.arch), timeout=args.timeout)
    observed = rep.observed.describe() if rep.observed else "completes"
    if rep.verdict is ReproVerdict.REPRODUCES:
        line, outcome = (f"{expected.kind.value} reproduced: {observed.split(': ', 1)[-1]}",
                         Outcome.FOUND)
    elif rep.verdict is ReproVerdict.COMPLETES:
        line, outcome = ("no crash: QEMU completes the case "
                         f"(the file records {expected.describe()})"), Outcome.OK
    else:
        line, outcome = (f"fails another way: {observed} (the file records "
                         f"{expected.describe()})"), Outcome.INFRASTRUCTURE
    print(line, file=io.out)
    if getattr(args, "quiet", False):
        return outcome
    print(f"expected: {expected.describe()}", file=io.out)
    print(f"observed: {observed}" + (f"\n{rep.batch.diagnostic}" if rep.batch.diagnostic else ""),
          file=io.out)
    print(f"QEMU {rep.batch.qemu_version}", file=io.out)
    print(f"command: {rep.batch.command_line}", file=io.out)
    return outcome


# ---------------------------------------------------------------------------
# bisect
# ---------------------------------------------------------------------------

def _bisect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cases", nargs="+", type=Path, metavar="CASE",
                   help="case files (outside the tree being bisected, or absolute paths)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--qemu-src", type=Path, metavar="DIR",
                     help="QEMU source tree to configure and build at each step")
    src.add_argument("--qemu-cmd", metavar="COMMAND",
                     help="the qemu-system-* binary to use, or a command (run in the current "
                          "directory) printing PATH or ARCH=PATH lines")
    p.add_argument("--build-dir", type=Path, metavar="DIR",
                   help="build directory, kept between steps (default: QEMU-SRC/build-s2diff)")
    p.add_argument("--configure-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for QEMU's configure (repeatable; write an option with "
                        "'=': --configure-arg=--enable-debug; given either way, it replaces a "
                        "default: " + " ".join(DEFAULT_CONFIGURE_ARGS) + ")")
    p.add_argument("--jobs", type=int, metavar="N", help="ninja -j N")
    p.add_argument("--timeout", type=positive, metavar="SECONDS", help="QEMU timeout per case")
    p.add_argument("--any-divergence", action="store_true",
                   help="count any divergence as bad, not only the one a case file records")
    p.add_argument("--find-fix", action="store_true",
                   help="look for the commit that fixed it: exit 0 while QEMU still fails the "
                        "case, 1 once it agrees (with git bisect start --term-old=broken "
                        "--term-new=fixed)")
    # Argument errors must stop `git bisect run`, not mark the commit bad.
    error = p.error

    def abort(message: str) -> NoReturn:
        if "--configure-arg: expected one argument" in message:
            # argparse takes `--configure-arg --enable-debug` for two options.
            message += " (a value that starts with '-' needs '=': --configure-arg=--enable-debug)"
        try:
            error(message)
        except UsageError as exc:
            raise Abort(str(exc)) from None
    p.error = abort  # type: ignore[method-assign]


def run_bisect(args: argparse.Namespace, io: Streams) -> Outcome:
    if args.build_dir is not None and args.qemu_src is None:
        print("s2diff: error: --build-dir: only with --qemu-src", file=io.err)
        return Outcome.BISECT_ABORT
    opts = BisectOptions(cases=tuple(args.cases), qemu_src=args.qemu_src,
                         build_dir=args.build_dir, qemu_cmd=args.qemu_cmd, jobs=args.jobs,
                         configure_args=tuple(args.configure_arg), timeout=args.timeout,
                         any_divergence=args.any_divergence)
    try:
        step = bisect_step(opts, lambda line: print(f"bisect: {line}", file=io.out, flush=True))
    except S2DiffError as exc:
        # Not this commit's fault (a bad case file, no cross toolchain): stop git bisect.
        print(f"s2diff: error: {' '.join(str(exc).split())} (aborting the bisection)",
              file=io.err)
        return Outcome.BISECT_ABORT
    outcome = BISECT_OUTCOMES[step.verdict]
    word = {Outcome.BISECT_GOOD: "good", Outcome.BISECT_BAD: "bad",
            Outcome.BISECT_SKIP: "skip"}[outcome]
    if args.find_fix and outcome is not Outcome.BISECT_SKIP:
        # git bisect run calls exit 0 "old" and 1 "new": looking for a fix,
        # the old commits are those that still fail.
        outcome, word = ((Outcome.BISECT_BAD, "fixed") if outcome is Outcome.BISECT_GOOD
                         else (Outcome.BISECT_GOOD, "still broken"))
    print(f"bisect: BISECT: {word} (exit {EXIT_CODES[outcome]})"
          + (f" at {step.commit.split()[0][:12]}" if step.commit else ""), file=io.out, flush=True)
    return outcome


BISECT_OUTCOMES = {BisectVerdict.GOOD: Outcome.BISECT_GOOD, BisectVerdict.BAD: Outcome.BISECT_BAD,
                   BisectVerdict.UNTESTABLE: Outcome.BISECT_SKIP}


COMMANDS = (
    Subcommand("shrink", "minimize a divergent case (checked in QEMU), explain it and localize "
               "where QEMU departs from the reference", _shrink_arguments, run_shrink),
    Subcommand("localize", "find the walk level, descriptor and field where QEMU departs from "
               "the reference (without shrinking)", _localize_arguments, run_localize),
    Subcommand("isolate", "find the image and probe that crash or hang QEMU, by bisection; "
               "write them as a crash/hang case file", _isolate_arguments, run_isolate),
    Subcommand("repro-crash", "re-run a crash/hang case file (exit 1: QEMU still fails the "
               "recorded way, 0: it completes, 3: it fails another way)",
               _repro_crash_arguments, run_repro_crash),
    Subcommand("bisect", "one step of `git bisect run` over QEMU commits: build or find QEMU, "
               "run the cases; exit 0 good, 1 bad, 125 untestable, 128 abort",
               _bisect_arguments, run_bisect, usage_error=Outcome.BISECT_ABORT),
)
