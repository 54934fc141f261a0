"""What a stage-2 translation can produce: a translation, a fault, or a
synchronous external abort taken as an exception; each permitted outcome is
tagged with the architecture rule that permits it."""
from __future__ import annotations

import dataclasses
import enum
from typing import Union


class FaultKind(enum.Enum):
    """Fault status kinds a stage-2 walk can report (Arm ARM EncodeLDFSC)."""

    ADDRESS_SIZE = "address-size"
    TRANSLATION = "translation"
    ACCESS_FLAG = "access-flag"
    PERMISSION = "permission"
    SEA_ON_WALK = "sea-on-walk"  # synchronous External abort on translation table walk

    @property
    def fsc_base(self) -> int:
        """Long-descriptor fault status code with LL = 00 (levels 0..3)."""
        return {FaultKind.ADDRESS_SIZE: 0b000000, FaultKind.TRANSLATION: 0b000100,
                FaultKind.ACCESS_FLAG: 0b001000, FaultKind.PERMISSION: 0b001100,
                FaultKind.SEA_ON_WALK: 0b010100}[self]


# EncodeLDFSC for level -1 (FEAT_LPA2): only these kinds can occur there.
FSC_LEVEL_MINUS1 = {FaultKind.ADDRESS_SIZE: 0b101001, FaultKind.TRANSLATION: 0b101011,
                    FaultKind.SEA_ON_WALK: 0b010011}


def encode_fsc(kind: FaultKind, level: int) -> int:
    """EncodeLDFSC(statuscode, level): the 6-bit long-descriptor FSC."""
    if level == -1:
        if kind not in FSC_LEVEL_MINUS1:
            raise ValueError(f"no fault status code for {kind.value} at level -1")
        return FSC_LEVEL_MINUS1[kind]
    if not 0 <= level <= 3:
        raise ValueError(f"no fault status code for {kind.value} at level {level}")
    return kind.fsc_base | level


def decode_fsc(fsc: int) -> tuple[FaultKind, int] | None:
    """Inverse of :func:`encode_fsc`; None for codes a stage-2 walk does not produce."""
    for kind, code in FSC_LEVEL_MINUS1.items():
        if fsc == code:
            return kind, -1
    for kind in FaultKind:
        if fsc & ~0b11 == kind.fsc_base:
            return kind, fsc & 0b11
    return None


@dataclasses.dataclass(frozen=True)
class Fault:
    """A translation fault record.  ``stage2`` is the PAR S / FSTAGE bit:
    False only for the stage-1 Address size fault that stops an IPA beyond
    PAMax when stage 1 is off (AArch64.S1DisabledOutput)."""

    kind: FaultKind
    level: int
    stage2: bool = True
    s1ptw: bool = False

    def describe(self) -> str:
        stage = "stage-2" if self.stage2 else "stage-1"
        return f"{stage} {self.kind.value} fault, level {self.level}"


@dataclasses.dataclass(frozen=True)
class Translation:
    """A successful translation of one IPA.

    ``pa`` is the full output address of the probed IPA (bytes);
    ``block_bits`` is log2 of the size the leaf maps; the remaining fields are
    the leaf descriptor's stage-2 attributes under their Arm ARM names.

    With stage-2 permission indirection (FEAT_S2PIE, VTCR_EL2.S2PIE = 1) the
    descriptor has no S2AP, XN or DBM field (those bits hold PIIndex and
    Dirty): ``s2ap``, ``xn`` and ``dbm`` are 0, and ``pi_index`` (descriptor
    bits [54:53,51,6]), ``base_perm`` (S2PIR_EL2.Perm<PIIndex>) and ``dirty``
    (bit 7) are set; they are None under Direct permissions."""

    pa: int
    level: int
    block_bits: int
    s2ap: int
    xn: int
    memattr: int
    sh: int
    af: int
    contiguous: int
    dbm: int
    pi_index: int | None = None
    base_perm: int | None = None
    dirty: int | None = None

    def describe(self) -> str:
        if self.pi_index is None:
            perms = f"S2AP={self.s2ap:02b} XN={self.xn:02b} "
        else:
            perms = f"PIIndex={self.pi_index} Perm={self.base_perm:04b} Dirty={self.dirty} "
        return (f"PA {self.pa:#x} (level {self.level}, {1 << self.block_bits:#x}-byte "
                f"{'page' if self.level == 3 else 'block'}, {perms}"
                f"MemAttr={self.memattr:04b} SH={self.sh:02b} AF={self.af}"
                f"{' Contiguous' if self.contiguous else ''}{' DBM' if self.dbm else ''})")


Result = Union[Translation, Fault]


@dataclasses.dataclass(frozen=True)
class DescriptorWrite:
    """A hardware update of a descriptor (Access flag or dirty state): the
    8-byte word at ``pa`` changes from ``old`` to ``new``."""

    pa: int
    old: int
    new: int


@dataclasses.dataclass(frozen=True)
class TraceStep:
    """One descriptor read of a walk, decoded.  ``kind`` is the descriptor
    type as the walk classified it (table, block, page, invalid, ...) and
    ``note`` the rule applied at this step."""

    level: int
    address: int
    value: int | None
    kind: str
    note: str = ""

    def describe(self) -> str:
        value = "no memory" if self.value is None else f"{self.value:#018x}"
        text = f"L{self.level:>2} [{self.address:#x}] = {value} {self.kind}"
        return f"{text}: {self.note}" if self.note else text


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One outcome the architecture permits, with the rules that permit it
    (``rules``: pseudocode functions and CONSTRAINED UNPREDICTABLE or
    IMPLEMENTATION DEFINED choices taken), the descriptor writes it implies
    and the walk trace that leads to it."""

    result: Result
    rules: tuple[str, ...]
    writes: tuple[DescriptorWrite, ...] = ()
    trace: tuple[TraceStep, ...] = ()

    @property
    def is_fault(self) -> bool:
        return isinstance(self.result, Fault)

    def describe(self) -> str:
        text = self.result.describe()
        if self.writes:
            text += "; updates " + ", ".join(f"[{w.pa:#x}] {w.old:#x}->{w.new:#x}" for w in self.writes)
        return text


@dataclasses.dataclass(frozen=True)
class WalkResult:
    """All outcomes the architecture permits for one probe (never empty).

    ``unpredictable``: the rules, if any, under which the architecture
    leaves the probe UNPREDICTABLE without constraint (an ARMv7 core
    programmed in a way ARMv8 only later constrained): then any
    observation is permitted, and ``outcomes`` are the behaviour the later
    architecture requires, the one an implementation is expected to show."""

    outcomes: tuple[Outcome, ...]
    unpredictable: tuple[str, ...] = ()

    @property
    def permits_anything(self) -> bool:
        return bool(self.unpredictable)

    @property
    def primary(self) -> Outcome:
        """The first permitted outcome: the one the pseudocode's default
        choices lead to; used for display."""
        return self.outcomes[0]
