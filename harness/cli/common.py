"""What every subcommand of the command line shares: the outcome of a
subcommand and its exit code (the one table of exit codes), the streams it
writes to, how it is registered, and the argument value parsers.
"""
from __future__ import annotations

import argparse
import dataclasses
import enum
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from reference.arch import Arch, Granule

from ..debug.bisect import Abort
from ..errors import InfrastructureError, S2DiffError, UsageError
from ..qemu.builds import QemuBuild, default_build, label_builds, resolve
from ..qemu.launcher import find_qemu, qemu_cpus

PROG = "s2diff"


class Outcome(enum.Enum):
    """How a subcommand ended; EXIT_CODES gives its exit status."""

    OK = "ok"
    FOUND = "found"                     # the thing checked is not right: a new divergence, an
    #                                     invalid configuration, a case that still fails
    BAD_INPUT = "bad input"             # bad usage or input: one line on stderr
    INFRASTRUCTURE = "infrastructure"   # QEMU or the toolchain missing or failing
    INTERNAL_ERROR = "internal error"   # a bug in s2diff (with a traceback)
    INTERRUPTED = "interrupted"
    # `git bisect run`'s convention (s2diff bisect)
    BISECT_GOOD = "bisect good"
    BISECT_BAD = "bisect bad"
    BISECT_SKIP = "bisect skip"         # this commit cannot be tested
    BISECT_ABORT = "bisect abort"       # stop the bisection


EXIT_CODES: dict[Outcome, int] = {
    Outcome.OK: 0, Outcome.FOUND: 1, Outcome.BAD_INPUT: 2, Outcome.INFRASTRUCTURE: 3,
    Outcome.INTERNAL_ERROR: 3, Outcome.INTERRUPTED: 130,
    Outcome.BISECT_GOOD: 0, Outcome.BISECT_BAD: 1, Outcome.BISECT_SKIP: 125,
    Outcome.BISECT_ABORT: 128,
}


def error_outcome(exc: S2DiffError) -> Outcome:
    """The outcome of a subcommand that raised ``exc``."""
    if isinstance(exc, Abort):
        return Outcome.BISECT_ABORT
    if isinstance(exc, UsageError):
        return Outcome.BAD_INPUT
    if isinstance(exc, InfrastructureError):
        return Outcome.INFRASTRUCTURE
    return Outcome.INFRASTRUCTURE


@dataclasses.dataclass(frozen=True)
class Streams:
    """Where a subcommand writes; ``tty`` says whether ``out`` is a terminal."""

    out: TextIO
    err: TextIO
    tty: bool

    def note(self, text: str) -> None:
        print(f"note: {text}", file=self.err)


@dataclasses.dataclass(frozen=True)
class Subcommand:
    """One subcommand: its arguments (``configure``) and what it does
    (``run``).  ``usage_error``: the outcome of a bad command line (bisect
    must stop `git bisect run` rather than mark the commit bad)."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Streams], Outcome]
    epilog: str | None = None
    usage_error: Outcome = Outcome.BAD_INPUT


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage
    and exiting, so that main() reports every bad argument as one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# ---------------------------------------------------------------------------
# Argument value parsers (argparse prefixes "argument --NAME: ")
# ---------------------------------------------------------------------------

# IPA sizes --ipa accepts: the AArch32 minimum (T0SZ = 7) to the AArch64
# maximum (52 bits with FEAT_LPA/LPA2).
IPA_RANGE = (25, 52)


def _items(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty item in {text!r} (give a comma-separated "
                                         f"list of {what})")
    return items


def ipa_list(text: str) -> list[int]:
    """Comma-separated IPA sizes in bits, each in IPA_RANGE."""
    sizes = []
    for item in _items(text, "IPA sizes in bits, e.g. 36,40,48"):
        try:
            size = int(item, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not an IPA size in bits (e.g. 36,40,48)") from None
        if not IPA_RANGE[0] <= size <= IPA_RANGE[1]:
            raise argparse.ArgumentTypeError(
                f"{size} is out of range (allowed {IPA_RANGE[0]}..{IPA_RANGE[1]})")
        sizes.append(size)
    return sizes


def granule_list(text: str) -> list[Granule]:
    """Comma-separated granules: 4k, 16k, 64k."""
    try:
        return [Granule.from_label(item) for item in _items(text, "granules: 4k, 16k, 64k")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def name_list(text: str) -> list[str]:
    return _items(text, "CPU model names")


def hex_value(text: str) -> int:
    """A register value in hexadecimal, with or without 0x; '_' may group digits."""
    try:
        value = int(text.strip(), 16)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a hexadecimal number (e.g. 0x80023558)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative (give the register value)")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def seconds(text: str) -> float:
    """A positive number of seconds ('inf': no limit; not 'nan')."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number of seconds")
    return value


def positive(text: str) -> float:
    """A number of seconds above 0 (the debugging subcommands' timeouts)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


# ---------------------------------------------------------------------------
# Arguments several subcommands take
# ---------------------------------------------------------------------------

def qemu_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--qemu-aarch64", metavar="PATH",
                   help="qemu-system-aarch64 to use (default: $S2DIFF_QEMU_AARCH64, then PATH)")
    p.add_argument("--qemu-arm", metavar="PATH",
                   help="qemu-system-arm to use (default: $S2DIFF_QEMU_ARM, then PATH)")


def multi_qemu_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--qemu", action="append", metavar="PATH",
                   help="a QEMU build to run on, repeatable (every batch runs on each): a "
                        "folder holding qemu-system-aarch64 and/or qemu-system-arm (a bin or a "
                        "QEMU build folder), a launcher, or a cached suite (s2diff qemu list); "
                        "default: --qemu-aarch64/--qemu-arm, $S2DIFF_QEMU_*, then PATH")


def qemu_builds_of(args: argparse.Namespace, arches: Sequence[Arch]) -> list[QemuBuild]:
    """The QEMU builds a command runs on: each ``--qemu`` (labelled apart),
    else one build of --qemu-aarch64/--qemu-arm, $S2DIFF_QEMU_*, PATH."""
    specs = getattr(args, "qemu", None) or []
    if specs and (args.qemu_aarch64 or args.qemu_arm):
        raise UsageError("give --qemu, or --qemu-aarch64/--qemu-arm, not both")
    if specs:
        return label_builds([resolve(spec) for spec in specs])
    return [default_build({Arch.AARCH64: args.qemu_aarch64, Arch.AARCH32: args.qemu_arm},
                          arches)]


def builds_cpus(builds: Sequence[QemuBuild], arches: Sequence[Arch]
                ) -> dict[Arch, frozenset[str]]:
    """The -cpu names any of ``builds`` offers, per architecture: the
    matrix holds a CPU model when some QEMU of the run can run it."""
    out: dict[Arch, frozenset[str]] = {}
    for arch in arches:
        names: set[str] = set()
        for b in builds:
            if arch in b.paths:
                names |= qemu_cpus(b.paths[arch])
        out[arch] = frozenset(names)
    return out


def qemu_for(args: argparse.Namespace, arch: Arch) -> str | None:
    value: str | None = args.qemu_aarch64 if arch is Arch.AARCH64 else args.qemu_arm
    return value


def available_cpus(args: argparse.Namespace, arch: Arch | None) -> dict[Arch, frozenset[str]]:
    """The -cpu names of the QEMU a command will use, for each architecture
    it may run (``arch`` None: both).  A missing QEMU raises ToolMissing."""
    arches = [arch] if arch else [Arch.AARCH64, Arch.AARCH32]
    return {a: qemu_cpus(find_qemu(a, qemu_for(args, a))) for a in arches}


def baseline_arguments(p: argparse.ArgumentParser) -> None:
    base = p.add_mutually_exclusive_group()
    base.add_argument("--baseline", type=Path, metavar="FILE",
                      help="known-divergence baseline (default: baseline.toml of the repository)")
    base.add_argument("--no-baseline", action="store_true", help="report every divergence as new")
