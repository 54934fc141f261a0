#!/usr/bin/env python3
"""A stand-in for qemu-system-aarch64 / qemu-system-arm that plants a crash
or a hang keyed on the job, for the isolation tests (tests/test_isolate.py).

It reads the job blob QEMU is given (``-device loader,file=JOB,...``; the
layout is docs/job-abi.md) and, when one image's VTTBR carries the marker
VMID (VTTBR[63:48] == ``S2DIFF_MARKER_VMID``, hex) and, if
``S2DIFF_MARKER_IPA`` (hex) is set, that image also has a probe of that IPA,
it fails as ``S2DIFF_MARKER_MODE`` says:

``segv``  (default) print a line to stderr and die of SIGSEGV;
``abort`` the same with SIGABRT;
``hang``  sleep until killed.

Otherwise, and for ``--version``, it execs the real emulator
(``S2DIFF_MARKER_REAL``, default /usr/bin/<its own name>).
"""
from __future__ import annotations

import os
import signal
import struct
import sys
import time

JOB_HEADER = struct.Struct("<6I5Q")
IMAGE = struct.Struct("<QQIIQ")        # job ABI v3: vtcr vttbr first count el1_ipa (then 7 u64)
IMAGE_SIZE = 88
PROBE = struct.Struct("<QIIQQ")        # ipa kind flags data data2


def job_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == "-device" and argv[i + 1].startswith("loader,"):
            for part in argv[i + 1].split(","):
                if part.startswith("file="):
                    return part[5:]
    return None


def marked(blob: bytes, vmid: int, ipa: int | None) -> bool:
    (_magic, _version, n_images, _n_probes, _n_regions, _hang,
     image_off, probe_off, _region_off, _data_off, _total) = JOB_HEADER.unpack_from(blob, 0)
    for i in range(n_images):
        _vtcr, vttbr, first, count, _el1 = IMAGE.unpack_from(blob, image_off + i * IMAGE_SIZE)
        if vttbr >> 48 != vmid:
            continue
        if ipa is None:
            return True
        for k in range(first, first + count):
            if PROBE.unpack_from(blob, probe_off + k * PROBE.size)[0] == ipa:
                return True
    return False


def main() -> None:
    argv = sys.argv[1:]
    real = os.environ.get("S2DIFF_MARKER_REAL") or f"/usr/bin/{os.path.basename(sys.argv[0])}"
    path = job_path(argv)
    if path is not None and "S2DIFF_MARKER_VMID" in os.environ:
        with open(path, "rb") as f:
            blob = f.read()
        ipa = os.environ.get("S2DIFF_MARKER_IPA")
        if marked(blob, int(os.environ["S2DIFF_MARKER_VMID"], 16), int(ipa, 16) if ipa else None):
            mode = os.environ.get("S2DIFF_MARKER_MODE", "segv")
            print(f"qemu_marker: planted {mode} (marker VMID found in the job)", file=sys.stderr,
                  flush=True)
            if mode == "hang":
                while True:
                    time.sleep(60)
            sig = signal.SIGABRT if mode == "abort" else signal.SIGSEGV
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
    os.execv(real, [real] + argv)


if __name__ == "__main__":
    main()
