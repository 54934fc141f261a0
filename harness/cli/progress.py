"""Live progress of a run: a rich progress bar with counts on a terminal;
elsewhere (a CI log, `| tee log`) one plain line every INTERVAL seconds --
batches, entries, probes, new and known, crashes, elapsed and an estimate
of what is left -- so that a log shows the run is alive and how far it is."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from ..records import BatchRecord, CaseRecord, CrashRecord, DivergenceRecord, Record, RunHeader
from ..vocabulary import DivergenceKind

# Seconds between two progress lines without a terminal.
INTERVAL = 10.0


def clock(seconds: float) -> str:
    """'1:02:03' or '02:03'."""
    s = int(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02}:{s % 60:02}" if h else f"{m:02}:{s % 60:02}"


class Progress:
    """Feeds on the run's records (harness.run.run_matrix callbacks).
    ``enabled``: a terminal (the bar); otherwise lines to ``out``."""

    def __init__(self, enabled: bool, out: TextIO | None = None,
                 interval: float = INTERVAL, budget: float | None = None) -> None:
        self.enabled = enabled
        self.out = out
        self.interval = interval
        self.budget = budget
        self.counts = {"batches": 0, "cases": 0, "probes": 0, "passed": 0, "known": 0, "new": 0,
                       "crashes": 0}
        self.entries: set[tuple[str, str]] = set()
        self.total_batches = 0
        self.total_entries = 0
        self._resumed = 0
        self._started = time.monotonic()
        self._last = self._started
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._running = False

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
        """The run starts (records of a resumed run's finished batches
        have been fed already: they are not in the estimate)."""
        self._resumed = self.counts["batches"]
        self._running = True
        self.total_batches = header.batches or 0
        self.total_entries = (header.entries or 0) * max(len(header.qemus), 1)
        self._started = self._last = time.monotonic()
        if self._bar is not None:
            self._task = self._bar.add_task("", total=header.cases or 0)

    def update(self, records: list[Record]) -> None:
        c = self.counts
        for rec in records:
            if isinstance(rec, BatchRecord):
                c["batches"] += 1
            elif isinstance(rec, CaseRecord):
                c["cases"] += 1
                c["probes"] += rec.probes
                c["passed"] += rec.passed
                self.entries.add((rec.entry, rec.qemu))
            elif isinstance(rec, DivergenceRecord) and rec.kind is DivergenceKind.PROBE:
                # In probes, as the summary counts them (a fan-out record
                # stands for ``count``); descriptor writes are not probes.
                c["known" if rec.known else "new"] += rec.count
            elif isinstance(rec, CrashRecord):
                c["crashes"] += 1
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=c["cases"],
                             description=f"| probes: {c['probes']:,} passed "
                                         f"{c['passed']:,} known {c['known']:,} new {c['new']:,}")
        elif not self.enabled and self.out is not None and self._running:
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                print(self.line(now), file=self.out, flush=True)

    def line(self, now: float | None = None) -> str:
        """One progress line: counts, elapsed, and the time left estimated
        from the batches done in this process (and cut at the budget)."""
        now = time.monotonic() if now is None else now
        c = self.counts
        elapsed = now - self._started
        done = c["batches"] - self._resumed
        left_batches = max(self.total_batches - c["batches"], 0)
        eta = ""
        if done and left_batches:
            left = elapsed / done * left_batches
            if self.budget is not None:
                left = min(left, max(self.budget - elapsed, 0.0))
            eta = f", about {clock(left)} left"
        crashes = f", {c['crashes']} crashes" if c["crashes"] else ""
        return (f"progress: {c['batches']}/{self.total_batches} batches, "
                f"{len(self.entries)}/{self.total_entries} entries, {c['probes']:,} probes, "
                f"{c['new']:,} new, {c['known']:,} known{crashes}, "
                f"{clock(elapsed)} elapsed{eta}")


class Heartbeat:
    """Progress of a step-wise command (shrink, isolate) without a rich
    bar: a line as each stage starts, and between stages a line at most
    every ``interval`` s as work finishes (a QEMU boot), so that a CI log
    shows the command is alive and where it is.  ``clock`` is injectable
    (tests drive it; no timed assertions)."""

    def __init__(self, name: str, write: Callable[[str], None], interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._write = write
        self.interval = interval
        self._clock = clock
        self._started = self._last = clock()
        self._stage = ""

    def _emit(self, text: str) -> None:
        now = self._clock()
        self._last = now
        self._write(f"{self.name}: {clock(now - self._started)} {text}")

    def stage(self, text: str) -> None:
        """A stage starts: always a line."""
        self._stage = text
        self._emit(text)

    def tick(self, detail: str) -> None:
        """A unit of work finished: a line if ``interval`` s have passed
        since the last one."""
        if self._clock() - self._last >= self.interval:
            self._emit(f"{self._stage}: {detail}" if self._stage else detail)
