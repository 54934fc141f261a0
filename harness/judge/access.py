"""Access probes on the host side: the stub's EL1 window as its ELF
describes it, the job image of an access case (reference.access_case), and
the judgement of what the stub recorded against the reference's permitted
observations -- field by field for the registers, chunk by chunk for the
data, descriptor by descriptor for the tables.

Pure but for ``el1_window``, which reads symbols of an already parsed ELF.
The records are ABI v3 (docs/job-abi.md): an access probe's record is
``kind data0 esr far hpfar vector elr data1``.
"""
from __future__ import annotations

import dataclasses
import struct
from types import MappingProxyType
from typing import Sequence

import numpy as np

from reference.access import AccessKind, Taken
from reference.access_case import (
    AccessCase,
    AccessStep,
    DescWriteStep,
    El1Window,
    MaintExpectation,
    SetVttbrStep,
)
from reference.syndrome import Expectation, FieldRule, Slot

from ..errors import BuildError
from ..qemu.elf import StubElf
from ..qemu.job import KIND_DESC_WRITE, KIND_SET_VTTBR, PROBE_DTYPE, JobImage, ObsKind

FLAG_HCR_DC = 1 << 0        # access probe flags: run with HCR_EL2.DC = 1

# Where each observed slot is in a result record (docs/job-abi.md, ABI v3).
SLOT_WORD = MappingProxyType({Slot.DATA0: 1, Slot.ESR: 2, Slot.FAR: 3, Slot.HPFAR: 4,
                              Slot.VECTOR: 5, Slot.ELR: 6, Slot.DATA1: 7})
TAKEN = MappingProxyType({ObsKind.EXCEPTION.value: Taken.EL2,
                          ObsKind.ACCESS_DONE.value: Taken.COMPLETED,
                          ObsKind.EL1_EXCEPTION.value: Taken.EL1})


def el1_window(stub: StubElf) -> El1Window:
    """The EL1 window of ``stub`` from its symbols: ``__s2_el1_start/end``,
    and for every access kind of its architecture ``__s2_kind_<NAME>`` (must
    equal the reference's code) and ``__s2_el1_insn_<NAME>`` (and
    ``__s2_el1_insn2_`` for a second access).  Raises BuildError when the
    stub and reference/access.py disagree."""
    syms = stub.symbols
    try:
        start, end = syms["__s2_el1_start"], syms["__s2_el1_end"]
    except KeyError as exc:
        raise BuildError(f"{stub.path} has no EL1 window (symbol {exc} missing)") from exc
    kinds = [k for k in AccessKind if k.arch is stub.arch]
    stub_kinds = {n[len("__s2_kind_"):]: v for n, v in syms.items() if n.startswith("__s2_kind_")}
    if stub_kinds != {k.name: k.code for k in kinds}:
        raise BuildError(f"{stub.path}: access kinds {sorted(stub_kinds.items())} differ from "
                         f"reference/access.py {sorted((k.name, k.code) for k in kinds)}")
    insns = {}
    for k in kinds:
        first = syms.get(f"__s2_el1_insn_{k.name}")
        if first is None or not start <= first < end:
            raise BuildError(f"{stub.path}: no access instruction for {k.name} in the EL1 window")
        second = syms.get(f"__s2_el1_insn2_{k.name}")
        insns[k] = (first - start,) if second is None else (first - start, second - start)
    return El1Window(start, end - start, MappingProxyType(insns))


def probe_array(case: AccessCase) -> np.ndarray:
    """The case's steps as probe records (PROBE_DTYPE)."""
    table = np.zeros(len(case.steps), dtype=PROBE_DTYPE)
    for i, step in enumerate(case.steps):
        if isinstance(step, AccessStep):
            table[i] = (step.ipa, step.kind.code, FLAG_HCR_DC if step.hcr_dc else 0,
                        step.data[0], step.data[1])
        elif isinstance(step, DescWriteStep):
            table[i] = (step.pa, KIND_DESC_WRITE, int(step.tlbi), step.value, step.ipa)
        else:
            table[i] = (0, KIND_SET_VTTBR, int(step.tlbi), step.vttbr, 0)
    return table


def job_image(case: AccessCase) -> JobImage:
    """One job image: both images' tables, the data chunks, every step."""
    regions = case.image.regions + (case.other.regions if case.other else ()) + case.data
    return JobImage(case.config.vtcr(), case.image.vttbr, tuple((r.pa, r.data) for r in regions),
                    probe_array(case), el1_ipa=case.el1_ipa)


# --- judging ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StepVerdict:
    """One step: ``passed`` when the record matches a permitted observation.
    For a divergence, ``closest`` is the permitted observation with the
    fewest mismatching fields and ``mismatches`` those fields with the
    observed field value (None: where it ended differs)."""

    index: int
    step: AccessStep | DescWriteStep | SetVttbrStep
    passed: bool
    record: tuple[int, ...]
    closest: Expectation | None = None
    mismatches: tuple[tuple[FieldRule, int | None], ...] = ()
    matched: tuple[Expectation, ...] = ()

    def describe(self) -> str:
        kind = ObsKind(self.record[0]).name if self.record[0] in {k.value for k in ObsKind} \
            else f"kind {self.record[0]}"
        words = " ".join(f"{s.value}={self.record[w]:#x}" for s, w in SLOT_WORD.items())
        head = f"step {self.index} ({self.step.aim}): {kind} {words}"
        if self.passed:
            return head + " -- as permitted"
        lines = [head + " -- DIVERGES"]
        if self.closest is not None:
            lines.append(f"  closest permitted: {self.closest.describe()}")
            for f, seen in self.mismatches:
                got = "a different report" if seen is None else f"{seen:#x}"
                lines.append(f"    {f.describe()}: observed {got}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class MemoryVerdict:
    """A data chunk or a descriptor whose bytes after the run no permitted
    sequence of outcomes leaves."""

    what: str
    pa: int
    observed: bytes
    permitted: tuple[bytes, ...]
    owners: tuple[int, ...] = ()     # the steps whose outcomes decide it

    def describe(self) -> str:
        opts = " or ".join(p.hex() for p in self.permitted[:3])
        by = f" (steps {', '.join(map(str, self.owners))})" if self.owners else ""
        return f"{self.what} at PA {self.pa:#x}{by}: {self.observed.hex()}, permitted {opts}"


@dataclasses.dataclass(frozen=True)
class AccessJudgement:
    steps: tuple[StepVerdict, ...]
    memory: tuple[MemoryVerdict, ...]

    @property
    def divergences(self) -> tuple[StepVerdict, ...]:
        return tuple(v for v in self.steps if not v.passed)

    @property
    def ok(self) -> bool:
        return not self.divergences and not self.memory

    def describe(self) -> str:
        return "\n".join([v.describe() for v in self.divergences] + [m.describe() for m in self.memory])


def record_words(record: Sequence[int]) -> tuple[Taken | None, dict[Slot, int]]:
    """Where an access probe ended and its slot values, from a result record."""
    return TAKEN.get(int(record[0])), {s: int(record[w]) for s, w in SLOT_WORD.items()}


def judge_step(index: int, step, expected, record: Sequence[int]) -> StepVerdict:
    rec = tuple(int(v) for v in record)
    if isinstance(expected, MaintExpectation):
        ok = rec[0] == ObsKind.MAINT_DONE.value and rec[1] in expected.old
        return StepVerdict(index, step, ok, rec)
    taken, words = record_words(rec)
    matched = tuple(e for e in expected if taken is not None and not e.mismatches(taken, words))
    if matched:
        return StepVerdict(index, step, True, rec, matched=matched)
    if not expected:
        return StepVerdict(index, step, False, rec)
    scored = [(e, e.mismatches(taken, words) if taken is not None else
               [(f, None) for f in e.fields]) for e in expected]
    closest, mism = min(scored, key=lambda em: len(em[1]))
    return StepVerdict(index, step, False, rec, closest, tuple(mism))


def _read(regions_after: Sequence[tuple[int, bytes]], pa: int, length: int) -> bytes | None:
    for base, data in regions_after:
        if base <= pa and pa + length <= base + len(data):
            return bytes(data[pa - base:pa - base + length])
    return None


def _apply(data: bytes, base: int, stores) -> bytes:
    out = bytearray(data)
    for pa, chunk in stores:
        off = pa - base
        if 0 <= off and off + len(chunk) <= len(out):
            out[off:off + len(chunk)] = chunk
    return bytes(out)


def judge_access_case(case: AccessCase, records: np.ndarray,
                      regions_after: Sequence[tuple[int, bytes]]) -> AccessJudgement:
    """Judge an access case run: ``records`` the result rows of its steps
    (RECORD_WORDS u64 each), ``regions_after`` the job image's regions as
    read back after the run (harness.job.ImageResult.regions_after)."""
    expectations = case.expectations()
    verdicts = tuple(judge_step(i, s, e, r) for i, (s, e, r) in
                     enumerate(zip(case.steps, expectations, records.tolist())))
    return AccessJudgement(verdicts, _judge_data(case, expectations, verdicts, regions_after)
                           + _judge_tables(case, expectations, verdicts, regions_after))


def _outcome_choices(v: StepVerdict, expected) -> list:
    """The outcomes a step may have had: those that match its record, or,
    for a divergence, every permitted one (its memory is not judged twice)."""
    return [e.outcome for e in (v.matched if v.passed else expected)]


def _judge_data(case: AccessCase, expectations, verdicts, regions_after
                ) -> tuple[MemoryVerdict, ...]:
    """Every chunk ends as it started, with the stores of its probes'
    permitted outcomes applied (a chunk belongs to one probe, repeated
    loads aside)."""
    owners: dict[int, list[int]] = {}
    for i, step in enumerate(case.steps):
        if isinstance(step, AccessStep) and step.chunk is not None:
            owners.setdefault(step.chunk, []).append(i)
    out = []
    for region in case.data:
        options = {region.data}
        for i in owners.get(region.pa, ()):
            choices = _outcome_choices(verdicts[i], expectations[i])
            options = {_apply(o, region.pa, c.stores) for o in options for c in choices} or options
        seen = _read(regions_after, region.pa, len(region.data))
        if seen is not None and seen not in options:
            out.append(MemoryVerdict("data chunk", region.pa, seen, tuple(sorted(options)),
                                     tuple(owners.get(region.pa, ()))))
    return tuple(out)


def _judge_tables(case: AccessCase, expectations, verdicts, regions_after
                  ) -> tuple[MemoryVerdict, ...]:
    """Descriptors the steps write (the stub's descriptor writes; Access
    flag and dirty-state updates of the outcomes that match) end with a
    value the sequence permits."""
    memory = case.memory()
    allowed: dict[int, set[int]] = {}
    deciders: dict[int, list[int]] = {}

    def current(pa: int) -> set[int]:
        if pa not in allowed:
            allowed[pa] = {memory.read64(pa) or 0}
        return allowed[pa]

    for i, step in enumerate(case.steps):
        if isinstance(step, DescWriteStep):
            allowed[step.pa] = {step.value}
            deciders[step.pa] = [i]
        elif isinstance(step, AccessStep):
            choices = _outcome_choices(verdicts[i], expectations[i])
            for pa in {w.pa for c in choices for w in c.writes}:
                before = set(current(pa))
                after: set[int] = set()
                for c in choices:
                    w = next((w for w in c.writes if w.pa == pa), None)
                    after |= {w.new} if w is not None else before
                allowed[pa] = after
                deciders.setdefault(pa, []).append(i)
    out = []
    for pa, values in sorted(allowed.items()):
        seen = _read(regions_after, pa, 8)
        if seen is not None and struct.unpack("<Q", seen)[0] not in values:
            out.append(MemoryVerdict("descriptor", pa, seen,
                                     tuple(struct.pack("<Q", v) for v in sorted(values)),
                                     tuple(deciders.get(pa, ()))))
    return tuple(out)

