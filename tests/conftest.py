"""Shared pytest set-up.  Others may append fixtures below."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.errors import ToolMissing
from harness.qemu.build import TOOLCHAINS
from harness.qemu.launcher import QEMU_PACKAGE, find_qemu


def missing_tools() -> list[str]:
    """The programs the QEMU tests need that are not here, each with its
    Debian package: both emulators (as harness.qemu.launcher.find_qemu
    finds them, $S2DIFF_QEMU_* included) and the cross binutils that build
    the stubs."""
    missing = []
    for arch in TOOLCHAINS:
        try:
            find_qemu(arch)
        except ToolMissing:
            missing.append(f"QEMU for {arch.value} ({QEMU_PACKAGE})")
    for chain in TOOLCHAINS.values():
        missing += [f"{tool} ({chain.package})" for tool in (chain.assembler, chain.linker)
                    if shutil.which(tool) is None]
    return missing


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI (``CI`` set) a missing QEMU or cross toolchain fails the run
    as a session error: the integration tests must run there, never be
    skipped into a green result."""
    missing = missing_tools()
    if missing and os.environ.get("CI"):
        pytest.exit("CI is set but the QEMU tests cannot run: missing " + "; ".join(missing)
                    + " (./scripts/test installs them)", returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Elsewhere the tests marked ``qemu`` are skipped, with the reason."""
    missing = missing_tools()
    if not missing:
        return
    skip = pytest.mark.skip(reason="needs " + "; ".join(missing))
    for item in items:
        if item.get_closest_marker("qemu") is not None:
            item.add_marker(skip)


def qemu_children() -> set[int]:
    """PIDs of QEMU processes whose parent is this test process (from
    /proc, so no psutil is needed).  Zombies count: an unreaped QEMU is a
    leak too.  A QEMU of another Debian suite runs under that suite's
    dynamic loader (harness.qemu.builds): its name is the loader's, its
    command line names the emulator."""
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue   # the process went away while we looked
        # "pid (comm) state ppid ...": comm may hold spaces, split after ')'
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid != me:
            continue
        if comm.startswith("qemu-system"):
            found.add(int(entry.name))
        elif comm.startswith("ld-linux"):
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(b"/qemu-system-" in a for a in argv):
                found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def _no_qemu_left_behind(request: pytest.FixtureRequest):
    """Every test that runs QEMU must leave no QEMU process behind."""
    yield
    if request.node.get_closest_marker("qemu") is not None:
        left = qemu_children()
        assert not left, f"QEMU processes left running: {sorted(left)}"


# -- Hypothesis profiles (unit tests of reference/) ----------------------------
# dev (default): quick, for the edit-test loop; ci: every push; nightly: the
# long run.  Select with HYPOTHESIS_PROFILE=ci (or pytest --hypothesis-profile).
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("dev", max_examples=30, deadline=None)
_hyp_settings.register_profile("ci", max_examples=300, deadline=None)
_hyp_settings.register_profile("nightly", max_examples=3000, deadline=None)
_hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True, scope="session")
def _cpu_model_cache(tmp_path_factory: pytest.TempPathFactory):
    """The ID registers of each (QEMU, -cpu) are cached (harness.qemu.models);
    a test session keeps its own cache, so that it neither reads what an
    earlier QEMU left in the user's nor writes to it.  Subprocesses (the
    CLI tests) inherit the variable."""
    old = os.environ.get("S2DIFF_CPU_CACHE")
    os.environ["S2DIFF_CPU_CACHE"] = str(tmp_path_factory.mktemp("cpu-models") / "cache.json")
    yield
    if old is None:
        os.environ.pop("S2DIFF_CPU_CACHE", None)
    else:
        os.environ["S2DIFF_CPU_CACHE"] = old
