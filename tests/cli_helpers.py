"""Helpers for tests that drive the s2diff command line in-process: the
exit status and standard output of a command, and the records of a run's
results file by type (docs/results.md)."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from harness.cli import main


def s2diff(*args: object) -> tuple[int, str]:
    """Run ``s2diff ARGS`` in this process: (exit status, stdout);
    stderr is swallowed."""
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        code = main([str(a) for a in args])
    return code, out.getvalue()


def records(out: Path, kind: str) -> list[dict]:
    """The records of OUT/results.jsonl whose type is ``kind``."""
    lines = (out / "results.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]
