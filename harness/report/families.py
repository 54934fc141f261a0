"""Divergence families: divergences of one kind of disagreement
(harness.vocabulary.FamilyKey) grouped, counted and rendered."""
from __future__ import annotations

import collections
import dataclasses

from ..records import DivergenceRecord
from ..vocabulary import FamilyKey
from .load import RunData

# Case keys quoted per divergence family.
FAMILY_EXAMPLES = 3


@dataclasses.dataclass(frozen=True)
class Family:
    """Divergences of one kind of disagreement: same arch, kind, permitted
    outcome labels, observed label and aim (without level and values).
    ``cpus`` lists the CPU models it occurs on; ``examples`` the first
    case keys (in run order); ``known_ids`` the baseline entries matched."""

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

    def describe(self) -> str:
        return f"expected {' | '.join(self.expected)}, observed {self.observed}"


def divergence_families(run: RunData, examples: int = FAMILY_EXAMPLES) -> list[Family]:
    """Divergences grouped by family (DivergenceRecord.family); families with new
    divergences first, then by size, then by key."""
    groups: dict[FamilyKey, list[DivergenceRecord]] = collections.defaultdict(list)
    for d in run.divergences:
        groups[d.family].append(d)
    out = []
    for key, ds in groups.items():
        arch, kind, expected, observed, aim = (key.arch, key.kind, key.expected, key.observed,
                                               key.aim)
        keys = list(dict.fromkeys(d.key for d in ds))
        out.append(Family(arch=arch, kind=kind, expected=expected, observed=observed, aim=aim,
                          cpus=tuple(sorted({d.cpu for d in ds})),
                          count=sum(d.count for d in ds),
                          new=sum(d.count for d in ds if d.is_new),
                          known_ids=tuple(sorted({d.known for d in ds if d.known})),
                          examples=tuple(keys[:examples])))
    out.sort(key=lambda f: (f.new == 0, -f.count, f.arch, f.kind, f.expected, f.observed, f.aim))
    return out


def render_families(run: RunData) -> str:
    """The divergence families as plain text, one block per family."""
    families = divergence_families(run)
    if not families:
        return "divergence families: none\n"
    out = [f"divergence families ({len(families)}, {sum(d.count for d in run.divergences)} diverging "
           f"probes and descriptor writes in {len(run.divergences)} records):"]
    for f in families:
        known = f"{f.count - f.new} known ({', '.join(f.known_ids)})" if f.count > f.new else ""
        counts = ", ".join(x for x in (f"{f.new} new" if f.new else "", known) if x)
        out += ["", f"{f.count:>5}  {f.arch} {f.kind}, aim: {f.aim or '-'}  [{counts}]",
                f"       expected: {' | '.join(f.expected)}",
                f"       observed: {f.observed}",
                f"       cpus: {', '.join(f.cpus)}"]
        out += [f"       {'e.g.' if i == 0 else '    '} {key}" for i, key in enumerate(f.examples)]
    return "\n".join(out) + "\n"


