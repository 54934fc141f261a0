"""Loading the results of a run (harness.records) for the reports: one
output directory, or the directories of several shards, merged into one
``RunData`` -- the same records in the same order whatever the sharding, so
the reports of merged shards are byte-identical to those of the unsharded
run of the same seed.  ``merge_dirs`` concatenates shard files on disk.
"""
from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..records import (
    RECORDS,
    BatchRecord,
    CaseRecord,
    CrashRecord,
    DivergenceRecord,
    EndRecord,
    InvalidRecord,
    ResultsVersionError,
    RunHeader,
    parse_record,
    read_json_lines,
)

# Record types the loader knows; others are skipped and counted.
_TYPES = ("run", "batch", "case", "divergence", "crash", "end")


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What the ``run`` records of the merged files say about the run.

    ``shards`` are the "K/N" of sharded run records (sorted); ``complete``
    is true when an unsharded run record is present or every shard 1..N
    is (``shards`` is then empty: a complete run reads the same however it
    was split).  ``batches_planned`` is what the run records say the
    present shards hold, ``batches_present`` how many batch records there
    are: fewer when a run stopped early (``--budget``, Ctrl-C).  ``qemu`` pairs (arch, version): the versions batches ran on, and
    for an arch without batches those the run records name."""

    seed: int | None
    cases_per_entry: int | None
    entries: int | None
    shards: tuple[str, ...]
    complete: bool
    batches_planned: int | None
    batches_present: int
    qemu: tuple[tuple[str, str], ...]

    @property
    def coverage(self) -> str:
        """How much of the run the records cover, in words."""
        short = (self.batches_planned is not None and self.batches_present < self.batches_planned)
        done = f"{self.batches_present} of {self.batches_planned} batches"
        if self.complete:
            return f"{done} (run stopped early)" if short else "all batches"
        if not self.shards:
            return "unknown (no run record)"
        n = int(self.shards[0].split("/")[1])
        have = {int(s.split("/")[0]) for s in self.shards}
        missing = ", ".join(f"{k}/{n}" for k in range(1, n + 1) if k not in have)
        return f"shards {', '.join(self.shards)} (missing {missing})" + (f", {done}" if short else "")


@dataclasses.dataclass(frozen=True)
class RunData:
    """A run (or the merged shards of one): records validated, de-duplicated
    and sorted by (batch, case key, probe).  ``warnings`` say what was
    skipped while reading; they name files, so no report includes them."""

    info: RunInfo
    batches: tuple[BatchRecord, ...]
    cases: tuple[CaseRecord, ...]
    divergences: tuple[DivergenceRecord, ...]
    warnings: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    crashes: tuple[CrashRecord, ...] = ()
    ends: tuple[EndRecord, ...] = ()


def _results_path(path: Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / RECORDS
        if not p.exists():
            raise UsageError(f"{path}: no {RECORDS} here (not an s2diff run directory)")
    elif not p.exists():
        raise UsageError(f"{path}: no such directory")
    return p


def _is_record(line: str) -> bool:
    """The test read_json_lines applies to a line."""
    try:
        rec = json.loads(line.encode("utf-8", "surrogateescape"))
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, a number too long for int()
        return False
    return isinstance(rec, dict) and "type" in rec


def _read_file(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of one results file and the warnings about its lines."""
    try:
        records = list(read_json_lines(path))
        # Line by line, undecodable bytes kept as escapes: one bad line is
        # skipped like any unreadable line, not a reason to refuse the file.
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = [line for line in f if line.strip()]
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not lines:
        raise UsageError(f"{path}: empty, not the results of a run")
    if not records:
        raise UsageError(f"{path}: not a results file (no JSON Lines record in {len(lines)} lines)")
    warnings = []
    unreadable = len(lines) - len(records)
    if unreadable and not _is_record(lines[-1]):
        warnings.append(f"{path}: last line torn (run killed mid-write?), skipped")
        unreadable -= 1
    if unreadable:
        warnings.append(f"{path}: {unreadable} line(s) are not JSON records, skipped")
    return records, warnings


def _identity(rec: BatchRecord | CaseRecord | DivergenceRecord | CrashRecord | EndRecord
              ) -> tuple[Any, ...]:
    """What makes two records the same record, whichever shard holds it.
    A batch runs once on every QEMU of a run: the QEMU label is part of
    every identity.  A memory divergence also names its descriptor: one
    probe's walk can read several descriptors that changed."""
    if isinstance(rec, EndRecord):
        return ("end", rec.shard)
    if isinstance(rec, BatchRecord):
        return ("batch", rec.batch, rec.qemu)
    if isinstance(rec, CaseRecord):
        return ("case", rec.batch, rec.qemu, rec.key)
    if isinstance(rec, CrashRecord):
        return ("crash", rec.batch, rec.qemu, rec.key, rec.probe)
    return ("divergence", rec.batch, rec.qemu, rec.key, rec.probe, rec.kind.value,
            rec.raw_map.get("pa", ""))


def _key_order(key: str) -> tuple[str, int, str]:
    """ENTRY#INDEX sorted by entry, then numerically by index."""
    entry, _, index = key.rpartition("#")
    return (entry, int(index), key) if index.isdigit() else (key, -1, key)


def _rank(path: str, rec: Any) -> tuple[str, str]:
    """Order between records of one identity: by content (repr leaves
    ``base_dir`` out), then by the file they came from."""
    return repr(rec), path


def _merge_run_info(runs: Sequence[tuple[str, RunHeader]],
                    batches: Sequence[BatchRecord]) -> RunInfo:
    def agree(name: str):
        values = {getattr(r, name) for _, r in runs if getattr(r, name) is not None}
        if len(values) > 1:
            where = ", ".join(f"{getattr(r, name)} in {w}" for w, r in runs)
            raise UsageError(f"cannot merge records of different runs: {name} differs ({where})")
        return next(iter(values), None)

    seed, cpe, entries = agree("seed"), agree("cases_per_entry"), agree("entries")
    sharded = {r.shard for _, r in runs if r.shard is not None}
    counts = {n for _, n in sharded}
    if len(counts) > 1:
        raise UsageError("cannot merge shards of different splits: "
                         + ", ".join(f"{k}/{n}" for k, n in sorted(sharded)))
    unsharded = [r for _, r in runs if r.shard is None]
    complete = bool(unsharded) or (
        bool(sharded) and {k for k, _ in sharded} == set(range(1, next(iter(counts)) + 1)))
    # The same shard may be given twice (or a run appended twice to a
    # directory): count each shard's plan once.
    plans: dict[tuple[int, int] | None, int | None] = {}
    for _, r in runs:
        key = None if unsharded else r.shard
        if r.batches is None or plans.get(key, 0) is None:
            plans[key] = None
        else:
            plans[key] = max(plans.get(key) or 0, r.batches)
    counts_ = [n for n in plans.values() if n is not None]
    planned = sum(counts_) if plans and len(counts_) == len(plans) else None
    by_arch: dict[str, set[str]] = collections.defaultdict(set)
    for b in batches:
        if b.qemu_version:
            by_arch[b.arch].add(b.qemu_version)
    ran = set(by_arch)
    for _, r in runs:
        for arch, version in r.versions():
            if arch not in ran:
                by_arch[arch].add(version)
    return RunInfo(seed=seed, cases_per_entry=cpe, entries=entries,
                   shards=() if complete else tuple(f"{k}/{n}" for k, n in sorted(sharded)),
                   complete=complete, batches_planned=planned, batches_present=len(batches),
                   qemu=tuple(sorted((a, v) for a, vs in by_arch.items() for v in vs)))


def load_run(dirs: Sequence[Path | str]) -> RunData:
    """Read the results of one output directory, or of several shards of a
    run, and merge them.

    Each item is a run directory (holding results.jsonl) or a results file.
    Records of an unknown type or missing a field are skipped and counted
    in ``warnings``; a torn last line is skipped.  Records present in
    several inputs are kept once, so merging a shard twice changes nothing.
    UsageError (one line) when an input is missing or is not JSON Lines at
    all, or when the inputs come from different runs (seed, cases per
    entry, matrix size or shard split differ)."""
    if not dirs:
        raise UsageError("no run directory given")
    runs: list[tuple[str, RunHeader]] = []
    chosen: dict[tuple[Any, ...], tuple[str, BatchRecord | CaseRecord | DivergenceRecord
                                         | CrashRecord | EndRecord]] = {}
    warnings: list[str] = []
    for d in dirs:
        path = _results_path(Path(d))
        records, notes = _read_file(path)
        warnings += notes
        skipped: collections.Counter[str] = collections.Counter()
        for rec in records:
            rtype = rec.get("type")
            if rtype not in _TYPES:
                skipped[f"unknown type {rtype!r}"] += 1
                continue
            try:
                item = parse_record(rec, path.parent)
            except ResultsVersionError as exc:
                # A file-level mismatch: nothing in it can be trusted to mean what we think.
                raise UsageError(f"{path}: {exc}") from None
            except InvalidRecord as why:
                skipped[f"{rtype} record: {why}"] += 1
                continue
            if isinstance(item, RunHeader):
                runs.append((str(path), item))
                continue
            ident = _identity(item)
            if ident not in chosen:
                chosen[ident] = (str(path), item)
            elif _rank(str(path), item) < _rank(*chosen[ident]):
                # Of two different records with one identity, keep the same
                # one whatever the order of the inputs.
                chosen[ident] = (str(path), item)
        if skipped:
            warnings.append(f"{path}: skipped {sum(skipped.values())} invalid record(s): "
                            + "; ".join(f"{n} x {why}" for why, n in sorted(skipped.items())))
    items = [item for _, item in chosen.values()]
    batches = sorted((i for i in items if isinstance(i, BatchRecord)),
                     key=lambda b: (b.batch, b.qemu))
    cases = sorted((i for i in items if isinstance(i, CaseRecord)),
                   key=lambda c: (c.batch, c.qemu, _key_order(c.key)))
    divergences = sorted(
        (i for i in items if isinstance(i, DivergenceRecord)),
        key=lambda v: (v.batch, v.qemu, _key_order(v.key), -1 if v.probe is None else v.probe,
                       v.kind.value, v.raw_map.get("pa", "")))
    crashes = sorted((i for i in items if isinstance(i, CrashRecord)),
                     key=lambda c: (c.batch, c.qemu, _key_order(c.key), c.probe or 0))
    ends = sorted((i for i in items if isinstance(i, EndRecord)),
                  key=lambda e: e.shard or (0, 0))
    return RunData(info=_merge_run_info(runs, batches), batches=tuple(batches),
                   cases=tuple(cases), divergences=tuple(divergences), warnings=tuple(warnings),
                   crashes=tuple(crashes), ends=tuple(ends))


def merge_dirs(dirs: Sequence[Path], out: Path) -> Path:
    """Concatenate the records of shard directories into OUT/results.jsonl
    (identical records once); the report loader de-duplicates and sorts.
    The JSON objects are copied as they are (keys sorted), not through the
    typed records, so that fields of another writer survive a merge."""
    seen: set[str] = set()
    lines: list[str] = []
    for d in dirs:
        path = d / RECORDS if d.is_dir() else d
        if not path.is_file():
            raise UsageError(f"{d}: no {RECORDS} (not the output directory of a run)")
        for rec in read_json_lines(path):
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
