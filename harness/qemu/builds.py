"""QEMU builds other than the one on PATH: Debian's builds of other suites
brought into a cache folder, and ``--qemu PATH`` resolved to the two system
emulators it names.

A cached build is Debian's ``qemu-system-arm`` package of one suite
(bookworm, bookworm-backports, trixie, sid, ...) with the whole closure of
its libraries, downloaded by apt with a configuration of its own (its own
sources list, lists, cache and an *empty* dpkg status, so that apt fetches
every dependency and the system's installed packages are neither read nor
changed) and unpacked with ``dpkg -x`` into ``CACHE/SUITE/root``.  Launchers
in ``CACHE/SUITE/bin`` run each emulator with the suite's own dynamic loader
and libraries: a suite newer than the host needs its own C library, and the
loader must match the C library it loads, so every cached build uses its
own pair (for a suite no newer than the host the two are equal anyway).
The launcher ``exec``s the loader, which runs QEMU in the same process: the
harness's PID is QEMU's, so its timeouts and signals reach QEMU itself.

``CACHE/SUITE/build.json`` records what was fetched (suite, mirror, package
version, the emulators' version lines, when).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from reference.arch import Arch

from ..errors import InfrastructureError, ToolMissing, UsageError
from .launcher import find_qemu, qemu_version

EMULATORS = {Arch.AARCH64: "qemu-system-aarch64", Arch.AARCH32: "qemu-system-arm"}
_SOFTMMU = {Arch.AARCH64: "aarch64-softmmu", Arch.AARCH32: "arm-softmmu"}
PACKAGE = "qemu-system-arm"         # Debian ships both system emulators in it
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BUILD_FILE = "build.json"

# A suite is a Debian archive name; a backports suite is only installable
# together with the release it backports to (its libraries come from there).
_SUITE = re.compile(r"^[a-z][a-z0-9-]*$")


def cache_root(override: str | Path | None = None) -> Path:
    """Where cached builds live: ``override``, else ``$S2DIFF_QEMU_CACHE``,
    else ``$XDG_CACHE_HOME/s2diff/qemu`` (``~/.cache/s2diff/qemu``)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("S2DIFF_QEMU_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "s2diff" / "qemu"


@dataclasses.dataclass(frozen=True)
class QemuBuild:
    """The QEMU system emulators of one build.

    ``label`` names the build in reports (the version number when two
    builds differ in it, else the spec the user gave); ``paths`` maps each
    architecture this build provides to the program to run (a binary or a
    launcher); ``version`` is the first line of ``--version``."""

    label: str
    paths: dict[Arch, Path]
    version: str
    source: str

    def path(self, arch: Arch) -> Path:
        try:
            return self.paths[arch]
        except KeyError:
            raise UsageError(f"QEMU {self.label} ({self.source}) has no {EMULATORS[arch]}") from None


@dataclasses.dataclass(frozen=True)
class CachedBuild:
    """One suite's build in the cache (``build.json``)."""

    suite: str
    folder: Path
    package_version: str
    versions: dict[str, str]
    mirror: str
    fetched: str

    @property
    def bin(self) -> Path:
        return self.folder / "bin"


def version_line(program: Path) -> str:
    """First line of ``program --version``; InfrastructureError when the
    program does not run."""
    try:
        proc = subprocess.run([str(program), "--version"], capture_output=True, text=True,
                              timeout=60, check=False)
    except OSError as exc:
        raise InfrastructureError(f"{program}: cannot run ({exc.strerror or exc})") from None
    except subprocess.TimeoutExpired:
        raise InfrastructureError(f"{program} --version did not answer in 60 s") from None
    first = proc.stdout.splitlines()[0].strip() if proc.stdout.strip() else ""
    if proc.returncode != 0 or not first.startswith("QEMU emulator version"):
        tail = (proc.stderr.strip().splitlines() or [""])[-1]
        raise InfrastructureError(f"{program} --version failed (exit {proc.returncode}): {tail}")
    return first


def version_number(line: str) -> str:
    """'QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)' -> '10.0.2'."""
    m = re.search(r"version (\d+(?:\.\d+)*)", str(line))
    return m.group(1) if m else str(line)


# --- --qemu PATH ----------------------------------------------------------------

def resolve(spec: str, cache: Path | None = None) -> QemuBuild:
    """A ``--qemu`` value: a folder holding qemu-system-aarch64 and/or
    qemu-system-arm (a ``bin`` folder, a QEMU build folder), a launcher
    (one executable; its name says which emulator it is, else it is used
    for both), or the name of a suite in the cache (``sid``)."""
    path = Path(spec).expanduser()
    if not path.exists() and _SUITE.match(spec):
        cached = find_cached(spec, cache)
        if cached is None:
            raise UsageError(f"--qemu {spec}: no such file or folder, and no cached build of "
                             f"suite {spec!r} (fetch it with: s2diff qemu fetch {spec})")
        path = cached.bin
    if path.is_dir():
        paths = {}
        for arch, name in EMULATORS.items():
            # A bin folder or a meson build folder holds the emulators at
            # its top; a pre-5.2 QEMU build tree in TARGET-softmmu/.
            for candidate in (path / name, path / _SOFTMMU[arch] / name):
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    paths[arch] = candidate
                    break
        if not paths:
            raise UsageError(f"--qemu {spec}: the folder holds neither "
                             f"{' nor '.join(EMULATORS.values())}")
    elif path.is_file():
        if not os.access(path, os.X_OK):
            raise UsageError(f"--qemu {spec}: not executable")
        named = [arch for arch, name in EMULATORS.items() if path.name == name]
        paths = {arch: path for arch in (named or list(EMULATORS))}
    else:
        raise UsageError(f"--qemu {spec}: no such file or folder")
    versions = {arch: version_line(p) for arch, p in paths.items()}
    if len(set(versions.values())) > 1:
        text = "; ".join(f"{EMULATORS[a]}: {v}" for a, v in versions.items())
        raise UsageError(f"--qemu {spec}: the emulators are of different versions ({text})")
    version = next(iter(versions.values()))
    return QemuBuild(label=version_number(version), paths=paths, version=version,
                     source=str(path.resolve()))


def default_build(programs: Mapping[Arch, str | Path | None], arches: Sequence[Arch]
                  ) -> QemuBuild:
    """The one build of a run without ``--qemu``: for each of ``arches``
    the program given (``--qemu-aarch64/--qemu-arm``), else
    $S2DIFF_QEMU_AARCH64/ARM, else PATH's (ToolMissing when there is none).
    Labelled by its version number, or by each emulator's when they differ."""
    paths = {a: find_qemu(a, programs.get(a)) for a in arches}
    versions = {a: qemu_version(p) for a, p in paths.items()}
    numbers = {a: version_number(v) for a, v in versions.items()}
    if len(set(numbers.values())) <= 1:
        label = next(iter(numbers.values()), "")
        version = next(iter(versions.values()), "")
    else:
        label = ", ".join(f"{a.value} {n}" for a, n in numbers.items())
        version = "; ".join(f"{EMULATORS[a]}: {v}" for a, v in versions.items())
    source = ", ".join(str(p) for p in paths.values())
    return QemuBuild(label=label, paths=paths, version=version, source=source)


def label_builds(builds: Sequence[QemuBuild]) -> list[QemuBuild]:
    """Distinct labels for the builds of one run: the version number, with
    the suite or folder added where two builds share a version."""
    counts: dict[str, int] = {}
    for b in builds:
        counts[b.label] = counts.get(b.label, 0) + 1
    out, seen = [], set()
    for b in builds:
        label = b.label
        if counts[label] > 1:
            label = f"{label} ({Path(b.source).parent.name or b.source})"
        n, base = 2, label
        while label in seen:
            label, n = f"{base} #{n}", n + 1
        seen.add(label)
        out.append(dataclasses.replace(b, label=label))
    return out


# --- the cache ------------------------------------------------------------------

def check_suite(suite: str) -> str:
    if not _SUITE.match(suite):
        raise UsageError(f"suite {suite!r}: expected a Debian suite name such as bookworm, "
                         "bookworm-backports, trixie or sid")
    return suite


def find_cached(suite: str, cache: Path | None = None) -> CachedBuild | None:
    folder = cache_root(cache) / suite
    return read_build(folder) if (folder / BUILD_FILE).is_file() else None


def read_build(folder: Path) -> CachedBuild | None:
    try:
        data = json.loads((folder / BUILD_FILE).read_text(encoding="utf-8"))
        return CachedBuild(suite=str(data["suite"]), folder=folder,
                           package_version=str(data["package_version"]),
                           versions={str(k): str(v) for k, v in data["versions"].items()},
                           mirror=str(data["mirror"]), fetched=str(data["fetched"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def list_cached(cache: Path | None = None) -> list[CachedBuild]:
    """Every complete build in the cache, by suite name."""
    root = cache_root(cache)
    if not root.is_dir():
        return []
    found = (read_build(d) for d in sorted(root.iterdir()) if d.is_dir())
    return [b for b in found if b is not None]


def apt_sources(suite: str, mirror: str) -> str:
    """The sources list of a suite's own apt configuration: a backports
    suite comes with the release it extends."""
    lines = [f"deb {mirror} {suite} main"]
    if suite.endswith("-backports"):
        lines.insert(0, f"deb {mirror} {suite[:-len('-backports')]} main")
    return "\n".join(lines) + "\n"


def apt_options(work: Path) -> list[str]:
    """apt-get options that use only ``work``: its own sources list, lists,
    archive cache and an empty status file (so every dependency is
    downloaded and the system's dpkg database is not consulted), no lock
    on the system's apt directories (none of them is touched)."""
    return ["-o", f"Dir::Etc::sourcelist={work / 'sources.list'}",
            "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={work / 'lists'}",
            "-o", f"Dir::Cache={work / 'cache'}",
            "-o", f"Dir::State::status={work / 'status'}",
            "-o", "APT::Install-Recommends=false",
            "-o", "Debug::NoLocking=1",
            "-o", "Acquire::Retries=3"]


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " / ".join((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-2:])
        raise InfrastructureError(f"{what} failed (exit {proc.returncode}): {tail}\n"
                                  f"  {shlex.join(argv)}")
    return proc


def find_loader(root: Path) -> Path:
    """The dynamic loader unpacked with the suite's libc6 (merged-/usr
    suites put it under usr/lib, older ones under lib)."""
    for rel in ("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                "usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
                "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"):
        if (root / rel).exists():
            return root / rel
    raise InfrastructureError(f"{root}: the unpacked packages hold no dynamic loader (libc6)")


def launcher_text(root: Path, loader: Path, program: str) -> str:
    """A launcher that runs ``usr/bin/PROGRAM`` of ``root`` with the
    suite's loader and libraries.  ``exec`` keeps the PID QEMU's.

    QEMU_MODULE_DIR points QEMU at the suite's own loadable modules: QEMU
    looks for them at the path it was built with (/usr/lib/TRIPLET/qemu),
    where the host's QEMU keeps modules of another version, which QEMU
    refuses or, worse, loads."""
    triplet = loader.parent.name
    libs = ":".join(str(root / d / triplet) for d in ("usr/lib", "lib"))
    modules = root / "usr/lib" / triplet / "qemu"
    return ("#!/bin/sh\n"
            f"# {program} from {root} with that suite's own loader and libraries\n"
            f"QEMU_MODULE_DIR={shlex.quote(str(modules))}\n"
            "export QEMU_MODULE_DIR\n"
            f"exec {shlex.quote(str(loader))} --library-path {shlex.quote(libs)} "
            f"{shlex.quote(str(root / 'usr/bin' / program))} \"$@\"\n")


def fetch_debian(suite: str, cache: Path | None = None, mirror: str = DEFAULT_MIRROR,
                 refresh: bool = False) -> CachedBuild:
    """Download Debian's qemu-system-arm of ``suite`` with its library
    closure into the cache, unpack it and write its launchers.  An
    existing build is kept unless ``refresh``.  The build is assembled in a
    temporary folder and renamed into place, so an interrupted fetch
    leaves no half build behind."""
    check_suite(suite)
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise ToolMissing(f"{tool} not found: fetching Debian's QEMU builds needs a Debian "
                              "system (apt-get and dpkg)")
    root = cache_root(cache)
    final = root / suite
    if final.exists() and not refresh:
        existing = read_build(final)
        if existing is not None:
            return existing
    root.mkdir(parents=True, exist_ok=True)
    # A folder of its own per fetch: two fetches of one suite at once do
    # not scribble on each other's download (the last rename wins).
    work = Path(tempfile.mkdtemp(prefix=f".{suite}.partial-", dir=root))
    work.chmod(0o755)       # mkdtemp's 0700 would keep other users from the build
    apt = work / "apt"
    for d in (apt / "lists" / "partial", apt / "cache" / "archives" / "partial"):
        d.mkdir(parents=True)
    (apt / "sources.list").write_text(apt_sources(suite, mirror))
    (apt / "status").write_text("")
    opts = apt_options(apt)
    try:
        _run(["apt-get", *opts, "update", "-q"], f"apt-get update for {suite}")
        target = ["-t", suite] if suite.endswith("-backports") else []
        _run(["apt-get", *opts, *target, "-y", "-q", "--download-only", "install", PACKAGE],
             f"downloading {PACKAGE} from {suite}")
        debs = sorted((apt / "cache" / "archives").glob("*.deb"))
        unpacked = work / "root"
        for deb in debs:
            _run(["dpkg", "-x", str(deb), str(unpacked)], f"unpacking {deb.name}")
        package_version = next((deb.name.split("_")[1].replace("%3a", ":") for deb in debs
                                if deb.name.startswith(PACKAGE + "_")), "?")
        shutil.rmtree(apt / "cache", ignore_errors=True)   # the .debs: 40+ MB, not needed again
        # Paths inside the launchers are final: written for ``final``,
        # checked after the rename.
        loader = find_loader(unpacked)
        bin_dir = work / "bin"
        bin_dir.mkdir()
        final_root = final / "root"
        for program in EMULATORS.values():
            launcher = bin_dir / program
            launcher.write_text(launcher_text(final_root, final_root / loader.relative_to(unpacked),
                                              program))
            launcher.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        versions = {name: version_line(final / "bin" / name) for name in EMULATORS.values()}
    except BaseException:
        # A build that does not run is no build: leave nothing that looks like one.
        shutil.rmtree(final, ignore_errors=True)
        raise
    build = {"suite": suite, "package_version": package_version, "versions": versions,
             "mirror": mirror,
             "fetched": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    (final / BUILD_FILE).write_text(json.dumps(build, indent=2) + "\n")
    cached = read_build(final)
    assert cached is not None
    return cached


def remove_cached(suite: str, cache: Path | None = None) -> bool:
    """Delete a suite's build (and any fetch of it left half done by a
    killed process); False when there was none."""
    root = cache_root(cache)
    folder = root / check_suite(suite)
    partial = list(root.glob(f".{suite}.partial-*")) if root.is_dir() else []
    for left in partial:
        shutil.rmtree(left, ignore_errors=True)
    if not folder.exists():
        return bool(partial)
    shutil.rmtree(folder)
    return True
