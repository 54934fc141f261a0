"""Crash signatures: what makes two QEMU crashes "the same crash".

A crash family is keyed by the line QEMU died with -- a failed assertion
(``file:line: function: Assertion `...' failed.``), glib's ``ERROR:`` /
``**`` lines, or else the last line of its console -- with the program
name dropped and hex addresses and numbers masked (line numbers move
between releases, addresses between runs), followed by how the process
ended.  Two builds of one release on two architectures
(qemu-system-aarch64, qemu-system-arm) that fail the same assertion give
the same signature.  Pure functions of the console text and the exit.
"""
from __future__ import annotations

import re
import signal as _signal

# The line QEMU dies with, most telling first.
_ASSERTION = re.compile(r"^.*(?:Assertion .* failed|assertion failed|code should not be reached"
                        r"|^\*\*\s*$|^\*\*.*ERROR|^ERROR:.*:\d+:|qemu: fatal:|"
                        r"qemu: hardware error).*$", re.MULTILINE | re.IGNORECASE)
_PROGRAM = re.compile(r"^\S*qemu-system-[\w-]+:\s*")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?![\w])")
# Lines the stub writes on the console (docs/job-abi.md): never QEMU's
# dying words.
_STUB = re.compile(r"^(INFO|PASS|FAIL|SKIP|SUMMARY|EXIT|FATAL):")
_SPACE = re.compile(r"\s+")


def signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# Where a C assertion names its source: what comes before it on the line is
# not QEMU's (a console line of the guest cut short by the abort).
_SOURCE = re.compile(r"(?:\S*qemu-system-[\w-]+:\s*)?\S+\.[ch]:\d+:.*$")


def dying_line(console: str) -> str:
    """The line QEMU died with: the last assertion or fatal-error line of
    the console (from the program name or the source file it names), else
    its last line that is not the stub's own ("" when there is none)."""
    found = _ASSERTION.findall(console)
    if found:
        line = found[-1].strip()
        source = _SOURCE.search(line)
        return source.group(0) if source else line
    lines = [ln.strip() for ln in console.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not _STUB.match(ln)]
    return lines[-1] if lines else ""


def normalise(line: str) -> str:
    """A console line without the program name, hex addresses as ADDR and
    other numbers as N (digits inside names, e.g. ``is_s2_format``, stay)."""
    text = _PROGRAM.sub("", line.strip())
    text = _HEX.sub("ADDR", text)
    text = _NUMBER.sub("N", text)
    return _SPACE.sub(" ", text)[:300]


def ending(signal: int | None, returncode: int | None, hang: bool = False) -> str:
    """How the process ended, as the signature's last word."""
    if hang:
        return "[hang]"
    if signal is not None:
        return f"[{signal_name(signal)}]"
    return f"[exit {returncode}]"


def crash_signature(console: str, signal: int | None, returncode: int | None,
                    hang: bool = False) -> str:
    """The family key of a crash or hang: the dying line normalised, then
    the ending (``... failed. [SIGABRT]``; ``[hang]`` alone for a hang,
    whose console says nothing about it)."""
    if hang:
        return ending(None, None, hang=True)
    line = normalise(dying_line(console))
    return f"{line} {ending(signal, returncode)}" if line else ending(signal, returncode)


def console_tail(console: str, lines: int = 10, limit: int = 2000) -> str:
    """The last ``lines`` lines of a console (at most ``limit`` characters)."""
    tail = "\n".join(console.rstrip().splitlines()[-lines:])
    return tail[-limit:]
