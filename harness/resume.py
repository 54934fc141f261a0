"""Running a batch's images in as few QEMU boots as the results area
allows, resuming after a crash or a hang at the probe after the one QEMU
died on (docs/results.md, ``crash`` records).

The stub writes one record per probe, its kind word last, and counts the
images it finished (docs/job-abi.md): after a boot that died, the first
probe without a record in the first image not finished is the probe in
flight.  That probe becomes a :class:`CrashEvent`; the probes after it,
and the images after that one, are repacked on the host into a new boot.
Everything else is judged as if nothing had happened.

A QEMU that aborts on a common probe would die on each of them, one boot
per probe: once QEMU has died on CONFIRM probes of one AT kind for which
the reference predicts the same outcome (:func:`quarantine_key`: the
instruction and the permitted-outcome labels with levels masked, e.g.
``S12E1W: permission L*``), further probes with that key are held back
from QEMU: counted, never judged.  The counts per key (``quarantine``)
are the caller's, shared across batches.
"""
from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from reference.arch import AtKind
from reference.fast import span_model
from reference.generate import Case
from reference.walk import walk

from .qemu.boot import BatchResult, BatchStatus, FailureKind, failure_kind, run_batch
from .qemu.job import RECORD_WORDS, GuestStatus, ImageResult, JobImage, probe_table
from .qemu.signature import console_tail, crash_signature
from .vocabulary import outcome_label

# More crashes than this in one batch and the rest of it is not run: a QEMU
# that dies on every probe, with nothing the quarantine can predict, would
# otherwise cost one boot per probe.
MAX_CRASHES_PER_BATCH = 32

# Crashes on distinct probes of one key before that key's probes are held
# back: one crash may be the probe's alone (an address, a descriptor), a
# third on the same predicted outcome is a pattern.
CONFIRM = 3

_LEVEL = re.compile(r" L-?\d+\b")


def quarantine_key(labels: Sequence[str], at: str) -> str:
    """The AT instruction and the permitted-outcome labels of a probe with
    levels masked, sorted: ('permission L3',), 'S12E1W' -> 'S12E1W:
    permission L*'.  Probes with the same key are expected to take the
    same path through QEMU's walker."""
    return f"{at}: " + " | ".join(sorted({_LEVEL.sub(" L*", label) for label in labels}))


def held_keys(quarantine: dict[str, int]) -> set[str]:
    """The keys QEMU died on often enough to hold their probes back."""
    return {k for k, n in quarantine.items() if n >= CONFIRM}


def probe_labels(case: Case, row: int) -> tuple[str, ...]:
    """The labels of the reference's permitted outcomes for probe ``row``
    of ``case`` (named probes, then fan-out rows)."""
    named = len(case.probes)
    if row < named:
        result = case.permitted()[row]
    else:
        i = row - named
        result = walk(case.cpu, case.config, case.memory(), int(case.fanout.ipa[i]),
                      AtKind(int(case.fanout.at[i])))
    return tuple(sorted({outcome_label(o.result) for o in result.outcomes}))


def probe_key(case: Case, row: int) -> str:
    """:func:`quarantine_key` of probe ``row`` of ``case``."""
    named = len(case.probes)
    at = case.probes[row].at if row < named else AtKind(int(case.fanout.at[row - named]))
    return quarantine_key(probe_labels(case, row), at.name)


def probe_keys(case: Case) -> np.ndarray:
    """:func:`quarantine_key` of every probe of ``case`` (an object array,
    one per job row): named probes from their walks, fan-out probes one
    span model per (span, AT kind) (reference.fast: every IPA of a span
    meets the same descriptors and checks), walked one by one where the
    span has no model."""
    named = len(case.probes)
    fan = case.fanout
    keys = np.empty(named + len(fan), dtype=object)
    for i, (probe, result) in enumerate(zip(case.probes, case.permitted())):
        keys[i] = quarantine_key([outcome_label(o.result) for o in result.outcomes],
                                 probe.at.name)
    if not len(fan):
        return keys
    memory = case.memory()
    group = fan.span.astype(np.int64) * len(AtKind) + fan.at.astype(np.int64)
    for g in np.unique(group).tolist():
        rows = np.nonzero(group == g)[0]
        span_index, at = divmod(g, len(AtKind))
        kind = AtKind(at)
        base, bits = fan.spans[span_index]
        model = span_model(case.cpu, case.config, memory, base, bits, kind)
        if model is not None:
            keys[named + rows] = quarantine_key(
                [outcome_label(o.result) for o in model.result.outcomes], kind.name)
            continue
        for r in rows.tolist():
            result = walk(case.cpu, case.config, memory, int(fan.ipa[r]), kind)
            keys[named + r] = quarantine_key([outcome_label(o.result) for o in result.outcomes],
                                             kind.name)
    return keys


@dataclasses.dataclass(frozen=True)
class Segment:
    """Probes of one image to run in one boot: ``rows`` are indices into
    the image's probe table, in order."""

    image: int
    rows: np.ndarray


@dataclasses.dataclass(frozen=True)
class CrashEvent:
    """QEMU died (``kind`` CRASH) or hung (HANG) on probe ``probe`` of
    image ``image``: how (``signal``/``returncode``), its signature
    (harness.qemu.signature), the console's last lines, the boot's command
    line, and the segments that boot ran (for isolation, when the probe
    alone does not reproduce it)."""

    image: int
    probe: int
    kind: FailureKind
    signature: str
    signal: int | None
    returncode: int | None
    console: str
    argv: tuple[str, ...]
    boot: tuple[Segment, ...]


@dataclasses.dataclass(frozen=True)
class ResumedRun:
    """A batch run with crash-resume: the merged ``result`` (one
    ImageResult per input image, every probe QEMU answered in place), the
    crash events, per image the probes held back by the quarantine
    (``held``, boolean masks) and the boots it took.  ``unattributed``: a
    boot that failed with no probe to name (QEMU died before the stub
    started, or after it finished, or left the results area unreadable),
    with the segments it ran: the batch stops there."""

    result: BatchResult
    crashes: tuple[CrashEvent, ...]
    held: tuple[np.ndarray, ...]
    boots: int
    unattributed: tuple[BatchResult, tuple[Segment, ...]] | None


def _take_boot(pending: collections.deque[Segment], capacity: int) -> list[Segment]:
    """Segments from the front of ``pending`` whose probes fill one boot's
    results area (``capacity`` probes); the segment that does not fit is
    split, the rest of it left at the front."""
    boot: list[Segment] = []
    used = 0
    while pending:
        seg = pending[0]
        room = capacity - used
        if len(seg.rows) <= room:
            boot.append(pending.popleft())
            used += len(seg.rows)
            continue
        if room:
            pending.popleft()
            boot.append(Segment(seg.image, seg.rows[:room]))
            pending.appendleft(Segment(seg.image, seg.rows[room:]))
        break
    return boot


def _job(image: JobImage, rows: np.ndarray) -> JobImage:
    """The image with only ``rows`` of its probes (itself when all of them)."""
    if len(rows) == len(image.probes) and (not len(rows) or rows[-1] == len(rows) - 1):
        return image
    return dataclasses.replace(image, probes=probe_table(image.probes)[rows])


def run_resumable(arch, cpu: str, images: Sequence[JobImage], *, capacity: int,
                  qemu: str | Path | None = None, stub: Path | None = None,
                  timeout: float | None = None,
                  keys: Callable[[int], np.ndarray] | None = None,
                  quarantine: dict[str, int] | None = None,
                  on_crash: Callable[[CrashEvent], None] | None = None,
                  extra_args: Sequence[str] = (), keep: Path | None = None,
                  sequential: Callable[[int], bool] | None = None) -> ResumedRun:
    """Run ``images`` (one batch) in boots of at most ``capacity`` probes,
    resuming after each crash or hang at the next probe.

    ``keys(i)``: the quarantine key of every probe of image i (computed
    only once a key is held); ``quarantine``: crashes per key so far, the
    probes of keys with CONFIRM or more held back; ``on_crash`` sees each
    event as it happens (it counts the event's key into the quarantine:
    the key is the caller's to compute).  ``extra_args`` go to every boot
    (--qemu-arg); ``keep``: each boot's files stay in KEEP (boot k > 0 in
    KEEP-k), with rerun.sh (--keep).  ``sequential(i)``: image i's probes
    build on each other (an access case: TLB and memory state), so a crash
    ends it -- its later probes are not run, rather than run from a state
    the reference does not predict."""
    quarantine = quarantine if quarantine is not None else {}
    sizes = [len(im.probes) for im in images]
    # The common case: everything fits one boot and QEMU completes it; the
    # boot's own result is the batch's (no copying of records or memory).
    if sum(sizes) <= capacity and not held_keys(quarantine):
        only = run_batch(arch, cpu, images, qemu=qemu, timeout=timeout, stub=stub,
                         extra_args=extra_args, keep_dir=keep)
        if only.status is BatchStatus.COMPLETED:
            return ResumedRun(only, (), tuple(np.zeros(n, dtype=bool) for n in sizes), 1, None)
        results_first: BatchResult | None = only
    else:
        results_first = None
    # An image's records: the boot's own (read-only) array when one boot
    # ran the whole image, else one array its boots' rows are copied into
    # (made on first need: copying ~10^6 records of a batch that only
    # overflowed one boot cost more than the boot).
    records: list[np.ndarray | None] = [None] * len(sizes)
    # Table memory: every boot starts from the image's own regions, so the
    # descriptor words each boot changed are gathered over the boots (a
    # later boot's word wins): a hardware update made in a boot that then
    # died still counts.
    memory = [[np.frombuffer(data, dtype="<u8").copy() for _, data in im.regions]
              for im in images]
    done_images = [False] * len(images)
    held = [np.zeros(n, dtype=bool) for n in sizes]
    key_cache: dict[int, np.ndarray] = {}
    pending = collections.deque(Segment(i, np.arange(n)) for i, n in enumerate(sizes))
    crashes: list[CrashEvent] = []
    results: list[BatchResult] = []
    unattributed = None
    stopped = ""

    def hold(seg: Segment) -> Segment:
        held_now = held_keys(quarantine)
        if keys is None or not held_now or not len(seg.rows):
            return seg
        if seg.image not in key_cache:
            key_cache[seg.image] = keys(seg.image)
        out = np.isin(key_cache[seg.image][seg.rows], list(held_now))
        if out.any():
            held[seg.image][seg.rows[out]] = True
            seg = Segment(seg.image, seg.rows[~out])
        return seg

    while pending:
        if len(crashes) >= MAX_CRASHES_PER_BATCH:
            stopped = (f"stopped after {len(crashes)} crashes in this batch: the rest is not "
                       "run")
            break
        pending = collections.deque(hold(s) for s in pending)
        boot = _take_boot(pending, capacity)
        if results_first is not None:
            # The first boot of the fast path failed: it is this loop's first.
            result, results_first = results_first, None
        else:
            boots = len(results)
            result = run_batch(arch, cpu, [_job(images[s.image], s.rows) for s in boot],
                               qemu=qemu, timeout=timeout, stub=stub, extra_args=extra_args,
                               keep_dir=keep if keep is None or not boots
                               else keep.with_name(f"{keep.name}-{boots}"))
        results.append(result)
        failed = result.status is not BatchStatus.COMPLETED
        named = False
        # The stub copies every table region into place before its first
        # probe: a boot that wrote no probe record may have died part-way
        # through the copy, its regions half zeros that no probe wrote
        # (and no probe ran in it to change them): nothing to gather.
        written_of = [im.records[:, 0] != 0 for im in result.images]
        probed = any(bool(w.any()) for w in written_of)
        for k, seg in enumerate(boot):
            image, written = result.images[k], written_of[k]
            _store(records, sizes, seg, image.records, written)
            if probed:
                _gather(memory[seg.image], images[seg.image], image)
            if image.completed:
                if not any(p.image == seg.image for p in pending):
                    done_images[seg.image] = True
                continue
            if not failed:
                continue
            kind = failure_kind(result.status)
            missing = np.nonzero(~written)[0]
            readable = "unreadable" not in result.diagnostic
            if kind in (FailureKind.CRASH, FailureKind.HANG) and readable and missing.size \
                    and result.guest_status is GuestStatus.RUNNING:
                row = int(seg.rows[missing[0]])
                event = CrashEvent(
                    image=seg.image, probe=row, kind=kind,
                    signature=crash_signature(result.console, result.signal, result.returncode,
                                              hang=kind is FailureKind.HANG),
                    signal=result.signal, returncode=result.returncode,
                    console=console_tail(result.console), argv=result.argv, boot=tuple(boot))
                crashes.append(event)
                if on_crash is not None:
                    on_crash(event)
                after_it = seg.rows[missing[0] + 1:]
                if sequential is not None and sequential(seg.image):
                    after_it = after_it[:0]
                rest = [Segment(seg.image, after_it)] + boot[k + 1:]
                pending.extendleft(reversed(rest))
                named = True
            break
        if failed and not named:
            if result.status is BatchStatus.GUEST_ERROR:
                stopped = "the stub stopped (FATAL): the rest is not run"
            else:
                unattributed = (result, tuple(boot))
            break
    after = [tuple((pa, words.tobytes()) for (pa, _), words in zip(im.regions, mem))
             if done else None for im, mem, done in zip(images, memory, done_images)]
    filled = [r if r is not None else np.zeros((n, RECORD_WORDS), dtype=np.uint64)
              for r, n in zip(records, sizes)]
    merged = _merge(arch, cpu, images, results, filled, after, crashes, held, stopped)
    return ResumedRun(merged, tuple(crashes), tuple(held), len(results), unattributed)


def _store(records: list[np.ndarray | None], sizes: list[int], seg: Segment,
           got: np.ndarray, written: np.ndarray) -> None:
    """Put one boot's records of ``seg`` (``got``, in segment order) in
    place: the boot's array itself when it is the image's first and holds
    the whole image, else the rows the boot wrote (``written``: kind != 0),
    copied."""
    n = sizes[seg.image]
    have = records[seg.image]
    if have is None and n and len(seg.rows) == n:
        # The rows of a segment are ascending image rows: all n are 0..n-1.
        records[seg.image] = got
        return
    if have is None or not have.flags.writeable:
        have = (np.zeros((n, RECORD_WORDS), dtype=np.uint64) if have is None
                else np.array(have))
        records[seg.image] = have
    first, last = (int(seg.rows[0]), int(seg.rows[-1])) if len(seg.rows) else (0, -1)
    if last - first + 1 == len(seg.rows) and written.all():
        # A run of consecutive rows (no probe held back), all written.
        have[first:last + 1] = got
    else:
        have[seg.rows[written]] = got[written]


def _gather(memory: list[np.ndarray], image: JobImage, result: ImageResult) -> None:
    """Apply to ``memory`` (the image's regions as u64 words) the words
    one boot changed from the image's own regions."""
    for words, (_, before), (_, after) in zip(memory, image.regions, result.regions_after):
        old = np.frombuffer(before, dtype="<u8")
        new = np.frombuffer(after, dtype="<u8")
        changed = new != old
        words[changed] = new[changed]


def _merge(arch, cpu: str, images: Sequence[JobImage], results: list[BatchResult],
           records: list[np.ndarray], after: list, crashes: list[CrashEvent],
           held: list[np.ndarray], stopped: str) -> BatchResult:
    """One BatchResult for the boots of a batch: every probe's record in
    place, an image completed when its last probe ran to the end of a boot;
    the status the worst boot's, CRASHED (or TIMEOUT) when a crash (hang)
    was resumed; times added up; the first boot's command line."""
    first = results[0]
    worst = next((r for r in results if r.status is not BatchStatus.COMPLETED), first)
    status = worst.status
    if crashes:
        status = (BatchStatus.CRASHED if any(c.kind is FailureKind.CRASH for c in crashes)
                  else BatchStatus.TIMEOUT)
    done = [a is not None for a in after]
    image_results = tuple(ImageResult(rec, a or (), d) for rec, a, d in zip(records, after, done))
    parts = []
    if crashes:
        families = collections.Counter(c.signature for c in crashes)
        parts.append(f"QEMU {'crashed' if status is BatchStatus.CRASHED else 'hung'} on "
                     f"{len(crashes)} probe(s) and was resumed at the next ({len(results)} "
                     f"boots); " + "; ".join(f"{n} x {s}" for s, n in families.items()))
    n_held = int(sum(h.sum() for h in held))
    if n_held:
        parts.append(f"{n_held} probe(s) held back: the reference predicts the outcome a crash "
                     "was seen on")
    if stopped:
        parts.append(stopped)
    if worst.status is not BatchStatus.COMPLETED and not crashes:
        parts.insert(0, worst.diagnostic)
    stages: dict[str, float] = {}
    for r in results:
        for name, seconds in r.stages:
            stages[name] = stages.get(name, 0.0) + seconds
    return dataclasses.replace(
        worst, status=status, arch=first.arch, cpu=cpu, images=image_results,
        stages=tuple(stages.items()),
        images_done=sum(done), probes_done=int(sum((r[:, 0] != 0).sum() for r in records)),
        id_registers=first.id_registers, argv=first.argv, qemu_version=first.qemu_version,
        elapsed=sum(r.elapsed for r in results),
        console=worst.console, diagnostic="\n".join(p for p in parts if p))
