"""Stage-1 translation of the EL1&0 regime with stage 2 enabled, as the Arm
ARM pseudocode states it: every stage-1 descriptor fetch is itself
translated by stage 2.

AArch64: AArch64.S1Translate and AArch64.S1Walk with their helpers
(AArch64.S1TTWParamsEL10, AArch64.S1DecodeTG0/TG1, AArch64.S1MinTxSZ,
AArch64.S1TxSZFaults, AArch64.VAIsOutOfRange, AArch64.S1StartLevel,
AArch64.S1TTBaseAddress, AArch64.DecodeDescriptorType,
AArch64.S1NextWalkStateTable/Leaf, AArch64.S1DirectBasePermissions,
AArch64.S1CheckPermissions, AArch64.S1DisabledOutput).  AArch32 with the
Long-descriptor format: AArch32.S1TranslateLD, AArch32.S1WalkLD,
AArch32.S1LDHasPermissionsFault, AArch32.S1DisabledOutput (Sail
rems-project/sail-arm arm-v9.4-a v8_base.sail).

The descriptor fetch goes through AArch64.S2Translate / AArch32.S2Translate
with AccessType_TTW (:func:`s2_translate_ttw`): the stage-2 walk itself is
reference.walk's, called through its public entry points, and the checks
that only a table-walk access has are applied here (AArch64.S2CheckPermissions
for AccessType_TTW: HCR_EL2.PTW with Device memory, read permission always,
write permission when a hardware update writes the descriptor).  A stage-2
fault there is reported as a stage-2 fault with PTW (FaultRecord.s2fs1walk)
at the stage-2 level, carrying the descriptor's IPA.

The functions return, per permitted outcome, either a finished
:class:`~reference.outcome.Outcome` (a fault) or an :class:`S1Output` (the
IPA, the stage-1 leaf and the stage-1 attributes) that reference.at takes
on to stage 2.  TTBR0 and TTBR1 walks, TBI, HPD, E0PD, HA/HD (AF only:
AT never sets the dirty state), DS and FEAT_LPA/LVA are modelled.  Not
modelled: FEAT_D128, FEAT_S1PIE/S1POE, FEAT_HAFT (table AF), PAN (the AT
forms without P have none), FEAT_TME/SVE non-fault bits, MTE, Secure and
Realm states, the AArch32 Short-descriptor format, and the TLB (every
probe walks the tables).
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Callable, Iterable, Union

from . import rules as R
from .arch import Arch, AtKind, Granule
from .bits import bit, field
from .config import FINAL_LEVEL, TG0_DECODING, S2Config, geometry
from .cpus import CpuModel
from .memattrs import (
    MemAttrs,
    MemType,
    effective_shareability,
    normal_nc_mem_attr,
    s1_decode_mem_attrs,
    s1_disabled_attrs,
)
from .memory import Memory
from .outcome import DescriptorWrite, Fault, FaultKind, Outcome, S1Leaf, TraceStep, Translation
from .s1config import Hcr, S1Config, S1ConfigA32
from .walk import (
    aarch32_high_address_bits,
    aarch32_s2_translate,
    aarch64_contiguous_bit,
    aarch64_max_txsz,
    aarch64_physical_address_size,
    aarch64_s2_translate,
    contiguous_size,
)

DESC_AF = 1 << 10
DESC_S2AP_W = 1 << 7


class AtOp(enum.Enum):
    """An address-translation instruction executed at EL2 for the EL1&0
    regime.  ``code`` is the job-file kind: 0..3 are reference.arch.AtKind's
    (stage 1 + 2), 4..7 the stage-1-only operations.  AArch32 names:
    ATS12NSOPR/PW/UR/UW and ATS1CPR/CPW/CUR/CUW."""

    S12E1R = 0
    S12E1W = 1
    S12E0R = 2
    S12E0W = 3
    S1E1R = 4
    S1E1W = 5
    S1E0R = 6
    S1E0W = 7

    @property
    def code(self) -> int:
        return self.value

    @property
    def is_write(self) -> bool:
        return self.value & 1 == 1

    @property
    def el(self) -> int:
        """The EL whose permissions are checked: 0 for the E0 forms."""
        return 0 if self.value & 2 else 1

    @property
    def stage12(self) -> bool:
        return self.value < 4

    @property
    def s2_kind(self) -> AtKind:
        """The stage-2 access the final translation makes (reference.walk's
        AtKind: read or write, EL1 or EL0)."""
        return AtKind(self.value & 3)

    def name_for(self, arch: Arch) -> str:
        if arch is Arch.AARCH64:
            return f"AT {self.name}"
        base = "ATS12NSO" if self.stage12 else "ATS1C"
        return base + ("U" if self.el == 0 else "P") + ("W" if self.is_write else "R")


# ---------------------------------------------------------------------------
# What a branch of the walk has accumulated
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Path:
    """The rules (choices made), descriptor-read trace and hardware updates
    of one branch of a two-stage walk."""

    rules: tuple[str, ...] = ()
    trace: tuple[TraceStep, ...] = ()
    writes: tuple[DescriptorWrite, ...] = ()

    def add(self, rules: Iterable[str] = (), trace: Iterable[TraceStep] = (),
            writes: Iterable[DescriptorWrite] = ()) -> "Path":
        """This path extended; writes to a word already written combine
        (every hardware update sets bits: AF, S2AP[1])."""
        merged = list(self.writes)
        for w in writes:
            for i, prev in enumerate(merged):
                if prev.pa == w.pa:
                    merged[i] = DescriptorWrite(prev.pa, prev.old, prev.new | w.new)
                    break
            else:
                merged.append(w)
        return Path(self.rules + tuple(r for r in rules if r not in self.rules),
                    self.trace + tuple(trace), tuple(merged))

    def outcome(self, result, *rules: str) -> Outcome:
        return Outcome(result=result, rules=self.rules + rules,
                       writes=tuple(sorted(self.writes, key=lambda w: w.pa)), trace=self.trace)


@dataclasses.dataclass(frozen=True)
class S1Output:
    """A successful stage 1 (the AddressDescriptor AArch64.S1Translate
    returns): the IPA, the leaf (None when stage 1 is disabled) and the
    stage-1 attributes (None: UNKNOWN)."""

    ipa: int
    leaf: S1Leaf | None
    attrs: MemAttrs | None
    path: Path


S1Result = Union[Outcome, S1Output]


@dataclasses.dataclass(frozen=True)
class Stage2:
    """Stage 2 as the EL1&0 regime meets it: the CPU, VTCR/VTTBR, the HCR
    bits and the physical memory both stages' tables live in."""

    cpu: CpuModel
    config: S2Config
    hcr: Hcr
    memory: Memory

    @property
    def fwb(self) -> bool:
        """HCR_EL2.FWB as it acts: AArch64 EL2 with FEAT_S2FWB only."""
        return bool(self.hcr.fwb) and self.config.arch is Arch.AARCH64 and self.cpu.feat_s2fwb


def s1_fault(kind: FaultKind, level: int) -> Fault:
    return Fault(kind, level, stage2=False)


# ---------------------------------------------------------------------------
# The stage-2 translation of a stage-1 descriptor access (AccessType_TTW)
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class S2Walked:
    """A stage-2 translation of a stage-1 table access that succeeded."""

    pa: int
    translation: Translation
    path: Path


def s2_leaf_is_device(s2: Stage2, t: Translation) -> bool:
    """The stage-2 memory type of a leaf as AArch64.S2CheckPermissions sees
    it: S2DecodeMemAttrs (MemAttr[3:2] = 00 is Device) or, with FWB,
    AArch64.S2ApplyFWBMemAttrs (MemAttr[2] = 0 is Device)."""
    if s2.fwb:
        return bit(t.memattr, 2) == 0
    return field(t.memattr, 3, 2) == 0


def s2_translate_ttw(s2: Stage2, ipa: int, s1_level: int, path: Path, *,
                     update: bool = False) -> list[Union[Outcome, S2Walked]]:
    """AArch64.S2Translate / AArch32.S2Translate of a stage-1 table access
    (AccessType_TTW): the fetch of the descriptor at ``ipa`` for stage-1
    level ``s1_level``, or with ``update`` the write of a hardware update
    to it (CreateAccDescTTEUpdate: read and write).

    The walk and its faults are reference.walk's.  Then, in the order of
    AArch64.S2CheckPermissions for AccessType_TTW: HCR_EL2.PTW = 1 and
    Device memory is a Permission fault; no read permission (S2AP[0]) is
    a Permission fault, for an update too; an update also needs write
    permission (S2AP[1], or DBM with VTCR_EL2.HA and HD, which then sets
    S2AP[1]: a table-walk write is not an AT access, so the dirty state is
    updated).  AArch32.S2HasPermissionsFault has the same TTW rule (HCR.PTW).
    Every stage-2 fault becomes PTW, with the IPA."""
    cpu, cfg = s2.cpu, s2.config
    what = "update of" if update else "fetch of"
    walker = "AArch64.S1Walk" if cfg.arch is Arch.AARCH64 else "AArch32.S1WalkLD"
    step = R.S1_TTW[("a64" if cfg.arch is Arch.AARCH64 else "a32", update)].text(
        f"{walker}: {what} the stage-1 level {s1_level} descriptor at IPA {ipa:#x} "
        f"translated by stage 2 (AccessType_TTW)")
    translate = aarch64_s2_translate if cfg.arch is Arch.AARCH64 else aarch32_s2_translate
    out: list[Union[Outcome, S2Walked]] = []
    for o in translate(cpu, cfg, s2.memory, ipa, AtKind.S12E1R):
        p = path.add((step,) + o.rules, o.trace, o.writes)
        r = o.result
        if isinstance(r, Fault):
            assert r.stage2, "an IPA below the stage-1 output size never reaches S1DisabledOutput"
            out.append(p.outcome(dataclasses.replace(r, s1ptw=True, ipa=ipa)))
            continue
        assert isinstance(r, Translation)
        if s2.hcr.ptw and s2_leaf_is_device(s2, r):
            out.append(p.outcome(Fault(FaultKind.PERMISSION, r.level, s1ptw=True, ipa=ipa),
                                 R.S1_PTW_DEVICE.text(
                                     "AArch64.S2CheckPermissions: HCR_EL2.PTW = 1 and the "
                                     "stage-1 walk accesses Device memory")))
            continue
        if update:
            ha_hd_dbm = (cfg.arch is Arch.AARCH64 and cfg.ha and cfg.hd and cpu.hafdbs >= 2
                         and r.dbm)
            if not (r.s2ap >> 1 or ha_hd_dbm):
                out.append(p.outcome(Fault(FaultKind.PERMISSION, r.level, s1ptw=True, ipa=ipa),
                                     R.A64_S1_TTW_UPDATE_DENIED.text(
                                         f"AArch64.S2CheckPermissions: S2AP={r.s2ap:02b} denies "
                                         f"the write of a hardware update")))
                continue
            if not r.s2ap >> 1:
                leaf = o.trace[-1]
                assert leaf.value is not None
                p = p.add((R.A64_S1_TTW_DIRTY.text(
                               "AArch64.S2Translate: the table-walk write sets the stage-2 dirty "
                               "state (S2AP[1] := 1, DBM)"),),
                          writes=(DescriptorWrite(leaf.address, leaf.value, leaf.value | DESC_S2AP_W),))
        out.append(S2Walked(r.pa, r, p))
    return out


def fetch_descriptor(s2: Stage2, ipa: int, level: int, path: Path,
                     visit: Callable[[int, int, Path], list[S1Result]]) -> list[S1Result]:
    """FetchDescriptor of a stage-1 descriptor: translate its IPA by stage
    2, read the PA; a PA with no memory behind it is a synchronous External
    abort on the (stage-1) walk at ``level``.  ``visit(pa, desc, path)``
    goes on with the descriptor read."""
    out: list[S1Result] = []
    for w in s2_translate_ttw(s2, ipa, level, path):
        if isinstance(w, Outcome):
            out.append(w)
            continue
        desc = s2.memory.read64(w.pa)
        if desc is None:
            p = w.path.add(trace=(TraceStep(level, w.pa, None, "no memory", stage=1, ipa=ipa),))
            out.append(p.outcome(s1_fault(FaultKind.SEA_ON_WALK, level), R.S1_SEA.text(
                "FetchDescriptor: synchronous External abort on the stage-1 walk (taken as an "
                "exception by AT)")))
            continue
        out.extend(visit(w.pa, desc, w.path))
    return out


# ---------------------------------------------------------------------------
# CPU features stage 1 depends on (decoded from the ID registers)
# ---------------------------------------------------------------------------

def aarch64_have_s1_tg(cpu: CpuModel, granule: Granule) -> bool:
    """AArch64.HaveS1TG: ID_AA64MMFR0_EL1.TGran4 [31:28] (0b0000/0b0001
    supported), TGran16 [23:20] (0b0001/0b0010), TGran64 [27:24] (0b0000)."""
    mmfr0 = cpu.reg("ID_AA64MMFR0_EL1")
    if granule is Granule.G4K:
        return field(mmfr0, 31, 28) in (0b0000, 0b0001)
    if granule is Granule.G16K:
        return field(mmfr0, 23, 20) in (0b0001, 0b0010)
    return field(mmfr0, 27, 24) == 0b0000


def feat_lva(cpu: CpuModel) -> bool:
    """FEAT_LVA (Have52BitVAExt): ID_AA64MMFR2_EL1.VARange [19:16] = 0b0001."""
    return field(cpu.reg("ID_AA64MMFR2_EL1"), 19, 16) == 0b0001


def feat_e0pd(cpu: CpuModel) -> bool:
    """FEAT_E0PD: ID_AA64MMFR2_EL1.E0PD [63:60] >= 1."""
    return field(cpu.reg("ID_AA64MMFR2_EL1"), 63, 60) >= 1


def feat_hpds(cpu: CpuModel) -> bool:
    """FEAT_HPDS (AArch64.HaveHPDExt): ID_AA64MMFR1_EL1.HPDS [15:12] >= 1."""
    return field(cpu.reg("ID_AA64MMFR1_EL1"), 15, 12) >= 1


def feat_xs(cpu: CpuModel) -> bool | None:
    """FEAT_XS (AArch64 only): ID_AA64ISAR1_EL1.XS [59:56] >= 1.  None when
    the model does not carry that register (none does today; QEMU max
    implements FEAT_XS, the Cortex cores modelled do not).  ARMv7 has no XS."""
    if cpu.arch is Arch.AARCH32 and cpu.arch_version < 8:
        return False
    regs = dict(cpu.id_regs)
    if cpu.arch is Arch.AARCH32 or "ID_AA64ISAR1_EL1" not in regs:
        return None
    return field(regs["ID_AA64ISAR1_EL1"], 59, 56) >= 1


# ---------------------------------------------------------------------------
# Descriptor helpers shared by the AArch64 stage-1 walk
# ---------------------------------------------------------------------------

def block_desc_supported(cpu: CpuModel, granule: Granule, ds: int, level: int) -> bool:
    """AArch64.BlockDescSupported: 4K blocks at levels 1, 2 (0 with DS);
    16K at 2 (1 with DS); 64K at 2 (1 when PAMax is 52 bits)."""
    if granule is Granule.G4K:
        return level in (1, 2) or (level == 0 and ds == 1)
    if granule is Granule.G16K:
        return level == 2 or (level == 1 and ds == 1)
    return level == 2 or (level == 1 and cpu.pamax >= 52)


def decode_descriptor_type(cpu: CpuModel, granule: Granule, ds: int, desc: int, level: int) -> str:
    """AArch64.DecodeDescriptorType: 'invalid', 'table', 'block' or 'page'
    ('reserved' for 0b01 where no block is allowed, which is invalid)."""
    if not desc & 1:
        return "invalid"
    if desc & 2:
        return "page" if level == FINAL_LEVEL else "table"
    return "block" if block_desc_supported(cpu, granule, ds, level) else "reserved"


def oa_high_bits(cpu: CpuModel, granule: Granule, ds: int, desc: int) -> int:
    """PA[51:48] held by a descriptor (AArch64.NextTableBase,
    AArch64.LeafBase): bits [15:12] for 64K with FEAT_LPA, bits [9:8] and
    [49:48] with DS = 1."""
    if cpu.feat_lpa and granule is Granule.G64K:
        return field(desc, 15, 12) << 48
    if ds:
        return (field(desc, 9, 8) << 2 | field(desc, 49, 48)) << 48
    return 0


def stage_oa_choices(base: int, ia: int, tsize: int, contiguous: bool,
                     csize: int) -> list[tuple[int, tuple[str, ...]]]:
    """StageOA: the output address from a leaf's ``base`` and the input
    address; with the contiguous bit, the bits below the contiguous range
    come from the input.  A misprogrammed contiguous set (entries that
    disagree) may be held in the TLB as any of its entries (CONSTRAINED
    UNPREDICTABLE), so the entry's own output address is also permitted."""
    own = base | ia & ((1 << tsize) - 1)
    if not contiguous:
        return [(own, ())]
    span = tsize + csize
    stage = base & ~((1 << span) - 1) | ia & ((1 << span) - 1)
    out: list[tuple[int, tuple[str, ...]]] = [
        (stage, (R.S1_STAGE_OA_CONTIG.text(
            "StageOA: contiguous range, OA low bits from the input address"),))]
    if own != stage:
        out.append((own, (R.S1_CONTIG_MISPROGRAMMED.text(
            "CONSTRAINED UNPREDICTABLE: misprogrammed contiguous set, OA from the descriptor "
            "itself"),)))
    return out


def s1_direct_base_permissions(ap: int, aptable: int, el: int) -> tuple[int, int]:
    """AArch64.S1DirectBasePermissions / AArch32.S1LDHasPermissionsFault for
    a regime with EL0 (no PAN, no overlays): (read, write) allowed at
    ``el`` from AP[2:1] and the accumulated APTable.

    AP 00: EL1 RW; 01: EL1 and EL0 RW; 10: EL1 RO; 11: EL1 and EL0 RO.
    APTable 01: no EL0 access; 10: no write; 11: no write, no EL0 access."""
    pr, pw, ur, uw = {0b00: (1, 1, 0, 0), 0b01: (1, 1, 1, 1),
                      0b10: (1, 0, 0, 0), 0b11: (1, 0, 1, 0)}[ap]
    if aptable & 0b01:
        ur = uw = 0
    if aptable & 0b10:
        pw = uw = 0
    return (ur, uw) if el == 0 else (pr, pw)


# ---------------------------------------------------------------------------
# AArch64 stage 1
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class S1Params:
    """AArch64 S1TTWParams for the EL1&0 regime, as they act: the granule
    after AArch64.S1DecodeTG0/TG1, TxSZ after the limits, and the TCR_EL1
    fields of the VA's range gated by the features that give them meaning."""

    granule: Granule
    txsz: int
    ps: int
    ds: int
    ha: int
    hd: int
    hpd: int
    epd: int
    e0pd: int
    tbi: int
    sh: int
    ttbr: int
    upper: bool

    @property
    def ia_bits(self) -> int:
        """AArch64.IASize: 64 - TxSZ."""
        return 64 - self.txsz


def aarch64_s1_enabled(s1: S1Config, hcr: Hcr) -> bool:
    """AArch64.S1Enabled for EL1&0 with EL2 enabled: SCTLR_EL1.M = 1 and
    HCR_EL2.{DC, TGE} = 00 (TGE is 0 here)."""
    return bool(s1.m) and not hcr.dc


def aarch64_s1_decode_tg(cpu: CpuModel, tg: int, upper: bool) -> list[tuple[Granule, tuple[str, ...]]]:
    """AArch64.S1DecodeTG0 / AArch64.S1DecodeTG1: the reserved encoding
    (TG0 0b11, TG1 0b00) and a granule the PE does not have at stage 1
    (AArch64.HaveS1TG) select an IMPLEMENTATION DEFINED granule: every
    supported granule is permitted."""
    decoding = ({0b10: Granule.G4K, 0b01: Granule.G16K, 0b11: Granule.G64K} if upper
                else TG0_DECODING)
    name = "TG1" if upper else "TG0"
    granule = decoding.get(tg)
    if granule is not None and aarch64_have_s1_tg(cpu, granule):
        return [(granule, ())]
    why = f"reserved {name} {tg:#04b}" if granule is None else f"{granule.label} not supported"
    return [(g, (R.A64_S1_TG_IMPDEF.text(
        f"IMPLEMENTATION DEFINED (AArch64.S1Decode{name}, {why}): granule {g.label}"),))
            for g in Granule if aarch64_have_s1_tg(cpu, g)]


def aarch64_s1_ttw_params_el10(cpu: CpuModel, s1: S1Config,
                               va: int) -> list[tuple[S1Params, tuple[str, ...]]]:
    """AArch64.S1TTWParamsEL10: TCR_EL1's fields for the VA range of
    ``va`` (bit 55 selects TTBR1).  DS acts for 4K/16K with FEAT_LPA2, HA
    and HD with FEAT_HAFDBS, HPD with FEAT_HPDS, E0PD with FEAT_E0PD."""
    upper = bool(bit(va, 55))
    tg = s1.tg1 if upper else s1.tg0
    out = []
    for granule, rules in aarch64_s1_decode_tg(cpu, tg, upper):
        ds = s1.ds if granule is not Granule.G64K and cpu.feat_lpa2 else 0
        out.append((S1Params(
            granule=granule, txsz=s1.t1sz if upper else s1.t0sz, ps=s1.ips, ds=ds,
            ha=s1.ha if cpu.hafdbs >= 1 else 0, hd=s1.hd if cpu.hafdbs >= 2 else 0,
            hpd=(s1.hpd1 if upper else s1.hpd0) if feat_hpds(cpu) else 0,
            epd=s1.epd1 if upper else s1.epd0,
            e0pd=(s1.e0pd1 if upper else s1.e0pd0) if feat_e0pd(cpu) else 0,
            tbi=s1.tbi1 if upper else s1.tbi0, sh=s1.sh1 if upper else s1.sh0,
            ttbr=s1.ttbr1 if upper else s1.ttbr0, upper=upper), rules))
    return out


def aarch64_s1_min_txsz(cpu: CpuModel, p: S1Params) -> int:
    """AArch64.S1MinTxSZ: 12 with (FEAT_LVA and 64K) or DS = 1, else 16."""
    return 12 if (feat_lva(cpu) and p.granule is Granule.G64K) or p.ds else 16


def aarch64_s1_txsz_choices(cpu: CpuModel, p: S1Params) -> list[tuple[S1Params | None, tuple[str, ...]]]:
    """AArch64.S1TxSZFaults and the clamp in AArch64.S1Translate: below the
    minimum faults with FEAT_LVA, else IMPLEMENTATION DEFINED fault or
    minimum; above the maximum IMPLEMENTATION DEFINED fault or maximum.
    None stands for the Translation fault at level 0."""
    lo, hi = aarch64_s1_min_txsz(cpu, p), aarch64_max_txsz(cpu, p.granule)
    name = "T1SZ" if p.upper else "T0SZ"
    if p.txsz < lo:
        if feat_lva(cpu):
            return [(None, (R.A64_S1_TXSZ_MIN_LVA.text(
                f"AArch64.S1TxSZFaults: {name} {p.txsz} < minimum {lo} with FEAT_LVA"),))]
        return [(None, (R.A64_S1_TXSZ_MIN_FAULT.text(
                    f"IMPLEMENTATION DEFINED (AArch64.S1TxSZFaults): {name} {p.txsz} < {lo} faults"),)),
                (dataclasses.replace(p, txsz=lo), (R.A64_S1_TXSZ_MIN_CLAMP.text(
                    f"IMPLEMENTATION DEFINED (AArch64.S1TxSZFaults): {name} {p.txsz} < {lo} acts as {lo}"),))]
    if p.txsz > hi:
        return [(None, (R.A64_S1_TXSZ_MAX_FAULT.text(
                    f"IMPLEMENTATION DEFINED (AArch64.S1TxSZFaults): {name} {p.txsz} > {hi} faults"),)),
                (dataclasses.replace(p, txsz=hi), (R.A64_S1_TXSZ_MAX_CLAMP.text(
                    f"IMPLEMENTATION DEFINED (AArch64.S1TxSZFaults): {name} {p.txsz} > {hi} acts as {hi}"),))]
    return [(p, ())]


def aarch64_addr_top(tbi: int) -> int:
    """AArch64.AddrTop for a data access (AT is not an instruction fetch):
    55 with TBI, else 63."""
    return 55 if tbi else 63


def aarch64_va_is_out_of_range(p: S1Params, va: int) -> bool:
    """AArch64.VAIsOutOfRange: bits [AddrTop:IASize] must all be 0 (lower
    range) or all 1 (upper range)."""
    top = aarch64_addr_top(p.tbi)
    if top < p.ia_bits:
        return False
    bits = field(va, top, p.ia_bits)
    return bits != ((1 << (top - p.ia_bits + 1)) - 1 if p.upper else 0)


def aarch64_s1_start_level(p: S1Params) -> int:
    """AArch64.S1StartLevel: 3 - floor((IASize - 1 - granule bits) / stride)."""
    return FINAL_LEVEL - (p.ia_bits - 1 - p.granule.bits) // p.granule.stride


def aarch64_s1_tt_base_address(cpu: CpuModel, p: S1Params, start_level: int) -> int:
    """AArch64.S1TTBaseAddress: TTBR BADDR aligned to the start-level table
    size; TTBR[5:2] hold PA[51:48] when (FEAT_LPA, 64K and IPS = 0b110) or
    DS = 1, the table then at least 64-byte aligned."""
    geo = geometry(p.granule, p.ia_bits, start_level)
    tsize = geo.start_bits + 3
    if (cpu.feat_lpa and p.granule is Granule.G64K and p.ps == 0b110) or p.ds:
        tsize = max(tsize, 6)
        base = field(p.ttbr, 5, 2) << 48 | field(p.ttbr, 47, 6) << 6
    else:
        base = field(p.ttbr, 47, 1) << 1
    return base >> tsize << tsize


def aarch64_s1_oa_out_of_range(cpu: CpuModel, p: S1Params, address: int) -> bool:
    """AArch64.OAOutOfRange with TCR_EL1.IPS (AArch64.PhysicalAddressSize)."""
    return address >> aarch64_physical_address_size(cpu, p.ps, p.granule) != 0


def aarch64_s1_disabled_output(cpu: CpuModel, s1: S1Config, hcr: Hcr, va: int) -> S1Result:
    """AArch64.S1DisabledOutput for EL1&0 (SCTLR_EL1.M = 0 or HCR_EL2.DC =
    1): VA bits [AddrTop:PAMax] must be zero (else a stage-1 Address size
    fault at level 0); the IPA is VA[55:0]; attributes Device-nGnRnE, or
    Normal Write-Back with HCR_EL2.DC (reference.memattrs.s1_disabled_attrs)."""
    tbi = s1.tbi1 if bit(va, 55) else s1.tbi0
    why = "HCR_EL2.DC = 1" if hcr.dc else "SCTLR_EL1.M = 0"
    if field(va, aarch64_addr_top(tbi), cpu.pamax):
        return Path((R.A64_S1_DISABLED_RANGE.text(
            f"AArch64.S1DisabledOutput ({why}): VA beyond PAMax"),)).outcome(
            s1_fault(FaultKind.ADDRESS_SIZE, 0))
    return S1Output(field(va, 55, 0), None, s1_disabled_attrs(hcr.dc),
                    Path((R.A64_S1_DISABLED.text(f"AArch64.S1DisabledOutput ({why})"),)))


def aarch64_s1_translate(s2: Stage2, s1: S1Config, va: int, op: AtOp) -> list[S1Result]:
    """AArch64.S1Translate for an AT at EL2 of the EL1&0 regime.

    Order: stage 1 disabled; TxSZ limits; VA out of range; E0PD (EL0
    access) -- all Translation faults at level 0 -- then AArch64.S1Walk,
    the permission check, the hardware Access flag update."""
    cpu = s2.cpu
    if not aarch64_s1_enabled(s1, s2.hcr):
        return [aarch64_s1_disabled_output(cpu, s1, s2.hcr, va)]
    out: list[S1Result] = []
    for p0, prules in aarch64_s1_ttw_params_el10(cpu, s1, va):
        for p, trules in aarch64_s1_txsz_choices(cpu, p0):
            path = Path(prules + trules)
            if p is None:
                out.append(path.outcome(s1_fault(FaultKind.TRANSLATION, 0)))
            elif aarch64_va_is_out_of_range(p, va):
                out.append(path.outcome(s1_fault(FaultKind.TRANSLATION, 0), R.A64_S1_VA_RANGE.text(
                    f"AArch64.VAIsOutOfRange: VA {va:#x} outside the "
                    f"{p.ia_bits}-bit {'upper' if p.upper else 'lower'} range")))
            elif op.el == 0 and p.e0pd:
                out.append(path.outcome(s1_fault(FaultKind.TRANSLATION, 0), R.A64_S1_E0PD.text(
                    "AArch64.S1Translate: EL0 access with TCR_EL1.E0PD = 1")))
            else:
                out.extend(aarch64_s1_walk(s2, s1, p, va, op, path))
    return out


def aarch64_s1_walk(s2: Stage2, s1: S1Config, p: S1Params, va: int, op: AtOp,
                    path: Path) -> list[S1Result]:
    """AArch64.S1Walk from TTBRn_EL1: EPD, the start-level table address
    checked against IPS, then one descriptor per level, each fetched
    through stage 2."""
    cpu = s2.cpu
    if p.epd:
        return [path.outcome(s1_fault(FaultKind.TRANSLATION, 0),
                             R.A64_S1_EPD.text(f"AArch64.S1Walk: TCR_EL1.EPD{int(p.upper)} = 1"))]
    start = aarch64_s1_start_level(p)
    geo = geometry(p.granule, p.ia_bits, start)
    address = aarch64_s1_tt_base_address(cpu, p, start) | geo.index(start, va) * 8
    if aarch64_s1_oa_out_of_range(cpu, p, address):
        return [path.outcome(s1_fault(FaultKind.ADDRESS_SIZE, 0), R.A64_S1_TTBR_OA.text(
            f"AArch64.S1Walk: start-level table IPA {address:#x} beyond IPS"))]

    def level_step(level: int, ipa: int, aptable: int, path: Path) -> list[S1Result]:
        def visit(pa: int, desc: int, path: Path) -> list[S1Result]:
            kind = decode_descriptor_type(cpu, p.granule, p.ds, desc, level)

            def step(note: str = "") -> TraceStep:
                return TraceStep(level, pa, desc, kind, note, stage=1, ipa=ipa)
            if kind in ("invalid", "reserved"):
                note = ("bit 0 clear" if kind == "invalid" else
                        "0b01 at level 3" if level == FINAL_LEVEL else f"no block at level {level}")
                return [path.add(trace=(step(note),)).outcome(
                    s1_fault(FaultKind.TRANSLATION, level), R.A64_S1_DESC[(R.Desc(kind), level)].text(
                        f"AArch64.DecodeDescriptorType: {note}"))]
            if kind == "table":
                nxt = field(desc, 47, p.granule.bits) << p.granule.bits | oa_high_bits(
                    cpu, p.granule, p.ds, desc)
                nxt_address = nxt | geo.index(level + 1, va) * 8
                if aarch64_s1_oa_out_of_range(cpu, p, nxt_address):
                    return [path.add(trace=(step(f"next table IPA {nxt:#x} beyond IPS"),)).outcome(
                        s1_fault(FaultKind.ADDRESS_SIZE, level), R.A64_S1_NEXT_TABLE_OA.text(
                            "AArch64.S1Walk: next-level table address out of range"))]
                # AArch64.S1NextWalkStateTable: APTable accumulates unless HPD.
                apt = aptable if p.hpd else aptable | field(desc, 62, 61)
                return level_step(level + 1, nxt_address, apt,
                                  path.add(trace=(step(f"next table IPA {nxt:#x}"),)))
            return aarch64_s1_leaf(s2, s1, p, level, ipa, pa, desc, aptable, va, op,
                                   path.add(trace=(step(),)))
        return fetch_descriptor(s2, ipa, level, path, visit)

    return level_step(start, address, 0, path)


def aarch64_s1_leaf(s2: Stage2, s1: S1Config, p: S1Params, level: int, ipa: int, pa: int,
                    desc: int, aptable: int, va: int, op: AtOp, path: Path) -> list[S1Result]:
    """The leaf checks of AArch64.S1Walk in order (contiguous bit, nT,
    output address size, Access flag), then AArch64.S1Translate's
    permission check and hardware Access flag update, then the output
    attributes (MAIR_EL1, SCTLR_EL1.C)."""
    cpu = s2.cpu
    tsize = geometry(p.granule, p.ia_bits, level).block_bits(level)
    contiguous = aarch64_contiguous_bit(p.granule, level, desc)
    csize = contiguous_size(p.granule, level)
    base = field(desc, 47, tsize) << tsize | oa_high_bits(cpu, p.granule, p.ds, desc)
    out: list[S1Result] = []
    if contiguous and tsize + csize > p.ia_bits:
        out.append(path.outcome(s1_fault(FaultKind.TRANSLATION, level), R.A64_S1_CONTIG_FAULT.text(
            "IMPLEMENTATION DEFINED (AArch64.ContiguousBitFaults): contiguous "
            "range larger than the VA space faults")))
        path = path.add((R.A64_S1_CONTIG_NO_FAULT.text(
            "IMPLEMENTATION DEFINED (AArch64.ContiguousBitFaults): no fault"),))
    if level < FINAL_LEVEL and cpu.bbm in (1, 2) and bit(desc, 16):
        out.append(path.outcome(s1_fault(FaultKind.TRANSLATION, level), R.A64_S1_NT_FAULT.text(
            "IMPLEMENTATION DEFINED (AArch64.BlocknTFaults): block with nT = 1 faults")))
        path = path.add((R.A64_S1_NT_IGNORED.text(
            "IMPLEMENTATION DEFINED (AArch64.BlocknTFaults): nT = 1 ignored"),))
    for oa, oa_rules in stage_oa_choices(base, va, tsize, bool(contiguous), csize):
        br = path.add(oa_rules)
        if aarch64_s1_oa_out_of_range(cpu, p, oa):
            out.append(br.outcome(s1_fault(FaultKind.ADDRESS_SIZE, level), R.A64_S1_OUTPUT_OA.text(
                f"AArch64.S1Walk: output address {oa:#x} beyond IPS")))
            continue
        if bit(desc, 10) == 0 and p.ha == 0:
            out.append(br.outcome(s1_fault(FaultKind.ACCESS_FLAG, level), R.A64_S1_AF_FAULT.text(
                "AArch64.S1Walk: AF = 0 and TCR_EL1.HA = 0")))
            continue
        # AArch64.S1ApplyOutputPerms: with HA, HD and DBM the entry is writable.
        dbm = p.ha and p.hd and bit(desc, 51)
        ap = field(desc, 7, 6) & (0b01 if dbm else 0b11)
        leaf = S1Leaf(level=level, block_bits=tsize, ap=ap, aptable=aptable,
                      attrindx=field(desc, 4, 2), sh=p.sh if p.ds else field(desc, 9, 8),
                      af=bit(desc, 10), ng=bit(desc, 11), contiguous=contiguous,
                      dbm=bit(desc, 51))
        attrs = []
        for decoded, drules in s1_decode_mem_attrs(s1.mair_attr(leaf.attrindx), leaf.sh, True,
                                                   feat_xs(cpu) is True):
            effective, crules = s1_dcache(decoded, s1.c)
            for shared, srules in s1_output_shareability(decoded, effective):
                attrs.append((shared, drules + crules + srules))
        out.extend(s1_permissions_and_af(s2, leaf, ipa, pa, desc, oa, attrs, op, p.ha, br))
    return out


def s1_dcache(attrs: MemAttrs | None, c: int) -> tuple[MemAttrs | None, tuple[str, ...]]:
    """AArch64.S1Translate / AArch32.S1TranslateLD: with the stage-1 data
    cache disabled (SCTLR.C = 0, AArch64.S1DCacheEnabled) Normal memory is
    Non-cacheable (NormalNCMemAttr, XS kept)."""
    if c or attrs is None or attrs.memtype is not MemType.NORMAL:
        return attrs, ()
    return normal_nc_mem_attr(attrs.xs), (R.S1_DCACHE_OFF.text(
        "AArch64.S1DCacheEnabled: SCTLR.C = 0, Normal memory is Non-cacheable"),)


def s1_output_shareability(walk: MemAttrs | None, attrs: MemAttrs | None
                           ) -> list[tuple[MemAttrs | None, tuple[str, ...]]]:
    """The shareability of the stage-1 output for the EL1&0 regime with
    stage 2 enabled (AArch64.S1Translate, AArch32.S1TranslateLD):
    ``if ... HCR_EL2.VM == '1' && !IMPLEMENTATION_DEFINED "Apply effective
    shareability at stage 1" then memattrs.shareability =
    walkstate.memattrs.shareability else memattrs.shareability =
    EffectiveShareability(memattrs)``.  Both are permitted; they differ
    when the output is Device or Normal Non-cacheable (also when SCTLR.C =
    0 made it so) and the descriptor's SH is not Outer Shareable: what the
    stage-2 combination then makes of it can differ."""
    if walk is None or attrs is None:
        return [(attrs, ())]
    kept = dataclasses.replace(attrs, shareability=walk.shareability)
    effective = dataclasses.replace(attrs, shareability=effective_shareability(attrs))
    if kept == effective:
        return [(kept, ())]
    return [(kept, (R.S1_SH_KEPT.text(
                "IMPLEMENTATION DEFINED (Apply effective shareability at stage 1): no, the "
                "descriptor's shareability is kept"),)),
            (effective, (R.S1_SH_EFFECTIVE.text(
                "IMPLEMENTATION DEFINED (Apply effective shareability at stage 1): yes, "
                "EffectiveShareability"),))]


def s1_permissions_and_af(s2: Stage2, leaf: S1Leaf, ipa: int, pa: int, desc: int, oa: int,
                          attrs: list[tuple[MemAttrs | None, tuple[str, ...]]], op: AtOp,
                          ha: int, path: Path) -> list[S1Result]:
    """AArch64.S1CheckPermissions (AT: read or write at the operation's EL),
    then the hardware Access flag update (HA = 1, AF = 0).

    After a successful lookup an AT instruction is permitted but not
    required to set the AF; on a Permission fault setting it is
    CONSTRAINED UNPREDICTABLE (Unpredictable_AFUPDATE).  When the AF is
    set, the write goes through stage 2 as a table-walk update
    (s2_translate_ttw with ``update``) and a stage-2 fault there is the
    result.  AT never sets the dirty state (AArch64.S1Translate excludes
    AccessType_AT)."""
    r, w = s1_direct_base_permissions(leaf.ap, leaf.aptable, op.el)
    denied = not (w if op.is_write else r)
    what = ("write" if op.is_write else "read") + f" at EL{op.el}"
    out: list[S1Result] = []
    results: list[tuple[Path, Fault | None]] = []
    if denied:
        perm_rules = (R.A64_S1_PERM_DENY.text(
            f"AArch64.S1CheckPermissions: AP={leaf.ap:02b} APTable={leaf.aptable:02b} "
            f"denies {what}"),)
        base = path.add(perm_rules)
        fault: Fault | None = s1_fault(FaultKind.PERMISSION, leaf.level)
        keep = R.A64_S1_AFUPDATE_NOT_SET.text(
            "CONSTRAINED UNPREDICTABLE (Unpredictable_AFUPDATE): AF not set")
        set_ = R.A64_S1_AFUPDATE_SET.text("CONSTRAINED UNPREDICTABLE (Unpredictable_AFUPDATE): AF set")
    else:
        base, fault = path, None
        keep = R.A64_S1_AF_AT_NOT_SET.text(
            "hardware Access flag update: AT is permitted not to set AF")
        set_ = R.A64_S1_AF_AT_SETS.text("hardware Access flag update: AT sets AF")
    if not (ha and leaf.af == 0):
        results.append((base, fault))
    else:
        results.append((base.add((keep,)), fault))
        for wr in s2_translate_ttw(s2, ipa, leaf.level, base.add((set_,)), update=True):
            if isinstance(wr, Outcome):
                out.append(wr)  # the stage-2 fault on the update replaces the result
            else:
                results.append((wr.path.add(writes=(DescriptorWrite(pa, desc, desc | DESC_AF),)), fault))
    for p, f in results:
        if f is not None:
            out.append(p.outcome(f))
            continue
        for a, arules in attrs:
            out.append(S1Output(oa, leaf, a, p.add(arules)))
    return out


# ---------------------------------------------------------------------------
# AArch32 stage 1, Long-descriptor format (TTBCR.EAE = 1)
# ---------------------------------------------------------------------------

def aarch32_s1_ia_size(txsz: int) -> int:
    """AArch32.S1IASize: 32 - TxSZ (3-bit TxSZ)."""
    return 32 - txsz


def aarch32_va_range(s1: S1ConfigA32, va: int) -> bool | None:
    """AArch32.GetVARange: True for the TTBR1 (upper) range.  With both
    TxSZ zero everything is lower; with T1SZ zero what is not lower is
    upper; with T0SZ zero what is not upper is lower; otherwise a VA in
    neither range is None (VAIsOutOfRange catches it first)."""
    lo, up = aarch32_s1_ia_size(s1.t0sz), aarch32_s1_ia_size(s1.t1sz)
    in_lo = va >> lo == 0
    in_up = field(va, 31, up) == (1 << (32 - up)) - 1 if up < 32 else True
    if s1.t1sz == 0 and s1.t0sz == 0:
        return False
    if s1.t1sz == 0:
        return not in_lo
    if s1.t0sz == 0:
        return in_up
    return False if in_lo else True if in_up else None


def aarch32_s1_translate_ld(s2: Stage2, s1: S1ConfigA32, va: int, op: AtOp) -> list[S1Result]:
    """AArch32.S1TranslateLD for an ATS1C* / ATS12NSO* executed in Hyp mode.

    Stage 1 disabled (SCTLR.M = 0 or HCR.DC = 1): AArch32.S1DisabledOutput,
    the IPA is the VA.  Otherwise AArch32.VAIsOutOfRange (a Translation
    fault at level 1), AArch32.S1WalkLD, the permission check.  There is no
    hardware Access flag update in AArch32.  The Short-descriptor format
    (TTBCR.EAE = 0) is not modelled."""
    if not s1.m or s2.hcr.dc:
        why = "HCR.DC = 1" if s2.hcr.dc else "SCTLR.M = 0"
        return [S1Output(va, None, s1_disabled_attrs(s2.hcr.dc),
                         Path((R.A32_S1_DISABLED.text(f"AArch32.S1DisabledOutput ({why})"),)))]
    if not s1.eae:
        raise ValueError("AArch32 stage 1 with TTBCR.EAE = 0 (Short-descriptor) is not modelled")
    upper = aarch32_va_range(s1, va)
    if upper is None:
        return [Path().outcome(s1_fault(FaultKind.TRANSLATION, 1), R.A32_S1_VA_RANGE.text(
            f"AArch32.VAIsOutOfRange: VA {va:#x} in neither TTBR range"))]
    txsz = s1.t1sz if upper else s1.t0sz
    if (s1.epd1 if upper else s1.epd0):
        return [Path().outcome(s1_fault(FaultKind.TRANSLATION, 1),
                               R.A32_S1_EPD.text(f"AArch32.S1WalkLD: TTBCR.EPD{int(upper)} = 1"))]
    ttbr = s1.ttbr1 if upper else s1.ttbr0
    ia_bits = aarch32_s1_ia_size(txsz)
    start = FINAL_LEVEL - (ia_bits - 1 - 12) // 9
    geo = geometry(Granule.G4K, ia_bits, start)
    path = Path()
    out: list[S1Result] = []
    high = aarch32_high_address_bits(s2.cpu, ttbr, "TTBR", stage=1)
    if high:
        out.append(path.outcome(s1_fault(FaultKind.ADDRESS_SIZE, 0), high[0]))
        if len(high) == 1:
            return out
        path = path.add(high[1:])
    baselsb = geo.start_bits + 3
    address = field(ttbr, 39, baselsb) << baselsb | geo.index(start, va) * 8

    def level_step(level: int, ipa: int, aptable: int, path: Path) -> list[S1Result]:
        def visit(pa: int, desc: int, path: Path) -> list[S1Result]:
            low = desc & 0b11
            kind = ("table" if low == 0b11 and level < FINAL_LEVEL else
                    "page" if low == 0b11 else "block" if low == 0b01 and level < FINAL_LEVEL
                    else "invalid")

            def step(note: str = "") -> TraceStep:
                return TraceStep(level, pa, desc, kind, note, stage=1, ipa=ipa)
            if kind == "invalid":
                note = "bit 0 clear" if not low & 1 else "0b01 at level 3"
                return [path.add(trace=(step(note),)).outcome(
                    s1_fault(FaultKind.TRANSLATION, level), R.A32_S1_DESC[(R.Desc.INVALID, level)].text(
                        f"AArch32.DecodeDescriptorTypeLD: {note}"))]
            out: list[S1Result] = []
            hi = aarch32_high_address_bits(s2.cpu, desc, f"{kind} descriptor", stage=1)
            if hi:
                out.append(path.add(trace=(step(),)).outcome(s1_fault(FaultKind.ADDRESS_SIZE, level),
                                                             hi[0]))
                if len(hi) == 1:
                    return out
                path = path.add(hi[1:])
            if kind == "table":
                nxt = field(desc, 39, 12) << 12
                apt = aptable | field(desc, 62, 61)  # AArch32 HPD (TTBCR2) not modelled
                return out + level_step(level + 1, nxt | geo.index(level + 1, va) * 8, apt,
                                        path.add(trace=(step(f"next table IPA {nxt:#x}"),)))
            return out + aarch32_s1_leaf(s2, s1, level, geo.block_bits(level), desc, aptable, va,
                                         op, path.add(trace=(step(),)))
        return fetch_descriptor(s2, ipa, level, path, visit)

    return out + level_step(start, address, 0, path)


def aarch32_s1_leaf(s2: Stage2, s1: S1ConfigA32, level: int, tsize: int, desc: int,
                    aptable: int, va: int, op: AtOp, path: Path) -> list[S1Result]:
    """The end of AArch32.S1WalkLD (Access flag: AF = 0 always faults) and
    AArch32.S1TranslateLD (AArch32.S1LDHasPermissionsFault, attributes from
    MAIR1:MAIR0, SCTLR.C; StageOA with the contiguous bit)."""
    if not bit(desc, 10):
        return [path.outcome(s1_fault(FaultKind.ACCESS_FLAG, level),
                             R.A32_S1_AF_FAULT.text("AArch32.S1WalkLD: AF = 0"))]
    ap = field(desc, 7, 6)
    leaf = S1Leaf(level=level, block_bits=tsize, ap=ap, aptable=aptable, attrindx=field(desc, 4, 2),
                  sh=field(desc, 9, 8), af=1, ng=bit(desc, 11), contiguous=bit(desc, 52), dbm=0)
    r, w = s1_direct_base_permissions(ap, aptable, op.el)
    if not (w if op.is_write else r):
        return [path.outcome(s1_fault(FaultKind.PERMISSION, level), R.A32_S1_PERM_DENY.text(
            f"AArch32.S1LDHasPermissionsFault: AP={ap:02b} APTable={aptable:02b} "
            f"denies {'write' if op.is_write else 'read'} at PL{op.el}"))]
    out: list[S1Result] = []
    base = field(desc, 39, tsize) << tsize
    for oa, oa_rules in stage_oa_choices(base, va, tsize, bool(leaf.contiguous), 4):
        for a, arules in s1_decode_mem_attrs(s1.mair_attr(leaf.attrindx), leaf.sh, False):
            a2, crules = s1_dcache(a, s1.c)
            for a3, srules in s1_output_shareability(a, a2):
                out.append(S1Output(oa, leaf, a3, path.add(oa_rules + arules + crules + srules)))
    return out
