#!/usr/bin/env python3
"""A stand-in for qemu-system-aarch64 / qemu-system-arm that aborts, as a
failed assertion in QEMU does, exactly while the stub runs a chosen probe,
for the crash-resume tests (tests/test_crash_resume.py).

The probe is chosen by job content, so that it is found again in any boot
that carries it (a resumed boot does not: it starts after it):

``S2DIFF_ABORT_VMID``  hex: the image whose VTTBR[63:48] is this VMID
``S2DIFF_ABORT_IPA``   hex: its first probe of this IPA (comma-separated:
                       any of them)
``S2DIFF_ABORT_REAL``  the real emulator (default /usr/bin/<own name>)
``S2DIFF_ABORT_RESULTS`` hex offset of the results header in the guest RAM
                       file (__s2_results_start - __s2_ram_base of the stub,
                       docs/job-abi.md)
``S2DIFF_ABORT_STATE`` directory: one ``boot-N.json`` per boot (its job's
                       images and whether it aborted)

A boot whose job holds no such probe execs the real emulator.  Otherwise
the real emulator runs as a child on a copy of the job in which that image
stops before the probe (its probe count cut to the probe's index) and the
stub parks after it (the job's ``hang_after``, docs/job-abi.md); once the
stub is parked, every record before the probe is in the RAM file.  Then,
as QEMU aborting inside that probe's AT would, the wrapper prints an
assertion on stderr, kills the emulator, puts the results
header back to what the stub had written before the image's last probe
count (images_done one less, probes_done without the image's records), and
dies of SIGABRT itself.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time

JOB_HEADER = struct.Struct("<6I5Q")     # magic version n_images n_probes n_regions hang_after + offsets
IMAGE = struct.Struct("<QQIIQ")         # job ABI 3: vtcr vttbr first count el1_ipa (then
#                                         s2pir hcr sctlr tcr ttbr0 ttbr1 mair: untouched)
IMAGE_RECORD_SIZE = 88                  # harness/qemu/job.py IMAGE_RECORD_SIZE
PROBE = struct.Struct("<QIIQQ")         # ipa kind flags data data2
HANG_AFTER_OFFSET = 20                  # the u32 after magic, version, n_images, n_probes, n_regions
RH_IMAGES_DONE, RH_PROBES_DONE = 0x10, 0x18
ASSERTION = ("{prog}: target/arm/helper.c:{line}: do_ats_write: Assertion "
             "`planted_abort_for_tests' failed.")


def job_argument(argv: list[str]) -> tuple[int, str] | None:
    """(index in argv, path) of the job loader's file."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "-device" and argv[i + 1].startswith("loader,"):
            for part in argv[i + 1].split(","):
                if part.startswith("file="):
                    return i + 1, part[5:]
    return None


def ram_file(argv: list[str]) -> str:
    return next(part.split("=", 1)[1] for arg in argv for part in arg.split(",")
                if part.startswith("mem-path="))


def target(blob: bytes, vmid: int, ipas: set[int]) -> tuple[int, int, int] | None:
    """(image index, probe index in the image, image record offset) of the
    first probe of an image with the VMID whose IPA is one of ``ipas``."""
    (_magic, _version, n_images, _n, _r, _hang, image_off, probe_off, *_rest) = \
        JOB_HEADER.unpack_from(blob, 0)
    for i in range(n_images):
        at = image_off + i * IMAGE_RECORD_SIZE
        _vtcr, vttbr, first, count, _el1 = IMAGE.unpack_from(blob, at)
        if vttbr >> 48 != vmid:
            continue
        for k in range(count):
            if PROBE.unpack_from(blob, probe_off + (first + k) * PROBE.size)[0] in ipas:
                return i, k, at
    return None


def read_u64(path: str, offset: int) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return int.from_bytes(f.read(8) or b"\0", "little")
    except FileNotFoundError:
        return 0


def write_u64(path: str, offset: int, value: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(value.to_bytes(8, "little"))


def note(state: str | None, record: dict) -> None:
    if not state:
        return
    n = 0
    while True:
        try:
            fd = os.open(os.path.join(state, f"boot-{n}.json"),
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            n += 1
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        return


def main() -> None:
    argv = sys.argv[1:]
    prog = os.path.basename(sys.argv[0])
    real = os.environ.get("S2DIFF_ABORT_REAL") or f"/usr/bin/{prog}"
    state = os.environ.get("S2DIFF_ABORT_STATE")
    found = job_argument(argv)
    hit = None
    if found is not None and "S2DIFF_ABORT_VMID" in os.environ:
        with open(found[1], "rb") as f:
            blob = bytearray(f.read())
        ipas = {int(x, 16) for x in os.environ["S2DIFF_ABORT_IPA"].split(",") if x}
        hit = target(bytes(blob), int(os.environ["S2DIFF_ABORT_VMID"], 16), ipas)
    if found is not None:
        note(state, {"pid": os.getpid(), "abort": hit is not None})
    if hit is None:
        os.execv(real, [real] + argv)
    image, probe, at = hit
    vtcr, vttbr, first, _count, el1 = IMAGE.unpack_from(blob, at)
    IMAGE.pack_into(blob, at, vtcr, vttbr, first, probe, el1)
    struct.pack_into("<I", blob, HANG_AFTER_OFFSET, image)
    job = found[1] + ".abort"
    with open(job, "wb") as f:
        f.write(blob)
    argv[found[0]] = argv[found[0]].replace(f"file={found[1]}", f"file={job}")
    ram = ram_file(argv)
    results = int(os.environ["S2DIFF_ABORT_RESULTS"], 16)
    child = subprocess.Popen([real] + argv, stdin=subprocess.DEVNULL)
    # The stub has finished the cut image once images_done passes it; it
    # then parks (hang_after), so nothing more is written.
    while child.poll() is None and read_u64(ram, results + RH_IMAGES_DONE) < image + 1:
        time.sleep(0.001)
    if child.poll() is None:
        child.kill()        # the harness sees this process's end, not the child's
    child.wait()
    # On a line of its own: the stub may have been writing one.
    sys.stderr.write("\n" + ASSERTION.format(prog=prog, line=3500 + probe % 7) + "\n")
    sys.stderr.flush()
    write_u64(ram, results + RH_IMAGES_DONE, image)
    done = read_u64(ram, results + RH_PROBES_DONE)
    write_u64(ram, results + RH_PROBES_DONE, max(done - probe, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))      # no core file for a planted abort
    signal.signal(signal.SIGABRT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGABRT)


if __name__ == "__main__":
    main()
