"""Writing the reports of a run into a directory: summary.txt, junit.xml
and report.html (docs/reports.md says how to read them).  Nothing in a
report depends on wall-clock time, host paths or the order of the shard
directories (JUnit ``time`` attributes are 0 unless asked for)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .html import write_html
from .junit import write_junit
from .load import RunData
from .text import render_text


def write_reports(run: RunData, out_dir: Path | str, timings: bool = False) -> dict[str, Path]:
    """Write summary.txt, junit.xml and report.html into ``out_dir``
    (created if needed); returns {"summary": ..., "junit": ..., "html": ...}."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        summary = out / "summary.txt"
        summary.write_text(render_text(run, out), encoding="utf-8", errors="backslashreplace")
        return {"summary": summary,
                "junit": write_junit(run, out / "junit.xml", timings),
                "html": write_html(run, out / "report.html")}
    except OSError as exc:
        raise UsageError(f"cannot write reports to {out} ({exc.strerror or exc})") from None
