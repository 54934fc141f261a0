"""Bulk prediction: the permitted outcomes of every probe in an aligned IPA
span from two walks of the readable walker.

This is not a second statement of the architecture: it calls
``walk.walk`` and only reuses its answer.  The argument that the reuse is
exact:

Let a span be the 2^bits IPAs [base, base + 2^bits), base aligned.  A walk
reads, at each level, the descriptor indexed by a contiguous field of IPA
bits.  Walk ``base`` (all bits below ``bits`` zero) and ``last`` = base +
2^bits - 1 (all of them one).  If an index field contained any bit below
``bits`` the two walks would read different descriptor addresses.  So when
both walks read exactly the same descriptors (addresses and values, level by
level, in every permitted outcome), no index field touches the low bits:
every IPA of the span reads the same descriptors and meets the same checks.
What may still depend on the IPA is, by the pseudocode:

- the output address of a translation: the leaf's base ORed with the IPA
  bits below the block (or contiguous-set) size, which is at least ``bits``
  since the leaf index lies above ``bits``: PA - IPA is the same for the
  whole span;
- the fault address of a synchronous External abort: the IPA itself;
- the range checks (IPA beyond the input size, beyond PAMax): monotone in
  the IPA, so equal at both ends means equal throughout.

Hence ``span_model`` compares the two walks after replacing each
translation's PA by PA - IPA; when they agree it returns that normalised
answer for the whole span, otherwise None and the caller walks each probe.
The test suite checks the claim against the readable walker probe by probe
on large seeded samples of every configuration family.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from .arch import Arch, AtKind
from .bits import mask
from .config import S2Config, geometry
from .cpus import CpuModel
from .memory import Memory
from .outcome import Fault, Translation, WalkResult
from .par import Report, pa_bits, predict
from .walk import s2_starts, walk

U64 = (1 << 64) - 1


@dataclasses.dataclass(frozen=True)
class SpanModel:
    """The permitted outcomes of every IPA of a span, for one AT kind.

    ``result`` is the readable walker's answer at ``base``; ``deltas[i]`` is
    PA - IPA (mod 2^64) for a translation outcome i, None otherwise."""

    base: int
    bits: int
    at: AtKind
    result: WalkResult
    deltas: tuple[int | None, ...]

    def result_for(self, ipa: int) -> WalkResult:
        """The walker's answer for any ``ipa`` of the span (translations
        shifted; traces are those of ``base``)."""
        outcomes = []
        for o, delta in zip(self.result.outcomes, self.deltas):
            # deltas[i] is set exactly for the translation outcomes.
            if delta is not None and isinstance(o.result, Translation):
                o = dataclasses.replace(o, result=dataclasses.replace(o.result, pa=(ipa + delta) & U64))
            outcomes.append(o)
        return WalkResult(tuple(outcomes), self.result.unpredictable)


def _normalised(result: WalkResult, ipa: int) -> tuple:
    """The walk with what legitimately varies over a span taken out: a
    translation's PA becomes PA - IPA, and the address of a final read that
    found no memory is dropped (see span_model)."""
    out = []
    for o in result.outcomes:
        r = o.result
        if isinstance(r, Translation):
            r = dataclasses.replace(r, pa=(r.pa - ipa) & U64)
        trace = o.trace
        if trace and trace[-1].value is None:
            trace = trace[:-1] + (dataclasses.replace(trace[-1], address=-1),)
        out.append((r, o.writes, trace))
    return tuple(out)


def _no_memory_reads(result: WalkResult) -> list[int]:
    return [o.trace[-1].address for o in result.outcomes if o.trace and o.trace[-1].value is None]


def _one_walk_suffices(cpu: CpuModel, config: S2Config, result: WalkResult, base: int,
                       bits: int, last: int) -> bool:
    """The second walk is not needed when no walk of the span can read
    other descriptors than the first, nor meet other range checks.

    Every descriptor a walk reads is indexed by IPA bits at or above the
    level_lsb of its level (the start level's index, concatenated tables
    included, too).  So when every step of every outcome's trace is at a
    level whose level_lsb is at least ``bits``, every IPA of the span reads
    the same descriptors, at the same addresses, as ``base``: the same
    faults, the same leaf.  A translation's leaf is then a block (or page)
    of at least the span, so PA - IPA is the same throughout.  The range
    checks before the walk (IPA >= 2^PAMax, AArch64.S1DisabledOutput; IPA
    beyond the input size, AArch64.IPAIsOutOfRange) are monotone in the
    IPA: ``base`` and ``last`` on the same side of each limit means every
    IPA between is too.  Checked for AArch64 configurations; where
    IMPLEMENTATION DEFINED granule or T0SZ choices give several starts
    (geometries), an outcome does not say which one it came from, so the
    levels must pass under every start's geometry."""
    if cpu.arch is not Arch.AARCH64 or not result.outcomes:
        return False
    walks = [(st.p, st.level) for st in s2_starts(cpu, config) if st.p is not None]
    for limit in [cpu.pamax] + [p.ia_bits for p, _ in walks]:
        if (base >> limit == 0) != (last >> limit == 0):
            return False
    lsbs = [geometry(p.granule, p.ia_bits, level).level_lsb for p, level in walks]
    for o in result.outcomes:
        if isinstance(o.result, Translation) and o.result.block_bits < bits:
            return False
        if isinstance(o.result, Fault) and o.result.ipa is not None:
            return False
        if any(lsb(step.level) < bits for step in o.trace for lsb in lsbs):
            return False
    return True


def span_model(cpu: CpuModel, config: S2Config, memory: Memory, base: int, bits: int,
               at: AtKind) -> SpanModel | None:
    """The model of the span [base, base + 2^bits) for ``at``, or None when
    the two end walks differ (the caller then walks probe by probe).

    A walk that ends reading a descriptor where there is no memory reads,
    across the span, addresses from the one ``base`` reads to the one
    ``last`` reads (the same table, an index monotone in the IPA): if no
    RAM lies in between, every IPA of the span takes the same External
    abort, so that final address is compared by this check instead."""
    last = base + (1 << bits) - 1
    first = walk(cpu, config, memory, base, at)
    if bits and not _one_walk_suffices(cpu, config, first, base, bits, last):
        other = walk(cpu, config, memory, last, at)
        if _normalised(first, base) != _normalised(other, last):
            return None
        for lo, hi in zip(_no_memory_reads(first), _no_memory_reads(other)):
            if memory.ram_overlaps(min(lo, hi), max(lo, hi) + 7):
                return None
    deltas = tuple((o.result.pa - base) & U64 if isinstance(o.result, Translation) else None
                   for o in first.outcomes)
    return SpanModel(base, bits, at, first, deltas)


@dataclasses.dataclass(frozen=True)
class BulkPatterns:
    """For each outcome of a span model, what the observation of a probe at
    IPA x must be: a PAR with (par & care) == value | ((x + delta) & pa_mask)
    (pa_mask 0 for faults), or an exception with (esr & care) == value and
    FAR == x."""

    report: tuple[Report, ...]
    value: np.ndarray
    care: np.ndarray
    delta: np.ndarray
    pa_mask: np.ndarray


# predict() of an outcome depends on its result alone (and the IPA, which
# only goes to the FAR a bulk comparison checks itself): spans of a case
# share a few results, so their patterns are computed once.
_PREDICTIONS: dict[tuple[Arch, Any, int], tuple[Report, int, int]] = {}


def _outcome_patterns(arch: Arch, model: SpanModel, arch_version: int
                      ) -> list[tuple[Report, int, int, int, int]]:
    """(report, value, care, delta, pa_mask) of each outcome of ``model``."""
    out = []
    hi, lo = pa_bits(arch)
    for o, delta in zip(model.result.outcomes, model.deltas):
        result = o.result
        if delta is not None and isinstance(result, Translation):
            # Only the PAR's PA field depends on the PA, and pa_mask below
            # takes that field out of the pattern: one entry for them all.
            result = dataclasses.replace(result, pa=0)
        key = (arch, result, arch_version)
        if key not in _PREDICTIONS:
            if len(_PREDICTIONS) > 4096:
                _PREDICTIONS.clear()
            pred = predict(arch, dataclasses.replace(o, result=result), model.base, arch_version)
            _PREDICTIONS[key] = (pred.report, pred.pattern.value, pred.pattern.care)
        report, value, care = _PREDICTIONS[key]
        pa_mask = 0
        if delta is not None:
            pa_mask = mask(hi, lo)
            value &= ~pa_mask
        out.append((report, value, care, delta or 0, pa_mask))
    return out


def bulk_patterns(arch: Arch, model: SpanModel, arch_version: int) -> BulkPatterns:
    rows = _outcome_patterns(arch, model, arch_version)
    as_u64 = lambda i: np.array([r[i] for r in rows], dtype=np.uint64)  # noqa: E731
    return BulkPatterns(tuple(r[0] for r in rows), as_u64(1), as_u64(2), as_u64(3), as_u64(4))


@dataclasses.dataclass(frozen=True)
class PatternTable:
    """The BulkPatterns of several span models side by side, so that the
    probes of all of them are compared in one vectorised pass: column m
    holds model m's outcomes (row k its k-th), padded with slots that
    match nothing (neither ``par`` nor ``exception``)."""

    par: np.ndarray         # (K, M) bool: slot k of model m is a PAR pattern
    exception: np.ndarray   # (K, M) bool: ... an exception pattern
    value: np.ndarray       # (K, M) uint64, as BulkPatterns
    care: np.ndarray
    delta: np.ndarray
    pa_mask: np.ndarray


def pattern_table(patterns: Sequence[BulkPatterns]) -> PatternTable:
    k = max((len(p.report) for p in patterns), default=0)
    shape = (k, len(patterns))
    par, exception = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    words = [np.zeros(shape, dtype=np.uint64) for _ in range(4)]
    for m, p in enumerate(patterns):
        n = len(p.report)
        par[:n, m] = [r is Report.PAR for r in p.report]
        exception[:n, m] = ~par[:n, m]
        for dst, src in zip(words, (p.value, p.care, p.delta, p.pa_mask)):
            dst[:n, m] = src
    return PatternTable(par, exception, *words)


def model_table(arch: Arch, models: Sequence[SpanModel | None],
                arch_version: int) -> PatternTable:
    """pattern_table of the models' bulk_patterns (a model None: a column
    of no outcomes), built from Python lists at once: a case has a hundred
    or more models, each a handful of numbers."""
    rows = [_outcome_patterns(arch, m, arch_version) if m is not None else [] for m in models]
    k = max((len(r) for r in rows), default=0)
    none = (None, 0, 0, 0, 0)
    slots = [[r[i] if i < len(r) else none for r in rows] for i in range(k)]
    field = lambda i: np.array([[s[i] for s in slot] for slot in slots],  # noqa: E731
                               dtype=np.uint64).reshape(k, len(rows))
    par = np.array([[s[0] is Report.PAR for s in slot] for slot in slots],
                   dtype=bool).reshape(k, len(rows))
    exception = np.array([[s[0] is not None and s[0] is not Report.PAR for s in slot]
                          for slot in slots], dtype=bool).reshape(k, len(rows))
    return PatternTable(par, exception, field(1), field(2), field(3), field(4))


def table_matches(table: PatternTable, which: np.ndarray, ipas: np.ndarray,
                  is_par: np.ndarray, is_exception: np.ndarray, par: np.ndarray,
                  esr: np.ndarray, far: np.ndarray) -> np.ndarray:
    """Boolean array: which observations (PAR or exception registers, as
    uint64 arrays) match at least one outcome of their span model
    (``which``: each observation's column of ``table``).  An observation
    matches a PAR outcome when (par & care) == value | ((ipa + delta) &
    pa_mask), an exception outcome when (esr & care) == value and FAR is
    the IPA.

    Slot k is compared only for the rows whose model has a k-th outcome:
    most models have one, and a single model with many (IMPLEMENTATION
    DEFINED choices) must not make every row pay for its slots."""
    ok = np.zeros(ipas.shape, dtype=bool)
    slots = (table.par | table.exception).sum(axis=0)     # outcomes per model
    rows: np.ndarray | None = None                          # None: every row
    for k in range(table.par.shape[0]):
        if k:
            need = slots[which if rows is None else which[rows]] > k
            rows = np.flatnonzero(need) if rows is None else rows[need]
            if not rows.size:
                break
        w = which if rows is None else which[rows]
        x = ipas if rows is None else ipas[rows]
        is_p = is_par if rows is None else is_par[rows]
        is_e = is_exception if rows is None else is_exception[rows]
        p = par if rows is None else par[rows]
        e = esr if rows is None else esr[rows]
        f = far if rows is None else far[rows]
        value = table.value[k][w]
        care = table.care[k][w]
        want = value | ((x + table.delta[k][w]) & table.pa_mask[k][w])
        hit = (is_p & table.par[k][w] & ((p & care) == want)) | \
              (is_e & table.exception[k][w] & ((e & care) == value) & (f == x))
        if rows is None:
            ok |= hit
        else:
            ok[rows] |= hit
    return ok


def bulk_matches(patterns: BulkPatterns, ipas: np.ndarray, is_par: np.ndarray,
                 is_exception: np.ndarray, par: np.ndarray, esr: np.ndarray,
                 far: np.ndarray) -> np.ndarray:
    """Boolean array: which observations (PAR or exception registers, as
    uint64 arrays) match at least one outcome of the span."""
    return table_matches(pattern_table([patterns]), np.zeros(ipas.shape, dtype=np.intp), ipas,
                         is_par, is_exception, par, esr, far)
