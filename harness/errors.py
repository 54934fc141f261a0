"""The harness's typed errors.  One root, so that only the CLI turns them
into a message and an exit code (harness.cli.common: a UsageError is bad
input, exit 2; an InfrastructureError, or any other S2DiffError, exit 3)."""
from __future__ import annotations


class S2DiffError(Exception):
    """Root of every error the harness raises on purpose."""


class UsageError(S2DiffError):
    """Bad command-line value or bad input file: one line, exit 2."""


class InfrastructureError(S2DiffError):
    """A tool the harness needs (QEMU, cross binutils) is missing or unusable: exit 3."""


class ToolMissing(InfrastructureError):
    """A required program is not installed; the message names the Debian package."""


class BuildError(InfrastructureError):
    """Assembling or linking a guest stub failed."""


class QemuError(InfrastructureError):
    """QEMU failed in a way not attributable to a case.

    Carries what is needed to reproduce it: argv, exit status, console output."""

    def __init__(self, message: str, *, argv: list[str] | None = None,
                 returncode: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.argv = list(argv or [])
        self.returncode = returncode
        self.output = output
