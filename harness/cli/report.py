"""The offline report subcommands (report, merge), and the summary printed
at the end of a run and by both."""
from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from pathlib import Path

from rich.console import Console

from ..report.families import render_families
from ..report.load import RunData, load_run, merge_dirs
from ..report.summary import render_summary, summary_rich
from ..report.write import write_reports
from ..shards import check_shards
from .common import Outcome, Streams, Subcommand


def new_divergences(run: RunData) -> int:
    return sum(1 for d in run.divergences if d.is_new)


def print_summary(run: RunData, io: Streams) -> None:
    """The summary table (rich on a terminal), the known divergences by
    baseline entry, and the families of the new ones (summary.txt has all
    families)."""
    for warning in run.warnings:
        io.note(warning)
    if io.tty:
        Console(file=io.out).print(summary_rich(run))
    else:
        print(render_summary(run), file=io.out)
    known: Counter[str] = Counter()
    for d in run.divergences:
        if d.known is not None:
            known[d.known] += d.count
    for entry, count in sorted(known.items()):
        print(f"KNOWN: {count:>12,}  {entry}", file=io.out)
    new = dataclasses.replace(run, divergences=tuple(d for d in run.divergences if d.is_new))
    if new.divergences:
        print("NEW divergences:", file=io.out)
        print(render_families(new), file=io.out)


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
    p.add_argument("--allow-partial", action="store_true",
                   help="merge although shards are missing (every report says which)")


def run_merge(args: argparse.Namespace, io: Streams) -> Outcome:
    # The inputs are checked before anything is written (harness.shards):
    # errors name the input files, and a refused merge leaves no output.
    shards = check_shards(args.dirs)
    if shards.missing:
        if not args.allow_partial:
            print(f"s2diff: error: shard(s) {shards.describe_missing()} missing: the inputs hold "
                  f"{', '.join(f'{k}/{shards.split}' for k in shards.present)}; merge them "
                  "anyway with --allow-partial (every report then says so)", file=io.err)
            return Outcome.FOUND
        io.note(f"merging without shard(s) {shards.describe_missing()} (--allow-partial)")
    merge_dirs(args.dirs, args.out)
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
