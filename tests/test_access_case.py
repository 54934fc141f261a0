"""Access cases (reference.access_case) and their judgement
(harness.access), without QEMU.

The TLB rules come from the Arm ARM (D8.16, TLB maintenance): after a
descriptor change, until the maintenance that covers it, an entry the TLB
may hold from the old descriptor is still permitted -- but a descriptor
that gave a Translation, Address size or Access flag fault is never held
in a TLB, so there is no old entry to use.  With stage 1 off, the entries
to remove are the combined stage 1+2 ones: TLBI IPAS2E1IS alone is not
enough, with TLBI VMALLE1IS it is, as is TLBI VMALLS12E1IS.
"""
from __future__ import annotations

import dataclasses
import struct
from types import MappingProxyType

import numpy as np
import pytest

from harness.judge.access import judge_access_case, probe_array
from harness.qemu.job import KIND_DESC_WRITE, KIND_SET_VTTBR, ObsKind
from reference.access import AccessKind, Taken, pattern_bytes
from reference.access_case import (
    AccessCase,
    AccessStep,
    DescWriteStep,
    El1Window,
    MaintExpectation,
    SetVttbrStep,
    Tlbi,
    generate_access_case,
)
from reference.arch import Arch, Granule
from reference.config import aarch32_config, aarch64_config
from reference.cpus import get_cpu
from reference.generate import MemoryMap
from reference.image import ImageBuilder, LeafAttrs, encode_leaf, layout_for
from reference.memory import Region
from reference.syndrome import Slot

K = AccessKind
A64 = Arch.AARCH64
MMAP = MemoryMap(ram=((0x4000_0000, 0x4000_0000),), empty=(0xC000_0000, 0x0B00_0000))
EL1 = El1Window(0x4021_0000, 0x1000, MappingProxyType(
    {k: (0x800 + 8 * k.code,) if k.spec.op.name != "EXCLUSIVE" else (0x800 + 8 * k.code, 0x804 + 8 * k.code)
     for k in AccessKind}))
IPA = 0x8000_0000
PAGE_A, PAGE_B = 0x4900_0000, 0x4900_1000


def tlb_case(steps, *, two_images=False) -> AccessCase:
    """cortex-a57, 4K, 40-bit IPA from level 1; IPA 0x8000_0000 a RW page
    to PAGE_A; the EL1 window mapped at its PA.  With ``two_images`` a
    second image (VMID 9) maps the IPA to PAGE_B."""
    cpu = get_cpu(A64, "cortex-a57")
    config = aarch64_config(Granule.G4K, 40, 1, ps_bits=40)
    layout = layout_for(cpu, config, 1)
    b = ImageBuilder(layout, 0x4800_0000, 0x10_0000, vmid=5)
    b.map(EL1.pa, EL1.pa, 3, LeafAttrs())
    b.map(IPA, PAGE_A, 3, LeafAttrs())
    image = b.build()
    other = None
    if two_images:
        b2 = ImageBuilder(layout, 0x4810_0000, 0x10_0000, vmid=9)
        b2.map(EL1.pa, EL1.pa, 3, LeafAttrs())
        b2.map(IPA, PAGE_B, 3, LeafAttrs())
        other = b2.build()
    data = (Region(PAGE_A, pattern_bytes(PAGE_A, 0x100)), Region(PAGE_B, pattern_bytes(PAGE_B, 0x100)))
    return AccessCase("t", 0, cpu, config.with_vttbr(image.vttbr), image, other, data, EL1,
                      EL1.pa, MMAP, tuple(steps(image, other, layout)))


def leaf_pa(case: AccessCase) -> int:
    """PA of the level-3 descriptor of IPA 0x8000_0000 (the only entry of
    the second level-3 table: its index is 0)."""
    l3 = [pa for level, pa in case.image.tables if level == 3]
    return max(l3)


def takens(exps) -> list[str]:
    return sorted(e.taken.name + ("" if e.taken is not Taken.COMPLETED
                                  else f"@{e.outcome.pa:#x}") for e in exps)


class TestTlbi:
    @pytest.mark.parametrize("flags, complete", [
        (Tlbi.NONE, False), (Tlbi.IPAS2, False), (Tlbi.VMALLE1, False),
        (Tlbi.IPAS2 | Tlbi.VMALLE1, True), (Tlbi.VMALLS12, True)])
    def test_complete(self, flags, complete):
        assert flags.complete is complete


class TestTlbModel:
    def test_change_without_maintenance_permits_old_and_new(self):
        """RW -> read-only without TLBI: a store may still complete through
        the old entry, or take the new Permission fault."""
        def steps(image, other, layout):
            pa = max(p for lvl, p in image.tables if lvl == 3)
            ro = encode_leaf(layout, 3, PAGE_A, LeafAttrs(s2ap=0b01))
            return [AccessStep(K.A64_LDR_X, IPA, "load"),
                    DescWriteStep(pa, ro, IPA, Tlbi.NONE, "read-only, no TLBI"),
                    AccessStep(K.A64_STR_X, IPA + 8, "store", chunk=PAGE_A),
                    DescWriteStep(pa, ro, IPA, Tlbi.IPAS2 | Tlbi.VMALLE1, "full TLBI"),
                    AccessStep(K.A64_STR_X, IPA + 16, "store", chunk=PAGE_A)]
        case = tlb_case(steps)
        exps = case.expectations()
        assert takens(exps[0]) == [f"COMPLETED@{PAGE_A:#x}"]
        assert isinstance(exps[1], MaintExpectation)
        assert takens(exps[2]) == [f"COMPLETED@{PAGE_A + 8:#x}", "EL2"]
        assert takens(exps[4]) == ["EL2"]          # only the new entry after full maintenance

    def test_invalid_entries_are_never_cached(self):
        """invalid -> valid without TLBI: the Translation fault was never
        cached, so only the new translation is permitted; valid -> invalid
        without TLBI permits the old translation and the fault."""
        def steps(image, other, layout):
            pa = max(p for lvl, p in image.tables if lvl == 3)
            rw = encode_leaf(layout, 3, PAGE_A, LeafAttrs())
            return [DescWriteStep(pa, 0, IPA, Tlbi.VMALLS12, "invalid, TLBI"),
                    AccessStep(K.A64_LDR_W, IPA, "load: fault"),
                    DescWriteStep(pa, rw, IPA, Tlbi.NONE, "valid again, no TLBI"),
                    AccessStep(K.A64_LDR_W, IPA, "load: new only"),
                    DescWriteStep(pa, 0, IPA, Tlbi.NONE, "invalid, no TLBI"),
                    AccessStep(K.A64_LDR_W, IPA, "load: old or fault")]
        exps = tlb_case(steps).expectations()
        assert takens(exps[1]) == ["EL2"]
        assert takens(exps[3]) == [f"COMPLETED@{PAGE_A:#x}"]
        assert takens(exps[5]) == [f"COMPLETED@{PAGE_A:#x}", "EL2"]

    def test_incomplete_maintenance_keeps_the_old_entry(self):
        """TLBI IPAS2E1IS alone leaves the combined stage 1+2 entry."""
        def steps(image, other, layout):
            pa = max(p for lvl, p in image.tables if lvl == 3)
            return [DescWriteStep(pa, 0, IPA, Tlbi.IPAS2, "invalid, IPAS2 only"),
                    AccessStep(K.A64_LDR_W, IPA, "load")]
        exps = tlb_case(steps).expectations()
        assert takens(exps[1]) == [f"COMPLETED@{PAGE_A:#x}", "EL2"]

    def test_vmid_switch_sees_the_other_tables(self):
        """After a VTTBR switch (no TLBI) the IPA translates through the
        other image's tables only: entries are tagged with the VMID."""
        def steps(image, other, layout):
            return [AccessStep(K.A64_LDR_X, IPA, "A"),
                    SetVttbrStep(other.vttbr, True, "to B"),
                    AccessStep(K.A64_LDR_X, IPA, "B"),
                    SetVttbrStep(image.vttbr, False, "to A"),
                    AccessStep(K.A64_LDR_X, IPA, "A again")]
        case = tlb_case(steps, two_images=True)
        exps = case.expectations()
        assert takens(exps[0]) == takens(exps[4]) == [f"COMPLETED@{PAGE_A:#x}"]
        assert takens(exps[2]) == [f"COMPLETED@{PAGE_B:#x}"]
        assert exps[1] == MaintExpectation(frozenset({case.image.vttbr}))
        # the loaded value is PAGE_B's first pattern word
        assert exps[2][0].pattern(Slot.DATA0)[0] == struct.unpack("<Q", pattern_bytes(PAGE_B, 8))[0]


class TestProbeRecords:
    def test_steps_pack_as_documented(self):
        """docs/job-abi.md: access (ipa, kind, flags bit 0 = HCR_EL2.DC,
        data, data2); descriptor write (PA, 128, TLBI flags, value, IPA);
        VTTBR switch (0, 129, TLBI flag, VTTBR, 0)."""
        def steps(image, other, layout):
            return [AccessStep(K.A64_DC_ZVA, IPA + 3, "zva", hcr_dc=True, data=(1, 2)),
                    DescWriteStep(0x4800_1000, 0x1234, IPA, Tlbi.IPAS2 | Tlbi.VMALLE1, "w"),
                    SetVttbrStep(0x9_0000_4800_0000, True, "s")]
        table = probe_array(tlb_case(steps))
        assert table.tolist() == [(IPA + 3, 40, 1, 1, 2),
                                  (0x4800_1000, KIND_DESC_WRITE, 3, 0x1234, IPA),
                                  (0, KIND_SET_VTTBR, 1, 0x9_0000_4800_0000, 0)]


def _case(arch=A64, cpu="cortex-a57", seed=3):
    config = (aarch64_config(Granule.G4K, 40, 1, ps_bits=40) if arch is A64
              else aarch32_config(40, 1))
    return generate_access_case(get_cpu(arch, cpu), config, seed, "k", (0x4800_0000, 0x40_0000),
                                (0x5000_0000, 0x100_0000), MMAP, EL1)


class TestGenerator:
    def test_deterministic(self):
        assert _case() == _case()
        assert _case(seed=4) != _case()

    def test_every_completion_stays_in_its_chunk(self):
        """No probe may read or write memory it does not own: every
        completed outcome's PA lies in the probe's chunk."""
        case = _case()
        for step, exps in zip(case.steps, case.expectations()):
            if isinstance(step, AccessStep):
                for e in exps:
                    if e.taken is Taken.COMPLETED:
                        assert step.chunk <= e.outcome.pa < step.chunk + 64, step.aim

    def test_covers_kinds_outcomes_and_tlb_steps(self):
        case = _case()
        steps = [s for s in case.steps if isinstance(s, AccessStep)]
        takes = {e.taken for exps in case.expectations() if not isinstance(exps, MaintExpectation)
                 for e in exps}
        assert takes == {Taken.COMPLETED, Taken.EL2, Taken.EL1}
        assert len({s.kind for s in steps}) >= 15
        assert sum(isinstance(s, DescWriteStep) for s in case.steps) >= 5
        assert sum(isinstance(s, SetVttbrStep) for s in case.steps) == 4

    def test_aarch32_v7_has_no_ipa_tlbi(self):
        """TLBIIPAS2IS is ARMv8 AArch32: cortex-a15 cases never use it."""
        case = _case(Arch.AARCH32, "cortex-a15")
        flags = {s.tlbi for s in case.steps if isinstance(s, DescWriteStep)}
        assert flags and all(not (f & Tlbi.IPAS2) for f in flags)
        assert all(s.kind.spec.min_version == 7 for s in case.steps if isinstance(s, AccessStep))


def _records_from_reference(case: AccessCase) -> np.ndarray:
    """Result records an emulator that follows the reference's first
    permitted outcome of each step would write."""
    rows = []
    for exps in case.expectations():
        row = [0] * 8
        if isinstance(exps, MaintExpectation):
            row[0], row[1] = ObsKind.MAINT_DONE.value, min(exps.old)
        else:
            e = exps[0]
            row[0] = {Taken.EL2: ObsKind.EXCEPTION, Taken.COMPLETED: ObsKind.ACCESS_DONE,
                      Taken.EL1: ObsKind.EL1_EXCEPTION}[e.taken].value
            for slot, word in ((Slot.DATA0, 1), (Slot.ESR, 2), (Slot.FAR, 3), (Slot.HPFAR, 4),
                               (Slot.VECTOR, 5), (Slot.ELR, 6), (Slot.DATA1, 7)):
                row[word] = e.pattern(slot)[0]
        rows.append(row)
    return np.array(rows, dtype=np.uint64)


def _memory_after(case: AccessCase) -> tuple[tuple[int, bytes], ...]:
    """Regions after a run that followed the first outcomes."""
    exps = case.expectations()
    data = {r.pa: bytearray(r.data) for r in case.data}
    for step, e in zip(case.steps, exps):
        if isinstance(step, AccessStep):
            for pa, chunk in e[0].outcome.stores:
                base = step.chunk
                data[base][pa - base:pa - base + len(chunk)] = chunk
    tables = {r.pa: bytearray(r.data) for r in case.image.regions + (case.other.regions if case.other else ())}
    for step, e in zip(case.steps, exps):
        writes = [(step.pa, step.value)] if isinstance(step, DescWriteStep) else \
            [(w.pa, w.new) for w in e[0].outcome.writes] if isinstance(step, AccessStep) else []
        for pa, value in writes:
            for base, buf in tables.items():
                if base <= pa < base + len(buf):
                    struct.pack_into("<Q", buf, pa - base, value)
    return tuple((pa, bytes(b)) for pa, b in list(tables.items()) + list(data.items()))


class TestJudge:
    def test_reference_run_passes(self):
        case = _case()
        j = judge_access_case(case, _records_from_reference(case), _memory_after(case))
        assert j.ok, j.describe()

    def test_planted_wrong_syndrome_is_caught(self):
        """One ESR bit flipped in one stage-2 abort (WnR, bit 6) is a
        divergence reported against that field; nothing else is."""
        case = _case()
        records = _records_from_reference(case)
        exps = case.expectations()
        i = next(i for i, e in enumerate(exps) if not isinstance(e, MaintExpectation)
                 and len(e) == 1 and e[0].taken is Taken.EL2)
        records[i, 2] ^= np.uint64(1 << 6)
        j = judge_access_case(case, records, _memory_after(case))
        (v,) = j.divergences
        assert v.index == i and [f.name for f, _ in v.mismatches] == ["WnR"]
        assert not j.memory

    def test_store_to_the_wrong_place_is_caught(self):
        """A store the record says completed but whose bytes are not in its
        chunk: the chunk is reported, with the step that owns it."""
        case = _case()
        exps = case.expectations()
        i, step = next((i, s) for i, s in enumerate(case.steps) if isinstance(s, AccessStep)
                       and len(exps[i]) == 1 and exps[i][0].outcome.stores)
        after = dict(_memory_after(case))
        after[step.chunk] = pattern_bytes(step.chunk, len(after[step.chunk]))     # store lost
        j = judge_access_case(case, _records_from_reference(case), tuple(after.items()))
        assert [(m.what, m.pa, m.owners) for m in j.memory] == [("data chunk", step.chunk, (i,))]

    def test_wrong_maintenance_record(self):
        case = tlb_case(lambda image, other, layout: [
            DescWriteStep(max(p for lvl, p in image.tables if lvl == 3), 0, IPA, Tlbi.NONE, "w")])
        good = np.array([[ObsKind.MAINT_DONE.value, case.memory().read64(leaf_pa(case))] + [0] * 6],
                        dtype=np.uint64)
        assert judge_access_case(case, good, ()).ok
        bad = good.copy()
        bad[0, 1] ^= np.uint64(1)
        assert not judge_access_case(case, bad, ()).ok


def test_access_case_is_a_value():
    case = _case()
    assert dataclasses.replace(case) == case
