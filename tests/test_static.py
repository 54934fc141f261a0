"""Static checks in the suite: mypy on the packages (zero errors) and ruff
with the rule set chosen in pyproject.toml over reference/, harness/ and
tests/.  Both are test extras (pip install -e .[test])."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The packages mypy checks (configuration: pyproject.toml [tool.mypy]).
MYPY_PACKAGES = [
    "harness",
    "reference",
]


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("package", MYPY_PACKAGES)
def test_mypy(package):
    proc = run("mypy", "--no-incremental", "-p", package)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff():
    proc = run("ruff", "check", "--no-cache", "reference", "harness", "tests")
    assert proc.returncode == 0, proc.stdout + proc.stderr
