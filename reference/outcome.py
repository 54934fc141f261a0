"""What a stage-2 translation can produce: a translation, a fault, or a
synchronous external abort taken as an exception; each permitted outcome is
tagged with the architecture rule that permits it.

With stage 1 enabled (reference/stage1.py) a successful AT produces a
:class:`NestedTranslation`, and a fault carries the stage, PTW and, at stage
2, the IPA that faulted."""
from __future__ import annotations

import dataclasses
import enum
from typing import Union

from .memattrs import MemAttrs


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
        return _FSC_BASE[self]


_FSC_BASE = {FaultKind.ADDRESS_SIZE: 0b000000, FaultKind.TRANSLATION: 0b000100,
             FaultKind.ACCESS_FLAG: 0b001000, FaultKind.PERMISSION: 0b001100,
             FaultKind.SEA_ON_WALK: 0b010100}

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
    return _DECODE_FSC.get(fsc)


# Every code encode_fsc gives, and what it encodes (the judge decodes one
# per modelled outcome and per diverging observation).
_DECODE_FSC = {encode_fsc(kind, level): (kind, level)
               for kind in FaultKind for level in (-1, 0, 1, 2, 3)
               if level != -1 or kind in FSC_LEVEL_MINUS1}


@dataclasses.dataclass(frozen=True)
class Fault:
    """A translation fault record.  ``stage2`` is the PAR S / FSTAGE bit
    (FaultRecord.secondstage): with stage 1 off it is False only for the
    stage-1 Address size fault that stops an IPA beyond PAMax
    (AArch64.S1DisabledOutput).  ``s1ptw`` is PAR PTW / ESR S1PTW
    (FaultRecord.s2fs1walk): a stage-2 fault on a stage-1 table walk; its
    ``level`` is then the stage-2 level.  ``ipa`` (FaultRecord.ipaddress)
    is the IPA stage 2 was translating, set by the stage-1-on model for
    stage-2 faults: the stage-1 descriptor's IPA when ``s1ptw``; HPFAR_EL2
    reports it when IPAValid."""

    kind: FaultKind
    level: int
    stage2: bool = True
    s1ptw: bool = False
    ipa: int | None = None

    def describe(self) -> str:
        stage = "stage-2" if self.stage2 else "stage-1"
        text = f"{stage} {self.kind.value} fault, level {self.level}"
        if self.s1ptw:
            text += " on the stage-1 walk (PTW)"
        if self.ipa is not None:
            text += f", IPA {self.ipa:#x}"
        return text


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


@dataclasses.dataclass(frozen=True)
class S1Leaf:
    """The stage-1 leaf of a translation (AArch64 VMSAv8-64 or AArch32 LPAE
    block/page descriptor fields, Arm ARM names): ``ap`` is AP[2:1]
    (descriptor bits [7:6]) as the permission check used it (after a DBM
    update to writable), ``aptable`` the APTable bits accumulated over the
    table descriptors, ``attrindx`` AttrIndx[2:0]."""

    level: int
    block_bits: int
    ap: int
    aptable: int
    attrindx: int
    sh: int
    af: int
    ng: int
    contiguous: int
    dbm: int

    def describe(self) -> str:
        return (f"S1 L{self.level} {'page' if self.level == 3 else 'block'} AP={self.ap:02b}"
                f"{f' APTable={self.aptable:02b}' if self.aptable else ''} "
                f"AttrIndx={self.attrindx} SH={self.sh:02b}")


@dataclasses.dataclass(frozen=True)
class NestedTranslation:
    """A successful AT with stage 1 enabled (or disabled under HCR_EL2.DC).

    ``ipa``: the stage-1 output address; ``s1``: the stage-1 leaf (None
    when stage 1 is disabled: the VA is the IPA); ``s2``: the stage-2
    translation of ``ipa`` (None for AT S1E*, which stops at stage 1);
    ``attrs``: the attributes the PAR reports, combined from both stages for
    AT S12E*, stage 1's for AT S1E* (None: UNKNOWN, a reserved MAIR value)."""

    va: int
    ipa: int
    s1: S1Leaf | None
    s2: Translation | None
    attrs: MemAttrs | None

    @property
    def output(self) -> int:
        """The address PAR.PA holds: the PA after stage 2, else the IPA."""
        return self.s2.pa if self.s2 is not None else self.ipa

    def describe(self) -> str:
        parts = [f"VA {self.va:#x} -> IPA {self.ipa:#x}"]
        if self.s2 is not None:
            parts.append(f"-> PA {self.s2.pa:#x}")
        parts.append(f"({self.s1.describe() if self.s1 else 'stage 1 off'}")
        if self.s2 is not None:
            parts.append(f"; S2 L{self.s2.level} S2AP={self.s2.s2ap:02b} MemAttr={self.s2.memattr:04b}")
        parts.append(f"; {self.attrs.describe() if self.attrs else 'attributes UNKNOWN'})")
        return " ".join(parts)


Result = Union[Translation, Fault, NestedTranslation]


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
    ``note`` the rule applied at this step.  ``stage`` is 1 for a stage-1
    descriptor, whose IPA is ``ipa`` (``address`` is the PA read, or -1
    when stage 2 gave none); the stage-2 steps of a walk made for a stage-1
    descriptor fetch keep stage 2."""

    level: int
    address: int
    value: int | None
    kind: str
    note: str = ""
    stage: int = 2
    ipa: int | None = None

    def describe(self) -> str:
        value = "no memory" if self.value is None else f"{self.value:#018x}"
        where = f"{self.address:#x}"
        if self.stage == 1:
            where = f"IPA {self.ipa:#x}" + (f" PA {self.address:#x}" if self.address >= 0 else "")
        text = f"{'S1 ' if self.stage == 1 else ''}L{self.level:>2} [{where}] = {value} {self.kind}"
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
