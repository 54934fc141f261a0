"""The guest stubs under real QEMU: boots, hand-built stage-2 tables, and
every way a boot can end (completed, guest error, crash, timeout).

Expected PAR values are derived from the architecture (Arm ARM D17.2
PAR_EL1; AArch32 64-bit PAR has the same bit positions) and match the
encodings DESIGN.md records for QEMU 7.2.  With stage 1 off:

  success  F=0; PA[47:12] in place (the page offset is not reported);
           bit 11 RES1 (AArch32: LPAE=1, long format); NS (bit 9) = 1, as
           everything is Non-secure without EL3; SH [8:7] = 0b10 because
           stage 1 off makes the access Device-nGnRnE, which is reported
           Outer Shareable; ATTR [63:56] = 0x00 (Device-nGnRnE is stronger
           than stage 2's Normal WB, and the stronger type wins).
           e.g. PA 0x1_0000_1000 -> 0x1_0000_1B00.
  fault    F=1; FST [6:1] = the fault status code (translation 0b0001LL,
           access flag 0b0010LL, permission 0b0011LL, LL = level); S
           (AArch32 FSTAGE) bit 9 = 1 for stage 2; bit 11 RES1; PTW bit 8
           = 0 (no stage-1 walk).  e.g. translation level 1 -> 0xA0B.
"""
from __future__ import annotations

import os
import signal
import struct
import threading
import time
from pathlib import Path

import pytest
from conftest import qemu_children

import harness.qemu.boot as qemu_mod
from harness.errors import QemuError, ToolMissing
from harness.qemu.boot import BatchStatus, run_batch
from harness.qemu.build import build_stub
from harness.qemu.builds import version_number
from harness.qemu.elf import read_stub
from harness.qemu.job import (
    NOT_RUN,
    FatalReason,
    GuestStatus,
    JobImage,
    JobProbe,
    ObsKind,
    PackedJob,
    RamFile,
    RawObservation,
    pack_job,
    read_results_header,
)
from reference.arch import Arch, AtKind

# --- stage-2 descriptors (Arm ARM D8.3, VMSAv8-64 stage 2; identical in LPAE) ---
VALID = 1 << 0
TABLE = 1 << 1              # at levels 0-2: table; at level 3 this bit makes a page
MEMATTR_NORMAL_WB = 0xF << 2
S2AP_RO = 0b01 << 6
S2AP_RW = 0b11 << 6
SH_INNER = 0b11 << 8
AF = 1 << 10
BLOCK_RW = AF | SH_INNER | S2AP_RW | MEMATTR_NORMAL_WB | VALID
PAGE_RW = BLOCK_RW | TABLE
NEXT_TABLE = TABLE | VALID

# VTCR: 4K granule, 40-bit IPA, start at level 1 (so two concatenated
# level-1 tables), inner-shareable write-back walks.
#   T0SZ [5:0] = 24 (AArch64) / T0SZ [3:0] = 0b1000 with S (bit 4) = 1,
#   i.e. -8 (AArch32; both give 64 - 24 = 32 + 8 = 40 bits)
#   SL0 [7:6] = 1 (start level 1 with a 4K granule), IRGN0 [9:8] = ORGN0
#   [11:10] = 0b01 (WB WA), SH0 [13:12] = 0b11, TG0 [15:14] = 0 (4K),
#   PS [18:16] = 0b010 (40-bit PA; AArch64 only), bit 31 RES1.
VTCR = {Arch.AARCH64: 0x8002_3558, Arch.AARCH32: 0x8000_3558}

# PA with nothing behind it below 4 GiB: virt's RAM is 0x4000_0000 + 1 GiB.
# (The PCIe MMIO windows would read as all-ones instead of aborting.)
NO_RAM_LOW = 0x8000_0000
NO_RAM_HIGH = 0x10_0000_0000

AARCH64_CPUS = ["cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1", "max"]
AARCH32_CPUS = ["cortex-a15", "cortex-a7", "max"]


def table(entries: dict[int, int], n: int = 512) -> bytes:
    """A table of ``n`` 8-byte descriptors, little-endian, zero (invalid) but for ``entries``."""
    data = bytearray(8 * n)
    for index, desc in entries.items():
        struct.pack_into("<Q", data, 8 * index, desc)
    return bytes(data)


def layout(arch: Arch):
    return read_stub(build_stub(arch)).layout


def sea_esr(arch: Arch, cpu: str) -> int:
    """ESR_EL2 / HSR of a synchronous external abort on a level-2 stage-2
    walk by an AT at EL2 / in Hyp mode: EC 0x25 (data abort without a
    change of EL), CM (bit 8) = 1 and WnR (bit 6) = 1 as the Arm ARM
    requires for aborts of address-translation instructions, DFSC 0b010110
    (SEA on a walk, level 2).  IL (bit 25) is 1, except that QEMU reports
    IL = 0 on its ARMv7 CPUs, where HSR.IL is UNKNOWN for a data abort
    without a valid instruction syndrome (ISV = 0)."""
    il = 0 if (arch is Arch.AARCH32 and cpu != "max") else 1
    return (0x25 << 26) | (il << 25) | (1 << 8) | (1 << 6) | 0b010110


class TestBoot:
    @pytest.mark.qemu
    @pytest.mark.parametrize("cpu, midr, parange", [
        ("cortex-a53", 0x410F_D034, 0b0010),    # r0p4, 40-bit PA
        ("cortex-a57", 0x411F_D070, 0b0100),    # r1p0, 44-bit PA
        ("cortex-a72", 0x410F_D083, 0b0100),    # r0p3, 44-bit PA
        ("cortex-a76", 0x414F_D0B1, 0b0010),    # r4p1, 40-bit PA
        ("neoverse-n1", 0x414F_D0C1, 0b0101),   # r4p1, 48-bit PA
        ("max", 0x000F_0510, 0b0110),           # QEMU's own MIDR, 52-bit PA
    ])
    def test_aarch64_boot_reports_id_registers(self, cpu, midr, parange):
        """An empty job completes and reports the CPU's MIDR and PARange."""
        r = run_batch(Arch.AARCH64, cpu, [])
        assert r.status is BatchStatus.COMPLETED, r.diagnostic
        assert r.returncode == 0 and r.guest_status is GuestStatus.COMPLETED
        assert r.id_registers["MIDR_EL1"] == midr
        assert r.id_registers["ID_AA64MMFR0_EL1"] & 0xF == parange
        assert r.console.strip().endswith("EXIT: STATUS=0")
        assert r.argv[r.argv.index("-cpu") + 1] == cpu
        assert r.qemu_version.startswith("QEMU emulator version")

    @pytest.mark.qemu
    @pytest.mark.parametrize("cpu, midr, version", [
        ("cortex-a15", 0x414F_C0F0, 7),         # r4p0
        ("cortex-a7", 0x410F_C075, 7),          # r0p5
        ("max", 0x411F_D070, 8),                # an AArch32 Cortex-A57 (QEMU's MIDR for max)
    ])
    def test_aarch32_boot_reports_id_registers(self, cpu, midr, version):
        """An empty job completes in Hyp mode and reports MIDR, VMSA support,
        and which architecture the core is: ID_MMFR4 is RAZ in ARMv7's
        reserved ID space and non-zero on ARMv8 (QEMU's max: 0x11110 on
        7.2, 0x20021110 from 10.0); ID_DFR0.CopDbg is 0b0100/0b0101 for
        ARMv7 debug, 0b0110 and up for ARMv8 (Arm ARM G8.2.84)."""
        r = run_batch(Arch.AARCH32, cpu, [])
        assert r.status is BatchStatus.COMPLETED, r.diagnostic
        assert r.id_registers["MIDR"] == midr
        assert r.id_registers["ID_MMFR0"] & 0xF == 0b0101     # VMSAv7 with Long descriptors
        copdbg = r.id_registers["ID_DFR0"] & 0xF
        if version == 7:
            assert r.id_registers["ID_MMFR4"] == 0 and copdbg in (0b0100, 0b0101)
        else:
            assert r.id_registers["ID_MMFR4"] != 0 and copdbg >= 0b0110


def hand_built_images(arch: Arch) -> tuple[list[JobImage], list[list[RawObservation]]]:
    """Two images and the observations the architecture requires of them.

    Image 0, two concatenated level-1 tables at the arena start (IPA[39:30]
    indexes them):
      L1[0] table -> L2 (arena + 0x4000); L2[5] table -> L3 (arena + 0x5000):
            L3[5] page RW -> 0x1234_5000, L3[6] invalid, L3[7] page with
            AF=0, L3[8] page read-only -> 0x1234_8000
      L1[1] invalid
      L1[2] 1 GiB block RW -> PA 0x1_0000_0000
      L1[3] table -> a PA with no memory: the walk aborts (SEA), and the
            batch must carry on with the next probe.
    Image 1, its own level-1 tables, VMID 1: L1[2] block -> PA 0x2_4000_0000;
    the same IPA as image 0 must now translate differently (VTTBR switch and
    TLB invalidation work)."""
    a = layout(arch).arena_start
    l3 = a + 0x5000
    l1 = table({0: (a + 0x4000) | NEXT_TABLE,
                2: 0x1_0000_0000 | BLOCK_RW,
                3: NO_RAM_LOW | NEXT_TABLE}, 1024)
    l2 = table({5: l3 | NEXT_TABLE})
    l3_ = table({5: 0x1234_5000 | PAGE_RW, 7: 0x1234_7000 | (PAGE_RW & ~AF),
                 8: 0x1234_8000 | (PAGE_RW & ~S2AP_RW) | S2AP_RO})
    probes0 = [
        (0x8000_1234, AtKind.S12E1R, RawObservation(ObsKind.PAR, par=0x1_0000_1B00)),
        (0x8000_1234, AtKind.S12E1W, RawObservation(ObsKind.PAR, par=0x1_0000_1B00)),
        (0xBFFF_F000, AtKind.S12E0R, RawObservation(ObsKind.PAR, par=0x1_3FFF_FB00)),
        (0x4000_0000, AtKind.S12E0W, RawObservation(ObsKind.PAR, par=0xA0B)),   # translation L1
        (0xC000_0000, AtKind.S12E1R, None),                                     # SEA, checked apart
        (0x00A0_5678, AtKind.S12E1R, RawObservation(ObsKind.PAR, par=0x1234_5B00)),
        (0x00A0_6000, AtKind.S12E1R, RawObservation(ObsKind.PAR, par=0xA0F)),   # translation L3
        (0x00A0_7000, AtKind.S12E1R, RawObservation(ObsKind.PAR, par=0xA17)),   # access flag L3
        (0x00A0_8000, AtKind.S12E1W, RawObservation(ObsKind.PAR, par=0xA1F)),   # permission L3
        (0x00A0_8000, AtKind.S12E1R, RawObservation(ObsKind.PAR, par=0x1234_8B00)),
    ]
    image0 = JobImage(VTCR[arch], a, ((a, l1), (a + 0x4000, l2), (l3, l3_)),
                      tuple(JobProbe(ipa, k) for ipa, k, _ in probes0))
    b = a + 0x10000
    image1 = JobImage(VTCR[arch], (1 << 48) | b, ((b, table({2: 0x2_4000_0000 | BLOCK_RW}, 1024)),),
                      (JobProbe(0x8000_1234, AtKind.S12E1R), JobProbe(0x4000_0000, AtKind.S12E1R)))
    expected1 = [RawObservation(ObsKind.PAR, par=0x2_4000_1B00), RawObservation(ObsKind.PAR, par=0xA0B)]
    return [image0, image1], [[e for _, _, e in probes0], expected1]


class TestStage2:
    @pytest.mark.qemu
    @pytest.mark.parametrize("arch, cpu", [(Arch.AARCH64, "cortex-a53"), (Arch.AARCH64, "cortex-a57"),
                                           (Arch.AARCH64, "max"), (Arch.AARCH32, "cortex-a15"),
                                           (Arch.AARCH32, "max")])
    def test_hand_built_tables(self, arch, cpu):
        """Hits, faults and a walk abort give the architected PAR / ESR, in one boot."""
        images, expected = hand_built_images(arch)
        r = run_batch(arch, cpu, images)
        assert r.status is BatchStatus.COMPLETED, r.diagnostic
        assert (r.images_done, r.probes_done) == (2, 12)
        got0 = list(r.images[0].observations)
        sea = got0.pop(4)
        assert got0 == [e for e in expected[0] if e is not None]
        assert list(r.images[1].observations) == expected[1]
        # The walk abort: taken at the current level's synchronous vector
        # (VBAR_EL2 + 0x200, HVBAR + 0x10), FAR / HDFAR = the probe's address.
        assert sea.kind is ObsKind.EXCEPTION
        assert sea.esr == sea_esr(arch, cpu)
        assert sea.far == 0xC000_0000
        assert sea.vector == (0x200 if arch is Arch.AARCH64 else 0x10)
        stub = read_stub(build_stub(arch))
        assert stub.symbolize(sea.elr) == "at_table"          # the S12E1R / ATS12NSOPR slot
        # Tables untouched: nothing had hardware AF/dirty management on.
        assert r.images[0].regions_after == images[0].regions

    @pytest.mark.qemu
    def test_aarch64_walk_abort_above_4g(self):
        """A table descriptor to PA 0x10_0000_0000 (no memory) aborts the walk."""
        a = layout(Arch.AARCH64).arena_start
        image = JobImage(VTCR[Arch.AARCH64], a, ((a, table({3: NO_RAM_HIGH | NEXT_TABLE}, 1024)),),
                         (JobProbe(0xC000_0000, AtKind.S12E1R), JobProbe(0x4000_0000, AtKind.S12E1R)))
        r = run_batch(Arch.AARCH64, "cortex-a57", [image])
        assert r.status is BatchStatus.COMPLETED, r.diagnostic
        sea, after = r.images[0].observations
        assert (sea.kind, sea.esr, sea.far) == (ObsKind.EXCEPTION, 0x9600_0156, 0xC000_0000)
        assert after == RawObservation(ObsKind.PAR, par=0xA0B)

    @pytest.mark.qemu
    def test_aarch32_walk_reads_above_4g(self):
        """LPAE descriptors hold 40-bit addresses: a table at PA 2^32 + x is
        not the one at x, so the walk reads where no memory is and takes a
        synchronous External abort.  qemu-system-arm before 9.2 truncated
        the address to 32 bits (target_ulong, fixed by 67d762e716 "Avoid
        target_ulong for physical address lookups", QEMU 9.2.0; measured:
        7.2.22 truncates, 10.0.2, 10.0.13 and 11.1.3 do not) and walked the
        table at x instead: its level-2 block gives PA 0x3440_0000, PAR
        0x3440_0B00 (bit 11 RES1, NS, SH = 0b10).  Stage-1 cases meet the
        same truncation for stage-1 tables above 4 GiB (tests/test_stage1_qemu.py
        ARM_ABOVE_4G)."""
        a = layout(Arch.AARCH32).arena_start
        alias = a + 0x10000      # RAM, holding a valid level-2 table: what truncation finds
        image = JobImage(VTCR[Arch.AARCH32], a,
                         ((a, table({3: ((1 << 32) + alias) | NEXT_TABLE}, 1024)),
                          (alias, table({0: 0x3440_0000 | BLOCK_RW}))),
                         (JobProbe(0xC000_0000, AtKind.S12E1R),))
        r = run_batch(Arch.AARCH32, "cortex-a15", [image])
        assert r.status is BatchStatus.COMPLETED, r.diagnostic
        obs = r.images[0].observations[0]
        version = tuple(int(x) for x in version_number(r.qemu_version).split(".")[:2])
        if version < (9, 2):
            assert obs == RawObservation(ObsKind.PAR, par=0x3440_0B00), obs
        else:
            assert obs.kind is ObsKind.EXCEPTION and obs.esr >> 26 == 0x25


def _whole(blob: bytes | bytearray) -> PackedJob:
    """A job of the given bytes as they are (what run_batch writes for the
    stub), for the tests that corrupt a packed job."""
    return PackedJob(bytes(blob), (), b"", (), len(blob))


def small_batch(arch: Arch, n: int) -> list[JobImage]:
    """``n`` images sharing one table (placed by image 0): each probe a 1 GiB block hit."""
    a = layout(arch).arena_start
    regions = ((a, table({2: 0x1_0000_0000 | BLOCK_RW}, 1024)),)
    return [JobImage(VTCR[arch], a, regions if i == 0 else (),
                     (JobProbe(0x8000_0000 + (i << 12), AtKind.S12E1R),)) for i in range(n)]


def par_of_image(i: int) -> RawObservation:
    return RawObservation(ObsKind.PAR, par=0x1_0000_0B00 + (i << 12))


class TestEndings:
    @pytest.mark.qemu
    @pytest.mark.parametrize("arch, cpu", [(Arch.AARCH64, "cortex-a57"), (Arch.AARCH32, "cortex-a7")])
    def test_hang_is_a_timeout_keeping_finished_images(self, arch, cpu, tmp_path):
        """A stub spinning after image 1 ends as TIMEOUT; images 0-1 are kept,
        QEMU is gone and the batch directory removed."""
        r = run_batch(arch, cpu, small_batch(arch, 4), hang_after=1, timeout=3.0, workdir=tmp_path)
        assert r.status is BatchStatus.TIMEOUT
        assert r.images_done == 2 and r.guest_status is GuestStatus.RUNNING
        assert [im.observations for im in r.images] == [(par_of_image(0),), (par_of_image(1),),
                                                        (NOT_RUN,), (NOT_RUN,)]
        assert [im.completed for im in r.images] == [True, True, False, False]
        assert "hang_after reached" in r.console
        # The escalation's SIGTERM suffices: QEMU says so and exits 0.
        assert "terminating on signal 15" in r.console
        assert not qemu_children()
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.qemu
    def test_sigkill_mid_batch_is_a_crash_keeping_finished_images(self, tmp_path):
        """QEMU SIGKILLed after image 2 ends as CRASHED with images 0-2 kept:
        the file-backed RAM keeps what the guest wrote."""
        arch = Arch.AARCH64
        lay = layout(arch)
        ram_path = tmp_path / "ram.bin"
        killed: list[int] = []

        def killer() -> None:
            # The hook parks the stub after image 2; kill once the results
            # header says so, so the kill always lands mid-batch.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not killed:
                pids = qemu_children()
                if pids and ram_path.exists():
                    with RamFile(ram_path, lay.ram_base) as ram:
                        if read_results_header(lay, ram)[2] == 3:
                            pid = pids.pop()
                            os.kill(pid, signal.SIGKILL)
                            killed.append(pid)
                time.sleep(0.01)

        thread = threading.Thread(target=killer)
        thread.start()
        try:
            r = run_batch(arch, "cortex-a57", small_batch(arch, 6), hang_after=2, timeout=30,
                          keep_dir=tmp_path)
        finally:
            thread.join()
        assert killed, "the batch ended before it could be killed"
        assert r.status is BatchStatus.CRASHED, r.diagnostic
        assert r.signal == signal.SIGKILL and "SIGKILL" in r.diagnostic
        assert r.images_done == 3 and r.guest_status is GuestStatus.RUNNING
        assert [im.observations[0] for im in r.images] == \
            [par_of_image(0), par_of_image(1), par_of_image(2), NOT_RUN, NOT_RUN, NOT_RUN]

    @pytest.mark.qemu
    @pytest.mark.parametrize("arch, cpu, insn", [(Arch.AARCH64, "cortex-a53", "ldp"),
                                                 (Arch.AARCH32, "cortex-a15", "ldrd")])
    def test_unexpected_exception_is_a_guest_error(self, arch, cpu, insn, monkeypatch):
        """An exception outside a probe prints FATAL, exits non-zero and is
        reported with the decoded syndrome and the code around the PC.

        Provoked by a job whose region data offset points past the end of
        RAM: the stub's copy loop then takes a synchronous external abort."""
        lay = layout(arch)

        def corrupt_pack_job(layout_, images, hang_after=None):
            blob = bytearray(pack_job(layout_, images, hang_after))
            region_off = struct.unpack_from("<Q", blob, 0x28)[0]
            struct.pack_into("<Q", blob, region_off + 16,
                             lay.ram_base + lay.ram_size - lay.job_start)
            return _whole(blob)

        monkeypatch.setattr(qemu_mod, "prepare_job", corrupt_pack_job)
        r = run_batch(arch, cpu, small_batch(arch, 2))
        assert r.status is BatchStatus.GUEST_ERROR
        assert r.returncode == 1 and r.guest_status is GuestStatus.FATAL
        assert r.fatal is not None and r.fatal.reason is FatalReason.EXCEPTION
        assert r.fatal.esr >> 26 == 0x25 and r.fatal.far == lay.ram_base + lay.ram_size
        assert r.diagnostic.startswith("FATAL: vector=")
        assert "EC 0x25 (data abort without a change in EL)" in r.diagnostic
        assert "synchronous external abort" in r.diagnostic
        marked = [line for line in r.diagnostic.splitlines() if line.startswith("=>")]
        assert len(marked) == 1 and insn in marked[0] and "<_start+" in marked[0]
        assert r.images_done == 0
        assert all(im.observations == (NOT_RUN,) for im in r.images)

    @pytest.mark.qemu
    @pytest.mark.parametrize("arch, cpu", [(Arch.AARCH64, "cortex-a53"), (Arch.AARCH32, "cortex-a15")])
    @pytest.mark.parametrize("field, value, reason, detail", [
        (0x00, 0x1234_5678, FatalReason.BAD_MAGIC, 0),
        (0x04, 99, FatalReason.BAD_VERSION, 0),
        ("kind", 8, FatalReason.BAD_KIND, 8),     # 0-7 are AT operations
        ("region_pa", 0x4000_0000, FatalReason.BAD_REGION, 0x4000_0000),
    ])
    def test_stub_refuses_a_bad_job(self, arch, cpu, field, value, reason, detail, monkeypatch):
        """The stub's own job checks stop it with a FATAL job line and exit 2."""
        def corrupt_pack_job(layout_, images, hang_after=None):
            blob = bytearray(pack_job(layout_, images, hang_after))
            if field == "kind":
                struct.pack_into("<I", blob, struct.unpack_from("<Q", blob, 0x20)[0] + 8, value)
            elif field == "region_pa":
                struct.pack_into("<Q", blob, struct.unpack_from("<Q", blob, 0x28)[0], value)
            else:
                struct.pack_into("<I", blob, field, value)
            return _whole(blob)

        monkeypatch.setattr(qemu_mod, "prepare_job", corrupt_pack_job)
        r = run_batch(arch, cpu, small_batch(arch, 1))
        assert r.status is BatchStatus.GUEST_ERROR
        assert r.returncode == 2
        assert r.fatal is not None and (r.fatal.reason, r.fatal.detail) == (reason, detail)
        assert r.diagnostic.startswith("FATAL: job reason=")
        assert f"stub refused the job: {reason.name}" in r.diagnostic

    @pytest.mark.qemu
    def test_qemu_refusing_to_start_raises(self):
        """An unknown -cpu is infrastructure trouble, not a batch outcome."""
        with pytest.raises(QemuError) as info:
            run_batch(Arch.AARCH64, "no-such-cpu", [])
        assert "no-such-cpu" in " ".join(info.value.argv)
        assert info.value.returncode == 1


def test_missing_qemu_names_the_debian_package(monkeypatch):
    """No QEMU binary: ToolMissing naming qemu-system-arm."""
    monkeypatch.setenv("S2DIFF_QEMU_ARM", "/nonexistent/qemu-system-arm")
    with pytest.raises(ToolMissing, match="Debian package qemu-system-arm"):
        qemu_mod.find_qemu(Arch.AARCH32)


def test_missing_assembler_names_the_debian_package(monkeypatch, tmp_path: Path):
    """No cross assembler: ToolMissing naming the binutils package."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing, match="binutils-aarch64-linux-gnu"):
        build_stub(Arch.AARCH64, build_dir=tmp_path)
