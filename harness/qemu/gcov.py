"""QEMU built from a source tree with gcov, and what its stage-2 walker
executed: the emulator side of ``s2diff coverage --qemu-src``.

A build is QEMU's own ``configure --enable-gcov`` for the two system
emulators the harness runs (aarch64-softmmu, arm-softmmu), in a build
folder cached per (source tree, commit): ``gcov-build.json`` in it records
what was built, so a second request for the same tree and commit reuses it
and a new commit gets a folder of its own.  The source tree must be
buildable offline (meson's wrap subprojects in place: ../shared/DESIGN.md,
"QEMU versions").

Counters accumulate in the ``.gcda`` files of the build folder each time an
emulator exits normally (QEMU's exit flushes them; a killed QEMU loses its
counts), so :func:`reset_counters` clears them before a measured run, and
:func:`measure` reads them with gcovr (``pip install gcovr``, the
``coverage`` extra) into line and branch counts per source file and the
branches never taken, each with its function.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Sequence

from reference.arch import Arch

from ..errors import BuildError, ToolMissing, UsageError
from .builds import EMULATORS, cache_root

STAMP = "gcov-build.json"
TARGETS = ("aarch64-softmmu", "arm-softmmu")
CONFIGURE = ("--target-list=" + ",".join(TARGETS), "--enable-gcov", "--disable-docs",
             "--disable-tools", "--disable-werror", "--disable-download")
# The files holding the stage-2 walker and the AT instructions.  The AT
# helpers moved from target/arm/helper.c to target/arm/tcg/cpregs-at.c in
# QEMU 10.0; whichever the tree has is measured.
WALKER = "target/arm/ptw.c"
AT_HELPERS = ("target/arm/tcg/cpregs-at.c", "target/arm/helper.c")
# The functions of ptw.c an A-profile AT with stage 2 can run (QEMU 8.x to
# 10.x names; those a tree lacks are left out): the LPAE walk (shared with
# stage 1), the stage-2 set-up and permission checks, the descriptor loads
# and updates, the two-stage driver.  The rest of the file is v5/v6
# short-descriptor, PMSA and M-profile code no stage-2 probe can reach.
STAGE2_FUNCTIONS = ("get_phys_addr_lpae", "check_s2_mmu_setup", "lpae_block_desc_valid",
                    "get_S2prot", "get_S2prot_indirect", "S2_attrs_are_device",
                    "ptw_idx_for_stage_2", "S1_ptw_translate", "arm_ldq_ptw", "arm_casq_ptw",
                    "get_phys_addr_twostage", "get_phys_addr_disabled", "get_phys_addr_for_at")


@dataclasses.dataclass(frozen=True)
class GcovBuild:
    """A gcov build: the source tree and its commit, the build folder and
    the two emulators in it."""

    src: Path
    commit: str
    build_dir: Path
    aarch64: Path
    arm: Path

    def qemu(self) -> dict[Arch, str]:
        return {Arch.AARCH64: str(self.aarch64), Arch.AARCH32: str(self.arm)}

    @property
    def measured_files(self) -> tuple[str, ...]:
        """The walker and the AT helper file this tree has."""
        helper = next((h for h in AT_HELPERS if (self.src / h).is_file()), AT_HELPERS[-1])
        return (WALKER, helper)


def source_commit(src: Path) -> str:
    """The commit the source tree has checked out (``git rev-parse HEAD``),
    with ``+dirty-HASH`` when tracked files differ from it (HASH of ``git
    diff HEAD``: a locally patched tree is another build); a tree that is
    not a git work tree is named by its VERSION file and a hash of its
    path, and is rebuilt only when that changes."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(src), *argv], check=True, capture_output=True,
                              text=True, timeout=120).stdout
    try:
        head = git("rev-parse", "HEAD").strip()
        diff = git("diff", "HEAD")
    except (OSError, subprocess.SubprocessError):
        version = (src / "VERSION").read_text(encoding="utf-8").strip()
        return f"v{version}-{hashlib.sha1(str(src).encode()).hexdigest()[:12]}"
    if diff:
        return f"{head}+dirty-{hashlib.sha1(diff.encode()).hexdigest()[:10]}"
    return head


def default_build_dir(src: Path, commit: str) -> Path:
    """``CACHE/gcov/<tree>-<commit>``: one folder per (source tree, commit)
    under the QEMU cache (harness.qemu.builds.cache_root)."""
    tree = hashlib.sha1(str(src).encode()).hexdigest()[:10]
    head, _, dirty = commit.partition("+")
    return cache_root().parent / "qemu-gcov" / f"{tree}-{head[:12]}{'+' + dirty if dirty else ''}"


def check_source(src: Path) -> Path:
    """``src`` resolved, or UsageError when it is no QEMU source tree."""
    src = src.expanduser().resolve()
    if not (src / "configure").is_file() or not (src / WALKER).is_file():
        raise UsageError(f"--qemu-src: {src} is not a QEMU source tree (no configure or {WALKER})")
    return src


def _stamp(build_dir: Path) -> dict:
    try:
        return json.loads((build_dir / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _emulators(build_dir: Path) -> tuple[Path, Path]:
    return build_dir / EMULATORS[Arch.AARCH64], build_dir / EMULATORS[Arch.AARCH32]


def _step(argv: Sequence[str], cwd: Path, log: Path, what: str) -> None:
    """Run one build step, its output appended to ``log``; BuildError with
    the log's tail when it fails."""
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        try:
            done = subprocess.run(list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise BuildError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise BuildError(f"{what} failed (exit {done.returncode}); the end of {log}:\n"
                         + "\n".join(tail))


def build(src: Path, build_dir: Path | None = None,
          note: Callable[[str], None] = lambda _: None) -> GcovBuild:
    """The gcov build of ``src`` (a QEMU source tree), made unless the
    build folder already holds one of the same tree and commit.  ``note``
    receives one line per step (the CLI prints them)."""
    src = check_source(src)
    commit = source_commit(src)
    build_dir = (build_dir or default_build_dir(src, commit)).expanduser().resolve()
    aarch64, arm = _emulators(build_dir)
    want = {"src": str(src), "commit": commit, "configure": list(CONFIGURE)}
    stamp = _stamp(build_dir)
    if {k: stamp.get(k) for k in want} == want and aarch64.is_file() and arm.is_file():
        note(f"gcov build of {src} at {commit[:12]} reused from {build_dir}")
        return GcovBuild(src, commit, build_dir, aarch64, arm)
    if stamp and stamp.get("src") != str(src):
        raise UsageError(f"--build-dir: {build_dir} holds a build of {stamp.get('src')}, "
                         f"not of {src}")
    for tool in ("ninja", "gcov"):
        if shutil.which(tool) is None:
            raise ToolMissing(f"{tool} not found (apt-get install ninja-build gcc)")
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "gcov-build.log"
    if not (build_dir / "build.ninja").is_file() or stamp.get("configure") != list(CONFIGURE):
        note(f"configuring {src} ({commit[:12]}) with gcov in {build_dir} (log: {log})")
        _step([str(src / "configure"), *CONFIGURE], build_dir, log, "configure")
    note(f"building {EMULATORS[Arch.AARCH64]} and {EMULATORS[Arch.AARCH32]} "
         f"(several minutes on 2 cores)")
    _step(["ninja", EMULATORS[Arch.AARCH64], EMULATORS[Arch.AARCH32]], build_dir, log, "ninja")
    (build_dir / STAMP).write_text(json.dumps(
        {**want, "built": datetime.datetime.now(datetime.timezone.utc).isoformat()}, indent=1)
        + "\n", encoding="utf-8")
    return GcovBuild(src, commit, build_dir, aarch64, arm)


def reset_counters(b: GcovBuild) -> int:
    """Delete every ``.gcda`` file of the build (the counters of earlier
    runs); returns how many there were."""
    n = 0
    for path in b.build_dir.rglob("*.gcda"):
        path.unlink()
        n += 1
    return n


# ---------------------------------------------------------------------------
# Reading the counters
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Branch:
    """One branch outcome of a source line that no run took: the line,
    the branch's index among the line's outcomes, and its function."""

    line: int
    index: int
    function: str


@dataclasses.dataclass(frozen=True)
class Counts:
    """Lines and branches, and how many of each ran."""

    lines: int = 0
    lines_covered: int = 0
    branches: int = 0
    branches_covered: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.lines + other.lines, self.lines_covered + other.lines_covered,
                      self.branches + other.branches,
                      self.branches_covered + other.branches_covered)

    def percent(self, what: str) -> float:
        total = self.lines if what == "lines" else self.branches
        done = self.lines_covered if what == "lines" else self.branches_covered
        return 100.0 * done / total if total else 0.0

    def describe(self) -> str:
        return (f"lines {self.lines_covered}/{self.lines} ({self.percent('lines'):.1f}%), "
                f"branches {self.branches_covered}/{self.branches} "
                f"({self.percent('branches'):.1f}%)")


@dataclasses.dataclass(frozen=True)
class FileCoverage:
    """Line and branch coverage of one source file (paths relative to the
    source tree), per function too, with every branch never taken."""

    path: str
    lines: int
    lines_covered: int
    branches: int
    branches_covered: int
    functions: dict[str, tuple[int, int]]      # name -> (first line, times called)
    untaken: tuple[Branch, ...]
    per_function: dict[str, Counts] = dataclasses.field(default_factory=dict)

    @property
    def counts(self) -> Counts:
        return Counts(self.lines, self.lines_covered, self.branches, self.branches_covered)

    def percent(self, what: str) -> float:
        return self.counts.percent(what)

    def subset(self, names: Sequence[str]) -> Counts:
        """The counts of the functions ``names`` (those the file has)."""
        out = Counts()
        for name in names:
            out = out + self.per_function.get(name, Counts())
        return out

    def to_json(self) -> dict:
        return {"path": self.path, "lines": self.lines, "lines_covered": self.lines_covered,
                "branches": self.branches, "branches_covered": self.branches_covered,
                "functions": {n: dataclasses.asdict(c) for n, c in self.per_function.items()},
                "untaken": [[b.line, b.index, b.function] for b in self.untaken]}


def _function_of(functions: dict[str, tuple[int, int]], line: int) -> str:
    """The function whose first line is the last one at or before ``line``."""
    best, best_line = "", -1
    for name, (first, _) in functions.items():
        if best_line < first <= line:
            best, best_line = name, first
    return best


def parse_gcovr_json(data: dict, paths: Sequence[str]) -> list[FileCoverage]:
    """The coverage of ``paths`` from gcovr's JSON report (format of gcovr
    7 and 8: files -> lines with count and branches, functions with
    lineno and execution_count).  A line gcovr marks as no code is not
    counted.  Pure: tested on a recorded report."""
    out = []
    for f in data.get("files", []):
        path = f.get("file", "")
        if path not in paths:
            continue
        functions: dict[str, tuple[int, int]] = {}
        for fn in f.get("functions", []):
            name = fn.get("demangled_name") or fn.get("name") or "?"
            first = fn.get("lineno", 0)
            prev = functions.get(name, (first, 0))
            functions[name] = (min(prev[0], first), prev[1] + int(fn.get("execution_count", 0)))
        lines = covered = branches = taken = 0
        untaken = []
        per: dict[str, list[int]] = {}
        for ln in f.get("lines", []):
            if ln.get("gcovr/noncode"):
                continue
            number = int(ln.get("line_number", 0))
            function = ln.get("function_name") or _function_of(functions, number)
            mine = per.setdefault(function, [0, 0, 0, 0])
            hit = int(ln.get("count", 0) > 0)
            lines += 1
            covered += hit
            mine[0] += 1
            mine[1] += hit
            for i, br in enumerate(ln.get("branches", [])):
                if br.get("throw"):
                    continue
                branches += 1
                mine[2] += 1
                if br.get("count", 0) > 0:
                    taken += 1
                    mine[3] += 1
                else:
                    untaken.append(Branch(number, i, function))
        out.append(FileCoverage(path, lines, covered, branches, taken, functions,
                                tuple(untaken), {n: Counts(*c) for n, c in per.items()}))
    return sorted(out, key=lambda c: paths.index(c.path))


def measure(b: GcovBuild) -> list[FileCoverage]:
    """Run gcovr over the build's counters for the walker and the AT
    helpers (both emulators' objects merged per source line)."""
    gcovr = shutil.which("gcovr")
    if gcovr is None:
        raise ToolMissing("gcovr not found (pip install gcovr, or the s2diff[coverage] extra)")
    paths = b.measured_files
    # Only the object folders that hold these files: gcovr would otherwise
    # run gcov over every object of QEMU.
    stems = {p.replace("/", "_") + ".gcda" for p in paths}
    folders = sorted({str(g.parent) for g in b.build_dir.rglob("*.gcda") if g.name in stems})
    if not folders:
        return [FileCoverage(p, 0, 0, 0, 0, {}, ()) for p in paths]
    report = b.build_dir / "gcovr.json"
    filters = [a for p in paths for a in ("--filter", os.path.join(str(b.src), p))]
    argv = [gcovr, "--root", str(b.src), "--object-directory", str(b.build_dir),
            *filters, "--json", str(report), "--json-pretty", *folders]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=b.build_dir)
    if done.returncode != 0:
        raise BuildError(f"gcovr failed (exit {done.returncode}): "
                         + " ".join(done.stderr.split()[-40:]))
    return parse_gcovr_json(json.loads(report.read_text(encoding="utf-8")), paths)
