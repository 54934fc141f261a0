"""CPU models from the machine (harness.qemu.models, issue 15): the model a
run uses for a (QEMU, -cpu) follows what that QEMU reports, is cached, and
a named core that reports other ID registers than its table is a finding
of its own kind (harness.judge.models).

The wrappers change what QEMU emulates under the same name, the way a new
QEMU release changes ``max``: ``-cpu max`` becomes ``-cpu max,lpa2=off``
(FEAT_LPA2 gone: ID_AA64MMFR0_EL1.TGran4/TGran16 stop saying 52-bit), and
``-cpu cortex-a57`` becomes ``-cpu cortex-a53`` (another core)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from harness.judge.models import MODEL_BATCH, model_records
from harness.qemu.launcher import find_qemu
from harness.qemu.models import cache_file, machine_model, read_id_registers
from harness.vocabulary import DivergenceKind
from reference.arch import Arch, Granule
from reference.cpus import CPUS, ModelDifference

pytestmark = pytest.mark.qemu

A64 = Arch.AARCH64

# Replaces the value after -cpu (the launcher passes "-cpu NAME") by $TO
# when it is $FROM; --version and everything else go to the real QEMU.
WRAPPER = """#!/bin/bash
args=()
prev=
for a in "$@"; do
  if [ "$prev" = -cpu ] && [ "$a" = {src} ]; then a={dst}; fi
  args+=("$a")
  prev=$a
done
exec {qemu} "${{args[@]}}"
"""


def wrapper(folder: Path, src: str, dst: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "qemu-system-aarch64"
    path.write_text(WRAPPER.format(src=src, dst=dst, qemu=shlex.quote(str(find_qemu(A64)))))
    path.chmod(0o755)
    return path


def test_max_follows_what_its_qemu_reports(tmp_path):
    """The same QEMU's max with FEAT_LPA2 turned off: the model decodes it
    without LPA2 (so no DS = 1 configuration is generated for it), while
    the plain max has it -- on every QEMU in use (7.2 onwards have LPA2 in
    max and the lpa2 property)."""
    cache = tmp_path / "models.json"
    plain = machine_model(A64, "max", cache=cache)
    no_lpa2 = machine_model(A64, "max", wrapper(tmp_path / "w", "max", "max,lpa2=off"),
                            cache=cache)
    assert plain.model.feat_lpa2 and not no_lpa2.model.feat_lpa2
    assert not no_lpa2.model.s2_granule_52bit(Granule.G4K)
    # Nothing else about stage 2 changed: PAMax (FEAT_LPA) stays 52.
    assert no_lpa2.model.pamax == plain.model.pamax == 52
    assert plain.differences == no_lpa2.differences == ()     # max has no table to differ from
    assert no_lpa2.model.description.startswith("as QEMU ")


def test_a_named_core_keeps_its_table_and_reports_the_difference(tmp_path):
    """cortex-a57 answered by an a53: the run still judges by the a57's
    table (what the real core is), and the differences are named --
    MIDR, ID_AA64MMFR0_EL1 and the PAMax they decode to (44 -> 40)."""
    mm = machine_model(A64, "cortex-a57", wrapper(tmp_path / "w", "cortex-a57", "cortex-a53"),
                       cache=tmp_path / "models.json")
    assert mm.model == CPUS[(A64, "cortex-a57")]
    assert mm.differences == (
        ModelDifference("MIDR_EL1", 0x411FD070, 0x410FD034),
        ModelDifference("ID_AA64MMFR0_EL1", 0x1124, 0x1122),
        ModelDifference("pamax", 44, 40))
    (first, *_rest) = model_records([mm])
    assert first.kind is DivergenceKind.CPU_MODEL and first.batch == MODEL_BATCH
    assert (first.expected, first.observed) == (("MIDR_EL1=0x411fd070",), "MIDR_EL1=0x410fd034")
    assert first.key == "aarch64/cortex-a57/cpu-model/MIDR_EL1"
    # The unwrapped QEMU's a57 is its table: no finding.
    assert machine_model(A64, "cortex-a57", cache=tmp_path / "models.json").differences == ()


def test_registers_are_read_once_and_cached(tmp_path):
    """A second read comes from the cache file: the wrapper that answered
    the first is replaced by one that cannot boot anything (it still says
    its version), and the model is the same.  The cache is keyed by the
    binary and its version line, so another binary is read afresh."""
    cache = tmp_path / "models.json"
    folder = tmp_path / "w"
    first = machine_model(A64, "max", wrapper(folder, "max", "max,lpa2=off"), cache=cache)
    broken = folder / "qemu-system-aarch64"
    broken.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && exec {find_qemu(A64)} --version\n"
                      "exit 1\n")
    again = machine_model(A64, "max", broken, cache=cache)
    assert again.registers == first.registers
    data = json.loads(cache.read_text())
    (entry,) = [e for e in data["entries"].values() if e["binary"] == str(broken.resolve())]
    assert entry["cpu"] == "max" and entry["registers"]["ID_AA64MMFR0_EL1"] == \
        f"{dict(first.registers)['ID_AA64MMFR0_EL1']:#x}"
    # A corrupt cache is ignored (and rewritten), never an error.
    cache.write_text("{not json")
    version, regs = read_id_registers(A64, "max", cache=cache)
    assert regs == dict(machine_model(A64, "max", cache=cache).registers)
    assert json.loads(cache.read_text())["format"] == 1


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("S2DIFF_CPU_CACHE", str(tmp_path / "x.json"))
    assert cache_file() == tmp_path / "x.json"
    monkeypatch.delenv("S2DIFF_CPU_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_file() == tmp_path / "xdg" / "s2diff" / "cpu-models.json"


def test_configs_shows_the_max_of_the_qemu_given(tmp_path, capsys):
    """`s2diff configs --cpu max --qemu DIR`: the title names the features
    the QEMU in DIR reports; its 4k IPA sizes follow them (52 bits needs
    FEAT_LPA2 with 4k: gone under lpa2=off, AArch64.S2MinTxSZ)."""
    from harness import cli
    folder = tmp_path / "w"
    wrapper(folder, "max", "max,lpa2=off")

    def listing(*extra: str) -> tuple[str, set[int]]:
        code = cli.main(["configs", "--cpu", "max", "--granule", "4k", "--json", *extra])
        out, _ = capsys.readouterr()
        assert code == 0
        ipas = {e["ipa_bits"] for e in json.loads(out)}
        code = cli.main(["configs", "--cpu", "max", "--granule", "4k", "--ipa", "40", *extra])
        title = capsys.readouterr().out.splitlines()[0]
        return title, ipas

    title, ipas = listing()
    assert "FEAT_LPA2" in title and 52 in ipas
    title, ipas = listing("--qemu", str(folder))
    assert "as QEMU " in title and "FEAT_LPA2" not in title and "FEAT_LPA," in title
    assert max(ipas) == 48
