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

The passes (SHRINK_PASSES, each a named function and a round):

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
from typing import Callable, Mapping

from reference.catalogue import judge
from reference.config import FINAL_LEVEL
from reference.generate import Case, Probe, build_layout
from reference.memory import Region
from reference.walk import walk

from ..baseline import EMPTY, Baseline
from ..errors import UsageError
from ..records import Divergence
from ..vocabulary import Signature
from .ddmin import ddmin
from .lab import (
    Found,
    Lab,
    Trial,
    Windows,
    choose_target,
    first_trial,
    only,
    probe_count,
    reference_labels,
    reference_rules,
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
    target: Divergence | None = None    # the divergence followed, as judged in the original
    known: str | None = None            # the baseline entry that explains it, if any

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


@dataclasses.dataclass(frozen=True)
class Shrinking:
    """What every shrink pass needs: the lab, the case as given, the
    divergence followed (``target``) and its ``signature``, the
    divergences of the same signature (``members``, target first) and the
    candidates each delta-debugging fallback may try (``budget``)."""

    lab: Lab
    original: Case
    target: Found
    signature: Signature
    members: tuple[Found, ...]
    budget: int
    baseline: Baseline = EMPTY
    target_known: bool = False

    def keeps(self, trial: Trial) -> bool:
        """The candidate still diverges the way followed -- and, when the
        divergence followed is new, not only in ways the baseline already
        explains: a shrink must never trade the bug it was asked for for a
        different, known one."""
        if not trial.shows(self.signature):
            return False
        if self.target_known:
            return True
        version = trial.batch.qemu_version
        return any(f.signature == self.signature and self.baseline.match(f.record, version) is None
                   for f in trial.divergences)

    @property
    def probe(self) -> Probe:
        """The divergent probe, as a named probe."""
        assert self.target.target is not None
        return self.target.target


@dataclasses.dataclass(frozen=True)
class Shrunk:
    """Where shrinking stands: the smallest case so far that diverges the
    same way, its trial, and (after the configuration pass) its walk."""

    case: Case
    trial: Trial
    path: WalkPath | None = None


def shrink_probes(ctx: Shrinking, now: Shrunk) -> tuple[Shrunk, str | None]:
    """Pass 1, probes: keep one divergent probe of the family alone (the
    first of up to 8 that diverges the same way alone), else delta-debug
    the other named probes away.  No step for a case of one probe."""
    lab = ctx.lab
    total = probe_count(ctx.original)
    if total <= 1:
        return now, None
    tries = [f for f in ctx.members[:8] if f.target is not None]
    trials = lab.run([only(now.case, [f.target]) for f in tries if f.target is not None])
    hit = next((t for t in trials if ctx.keeps(t)), None)
    if hit is not None:
        kept = tries[trials.index(hit)]
        return Shrunk(hit.case, hit), f"kept probe {kept.probe} alone ({total - 1} removed)"
    others = [p for p in ctx.original.probes if p != ctx.probe]
    by_subset: dict[tuple[int, ...], Trial] = {}

    def test_probes(cands: list[list[Probe]]) -> list[bool]:
        ts = lab.run([only(now.case, c + [ctx.probe]) for c in cands])
        for c, t in zip(cands, ts):
            by_subset[tuple(id(p) for p in c)] = t
        return [ctx.keeps(t) for t in ts]

    rest, done = ddmin(others, test_probes, ctx.budget, batched=True)
    t = by_subset.get(tuple(id(p) for p in rest))
    if t is None:
        t = lab.run([only(now.case, rest + [ctx.probe])])[0]
    if ctx.keeps(t):
        now = Shrunk(t.case, t)
    return now, (f"no probe diverges the same way alone; delta debugging over the named "
                 f"probes kept {len(rest) + 1} of {total}" + ("" if done else " (budget spent)"))


def shrink_image(ctx: Shrinking, now: Shrunk) -> tuple[Shrunk, str | None]:
    """Pass 2, image: keep only the descriptor words the reference's walks
    read (every other word of RAM reads as zero), else delta-debug the
    other words away, one boot per candidate."""
    lab, current = ctx.lab, now.case
    words = image_words(current)
    mem = current.memory()
    walk_words = {a: mem.read64(a) or 0 for a in walked_addresses(current)}
    kept = {a: v for a, v in walk_words.items() if v}
    if kept == {a: v for a, v in words.items() if v}:
        return now, f"the image already holds only the {len(walk_words)} walked descriptor(s)"
    t = lab.run([_with_words(current, walk_words)])[0]
    if ctx.keeps(t):
        before = sum(1 for v in words.values() if v)
        return Shrunk(t.case, t), (f"kept the {len(kept)} non-zero descriptor(s) the walk "
                                   f"reads; {before - len(kept)} words removed")
    extra = sorted(a for a, v in words.items() if v and a not in walk_words)
    by_subset: dict[tuple[int, ...], Trial] = {}

    def test_words(cands: list[list[int]]) -> list[bool]:
        results = []
        for c in cands:
            tr = lab.run([_with_words(current, {**walk_words, **{a: words[a] for a in c}})])[0]
            by_subset[tuple(c)] = tr
            results.append(ctx.keeps(tr))
        return results

    rest, done = ddmin(extra, test_words, ctx.budget, batched=False)
    if tuple(rest) in by_subset:
        best = by_subset[tuple(rest)]
        now = Shrunk(best.case, best)
    return now, (f"QEMU reads more than the reference's walk: delta debugging kept "
                 f"{len(rest)} extra word(s) of {len(extra)}" + ("" if done else " (budget spent)"))


def simplify_configuration(ctx: Shrinking, now: Shrunk) -> tuple[Shrunk, str | None]:
    """Pass 3, configuration: rebuild the walked path under every simpler
    geometry of the same granule and keep the simplest that still diverges
    the same way (see the module docstring); skipped, and said so, when
    the walk cannot be rebuilt."""
    if len(now.case.probes) != 1:
        return now, "skipped: more than one probe is needed"
    try:
        path = walk_path(now.case, 0)
    except NotRebuildable as exc:
        return now, f"skipped: {exc}"
    case, trial, text = _simplify_geometry(now.case, now.trial, path, ctx)
    try:
        new_path: WalkPath | None = walk_path(case, 0)
    except NotRebuildable:
        new_path = None
    return Shrunk(case, trial, new_path), text


# The passes in the order they run, each named as its step is reported
# (as Hypothesis names its shrink passes): fewer probes first makes every
# later candidate cheaper.
ShrinkPass = Callable[[Shrinking, Shrunk], tuple[Shrunk, str | None]]
SHRINK_PASSES: tuple[tuple[str, ShrinkPass], ...] = (
    ("probes", shrink_probes),
    ("image", shrink_image),
    ("configuration", simplify_configuration),
)


def shrink(case: Case, lab: Lab, *, probe: int | None = None, budget: int = 48,
           baseline: Baseline = EMPTY,
           stage: Callable[[str], None] | None = None) -> ShrinkResult:
    """Minimize ``case`` by the SHRINK_PASSES (see the module docstring).
    ``probe``: follow this probe's divergence (default: the first divergent
    probe the ``baseline`` does not explain, else the first divergent
    probe); ``budget``: candidates each delta-debugging fallback may try.
    A new divergence is never traded for one the baseline explains.
    ``stage`` sees the name of each pass as it starts (progress)."""
    boots0 = lab.boots
    if stage is not None:
        stage(f"run the case ({probe_count(case)} probes)")
    trial = first_trial(case, lab)
    version = trial.batch.qemu_version
    target = choose_target(trial, probe, lambda f: baseline.match(f.record, version) is None)
    known = baseline.match(target.record, version)
    sig = target.signature
    members = [target] + [f for f in trial.divergences
                          if f.signature == sig and f.target is not None
                          and f.probe != target.probe]
    total = probe_count(case)
    steps = [Step("run", f"{total} probes ({len(case.probes)} named, {len(case.fanout)} "
                  f"fan-out), {len(trial.divergences)} divergence records, "
                  f"{len(members)} of them in this family", lab.boots - boots0)]
    ctx = Shrinking(lab, case, target, sig, tuple(members), budget, baseline, known is not None)
    if known is not None:
        steps.append(Step("note", f"the divergence followed is known: baseline entry {known.id}"
                          + ("" if probe is not None else " (every divergence of the case is "
                             "known)"), 0))
    now = Shrunk(trial.case, trial)
    for name, run_pass in SHRINK_PASSES:
        boots = lab.boots
        if stage is not None:
            stage(f"pass {name}")
        now, text = run_pass(ctx, now)
        if text is not None:
            steps.append(Step(name, text, lab.boots - boots))
    assert target.probe is not None
    return ShrinkResult(original=case, probe=target.probe, signature=sig, minimal=now.case,
                        trial=now.trial, steps=tuple(steps), boots=lab.boots - boots0,
                        path=now.path, target=target.record,
                        known=known.id if known is not None else None)


def config_class(case: Case) -> tuple:
    """What a simpler geometry must not change about the configuration: the
    reference's verdict (valid, and the pseudocode rules that fail) and
    whether the IPA is wider than the output size (a configuration class
    of its own, where other emulator bugs live)."""
    verdict = judge(case.cpu, case.config)
    names = tuple(sorted({p.split(":")[0] for p in verdict.problems}))
    wide = (verdict.ia_bits or case.config.ia_bits) > (verdict.oa_bits or 64)
    return (verdict.valid, names, wide)


def _simplify_geometry(current: Case, best: Trial, path: WalkPath,
                       ctx: Shrinking) -> tuple[Case, Trial, str]:
    sig, lab = ctx.signature, ctx.lab
    layout = build_layout(current.cpu, current.config)
    now = (FINAL_LEVEL - layout.start_level + 1, layout.ia_bits, current.probes[0].ipa)
    windows = Windows(lab.arena)
    candidates = []
    checked = 0
    rules, cls = reference_rules(current), config_class(current)
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
        if reference_labels(cand, 0) != sig.expected or reference_rules(cand) != rules \
                or config_class(cand) != cls:
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
        return current, best, (f"no simpler geometry keeps the reference's outcome, its rules "
                               f"and the configuration's class ({checked} tried by the "
                               "reference)")
    trials = lab.run([c for _, c in candidates])
    for (choice, cand), t in zip(candidates, trials):
        if ctx.keeps(t):
            same = sum(1 for tt in trials if ctx.keeps(tt))
            text = (f"{describe_geometry(current)}, IPA {current.probes[0].ipa:#x} -> "
                    f"{describe_geometry(cand)}, IPA {choice.ipa:#x} (tables rebuilt at "
                    f"{cand.image.root:#x}; {same} of {len(candidates)} candidates diverge the "
                    "same way)")
            return cand, t, text
    known = sum(1 for t in trials if t.shows(sig) and not ctx.keeps(t))
    return current, best, (f"none of the {len(candidates)} simpler geometries diverges the "
                           "same way in QEMU" + (f" without a known divergence ({known} show "
                                                 "only the baseline's)" if known else "")
                           + "; kept the configuration")
