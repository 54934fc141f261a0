"""`s2diff probe` and `repro` answer in one line first, in real QEMU:
new divergence (exit 1), only known divergences, named (exit 0), no
divergence (exit 0); the body never contradicts the line.  And a boot
re-run by hand: --keep, --qemu-arg, probe --only.

The divergence is the planted one of tests/test_shrink.py: a level-0 block
descriptor with 4K, where AArch64.BlockDescSupported is FALSE (a
Translation fault at level 0); QEMU 7.2 translates it (baseline entry
qemu-7.2-block-at-invalid-level), so those tests run on 7.2 only."""
from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest
from test_shrink import planted_case, qemu_7_2

from harness.casefile import save_case
from harness.cli import main

pytestmark = pytest.mark.qemu
KNOWN_ID = "qemu-7.2-block-at-invalid-level"


def needs_7_2() -> None:
    if not qemu_7_2():
        pytest.skip("the planted divergence is a QEMU 7.2 bug")


def ordinary(tmp_path):
    """The planted case without its planted probes: pages, blocks and
    faults every QEMU handles as the architecture says."""
    case, index, _ = planted_case()
    probes = tuple(p for p in case.probes if not p.aim.startswith("planted"))
    return save_case(tmp_path / "ordinary.json", dataclasses.replace(case, probes=probes))


def planted(tmp_path):
    case, _, _ = planted_case()
    return save_case(tmp_path / "planted.json", case)


def test_known_divergence_is_named_and_exit_0(tmp_path, capsys):
    needs_7_2()
    assert main(["repro", str(planted(tmp_path))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"only known divergences: {KNOWN_ID}"
    # The body agrees with the line: nothing in it is called new.
    assert not any(line.startswith("NEW") for line in out)
    assert any(line.startswith(f"KNOWN ({KNOWN_ID}): 2 probes") for line in out)


def test_new_divergence_exit_1_and_quiet(tmp_path, capsys):
    needs_7_2()
    path = planted(tmp_path)
    assert main(["repro", "--no-baseline", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "new divergence: 2 probes"
    assert main(["repro", "-q", "--no-baseline", str(path)]) == 1
    assert capsys.readouterr().out == "new divergence: 2 probes\n"


def test_verbose_shows_every_probe_with_its_verdict(tmp_path, capsys):
    needs_7_2()
    case, index, _ = planted_case()
    assert main(["probe", "-v", str(planted(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"only known divergences: {KNOWN_ID}"
    assert f"KNOWN ({KNOWN_ID}): probe {index} " in out
    assert out.count("PASS: probe ") == len(case.probes) - 2


def test_no_divergence(tmp_path, capsys):
    """Any QEMU: the ordinary probes agree; a file that recorded a
    divergence is told apart from one that did not."""
    path = ordinary(tmp_path)
    assert main(["repro", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "no divergence"
    data = json.loads(path.read_text())
    data["divergence"] = [{"probe": 0, "kind": "probe", "expected": ["translation L0"],
                           "observed": "ok"}]
    path.write_text(json.dumps(data))
    assert main(["repro", "-q", str(path)]) == 0
    assert capsys.readouterr().out == (
        "no divergence (the file records 1: expected translation L0, observed ok)\n")


def test_only_one_probe_keeps_its_number(tmp_path, capsys):
    path = ordinary(tmp_path)
    assert main(["probe", "-v", "--only", "3", str(path)]) == 0
    out = capsys.readouterr().out
    assert "PASS: probe 3 " in out and "probe 0 " not in out
    assert "probes: 1 (1 named, 0 fan-out)" in out
    assert main(["probe", "--only", "99", str(path)]) == 2


def test_keep_and_qemu_args_rerun_by_hand(tmp_path, capsys):
    """--keep keeps the stub, the job and RAM files with rerun.sh, whose
    command (with the extra QEMU arguments) runs the boot again to its end."""
    path = ordinary(tmp_path)
    keep = tmp_path / "boot"
    assert main(["repro", "--keep", str(keep), "--qemu-arg", "-d guest_errors",
                 "--qemu-arg=-D", "--qemu-arg", str(tmp_path / "qemu.log"), str(path)]) == 0
    out = capsys.readouterr().out
    assert f"boot kept in {keep}; re-run it by hand: sh {keep / 'rerun.sh'}" in out
    assert {"stub.elf", "job.bin", "ram.bin", "rerun.sh", "cmdline.txt"} <= {
        p.name for p in keep.iterdir()}
    rerun = (keep / "rerun.sh").read_text()
    assert f"-kernel {keep}/stub.elf" in rerun and f"file={keep}/job.bin" in rerun
    assert "-d guest_errors -D" in rerun
    proc = subprocess.run(["sh", str(keep / "rerun.sh")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and "EXIT: STATUS=0" in proc.stdout + proc.stderr


def test_shrink_keeps_the_family_it_was_asked_for(tmp_path, capsys):
    """The k1 divergence on QEMU 7.2 (VTCR_EL2 0x80023598 on max: a 40-bit
    IPA from level 0, which the reference accepts, answered 'translation
    L0' throughout): the shrink follows a new divergence, keeps the
    configuration's class (no IPA wider than PS: QEMU 7.2's known
    qemu-7.2-ipa-larger-than-ps lives there) and its repro still says new."""
    needs_7_2()
    from harness.plan import VIRT_EMPTY
    from reference.arch import Arch
    from reference.catalogue import vtcr_config
    from reference.cpus import get_cpu
    from reference.generate import MemoryMap, generate_case
    cpu = get_cpu(Arch.AARCH64, "max")
    config = vtcr_config(cpu, 0x80023598)
    mmap = MemoryMap(ram=((0x40000000, 0x40000000),), empty=VIRT_EMPTY)
    case = generate_case(cpu, config, 1, "k1#0", (0x4C000000, 1 << 19), mmap, fanout=4)
    src = save_case(tmp_path / "k1.json", case)
    assert main(["shrink", str(src)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("divergence kept: ") and out[1].endswith("(new)")
    data = json.loads((tmp_path / "k1.min.json").read_text())
    vtcr = int(data["config"]["vtcr"], 16)
    assert vtcr & 0x3F == 24 and (vtcr >> 16) & 7 == 0b010      # T0SZ (40 bits) and PS kept
    assert main(["repro", "-q", str(tmp_path / "k1.min.json")]) == 1
    assert capsys.readouterr().out == "new divergence: 1 probe\n"


def test_a_max_case_on_a_qemu_whose_max_differs_says_so():
    """A case records its -cpu max model (as the QEMU it was recorded on
    reports it); replayed where max reports other ID registers (an 11.1.3
    case with FEAT_XS on 7.2), repro and probe add a note naming the
    registers: the verdict is the recorded model's.  None where they agree,
    and none for a named core (judged by its table, not its registers)."""
    import types

    from harness.cli.cases import model_mismatch
    from reference.arch import Arch
    from reference.cpus import CpuModel, get_cpu
    regs = dict(get_cpu(Arch.AARCH64, "cortex-a72").id_regs)
    recorded = CpuModel.from_id_registers(Arch.AARCH64, "max", regs,
                                          description="as QEMU 11.1.3 reports it")

    def run(cpu: CpuModel, seen: dict) -> types.SimpleNamespace:
        return types.SimpleNamespace(case=types.SimpleNamespace(cpu=cpu),
                                     batch=types.SimpleNamespace(id_registers=seen))
    assert model_mismatch(run(recorded, dict(regs))) is None
    other = dict(regs, ID_AA64ISAR1_EL1=regs.get("ID_AA64ISAR1_EL1", 0) ^ (1 << 56))
    note = model_mismatch(run(recorded, other))
    assert note is not None and "ID_AA64ISAR1_EL1" in note and "as QEMU 11.1.3 reports it" in note
    assert model_mismatch(run(get_cpu(Arch.AARCH64, "cortex-a72"), other)) is None
