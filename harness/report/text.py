"""The run in words, root causes first: the one-line verdict of the run,
each root cause with its verdict and the commands that reproduce and shrink
it, the counts, the per-QEMU views, and the families under their root
causes.  summary.txt (``render_text``) and the end of a run in the
terminal (``render_terminal``) are made here; both fit 80 columns."""
from __future__ import annotations

import collections
import os
import shlex
import textwrap
from collections.abc import Sequence
from pathlib import Path

from ..records import CaseStatus
from ..vocabulary import FamilyKey
from .families import Family, families_of
from .load import RunData, record_qemu
from .rootcause import CauseKind, RootCause, qemu_name, root_causes
from .summary import Verdict, count_text, coverage_headline, entry_results, render_summary

WIDTH = 80
# Families listed under one root cause in text (the HTML lists them all).
TEXT_FAMILIES = 5


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def headline(run: RunData, causes: Sequence[RootCause]) -> str:
    """The run's verdict in one line: NEW, CRASH, KNOWN ONLY or CLEAN, with
    the counts that back it."""
    new = [c for c in causes if c.is_new and c.kind is not CauseKind.CRASH]
    crashes = [c for c in causes if c.kind is CauseKind.CRASH and c.is_new]
    known = [c for c in causes if not c.is_new]
    probes = sum(c.new for c in new)
    writes = sum(c.writes_new for c in new)
    parts = []
    if new:
        what = [_plural(probes, "probe")] if probes else []
        if writes:
            what.append(_plural(writes, "descriptor write"))
        parts.append(f"NEW: {_plural(len(new), 'root cause')} of new divergences "
                     f"({', '.join(what)})")
    if crashes:
        parts.append(f"CRASH: {_plural(len(crashes), 'crash family', 'crash families')}")
    if known:
        ids = sorted({i for c in known for i in c.known_ids})
        parts.append(("known only: " if not parts else "known: ")
                     + ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else ""))
    if not parts:
        total = sum(c.probes for c in run.cases)
        passed = sum(c.passed for c in run.cases)
        if not run.cases:
            return "NOTHING RAN: no case records"
        if passed == total:
            return f"CLEAN: all {total:,} probes passed"
        return (f"NO DIVERGENCE: {passed:,} of {total:,} probes passed, the rest did not "
                "run")
    return "; ".join(parts)


def case_path(file: str, base_dir: str, relative_to: Path | None) -> str:
    """A case file's path for a command: relative to ``relative_to`` (the
    report's directory), else as the run directory names it."""
    target = Path(file)
    if base_dir and not target.is_absolute():
        target = Path(base_dir) / target
    if relative_to is not None:
        return Path(os.path.relpath(target, relative_to)).as_posix()
    return target.as_posix()


def commands(cause: RootCause, relative_to: Path | None) -> list[tuple[str, str]]:
    """(what, command) pairs a person runs next for ``cause``: repro of its
    first case file, shrink (or the minimal case and its report when
    shrunk), the crash re-run."""
    if not cause.case_files:
        return []
    file, base = cause.case_files[0]
    path = shlex.quote(case_path(file, base, relative_to))
    out = [("repro", f"s2diff repro {path}")]
    if cause.kind is CauseKind.CRASH:
        return out
    shrink = cause.shrink
    if shrink is not None and shrink.min_case:
        base_s = str(shrink.base_dir or "")
        out.append(("minimal", f"s2diff repro {shlex.quote(case_path(shrink.min_case, base_s, relative_to))}"))
        if shrink.report:
            out.append(("explained", case_path(shrink.report, base_s, relative_to)))
    else:
        out.append(("shrink", f"s2diff shrink {path}"))
    return out


def _wrap(text: str, indent: str, width: int, hang: str = "  ") -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent=indent,
                         subsequent_indent=indent + hang, break_on_hyphens=False,
                         break_long_words=True) or [indent]


def expected_summary(cause: RootCause) -> str:
    """The reference's outcomes of a configuration root cause's probes, by
    label with their counts: 'ok L3 564,313; ok L2 528,483; ...'."""
    by_label: collections.Counter[str] = collections.Counter()
    for f in cause.families:
        by_label[" | ".join(f.expected)] += f.count
    return "; ".join(f"{label} {n:,}" for label, n in by_label.most_common())


def _counts(cause: RootCause) -> str:
    parts = []
    if cause.new:
        parts.append(f"{cause.new:,} new")
    if cause.known:
        parts.append(f"{cause.known:,} known")
    total = cause.new + cause.known
    text = f"{' + '.join(parts)} probe{'' if total == 1 else 's'}" if parts else ""
    writes = cause.writes_new + cause.writes_known
    if writes:
        text += (", " if text else "") + _plural(writes, "descriptor write")
    return text


def family_line(f: Family) -> str:
    status = "new" if f.new == f.count else "known" if not f.new else f"{f.new:,} new"
    return (f"{count_text(f.count, 8)} {f.unit} [{status}] {f.aim or f.kind}: expected "
            f"{' | '.join(f.expected)}, QEMU {f.observed}")


def render_cause(n: int, cause: RootCause, relative_to: Path | None, width: int = WIDTH,
                 families: int = TEXT_FAMILIES, files: int = 3) -> list[str]:
    """One root cause as a numbered block: status and title, the verdict,
    details, commands, case files and its first families."""
    head = f"{n:>2}. {cause.status.upper()}  {cause.title}"
    pad = "      "
    out = _wrap(head, "", width, pad)
    out += _wrap(cause.verdict + (f"; {_counts(cause)}" if _counts(cause) else ""), pad, width)
    for line in cause.detail:
        out += _wrap(line, pad, width)
    if cause.shrink is not None and cause.shrink.field:
        out += _wrap(f"localized: {cause.shrink.level_text}: {cause.shrink.field}", pad, width)
    elif cause.shrink is not None and cause.shrink.note:
        out += _wrap(f"shrink: {cause.shrink.note}", pad, width)
    for what, cmd in commands(cause, relative_to):
        # One line whatever its length: a command is copied and pasted.
        out.append(f"{pad}{what + ':':<11}{cmd}")
    if files and len(cause.case_files) > 1:
        shown = [case_path(f, b, relative_to) for f, b in cause.case_files[:files]]
        more = len(cause.case_files) - len(shown)
        out += _wrap(f"case files: {', '.join(shown)}" + (f" and {more} more" if more else ""),
                     pad, width)
    if cause.kind is not CauseKind.CRASH:
        out += _wrap(f"seen in {_plural(len(cause.cases), 'case')} of "
                     f"{_plural(len(cause.entries), 'matrix entry', 'matrix entries')}"
                     + (f" on {', '.join(cause.qemus)}" if len(cause.qemus) > 1 else ""),
                     pad, width)
    if cause.kind is CauseKind.CONFIGURATION:
        out += _wrap(f"{_plural(len(cause.families), 'probe family', 'probe families')} folded "
                     f"in; the reference expected: {expected_summary(cause)}", pad, width)
        return out
    fams = cause.families[:families]
    if len(cause.families) > 1 or (fams and cause.kind is not CauseKind.FAMILY):
        out.append(f"{pad}families ({len(cause.families)}):")
        for f in fams:
            out += _wrap(family_line(f), pad + "  ", width)
        if len(cause.families) > len(fams):
            rest = cause.families[len(fams):]
            out.append(f"{pad}  ... {len(rest)} more families, "
                       f"{count_text(sum(f.count for f in rest), 8)} probes/writes (report.html)")
    return out


def qemu_labels(run: RunData) -> list[str]:
    """The QEMUs of a run over several, by label ([] for a one-QEMU run)."""
    labels = {record_qemu(c) for c in run.cases} | {label for label, _ in run.qemus}
    labels.discard("")
    # By version number, oldest first: never as strings ("10.0.13" <
    # "7.2.22"); a label that is not a version sorts after the versions.
    return sorted(labels, key=_version_key)


def _version_key(label: str) -> tuple:
    parts = label.replace("-", ".").split(".")
    if not parts[0].isdigit():
        return (1, (), label)
    return (0, tuple(int(p) if p.isdigit() else -1 for p in parts), label)


def presence(run: RunData, cause: RootCause, label: str) -> str:
    """Whether ``cause`` was seen on QEMU ``label``: 'present', 'absent'
    (its configurations ran there without it) or 'not run'."""
    if cause.kind is CauseKind.CRASH:
        if cause.crash is not None and any(c.qemu == label for c in run.crashes
                                           if c.signature == cause.crash.signature):
            return "present"
    elif any(qemu_name(run, d) == label for d in run.divergences
             if d.entry in cause.entries and d.key in cause.cases):
        # The cheap test first; then whether a record of this cause is there.
        if label in cause.qemus:
            return "present"
    entries = set(cause.entries)
    ran = any(c.entry in entries and record_qemu(c) == label
              and c.status is not CaseStatus.NOT_RUN for c in run.cases)
    return "absent" if ran else "not run"


def presence_table(run: RunData, causes: Sequence[RootCause], width: int = WIDTH) -> list[str]:
    """Root causes x QEMU versions: present / absent / not run, the view
    that says 'fixed in', 'introduced in', 'still there'."""
    labels = qemu_labels(run)
    if len(labels) < 2 or not causes:
        return []
    col = max(8, *(len(q) for q in labels)) + 1
    name_w = max(20, width - col * len(labels))
    out = ["root causes x QEMU (present / absent / not run):",
           " " * name_w + "".join(q.rjust(col) for q in labels)]
    for n, c in enumerate(causes, 1):
        name = f"{n:>2}. {c.title}"
        name = name if len(name) <= name_w - 1 else name[:name_w - 2] + "~"
        out.append(name.ljust(name_w) + "".join(presence(run, c, q).rjust(col) for q in labels))
    return out


def family_presence(run: RunData) -> list[tuple[Family, dict[str, str]]]:
    """Every divergence family with, per QEMU label, 'present', 'absent'
    (its configurations ran on that QEMU without it) or 'not run'."""
    labels = qemu_labels(run)
    seen: dict[FamilyKey, set[str]] = collections.defaultdict(set)
    entries: dict[FamilyKey, set[str]] = collections.defaultdict(set)
    for d in run.divergences:
        seen[d.family].add(record_qemu(d))
        entries[d.family].add(d.entry)
    ran = {(c.entry, record_qemu(c)) for c in run.cases if c.status is not CaseStatus.NOT_RUN}
    out = []
    for f in families_of(run.divergences):
        row = {q: "present" if q in seen[f.key] else
               "absent" if any((e, q) in ran for e in entries[f.key]) else "not run"
               for q in labels}
        out.append((f, row))
    return out


def family_presence_table(run: RunData, width: int = WIDTH) -> list[str]:
    """Divergence families x QEMU versions (present / absent / not run)."""
    labels = qemu_labels(run)
    if len(labels) < 2 or not run.divergences:
        return []
    col = max(8, *(len(q) for q in labels)) + 1
    name_w = max(20, width - col * len(labels))
    out = ["divergence families x QEMU (present / absent / not run):",
           " " * name_w + "".join(q.rjust(col) for q in labels)]
    for f, row in family_presence(run):
        name = f"{f.aim or f.kind}: {' | '.join(f.expected)} -> {f.observed}"
        name = name if len(name) <= name_w - 1 else name[:name_w - 2] + "~"
        out.append(name.ljust(name_w) + "".join(row[q].rjust(col) for q in labels))
    return out


def verdicts_by_qemu(run: RunData) -> list[str]:
    """Entry verdicts per QEMU (a column per verdict, a row per QEMU)."""
    labels = qemu_labels(run)
    if len(labels) < 2:
        return []
    entries = entry_results(run)
    heads = [v.label for v in Verdict]
    widths = [max(len(h), 6) for h in heads]
    name_w = max(8, *(len(q) for q in labels))
    out = ["matrix entries by verdict, per QEMU:",
           "QEMU".ljust(name_w) + "".join(" " + h.rjust(w) for h, w in zip(heads, widths))]
    for q in labels:
        counts = collections.Counter(e.verdict for e in entries if e.qemu == q)
        out.append(q.ljust(name_w) + "".join(" " + str(counts[v]).rjust(w)
                                             for v, w in zip(Verdict, widths)))
    return out


def render_text(run: RunData, report_dir: Path | None = None, width: int = WIDTH) -> str:
    """summary.txt: the verdict, the root causes (new first, each with its
    commands), the counts, the per-QEMU views, then every root cause's
    families.  Commands name case files relative to ``report_dir``."""
    causes = root_causes(run)
    out = [headline(run, causes), *coverage_headline(run), ""]
    if causes:
        out.append(f"root causes ({len(causes)}; commands run from this directory):")
        for n, c in enumerate(causes, 1):
            out += render_cause(n, c, report_dir, width)
        out.append("")
    out += render_summary(run, width).rstrip("\n").split("\n")
    for block in (verdicts_by_qemu(run), presence_table(run, causes, width),
                  family_presence_table(run, width)):
        if block:
            out += ["", *block]
    many = [c for c in causes
            if len(c.families) > TEXT_FAMILIES and c.kind is not CauseKind.CONFIGURATION]
    if many:
        out += ["", "all families of the root causes above with more than "
                f"{TEXT_FAMILIES}:"]
        for n, c in enumerate(causes, 1):
            if c in many:
                out += _wrap(f"{n}. {c.title}", "", width)
                for f in c.families:
                    out += _wrap(family_line(f), "    ", width)
    return "\n".join(out) + "\n"


def render_terminal(run: RunData, out_dir: Path | None = None, width: int = WIDTH,
                    limit: int = 8) -> str:
    """The end of a run in a terminal: the verdict line first, the first
    ``limit`` root causes (new and crashes; known ones in one line each),
    then the counts.  Commands name case files as seen from the current
    directory."""
    causes = root_causes(run)
    out = [headline(run, causes), *coverage_headline(run, str(out_dir) if out_dir else None)]
    urgent = [c for c in causes if c.is_new]
    for n, c in enumerate(urgent[:limit], 1):
        out += render_cause(n, c, None, width, families=3, files=0)
    if len(urgent) > limit:
        out.append(f"... {len(urgent) - limit} more root causes in summary.txt")
    known = [c for c in causes if not c.is_new]
    if known:
        out.append(f"known ({_plural(len(known), 'root cause')}):")
        for c in known[:limit]:
            counts = _plural(c.crashes, "probe") + " QEMU died on" \
                if c.kind is CauseKind.CRASH else _counts(c)
            out += _wrap(f"{', '.join(c.known_ids) or '?'}: {counts} -- {c.title}",
                         "  ", width)
        if len(known) > limit:
            out.append(f"  ... {len(known) - limit} more in summary.txt")
    out.append("")
    out += render_summary(run, width).rstrip("\n").split("\n")[1:]
    block = presence_table(run, causes, width)
    if block:
        out += ["", *block]
    return "\n".join(out) + "\n"
