"""Which run a set of output directories holds, before `s2diff merge`
combines them: every input must be a shard of one run (same seed, cases
per entry, fan-out, matrix, baseline and QEMU builds, one split into N),
and every shard 1..N should be there.  Errors name the input files that
disagree; nothing is written before the check passes."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError
from .records import RECORDS, InvalidRecord, ResultsVersionError, RunHeader, read_json_lines

# Run-header fields that make two shards parts of one run, with the words
# an error uses for them.
SAME_RUN = (("seed", "seed"), ("cases_per_entry", "cases per entry"), ("fanout", "fan-out"),
            ("entries", "matrix size"), ("baseline", "baseline"), ("labels", "QEMU builds"))


@dataclasses.dataclass(frozen=True)
class ShardSet:
    """The inputs of a merge: ``split`` N of ``--shard K/N`` (None: whole
    runs, each complete), the shards ``present`` and ``missing``."""

    split: int | None
    present: tuple[int, ...]
    missing: tuple[int, ...]

    def describe_missing(self) -> str:
        return ", ".join(f"{k}/{self.split}" for k in self.missing)


def results_file(path: Path) -> Path:
    """OUT/results.jsonl of an output directory (or the file given)."""
    target = path / RECORDS if path.is_dir() else path
    if not target.is_file():
        raise UsageError(f"{path}: no {RECORDS} (not the output directory of a run)")
    return target


def run_header(path: Path) -> RunHeader:
    """The run header of a results file; UsageError naming the file."""
    try:
        for rec in read_json_lines(path):
            if rec.get("type") == "run":
                return RunHeader.from_json(rec)
    except (InvalidRecord, ResultsVersionError) as exc:
        raise UsageError(f"{path}: its run header is not readable ({exc})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    raise UsageError(f"{path}: no run header (not the results of a run)")


def _value(header: RunHeader, field: str) -> Any:
    return header.labels if field == "labels" else getattr(header, field)


def check_shards(dirs: Sequence[Path]) -> ShardSet:
    """The shard set of ``dirs`` (output directories or results files).
    UsageError, naming two files, when they are not parts of one run: a
    field of SAME_RUN differs, shards of two splits, or a whole run with a
    shard."""
    if not dirs:
        raise UsageError("no run directory given")
    headers = [(results_file(Path(d)), run_header(results_file(Path(d)))) for d in dirs]
    first_path, first = headers[0]
    for path, header in headers[1:]:
        for field, words in SAME_RUN:
            a, b = _value(first, field), _value(header, field)
            if a is not None and b is not None and a != b:
                raise UsageError(f"cannot merge {first_path} and {path}: they are of different "
                                 f"runs ({words} {_show(a)} and {_show(b)})")
    sharded = [(p, h) for p, h in headers if h.shard is not None]
    whole = [(p, h) for p, h in headers if h.shard is None]
    if sharded and whole:
        part = sharded[0][1].shard
        assert part is not None
        raise UsageError(f"cannot merge {whole[0][0]} (a whole run) with {sharded[0][0]} (shard "
                         f"{part[0]}/{part[1]})")
    if whole:
        return ShardSet(None, (), ())
    splits = {h.shard[1] for _, h in sharded if h.shard}
    if len(splits) > 1:
        (pa, ha), (pb, hb) = next(((x, y) for x in sharded for y in sharded
                                   if x[1].shard and y[1].shard and x[1].shard[1] != y[1].shard[1]))
        assert ha.shard and hb.shard
        raise UsageError(f"cannot merge {pa} (shard {ha.shard[0]}/{ha.shard[1]}) with {pb} "
                         f"(shard {hb.shard[0]}/{hb.shard[1]}): two different splits")
    n = splits.pop()
    present = sorted({h.shard[0] for _, h in sharded if h.shard})
    return ShardSet(n, tuple(present), tuple(k for k in range(1, n + 1) if k not in present))


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)
