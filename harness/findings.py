"""What a crash or hang of QEMU leaves in a run: the crash record of the
probe in flight (harness.resume), the case file of a crash family's single
probe, re-run to check that it reproduces, and the isolation of a boot
that failed with no probe to name (harness.debug.isolate).  Case files go
to OUT/cases (docs/case-file.md); names only hold [A-Za-z0-9._-].
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reference.generate import Case, FanOut

from .casefile import save_case
from .debug.isolate import (
    IsolateError,
    failure_expect,
    failure_of,
    isolate,
    isolation_extra,
    named_probe,
    probe_subset,
)
from .kinds import RunCase, case_kind
from .plan import Batch, job_image
from .qemu.boot import BatchResult, FailureKind, run_batch
from .qemu.job import probe_table
from .qemu.signature import crash_signature
from .records import CrashRecord, Isolation
from .resume import CrashEvent, Segment, probe_labels

# Seconds each isolation boot may take: a hang costs this much per
# bisection step, so it is kept short (a healthy single image takes ms).
ISOLATE_TIMEOUT = 10.0


def case_file_name(key: str) -> str:
    """A file name for a case key: only [A-Za-z0-9._-], so that no key can
    name a path outside the cases directory."""
    safe = "".join(c if c.isascii() and c.isalnum() or c in "._-" else "_" for c in key)
    return safe.strip("._") + ".json"


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a batch's findings go and how its re-runs are made: the
    run's output directory (``out``: case files are named relative to it),
    the cases folder (OUT/cases or a QEMU's subfolder), the QEMU program
    (None: the default) and stub, the per-boot timeout and the results
    area's size in probes."""

    out: Path
    folder: Path
    qemu: str | None
    stub: Path
    timeout: float | None
    capacity: int

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.out))

    @property
    def limit(self) -> float:
        """Seconds per re-run: a hang costs this much each time."""
        return min(self.timeout or ISOLATE_TIMEOUT, ISOLATE_TIMEOUT)


def crash_record(batch: Batch, label: str, cases: Sequence[RunCase], result: BatchResult,
                 event: CrashEvent, key: str, held: int) -> CrashRecord:
    """The crash record of ``event`` (docs/results.md); ``key``: its
    quarantine key, ``held``: probes of its case held back.  An access or
    stage-1 case names the probe by its job row (IPA or VA, and the kind
    of operation); the expected labels are an AT probe's."""
    case = cases[event.image]
    spec = batch.specs[event.image]
    if isinstance(case, Case):
        probe = named_probe(case, event.probe)
        ipa, at, aim = f"{probe.ipa:#x}", probe.at.name, probe.aim
        expected = probe_labels(case, event.probe)
    else:
        row = probe_table(job_image(case).probes)[event.probe]
        ipa, at = f"{int(row['ipa']):#x}", f"{case_kind(case).value} op {int(row['kind'])}"
        aim, expected = f"job row {event.probe}", ()
    return CrashRecord(
        qemu=label, qemu_version=result.qemu_version, batch=batch.number,
        arch=case.cpu.arch.value, cpu=case.cpu.name, key=case.key, entry=spec.entry.name,
        group=spec.entry.group, probe=event.probe, ipa=ipa, at=at,
        aim=aim, expected=expected, kind=event.kind,
        signature=event.signature, signal=event.signal, returncode=event.returncode,
        console=event.console, argv=event.argv,
        granule=case.config.granule.label if case.config.granule else None,
        config=case.config.describe(), quarantine=key, held=held)


def boot_cases(cases: Sequence[RunCase], segments: Sequence[Segment]) -> list[RunCase]:
    """The cases one boot ran: each segment's image with its probes (an
    access or stage-1 case whole: its probes are not cut apart)."""
    out: list[RunCase] = []
    for s in segments:
        case = cases[s.image]
        out.append(probe_subset(case, s.rows.tolist()) if isinstance(case, Case) else case)
    return out


def claim(folder: Path, name: str) -> bool:
    """Whether this process is the first of the run to claim ``name`` (an
    O_EXCL marker in FOLDER/.claims): one case file per crash family, even
    with several workers meeting it at once."""
    claims = folder / ".claims"
    claims.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(claims / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def crash_case_file(where: Where, source: str, cases: Sequence[RunCase], event: CrashEvent,
                    rec: CrashRecord) -> CrashRecord:
    """For the first crash of a family (its signature) in the run: the
    probe run alone, and if it fails the same way, its case file
    (reproduced); if not, the boot's probes up to it bisected
    (harness.debug.isolate) for a set that does (not reproduced by the
    probe alone; case file when the bisection finds one).  Other crashes
    of the family keep no case file of their own.  ``source`` names the
    batch (and QEMU) in the case file."""
    digest = hashlib.sha1(event.signature.encode()).hexdigest()[:10]
    name = case_file_name(f"{event.kind.value}-{digest}")
    if not claim(where.folder, name):
        return rec
    case = cases[event.image]
    # An AT probe alone; an access or stage-1 case whole (its steps build
    # on each other).
    single: RunCase = (dataclasses.replace(case, probes=(named_probe(case, event.probe),),
                                           fanout=FanOut.empty())
                       if isinstance(case, Case) else case)
    again = run_batch(case.cpu.arch, case.cpu.name, [job_image(single)], qemu=where.qemu,
                      stub=where.stub, timeout=where.limit)
    failure = failure_of(again)
    same = failure is not None and crash_signature(
        again.console, again.signal, again.returncode,
        hang=failure.kind is FailureKind.HANG) == event.signature
    origin = {"source": source, "image": event.image, "probe": event.probe,
              "signature": event.signature}
    path = where.folder / name
    if same and failure is not None:
        save_case(path, single, {
            "expect": failure_expect(again, failure),
            "qemu": {"argv": list(again.argv), "version": again.qemu_version},
            "isolated_from": {**origin, "complete": True, "boots": 1,
                              "log": ["the probe QEMU died on, run alone: fails the same way"]}})
        return dataclasses.replace(rec, case_file=where.relative(path), reproduced=True)
    # Not by itself: bisect what the failing boot ran up to that probe.
    upto = [dataclasses.replace(s, rows=s.rows[:int(np.searchsorted(s.rows, event.probe)) + 1])
            if s.image == event.image else s for s in event.boot]
    upto = upto[:next(i for i, s in enumerate(upto) if s.image == event.image) + 1]
    try:
        iso = isolate(boot_cases(cases, upto), qemu=where.qemu, timeout=where.limit,
                      capacity=where.capacity)
    except IsolateError:
        return dataclasses.replace(rec, reproduced=False)
    if not iso.complete:
        return dataclasses.replace(rec, reproduced=False)
    save_case(path, iso.case, isolation_extra(iso, source))
    return dataclasses.replace(rec, case_file=where.relative(path), reproduced=False)


def isolate_failure(where: Where, batch: Batch, cases: Sequence[RunCase]) -> Isolation:
    """Split a boot that crashed or hung QEMU without naming a probe (QEMU
    died before the stub started, after it finished, or left the results
    area unreadable) down to the image and probe that do it
    (harness.debug.isolate); a failure that reproduces from one case is a
    finding with its case file (kind crash or hang, `s2diff repro` re-runs
    it); one that does not is recorded as such and stays an infrastructure
    event, never a divergence.  ``cases``: what that boot ran."""
    # A QEMU that fails without any image is broken, not made to fail by a
    # case: that is infrastructure, whatever a single case then shows.
    empty = run_batch(batch.arch, batch.cpu, [], qemu=where.qemu, stub=where.stub,
                      timeout=ISOLATE_TIMEOUT)
    if failure_of(empty) is not None:
        return Isolation(False, why=f"QEMU fails with an empty job too ({empty.status.value}): "
                                    "not caused by a case")
    try:
        iso = isolate(cases, qemu=where.qemu, timeout=where.limit, capacity=where.capacity)
    except IsolateError as exc:
        return Isolation(False, why=str(exc))
    if not iso.complete:
        return Isolation(False, why="fails only as a set of images", boots=iso.boots)
    name = case_file_name(f"{iso.case.key}-{iso.failure.kind.value}")
    where.folder.mkdir(parents=True, exist_ok=True)
    save_case(where.folder / name, iso.case, isolation_extra(iso, f"batch {batch.number}"))
    return Isolation(True, kind=iso.failure.kind, key=iso.case.key, probe=iso.probe,
                     case_file=where.relative(where.folder / name), boots=iso.boots)
