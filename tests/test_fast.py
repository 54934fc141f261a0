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


def _matches_one_by_one(table, which, ipas, is_par, is_exc, par, esr, far) -> list[bool]:
    """table_matches's definition, row by row over every slot of the row's
    model: a PAR matches (par & care) == value | ((ipa + delta) & pa_mask),
    an exception (esr & care) == value with FAR the IPA."""
    out = []
    for r, m in enumerate(which.tolist()):
        hit = False
        for k in range(table.par.shape[0]):
            value, care = int(table.value[k][m]), int(table.care[k][m])
            want = value | ((int(ipas[r]) + int(table.delta[k][m])) & (2**64 - 1)
                            & int(table.pa_mask[k][m]))
            hit |= bool(is_par[r] and table.par[k][m] and (int(par[r]) & care) == want)
            hit |= bool(is_exc[r] and table.exception[k][m] and (int(esr[r]) & care) == value
                        and int(far[r]) == int(ipas[r]))
        out.append(hit)
    return out


def test_table_matches_visits_every_slot_of_every_row():
    """Models with 1..4 outcomes side by side (table_matches compares slot k
    only for rows whose model has a k-th outcome): its answer equals the
    row-by-row definition, with observations drawn to hit a random slot of
    their own model, of another model, or none."""
    from reference.fast import PatternTable, table_matches
    rng = np.random.default_rng(7)
    n_models, n_rows = 6, 4000
    outcomes = rng.integers(1, 5, size=n_models)
    k_max = int(outcomes.max())
    par = np.zeros((k_max, n_models), dtype=bool)
    exc = np.zeros((k_max, n_models), dtype=bool)
    for m, n in enumerate(outcomes.tolist()):
        kinds = rng.integers(0, 2, size=n).astype(bool)
        par[:n, m], exc[:n, m] = kinds, ~kinds
    words = [rng.integers(0, 1 << 12, size=(k_max, n_models), dtype=np.uint64) for _ in range(4)]
    table = PatternTable(par, exc, *words)
    which = rng.integers(0, n_models, size=n_rows).astype(np.intp)
    ipas = rng.integers(0, 1 << 12, size=n_rows, dtype=np.uint64)
    # Observations: the value of a random slot of a random model (so some
    # hit their own model's k-th outcome, some another's), ANDed with care.
    src_m = rng.integers(0, n_models, size=n_rows)
    src_k = rng.integers(0, k_max, size=n_rows)
    value = table.value[src_k, src_m]
    reg = value | ((ipas + table.delta[src_k, src_m]) & table.pa_mask[src_k, src_m])
    is_par = rng.integers(0, 2, size=n_rows).astype(bool)
    far = np.where(rng.integers(0, 4, size=n_rows) == 0, ipas + np.uint64(1), ipas)
    got = table_matches(table, which, ipas, is_par, ~is_par, reg, value, far)
    want = _matches_one_by_one(table, which, ipas, is_par, ~is_par, reg, value, far)
    assert got.tolist() == want
    # Both answers occur, from slots beyond the first too: the comparison
    # can fail, and the later slots are really compared.
    assert 0 < sum(want) < n_rows
    late = [r for r in range(n_rows) if want[r] and src_k[r] > 0 and src_m[r] == which[r]]
    assert late


def test_a_span_across_pamax_is_not_one_walk():
    """A configuration every walk of which faults before reading a
    descriptor (reserved SL0: Translation fault at level 0, no trace) still
    depends on the IPA through the check that comes first: an IPA at or
    above 2^PAMax is a stage-1 Address size fault (AArch64.S1DisabledOutput).
    A span across 2^PAMax must not be vouched for by its first walk alone:
    the model either refuses it or answers as the readable walker at both
    ends."""
    entry = next(e for e in build_matrix(cpus=["cortex-a35"])
                 if e.kind is CaseKind.AT and e.name.endswith("reserved-SL0"))
    cpu = get_cpu(entry.arch, entry.cpu)
    case = generate_case(cpu, entry.config, 3, entry.name, WINDOW, MMAP)
    memory = case.memory()
    base, bits = (1 << cpu.pamax) - (1 << 12), 13
    last = base + (1 << bits) - 1
    below, above = (walk(cpu, case.config, memory, ipa, AtKind.S12E1R) for ipa in (base, last))
    # The two ends really differ (worked out above: level-0 Translation
    # fault below 2^PAMax, stage-1 Address size fault at or above it).
    assert _predictions(cpu.arch, cpu.arch_version, below, base) != \
        _predictions(cpu.arch, cpu.arch_version, above, base)
    model = span_model(cpu, case.config, memory, base, bits, AtKind.S12E1R)
    if model is not None:
        assert _predictions(cpu.arch, cpu.arch_version, model.result_for(last), last) == \
            _predictions(cpu.arch, cpu.arch_version, above, last)
