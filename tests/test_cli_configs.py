"""Tests of ``s2diff configs`` (harness/cli/configs.py): exit codes, output forms,
and bad input reported as exactly one line on stderr."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from reference import catalogue as cat
from reference.arch import Arch, Granule
from reference.cpus import cpu_names, get_cpu

REPO = Path(__file__).resolve().parents[1]

ENTRY_KEYS = {
    "cpu", "arch", "granule", "ipa_bits", "t0sz", "sl0", "sl2", "ds", "start_level", "levels",
    "concatenated_tables", "root_table_bytes", "vttbr_alignment_bytes", "ps", "ps_bits",
    "output_bits", "other_output_bits", "vtcr", "kvm", "xen", "remark",
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def kvm_rows(records: list[dict]) -> dict[str, tuple]:
    """cpu -> (granule, IPA, start level, concatenated tables) of KVM's entries."""
    return {r["cpu"]: (r["granule"], r["ipa_bits"], r["start_level"], r["concatenated_tables"])
            for r in records if r["kvm"]}


class TestListing:
    @pytest.mark.parametrize("ipa, level, concat", [
        (36, 1, 1),   # (36-8)//9 = 3 levels -> L1, 36-30 = 6 bits
        (40, 1, 2),   # 3 levels -> L1, 10 bits = 2 tables
        (48, 0, 1),   # (48-8)//9 = 4 levels -> L0, 9 bits
    ])
    def test_kvm_choice_per_cpu_json(self, capsys, ipa, level, concat):
        """Every AArch64 CPU that can have the IPA lists KVM's choice."""
        code, out, err = run(capsys, "configs", "--ipa", str(ipa), "--granule", "4k", "--json")
        assert code == 0
        records = json.loads(out)
        assert all(set(r) == ENTRY_KEYS for r in records)
        able = [n for n in cpu_names(Arch.AARCH64)
                if cat.ipa_limits(get_cpu(Arch.AARCH64, n), Granule.G4K)[1] >= ipa]
        assert kvm_rows(records) == {n: ("4k", ipa, level, concat) for n in able}
        # CPUs without such an IPA are named on stderr, one note each: for 48
        # bits all but neoverse-n1, neoverse-v1, neoverse-n2 (PAMax 48) and
        # max (52); 36 and 40 bits fit all 12 AArch64 models.
        assert len(err.splitlines()) == len(cpu_names(Arch.AARCH64)) - len(able)
        assert len(able) == (4 if ipa == 48 else 12)

    def test_json_values(self, capsys):
        code, out, _ = run(capsys, "configs", "--cpu", "cortex-a53", "--ipa", "40",
                           "--granule", "4k", "--json")
        assert code == 0
        assert json.loads(out) == [{
            "cpu": "cortex-a53", "arch": "aarch64", "granule": "4k", "ipa_bits": 40, "t0sz": 24,
            "sl0": 1, "sl2": 0, "ds": 0, "start_level": 1, "levels": 3,
            "concatenated_tables": 2, "root_table_bytes": 8192, "vttbr_alignment_bytes": 8192,
            "ps": 2, "ps_bits": 40, "output_bits": 40, "other_output_bits": [32, 36],
            "vtcr": "0x0000000080023558", "kvm": True, "xen": True,
            "remark": "KVM's choice, Xen's choice",
        }]

    def test_plain_text(self, capsys):
        """Piped output: aligned text, KVM's row starred, a legend, no ANSI codes."""
        code, out, err = run(capsys, "configs", "--cpu", "cortex-a57", "--ipa", "40",
                             "--granule", "4k")
        assert code == 0 and err == ""
        assert "\x1b[" not in out
        lines = out.splitlines()
        assert lines[0].startswith("cortex-a57 (aarch64;")
        assert lines[1].split()[:4] == ["KVM", "granule", "IPA", "T0SZ"]
        kvm = [line for line in lines if line.startswith("  *")]
        assert len(kvm) == 1
        assert kvm[0].split()[1:10] == ["4k", "40", "24", "01", "L1", "3", "2", "8", "KiB"]
        assert "0x80043558" in kvm[0]
        alternative = lines[2]
        assert "L0" in alternative and "legal alternative: 1 level more than KVM" in alternative
        assert any(line.startswith("* KVM's choice: kvm_get_vtcr") for line in lines)

    @pytest.mark.parametrize("columns", ["80", "200"])
    def test_terminal_uses_rich(self, capsys, monkeypatch, columns):
        """On a terminal: a rich table; numbers and VTCR values are never cut."""
        monkeypatch.setenv("COLUMNS", columns)

        class Tty(io.StringIO):
            def isatty(self):
                return True
        fake = Tty()
        monkeypatch.setattr(sys, "stdout", fake)
        assert cli.main(["configs", "--cpu", "cortex-a53", "--ipa", "40", "--granule", "4k"]) == 0
        text = re.sub(r"\x1b\[[0-9;]*m", "", fake.getvalue())
        row = next(line for line in text.splitlines() if "0x80023558" in line)
        # The compact terminal columns: mark, gran, IPA, start, lvl, cat, root, align, OA, VTCR.
        assert row.split() == ["*x", "4k", "40", "L1", "3", "2", "8", "KiB", "8", "KiB", "40",
                               "0x80023558"]
        assert "cortex-a53" in text and "* KVM's choice" in text

    def test_aarch32(self, capsys):
        code, out, _ = run(capsys, "configs", "--arch", "arm", "--cpu", "cortex-a15", "--json")
        assert code == 0
        records = json.loads(out)
        assert kvm_rows(records) == {"cortex-a15": ("4k", 40, 1, 2)}
        assert {r["ipa_bits"] for r in records} == set(range(25, 41))
        assert all(r["ps"] is None and r["output_bits"] == 40 for r in records)

    def test_some_ipa_impossible_is_a_note(self, capsys):
        code, out, err = run(capsys, "configs", "--cpu", "cortex-a53", "--ipa", "40,48",
                             "--granule", "4k")
        assert code == 0
        assert "0x80023558" in out
        assert err.splitlines() == [
            "note: cortex-a53 has no 48-bit IPA with 4k: AArch64.S2MinTxSZ limits it to 40 bits "
            "(PAMax 40)"]

    def test_missing_granule_on_some_cpus_is_a_note(self, capsys):
        code, out, err = run(capsys, "configs", "--granule", "16k", "--ipa", "40", "--json")
        assert code == 0
        # 16K at stage 2: ID_AA64MMFR0_EL1.TGran16 (or TGran16_2) says so for
        # these; cortex-a53/a57/a72 and a64fx have TGran16 = 0.
        assert {r["cpu"] for r in json.loads(out)} == {
            "cortex-a35", "cortex-a76", "neoverse-n1", "cortex-a55", "neoverse-v1",
            "cortex-a710", "neoverse-n2", "max"}
        assert [line.split()[1] for line in err.splitlines()] == [
            "cortex-a53", "cortex-a57", "cortex-a72", "a64fx"]


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("s2diff: error: ")
    assert "Traceback" not in err
    return lines[0]


class TestBadInput:
    @pytest.mark.parametrize("argv, words", [
        ([], ["required", "COMMAND"]),
        (["frobnicate"], ["invalid choice", "configs"]),
        (["configs", "--arch", "x86"], ["--arch", "aarch64", "arm"]),
        (["configs", "--cpu", "cortex-a9"], ["--cpu", "cortex-a9", "known:", "cortex-a53", "max"]),
        (["configs", "--arch", "arm", "--cpu", "cortex-a53"], ["--cpu", "cortex-a15"]),
        (["configs", "--ipa", "53"], ["--ipa", "53", "25..52"]),
        (["configs", "--ipa", "24"], ["--ipa", "24", "25..52"]),
        (["configs", "--ipa", "forty"], ["--ipa", "'forty'"]),
        (["configs", "--ipa", "40,,48"], ["--ipa", "empty item"]),
        (["configs", "--granule", "8k"], ["--granule", "'8k'", "4k, 16k, 64k"]),
        (["configs", "--granule", "16k", "--cpu", "cortex-a53"],
         ["cortex-a53", "no 16k granule", "TGran16_2"]),
        (["configs", "--ipa", "48", "--cpu", "cortex-a53"],
         ["cortex-a53", "48-bit", "AArch64.S2MinTxSZ", "40 bits"]),
        (["configs", "--arch", "arm", "--ipa", "48"], ["48-bit", "25..40"]),
        (["configs", "--vtcr", "0xZZ", "--cpu", "max"], ["--vtcr", "'0xZZ'", "hexadecimal"]),
        (["configs", "--vtcr", "1" + "0" * 17, "--cpu", "max"], ["--vtcr", "64 bits"]),
        (["configs", "--arch", "arm", "--vtcr", "0x180003558"], ["--vtcr", "32 bits"]),
        (["configs", "--vtcr", "0x80023558", "--vttbr", "-1"], ["--vttbr", "negative"]),
        (["configs", "--vtcr", "0x80023558", "--ipa", "40"], ["--ipa", "--vtcr"]),
        (["configs", "--vttbr", "0x1000"], ["--vttbr", "--vtcr"]),
        (["configs", "--no-such-option"], ["unrecognized", "--no-such-option"]),
    ])
    def test_one_line_exit_2(self, capsys, argv, words):
        code, out, err = run(capsys, *argv)
        assert code == 2
        assert out == ""
        line = one_error_line(err)
        for word in words:
            assert word in line

    def test_internal_error_shows_traceback_exit_3(self, capsys, monkeypatch):
        """A bug is not bad input: traceback, then one summary line, exit 3."""
        def broken(*args, **kwargs):
            raise RuntimeError("boom")
        monkeypatch.setattr(cat, "catalogue", broken)
        code, _, err = run(capsys, "configs", "--cpu", "max")
        assert code == 3
        assert "Traceback" in err and "RuntimeError: boom" in err
        assert err.splitlines()[-1].startswith("s2diff: internal error")

    def test_help_exits_0(self, capsys):
        code, out, _ = run(capsys, "configs", "--help")
        assert code == 0 and "--vtcr HEX" in out


class TestJudgeVtcr:
    def test_valid_exit_0(self, capsys):
        code, out, err = run(capsys, "configs", "--vtcr", "0x80023558", "--cpu", "cortex-a53")
        assert code == 0 and err == ""
        assert "  T0SZ  [5:0]    24     40-bit IPA" in out
        assert "  SL0   [7:6]    0b01   start level 1" in out
        assert ("  valid: 4k granule, 40-bit IPA, start level 1, 3 levels, 2 concatenated tables "
                "at the start level (8 KiB, VTTBR aligned to 8 KiB), output 40 bits") in out
        assert "  KVM's choice: yes; Xen's choice: yes" in out

    def test_invalid_exit_1(self, capsys):
        """SL0 = 0b10 (level 0) on a PAMax 40 CPU."""
        code, out, _ = run(capsys, "configs", "--vtcr", "80023598", "--cpu", "cortex-a53")
        assert code == 1
        assert ("    AArch64.S2InvalidSL: start level 0 needs PAMax >= 44 (PAMax 40) -> "
                "stage-2 translation fault, level 0") in out

    def test_json(self, capsys):
        code, out, _ = run(capsys, "configs", "--vtcr", "0x80023598", "--cpu",
                           "cortex-a53,cortex-a57", "--json")
        assert code == 1
        a53, a57 = json.loads(out)
        assert (a53["cpu"], a53["valid"], a53["problems"]) == (
            "cortex-a53", False,
            ["AArch64.S2InvalidSL: start level 0 needs PAMax >= 44 (PAMax 40)"])
        assert a53["readings"][0]["fault"] == {"kind": "translation", "level": 0}
        assert (a57["valid"], a57["start_level"], a57["concatenated_tables"],
                a57["root_table_bytes"], a57["kvm"]) == (True, 0, 1, 16, False)
        assert {f["name"] for f in a57["fields"]} >= {"T0SZ", "SL0", "TG0", "PS", "DS", "SL2"}

    def test_alternative_names_kvm_choice_and_ignored_vttbr_bits(self, capsys):
        """4K level 0 for a 40-bit IPA (1 bit, 16-byte root): legal on PAMax 44;
        VTTBR bit 3 lies below the 16-byte alignment."""
        code, out, _ = run(capsys, "configs", "--vtcr", "0x80043598", "--vttbr", "0x40001008",
                           "--cpu", "cortex-a57")
        assert code == 0
        assert out.splitlines()[-4:-1] == [
            "  valid: 4k granule, 40-bit IPA, start level 0, 4 levels, 1 table at the start "
            "level (16 B, VTTBR aligned to 16 B), output 44 bits",
            "  note: VTTBR_EL2 bits 0x8 lie below the 16-byte table alignment: a misaligned base, "
            "CONSTRAINED UNPREDICTABLE (Arm ARM D24.2.225): the bits are treated as zero "
            "(AArch64.S2TTBaseAddress: the table at 0x40001000) or the walk address is corrupted "
            "in them",
            "  KVM's choice: no (KVM starts a 40-bit 4k walk at level 1); Xen's choice: no",
        ]

    def test_vttbr_beyond_ps(self, capsys):
        code, out, _ = run(capsys, "configs", "--vtcr", "0x80023558", "--vttbr", "0x10000000000",
                           "--cpu", "cortex-a53")
        assert code == 1
        assert "address-size fault, level 0" in out

    def test_reserved_tg0_lists_both_geometries(self, capsys):
        code, out, _ = run(capsys, "configs", "--vtcr", "0x8002f558", "--cpu", "cortex-a53")
        assert code == 0
        assert "valid, but the geometry depends on the choices:" in out
        assert "-> 4k granule, 40-bit IPA, start level 1" in out
        assert "-> 64k granule, 40-bit IPA, start level 2" in out


class TestEntryPoint:
    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    def test_module_runs(self):
        done = self.run("configs", "--cpu", "cortex-a53", "--ipa", "40", "--granule", "4k")
        assert done.returncode == 0, done.stderr
        assert "0x80023558" in done.stdout and "\x1b[" not in done.stdout

    def test_bad_argument_is_one_line(self):
        done = self.run("configs", "--ipa", "99")
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            "s2diff: error: argument --ipa: 99 is out of range (allowed 25..52)"]
