"""Access probes in real QEMU: generated access cases (reference.access_case)
run by the stubs' EL1/PL1 routines, every observation judged against the
reference's permitted set (harness.access).

The QEMU binaries are the ones run_batch finds ($S2DIFF_QEMU_AARCH64 /
$S2DIFF_QEMU_ARM, else PATH): run this file once per QEMU build to measure
each.  Every step must match, except the QEMU divergences below -- each
identified with the pseudocode line that decides it, each recognised by a
narrow predicate, never by loosening the reference:

DC_ZVA_DEVICE  DC ZVA to Device memory completes (zeroes the block) or takes
    a stage-2 Permission fault, where the architecture gives an Alignment
    fault first.  Stage 1 off with HCR_EL2.DC = 0 is Device-nGnRnE
    (AArch64.S1DisabledOutput) and AArch64.S1HasAlignmentFault returns
    ``memattrs.memtype == MemType_Device`` for AccessType_DCZero (a
    stage-1 fault, taken to EL1); with HCR_EL2.DC = 1 and a stage-2 Device
    leaf, AArch64.S2Translate checks AArch64.S2HasAlignmentFault (the same
    DCZero rule) before AArch64.S2CheckPermissions.  Arm ARM C5.3 DC ZVA:
    "If the memory region being zeroed is any type of Device memory, this
    instruction generates an Alignment fault".  QEMU's DC ZVA never checks
    the memory type.  Seen on 7.2.22 and 11.1.3.
ISV_ON_EXTERNAL_ABORT  A synchronous External abort on the stage-2 walk of
    a single-register load/store is reported with ISV = 1 and the
    instruction syndrome on CPUs with FEAT_RAS (max, cortex-a76,
    neoverse-n1; AArch32 max).  AArch64.FaultSyndrome / AArch32.
    FaultSyndrome give the syndrome only when ``!IsExternalSyncAbort(fault)
    || (!HaveRASExt() && ... IMPLEMENTATION DEFINED)``; ESR_EL2.ISV: "When
    FEAT_RAS is implemented, ISV is 0 for any synchronous External abort."
    QEMU's merge of the template syndrome ignores the External abort.
AARCH32_XNX_FETCH  On AArch32 with FEAT_XNX (qemu-system-arm -cpu max) an
    instruction fetch from a stage-2 page without read permission executes.
    AArch32.S2HasPermissionsFault with HaveExtendedExecuteNeverExt():
    ``0b00 => (px, ux) = (r, r)`` (and ``0b11 => (px, ux) = (r, 0b0)``):
    execution needs S2AP[0].  QEMU's get_S2prot drops the read requirement
    when FEAT_XNX is implemented.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.judge.access import el1_window, job_image, judge_access_case, record_words
from harness.qemu.boot import BatchStatus, run_batch
from harness.qemu.build import build_stub
from harness.qemu.elf import read_stub
from reference.access import AbortStatus, AccessKind, AccessOp, Taken
from reference.access_case import AccessStep, generate_access_case
from reference.arch import Arch, Granule
from reference.config import aarch32_config, aarch64_config
from reference.cpus import get_cpu
from reference.generate import MemoryMap
from reference.syndrome import Slot, feat_ras

# virt: 1 GiB of RAM at 0x4000_0000; nothing at 0xC000_0000 or 0x0B00_0000
# (harness.run.VIRT_EMPTY: reads there abort on both emulators).
MMAP = MemoryMap(ram=((0x4000_0000, 0x4000_0000),), empty=(0xC000_0000, 0x0B00_0000))

CONFIGS = {
    (Arch.AARCH64, "cortex-a57"): [
        aarch64_config(Granule.G4K, 40, 1, ps_bits=40),
        aarch64_config(Granule.G64K, 42, 2, ps_bits=42),
        aarch64_config(Granule.G4K, 32, 2, ps_bits=40),
        aarch64_config(Granule.G4K, 25, 2, ps_bits=40),
    ],
    (Arch.AARCH64, "max"): [
        aarch64_config(Granule.G4K, 48, 0, ps_bits=48),
        aarch64_config(Granule.G16K, 47, 1, ps_bits=48, ha=1, hd=1),
        aarch64_config(Granule.G4K, 52, 0, ps_bits=52, ds=1, ha=1),
        aarch64_config(Granule.G64K, 52, 1, ps_bits=52),
    ],
    (Arch.AARCH32, "cortex-a15"): [
        aarch32_config(40, 1), aarch32_config(32, 1), aarch32_config(30, 2), aarch32_config(26, 2),
    ],
    (Arch.AARCH32, "max"): [aarch32_config(40, 1), aarch32_config(32, 1), aarch32_config(30, 2)],
}


def run_cases(arch: Arch, cpu_name: str, seed: int):
    """Generate the CONFIGS cases of one CPU, run them in one boot, judge."""
    cpu = get_cpu(arch, cpu_name)
    window = el1_window(read_stub(build_stub(arch)))
    cases = [generate_access_case(cpu, config, seed, f"{cpu_name}-{i}",
                                  (0x4800_0000 + i * 0x40_0000, 0x40_0000),
                                  (0x5000_0000 + i * 0x100_0000, 0x100_0000), MMAP, window)
             for i, config in enumerate(CONFIGS[(arch, cpu_name)])]
    result = run_batch(arch, cpu_name, [job_image(c) for c in cases])
    assert result.status is BatchStatus.COMPLETED, result.diagnostic
    judged = [judge_access_case(c, im.records, im.regions_after) for c, im in zip(cases, result.images)]
    return cpu, cases, result, judged


@pytest.mark.qemu
@pytest.mark.parametrize("arch", [Arch.AARCH64, Arch.AARCH32])
def test_el1_window_agrees_with_the_reference(arch):
    """The stub's EL1 window is 64 KiB aligned and at most 64 KiB; it has a
    routine for every access kind of the reference, with the same code,
    its access instruction(s) inside the window; a stub whose kind codes
    differ is refused."""
    from types import MappingProxyType

    from harness.errors import BuildError
    stub = read_stub(build_stub(arch))
    w = el1_window(stub)
    assert w.pa % 0x10000 == 0 and 0 < w.size <= 0x10000
    assert set(w.insns) == {k for k in AccessKind if k.arch is arch}
    assert all(0 < off < w.size and off % 4 == 0 for offs in w.insns.values() for off in offs)
    assert [len(w.insns[k]) for k in w.insns if k.spec.op is AccessOp.EXCLUSIVE] == [2]
    name = next(n for n in stub.symbols if n.startswith("__s2_kind_"))
    tampered = dict(stub.symbols)
    tampered[name] += 1
    with pytest.raises(BuildError, match="access kinds"):
        el1_window(dataclasses.replace(stub, symbols=MappingProxyType(tampered)))


# --- the known QEMU divergences (module docstring) -------------------------------

def dc_zva_device(cpu, step, verdict) -> bool:
    """Every permitted outcome is an Alignment fault of DC ZVA; QEMU
    completed it or took a stage-2 fault instead."""
    exps = verdict.closest and [verdict.closest]
    return (step.kind is AccessKind.A64_DC_ZVA and bool(exps)
            and all(e.taken is not Taken.COMPLETED and e.outcome.abort.status is AbortStatus.ALIGNMENT
                    for e in exps))


def isv_on_external_abort(cpu, step, verdict) -> bool:
    """The permitted outcome is an External abort on the stage-2 walk on a
    FEAT_RAS CPU, and the record differs from it only in ISS[24:14] with
    ISV = 1: the instruction syndrome given where it must not be."""
    e = verdict.closest
    if e is None or not feat_ras(cpu) or e.taken is not Taken.EL2:
        return False
    if e.outcome.abort.status is not AbortStatus.SEA_ON_WALK:
        return False
    esr = verdict.record[2]
    return (esr >> 24) & 1 == 1 and all(14 <= f.lo and f.hi <= 24 for f, _ in verdict.mismatches)


def aarch32_xnx_fetch(cpu, step, verdict) -> bool:
    """AArch32 with FEAT_XNX: a fetch the reference faults for lack of read
    permission ran the HVC #2 at its target."""
    e = verdict.closest
    taken, words = record_words(verdict.record)
    return (cpu.arch is Arch.AARCH32 and cpu.feat_xnx and step.kind.spec.op is AccessOp.IFETCH
            and e is not None and e.taken is Taken.EL2
            and e.outcome.abort.status is AbortStatus.PERMISSION
            and taken is Taken.COMPLETED and words[Slot.ESR] & 0xFFFF == 2
            and words[Slot.ELR] == step.ipa + 4)


KNOWN = {"DC_ZVA_DEVICE": dc_zva_device, "ISV_ON_EXTERNAL_ABORT": isv_on_external_abort,
         "AARCH32_XNX_FETCH": aarch32_xnx_fetch}


def classify(cpu, case, verdict) -> str | None:
    names = [n for n, pred in KNOWN.items() if isinstance(verdict.step, AccessStep)
             and pred(cpu, verdict.step, verdict)]
    assert len(names) <= 1, names
    return names[0] if names else None


@pytest.mark.qemu
@pytest.mark.parametrize("arch, cpu_name", list(CONFIGS))
def test_access_probes_match_the_reference(arch, cpu_name):
    """Every access, maintenance and VTTBR-switch step of the generated
    cases matches the reference, or is one of the known QEMU divergences;
    every data chunk and descriptor ends as the matched outcomes say (a
    chunk a known divergence changed excepted)."""
    cpu, cases, result, judged = run_cases(arch, cpu_name, seed=11)
    steps = sum(len(j.steps) for j in judged)
    assert steps >= 150 * len(cases) // 3, "the generator made too few steps"
    unexplained, families = [], {}
    for case, j in zip(cases, judged):
        known = set()
        for v in j.divergences:
            name = classify(cpu, case, v)
            if name is None:
                unexplained.append(f"{case.config.describe()}\n{v.describe()}")
            else:
                families.setdefault(name, []).append(v.index)
                known.add(v.index)
        for m in j.memory:
            if not m.owners or not set(m.owners) <= known:
                unexplained.append(f"{case.config.describe()}\n{m.describe()}")
    assert not unexplained, f"{result.qemu_version}:\n" + "\n".join(unexplained)
    print(f"\n{result.qemu_version} {arch.value} {cpu_name}: {steps} steps, known divergences "
          + ", ".join(f"{n} x{len(ix)}" for n, ix in sorted(families.items())))


@pytest.mark.qemu
def test_planted_wrong_syndrome_in_a_real_record_is_caught():
    """A stage-2 abort QEMU really reported, with one bit of ESR_EL2.SRT
    flipped, is a divergence reported against SRT -- and no known family
    accepts it."""
    cpu, cases, result, judged = run_cases(Arch.AARCH64, "cortex-a57", seed=11)
    for case, image, j in zip(cases, result.images, judged):
        for v in j.steps:
            e = v.matched[0] if v.matched else None
            if e is not None and e.taken is Taken.EL2 and any(f.name == "SRT" for f in e.fields):
                records = image.records.copy()
                records[v.index, 2] ^= np.uint64(1 << 16)
                again = judge_access_case(case, records, image.regions_after)
                before = {d.index for d in j.divergences}       # the known ones of the run
                (bad,) = [d for d in again.divergences if d.index not in before]
                assert bad.index == v.index
                assert [f.name for f, _ in bad.mismatches] == ["SRT"]
                assert classify(cpu, case, bad) is None
                return
    pytest.fail("no stage-2 abort with an instruction syndrome in the run")
