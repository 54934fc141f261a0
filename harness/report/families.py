"""Divergence families: divergences of one kind of disagreement
(harness.vocabulary.FamilyKey) grouped and counted.  They are the symptoms;
harness.report.rootcause folds them under root causes."""
from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

from ..records import DivergenceRecord
from ..vocabulary import FamilyKey
from .load import RunData

# Case keys quoted per divergence family.
FAMILY_EXAMPLES = 3


@dataclasses.dataclass(frozen=True)
class Family:
    """Divergences of one kind of disagreement: same arch, kind, permitted
    outcome labels, observed label and aim (without level and values).
    ``count`` is in probes for a probe family and in descriptor writes for
    a memory family; ``cpus`` the CPU models it occurs on; ``examples``
    the first case keys (in run order); ``known_ids`` the baseline
    entries matched."""

    arch: str
    kind: str
    expected: tuple[str, ...]
    observed: str
    aim: str
    cpus: tuple[str, ...]
    count: int
    new: int
    known_ids: tuple[str, ...]
    examples: tuple[str, ...]

    @property
    def key(self) -> FamilyKey:
        return FamilyKey(self.arch, self.kind, self.expected, self.observed, self.aim)

    @property
    def unit(self) -> str:
        return "descriptor writes" if self.kind == "memory" else "probes"

    def describe(self) -> str:
        return f"expected {' | '.join(self.expected)}, observed {self.observed}"


def families_of(divergences: Sequence[DivergenceRecord],
                examples: int = FAMILY_EXAMPLES) -> list[Family]:
    """``divergences`` grouped by family (DivergenceRecord.family); families
    with new divergences first, then by size, then by key."""
    groups: dict[FamilyKey, list[DivergenceRecord]] = collections.defaultdict(list)
    for d in divergences:
        groups[d.family].append(d)
    out = []
    for key, ds in groups.items():
        keys = list(dict.fromkeys(d.key for d in ds))
        out.append(Family(arch=key.arch, kind=key.kind, expected=key.expected,
                          observed=key.observed, aim=key.aim,
                          cpus=tuple(sorted({d.cpu for d in ds})),
                          count=sum(d.count for d in ds),
                          new=sum(d.count for d in ds if d.is_new),
                          known_ids=tuple(sorted({d.known for d in ds if d.known})),
                          examples=tuple(keys[:examples])))
    out.sort(key=lambda f: (f.new == 0, -f.count, f.arch, f.kind, f.expected, f.observed, f.aim))
    return out


def divergence_families(run: RunData, examples: int = FAMILY_EXAMPLES) -> list[Family]:
    """The run's divergences grouped by family (see families_of)."""
    return families_of(run.divergences, examples)
