"""Every known divergence in baseline.toml is backed by a case file that
reproduces it on the QEMU it names, and the baseline file itself is valid.

These tests run the real QEMU (CI has it); a QEMU whose version the entry
does not name is expected NOT to show the divergence any more, which is
reported as a stale entry rather than a failure of the suite."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.baseline import load_baseline
from harness.casefile import load_case
from harness.judge.case import judge_case
from harness.qemu.builds import version_number
from harness.qemu.launcher import find_qemu, qemu_version
from harness.single import run_case

ROOT = Path(__file__).resolve().parent.parent
BASELINE = load_baseline(ROOT / "baseline.toml")


def test_every_entry_has_its_case_file():
    for entry in BASELINE.entries:
        assert (ROOT / entry.case).is_file(), f"{entry.id}: {entry.case} is missing"


@pytest.mark.qemu
@pytest.mark.parametrize("entry", BASELINE.entries, ids=lambda e: e.id)
def test_case_reproduces_entry(entry):
    case = load_case(ROOT / entry.case)
    version = version_number(qemu_version(find_qemu(case.cpu.arch)))
    run = run_case(case)
    assert run.complete, run.batch.diagnostic
    _, divergences = judge_case(case, run.batch.images[0])
    matched = [d for d in divergences if entry.matches(d, run.batch.qemu_version)]
    if any(version.startswith(v) for v in entry.qemu_versions) or not entry.qemu_versions:
        # The QEMU the entry is about: the case must still show it.
        assert matched, f"{entry.id} no longer reproduces with {entry.case} on QEMU {version}"
    elif not matched:
        pytest.skip(f"{entry.id}: QEMU {version} is not one the entry names, and the case "
                    "no longer diverges (stale entry)")


@pytest.mark.qemu
def test_matching_can_fail():
    """The same case judged by an entry about another divergence does not match:
    the matching is specific, not a catch-all."""
    dirty = next(e for e in BASELINE.entries if e.id == "qemu-7.2-at-sets-dirty-state")
    block = next(e for e in BASELINE.entries if e.id == "qemu-7.2-block-at-invalid-level")
    case = load_case(ROOT / block.case)
    run = run_case(case)
    _, divergences = judge_case(case, run.batch.images[0])
    assert divergences
    assert not any(dirty.matches(d, run.batch.qemu_version) for d in divergences)
