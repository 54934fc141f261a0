"""The self-contained HTML report: summary, the configuration matrix as a
grid of verdicts, divergence families, and each divergence beside the
reference's permitted outcomes (docs/reports.md)."""
from __future__ import annotations

import collections
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..coverage import html_tables
from ..records import DivergenceRecord
from .families import divergence_families
from .load import RunData
from .summary import (
    _COLUMNS,
    _HEADINGS,
    EntryResult,
    Verdict,
    _batch_counts,
    entry_results,
    harness_errors,
    summary_table,
)

# Individual divergences shown in the HTML report; the rest are counted.
MAX_HTML_DIVERGENCES = 200


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
    for i, p in enumerate(d.permitted or ()):
        rules = "; ".join(p.rules)
        ref.append(f"<p><b>{i + 1}. {_e(p.result)}</b><br><span class=\"meta\">rules: "
                   f"{_e(rules or '-')}</span></p><pre>{_e(chr(10).join(p.trace))}</pre>")
    if not ref:
        ref.append(f"<p>{_e(' | '.join(d.expected))}</p>")
    raw = "\n".join(f"{k:<6} {v}" for k, v in d.raw or ())
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


