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
from reference.fast import SpanModel, model_table, span_model, table_matches
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
        # The columns copied out contiguous once: a column of the row-major
        # records is strided by a whole record, and each is read many times.
        kinds, par, esr, far = np.ascontiguousarray(records[:, :4].T)
        return cls(case, case.memory(), records, kinds, kinds == ObsKind.PAR.value,
                   kinds == ObsKind.EXCEPTION.value, par, esr, far)


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


class _PartRows:
    """The rows of each part, ascending (what np.nonzero(part_of == p)
    gives), from one stable sort made the first time a part's rows are
    asked for: a case has ~10^5 rows and can have hundreds of parts to walk
    or to aggregate, each a full pass over the rows otherwise."""

    def __init__(self, part_of: np.ndarray, n_parts: int) -> None:
        self.part_of = part_of
        self.n_parts = n_parts
        self.order: np.ndarray | None = None
        self.starts: list[int] = []

    def __call__(self, p: int) -> np.ndarray:
        if self.order is None:
            # part_of is -1 for rows outside every part: shifted to 0.
            self.order = np.argsort(self.part_of, kind="stable")
            counts = np.bincount(self.part_of + 1, minlength=self.n_parts + 1)
            self.starts = [0] + np.cumsum(counts).tolist()
        return self.order[self.starts[p + 1]:self.starts[p + 2]]


def judge_fanout(case: Case, records: np.ndarray) -> BulkVerdict:
    """Judge the fan-out rows (``records``: one results row per fan-out
    probe, in FanOut order); divergences are aggregated by observed label
    (harness.vocabulary).

    Every (span, AT kind) group gets its span models first (a *part* per
    model: the group's rows inside the model's span); then the rows of all
    modelled parts are compared in one vectorised pass (a Python loop per
    group of a couple of thousand probes cost more than QEMU running them).
    Parts are then visited in order only for what needs Python: walking
    the rows of an unmodelled part, and aggregating divergences."""
    verdict = BulkVerdict()
    fan = case.fanout
    if not len(fan):
        return verdict
    table = _Table.of(case, records)
    arch = case.cpu.arch
    verdict.not_run = int(np.count_nonzero(table.kinds == ObsKind.NOT_RUN.value))
    # Groups by counting, not sorting: keys are small (4 per span), and a
    # sort of a few 10^5 rows costs more than the comparison itself.
    group_key = fan.span.astype(np.intp) * len(AtKind) + fan.at
    counts = np.bincount(group_key)
    keys = np.flatnonzero(counts)
    rank = np.cumsum(counts > 0) - 1
    group_of = rank[group_key]
    # Each row's part (-1: outside every part, never judged), and the parts
    # in the order the groups and their models come.
    part_of = np.full(len(fan), -1, dtype=np.intp)
    first_part = np.full(len(keys), -1, dtype=np.intp)
    parts: list[tuple[AtKind, SpanModel | None]] = []
    span_base = np.array([b for b, _ in fan.spans], dtype=np.uint64)
    span_size = np.array([1 << bits for _, bits in fan.spans], dtype=np.uint64)
    row_base = span_base[fan.span]
    in_span = (fan.ipa >= row_base) & (fan.ipa - row_base < span_size[fan.span])
    for g, (key, n) in enumerate(zip(keys.tolist(), counts[keys].tolist())):
        span_index, at = divmod(key, len(AtKind))
        at_kind = AtKind(at)
        base, bits = fan.spans[span_index]
        models = _models(case, table.memory, base, bits, at_kind, n)
        if len(models) == 1 and models[0][:2] == (base, bits):
            # The span itself: its rows are the group's rows inside it.
            first_part[g] = len(parts)
            parts.append((at_kind, models[0][2]))
            continue
        group = np.flatnonzero(group_of == g)
        ipas_all = fan.ipa[group]
        for sub_base, sub_bits, model in models:
            inside = (ipas_all >= np.uint64(sub_base)) & \
                     (ipas_all - np.uint64(sub_base) < np.uint64(1 << sub_bits))
            if np.any(inside):
                part_of[group[inside]] = len(parts)
                parts.append((at_kind, model))
    whole = in_span & (first_part[group_of] >= 0)
    part_of[whole] = first_part[group_of[whole]]
    covered = part_of >= 0
    ran = table.kinds != ObsKind.NOT_RUN.value
    # Every modelled row in one comparison (a part without a model gets a
    # column of no outcomes: its rows are walked below).
    modelled = [m for _, m in parts]
    columns = model_table(arch, modelled, case.cpu.arch_version)
    which = np.where(covered, part_of, 0)
    ok = table_matches(columns, which, fan.ipa, table.is_par, table.is_exc, table.par,
                       table.esr, table.far) if parts else np.zeros(len(fan), dtype=bool)
    anything = np.array([m is not None and m.result.permits_anything for m in modelled] or
                        [False], dtype=bool)
    # UNPREDICTABLE on this core (ARMv7): every observation passes.
    ok |= anything[which] & covered
    # The rows of unmodelled parts are walked one by one.
    rows_of = _PartRows(part_of, len(parts))
    results: dict[int, list[WalkResult]] = {}
    for p, (at_kind, model) in enumerate(parts):
        if model is None:
            rows = rows_of(p)
            results[p], ok[rows] = _walk_rows(table, rows, at_kind)
    size = np.bincount(part_of[covered], minlength=len(parts))
    ran_size = np.bincount(part_of[covered & ran], minlength=len(parts))
    for p, (_, model) in enumerate(parts):
        if not size[p]:
            continue
        if model is not None:
            verdict.writes.extend(w for o in model.result.outcomes for w in o.writes)
            # Every IPA of a span meets the same descriptors and checks
            # (reference.fast): the model's rules, once per probe that ran.
            if ran_size[p]:
                verdict.rules.append((result_rules(arch, model.result), int(ran_size[p])))
        else:
            verdict.writes.extend(w for res in results[p] for o in res.outcomes for w in o.writes)
            part_ran = ran[rows_of(p)]
            verdict.rules.extend((result_rules(arch, res), 1)
                                 for res, r in zip(results[p], part_ran.tolist()) if r)
    verdict.passed = int(np.count_nonzero(ok & ran & covered))
    bad_all = covered & ~ok & ran
    verdict.diverged = int(np.count_nonzero(bad_all))
    for p in np.unique(part_of[bad_all]).tolist():
        rows = rows_of(p)
        at_kind, model = parts[p]
        _aggregate(table, rows, np.nonzero(bad_all[rows])[0], at_kind, model,
                   results.get(p, []), verdict)
    return verdict


def _walk_rows(table: _Table, rows: np.ndarray, at_kind: AtKind
               ) -> tuple[list[WalkResult], np.ndarray]:
    """Walk the fan-out ``rows`` of a part the span model cannot vouch for,
    probe by probe: each one's permitted outcomes and whether it passed."""
    case, records = table.case, table.records
    cpu = case.cpu
    ipas = case.fanout.ipa[rows]
    results = [walk(cpu, case.config, table.memory, int(ipa), at_kind) for ipa in ipas.tolist()]
    ok = np.array([judge_probe(cpu.arch, res, int(ipa), row_observation(records[r]),
                               cpu.arch_version).status.passed
                   for res, ipa, r in zip(results, ipas.tolist(), rows.tolist())], dtype=bool)
    return results, ok


def _aggregate(table: _Table, rows: np.ndarray, bad: np.ndarray, at_kind: AtKind,
               model: SpanModel | None, results: list[WalkResult],
               verdict: BulkVerdict) -> None:
    """The divergences of one part's ``rows`` (``bad``: positions in
    ``rows`` that diverge), one per observed label: its first row, the
    count and the first few IPAs."""
    case, records = table.case, table.records
    arch = case.cpu.arch
    ipas = case.fanout.ipa[rows]
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
