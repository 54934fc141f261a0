"""The stage-1-on case generator (reference.generate_s1): deterministic,
self-consistent images, and scenarios that reach what they aim at.

The aims are checked against outcome kinds worked out from the pseudocode
(see each expectation); the outcomes themselves come from the reference.
"""
from __future__ import annotations

import pytest

from reference.arch import Arch, Granule
from reference.catalogue import catalogue
from reference.cpus import cpu_names, get_cpu
from reference.generate import MemoryMap
from reference.generate_s1 import S1Case, generate_s1_case, s1_window_bytes, stage1_shapes
from reference.outcome import Fault, FaultKind, NestedTranslation
from reference.s1image import TablePlacement

RAM = ((0x4000_0000, 0x4000_0000),)
MMAP = MemoryMap(ram=RAM, empty=(0xC000_0000, 0x0B00_0000))
ARENA = 0x4800_0000

CASES = [(arch, name) for arch in Arch for name in cpu_names(arch)]


def cases_for(arch: Arch, name: str, n: int = 6, seed: int = 7) -> list[S1Case]:
    """``n`` cases spread over the CPU's catalogue and stage-1 shapes."""
    cpu = get_cpu(arch, name)
    entries = catalogue(cpu)
    shapes = stage1_shapes(cpu)
    out = []
    for i in range(n):
        entry = entries[(i * 7919) % len(entries)]
        shape = shapes[i % len(shapes)]
        out.append(generate_s1_case(cpu, entry.config, shape, seed, f"{name}#{i}",
                                    (ARENA, s1_window_bytes(entry.config, shape)), MMAP))
    return out


def test_same_seed_same_case():
    a = cases_for(Arch.AARCH64, "max", 2)
    b = cases_for(Arch.AARCH64, "max", 2)
    assert a == b
    assert a != cases_for(Arch.AARCH64, "max", 2, seed=8)


def test_shapes():
    # cortex-a53 has no 16K granule at stage 1 (ID_AA64MMFR0_EL1.TGran16 = 0).
    a53 = {s.granule for s in stage1_shapes(get_cpu(Arch.AARCH64, "cortex-a53"))}
    assert a53 == {Granule.G4K, Granule.G64K}
    arm = stage1_shapes(get_cpu(Arch.AARCH32, "cortex-a15"))
    assert {(s.granule, s.va_bits) for s in arm} == {(Granule.G4K, 32), (Granule.G4K, 30)}


@pytest.mark.parametrize("arch, name", CASES)
def test_images_are_consistent(arch, name):
    for case in cases_for(arch, name, 3):
        base, size = ARENA, s1_window_bytes(case.config, case.stage1.shape)
        half = size // 2
        case.memory()                     # raises if any two regions overlap
        for r in case.image.regions:      # stage-2 tables: first half of the window
            assert base <= r.pa and r.end <= base + half
        for r in case.stage1.regions:     # stage-1 tables: second half
            assert base + half <= r.pa and r.end <= base + size
        for t in case.stage1.tables:      # a table has bytes iff stage 2 maps it to RAM
            assert (t.pa is not None) == t.placement.readable
        assert case.probes
        for result in case.permitted():
            assert result.outcomes


def _expected(placement: TablePlacement, case: S1Case, results: set) -> bool:
    """Whether the permitted results show the placement's effect, from the
    pseudocode: the fetch through stage 2 (AArch64.S2Translate with
    AccessType_TTW) of a table whose page is ..."""
    ptw = {(r.kind, r.s1ptw, r.stage2) for r in results if isinstance(r, Fault)}
    if placement is TablePlacement.UNMAPPED:          # ... invalid at stage 2
        return (FaultKind.TRANSLATION, True, True) in ptw
    if placement is TablePlacement.NO_ACCESS:         # ... S2AP 00: no read
        return (FaultKind.PERMISSION, True, True) in ptw
    if placement is TablePlacement.BEYOND_PS:         # ... output beyond PS
        return (FaultKind.ADDRESS_SIZE, True, True) in ptw
    if placement is TablePlacement.NO_MEMORY:         # ... on a PA with no memory
        return (FaultKind.SEA_ON_WALK, False, False) in ptw
    if placement is TablePlacement.AF_CLEAR:          # ... AF 0 (HA 0 in the catalogue)
        return (FaultKind.ACCESS_FLAG, True, True) in ptw or case.config.ha
    if placement is TablePlacement.DEVICE:            # ... Device: a fault only with HCR.PTW
        return ((FaultKind.PERMISSION, True, True) in ptw) == bool(case.stage1.hcr.ptw) or not ptw
    # READ_ONLY: readable; the leaf has AF 0: without TCR_EL1.HA a stage-1
    # Access flag fault; with HA the AT may leave the AF (a translation or a
    # later fault) or set it, a write that stage 2 denies on the walk.
    ha = getattr(case.stage1.config, "ha", 0) and case.cpu.hafdbs >= 1
    if ha:
        return (FaultKind.PERMISSION, True, True) in ptw and len(results) >= 2
    return (FaultKind.ACCESS_FLAG, False, False) in ptw


@pytest.mark.parametrize("arch, name", CASES)
def test_table_placements_reach_their_aim(arch, name):
    seen = set()
    for case in cases_for(arch, name, 10):
        if case.stage1.hcr.dc or any("(root table page" in p.aim for p in case.probes):
            continue
        for probe, res in zip(case.probes, case.permitted()):
            for placement in TablePlacement:
                if f"table page {placement.value} at stage 2" in probe.aim:
                    results = {o.result for o in res.outcomes}
                    assert _expected(placement, case, results), (probe, results)
                    seen.add(placement)
    assert len(seen) >= 5, seen


@pytest.mark.parametrize("arch, name", CASES)
def test_table_descriptor_beyond_the_ipa_size(arch, name):
    # AArch64.IPAIsOutOfRange: Translation fault at level 0 on the walk;
    # AArch32.IPAIsOutOfRange: level 1.
    level = 0 if arch is Arch.AARCH64 else 1
    n = 0
    for case in cases_for(arch, name, 10):
        if case.stage1.hcr.dc or any("(root table page" in p.aim for p in case.probes):
            continue
        for probe, res in zip(case.probes, case.permitted()):
            if "table descriptor to an IPA beyond the stage-2 input size" in probe.aim:
                assert {o.result for o in res.outcomes} <= {
                    Fault(FaultKind.TRANSLATION, level, s1ptw=True, ipa=f.ipa)
                    for f in (o.result for o in res.outcomes) if isinstance(f, Fault)}
                assert all(isinstance(o.result, Fault) and o.result.s1ptw for o in res.outcomes)
                n += 1
    assert n >= 1


def test_aarch32_reaches_above_4gib():
    # LPAE stage 1 on a 40-bit stage 2: some VA below 4 GiB translates to an
    # IPA at or above 4 GiB, and with tables_high the stage-1 tables sit
    # there too.
    cpu = get_cpu(Arch.AARCH32, "cortex-a15")
    entry = next(e for e in catalogue(cpu) if e.config.ia_bits == 40)
    high = [s for s in stage1_shapes(cpu) if s.tables_high and s.va_bits == 32][0]
    above = 0
    for i in range(4):
        case = generate_s1_case(cpu, entry.config, high, 3, f"hi#{i}",
                                (ARENA, s1_window_bytes(entry.config, high)), MMAP)
        assert all(t.ipa >= 1 << 32 for t in case.stage1.tables)
        for probe, res in zip(case.probes, case.permitted()):
            assert probe.va < 1 << 32
            above += sum(isinstance(o.result, NestedTranslation) and o.result.ipa >= 1 << 32
                         for o in res.outcomes)
    assert above >= 10


def test_every_stage1_fault_kind_is_generated():
    # Over a few cases of cortex-a57 and max, the generator reaches
    # stage-1 faults of every kind, S1PTW faults of every kind and
    # successful translations.  (A stage-2 output beyond PS needs a PS below
    # what descriptors hold: cortex-a57's 44 bits, not max's 48/52.)
    kinds = set()
    for case in cases_for(Arch.AARCH64, "max", 8) + cases_for(Arch.AARCH64, "cortex-a57", 8):
        for res in case.permitted():
            for o in res.outcomes:
                r = o.result
                kinds.add("ok" if isinstance(r, NestedTranslation) else (r.kind, r.stage2, r.s1ptw))
    s1 = {(k, False, False) for k in FaultKind}
    ptw = {(k, True, True) for k in FaultKind}
    assert "ok" in kinds
    assert s1 <= kinds, s1 - kinds
    assert ptw <= kinds, ptw - kinds
