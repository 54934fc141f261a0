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

from reference import rules as R
from reference.arch import AtKind
from reference.coverage import result_rules
from reference.fast import SpanModel, bulk_matches, bulk_patterns, span_model
from reference.generate import Case
from reference.memory import Memory
from reference.outcome import DescriptorWrite, WalkResult
from reference.walk import walk

from ..qemu.job import ObsKind, RawObservation, row_observation
from ..vocabulary import describe_observation, observed_label
from .compare import judge_probe

SAMPLE_IPAS = 4


@dataclasses.dataclass(frozen=True)
class FanoutDivergence:
    """The fan-out probes of one (span, AT kind, observed label) that
    diverge: the first one's row (in FanOut order), IPA, permitted outcomes
    and observation (with its description), how many there are and the
    first few IPAs."""

    row: int
    result: WalkResult
    obs: RawObservation
    count: int
    ipas: tuple[str, ...]
    at: AtKind
    ipa: int
    text: str


@dataclasses.dataclass
class BulkVerdict:
    """What judge_fanout accumulates: counts, the aggregated divergences,
    the descriptor writes the permitted outcomes allow and the rules the
    probes that ran reached (rules of a span model, probes of it)."""

    passed: int = 0
    diverged: int = 0
    not_run: int = 0
    divergences: list[FanoutDivergence] = dataclasses.field(default_factory=list)
    writes: list[DescriptorWrite] = dataclasses.field(default_factory=list)
    rules: list[tuple[frozenset[R.RuleId], int]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Table:
    """One case's fan-out results, its columns split out once: every
    (span, AT kind) group of the case is judged against them."""

    case: Case
    memory: Memory
    records: np.ndarray     # one results row per fan-out probe (kind par esr far ...)
    kinds: np.ndarray
    is_par: np.ndarray
    is_exc: np.ndarray
    par: np.ndarray
    esr: np.ndarray
    far: np.ndarray

    @classmethod
    def of(cls, case: Case, records: np.ndarray) -> _Table:
        kinds = records[:, 0]
        return cls(case, case.memory(), records, kinds, kinds == ObsKind.PAR.value,
                   kinds == ObsKind.EXCEPTION.value, records[:, 1], records[:, 2],
                   records[:, 3])


# A span the model cannot vouch for is split in halves, recursively, down
# to this many levels, when it has enough probes to make that worth it
# (an IMPLEMENTATION DEFINED granule, for instance, walks other index bits).
SPLIT_DEPTH = 6
SPLIT_MIN_PROBES = 32


def _models(case: Case, memory: Memory, base: int, bits: int, at: AtKind, n_probes: int,
            depth: int = SPLIT_DEPTH) -> list[tuple[int, int, SpanModel | None]]:
    """(base, bits, model or None) covering [base, base + 2^bits)."""
    model = span_model(case.cpu, case.config, memory, base, bits, at)
    if model is not None or depth == 0 or bits <= 12 or n_probes < SPLIT_MIN_PROBES:
        return [(base, bits, model)]
    half = bits - 1
    return (_models(case, memory, base, half, at, n_probes // 2, depth - 1)
            + _models(case, memory, base + (1 << half), half, at, n_probes // 2, depth - 1))


def _label_keys(kinds: np.ndarray, par: np.ndarray, esr: np.ndarray) -> np.ndarray:
    """A key per observation that determines its observed label (vocabulary.observed_label):
    the kind, and for a PAR its F, FST, PTW and S bits (a success is 'ok'
    whatever its PA); for an exception its EC and DFSC."""
    par_key = np.where(par & 1, par & 0x3FF, 0)
    exc_key = (esr >> 26) << 8 | (esr & 0x3F)
    return np.where(kinds == ObsKind.PAR.value, par_key,
                    np.where(kinds == ObsKind.EXCEPTION.value, exc_key, 0)) | (kinds << 60)


def judge_fanout(case: Case, records: np.ndarray) -> BulkVerdict:
    """Judge the fan-out rows (``records``: one results row per fan-out
    probe, in FanOut order); divergences are aggregated by observed label
    (harness.vocabulary)."""
    verdict = BulkVerdict()
    fan = case.fanout
    if not len(fan):
        return verdict
    table = _Table.of(case, records)
    verdict.not_run = int(np.count_nonzero(table.kinds == ObsKind.NOT_RUN.value))
    group_key = fan.span.astype(np.int64) * len(AtKind) + fan.at.astype(np.int64)
    order = np.argsort(group_key, kind="stable")
    keys, starts = np.unique(group_key[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    for key, lo, hi in zip(keys.tolist(), starts.tolist(), bounds):
        span_index, at = divmod(key, len(AtKind))
        at_kind = AtKind(at)
        base, bits = fan.spans[span_index]
        group = order[lo:hi]
        for sub_base, sub_bits, model in _models(case, table.memory, base, bits, at_kind,
                                                 len(group)):
            ipas_all = fan.ipa[group]
            inside = (ipas_all >= np.uint64(sub_base)) & \
                     (ipas_all - np.uint64(sub_base) < np.uint64(1 << sub_bits))
            rows = group[inside]
            if rows.size:
                _judge_rows(table, rows, at_kind, model, verdict)
    return verdict


def _judge_rows(table: _Table, rows: np.ndarray, at_kind: AtKind, model: SpanModel | None,
                verdict: BulkVerdict) -> None:
    """Judge the fan-out ``rows`` of one (span, AT kind): against the span
    ``model`` in one vectorised comparison, or walk by walk without one."""
    case, records = table.case, table.records
    arch, cpu = case.cpu.arch, case.cpu
    ipas = case.fanout.ipa[rows]
    ran = table.kinds[rows] != ObsKind.NOT_RUN.value
    results: list[WalkResult] = []
    if model is not None:
        ok = bulk_matches(bulk_patterns(arch, model, cpu.arch_version), ipas, table.is_par[rows],
                          table.is_exc[rows], table.par[rows], table.esr[rows], table.far[rows])
        if model.result.permits_anything:
            # UNPREDICTABLE on this core (ARMv7): every observation passes.
            ok = np.ones(len(rows), dtype=bool)
        verdict.writes.extend(w for o in model.result.outcomes for w in o.writes)
        # Every IPA of a span meets the same descriptors and checks (reference.fast).
        verdict.rules.append((result_rules(arch, model.result), int(np.count_nonzero(ran))))
    else:
        results = [walk(cpu, case.config, table.memory, int(ipa), at_kind)
                   for ipa in ipas.tolist()]
        ok = np.array([judge_probe(arch, res, int(ipa), row_observation(records[r]),
                                   cpu.arch_version).status.passed
                       for res, ipa, r in zip(results, ipas.tolist(), rows.tolist())],
                      dtype=bool)
        verdict.writes.extend(w for res in results for o in res.outcomes for w in o.writes)
        verdict.rules.extend((result_rules(arch, res), 1) for res, r in zip(results, ran) if r)
    verdict.passed += int(np.count_nonzero(ok & ran))
    bad = np.nonzero(~ok & ran)[0]
    if not bad.size:
        return
    verdict.diverged += int(bad.size)
    # Aggregate by observed label: one representative row per label key.
    bad_rows = rows[bad]
    bad_keys = _label_keys(table.kinds[bad_rows], table.par[bad_rows], table.esr[bad_rows])
    by_label: dict[str, list[np.ndarray]] = {}
    for k in np.unique(bad_keys).tolist():
        members = bad[bad_keys == k]
        obs = row_observation(records[rows[members[0]]])
        by_label.setdefault(observed_label(arch, obs), []).append(members)
    for parts in by_label.values():
        members = np.sort(np.concatenate(parts))
        first = int(members[0])
        ipa = int(ipas[first])
        result = model.result_for(ipa) if model is not None else results[first]
        obs = row_observation(records[rows[first]])
        verdict.divergences.append(FanoutDivergence(
            int(rows[first]), result, obs, int(members.size),
            tuple(f"{int(ipas[m]):#x}" for m in members[:SAMPLE_IPAS]), at_kind, ipa,
            describe_observation(arch, obs)))
