"""`s2diff bisect` under a real `git bisect run` with the real QEMU.

The repository bisected is made here: its commits provide a
``qemu-system-aarch64`` launch script; one commit makes the script run the
guest on a cortex-a53 (PAMax 40) whatever -cpu the harness asks for, so a
case whose reference model is the cortex-a57 (PAMax 44) with a 4K walk from
level 0 (SL0 = 0b10, which needs PAMax >= 44) starts to diverge there."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.casefile import save_case
from harness.cli import main
from harness.cli.common import EXIT_CODES, Outcome
from harness.plan import VIRT_EMPTY
from harness.qemu.launcher import find_qemu

# git bisect run's exit statuses, as the CLI gives them.
GOOD, BAD = EXIT_CODES[Outcome.BISECT_GOOD], EXIT_CODES[Outcome.BISECT_BAD]
UNTESTABLE, ABORT = EXIT_CODES[Outcome.BISECT_SKIP], EXIT_CODES[Outcome.BISECT_ABORT]
from reference.arch import Arch, AtKind, Granule
from reference.config import aarch64_config
from reference.cpus import get_cpu
from reference.generate import Case, MemoryMap, Probe
from reference.image import ImageBuilder, layout_for

ROOT = Path(__file__).resolve().parent.parent
RAM = MemoryMap(ram=((0x40000000, 0x40000000),), empty=VIRT_EMPTY)


def level0_case(path: Path) -> Path:
    """A cortex-a57 case: 4K, 44-bit IPA, start level 0, one page probed."""
    cpu = get_cpu(Arch.AARCH64, "cortex-a57")
    config = aarch64_config(Granule.G4K, 44, 0, ps_bits=44)
    b = ImageBuilder(layout_for(cpu, config, 0), 0x48000000, 1 << 19, vmid=1)
    b.map(0x1234000, 0x40005000, 3)
    image = b.build()
    save_case(path, Case("a57-level0", 0, cpu, config.with_vttbr(image.vttbr), image, RAM,
                         (Probe(0x1234008, AtKind.S12E1R, "page"),)))
    return path


REAL_SCRIPT = """\
#!/bin/sh
# The QEMU under test: the system emulator, unchanged.
exec {real} "$@"
"""

A53_SCRIPT = """\
#!{python}
# Run the guest on a cortex-a53, whatever -cpu says.
import os, sys
args = sys.argv[1:]
if "-cpu" in args:
    args[args.index("-cpu") + 1] = "cortex-a53"
os.execv("{real}", ["{real}"] + args)
"""


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "user.name=s2diff", "-c", "user.email=s2diff@test",
                           "-c", "init.defaultBranch=main", *args], cwd=repo,
                          capture_output=True, text=True, check=True)
    return proc.stdout


def commit(repo: Path, message: str, files: dict[str, str]) -> str:
    for name, text in files.items():
        p = repo / name
        p.write_text(text)
        p.chmod(0o755)
        git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def history(tmp_path: Path, real: str, order: list[str]) -> tuple[Path, list[str]]:
    """A repository of launch scripts, one commit per entry of ``order``:
    "real" (the real QEMU), "a53" (guest on a cortex-a53) or a notes change."""
    repo = tmp_path / "qemu-versions"
    repo.mkdir()
    git(repo, "init", "-q")
    scripts = {"real": ("launch script: the real QEMU", REAL_SCRIPT.format(real=real)),
               "a53": ("run the guest on a cortex-a53",
                       A53_SCRIPT.format(python=sys.executable, real=real))}
    shas = []
    for i, what in enumerate(order):
        message, files = ((scripts[what][0], {"qemu-system-aarch64": scripts[what][1]})
                          if what in scripts else (f"notes {i}", {"NOTES": f"{i}\n"}))
        shas.append(commit(repo, message, files))
    return repo, shas


def bisect_run(repo: Path, *args: str) -> str:
    """`git bisect run s2diff bisect ARGS` in repo; its output (git's and ours)."""
    proc = subprocess.run(["git", "bisect", "run", sys.executable, "-m", "harness.cli", "bisect",
                           *args], cwd=repo, capture_output=True, text=True, env=env(),
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    git(repo, "bisect", "reset")
    return out


@pytest.mark.qemu
def test_git_bisect_run_names_the_commit(tmp_path):
    case = level0_case(tmp_path / "case.json")
    repo, shas = history(tmp_path, str(find_qemu(Arch.AARCH64)),
                         ["real", "notes", "notes", "a53", "notes", "notes"])
    git(repo, "bisect", "start", shas[-1], shas[0])
    out = bisect_run(repo, "--qemu-cmd", "./qemu-system-aarch64", str(case))
    assert f"{shas[3]} is the first bad commit" in out
    assert "bisect: BISECT: bad (exit 1)" in out and "bisect: BISECT: good (exit 0)" in out
    assert "probe 0: expected ok L3, observed translation L0" in out


@pytest.mark.qemu
def test_git_bisect_run_finds_the_fix(tmp_path):
    """--find-fix: the same history read the other way, the cortex-a53
    script first (the case diverges) and the real QEMU back in a later
    commit: git's "first fixed commit" is that one."""
    case = level0_case(tmp_path / "case.json")
    repo, shas = history(tmp_path, str(find_qemu(Arch.AARCH64)),
                         ["a53", "notes", "real", "notes", "notes"])
    git(repo, "bisect", "start", "--term-old=broken", "--term-new=fixed", shas[-1], shas[0])
    out = bisect_run(repo, "--find-fix", "--qemu-cmd", "./qemu-system-aarch64", str(case))
    assert f"{shas[2]} is the first fixed commit" in out
    assert "bisect: BISECT: fixed (exit 1)" in out


def test_failing_configure_is_untestable(tmp_path, capsys):
    src = tmp_path / "qemu"
    src.mkdir()
    (src / "configure").write_text("#!/bin/sh\necho 'ERROR: this tree does not configure' >&2\n"
                                   "exit 1\n")
    (src / "configure").chmod(0o755)
    case = level0_case(tmp_path / "case.json")
    code = main(["bisect", "--qemu-src", str(src), "--build-dir", str(tmp_path / "build"),
                 str(case)])
    out = capsys.readouterr().out
    assert code == UNTESTABLE
    assert "configure failed (exit status 1)" in out
    assert "ERROR: this tree does not configure" in out
    assert "--target-list=aarch64-softmmu,arm-softmmu" in out
    assert "BISECT: skip (exit 125)" in out


# A configure that knows only some of s2diff's default options, as an old
# tree's does: an option it does not know is an error, as in QEMU's.
PICKY_CONFIGURE = """\
#!/bin/sh
for opt; do
  case "$opt" in
  --target-list=*) ;;
  --disable-docs) ;;
  --enable-docs) ;;
  --disable-werror) ;;
  *) echo "ERROR: unknown option $opt"; exit 1 ;;
  esac
done
echo "ERROR: stop after the options"
exit 1
"""


def test_default_configure_args(tmp_path, capsys):
    """The DESIGN recipe's options are given by default, those the tree's
    configure knows only, and one the user gives either way replaces its
    default."""
    src = tmp_path / "qemu"
    src.mkdir()
    (src / "configure").write_text(PICKY_CONFIGURE)
    (src / "configure").chmod(0o755)
    case = level0_case(tmp_path / "case.json")
    assert main(["bisect", "--qemu-src", str(src), "--build-dir", str(tmp_path / "b1"),
                 str(case)]) == UNTESTABLE
    out = capsys.readouterr().out
    assert "stop after the options" in out and "unknown option" not in out
    assert ("configure --target-list=aarch64-softmmu,arm-softmmu --disable-docs "
            "--disable-werror  (in") in out
    assert main(["bisect", "--qemu-src", str(src), "--build-dir", str(tmp_path / "b2"),
                 "--configure-arg=--enable-docs", str(case)]) == UNTESTABLE
    out = capsys.readouterr().out
    assert ("configure --target-list=aarch64-softmmu,arm-softmmu --disable-werror "
            "--enable-docs  (in") in out


@pytest.mark.parametrize("message", [
    "ERROR: missing subprojects",                      # QEMU's configure, --disable-download
    "tests/fp/meson.build:38:20: ERROR: Automatic wrap-based subproject downloading is "
    "disabled",                                        # meson, --wrap-mode=nodownload
])
def test_missing_subprojects_abort(tmp_path, capsys, message):
    """Missing meson subprojects are the machine's trouble, not the
    commit's: every step would be untestable, so the bisection stops and
    says what to do."""
    src = tmp_path / "qemu"
    src.mkdir()
    (src / "configure").write_text(f"#!/bin/sh\necho '{message}'\nexit 1\n")
    (src / "configure").chmod(0o755)
    case = level0_case(tmp_path / "case.json")
    assert main(["bisect", "--qemu-src", str(src), "--build-dir", str(tmp_path / "b"),
                 str(case)]) == ABORT
    err = capsys.readouterr().err
    assert "meson subprojects are missing" in err and f"{src}/subprojects" in err
    assert "aborting the bisection" in err


def test_configure_arg_needs_equals(tmp_path, capsys):
    """argparse takes `--configure-arg --enable-debug` for two options: the
    bisection stops with a line that says how to write it."""
    case = level0_case(tmp_path / "case.json")
    assert main(["bisect", "--qemu-src", str(tmp_path), "--configure-arg", "--enable-debug",
                 str(case)]) == ABORT
    assert "needs '=': --configure-arg=--enable-debug" in capsys.readouterr().err


def test_failing_build_is_untestable(tmp_path, capsys):
    """configure succeeds and writes a build.ninja whose build fails."""
    src = tmp_path / "qemu"
    src.mkdir()
    (src / "configure").write_text(textwrap.dedent("""\
        #!/bin/sh
        cat > build.ninja <<'EOF'
        rule fail
          command = echo 'error: ptw.c does not compile' && false
        build qemu-system-aarch64: fail
        EOF
        """))
    (src / "configure").chmod(0o755)
    case = level0_case(tmp_path / "case.json")
    build = tmp_path / "build"
    assert main(["bisect", "--qemu-src", str(src), "--build-dir", str(build), str(case)]) == 125
    out = capsys.readouterr().out
    assert "build failed" in out and "ptw.c does not compile" in out
    # A second step does not configure again: the build directory is reused.
    assert main(["bisect", "--qemu-src", str(src), "--build-dir", str(build), str(case)]) == 125
    assert "configure:" not in capsys.readouterr().out


@pytest.mark.qemu
def test_built_binaries_are_used(tmp_path, capsys):
    """A tree whose 'build' links the real QEMU into the build directory."""
    real = find_qemu(Arch.AARCH64)
    src = tmp_path / "qemu"
    src.mkdir()
    (src / "configure").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        cat > build.ninja <<'EOF'
        rule link
          command = ln -sf {real} $out
        rule fail
          command = false
        build qemu-system-aarch64: link
        build tests/fp/fp-test: fail
        EOF
        """))
    (src / "configure").chmod(0o755)
    case = level0_case(tmp_path / "case.json")
    assert main(["bisect", "--qemu-src", str(src), "--build-dir", str(tmp_path / "b"),
                 str(case)]) == GOOD
    out = capsys.readouterr().out
    assert f"qemu-system-aarch64: {tmp_path / 'b' / 'qemu-system-aarch64'}" in out
    assert "agrees with the reference (1 probes)" in out
    # Only the emulators are built: the failing target elsewhere in the
    # tree does not make the step untestable.
    assert f"build: ninja -C {tmp_path / 'b'} qemu-system-aarch64" in out


@pytest.mark.qemu
def test_qemu_cmd_printing_paths(tmp_path, capsys):
    """--qemu-cmd runs a command that prints ARCH=PATH; a recorded divergence is bad."""
    real = find_qemu(Arch.AARCH64)
    script = tmp_path / "which-qemu"
    script.write_text(f"#!/bin/sh\necho aarch64={real}\n")
    script.chmod(0o755)
    block = ROOT / "tests/baseline/block-at-invalid-level.json"
    code = main(["bisect", "--qemu-cmd", str(script), str(block)])
    out = capsys.readouterr().out
    from harness.qemu.launcher import qemu_version
    if qemu_version(real).split()[3].startswith("7.2"):
        assert code == BAD
        assert "diverges as recorded: probe 37: expected translation L1, observed ok" in out
    else:
        assert code == GOOD


ABORTING_QEMU = """\
#!/bin/sh
# Dies as a failed assertion does, before the guest runs.
case "$1" in --version) echo "QEMU emulator version 9.1.50"; exit 0 ;; esac
cat >&2 <<'END'
qemu-system-aarch64: {where}: {what}
END
kill -ABRT $$
"""
RECORDED = "do_ats_write: Assertion `!res.cacheattrs.is_s2_format' failed."


@pytest.mark.parametrize("where, what, code", [
    # The same assertion, moved to another file and line: the recorded crash.
    ("../target/arm/tcg/cpregs-at.c:77", RECORDED, BAD),
    # Another assertion: another bug (or a broken commit), not the one bisected.
    ("../accel/tcg/cputlb.c:1234", "probe_access_internal: Assertion `0' failed.", UNTESTABLE),
])
def test_a_crash_case_is_bad_only_for_the_recorded_assertion(tmp_path, capsys, where, what,
                                                             code):
    case = level0_case(tmp_path / "case.json")
    data = json.loads(case.read_text())
    data["expect"] = {"kind": "crash", "status": "crashed", "signal": 6,
                      "console": f"qemu-system-aarch64: target/arm/helper.c:3508: {RECORDED}\n"}
    case.write_text(json.dumps(data))
    fake = tmp_path / "bin" / "qemu-system-aarch64"
    fake.parent.mkdir()
    fake.write_text(ABORTING_QEMU.format(where=where, what=what))
    fake.chmod(0o755)
    assert main(["bisect", "--qemu-cmd", str(fake), str(case)]) == code
    out = capsys.readouterr().out
    if code == BAD:
        assert f"fails as recorded: crash: QEMU killed by signal 6 (SIGABRT): {RECORDED}" in out
    else:
        assert "fails differently" in out and "probe_access_internal" in out


def test_command_failure_is_untestable(tmp_path, capsys):
    case = level0_case(tmp_path / "case.json")
    assert main(["bisect", "--qemu-cmd", "false", str(case)]) == UNTESTABLE
    assert "--qemu-cmd exited with status 1" in capsys.readouterr().out


def test_bad_input_aborts(tmp_path, capsys):
    """Trouble that is not the commit's stops git bisect (exit 128), never 'bad'."""
    assert main(["bisect", "--qemu-cmd", "x", str(tmp_path / "missing.json")]) == ABORT
    assert main(["bisect", str(tmp_path / "x.json")]) == ABORT
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "s2diff-case", "version": 1}')
    assert main(["bisect", "--qemu-cmd", "x", str(bad)]) == ABORT
    assert "aborting the bisection" in capsys.readouterr().err


def test_an_internal_error_aborts_the_bisection(tmp_path, monkeypatch, capsys):
    """A bug of s2diff under `git bisect run` must stop the bisection (128),
    not mark the commit bad: exit 3 is in git's 'bad' range (1-127)."""
    import harness.cli.debug as cli_debug

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(cli_debug, "bisect_step", broken)
    case = level0_case(tmp_path / "case.json")
    assert main(["bisect", "--qemu-cmd", "true", str(case)]) == 128
    assert "internal error" in capsys.readouterr().err
