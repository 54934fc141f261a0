"""FEAT_S2PIE in real QEMU: the s2pie matrix group on a QEMU whose max has
it (Debian's 11.1.3: ID_AA64MMFR3_EL1.S2PIE = 1, from QEMU 10.2 on), run
with $S2DIFF_QEMU_AARCH64 pointing at such a build; skipped, with the
reason, on a QEMU without it.

Every probe matches the reference except one QEMU family, recognised by a
narrow predicate (never by loosening the reference):

AT_WRITE_CLEAN  AT S12E1W / S12E0W through a descriptor whose S2PIR_EL2
    permission grants write but whose Dirty bit (7) is 0 succeeds when
    VTCR_EL2.{HA, HD} != {1, 1}.  AArch64.S2CheckPermissions (Sail
    v8_base.sail l.26368): ``else if ((accdesc.write & not_bool((walkparams.ha
    @ walkparams.hd) == 0b11)) & walkparams.s2pie == 0b1) &
    permissions.s2dirty == 0b0 then { fault.statuscode = Fault_Permission;
    fault.dirtybit = true`` -- and an AT S1xW / S12xW has accdesc.write
    (CreateAccDescAT, l.12165).  QEMU's dirty check (target/arm/ptw.c,
    cfd363ca4c) tests ``access_type == MMU_DATA_STORE``, but AT passes
    MMU_DATA_LOAD with in_prot_check = PAGE_WRITE (get_phys_addr_for_at,
    8818b2d913): the check never runs for AT.  Both commits are in 10.2.0.
"""
from __future__ import annotations

import pytest

from harness.judge.case import judge_case
from harness.matrix import build_matrix
from harness.plan import VIRT_EMPTY, Batch, CaseSpec, generate_batch, job_image
from harness.qemu.boot import BatchStatus, run_batch
from harness.qemu.job import JobImage, JobProbe
from harness.qemu.models import machine_model
from harness.vocabulary import DivergenceKind
from reference.arch import Arch, AtKind, Granule
from reference.generate import MemoryMap

pytestmark = pytest.mark.qemu

A64 = Arch.AARCH64
MMAP = MemoryMap(ram=((0x4000_0000, 0x4000_0000),), empty=VIRT_EMPTY)
ARENA = (0x4800_0000, 0x8000_0000)


def at_write_clean(d) -> bool:
    """The QEMU family of the module docstring: a write AT, every permitted
    outcome a Permission fault for the dirty state, observed a success."""
    return (d.kind is DivergenceKind.PROBE and d.at in ("S12E1W", "S12E0W")
            and d.observed == "ok" and all(e.startswith("permission L") for e in d.expected)
            and all(any("Dirty = 0" in r and "{HA, HD} != {1, 1}" in r for r in p.rules)
                    for p in d.permitted))


def test_an_s2pir_value_is_harmless_without_feat_s2pie():
    """The stub writes S2PIR_EL2 only where ID_AA64MMFR3_EL1 says it
    exists: an image carrying a value completes on any QEMU's cortex-a57
    (no FEAT_S2PIE: the encoding is UNDEFINED there)."""
    image = JobImage(0x8002_3558, 0x4800_0000, ((0x4800_0000, bytes(8192)),),
                     (JobProbe(0x1000, AtKind.S12E1R),), s2pir=0x0123_4567_89AB_CDEF)
    r = run_batch(A64, "cortex-a57", [image])
    assert r.status is BatchStatus.COMPLETED, r.diagnostic
    assert r.images[0].observations[0].par == 0xA0B        # Translation fault, level 1


def test_s2pie_cases_match_the_reference_but_for_the_known_family():
    mm = machine_model(A64, "max")
    if not mm.model.feat_s2pie:
        pytest.skip(f"{mm.qemu_version}: max has no FEAT_S2PIE (QEMU 10.2 and later)")
    entries = [e for e in build_matrix(arch=A64, cpus=["max"], ipa_sizes=[40, 48],
                                       granules=[Granule.G4K, Granule.G64K],
                                       models={(A64, "max"): mm.model})
               if e.group == "aarch64 s2pie"]
    assert len(entries) == 2 * 2 * 3
    batch = Batch(0, A64, "max", tuple(CaseSpec(e, 0) for e in entries))
    cases = generate_batch(batch, 7, ARENA, MMAP, fanout=64)
    result = run_batch(A64, "max", [job_image(c) for c in cases])
    assert result.status is BatchStatus.COMPLETED, result.diagnostic
    seen = 0
    for entry, case, image in zip(entries, cases, result.images):
        counts, divergences = judge_case(case, image)
        assert counts.not_run == 0
        unexplained = [d.summary(case.key) for d in divergences if not at_write_clean(d)]
        assert not unexplained, "\n".join(unexplained)
        family = [d for d in divergences if at_write_clean(d)]
        # Only where the architecture asks for the dirty-state fault.
        if (entry.config.ha, entry.config.hd) == (1, 1):
            assert family == []
        seen += len(family)
    assert seen, "no write AT through a writable-clean descriptor in the run"
