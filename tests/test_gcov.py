"""Emulator coverage (harness.qemu.gcov): the gcovr report parsed into line
and branch counts, per function and per file, and the build cache keyed by
source tree and commit -- pure, on a report shaped like gcovr 8's (format
0.15: the figures below are those of a few lines of QEMU 10.2.0's
target/arm/ptw.c in a real report, the rest trimmed)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.qemu import gcov

# check_s2_mmu_setup (line 1715): a switch with one branch never taken,
# an if taken both ways; get_S2prot_indirect never called; a line gcovr
# marks as no code; a throw branch (C++ exceptions: never in QEMU, skipped).
REPORT = {
    "gcovr/format_version": "0.15",
    "files": [
        {"file": "target/arm/ptw.c",
         "functions": [{"name": "check_s2_mmu_setup", "lineno": 1715, "execution_count": 2843968},
                       {"name": "get_S2prot_indirect", "lineno": 1372, "execution_count": 0}],
         "lines": [
             {"line_number": 1727, "function_name": "check_s2_mmu_setup", "count": 2663957,
              "branches": [{"count": 986721}, {"count": 1093166}, {"count": 584070},
                           {"count": 0}]},
             {"line_number": 1732, "function_name": "check_s2_mmu_setup", "count": 18177,
              "branches": [{"count": 4077}, {"count": 14100}, {"count": 0, "throw": True}]},
             {"line_number": 1733, "function_name": "check_s2_mmu_setup", "count": 4077,
              "branches": []},
             {"line_number": 1734, "count": 0, "gcovr/noncode": True, "branches": []},
             {"line_number": 1403, "count": 0,
              "branches": [{"count": 0}, {"count": 0}]},
         ]},
        {"file": "hw/arm/virt.c", "functions": [], "lines": [
            {"line_number": 1, "count": 5, "branches": []}]},
    ],
}


class TestParse:
    def test_counts(self):
        """Lines: 4 of code (the no-code line left out), 3 run; branches:
        4 + 2 + 2 = 8 (the throw branch left out), 3 + 2 + 0 = 5 taken;
        check_s2_mmu_setup alone 3 lines, 6 branches, 5 taken; the file not asked for is
        ignored; a line without function_name goes to the function whose
        first line precedes it (1403 -> get_S2prot_indirect, from 1372)."""
        (f,) = gcov.parse_gcovr_json(REPORT, ("target/arm/ptw.c",))
        assert (f.lines, f.lines_covered, f.branches, f.branches_covered) == (4, 3, 8, 5)
        assert [(b.line, b.index, b.function) for b in f.untaken] == [
            (1727, 3, "check_s2_mmu_setup"), (1403, 0, "get_S2prot_indirect"),
            (1403, 1, "get_S2prot_indirect")]
        assert f.per_function["check_s2_mmu_setup"] == gcov.Counts(3, 3, 6, 5)
        assert f.subset(("check_s2_mmu_setup", "get_S2prot_indirect", "absent")) == \
            gcov.Counts(4, 3, 8, 5)
        assert f.functions["check_s2_mmu_setup"] == (1715, 2843968)
        assert f"{f.percent('branches'):.1f}" == "62.5"

    def test_a_file_without_counters(self):
        """A file the report does not hold gives nothing (measure() fills in zeros)."""
        assert gcov.parse_gcovr_json(REPORT, ("target/arm/helper.c",)) == []


class TestBuildCache:
    def test_not_a_source_tree(self, tmp_path):
        with pytest.raises(UsageError, match="not a QEMU source tree"):
            gcov.check_source(tmp_path)

    def test_commit_and_dirty_tree(self, tmp_path):
        """A git tree is named by its commit; a local change makes another
        build (+dirty-HASH), so a patched tree never reuses a clean build."""
        def git(*argv: str) -> str:
            return subprocess.run(["git", "-C", str(tmp_path), *argv], check=True,
                                  capture_output=True, text=True).stdout.strip()
        git("init", "-q")
        (tmp_path / "VERSION").write_text("10.2.0\n")
        git("add", "VERSION")
        git("-c", "user.email=a@b", "-c", "user.name=n", "commit", "-qm", "v")
        head = git("rev-parse", "HEAD")
        assert gcov.source_commit(tmp_path) == head
        clean = gcov.default_build_dir(tmp_path, head)
        (tmp_path / "VERSION").write_text("10.2.0-patched\n")
        dirty = gcov.source_commit(tmp_path)
        assert dirty.startswith(head + "+dirty-") and dirty != head
        assert gcov.default_build_dir(tmp_path, dirty) != clean

    def test_not_a_git_tree(self, tmp_path):
        (tmp_path / "VERSION").write_text("7.2.0\n")
        assert gcov.source_commit(Path(tmp_path)).startswith("v7.2.0-")
