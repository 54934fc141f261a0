"""The self-contained HTML report, for a person (docs/reports.md): the
run's verdict in a banner first, then the root causes with the commands
that reproduce them, the counts, the configuration matrix (each mark a
link to its entry), the entries, and each divergence with the reference's
walk beside the observation.  No scripts, no external resources; laid out
to fit a 1280-pixel window without horizontal scrolling."""
from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..coverage import html_tables
from ..records import DivergenceRecord
from .load import RunData
from .rootcause import CauseKind, RootCause, root_causes
from .summary import (
    _COLUMNS,
    _HEADINGS,
    EntryResult,
    Verdict,
    _batch_counts,
    count_text,
    coverage_text,
    entry_results,
    harness_errors,
    qemu_lines,
    summary_table,
)
from .text import (
    commands,
    expected_summary,
    family_presence,
    headline,
    presence,
    qemu_labels,
)

# Individual divergences shown in the HTML report; the rest are counted.
MAX_HTML_DIVERGENCES = 200


_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;padding:0 1.2em 2em;color:#222;
max-width:1240px;overflow-wrap:anywhere}
h2{margin-top:1.6em;border-bottom:1px solid #ccc}h3{margin:.3em 0;font-size:15px}
table{border-collapse:collapse;margin:.5em 0;max-width:100%}
th,td{border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:bold}tr.unit th{font-weight:normal;color:#666;font-size:12px}
.banner{margin:0 -1.2em 1em;padding:.8em 1.2em;color:#fff}
.banner h1{margin:0;font-size:22px}.banner p{margin:.3em 0 0}
.banner.new{background:#c62828}.banner.crash{background:#6a1b9a}
.banner.known{background:#b77900}.banner.clean{background:#2e7d32}.banner.none{background:#616161}
.grid td{padding:1px 2px}.grid th{font-weight:normal;font-size:12px}
a.s,span.s{display:inline-block;min-width:1.3em;text-align:center;border-radius:3px;margin:1px;
color:#fff;font:bold 11px/1.5 monospace;text-decoration:none}
.pass{background:#2e7d32}.known{background:#b77900}.new{background:#c62828}
.error{background:#6a1b9a}.not-run{background:#9e9e9e}
pre{margin:.2em 0;white-space:pre-wrap;overflow-wrap:anywhere;font:12px/1.35 monospace}
pre.cmd{background:#f3f3f3;border:1px solid #ddd;padding:.3em .5em}
.rc,.div{border:1px solid #ccc;border-left:6px solid #c62828;margin:.8em 0;padding:.3em .8em}
.rc.known-d,.div.known-d{border-left-color:#b77900}.rc.crash-d{border-left-color:#6a1b9a}
.side{width:100%;table-layout:fixed}.side td{width:50%}
.meta{color:#555;font-size:13px}
mark{background:#ffe082}
details{margin:.4em 0}summary{cursor:pointer;font-weight:bold}
.entry{scroll-margin-top:1em}
"""

_GLYPH = {Verdict.PASS: "&#10003;", Verdict.KNOWN: "K", Verdict.NEW: "N",
          Verdict.ERROR: "!", Verdict.NOT_RUN: "&#183;"}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _href(path: str, base_dir: str, report_dir: Path) -> str:
    """A case-file path (relative to its run directory) as a link relative
    to the report's directory."""
    target = Path(path)
    if base_dir and not target.is_absolute():
        target = Path(os.path.relpath(Path(base_dir) / target, report_dir))
    return target.as_posix()


# ---------------------------------------------------------------------------
# The banner and the root causes
# ---------------------------------------------------------------------------

def _banner(run: RunData, causes: Sequence[RootCause]) -> str:
    if any(c.kind is CauseKind.CRASH and c.is_new for c in causes):
        cls = "crash"
    elif any(c.is_new for c in causes):
        cls = "new"
    elif causes:
        cls = "known"
    elif run.cases:
        cls = "clean"
    else:
        cls = "none"
    if any(c.is_new and c.kind is not CauseKind.CRASH for c in causes):
        cls = "new"
    info = run.info
    facts = [f"coverage: {coverage_text(run)}", "; ".join(qemu_lines(run)),
             f"seed {info.seed if info.seed is not None else '?'}, "
             f"{info.cases_per_entry if info.cases_per_entry is not None else '?'} cases per "
             f"entry, {info.entries if info.entries is not None else '?'} matrix entries"]
    return (f'<header class="banner {cls}" id="verdict"><h1>{_e(headline(run, causes))}</h1>'
            + "".join(f"<p>{_e(f)}</p>" for f in facts) + "</header>")


def _families_table(cause: RootCause, anchors: Mapping[str, str]) -> str:
    rows = []
    for f in cause.families:
        examples = ", ".join(f'<a href="#{anchors[k]}">{_e(k)}</a>' if k in anchors else _e(k)
                             for k in f.examples)
        known = f" ({_e(', '.join(f.known_ids))})" if f.known_ids else ""
        rows.append(f'<tr><td class="n">{f.count:,}</td><td>{_e(f.unit)}</td>'
                    f'<td class="n">{f.new:,}</td><td class="n">{f.count - f.new:,}{known}</td>'
                    f"<td>{_e(f.aim)}</td><td>{_e(' | '.join(f.expected))}</td>"
                    f"<td>{_e(f.observed)}</td><td>{_e(', '.join(f.cpus))}</td>"
                    f"<td>{examples}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("count", "unit", "new", "known", "aim", "expected",
                                             "observed", "CPU models", "examples"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


_COMMAND_NOTE = {"repro": "does it still diverge? (run from this report's directory)",
                 "shrink": "minimal case, explained and localized",
                 "minimal": "the minimal case"}


def _cause_html(n: int, cause: RootCause, anchors: Mapping[str, str], report_dir: Path) -> str:
    cls = "rc" if cause.is_new else "rc known-d"
    if cause.kind is CauseKind.CRASH:
        cls = "rc crash-d"
    counts = []
    if cause.new:
        counts.append(f"{cause.new:,} new probes")
    if cause.known:
        counts.append(f"{cause.known:,} known probes")
    if cause.writes_new or cause.writes_known:
        counts.append(f"{cause.writes_new + cause.writes_known:,} descriptor writes")
    parts = [f'<section class="{cls}" id="{cause.anchor}">'
             f"<h3>{n}. {_e(cause.status.upper())} &mdash; {_e(cause.title)}</h3>",
             f"<p>{_e(cause.verdict)}" + (f" ({_e(', '.join(counts))})" if counts else "")
             + "</p>"]
    parts += [f'<p class="meta">{_e(line)}</p>' for line in cause.detail]
    if cause.shrink is not None and cause.shrink.field:
        parts.append(f"<p><b>Localized</b>: {_e(cause.shrink.level_text)}: "
                     f"{_e(cause.shrink.field)}</p>")
    elif cause.shrink is not None and cause.shrink.note:
        parts.append(f"<p>Shrink: {_e(cause.shrink.note)}</p>")
    cmds = commands(cause, report_dir)
    notes = dict(_COMMAND_NOTE, repro="does QEMU still crash so? (run from this report's "
                 "directory)") if cause.kind is CauseKind.CRASH else _COMMAND_NOTE
    lines = [f"{cmd}   # {notes.get(what, what)}" for what, cmd in cmds if what != "explained"]
    if lines:
        parts.append(f'<pre class="cmd">{_e(chr(10).join(lines))}</pre>')
    if cause.shrink is not None and cause.shrink.report:
        base = str(cause.shrink.base_dir or "")
        href = _href(cause.shrink.report, base, report_dir)
        parts.append(f'<p>Minimal case explained and localized: <a class="min" href="{_e(href)}">'
                     f"{_e(Path(cause.shrink.report).name)}</a></p>")
    links = []
    if cause.case_files:
        links.append("case files: " + ", ".join(
            f'<a href="{_e(_href(f, b, report_dir))}">{_e(Path(f).name)}</a>'
            for f, b in cause.case_files[:5])
            + (f" and {len(cause.case_files) - 5} more" if len(cause.case_files) > 5 else ""))
    first = next((anchors[k] for k in cause.cases if k in anchors), None)
    if first is not None:
        links.append(f'<a href="#{first}">first divergence in full</a>')
    if cause.kind is not CauseKind.CRASH:
        links.append(f"{len(cause.cases):,} cases of {len(cause.entries):,} matrix entries")
    parts.append(f'<p class="meta">{" &middot; ".join(links)}</p>')
    if cause.kind is CauseKind.CONFIGURATION:
        parts.append(f'<p class="meta">The reference expected: {_e(expected_summary(cause))}</p>')
    if cause.families:
        parts.append(f"<details><summary>{len(cause.families)} "
                     f"famil{'y' if len(cause.families) == 1 else 'ies'}</summary>"
                     f"{_families_table(cause, anchors)}</details>")
    if cause.crash is not None and cause.crash.console_tail:
        parts.append("<details><summary>QEMU's last console lines</summary><pre>"
                     + _e("\n".join(cause.crash.console_tail)) + "</pre></details>")
    parts.append("</section>")
    return "".join(parts)


def _causes_html(run: RunData, causes: Sequence[RootCause], anchors: Mapping[str, str],
                 report_dir: Path) -> str:
    if not causes:
        return "<p>No divergence and no crash: every probe that ran passed.</p>"
    numbered = list(enumerate(causes, 1))
    urgent = "".join(_cause_html(n, c, anchors, report_dir) for n, c in numbered if c.is_new)
    known = [(n, c) for n, c in numbered if not c.is_new]
    out = [urgent]
    if known:
        ids = sorted({i for _, c in known for i in c.known_ids})
        out.append(f'<details class="known-causes"><summary>{len(known)} known root '
                   f"cause{'s' if len(known) != 1 else ''} (baseline: {_e(', '.join(ids))})"
                   "</summary>"
                   + "".join(_cause_html(n, c, anchors, report_dir) for n, c in known)
                   + "</details>")
    out.append(_presence_html(run, causes))
    return "".join(out)


def _presence_html(run: RunData, causes: Sequence[RootCause]) -> str:
    labels = qemu_labels(run)
    if len(labels) < 2:
        return ""
    head = "".join(f"<th>{_e(q)}</th>" for q in labels)
    rows = "".join(f'<tr><td><a href="#{c.anchor}">{n}. {_e(c.title)}</a></td>'
                   + "".join(f'<td class="{presence(run, c, q).replace(" ", "-")}-p">'
                             f"{_e(presence(run, c, q))}</td>" for q in labels) + "</tr>"
                   for n, c in enumerate(causes, 1))
    fams = "".join(f"<tr><td>{_e(f.aim or f.kind)}: {_e(' | '.join(f.expected))} &rarr; "
                   f"{_e(f.observed)}</td>" + "".join(f"<td>{_e(row[q])}</td>" for q in labels)
                   + "</tr>" for f, row in family_presence(run))
    return ("<h3>Root causes &times; QEMU versions</h3><p class=\"meta\">present: seen on that "
            "QEMU; absent: its configurations ran there without it; not run.</p>"
            f"<table><tr><th>root cause</th>{head}</tr>{rows}</table>"
            "<details><summary>Divergence families &times; QEMU versions</summary>"
            f"<table><tr><th>family</th>{head}</tr>{fams}</table></details>")


# ---------------------------------------------------------------------------
# Summary, matrix, entries
# ---------------------------------------------------------------------------

def _summary_html(run: RunData) -> str:
    rows = summary_table(run)
    unit = "".join(f"<th>{_e(u)}</th>" for _, u in _HEADINGS)
    head = "".join(f"<th>{_e(h)}</th>" for h, _ in _HEADINGS)
    body = []
    for r in rows:
        cls = ' class="total"' if r.total else ""
        cells = "".join(f'<td class="n" title="{getattr(r, c):,}">{count_text(getattr(r, c))}'
                        "</td>" for c in _COLUMNS)
        body.append(f"<tr{cls}><td>{_e(r.group)}</td>{cells}</tr>")
    out = [f'<table><tr class="unit"><th>unit</th>{unit}</tr><tr><th>group</th>{head}</tr>'
           f"{''.join(body)}</table>",
           '<p class="meta">passed + known + new + not run = probes; failed: cases that timed '
           "out, crashed QEMU or stopped the guest; hover a number for its exact value.</p>"]
    total = rows[-1]
    if total.writes_new or total.writes_known:
        out.append(f"<p>Descriptor writes no permitted outcome makes (not probes): "
                   f"{total.writes_new:,} new, {total.writes_known:,} known.</p>")
    out.append("<p>Matrix entries: " + ", ".join(
        f'<span class="s {v.value}">{_GLYPH[v]}</span> {n} {_e(v.label)}' for v, n in total.verdicts)
        + f"; batches: {_e(_batch_counts(run))}.</p>")
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


def _chip(e: EntryResult) -> str:
    n_new, n_div = len(e.new), len(e.divergences)
    detail = e.verdict.label
    if n_div:
        detail += f", {n_new} new / {n_div - n_new} known divergence record(s)"
    if e.reason:
        detail += f": {e.reason}"
    name = e.entry + (f" on {e.qemu}" if e.qemu else "")
    return (f'<a class="s {e.verdict.value}" href="#{e.anchor}" title="{_e(name + " - " + detail)}">'
            f"{_GLYPH[e.verdict]}</a>")


def _grid_html(entries: Sequence[EntryResult]) -> str:
    """Per arch and granule: rows are CPU models, columns IPA sizes; a
    cell holds one mark per entry (and QEMU) of that geometry.  One table
    per granule keeps each narrow enough for the page."""
    family_groups = {e.group for e in entries if not e.valid}
    out = []
    grid = [e for e in entries if e.group not in family_groups]
    for arch in sorted({e.arch for e in grid}):
        for granule in sorted({e.granule or "" for e in grid if e.arch == arch},
                              key=lambda g: (g == "", len(g), g)):
            mine = [e for e in grid if e.arch == arch and (e.granule or "") == granule]
            bits = sorted({e.ia_bits for e in mine})
            cell: dict[tuple[str, int], list[EntryResult]] = {}
            for e in mine:
                cell.setdefault((e.cpu, e.ia_bits), []).append(e)
            head = "".join(f"<th>{b}</th>" for b in bits)
            body = []
            for cpu in sorted({e.cpu for e in mine}):
                tds = "".join("<td>" + "".join(_chip(e) for e in sorted(
                    cell.get((cpu, b), []), key=lambda e: (e.entry, e.qemu))) + "</td>"
                    for b in bits)
                body.append(f"<tr><th>{_e(cpu)}</th>{tds}</tr>")
            out.append(f"<h3>{_e(arch)} {_e(granule or 'TG0 reserved')}: CPU model &times; "
                       f"IPA bits</h3><table class=\"grid\"><tr><th>CPU</th>{head}</tr>"
                       f"{''.join(body)}</table>")
    fam = [e for e in entries if e.group in family_groups]
    if fam:
        body = []
        for group in sorted({e.group for e in fam}):
            items = " ".join(_chip(e) for e in sorted((e for e in fam if e.group == group),
                                                      key=lambda e: (e.arch, e.cpu, e.entry)))
            body.append(f"<tr><td>{_e(group)}</td><td>{items}</td></tr>")
        out.append("<h3>Configuration families (groups with invalid configurations)</h3>"
                   f"<table><tr><th>family</th><th>entries</th></tr>{''.join(body)}</table>")
    return "\n".join(out)


def _entries_html(entries: Sequence[EntryResult], cause_of: Mapping[str, list[RootCause]],
                  numbers: Mapping[str, int], anchors: Mapping[str, str]) -> str:
    """Every entry in one table (each mark of the matrix links to its row):
    verdict, counts, the reason for an error or skip, its root causes."""
    rows = []
    for e in entries:
        probes = sum(c.probes for c in e.cases)
        passed = sum(c.passed for c in e.cases)
        causes = cause_of.get(e.entry, [])
        links = ", ".join(f'<a href="#{c.anchor}">{numbers[c.anchor]}</a>' for c in causes)
        first = next((anchors[c.key] for c in e.cases if c.key in anchors), None)
        more = f' <a href="#{first}">divergence</a>' if first else ""
        rows.append(f'<tr class="entry" id="{e.anchor}"><td><span class="s {e.verdict.value}">'
                    f"{_GLYPH[e.verdict]}</span> {_e(e.entry)}"
                    + (f" <span class=\"meta\">on {_e(e.qemu)}</span>" if e.qemu else "")
                    + f"</td><td>{_e(e.group)}</td><td class=\"n\">{len(e.cases)}</td>"
                    f'<td class="n">{count_text(passed)} / {count_text(probes)}</td>'
                    f"<td>{links}{more}{(' ' + _e(e.reason)) if e.reason else ''}</td></tr>")
    return ("<details open><summary>" + f"{len(entries)} matrix entries</summary>"
            "<table><tr><th>entry</th><th>group</th><th>cases</th><th>probes passed</th>"
            "<th>root causes, reason</th></tr>" + "".join(rows) + "</table></details>")


# ---------------------------------------------------------------------------
# Divergences
# ---------------------------------------------------------------------------

_LEVEL_LINE = re.compile(r"^L\s*(-?\d+) ")


def _trace_html(trace: Sequence[str], level: int | None) -> str:
    """The walk, one descriptor read per line; the decisive descriptor (at
    the localized level, else the last read) highlighted."""
    if not trace:
        return "<pre>no descriptor read</pre>"
    pick = len(trace) - 1
    if level is not None:
        pick = next((i for i, t in enumerate(trace)
                     if (m := _LEVEL_LINE.match(t)) and int(m.group(1)) == level), pick)
    lines = [f"<mark>{_e(t)}</mark>" if i == pick else _e(t) for i, t in enumerate(trace)]
    return "<pre>" + "\n".join(lines) + "</pre>"


def _divergence_html(d: DivergenceRecord, anchor: str, report_dir: Path,
                     level: int | None) -> str:
    status = "new" if d.is_new else f"known: {d.known}"
    meta = [f"{_e(d.arch)} {_e(d.cpu)}", f"batch {d.batch}", f"{_e(d.kind.value)} divergence"]
    if d.ipa is not None:
        meta.append(f"IPA {_e(d.ipa)}")
    if d.at:
        meta.append(_e(d.at))
    if d.aim:
        meta.append(f"aim: {_e(d.aim)}")
    if d.count > 1:
        meta.append(f"{d.count:,} probes")
    ref = []
    for i, p in enumerate(d.permitted or ()):
        rules = "; ".join(p.rules)
        ref.append(f"<p><b>{i + 1}. {_e(p.result)}</b><br><span class=\"meta\">rules: "
                   f"{_e(rules or '-')}</span></p>{_trace_html(p.trace, level)}")
    if not ref:
        ref.append(f"<p>{_e(' | '.join(d.expected))}</p>")
    raw = "\n".join(f"{k:<6} {v}" for k, v in d.raw or ())
    obs = (f"<p><b>{_e(d.observed)}</b></p><pre>{_e(d.observed_text)}</pre>"
           f"<pre>{_e(raw)}</pre><p class=\"meta\">{_e(d.qemu_version or 'QEMU ?')}</p>")
    link = (f'<p>Case file: <a href="{_e(_href(d.case_file, str(d.base_dir or ""), report_dir))}">'
            f"{_e(d.case_file)}</a></p>" if d.case_file else "")
    cls = "div" if d.is_new else "div known-d"
    return (f'<section class="{cls}" id="{anchor}"><h3>{_e(d.key)}'
            f"{'' if d.probe is None else ' probe ' + str(d.probe)} &mdash; {_e(status)}</h3>"
            f'<p class="meta">{" &middot; ".join(meta)}</p>'
            f'<p class="meta">{_e(d.config)} &middot; VTTBR {_e(d.vttbr)}</p>'
            f"<p>expected {_e(' | '.join(d.expected))}, observed {_e(d.observed)}</p>"
            f'<table class="side"><tr><th>reference: permitted outcomes (walk; the deciding '
            f"descriptor marked)</th><th>observed (QEMU)</th></tr><tr><td>{''.join(ref)}</td>"
            f"<td>{obs}</td></tr></table>{link}</section>")


def render_html(run: RunData, report_dir: Path | str = ".",
                max_divergences: int = MAX_HTML_DIVERGENCES) -> str:
    """The HTML report as one string.  ``report_dir`` is where the file
    will live (links to case files are relative to it).  At most
    ``max_divergences`` divergences are shown in full: the first of each
    root cause, then the other new ones, then known ones (collapsed)."""
    report_dir = Path(report_dir)
    causes = root_causes(run)
    entries = entry_results(run)
    new = [d for d in run.divergences if d.is_new]
    known = [d for d in run.divergences if not d.is_new]
    first_of_case: dict[str, DivergenceRecord] = {}
    for d in new + known:
        first_of_case.setdefault(d.key, d)
    leaders = [first_of_case[k] for c in causes for k in c.cases[:1] if k in first_of_case]
    ordered = list(dict.fromkeys(leaders + new + known))
    shown = ordered[:max_divergences]
    anchors: dict[str, str] = {}
    for i, d in enumerate(shown):
        anchors.setdefault(d.key, f"d{i}")
    numbers = {c.anchor: n for n, c in enumerate(causes, 1)}
    cause_of: dict[str, list[RootCause]] = {}
    for c in causes:
        for entry in c.entries:
            cause_of.setdefault(entry, []).append(c)
    levels = {s.family: s.level for s in run.shrinks if s.field}
    shown_known = [d for d in shown if not d.is_new]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>s2diff report, seed {_e(run.info.seed)}</title>",
        f"<style>{_CSS}</style></head><body>",
        _banner(run, causes),
        '<h2 id="root-causes">Root causes</h2>', _causes_html(run, causes, anchors, report_dir),
        "<h2>Counts</h2>", _summary_html(run),
        "<h2>Configuration matrix</h2>",
        "<p>Legend: " + " ".join(f'<span class="s {v.value}">{_GLYPH[v]}</span> {_e(v.label)}'
                                 for v in Verdict)
        + ". One mark per matrix entry; each links to the entry's row below.</p>",
        _grid_html(entries),
        "<h2>Matrix entries</h2>", _entries_html(entries, cause_of, numbers, anchors),
        f"<h2>Divergences ({len(new):,} new and {len(known):,} known records)</h2>",
    ]
    parts += [_divergence_html(d, f"d{i}", report_dir, levels.get(d.family))
              for i, d in enumerate(shown) if d.is_new]
    if shown_known:
        parts.append(f"<details><summary>{len(shown_known)} known divergence(s) shown, of "
                     f"{len(known):,}</summary>")
        parts += [_divergence_html(d, f"d{i}", report_dir, levels.get(d.family))
                  for i, d in enumerate(shown) if not d.is_new]
        parts.append("</details>")
    if len(ordered) > len(shown):
        parts.append(f"<p>{len(ordered) - len(shown):,} more divergence record(s) not shown; "
                     "all are in results.jsonl.</p>")
    parts += _coverage_html(run)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _coverage_html(run: RunData) -> list[str]:
    """The rule-coverage section (harness.coverage gives the tables; none
    for results written before rule coverage)."""
    out = []
    for t in html_tables(run.cases):
        head = "".join(f"<th>{_e(h)}</th>" for h in t.headers)
        rows = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in t.rows)
        out += [f"<h2>{_e(t.title)}</h2>", f"<p>{_e(t.summary)}</p>",
                f"<table><tr>{head}</tr>{rows}</table>"]
    return out


def write_html(run: RunData, path: Path | str, max_divergences: int = MAX_HTML_DIVERGENCES) -> Path:
    """Write the self-contained HTML report to ``path``."""
    p = Path(path)
    p.write_text(render_html(run, p.parent, max_divergences), encoding="utf-8",
                 errors="backslashreplace")
    return p
