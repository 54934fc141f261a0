"""The ``s2diff`` entry point: the subcommands, registered explicitly,
parsed, run, and their outcome turned into an exit status
(common.EXIT_CODES, the one table of exit codes).

Only the CLI prints and chooses exit codes:

    0 success · 1 the thing checked is not right (a new divergence; for
    ``configs --vtcr``, an invalid configuration) · 2 bad usage or input
    (one line on stderr) · 3 infrastructure failure, or an internal error
    (then with a traceback: that is a bug in s2diff) · 130 interrupted ·
    bisect: git's 0 good, 1 bad, 125 untestable, 128 abort.

Add a subcommand by listing its Subcommand in a module's COMMANDS and that
module in SUBCOMMANDS below.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from ..errors import S2DiffError
from . import bench, cases, configs, coverage, debug, qemu, report, run
from .common import EXIT_CODES, PROG, Outcome, Parser, Streams, Subcommand, error_outcome

SUBCOMMANDS: tuple[Subcommand, ...] = (
    *configs.COMMANDS, *cases.COMMANDS, *run.COMMANDS, *report.COMMANDS, *debug.COMMANDS,
    *bench.COMMANDS, *qemu.COMMANDS, *coverage.COMMANDS,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Differential tester of ARM stage-2 translation "
                    "(IPA -> PA): an architectural reference model against QEMU.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for sc in SUBCOMMANDS:
        sub = commands.add_parser(sc.name, help=sc.help, description=sc.help, epilog=sc.epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sc.configure(sub)
        sub.set_defaults(_subcommand=sc)
    return parser


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _outcome(argv: list[str], streams: Streams) -> Outcome:
    """Parse and run; every way a subcommand can end, as an Outcome."""
    chosen = next((sc for sc in SUBCOMMANDS if argv[:1] == [sc.name]), None)
    try:
        args = build_parser().parse_args(argv)
        subcommand: Subcommand = args._subcommand
        return subcommand.run(args, streams)
    except S2DiffError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        outcome = error_outcome(exc)
        if outcome is Outcome.BAD_INPUT and chosen is not None:
            # Under `git bisect run`, exit 2 would mark the commit bad; a
            # command line that cannot work must stop the bisection.
            return chosen.usage_error
        return outcome
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return Outcome.INTERRUPTED


def _sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring).
    SIGTERM ends a subcommand as Ctrl-C does (exit 130), from the start."""
    streams = Streams(out=sys.stdout, err=sys.stderr, tty=sys.stdout.isatty())
    argv_list = list(sys.argv[1:] if argv is None else argv)
    held = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _sigterm) if held else None
    try:
        return EXIT_CODES[_outcome(argv_list, streams)]
    except SystemExit as exc:       # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_CODES[Outcome.OK]
    except Exception:
        traceback.print_exc()
        print(f"{PROG}: internal error (a bug in s2diff; the traceback is above)", file=sys.stderr)
        chosen = next((sc for sc in SUBCOMMANDS if argv_list[:1] == [sc.name]), None)
        if chosen is not None and chosen.usage_error is not Outcome.BAD_INPUT:
            # Under `git bisect run` (s2diff bisect) an exit of 3 would mark
            # the commit bad: a bug of s2diff must stop the bisection.
            return EXIT_CODES[chosen.usage_error]
        return EXIT_CODES[Outcome.INTERNAL_ERROR]
    finally:
        if held:
            signal.signal(signal.SIGTERM, previous)
