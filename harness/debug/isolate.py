"""Crash and hang isolation: when a batch crashes QEMU, hangs it, or stops
the stub (FATAL), find the single image and probe that trigger it.

A failing boot is bisected, first over images (the images keep their PA
windows, which never overlap within a batch), then over the probes of the
image found: each half runs in a boot of its own, and the half that fails
*the same way* (:class:`Failure`: same kind, and for a crash the same signal
or exit status) is kept.  The stub's progress in the failing boot (images
done, probe records written) names a suspect first, which is tried alone
before bisecting.  When neither half fails alone the failure needs both, and
the search stops there and says so.

The result is a case file of kind crash/hang (docs/case-file.md, key
``expect``) that ``s2diff repro-crash`` reproduces.
"""
from __future__ import annotations

import dataclasses
import enum
import signal
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from reference.arch import AtKind
from reference.generate import Case, FanOut, Probe

from ..casefile import AnyCase
from ..errors import UsageError
from ..plan import job_image
from ..qemu.boot import BatchResult, FailureKind, failure_kind, run_batch
from ..qemu.build import build_stub
from ..qemu.elf import read_stub
from ..qemu.job import JobImage, ObsKind
from ..qemu.signature import crash_signature


class ReproVerdict(enum.Enum):
    """A crash/hang case re-run."""

    REPRODUCES = "reproduces"
    COMPLETES = "completes"
    FAILS_DIFFERENTLY = "fails-differently"


CONSOLE_TAIL = 4000     # characters of the console kept in a case file


class IsolateError(UsageError):
    """Nothing to isolate (the batch completes), or the inputs cannot run
    together: bad input (exit 2)."""


@dataclasses.dataclass(frozen=True)
class Failure:
    """How one boot failed: ``kind`` crash, hang or guest-error; for a crash
    the signal that killed QEMU or its exit status."""

    kind: FailureKind
    signal: int | None = None
    returncode: int | None = None

    def describe(self) -> str:
        if self.kind is FailureKind.CRASH:
            if self.signal is not None:
                return f"crash: QEMU killed by signal {self.signal} ({signal_name(self.signal)})"
            return f"crash: QEMU exited with status {self.returncode} without the end marker"
        if self.kind is FailureKind.HANG:
            return "hang: no end within the timeout"
        return "guest-error: the stub stopped (FATAL)"


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def failure_of(batch: BatchResult) -> Failure | None:
    """The failure of a boot, or None when it completed."""
    kind = failure_kind(batch.status)
    if kind is None:
        return None
    if kind is FailureKind.CRASH:
        return Failure(kind, batch.signal, None if batch.signal is not None else batch.returncode)
    return Failure(kind)


def job_images(cases: Sequence[AnyCase]) -> list[JobImage]:
    return [job_image(c) for c in cases]


def probe_subset(case: Case, indices: Sequence[int]) -> Case:
    """The case with only the probes at ``indices`` (named probes first,
    then fan-out rows, as the job runs them)."""
    named = len(case.probes)
    rows = np.array([i - named for i in indices if i >= named], dtype=np.int64)
    fan = case.fanout
    fanout = (FanOut(fan.spans, fan.ipa[rows], fan.at[rows], fan.span[rows]) if len(rows)
              else FanOut.empty())
    return dataclasses.replace(case, probes=tuple(case.probes[i] for i in indices if i < named),
                               fanout=fanout)


def named_probe(case: Case, index: int) -> Probe:
    """Probe ``index`` (a fan-out row after the named probes) as a named Probe."""
    if index < len(case.probes):
        return case.probes[index]
    row = index - len(case.probes)
    return Probe(int(case.fanout.ipa[row]), AtKind(int(case.fanout.at[row])), f"fan-out row {row}")


@dataclasses.dataclass(frozen=True)
class Isolation:
    """The single image and probe found: ``case`` (one image, one probe),
    its position in the input (``image``, ``probe``), the failure and the
    boot that last reproduced it; ``probe_needed`` False when the image
    fails with no probe at all; ``complete`` False when the search stopped
    at a set that fails only as a whole (``case`` then holds that set's
    first image)."""

    case: AnyCase
    image: int
    probe: int
    failure: Failure
    batch: BatchResult
    probe_needed: bool
    complete: bool
    boots: int
    log: tuple[str, ...]

    def expect(self) -> dict[str, Any]:
        """The case file's ``expect`` key (docs/case-file.md)."""
        return failure_expect(self.batch, self.failure, self.probe_needed)


def failure_expect(batch: BatchResult, failure: Failure, probe_needed: bool = True
                   ) -> dict[str, Any]:
    """The ``expect`` key of a crash/hang case file (docs/case-file.md):
    how the boot ``batch`` failed, its diagnostic and console's end, and
    the crash signature (harness.qemu.signature)."""
    return {"kind": failure.kind.value, "status": batch.status.value,
            "signal": failure.signal,
            "signal_name": signal_name(failure.signal) if failure.signal else None,
            "returncode": failure.returncode,
            "probe_needed": probe_needed,
            "signature": crash_signature(batch.console, batch.signal, batch.returncode,
                                         hang=failure.kind is FailureKind.HANG),
            "diagnostic": batch.diagnostic,
            "console": batch.console[-CONSOLE_TAIL:]}


class _Runner:
    def __init__(self, arch, cpu: str, qemu, timeout: float | None,
                 log: Callable[[str], None] | None) -> None:
        self.arch, self.cpu, self.qemu, self.timeout = arch, cpu, qemu, timeout
        self.boots = 0
        self.lines: list[str] = []
        self._log = log

    def note(self, text: str) -> None:
        self.lines.append(text)
        if self._log:
            self._log(text)

    def run(self, cases: Sequence[AnyCase], what: str) -> BatchResult:
        batch = run_batch(self.arch, self.cpu, job_images(cases), qemu=self.qemu,
                          timeout=self.timeout)
        self.boots += 1
        f = failure_of(batch)
        self.note(f"boot {self.boots}: {what}: {f.describe() if f else 'completes'}")
        return batch


def _suspect(batch: BatchResult) -> tuple[int | None, int | None]:
    """(image, probe) the stub had reached when the boot failed: the first
    image not completed and its first probe without a record."""
    image = next((i for i, im in enumerate(batch.images) if not im.completed), None)
    if image is None:
        return None, None
    obs = batch.images[image].observations
    probe = next((k for k, o in enumerate(obs) if o.kind is ObsKind.NOT_RUN), None)
    return image, probe


def _bisect(items: list[int], fails: Callable[[list[int]], bool], suspect: int | None,
            runner: _Runner, what: str) -> tuple[list[int], bool]:
    """Narrow ``items`` (known to fail) to one; (remaining, complete)."""
    if suspect is not None and suspect in items and len(items) > 1:
        if fails([suspect]):
            return [suspect], True
    current = items
    while len(current) > 1:
        half = len(current) // 2
        first, second = current[:half], current[half:]
        if fails(first):
            current = first
        elif fails(second):
            current = second
        else:
            runner.note(f"neither half of {len(current)} {what} fails alone: the failure needs "
                        "both; stopping here")
            return current, False
    return current, True


def probe_count(case: AnyCase) -> int:
    """The probes (job rows) a case of any kind brings to a boot."""
    if isinstance(case, Case):
        return len(case.probes) + len(case.fanout)
    return len(job_image(case).probes)


def fit_boots(cases: Sequence[AnyCase], capacity: int) -> list[list[AnyCase]]:
    """``cases`` cut, in order, into sets whose probes fit one boot's
    results area (``capacity`` probes); an AT case with more probes than
    that is split into probe subsets (harness.qemu.job: every boot respects
    the results area, or the job is refused).  Access and stage-1 cases
    (a few hundred probes) are never split: their steps build on each
    other."""
    boots: list[list[AnyCase]] = [[]]
    used = 0
    for case in cases:
        total = probe_count(case)
        parts: list[AnyCase] = ([case] if total <= capacity or not isinstance(case, Case) else
                                [probe_subset(case, list(range(lo, min(lo + capacity, total))))
                                 for lo in range(0, total, capacity)])
        for part in parts:
            n = probe_count(part)
            if boots[-1] and used + n > capacity:
                boots.append([])
                used = 0
            boots[-1].append(part)
            used += n
    return boots


def isolate(cases: Sequence[AnyCase], *, qemu: str | Path | None = None,
            timeout: float | None = None, log: Callable[[str], None] | None = None,
            capacity: int | None = None) -> Isolation:
    """Find the image and probe of ``cases`` (run together, as a batch)
    that make QEMU crash or hang.  ``timeout`` per boot in seconds (a hang
    costs that much per bisection step); ``log`` sees each boot;
    ``capacity``: probes one boot's results area holds (default: the
    stub's).  Cases with more probes than one boot holds run in several,
    in order, and the search goes on in the first that fails."""
    if not cases:
        raise UsageError("no case to isolate")
    arch, cpu = cases[0].cpu.arch, cases[0].cpu.name
    if any(c.cpu.name != cpu or c.cpu.arch is not arch for c in cases):
        raise UsageError("the cases of one batch must share the CPU model")
    if capacity is None:
        capacity = read_stub(build_stub(arch)).layout.max_probes
    runner = _Runner(arch, cpu, qemu, timeout, log)
    sets = fit_boots(cases, capacity)
    for n, subset in enumerate(sets):
        what = f"all {len(cases)} images" if len(sets) == 1 else \
            f"boot {n + 1} of {len(sets)} ({len(subset)} images)"
        whole = runner.run(subset, what)
        failure = failure_of(whole)
        if failure is not None:
            cases = subset
            break
    else:
        raise IsolateError(f"the {len(cases)} images complete in QEMU: nothing to isolate")
    last: dict[str, Any] = {"batch": whole, "cases": list(cases)}

    def fails_with(subset: list[AnyCase], what: str) -> bool:
        batch = runner.run(subset, what)
        if failure_of(batch) == failure:
            last["batch"], last["cases"] = batch, list(subset)
            return True
        return False

    suspect_image, suspect_probe = _suspect(whole)
    images, complete = _bisect(
        list(range(len(cases))),
        lambda idx: fails_with([cases[i] for i in idx],
                               f"images {_ranges(idx)}"),
        suspect_image, runner, "images")
    image = images[0]
    case = cases[image]
    if not complete:
        return Isolation(case, image, 0, failure, last["batch"], True, False, runner.boots,
                         tuple(runner.lines))
    if not isinstance(case, Case):
        # An access case's steps build on each other (TLB and VMID
        # sequences): the image is where isolation stops.
        return Isolation(case, image, -1, failure, last["batch"], True, True, runner.boots,
                         tuple(runner.lines))
    total = len(case.probes) + len(case.fanout)
    if total > 1:
        probes, complete = _bisect(
            list(range(total)),
            lambda idx: fails_with([probe_subset(case, idx)], f"image {image}, probes {_ranges(idx)}"),
            suspect_probe if suspect_image == image else None, runner, "probes")
        if not complete:
            return Isolation(probe_subset(case, probes), image, probes[0], failure, last["batch"],
                             True, False, runner.boots, tuple(runner.lines))
        probe = probes[0]
    elif total:
        probe = 0
    else:
        probe = -1
    single = (dataclasses.replace(case, probes=(named_probe(case, probe),), fanout=FanOut.empty())
              if probe >= 0 else case)
    needed = True
    if single.probes:
        final = last["cases"] == [single]
        if fails_with([probe_subset(single, [])], f"image {image} without probes"):
            needed = False
            runner.note("the image fails with no probe at all: the probe is kept for reference")
            final = False
        if not final and not fails_with([single], f"image {image}, probe {probe} (final check)"):
            raise IsolateError("the single image and probe no longer fail: the failure is "
                               "not reproducible")
    return Isolation(single, image, probe, failure, last["batch"], needed, True, runner.boots,
                     tuple(runner.lines))


def _ranges(idx: Sequence[int]) -> str:
    if not idx:
        return "(none)"
    if list(idx) == list(range(idx[0], idx[-1] + 1)):
        return f"{idx[0]}" if len(idx) == 1 else f"{idx[0]}..{idx[-1]}"
    return ",".join(str(i) for i in idx)


# ---------------------------------------------------------------------------
# Case files of kind crash / hang
# ---------------------------------------------------------------------------

def isolation_extra(iso: Isolation, source: str) -> dict[str, Any]:
    """The top-level keys a crash/hang case file adds (docs/case-file.md)."""
    return {"expect": iso.expect(),
            "qemu": {"argv": list(iso.batch.argv), "version": iso.batch.qemu_version},
            "isolated_from": {"source": source, "image": iso.image, "probe": iso.probe,
                              "complete": iso.complete, "boots": iso.boots,
                              "log": list(iso.log)}}


def parse_expect(data: dict[str, Any]) -> Failure | None:
    """The ``expect`` key of case-file data as a Failure (None: no key)."""
    exp = data.get("expect")
    if exp is None:
        return None
    kinds = {k.value: k for k in FailureKind}
    if not isinstance(exp, dict) or exp.get("kind") not in kinds:
        raise UsageError(f"expect.kind: expected one of {', '.join(kinds)}")
    sig, rc = exp.get("signal"), exp.get("returncode")
    for name, v in (("signal", sig), ("returncode", rc)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise UsageError(f"expect.{name}: expected an integer or null")
    return Failure(kinds[exp["kind"]], sig, rc)


@dataclasses.dataclass(frozen=True)
class CrashRepro:
    """A crash/hang case re-run, and its verdict."""

    expected: Failure
    observed: Failure | None
    batch: BatchResult

    @property
    def verdict(self) -> ReproVerdict:
        if self.observed is None:
            return ReproVerdict.COMPLETES
        if self.observed == self.expected:
            return ReproVerdict.REPRODUCES
        return ReproVerdict.FAILS_DIFFERENTLY


def repro_crash(case: AnyCase, expected: Failure, *, qemu: str | Path | None = None,
                timeout: float | None = None) -> CrashRepro:
    """Run a crash/hang case once and compare how the boot ends."""
    batch = run_batch(case.cpu.arch, case.cpu.name, job_images([case]), qemu=qemu,
                      timeout=timeout)
    return CrashRepro(expected, failure_of(batch), batch)
