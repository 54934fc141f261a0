"""The stage-2 translation walk, as the Arm ARM pseudocode states it.

``walk(cpu, config, memory, ipa, access)`` returns every outcome the
architecture permits for one address-translation probe (AT S12E1R etc. with
stage 1 disabled), each tagged with the rule that permits it and carrying
its descriptor-read trace.

This module is the readable statement of the architecture.  Its functions
follow, and are named after, the pseudocode of DDI 0487 as published in the
Sail translation of Arm's ASL (rems-project/sail-arm, arm-v9.4-a
v8_base.sail): AArch64.S2Translate, AArch64.S2Walk and their helpers for
AArch64; AArch32.S2Translate and AArch32.S2Walk for 32-bit ARM with LPAE.
Where the architecture leaves a choice, each alternative becomes an outcome.
Any faster implementation must agree with this one (see the tests).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from . import rules as R
from .arch import Arch, AtKind, Granule
from .bits import bit, field, mask
from .config import FINAL_LEVEL, PS_BITS, TG0_DECODING, Geometry, S2Config, geometry
from .cpus import CpuModel
from .memory import Memory
from .outcome import (
    DescriptorWrite,
    Fault,
    FaultKind,
    Outcome,
    Result,
    TraceStep,
    Translation,
    WalkResult,
)

DESC_AF = 1 << 10
DESC_DBM = 1 << 51
DESC_S2AP_W = 1 << 7


@dataclasses.dataclass(frozen=True)
class S2Params:
    """The walk parameters the model uses (AArch64 S2TTWParams): the
    effective granule after AArch64.S2DecodeTG0, the effective T0SZ after
    the limits of AArch64.S2Translate, and the VTCR fields as they act."""

    granule: Granule
    txsz: int
    sl0: int
    sl2: int
    ds: int
    ps: int
    ha: int
    hd: int
    # VTCR_EL2.SH0: the shareability of a leaf when DS = 1, whose
    # descriptor bits [9:8] are then OA[51:50] (AArch64.S2NextWalkStateLeaf).
    sh0: int = 0
    # VTCR_EL2.S2PIE and S2PIR_EL2 as they act (0 without FEAT_S2PIE).
    s2pie: int = 0
    s2pir: int = 0

    @property
    def ia_bits(self) -> int:
        """AArch64.IASize: 64 - T0SZ."""
        return 64 - self.txsz


def _outcome(result: Result, rules: Iterable[str], trace: Iterable[TraceStep],
             writes: tuple[DescriptorWrite, ...] = ()) -> Outcome:
    return Outcome(result=result, rules=tuple(rules), writes=writes, trace=tuple(trace))


# ---------------------------------------------------------------------------
# AArch64: parameters
# ---------------------------------------------------------------------------

def aarch64_s2_decode_tg0(cpu: CpuModel, tg0: int) -> list[tuple[Granule, str]]:
    """AArch64.S2DecodeTG0: VTCR_EL2.TG0 -> granule.

    The reserved encoding 0b11, and any granule the PE does not support at
    stage 2 (AArch64.HaveS2TG), select an IMPLEMENTATION DEFINED granule:
    every granule the CPU supports is a permitted choice."""
    granule = TG0_DECODING.get(tg0)
    if granule is not None and cpu.s2_granule_supported(granule):
        return [(granule, R.A64_S2_TG0.text("AArch64.S2DecodeTG0"))]
    why = "reserved TG0 0b11" if granule is None else f"{granule.label} not supported at stage 2"
    rule = R.A64_S2_TG0_RESERVED if granule is None else R.A64_S2_TG0_UNSUPPORTED
    return [(g, rule.text(f"IMPLEMENTATION DEFINED (AArch64.S2DecodeTG0, {why}): granule {g.label}"))
            for g in cpu.s2_granules]


def aarch64_nss2_ttw_params(cpu: CpuModel, config: S2Config) -> list[tuple[S2Params, str]]:
    """AArch64.NSS2TTWParams: the walk parameters from VTCR_EL2.

    DS is read for the effective 4K/16K granule only with FEAT_LPA2; SL2 acts
    only as SL2 AND DS, for 4K; HA and HD act only with FEAT_HAFDBS (HD needs
    the dirty-state level of it); S2PIE and S2PIR_EL2 act only with
    FEAT_S2PIE (HaveS2PIExt), and read as 0 without it."""
    params = []
    for granule, rule in aarch64_s2_decode_tg0(cpu, config.tg0):
        lpa2 = cpu.s2_granule_52bit(granule)
        ds = config.ds if lpa2 else 0
        sl2 = (config.sl2 & config.ds) if (lpa2 and granule is Granule.G4K) else 0
        params.append((S2Params(granule=granule, txsz=config.t0sz, sl0=config.sl0, sl2=sl2,
                                ds=ds, ps=config.ps,
                                ha=config.ha if cpu.hafdbs >= 1 else 0,
                                hd=config.hd if cpu.hafdbs >= 2 else 0,
                                sh0=config.sh0,
                                s2pie=config.s2pie if cpu.feat_s2pie else 0,
                                s2pir=config.s2pir if cpu.feat_s2pie else 0), rule))
    return params


def aarch64_s2_min_txsz(cpu: CpuModel, p: S2Params) -> int:
    """AArch64.S2MinTxSZ: 64 - PAMax, with PAMax capped at 48 bits for 4K/16K
    without DS when FEAT_LPA is implemented (EL1 is AArch64 here)."""
    ips = cpu.pamax
    if cpu.feat_lpa and p.granule is not Granule.G64K and p.ds == 0:
        ips = min(48, cpu.pamax)
    else:
        ips = min(52, cpu.pamax)
    return 64 - ips


def aarch64_max_txsz(cpu: CpuModel, granule: Granule) -> int:
    """AArch64.MaxTxSZ: 39, or with FEAT_TTST 48 (4K, 16K) and 47 (64K)."""
    if cpu.feat_ttst:
        return 47 if granule is Granule.G64K else 48
    return 39


def aarch64_s2_txsz_choices(cpu: CpuModel, p: S2Params) -> list[tuple[S2Params | None, str]]:
    """AArch64.S2TxSZFaults and the clamp in AArch64.S2Translate.

    T0SZ below the minimum faults if FEAT_LPA is implemented, otherwise it is
    IMPLEMENTATION DEFINED whether it faults or acts as the minimum; above
    the maximum it is IMPLEMENTATION DEFINED whether it faults or acts as
    the maximum.  ``None`` stands for the Translation fault at level 0."""
    lo, hi = aarch64_s2_min_txsz(cpu, p), aarch64_max_txsz(cpu, p.granule)
    if p.txsz < lo:
        if cpu.feat_lpa:
            return [(None, R.A64_S2_TXSZ_MIN_LPA.text(
                f"AArch64.S2TxSZFaults: T0SZ {p.txsz} < minimum {lo} with FEAT_LPA"))]
        return [(None, R.A64_S2_TXSZ_MIN_FAULT.text(
                    f"IMPLEMENTATION DEFINED (AArch64.S2TxSZFaults): T0SZ {p.txsz} < {lo} faults")),
                (dataclasses.replace(p, txsz=lo), R.A64_S2_TXSZ_MIN_CLAMP.text(
                    f"IMPLEMENTATION DEFINED (AArch64.S2TxSZFaults): T0SZ {p.txsz} < {lo} acts as {lo}"))]
    if p.txsz > hi:
        return [(None, R.A64_S2_TXSZ_MAX_FAULT.text(
                    f"IMPLEMENTATION DEFINED (AArch64.S2TxSZFaults): T0SZ {p.txsz} > {hi} faults")),
                (dataclasses.replace(p, txsz=hi), R.A64_S2_TXSZ_MAX_CLAMP.text(
                    f"IMPLEMENTATION DEFINED (AArch64.S2TxSZFaults): T0SZ {p.txsz} > {hi} acts as {hi}"))]
    return [(p, "")]


def aarch64_s2_start_level(p: S2Params) -> int | None:
    """AArch64.S2StartLevel; None for the encodings the pseudocode leaves
    undefined (they are rejected first by AArch64.S2InvalidSL)."""
    if p.granule is Granule.G4K:
        return {0b000: 2, 0b001: 1, 0b010: 0, 0b011: 3, 0b100: -1}.get(p.sl2 << 2 | p.sl0)
    if p.granule is Granule.G16K:
        return {0b00: 3, 0b01: 2, 0b10: 1, 0b11: 0}[p.sl0]
    return {0b00: 3, 0b01: 2, 0b10: 1}.get(p.sl0)


def aarch64_s2_invalid_sl(cpu: CpuModel, p: S2Params) -> R.Rule | None:
    """AArch64.S2InvalidSL: the reason SL0 (and SL2) is invalid, or None.

    4K: SL2=1 with SL0 != 0 is reserved; level 0 needs PAMax >= 44; level 3
    (SL0 = 0b11) needs FEAT_TTST.  16K: level 0 (SL0 = 0b11) needs DS = 1;
    level 1 needs PAMax >= 42.  64K: SL0 = 0b11 is reserved; level 1 needs
    PAMax >= 44."""
    if p.granule is Granule.G4K:
        enc = p.sl2 << 2 | p.sl0
        if enc in (0b101, 0b110, 0b111):
            return R.A64_S2_SL_4K_RESERVED.text(f"SL2:SL0={enc:03b} is reserved")
        if enc == 0b010 and cpu.pamax < 44:
            return R.A64_S2_SL_4K_L0_PAMAX.text(
                f"start level 0 needs PAMax >= 44 (PAMax {cpu.pamax})")
        if enc == 0b011 and not cpu.feat_ttst:
            return R.A64_S2_SL_4K_L3_TTST.text("start level 3 (SL0=0b11) needs FEAT_TTST")
        return None
    if p.granule is Granule.G16K:
        if p.sl0 == 0b11 and p.ds == 0:
            return R.A64_S2_SL_16K_L0_DS.text("start level 0 (SL0=0b11) needs DS=1")
        if p.sl0 == 0b10 and cpu.pamax < 42:
            return R.A64_S2_SL_16K_L1_PAMAX.text(
                f"start level 1 needs PAMax >= 42 (PAMax {cpu.pamax})")
        return None
    if p.sl0 == 0b11:
        return R.A64_S2_SL_64K_RESERVED.text("SL0=0b11 is reserved for 64K")
    if p.sl0 == 0b10 and cpu.pamax < 44:
        return R.A64_S2_SL_64K_L1_PAMAX.text(f"start level 1 needs PAMax >= 44 (PAMax {cpu.pamax})")
    return None


def s2_inconsistent_sl(granule: Granule, ia_bits: int, start_level: int) -> str | None:
    """AArch64.S2InconsistentSL / AArch32.S2InconsistentSL: the IPA size must
    need at least one bit at the start level and at most a full table plus
    4 bits (16 concatenated tables)."""
    geo = geometry(granule, ia_bits, start_level)
    if geo.consistent:
        return None
    lo = geo.level_lsb(start_level) + 1
    hi = lo + granule.stride - 1 + 4
    return (f"{ia_bits}-bit IPA cannot start at level {start_level} with {granule.label} "
            f"(allowed {lo}..{hi} bits)")


def aarch64_physical_address_size(cpu: CpuModel, ps: int, granule: Granule) -> int:
    """AArch64.PhysicalAddressSize: PS decoded and capped at PAMax, and at 48
    bits unless (64K and FEAT_LPA) or (4K/16K, FEAT_LPA2 and FEAT_LPA).  A PS
    above the implemented size is not a fault: the size is capped."""
    size = PS_BITS[ps]
    if granule is not Granule.G64K and not cpu.feat_lpa2:
        cap = min(48, cpu.pamax)
    elif not cpu.feat_lpa:
        cap = min(48, cpu.pamax)
    else:
        cap = min(52, cpu.pamax)
    return min(size, cap)


def aarch64_oa_out_of_range(cpu: CpuModel, p: S2Params, address: int) -> bool:
    """AArch64.OAOutOfRange: any address bit [55:oasize] set."""
    return address >> aarch64_physical_address_size(cpu, p.ps, p.granule) != 0


def aarch64_s2_tt_base_address(cpu: CpuModel, p: S2Params, vttbr: int, start_level: int) -> int:
    """AArch64.S2TTBaseAddress: the start-level table base from VTTBR_EL2.

    VTTBR_EL2[5:2] hold PA[51:48] when (FEAT_LPA, 64K and PS = 0b110) or
    DS = 1, and the table is then at least 64-byte aligned; otherwise
    VTTBR_EL2[47:1] is the address.  Bits below the table size are ignored
    (Align), so a misaligned BADDR is not a fault."""
    geo = geometry(p.granule, p.ia_bits, start_level)
    tsize = geo.start_bits + 3
    if (cpu.feat_lpa and p.granule is Granule.G64K and p.ps == 0b110) or p.ds:
        tsize = max(tsize, 6)
        base = field(vttbr, 5, 2) << 48 | field(vttbr, 47, 6) << 6
    else:
        base = field(vttbr, 47, 1) << 1
    return base & ~((1 << tsize) - 1)


# ---------------------------------------------------------------------------
# AArch64: descriptors
# ---------------------------------------------------------------------------

def aarch64_block_desc_supported(cpu: CpuModel, p: S2Params, level: int) -> bool:
    """AArch64.BlockDescSupported: 4K blocks at levels 1 and 2 (and 0 with
    DS = 1); 16K at level 2 (and 1 with DS = 1); 64K at level 2 (and 1 when
    PAMax is 52 bits)."""
    if p.granule is Granule.G4K:
        return level in (1, 2) or (level == 0 and p.ds == 1)
    if p.granule is Granule.G16K:
        return level == 2 or (level == 1 and p.ds == 1)
    return level == 2 or (level == 1 and cpu.pamax >= 52)


def aarch64_decode_descriptor_type(cpu: CpuModel, p: S2Params, desc: int, level: int) -> str:
    """AArch64.DecodeDescriptorType: 'invalid', 'table', 'block', 'page' or
    'reserved' (0b01 where no block is allowed, which the pseudocode also
    treats as invalid)."""
    if not desc & 1:
        return "invalid"
    if desc & 2:
        return "page" if level == FINAL_LEVEL else "table"
    return "block" if aarch64_block_desc_supported(cpu, p, level) else "reserved"


def aarch64_oa_high_bits(cpu: CpuModel, p: S2Params, desc: int) -> int:
    """PA[51:48] held by a descriptor: bits [15:12] for 64K with FEAT_LPA,
    bits [9:8]:[49:48] with DS = 1, none otherwise (AArch64.NextTableBase,
    AArch64.LeafBase)."""
    if cpu.feat_lpa and p.granule is Granule.G64K:
        return field(desc, 15, 12) << 48
    if p.ds:
        return (field(desc, 9, 8) << 2 | field(desc, 49, 48)) << 48
    return 0


def aarch64_next_table_base(cpu: CpuModel, p: S2Params, desc: int) -> int:
    """AArch64.NextTableBase: descriptor bits [47:granule] plus PA[51:48]."""
    gbits = p.granule.bits
    return field(desc, 47, gbits) << gbits | aarch64_oa_high_bits(cpu, p, desc)


def aarch64_leaf_base(cpu: CpuModel, p: S2Params, desc: int, level: int) -> int:
    """AArch64.LeafBase: descriptor bits [47:leafsize] plus PA[51:48]; bits
    below the block size are ignored."""
    leafsize = geometry(p.granule, p.ia_bits, level).block_bits(level)
    return field(desc, 47, leafsize) << leafsize | aarch64_oa_high_bits(cpu, p, desc)


def aarch64_contiguous_bit(granule: Granule, level: int, desc: int) -> int:
    """AArch64.ContiguousBit: bit 52, ignored for 4K level 0, 16K level 1
    and 64K level 1 blocks."""
    if level == 0 and granule is Granule.G4K:
        return 0
    if level == 1 and granule in (Granule.G16K, Granule.G64K):
        return 0
    return bit(desc, 52)


def contiguous_size(granule: Granule, level: int) -> int:
    """ContiguousSize: log2 of the number of entries in a contiguous set:
    4K 16 entries; 16K 32 at level 2 and 128 at level 3; 64K 32."""
    if granule is Granule.G4K:
        return 4
    if granule is Granule.G16K:
        return 5 if level == 2 else 7
    return 5


# ---------------------------------------------------------------------------
# AArch64: the walk
# ---------------------------------------------------------------------------

def aarch64_s1_disabled_output(cpu: CpuModel, ipa: int) -> Fault | None:
    """AArch64.S1DisabledOutput: with stage 1 off, an input address with any
    bit [63:PAMax] set takes a stage-1 Address size fault at level 0 before
    stage 2 is consulted (TBI is 0 here)."""
    if ipa >> cpu.pamax:
        return Fault(FaultKind.ADDRESS_SIZE, 0, stage2=False)
    return None


@dataclasses.dataclass(frozen=True)
class S2Start:
    """What AArch64.S2Translate settles before it looks at the IPA, for one
    combination of the IMPLEMENTATION DEFINED choices (granule, T0SZ):
    either a Translation fault at level 0 (``fault``: T0SZ, SL invalid or
    inconsistent) or the walk's parameters, start level and table base
    (``base``: AArch64.S2TTBaseAddress, ``misaligned``: the RES0 base bits
    set), with the rules of the choices made."""

    rules: tuple[str, ...]
    fault: Outcome | None = None
    p: S2Params | None = None
    level: int = 0
    base: int = 0
    misaligned: int = 0


def aarch64_s2_starts(cpu: CpuModel, config: S2Config) -> tuple[S2Start, ...]:
    """The IPA-independent part of AArch64.S2Translate, in its order of
    checks: T0SZ limits, start level (invalid / inconsistent), then the
    start-level table base from VTTBR_EL2."""
    starts: list[S2Start] = []
    for p0, tg_rule in aarch64_nss2_ttw_params(cpu, config):
        for p, tx_rule in aarch64_s2_txsz_choices(cpu, p0):
            rules = tuple(r for r in (tg_rule, tx_rule) if r)
            if p is None:
                starts.append(S2Start(rules, _outcome(Fault(FaultKind.TRANSLATION, 0), rules, [])))
                continue
            level = aarch64_s2_start_level(p)
            why = aarch64_s2_invalid_sl(cpu, p)
            if why is None and level is not None:
                inconsistent = s2_inconsistent_sl(p.granule, p.ia_bits, level)
                why = R.A64_S2_SL_INCONSISTENT.text(inconsistent) if inconsistent else None
            if why is not None:
                starts.append(S2Start(rules, _outcome(Fault(FaultKind.TRANSLATION, 0), rules + (
                    why.id.text(f"AArch64.S2InvalidSL/S2InconsistentSL: {why}"),), [])))
                continue
            # AArch64.S2InvalidSL rejects every SL encoding S2StartLevel leaves undefined.
            assert level is not None
            starts.append(S2Start(rules, None, p, level,
                                  aarch64_s2_tt_base_address(cpu, p, config.vttbr, level),
                                  aarch64_vttbr_misaligned_bits(cpu, p, config.vttbr, level)))
    return tuple(starts)


class _LastStarts:
    """aarch64_s2_starts of the last (cpu, config) asked for: a case walks
    thousands of IPAs under one configuration, and this part of every walk
    is the same.  Keyed by identity: both objects are frozen and held here,
    so the key cannot be confused with another object; an equal but
    distinct object is a miss that recomputes the same answer.  (Hashing a
    CpuModel on every walk would cost much of what is saved.)"""

    def __init__(self) -> None:
        self.key: tuple[CpuModel, S2Config] | None = None
        self.starts: tuple[S2Start, ...] = ()

    def get(self, cpu: CpuModel, config: S2Config) -> tuple[S2Start, ...]:
        key = self.key
        if key is None or key[0] is not cpu or key[1] is not config:
            self.starts = aarch64_s2_starts(cpu, config)
            self.key = (cpu, config)
        return self.starts


_LAST_STARTS = _LastStarts()


def s2_starts(cpu: CpuModel, config: S2Config) -> tuple[S2Start, ...]:
    """aarch64_s2_starts of an AArch64 configuration, remembered for the
    last (cpu, config) as the walks under it use it."""
    return _LAST_STARTS.get(cpu, config)


def aarch64_s2_translate(cpu: CpuModel, config: S2Config, memory: Memory, ipa: int,
                         access: AtKind) -> list[Outcome]:
    """AArch64.S2Translate for an AT S12E1*/S12E0* probe with stage 1 off.

    Order of checks: T0SZ limits, start level (invalid / inconsistent)
    (aarch64_s2_starts), IPA range (all Translation faults at level 0),
    then the walk, then the permission check, then the hardware Access
    flag / dirty-state update."""
    s1 = aarch64_s1_disabled_output(cpu, ipa)
    if s1 is not None:
        return [_outcome(s1, [R.A64_S1_DISABLED_OUTPUT.text(
            "AArch64.S1DisabledOutput: IPA >= 2^PAMax with stage 1 off")], [])]
    outcomes: list[Outcome] = []
    for start in _LAST_STARTS.get(cpu, config):
        if start.fault is not None:
            outcomes.append(start.fault)
            continue
        assert start.p is not None
        rules = list(start.rules)
        if ipa >> start.p.ia_bits:
            outcomes.append(_outcome(Fault(FaultKind.TRANSLATION, 0), rules + [
                R.A64_S2_IPA_RANGE.text(f"AArch64.IPAIsOutOfRange: IPA >= 2^{start.p.ia_bits}")], []))
            continue
        outcomes.extend(aarch64_s2_walk(cpu, start, memory, ipa, access, rules))
    return outcomes


def aarch64_s2_walk(cpu: CpuModel, start: S2Start, memory: Memory, ipa: int, access: AtKind,
                    rules: list[str]) -> list[Outcome]:
    """AArch64.S2Walk from ``start`` followed by the leaf checks of
    AArch64.S2Translate.

    A VTTBR_EL2 whose RES0 base bits are set (a base not aligned to the
    start-level table) reads its first descriptor at any of the addresses
    ``misaligned_base_reads`` lists."""
    p, start_level = start.p, start.level
    assert p is not None
    geo = geometry(p.granule, p.ia_bits, start_level)
    address = start.base | geo.index(start_level, ipa) * 8
    if aarch64_oa_out_of_range(cpu, p, address):
        # The start-level table address is checked before the first fetch,
        # and the fault is reported at level 0 whatever the start level.
        trace = [TraceStep(start_level, address, None, "not read", "VTTBR_EL2 base beyond PS")]
        return [_outcome(Fault(FaultKind.ADDRESS_SIZE, 0), rules + [R.A64_S2_VTTBR_OA.text(
            "AArch64.S2Walk: start-level table address out of range (AArch64.OAOutOfRange)")],
            trace)]
    outcomes: list[Outcome] = []
    for first, why in misaligned_base_reads(memory, address, start.misaligned, "VTTBR_EL2"):
        outcomes.extend(_aarch64_walk_from(cpu, p, geo, start_level, first, memory, ipa, access,
                                           rules + why))
    return outcomes


def _aarch64_walk_from(cpu: CpuModel, p: S2Params, geo: Geometry, level: int, address: int,
                       memory: Memory, ipa: int, access: AtKind,
                       rules: list[str]) -> list[Outcome]:
    """The descriptor loop of AArch64.S2Walk from the descriptor at
    ``address`` (PA) of the table at ``level``."""
    trace: list[TraceStep] = []
    while True:
        desc = memory.read64(address)
        if desc is None:
            trace.append(TraceStep(level, address, None, "no memory"))
            return [_outcome(Fault(FaultKind.SEA_ON_WALK, level), rules + [R.A64_S2_SEA.text(
                "AArch64.S2Walk: synchronous External abort on the descriptor fetch "
                "(taken as an exception by AT)")], trace)]
        kind = aarch64_decode_descriptor_type(cpu, p, desc, level)
        if kind in ("invalid", "reserved"):
            note = ("bit 0 clear" if kind == "invalid" else
                    "0b01 at level 3" if level == FINAL_LEVEL else f"no block at level {level}")
            trace.append(TraceStep(level, address, desc, kind, note))
            return [_outcome(Fault(FaultKind.TRANSLATION, level), rules + [
                R.A64_S2_DESC[(R.Desc(kind), level)].text(f"AArch64.DecodeDescriptorType: {note}")],
                trace)]
        if kind == "table":
            nxt = aarch64_next_table_base(cpu, p, desc)
            next_address = nxt | geo.index(level + 1, ipa) * 8
            if aarch64_oa_out_of_range(cpu, p, next_address):
                trace.append(TraceStep(level, address, desc, "table",
                                       f"next table {nxt:#x} beyond PS"))
                return [_outcome(Fault(FaultKind.ADDRESS_SIZE, level), rules + [
                    R.A64_S2_NEXT_TABLE_OA.text(
                        "AArch64.S2Walk: next-level table address out of range")], trace)]
            trace.append(TraceStep(level, address, desc, "table", f"next table {nxt:#x}"))
            level, address = level + 1, next_address
            continue
        trace.append(TraceStep(level, address, desc, kind))
        return aarch64_s2_leaf(S2Leaf(cpu, p, geo, level, address, desc, ipa, access,
                                      tuple(trace)), rules)


# ---------------------------------------------------------------------------
# A misaligned translation table base (VTTBR_EL2, VTTBR)
# ---------------------------------------------------------------------------

def aarch64_vttbr_misaligned_bits(cpu: CpuModel, p: S2Params, vttbr: int, start_level: int) -> int:
    """The RES0 base bits of VTTBR_EL2 that are set, from bit 3 up: the bits
    below the start-level table size (AArch64.S2TTBaseAddress aligns them
    away), minus VTTBR_EL2[5:2] when they hold PA[51:48].

    Arm ARM D24.2.225, VTTBR_EL2.BADDR: if a RES0 bit of VTTBR_EL2[47:0] is
    1 the base "might be misaligned, with effects that are CONSTRAINED
    UNPREDICTABLE": the bits are treated as zero, or the address a walk
    computes "can be corrupted in those bits that are nonzero".  Bits
    [2:1] would corrupt the alignment of the descriptor fetch itself,
    which the model cannot express: they are taken as zero (the
    pseudocode's reading) and left out here."""
    kept = aarch64_s2_tt_base_address(cpu, p, mask(47, 1), start_level)
    align = kept & -kept
    high_format = aarch64_s2_tt_base_address(cpu, p, 1 << 2, start_level) != 0
    res0 = mask(47, 3) & (align - 1) & ~(mask(5, 2) if high_format else 0)
    return vttbr & res0


# The rules of a misaligned base per register: treated as zero, corrupted.
_MISALIGNED_RULES = {
    "VTTBR_EL2": (R.A64_S2_VTTBR_MISALIGNED_ZERO, R.A64_S2_VTTBR_MISALIGNED_CORRUPT),
    "VTTBR": (R.A32_S2_VTTBR_MISALIGNED_ZERO, R.A32_S2_VTTBR_MISALIGNED_CORRUPT),
}


def misaligned_base_reads(memory: Memory, address: int, bits: int,
                          register: str) -> list[tuple[int, list[str]]]:
    """The addresses the first descriptor read of a walk may use when the
    table base register has RES0 base ``bits`` set (each of bit 3 or
    above), with the rule for each.

    The bits treated as zero give ``address``, the aligned base plus the
    index.  A walk address corrupted in those bits may read any address
    that differs from it only there: the set {address with ``bits``
    replaced by any subset of them}, up to 2^popcount(bits) words.  What
    the walk does next depends only on the word read and, for the Access
    flag update, on its address: so every such address holding a non-zero
    word is listed, plus one that reads zero from RAM and one with no
    memory behind it where the set has them (all reading zero, or no
    memory, end the walk alike: Translation fault, External abort)."""
    if not bits:
        return [(address, [])]
    rule = f"CONSTRAINED UNPREDICTABLE ({register} base misaligned, RES0 bits {bits:#x} set)"
    zero_id, corrupt_id = _MISALIGNED_RULES[register]
    out: list[tuple[int, list[str]]] = [(address, [zero_id.text(f"{rule}: the bits are treated as zero")])]
    base = address & ~bits
    seen = {address}

    def add(pa: int, what: str) -> None:
        if pa not in seen:
            seen.add(pa)
            out.append((pa, [corrupt_id.text(
                f"{rule}: walk address corrupted in those bits, first descriptor read at {pa:#x} "
                f"({what})")]))

    for region in memory.regions:
        if region.end <= base or region.pa > base | bits:
            continue
        pa = _subset_at_or_above(base, bits, region.pa)
        while pa is not None and pa + 8 <= region.end:
            if memory.read64(pa):
                add(pa, "a non-zero word")
            pa = _subset_at_or_above(base, bits, pa + 1)
    zero = no_memory = None
    for lo, size in memory.ram:
        pa = _subset_at_or_above(base, bits, lo)
        while zero is None and pa is not None and pa < lo + size:
            if memory.read64(pa) == 0:
                zero = pa
            pa = _subset_at_or_above(base, bits, pa + 1)
    gaps, end = [], 0
    for lo, size in sorted(memory.ram):
        gaps.append((end, lo))
        end = lo + size
    gaps.append((end, 1 << 64))
    for lo, hi in gaps:
        pa = _subset_at_or_above(base, bits, lo)
        if no_memory is None and pa is not None and pa < hi:
            no_memory = pa
    if zero is not None:
        add(zero, "zero: an invalid descriptor")
    if no_memory is not None:
        add(no_memory, "no memory")
    return out


def _subset_at_or_above(base: int, free: int, target: int) -> int | None:
    """The smallest ``base | s`` with ``s`` a subset of ``free`` that is at
    least ``target`` (``base & free`` is 0), or None.  Bits are chosen from
    the top: follow ``target`` while possible; the answer is either
    ``target`` itself or the lowest point where a free bit can rise above
    it, with the smallest completion below."""
    if target <= base:
        return base
    if target > base | free:
        return None
    prefix, best = 0, None
    for i in range(max(target.bit_length(), (base | free).bit_length()) - 1, -1, -1):
        bit_i = 1 << i
        want = target & bit_i
        low = base & (bit_i - 1)            # smallest completion below bit i
        if free & bit_i:
            if not want:
                best = prefix | bit_i | low
            prefix |= want
        elif base & bit_i and not want:
            return prefix | bit_i | low
        elif want and not base & bit_i:
            return best
        else:
            prefix |= want
    return prefix


@dataclasses.dataclass(frozen=True)
class S2Leaf:
    """A leaf descriptor AArch64.S2Walk has reached, with everything its
    leaf checks read: the CPU, the walk parameters (S2TTWParams), the
    geometry, the descriptor's ``level``, its PA ``address`` and value
    ``desc``, the probed ``ipa``, the AT ``access`` and the descriptor
    reads that led here (``trace``)."""

    cpu: CpuModel
    params: S2Params
    geo: Geometry
    level: int
    address: int
    desc: int
    ipa: int
    access: AtKind
    trace: tuple[TraceStep, ...]

    @property
    def tsize(self) -> int:
        """log2 of the bytes the leaf maps (TranslationSize)."""
        return self.geo.block_bits(self.level)

    @property
    def contiguous(self) -> int:
        """The contiguous bit as it acts (AArch64.ContiguousBit)."""
        return aarch64_contiguous_bit(self.params.granule, self.level, self.desc)

    @property
    def base(self) -> int:
        """The leaf's output address base (AArch64.LeafBase)."""
        return aarch64_leaf_base(self.cpu, self.params, self.desc, self.level)

    def outcome(self, result: Result, rules: Iterable[str],
                writes: tuple[DescriptorWrite, ...] = ()) -> Outcome:
        """An outcome reached at this leaf, carrying its trace."""
        return Outcome(result=result, rules=tuple(rules), writes=writes, trace=self.trace)


def aarch64_s2_leaf(leaf: S2Leaf, rules: list[str]) -> list[Outcome]:
    """The leaf checks, in the pseudocode's order: contiguous-bit and nT
    faults, output address size, Access flag, permission; then the hardware
    Access flag update (AArch64.S2Walk, AArch64.S2Translate)."""
    if leaf.level < FINAL_LEVEL and leaf.cpu.bbm in (1, 2) and bit(leaf.desc, 16):
        # AArch64.BlocknTFaults: with FEAT_BBM level 1 or 2 it is
        # IMPLEMENTATION DEFINED whether a block with nT = 1 faults.
        nt_fault = leaf.outcome(Fault(FaultKind.TRANSLATION, leaf.level), rules + [
            R.A64_S2_NT_FAULT.text(
                "IMPLEMENTATION DEFINED (AArch64.BlocknTFaults): block with nT = 1 faults")])
        rules = rules + [R.A64_S2_NT_IGNORED.text(
            "IMPLEMENTATION DEFINED (AArch64.BlocknTFaults): nT = 1 ignored")]
        return [nt_fault] + aarch64_s2_leaf_oa(leaf, rules)
    return aarch64_s2_leaf_oa(leaf, rules)


def aarch64_s2_leaf_oa(leaf: S2Leaf, rules: list[str], checked: bool = False) -> list[Outcome]:
    """StageOA and the contiguous-bit rules, then the remaining leaf checks.
    ``checked``: the ContiguousBitFaults choice has been made already."""
    csize = contiguous_size(leaf.params.granule, leaf.level) if leaf.contiguous else 0
    if csize:
        if leaf.tsize + csize > leaf.params.ia_bits and not checked:
            # AArch64.ContiguousBitFaults: a contiguous range larger than the
            # input address space may fault (IMPLEMENTATION DEFINED); if it
            # does not, the walk goes on with the contiguous bit set (StageOA).
            fault = leaf.outcome(Fault(FaultKind.TRANSLATION, leaf.level), rules + [
                R.A64_S2_CONTIG_FAULT.text(
                    "IMPLEMENTATION DEFINED (AArch64.ContiguousBitFaults): contiguous range "
                    "larger than the IPA space faults")])
            rules = rules + [R.A64_S2_CONTIG_NO_FAULT.text(
                "IMPLEMENTATION DEFINED (AArch64.ContiguousBitFaults): no fault")]
            return [fault] + aarch64_s2_leaf_oa(leaf, rules, checked=True)
    return _leaf_branches(leaf, stage_oa_choices(leaf.base, leaf.ipa, leaf.tsize, csize,
                                                 leaf.level), rules)


def stage_oa_choices(base: int, ipa: int, tsize: int, csize: int,
                     level: int) -> list[tuple[int, list[str]]]:
    """StageOA, and the other output address a misprogrammed contiguous set
    permits, each with the rules that permit it.

    ``base`` is the leaf's output address (bits below ``tsize`` zero),
    ``csize`` log2 of the entries of its contiguous set (0 without the
    Contiguous bit), ``level`` the leaf's level.  StageOA keeps ``base`` from bit tsize + csize up and
    takes the bits below from the IPA.  A set whose entries disagree is
    misprogrammed: a TLB lookup may give an OA consistent with any of the
    programmed entries (Arm ARM D8.7.1.1, rule RJQQTC), so the entry's
    own OA (``base`` plus the IPA bits below tsize) is also permitted."""
    own = base | ipa & ((1 << tsize) - 1)
    if not csize:
        return [(own, [])]
    span = tsize + csize
    stage_oa = base & ~((1 << span) - 1) | ipa & ((1 << span) - 1)
    out: list[tuple[int, list[str]]] = [(stage_oa, [R.S2_STAGE_OA_CONTIG[level].text(
        "StageOA: contiguous range, OA low bits from the IPA")])]
    if own != stage_oa:
        out.append((own, [R.S2_CONTIG_MISPROGRAMMED.text(
            "CONSTRAINED UNPREDICTABLE: misprogrammed contiguous set, OA from the descriptor "
            "itself")]))
    return out


def _leaf_branches(leaf: S2Leaf, branches: list[tuple[int, list[str]]],
                   rules: list[str]) -> list[Outcome]:
    """For each candidate output address, the remaining leaf checks of
    AArch64.S2Walk in order: AArch64.OAOutOfRange (Address size fault at the
    leaf level), then the Access flag (AF = 0 with VTCR_EL2.HA = 0 faults),
    then AArch64.S2CheckPermissions and the hardware updates."""
    cpu, p, level = leaf.cpu, leaf.params, leaf.level
    outcomes: list[Outcome] = []
    for oa, oa_rules in branches:
        r = rules + oa_rules
        if aarch64_oa_out_of_range(cpu, p, oa):
            outcomes.append(leaf.outcome(Fault(FaultKind.ADDRESS_SIZE, level), r + [
                R.A64_S2_OUTPUT_OA.text(
                    f"AArch64.S2Walk: output address {oa:#x} beyond "
                    f"{aarch64_physical_address_size(cpu, p.ps, p.granule)} bits")]))
            continue
        af = bit(leaf.desc, 10)
        if af == 0 and p.ha == 0:
            outcomes.append(leaf.outcome(Fault(FaultKind.ACCESS_FLAG, level), r + [
                R.A64_S2_AF_FAULT.text("AArch64.S2Walk: AF = 0 and VTCR_EL2.HA = 0")]))
            continue
        outcomes.extend(aarch64_s2_permissions_and_updates(leaf, oa, r))
    return outcomes


def aarch64_s2_permissions_and_updates(leaf: S2Leaf, oa: int, rules: list[str]) -> list[Outcome]:
    """AArch64.S2CheckPermissions for an AT probe, then the hardware updates.

    An AT instruction's access descriptor (CreateAccDescAT) has read = NOT
    write: AT ...R checks read permission only, AT ...W write permission
    only; execute permission is never checked.  The permissions come from
    AArch64.S2ComputePermissions (see ``aarch64_s2_data_permissions``).
    With S2PIE, a write through a writable-clean descriptor (Dirty = 0)
    then takes a Permission fault unless VTCR_EL2.{HA, HD} = {1, 1}
    (the dirty-state check at the end of AArch64.S2CheckPermissions).

    AF update (HA = 1, AF = 0): after a successful lookup AT instructions
    are permitted but not required to set the AF; on a Permission fault
    setting it is CONSTRAINED UNPREDICTABLE (Unpredictable_AFUPDATE,
    AArch64.SettingAccessFlagPermitted).  Dirty state (S2AP[1], or Dirty
    with S2PIE, := 1) is never set by an AT instruction (AArch64.S2Translate
    excludes AccessType_AT; Arm ARM RRKMHW: the writable-clean descriptor is
    considered to grant write access)."""
    p, desc, access, level = leaf.params, leaf.desc, leaf.access, leaf.level
    perms = aarch64_s2_data_permissions(leaf)
    af_clear = bit(desc, 10) == 0 and p.ha
    with_af = DescriptorWrite(leaf.address, desc, desc | DESC_AF)
    what = "write" if access.is_write else "read"
    granted = perms.w if access.is_write else perms.r
    checks: list[str] = [perms.index] if perms.index else []
    checks.append(perms.decided_by.text(
        f"AArch64.S2CheckPermissions: {perms.source} {'permits' if granted else 'denies'} {what}"))
    denied = not granted
    if granted and access.is_write and p.s2pie and not (p.ha and p.hd) and bit(desc, 7) == 0:
        denied = True
        checks.append(R.A64_S2PIE_DIRTY_FAULT.text(
            "AArch64.S2CheckPermissions: write through a writable-clean descriptor "
            "(S2PIE, Dirty = 0) with VTCR_EL2.{HA, HD} != {1, 1}: Permission fault "
            "due to dirty state"))
    if denied:
        fault = Fault(FaultKind.PERMISSION, level)
        r = rules + checks
        if not af_clear:
            return [leaf.outcome(fault, r)]
        return [leaf.outcome(fault, r + [R.A64_S2_AFUPDATE_NOT_SET.text(
                    "CONSTRAINED UNPREDICTABLE (Unpredictable_AFUPDATE): AF not set")]),
                leaf.outcome(fault, r + [R.A64_S2_AFUPDATE_SET.text(
                    "CONSTRAINED UNPREDICTABLE (Unpredictable_AFUPDATE): AF set")], (with_af,))]
    result = _leaf_translation(leaf, oa)
    rules = rules + checks
    if access.is_write and p.s2pie and bit(desc, 7) == 0:
        rules = rules + [R.A64_S2PIE_LEFT_CLEAN.text(
            "AArch64.S2Translate: HA = HD = 1 and AT never updates the dirty "
            "state: the writable-clean descriptor is left clean")]
    if not af_clear:
        return [leaf.outcome(result, rules + [R.A64_S2_TRANSLATION.text("AArch64.S2Walk: translation")])]
    return [leaf.outcome(result, rules + [R.A64_S2_AF_AT_SETS.text(
                "hardware Access flag update: AT sets AF")], (with_af,)),
            leaf.outcome(result, rules + [R.A64_S2_AF_AT_NOT_SET.text(
                "hardware Access flag update: AT is permitted not to set AF")])]


@dataclasses.dataclass(frozen=True)
class S2DataPermissions:
    """The data-access part of S2AccessControls for one leaf: read ``r``,
    write ``w``, and ``source``, the descriptor field (and S2PIR_EL2 entry)
    they come from, for the rule texts; ``decided_by`` the rule that
    decides the leaf's access (S2AP or S2PIR_EL2 encoding, per direction;
    DBM when it makes the write permitted) and, with S2PIE, ``index`` the
    rule of the PIIndex that selected the encoding."""

    r: int
    w: int
    source: str
    decided_by: R.RuleId
    index: R.Rule | None = None


def aarch64_s2_data_permissions(leaf: S2Leaf) -> S2DataPermissions:
    """AArch64.S2ApplyOutputPerms then AArch64.S2ComputePermissions, for
    data accesses.

    Direct permissions (S2PIE = 0, AArch64.S2DirectBasePermissions): R =
    S2AP[0], W = S2AP[1], where S2AP[1] reads as 1 when HA, HD and DBM
    (bit 51) are all 1.  Indirect permissions (S2PIE = 1,
    AArch64.S2IndirectBasePermissions): PIIndex = descriptor bits
    [54,53,51,6] selects the 4-bit S2PIR_EL2.Perm<PIIndex>.  Stage-2
    Overlay permissions (FEAT_S2POE, VTCR_EL2.S2POE) are not modelled:
    S2Config never sets S2POE, so they are disabled."""
    p, desc, write = leaf.params, leaf.desc, leaf.access.is_write
    if p.s2pie:
        index = aarch64_s2_pi_index(desc)
        base = aarch64_s2_indirect_base_permissions(s2pir_perm(p.s2pir, index))
        return S2DataPermissions(
            base.r, base.w, f"PIIndex={index} -> S2PIR_EL2.Perm{index}={base.encoding:04b} "
                            f"({base.name})",
            R.A64_S2PIE_PERM[(base.encoding, write)],
            R.A64_S2PIE_INDEX[index].text(
                f"AArch64.S2ApplyOutputPerms: PIIndex={index} selects S2PIR_EL2.Perm{index}"))
    s2ap = field(desc, 7, 6)
    dbm_writable = p.ha and p.hd and bit(desc, 51)
    if write and not s2ap >> 1 and dbm_writable:
        return S2DataPermissions(s2ap & 1, 1, f"S2AP={s2ap:02b} with DBM = 1 and VTCR_EL2.HA = "
                                              "HD = 1 (writable-clean)", R.A64_S2_DBM_WRITABLE)
    return S2DataPermissions(s2ap & 1, (s2ap >> 1) | dbm_writable, f"S2AP={s2ap:02b}",
                             R.A64_S2_S2AP[(s2ap, write)])


def aarch64_s2_pi_index(desc: int) -> int:
    """PIIndex of a stage-2 Block or Page descriptor with S2PIE
    (AArch64.S2ApplyOutputPerms, VMSAv8-64): descriptor bits [54:53] are
    PIIndex[3:2], bit 51 PIIndex[1], bit 6 PIIndex[0]."""
    return field(desc, 54, 53) << 2 | bit(desc, 51) << 1 | bit(desc, 6)


def s2pir_perm(s2pir: int, index: int) -> int:
    """S2PIR_EL2.Perm<index>: S2BasePerm is S2PIR_EL2[index*4+3 : index*4]
    (Arm ARM D8.4.2.2, rule RCYQGN; AArch64.S2ApplyOutputPerms)."""
    return field(s2pir, 4 * index + 3, 4 * index)


@dataclasses.dataclass(frozen=True)
class S2BasePerm:
    """One S2PIR_EL2.Perm<m> encoding, as AArch64.S2IndirectBasePermissions
    decodes it: data read ``r`` and write ``w``, privileged (EL1) and
    unprivileged (EL0) execute ``px``/``ux``.  ``mro``: Mostly Read Only,
    W = 0 while RCW and MMU writes (stage-1 hardware updates) are allowed;
    the MRO-TL variants add TopLevel permissions (FEAT_THE), which matter
    only to stage-1 table walks."""

    encoding: int
    name: str
    r: int
    w: int
    px: int
    ux: int
    mro: bool = False


# S2PIR_EL2.Perm<m> (Arm ARM D8.4.2.2, Table D8-82; AArch64.S2IndirectBasePermissions).
S2_BASE_PERMS: tuple[S2BasePerm, ...] = (
    S2BasePerm(0b0000, "NoAccess", 0, 0, 0, 0),
    S2BasePerm(0b0001, "Reserved, NoAccess", 0, 0, 0, 0),
    S2BasePerm(0b0010, "MRO", 1, 0, 0, 0, mro=True),
    S2BasePerm(0b0011, "MRO-TL1", 1, 0, 0, 0, mro=True),
    S2BasePerm(0b0100, "WO", 0, 1, 0, 0),
    S2BasePerm(0b0101, "Reserved, NoAccess", 0, 0, 0, 0),
    S2BasePerm(0b0110, "MRO-TL0", 1, 0, 0, 0, mro=True),
    S2BasePerm(0b0111, "MRO-TL01", 1, 0, 0, 0, mro=True),
    S2BasePerm(0b1000, "RO", 1, 0, 0, 0),
    S2BasePerm(0b1001, "RO+uX", 1, 0, 0, 1),
    S2BasePerm(0b1010, "RO+pX", 1, 0, 1, 0),
    S2BasePerm(0b1011, "RO+puX", 1, 0, 1, 1),
    S2BasePerm(0b1100, "RW", 1, 1, 0, 0),
    S2BasePerm(0b1101, "RW+uX", 1, 1, 0, 1),
    S2BasePerm(0b1110, "RW+pX", 1, 1, 1, 0),
    S2BasePerm(0b1111, "RW+puX", 1, 1, 1, 1),
)


def aarch64_s2_indirect_base_permissions(perm: int) -> S2BasePerm:
    """AArch64.S2IndirectBasePermissions: the stage-2 Base permissions a
    4-bit S2PIR_EL2.Perm<m> value grants."""
    return S2_BASE_PERMS[perm]


def _leaf_translation(leaf: S2Leaf, pa: int) -> Translation:
    """The stage-2 leaf attributes (AArch64.S2NextWalkStateLeaf,
    AArch64.S2ApplyOutputPerms): MemAttr [5:2], SH [9:8] (VTCR.SH0 with DS
    = 1), AF [10]; with Direct permissions S2AP [7:6], DBM [51], XN [54]
    and, with FEAT_XNX, XNX [53]; with S2PIE PIIndex, the S2PIR_EL2 entry
    it selects and Dirty [7] instead."""
    desc, p = leaf.desc, leaf.params
    sh = p.sh0 if p.ds else field(desc, 9, 8)
    if p.s2pie:
        index = aarch64_s2_pi_index(desc)
        return Translation(pa, leaf.level, leaf.tsize, s2ap=0, xn=0, memattr=field(desc, 5, 2),
                           sh=sh, af=bit(desc, 10), contiguous=leaf.contiguous, dbm=0,
                           pi_index=index, base_perm=s2pir_perm(p.s2pir, index),
                           dirty=bit(desc, 7))
    xn = bit(desc, 54) << 1 | (bit(desc, 53) if leaf.cpu.feat_xnx else 0)
    return Translation(pa, leaf.level, leaf.tsize, s2ap=field(desc, 7, 6), xn=xn,
                       memattr=field(desc, 5, 2), sh=sh, af=bit(desc, 10),
                       contiguous=leaf.contiguous, dbm=bit(desc, 51))


# ---------------------------------------------------------------------------
# AArch32 (LPAE stage 2, EL2 in AArch32)
# ---------------------------------------------------------------------------

def aarch32_s2_translate(cpu: CpuModel, config: S2Config, memory: Memory, ipa: int,
                         access: AtKind) -> list[Outcome]:
    """AArch32.S2Translate / AArch32.GetS2TTWParams for ATS12NSO* with stage 1 off.

    VTCR.S must equal T0SZ[3]; when it does not, T0SZ is an UNKNOWN value
    (CONSTRAINED UNPREDICTABLE, Unpredictable_RESVTCRS) and every T0SZ is a
    permitted interpretation.  Configuration faults (IPA out of range, SL0
    invalid or inconsistent) are Translation faults at level 1, not 0."""
    outcomes: list[Outcome] = []
    for t0sz, choice in aarch32_t0sz_choices(config):
        rules = list(choice)
        ia_bits = 32 - t0sz
        if ia_bits < 40 and ipa >> ia_bits:
            outcomes.append(_outcome(Fault(FaultKind.TRANSLATION, 1), rules + [
                R.A32_S2_IPA_RANGE.text(f"AArch32.IPAIsOutOfRange: IPA >= 2^{ia_bits}")], []))
            continue
        outcomes.extend(aarch32_s2_walk(cpu, config, t0sz, memory, ipa, access, rules))
    return outcomes


def aarch32_t0sz_choices(config: S2Config) -> list[tuple[int, tuple[str, ...]]]:
    """AArch32.GetS2TTWParams: the T0SZ values the walk may use, with the
    choice that permits each.  VTCR.S must equal T0SZ[3]; otherwise T0SZ is
    an UNKNOWN value (CONSTRAINED UNPREDICTABLE, Unpredictable_RESVTCRS)."""
    s = config.s if config.s is not None else (config.t0sz >> 3) & 1
    if s == (config.t0sz >> 3) & 1:
        return [(config.t0sz, ())]
    return [(t, (R.A32_S2_RESVTCRS.text(
        f"CONSTRAINED UNPREDICTABLE (Unpredictable_RESVTCRS): VTCR.S != T0SZ[3], T0SZ taken as {t}"),))
        for t in range(-8, 8)]


def aarch32_v7_unpredictable(cpu: CpuModel, config: S2Config) -> tuple[str, ...]:
    """The ways ``config`` is UNPREDICTABLE on an ARMv7-A LPAE core, where
    the architecture puts no constraint on the result.

    Arm ARM (DDI 0487) K1.1 lists the AArch32 behaviours that "are
    UNPREDICTABLE in Armv7" and the constraints Armv8 puts on them; among
    them K1.1.32.1 (VTCR.S not equal to T0SZ[3]: Armv8 takes T0SZ as
    UNKNOWN), K1.1.32.2 (VTCR.SL0 reserved or inconsistent with T0SZ:
    Armv8 gives a stage 2 level 1 Translation fault) and K1.1.15 (a
    misaligned VTTBR base: Armv8 treats the bits as zero or corrupts the
    walk address in them).  An ARMv7 core (arch_version 7) has none of
    those constraints.  The ARMv7 manual (DDI 0406C) itself was not
    reachable when this was written; K1.1 is the primary source used."""
    if cpu.arch_version >= 8:
        return ()
    found: list[str] = []
    if config.s is not None and config.s != (config.t0sz >> 3) & 1:
        found.append(R.A32_V7_VTCR_S.text(
            "UNPREDICTABLE (ARMv7; Arm ARM K1.1.32.1): VTCR.S != T0SZ[3]"))
    if aarch32_sl0_reserved(config.sl0):
        found.append(R.A32_V7_SL0_RESERVED.text(
            f"UNPREDICTABLE (ARMv7; Arm ARM K1.1.32.2): VTCR.SL0={config.sl0:02b} is reserved"))
        return tuple(found)
    start = 2 - config.sl0
    why = s2_inconsistent_sl(Granule.G4K, 32 - config.t0sz, start)
    if why:
        found.append(R.A32_V7_SL_INCONSISTENT.text(
            f"UNPREDICTABLE (ARMv7; Arm ARM K1.1.32.2): VTCR.{{SL0, T0SZ}} inconsistent: {why}"))
        return tuple(found)
    root_bytes = geometry(Granule.G4K, 32 - config.t0sz, start).root_bytes
    if config.vttbr & mask(39, 3) & (root_bytes - 1):
        found.append(R.A32_V7_VTTBR_MISALIGNED.text(
            "UNPREDICTABLE (ARMv7; Arm ARM K1.1.15): VTTBR base misaligned"))
    return tuple(found)


def aarch32_sl0_reserved(sl0: int) -> bool:
    """AArch32.S2Walk: SL0 = 0b1x names no start level (a level-1 Translation fault)."""
    return bool(sl0 & 0b10)


# Where a walk meets address bits [47:40] (the ``what`` of
# aarch32_high_address_bits, per stage) -> the rule family's key.
_HIGH_BITS_WHERE = {
    2: {"VTTBR": "vttbr", "table descriptor": "table", "output address": "output"},
    1: {"TTBR": "ttbr", "table descriptor": "table", "block descriptor": "output",
        "page descriptor": "output"},
}


def aarch32_high_address_bits(cpu: CpuModel, value: int, what: str,
                              stage: int = 2) -> list[str] | None:
    """The AArch32 rule for address bits [47:40] of VTTBR or a descriptor
    (of stage ``stage``; TTBR and stage-1 descriptors with 1).

    ARMv8 AArch32: non-zero bits are an Address size fault (AArch32.S2Walk).
    ARMv7 LPAE: the bits are UNK/SBZP; a non-zero value is UNPREDICTABLE, so
    both the ARMv8 fault and ignoring them are accepted.  Returns the rules
    under which the walk faults (empty list: no fault) or None when the bits
    are zero."""
    if field(value, 47, 40) == 0:
        return None
    where = _HIGH_BITS_WHERE[stage][what]
    family = R.A32_S2_HIGH_BITS if stage == 2 else R.A32_S1_HIGH_BITS
    if cpu.arch_version >= 8:
        return [family[(where, R.HighBits.V8_FAULT)].text(
            f"AArch32.S2Walk: {what} bits [47:40] non-zero")]
    return [family[(where, R.HighBits.V7_FAULT)].text(
                f"ARMv7 LPAE: {what} bits [47:40] are UNK/SBZP, UNPREDICTABLE if non-zero: fault"),
            family[(where, R.HighBits.V7_IGNORED)].text(
                f"ARMv7 LPAE: {what} bits [47:40] are UNK/SBZP, UNPREDICTABLE if non-zero: "
                "ignored")]


def aarch32_s2_walk(cpu: CpuModel, config: S2Config, t0sz: int, memory: Memory, ipa: int,
                    access: AtKind, rules: list[str]) -> list[Outcome]:
    """AArch32.S2Walk: 4K granule, 40-bit output, start level 2 - SL0."""
    ia_bits = 32 - t0sz
    if aarch32_sl0_reserved(config.sl0):
        return [_outcome(Fault(FaultKind.TRANSLATION, 1), rules + [
            R.A32_S2_SL0_RESERVED.text(f"AArch32.S2Walk: SL0={config.sl0:02b} is reserved")], [])]
    start = 2 - config.sl0
    why = s2_inconsistent_sl(Granule.G4K, ia_bits, start)
    if why:
        return [_outcome(Fault(FaultKind.TRANSLATION, 1), rules + [
            R.A32_S2_SL_INCONSISTENT.text(f"AArch32.S2InconsistentSL: {why}")], [])]
    geo = geometry(Granule.G4K, ia_bits, start)
    outcomes: list[Outcome] = []
    high = aarch32_high_address_bits(cpu, config.vttbr, "VTTBR")
    if high:
        outcomes.append(_outcome(Fault(FaultKind.ADDRESS_SIZE, 0), rules + high[:1], []))
        if len(high) == 1:
            return outcomes
        rules = rules + high[1:]
    baselsb = geo.start_bits + 3
    address = (field(config.vttbr, 39, baselsb) << baselsb) | geo.index(start, ipa) * 8
    # Arm ARM G8.2.173, VTTBR.BADDR: bits [x-1:3] not all zero is a
    # misaligned base, CONSTRAINED UNPREDICTABLE as for VTTBR_EL2.
    misaligned = config.vttbr & mask(39, 3) & ((1 << baselsb) - 1)
    for first, choice in misaligned_base_reads(memory, address, misaligned, "VTTBR"):
        outcomes.extend(_aarch32_walk_from(cpu, geo, ia_bits, start, first, memory, ipa, access,
                                           rules + choice))
    return outcomes


def _aarch32_walk_from(cpu: CpuModel, geo: Geometry, ia_bits: int, level: int, address: int,
                       memory: Memory, ipa: int, access: AtKind,
                       rules: list[str]) -> list[Outcome]:
    """The descriptor loop of AArch32.S2Walk and the leaf checks of
    AArch32.S2Translate, from the descriptor at ``address`` (PA) of the
    table at ``level``."""
    trace: list[TraceStep] = []
    outcomes: list[Outcome] = []
    while True:
        desc = memory.read64(address)
        if desc is None:
            trace.append(TraceStep(level, address, None, "no memory"))
            outcomes.append(_outcome(Fault(FaultKind.SEA_ON_WALK, level), rules + [
                R.A32_S2_SEA.text(
                    "AArch32.S2Walk: synchronous External abort on the descriptor fetch")], trace))
            return outcomes
        low = desc & 0b11
        if low == 0b11 and level < FINAL_LEVEL:
            high = aarch32_high_address_bits(cpu, desc, "table descriptor")
            nxt = field(desc, 39, 12) << 12
            trace.append(TraceStep(level, address, desc, "table", f"next table {nxt:#x}"))
            if high:
                outcomes.append(_outcome(Fault(FaultKind.ADDRESS_SIZE, level), rules + high[:1], trace))
                if len(high) == 1:
                    return outcomes
                rules = rules + high[1:]
            level, address = level + 1, nxt | geo.index(level + 1, ipa) * 8
            continue
        if not (low == 0b11 or (low == 0b01 and level < FINAL_LEVEL)):
            kind = R.Desc.INVALID if not low & 1 else R.Desc.RESERVED
            note = "bit 0 clear" if not low & 1 else "0b01 at level 3"
            trace.append(TraceStep(level, address, desc, kind.value, note))
            outcomes.append(_outcome(Fault(FaultKind.TRANSLATION, level), rules + [
                R.A32_S2_DESC[(kind, level)].text(f"AArch32.DecodeDescriptorTypeLD: {note}")],
                trace))
            return outcomes
        trace.append(TraceStep(level, address, desc, "page" if level == FINAL_LEVEL else "block"))
        lsb = geo.block_bits(level)
        if bit(desc, 52) and lsb + contiguous_size(Granule.G4K, level) > ia_bits:
            # Arm ARM G5.5.5.1 (Possible errors in programming the translation
            # table registers): for a contiguous set larger than the input
            # address size an implementation might generate a Translation
            # fault, or not (as AArch64.ContiguousBitFaults).
            outcomes.append(_outcome(Fault(FaultKind.TRANSLATION, level), rules + [
                R.A32_S2_CONTIG_FAULT.text(
                    "IMPLEMENTATION DEFINED (Arm ARM G5.5.5.1): contiguous range larger than the "
                    "IPA space faults")], trace))
            rules = rules + [R.A32_S2_CONTIG_NO_FAULT.text(
                "IMPLEMENTATION DEFINED (Arm ARM G5.5.5.1): no fault")]
        high = aarch32_high_address_bits(cpu, desc, "output address")
        if high:
            outcomes.append(_outcome(Fault(FaultKind.ADDRESS_SIZE, level), rules + high[:1], trace))
            if len(high) == 1:
                return outcomes
            rules = rules + high[1:]
        if not bit(desc, 10):
            outcomes.append(_outcome(Fault(FaultKind.ACCESS_FLAG, level), rules + [
                R.A32_S2_AF_FAULT.text("AArch32.S2Walk: AF = 0 (no hardware update)")], trace))
            return outcomes
        s2ap = field(desc, 7, 6)
        denied = not (s2ap >> 1) if access.is_write else not (s2ap & 1)
        what = "write" if access.is_write else "read"
        check = R.A32_S2_S2AP[(s2ap, access.is_write)].text(
            f"AArch32.S2HasPermissionsFault: S2AP={s2ap:02b} {'denies' if denied else 'permits'} "
            f"{what}")
        if denied:
            outcomes.append(_outcome(Fault(FaultKind.PERMISSION, level), rules + [check], trace))
            return outcomes
        rules = rules + [check]
        # XN = desc[54]; XNX = desc[53] only with FEAT_XNX (AArch32.S2Walk).
        xn = bit(desc, 54) << 1 | (bit(desc, 53) if cpu.feat_xnx else 0)
        # AArch32.S2Walk sets walkstate.contiguous = desc[52] and
        # AArch32.S2Translate takes the OA from StageOA, as on AArch64; the
        # 4K ContiguousSize is 4 at every level.
        csize = contiguous_size(Granule.G4K, level) if bit(desc, 52) else 0
        for oa, oa_rules in stage_oa_choices(field(desc, 39, lsb) << lsb, ipa, lsb, csize, level):
            result = Translation(pa=oa, level=level, block_bits=lsb, s2ap=s2ap,
                                 xn=xn, memattr=field(desc, 5, 2), sh=field(desc, 9, 8),
                                 af=1, contiguous=bit(desc, 52), dbm=0)
            outcomes.append(_outcome(result, rules + oa_rules + [
                R.A32_S2_TRANSLATION.text("AArch32.S2Walk: translation")], trace))
        return outcomes


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

def walk(cpu: CpuModel, config: S2Config, memory: Memory, ipa: int, access: AtKind) -> WalkResult:
    """Every outcome the architecture permits for ``access`` at ``ipa``.

    ``config`` carries VTCR and VTTBR; ``memory`` the table images over RAM.
    Identical outcomes reached under different choices are merged, their
    rules joined.  For a configuration an ARMv7 core leaves UNPREDICTABLE
    the result says so (WalkResult.unpredictable, see
    aarch32_v7_unpredictable): any observation is then permitted."""
    if config.arch is not cpu.arch:
        raise ValueError(f"{cpu.name} is {cpu.arch.value}, config is {config.arch.value}")
    unpredictable: tuple[str, ...] = ()
    if config.arch is Arch.AARCH64:
        outcomes = aarch64_s2_translate(cpu, config, memory, ipa, access)
    else:
        outcomes = aarch32_s2_translate(cpu, config, memory, ipa, access)
        unpredictable = aarch32_v7_unpredictable(cpu, config)
    if len(outcomes) == 1:
        # Nothing to merge (most walks): no outcome is hashed.
        return WalkResult(tuple(outcomes), unpredictable)
    merged: dict[tuple, Outcome] = {}
    for o in outcomes:
        key = (o.result, o.writes)
        if key in merged:
            prev = merged[key]
            extra = tuple(r for r in o.rules if r not in prev.rules)
            merged[key] = dataclasses.replace(prev, rules=prev.rules + extra)
        else:
            merged[key] = o
    return WalkResult(tuple(merged.values()), unpredictable)
