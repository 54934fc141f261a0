"""Live progress of a run: a rich progress bar with counts on a terminal,
nothing otherwise (CI logs stay readable)."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
    TimeElapsedColumn


class Progress:
    """Feeds on the run's records (harness.run.run_matrix callbacks)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.counts = {"cases": 0, "probes": 0, "passed": 0, "known": 0, "new": 0}
        self._bar: RichProgress | None = None
        self._task = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            self._bar = RichProgress(TextColumn("[bold]s2diff run"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("{task.description}"),
                                     TimeElapsedColumn(), console=Console(stderr=True),
                                     transient=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def start(self, header: dict[str, Any]) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("", total=header.get("cases", 0))

    def update(self, records: list[dict[str, Any]]) -> None:
        for rec in records:
            kind = rec.get("type")
            if kind == "case":
                self.counts["cases"] += 1
                self.counts["probes"] += rec.get("probes", 0)
                self.counts["passed"] += rec.get("passed", 0)
            elif kind == "divergence":
                self.counts["known" if rec.get("known") else "new"] += 1
        if self._bar is not None and self._task is not None:
            c = self.counts
            self._bar.update(self._task, completed=c["cases"],
                             description=f"probes {c['probes']}  passed {c['passed']}  "
                                         f"known {c['known']}  new {c['new']}")
