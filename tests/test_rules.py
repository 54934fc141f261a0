"""Rule identity (reference.rules): every rule text the reference emits
carries the stable id of the rule it states.

Checked over generated cases of every matrix family (one entry per
family and CPU model), over stage-1-on cases (reference.generate_s1) and
access cases (reference.access_case): every text in an outcome's rules, a
result's UNPREDICTABLE list, a PAR report's or an access expectation's
rules is a ``Rule`` whose text contains its id's marker (the pseudocode
function, or a phrase of the rule) -- so a new rule text without an id,
or a tag that names another rule, fails here.
"""
from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Iterator
from types import MappingProxyType

import pytest

from harness.matrix import build_matrix
from reference import rules as R
from reference.access import AccessKind
from reference.access_case import El1Window, generate_access_case
from reference.arch import Arch, AtKind, Granule
from reference.at import predict as at_predict
from reference.catalogue import catalogue
from reference.config import aarch32_config, aarch64_config
from reference.coverage import result_rules
from reference.cpus import get_cpu
from reference.generate import MemoryMap, OptIn, generate_case
from reference.generate_s1 import generate_s1_case, s1_window_bytes, stage1_shapes
from reference.outcome import Outcome, Translation, WalkResult
from reference.walk import walk

MMAP = MemoryMap(ram=((0x4000_0000, 0x4000_0000),), empty=(0xC000_0000, 0x0B00_0000))
WINDOW = (0x4800_0000, 1 << 23)
EL1 = El1Window(0x4021_0000, 0x1000, MappingProxyType(
    {k: (0x800 + 8 * k.code,) if k.spec.op.name != "EXCLUSIVE" else (0x800 + 8 * k.code,
                                                                    0x804 + 8 * k.code)
     for k in AccessKind}))


def untagged(texts: Iterable[str]) -> list[str]:
    """The texts that carry no id, or whose text does not contain the
    marker of the id they carry."""
    return [t for t in texts if not isinstance(t, R.Rule) or t.id.marker not in t]


def result_texts(result: WalkResult) -> Iterator[str]:
    yield from result.unpredictable
    for o in result.outcomes:
        yield from o.rules


def stage2_results() -> Iterator[WalkResult]:
    """Case #0 of one entry per (family, CPU) of the nightly matrix, and
    the opt-in misaligned VTTBR scenario."""
    seen = set()
    for e in build_matrix():
        if (e.group, e.cpu, e.arch) in seen:
            continue
        seen.add((e.group, e.cpu, e.arch))
        cpu = get_cpu(e.arch, e.cpu)
        for opt in (frozenset(), frozenset({OptIn.MISALIGNED_VTTBR})):
            yield from generate_case(cpu, e.config, 1, f"{e.name}#0", WINDOW, MMAP,
                                     opt_in=opt).permitted()


def stage1_texts() -> Iterator[str]:
    for arch, name in ((Arch.AARCH64, "max"), (Arch.AARCH64, "cortex-a57"),
                       (Arch.AARCH32, "cortex-a15"), (Arch.AARCH32, "max")):
        cpu = get_cpu(arch, name)
        entries, shapes = catalogue(cpu), stage1_shapes(cpu)
        for i in range(4):
            entry, shape = entries[(i * 7919) % len(entries)], shapes[i % len(shapes)]
            case = generate_s1_case(cpu, entry.config, shape, 3, f"{name}#{i}",
                                    (WINDOW[0], s1_window_bytes(entry.config, shape)), MMAP)
            for probe, result in zip(case.probes, case.permitted()):
                yield from result_texts(result)
                for o in result.outcomes:
                    if not isinstance(o.result, Translation):
                        for reported in at_predict(cpu, o, probe.va):
                            yield from reported.rules


def access_texts() -> Iterator[str]:
    configs = {(Arch.AARCH64, "cortex-a57"): aarch64_config(Granule.G4K, 40, 1, ps_bits=40),
               (Arch.AARCH64, "max"): aarch64_config(Granule.G16K, 47, 1, ps_bits=48, ha=1, hd=1),
               (Arch.AARCH32, "cortex-a15"): aarch32_config(40, 1),
               (Arch.AARCH32, "max"): aarch32_config(32, 1)}
    for (arch, name), config in configs.items():
        case = generate_access_case(get_cpu(arch, name), config, 5, name, (0x4800_0000, 0x40_0000),
                                    (0x5000_0000, 0x100_0000), MMAP, EL1)
        for expectations in case.expectations():
            for e in expectations if isinstance(expectations, tuple) else ():
                yield from e.rules
                yield from e.outcome.rules


class TestEveryRuleHasAnId:
    def test_stage2_families(self):
        """Every rule text of the stage-2 cases of every matrix family has an id."""
        texts = [t for r in stage2_results() for t in result_texts(r)]
        assert len(texts) > 10_000
        assert untagged(texts) == []

    def test_stage1_cases(self):
        """Every rule text of stage-1-on AT cases (and their PAR reports) has an id."""
        texts = list(stage1_texts())
        assert len(texts) > 1000
        assert untagged(texts) == []

    def test_access_cases(self):
        """Every rule text of access cases (outcomes and expectations) has an id."""
        texts = list(access_texts())
        assert len(texts) > 100
        assert untagged(texts) == []

    def test_the_check_can_fail(self):
        """A plain text, or a tag that names another rule, is reported."""
        plain = "AArch64.S2Walk: translation"
        wrong = R.A64_S2_AF_FAULT.text("AArch64.S2Walk: translation")
        right = R.A64_S2_TRANSLATION.text("AArch64.S2Walk: translation")
        assert untagged([plain, wrong, right]) == [plain, wrong]


class TestRegistry:
    def test_keys_are_stable_names(self):
        """Keys are dotted names (levels as L0, L-1), unique (the registry refuses a repeat)."""
        keys = [r.key for r in R.rule_ids()]
        assert len(keys) == len(set(keys))
        assert all(re.fullmatch(r"[a-z0-9][a-z0-9.\-]*(\.L-?[0-9])?", k) for k in keys)
        with pytest.raises(ValueError, match="declared twice"):
            R._rule("a64.s2.translation", "X", "y")

    def test_a_rule_is_its_text(self):
        """A Rule compares, joins and serialises as its text, and pickles with its id."""
        r = R.A64_S2_TRANSLATION.text("AArch64.S2Walk: translation")
        assert r == "AArch64.S2Walk: translation" and "; ".join([r, "x"]).endswith("; x")
        back = pickle.loads(pickle.dumps(r))
        assert back == r and back.id is R.A64_S2_TRANSLATION

    def test_levels_and_encodings_have_their_own_ids(self):
        """An invalid descriptor at level 1 and at level 2 are two rules; so
        are two S2PIR_EL2 encodings."""
        assert R.A64_S2_DESC[(R.Desc.INVALID, 1)] is not R.A64_S2_DESC[(R.Desc.INVALID, 2)]
        assert len({R.A64_S2PIE_PERM[(e, True)].key for e in range(16)}) == 16

    def test_the_walk_tags_the_rule_that_decides(self):
        """A 4K level-2 invalid descriptor reached from a level-1 table: the
        rules are the level-2 invalid descriptor (tag and trace), the level-1
        table (trace) and the Translation fault PAR at level 2 (FST
        EncodeLDFSC(translation, 2) = 0b000110)."""
        cpu = get_cpu(Arch.AARCH64, "cortex-a57")
        cfg = aarch64_config(Granule.G4K, 40, 1, ps_bits=40, vttbr=0x4800_0000)
        from reference.memory import Memory, Region
        l1 = (0x4800_1000 | 0b11).to_bytes(8, "little") + bytes(4088)
        mem = Memory(ram=((0x4000_0000, 0x4000_0000),),
                     regions=(Region(0x4800_0000, l1), Region(0x4800_1000, bytes(4096))))
        result = walk(cpu, cfg, mem, 0x1000, AtKind.S12E1R)
        keys = {r.key for r in result_rules(Arch.AARCH64, result)}
        assert keys == {"a64.s2.tg0", "a64.s2.desc.table.L1", "a64.s2.desc.invalid.L2",
                        "par.a64.fault.s2.translation.L2"}
        (o,) = result.outcomes
        assert isinstance(o, Outcome) and o.rules[-1].id is R.A64_S2_DESC[(R.Desc.INVALID, 2)]
