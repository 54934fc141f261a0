"""Running candidate cases in QEMU for shrinking and localizing: ``Lab``
packs a round of candidates into as few boots as possible (candidates whose
image windows do not overlap share one boot; candidates that are the same
image with other probes, without hardware updates, share its tables) and
judges each as a ``Trial``, its divergences with their signatures
(harness.vocabulary.Signature)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable, Sequence

from reference.arch import Arch, AtKind
from reference.generate import Case, FanOut, Probe
from reference.walk import walk

from ..errors import UsageError
from ..judge.case import judge_case
from ..plan import job_image
from ..qemu.boot import BatchResult, run_batch
from ..qemu.build import build_stub
from ..qemu.elf import read_stub
from ..qemu.job import ImageResult, RawObservation
from ..records import Divergence
from ..vocabulary import DivergenceKind, Signature, memory_label, outcome_label


class ShrinkError(UsageError):
    """The case cannot be shrunk (it does not diverge, or QEMU does not
    complete it); bad input (exit 2): the message says why."""


# ---------------------------------------------------------------------------
# Divergence signatures
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Found:
    """One divergence of a trial: the probe (index in the trial's case,
    fan-out probes after the named ones; for memory, the first named probe
    whose walk read the descriptor), that probe as a named Probe
    (``target``), its signature and the divergence as judged."""

    probe: int | None
    target: Probe | None
    signature: Signature
    record: Divergence


def only(case: Case, probes: Sequence[Probe]) -> Case:
    """The case with exactly these named probes and no fan-out probes."""
    return dataclasses.replace(case, probes=tuple(probes), fanout=FanOut.empty())


def probe_count(case: Case) -> int:
    """Named and fan-out probes."""
    return len(case.probes) + len(case.fanout)


def reference_labels(case: Case, index: int) -> tuple[str, ...]:
    """Sorted labels of the reference's permitted outcomes of probe ``index``."""
    probe = case.probes[index]
    res = walk(case.cpu, case.config, case.memory(), probe.ipa, probe.at)
    return tuple(sorted({outcome_label(o.result) for o in res.outcomes}))


_VALUES = re.compile(r"0x[0-9a-fA-F]+|\b\d+\b")


def reference_rules(case: Case, index: int = 0) -> frozenset[str]:
    """The rules of probe ``index``'s permitted outcomes, values left out:
    what a variant or a simpler geometry must keep besides the labels (a
    valid configuration faulting at level 1 is not a reserved SL0 that
    faults there)."""
    probe = case.probes[index]
    res = walk(case.cpu, case.config, case.memory(), probe.ipa, probe.at)
    return frozenset(_VALUES.sub("#", r) for o in res.outcomes for r in o.rules)


def find_divergences(case: Case, image: ImageResult) -> tuple[Found, ...]:
    """The divergences of ``case`` given its observations (harness.judge.case)."""
    _, divergences = judge_case(case, image)
    found = []
    for d in divergences:
        index = d.probe
        target: Probe | None
        if d.kind is DivergenceKind.PROBE:
            sig = d.signature
            assert d.ipa is not None and d.at is not None
            target = Probe(int(d.ipa, 16), AtKind[d.at], d.aim)
        else:
            raw = d.raw_map
            expected = reference_labels(case, index) if index is not None else ()
            sig = Signature(DivergenceKind.MEMORY, expected,
                            memory_label(int(raw["before"], 16), int(raw["after"], 16)))
            target = case.probes[index] if index is not None else None
        found.append(Found(index, target, sig, d))
    return tuple(found)


# ---------------------------------------------------------------------------
# Running candidates
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Trial:
    """One candidate case run in QEMU.  ``image`` is None when the boot
    ended before the stub finished the candidate's image (crash, hang)."""

    case: Case
    image: ImageResult | None
    batch: BatchResult
    divergences: tuple[Found, ...]

    @property
    def completed(self) -> bool:
        return self.image is not None

    def shows(self, sig: Signature) -> bool:
        """It diverges the way ``sig`` says."""
        return any(f.signature == sig for f in self.divergences)

    @property
    def agrees(self) -> bool:
        """It completed and QEMU agrees with the reference everywhere."""
        return self.completed and not self.divergences

    def observation(self, index: int = 0) -> RawObservation:
        assert self.image is not None
        return self.image.observations[index]


def _spans(case: Case) -> list[tuple[int, int]]:
    base, size = case.image.window
    spans = [(base, base + size)] if size else []
    spans += [(r.pa, r.end) for r in case.image.regions]
    return spans


def _overlap(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> bool:
    return any(x0 < y1 and y0 < x1 for x0, x1 in a for y0, y1 in b)


def _shares_memory(a: Case, b: Case) -> bool:
    """Two candidates may use one copy of the tables: the same bytes at the
    same PAs, and no hardware updates (HA = 0) that one could see of the other."""
    return (a.image.regions == b.image.regions and a.image.window == b.image.window
            and a.memory_map == b.memory_map and a.config.ha == 0 and b.config.ha == 0)


@dataclasses.dataclass
class _Group:
    members: list[tuple[int, Case, int | None]]     # (candidate index, case, owner index)
    spans: list[tuple[int, int]]
    probes: int


class Lab:
    """Runs candidate cases of one CPU model in QEMU, packing each round
    into as few boots as possible; ``boots`` counts the boots made.

    ``qemu``: the binary (default: harness.qemu.find_qemu); ``timeout`` per
    boot in seconds (default: run_batch's); ``on_boot`` sees a line after
    each boot (progress: a shrink is many boots)."""

    def __init__(self, arch: Arch, cpu: str, *, qemu: str | Path | None = None,
                 timeout: float | None = None,
                 on_boot: Callable[[str], None] | None = None) -> None:
        self.arch, self.cpu, self.qemu, self.timeout = arch, cpu, qemu, timeout
        self.on_boot = on_boot
        self.stub = build_stub(arch)
        self.layout = read_stub(self.stub).layout
        self.boots = 0
        self.qemu_version = ""
        self.argv: tuple[str, ...] = ()

    @property
    def arena(self) -> tuple[int, int]:
        return self.layout.arena_start, self.layout.arena_end

    def run(self, cases: Sequence[Case]) -> list[Trial]:
        """Run every candidate; the trials in the same order."""
        groups: list[_Group] = []
        for i, case in enumerate(cases):
            if case.cpu.name != self.cpu or case.cpu.arch is not self.arch:
                raise UsageError(f"candidate on {case.cpu.name}, lab on {self.cpu}")
            spans = _spans(case)
            n = probe_count(case)
            for g in groups:
                if g.probes + n > self.layout.max_probes:
                    continue
                owner = next((j for j, c, o in g.members if o is None and _shares_memory(c, case)),
                             None)
                if owner is not None:
                    g.members.append((i, case, owner))
                    g.probes += n
                    break
                if not _overlap(g.spans, spans):
                    g.members.append((i, case, None))
                    g.spans += spans
                    g.probes += n
                    break
            else:
                groups.append(_Group([(i, case, None)], spans, n))
        trials: list[Trial | None] = [None] * len(cases)
        for g in groups:
            images = []
            for _, case, owner in g.members:
                image = job_image(case)
                images.append(image if owner is None else dataclasses.replace(image, regions=()))
            batch = run_batch(self.arch, self.cpu, images, qemu=self.qemu, stub=self.stub,
                              timeout=self.timeout)
            self.boots += 1
            self.qemu_version, self.argv = batch.qemu_version, batch.argv
            if self.on_boot is not None:
                self.on_boot(f"{self.boots} QEMU boot{'s' if self.boots != 1 else ''}, "
                             f"{len(g.members)} candidate(s) in the last")
            by_index = {i: k for k, (i, _, _) in enumerate(g.members)}
            for k, (i, case, owner) in enumerate(g.members):
                result = batch.images[k]
                if owner is not None:
                    result = dataclasses.replace(
                        result, regions_after=batch.images[by_index[owner]].regions_after)
                if not result.completed:
                    trials[i] = Trial(case, None, batch, ())
                else:
                    trials[i] = Trial(case, result, batch, find_divergences(case, result))
        return [t for t in trials if t is not None]


class Windows:
    """Hands out non-overlapping PA windows inside an arena (bytes)."""

    def __init__(self, arena: tuple[int, int]) -> None:
        self.next, self.end = arena

    def take(self, size: int, align: int) -> int:
        base = -(-self.next // align) * align
        if base + size > self.end:
            raise UsageError("the candidates of one round do not fit the stub's arena")
        self.next = base + size
        return base


def choose_target(trial: Trial, probe: int | None,
                  preferred: Callable[[Found], bool] = lambda f: True) -> Found:
    """The divergence to follow: that of probe ``probe`` (fan-out probes
    numbered after the named ones), else the first probe divergence, else
    the first memory divergence -- of those ``preferred`` (e.g. not
    explained by the baseline) when there are any."""
    if probe is not None:
        n = probe_count(trial.case)
        if not 0 <= probe < n:
            raise UsageError(f"--probe: {probe} is not a probe of this case (it has "
                             f"{n}: 0..{n - 1})")
        hit = [f for f in trial.divergences if f.probe == probe]
        if not hit:
            raise ShrinkError(f"probe {probe} does not diverge on this QEMU")
        return hit[0]
    for wanted in (preferred, lambda f: True):
        for kind in (DivergenceKind.PROBE, DivergenceKind.MEMORY):
            hit = [f for f in trial.divergences
                   if f.signature.kind == kind and f.probe is not None and wanted(f)]
            if hit:
                return hit[0]
    raise ShrinkError("no divergence attributable to a probe")


def first_trial(case: Case, lab: Lab) -> Trial:
    """Run the case as given; ShrinkError if QEMU does not complete it or it
    does not diverge."""
    trial = lab.run([case])[0]
    if not trial.completed:
        raise ShrinkError(f"QEMU did not complete the case ({trial.batch.status.value}: "
                          f"{trial.batch.diagnostic.splitlines()[0] if trial.batch.diagnostic else ''}); "
                          "isolate it with `s2diff isolate`")
    if not trial.divergences:
        raise ShrinkError(f"the case does not diverge on {trial.batch.qemu_version}: nothing to shrink")
    return trial
