"""Shared pytest set-up.  Others may append fixtures below."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


def qemu_children() -> set[int]:
    """PIDs of QEMU processes whose parent is this test process (from
    /proc, so no psutil is needed).  Zombies count: an unreaped QEMU is a
    leak too."""
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
        if ppid == me and comm.startswith("qemu-system"):
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
