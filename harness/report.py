"""Reports rebuilt from ``results.jsonl`` (docs/results.md): a plain-text
summary, JUnit XML for CI dashboards, and one self-contained HTML page
(docs/reports.md says how to read them).

``load_run`` reads one output directory or the directories of several
shards and merges them into one ``RunData``: the same records in the same
order whatever the sharding, so the reports of merged shards are
byte-identical to those of the unsharded run of the same seed.  Nothing in
a report depends on wall-clock time, host paths or the order of the shard
directories (JUnit ``time`` attributes are 0 unless asked for).

Everything here is a function from records to text; only ``write_*`` touch
the file system, and nothing prints.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import html
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping, Sequence

from reference.arch import Arch
from reference.config import S2Config

from .errors import UsageError
from .vocabulary import DivergenceKind, FamilyKey
from .vocabulary import family_key as vocabulary_family_key
from .run import RECORDS, read_records

RESULTS_VERSION = 1

# Individual divergences shown in the HTML report; the rest are counted.
MAX_HTML_DIVERGENCES = 200
# Case keys quoted per divergence family.
FAMILY_EXAMPLES = 3
# New divergences listed in one JUnit <failure> body.
MAX_JUNIT_DIVERGENCES = 50


class CaseStatus(enum.Enum):
    """``status`` of a case record (docs/results.md)."""

    PASS = "pass"
    DIVERGE = "diverge"
    TIMEOUT = "timeout"
    CRASH = "crash"
    GUEST_ERROR = "guest-error"
    NOT_RUN = "not-run"


class Verdict(enum.Enum):
    """The verdict on one matrix entry, aggregated over its cases.

    Declared most severe first: an entry takes the first that applies.
    NEW: a divergence not in the baseline.  ERROR: a case ended in a
    timeout, QEMU crash or guest error.  KNOWN: divergences, all in the
    baseline.  NOT_RUN: a case was not run (its batch stopped first).
    PASS: every case passed."""

    NEW = "new"
    ERROR = "error"
    KNOWN = "known"
    NOT_RUN = "not-run"
    PASS = "pass"

    @property
    def label(self) -> str:
        return {"error": "timeout/crash", "not-run": "not run"}.get(self.value, self.value)


_ERROR_STATUSES = (CaseStatus.TIMEOUT, CaseStatus.CRASH, CaseStatus.GUEST_ERROR)


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------

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
class BatchRecord:
    """One QEMU boot.  ``status`` is kept as written: besides the
    completed/guest-error/crashed/timeout of docs/results.md the runner
    writes ``harness-error`` (with the traceback as diagnostic) for a batch
    that failed inside the harness and has no case records."""

    batch: int
    arch: str
    cpu: str
    status: str
    images: int
    elapsed: float
    qemu_version: str
    diagnostic: str


@dataclasses.dataclass(frozen=True)
class CaseRecord:
    """One case; ``granule`` and ``ia_bits`` are decoded from ``vtcr``
    (granule None for the reserved TG0 encoding)."""

    key: str
    entry: str
    group: str
    arch: str
    cpu: str
    vtcr: str
    valid: bool
    kvm: bool
    batch: int
    status: CaseStatus
    probes: int
    passed: int
    diverged: int
    not_run: int
    granule: str | None
    ia_bits: int


@dataclasses.dataclass(frozen=True)
class Permitted:
    """One permitted outcome of the reference walk: result, rules, trace lines."""

    result: str
    rules: tuple[str, ...]
    trace: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DivergenceRecord:
    """One divergence.  ``known`` is the baseline entry id, None when new.
    ``case_file`` is relative to ``base_dir``, the directory of the
    results file it came from (not compared: the same divergence read
    from another copy of the run is the same divergence)."""

    kind: DivergenceKind
    key: str
    entry: str
    group: str
    batch: int
    probe: int | None
    ipa: str | None
    at: str | None
    aim: str
    arch: str
    cpu: str
    config: str
    vtcr: str
    vttbr: str
    expected: tuple[str, ...]
    permitted: tuple[Permitted, ...]
    observed: str
    observed_text: str
    raw: tuple[tuple[str, str], ...]
    qemu_version: str
    known: str | None
    case_file: str | None
    count: int = 1
    base_dir: Path | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def is_new(self) -> bool:
        return self.known is None

    def summary(self) -> str:
        """One line: where, expected vs observed."""
        where = self.key if self.probe is None else f"{self.key} probe {self.probe}"
        aim = f" ({self.aim})" if self.aim else ""
        return f"{where}{aim}: expected {' | '.join(self.expected)}, observed {self.observed}"


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


# ---------------------------------------------------------------------------
# Loading and merging
# ---------------------------------------------------------------------------

class _Invalid(Exception):
    """A record that does not follow docs/results.md; the message says why."""


def _int(rec: Mapping[str, Any], name: str) -> int:
    value = rec.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"'{name}' missing or not an integer")
    return value


def _str(rec: Mapping[str, Any], name: str) -> str:
    value = rec.get(name)
    if not isinstance(value, str):
        raise _Invalid(f"'{name}' missing or not a string")
    return value


def _bool(rec: Mapping[str, Any], name: str) -> bool:
    value = rec.get(name)
    if not isinstance(value, bool):
        raise _Invalid(f"'{name}' missing or not a boolean")
    return value


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _enum(cls: type[enum.Enum], rec: Mapping[str, Any], name: str):
    if name not in rec:
        raise _Invalid(f"'{name}' missing")
    try:
        return cls(rec[name])
    except (ValueError, TypeError):
        raise _Invalid(f"'{name}' is {rec[name]!r}, not one of "
                       f"{', '.join(str(m.value) for m in cls)}") from None


def _arch(rec: Mapping[str, Any]) -> Arch:
    return _enum(Arch, rec, "arch")


def _batch(rec: Mapping[str, Any]) -> BatchRecord:
    _arch(rec)
    elapsed = rec.get("elapsed")
    images = rec.get("images")
    return BatchRecord(batch=_int(rec, "batch"), arch=_str(rec, "arch"), cpu=_str(rec, "cpu"),
                       status=_str(rec, "status"),
                       images=images if isinstance(images, int) and not isinstance(images, bool) else 0,
                       elapsed=float(elapsed) if isinstance(elapsed, (int, float))
                       and not isinstance(elapsed, bool) else 0.0,
                       qemu_version=_text(rec.get("qemu_version")),
                       diagnostic=_text(rec.get("diagnostic")))


def _case(rec: Mapping[str, Any]) -> CaseRecord:
    arch = _arch(rec)
    vtcr = _str(rec, "vtcr")
    try:
        config = S2Config.from_vtcr(arch, int(vtcr, 16))
    except ValueError:
        raise _Invalid(f"'vtcr' is {vtcr!r}, not a hex number") from None
    granule = config.granule.label if config.granule else None
    kvm = rec.get("kvm")
    return CaseRecord(key=_str(rec, "key"), entry=_str(rec, "entry"), group=_str(rec, "group"),
                      arch=arch.value, cpu=_str(rec, "cpu"), vtcr=vtcr, valid=_bool(rec, "valid"),
                      kvm=kvm if isinstance(kvm, bool) else False, batch=_int(rec, "batch"),
                      status=_enum(CaseStatus, rec, "status"), probes=_int(rec, "probes"),
                      passed=_int(rec, "passed"), diverged=_int(rec, "diverged"),
                      not_run=_int(rec, "not_run"), granule=granule, ia_bits=config.ia_bits)


def _permitted(value: Any) -> tuple[Permitted, ...]:
    if not isinstance(value, list):
        return ()
    out = []
    for p in value:
        if isinstance(p, dict):
            out.append(Permitted(result=_text(p.get("result")),
                                 rules=tuple(str(r) for r in p.get("rules") or () if r is not None),
                                 trace=tuple(str(t) for t in p.get("trace") or () if t is not None)))
    return tuple(out)


def _count(rec: Mapping[str, Any]) -> int:
    """Probes a divergence record stands for (fan-out records aggregate)."""
    count = rec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise _Invalid("'count' is not a positive integer")
    return count


def _divergence(rec: Mapping[str, Any], base_dir: Path) -> DivergenceRecord:
    probe = rec.get("probe")
    if probe is not None and (isinstance(probe, bool) or not isinstance(probe, int)):
        raise _Invalid("'probe' is not an integer or null")
    expected = rec.get("expected")
    if not isinstance(expected, list) or not all(isinstance(e, str) for e in expected):
        raise _Invalid("'expected' missing or not a list of strings")
    raw = rec.get("raw")
    known = rec.get("known")
    if known is not None and not isinstance(known, str):
        raise _Invalid("'known' is not a string or null")
    return DivergenceRecord(
        kind=_enum(DivergenceKind, rec, "kind"), key=_str(rec, "key"), entry=_str(rec, "entry"),
        group=_str(rec, "group"), batch=_int(rec, "batch"), probe=probe,
        ipa=_opt_str(rec.get("ipa")), at=_opt_str(rec.get("at")), aim=_text(rec.get("aim")),
        arch=_arch(rec).value, cpu=_str(rec, "cpu"), config=_text(rec.get("config")),
        vtcr=_text(rec.get("vtcr")), vttbr=_text(rec.get("vttbr")),
        expected=tuple(expected), permitted=_permitted(rec.get("permitted")),
        observed=_str(rec, "observed"), observed_text=_text(rec.get("observed_text")),
        raw=tuple((str(k), str(v)) for k, v in raw.items()) if isinstance(raw, dict) else (),
        qemu_version=_text(rec.get("qemu_version")), known=known,
        count=_count(rec),
        case_file=_opt_str(rec.get("case_file")), base_dir=base_dir)


@dataclasses.dataclass(frozen=True)
class _RunRecord:
    seed: int
    cases_per_entry: int | None
    entries: int | None
    shard: tuple[int, int] | None
    batches: int | None
    qemu: tuple[tuple[str, str], ...]


def _run(rec: Mapping[str, Any], where: str) -> _RunRecord:
    version = rec.get("version")
    if version != RESULTS_VERSION:
        # A file-level mismatch: nothing in it can be trusted to mean what we think.
        raise UsageError(f"{where}: results version {version!r}, this s2diff reads version "
                         f"{RESULTS_VERSION}")
    shard = None
    text = rec.get("shard")
    if text is not None:
        m = re.fullmatch(r"(\d+)/(\d+)", str(text))
        if not m or not 1 <= int(m[1]) <= int(m[2]):
            raise _Invalid(f"'shard' is {text!r}, not K/N")
        shard = (int(m[1]), int(m[2]))
    qemu = rec.get("qemu")
    versions = tuple(sorted((str(a), str(v)) for a, v in qemu.items() if v)) \
        if isinstance(qemu, dict) else ()
    cpe, entries, batches = (rec.get(k) for k in ("cases_per_entry", "entries", "batches"))
    return _RunRecord(seed=_int(rec, "seed"),
                      cases_per_entry=cpe if isinstance(cpe, int) else None,
                      entries=entries if isinstance(entries, int) else None,
                      shard=shard, batches=batches if isinstance(batches, int) else None,
                      qemu=versions)


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
    """The test read_records applies to a line."""
    try:
        rec = json.loads(line.encode("utf-8", "surrogateescape"))
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, a number too long for int()
        return False
    return isinstance(rec, dict) and "type" in rec


def _read_file(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of one results file and the warnings about its lines."""
    try:
        records = list(read_records(path))
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


def _identity(rec: BatchRecord | CaseRecord | DivergenceRecord) -> tuple:
    """What makes two records the same record, whichever shard holds it.
    A memory divergence also names its descriptor: one probe's walk can
    read several descriptors that changed."""
    if isinstance(rec, BatchRecord):
        return ("batch", rec.batch)
    if isinstance(rec, CaseRecord):
        return ("case", rec.batch, rec.key)
    return ("divergence", rec.batch, rec.key, rec.probe, rec.kind.value, dict(rec.raw).get("pa", ""))


def _key_order(key: str) -> tuple[str, int, str]:
    """ENTRY#INDEX sorted by entry, then numerically by index."""
    entry, _, index = key.rpartition("#")
    return (entry, int(index), key) if index.isdigit() else (key, -1, key)


def _rank(path: str, rec: Any) -> tuple[str, str]:
    """Order between records of one identity: by content (repr leaves
    ``base_dir`` out), then by the file they came from."""
    return repr(rec), path


def _merge_run_info(runs: Sequence[tuple[str, _RunRecord]],
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
    planned = None if not plans or None in plans.values() else sum(plans.values())
    by_arch: dict[str, set[str]] = collections.defaultdict(set)
    for b in batches:
        if b.qemu_version:
            by_arch[b.arch].add(b.qemu_version)
    ran = set(by_arch)
    for _, r in runs:
        for arch, version in r.qemu:
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
    runs: list[tuple[str, _RunRecord]] = []
    chosen: dict[tuple, tuple[str, Any]] = {}
    warnings: list[str] = []
    for d in dirs:
        path = _results_path(Path(d))
        records, notes = _read_file(path)
        warnings += notes
        skipped: collections.Counter[str] = collections.Counter()
        for rec in records:
            rtype = rec.get("type")
            try:
                if rtype == "run":
                    runs.append((str(path), _run(rec, str(path))))
                    continue
                if rtype == "batch":
                    item: Any = _batch(rec)
                elif rtype == "case":
                    item = _case(rec)
                elif rtype == "divergence":
                    item = _divergence(rec, path.parent)
                else:
                    skipped[f"unknown type {rtype!r}"] += 1
                    continue
            except _Invalid as why:
                skipped[f"{rtype} record: {why}"] += 1
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
    batches = sorted((i for i in items if isinstance(i, BatchRecord)), key=lambda b: b.batch)
    cases = sorted((i for i in items if isinstance(i, CaseRecord)),
                   key=lambda c: (c.batch, _key_order(c.key)))
    divergences = sorted(
        (i for i in items if isinstance(i, DivergenceRecord)),
        key=lambda v: (v.batch, _key_order(v.key), -1 if v.probe is None else v.probe,
                       v.kind.value, dict(v.raw).get("pa", "")))
    return RunData(info=_merge_run_info(runs, batches), batches=tuple(batches),
                   cases=tuple(cases), divergences=tuple(divergences), warnings=tuple(warnings))


# ---------------------------------------------------------------------------
# Per-entry verdicts and the summary
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EntryResult:
    """One configuration entry of the matrix with its cases and divergences.
    ``reason`` explains an ERROR or NOT_RUN verdict (batch diagnostic)."""

    entry: str
    group: str
    arch: str
    cpu: str
    valid: bool
    granule: str | None
    ia_bits: int
    verdict: Verdict
    reason: str
    cases: tuple[CaseRecord, ...]
    divergences: tuple[DivergenceRecord, ...]

    @property
    def new(self) -> tuple[DivergenceRecord, ...]:
        return tuple(d for d in self.divergences if d.is_new)

    @property
    def geometry(self) -> str:
        """Granule and IPA size, e.g. '4k/40'."""
        return f"{self.granule or 'TG0 reserved'}/{self.ia_bits}"


def _first_line(text: str, limit: int = 160) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    # A Python traceback says what happened on its last line.
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _batch_reason(batches: Mapping[int, BatchRecord], batch: int, what: str) -> str:
    b = batches.get(batch)
    if b is None:
        return f"{what} (batch {batch}: no batch record)"
    diag = _first_line(b.diagnostic)
    return f"{what} (batch {batch} {b.status}{': ' + diag if diag else ''})"


def entry_results(run: RunData) -> list[EntryResult]:
    """Every entry that has records, sorted by (group, entry)."""
    cases: dict[str, list[CaseRecord]] = collections.defaultdict(list)
    divs: dict[str, list[DivergenceRecord]] = collections.defaultdict(list)
    for c in run.cases:
        cases[c.entry].append(c)
    for d in run.divergences:
        divs[d.entry].append(d)
    batches = {b.batch: b for b in run.batches}
    out = []
    for name in set(cases) | set(divs):
        cs, ds = cases.get(name, []), divs.get(name, [])
        errors = [c for c in cs if c.status in _ERROR_STATUSES]
        not_run = [c for c in cs if c.status is CaseStatus.NOT_RUN]
        reason = ""
        if any(d.is_new for d in ds):
            verdict = Verdict.NEW
        elif errors:
            verdict = Verdict.ERROR
            reason = _batch_reason(batches, errors[0].batch, f"{errors[0].key}: {errors[0].status.value}")
        elif ds:
            verdict = Verdict.KNOWN
        elif not_run:
            verdict = Verdict.NOT_RUN
            reason = _batch_reason(batches, not_run[0].batch,
                                   f"{len(not_run)} of {len(cs)} case(s) not run")
        else:
            verdict = Verdict.PASS
        first = cs[0] if cs else None
        if first is not None:
            arch, cpu, group, valid = first.arch, first.cpu, first.group, first.valid
            granule, ia_bits = first.granule, first.ia_bits
        else:
            d = ds[0]
            arch, cpu, group, valid = d.arch, d.cpu, d.group, True
            try:
                config = S2Config.from_vtcr(Arch(d.arch), int(d.vtcr, 16))
                granule = config.granule.label if config.granule else None
                ia_bits = config.ia_bits
            except ValueError:
                granule, ia_bits = None, 0
        out.append(EntryResult(entry=name, group=group, arch=arch, cpu=cpu, valid=valid,
                               granule=granule, ia_bits=ia_bits, verdict=verdict, reason=reason,
                               cases=tuple(cs), divergences=tuple(ds)))
    out.sort(key=lambda e: (e.group, e.entry))
    return out


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    """Counts for one configuration group (or the totals, ``total`` true).

    Units differ by column: ``entries`` and ``verdicts`` count matrix
    entries; ``cases``, ``skipped``, ``timeouts``, ``crashes`` and
    ``guest_errors`` count cases (by case status); ``probes`` and
    ``passed`` count probes; ``known`` and ``new`` count diverging probes
    (a fan-out record stands for ``count`` of them) and descriptor words
    written against the reference, so that probes = passed + known + new
    + not run, up to those descriptor words.  ``skip_reasons`` pairs a batch diagnostic with the number of
    cases not run for it."""

    group: str
    entries: int
    cases: int
    probes: int
    passed: int
    known: int
    new: int
    skipped: int
    timeouts: int
    crashes: int
    guest_errors: int
    skip_reasons: tuple[tuple[str, int], ...]
    verdicts: tuple[tuple[Verdict, int], ...]
    total: bool = False

    def verdict_count(self, verdict: Verdict) -> int:
        return dict(self.verdicts).get(verdict, 0)


def _row(run: RunData, group: str, entries: Sequence[EntryResult], total: bool) -> SummaryRow:
    cases = [c for e in entries for c in e.cases]
    divs = [d for e in entries for d in e.divergences]
    reasons: collections.Counter[str] = collections.Counter()
    batches = {b.batch: b for b in run.batches}
    for c in cases:
        if c.status is CaseStatus.NOT_RUN:
            b = batches.get(c.batch)
            diag = _first_line(b.diagnostic) if b else ""
            reasons[diag or (f"batch {b.status}, no diagnostic" if b else "no batch record")] += 1
    status = collections.Counter(c.status for c in cases)
    verdicts = collections.Counter(e.verdict for e in entries)
    return SummaryRow(group=group, entries=len(entries), cases=len(cases),
                      probes=sum(c.probes for c in cases), passed=sum(c.passed for c in cases),
                      known=sum(d.count for d in divs if not d.is_new),
                      new=sum(d.count for d in divs if d.is_new),
                      skipped=status[CaseStatus.NOT_RUN], timeouts=status[CaseStatus.TIMEOUT],
                      crashes=status[CaseStatus.CRASH], guest_errors=status[CaseStatus.GUEST_ERROR],
                      skip_reasons=tuple(sorted(reasons.items())),
                      verdicts=tuple((v, verdicts[v]) for v in Verdict), total=total)


def summary_table(run: RunData) -> list[SummaryRow]:
    """One row per configuration group (sorted by name), then the totals."""
    entries = entry_results(run)
    by_group: dict[str, list[EntryResult]] = collections.defaultdict(list)
    for e in entries:
        by_group[e.group].append(e)
    rows = [_row(run, g, by_group[g], False) for g in sorted(by_group)]
    rows.append(_row(run, "total", entries, True))
    return rows


def harness_errors(run: RunData) -> list[BatchRecord]:
    """Batches that failed inside the harness (no case records exist for them)."""
    return [b for b in run.batches if b.status == "harness-error"]


_COLUMNS = ("entries", "cases", "probes", "passed", "known", "new", "skipped", "timeouts",
            "crashes", "guest_errors")
_HEADINGS = ("entries", "cases", "probes", "passed", "known", "new", "skipped", "timeout",
             "crash", "guest err")


def _batch_counts(run: RunData) -> str:
    """'12 (11 completed, 1 timeout)'."""
    status = collections.Counter(b.status for b in run.batches)
    detail = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
    return f"{len(run.batches)} ({detail})" if detail else "0"


def _run_lines(run: RunData) -> list[str]:
    info = run.info
    qemu = "; ".join(f"{a} {v}" for a, v in info.qemu) or "unknown"
    return [
        f"seed {info.seed if info.seed is not None else 'unknown'}, "
        f"{info.cases_per_entry if info.cases_per_entry is not None else '?'} cases per entry, "
        f"matrix of {info.entries if info.entries is not None else '?'} entries",
        f"coverage: {info.coverage}",
        f"qemu: {qemu}",
        f"batches: {_batch_counts(run)}",
    ]


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "~"


def render_summary(run: RunData, width: int = 132) -> str:
    """The summary as aligned plain text: run information, one line per
    group and the totals, entry verdicts, skip reasons and harness errors.
    The group column is shortened (ending in '~') to keep lines within
    ``width`` characters where the numbers allow."""
    rows = summary_table(run)
    cells = [[str(getattr(r, c)) for c in _COLUMNS] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(_HEADINGS)]
    numbers = sum(w + 2 for w in widths)
    group_w = max([len("group")] + [len(r.group) for r in rows])
    group_w = max(min(group_w, width - numbers), 12)

    def line(first: str, values: Sequence[str]) -> str:
        return (_truncate(first, group_w).ljust(group_w)
                + "".join("  " + v.rjust(w) for v, w in zip(values, widths))).rstrip()

    heading = line("group", _HEADINGS)
    rule = "-" * len(heading)
    out = ["s2diff summary", *_run_lines(run), "", heading, rule]
    for r, c in zip(rows, cells):
        if r.total:
            out.append(rule)
        out.append(line(r.group, c))
    total = rows[-1]
    out.append("")
    out.append("entries: " + ", ".join(f"{n} {v.label}" for v, n in total.verdicts))
    if total.skip_reasons:
        out.append("")
        out.append("not run:")
        for row in rows[:-1]:
            for reason, n in row.skip_reasons:
                out.append(f"  {row.group}: {n} case(s): {reason}")
    errors = harness_errors(run)
    if errors:
        out.append("")
        out.append("harness errors (batches without case records):")
        for b in errors:
            out.append(f"  batch {b.batch} ({b.arch} {b.cpu}, {b.images} images): "
                       f"{_first_line(b.diagnostic)}")
    return "\n".join(out) + "\n"


def summary_rich(run: RunData):
    """The summary table as a rich.table.Table (for a terminal)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"s2diff summary, seed {run.info.seed}, {run.info.coverage}")
    table.add_column("group")
    for h in _HEADINGS:
        table.add_column(h, justify="right")
    styles = {"new": "bold red", "known": "yellow", "timeouts": "magenta", "crashes": "magenta",
              "guest_errors": "magenta", "skipped": "dim"}
    rows = summary_table(run)
    for i, r in enumerate(rows):
        values = []
        for c in _COLUMNS:
            v = getattr(r, c)
            style = styles.get(c) if v else None
            values.append(f"[{style}]{v}[/]" if style else str(v))
        table.add_row(f"[bold]{escape(r.group)}[/]" if r.total else escape(r.group), *values,
                      end_section=i == len(rows) - 2)
    return table


# ---------------------------------------------------------------------------
# Divergence families
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Family:
    """Divergences of one kind of disagreement: same arch, kind, permitted
    outcome labels, observed label and aim (without level and values).
    ``cpus`` lists the CPU models it occurs on; ``examples`` the first
    case keys (in run order); ``known_ids`` the baseline entries matched."""

    arch: str
    kind: str
    expected: tuple[str, ...]
    observed: str
    aim: str
    cpus: tuple[str, ...]
    count: int
    new: int
    known_ids: tuple[str, ...]
    examples: tuple[str, ...]

    def describe(self) -> str:
        return f"expected {' | '.join(self.expected)}, observed {self.observed}"


def family_key(d: DivergenceRecord) -> FamilyKey:
    """The family of a divergence (harness.vocabulary.family_key)."""
    return vocabulary_family_key(d.arch, d.kind, d.expected, d.observed, d.aim, dict(d.raw))


def divergence_families(run: RunData, examples: int = FAMILY_EXAMPLES) -> list[Family]:
    """Divergences grouped by :func:`family_key`; families with new
    divergences first, then by size, then by key."""
    groups: dict[FamilyKey, list[DivergenceRecord]] = collections.defaultdict(list)
    for d in run.divergences:
        groups[family_key(d)].append(d)
    out = []
    for key, ds in groups.items():
        arch, kind, expected, observed, aim = (key.arch, key.kind, key.expected, key.observed,
                                               key.aim)
        keys = list(dict.fromkeys(d.key for d in ds))
        out.append(Family(arch=arch, kind=kind, expected=expected, observed=observed, aim=aim,
                          cpus=tuple(sorted({d.cpu for d in ds})),
                          count=sum(d.count for d in ds),
                          new=sum(d.count for d in ds if d.is_new),
                          known_ids=tuple(sorted({d.known for d in ds if d.known})),
                          examples=tuple(keys[:examples])))
    out.sort(key=lambda f: (f.new == 0, -f.count, f.arch, f.kind, f.expected, f.observed, f.aim))
    return out


def render_families(run: RunData) -> str:
    """The divergence families as plain text, one block per family."""
    families = divergence_families(run)
    if not families:
        return "divergence families: none\n"
    out = [f"divergence families ({len(families)}, {sum(d.count for d in run.divergences)} diverging "
           f"probes and descriptor writes in {len(run.divergences)} records):"]
    for f in families:
        known = f"{f.count - f.new} known ({', '.join(f.known_ids)})" if f.count > f.new else ""
        counts = ", ".join(x for x in (f"{f.new} new" if f.new else "", known) if x)
        out += ["", f"{f.count:>5}  {f.arch} {f.kind}, aim: {f.aim or '-'}  [{counts}]",
                f"       expected: {' | '.join(f.expected)}",
                f"       observed: {f.observed}",
                f"       cpus: {', '.join(f.cpus)}"]
        out += [f"       {'e.g.' if i == 0 else '    '} {key}" for i, key in enumerate(f.examples)]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# JUnit XML
# ---------------------------------------------------------------------------

def _case_seconds(run: RunData) -> dict[str, float]:
    """Seconds per case key: its batch's elapsed time shared equally by
    the batch's images."""
    per_image = {b.batch: b.elapsed / b.images for b in run.batches if b.images}
    return {c.key: per_image.get(c.batch, 0.0) for c in run.cases}


def junit_tree(run: RunData, timings: bool = False) -> ET.ElementTree:
    """The JUnit document: <testsuites> with one <testsuite> per group and
    one <testcase> per entry (classname = group, name = entry).  An entry
    with new divergences has a <failure>; a timeout, crash or guest error
    an <error>; an entry not (fully) run is <skipped>.  Known divergences
    are listed in <system-out>.  Harness errors form a suite of their own.
    ``timings``: fill ``time`` from batch elapsed times (otherwise 0, so
    that the file depends only on the results)."""
    seconds = _case_seconds(run) if timings else {}
    root = ET.Element("testsuites", name="s2diff")
    by_group: dict[str, list[EntryResult]] = collections.defaultdict(list)
    for e in entry_results(run):
        by_group[e.group].append(e)
    suites: list[tuple[str, list[tuple[str, float, ET.Element | None, str]]]] = []
    for group in sorted(by_group):
        cases = []
        for e in by_group[group]:
            t = sum(seconds.get(c.key, 0.0) for c in e.cases)
            outcome = None
            if e.verdict is Verdict.NEW:
                new = e.new
                outcome = ET.Element("failure", message=new[0].summary(), type="new divergence")
                lines = [d.summary() for d in new[:MAX_JUNIT_DIVERGENCES]]
                if len(new) > MAX_JUNIT_DIVERGENCES:
                    lines.append(f"... {len(new) - MAX_JUNIT_DIVERGENCES} more")
                files = sorted({d.case_file for d in new if d.case_file})
                outcome.text = "\n".join([f"{len(new)} new divergence(s)", *lines,
                                          *(f"case file: {f}" for f in files)])
            elif e.verdict is Verdict.ERROR:
                status = next(c.status for c in e.cases if c.status in _ERROR_STATUSES)
                outcome = ET.Element("error", message=e.reason, type=status.value)
            elif e.verdict is Verdict.NOT_RUN:
                outcome = ET.Element("skipped", message=e.reason)
            known = [d.summary() + f" [known: {d.known}]" for d in e.divergences if not d.is_new]
            cases.append((e.entry, t, outcome, "\n".join(known)))
        suites.append((group, cases))
    errors = harness_errors(run)
    if errors:
        cases = []
        for b in errors:
            el = ET.Element("error", message=f"harness error: {_first_line(b.diagnostic)}",
                            type="harness-error")
            el.text = b.diagnostic
            cases.append((f"batch {b.batch} ({b.arch} {b.cpu})", b.elapsed if timings else 0.0,
                          el, ""))
        suites.append(("harness errors", cases))
    all_kinds: collections.Counter[str] = collections.Counter()
    tests, seconds_total = 0, 0.0
    for name, cases in suites:
        kinds = collections.Counter(o.tag for _, _, o, _ in cases if o is not None)
        t_suite = sum(t for _, t, _, _ in cases)
        suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(cases)),
                              failures=str(kinds["failure"]), errors=str(kinds["error"]),
                              skipped=str(kinds["skipped"]), time=f"{t_suite:.3f}")
        for entry, t, outcome, out in cases:
            tc = ET.SubElement(suite, "testcase", classname=name, name=entry, time=f"{t:.3f}")
            if outcome is not None:
                tc.append(outcome)
            if out:
                ET.SubElement(tc, "system-out").text = out
        all_kinds.update(kinds)
        tests += len(cases)
        seconds_total += t_suite
    root.set("tests", str(tests))
    root.set("failures", str(all_kinds["failure"]))
    root.set("errors", str(all_kinds["error"]))
    root.set("skipped", str(all_kinds["skipped"]))
    root.set("time", f"{seconds_total:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(run: RunData, path: Path | str, timings: bool = False) -> Path:
    """Write :func:`junit_tree` to ``path`` (UTF-8, with XML declaration)."""
    p = Path(path)
    text = ET.tostring(junit_tree(run, timings).getroot(), encoding="unicode")
    # A lone surrogate (an undecodable byte json.dumps escaped in a record)
    # has no UTF-8 form: it is written as a backslash escape.
    p.write_text("<?xml version='1.0' encoding='utf-8'?>\n" + text, encoding="utf-8",
                 errors="backslashreplace")
    return p


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{margin:0 0 .3em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:bold}
.grid td{padding:1px 2px;white-space:nowrap}.grid th{font-weight:normal;font-size:12px}
.s{display:inline-block;min-width:1.2em;text-align:center;border-radius:3px;margin:1px;
color:#fff;font:bold 11px/1.5 monospace}
.pass{background:#2e7d32}.known{background:#e6a100}.new{background:#c62828}
.error{background:#6a1b9a}.not-run{background:#9e9e9e}
pre{margin:0;white-space:pre-wrap;font:12px/1.35 monospace}
.div{border:1px solid #ccc;border-left:6px solid #c62828;margin:1em 0;padding:.3em .8em}
.div.known-d{border-left-color:#e6a100}
.div h3{margin:.2em 0;font-size:15px}
.side{width:100%}.side td{width:50%}
.meta{color:#555;font-size:13px}
"""

_GLYPH = {Verdict.PASS: "&#10003;", Verdict.KNOWN: "K", Verdict.NEW: "N",
          Verdict.ERROR: "!", Verdict.NOT_RUN: "&#183;"}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _chip(e: EntryResult) -> str:
    n_new, n_div = len(e.new), len(e.divergences)
    detail = e.verdict.label
    if n_div:
        detail += f", {n_new} new / {n_div - n_new} known divergence(s)"
    if e.reason:
        detail += f": {e.reason}"
    return (f'<span class="s {e.verdict.value}" title="{_e(e.entry + " - " + detail)}">'
            f"{_GLYPH[e.verdict]}</span>")


def _summary_html(run: RunData) -> str:
    rows = summary_table(run)
    head = "".join(f"<th>{_e(h)}</th>" for h in ("group", *_HEADINGS))
    body = []
    for r in rows:
        cls = ' class="total"' if r.total else ""
        cells = "".join(f'<td class="n">{getattr(r, c)}</td>' for c in _COLUMNS)
        body.append(f"<tr{cls}><td>{_e(r.group)}</td>{cells}</tr>")
    out = [f"<table><tr>{head}</tr>{''.join(body)}</table>"]
    total = rows[-1]
    out.append("<p>Entries: " + ", ".join(
        f'<span class="s {v.value}">{_GLYPH[v]}</span> {n} {_e(v.label)}' for v, n in total.verdicts)
        + "</p>")
    reasons = [(r.group, reason, n) for r in rows[:-1] for reason, n in r.skip_reasons]
    if reasons:
        out.append("<p>Not run:</p><ul>" + "".join(
            f"<li>{_e(g)}: {n} case(s): {_e(reason)}</li>" for g, reason, n in reasons) + "</ul>")
    errors = harness_errors(run)
    if errors:
        out.append("<p>Harness errors (batches without case records):</p><ul>" + "".join(
            f"<li>batch {b.batch} ({_e(b.arch)} {_e(b.cpu)}, {b.images} images)<pre>"
            f"{_e(b.diagnostic)}</pre></li>" for b in errors) + "</ul>")
    return "\n".join(out)


def _grouped_invalid(entries: Sequence[EntryResult]) -> set[str]:
    """Groups shown as configuration families rather than in the geometry
    grid: those with at least one invalid entry."""
    return {e.group for e in entries if not e.valid}


def _grid_html(entries: Sequence[EntryResult]) -> str:
    family_groups = _grouped_invalid(entries)
    out = []
    for arch in sorted({e.arch for e in entries if e.group not in family_groups}):
        mine = [e for e in entries if e.arch == arch and e.group not in family_groups]
        cols = sorted({(e.granule or "", e.ia_bits) for e in mine},
                      key=lambda c: (len(c[0]), c[0], c[1]))
        rows = sorted({e.cpu for e in mine})
        cell: dict[tuple[str, str, int], list[EntryResult]] = collections.defaultdict(list)
        for e in mine:
            cell[(e.cpu, e.granule or "", e.ia_bits)].append(e)
        granules = list(dict.fromkeys(g for g, _ in cols))
        head1 = "".join(f'<th colspan="{sum(1 for c in cols if c[0] == g)}">{_e(g or "?")}</th>'
                        for g in granules)
        head2 = "".join(f"<th>{bits}</th>" for _, bits in cols)
        body = []
        for cpu in rows:
            tds = "".join("<td>" + "".join(_chip(e) for e in sorted(cell[(cpu, g, b)],
                                                                    key=lambda e: e.entry))
                          + "</td>" for g, b in cols)
            body.append(f"<tr><th>{_e(cpu)}</th>{tds}</tr>")
        out.append(f"<h3>{_e(arch)}: CPU model x granule / IPA bits</h3>"
                   f'<table class="grid"><tr><th rowspan="2">CPU</th>{head1}</tr>'
                   f"<tr>{head2}</tr>{''.join(body)}</table>")
    fam = [e for e in entries if e.group in family_groups]
    if fam:
        body = []
        for group in sorted({e.group for e in fam}):
            items = "<br>".join(f"{_chip(e)} {_e(e.entry)}"
                                + ("" if e.valid else " <span class=\"meta\">(invalid)</span>")
                                for e in sorted((e for e in fam if e.group == group),
                                                key=lambda e: (e.arch, e.cpu, e.entry)))
            body.append(f"<tr><td>{_e(group)}</td><td>{items}</td></tr>")
        out.append("<h3>Configuration families (groups with invalid configurations)</h3>"
                   f"<table><tr><th>family</th><th>entries</th></tr>{''.join(body)}</table>")
    return "\n".join(out)


def _families_html(run: RunData, anchors: Mapping[str, str]) -> str:
    families = divergence_families(run)
    if not families:
        return "<p>No divergences.</p>"
    rows = []
    for f in families:
        examples = ", ".join(
            f'<a href="#{anchors[k]}">{_e(k)}</a>' if k in anchors else _e(k) for k in f.examples)
        known = f" ({_e(', '.join(f.known_ids))})" if f.known_ids else ""
        rows.append(f"<tr><td class=\"n\">{f.count}</td><td class=\"n\">{f.new}</td>"
                    f"<td class=\"n\">{f.count - f.new}{known}</td><td>{_e(f.arch)}</td>"
                    f"<td>{_e(f.kind)}</td><td>{_e(' | '.join(f.expected))}</td>"
                    f"<td>{_e(f.observed)}</td><td>{_e(f.aim)}</td>"
                    f"<td>{_e(', '.join(f.cpus))}</td><td>{examples}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("count", "new", "known", "arch", "kind", "expected",
                                             "observed", "aim", "CPU models", "examples"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _link(d: DivergenceRecord, report_dir: Path) -> str:
    if not d.case_file:
        return ""
    target = Path(d.case_file)
    if d.base_dir is not None and not target.is_absolute():
        target = Path(os.path.relpath(d.base_dir / target, report_dir))
    return f'<p>Case file: <a href="{_e(target.as_posix())}">{_e(d.case_file)}</a></p>'


def _divergence_html(d: DivergenceRecord, anchor: str, report_dir: Path) -> str:
    status = "new" if d.is_new else f"known: {d.known}"
    meta = [f"{_e(d.arch)} {_e(d.cpu)}", f"batch {d.batch}", f"{_e(d.kind.value)} divergence"]
    if d.ipa is not None:
        meta.append(f"IPA {_e(d.ipa)}")
    if d.at:
        meta.append(_e(d.at))
    if d.aim:
        meta.append(f"aim: {_e(d.aim)}")
    ref = []
    for i, p in enumerate(d.permitted):
        rules = "; ".join(p.rules)
        ref.append(f"<p><b>{i + 1}. {_e(p.result)}</b><br><span class=\"meta\">rules: "
                   f"{_e(rules or '-')}</span></p><pre>{_e(chr(10).join(p.trace))}</pre>")
    if not ref:
        ref.append(f"<p>{_e(' | '.join(d.expected))}</p>")
    raw = "\n".join(f"{k:<6} {v}" for k, v in d.raw)
    obs = (f"<p><b>{_e(d.observed)}</b></p><pre>{_e(d.observed_text)}</pre>"
           f"<pre>{_e(raw)}</pre><p class=\"meta\">QEMU {_e(d.qemu_version or '?')}</p>")
    cls = "div" if d.is_new else "div known-d"
    return (f'<section class="{cls}" id="{anchor}"><h3>{_e(d.key)}'
            f"{'' if d.probe is None else ' probe ' + str(d.probe)} &mdash; {_e(status)}</h3>"
            f'<p class="meta">{" &middot; ".join(meta)}</p>'
            f'<p class="meta">{_e(d.config)} &middot; VTTBR {_e(d.vttbr)}</p>'
            f"<p>expected {_e(' | '.join(d.expected))}, observed {_e(d.observed)}</p>"
            f'<table class="side"><tr><th>reference: permitted outcomes</th>'
            f"<th>observed</th></tr><tr><td>{''.join(ref)}</td><td>{obs}</td></tr></table>"
            f"{_link(d, report_dir)}</section>")


def render_html(run: RunData, report_dir: Path | str = ".",
                max_divergences: int = MAX_HTML_DIVERGENCES) -> str:
    """The HTML report as one string.  ``report_dir`` is where the file
    will live (case-file links are relative to it).  At most
    ``max_divergences`` divergences are shown in full, new ones first."""
    report_dir = Path(report_dir)
    entries = entry_results(run)
    ordered = [d for d in run.divergences if d.is_new] + [d for d in run.divergences if not d.is_new]
    shown = ordered[:max_divergences]
    anchors: dict[str, str] = {}
    for i, d in enumerate(shown):
        anchors.setdefault(d.key, f"d{i}")
    total = summary_table(run)[-1]
    info = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in (
        ("seed", run.info.seed if run.info.seed is not None else "unknown"),
        ("cases per entry", run.info.cases_per_entry if run.info.cases_per_entry is not None
         else "?"),
        ("matrix entries", run.info.entries if run.info.entries is not None else "?"),
        ("coverage", run.info.coverage),
        ("QEMU", "; ".join(f"{a} {v}" for a, v in run.info.qemu) or "unknown"),
        ("batches", _batch_counts(run)),
        ("results", f"{total.entries} entries, {total.cases} cases, {total.probes} probes, "
                    f"{total.new} new and {total.known} known divergences"),
    ))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>s2diff report, seed {_e(run.info.seed)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>s2diff report</h1>",
        f"<table>{info}</table>",
        "<h2>Summary</h2>", _summary_html(run),
        "<h2>Configuration matrix</h2>",
        "<p>Legend: " + " ".join(f'<span class="s {v.value}">{_GLYPH[v]}</span> {_e(v.label)}'
                                 for v in Verdict)
        + ". One mark per matrix entry; hover for its name and details.</p>",
        _grid_html(entries),
        "<h2>Divergence families</h2>", _families_html(run, anchors),
        f"<h2>Divergences ({sum(1 for d in ordered if d.is_new)} new, "
        f"{sum(1 for d in ordered if not d.is_new)} known)</h2>",
    ]
    parts += [_divergence_html(d, f"d{i}", report_dir) for i, d in enumerate(shown)]
    if len(ordered) > len(shown):
        parts.append(f"<p>{len(ordered) - len(shown)} more divergence(s) not shown; "
                     "all are in results.jsonl.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(run: RunData, path: Path | str, max_divergences: int = MAX_HTML_DIVERGENCES) -> Path:
    """Write the self-contained HTML report to ``path``."""
    p = Path(path)
    p.write_text(render_html(run, p.parent, max_divergences), encoding="utf-8",
                 errors="backslashreplace")
    return p


def render_text(run: RunData, width: int = 132) -> str:
    """summary.txt: the summary followed by the divergence families."""
    return render_summary(run, width) + "\n" + render_families(run)


def write_reports(run: RunData, out_dir: Path | str, timings: bool = False) -> dict[str, Path]:
    """Write summary.txt, junit.xml and report.html into ``out_dir``
    (created if needed); returns {"summary": ..., "junit": ..., "html": ...}."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        summary = out / "summary.txt"
        summary.write_text(render_text(run), encoding="utf-8", errors="backslashreplace")
        return {"summary": summary,
                "junit": write_junit(run, out / "junit.xml", timings),
                "html": write_html(run, out / "report.html")}
    except OSError as exc:
        raise UsageError(f"cannot write reports to {out} ({exc.strerror or exc})") from None
