"""Judge a stage-2 configuration, and list every valid one a CPU model can have.

``judge(cpu, config)`` decodes VTCR (and VTTBR) the way the architecture
does before the first descriptor is read and says whether every permitted
reading of it leads to a walk.  It does not restate any rule: it calls the
walker's rule functions (reference/walk.py: AArch64.NSS2TTWParams,
AArch64.S2TxSZFaults, AArch64.S2InvalidSL, AArch64.S2InconsistentSL,
AArch64.PhysicalAddressSize, AArch64.S2TTBaseAddress, ...) in the order
AArch64.S2Translate applies them, so there is one statement of each rule.

``catalogue(cpu)`` is ``judge`` run over every (granule, IPA size, start
level) a CPU can encode, keeping the valid ones, each marked with the
choice Linux KVM and Xen make for that granule and IPA size.

PS is not a dimension of the catalogue.  Any PS encoding is legal (it is
capped by AArch64.PhysicalAddressSize, never a fault) and it does not change
the geometry; each entry carries the PS a hypervisor programs, the CPU's
PARange limited to what the entry's descriptors can hold (48 bits for 4K/16K
without DS), which is also KVM's value (kvm_get_parange).  The smaller
output sizes a different PS gives are listed with the entry.

DS (FEAT_LPA2) is set only where the entry needs it: IPA sizes above 48
bits with 4K/16K, 16K start level 0 and 4K start level -1.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Callable, Iterable, TypeVar

from .arch import Arch, Granule
from .bits import field, mask
from .config import (
    PS_BITS,
    PS_ENCODING,
    TG0_DECODING,
    Geometry,
    S2Config,
    aarch32_config,
    aarch64_config,
    geometry,
)
from .cpus import CpuModel
from .outcome import Fault, FaultKind
from .walk import (
    S2Params,
    aarch32_high_address_bits,
    aarch32_sl0_reserved,
    aarch32_t0sz_choices,
    aarch32_v7_unpredictable,
    aarch64_max_txsz,
    aarch64_nss2_ttw_params,
    aarch64_oa_out_of_range,
    aarch64_physical_address_size,
    aarch64_s2_invalid_sl,
    aarch64_s2_min_txsz,
    aarch64_s2_start_level,
    aarch64_s2_tt_base_address,
    aarch64_s2_txsz_choices,
    s2_inconsistent_sl,
)

# Default IPA sizes of the catalogue: KVM accepts 32 bits and more on arm64
# (kvm_arm_setup_stage2), 52 is the architectural maximum; AArch32 stage 2
# takes 25..40 bits (AArch32.S2IASize: 32 - SInt(T0SZ), T0SZ -8..7).
AARCH64_IPA_SIZES = tuple(range(32, 53))
AARCH32_IPA_SIZES = tuple(range(25, 41))

# AArch32 stage 2 always outputs 40 bits (AArch32.S2Walk).
AARCH32_OA_BITS = 40

# Every address bit VTTBR_EL2 (AArch64) or VTTBR (AArch32) can hold: a base
# of all ones shows which bits a table base keeps, i.e. its alignment.
_VTTBR_ADDRESS_BITS = mask(47, 1)


T = TypeVar("T")


class Convention(enum.Enum):
    """A hypervisor whose stage-2 choice an entry matches."""

    KVM = "KVM"
    XEN = "Xen"


# ---------------------------------------------------------------------------
# Judging one configuration
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Reading:
    """One permitted reading of a configuration: the parameters after the
    IMPLEMENTATION DEFINED and CONSTRAINED UNPREDICTABLE choices listed in
    ``choices``, and either the walk geometry or the rule that stops every
    walk (``problem``, with the ``fault`` it raises for any IPA).

    ``ia_bits`` is the IPA size the walk uses (after a T0SZ clamp);
    ``oa_bits`` the effective output size; ``vttbr_align`` the alignment in
    bytes the start-level table base gets (AArch64.S2TTBaseAddress: VTTBR
    bits below it are ignored); ``table_base`` the PA of the start-level
    table the programmed VTTBR selects."""

    choices: tuple[str, ...]
    granule: Granule
    ia_bits: int
    oa_bits: int
    start_level: int | None = None
    geometry: Geometry | None = None
    vttbr_align: int | None = None
    table_base: int | None = None
    problem: str | None = None
    fault: Fault | None = None

    @property
    def walks(self) -> bool:
        return self.problem is None

    @property
    def walk_geometry(self) -> Geometry:
        """The geometry of a reading that gets past the start-level checks
        (every reading that walks has one); ValueError for one that stops
        before them."""
        if self.geometry is None:
            raise ValueError(f"no walk geometry: {self.problem}")
        return self.geometry

    @property
    def walk_vttbr_align(self) -> int:
        """The table-base alignment of a reading that walks (see ``walk_geometry``)."""
        if self.vttbr_align is None:
            raise ValueError(f"no table base: {self.problem}")
        return self.vttbr_align


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the architecture makes of a configuration on a CPU model.

    ``valid``: every permitted reading leads to a walk (no configuration
    fault).  ``problems``: the failing rules, each naming its pseudocode
    function.  ``choices``: the IMPLEMENTATION DEFINED / CONSTRAINED
    UNPREDICTABLE choices involved.  ``notes``: fields that are legal but do
    not act as programmed (PS capped, HA without FEAT_HAFDBS, VTTBR bits
    ignored).  The geometry properties give a value when every reading that
    walks agrees on it, None otherwise."""

    cpu: CpuModel
    config: S2Config
    readings: tuple[Reading, ...]
    notes: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return all(r.walks for r in self.readings)

    @property
    def problems(self) -> tuple[str, ...]:
        return _unique(r.problem for r in self.readings if r.problem)

    @property
    def choices(self) -> tuple[str, ...]:
        return _unique(c for r in self.readings for c in r.choices)

    def _agreed(self, value_of: Callable[[Reading], T]) -> T | None:
        """``value_of`` the readings that walk, when they all agree on it."""
        values = {value_of(r) for r in self.readings if r.walks}
        return values.pop() if len(values) == 1 else None

    @property
    def granule(self) -> Granule | None:
        return self._agreed(lambda r: r.granule)

    @property
    def ia_bits(self) -> int | None:
        return self._agreed(lambda r: r.ia_bits)

    @property
    def start_level(self) -> int | None:
        return self._agreed(lambda r: r.start_level)

    @property
    def levels(self) -> int | None:
        return self._agreed(lambda r: r.walk_geometry.levels)

    @property
    def concat(self) -> int | None:
        """Concatenated tables at the start level."""
        return self._agreed(lambda r: r.walk_geometry.concat)

    @property
    def root_bytes(self) -> int | None:
        """Size in bytes of the start-level table(s)."""
        return self._agreed(lambda r: r.walk_geometry.root_bytes)

    @property
    def vttbr_align(self) -> int | None:
        """Alignment in bytes the start-level table base needs."""
        return self._agreed(lambda r: r.vttbr_align)

    @property
    def oa_bits(self) -> int | None:
        """Effective output address size in bits."""
        return self._agreed(lambda r: r.oa_bits)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _is_choice(rule: str) -> bool:
    """The walker tags every rule that selects among permitted outcomes this way."""
    return rule.startswith(("IMPLEMENTATION DEFINED", "CONSTRAINED UNPREDICTABLE"))


def judge(cpu: CpuModel, config: S2Config) -> Verdict:
    """Decode and judge ``config`` (VTCR fields and VTTBR) on ``cpu``.

    AArch64 follows AArch64.S2Translate up to the first descriptor read:
    TG0 decode, T0SZ limits, start level (invalid or inconsistent), then the
    start-level table address against the output size (AArch64.S2Walk).
    AArch32 follows AArch32.S2Translate / AArch32.S2Walk likewise."""
    if config.arch is not cpu.arch:
        raise ValueError(f"{cpu.name} is {cpu.arch.value}, the configuration is {config.arch.value}")
    if config.arch is Arch.AARCH64:
        return _judge_aarch64(cpu, config)
    return _judge_aarch32(cpu, config)


def _judge_aarch64(cpu: CpuModel, config: S2Config) -> Verdict:
    readings: list[Reading] = []
    notes: list[str] = []
    for p0, tg_rule in aarch64_nss2_ttw_params(cpu, config):
        notes.extend(_aarch64_ignored_fields(cpu, config, p0))
        oa_bits = aarch64_physical_address_size(cpu, config.ps, p0.granule)
        if PS_BITS[config.ps] != oa_bits:
            notes.append(f"PS={config.ps:#05b} ({PS_BITS[config.ps]} bits) acts as {oa_bits} bits "
                         f"with {p0.granule.label} (AArch64.PhysicalAddressSize; PAMax {cpu.pamax})")
        for p, tx_rule in aarch64_s2_txsz_choices(cpu, p0):
            rules = [r for r in (tg_rule, tx_rule) if r]
            choices = tuple(r for r in rules if _is_choice(r))
            if p is None:
                readings.append(Reading(choices, p0.granule, p0.ia_bits, oa_bits, problem=tx_rule,
                                        fault=Fault(FaultKind.TRANSLATION, 0)))
                continue
            readings.append(_aarch64_reading(cpu, config, p, choices, oa_bits, notes))
    return Verdict(cpu, config, tuple(readings), _unique(notes))


def _aarch64_reading(cpu: CpuModel, config: S2Config, p: S2Params, choices: tuple[str, ...],
                     oa_bits: int, notes: list[str]) -> Reading:
    """The start-level checks of AArch64.S2Translate (Translation fault,
    level 0) and the start-level table address check of AArch64.S2Walk
    (Address size fault, level 0), for parameters ``p``."""
    common = Reading(choices=choices, granule=p.granule, ia_bits=p.ia_bits, oa_bits=oa_bits)
    level = aarch64_s2_start_level(p)
    why = aarch64_s2_invalid_sl(cpu, p)
    if why is not None:
        return dataclasses.replace(common, problem=f"AArch64.S2InvalidSL: {why}",
                                   fault=Fault(FaultKind.TRANSLATION, 0))
    # AArch64.S2InvalidSL rejects every SL encoding S2StartLevel leaves undefined.
    assert level is not None
    inconsistent = s2_inconsistent_sl(p.granule, p.ia_bits, level)
    if inconsistent is not None:
        return dataclasses.replace(common, start_level=level,
                                   problem=f"AArch64.S2InconsistentSL: {inconsistent}",
                                   fault=Fault(FaultKind.TRANSLATION, 0))
    geo = geometry(p.granule, p.ia_bits, level)
    kept = aarch64_s2_tt_base_address(cpu, p, _VTTBR_ADDRESS_BITS, level)
    align = kept & -kept
    base = aarch64_s2_tt_base_address(cpu, p, config.vttbr, level)
    # With FEAT_LPA (64K, PS=0b110) or DS=1, VTTBR_EL2[5:2] hold PA[51:48]
    # (AArch64.S2TTBaseAddress); bit 2 survives only in that format.
    high_format = aarch64_s2_tt_base_address(cpu, p, 1 << 2, level) != 0
    address_bits = mask(47, 1) & ~(mask(5, 2) if high_format else 0)
    dropped = config.vttbr & address_bits & (align - 1)
    if dropped:
        notes.append(f"VTTBR_EL2 bits {dropped:#x} lie below the {align}-byte table alignment: a "
                     f"misaligned base, CONSTRAINED UNPREDICTABLE (Arm ARM D24.2.225): the bits "
                     f"are treated as zero (AArch64.S2TTBaseAddress: the table at {base:#x}) or "
                     f"the walk address is corrupted in them")
    walking = dataclasses.replace(common, start_level=level, geometry=geo, vttbr_align=align,
                                  table_base=base)
    if aarch64_oa_out_of_range(cpu, p, base):
        return dataclasses.replace(walking, problem=(
            f"AArch64.S2Walk: start-level table address {base:#x} is beyond the {oa_bits}-bit "
            f"output size (AArch64.OAOutOfRange)"), fault=Fault(FaultKind.ADDRESS_SIZE, 0))
    return walking


def _aarch64_ignored_fields(cpu: CpuModel, config: S2Config, p: S2Params) -> list[str]:
    """Fields programmed to 1 that AArch64.NSS2TTWParams reads as 0 on this CPU."""
    notes = []
    if config.ha and not p.ha:
        notes.append("VTCR_EL2.HA=1 is ignored: no FEAT_HAFDBS (AArch64.NSS2TTWParams)")
    if config.hd and not p.hd:
        notes.append("VTCR_EL2.HD=1 is ignored: no FEAT_HAFDBS dirty state (AArch64.NSS2TTWParams)")
    if config.ds and not p.ds:
        notes.append(f"VTCR_EL2.DS=1 is ignored: no FEAT_LPA2 with {p.granule.label} "
                     f"(AArch64.NSS2TTWParams)")
    if config.sl2 and not p.sl2:
        notes.append("VTCR_EL2.SL2=1 is ignored: it acts only with 4K, DS=1 and FEAT_LPA2 "
                     "(AArch64.NSS2TTWParams)")
    if config.s2pie and not p.s2pie:
        notes.append("VTCR_EL2.S2PIE=1 is ignored: no FEAT_S2PIE; S2AP and XN give the "
                     "permissions (AArch64.NSS2TTWParams)")
    return notes


def _judge_aarch32(cpu: CpuModel, config: S2Config) -> Verdict:
    """AArch32.S2Translate / AArch32.S2Walk up to the first descriptor
    read.  Configuration faults are Translation faults at level 1."""
    readings: list[Reading] = []
    notes: list[str] = []
    for t0sz, choices in aarch32_t0sz_choices(config):
        ia_bits = 32 - t0sz
        common = Reading(choices=choices, granule=Granule.G4K, ia_bits=ia_bits,
                         oa_bits=AARCH32_OA_BITS)
        if aarch32_sl0_reserved(config.sl0):
            readings.append(dataclasses.replace(
                common, problem=f"AArch32.S2Walk: SL0={config.sl0:#04b} is reserved",
                fault=Fault(FaultKind.TRANSLATION, 1)))
            continue
        level = 2 - config.sl0
        why = s2_inconsistent_sl(Granule.G4K, ia_bits, level)
        if why is not None:
            readings.append(dataclasses.replace(
                common, start_level=level, problem=f"AArch32.S2InconsistentSL: {why}",
                fault=Fault(FaultKind.TRANSLATION, 1)))
            continue
        geo = geometry(Granule.G4K, ia_bits, level)
        # AArch32.S2Walk: the base is VTTBR[39:baselsb], baselsb = log2 of the
        # start-level table size; lower bits are ignored.
        align = geo.root_bytes
        base = field(config.vttbr, 39, 0) & ~(align - 1)
        dropped = config.vttbr & mask(39, 1) & (align - 1)
        if dropped:
            notes.append(f"VTTBR bits {dropped:#x} lie below the {align}-byte table alignment: a "
                         f"misaligned base, CONSTRAINED UNPREDICTABLE (Arm ARM G8.2.173): the bits "
                         f"are treated as zero (AArch32.S2Walk: the table at {base:#x}) or the "
                         f"walk address is corrupted in them")
        walking = dataclasses.replace(common, start_level=level, geometry=geo,
                                      vttbr_align=align, table_base=base)
        high = aarch32_high_address_bits(cpu, config.vttbr, "VTTBR")
        if high is None:
            readings.append(walking)
        elif len(high) == 1:
            readings.append(dataclasses.replace(walking, problem=high[0],
                                                fault=Fault(FaultKind.ADDRESS_SIZE, 0)))
        else:
            faulting, ignoring = high
            readings.append(dataclasses.replace(walking, choices=choices + (faulting,),
                                                problem=faulting,
                                                fault=Fault(FaultKind.ADDRESS_SIZE, 0)))
            readings.append(dataclasses.replace(walking, choices=choices + (ignoring,)))
    for rule in aarch32_v7_unpredictable(cpu, config):
        notes.append(f"{rule}: on this ARMv7 core any result is permitted; the readings are "
                     f"those ARMv8 requires")
    return Verdict(cpu, config, tuple(readings), _unique(notes))


# ---------------------------------------------------------------------------
# What hypervisors choose
# ---------------------------------------------------------------------------

def kvm_start_level(granule: Granule, ia_bits: int) -> int:
    """The start level Linux KVM arm64 programs for an IPA size.

    kvm_get_vtcr (arch/arm64/kvm/hyp/pgtable.c) takes
    ``levels = stage2_pgtable_levels(ipa) = ARM64_HW_PGTABLE_LEVELS(ipa - 4)``
    (arch/arm64/include/asm/stage2_pgtable.h), with
    ``ARM64_HW_PGTABLE_LEVELS(va) = ((va) - 4) / (PAGE_SHIFT - 3)``, so
    levels = (ipa - 8) // stride, at least 2 "to prevent splitting host PMD
    huge pages"; SL0 encodes start level 4 - levels.  Taking ipa - 4 lets up
    to 4 extra bits, 16 concatenated tables, sit at the start level."""
    levels = max(2, (ia_bits - 8) // granule.stride)
    return 4 - levels


def kvm_ipa_range(cpu: CpuModel) -> tuple[int, int]:
    """IPA sizes KVM accepts for a VM (kvm_arm_setup_stage2: at least 32,
    at most kvm_ipa_limit, the host's PARange)."""
    return 32, cpu.pamax


# Xen's stage-2 table, xen/arch/arm/mmu/p2m.c setup_virt_paging(),
# pa_range_info[]: {PA size, T0SZ, root order, SL0}, 4K granule only.  Xen
# uses IPA size = PA size (p2m_ipa_bits, lowered by the SMMU if needed),
# start level = 2 - SL0, 2^root_order concatenated root pages, and PS = the
# PA range of the row.  The 52-bit row {52, 12, 4, 2} leaves DS=0, which
# AArch64.S2MinTxSZ rejects on every CPU (T0SZ < 16 faults with FEAT_LPA,
# and without it PAMax is at most 48), so it never matches a valid entry.
XEN_AARCH64 = ((32, 32, 0, 1), (36, 28, 0, 1), (40, 24, 1, 1), (42, 22, 3, 1),
               (44, 20, 0, 2), (48, 16, 0, 2), (52, 12, 4, 2))
# The CONFIG_ARM_32 rows: T0SZ is the signed 5-bit S:T0SZ value (24 is -8).
XEN_AARCH32 = ((32, 0, 0, 1), (40, 24, 1, 1))

# Linux KVM/arm (32-bit hosts, arch/arm/include/asm/kvm_arm.h, removed in
# Linux 5.7): KVM_PHYS_SHIFT 40, KVM_VTCR_SL0 = VTCR_SL_L1, so a 40-bit IPA
# starting at level 1 with 2 concatenated tables.
KVM_AARCH32 = (40, 1)


def xen_choice(arch: Arch, ia_bits: int) -> tuple[int, int, int, int] | None:
    """Xen's row for an IPA size: (PA size, T0SZ, root order, SL0), or None."""
    rows = XEN_AARCH64 if arch is Arch.AARCH64 else XEN_AARCH32
    return next((row for row in rows if row[0] == ia_bits), None)


def conventions(cpu: CpuModel, granule: Granule, ia_bits: int, start_level: int,
                ds: int = 0) -> tuple[Convention, ...]:
    """The hypervisors whose choice for ``granule`` and ``ia_bits`` is this
    start level (the geometry; PS and attributes are not compared)."""
    marks = []
    if cpu.arch is Arch.AARCH64:
        lo, hi = kvm_ipa_range(cpu)
        if lo <= ia_bits <= hi and kvm_start_level(granule, ia_bits) == start_level:
            marks.append(Convention.KVM)
        row = xen_choice(cpu.arch, ia_bits)
        if granule is Granule.G4K and ds == 0 and row is not None and 2 - row[3] == start_level:
            marks.append(Convention.XEN)
    else:
        if (ia_bits, start_level) == KVM_AARCH32:
            marks.append(Convention.KVM)
        row = xen_choice(cpu.arch, ia_bits)
        if row is not None and 2 - row[3] == start_level:
            marks.append(Convention.XEN)
    return tuple(marks)


def verdict_conventions(verdict: Verdict) -> tuple[Convention, ...]:
    """The conventions a valid configuration with one geometry matches."""
    granule, ia_bits, level = verdict.granule, verdict.ia_bits, verdict.start_level
    if not verdict.valid or granule is None or ia_bits is None or level is None:
        return ()
    ds = verdict.config.ds if verdict.config.arch is Arch.AARCH64 else 0
    return conventions(verdict.cpu, granule, ia_bits, level, ds)


# ---------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Entry:
    """One valid stage-2 configuration of a CPU model.

    ``config`` is the VTCR (VTTBR 0) that selects it; sizes are in bytes;
    ``oa_bits`` is the effective output size of the entry's PS;
    ``other_oa_bits`` the other output sizes a smaller PS gives (a larger
    one is capped); ``conventions`` the hypervisors that make this choice;
    ``remark`` how it relates to KVM's choice for the same granule and IPA
    size."""

    cpu: CpuModel
    config: S2Config
    granule: Granule
    geometry: Geometry
    vttbr_align: int
    oa_bits: int
    other_oa_bits: tuple[int, ...]
    conventions: tuple[Convention, ...]
    remark: str

    @property
    def ia_bits(self) -> int:
        return self.geometry.ia_bits

    @property
    def start_level(self) -> int:
        return self.geometry.start_level


def ipa_limits(cpu: CpuModel, granule: Granule) -> tuple[int, int]:
    """Smallest and largest IPA size ``cpu`` takes with ``granule`` at stage 2:
    AArch64.MaxTxSZ and AArch64.S2MinTxSZ (with DS = 1 where FEAT_LPA2
    allows it); AArch32.S2IASize gives 25..40."""
    if cpu.arch is Arch.AARCH32:
        return min(AARCH32_IPA_SIZES), max(AARCH32_IPA_SIZES)
    ds_values = (0, 1) if cpu.s2_granule_52bit(granule) else (0,)
    min_txsz = min(aarch64_s2_min_txsz(cpu, _params(granule, ds=ds)) for ds in ds_values)
    return 64 - aarch64_max_txsz(cpu, granule), 64 - min_txsz


def _params(granule: Granule, *, sl0: int = 0, sl2: int = 0, ds: int = 0) -> S2Params:
    return S2Params(granule=granule, txsz=0, sl0=sl0, sl2=sl2, ds=ds, ps=0, ha=0, hd=0)


def encodable_start_levels(granule: Granule) -> tuple[int, ...]:
    """The start levels SL0 (and SL2) can name for ``granule``, from
    AArch64.S2StartLevel itself."""
    levels = {aarch64_s2_start_level(_params(granule, sl0=sl0, sl2=sl2, ds=sl2))
              for sl0 in range(4) for sl2 in (0, 1)}
    return tuple(sorted(level for level in levels if level is not None))


def hypervisor_ps(cpu: CpuModel, granule: Granule, ds: int) -> int:
    """The PS encoding a hypervisor programs: PARange, limited to 48 bits
    when the descriptors cannot hold more (4K/16K without DS: AArch64.LeafBase
    takes OA[51:48] only from DS descriptors).  KVM's kvm_get_parange caps
    PARange at 48 bits unless 52-bit PAs are enabled, which is the same."""
    bits = cpu.pamax
    if granule is not Granule.G64K and not ds:
        bits = min(bits, 48)
    return PS_ENCODING[bits]


def catalogue(cpu: CpuModel, ipa_sizes: Iterable[int] | None = None,
              granules: Iterable[Granule] | None = None) -> list[Entry]:
    """Every valid (granule, IPA size, start level) of ``cpu``, in that order.

    ``ipa_sizes`` defaults to 32..52 (AArch64) or 25..40 (AArch32);
    ``granules`` to all.  Granules the CPU lacks at stage 2 and IPA sizes it
    cannot take give no entries (see ``ipa_limits``)."""
    if ipa_sizes is None:
        ipa_sizes = AARCH64_IPA_SIZES if cpu.arch is Arch.AARCH64 else AARCH32_IPA_SIZES
    ipa_sizes = sorted(set(ipa_sizes))
    wanted = tuple(Granule) if granules is None else tuple(granules)
    entries: list[Entry] = []
    if cpu.arch is Arch.AARCH32:
        if Granule.G4K in wanted:
            for ia_bits in ipa_sizes:
                if not AARCH32_IPA_SIZES[0] <= ia_bits <= AARCH32_IPA_SIZES[-1]:
                    continue
                for level in (1, 2):
                    entries.extend(_entry(cpu, aarch32_config(ia_bits, level)))
        return entries
    for granule in (g for g in Granule if g in wanted and cpu.s2_granule_supported(g)):
        for ia_bits in ipa_sizes:
            if not 16 <= ia_bits <= 52:
                continue   # no T0SZ encodes it (AArch64.IASize = 64 - T0SZ)
            for level in encodable_start_levels(granule):
                for ds in ((0, 1) if cpu.s2_granule_52bit(granule) else (0,)):
                    config = aarch64_config(granule, ia_bits, level, ds=ds,
                                            ps_bits=PS_BITS[hypervisor_ps(cpu, granule, ds)])
                    # SL2 without DS is ignored and names another level: skip it.
                    found = [e for e in _entry(cpu, config) if e.start_level == level]
                    if found:
                        entries.extend(found)
                        break
    return entries


def _entry(cpu: CpuModel, config: S2Config) -> list[Entry]:
    """The entry for ``config`` if it is valid, with one reading, as an
    empty or one-element list."""
    verdict = judge(cpu, config)
    if not verdict.valid or len(verdict.readings) != 1:
        return []
    reading = verdict.readings[0]
    if cpu.arch is Arch.AARCH64:
        others = sorted({aarch64_physical_address_size(cpu, ps, reading.granule)
                         for ps in PS_ENCODING.values()} - {reading.oa_bits})
        ds = config.ds
    else:
        others, ds = [], 0
    geo = reading.walk_geometry
    marks = conventions(cpu, reading.granule, reading.ia_bits, geo.start_level, ds)
    return [Entry(cpu=cpu, config=config, granule=reading.granule, geometry=geo,
                  vttbr_align=reading.walk_vttbr_align, oa_bits=reading.oa_bits,
                  other_oa_bits=tuple(others), conventions=marks,
                  remark=_remark(cpu, geo, marks))]


def _remark(cpu: CpuModel, geo: Geometry, marks: tuple[Convention, ...]) -> str:
    """Whose choice an entry is, or how it differs from KVM's choice for
    its granule and IPA size."""
    parts = [f"{m.value}'s choice" for m in marks]
    if Convention.KVM in marks:
        return ", ".join(parts)
    if cpu.arch is Arch.AARCH64:
        lo, hi = kvm_ipa_range(cpu)
        kvm_level = kvm_start_level(geo.granule, geo.ia_bits) if lo <= geo.ia_bits <= hi else None
    else:
        kvm_level = KVM_AARCH32[1] if geo.ia_bits == KVM_AARCH32[0] else None
    if kvm_level is None:
        parts.append("legal; KVM does not use this IPA size")
        return ", ".join(parts)
    more = kvm_level - geo.start_level
    count = f"{abs(more)} level{'s' if abs(more) > 1 else ''}"
    tables = f"{geo.concat} concatenated tables" if geo.concat > 1 else "no concatenation"
    relation = f"{count} more than KVM" if more > 0 else f"{count} fewer than KVM"
    parts.append(f"legal alternative: {relation}, {tables}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------
# Register decoding for listings
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FieldValue:
    """One named register field: bits [hi:lo], its value and what it means."""

    name: str
    hi: int
    lo: int
    value: int
    meaning: str


_CACHEABILITY = {0b00: "Non-cacheable", 0b01: "Write-Back, Read-Allocate, Write-Allocate",
                 0b10: "Write-Through, Read-Allocate, no Write-Allocate",
                 0b11: "Write-Back, Read-Allocate, no Write-Allocate"}
_SHAREABILITY = {0b00: "Non-shareable", 0b01: "reserved", 0b10: "Outer Shareable",
                 0b11: "Inner Shareable"}


def decode_vtcr(arch: Arch, value: int, start_level: int | None = None) -> tuple[FieldValue, ...]:
    """The fields of VTCR_EL2 (AArch64) or VTCR (AArch32) that the model
    interprets, with their Arm ARM names (RES1 bit 31 included).  SL0 means
    a start level only together with TG0 and the CPU: pass the level a
    verdict found as ``start_level``."""
    def f(name: str, hi: int, lo: int, meaning) -> FieldValue:
        v = field(value, hi, lo)
        return FieldValue(name, hi, lo, v, meaning(v) if callable(meaning) else meaning)

    common = [
        f("SL0", 7, 6, "invalid or depends on the granule" if start_level is None
          else f"start level {start_level}"),
        f("IRGN0", 9, 8, _CACHEABILITY.__getitem__),
        f("ORGN0", 11, 10, _CACHEABILITY.__getitem__),
        f("SH0", 13, 12, _SHAREABILITY.__getitem__),
    ]
    if arch is Arch.AARCH32:
        raw = field(value, 3, 0)
        t0sz = raw - 16 if raw & 8 else raw
        return (f("T0SZ", 3, 0, f"{t0sz} ({32 - t0sz}-bit IPA)"),
                f("S", 4, 4, "must equal T0SZ[3]"), *common,
                f("RES1", 31, 31, lambda v: "ok" if v else "should be 1"))
    return (f("T0SZ", 5, 0, lambda v: f"{64 - v}-bit IPA"), *common,
            f("TG0", 15, 14, lambda v: TG0_DECODING[v].label.upper() if v in TG0_DECODING
              else "reserved"),
            f("PS", 18, 16, lambda v: f"{PS_BITS[v]} bits"),
            f("VS", 19, 19, lambda v: "16-bit VMID" if v else "8-bit VMID"),
            f("HA", 21, 21, lambda v: "hardware Access flag" if v else "off"),
            f("HD", 22, 22, lambda v: "hardware dirty state" if v else "off"),
            f("RES1", 31, 31, lambda v: "ok" if v else "should be 1"),
            f("DS", 32, 32, lambda v: "52-bit (FEAT_LPA2)" if v else "off"),
            f("SL2", 33, 33, lambda v: "with SL0=0b00 and DS=1: start level -1" if v else "off"),
            f("S2PIE", 36, 36, lambda v: "permission indirection (S2PIR_EL2, FEAT_S2PIE)" if v
              else "off: S2AP/XN permissions"))


def uninterpreted_bits(arch: Arch, value: int) -> int:
    """Bits set in a VTCR value that no field of ``decode_vtcr`` covers."""
    covered = 0
    for fv in decode_vtcr(arch, value):
        covered |= mask(fv.hi, fv.lo)
    return value & ~covered


def vtcr_config(cpu: CpuModel, vtcr: int, vttbr: int = 0) -> S2Config:
    """The S2Config a VTCR value programs on ``cpu``'s architecture."""
    return S2Config.from_vtcr(cpu.arch, vtcr, vttbr)


# ---------------------------------------------------------------------------
# Plain records (for JSON listings)
# ---------------------------------------------------------------------------

def _register_hex(arch: Arch, value: int) -> str:
    return f"{value:#018x}" if arch is Arch.AARCH64 else f"{value:#010x}"


def entry_record(entry: Entry) -> dict:
    """An entry as plain data: every field, sizes in bytes, registers in hex."""
    c = entry.config
    a64 = c.arch is Arch.AARCH64
    return {
        "cpu": entry.cpu.name, "arch": c.arch.value, "granule": entry.granule.label,
        "ipa_bits": entry.ia_bits, "t0sz": c.t0sz, "sl0": c.sl0,
        "sl2": c.sl2 if a64 else None, "ds": c.ds if a64 else None,
        "start_level": entry.start_level, "levels": entry.geometry.levels,
        "concatenated_tables": entry.geometry.concat,
        "root_table_bytes": entry.geometry.root_bytes,
        "vttbr_alignment_bytes": entry.vttbr_align,
        "ps": c.ps if a64 else None, "ps_bits": PS_BITS[c.ps] if a64 else None,
        "output_bits": entry.oa_bits, "other_output_bits": list(entry.other_oa_bits),
        "vtcr": _register_hex(c.arch, c.vtcr()),
        "kvm": Convention.KVM in entry.conventions, "xen": Convention.XEN in entry.conventions,
        "remark": entry.remark,
    }


def _reading_record(r: Reading) -> dict:
    geo = r.geometry
    return {
        "choices": list(r.choices), "granule": r.granule.label, "ipa_bits": r.ia_bits,
        "output_bits": r.oa_bits, "start_level": r.start_level,
        "levels": geo.levels if geo else None,
        "concatenated_tables": geo.concat if geo else None,
        "root_table_bytes": geo.root_bytes if geo else None,
        "vttbr_alignment_bytes": r.vttbr_align,
        "table_base": None if r.table_base is None else f"{r.table_base:#x}",
        "problem": r.problem,
        "fault": None if r.fault is None else {"kind": r.fault.kind.value, "level": r.fault.level},
    }


def verdict_record(verdict: Verdict) -> dict:
    """A verdict as plain data, with the decoded register fields."""
    c = verdict.config
    vtcr = c.vtcr()
    marks = verdict_conventions(verdict)
    return {
        "cpu": verdict.cpu.name, "arch": c.arch.value,
        "vtcr": _register_hex(c.arch, vtcr), "vttbr": f"{c.vttbr:#018x}",
        "fields": [{"name": f.name, "bits": f"{f.hi}:{f.lo}", "value": f.value,
                    "meaning": f.meaning}
                   for f in decode_vtcr(c.arch, vtcr, verdict.start_level)],
        "valid": verdict.valid, "problems": list(verdict.problems),
        "choices": list(verdict.choices), "notes": list(verdict.notes),
        "granule": verdict.granule.label if verdict.granule else None,
        "ipa_bits": verdict.ia_bits, "start_level": verdict.start_level,
        "levels": verdict.levels, "concatenated_tables": verdict.concat,
        "root_table_bytes": verdict.root_bytes, "vttbr_alignment_bytes": verdict.vttbr_align,
        "output_bits": verdict.oa_bits,
        "kvm": Convention.KVM in marks, "xen": Convention.XEN in marks,
        "readings": [_reading_record(r) for r in verdict.readings],
    }


__all__ = [
    "AARCH32_IPA_SIZES", "AARCH64_IPA_SIZES", "Convention", "Entry", "FieldValue", "Reading",
    "Verdict", "XEN_AARCH32", "XEN_AARCH64", "catalogue", "conventions", "decode_vtcr",
    "encodable_start_levels", "entry_record", "hypervisor_ps", "ipa_limits", "judge", "kvm_ipa_range",
    "kvm_start_level", "uninterpreted_bits", "verdict_conventions", "verdict_record", "vtcr_config",
    "xen_choice",
]
