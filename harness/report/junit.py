"""JUnit XML for CI dashboards: one <testsuite> per configuration group,
one <testcase> per matrix entry."""
from __future__ import annotations

import collections
import xml.etree.ElementTree as ET
from pathlib import Path

from .load import RunData
from .rootcause import CauseKind, RootCause, root_causes
from .summary import (
    _ERROR_STATUSES,
    EntryResult,
    Verdict,
    _first_line,
    entry_results,
    harness_errors,
    never_run_pairs,
)
from .text import commands, expected_summary, family_line

# New divergences listed in one JUnit <failure> body.
MAX_JUNIT_DIVERGENCES = 50


def _case_seconds(run: RunData) -> dict[str, float]:
    """Seconds per case key: its batch's elapsed time shared equally by
    the batch's images."""
    per_image = {b.batch: b.elapsed / b.images for b in run.batches if b.images}
    return {c.key: per_image.get(c.batch, 0.0) for c in run.cases}


# The suite that comes first: one test case per root cause.
ROOT_CAUSES = "root causes"


def _cause_case(n: int, cause: RootCause,
                report_dir: Path | None) -> tuple[str, float, ET.Element | None, str]:
    """A root cause as a test case: a <failure> when new (its verdict as
    the message; the details and the commands as the text), an <error>
    for a crash, passed with the baseline ids in <system-out> when known."""
    lines = [cause.verdict, *cause.detail]
    if cause.shrink is not None and cause.shrink.field:
        lines.append(f"localized: {cause.shrink.level_text}: {cause.shrink.field}")
    lines += [f"{what}: {cmd}" for what, cmd in commands(cause, report_dir)]
    if cause.kind is CauseKind.CONFIGURATION:
        lines.append(f"the reference expected: {expected_summary(cause)}")
    else:
        lines += [f"family: {family_line(f)}" for f in cause.families[:MAX_JUNIT_DIVERGENCES]]
    name = f"{n}. {cause.title}"
    if cause.kind is CauseKind.CRASH:
        el = ET.Element("error", message=cause.verdict, type="crash")
    elif cause.is_new:
        el = ET.Element("failure", message=cause.verdict, type="new root cause")
    else:
        return name, 0.0, None, f"known: {', '.join(cause.known_ids)}\n" + "\n".join(lines)
    el.text = "\n".join(lines)
    return name, 0.0, el, ""


def junit_tree(run: RunData, timings: bool = False,
               report_dir: Path | None = None) -> ET.ElementTree:
    """The JUnit document: <testsuites> with one <testsuite> per group and
    one <testcase> per entry (classname = group, name = entry).  An entry
    with new divergences has a <failure>; a timeout, crash or guest error
    an <error>; an entry not (fully) run is <skipped>.  Known divergences
    are listed in <system-out>.  Harness errors form a suite of their own;
    the root causes come first, in a suite of their own (one test case
    each).  In a run over several QEMUs an entry has a test case per QEMU
    ("ENTRY [label]").
    ``timings``: fill ``time`` from batch elapsed times (otherwise 0, so
    that the file depends only on the results)."""
    seconds = _case_seconds(run) if timings else {}
    root = ET.Element("testsuites", name="s2diff")
    suites: list[tuple[str, list[tuple[str, float, ET.Element | None, str]]]] = []
    causes = root_causes(run)
    if causes:
        suites.append((ROOT_CAUSES, [_cause_case(n, c, report_dir)
                                     for n, c in enumerate(causes, 1)]))
    if run.info.coverage != "all batches":
        # A partial run (budget, interrupt, missing shards) says so here too.
        props = ET.SubElement(root, "properties")
        ET.SubElement(props, "property", name="coverage", value=run.info.coverage)
    by_group: dict[str, list[EntryResult]] = collections.defaultdict(list)
    results = entry_results(run)
    for e in results:
        by_group[e.group].append(e)
    # A run over several QEMUs names each entry's build; a one-QEMU run
    # (whose records carry its label too) keeps the plain entry names.
    several = len({e.qemu for e in results}) > 1
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
            cases.append((e.entry + (f" [{e.qemu}]" if several and e.qemu else ""), t, outcome,
                          "\n".join(known)))
        suites.append((group, cases))
    # Per (entry, QEMU): in a run over several QEMUs an entry that ran on
    # one and not on another is skipped for the other.
    pairs = never_run_pairs(run)
    labelled = len(run.qemus) > 1
    never = sorted({(n.entry, n.qemu, n.reason) for e in run.ends for n in e.entries_not_run
                    if (n.entry, n.qemu if labelled else "") in pairs})
    if never:
        # Entries of which no case ran (on that QEMU; the end records): a
        # test case each, skipped with the reason, so that CI counts them.
        suites.append(("not run", [
            (entry + (f" [{qemu}]" if labelled and qemu else ""), 0.0,
             ET.Element("skipped", message=f"{reason}" + (f" (QEMU {qemu})" if qemu else "")), "")
            for entry, qemu, reason in never]))
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
    root = junit_tree(run, timings, p.parent).getroot()
    assert root is not None
    text = ET.tostring(root, encoding="unicode")
    # A lone surrogate (an undecodable byte json.dumps escaped in a record)
    # has no UTF-8 form: it is written as a backslash escape.
    p.write_text("<?xml version='1.0' encoding='utf-8'?>\n" + text, encoding="utf-8",
                 errors="backslashreplace")
    return p


