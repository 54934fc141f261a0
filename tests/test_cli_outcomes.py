"""The CLI's one table of exit codes (harness/cli/common.py): every
outcome has its documented status, every error class maps to one, and the
bisect subcommand turns a bad command line into git bisect's abort."""
from __future__ import annotations

import pytest

from harness.cli import main
from harness.cli.common import EXIT_CODES, Outcome, error_outcome
from harness.debug.bisect import Abort
from harness.debug.isolate import IsolateError
from harness.debug.lab import ShrinkError
from harness.errors import BuildError, QemuError, S2DiffError, ToolMissing, UsageError


def test_every_outcome_has_its_documented_exit_status():
    """DESIGN.md: 0 no new divergence, 1 new divergence, 2 bad input, 3
    infrastructure; 130 for Ctrl-C (128 + SIGINT); git bisect run's 0
    good, 1 bad, 125 untestable, 128 abort."""
    assert EXIT_CODES == {
        Outcome.OK: 0, Outcome.FOUND: 1, Outcome.BAD_INPUT: 2, Outcome.INFRASTRUCTURE: 3,
        Outcome.INTERNAL_ERROR: 3, Outcome.INTERRUPTED: 130, Outcome.BISECT_GOOD: 0,
        Outcome.BISECT_BAD: 1, Outcome.BISECT_SKIP: 125, Outcome.BISECT_ABORT: 128}


@pytest.mark.parametrize("error, outcome", [
    (UsageError("x"), Outcome.BAD_INPUT), (ShrinkError("x"), Outcome.BAD_INPUT),
    (IsolateError("x"), Outcome.BAD_INPUT), (Abort("x"), Outcome.BISECT_ABORT),
    (ToolMissing("x"), Outcome.INFRASTRUCTURE), (BuildError("x"), Outcome.INFRASTRUCTURE),
    (QemuError("x"), Outcome.INFRASTRUCTURE), (S2DiffError("x"), Outcome.INFRASTRUCTURE)])
def test_errors_map_to_outcomes(error, outcome):
    assert error_outcome(error) is outcome


def test_a_bad_command_line_stops_a_bisection_but_is_exit_2_elsewhere(capsys):
    """An unknown option is refused by the top-level parser, before the
    subcommand runs: still git bisect's abort for bisect."""
    assert main(["bisect", "--no-such-option", "x.json"]) == 128
    assert main(["walk", "--no-such-option", "x.json"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(e.startswith("s2diff: error: ") for e in err)
