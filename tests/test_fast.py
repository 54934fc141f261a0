"""The bulk path (reference.fast, harness.judge.bulk) agrees with the readable
walker probe by probe, on seeded samples of every configuration family of
the nightly matrix (valid, HA/HD, invalid, both architectures)."""
from __future__ import annotations

import random

import numpy as np
import pytest

from harness.judge.compare import ProbeStatus, judge_probe
from harness.kinds import CaseKind
from harness.matrix import build_matrix
from harness.plan import VIRT_EMPTY
from harness.qemu.job import ObsKind, RawObservation
from reference.arch import AtKind
from reference.cpus import get_cpu
from reference.fast import bulk_matches, bulk_patterns, span_model
from reference.generate import MemoryMap, generate_case
from reference.par import Report, predict
from reference.walk import walk

MMAP = MemoryMap(ram=((0x40000000, 0x40000000),), empty=VIRT_EMPTY)
WINDOW = (0x48000000, 1 << 23)


def _sample_entries(k: int):
    # AT entries with fan-out only: the span model is theirs (access and
    # stage-1 entries, and the opted-in misaligned-VTTBR family, have none).
    entries = [e for e in build_matrix() if e.kind is CaseKind.AT and not e.opt_in]
    groups: dict[str, list] = {}
    for e in entries:
        groups.setdefault(e.group, []).append(e)
    rng = random.Random(2024)
    return [e for g in sorted(groups) for e in rng.sample(groups[g], min(k, len(groups[g])))]


ENTRIES = _sample_entries(3)


def _predictions(arch, version, result, ipa):
    out = set()
    for o in result.outcomes:
        p = predict(arch, o, ipa, version)
        out.add((p.report, p.pattern.value, p.pattern.care, p.far))
    return out


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_span_model_equals_the_readable_walker(entry):
    cpu = get_cpu(entry.arch, entry.cpu)
    case = generate_case(cpu, entry.config, 11, entry.name, WINDOW, MMAP, fanout=12)
    memory = case.memory()
    fan = case.fanout
    assert len(fan) == 12 * len(fan.spans)
    modelled = 0
    for i in range(len(fan)):
        at = AtKind(int(fan.at[i]))
        base, bits = fan.spans[int(fan.span[i])]
        ipa = int(fan.ipa[i])
        assert base <= ipa < base + (1 << bits)
        model = span_model(cpu, case.config, memory, base, bits, at)
        if model is None:
            continue
        modelled += 1
        readable = walk(cpu, case.config, memory, ipa, at)
        # Same permitted outcomes (the span's trace is base's: compare what
        # the probe can show, and the descriptor writes).
        assert _predictions(cpu.arch, cpu.arch_version, model.result_for(ipa), ipa) == \
            _predictions(cpu.arch, cpu.arch_version, readable, ipa)
        assert {w for o in model.result.outcomes for w in o.writes} == \
            {w for o in readable.outcomes for w in o.writes}
    # The model is not vacuous: most spans are uniform.
    assert modelled >= len(fan) // 2


@pytest.mark.parametrize("entry", ENTRIES[::4], ids=lambda e: e.name)
def test_bulk_matches_equals_judge_probe(entry):
    """For observations equal to each permitted outcome's prediction, and
    for perturbed ones (a flipped cared bit, the wrong kind), the vectorised
    comparison says exactly what judge_probe says."""
    cpu = get_cpu(entry.arch, entry.cpu)
    case = generate_case(cpu, entry.config, 5, entry.name, WINDOW, MMAP, fanout=6)
    memory = case.memory()
    fan = case.fanout
    rng = random.Random(7)
    checked = 0
    for i in range(0, len(fan), 3):
        at = AtKind(int(fan.at[i]))
        base, bits = fan.spans[int(fan.span[i])]
        ipa = int(fan.ipa[i])
        model = span_model(cpu, case.config, memory, base, bits, at)
        if model is None:
            continue
        readable = walk(cpu, case.config, memory, ipa, at)
        observations = []
        for o in readable.outcomes:
            p = predict(cpu.arch, o, ipa, cpu.arch_version)
            if p.report is Report.PAR:
                exact = RawObservation(ObsKind.PAR, par=p.pattern.value)
                bit = rng.choice([b for b in range(64) if p.pattern.care >> b & 1])
                observations += [exact, RawObservation(ObsKind.PAR, par=p.pattern.value ^ (1 << bit)),
                                 RawObservation(ObsKind.EXCEPTION, esr=p.pattern.value, far=ipa)]
            else:
                observations += [RawObservation(ObsKind.EXCEPTION, esr=p.pattern.value, far=ipa),
                                 RawObservation(ObsKind.EXCEPTION, esr=p.pattern.value, far=ipa ^ 8),
                                 RawObservation(ObsKind.PAR, par=p.pattern.value)]
        patterns = bulk_patterns(cpu.arch, model, cpu.arch_version)
        for obs in observations:
            expected = judge_probe(cpu.arch, readable, ipa, obs, cpu.arch_version).status
            arr = lambda v: np.array([v], dtype=np.uint64)  # noqa: E731
            got = bulk_matches(patterns, arr(ipa), np.array([obs.kind is ObsKind.PAR]),
                               np.array([obs.kind is ObsKind.EXCEPTION]), arr(obs.par),
                               arr(obs.esr), arr(obs.far))[0]
            assert got == (expected is ProbeStatus.PASS), (obs, expected)
            checked += 1
    assert checked > 0


def test_a_span_with_varying_walks_is_refused():
    """A span that covers entries with different descriptors is not
    modelled (the end walks differ), so the caller walks each probe."""
    entry = next(e for e in build_matrix(cpus=["cortex-a57"]) if e.kvm)
    cpu = get_cpu(entry.arch, entry.cpu)
    case = generate_case(cpu, entry.config, 3, entry.name, WINDOW, MMAP)
    # The whole IPA space: its ends walk different entries.
    assert span_model(cpu, case.config, case.memory(), 0, case.config.ia_bits,
                      AtKind.S12E1R) is None
