"""The end of a run and the offline report commands: reports written,
summary printed, baseline staleness told, exit code chosen."""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Sequence

from .baseline import load_baseline, stale_entries
from .errors import UsageError
from .report import RunData, load_run, render_families, render_summary, summary_rich, write_reports
from .run import RECORDS, RunOutcome, read_records


def new_divergences(run: RunData) -> int:
    return sum(1 for d in run.divergences if d.is_new)


def print_summary(run: RunData, io) -> None:
    """The summary table (rich on a terminal), the known divergences by
    baseline entry, and the families of the new ones (summary.txt has all
    families)."""
    for warning in run.warnings:
        io.note(warning)
    if io.tty:
        from rich.console import Console
        Console(file=io.out).print(summary_rich(run))
    else:
        print(render_summary(run), file=io.out)
    known: Counter = Counter()
    for d in run.divergences:
        if not d.is_new:
            known[d.known] += d.count
    for entry, count in sorted(known.items()):
        print(f"KNOWN: {count:>12,}  {entry}", file=io.out)
    new = dataclasses.replace(run, divergences=tuple(d for d in run.divergences if d.is_new))
    if new.divergences:
        print("NEW divergences:", file=io.out)
        print(render_families(new), file=io.out)


def finish_run(out: Path, outcome: RunOutcome, baseline: Path | None, io) -> int:
    """Reports for a finished (or interrupted) run; the exit code: 1 new
    divergence, 3 nothing could run, 130 interrupted, 0 otherwise."""
    run = load_run([out])
    written = write_reports(run, out)
    print_summary(run, io)
    if baseline is not None:
        for entry in stale_entries(load_baseline(baseline), outcome.known_used, outcome.ran):
            print(f"STALE: baseline entry {entry.id} matched nothing although its configuration "
                  f"ran (fixed? case: {entry.case})", file=io.out)
    for name, path in written.items():
        print(f"{name}: {path}", file=io.out)
    for finding in outcome.findings:
        print(f"FINDING: QEMU {finding['kind']} reproduced by one case (key {finding['key']}, "
              f"probe {finding['probe']}): {out / finding['case_file']} "
              f"(s2diff repro re-runs it)", file=io.out)
    if outcome.interrupted:
        print(f"interrupted: {outcome.batches_run} of {outcome.batches_planned} batches finished "
              f"and recorded; continue with --resume --out {out}", file=io.err)
        return 130
    statuses = outcome.batch_status
    if statuses and not statuses.get("completed", 0) and not outcome.findings:
        # Nothing ran to the end: QEMU or the harness is unusable here.
        print("nothing could run: no batch completed (see the summary's batch diagnostics)",
              file=io.err)
        return 3
    return 1 if new_divergences(run) or outcome.findings else 0


def merge_dirs(dirs: Sequence[Path], out: Path) -> Path:
    """Concatenate the records of shard directories into OUT/results.jsonl
    (identical records once); the report loader de-duplicates and sorts."""
    seen: set[str] = set()
    lines: list[str] = []
    for d in dirs:
        path = d / RECORDS if d.is_dir() else d
        if not path.is_file():
            raise UsageError(f"{d}: no {RECORDS} (not the output directory of a run)")
        for rec in read_records(path):
            line = json.dumps(rec, sort_keys=True, separators=(",", ":"))
            if line not in seen:
                seen.add(line)
                lines.append(line)
    try:
        out.mkdir(parents=True, exist_ok=True)
        target = out / RECORDS
        target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out: cannot write to {out} ({exc.strerror or exc})") from None
    return target


__all__ = ["finish_run", "load_run", "merge_dirs", "new_divergences", "print_summary",
           "write_reports"]
