"""Job ABI packing and unpacking (harness/qemu/job.py), without QEMU.

The blob is decoded here with struct from the layout in docs/job-abi.md,
independently of the packer, so a change of either side shows."""
from __future__ import annotations

import base64
import os
import struct
import zlib

import numpy as np
import pytest

from harness.errors import UsageError
from harness.qemu.job import (
    ABI_VERSION,
    HANG_OFF,
    JOB_MAGIC,
    NOT_RUN,
    PROBE_DTYPE,
    RESULTS_MAGIC,
    FatalReason,
    GuestStatus,
    JobImage,
    JobLayout,
    JobProbe,
    ObsKind,
    RamBytes,
    RawObservation,
    SparseRam,
    pack_job,
    prepare_job,
    unpack_results,
)
from reference.arch import Arch, AtKind
from reference.stage1 import AtOp

# A small made-up memory map: room for 1020 probe records, a 1 MiB job area.
LAYOUT = JobLayout(Arch.AARCH64, ABI_VERSION, ram_base=0x4000_0000, ram_size=0x4000_0000,
                   results_start=0x4040_0000, results_end=0x4041_0000,
                   job_start=0x4050_0000, job_end=0x4060_0000,
                   arena_start=0x4800_0000, arena_end=0x4810_0000)
LAYOUT32 = JobLayout(Arch.AARCH32, *(getattr(LAYOUT, f) for f in (
    "abi_version", "ram_base", "ram_size", "results_start", "results_end",
    "job_start", "job_end", "arena_start", "arena_end")))

A = LAYOUT.arena_start


def _images() -> list[JobImage]:
    return [
        JobImage(0x8002_3558, A, ((A, bytes(range(16))), (A + 0x1000, b"\xaa" * 24)),
                 (JobProbe(0x8000_1234, AtKind.S12E1R), JobProbe(0x4000_0000, AtKind.S12E0W))),
        JobImage(0x8002_3559, (5 << 48) | (A + 0x2000), ((A + 0x2000, b"\x55" * 8),), ()),
        JobImage(0x8002_355A, A + 0x3000, (),
                 (JobProbe(0xFF_FFFF_F000, AtOp.S1E0W),), el1_ipa=0x4021_0000,
                 s2pir=0x0123_4567_89AB_CDEF, hcr=0x8000_0005, sctlr=0x30D0_0805,
                 tcr=0x5_8080_3510, ttbr0=0x4900_0000, ttbr1=1 << 48, mair=0xFF44_0400),
    ]


class TestPackJob:
    def test_header_and_tables_follow_the_documented_layout(self):
        """Every field lands where docs/job-abi.md says."""
        blob = pack_job(LAYOUT, _images(), hang_after=1)
        (magic, version, n_images, n_probes, n_regions, hang,
         image_off, probe_off, region_off, data_off, total) = struct.unpack_from("<6I5Q", blob)
        assert (magic, version) == (JOB_MAGIC, ABI_VERSION)
        assert blob[:4] == b"S2JB"
        assert (n_images, n_probes, n_regions, hang) == (3, 3, 3, 1)
        # ABI v3: 88-byte image records (s2pir and the EL1&0 registers
        # added), 32-byte probe records
        assert (image_off, probe_off, region_off) == (64, 64 + 3 * 88, 64 + 3 * 88 + 3 * 32)
        assert data_off == region_off + 3 * 24
        assert total == len(blob) == data_off + 16 + 24 + 8

        images = [struct.unpack_from("<QQIIQQQQQQQQ", blob, image_off + 88 * i)
                  for i in range(3)]
        # Stage 2 alone: S2PIR 0, HCR_EL2 = RW | VM, SCTLR_EL1 = its RES1
        # bits (M = 0), no stage-1 registers.
        alone = (0, 0x8000_0001, 0x30D0_0800, 0, 0, 0, 0)
        assert images == [(0x8002_3558, A, 0, 2, 0) + alone,
                          (0x8002_3559, (5 << 48) | (A + 0x2000), 2, 0, 0) + alone,
                          (0x8002_355A, A + 0x3000, 2, 1, 0x4021_0000, 0x0123_4567_89AB_CDEF,
                           0x8000_0005, 0x30D0_0805, 0x5_8080_3510, 0x4900_0000, 1 << 48,
                           0xFF44_0400)]
        probes = [struct.unpack_from("<QIIQQ", blob, probe_off + 32 * i) for i in range(3)]
        # AT S1E0W is kind 7 (reference.stage1.AtOp)
        assert probes == [(0x8000_1234, 0, 0, 0, 0), (0x4000_0000, 3, 0, 0, 0),
                          (0xFF_FFFF_F000, 7, 0, 0, 0)]
        regions = [struct.unpack_from("<QQQ", blob, region_off + 24 * i) for i in range(3)]
        assert regions == [(A, 16, data_off), (A + 0x1000, 24, data_off + 16),
                           (A + 0x2000, 8, data_off + 40)]
        assert blob[data_off:data_off + 16] == bytes(range(16))
        assert blob[data_off + 16:data_off + 40] == b"\xaa" * 24
        assert blob[data_off + 40:data_off + 48] == b"\x55" * 8

    def test_a_job_written_to_its_file_is_the_packed_blob(self, tmp_path):
        """run_batch writes the job piece by piece (PackedJob.write, no blob
        in memory); the file holds exactly the blob the test above checks
        field by field (pack_job builds it from the same pieces)."""
        job = prepare_job(LAYOUT, _images(), hang_after=1)
        job.write(tmp_path / "job.bin")
        written = (tmp_path / "job.bin").read_bytes()
        assert len(written) == job.size
        assert written == bytes(pack_job(LAYOUT, _images(), hang_after=1))

    def test_hang_after_defaults_to_off(self):
        """No hang_after means the 0xffffffff sentinel."""
        assert struct.unpack_from("<I", pack_job(LAYOUT, []), 20)[0] == HANG_OFF

    def test_empty_job_is_just_a_header(self):
        """An empty job is a valid 64-byte blob."""
        assert len(pack_job(LAYOUT, [])) == 64

    def test_aarch32_defaults_are_hcr_vm_and_no_sctlr_bit(self):
        """AArch32 stage 2 alone: HCR = VM (bit 0; HCR bit 31 is not RW
        there), HCR2 = 0, no SCTLR bit to set."""
        blob = pack_job(LAYOUT32, [JobImage(0x8000_3558, A, (), ())])
        assert struct.unpack_from("<QQIIQQQQQQQQ", blob, 64)[5:] == (0, 1, 0, 0, 0, 0, 0)

    @pytest.mark.parametrize("layout, kw, match", [
        (LAYOUT, {"hcr": 0x8000_0000}, "lacks VM"),             # stage 2 must stay on
        (LAYOUT, {"hcr": 0x1}, "lacks VM or RW"),               # EL1 must be AArch64
        (LAYOUT32, {"s2pir": 1}, "S2PIR_EL2 exists only for AArch64"),
        (LAYOUT32, {"tcr": 1 << 32}, "TCR .* does not fit 32 bits"),
        (LAYOUT, {"mair": 1 << 64}, "MAIR .* does not fit 64 bits"),
    ])
    def test_bad_regime_values_rejected(self, layout, kw, match):
        with pytest.raises(UsageError, match=match):
            pack_job(layout, [JobImage(0x8000_3558, A, (), (), **kw)])


class TestPackJobValidation:
    def _image(self, *regions: tuple[int, bytes], probes=()) -> JobImage:
        return JobImage(0x8002_3558, A, tuple(regions), tuple(probes))

    @pytest.mark.parametrize("regions", [
        ((A, bytes(16)), (A + 8, bytes(8))),                  # second inside the first
        ((A + 0x100, bytes(0x100)), (A + 0x1F8, bytes(16))),  # tail overlaps head
    ])
    def test_overlapping_regions_rejected(self, regions):
        """Two regions sharing a byte raise UsageError."""
        with pytest.raises(UsageError, match="overlap"):
            pack_job(LAYOUT, [self._image(*regions)])

    def test_overlap_across_images_rejected(self):
        """Regions of different images may not overlap either (they coexist in the arena)."""
        with pytest.raises(UsageError, match="overlap"):
            pack_job(LAYOUT, [self._image((A, bytes(16))), self._image((A, bytes(8)))])

    @pytest.mark.parametrize("layout, kind, ok", [
        (LAYOUT, 16, True), (LAYOUT, 41, True), (LAYOUT, 128, True), (LAYOUT, 129, True),
        (LAYOUT, 4, True), (LAYOUT, 7, True), (LAYOUT32, 7, True),
        (LAYOUT, 8, False), (LAYOUT, 42, False), (LAYOUT, 64, False), (LAYOUT, 130, False),
        (LAYOUT32, 64, True), (LAYOUT32, 83, True), (LAYOUT32, 16, False), (LAYOUT32, 84, False),
    ])
    def test_probe_kinds_of_the_architecture_only(self, layout, kind, ok):
        """AT 0-7 (stage 1+2, then stage 1 alone), the arch's access kinds
        (AArch64 16-41, AArch32 64-83)
        and maintenance 128-129; any other kind is refused before QEMU runs."""
        table = np.zeros(1, dtype=PROBE_DTYPE)
        table["kind"] = kind
        image = JobImage(0x8000_3558, A, (), table)
        if ok:
            pack_job(layout, [image])
        else:
            with pytest.raises(UsageError, match=f"probe kind {kind} "):
                pack_job(layout, [image])

    def test_adjacent_regions_accepted(self):
        """Touching is not overlapping."""
        pack_job(LAYOUT, [self._image((A, bytes(16)), (A + 16, bytes(16)))])

    @pytest.mark.parametrize("pa, size", [
        (A - 8, 16),                                  # starts below the arena
        (LAYOUT.arena_end - 8, 16),                   # runs past its end
        (LAYOUT.results_start, 8),                    # in the results area
    ])
    def test_region_outside_arena_rejected(self, pa, size):
        """A region must lie inside [arena_start, arena_end)."""
        with pytest.raises(UsageError, match="outside the arena"):
            pack_job(LAYOUT, [self._image((pa, bytes(size)))])

    @pytest.mark.parametrize("pa, size", [(A + 4, 8), (A, 12)])
    def test_misaligned_region_rejected(self, pa, size):
        """PA and length must be multiples of 8 (the stub copies 8-byte words)."""
        with pytest.raises(UsageError, match="aligned"):
            pack_job(LAYOUT, [self._image((pa, bytes(size)))])

    def test_too_many_probes_rejected(self):
        """More probes than results records raise UsageError."""
        probes = [JobProbe(0, AtKind.S12E1R)] * (LAYOUT.max_probes + 1)
        with pytest.raises(UsageError, match="results area"):
            pack_job(LAYOUT, [self._image(probes=probes)])

    def test_blob_larger_than_job_area_rejected(self):
        """Region data that cannot fit the job area raises UsageError."""
        with pytest.raises(UsageError, match="job area"):
            pack_job(LAYOUT, [self._image((A, bytes(LAYOUT.job_capacity)))])

    def test_aarch32_ipa_above_4g_rejected(self):
        """With stage 1 off an AArch32 probe cannot name an IPA >= 4 GiB."""
        image = JobImage(0x8000_3558, A, (), (JobProbe(1 << 32, AtKind.S12E1R),))
        with pytest.raises(UsageError, match="4 GiB"):
            pack_job(LAYOUT32, [image])

    def test_aarch32_vtcr_is_32_bits(self):
        """VTCR is a 32-bit register on AArch32."""
        with pytest.raises(UsageError, match="VTCR"):
            pack_job(LAYOUT32, [JobImage(1 << 32, A, (), ())])

    def test_negative_ipa_rejected(self):
        """IPAs are unsigned 64-bit."""
        with pytest.raises(UsageError, match="IPA"):
            pack_job(LAYOUT, [self._image(probes=[JobProbe(-1, AtKind.S12E1R)])])

    def test_other_abi_version_rejected(self):
        """A stub of another ABI version is refused before anything runs."""
        other = JobLayout(Arch.AARCH64, ABI_VERSION + 1, *(getattr(LAYOUT, f) for f in (
            "ram_base", "ram_size", "results_start", "results_end", "job_start", "job_end",
            "arena_start", "arena_end")))
        with pytest.raises(UsageError, match="ABI"):
            pack_job(other, [])

    @pytest.mark.parametrize("hang", [-1, HANG_OFF])
    def test_bad_hang_after_rejected(self, hang):
        """hang_after is an image index; the sentinel itself is not one."""
        with pytest.raises(UsageError, match="hang_after"):
            pack_job(LAYOUT, [], hang_after=hang)


def _results_area(status: int, images_done: int, probes_done: int, records: list[list[int]],
                  idregs=(0x410FD034, 0x1122, 0, 0, 0x222, 4, 0, 0, 0), fatal=(0,) * 6) -> bytes:
    """Build a results area the way the stub writes it (docs/job-abi.md)."""
    head = bytearray(0x100)
    struct.pack_into("<QQQQ", head, 0, (ABI_VERSION << 32) | RESULTS_MAGIC, status,
                     images_done, probes_done)
    struct.pack_into("<6Q", head, 0x20, *fatal)
    struct.pack_into(f"<{len(idregs)}Q", head, 0x80, *idregs)
    body = b"".join(struct.pack("<8Q", *(r + [0] * (8 - len(r)))) for r in records)
    return bytes(head) + body


class TestUnpackResults:
    def test_round_trip_of_a_partial_run(self):
        """Records, counters, ID registers and regions come back as written;
        probes without a record are NOT_RUN."""
        images = _images()
        results = _results_area(1, 1, 2, [
            [1, 0x1_0000_1B00],
            [2, 0, 0x9600_0156, 0x4000_0000, 0x40_0000, 0x200, 0x4020_018C],
            [0],
        ])
        table = bytes(range(16)) + bytes(0x1000 - 16) + b"\xab" * 24 + bytes(0x1000 - 24) + b"\x5a" * 8
        ram = SparseRam(((LAYOUT.results_start, results), (A, table)))
        out = unpack_results(LAYOUT, ram, images)
        assert out.status is GuestStatus.RUNNING
        assert (out.images_done, out.probes_done) == (1, 2)
        assert dict(out.id_registers) == {"MIDR_EL1": 0x410FD034, "ID_AA64MMFR0_EL1": 0x1122,
                                          "ID_AA64MMFR1_EL1": 0, "ID_AA64MMFR2_EL1": 0,
                                          "ID_AA64PFR0_EL1": 0x222, "DCZID_EL0": 4,
                                          "ID_AA64MMFR3_EL1": 0, "ID_AA64PFR1_EL1": 0,
                                          "ID_AA64ISAR1_EL1": 0}
        assert out.fatal is None
        first, second, third = out.images
        assert first.completed and not second.completed and not third.completed
        assert first.observations == (
            RawObservation(ObsKind.PAR, par=0x1_0000_1B00),
            RawObservation(ObsKind.EXCEPTION, esr=0x9600_0156, far=0x4000_0000,
                           hpfar=0x40_0000, vector=0x200, elr=0x4020_018C))
        assert second.observations == ()
        assert third.observations == (NOT_RUN,)
        assert first.regions_after == ((A, bytes(range(16))), (A + 0x1000, b"\xab" * 24))
        assert second.regions_after == ((A + 0x2000, b"\x5a" * 8),)

    def test_whole_ram_as_bytes(self):
        """Plain bytes are taken as RAM starting at ram_base."""
        ram = bytearray(LAYOUT.arena_end - LAYOUT.ram_base)
        area = _results_area(2, 3, 3, [[1, 0xA0B]] * 3)
        off = LAYOUT.results_start - LAYOUT.ram_base
        ram[off:off + len(area)] = area
        out = unpack_results(LAYOUT, bytes(ram), _images())
        assert out.status is GuestStatus.COMPLETED
        assert [o.par for im in out.images for o in im.observations] == [0xA0B] * 3
        assert out.images[0].regions_after[0] == (A, bytes(16))

    def test_untouched_ram_is_not_started(self):
        """A zeroed results area means the stub never ran: everything NOT_RUN."""
        ram = RamBytes(LAYOUT.ram_base, bytes(LAYOUT.arena_end - LAYOUT.ram_base))
        out = unpack_results(LAYOUT, ram, _images())
        assert out.status is GuestStatus.NOT_STARTED
        assert out.images_done == 0
        assert all(o is NOT_RUN for im in out.images for o in im.observations)

    def test_fatal_details(self):
        """A FATAL header carries reason, vector, ESR, ELR, FAR and detail."""
        area = _results_area(3, 0, 0, [], fatal=(1, 0x200, 0x9600_0010, 0x4020_0100, 0x8000_0000, 0))
        out = unpack_results(LAYOUT, SparseRam(((LAYOUT.results_start, area),)), [])
        assert out.status is GuestStatus.FATAL
        assert out.fatal is not None
        assert (out.fatal.reason, out.fatal.vector, out.fatal.esr, out.fatal.elr, out.fatal.far) == \
            (FatalReason.EXCEPTION, 0x200, 0x9600_0010, 0x4020_0100, 0x8000_0000)

    def test_garbage_header_rejected(self):
        """A results area from something else is a UsageError, not silent zeros."""
        area = b"\xff" * 0x100
        with pytest.raises(UsageError, match="magic"):
            unpack_results(LAYOUT, SparseRam(((LAYOUT.results_start, area),)), [])

    def test_unknown_record_kind_rejected(self):
        """Record kinds other than 0, 1, 2 are refused."""
        area = _results_area(2, 1, 1, [[7]])
        image = JobImage(0, A, (), (JobProbe(0, AtKind.S12E1R),))
        with pytest.raises(UsageError, match="kind 7"):
            unpack_results(LAYOUT, SparseRam(((LAYOUT.results_start, area),)), [image])


# Results area (header + 4 records, zlib + base64) recorded from
# qemu-system-aarch64 7.2 (Debian 1:7.2+dfsg-7+deb12u18), -cpu cortex-a53, for
# RECORDED_IMAGES below.  Image 0: VTCR 0x80023558 (4K, T0SZ=24, SL0=1, PS=40
# bits), two concatenated level-1 tables at the arena start; L1[2] a 1 GiB
# block to PA 0x1_0000_0000, L1[3] a table descriptor to PA 0x10_0000_0000
# where virt has no memory.
# Re-recorded for job ABI v3 (same QEMU, Debian build +b3).
RECORDED_RESULTS = ("eNoLNgoKZmZgYGBigAAYzcJAH2Bygd8RRCsJYpdXYqKtexhhDGkkNhn6ubnIs58JjR/GyDANyjyATaEK"
                    "k4IDVvdzk+d+APK9BVw=")
RECORDED_ARENA = 0x4800_0000
RECORDED_LAYOUT = JobLayout(Arch.AARCH64, ABI_VERSION, 0x4000_0000, 0x4000_0000, 0x4040_0000,
                            0x4200_0000, 0x4200_0000, 0x4800_0000, 0x4800_0000, 0x8000_0000)
RECORDED_IMAGES = [
    JobImage(0x8002_3558, RECORDED_ARENA, (), (JobProbe(0x8000_1234, AtKind.S12E1R),
                                              JobProbe(0x4000_0000, AtKind.S12E1W),
                                              JobProbe(0xC000_0000, AtKind.S12E1R))),
    JobImage(0x8002_3558, RECORDED_ARENA, (), (JobProbe(0x8000_0000, AtKind.S12E0W),)),
]


def test_unpack_recorded_run():
    """Decoding a results area recorded from QEMU gives its known values."""
    area = zlib.decompress(base64.b64decode(RECORDED_RESULTS))
    out = unpack_results(RECORDED_LAYOUT, SparseRam(((0x4040_0000, area),)), RECORDED_IMAGES)
    assert out.status is GuestStatus.COMPLETED
    assert (out.images_done, out.probes_done) == (2, 4)
    assert out.id_registers["MIDR_EL1"] == 0x410F_D034           # Cortex-A53 r0p4
    assert out.id_registers["ID_AA64MMFR0_EL1"] == 0x1122         # PARange 40 bits, no 16K
    assert out.images[0].observations == (
        RawObservation(ObsKind.PAR, par=0x1_0000_1B00),
        RawObservation(ObsKind.PAR, par=0xA0B),
        RawObservation(ObsKind.EXCEPTION, esr=0x9600_0156, far=0xC000_0000, vector=0x200,
                       elr=0x4020_0224))
    assert out.images[1].observations == (RawObservation(ObsKind.PAR, par=0x1_0000_0B00),)


def test_stale_batch_directories_are_swept(tmp_path):
    """A batch directory whose harness process is gone (SIGKILLed, it could
    not clean up) is removed when the next batch starts; a live one stays."""
    from harness.qemu.boot import BATCH_DIR_PREFIX, sweep_stale_batch_dirs
    dead = 2 ** 22 + 12345          # above Linux's default pid_max: never a live process
    stale = tmp_path / f"{BATCH_DIR_PREFIX}{dead}-abc"
    live = tmp_path / f"{BATCH_DIR_PREFIX}{os.getpid()}-def"
    other = tmp_path / "unrelated"
    for d in (stale, live, other):
        d.mkdir()
        (d / "ram.bin").write_bytes(b"x")
    sweep_stale_batch_dirs(tmp_path)
    assert not stale.exists()
    assert live.exists() and other.exists()


def test_ram_file_view_is_read_without_the_copy(tmp_path):
    """RamFile.view gives the bytes read() gives (zeros past a short
    file's end included), and a view stays valid after close() and after
    the file is unlinked, as a batch's results records must."""
    from harness.qemu.job import RamFile
    base = 0x4000_0000
    path = tmp_path / "ram.bin"
    data = bytes(range(256)) * 64                  # 16 KiB, distinct bytes
    path.write_bytes(data)
    ram = RamFile(path, base)
    inside = ram.view(base + 1000, 4096)
    assert bytes(inside) == ram.read(base + 1000, 4096) == data[1000:5096]
    # Past the end: read()'s zero padding, not a fault.
    tail = ram.view(base + len(data) - 8, 24)
    assert bytes(tail) == data[-8:] + bytes(16)
    ram.close()
    path.unlink()
    assert bytes(inside) == data[1000:5096]
    assert np.frombuffer(inside, dtype="<u8")[0] == int.from_bytes(data[1000:1008], "little")
