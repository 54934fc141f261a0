"""Comparison of raw observations with the reference's permitted outcomes.

Pure functions: a probe passes when its raw observation matches the
observable form (reference.par.predict) of at least one permitted outcome,
exactly on every bit the architecture defines.  Table memory after an image
passes when every descriptor word that changed equals the result of a
hardware update some permitted outcome of that image allows.
"""
from __future__ import annotations

import dataclasses
import enum
import struct
from typing import Iterable, Sequence

from reference.arch import Arch
from reference.outcome import DescriptorWrite, WalkResult
from reference.par import Prediction, Report, predict

from ..qemu.job import ObsKind, RawObservation
from ..vocabulary import describe_observation


class ProbeStatus(enum.Enum):
    PASS = "pass"
    DIVERGE = "diverge"
    NOT_RUN = "not-run"
    # Matches no outcome of the later architecture, but the probe is
    # UNPREDICTABLE without constraint on its core (WalkResult.unpredictable:
    # an ARMv7 LPAE core programmed in a way only ARMv8 constrains): a pass.
    UNPREDICTABLE = "unpredictable"

    @property
    def passed(self) -> bool:
        return self in (ProbeStatus.PASS, ProbeStatus.UNPREDICTABLE)


@dataclasses.dataclass(frozen=True)
class ProbeJudgement:
    """The verdict on one probe: ``matched`` lists the indices of the
    permitted outcomes the observation matches."""

    status: ProbeStatus
    matched: tuple[int, ...]
    observed: str


@dataclasses.dataclass(frozen=True)
class MemoryChange:
    """A descriptor word whose value after the run no permitted outcome
    explains."""

    pa: int
    before: int
    after: int


def observation_matches(pred: Prediction, obs: RawObservation) -> bool:
    if pred.report is Report.PAR:
        return obs.kind is ObsKind.PAR and pred.pattern.matches(obs.par)
    return (obs.kind is ObsKind.EXCEPTION and pred.pattern.matches(obs.esr)
            and (pred.far is None or obs.far == pred.far))


def judge_probe(arch: Arch, result: WalkResult, ipa: int, obs: RawObservation,
                arch_version: int = 8) -> ProbeJudgement:
    """Match one observation against every permitted outcome; one that
    matches none passes as UNPREDICTABLE when the result permits anything."""
    if obs.kind is ObsKind.NOT_RUN:
        return ProbeJudgement(ProbeStatus.NOT_RUN, (), "not run")
    matched = tuple(i for i, o in enumerate(result.outcomes)
                    if observation_matches(predict(arch, o, ipa, arch_version), obs))
    status = ProbeStatus.PASS if matched else \
        ProbeStatus.UNPREDICTABLE if result.permits_anything else ProbeStatus.DIVERGE
    return ProbeJudgement(status, matched, describe_observation(arch, obs))


def _words(regions: Sequence[tuple[int, bytes]]) -> dict[int, int]:
    words = {}
    for pa, data in regions:
        for off, (value,) in enumerate(struct.iter_unpack("<Q", data[:len(data) // 8 * 8])):
            words[pa + off * 8] = value
    return words


def permitted_writes(results: Sequence[WalkResult]) -> list[DescriptorWrite]:
    """Every descriptor write some permitted outcome of ``results`` allows."""
    return [w for result in results for outcome in result.outcomes for w in outcome.writes]


def judge_memory(before: Sequence[tuple[int, bytes]], after: Sequence[tuple[int, bytes]],
                 writes: Iterable[DescriptorWrite]) -> list[MemoryChange]:
    """Descriptor words of an image that changed in a way no permitted
    write allows (``writes``: see permitted_writes).  A word may end as its
    old value or as the ``new`` value of any permitted write to it, since
    updates are permitted, not required, and probes repeat."""
    allowed: dict[int, set[int]] = {}
    for w in writes:
        allowed.setdefault(w.pa, set()).add(w.new)
    old, new = _words(before), _words(after)
    changes = []
    for pa, value in new.items():
        was = old.get(pa, 0)
        if value != was and value not in allowed.get(pa, ()):
            changes.append(MemoryChange(pa, was, value))
    return changes
