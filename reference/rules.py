"""The architecture rules the reference applies, each with a stable id.

Every rule text the reference attaches to a permitted outcome (a
pseudocode check, an IMPLEMENTATION DEFINED or CONSTRAINED UNPREDICTABLE
choice) is a :class:`Rule`: the human text, as reports show it, carrying
the :class:`RuleId` of the rule it states.  A ``Rule`` is a ``str``, so
everything that joins, compares or writes rule texts keeps working; the id
is what coverage counts (reference.coverage, harness.coverage).

A ``RuleId`` names the pseudocode function that decides, says in one line
what the rule is, which probe kinds can reach it (:class:`Probe`) and in
which configuration classes it can apply (:class:`ConfigClass`: arch,
granule, start level, DS, CPU model; a rule decided before any descriptor
is read -- TxSZ, SL0, TG0 -- is counted per (arch, CPU) instead,
:class:`Cell`).  Keys are stable: reports, results files and the list of
rules a run cannot reach refer to them.

Some rules are families with one id per level or per encoding (a
descriptor type at each level, a PAR fault code at each level, each
S2PIR_EL2 encoding): ``RULE[level]``.  Ids derived from what an outcome is
rather than from a text -- the descriptor type of each step of the walk
trace and the PAR (or exception) encoding the outcome predicts -- are
attached by reference.coverage, from the same registry.

Pure: no I/O; imports nothing of the walker (the walker imports this).
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Callable, Iterable, Mapping, TypeVar

from .arch import Arch, Granule
from .cpus import CpuModel


class Probe(enum.Enum):
    """What kind of probe can reach a rule."""

    S2_AT = "stage-2 AT"        # AT S12E*/ATS12NSO* with stage 1 off: the matrix's cases
    S1_AT = "stage-1 AT"        # AT with stage 1 on (reference.at, reference.generate_s1)
    ACCESS = "access"           # loads, stores, fetches from EL1 (reference.access)


ALL_PROBES = frozenset(Probe)
S1_ONLY = frozenset({Probe.S1_AT})
ACCESS_ONLY = frozenset({Probe.ACCESS})


class Cell(enum.Enum):
    """The configuration cells a rule's coverage is counted in."""

    CPU = "cpu"          # per (arch, CPU model): configuration rules
    CLASS = "class"      # per ConfigClass: rules of the walk


@dataclasses.dataclass(frozen=True, order=True)
class ConfigClass:
    """A configuration class: architecture, granule (None: TG0 names none),
    start level (None: no valid start level), effective DS, CPU model."""

    arch: str
    granule: str | None
    start_level: int | None
    ds: int
    cpu: str

    def cell(self, kind: Cell) -> str:
        """The label of the cell of this class that a rule of ``kind`` is
        counted in."""
        if kind is Cell.CPU:
            return f"{self.arch} {self.cpu}"
        level = "L?" if self.start_level is None else f"L{self.start_level}"
        return f"{self.arch} {self.cpu} {self.granule or 'tg0-reserved'} {level} DS{self.ds}"


@dataclasses.dataclass(frozen=True)
class ClassFacts:
    """What the applicability conditions read about a class: the class,
    the CPU model, the granule and the levels at which a block descriptor
    is allowed (AArch64.BlockDescSupported; 1 and 2 on AArch32)."""

    cls: ConfigClass
    cpu: CpuModel
    granule: Granule | None
    block_levels: frozenset[int]

    @property
    def arch(self) -> Arch:
        return self.cpu.arch

    @property
    def start(self) -> int | None:
        return self.cls.start_level


@dataclasses.dataclass(frozen=True)
class Condition:
    """One condition of a rule's scope: its text and its test."""

    text: str
    test: Callable[[ClassFacts], bool]


@dataclasses.dataclass(frozen=True, eq=False)
class RuleId:
    """One architecture rule.  ``key`` is stable; ``function`` the
    pseudocode function (or Arm ARM rule) that decides; ``meaning`` one
    line; ``probes`` the probe kinds that can reach it; ``cell`` where its
    coverage is counted; ``conditions`` the configuration classes it can
    apply to (all must hold); ``marker`` a text every Rule of it contains
    (tests check the tag against the text)."""

    key: str
    function: str
    meaning: str
    probes: frozenset[Probe]
    cell: Cell
    conditions: tuple[Condition, ...]
    marker: str

    def text(self, text: str) -> Rule:
        """``text`` tagged with this id."""
        return Rule(self, text)

    def applies(self, facts: ClassFacts) -> bool:
        return all(c.test(facts) for c in self.conditions)

    @property
    def scope(self) -> str:
        """The conditions as one line."""
        return "; ".join(c.text for c in self.conditions) or "every configuration"

    def __repr__(self) -> str:
        return f"RuleId({self.key})"


class Rule(str):
    """A rule text as the reference emits it, with its id (``.id``)."""

    id: RuleId

    def __new__(cls, rule_id: RuleId, text: str) -> Rule:
        self = super().__new__(cls, text)
        self.id = rule_id
        return self

    def __reduce__(self) -> tuple:
        # Pickled by key: a RuleId holds its conditions' functions.
        return (_rule_from_key, (self.id.key, str(self)))


def _rule_from_key(key: str, text: str) -> Rule:
    return Rule(by_key(key), text)


_REGISTRY: dict[str, RuleId] = {}


def by_key(key: str) -> RuleId:
    """The rule with this key (KeyError for an unknown one)."""
    return _REGISTRY[key]


def rule_ids() -> tuple[RuleId, ...]:
    """Every rule, in the order this module declares them."""
    return tuple(_REGISTRY.values())


def ids_of(texts: Iterable[str]) -> set[RuleId]:
    """The ids of the tagged texts among ``texts``."""
    return {t.id for t in texts if isinstance(t, Rule)}


def _rule(key: str, function: str, meaning: str, *conditions: Condition,
          probes: frozenset[Probe] = ALL_PROBES, cell: Cell = Cell.CLASS,
          marker: str | None = None) -> RuleId:
    if key in _REGISTRY:
        raise ValueError(f"rule key {key} declared twice")
    rid = RuleId(key, function, meaning, probes, cell, conditions,
                 function if marker is None else marker)
    _REGISTRY[key] = rid
    return rid


K = TypeVar("K")


def _family(keys: Iterable[K], make: Callable[[K], RuleId]) -> Mapping[K, RuleId]:
    return {k: make(k) for k in keys}


def _lv(level: int) -> str:
    return f"L{level}" if level >= 0 else "L-1"


# ---------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------

AARCH64 = Condition("AArch64", lambda f: f.arch is Arch.AARCH64)
AARCH32 = Condition("AArch32", lambda f: f.arch is Arch.AARCH32)
ARMV7 = Condition("an ARMv7 LPAE core", lambda f: f.cpu.arch_version < 8)
ARMV8 = Condition("ARMv8 or later", lambda f: f.cpu.arch_version >= 8)
def _walks(f: ClassFacts) -> bool:
    """The class walks with its own geometry: a valid start level for a
    granule TG0 names and the CPU supports (under an IMPLEMENTATION DEFINED
    granule the walk has another granule's geometry)."""
    return (f.start is not None and f.granule is not None
            and f.cpu.s2_granule_supported(f.granule))


WALKS = Condition("a valid start level, a supported granule", _walks)
LPA = Condition("FEAT_LPA", lambda f: f.cpu.feat_lpa)
NO_LPA = Condition("no FEAT_LPA", lambda f: not f.cpu.feat_lpa)
LPA2 = Condition("FEAT_LPA2", lambda f: f.cpu.feat_lpa2)
NO_TTST = Condition("no FEAT_TTST", lambda f: not f.cpu.feat_ttst)
HAFDBS = Condition("FEAT_HAFDBS", lambda f: f.cpu.hafdbs >= 1)
HAFDBS_DIRTY = Condition("FEAT_HAFDBS with dirty state", lambda f: f.cpu.hafdbs >= 2)
BBM = Condition("FEAT_BBM level 1 or 2", lambda f: f.cpu.bbm in (1, 2))
S2PIE = Condition("FEAT_S2PIE", lambda f: f.cpu.feat_s2pie)
DIRECT = Condition("Direct permissions (no FEAT_S2PIE, or VTCR_EL2.S2PIE = 0)", lambda f: True)
DS1 = Condition("DS = 1", lambda f: f.cls.ds == 1)
UNSUPPORTED_GRANULE = Condition("a granule the CPU lacks at stage 2",
                                lambda f: len(f.cpu.s2_granules) < len(Granule))
BLOCKS = Condition("a level with block descriptors", lambda f: bool(f.block_levels))
SUPPORTED_GRANULE = Condition("TG0 names a granule the CPU supports at stage 2",
                              lambda f: f.granule is not None
                              and f.cpu.s2_granule_supported(f.granule))


def granule(g: Granule) -> Condition:
    return Condition(f"{g.label} granule supported", lambda f: f.cpu.s2_granule_supported(g))


def pamax_below(bits: int) -> Condition:
    return Condition(f"PAMax < {bits}", lambda f: f.cpu.pamax < bits)


def walks_level(level: int) -> Condition:
    """A walk of the class reads a descriptor at ``level`` (start level <= level)."""
    return Condition(f"start level <= {level}",
                     lambda f: _walks(f) and f.start is not None and f.start <= level)


def below_start(level: int) -> Condition:
    """A descriptor fetch at ``level`` follows a table descriptor."""
    return Condition(f"start level < {level}",
                     lambda f: _walks(f) and f.start is not None and f.start < level)


def block_at(level: int) -> Condition:
    return Condition(f"blocks allowed at level {level}", lambda f: level in f.block_levels)


def no_block_at(level: int) -> Condition:
    return Condition(f"no block allowed at level {level}",
                     lambda f: level not in f.block_levels)


# ---------------------------------------------------------------------------
# AArch64 stage 2: parameters and configuration (reference.walk)
# ---------------------------------------------------------------------------

A64_S2_TG0 = _rule("a64.s2.tg0", "AArch64.S2DecodeTG0",
                   "VTCR_EL2.TG0 names a granule the PE supports at stage 2", AARCH64,
                   SUPPORTED_GRANULE)
A64_S2_TG0_RESERVED = _rule(
    "a64.s2.tg0.reserved", "AArch64.S2DecodeTG0",
    "reserved TG0 0b11: an IMPLEMENTATION DEFINED supported granule", AARCH64, cell=Cell.CPU)
A64_S2_TG0_UNSUPPORTED = _rule(
    "a64.s2.tg0.unsupported", "AArch64.S2DecodeTG0",
    "TG0 names a granule the PE lacks at stage 2: an IMPLEMENTATION DEFINED one",
    AARCH64, UNSUPPORTED_GRANULE, cell=Cell.CPU)
A64_S2_TXSZ_MIN_LPA = _rule(
    "a64.s2.txsz.below-min.fault", "AArch64.S2TxSZFaults",
    "T0SZ below 64 - PAMax with FEAT_LPA: Translation fault, level 0", AARCH64, LPA,
    cell=Cell.CPU)
A64_S2_TXSZ_MIN_FAULT = _rule(
    "a64.s2.txsz.below-min.impdef-fault", "AArch64.S2TxSZFaults",
    "T0SZ below the minimum without FEAT_LPA: IMPLEMENTATION DEFINED fault", AARCH64, NO_LPA,
    cell=Cell.CPU)
A64_S2_TXSZ_MIN_CLAMP = _rule(
    "a64.s2.txsz.below-min.impdef-clamp", "AArch64.S2TxSZFaults",
    "T0SZ below the minimum without FEAT_LPA: IMPLEMENTATION DEFINED, acts as the minimum",
    AARCH64, NO_LPA, cell=Cell.CPU)
A64_S2_TXSZ_MAX_FAULT = _rule(
    "a64.s2.txsz.above-max.impdef-fault", "AArch64.S2TxSZFaults",
    "T0SZ above the maximum: IMPLEMENTATION DEFINED fault", AARCH64, cell=Cell.CPU)
A64_S2_TXSZ_MAX_CLAMP = _rule(
    "a64.s2.txsz.above-max.impdef-clamp", "AArch64.S2TxSZFaults",
    "T0SZ above the maximum: IMPLEMENTATION DEFINED, acts as the maximum", AARCH64,
    cell=Cell.CPU)
_SL = "AArch64.S2InvalidSL"
A64_S2_SL_4K_RESERVED = _rule(
    "a64.s2.sl.4k-reserved", _SL, "4K: SL2:SL0 = 0b101, 0b110, 0b111 is reserved",
    AARCH64, granule(Granule.G4K), LPA2, cell=Cell.CPU)
A64_S2_SL_4K_L0_PAMAX = _rule(
    "a64.s2.sl.4k-l0-pamax", _SL, "4K: start level 0 needs PAMax >= 44",
    AARCH64, granule(Granule.G4K), pamax_below(44), cell=Cell.CPU)
A64_S2_SL_4K_L3_TTST = _rule(
    "a64.s2.sl.4k-l3-ttst", _SL, "4K: start level 3 (SL0 = 0b11) needs FEAT_TTST",
    AARCH64, granule(Granule.G4K), NO_TTST, cell=Cell.CPU)
A64_S2_SL_16K_L0_DS = _rule(
    "a64.s2.sl.16k-l0-ds", _SL, "16K: start level 0 (SL0 = 0b11) needs DS = 1",
    AARCH64, granule(Granule.G16K), cell=Cell.CPU)
A64_S2_SL_16K_L1_PAMAX = _rule(
    "a64.s2.sl.16k-l1-pamax", _SL, "16K: start level 1 needs PAMax >= 42",
    AARCH64, granule(Granule.G16K), pamax_below(42), cell=Cell.CPU)
A64_S2_SL_64K_RESERVED = _rule(
    "a64.s2.sl.64k-reserved", _SL, "64K: SL0 = 0b11 is reserved",
    AARCH64, granule(Granule.G64K), cell=Cell.CPU)
A64_S2_SL_64K_L1_PAMAX = _rule(
    "a64.s2.sl.64k-l1-pamax", _SL, "64K: start level 1 needs PAMax >= 44",
    AARCH64, granule(Granule.G64K), pamax_below(44), cell=Cell.CPU)
A64_S2_SL_INCONSISTENT = _rule(
    "a64.s2.sl.inconsistent", "AArch64.S2InconsistentSL",
    "the IPA size needs fewer than one or more than 16 tables' worth of bits at the start level",
    AARCH64, cell=Cell.CPU, marker="S2InconsistentSL")
A64_S2_IPA_RANGE = _rule(
    "a64.s2.ipa-out-of-range", "AArch64.IPAIsOutOfRange",
    "IPA at or beyond 2^(64 - T0SZ): Translation fault, level 0", AARCH64, WALKS, cell=Cell.CPU)
A64_S1_DISABLED_OUTPUT = _rule(
    "a64.s1-disabled.pamax", "AArch64.S1DisabledOutput",
    "stage 1 off: an input address at or beyond 2^PAMax is a stage-1 Address size fault",
    AARCH64, cell=Cell.CPU, probes=frozenset({Probe.S2_AT, Probe.ACCESS}))

# ---------------------------------------------------------------------------
# AArch64 stage 2: the walk
# ---------------------------------------------------------------------------

# The base register's rules and the contiguous set larger than the IPA
# space are exercised by a few configurations per CPU model (matrix
# families; the IPA size decides the latter): counted per (arch, CPU).
A64_S2_VTTBR_OA = _rule(
    "a64.s2.vttbr-oa", "AArch64.S2Walk",
    "start-level table address beyond the output size (VTTBR_EL2 BADDR, with [51:48] in "
    "bits [5:2] under DS or 64K+LPA): Address size fault, level 0", AARCH64, WALKS,
    marker="start-level table address out of range", cell=Cell.CPU)
A64_S2_VTTBR_MISALIGNED_ZERO = _rule(
    "a64.s2.vttbr-misaligned.zero", "VTTBR_EL2.BADDR",
    "RES0 base bits set (misaligned base), CONSTRAINED UNPREDICTABLE: treated as zero",
    AARCH64, WALKS, marker="VTTBR_EL2 base misaligned", cell=Cell.CPU)
A64_S2_VTTBR_MISALIGNED_CORRUPT = _rule(
    "a64.s2.vttbr-misaligned.corrupt", "VTTBR_EL2.BADDR",
    "RES0 base bits set, CONSTRAINED UNPREDICTABLE: the walk address corrupted in those bits",
    AARCH64, WALKS, marker="VTTBR_EL2 base misaligned", cell=Cell.CPU)
A64_S2_SEA = _rule(
    "a64.s2.sea-on-walk", "AArch64.S2Walk",
    "descriptor fetch from no memory: synchronous External abort on the walk", AARCH64,
    below_start(3))
# An address beyond the output size exists only where PS is below what the
# descriptors hold (48 bits, 52 with DS or 64K + FEAT_LPA): a PS-below-
# PARange configuration per granule, not per start level: per (arch, CPU).
A64_S2_NEXT_TABLE_OA = _rule(
    "a64.s2.next-table-oa", "AArch64.S2Walk",
    "next-level table address beyond the output size: Address size fault at the table's level",
    AARCH64, below_start(3), marker="next-level table address out of range", cell=Cell.CPU)
A64_S2_NT_FAULT = _rule(
    "a64.s2.nt.fault", "AArch64.BlocknTFaults",
    "block with nT = 1 under FEAT_BBM 1/2: IMPLEMENTATION DEFINED Translation fault",
    AARCH64, BBM, WALKS, BLOCKS)
A64_S2_NT_IGNORED = _rule(
    "a64.s2.nt.ignored", "AArch64.BlocknTFaults",
    "block with nT = 1 under FEAT_BBM 1/2: IMPLEMENTATION DEFINED, no fault",
    AARCH64, BBM, WALKS, BLOCKS)
A64_S2_CONTIG_FAULT = _rule(
    "a64.s2.contiguous.too-large.fault", "AArch64.ContiguousBitFaults",
    "contiguous range larger than the IPA space: IMPLEMENTATION DEFINED Translation fault",
    AARCH64, WALKS, cell=Cell.CPU)
A64_S2_CONTIG_NO_FAULT = _rule(
    "a64.s2.contiguous.too-large.no-fault", "AArch64.ContiguousBitFaults",
    "contiguous range larger than the IPA space: IMPLEMENTATION DEFINED, no fault",
    AARCH64, WALKS, cell=Cell.CPU)
def contiguous_at(level: int) -> Condition:
    """The Contiguous bit acts on a leaf at ``level`` (AArch64.ContiguousBit:
    not for 4K level 0 nor 16K/64K level 1 blocks)."""
    return Condition(f"contiguous leaves at level {level}",
                     lambda f: _walks(f) and f.start is not None and f.start <= level
                     and (level == 3 or level in f.block_levels)
                     and (level >= 2 or f.granule is Granule.G4K))


S2_STAGE_OA_CONTIG = _family((1, 2, 3), lambda lvl: _rule(
    f"s2.stage-oa.contiguous.{_lv(lvl)}", "StageOA",
    f"a contiguous entry at level {lvl}: output address bits below the set's size come from "
    "the IPA", contiguous_at(lvl)))
S2_CONTIG_MISPROGRAMMED = _rule(
    "s2.contiguous.misprogrammed", "Arm ARM D8.7.1.1 (RJQQTC)",
    "entries of a contiguous set disagree: the entry's own output address is permitted too",
    WALKS, marker="misprogrammed contiguous set")
A64_S2_OUTPUT_OA = _rule(
    "a64.s2.output-oa", "AArch64.S2Walk",
    "leaf output address beyond the output size (AArch64.OAOutOfRange): Address size fault",
    AARCH64, WALKS, marker="output address", cell=Cell.CPU)
A64_S2_AF_FAULT = _rule(
    "a64.s2.af.fault", "AArch64.S2Walk", "AF = 0 with VTCR_EL2.HA = 0: Access flag fault",
    AARCH64, WALKS, marker="AF = 0 and VTCR_EL2.HA = 0")
A64_S2_AF_AT_SETS = _rule(
    "a64.s2.af.update.set", "AArch64.S2Translate",
    "AF = 0 with HA = 1, translation: the AT sets AF", AARCH64, HAFDBS, WALKS,
    marker="hardware Access flag update")
A64_S2_AF_AT_NOT_SET = _rule(
    "a64.s2.af.update.not-set", "AArch64.S2Translate",
    "AF = 0 with HA = 1, translation: the AT is permitted not to set AF", AARCH64, HAFDBS, WALKS,
    marker="hardware Access flag update")
A64_S2_AFUPDATE_NOT_SET = _rule(
    "a64.s2.af.on-permission-fault.not-set", "AArch64.SettingAccessFlagPermitted",
    "AF = 0 with HA = 1 and a Permission fault: CONSTRAINED UNPREDICTABLE, AF not set",
    AARCH64, HAFDBS, WALKS, marker="Unpredictable_AFUPDATE")
A64_S2_AFUPDATE_SET = _rule(
    "a64.s2.af.on-permission-fault.set", "AArch64.SettingAccessFlagPermitted",
    "AF = 0 with HA = 1 and a Permission fault: CONSTRAINED UNPREDICTABLE, AF set",
    AARCH64, HAFDBS, WALKS, marker="Unpredictable_AFUPDATE")
# S2AP x access: AArch64.S2DirectBasePermissions (R = S2AP[0], W = S2AP[1]).
A64_S2_S2AP = _family(
    ((s2ap, w) for s2ap in range(4) for w in (False, True)),
    lambda k: _rule(f"a64.s2.s2ap.{k[0]:02b}.{'write' if k[1] else 'read'}",
                    "AArch64.S2CheckPermissions",
                    f"S2AP = {k[0]:02b}, {'write' if k[1] else 'read'}: "
                    f"{'permitted' if (k[0] >> 1 if k[1] else k[0] & 1) else 'Permission fault'}",
                    AARCH64, WALKS, DIRECT, marker=f"S2AP={k[0]:02b}"))
A64_S2_DBM_WRITABLE = _rule(
    "a64.s2.dbm.writable", "AArch64.S2DirectBasePermissions",
    "S2AP[1] = 0 with DBM = 1 and VTCR_EL2.HA = HD = 1: write permitted (writable-clean)",
    AARCH64, HAFDBS_DIRTY, WALKS, marker="DBM = 1")
A64_S2_TRANSLATION = _rule("a64.s2.translation", "AArch64.S2Walk",
                           "a successful stage-2 translation", AARCH64, WALKS,
                           marker="AArch64.S2Walk: translation")

# FEAT_S2PIE: PIIndex and the 16 S2PIR_EL2 encodings, per access direction.
A64_S2PIE_INDEX = _family(range(16), lambda i: _rule(
    f"a64.s2pie.piindex.{i}", "AArch64.S2ApplyOutputPerms",
    f"PIIndex {i} (descriptor bits [54:53,51,6]) selects S2PIR_EL2.Perm{i}", AARCH64, S2PIE,
    WALKS, marker=f"PIIndex={i} "))
A64_S2PIE_PERM = _family(
    ((e, w) for e in range(16) for w in (False, True)),
    lambda k: _rule(f"a64.s2pie.perm.{k[0]:04b}.{'write' if k[1] else 'read'}",
                    "AArch64.S2IndirectBasePermissions",
                    f"S2PIR_EL2 encoding {k[0]:04b} on a {'write' if k[1] else 'read'}",
                    AARCH64, S2PIE, WALKS, marker=f"={k[0]:04b} "))
A64_S2PIE_DIRTY_FAULT = _rule(
    "a64.s2pie.dirty.fault", "AArch64.S2CheckPermissions",
    "S2PIE write through a writable-clean descriptor (Dirty = 0), HA:HD != 11: Permission fault",
    AARCH64, S2PIE, WALKS, marker="dirty state")
A64_S2PIE_LEFT_CLEAN = _rule(
    "a64.s2pie.dirty.left-clean", "AArch64.S2Translate",
    "S2PIE write through a writable-clean descriptor with HA = HD = 1: AT leaves it clean",
    AARCH64, S2PIE, HAFDBS_DIRTY, marker="left clean")

# ---------------------------------------------------------------------------
# AArch32 stage 2 (reference.walk)
# ---------------------------------------------------------------------------

A32_S2_RESVTCRS = _rule(
    "a32.s2.vtcr-s.unknown-t0sz", "AArch32.GetS2TTWParams",
    "VTCR.S != T0SZ[3]: CONSTRAINED UNPREDICTABLE, T0SZ an UNKNOWN value", AARCH32,
    cell=Cell.CPU, marker="Unpredictable_RESVTCRS")
A32_S2_IPA_RANGE = _rule(
    "a32.s2.ipa-out-of-range", "AArch32.IPAIsOutOfRange",
    "IPA at or beyond 2^(32 - T0SZ): Translation fault, level 1", AARCH32, cell=Cell.CPU)
A32_S2_SL0_RESERVED = _rule(
    "a32.s2.sl0-reserved", "AArch32.S2Walk", "VTCR.SL0 = 0b1x: Translation fault, level 1",
    AARCH32, cell=Cell.CPU)
A32_S2_SL_INCONSISTENT = _rule(
    "a32.s2.sl.inconsistent", "AArch32.S2InconsistentSL",
    "T0SZ and SL0 inconsistent: Translation fault, level 1", AARCH32, cell=Cell.CPU)
A32_S2_VTTBR_MISALIGNED_ZERO = _rule(
    "a32.s2.vttbr-misaligned.zero", "VTTBR.BADDR",
    "RES0 base bits set, CONSTRAINED UNPREDICTABLE: treated as zero", AARCH32, WALKS,
    marker="VTTBR base misaligned", cell=Cell.CPU)
A32_S2_VTTBR_MISALIGNED_CORRUPT = _rule(
    "a32.s2.vttbr-misaligned.corrupt", "VTTBR.BADDR",
    "RES0 base bits set, CONSTRAINED UNPREDICTABLE: the walk address corrupted in those bits",
    AARCH32, WALKS, marker="VTTBR base misaligned", cell=Cell.CPU)


class HighBits(enum.Enum):
    """Where AArch32 meets address bits [47:40] (VTTBR, a table
    descriptor, an output address) and what the architecture makes of them."""

    V8_FAULT = "fault"              # ARMv8 AArch32.S2Walk: Address size fault
    V7_FAULT = "v7-fault"           # ARMv7 LPAE: UNPREDICTABLE, faulting permitted
    V7_IGNORED = "v7-ignored"       # ARMv7 LPAE: UNPREDICTABLE, ignoring permitted


_HIGH_WHERE = {"vttbr": "VTTBR", "table": "table descriptor", "output": "output address"}
A32_S2_HIGH_BITS = _family(
    ((w, c) for w in _HIGH_WHERE for c in HighBits),
    lambda k: _rule(
        f"a32.s2.high-bits.{k[0]}.{k[1].value}",
        "AArch32.S2Walk" if k[1] is HighBits.V8_FAULT else "ARMv7 LPAE (UNK/SBZP)",
        f"{_HIGH_WHERE[k[0]]} bits [47:40] non-zero: "
        + {HighBits.V8_FAULT: "Address size fault", HighBits.V7_FAULT: "UNPREDICTABLE, fault",
           HighBits.V7_IGNORED: "UNPREDICTABLE, ignored"}[k[1]],
        AARCH32, ARMV8 if k[1] is HighBits.V8_FAULT else ARMV7, WALKS,
        *((below_start(2),) if k[0] == "table" else ()),
        marker=_HIGH_WHERE[k[0]], cell=Cell.CPU if k[0] == "vttbr" else Cell.CLASS))
A32_S2_SEA = _rule(
    "a32.s2.sea-on-walk", "AArch32.S2Walk",
    "descriptor fetch from no memory: synchronous External abort on the walk", AARCH32, WALKS)
A32_S2_CONTIG_FAULT = _rule(
    "a32.s2.contiguous.too-large.fault", "Arm ARM G5.5.5.1",
    "contiguous range larger than the IPA space: IMPLEMENTATION DEFINED Translation fault",
    AARCH32, WALKS, cell=Cell.CPU)
A32_S2_CONTIG_NO_FAULT = _rule(
    "a32.s2.contiguous.too-large.no-fault", "Arm ARM G5.5.5.1",
    "contiguous range larger than the IPA space: IMPLEMENTATION DEFINED, no fault",
    AARCH32, WALKS, cell=Cell.CPU)
A32_S2_AF_FAULT = _rule("a32.s2.af.fault", "AArch32.S2Walk",
                        "AF = 0: Access flag fault (no hardware update in AArch32)",
                        AARCH32, WALKS, marker="AF = 0")
A32_S2_S2AP = _family(
    ((s2ap, w) for s2ap in range(4) for w in (False, True)),
    lambda k: _rule(f"a32.s2.s2ap.{k[0]:02b}.{'write' if k[1] else 'read'}",
                    "AArch32.S2HasPermissionsFault",
                    f"S2AP = {k[0]:02b}, {'write' if k[1] else 'read'}: "
                    f"{'permitted' if (k[0] >> 1 if k[1] else k[0] & 1) else 'Permission fault'}",
                    AARCH32, WALKS, marker=f"S2AP={k[0]:02b}"))
A32_S2_TRANSLATION = _rule("a32.s2.translation", "AArch32.S2Walk",
                           "a successful stage-2 translation", AARCH32, WALKS,
                           marker="AArch32.S2Walk: translation")
_K1 = "Arm ARM K1.1 (ARMv7 UNPREDICTABLE)"
A32_V7_VTCR_S = _rule("a32.v7.vtcr-s", _K1, "ARMv7: VTCR.S != T0SZ[3] is UNPREDICTABLE",
                      AARCH32, ARMV7, cell=Cell.CPU, marker="K1.1.32.1")
A32_V7_SL0_RESERVED = _rule("a32.v7.sl0-reserved", _K1, "ARMv7: a reserved SL0 is UNPREDICTABLE",
                            AARCH32, ARMV7, cell=Cell.CPU, marker="K1.1.32.2")
A32_V7_SL_INCONSISTENT = _rule(
    "a32.v7.sl-inconsistent", _K1, "ARMv7: SL0 inconsistent with T0SZ is UNPREDICTABLE",
    AARCH32, ARMV7, cell=Cell.CPU, marker="K1.1.32.2")
A32_V7_VTTBR_MISALIGNED = _rule(
    "a32.v7.vttbr-misaligned", _K1, "ARMv7: a misaligned VTTBR base is UNPREDICTABLE",
    AARCH32, ARMV7, WALKS, marker="K1.1.15", cell=Cell.CPU)

# ---------------------------------------------------------------------------
# Descriptor types at each level, from the walk trace (reference.coverage)
# ---------------------------------------------------------------------------


class Desc(enum.Enum):
    """A descriptor type as the walk classifies it (TraceStep.kind).
    Every granule allows blocks at level 2 (AArch64.BlockDescSupported),
    so a reserved 0b01 descriptor exists at levels -1, 0, 1 and 3 only."""

    TABLE = "table"
    BLOCK = "block"
    PAGE = "page"
    INVALID = "invalid"         # bit 0 clear
    RESERVED = "reserved"       # 0b01 where no block is allowed, 0b01 at level 3


def _desc_conditions(arch: Condition, kind: Desc, level: int) -> tuple[Condition, ...]:
    reach = walks_level(level)
    if kind is Desc.BLOCK:
        return (arch, reach, block_at(level))
    if kind is Desc.RESERVED and level < 3:
        return (arch, reach, no_block_at(level))
    return (arch, reach)


def _desc_family(prefix: str, function: str, arch: Condition, stage: str,
                 kinds: Mapping[Desc, Iterable[int]],
                 probes: frozenset[Probe]) -> Mapping[tuple[Desc, int], RuleId]:
    pairs = [(k, lvl) for k, levels in kinds.items() for lvl in levels]
    meaning = {Desc.TABLE: "table descriptor", Desc.BLOCK: "block descriptor",
               Desc.PAGE: "page descriptor", Desc.INVALID: "invalid descriptor (bit 0 clear)",
               Desc.RESERVED: "reserved 0b01 descriptor (no block allowed there)"}
    return _family(pairs, lambda k: _rule(
        f"{prefix}.desc.{k[0].value}.{_lv(k[1])}", function,
        f"{stage} {meaning[k[0]]} at level {k[1]}", *_desc_conditions(arch, k[0], k[1]),
        probes=probes, marker=function))


A64_S2_DESC = _desc_family(
    "a64.s2", "AArch64.DecodeDescriptorType", AARCH64, "stage-2",
    {Desc.TABLE: (-1, 0, 1, 2), Desc.BLOCK: (0, 1, 2), Desc.PAGE: (3,),
     Desc.INVALID: (-1, 0, 1, 2, 3), Desc.RESERVED: (-1, 0, 1, 3)}, ALL_PROBES)
A32_S2_DESC = _desc_family(
    "a32.s2", "AArch32.DecodeDescriptorTypeLD", AARCH32, "stage-2",
    {Desc.TABLE: (1, 2), Desc.BLOCK: (1, 2), Desc.PAGE: (3,), Desc.INVALID: (1, 2, 3),
     Desc.RESERVED: (3,)}, ALL_PROBES)
A64_S1_DESC = _desc_family(
    "a64.s1", "AArch64.DecodeDescriptorType", AARCH64, "stage-1",
    {Desc.TABLE: (-1, 0, 1, 2), Desc.BLOCK: (0, 1, 2), Desc.PAGE: (3,),
     Desc.INVALID: (-1, 0, 1, 2, 3), Desc.RESERVED: (-1, 0, 1, 3)}, S1_ONLY)
A32_S1_DESC = _desc_family(
    "a32.s1", "AArch32.DecodeDescriptorTypeLD", AARCH32, "stage-1",
    {Desc.TABLE: (1, 2), Desc.BLOCK: (1, 2), Desc.PAGE: (3,), Desc.INVALID: (1, 2, 3)}, S1_ONLY)

# ---------------------------------------------------------------------------
# What the instruction shows: PAR encodings and the abort on the walk
# (reference.par / reference.at; attached by reference.coverage)
# ---------------------------------------------------------------------------

# PAR fault families are keyed by (FaultKind.value, level): reference.outcome
# imports reference.memattrs, which tags its rules with this module.
ADDRESS_SIZE, TRANSLATION, ACCESS_FLAG, PERMISSION = (
    "address-size", "translation", "access-flag", "permission")
_PAR_LEVELS = {ADDRESS_SIZE: (-1, 0, 1, 2, 3), TRANSLATION: (-1, 0, 1, 2, 3),
               ACCESS_FLAG: (0, 1, 2, 3), PERMISSION: (0, 1, 2, 3)}
# AArch32: configuration faults are level-1 Translation faults, VTTBR/TTBR
# high bits a level-0 Address size fault; leaves at levels 1 to 3.
_PAR_LEVELS_A32 = {ADDRESS_SIZE: (0, 1, 2, 3), TRANSLATION: (1, 2, 3),
                   ACCESS_FLAG: (1, 2, 3), PERMISSION: (1, 2, 3)}


class ParForm(enum.Enum):
    """The fault PAR's stage and PTW bits."""

    S2 = "s2"           # S = 1, PTW = 0: a stage-2 fault of the access
    S1 = "s1"           # S = 0: a stage-1 fault
    PTW = "ptw"         # S = 1, PTW = 1: a stage-2 fault on the stage-1 walk


def _par_conditions(arch: Condition, kind: str, level: int) -> tuple[Condition, ...]:
    """Where a fault of ``kind`` at ``level`` can arise: a leaf's faults
    where a leaf can be; the configuration faults (Translation, level 0 on
    AArch64 and 1 on AArch32) and the base register's Address size fault
    (level 0) anywhere; the rest where the walk reads that level."""
    if kind in (ACCESS_FLAG, PERMISSION):
        if level < 3:
            return (arch, walks_level(level), block_at(level))
        return (arch, WALKS)
    config_level = 0 if arch is AARCH64 else 1
    if (kind == TRANSLATION and level == config_level) or (kind == ADDRESS_SIZE and level == 0):
        return (arch,)
    return (arch, walks_level(level))


def _par_family(prefix: str, function: str, arch: Condition, form: ParForm,
                levels: Mapping[str, Iterable[int]]) -> Mapping[tuple[str, int], RuleId]:
    pairs = [(k, lvl) for k, ls in levels.items() for lvl in ls]
    what = {ParForm.S2: "stage-2 fault", ParForm.S1: "stage-1 fault (S = 0)",
            ParForm.PTW: "stage-2 fault on the stage-1 walk (PTW = 1)"}[form]
    def probes(kind: str, level: int) -> frozenset[Probe]:
        if form is ParForm.S2:
            return frozenset({Probe.S2_AT, Probe.S1_AT})
        if form is ParForm.S1 and arch is AARCH64 and (kind, level) == (ADDRESS_SIZE, 0):
            # AArch64.S1DisabledOutput: stage 1 off, an IPA beyond PAMax.
            return frozenset({Probe.S2_AT, Probe.S1_AT})
        return S1_ONLY
    return _family(pairs, lambda k: _rule(
        f"{prefix}.fault.{form.value}.{k[0]}.{_lv(k[1])}", function,
        f"PAR.F = 1, FST = EncodeLDFSC({k[0]}, level {k[1]}): {what}",
        *_par_conditions(arch, k[0], k[1]), probes=probes(k[0], k[1]), cell=Cell.CPU))


# What the instruction shows does not depend on the granule or the start
# level: the encodings are counted per (arch, CPU).
PAR_A64_SUCCESS = _rule("par.a64.success", "AArch64.EncodePAR",
                        "PAR_EL1 of a translation: PA, SH, ATTR", AARCH64, WALKS,
                        probes=frozenset({Probe.S2_AT, Probe.S1_AT}), cell=Cell.CPU)
PAR_A32_SUCCESS = _rule("par.a32.success", "AArch32.EncodePARLD",
                        "64-bit PAR of a translation: PA, SH, ATTR", AARCH32, WALKS,
                        probes=frozenset({Probe.S2_AT, Probe.S1_AT}), cell=Cell.CPU)
PAR_A64_FAULT = _par_family("par.a64", "AArch64.EncodePAR", AARCH64, ParForm.S2, _PAR_LEVELS)
PAR_A32_FAULT = _par_family("par.a32", "AArch32.EncodePARLD", AARCH32, ParForm.S2, _PAR_LEVELS_A32)
PAR_A64_S1_FAULT = _par_family("par.a64", "AArch64.EncodePAR", AARCH64, ParForm.S1, _PAR_LEVELS)
PAR_A32_S1_FAULT = _par_family("par.a32", "AArch32.EncodePARLD", AARCH32, ParForm.S1,
                               _PAR_LEVELS_A32)
PAR_A64_PTW_FAULT = _par_family("par.a64", "AArch64.EncodePAR", AARCH64, ParForm.PTW, _PAR_LEVELS)
PAR_A32_PTW_FAULT = _par_family("par.a32", "AArch32.EncodePARLD", AARCH32, ParForm.PTW,
                                _PAR_LEVELS_A32)
ESR_A64_SEA = _family((0, 1, 2, 3), lambda lvl: _rule(
    f"esr.a64.sea-on-walk.{_lv(lvl)}", "AArch64.AT",
    f"External abort on the walk at level {lvl}: the AT takes a Data Abort (EC 0x25, DFSC "
    "EncodeLDFSC(SyncExternalOnWalk))", AARCH64, below_start(lvl),
    probes=frozenset({Probe.S2_AT, Probe.S1_AT}), cell=Cell.CPU))
ESR_A32_SEA = _family((2, 3), lambda lvl: _rule(
    f"esr.a32.sea-on-walk.{_lv(lvl)}", "AArch32.AT",
    f"External abort on the walk at level {lvl}: the AT takes a Data Abort to Hyp",
    AARCH32, below_start(lvl), probes=frozenset({Probe.S2_AT, Probe.S1_AT}), cell=Cell.CPU))
ESR_S1_SEA = _family((Arch.AARCH64, Arch.AARCH32), lambda a: _rule(
    f"esr.{'a64' if a is Arch.AARCH64 else 'a32'}.sea-on-s1-walk",
    "AArch64.AT" if a is Arch.AARCH64 else "AArch32.AT",
    "External abort on the stage-1 walk: the AT takes a Data Abort",
    AARCH64 if a is Arch.AARCH64 else AARCH32, probes=S1_ONLY))


# ---------------------------------------------------------------------------
# Stage 1 with stage 2 (reference.stage1, reference.at, reference.memattrs)
# ---------------------------------------------------------------------------

def _s1(key: str, function: str, meaning: str, *conditions: Condition,
        marker: str | None = None) -> RuleId:
    return _rule(key, function, meaning, *conditions, probes=S1_ONLY, marker=marker)


S1_TTW = _family(
    ((a, u) for a in ("a64", "a32") for u in (False, True)),
    lambda k: _s1(f"{k[0]}.s1.ttw.{'update' if k[1] else 'fetch'}",
                  "AArch64.S1Walk" if k[0] == "a64" else "AArch32.S1WalkLD",
                  f"the {'hardware update of' if k[1] else 'fetch of'} a stage-1 descriptor is "
                  "translated by stage 2 (AccessType_TTW)",
                  AARCH64 if k[0] == "a64" else AARCH32, marker="AccessType_TTW"))
S1_PTW_DEVICE = _s1("s1.ttw.ptw-device", "AArch64.S2CheckPermissions",
                    "HCR_EL2.PTW = 1 and the stage-1 walk meets stage-2 Device memory: "
                    "Permission fault", marker="HCR_EL2.PTW = 1")
A64_S1_TTW_UPDATE_DENIED = _s1(
    "a64.s1.ttw.update.s2ap-denied", "AArch64.S2CheckPermissions",
    "a stage-1 hardware update without stage-2 write permission: Permission fault (PTW)",
    AARCH64, marker="denies the write of a hardware update")
A64_S1_TTW_DIRTY = _s1("a64.s1.ttw.update.dirty", "AArch64.S2Translate",
                       "the stage-1 walk's write sets the stage-2 dirty state (DBM)", AARCH64,
                       marker="dirty state")
# AArch64.S1Translate / AArch32.S1TranslateLD with stage 2 enabled: "if ...
# !IMPLEMENTATION_DEFINED "Apply effective shareability at stage 1" then
# memattrs.shareability = walkstate.memattrs.shareability else ...
# EffectiveShareability(memattrs)" -- both choices are permitted.
S1_SH_KEPT = _s1("s1.sh.impdef-kept", "AArch64.S1Translate",
                 "IMPLEMENTATION DEFINED 'Apply effective shareability at stage 1' not applied: "
                 "the stage-1 descriptor's shareability is kept",
                 marker="Apply effective shareability at stage 1): no")
S1_SH_EFFECTIVE = _s1("s1.sh.impdef-effective", "AArch64.S1Translate",
                      "IMPLEMENTATION DEFINED 'Apply effective shareability at stage 1' applied: "
                      "EffectiveShareability of the stage-1 attributes",
                      marker="Apply effective shareability at stage 1): yes")
S1_SEA = _s1("s1.sea-on-walk", "FetchDescriptor",
             "stage-1 descriptor fetch from no memory: External abort on the stage-1 walk")
A64_S1_TG_IMPDEF = _s1("a64.s1.tg.impdef", "AArch64.S1DecodeTG0",
                       "reserved or unsupported TG0/TG1: an IMPLEMENTATION DEFINED granule",
                       AARCH64, marker="AArch64.S1Decode")
A64_S1_TXSZ_MIN_LVA = _s1("a64.s1.txsz.below-min.fault", "AArch64.S1TxSZFaults",
                          "TxSZ below the minimum with FEAT_LVA: Translation fault", AARCH64)
A64_S1_TXSZ_MIN_FAULT = _s1("a64.s1.txsz.below-min.impdef-fault", "AArch64.S1TxSZFaults",
                            "TxSZ below the minimum: IMPLEMENTATION DEFINED fault", AARCH64)
A64_S1_TXSZ_MIN_CLAMP = _s1("a64.s1.txsz.below-min.impdef-clamp", "AArch64.S1TxSZFaults",
                            "TxSZ below the minimum: IMPLEMENTATION DEFINED, the minimum",
                            AARCH64)
A64_S1_TXSZ_MAX_FAULT = _s1("a64.s1.txsz.above-max.impdef-fault", "AArch64.S1TxSZFaults",
                            "TxSZ above the maximum: IMPLEMENTATION DEFINED fault", AARCH64)
A64_S1_TXSZ_MAX_CLAMP = _s1("a64.s1.txsz.above-max.impdef-clamp", "AArch64.S1TxSZFaults",
                            "TxSZ above the maximum: IMPLEMENTATION DEFINED, the maximum",
                            AARCH64)
A64_S1_DISABLED = _s1("a64.s1.disabled", "AArch64.S1DisabledOutput",
                      "stage 1 disabled (SCTLR_EL1.M = 0 or HCR_EL2.DC = 1): VA = IPA", AARCH64)
A64_S1_DISABLED_RANGE = _s1("a64.s1.disabled.va-range", "AArch64.S1DisabledOutput",
                            "stage 1 disabled, VA beyond PAMax: stage-1 Address size fault",
                            AARCH64)
A64_S1_VA_RANGE = _s1("a64.s1.va-out-of-range", "AArch64.VAIsOutOfRange",
                      "VA outside both TTBR ranges: Translation fault, level 0", AARCH64)
A64_S1_E0PD = _s1("a64.s1.e0pd", "AArch64.S1Translate",
                  "EL0 access with TCR_EL1.E0PDn = 1: Translation fault", AARCH64)
A64_S1_EPD = _s1("a64.s1.epd", "AArch64.S1Walk", "TCR_EL1.EPDn = 1: Translation fault",
                 AARCH64)
A64_S1_TTBR_OA = _s1("a64.s1.ttbr-oa", "AArch64.S1Walk",
                     "start-level table IPA beyond IPS: stage-1 Address size fault", AARCH64)
A64_S1_NEXT_TABLE_OA = _s1("a64.s1.next-table-oa", "AArch64.S1Walk",
                           "next-level table IPA beyond IPS: Address size fault", AARCH64)
A64_S1_CONTIG_FAULT = _s1("a64.s1.contiguous.too-large.fault", "AArch64.ContiguousBitFaults",
                          "stage-1 contiguous range larger than the VA space: IMPLEMENTATION "
                          "DEFINED fault", AARCH64)
A64_S1_CONTIG_NO_FAULT = _s1("a64.s1.contiguous.too-large.no-fault",
                             "AArch64.ContiguousBitFaults",
                             "stage-1 contiguous range larger than the VA space: no fault",
                             AARCH64)
A64_S1_NT_FAULT = _s1("a64.s1.nt.fault", "AArch64.BlocknTFaults",
                      "stage-1 block with nT = 1: IMPLEMENTATION DEFINED fault", AARCH64, BBM)
A64_S1_NT_IGNORED = _s1("a64.s1.nt.ignored", "AArch64.BlocknTFaults",
                        "stage-1 block with nT = 1: IMPLEMENTATION DEFINED, no fault", AARCH64,
                        BBM)
A64_S1_OUTPUT_OA = _s1("a64.s1.output-oa", "AArch64.S1Walk",
                       "stage-1 output address beyond IPS: Address size fault", AARCH64,
                       marker="beyond IPS")
A64_S1_AF_FAULT = _s1("a64.s1.af.fault", "AArch64.S1Walk",
                      "stage-1 AF = 0 with TCR_EL1.HA = 0: Access flag fault", AARCH64,
                      marker="TCR_EL1.HA = 0")
S1_DCACHE_OFF = _s1("s1.dcache-off", "AArch64.S1DCacheEnabled",
                    "SCTLR.C = 0: stage-1 Normal memory is Non-cacheable")
A64_S1_PERM_DENY = _s1("a64.s1.permission", "AArch64.S1CheckPermissions",
                       "stage-1 AP/APTable deny the access: Permission fault", AARCH64)
A64_S1_AFUPDATE_NOT_SET = _s1("a64.s1.af.on-permission-fault.not-set",
                              "AArch64.SettingAccessFlagPermitted",
                              "stage-1 AF = 0, HA = 1, Permission fault: AF not set", AARCH64,
                              marker="Unpredictable_AFUPDATE")
A64_S1_AFUPDATE_SET = _s1("a64.s1.af.on-permission-fault.set",
                          "AArch64.SettingAccessFlagPermitted",
                          "stage-1 AF = 0, HA = 1, Permission fault: AF set", AARCH64,
                          marker="Unpredictable_AFUPDATE")
A64_S1_AF_AT_SETS = _s1("a64.s1.af.update.set", "AArch64.S1Translate",
                        "stage-1 AF = 0 with HA = 1: the AT sets AF", AARCH64,
                        marker="hardware Access flag update")
A64_S1_AF_AT_NOT_SET = _s1("a64.s1.af.update.not-set", "AArch64.S1Translate",
                           "stage-1 AF = 0 with HA = 1: the AT is permitted not to set AF",
                           AARCH64, marker="hardware Access flag update")
S1_STAGE_OA_CONTIG = _s1("s1.stage-oa.contiguous", "StageOA",
                         "a stage-1 contiguous entry: output bits below the set from the VA")
S1_CONTIG_MISPROGRAMMED = _s1("s1.contiguous.misprogrammed", "Arm ARM D8.7.1.1 (RJQQTC)",
                              "stage-1 contiguous set misprogrammed: the entry's own OA too",
                              marker="misprogrammed contiguous set")
A32_S1_DISABLED = _s1("a32.s1.disabled", "AArch32.S1DisabledOutput",
                      "stage 1 disabled (SCTLR.M = 0 or HCR.DC = 1): VA = IPA", AARCH32)
A32_S1_VA_RANGE = _s1("a32.s1.va-out-of-range", "AArch32.VAIsOutOfRange",
                      "VA in neither TTBR range: Translation fault, level 1", AARCH32)
A32_S1_EPD = _s1("a32.s1.epd", "AArch32.S1WalkLD", "TTBCR.EPDn = 1: Translation fault", AARCH32)
_HIGH_WHERE_S1 = {"ttbr": "TTBR", "table": "table descriptor", "output": "descriptor"}
A32_S1_HIGH_BITS = _family(
    ((w, c) for w in _HIGH_WHERE_S1 for c in HighBits),
    lambda k: _s1(f"a32.s1.high-bits.{k[0]}.{k[1].value}",
                  "AArch32.S1WalkLD" if k[1] is HighBits.V8_FAULT else "ARMv7 LPAE (UNK/SBZP)",
                  f"stage-1 {_HIGH_WHERE_S1[k[0]]} bits [47:40] non-zero ({k[1].value})",
                  AARCH32, ARMV8 if k[1] is HighBits.V8_FAULT else ARMV7,
                  marker=_HIGH_WHERE_S1[k[0]]))
A32_S1_AF_FAULT = _s1("a32.s1.af.fault", "AArch32.S1WalkLD", "stage-1 AF = 0: Access flag fault",
                      AARCH32)
A32_S1_PERM_DENY = _s1("a32.s1.permission", "AArch32.S1LDHasPermissionsFault",
                       "stage-1 AP/APTable deny the access: Permission fault", AARCH32)
AT_S1_ONLY = _s1("at.s1-only", "AArch64.AT", "AT S1E*: stage 1 only, PAR holds the IPA",
                 marker="stage 1 only")
S2_FWB = _s1("s2.fwb", "AArch64.S2ApplyFWBMemAttrs",
             "HCR_EL2.FWB = 1: stage 2 overrides the stage-1 attributes", AARCH64)
S2_CD = _s1("s2.cd", "AArch64.S2Translate",
            "HCR_EL2.CD = 1: stage-2 Normal memory is Non-cacheable", marker="HCR_EL2.CD = 1")
S2_COMBINE = _s1("s2.combine", "S2CombineS1MemAttrs",
                 "the stage-1 and stage-2 attributes combined")
PAR_ATTRS_UNKNOWN = _s1("par.attrs.unknown", "AArch64.EncodePAR",
                        "UNKNOWN attributes: SH and ATTR not compared",
                        marker="attributes UNKNOWN")
MEM_SH_RESERVED = _s1("mem.sh.reserved", "Unpredictable_Shareability",
                      "SH = 0b01 reserved: CONSTRAINED UNPREDICTABLE shareability")
MEM_RESMAIR = _s1("mem.mair.reserved", "Unpredictable_RESMAIR",
                  "a reserved MAIR attribute: CONSTRAINED UNPREDICTABLE attributes")
MEM_S2_RESMEMATTR = _s1("mem.s2-memattr.reserved", "Unpredictable_S2RESMEMATTR",
                        "reserved stage-2 MemAttr cacheability 0b00: CONSTRAINED UNPREDICTABLE")
PAR_ATTRS = _s1("par.attrs", "EncodePARAttrs", "PAR.ATTR of the final attributes")
PAR_ATTRS_XS_UNKNOWN = _s1("par.attrs.xs-unknown", "EncodePARAttrs",
                           "FEAT_XS unknown for the model: with and without the XS encodings",
                           marker="EncodePARAttrs")
PAR_ATTRS_TRANSIENT = _s1("par.attrs.transient", "ReportedPARAttrs",
                          "IMPLEMENTATION DEFINED: Transient hint reported as non-transient")
PAR_SH = _s1("par.sh", "PAREncodeShareability", "PAR.SH of the final attributes")
PAR_SH_WIDER = _s1("par.sh.wider", "ReportedPARShareability",
                   "IMPLEMENTATION DEFINED: a more shareable domain reported")

# ---------------------------------------------------------------------------
# Access probes (reference.access, reference.access_case, reference.syndrome)
# ---------------------------------------------------------------------------


def _acc(key: str, function: str, meaning: str, *conditions: Condition,
         marker: str | None = None) -> RuleId:
    return _rule(key, function, meaning, *conditions, probes=ACCESS_ONLY, marker=marker)


ACC_DIRTY_SET = _acc("acc.dirty.set", "AArch64.S2Translate",
                     "a store through a writable-clean DBM descriptor sets S2AP[1]", AARCH64,
                     HAFDBS_DIRTY)
ACC_STXR_OK = _acc("acc.stxr.succeeds", "AArch64.ExclusiveMonitorsPass",
                   "store-exclusive succeeds (status 0)", marker="store-exclusive succeeds")
ACC_STXR_FAILS = _acc("acc.stxr.fails", "AArch64.ExclusiveMonitorsPass",
                      "store-exclusive fails (status 1), IMPLEMENTATION DEFINED",
                      marker="store-exclusive fails")
ACC_FETCH_XN = _family(
    ((a, x) for a in ("a64", "a32") for x in (False, True)),
    lambda k: _acc(f"{k[0]}.acc.fetch.{'executable' if k[1] else 'not-executable'}",
                   "AArch64.S2CheckPermissions" if k[0] == "a64"
                   else "AArch32.S2HasPermissionsFault",
                   f"instruction fetch, stage-2 execute permission {'granted' if k[1] else 'denied'}",
                   AARCH64 if k[0] == "a64" else AARCH32, marker="(IFETCH)"))
ACC_INSTRDEVICE_FAULT = _acc("acc.fetch.device.fault", "Unpredictable_INSTRDEVICE",
                             "fetch from stage-2 Device memory: Constraint_FAULT",
                             marker="Constraint_FAULT")
ACC_INSTRDEVICE_NONE = _acc("acc.fetch.device.none", "Unpredictable_INSTRDEVICE",
                            "fetch from stage-2 Device memory: Constraint_NONE",
                            marker="Constraint_NONE")
ACC_S1_DEVICE = _acc("acc.s1-disabled.device", "AArch64.S1DisabledOutput",
                     "stage 1 off, HCR_EL2.DC = 0: Device-nGnRnE", AARCH64)
ACC_DCZVA_S1_ALIGN = _acc("acc.dczva.s1-alignment", "AArch64.S1HasAlignmentFault",
                          "DC ZVA on stage-1 Device memory: Alignment fault to EL1", AARCH64)
ACC_DCZVA_S2_ALIGN = _acc("acc.dczva.s2-alignment", "AArch64.S2HasAlignmentFault",
                          "DC ZVA on stage-2 Device memory: Alignment fault to EL2", AARCH64)
ACC_DCZVA_ZERO = _acc("acc.dczva.zero", "AArch64.DataMemZero",
                      "DC ZVA zeroes the block", AARCH64)
ACC_STALE_TLB = _acc("acc.tlb.stale", "Arm ARM D8.15 (TLB maintenance)",
                     "a descriptor changed without complete TLB maintenance: the old entry too",
                     marker="TLB maintenance")
SYN_ISV = _family(
    ("not-stage2", "valid", "invalid", "ras", "impdef-0", "impdef-1"),
    lambda k: _acc(f"acc.syndrome.isv.{k}", "AArch64.FaultSyndrome",
                   {"not-stage2": "no instruction syndrome: not a stage-2 fault of the access",
                    "valid": "ISV = 1: a single general-purpose register load/store",
                    "invalid": "ISV = 0: pairs, SIMD&FP, exclusives, writeback, maintenance",
                    "ras": "ISV = 0 for a synchronous External abort with FEAT_RAS",
                    "impdef-0": "no FEAT_RAS, External abort on the walk: ISV 0 (IMPDEF)",
                    "impdef-1": "no FEAT_RAS, External abort on the walk: ISV 1 (IMPDEF)"}[k],
                   marker="FaultSyndrome" if k == "not-stage2" else "ISV"))


__all__ = ["ALL_PROBES", "Cell", "ClassFacts", "ConfigClass", "Desc", "HighBits", "ParForm",
           "Probe", "Rule", "RuleId", "by_key", "ids_of", "rule_ids"]
