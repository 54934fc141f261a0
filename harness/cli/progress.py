"""Live progress of a run: a rich progress bar with counts on a terminal,
nothing otherwise (CI logs stay readable)."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from ..records import CaseRecord, DivergenceRecord, Record, RunHeader
from ..vocabulary import DivergenceKind


class Progress:
    """Feeds on the run's records (harness.run.run_matrix callbacks)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.counts = {"cases": 0, "probes": 0, "passed": 0, "known": 0, "new": 0}
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self._bar = RichProgress(TextColumn("[bold]s2diff run"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("cases"),
                                     TextColumn("{task.description}"),
                                     TimeElapsedColumn(), console=Console(stderr=True),
                                     transient=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def start(self, header: RunHeader) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("", total=header.cases or 0)

    def update(self, records: list[Record]) -> None:
        for rec in records:
            if isinstance(rec, CaseRecord):
                self.counts["cases"] += 1
                self.counts["probes"] += rec.probes
                self.counts["passed"] += rec.passed
            elif isinstance(rec, DivergenceRecord) and rec.kind is DivergenceKind.PROBE:
                # In probes, as the summary counts them (a fan-out record
                # stands for ``count``); descriptor writes are not probes.
                self.counts["known" if rec.known else "new"] += rec.count
        if self._bar is not None and self._task is not None:
            c = self.counts
            self._bar.update(self._task, completed=c["cases"],
                             description=f"| probes: {c['probes']:,} passed "
                                         f"{c['passed']:,} known {c['known']:,} new {c['new']:,}")
