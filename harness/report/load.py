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
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..qemu.boot import BatchStatus, FailureKind
from ..records import (
    RECORDS,
    BatchRecord,
    CaseRecord,
    CrashRecord,
    DivergenceRecord,
    EndReason,
    EndRecord,
    InvalidRecord,
    ResultsVersionError,
    RunHeader,
    ShrinkRecord,
    parse_record,
    read_json_lines,
)

# Record types the loader knows; others are skipped and counted.  "crash"
# and "end" are read leniently here (CrashView, EndView): their writer
# (the run with crash-resume) defines them in docs/results.md.
_TYPES = ("run", "batch", "case", "divergence", "shrink", "crash", "end")


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
class CrashView:
    """A QEMU crash or hang pinned to one probe, as the reports show it:
    from a ``crash`` record, or from a crashed batch's isolation finding.
    ``signature``: the assertion or last console line with addresses and
    numbers normalised, and the signal; ``console_tail``: QEMU's last
    lines; ``case_file`` relative to ``base_dir`` (the run directory)."""

    arch: str
    cpu: str
    qemu: str
    batch: int | None
    key: str
    entry: str
    probe: int | None
    signature: str
    hang: bool
    reproduced: bool
    console_tail: tuple[str, ...]
    case_file: str | None
    base_dir: str
    known: str | None = None        # a baseline crash entry that matches


@dataclasses.dataclass(frozen=True)
class EndView:
    """The ``end`` record of a run: why it ended (``complete``,
    ``budget``, ``interrupted``), batches planned and run, and the matrix
    entries that never ran (names, or only their number when the record
    gives a number)."""

    reason: str
    batches_planned: int | None
    batches_run: int | None
    never_run: tuple[str, ...]
    never_run_count: int


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
    shrinks: tuple[ShrinkRecord, ...] = ()
    crashes: tuple[CrashView, ...] = ()
    ends: tuple[EndRecord, ...] = ()
    end: EndView | None = None
    qemus: tuple[tuple[str, str], ...] = ()     # (label, version) of the run header's ``qemus``


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


def record_qemu(rec: object) -> str:
    """The QEMU label a record names (a run over several QEMUs labels every
    batch, case, divergence and crash record); '' in a one-QEMU run."""
    label = getattr(rec, "qemu", None)
    return label if isinstance(label, str) else ""


def _identity(rec: BatchRecord | CaseRecord | DivergenceRecord | ShrinkRecord | CrashRecord
              | EndRecord) -> tuple[Any, ...]:
    """What makes two records the same record, whichever shard holds it.
    A batch runs once on every QEMU of a run: the QEMU label is part of
    every identity.  A memory divergence also names its descriptor: one
    probe's walk can read several descriptors that changed."""
    if isinstance(rec, EndRecord):
        return ("end", rec.shard)
    if isinstance(rec, ShrinkRecord):
        return ("shrink", rec.family, rec.case_file)
    if isinstance(rec, BatchRecord):
        return ("batch", rec.batch, rec.qemu)
    if isinstance(rec, CaseRecord):
        return ("case", rec.batch, rec.qemu, rec.key)
    if isinstance(rec, CrashRecord):
        return ("crash", rec.batch, rec.qemu, rec.key, rec.probe)
    return ("divergence", rec.batch, rec.qemu, rec.key, rec.probe, rec.kind.value,
            rec.raw_map.get("pa", ""))


_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\b\d+\b")


def crash_signature(text: str, signal_name: str | None = None) -> str:
    """A crash's signature: the assertion line, else the last non-empty
    console line, with addresses and numbers normalised, and the signal."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = next((ln for ln in lines if "Assertion" in ln or "assert" in ln), None)
    if line is None:
        line = lines[-1] if lines else "no output"
    line = _NUMBERS.sub("N", line)
    return f"{line} ({signal_name})" if signal_name else line


def crash_view(c: CrashRecord, base_dir: Path | None) -> CrashView:
    """A crash record as the reports show it."""
    how = (f"signal {c.signal}" if c.signal is not None else
           f"exit {c.returncode}" if c.returncode is not None else "")
    return CrashView(arch=c.arch, cpu=c.cpu, qemu=c.qemu or c.qemu_version, batch=c.batch,
                     key=c.key, entry=c.entry, probe=c.probe,
                     signature=c.signature or crash_signature(c.console, how or None),
                     hang=c.kind is FailureKind.HANG, reproduced=c.reproduced is not False,
                     console_tail=tuple(c.console.splitlines()[-20:]), case_file=c.case_file,
                     base_dir=str(base_dir or ""), known=c.known)


def _crash_from_batch(b: BatchRecord, cases: Sequence[CaseRecord], base_dir: str) -> CrashView | None:
    """The finding of a crashed or hung batch's isolation, as a crash view
    (runs without crash records); None when the batch has none."""
    iso = b.isolated
    if iso is None or b.status not in (BatchStatus.CRASHED, BatchStatus.TIMEOUT):
        return None
    entry = next((c.entry for c in cases if c.key == iso.key), "")
    hang = b.status is BatchStatus.TIMEOUT
    return CrashView(arch=b.arch, cpu=b.cpu, qemu=b.qemu or b.qemu_version, batch=b.batch,
                     key=iso.key or "", entry=entry, probe=iso.probe,
                     signature=("no end within the timeout" if hang
                                else crash_signature(b.diagnostic)),
                     hang=hang, reproduced=iso.reproduced,
                     console_tail=tuple(b.diagnostic.splitlines()[-20:]),
                     case_file=iso.case_file, base_dir=base_dir)


def end_view(ends: Sequence[EndRecord]) -> EndView | None:
    """The end records of the inputs (one per shard) as one: the first
    reason other than complete decides, counts add up, the entries that
    never ran are listed once."""
    if not ends:
        return None
    reason = next((e.reason.value for e in ends if e.reason is not EndReason.COMPLETE),
                  ends[0].reason.value)
    names = tuple(dict.fromkeys(f"{n.entry} on {n.qemu}: {n.reason}" if n.qemu
                                else f"{n.entry}: {n.reason}"
                                for e in ends for n in e.entries_not_run))
    return EndView(reason=reason, batches_planned=sum(e.batches_planned for e in ends),
                   batches_run=sum(e.batches_run for e in ends), never_run=names,
                   never_run_count=len(names))


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
                                         | ShrinkRecord | CrashRecord | EndRecord]] = {}
    warnings: list[str] = []
    qemus: dict[str, str] = {}
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
                for q in item.qemus:
                    qemus.setdefault(q.label, q.version)
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
    shrinks = sorted((i for i in items if isinstance(i, ShrinkRecord)),
                     key=lambda r: (r.case_file, r.probe if r.probe is not None else -1))
    origin = {id(item): Path(p).parent for p, item in chosen.values()}
    crash_records = sorted((i for i in items if isinstance(i, CrashRecord)),
                           key=lambda c: (c.batch, c.qemu, _key_order(c.key), c.probe or 0))
    crashes = [crash_view(c, origin.get(id(c))) for c in crash_records]
    if not crashes:
        # Runs without crash records: a crashed batch's isolation finding.
        for b in batches:
            view = _crash_from_batch(b, cases, str(origin.get(id(b), "")))
            if view is not None:
                crashes.append(view)
    ends = sorted((i for i in items if isinstance(i, EndRecord)), key=lambda e: e.shard or (0, 0))
    return RunData(info=_merge_run_info(runs, batches), batches=tuple(batches),
                   cases=tuple(cases), divergences=tuple(divergences), warnings=tuple(warnings),
                   shrinks=tuple(shrinks), crashes=tuple(crashes), ends=tuple(ends),
                   end=end_view(ends), qemus=tuple(qemus.items()))


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
        # Written beside, then renamed: an interrupted merge leaves the
        # old file or the new one, never half of one.
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise UsageError(f"--out: cannot write to {out} ({exc.strerror or exc})") from None
    return target
