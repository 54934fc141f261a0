"""Crash and hang isolation (harness/isolate.py) against a planted failure:
tests/fakes/qemu_marker.py runs the real QEMU unless one image of the job
carries the marker VMID in its VTTBR (and, when asked, a probe of the marker
IPA), in which case it dies of SIGSEGV or hangs."""
from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path

import pytest

from harness.casefile import load_case_data, save_case
from harness.cli import main
from harness.debug.isolate import Failure, IsolateError, isolate, parse_expect
from harness.plan import VIRT_EMPTY
from harness.qemu.boot import FailureKind
from harness.qemu.launcher import find_qemu
from reference.arch import Arch, AtKind, Granule
from reference.config import aarch64_config
from reference.cpus import get_cpu
from reference.generate import Case, MemoryMap, Probe, generate_case

FAKE = Path(__file__).resolve().parent / "fakes" / "qemu_marker.py"
RAM = MemoryMap(ram=((0x40000000, 0x40000000),), empty=VIRT_EMPTY)
MARKER_VMID = 0xC0DE
MARKER_IPA = 0x5A5A_5000


def batch(n: int, marked: int, marker_probe: int | None) -> list[Case]:
    """``n`` generated cases in disjoint windows; case ``marked`` carries the
    marker VMID and, at position ``marker_probe``, a probe of MARKER_IPA."""
    cpu = get_cpu(Arch.AARCH64, "cortex-a57")
    config = aarch64_config(Granule.G4K, 40, 1, ps_bits=40)
    cases = [generate_case(cpu, config, 3, f"iso#{i}", (0x48000000 + i * (1 << 19), 1 << 19), RAM)
             for i in range(n)]
    c = cases[marked]
    probes = list(c.probes)
    if marker_probe is not None:
        probes.insert(marker_probe, Probe(MARKER_IPA, AtKind.S12E1R, "marker"))
    cases[marked] = dataclasses.replace(
        c, config=c.config.with_vttbr(c.config.vttbr & ((1 << 48) - 1) | MARKER_VMID << 48),
        probes=tuple(probes))
    return cases


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setenv("S2DIFF_MARKER_REAL", str(find_qemu(Arch.AARCH64)))
    monkeypatch.setenv("S2DIFF_MARKER_VMID", f"{MARKER_VMID:x}")
    return monkeypatch


def test_parse_expect():
    assert parse_expect({}) is None
    assert parse_expect({"expect": {"kind": "crash", "signal": 11}}) == Failure(FailureKind.CRASH, 11)
    with pytest.raises(Exception, match="expect.kind"):
        parse_expect({"expect": {"kind": "boom"}})


@pytest.mark.qemu
def test_crash_isolated_to_image_and_probe(planted):
    """40 images, one of them (with one probe of ~30) crashes QEMU: found."""
    planted.setenv("S2DIFF_MARKER_IPA", f"{MARKER_IPA:x}")
    cases = batch(40, marked=23, marker_probe=7)
    lines = []
    iso = isolate(cases, qemu=str(FAKE), timeout=20, log=lines.append)
    assert (iso.image, iso.probe) == (23, 7)
    assert iso.failure == Failure(FailureKind.CRASH, signal.SIGSEGV)
    assert iso.complete and iso.probe_needed
    assert iso.case.probes == (Probe(MARKER_IPA, AtKind.S12E1R, "marker"),)
    assert iso.case.config.vttbr >> 48 == MARKER_VMID
    assert "planted segv" in iso.expect()["console"]
    assert lines[0] == "boot 1: all 40 images: crash: QEMU killed by signal 11 (SIGSEGV)"
    # Bisection, not one boot per image and probe.
    assert iso.boots <= 2 * (6 + 6) + 3


@pytest.mark.qemu
def test_crash_case_file_reproduces(planted, tmp_path, capsys):
    """`s2diff isolate` writes a crash case; `s2diff repro-crash` reproduces
    it with the crashing QEMU (exit 1) and not with the real one (exit 0)."""
    cases = batch(6, marked=4, marker_probe=None)
    files = []
    for i, c in enumerate(cases):
        files.append(tmp_path / f"c{i}.json")
        save_case(files[-1], c)
    out = tmp_path / "crash.json"
    assert main(["isolate", *map(str, files), "--out", str(out), "--qemu-aarch64", str(FAKE)]) == 0
    text = capsys.readouterr().out
    assert "ISOLATED: crash: QEMU killed by signal 11 (SIGSEGV) -- image 4" in text
    assert "note: the image fails with no probe at all" in text
    data = load_case_data(out)
    assert data["expect"]["kind"] == "crash" and data["expect"]["signal"] == 11
    assert data["expect"]["signal_name"] == "SIGSEGV" and data["expect"]["probe_needed"] is False
    assert data["isolated_from"]["image"] == 4 and len(data["probes"]) == 1
    assert main(["repro-crash", str(out), "--qemu-aarch64", str(FAKE)]) == 1
    assert capsys.readouterr().out.startswith("crash reproduced: ")
    assert main(["repro-crash", str(out)]) == 0
    assert capsys.readouterr().out.startswith("no crash: QEMU completes the case")


@pytest.mark.qemu
def test_hang_isolated(planted):
    """A hang costs a timeout per failing boot: few images, one probe each."""
    planted.setenv("S2DIFF_MARKER_MODE", "hang")
    cases = [dataclasses.replace(c, probes=c.probes[:1])
             for c in batch(4, marked=3, marker_probe=None)]
    iso = isolate(cases, qemu=str(FAKE), timeout=2)
    assert iso.image == 3 and iso.failure == Failure(FailureKind.HANG)
    assert iso.expect()["kind"] == "hang" and iso.expect()["status"] == "timeout"


@pytest.mark.qemu
def test_completing_batch_is_refused(planted):
    with pytest.raises(IsolateError, match="nothing to isolate"):
        isolate(batch(2, marked=0, marker_probe=None), timeout=20)


@pytest.mark.qemu
def test_repro_crash_needs_expect(tmp_path, capsys):
    src = tmp_path / "c.json"
    save_case(src, batch(1, 0, None)[0])
    assert main(["repro-crash", str(src)]) == 2
    assert "no 'expect' key" in capsys.readouterr().err
    json.loads(src.read_text())
