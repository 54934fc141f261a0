"""`s2diff bisect`: one step of `git bisect run` over QEMU versions.

At each step the driver gets the QEMU binaries of the commit checked out
(built from a source tree, or named by a command), runs the case files in
them and says, with git's exit-code convention, whether the commit is good
(0: QEMU agrees with the reference on every case), bad (1: a case diverges
as recorded, or crashes/hangs as its ``expect`` key records) or untestable
(125: the build failed, the binaries are missing, QEMU does not start, or a
case fails in some other way).  Trouble that is not the commit's (a bad
case file, a missing cross toolchain) aborts the bisection: exit 128, which
`git bisect run` treats as "stop".

Where the binaries come from:

* ``--qemu-src DIR [--build-dir BUILD]``: configure (once per build
  directory: ``DIR/configure --target-list=aarch64-softmmu,arm-softmmu``
  with DEFAULT_CONFIGURE_ARGS, run in BUILD) and build incrementally with
  ``ninja -C BUILD qemu-system-aarch64 qemu-system-arm`` (``make``
  for trees older than QEMU 5.2 whose configure writes a Makefile).  The
  binaries are BUILD/qemu-system-aarch64 and BUILD/qemu-system-arm (or
  BUILD/<target>/qemu-system-* in old trees).
* ``--qemu-cmd COMMAND``: COMMAND (split like a shell would, never run by
  one) is either the path of a qemu-system-aarch64 / qemu-system-arm
  binary or script, or a program run in the current directory (the work
  tree `git bisect run` is in) that prints the binaries, one per line, as
  ``PATH`` (the architecture from the file name) or ``aarch64=PATH`` /
  ``arm=PATH``.  Relative paths are taken from the current directory.  A
  non-zero exit status of COMMAND means untestable.
"""
from __future__ import annotations

import dataclasses
import enum
import os
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

from reference.arch import Arch
from reference.casefmt import CaseFormatError, case_from_data

from ..casefile import load_case_data
from ..errors import QemuError, UsageError
from ..judge.case import judge_case
from ..qemu.launcher import qemu_version
from ..qemu.signature import _ASSERTION, dying_line, normalise
from ..single import run_case
from .isolate import ReproVerdict, parse_expect, repro_crash


class BisectVerdict(enum.Enum):
    """A commit for `git bisect run` (the CLI gives each its exit status)."""

    GOOD = "good"
    BAD = "bad"
    UNTESTABLE = "untestable"


GOOD, BAD, UNTESTABLE = BisectVerdict.GOOD, BisectVerdict.BAD, BisectVerdict.UNTESTABLE
TARGETS = "aarch64-softmmu,arm-softmmu"
BINARIES = {Arch.AARCH64: "qemu-system-aarch64", Arch.AARCH32: "qemu-system-arm"}
LOG_TAIL = 30           # lines of a failing build step's output shown
# Given to configure unless the user gives the same option either way
# (--enable-docs overrides --disable-docs) or the tree's configure does not
# know it (--disable-download is 8.0's): no docs, no tools, warnings not
# errors (an old commit with today's compiler must still build) and no
# downloads (configure must not depend on the network, step after step).
DEFAULT_CONFIGURE_ARGS = ("--disable-docs", "--disable-tools", "--disable-werror",
                          "--disable-download")
# What configure (QEMU's own check, or meson's wrap code) prints when a meson
# subproject is missing and may not or cannot be downloaded.  The bisection
# cannot go on until the user puts them in place: not the commit's fault.
MISSING_SUBPROJECT = re.compile(
    r"ERROR: missing subprojects|Automatic wrap-based subproject downloading is disabled"
    r"|Neither a subproject directory nor a \S+ file was found"
    r"|Subproject exists but has no meson\.build file"
    r"|is the internet available\?")


class Untestable(Exception):
    """This commit cannot be tested (exit 125); the message says why."""


class Abort(UsageError):
    """The bisection itself is misconfigured (exit 128: git bisect stops)."""


@dataclasses.dataclass(frozen=True)
class CaseVerdict:
    path: Path
    code: BisectVerdict
    text: str


# ---------------------------------------------------------------------------
# Getting the binaries
# ---------------------------------------------------------------------------

def _tail(text: str, lines: int = LOG_TAIL) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _step(argv: Sequence[str], cwd: Path, what: str, log: Callable[[str], None],
          src: Path | None = None) -> None:
    log(f"{what}: {shlex.join(argv)}  (in {cwd})")
    started = time.monotonic()
    try:
        proc = subprocess.run(list(argv), cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", check=False)
    except OSError as exc:
        raise Untestable(f"{what} could not start: {exc}") from None
    missing = MISSING_SUBPROJECT.search(proc.stdout) if proc.returncode != 0 else None
    if missing is not None:
        raise Abort(f"{what} failed: {missing.group(0)!r}: QEMU's meson subprojects are missing "
                    f"and are not downloaded; put them in {src or '.'}/subprojects (`meson "
                    "subprojects download` there, or from their git mirrors: docs/debugging.md), "
                    "or give --configure-arg=--enable-download where the network is reachable")
    if proc.returncode != 0:
        raise Untestable(f"{what} failed (exit status {proc.returncode}); last lines:\n"
                         f"{_tail(proc.stdout)}")
    log(f"{what}: ok ({time.monotonic() - started:.1f} s)")


def build_qemu(src: Path, build_dir: Path, *, jobs: int | None = None,
               configure_args: Sequence[str] = (),
               log: Callable[[str], None] = lambda _: None) -> dict[Arch, Path]:
    """Configure (if the build directory has not been) and build QEMU's
    aarch64-softmmu and arm-softmmu targets; the binaries built."""
    src, build_dir = src.resolve(), build_dir.resolve()
    configure = src / "configure"
    if not configure.is_file():
        raise Untestable(f"{configure} does not exist at this commit")
    build_dir.mkdir(parents=True, exist_ok=True)
    if not (build_dir / "build.ninja").exists() and not (build_dir / "Makefile").exists():
        _step([str(configure), f"--target-list={TARGETS}",
               *default_configure_args(src, configure_args), *configure_args], build_dir,
              "configure", log, src)
    if (build_dir / "build.ninja").exists():
        # Only the two emulators: a whole tree takes twice as long, and
        # parts of it (tests/fp's softfloat subprojects) may not build
        # where the emulators do, which made every step untestable.
        argv = ["ninja", "-C", str(build_dir)] + ([f"-j{jobs}"] if jobs else [])
        argv += emulator_targets(build_dir / "build.ninja")
    elif (build_dir / "Makefile").exists():
        argv = ["make", "-C", str(build_dir), f"-j{jobs or os.cpu_count() or 1}"]
    else:
        raise Untestable("configure wrote neither build.ninja nor a Makefile")
    _step(argv, build_dir, "build", log, src)
    found = {}
    for arch, name in BINARIES.items():
        for candidate in (build_dir / name, build_dir / arch_target(arch) / name):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found[arch] = candidate
                break
    if not found:
        raise Untestable(f"the build produced no {' or '.join(BINARIES.values())} in {build_dir}")
    return found


def _option_name(arg: str) -> str | None:
    """``docs`` for --enable-docs, --disable-docs, --enable-docs=...; None
    for anything else."""
    m = re.match(r"--(?:enable|disable)-([\w-]+)(?:=|$)", arg)
    return m.group(1) if m else None


def default_configure_args(src: Path, user_args: Sequence[str] = ()) -> list[str]:
    """DEFAULT_CONFIGURE_ARGS that the tree's configure knows (a case label
    ``--disable-docs)`` in configure or, for meson options, in
    scripts/meson-buildoptions.sh) and the user does not give either way."""
    known = ""
    for name in ("configure", "scripts/meson-buildoptions.sh"):
        try:
            known += (src / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            pass
    given = {_option_name(a) for a in user_args} - {None}
    return [arg for arg in DEFAULT_CONFIGURE_ARGS
            if _option_name(arg) not in given
            and re.search(rf"^\s*{re.escape(arg)}\)", known, re.MULTILINE)]


def emulator_targets(ninja_file: Path) -> list[str]:
    """The qemu-system-aarch64 / qemu-system-arm targets build.ninja
    defines (meson trees: 5.2 and later); none (build everything) when it
    defines neither."""
    try:
        text = ninja_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [name for name in BINARIES.values()
            if re.search(rf"^build {re.escape(name)}(?:\s|:)", text, re.MULTILINE)]


def arch_target(arch: Arch) -> str:
    return "aarch64-softmmu" if arch is Arch.AARCH64 else "arm-softmmu"


def _arch_of(name: str) -> Arch | None:
    if "aarch64" in name:
        return Arch.AARCH64
    if name.startswith("qemu-system-arm") or name == "arm":
        return Arch.AARCH32
    return None


def qemu_from_command(command: str, cwd: Path,
                      log: Callable[[str], None] = lambda _: None) -> dict[Arch, Path]:
    """The binaries ``--qemu-cmd COMMAND`` names (see the module docstring)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise Abort(f"--qemu-cmd: {exc}") from None
    if not argv:
        raise Abort("--qemu-cmd: empty command")
    direct = cwd / argv[0]
    arch = _arch_of(Path(argv[0]).name)
    if len(argv) == 1 and arch is not None and Path(argv[0]).name.startswith("qemu-system-"):
        if not direct.is_file():
            raise Untestable(f"{argv[0]} does not exist at this commit")
        log(f"QEMU: {direct} (given by --qemu-cmd)")
        return {arch: direct.resolve()}
    log(f"--qemu-cmd: {shlex.join(argv)}  (in {cwd})")
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace",
                              check=False)
    except OSError as exc:
        raise Untestable(f"--qemu-cmd could not start: {exc}") from None
    if proc.returncode != 0:
        raise Untestable(f"--qemu-cmd exited with status {proc.returncode}:\n"
                         f"{_tail(proc.stderr or proc.stdout)}")
    found: dict[Arch, Path] = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        name, sep, path = line.partition("=")
        if sep and name in ("aarch64", "arm"):
            arch, text = Arch(name), path
        else:
            arch, text = _arch_of(Path(line).name), line
        if arch is None:
            raise Untestable(f"--qemu-cmd printed {line!r}: not ARCH=PATH and not a "
                             "qemu-system-aarch64 / qemu-system-arm path")
        binary = (cwd / text).resolve()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise Untestable(f"--qemu-cmd named {binary}, which is not an executable file")
        found[arch] = binary
    if not found:
        raise Untestable("--qemu-cmd printed no binary")
    return found


# ---------------------------------------------------------------------------
# Judging the cases
# ---------------------------------------------------------------------------

_SOURCE_PREFIX = re.compile(r"^\S+\.[ch]:N:\s*")


def dying_words(console: str) -> str:
    """The assertion or fatal error QEMU died with, normalised and without
    its source file and line (they move between commits: do_ats_write's
    assertion is in target/arm/helper.c in 9.2, tcg/cpregs-at.c in 10.2);
    "" when the console has none (a bare signal proves nothing either way)."""
    if not _ASSERTION.search(console):
        return ""
    return _SOURCE_PREFIX.sub("", normalise(dying_line(console)))


def _recorded(data: dict) -> set[tuple]:
    out = set()
    for d in data.get("divergence") or []:
        if isinstance(d, dict):
            out.add((d.get("probe"), d.get("kind"), tuple(d.get("expected") or ()),
                     d.get("observed")))
    return out


def judge_case_file(path: Path, binaries: dict[Arch, Path], *, timeout: float | None = None,
                    any_divergence: bool = False) -> CaseVerdict:
    """Run one case file in the binaries and judge it for git bisect.

    A case with ``divergence`` records is bad when one of them reproduces
    (same probe, kind, expected and observed labels); a divergence of
    another kind is untestable unless ``any_divergence``.  A case without
    records is bad on any divergence.  A crash/hang case (``expect``) is bad
    when it fails as recorded, good when it completes."""
    data = load_case_data(path)
    try:
        case = case_from_data(data)
    except CaseFormatError as exc:
        raise Abort(f"{path}: {exc}") from None
    expected = parse_expect(data)
    binary = binaries.get(case.cpu.arch)
    if binary is None:
        return CaseVerdict(path, UNTESTABLE, f"no {BINARIES[case.cpu.arch]} at this commit")
    try:
        if expected is not None:
            rep = repro_crash(case, expected, qemu=binary, timeout=timeout)
            exp = data.get("expect") or {}
            recorded_words = dying_words(str(exp.get("console") or exp.get("diagnostic") or ""))
            words = dying_words(rep.batch.console)
            if rep.verdict is ReproVerdict.REPRODUCES and recorded_words != words and recorded_words:
                # Another abort (another bug, or a broken commit) is not the
                # one bisected: a signal alone would call it bad.
                return CaseVerdict(path, UNTESTABLE, f"fails differently: {expected.describe()}"
                                   f" with {words or 'no assertion'!r} (recorded: "
                                   f"{recorded_words!r})")
            if rep.verdict is ReproVerdict.REPRODUCES:
                return CaseVerdict(path, BAD, f"fails as recorded: {expected.describe()}"
                                   + (f": {words}" if words else ""))
            if rep.verdict is ReproVerdict.COMPLETES:
                return CaseVerdict(path, GOOD, f"completes (recorded: {expected.describe()})")
            observed = rep.observed.describe() if rep.observed else "completes"
            return CaseVerdict(path, UNTESTABLE, f"fails differently: {observed} "
                               f"(recorded: {expected.describe()})")
        run = run_case(case, qemu=binary, timeout=timeout)
    except QemuError as exc:
        return CaseVerdict(path, UNTESTABLE, f"QEMU does not run: {exc}\n{_tail(exc.output, 10)}")
    if not run.complete:
        return CaseVerdict(path, UNTESTABLE, f"QEMU did not complete the case: "
                           f"{run.batch.status.value}: {run.batch.diagnostic.splitlines()[0]}")
    _, divergences = judge_case(case, run.batch.images[0])
    seen = {(d.probe, d.kind.value, d.expected, d.observed) for d in divergences}
    shown = "; ".join(f"probe {p}: expected {' | '.join(e)}, observed {o}" for p, _, e, o in
                      sorted(seen, key=lambda x: (x[0] is None, x[0] or 0)))
    recorded = _recorded(data)
    if not seen:
        return CaseVerdict(path, GOOD, f"agrees with the reference ({len(case.probes)} probes)")
    if recorded and seen & recorded:
        return CaseVerdict(path, BAD, f"diverges as recorded: {shown}")
    if not recorded or any_divergence:
        return CaseVerdict(path, BAD, f"diverges: {shown}")
    return CaseVerdict(path, UNTESTABLE, f"diverges, but not as recorded: {shown}")


def _commit(cwd: Path) -> str:
    try:
        proc = subprocess.run(["git", "log", "-1", "--format=%H %s"], cwd=cwd,
                              capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


@dataclasses.dataclass(frozen=True)
class BisectOptions:
    """What `s2diff bisect` was asked (see the module docstring)."""

    cases: tuple[Path, ...]
    qemu_src: Path | None = None
    build_dir: Path | None = None
    qemu_cmd: str | None = None
    jobs: int | None = None
    configure_args: tuple[str, ...] = ()
    timeout: float | None = None
    any_divergence: bool = False


@dataclasses.dataclass(frozen=True)
class BisectStep:
    """The verdict on the commit tested, and that commit ("HASH subject",
    "" outside a git work tree)."""

    verdict: BisectVerdict
    commit: str


def bisect_step(opts: BisectOptions, log: Callable[[str], None]) -> BisectStep:
    """One bisection step: get the binaries, judge every case: good, bad or
    untestable.  Abort for trouble that is not the commit's."""
    for path in opts.cases:
        if not path.is_file():
            raise Abort(f"{path}: no such case file (give case files outside the tree being "
                        "bisected, or by absolute path: checkouts change the tree)")
        data = load_case_data(path)
        try:
            case_from_data(data)
            parse_expect(data)
        except (CaseFormatError, UsageError) as exc:
            raise Abort(f"{path}: {exc}") from None
    cwd = Path.cwd()
    where = opts.qemu_src or cwd
    commit = _commit(where)
    log(f"commit: {commit or '(not a git work tree)'}")
    try:
        if opts.qemu_src is not None:
            build_dir = opts.build_dir or (opts.qemu_src / "build-s2diff")
            binaries = build_qemu(opts.qemu_src, build_dir, jobs=opts.jobs,
                                  configure_args=opts.configure_args, log=log)
        elif opts.qemu_cmd is not None:
            binaries = qemu_from_command(opts.qemu_cmd, cwd, log)
        else:
            raise Abort("give --qemu-src DIR or --qemu-cmd COMMAND")
        for arch, binary in sorted(binaries.items(), key=lambda kv: kv[0].value):
            try:
                version = qemu_version(binary)
            except QemuError as exc:
                raise Untestable(f"{binary} --version fails: {exc}") from None
            log(f"{BINARIES[arch]}: {binary}  ({version})")
    except Untestable as exc:
        log(f"untestable: {exc}")
        # Said without the commit, as the step has always said it.
        return BisectStep(UNTESTABLE, "")
    verdicts = []
    for path in opts.cases:
        v = judge_case_file(path, binaries, timeout=opts.timeout,
                            any_divergence=opts.any_divergence)
        word = {GOOD: "good", BAD: "BAD", UNTESTABLE: "untestable"}[v.code]
        log(f"{path}: {word}: {v.text}")
        verdicts.append(v)
    if any(v.code is BAD for v in verdicts):
        return BisectStep(BAD, commit)
    if any(v.code is UNTESTABLE for v in verdicts):
        return BisectStep(UNTESTABLE, commit)
    return BisectStep(GOOD, commit)
