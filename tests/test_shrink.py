"""Shrinking and localization (harness/debug/).

The planted divergence is a real QEMU 7.2 bug, not a bent reference: a
descriptor with bits[1:0] = 0b01 at level 0 of a 4K walk, where
AArch64.BlockDescSupported is FALSE (baseline entry
qemu-7.2-block-at-invalid-level; QEMU 7.2 translates it as a block).  It is
planted among ordinary pages, blocks, faults and probes of other kinds."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from harness.baseline import load_baseline
from harness.casefile import load_case, save_case
from harness.cli import main
from harness.debug.ddmin import ddmin
from harness.debug.lab import Lab, reference_labels
from harness.debug.localize import LevelEvidence, localize, reached_levels
from harness.debug.rebuild import geometry_choices, rebuild, walk_path
from harness.debug.shrink import SHRINK_PASSES, image_words, shrink
from harness.debug.variants import in_place as _in_place
from harness.plan import VIRT_EMPTY
from harness.qemu.launcher import find_qemu, qemu_version
from harness.vocabulary import DivergenceKind, Signature
from reference.arch import Arch, AtKind, Granule
from reference.config import aarch64_config
from reference.cpus import get_cpu
from reference.generate import Case, FanOut, MemoryMap, Probe
from reference.image import ImageBuilder, LeafAttrs, encode_leaf, layout_for

ROOT = Path(__file__).resolve().parent.parent
RAM = MemoryMap(ram=((0x40000000, 0x40000000),), empty=VIRT_EMPTY)
PLANTED_IPA = 5 << 39 | 0x1234_5000          # L0 index 5, an offset inside the 512 GiB entry
PLANTED_OA = 1 << 39
WINDOW = (0x4C000000, 1 << 20)


def qemu_7_2() -> bool:
    """Whether the QEMU at hand has the planted bug: the version range of
    its baseline entry (qemu-7.2-block-at-invalid-level) says so."""
    entry = next(e for e in load_baseline(ROOT / "baseline.toml").entries
                 if e.id == "qemu-7.2-block-at-invalid-level")
    return entry.applies_to(qemu_version(find_qemu(Arch.AARCH64)))


def planted_case() -> tuple[Case, int, int]:
    """(case, index of the planted probe, PA of the planted descriptor): a
    cortex-a57 4K 44-bit walk from level 0 with many ordinary mappings."""
    cpu = get_cpu(Arch.AARCH64, "cortex-a57")
    config = aarch64_config(Granule.G4K, 44, 0, ps_bits=44)
    layout = layout_for(cpu, config, 0)
    b = ImageBuilder(layout, *WINDOW, vmid=7)
    probes = []
    for k in range(6):                                   # pages
        ipa = 0x1000_0000 + k * 0x20_3000
        b.map(ipa, 0x4100_0000 + k * 0x1000, 3, LeafAttrs(s2ap=(0b11, 0b01, 0b10)[k % 3]))
        probes += [Probe(ipa + 8, AtKind.S12E1R, "page read"), Probe(ipa, AtKind.S12E1W, "page write")]
    for k in range(3):                                   # 2 MiB blocks
        ipa = (3 << 30) + k * (1 << 21)
        b.map(ipa, 0x4200_0000 + k * (1 << 21), 2)
        probes.append(Probe(ipa + 0x1000, AtKind.S12E0R, "L2 block"))
    b.map(7 << 30, 1 << 30, 1)                           # a 1 GiB block
    probes.append(Probe((7 << 30) + 0x5000, AtKind.S12E1R, "L1 block"))
    b.map(0x2000_0000, 0x4300_0000, 3, LeafAttrs(af=0))  # Access flag fault
    probes.append(Probe(0x2000_0000, AtKind.S12E1R, "AF=0"))
    b.plant(0x3000_0000, 3, 0)                           # invalid page
    probes.append(Probe(0x3000_0000, AtKind.S12E1R, "invalid"))
    planted_pa = b.plant(PLANTED_IPA, 0, encode_leaf(layout, 0, PLANTED_OA))
    probes.insert(5, Probe(PLANTED_IPA, AtKind.S12E1W, "planted L0 block"))
    probes.append(Probe(PLANTED_IPA + 0x40_0000, AtKind.S12E0R, "planted L0 block, again"))
    probes.append(Probe(0, AtKind.S12E1R, "IPA 0"))
    image = b.build()
    case = Case("planted-l0-block", 0, cpu, config.with_vttbr(image.vttbr), image, RAM,
                tuple(probes))
    return case, 5, planted_pa


class TestOffline:
    def test_planted_case_reference(self):
        """The reference takes a Translation fault at level 0 on the planted descriptor only."""
        case, index, pa = planted_case()
        assert reference_labels(case, index) == ("translation L0",)
        path = walk_path(case, index)
        assert [(s.level, s.address) for s in path.steps] == [(0, pa)]
        assert path.terminal.kind == "reserved"

    def test_rebuild_keeps_the_terminal_descriptor(self):
        """A rebuilt walk reads the same terminal value at the same level, at the new place."""
        case, _, _ = planted_case()
        index = 0                                        # a page: a four-level walk
        path = walk_path(case, index)
        base = 0x50000000
        new = rebuild(case, index, path, base=base)
        new_path = walk_path(new, 0)
        assert [s.level for s in new_path.steps] == [0, 1, 2, 3]
        assert new_path.terminal.value == path.terminal.value
        assert new.image.root == base and new.config.vttbr == 7 << 48 | base
        assert reference_labels(new, 0) == reference_labels(case, index)
        assert len(new.image.regions) == 4

    def test_rebuild_replace_ends_the_walk(self):
        case, _, _ = planted_case()
        path = walk_path(case, 0)
        new = rebuild(case, 0, path, base=0x50000000, replace={2: 0})
        assert reference_labels(new, 0) == ("translation L2",)
        assert [s.level for s in walk_path(new, 0).steps] == [0, 1, 2]

    def test_geometry_choices_simplest_first(self):
        """For the planted L0 descriptor: 4K walks must start at level 0, so
        only the IPA size (40..44 bits) and the IPA can shrink, smallest first."""
        case, index, _ = planted_case()
        choices = geometry_choices(case, index, walk_path(case, index))
        low = PLANTED_IPA & ((1 << 39) - 1)      # the offset inside the L0 entry
        assert [(c.levels, c.ia_bits, c.ipa) for c in choices] == [
            (4, 40, low), (4, 41, low), (4, 42, low), (4, 42, PLANTED_IPA),
            (4, 43, low), (4, 43, PLANTED_IPA), (4, 44, low), (4, 44, PLANTED_IPA)]
        assert choices[0].config.t0sz == 24 and choices[0].config.sl0 == 0b10

    def test_ddmin_finds_the_needed_items(self):
        need = {3, 11}
        seen = []

        def test(cands):
            seen.append(len(cands))
            return [need <= set(c) for c in cands]

        kept, done = ddmin(list(range(16)), test, budget=200, batched=True)
        assert sorted(kept) == [3, 11] and done

    def test_ddmin_budget(self):
        kept, done = ddmin(list(range(16)), lambda cs: [False] * len(cs), budget=3, batched=False)
        assert not done and kept == list(range(16))

    def test_reached_prefix(self):
        """Reached: variants, all agreed, answer changed; the prefix stops at
        the first level that is not."""
        ok = lambda lvl: LevelEvidence(lvl, (), 2, True)
        assert reached_levels([ok(1), ok(2), ok(3)]) == ([1, 2, 3], "")
        reached, why = reached_levels([ok(1), LevelEvidence(2, ("L2 bit 0 cleared",), 2, True),
                                       ok(3)])
        assert reached == [1] and why == ("level 2 is not reached: QEMU differs from the "
                                          "reference on L2 bit 0 cleared")

    def test_unchanged_answer_is_inconclusive(self):
        """A QEMU that answers 'translation L0' to everything agrees with a
        level-0 invalid variant by coincidence: not reached."""
        reached, why = reached_levels([LevelEvidence(0, (), 1, False), LevelEvidence(1, ("x",), 2, True)])
        assert reached == [] and why.startswith("level 0 is inconclusive")
        assert reached_levels([LevelEvidence(0, (), 0, False)]) == ([], "level 0: no variant is "
                                                                        "possible there")

    def test_rebuild_aarch32(self):
        """AArch32 LPAE: a 40-bit walk from level 1 rebuilt from level 2 with a 30-bit IPA."""
        from reference.config import aarch32_config
        cpu = get_cpu(Arch.AARCH32, "cortex-a15")
        config = aarch32_config(40, 1)
        b = ImageBuilder(layout_for(cpu, config, 1), *WINDOW, vmid=3)
        b.map(0x2345_6000, 0x4100_0000, 3)
        image = b.build()
        case = Case("a32", 0, cpu, config.with_vttbr(image.vttbr), image, RAM,
                    (Probe(0x2345_6010, AtKind.S12E1R, "page"),))
        path = walk_path(case, 0)
        choice = geometry_choices(case, 0, path)[0]
        assert (choice.levels, choice.ia_bits, choice.ipa) == (2, 25, 0x10)
        new = rebuild(case, 0, path, base=0x50000000, config=choice.config, ipa=choice.ipa)
        assert new.config.vtcr() == 0x80003507         # T0SZ = 7, S = 0, SL0 = 0 (level 2)
        assert reference_labels(new, 0) == ("ok L3",)
        assert new.config.vttbr == 3 << 48 | 0x50000000

    def test_signature_text(self):
        sig = Signature(DivergenceKind.PROBE, ("translation L0",), "ok")
        assert sig.describe() == "expected translation L0, observed ok"


@pytest.mark.qemu
class TestShrinkInQemu:
    def test_shrink_ends_at_the_planted_descriptor(self):
        """No superfluous probe or mapping is left: one probe, one descriptor
        (the planted one, at the root of a 40-bit level-0 walk)."""
        if not qemu_7_2():
            pytest.skip("the planted divergence is a QEMU 7.2 bug")
        case, index, _ = planted_case()
        booted: list[str] = []
        stages: list[str] = []
        lab = Lab(Arch.AARCH64, "cortex-a57", on_boot=booted.append)
        result = shrink(case, lab, stage=stages.append)
        # Progress: a line per boot and one per pass (SHRINK_PASSES).
        assert len(booted) == result.boots and booted[0].startswith("1 QEMU boot, ")
        assert stages[0].startswith("run the case (")
        assert stages[1:] == [f"pass {name}" for name, _ in SHRINK_PASSES]
        m = result.minimal
        assert result.probe == index
        assert result.signature == Signature(DivergenceKind.PROBE, ("translation L0",), "ok")
        assert len(m.probes) == 1 and m.probes[0].at is AtKind.S12E1W
        assert m.probes[0].ipa == PLANTED_IPA & ((1 << 39) - 1)
        words = {pa: v for pa, v in image_words(m).items() if v}
        planted = encode_leaf(layout_for(m.cpu, m.config, 0), 0, PLANTED_OA)
        assert words == {m.image.root: planted}
        assert (m.config.t0sz, m.config.sl0, m.config.tg0) == (24, 0b10, 0)
        assert result.trial.shows(result.signature)
        # Rounds, not one boot per candidate.
        assert result.boots == 4

    def test_shrink_follows_a_fan_out_divergence(self):
        """The planted descriptor probed only by fan-out probes: the shrink
        follows the first of them as a named probe."""
        if not qemu_7_2():
            pytest.skip("the planted divergence is a QEMU 7.2 bug")
        case, index, _ = planted_case()
        named = tuple(p for p in case.probes if "planted" not in p.aim)
        ipas = np.array([0x1000_0000 + 8 * k for k in range(16)] +
                        [PLANTED_IPA + (k << 30) for k in range(16)], dtype=np.uint64)
        fan = FanOut(((0x1000_0000, 12), (5 << 39, 39)), ipas, np.zeros(32, np.uint8),
                     np.array([0] * 16 + [1] * 16, np.int32))
        case = dataclasses.replace(case, probes=named, fanout=fan)
        result = shrink(case, Lab(Arch.AARCH64, "cortex-a57"))
        assert result.probe == len(named) + 16
        assert result.signature == Signature(DivergenceKind.PROBE, ("translation L0",), "ok")
        assert len(result.minimal.probes) == 1 and len(result.minimal.fanout) == 0
        assert result.minimal.probes[0].ipa == PLANTED_IPA & ((1 << 39) - 1)
        assert len(result.minimal.image.regions) == 1

    def test_localize_names_the_planted_level_and_descriptor(self):
        """On the unshrunk case: level 0, the planted descriptor's own PA and
        value, and the field is its type bits."""
        if not qemu_7_2():
            pytest.skip("the planted divergence is a QEMU 7.2 bug")
        case, index, pa = planted_case()
        lab = Lab(Arch.AARCH64, "cortex-a57")
        single = dataclasses.replace(case, probes=(case.probes[index],))
        base = lab.run([single])[0]
        sig = Signature(DivergenceKind.PROBE, ("translation L0",), "ok")
        assert base.shows(sig)
        loc = localize(single, lab, sig, base)
        planted = encode_leaf(layout_for(case.cpu, case.config, 0), 0, PLANTED_OA)
        assert (loc.level, loc.address, loc.value) == (0, pa, planted)
        assert loc.field.startswith("descriptor bits[1:0] = 0b01 (a block) at level 0, where "
                                    "AArch64.BlockDescSupported is FALSE")
        assert loc.rebuilt and loc.boots == 1
        invalid = next(v for v in loc.variants if v.role == "invalid")
        assert invalid.agrees and invalid.observed == "translation L0"

    def test_localize_configuration(self):
        """QEMU 7.2 rejects an IPA larger than PS: no level is reached, and
        changing PS or T0SZ alone makes QEMU agree."""
        if not qemu_7_2():
            pytest.skip("QEMU 7.2 bug")
        case = load_case(ROOT / "tests/baseline/ipa-larger-than-ps.json")
        lab = Lab(Arch.AARCH64, case.cpu.name)
        result = shrink(case, lab)
        loc = localize(result.minimal, lab, result.signature, result.trial)
        assert loc.level is None and loc.address is None
        assert loc.field.startswith("VTCR PS: QEMU agrees with output size 40, 42, 44, 48, 52 bits")
        assert "T0SZ: QEMU agrees with IPA size 31, 32, 33, 34, 35, 36 bits" in loc.field

    def test_cli_writes_a_reproducing_minimal_case(self, tmp_path, capsys):
        if not qemu_7_2():
            pytest.skip("the planted divergence is a QEMU 7.2 bug")
        case, _, _ = planted_case()
        src = tmp_path / "planted.json"
        save_case(src, case)
        assert main(["shrink", str(src)]) == 0
        captured = capsys.readouterr()
        out = captured.out
        # Progress on stderr, a line per stage (the interval is 10 s).
        progress = captured.err.splitlines()
        assert progress[0].startswith("shrink: 00:") and "run the case (" in progress[0]
        assert progress[-1].endswith(" localize")
        minimal = tmp_path / "planted.min.json"
        report = (tmp_path / "planted.min.txt").read_text()
        # The conclusion first, the walk and the variants in the report only.
        assert minimal.is_file() and out.startswith(report.split("\n== the minimal case ==")[0])
        assert "QEMU departs from the reference at level 0: descriptor" in report
        lines = out.splitlines()
        assert lines[1] == ("divergence kept: expected translation L0, observed ok "
                            "(known: qemu-7.2-block-at-invalid-level)")
        assert lines[3] == f"re-run: s2diff repro {minimal}"
        assert lines[4].startswith("localized: L0 descriptor [")
        data = json.loads(minimal.read_text())
        assert data["divergence"] == [{"probe": 0, "kind": "probe", "expected": ["translation L0"],
                                       "observed": "ok"}]
        assert data["localization"]["level"] == 0
        assert main(["repro", "--no-baseline", str(minimal)]) == 1

    def test_not_divergent_is_refused(self, tmp_path, capsys):
        case, _, _ = planted_case()
        src = tmp_path / "page.json"
        save_case(src, dataclasses.replace(case, probes=case.probes[:2]))
        assert main(["shrink", str(src)]) == 2
        assert "does not diverge" in capsys.readouterr().err


@pytest.mark.qemu
class TestLab:
    def test_rounds_pack_into_boots(self):
        """Disjoint windows share a boot; the same tables with other probes
        share them; other contents at the same PAs need a boot each."""
        case, index, pa = planted_case()
        lab = Lab(Arch.AARCH64, "cortex-a57")
        path = walk_path(case, 0)
        moved = [rebuild(case, 0, path, base=0x50000000 + k * (1 << 20)) for k in range(3)]
        lab.run(moved)
        assert lab.boots == 1
        subsets = [dataclasses.replace(case, probes=(p,)) for p in case.probes[:4]]
        lab.run(subsets)
        assert lab.boots == 2
        edited = _in_place(case, pa, 0)
        assert image_words(edited).get(pa, 0) == 0 != image_words(case)[pa]
        trials = lab.run([case, edited])
        assert lab.boots == 4
        # The planted descriptor diverges where QEMU has the bug (its
        # baseline entry's versions); without it, both agree.
        assert [t.agrees for t in trials] == [not qemu_7_2(), True]
