"""Access probes on the host side: the judgement of what the stub
recorded for an access case (reference.access_case) against the
reference's permitted observations -- field by field for the registers,
chunk by chunk for the data, descriptor by descriptor for the tables --
and its results records.  (The stub's EL1 window is read from its ELF by
harness.qemu.elf.el1_window, the job image built by harness.kinds; both
are importable from here under their first names.)

Pure.  The records are ABI v3 (docs/job-abi.md): an access probe's record is
``kind data0 esr far hpfar vector elr data1``.
"""
from __future__ import annotations

import dataclasses
import struct
from types import MappingProxyType
from typing import Sequence

import numpy as np

from reference.access import Taken
from reference.access_case import (
    AccessCase,
    AccessStep,
    DescWriteStep,
    MaintExpectation,
    SetVttbrStep,
    Step,
)
from reference.syndrome import Expectation, FieldRule, Slot

from ..kinds import FLAG_HCR_DC, access_job_image, access_probe_array
from ..qemu.elf import el1_window
from ..qemu.job import ImageResult, ObsKind
from ..records import CaseCounts, Divergence, Permitted
from ..vocabulary import (
    DATA_EXPECTED,
    DATA_OBSERVED,
    DivergenceKind,
    access_observed_label,
    access_outcome_label,
    access_record_label,
    memory_expected,
    memory_observed,
    memory_observed_text,
    memory_raw,
)

# Kept under their old names here (tests and the first users import them
# from judge.access): the EL1 window comes from the ELF (harness.qemu.elf),
# the job image from harness.kinds.
job_image = access_job_image
probe_array = access_probe_array
__all__ = ["FLAG_HCR_DC", "el1_window", "job_image", "probe_array"]

# Where each observed slot is in a result record (docs/job-abi.md, ABI v3).
SLOT_WORD = MappingProxyType({Slot.DATA0: 1, Slot.ESR: 2, Slot.FAR: 3, Slot.HPFAR: 4,
                              Slot.VECTOR: 5, Slot.ELR: 6, Slot.DATA1: 7})
TAKEN = MappingProxyType({ObsKind.EXCEPTION.value: Taken.EL2,
                          ObsKind.ACCESS_DONE.value: Taken.COMPLETED,
                          ObsKind.EL1_EXCEPTION.value: Taken.EL1})


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
                      regions_after: Sequence[tuple[int, bytes]],
                      expectations: Sequence | None = None) -> AccessJudgement:
    """Judge an access case run: ``records`` the result rows of its steps
    (RECORD_WORDS u64 each), ``regions_after`` the job image's regions as
    read back after the run (harness.job.ImageResult.regions_after);
    ``expectations``: case.expectations() when the caller has them."""
    if expectations is None:
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


# --- results records ------------------------------------------------------------

_WHERE = {Taken.EL2: "EL2", Taken.EL1: "EL1", Taken.COMPLETED: "completed"}


def expectation_label(e: Expectation) -> str:
    """The short label of a permitted observation (harness.vocabulary)."""
    abort = e.outcome.abort
    return access_outcome_label(_WHERE[e.taken], abort.status.value if abort else None,
                                abort.level if abort else None)


def _step_names(step: Step) -> tuple[str, int | None]:
    """(the step's operation, its address) as a divergence names them."""
    if isinstance(step, AccessStep):
        return step.kind.name, step.ipa
    if isinstance(step, DescWriteStep):
        return "DESC_WRITE", step.pa
    return "SET_VTTBR", None


def _raw(record: Sequence[int]) -> tuple[tuple[str, str], ...]:
    kind = ObsKind(record[0]).name if record[0] in {k.value for k in ObsKind} else str(record[0])
    return (("kind", kind),) + tuple((s.value, f"{record[w]:#x}") for s, w in SLOT_WORD.items())


def _step_divergence(case: AccessCase, v: StepVerdict, expected) -> Divergence:
    arch = case.cpu.arch
    op, address = _step_names(v.step)
    record_label = access_record_label(arch, v.record[0], v.record[2])
    if isinstance(expected, MaintExpectation):
        labels: tuple[str, ...] = ("maintenance done",)
        permitted: tuple[Permitted, ...] = (Permitted("maintenance done, replacing "
                               + " or ".join(f"{o:#x}" for o in sorted(expected.old)),
                               ("the stub's descriptor write / VTTBR switch completes",), ()),)
        observed = access_observed_label(record_label, "maintenance done",
                                         ["old value"] if v.record[0] == ObsKind.MAINT_DONE.value
                                         else [])
    else:
        labels = tuple(sorted({expectation_label(e) for e in expected}))
        permitted = tuple(Permitted(e.describe(), e.outcome.rules + e.rules,
                                    tuple(f.describe() for f in e.fields)) for e in expected)
        closest = expectation_label(v.closest) if v.closest is not None else None
        observed = access_observed_label(record_label, closest,
                                         [f.name for f, seen in v.mismatches if seen is not None])
    # The aim says what the step does (a load, DC ZVA, ...) after what the
    # generator aimed at (the entry): a family is one kind of access on one
    # kind of entry, the entry's level first (vocabulary.aim_family drops it).
    what = v.step.kind.spec.op.value if isinstance(v.step, AccessStep) else "maintenance"
    return Divergence(
        kind=DivergenceKind.ACCESS, probe=v.index,
        ipa=None if address is None else f"{address:#x}", at=op, aim=f"{v.step.aim} [{what}]",
        arch=arch.value, cpu=case.cpu.name, granule=case.config.granule.label
        if case.config.granule else None, config=case.config.describe(),
        vtcr=f"{case.config.vtcr():#x}", vttbr=f"{case.config.vttbr:#x}", expected=labels,
        permitted=permitted, observed=observed, observed_text=v.describe(), raw=_raw(v.record))


def _memory_divergence(case: AccessCase, m: MemoryVerdict) -> Divergence:
    owner = m.owners[0] if m.owners else None
    step = case.steps[owner] if owner is not None else None
    op, address = _step_names(step) if step is not None else (None, None)
    if m.what == "descriptor":
        before = int.from_bytes(m.permitted[0], "little")
        after = int.from_bytes(m.observed, "little")
        kind = DivergenceKind.MEMORY
        expected = (memory_expected(m.pa, before),)
        observed, text = memory_observed(before, after), memory_observed_text(m.pa, before, after)
        raw = tuple(memory_raw(m.pa, before, after).items())
    else:
        kind, expected = DivergenceKind.DATA, DATA_EXPECTED
        observed, text = DATA_OBSERVED, m.describe()
        raw = (("pa", f"{m.pa:#x}"), ("observed", m.observed.hex()),
               ("permitted", m.permitted[0].hex()))
    return Divergence(
        kind=kind, probe=owner, ipa=None if address is None else f"{address:#x}", at=op,
        aim=step.aim if step is not None else "", arch=case.cpu.arch.value, cpu=case.cpu.name,
        granule=case.config.granule.label if case.config.granule else None,
        config=case.config.describe(), vtcr=f"{case.config.vtcr():#x}",
        vttbr=f"{case.config.vttbr:#x}", expected=expected,
        permitted=(Permitted(" or ".join(p.hex() for p in m.permitted[:4]),
                             ("what the permitted outcomes of the steps that own it leave",), ()),),
        observed=observed, observed_text=text, raw=raw)


def judge_access_image(case: AccessCase, image: ImageResult,
                       expectations: Sequence | None = None
                       ) -> tuple[CaseCounts, list[Divergence]]:
    """Counts and divergences (harness.records) of an access case's run:
    every step is a probe; a step the stub did not reach is not run; the
    data chunks and descriptors are judged when the image completed."""
    if expectations is None:
        expectations = case.expectations()
    judged = judge_access_case(case, image.records, image.regions_after, expectations)
    not_run = sum(1 for v in judged.steps if v.record[0] == ObsKind.NOT_RUN.value)
    divergences = [_step_divergence(case, v, expectations[v.index]) for v in judged.divergences
                   if v.record[0] != ObsKind.NOT_RUN.value]
    if image.completed:
        # A chunk or descriptor that only a diverging step changed is that
        # step's divergence again (a DC ZVA that zeroed where it had to
        # fault): reported once, as the step's.
        diverged = {v.index for v in judged.divergences}
        divergences += [_memory_divergence(case, m) for m in judged.memory
                        if not (m.owners and set(m.owners) <= diverged)]
    passed = sum(1 for v in judged.steps if v.passed)
    return CaseCounts(len(case.steps), passed, len(divergences), not_run), divergences
