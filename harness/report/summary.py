"""Per-entry verdicts and the summary: the table by configuration group
(plain text within 80 columns, for summary.txt and the terminal alike),
the run's lines and the harness errors.  Functions from RunData to text."""
from __future__ import annotations

import collections
import dataclasses
import enum
import re
import textwrap
from collections.abc import Mapping, Sequence

from reference.arch import Arch
from reference.config import S2Config

from ..qemu.boot import BatchStatus
from ..records import BatchRecord, CaseRecord, CaseStatus, DivergenceRecord, crash_family_state
from ..vocabulary import DivergenceKind
from .load import RunData, record_qemu


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
    qemu: str = ""      # the QEMU label in a run over several QEMUs

    @property
    def anchor(self) -> str:
        """A stable HTML id for this entry (and QEMU)."""
        text = f"{self.entry}@{self.qemu}" if self.qemu else self.entry
        return "e-" + re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")

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
    cases: dict[tuple[str, str], list[CaseRecord]] = collections.defaultdict(list)
    divs: dict[tuple[str, str], list[DivergenceRecord]] = collections.defaultdict(list)
    for c in run.cases:
        cases[(c.entry, record_qemu(c))].append(c)
    for d in run.divergences:
        divs[(d.entry, record_qemu(d))].append(d)
    batches = {(record_qemu(b), b.batch): b for b in run.batches}
    out = []
    for name, qemu in set(cases) | set(divs):
        key = (name, qemu)
        cs, ds = cases.get(key, []), divs.get(key, [])
        mine = {n: b for (q, n), b in batches.items() if q == qemu}
        errors = [c for c in cs if c.status in _ERROR_STATUSES]
        not_run = [c for c in cs if c.status is CaseStatus.NOT_RUN]
        reason = ""
        if any(d.is_new for d in ds):
            verdict = Verdict.NEW
        elif errors:
            verdict = Verdict.ERROR
            reason = _batch_reason(mine, errors[0].batch, f"{errors[0].key}: {errors[0].status.value}")
        elif ds:
            verdict = Verdict.KNOWN
        elif not_run:
            verdict = Verdict.NOT_RUN
            reason = _batch_reason(mine, not_run[0].batch,
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
                               cases=tuple(cs), divergences=tuple(ds), qemu=qemu))
    out.sort(key=lambda e: (e.group, e.entry, e.qemu))
    return out


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    """Counts for one configuration group (or the totals, ``total`` true).

    Units differ by column, and the headings name them: ``entries`` and
    ``verdicts`` count matrix entries; ``cases``, ``skipped``,
    ``timeouts``, ``crashes`` and ``guest_errors`` count cases (by case
    status); ``probes``, ``passed``, ``known``, ``new`` and ``not_run``
    count probes (a fan-out record stands for ``count`` of them), so that
    passed + known + new + not_run = probes; ``writes_known`` and
    ``writes_new`` count descriptor words written against the reference
    (memory divergences), apart.  ``skip_reasons`` pairs a batch
    diagnostic with the number of cases not run for it."""

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
    not_run: int = 0
    writes_known: int = 0
    writes_new: int = 0

    def verdict_count(self, verdict: Verdict) -> int:
        return dict(self.verdicts).get(verdict, 0)

    @property
    def failed(self) -> int:
        """Cases that timed out, crashed QEMU or stopped the guest."""
        return self.timeouts + self.crashes + self.guest_errors


def _row(run: RunData, group: str, entries: Sequence[EntryResult], total: bool) -> SummaryRow:
    cases = [c for e in entries for c in e.cases]
    divs = [d for e in entries for d in e.divergences]
    probe_divs = [d for d in divs if d.kind is DivergenceKind.PROBE]
    writes = [d for d in divs if d.kind is DivergenceKind.MEMORY]
    reasons: collections.Counter[str] = collections.Counter()
    batches = {(record_qemu(b), b.batch): b for b in run.batches}
    for c in cases:
        if c.status is CaseStatus.NOT_RUN:
            b = batches.get((record_qemu(c), c.batch))
            diag = _first_line(b.diagnostic) if b else ""
            reasons[diag or (f"batch {b.status.value}, no diagnostic" if b else "no batch record")] += 1
    status = collections.Counter(c.status for c in cases)
    verdicts = collections.Counter(e.verdict for e in entries)
    return SummaryRow(group=group, entries=len(entries), cases=len(cases),
                      probes=sum(c.probes for c in cases), passed=sum(c.passed for c in cases),
                      known=sum(d.count for d in probe_divs if not d.is_new),
                      new=sum(d.count for d in probe_divs if d.is_new),
                      skipped=status[CaseStatus.NOT_RUN], timeouts=status[CaseStatus.TIMEOUT],
                      crashes=status[CaseStatus.CRASH], guest_errors=status[CaseStatus.GUEST_ERROR],
                      skip_reasons=tuple(sorted(reasons.items())),
                      verdicts=tuple((v, verdicts[v]) for v in Verdict), total=total,
                      not_run=sum(c.not_run for c in cases),
                      writes_known=sum(d.count for d in writes if not d.is_new),
                      writes_new=sum(d.count for d in writes if d.is_new))


def summary_table(run: RunData, qemu: str | None = None) -> list[SummaryRow]:
    """One row per configuration group (sorted by name), then the totals;
    ``qemu``: only the records of that QEMU label."""
    entries = [e for e in entry_results(run) if qemu is None or e.qemu == qemu]
    by_group: dict[str, list[EntryResult]] = collections.defaultdict(list)
    for e in entries:
        by_group[e.group].append(e)
    rows = [_row(run, g, by_group[g], False) for g in sorted(by_group)]
    rows.append(_row(run, "total", entries, True))
    return rows


def harness_errors(run: RunData) -> list[BatchRecord]:
    """Batches that failed inside the harness (no case records exist for them)."""
    return [b for b in run.batches if b.status is BatchStatus.HARNESS_ERROR]


# The summary's columns: attribute, heading (two lines: the unit above the
# name), so that every column says what it counts.
_COLUMNS = ("entries", "cases", "probes", "passed", "known", "new", "not_run", "failed")
_HEADINGS = (("entries", "matrix"), ("cases", "cases"), ("probes", "probes"),
             ("passed", "probes"), ("known", "probes"), ("new", "probes"),
             ("not run", "probes"), ("failed", "cases"))


def count_text(n: int, width: int = 6) -> str:
    """``n`` in at most ``width`` characters: exact when it fits, else
    abbreviated with one decimal (113.8M, 2.1G, 45.2k)."""
    text = str(n)
    if len(text) <= width:
        return text
    for div, unit in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if n >= div:
            short = f"{n / div:.1f}{unit}"
            return short if len(short) <= width else f"{n // div}{unit}"
    return text


def _batch_counts(run: RunData) -> str:
    """'12 (11 completed, 1 timeout)'."""
    status = collections.Counter(b.status.value for b in run.batches)
    detail = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
    return f"{len(run.batches)} ({detail})" if detail else "0"


def qemu_lines(run: RunData) -> list[str]:
    """The QEMUs of the run: 'label = version' for a run over several,
    else the version per architecture."""
    if len(run.qemus) > 1:
        return [f"{label} = {version}" for label, version in run.qemus]
    if run.qemus:
        return [version for _, version in run.qemus]
    by_version: dict[str, list[str]] = {}
    for a, v in run.info.qemu:
        by_version.setdefault(v, []).append(a)
    return [f"{v} ({', '.join(arches)})" for v, arches in by_version.items()] or ["unknown"]


def coverage_text(run: RunData) -> str:
    """How much of the run the records hold, with the run's end reason and
    the entries that never ran when the end record says so."""
    end = run.end
    text = run.info.coverage
    if end is None:
        return text
    if end.reason and end.reason != "complete":
        text += f"; ended by {end.reason}"
    if end.never_run_count:
        text += f"; {end.never_run_count} matrix entr{'y' if end.never_run_count == 1 else 'ies'} never ran"
    return text


def _run_lines(run: RunData) -> list[str]:
    info = run.info
    return [
        f"seed {info.seed if info.seed is not None else 'unknown'}, "
        f"{info.cases_per_entry if info.cases_per_entry is not None else '?'} cases per entry, "
        f"matrix of {info.entries if info.entries is not None else '?'} entries",
        f"coverage: {info.coverage}",
        *_not_run_lines(run),
        f"qemu: {'; '.join(qemu_lines(run))}",
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


def never_run_pairs(run: RunData) -> set[tuple[str, str]]:
    """(entry, QEMU) pairs of the matrix of which no case ran, from the end
    records (an entry that ran on one QEMU and not on another counts once
    for the other)."""
    ran = {(c.entry, record_qemu(c)) for c in run.cases}
    # A one-QEMU run's records name no QEMU while its end record names the
    # version: compare by entry alone there.
    several = len(run.qemus) > 1
    return {(n.entry, n.qemu if several else "") for e in run.ends for n in e.entries_not_run
            if (n.entry, n.qemu if several else "") not in ran}


def coverage_headline(run: RunData, out_dir: str | None = None) -> list[str]:
    """The summary's second line when the run did not cover its matrix
    (issue 12: coverage is stated first, not pages below the root causes):
    how many matrix entries ran and how many never did and why, the cases
    not run, and how to cover the rest -- with the budget a first case of
    every entry would need at this run's rate (coverage first: every entry
    runs its first case before any runs a second).  Empty for a run that
    covered everything, or one without end records."""
    if not run.info.complete and run.info.shards:
        # A merge with --allow-partial: the missing shards' entries are
        # in no record, so they cannot be counted, only named.
        return textwrap.wrap(f"COVERAGE: {run.info.coverage}: the matrix entries of the "
                             "missing shard(s) are not in this report", 80,
                             subsequent_indent="  ")
    if not run.ends:
        return []
    never = never_run_pairs(run)
    planned = sum(e.cases_planned for e in run.ends)
    ran_cases = sum(e.cases_run for e in run.ends)
    reasons = {e.reason.value for e in run.ends}
    if not never and reasons == {"complete"} and ran_cases >= planned:
        return []
    total = (run.info.entries or 0) * max(len(run.qemus), 1)
    if total < len(never):
        total = len(never)
    several = len(run.qemus) > 1
    reason = {(n.entry, n.qemu if several else ""): n.reason
              for x in run.ends for n in x.entries_not_run}
    why = collections.Counter(reason[k] for k in never)
    what = "entries" if len(run.qemus) < 2 else "(entry, QEMU) pairs"
    text = (f"COVERAGE: {total - len(never)} of {total} matrix {what} ran"
            + (f", {len(never)} never ran ("
               + "; ".join(f"{n} x {w}" for w, n in sorted(why.items())) + ")" if never else "")
            + f"; {ran_cases:,} of {planned:,} cases ran.")
    if "budget" in reasons:
        ends = [e for e in run.ends if e.elapsed > 0]
        done = total - len(never)
        if never and done and ends:
            # The slowest shard decides; entries are not all equally long,
            # so this is an estimate from the run's own pace.
            need = max(e.elapsed for e in ends) * total / done
            text += (f" A first case of every entry needs about --budget "
                     f"{max(10, int(-(-need // 10) * 10))} at this run's pace;")
        text += " no --budget runs every case"
        text += f"; s2diff run --resume --out {out_dir} continues this run." if out_dir else \
            "; --resume continues this run."
    return textwrap.wrap(text, 80, subsequent_indent="  ", break_long_words=False,
                         break_on_hyphens=False)


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
        state = crash_family_state(members)
        lines.append(f"crash family{' on QEMU ' + label if label else ''}: {signature} "
                     f"({len(members)} probe(s), {state}"
                     + (f", case {file})" if file else ")"))
    return lines


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "~"


def _shorten(text: str, width: int) -> str:
    """A group name within ``width``: its start and its end kept around a
    '~', so that names sharing a long start stay apart
    ('implementa~ reserved TG0', 'implementa~ported granule')."""
    if len(text) <= width:
        return text
    head = min(10, max(width // 2 - 1, 1))
    return text[:head] + "~" + text[len(text) - (width - head - 1):]


def render_table(rows: Sequence[SummaryRow], width: int = 80) -> list[str]:
    """The counts by group as aligned lines within ``width`` characters:
    numbers are abbreviated past 6 digits and the group column is shortened
    (its middle replaced by '~') to make room."""
    cells = [[count_text(getattr(r, c)) for c in _COLUMNS] for r in rows]
    widths = [max([len(h), len(u)] + [len(c[i]) for c in cells])
              for i, (h, u) in enumerate(_HEADINGS)]
    numbers = sum(w + 1 for w in widths)
    group_w = max([len("group")] + [len(r.group) for r in rows])
    group_w = max(min(group_w, width - numbers), 10)

    def line(first: str, values: Sequence[str]) -> str:
        return (_shorten(first, group_w).ljust(group_w)
                + "".join(" " + v.rjust(w) for v, w in zip(values, widths))).rstrip()

    out = [line("unit:", [u for _, u in _HEADINGS]), line("group", [h for h, _ in _HEADINGS])]
    rule = "-" * len(out[-1])
    out.append(rule)
    for r, c in zip(rows, cells):
        if r.total:
            out.append(rule)
        out.append(line(r.group, c))
    return out


def render_summary(run: RunData, width: int = 80) -> str:
    """The summary as aligned plain text within ``width`` columns: run
    information, one line per group and the totals (units in the
    headings), descriptor writes, entry verdicts, skip reasons and harness
    errors."""
    rows = summary_table(run)
    out = ["s2diff summary", *_run_lines(run), "", *render_table(rows, width)]
    total = rows[-1]
    out.append("passed + known + new + not run = probes; failed: cases that timed out, "
               "crashed QEMU or stopped the guest" if width >= 100 else
               "passed + known + new + not run = probes")
    if total.writes_new or total.writes_known:
        out.append(f"descriptor writes against the reference (not probes): "
                   f"{total.writes_new:,} new, {total.writes_known:,} known")
    out.append("")
    # Entries that never ran have no case records: counted as not run here
    # too, so that this line agrees with the coverage lines above.
    never = len(never_run_pairs(run))
    out.append("entries: " + ", ".join(
        f"{n + (never if v is Verdict.NOT_RUN else 0)} {v.label}" for v, n in total.verdicts))
    if total.skip_reasons:
        out.append("")
        out.append("not run:")
        for row in rows[:-1]:
            for reason, n in row.skip_reasons:
                out += textwrap.wrap(f"{row.group}: {n} case(s): {reason}", width,
                                     initial_indent="  ", subsequent_indent="    ")
    errors = harness_errors(run)
    if errors:
        out.append("")
        out.append("harness errors (batches without case records):")
        for b in errors:
            out += textwrap.wrap(f"batch {b.batch} ({b.arch} {b.cpu}, {b.images} images): "
                                 f"{_first_line(b.diagnostic)}", width,
                                 initial_indent="  ", subsequent_indent="    ")
    return "\n".join(out) + "\n"
