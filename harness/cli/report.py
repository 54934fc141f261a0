"""The offline report subcommands (report, merge), and the summary printed
at the end of a run and by both."""
from __future__ import annotations

import argparse
from pathlib import Path

from reference.arch import Arch
from reference.catalogue import judge
from reference.cpus import get_cpu

from ..plan import MatrixEntry
from ..report.casefiles import CASE_FILES_PER_CAUSE, prune_case_files
from ..report.load import RunData, load_run, merge_dirs
from ..report.text import render_terminal
from ..report.write import write_reports
from .common import Outcome, Streams, Subcommand


def new_divergences(run: RunData) -> int:
    return sum(1 for d in run.divergences if d.is_new)


def print_summary(run: RunData, io: Streams, out_dir: Path | None = None) -> None:
    """The end of a run in the terminal: the verdict line first, the root
    causes with their commands, then the counts (summary.txt has it all)."""
    for warning in run.warnings:
        io.note(warning)
    print(render_terminal(run, out_dir), file=io.out, end="")


def vtcr_notice(entry: MatrixEntry) -> list[str]:
    """What the reference makes of a `run --vtcr` value, said before the
    run: valid with its geometry, or invalid with the rules that fail and
    the fault every probe must then report (the run still compares the
    fault QEMU reports with it)."""
    cpu = get_cpu(entry.arch, entry.cpu)
    verdict = judge(cpu, entry.config)
    reg = "VTCR_EL2" if entry.arch is Arch.AARCH64 else "VTCR"
    head = f"--vtcr {entry.config.vtcr():#x} on {entry.cpu}:"
    if verdict.valid:
        return [f"{head} valid: {verdict.granule.label if verdict.granule else '?'} granule, "
                f"{verdict.ia_bits}-bit IPA, start level {verdict.start_level}, "
                f"{verdict.oa_bits}-bit output"] + [f"  note: {n}" for n in verdict.notes]
    faults = sorted({r.fault.describe() for r in verdict.readings if r.fault is not None})
    return ([f"{head} INVALID per the architecture ({reg}); " + "; ".join(verdict.problems),
             f"  every probe must report {' or '.join(faults)}; the run compares the fault "
             "QEMU reports with that"] + [f"  note: {n}" for n in verdict.notes])


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="output directory of a run (or of several shards)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where to write the reports (default: the first DIR)")


def run_report(args: argparse.Namespace, io: Streams) -> Outcome:
    run = load_run(args.dirs)
    out = args.out or args.dirs[0]
    written = write_reports(run, out)
    print_summary(run, io)
    for name, path in written.items():
        print(f"{name}: {path}", file=io.out)
    return Outcome.FOUND if new_divergences(run) else Outcome.OK


def _merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="shard output directories")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="directory for the merged results and reports")
    p.add_argument("--case-files", type=int, metavar="N", default=CASE_FILES_PER_CAUSE,
                   help="case files named per root cause, as `run --case-files` (default "
                        f"{CASE_FILES_PER_CAUSE})")


def run_merge(args: argparse.Namespace, io: Streams) -> Outcome:
    merge_dirs(args.dirs, args.out)
    # The merged records name as many case files per root cause as the
    # unsharded run would keep (the shards each kept their own first N).
    prune_case_files(args.out, args.case_files, delete=False)
    run = load_run([args.out])
    written = write_reports(run, args.out)
    print_summary(run, io)
    for name, path in written.items():
        print(f"{name}: {path}", file=io.out)
    return Outcome.FOUND if new_divergences(run) else Outcome.OK


COMMANDS = (
    Subcommand("report", "rebuild summary, JUnit XML and HTML report from results.jsonl "
               "(offline)", _report_arguments, run_report),
    Subcommand("merge", "combine the outputs of shards into one results file and report "
               "(offline)", _merge_arguments, run_merge),
)
