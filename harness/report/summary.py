"""Per-entry verdicts and the summary: the table by configuration group
(plain text for summary.txt, rich for a terminal), the run's lines and the
harness errors.  Functions from RunData to text."""
from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Mapping, Sequence

from rich.markup import escape
from rich.table import Table

from reference.arch import Arch
from reference.config import S2Config

from ..qemu.boot import BatchStatus
from ..records import BatchRecord, CaseRecord, CaseStatus, DivergenceRecord
from .load import RunData


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
    return f"{what} (batch {batch} {b.status.value}{': ' + diag if diag else ''})"


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
            reasons[diag or (f"batch {b.status.value}, no diagnostic" if b else "no batch record")] += 1
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
    return [b for b in run.batches if b.status is BatchStatus.HARNESS_ERROR]


_COLUMNS = ("entries", "cases", "probes", "passed", "known", "new", "skipped", "timeouts",
            "crashes", "guest_errors")
_HEADINGS = ("entries", "cases", "probes", "passed", "known", "new", "skipped", "timeout",
             "crash", "guest err")


def _batch_counts(run: RunData) -> str:
    """'12 (11 completed, 1 timeout)'."""
    status = collections.Counter(b.status.value for b in run.batches)
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
        *_not_run_lines(run),
        f"qemu: {qemu}",
        f"batches: {_batch_counts(run)}",
        *_crash_lines(run),
    ]


def _not_run_lines(run: RunData) -> list[str]:
    """From the end records (docs/results.md): why the run stopped when it
    did not complete, the matrix entries that never ran and the cases not
    run, and how to run them."""
    if not run.ends:
        return []
    reasons = sorted({e.reason.value for e in run.ends})
    planned = sum(e.cases_planned for e in run.ends)
    ran = sum(e.cases_run for e in run.ends)
    never = {(n.entry, n.qemu): n.reason for e in run.ends for n in e.entries_not_run}
    if reasons == ["complete"] and not never:
        return []
    lines = [f"ended: {', '.join(reasons)}; {planned - ran} of {planned} cases not run"]
    if never:
        why = collections.Counter(never.values())
        lines.append(f"entries never run: {len(never)} ("
                     + "; ".join(f"{n} x {w}" for w, n in sorted(why.items())) + ")")
    if "budget" in reasons:
        lines.append("every entry runs its first case before any runs a second: a larger "
                     "--budget (or none) covers the rest; --resume continues this run")
    return lines


def _crash_lines(run: RunData) -> list[str]:
    """With crash records (crash-resume, docs/results.md): how many probes
    were judged and why the others were not, and one line per crash
    family (QEMU, signature)."""
    crashed = sum(c.crashed for c in run.cases)
    held = sum(c.held for c in run.cases)
    if not run.crashes and not crashed and not held:
        return []
    probes = sum(c.probes for c in run.cases)
    judged = sum(c.passed for c in run.cases) + sum(d.count for d in run.divergences
                                                    if d.kind.value == "probe")
    lines = [f"probes: {judged} of {probes} judged; QEMU died or hung on {crashed}, {held} held "
             "back (the reference predicts the outcome QEMU kept dying on), "
             f"{probes - judged - crashed - held} not run otherwise"]
    families: dict[tuple[str, str], list] = collections.defaultdict(list)
    for c in run.crashes:
        families[c.qemu, c.signature].append(c)
    for (label, signature), members in sorted(families.items()):
        file = next((c.case_file for c in members if c.case_file), None)
        state = "known: " + members[0].known if members[0].known else "new"
        lines.append(f"crash family{' on QEMU ' + label if label else ''}: {signature} "
                     f"({len(members)} probe(s), {state}"
                     + (f", case {file})" if file else ")"))
    return lines


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


def summary_rich(run: RunData) -> Table:
    """The summary table as a rich.table.Table (for a terminal)."""
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


