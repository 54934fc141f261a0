"""`s2diff coverage`: which architecture rules a run reached (from its
results alone), and, opt-in, which lines and branches of QEMU's stage-2
walker it executed (docs/coverage.md)."""
from __future__ import annotations

import argparse
import collections
import json
import typing
from pathlib import Path

from ..coverage import RuleCoverage, Table, class_table, rule_coverage, rule_table
from ..errors import UsageError
from ..qemu import gcov
from ..report.load import load_run
from .common import Outcome, Streams, Subcommand
from .run import _run_arguments, run_run

# Cells listed by default; --cells shows them all.
CELLS_SHOWN = 40
GCOV_REPORT = "gcov.json"


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="*", type=Path, metavar="DIR",
                   help="output directory of a run (or of several shards, merged)")
    p.add_argument("--all", action="store_true", help="list every rule, reached or not")
    p.add_argument("--cells", action="store_true",
                   help=f"list every unreached (rule x class) cell (default: the first "
                        f"{CELLS_SHOWN}) and the table per class")
    p.add_argument("--json", action="store_true", help="the coverage as JSON on stdout")
    p.add_argument("--fail-on-gap", action="store_true",
                   help="exit 1 when a rule the matrix can reach was not reached")
    g = p.add_argument_group("emulator coverage (opt-in): build QEMU with gcov and run on it")
    g.add_argument("--qemu-src", type=Path, metavar="DIR",
                   help="a QEMU source tree (buildable offline); built with --enable-gcov for "
                        "aarch64-softmmu and arm-softmmu, cached per tree and commit")
    g.add_argument("--build-dir", type=Path, metavar="DIR",
                   help="where to build (default: ~/.cache/s2diff/qemu-gcov/TREE-COMMIT)")
    g.add_argument("--branches", action="store_true",
                   help="list every untaken branch of the walker and the AT helpers")
    run = p.add_argument_group("run options (with --qemu-src: the run made on the gcov build)")
    # A group takes the parser's add_argument calls alike.
    _run_arguments(typing.cast(argparse.ArgumentParser, run))


def _print_table(t: Table, io: Streams, limit: int | None = None) -> None:
    print(f"{t.title}: {t.summary}", file=io.out)
    rows = list(t.rows) if limit is None else list(t.rows)[:limit]
    if not rows:
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(t.headers[:-1])]
    line = "  ".join(h.ljust(w) for h, w in zip(t.headers, widths)) + "  " + t.headers[-1]
    print(line, file=io.out)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1], file=io.out)
    if limit is not None and len(t.rows) > limit:
        print(f"... {len(t.rows) - limit} more", file=io.out)


def print_rule_coverage(cov: RuleCoverage, io: Streams, everything: bool, cells: bool) -> None:
    for key in cov.unknown:
        io.note(f"rule {key} of the records is unknown to this s2diff (another version)")
    _print_table(rule_table(cov, everything), io)
    gaps = cov.unreached_cells()
    print(f"unreached (rule x class) cells: {len(gaps)}", file=io.out)
    for key, cell in gaps if cells else gaps[:CELLS_SHOWN]:
        print(f"  {key}  @ {cell}", file=io.out)
    if not cells and len(gaps) > CELLS_SHOWN:
        print(f"  ... {len(gaps) - CELLS_SHOWN} more (--cells lists them all)", file=io.out)
    if cells:
        _print_table(class_table(cov), io)


def _coverage_json(cov: RuleCoverage) -> dict:
    return {"rules": [{"key": r.rule.key, "function": r.rule.function, "probes": r.probes,
                       "reached_cells": list(r.reached_cells),
                       "unreached_cells": list(r.unreached_cells),
                       "unreachable": r.unreachable, "probe_kinds": sorted(p.value for p in
                                                                           r.rule.probes)}
                      for r in cov.rules],
            "cases": cov.cases, "cases_with_rules": cov.with_rules, "unknown": list(cov.unknown)}


def print_gcov(files: list[gcov.FileCoverage], io: Streams, every: bool) -> None:
    """Line and branch coverage per file, then the untaken branches by
    function (the functions with most first)."""
    for f in files:
        print(f"gcov {f.path}: {f.counts.describe()}", file=io.out)
        if f.path == gcov.WALKER:
            print(f"  stage-2 walk functions ({', '.join(gcov.STAGE2_FUNCTIONS)}): "
                  f"{f.subset(gcov.STAGE2_FUNCTIONS).describe()}", file=io.out)
        by_fn = collections.defaultdict(list)
        for b in f.untaken:
            by_fn[b.function].append(b)
        ranked = sorted(by_fn.items(), key=lambda kv: -len(kv[1]))
        for name, branches in ranked if every else ranked[:12]:
            calls = f.functions.get(name, (0, 0))[1]
            lines = sorted({b.line for b in branches})
            shown = lines if every else lines[:16]
            more = "" if len(shown) == len(lines) else f" ... ({len(lines)} lines)"
            print(f"  {name} (called {calls}x): {len(branches)} untaken at lines "
                  f"{', '.join(map(str, shown))}{more}", file=io.out)


def run_coverage(args: argparse.Namespace, io: Streams) -> Outcome:
    if args.qemu_src is None:
        if not args.dirs:
            raise UsageError("give the output directory of a run (or --qemu-src to make one)")
        if args.build_dir is not None:
            raise UsageError("--build-dir goes with --qemu-src")
        cov = rule_coverage(load_run(args.dirs).cases)
        if args.json:
            print(json.dumps(_coverage_json(cov), indent=1), file=io.out)
        else:
            print_rule_coverage(cov, io, args.all, args.cells)
        return Outcome.FOUND if args.fail_on_gap and cov.gaps() else Outcome.OK
    if args.dirs:
        raise UsageError("--qemu-src runs the matrix itself: give its output with --out, not DIR")
    if args.qemu_aarch64 or args.qemu_arm:
        raise UsageError("--qemu-src builds the QEMU the run uses: --qemu-aarch64/--qemu-arm "
                         "cannot be given with it")
    build = gcov.build(args.qemu_src, args.build_dir, note=lambda s: print(s, file=io.out,
                                                                           flush=True))
    print(f"reset {gcov.reset_counters(build)} gcov counter files of {build.build_dir}",
          file=io.out)
    args.qemu_aarch64, args.qemu_arm = str(build.aarch64), str(build.arm)
    outcome = run_run(args, io)
    files = gcov.measure(build)
    report = args.out / GCOV_REPORT
    report.write_text(json.dumps({"src": str(build.src), "commit": build.commit,
                                  "build_dir": str(build.build_dir),
                                  "files": [f.to_json() for f in files]}, indent=1) + "\n",
                      encoding="utf-8")
    print_gcov(files, io, args.branches)
    print(f"gcov: {report}", file=io.out)
    cov = rule_coverage(load_run([args.out]).cases)
    print_rule_coverage(cov, io, args.all, args.cells)
    if args.fail_on_gap and cov.gaps() and outcome is Outcome.OK:
        return Outcome.FOUND
    return outcome


COMMANDS = (
    Subcommand("coverage", "which architecture rules a run reached (from its results), and "
               "with --qemu-src which branches of QEMU's stage-2 walker a run on a gcov build "
               "executed", _arguments, run_coverage),
)
