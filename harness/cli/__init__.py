"""The ``s2diff`` command line: thin over the library.  Each subcommand
parses its arguments, calls library functions and returns an Outcome;
``main`` (harness.cli.main) turns outcomes and errors into exit codes in
one place (harness.cli.common.EXIT_CODES)."""
from __future__ import annotations

from .common import Streams
from .main import main

__all__ = ["Streams", "main"]
