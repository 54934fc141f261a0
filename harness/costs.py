"""What a batch costs the worker that runs it: a stopwatch per stage (wall
and CPU time, `s2diff bench`'s profile) and the memory it reuses from one
batch to the next."""
from __future__ import annotations

import ctypes
import resource
import time


class Stopwatch:
    """Seconds per stage of a batch in a worker (`s2diff bench`'s profile):
    each ``lap`` charges the time since the last one to a stage, or to the
    parts ``inner`` names (the rest of it to the stage itself).

    CPU seconds too, which a machine shared with other work does not
    inflate as it does wall time: the worker's own per stage ("cpu.STAGE",
    the run stage's being the packing, unpacking and launching around
    QEMU) and QEMU's ("cpu.qemu": the boots' processes, reaped by now)."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._last = time.monotonic()
        self._cpu = time.process_time()
        self._children = _children_cpu()

    def lap(self, stage: str, inner: dict[str, float] | None = None) -> None:
        now = time.monotonic()
        spent = now - self._last
        self._last = now
        for name, seconds in (inner or {}).items():
            self._add(name, seconds)
            spent -= seconds
        self._add(stage, max(spent, 0.0))
        cpu, children = time.process_time(), _children_cpu()
        self._add(f"cpu.{stage}", cpu - self._cpu)
        if children > self._children:
            self._add("cpu.qemu", children - self._children)
        self._cpu, self._children = cpu, children

    def _add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children (its QEMUs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# The largest mmap threshold glibc takes on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX):
# a full results table (~460,000 records of 64 bytes) stays below it.
_MMAP_THRESHOLD = 32 << 20
# Free heap memory kept rather than given back: a batch's working set.
_TRIM_THRESHOLD = 512 << 20
_malloc_tuned = False


def keep_freed_memory() -> None:
    """Make this process reuse the memory of a batch for the next one
    instead of returning it to the kernel (glibc only; elsewhere nothing
    changes).  By default a buffer of more than 128 KiB -- every probe
    table, job blob, results table and numpy temporary of a batch -- is a
    fresh mmap, and on a virtual machine the page faults of touching it
    cost more than the work done with it (measured: packing a job 3 ms with
    this, 15-20 ms without).  Peak memory is the largest batch's working
    set either way."""
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
