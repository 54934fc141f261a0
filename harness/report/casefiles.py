"""At most a few case files per root cause: after a run, the case files of
each root cause (harness.report.rootcause) beyond the first ``limit`` (in
run order) are removed and their records no longer name them.  A nightly
on a QEMU with a configuration bug has hundreds of cases that diverge the
same way; three reproduce it as well as three hundred.

Deterministic: the files kept are the first ``limit`` of each root cause in
(batch, case key) order, whatever order the batches finished in; the
first ``limit`` of the merged shards are among the first ``limit`` of
each shard, so pruning shards and then their merge keeps the same files as
pruning the unsharded run."""
from __future__ import annotations

import collections
import dataclasses
import json
import os
from pathlib import Path

from ..errors import UsageError
from ..records import RECORDS, read_json_lines
from .load import load_run
from .rootcause import assign

# Case files kept per root cause unless asked otherwise (run --case-files).
CASE_FILES_PER_CAUSE = 3


@dataclasses.dataclass(frozen=True)
class Pruned:
    """What prune_case_files did: case files kept and removed (paths
    relative to the run directory)."""

    kept: tuple[str, ...]
    removed: tuple[str, ...]


def choose_case_files(out: Path, limit: int) -> Pruned:
    """The case files of ``out`` to keep (the first ``limit`` per root
    cause of the new divergences, in run order) and to remove."""
    run = load_run([out])
    causes_of: dict[str, set] = collections.defaultdict(set)
    order: list[str] = []
    for a, d in zip(assign(run), run.divergences):
        if d.case_file and d.is_new:
            if d.case_file not in causes_of:
                order.append(d.case_file)
            causes_of[d.case_file].add(a)
    per_cause: collections.Counter = collections.Counter()
    kept, removed = [], []
    for file in order:
        causes = causes_of[file]
        if any(per_cause[c] < limit for c in causes):
            kept.append(file)
            per_cause.update(causes)
        else:
            removed.append(file)
    return Pruned(tuple(kept), tuple(removed))


def prune_case_files(out: Path, limit: int = CASE_FILES_PER_CAUSE, *,
                     delete: bool = True) -> Pruned:
    """Keep at most ``limit`` case files per root cause in run directory
    ``out``: remove the others (``delete``; a merge of shards leaves the
    shards' files alone) and rewrite results.jsonl (atomically, record for
    record, fields of any writer kept) without their ``case_file``.
    Nothing happens when nothing is over the limit."""
    if limit < 0:
        raise UsageError("--case-files: must be 0 or more")
    chosen = choose_case_files(out, limit)
    if not chosen.removed:
        return chosen
    gone = set(chosen.removed)
    path = out / RECORDS
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in read_json_lines(path):
            if rec.get("type") == "divergence" and rec.get("case_file") in gone:
                rec = {k: v for k, v in rec.items() if k != "case_file"}
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for file in chosen.removed if delete else ():
        target = out / file
        if target.resolve().is_relative_to(out.resolve()):
            target.unlink(missing_ok=True)
    return chosen
