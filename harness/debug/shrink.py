"""Shrinking a divergent case: the fewest probes, descriptors and levels,
and the smallest IPA size, that still diverge *the same way*.

"The same way" (:class:`Signature`): the divergence has the same kind
(``probe``: the PAR/exception differs; ``memory``: a descriptor was written
in a way no permitted outcome allows), the same sorted labels of the
reference's permitted outcomes (harness.vocabulary.outcome_label:
"translation L1", "ok L3", ...) and the same observed label
(harness.vocabulary.observed_label: "ok", "translation L0", "exception EC
0x25 DFSC 0x17"; for memory, the descriptor bits set and cleared,
harness.vocabulary.memory_label).  Levels in labels are absolute Arm ARM levels,
so a candidate that moves the decisive descriptor to another level is a
different divergence.

Every candidate is checked in QEMU.  ``Lab`` runs a round of candidates in
as few boots as possible: candidates whose image windows do not overlap
share one boot, and candidates that are the same image with other probes
(no hardware updates, VTCR_EL2.HA = 0) share its tables.  Candidates with
different table contents at the same PAs cannot share a boot; they run one
boot each (only the fallback of the image step makes such candidates).

The steps, each a round:

1. probes: keep one divergent probe of the chosen family (the first one that
   diverges the same way alone), else delta-debug the other probes away;
2. image: keep only the descriptor words the reference's walk of that probe
   reads (every other word of RAM reads as zero), else delta-debug the other
   words away, one boot per candidate;
3. configuration: rebuild the walked path (:func:`rebuild`) under every
   simpler geometry of the same granule (fewer levels, then fewer IPA bits)
   and with the IPA's table indices cleared, keeping the decisive descriptor
   value and the other descriptors' non-address bits; keep the simplest
   candidate that still diverges the same way.  Skipped (and said so) when
   the walk cannot be rebuilt: the reference reads no descriptor, or its
   permitted outcomes walk different paths.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import Mapping

from reference.config import FINAL_LEVEL
from reference.generate import Case, Probe, build_layout
from reference.memory import Region
from reference.walk import walk

from ..errors import UsageError
from ..vocabulary import Signature
from .ddmin import ddmin
from .lab import (
    Lab,
    Trial,
    Windows,
    choose_target,
    first_trial,
    only,
    probe_count,
    reference_labels,
)
from .rebuild import (
    NotRebuildable,
    WalkPath,
    describe_geometry,
    geometry_choices,
    rebuild,
    rebuild_footprint,
    walk_path,
)


@dataclasses.dataclass(frozen=True)
class Step:
    """What one step of the shrink did (for the explanation)."""

    name: str
    text: str
    boots: int


@dataclasses.dataclass(frozen=True)
class ShrinkResult:
    """The minimal case, the signature it keeps, its trial in QEMU, and the steps."""

    original: Case
    probe: int                      # the probe of the original case the shrink followed
    signature: Signature
    minimal: Case
    trial: Trial
    steps: tuple[Step, ...]
    boots: int
    path: WalkPath | None

    def summary(self) -> str:
        lines = [f"divergence: probe {self.probe}: {self.signature.describe()}", "steps:"]
        lines += [f"  {s.name}: {s.text}  [{s.boots} QEMU boot{'s' if s.boots != 1 else ''}]"
                  for s in self.steps]
        lines.append(f"QEMU boots: {self.boots}")
        return "\n".join(lines)


def _with_words(case: Case, words: Mapping[int, int]) -> Case:
    """The case with an image of exactly ``words`` {PA: value} (zero words
    dropped: RAM outside the regions reads as zero)."""
    regions = tuple(Region(pa, struct.pack("<Q", v)) for pa, v in sorted(words.items()) if v)
    return dataclasses.replace(case, image=dataclasses.replace(case.image, regions=regions))


def image_words(case: Case) -> dict[int, int]:
    """Every 8-byte word of the image's regions, {PA: value}."""
    words = {}
    for r in case.image.regions:
        for off in range(0, len(r.data) - 7, 8):
            words[r.pa + off] = struct.unpack_from("<Q", r.data, off)[0]
    return words


def walked_addresses(case: Case) -> set[int]:
    """PAs of every descriptor the reference reads for any probe, under any
    permitted outcome."""
    mem = case.memory()
    return {s.address for p in case.probes
            for o in walk(case.cpu, case.config, mem, p.ipa, p.at).outcomes
            for s in o.trace if s.value is not None}


def shrink(case: Case, lab: Lab, *, probe: int | None = None, budget: int = 48) -> ShrinkResult:
    """Minimize ``case`` (see the module docstring).  ``probe``: follow this
    probe's divergence (default: the first divergent probe); ``budget``:
    candidates each delta-debugging fallback may try."""
    steps: list[Step] = []
    boots0 = lab.boots
    trial = first_trial(case, lab)
    target = choose_target(trial, probe)
    sig = target.signature
    members = [f for f in trial.divergences if f.signature == sig and f.target is not None]
    members = [target] + [f for f in members if f.probe != target.probe]
    total = probe_count(case)
    steps.append(Step("run", f"{total} probes ({len(case.probes)} named, {len(case.fanout)} "
                      f"fan-out), {len(trial.divergences)} divergence records, "
                      f"{len(members)} of them in this family", lab.boots - boots0))

    # 1. probes
    b = lab.boots
    current, best = trial.case, trial
    if total > 1:
        tries = members[:8]
        trials = lab.run([only(current, [f.target]) for f in tries])
        hit = next((t for t in trials if t.shows(sig)), None)
        if hit is not None:
            kept = tries[trials.index(hit)]
            text = f"kept probe {kept.probe} alone ({total - 1} removed)"
            current, best = hit.case, hit
        else:
            others = [p for p in case.probes if p != target.target]
            keep_trials: dict[tuple[int, ...], Trial] = {}

            def test_probes(cands: list[list[Probe]]) -> list[bool]:
                ts = lab.run([only(current, c + [target.target]) for c in cands])
                for c, t in zip(cands, ts):
                    keep_trials[tuple(id(p) for p in c)] = t
                return [t.shows(sig) for t in ts]

            rest, done = ddmin(others, test_probes, budget, batched=True)
            t = keep_trials.get(tuple(id(p) for p in rest))
            if t is None:
                t = lab.run([only(current, rest + [target.target])])[0]
            if t.shows(sig):
                current, best = t.case, t
            text = (f"no probe diverges the same way alone; delta debugging over the named "
                    f"probes kept {len(rest) + 1} of {total}" + ("" if done else " (budget spent)"))
        steps.append(Step("probes", text, lab.boots - b))

    # 2. image
    b = lab.boots
    words = image_words(current)
    walked = walked_addresses(current)
    mem = current.memory()
    walk_words = {a: mem.read64(a) or 0 for a in walked}
    before = sum(1 for v in words.values() if v)
    if {a: v for a, v in walk_words.items() if v} == {a: v for a, v in words.items() if v}:
        text = f"the image already holds only the {len(walk_words)} walked descriptor(s)"
    else:
        t = lab.run([_with_words(current, walk_words)])[0]
        if t.shows(sig):
            current, best = t.case, t
            text = (f"kept the {sum(1 for v in walk_words.values() if v)} non-zero descriptor(s) "
                    f"the walk reads; {before - sum(1 for v in walk_words.values() if v)} "
                    "words removed")
        else:
            extra = sorted(a for a, v in words.items() if v and a not in walk_words)
            trials_by: dict[tuple[int, ...], Trial] = {}

            def test_words(cands: list[list[int]]) -> list[bool]:
                results = []
                for c in cands:
                    tr = lab.run([_with_words(current, {**walk_words,
                                                        **{a: words[a] for a in c}})])[0]
                    trials_by[tuple(c)] = tr
                    results.append(tr.shows(sig))
                return results

            rest, done = ddmin(extra, test_words, budget, batched=False)
            if tuple(rest) in trials_by:
                best = trials_by[tuple(rest)]
                current = best.case
            text = (f"QEMU reads more than the reference's walk: delta debugging kept "
                    f"{len(rest)} extra word(s) of {len(extra)}" + ("" if done else " (budget spent)"))
    steps.append(Step("image", text, lab.boots - b))

    # 3. configuration
    b = lab.boots
    path: WalkPath | None = None
    if len(current.probes) != 1:
        text = "skipped: more than one probe is needed"
    else:
        try:
            path = walk_path(current, 0)
        except NotRebuildable as exc:
            text = f"skipped: {exc}"
        else:
            current, best, text = _simplify_geometry(current, best, path, sig, lab)
            try:
                path = walk_path(current, 0)
            except NotRebuildable:
                path = None
    steps.append(Step("configuration", text, lab.boots - b))
    assert target.probe is not None
    return ShrinkResult(original=case, probe=target.probe, signature=sig, minimal=current,
                        trial=best, steps=tuple(steps), boots=lab.boots - boots0, path=path)


def _simplify_geometry(current: Case, best: Trial, path: WalkPath, sig: Signature,
                       lab: Lab) -> tuple[Case, Trial, str]:
    layout = build_layout(current.cpu, current.config)
    now = (FINAL_LEVEL - layout.start_level + 1, layout.ia_bits, current.probes[0].ipa)
    windows = Windows(lab.arena)
    candidates = []
    checked = 0
    for choice in geometry_choices(current, 0, path):
        if choice.key >= now:
            continue
        checked += 1
        new_layout = build_layout(current.cpu, choice.config)
        size, align = rebuild_footprint(new_layout, path.terminal.level)
        try:
            base = windows.take(size, align)
        except UsageError:
            break
        cand = rebuild(current, 0, path, base=base, config=choice.config, ipa=choice.ipa)
        if reference_labels(cand, 0) != sig.expected:
            continue
        try:
            new_path = walk_path(cand, 0)
        except NotRebuildable:
            continue
        if (new_path.terminal.level, new_path.terminal.value) != (path.terminal.level,
                                                                   path.terminal.value):
            continue
        candidates.append((choice, cand))
    if not candidates:
        return current, best, (f"no simpler geometry keeps the reference's outcome "
                               f"({checked} tried by the reference)")
    trials = lab.run([c for _, c in candidates])
    for (choice, cand), t in zip(candidates, trials):
        if t.shows(sig):
            same = sum(1 for tt in trials if tt.shows(sig))
            text = (f"{describe_geometry(current)}, IPA {current.probes[0].ipa:#x} -> "
                    f"{describe_geometry(cand)}, IPA {choice.ipa:#x} (tables rebuilt at "
                    f"{cand.image.root:#x}; {same} of {len(candidates)} candidates diverge the "
                    "same way)")
            return cand, t, text
    return current, best, (f"none of the {len(candidates)} simpler geometries diverges the "
                           "same way in QEMU; kept the configuration")
