"""Stage 1 on in real QEMU (issue 14): the stage-1 entries of a few models
run through the pipeline's generation, job image and judging
(harness.kinds, harness.judge.stage1); every probe matches the reference
except the QEMU families below, each recognised by a narrow predicate and
decided by the pseudocode line quoted (Sail rems-project/sail-arm
arm-v9.4-a v8_base.sail), never by loosening the reference.  Run this file
once per QEMU build ($S2DIFF_QEMU_AARCH64 / $S2DIFF_QEMU_ARM); the families
and the QEMU versions measured are in /work/notes/kinds-findings.md.

S1PTW_LEVEL  A stage-2 fault on a stage-1 table walk reports the stage-1
    level in PAR.FST where the stage-2 walk's level belongs: AArch64_S2Walk
    ``fault.level = walkstate.level`` (the stage-2 walk), returned as is by
    AArch64_S1Walk ``if s2fault.statuscode != Fault_None then return(s2fault,
    ...)``.  Fixed in QEMU 8.2 (a729d63642).  Also the External abort of such
    a walk (its DFSC level).
PTW_DEVICE_LEVEL  The stage-2 Permission fault of HCR_EL2.PTW (a stage-1
    walk that stage 2 maps as Device) reports level 0 (QEMU >= 8.2; the
    stage-1 level before): AArch64_S2CheckPermissions TTW branch ``else if
    walkparams.ptw == 0b1 & memtype == MemType_Device then fault.statuscode =
    Fault_Permission`` keeps the level AArch64_S2Walk set (the leaf's).
    QEMU's S1_ptw_translate raises the fault without setting fi->level.
S1_BLOCK_LEVEL  A stage-1 block descriptor at a level where the granule has
    none translates (QEMU 7.2; qemu-7.2-block-at-invalid-level for stage 1):
    AArch64_DecodeDescriptorType gives DescriptorType_Invalid.
ARM_ABOVE_4G  qemu-system-arm (7.2) truncates the IPA of a stage-1 table
    above 4 GiB to 32 bits: LPAE IPAs have 40 bits (AArch32_S1WalkLD then
    AArch32_S2Translate of the 40-bit IPA).  Fixed in QEMU 9.2 (67d762e716,
    "Avoid target_ulong for physical address lookups").
SH_RESERVED  PAR.SH reports a stage-1 descriptor's reserved SH = 0b01 as
    is: DecodeShareability ``_ => match ConstrainUnpredictable(
    Unpredictable_Shareability)`` gives OSH, ISH or NSH, which
    PAREncodeShareability encodes 0b10, 0b11 or 0b00.
DEVICE_SH  An AT S1E* of Device or Normal NC/NC memory reports the
    descriptor's SH: PAREncodeShareability ``if memattrs.memtype ==
    MemType_Device | memattrs.inner.attrs == MemAttr_NC & memattrs.outer.attrs
    == MemAttr_NC then return(0b10)``.  Fixed in QEMU 8.2 (b17d86eb5e).
SCTLR_C  With SCTLR_EL1.C = 0 (SCTLR.C) the AT reports the MAIR attributes:
    AArch64_S1Translate ``else if (accdesc.acctype != AccessType_IFETCH &
    not_bool(AArch64_S1DCacheEnabled(regime))) & walkstate.memattrs.memtype ==
    MemType_Normal then memattrs = NormalNCMemAttr()`` (l.27732; AArch32
    l.38302).  Recognised by: the reference with C = 1 permits it.
DEVICE_COMBINE  A stage-1 Device-GRE/-nGRE over stage-2 Normal (or the
    reverse) is reported as a stronger Device type: S2CombineS1MemAttrs
    ``else if s1_memattrs.memtype == MemType_Device then memattrs =
    s1_memattrs`` (l.19372).  QEMU's combined_attrs_nofwb compares the
    low nibble of the Normal side as if it were a Device type (NC 0x4 reads
    as nGnRE, WT no-allocate 0x8 as nGRE).
DBM_WRITE_AT  An AT write through a stage-1 DBM descriptor with AP[2] = 1
    and TCR_EL1.HA = HD = 1 takes a stage-1 Permission fault:
    AArch64_S1... ``if (walkparams.ha == 0b1 & walkparams.hd == 0b1) &
    [descriptor[51]] == 0b1 then permissions.ap[2] = Bit(0b0)`` (l.25398);
    an AT never sets the dirty state (l.27658 excludes AccessType_AT) but the
    descriptor is writable.  Stage-1 twin of the triage's family E.
READ_AT_SETS_DIRTY  An AT S12E*R clears AP[2] of a stage-1 DBM descriptor
    (QEMU 7.2): l.27658 sets the dirty state only for ``accdesc.write`` and
    never for AccessType_AT.
FWB_MEMATTR3  With HCR_EL2.FWB = 1 a stage-2 MemAttr with bit [3]
    (descriptor bit 5) set gives Device-nGnRnE: AArch64_S2ApplyFWBMemAttrs
    reads ``s2_attr[2]`` and ``s2_attr[1 .. 0]`` of ``descriptor[5 .. 2]``
    only; QEMU's combined_attrs_fwb switches on all four bits and "arbitrarily
    force[s] Device" for the others.
S2_MEMATTR_0100_WB  (QEMU 11.1.3) A stage-2 MemAttr 0b0100 is taken as
    Write-Back on a CPU without FEAT_MTE_PERM: S2DecodeMemAttrs ``0b0100 =>
    if s2aarch64 & HaveMTEPermExt() then ... S2DecodeCacheability(0b11) else
    ... outer = S2DecodeCacheability(attr[3 .. 2])`` (Outer Non-cacheable).
BLOCK_OA_OFFSET  A stage-1 64K level-1 block (4 TB) whose descriptor's
    output address is within TCR_EL1.IPS but whose VA offset carries the
    output address beyond it translates: AArch64_S1Walk checks ``let oa =
    StageOA(va, ...)`` then ``AArch64_OAOutOfRange(oa.address, ...)`` -- the
    block base plus the VA's offset.  QEMU checks the descriptor's address
    before adding the offset.
"""
from __future__ import annotations

import collections
import dataclasses
import re

import pytest

from harness.judge.stage1 import judge_s1_probe
from harness.kinds import CaseKind, generate_kind_case, kind_job_image, stage1_shape
from harness.matrix import stage1_entries
from harness.plan import VIRT_EMPTY
from harness.qemu.boot import BatchStatus, run_batch
from harness.qemu.job import ObsKind, row_observation
from harness.qemu.launcher import find_qemu, qemu_cpus
from reference.arch import Arch
from reference.cpus import get_cpu
from reference.generate import MemoryMap
from reference.generate_s1 import S1Case, stage1_shapes
from reference.memattrs import Cacheability, MemType
from reference.outcome import Fault, FaultKind, NestedTranslation
from reference.par import decode_par

pytestmark = pytest.mark.qemu

MMAP = MemoryMap(ram=((0x4000_0000, 0x4000_0000),), empty=VIRT_EMPTY)
MODELS = [(Arch.AARCH64, "cortex-a57"), (Arch.AARCH64, "neoverse-n1"), (Arch.AARCH64, "max"),
          (Arch.AARCH32, "cortex-a15"), (Arch.AARCH32, "max")]


@dataclasses.dataclass(frozen=True)
class Seen:
    """One diverging probe: its case, index, permitted result and record."""

    case: S1Case
    index: int
    result: object
    obs: object

    @property
    def probe(self):
        return self.case.probes[self.index]

    @property
    def faults(self) -> list[Fault]:
        return [o.result for o in self.result.outcomes if isinstance(o.result, Fault)]

    @property
    def rules(self) -> list[str]:
        return [r for o in self.result.outcomes for r in o.rules]

    @property
    def par(self):
        return decode_par(self.case.cpu.arch, self.obs.par) if self.obs.kind is ObsKind.PAR else None


def _walk_fault_level(seen: Seen, *, ptw_device: bool) -> bool:
    """The observation is a stage-2 fault on the stage-1 walk (PAR PTW
    and S, or the walk's External abort) of a kind some permitted outcome
    has, at a level none of those outcomes has."""
    walk = [o for o in seen.result.outcomes if isinstance(o.result, Fault) and o.result.s1ptw]
    if not walk:
        return False
    if ptw_device != any("HCR_EL2.PTW = 1" in r for o in walk for r in o.rules):
        return False
    if seen.obs.kind is ObsKind.EXCEPTION:       # the walk's External abort: DFSC level
        levels = {o.result.level for o in walk if o.result.kind is FaultKind.SEA_ON_WALK}
        return bool(levels) and seen.obs.esr >> 26 == 0x25 and seen.obs.esr & 0x3C == 0x14 \
            and seen.obs.esr & 0x3 not in levels
    p = seen.par
    if p is None or not (p.f and p.ptw and p.s and p.fault is not None):
        return False
    levels = {o.result.level for o in walk if o.result.kind is p.fault[0]}
    return bool(levels) and p.fault[1] not in levels


def s1ptw_level(seen: Seen) -> bool:
    return _walk_fault_level(seen, ptw_device=False)


def ptw_device_level(seen: Seen) -> bool:
    return _walk_fault_level(seen, ptw_device=True)


def s1_block_level(seen: Seen) -> bool:
    return any("DecodeDescriptorType: no block at level" in r for r in seen.rules) and \
        (seen.par is not None and (not seen.par.f or seen.par.s))


_WALK_IPA = re.compile(r"descriptor at IPA (0x[0-9a-f]+)")


def arm_above_4g(seen: Seen) -> bool:
    """An AArch32 walk reads a stage-1 table at an IPA of 4 GiB or more
    (the case's tables are there, or a table descriptor points there), and
    the observation is a stage-2 fault on the stage-1 walk or an External
    abort: what a walk of the truncated IPA meets."""
    if seen.case.cpu.arch is not Arch.AARCH32:
        return False
    high = seen.case.stage1.ipa_window[0] >= 1 << 32 or any(
        int(m.group(1), 16) >= 1 << 32 for r in seen.rules for m in _WALK_IPA.finditer(r))
    p = seen.par
    return high and (seen.obs.kind is ObsKind.EXCEPTION or (p is not None and p.f and p.ptw and p.s))


def _ok_but(seen: Seen, differing: set[str]) -> bool:
    """The PAR a success where some permitted outcome is a translation."""
    p = seen.par
    return p is not None and not p.f and any(
        isinstance(o.result, NestedTranslation) for o in seen.result.outcomes)


def sh_reserved(seen: Seen) -> bool:
    """PAR.SH = 0b01 for a descriptor SH = 0b01 where some permitted result
    is Normal and cacheable (for Device and NC/NC memory SH is 0b10 whatever
    the descriptor says: DEVICE_SH)."""
    return _ok_but(seen, {"SH"}) and seen.par.sh == 0b01 and \
        any("Unpredictable_Shareability" in r for r in seen.rules) and \
        any(not (_is_device(a) or _is_nc(a)) for a in _attrs(seen))


def device_sh(seen: Seen) -> bool:
    """An AT S1E* whose every permitted attributes are Device or NC/NC,
    observed with an SH other than 0b10 and the permitted ATTR."""
    if not _ok_but(seen, {"SH"}) or seen.probe.at.stage12 or seen.par.sh == 0b10:
        return False
    attrs = _attrs(seen)
    # NC/NC made by SCTLR.C = 0 is SCTLR_C's (QEMU reports the MAIR's).
    return all(_is_device(a) for a in attrs) or (
        bool(seen.case.stage1.config.c) and all(_is_device(a) or _is_nc(a) for a in attrs))


def sctlr_c(seen: Seen) -> bool:
    """SCTLR.C = 0 in the case, and the reference with C = 1 permits the
    observation -- up to its SH field, which SH_RESERVED (a reserved 0b01
    reported as is) and DEVICE_SH (a Device result reported with the
    descriptor's SH) may also have changed: every SH value is tried."""
    s1 = seen.case.stage1.config
    if s1.c or not _ok_but(seen, set()):
        return False
    c1 = dataclasses.replace(seen.case, stage1=dataclasses.replace(
        seen.case.stage1, config=dataclasses.replace(s1, c=1)))
    result = c1.permitted()[seen.index]
    tries = [dataclasses.replace(seen.obs, par=seen.obs.par & ~0x180 | sh << 7)
             for sh in (0b00, 0b01, 0b10, 0b11)]
    return any(judge_s1_probe(c1, result, seen.probe.va, o).status.passed for o in tries)


def _attrs(seen: Seen) -> list:
    """The attributes of the permitted translations."""
    return [o.result.attrs for o in seen.result.outcomes if isinstance(o.result, NestedTranslation)]


def _is_device(a) -> bool:
    return a is not None and a.memtype is MemType.DEVICE


def _is_nc(a) -> bool:
    return a is not None and a.inner is not None and a.outer is not None \
        and a.inner.attrs is Cacheability.NC and a.outer.attrs is Cacheability.NC


def device_combine(seen: Seen) -> bool:
    """Every permitted result is Device; the PAR reports a Device type
    more restrictive than any of them (ATTR[3:2]: 0b00 nGnRnE < 0b01 nGnRE
    < 0b10 nGRE < 0b11 GRE, DecodeDevice)."""
    p = seen.par
    if not _ok_but(seen, {"ATTR"}) or p.attr >> 4:
        return False
    permitted = _attrs(seen)
    if not all(_is_device(a) for a in permitted):
        return False
    return (p.attr >> 2) & 0b11 < min(a.device.value for a in permitted)


def fwb_memattr3(seen: Seen) -> bool:
    """HCR_EL2.FWB = 1 and the PAR reports Device-nGnRnE (ATTR 0x00) where
    no permitted result is Device-nGnRnE: QEMU's combined_attrs_fwb forces
    it for a stage-2 MemAttr with bit [3] (descriptor bit 5) set, which
    AArch64_S2ApplyFWBMemAttrs does not read (``s2_attr[2]``,
    ``s2_attr[1 .. 0]`` only)."""
    p = seen.par
    return bool(seen.case.stage1.hcr.fwb) and _ok_but(seen, {"ATTR"}) and p.attr == 0 \
        and not any(_is_device(a) and a.device.value == 0 for a in _attrs(seen))


def s2_memattr_0100_wb(seen: Seen) -> bool:
    """A stage-2 leaf MemAttr 0b0100 (Outer Non-cacheable, Inner reserved)
    reported with a Write-Back outer cacheability: S2DecodeMemAttrs decodes
    ``0b0100`` as Write-Back only ``if s2aarch64 & HaveMTEPermExt()``
    (FEAT_MTE_PERM's NoTagAccess), else outer S2DecodeCacheability(0b01) =
    Non-cacheable; the models run here do not implement FEAT_MTE_PERM."""
    p = seen.par
    outer_wb = p is not None and not p.f and (p.attr >> 6) in (0b01, 0b11) and (p.attr >> 4) != 0b0100
    return "MemAttr=0100" in seen.probe.aim and _ok_but(seen, {"ATTR"}) and outer_wb


def dbm_write_at(seen: Seen) -> bool:
    p = seen.par
    return seen.probe.at.is_write and "DBM read-only" in seen.probe.aim and p is not None \
        and p.f and not p.s and p.fault is not None and p.fault[0] is FaultKind.PERMISSION


def block_oa_offset(seen: Seen) -> bool:
    return any("beyond IPS" in r for r in seen.rules) and \
        all(isinstance(f, Fault) and not f.stage2 and f.kind is FaultKind.ADDRESS_SIZE
            for f in (o.result for o in seen.result.outcomes)) and \
        seen.case.stage1.shape.granule.label == "64k"


KNOWN = {"S1PTW_LEVEL": s1ptw_level, "PTW_DEVICE_LEVEL": ptw_device_level,
         "S1_BLOCK_LEVEL": s1_block_level, "ARM_ABOVE_4G": arm_above_4g,
         "SH_RESERVED": sh_reserved, "DEVICE_SH": device_sh, "SCTLR_C": sctlr_c,
         "DEVICE_COMBINE": device_combine, "FWB_MEMATTR3": fwb_memattr3,
         "S2_MEMATTR_0100_WB": s2_memattr_0100_wb,
         "DBM_WRITE_AT": dbm_write_at,
         "BLOCK_OA_OFFSET": block_oa_offset}


def classify(seen: Seen) -> list[str]:
    """The families an observation shows (two at once is possible: a PAR
    that reports the MAIR attributes of SCTLR.C = 0 memory can also carry a
    Device SH)."""
    return [name for name, pred in KNOWN.items() if pred(seen)]


def run_model(arch: Arch, name: str, seed: int = 5):
    cpu = get_cpu(arch, name)
    (entry,) = stage1_entries(cpu)
    base, cases = 0x4800_0000, []
    for i in range(len(stage1_shapes(cpu))):
        cases.append(generate_kind_case(CaseKind.STAGE1, cpu, entry.config, seed,
                                        f"{entry.name}#{i}", (base, entry.window_bytes), MMAP,
                                        shape=stage1_shape(cpu, None, i)))
        base += entry.window_bytes
    result = run_batch(arch, name, [kind_job_image(c) for c in cases])
    assert result.status is BatchStatus.COMPLETED, result.diagnostic
    return cases, result


@pytest.mark.parametrize("arch, name", MODELS, ids=lambda v: v.value if isinstance(v, Arch) else v)
def test_stage1_probes_match_the_reference_but_for_known_families(arch, name):
    if name not in qemu_cpus(find_qemu(arch)):
        pytest.skip(f"this QEMU has no -cpu {name}")
    cases, result = run_model(arch, name)
    families: collections.Counter[str] = collections.Counter()
    unexplained = []
    probes = 0
    for case, image in zip(cases, result.images):
        for i, (probe, res) in enumerate(zip(case.probes, case.permitted())):
            probes += 1
            obs = row_observation(image.records[i])
            if judge_s1_probe(case, res, probe.va, obs).status.passed:
                continue
            names = classify(Seen(case, i, res, obs))
            if not names:
                unexplained.append(f"{case.key} probe {i} ({probe.at.name} {probe.aim}): "
                                   f"observed {obs}, permitted "
                                   + "; ".join(o.describe() for o in res.outcomes))
            else:
                families["+".join(names)] += 1
    assert probes > 40 * len(cases)
    assert not unexplained, f"{result.qemu_version}:\n" + "\n".join(unexplained[:15])
    print(f"\n{result.qemu_version} {arch.value} {name}: {probes} probes, known: "
          + ", ".join(f"{n} x{c}" for n, c in sorted(families.items())))


def test_a_planted_wrong_pa_bit_is_caught_and_no_family_takes_it():
    """A stage-1-on translation QEMU reported as the reference permits,
    with PA bit 12 flipped: a divergence that names PA, and none of the
    families above explains it."""
    cases, result = run_model(Arch.AARCH64, "cortex-a57")
    for case, image in zip(cases, result.images):
        for i, (probe, res) in enumerate(zip(case.probes, case.permitted())):
            obs = row_observation(image.records[i])
            if obs.kind is not ObsKind.PAR or obs.par & 1 or \
                    not judge_s1_probe(case, res, probe.va, obs).status.passed:
                continue
            bad = dataclasses.replace(obs, par=obs.par ^ 1 << 12)
            j = judge_s1_probe(case, res, probe.va, bad)
            assert j.status.name == "DIVERGE" and "PA" in j.fields
            assert classify(Seen(case, i, res, bad)) == []
            return
    pytest.fail("no stage-1-on translation in the run")
