"""The ``s2diff`` command line: thin over the library.  Each subcommand
parses its arguments, calls library functions and returns an Outcome;
``main`` (harness.cli.main) turns outcomes and errors into exit codes in
one place (harness.cli.common.EXIT_CODES).

Importing the subcommands takes a second or two on a busy machine.  A
Ctrl-C or SIGTERM meanwhile ends the command at once, like one later does
(one line, exit 130): nothing has started that needs stopping, and an
exception raised inside a library's import could be swallowed by its own
`except:` and lost."""
from __future__ import annotations

import os as _os
import signal as _signal
import threading as _threading
from types import FrameType as _FrameType


def _interrupted(signum: int, frame: _FrameType | None) -> None:
    _os.write(2, b"s2diff: interrupted\n")
    _os._exit(130)


_SIGNALS = (_signal.SIGINT, _signal.SIGTERM)
_held = _threading.current_thread() is _threading.main_thread()
_previous = [_signal.signal(s, _interrupted) for s in _SIGNALS] if _held else []

from .common import Streams  # noqa: E402  (after the handlers, on purpose)
from .main import main  # noqa: E402

for _sig, _handler in zip(_SIGNALS, _previous):
    _signal.signal(_sig, _handler)

__all__ = ["Streams", "main"]
