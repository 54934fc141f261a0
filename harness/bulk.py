"""Bulk comparison of a case's fan-out probes (reference.generate.FanOut)
with the reference: one span model (reference.fast) per (span, AT kind),
then one vectorised comparison for all of its probes.

Spans the model cannot vouch for are walked probe by probe with the
readable walker, so every probe is judged exactly as judge_probe would.
Divergences are aggregated per (span, AT kind, observed outcome): one
record with the number of probes and the first few IPAs.
"""
from __future__ import annotations

import dataclasses
import numpy as np

from reference.arch import AtKind
from reference.fast import bulk_matches, bulk_patterns, span_model
from reference.generate import Case
from reference.outcome import DescriptorWrite, WalkResult
from reference.walk import walk

from .compare import ProbeStatus, describe_observation, judge_probe
from .job import ObsKind, RawObservation

SAMPLE_IPAS = 4


@dataclasses.dataclass
class BulkVerdict:
    """Counts, the aggregated divergences (as (first row, result, observation,
    count, sample IPAs)) and the descriptor writes the permitted outcomes
    allow."""

    passed: int = 0
    diverged: int = 0
    not_run: int = 0
    divergences: list = dataclasses.field(default_factory=list)
    writes: list[DescriptorWrite] = dataclasses.field(default_factory=list)


def _observation(row: np.ndarray) -> RawObservation:
    values = [int(v) for v in row[:7]]
    return RawObservation(ObsKind(values[0]), *values[1:])


def judge_fanout(case: Case, records: np.ndarray, observed_label) -> BulkVerdict:
    """Judge the fan-out rows (``records``: one results row per fan-out
    probe, in FanOut order).  ``observed_label(arch, obs)`` classifies an
    observation for aggregation."""
    verdict = BulkVerdict()
    fan = case.fanout
    if not len(fan):
        return verdict
    arch, cpu = case.cpu.arch, case.cpu
    memory = case.memory()
    kinds = records[:, 0]
    verdict.not_run = int(np.count_nonzero(kinds == ObsKind.NOT_RUN.value))
    is_par = kinds == ObsKind.PAR.value
    is_exc = kinds == ObsKind.EXCEPTION.value
    par, esr, far = records[:, 1], records[:, 2], records[:, 3]  # kind par esr far ...
    group_key = fan.span.astype(np.int64) * len(AtKind) + fan.at.astype(np.int64)
    order = np.argsort(group_key, kind="stable")
    keys, starts = np.unique(group_key[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    for key, lo, hi in zip(keys.tolist(), starts.tolist(), bounds):
        rows = order[lo:hi]
        span_index, at = divmod(key, len(AtKind))
        at_kind = AtKind(at)
        base, bits = fan.spans[span_index]
        model = span_model(cpu, case.config, memory, base, bits, at_kind)
        ipas = fan.ipa[rows]
        ran = ~(kinds[rows] == ObsKind.NOT_RUN.value)
        if model is not None:
            ok = bulk_matches(bulk_patterns(arch, model, cpu.arch_version), ipas, is_par[rows],
                              is_exc[rows], par[rows], esr[rows], far[rows])
            verdict.writes.extend(w for o in model.result.outcomes for w in o.writes)
            results = None
        else:
            results = [walk(cpu, case.config, memory, int(ipa), at_kind) for ipa in ipas.tolist()]
            ok = np.array([judge_probe(arch, res, int(ipa), _observation(records[r]),
                                       cpu.arch_version).status is ProbeStatus.PASS
                           for res, ipa, r in zip(results, ipas.tolist(), rows.tolist())],
                          dtype=bool)
            verdict.writes.extend(w for res in results for o in res.outcomes for w in o.writes)
        verdict.passed += int(np.count_nonzero(ok & ran))
        bad = np.nonzero(~ok & ran)[0]
        if not bad.size:
            continue
        verdict.diverged += int(bad.size)
        by_label: dict[str, list[int]] = {}
        for b in bad.tolist():
            obs = _observation(records[rows[b]])
            by_label.setdefault(observed_label(arch, obs), []).append(b)
        for label, members in by_label.items():
            first = members[0]
            ipa = int(ipas[first])
            result: WalkResult = (model.result_for(ipa) if model is not None
                                  else results[first])
            obs = _observation(records[rows[first]])
            verdict.divergences.append((int(rows[first]), result, obs, len(members),
                                        [f"{int(ipas[m]):#x}" for m in members[:SAMPLE_IPAS]],
                                        at_kind, ipa, describe_observation(arch, obs)))
    return verdict
