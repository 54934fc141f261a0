"""QEMU builds: ``--qemu`` resolution, labels, the cache's apt configuration
and launchers (without the network: fake emulators are shell scripts that
print a version line).  Fetching a real suite is exercised by
scripts/test, which caches a second build for the multi-QEMU tests."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.errors import InfrastructureError, UsageError
from harness.qemu import builds as qb
from reference.arch import Arch


def fake_emulator(path: Path, version: str, exit_code: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho 'QEMU emulator version {version}'\nexit {exit_code}\n")
    path.chmod(0o755)
    return path


class TestResolve:
    def test_folder_with_both_emulators(self, tmp_path):
        for name in qb.EMULATORS.values():
            fake_emulator(tmp_path / name, "10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)")
        build = qb.resolve(str(tmp_path))
        assert build.label == "10.0.13"
        assert build.paths == {Arch.AARCH64: tmp_path / "qemu-system-aarch64",
                               Arch.AARCH32: tmp_path / "qemu-system-arm"}

    def test_folder_with_one_emulator_names_the_missing_one(self, tmp_path):
        fake_emulator(tmp_path / "qemu-system-aarch64", "9.2.0")
        build = qb.resolve(str(tmp_path))
        assert set(build.paths) == {Arch.AARCH64}
        with pytest.raises(UsageError, match="has no qemu-system-arm"):
            build.path(Arch.AARCH32)

    def test_launcher_named_after_an_emulator_serves_that_arch_only(self, tmp_path):
        path = fake_emulator(tmp_path / "qemu-system-arm", "8.2.1")
        assert set(qb.resolve(str(path)).paths) == {Arch.AARCH32}

    def test_launcher_with_another_name_serves_both(self, tmp_path):
        path = fake_emulator(tmp_path / "my-qemu", "11.1.3")
        assert set(qb.resolve(str(path)).paths) == {Arch.AARCH64, Arch.AARCH32}

    def test_emulators_of_different_versions_are_refused(self, tmp_path):
        fake_emulator(tmp_path / "qemu-system-aarch64", "10.0.2")
        fake_emulator(tmp_path / "qemu-system-arm", "7.2.22")
        with pytest.raises(UsageError, match="different versions"):
            qb.resolve(str(tmp_path))

    def test_a_program_that_is_not_qemu_is_infrastructure(self, tmp_path):
        path = tmp_path / "qemu-system-aarch64"
        path.write_text("#!/bin/sh\necho hello\n")
        path.chmod(0o755)
        with pytest.raises(InfrastructureError, match="--version failed"):
            qb.resolve(str(path))

    def test_empty_folder_and_missing_path_are_bad_input(self, tmp_path):
        with pytest.raises(UsageError, match="holds neither"):
            qb.resolve(str(tmp_path))
        with pytest.raises(UsageError, match="no such file or folder"):
            qb.resolve(str(tmp_path / "nope" / "x"))

    def test_suite_name_finds_the_cached_build(self, tmp_path):
        folder = tmp_path / "cache" / "trixie"
        for name in qb.EMULATORS.values():
            fake_emulator(folder / "bin" / name, "10.0.13")
        (folder / qb.BUILD_FILE).write_text(json.dumps({
            "suite": "trixie", "package_version": "1:10.0.13+ds-0+deb13u1",
            "versions": {}, "mirror": qb.DEFAULT_MIRROR, "fetched": "2026-11-30T00:00:00Z"}))
        cwd = os.getcwd()
        os.chdir(tmp_path)       # "trixie" must not be taken as a relative path
        try:
            build = qb.resolve("trixie", cache=tmp_path / "cache")
        finally:
            os.chdir(cwd)
        assert build.paths[Arch.AARCH64] == folder / "bin" / "qemu-system-aarch64"
        assert [b.suite for b in qb.list_cached(tmp_path / "cache")] == ["trixie"]

    def test_uncached_suite_says_how_to_fetch_it(self, tmp_path):
        with pytest.raises(UsageError, match="s2diff qemu fetch forky"):
            qb.resolve("forky", cache=tmp_path)


class TestLabels:
    def test_distinct_versions_keep_their_numbers(self):
        builds = [qb.QemuBuild("7.2.22", {}, "v", "/usr/bin"),
                  qb.QemuBuild("10.0.13", {}, "v", "/c/trixie/bin")]
        assert [b.label for b in qb.label_builds(builds)] == ["7.2.22", "10.0.13"]

    def test_equal_versions_are_told_apart_by_where_they_come_from(self):
        builds = [qb.QemuBuild("10.0.2", {}, "v", "/c/bookworm-backports/bin"),
                  qb.QemuBuild("10.0.2", {}, "v", "/src/qemu-build/qemu-system-aarch64"),
                  qb.QemuBuild("10.0.2", {}, "v", "/src/qemu-build/qemu-system-aarch64")]
        assert [b.label for b in qb.label_builds(builds)] == [
            "10.0.2 (bookworm-backports)", "10.0.2 (qemu-build)", "10.0.2 (qemu-build) #2"]


class TestAptConfiguration:
    def test_backports_come_with_their_release(self):
        # bookworm-backports' qemu-system-arm depends on libraries that
        # only bookworm has; alone, apt cannot resolve it.
        assert qb.apt_sources("bookworm-backports", "http://m/debian").splitlines() == [
            "deb http://m/debian bookworm main", "deb http://m/debian bookworm-backports main"]
        assert qb.apt_sources("sid", "http://m/debian") == "deb http://m/debian sid main\n"

    def test_apt_uses_only_its_own_folder(self, tmp_path):
        opts = qb.apt_options(tmp_path)
        values = dict(o.split("=", 1) for o in opts if o != "-o")
        for key in ("Dir::Etc::sourcelist", "Dir::State::Lists", "Dir::Cache", "Dir::State::status"):
            assert values[key].startswith(str(tmp_path)), key
        assert values["Dir::Etc::sourceparts"] == "-"      # not /etc/apt/sources.list.d

    @pytest.mark.parametrize("bad", ["", "Bookworm", "../etc", "sid main", "-t"])
    def test_bad_suite_names_are_refused(self, bad):
        with pytest.raises(UsageError, match="Debian suite name"):
            qb.check_suite(bad)


class TestLauncher:
    def test_launcher_runs_the_program_with_the_given_loader_in_the_same_process(self, tmp_path):
        # A stand-in "loader" that prints the PID it runs as and its
        # arguments: the launcher must exec it (same PID as the shell) and
        # pass the library path, the program and the arguments through.
        root = tmp_path / "root"
        loader = root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        loader.parent.mkdir(parents=True)
        loader.write_text('#!/bin/sh\necho "$$ $*"\n')
        loader.chmod(0o755)
        assert qb.find_loader(root) == loader
        launcher = tmp_path / "qemu-system-arm"
        launcher.write_text(qb.launcher_text(root, loader, "qemu-system-arm"))
        launcher.chmod(0o755)
        proc = subprocess.Popen([str(launcher), "-M", "virt", "a b"], stdout=subprocess.PIPE,
                                text=True)
        out, _ = proc.communicate()
        pid, _, args = out.strip().partition(" ")
        assert int(pid) == proc.pid
        assert args == (f"--library-path {root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu "
                        f"{root}/usr/bin/qemu-system-arm -M virt a b")

    def test_no_loader_is_infrastructure(self, tmp_path):
        with pytest.raises(InfrastructureError, match="no dynamic loader"):
            qb.find_loader(tmp_path)


class TestMoreResolve:
    def test_a_build_tree_older_than_meson_keeps_emulators_per_target(self, tmp_path):
        # QEMU < 5.2 builds aarch64-softmmu/qemu-system-aarch64.
        fake_emulator(tmp_path / "aarch64-softmmu" / "qemu-system-aarch64", "5.1.0")
        fake_emulator(tmp_path / "arm-softmmu" / "qemu-system-arm", "5.1.0")
        build = qb.resolve(str(tmp_path))
        assert build.paths == {Arch.AARCH64: tmp_path / "aarch64-softmmu" / "qemu-system-aarch64",
                               Arch.AARCH32: tmp_path / "arm-softmmu" / "qemu-system-arm"}

    def test_default_build_is_labelled_by_its_version_or_each_emulators(self, tmp_path):
        a = fake_emulator(tmp_path / "a" / "qemu-system-aarch64", "10.0.13 (Debian)")
        b = fake_emulator(tmp_path / "b" / "qemu-system-arm", "10.0.13 (Debian)")
        c = fake_emulator(tmp_path / "c" / "qemu-system-arm", "7.2.22")
        same = qb.default_build({Arch.AARCH64: a, Arch.AARCH32: b}, [Arch.AARCH64, Arch.AARCH32])
        assert same.label == "10.0.13" and same.paths == {Arch.AARCH64: a, Arch.AARCH32: b}
        mixed = qb.default_build({Arch.AARCH64: a, Arch.AARCH32: c}, [Arch.AARCH64, Arch.AARCH32])
        assert mixed.label == "aarch64 10.0.13, arm 7.2.22"
        only = qb.default_build({Arch.AARCH64: a, Arch.AARCH32: c}, [Arch.AARCH64])
        assert only.label == "10.0.13" and set(only.paths) == {Arch.AARCH64}


class TestLauncherModules:
    def test_the_launcher_points_qemu_at_the_suites_own_modules(self, tmp_path):
        # QEMU loads modules from the path it was built with, where the
        # host's QEMU keeps its own (of another version).
        root = tmp_path / "root"
        loader = root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        loader.parent.mkdir(parents=True)
        loader.write_text('#!/bin/sh\necho "$QEMU_MODULE_DIR"\n')
        loader.chmod(0o755)
        launcher = tmp_path / "qemu-system-aarch64"
        launcher.write_text(qb.launcher_text(root, loader, "qemu-system-aarch64"))
        launcher.chmod(0o755)
        out = subprocess.run([str(launcher)], capture_output=True, text=True, check=True).stdout
        assert out.strip() == f"{root}/usr/lib/x86_64-linux-gnu/qemu"


def cached_build(cache: Path, suite: str, version: str) -> Path:
    folder = cache / suite
    for name in qb.EMULATORS.values():
        fake_emulator(folder / "bin" / name, version)
    (folder / qb.BUILD_FILE).write_text(json.dumps({
        "suite": suite, "package_version": f"1:{version}+ds-1", "mirror": qb.DEFAULT_MIRROR,
        "versions": {n: f"QEMU emulator version {version}" for n in qb.EMULATORS.values()},
        "fetched": "2026-11-30T00:00:00Z"}))
    return folder


class TestQemuCommand:
    """`s2diff qemu list/remove` on a cache of fake builds (fetching needs
    the network: scripts/test fetches a real one)."""

    def run(self, *args):
        import io
        from contextlib import redirect_stderr, redirect_stdout

        from harness.cli import main
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["qemu", *map(str, args)])
        return code, out.getvalue(), err.getvalue()

    def test_list_shows_each_suite_with_its_version(self, tmp_path):
        cached_build(tmp_path, "trixie", "10.0.13")
        cached_build(tmp_path, "sid", "11.1.3")
        (tmp_path / ".sid.partial-x").mkdir()        # a fetch left half done: not a build
        code, out, _ = self.run("list", "--cache", tmp_path)
        assert code == 0
        lines = [line.split() for line in out.splitlines() if line.startswith("  ")]
        assert [(w[0], w[2]) for w in lines] == [("sid", "11.1.3"), ("trixie", "10.0.13")]
        code, out, _ = self.run("list", "--cache", tmp_path, "--json")
        assert [b["suite"] for b in json.loads(out)] == ["sid", "trixie"]

    def test_remove_deletes_the_build_and_an_unknown_suite_is_bad_input(self, tmp_path):
        cached_build(tmp_path, "trixie", "10.0.13")
        (tmp_path / ".trixie.partial-abc").mkdir()
        assert self.run("remove", "trixie", "--cache", tmp_path)[0] == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == []
        code, _, err = self.run("remove", "trixie", "--cache", tmp_path)
        assert code == 2 and "no cached build of suite 'trixie'" in err
        code, _, err = self.run("fetch", "Trixie", "--cache", tmp_path)
        assert code == 2 and "Debian suite name" in err
