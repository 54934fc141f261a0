"""The divergence vocabulary: how outcomes, observations and divergences are
named, in one place, for every stage that names them (judge, report,
shrink, localize, run --shrink).

* Labels: a short classification of a permitted outcome
  (:func:`outcome_label`: "ok L3", "translation L1", "stage-1 address size
  L0") and of a raw observation (:func:`observed_label`: "ok", "translation
  L0", "exception EC 0x25 DFSC 0x17").  Levels are absolute Arm ARM levels.
  Labels are what results records, baseline entries and families compare.
* Descriptions: the longer human text of an observation
  (:func:`describe_observation`, :func:`observation_text`).
* Memory divergences (a descriptor written in a way no permitted outcome
  allows): the record texts (:func:`memory_expected`,
  :func:`memory_observed`, :func:`memory_observed_text`,
  :func:`memory_raw`) and the family label naming the bits that changed
  (:func:`memory_label`).
* "The same divergence": :class:`Signature` (kind, permitted-outcome
  labels, observed label) is what shrinking must keep;
  :class:`FamilyKey` adds the architecture and the aim without level and
  values (:func:`aim_family`), and is what the report groups by and what
  ``run --shrink`` shrinks one case of.
* The raw-observation dict of results records and case files
  (:func:`raw_observation`).

Everything here is a pure function of its arguments.
"""
from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence

from reference.arch import Arch
from reference.outcome import NestedTranslation, Result, Translation, decode_fsc
from reference.par import decode_par

from .qemu.fatal import describe_esr
from .qemu.job import ObsKind, RawObservation

# The aim of an aggregated fan-out divergence record (docs/results.md).
FANOUT_AIM = "fan-out probes"
# A stage-2 fault on a stage-1 table walk (FaultRecord.s2fs1walk, PAR.PTW):
# what its labels add (only stage-1-on probes have one).
STAGE1_WALK = " on the stage-1 walk"


class DivergenceKind(enum.Enum):
    """``kind`` of a divergence record (docs/results.md)."""

    PROBE = "probe"      # the PAR or exception differs
    MEMORY = "memory"    # a descriptor changed in a way no permitted outcome allows
    CPU_MODEL = "cpu-model"     # a named -cpu reports other ID registers than its model
    ACCESS = "access"    # an access probe (or a maintenance step) ended otherwise than permitted
    DATA = "data"        # a data chunk holds bytes no permitted sequence of stores leaves


# ---------------------------------------------------------------------------
# Labels and descriptions
# ---------------------------------------------------------------------------

def outcome_label(result: Result) -> str:
    """A short classification of a permitted outcome: 'ok L2',
    'translation L0', 'stage-1 address size L0', ... (a two-stage
    success is labelled by its stage-2 leaf level, an AT S1E* success by
    its stage-1 leaf level)."""
    if isinstance(result, Translation):
        return f"ok L{result.level}"
    if isinstance(result, NestedTranslation):
        if result.s2 is not None:
            return f"ok L{result.s2.level}"
        return f"ok stage-1 L{result.s1.level}" if result.s1 is not None else "ok"
    stage = "" if result.stage2 else "stage-1 "
    walk = STAGE1_WALK if result.s1ptw else ""
    return f"{stage}{result.kind.value} L{result.level}{walk}"


def observed_label(arch: Arch, obs: RawObservation) -> str:
    """The same classification for a raw observation (a success is 'ok'
    whatever its PA: the PAR does not report the level)."""
    if obs.kind is ObsKind.EXCEPTION:
        return f"exception EC {obs.esr >> 26:#x} DFSC {obs.esr & 0x3f:#04x}"
    if obs.kind is ObsKind.NOT_RUN:
        return "not run"
    view = decode_par(arch, obs.par)
    if not view.f:
        return "ok"
    if view.fault is None:
        return f"unknown FST {view.fst:#x}"
    kind, level = view.fault
    walk = STAGE1_WALK if view.ptw else ""
    return f"{'' if view.s else 'stage-1 '}{kind.value} L{level}{walk}"


def observed_par_text(arch: str, raw: Mapping[str, str]) -> str:
    """The PAR of a divergence record's raw registers decoded field by
    field ('PAR 0x...: PA 0x... SH=11 ATTR=0x44', reference.par.ParView),
    what a baseline entry's ``par`` pattern reads; '' when the observation
    holds no PAR (an exception, a descriptor write, an access step)."""
    if raw.get("kind") != ObsKind.PAR.name or "par" not in raw:
        return ""
    return decode_par(Arch(arch), int(raw["par"], 16)).describe()


def describe_observation(arch: Arch, obs: RawObservation) -> str:
    """An observation in words: the PAR decoded, or the exception's
    syndrome and addresses."""
    if obs.kind is ObsKind.PAR:
        return decode_par(arch, obs.par).describe()
    if obs.kind is ObsKind.EXCEPTION:
        ec = obs.esr >> 26
        return (f"exception: {'ESR_EL2' if arch is Arch.AARCH64 else 'HSR'}={obs.esr:#x} "
                f"(EC {ec:#x}, DFSC {obs.esr & 0x3f:#04x}) FAR={obs.far:#x} HPFAR={obs.hpfar:#x}")
    return "not run"


def observation_text(arch: Arch, obs: RawObservation) -> str:
    """The description, the syndrome decoded for an exception, and the
    label in brackets (explanations of a minimal case)."""
    text = describe_observation(arch, obs)
    if obs.kind is ObsKind.EXCEPTION:
        text += f"; {describe_esr(obs.esr)}"
    return f"{text}  [{observed_label(arch, obs)}]"


def raw_observation(obs: RawObservation) -> dict[str, str]:
    """The registers of an observation as results records and case files
    write them (hex strings)."""
    return {"kind": obs.kind.name, "par": f"{obs.par:#x}", "esr": f"{obs.esr:#x}",
            "far": f"{obs.far:#x}", "hpfar": f"{obs.hpfar:#x}"}


# ---------------------------------------------------------------------------
# Memory divergences
# ---------------------------------------------------------------------------

# Stage-2 descriptor bits a hardware update may change, by Arm ARM name.
_DESCRIPTOR_BITS = {6: "S2AP[0]", 7: "S2AP[1]", 10: "AF", 51: "DBM", 52: "Contiguous"}
_HEX = re.compile(r"0x[0-9a-fA-F]+")
# The expected side of every memory family: the record's own text names
# the descriptor's address, which differs from case to case.
MEMORY_FAMILY_EXPECTED = ("descriptor unchanged or a permitted update",)


def memory_expected(pa: int, before: int) -> str:
    return (f"descriptor at {pa:#x} unchanged ({before:#x}) or updated as a permitted "
            "outcome allows")


def memory_observed(before: int, after: int) -> str:
    return f"descriptor written {before:#x} -> {after:#x}"


def memory_observed_text(pa: int, before: int, after: int) -> str:
    return f"[{pa:#x}] {before:#x} -> {after:#x}"


def memory_raw(pa: int, before: int, after: int) -> dict[str, str]:
    return {"pa": f"{pa:#x}", "before": f"{before:#x}", "after": f"{after:#x}"}


def _bit_names(value: int) -> str:
    return ", ".join(_DESCRIPTOR_BITS.get(i, f"bit {i}") for i in range(64) if value >> i & 1)


def memory_label(before: int, after: int) -> str:
    """A descriptor write as the bits it set and cleared, by Arm ARM name,
    addresses left out: 'descriptor written: set AF'."""
    changed = before ^ after
    parts = []
    if after & changed:
        parts.append(f"set {_bit_names(after & changed)}")
    if before & changed:
        parts.append(f"cleared {_bit_names(before & changed)}")
    return "descriptor written: " + "; ".join(parts)


def memory_family_label(raw: Mapping[str, str] | None, observed: str) -> str:
    """:func:`memory_label` of a record's ``raw`` registers; a known
    divergence is written without them: its observed text, addresses
    masked, then."""
    if raw is not None:
        try:
            return memory_label(int(raw["before"], 16), int(raw["after"], 16))
        except (KeyError, ValueError):
            pass
    return _HEX.sub("0x...", observed)


# ---------------------------------------------------------------------------
# The same divergence
# ---------------------------------------------------------------------------

_LEVEL_PREFIX = re.compile(r"^L-?\d+\s+")
_FIELD_VALUE = re.compile(r"=\S+")
_BITS = re.compile(r"\b\d+ bits\b")


def aim_family(aim: str) -> str:
    """What a probe aimed at without the level and values:
    'L2 block S2AP=01 write' -> 'block S2AP=* write',
    'L1 block OA beyond 40 bits' -> 'block OA beyond N bits'."""
    text = _LEVEL_PREFIX.sub("", aim)
    text = _FIELD_VALUE.sub("=*", text)
    return _BITS.sub("N bits", text)


@dataclasses.dataclass(frozen=True)
class Signature:
    """How a probe diverges: the divergence ``kind``, the sorted labels of
    the reference's permitted outcomes and the label of what the emulator
    did (for memory: :func:`memory_label`).  Levels in labels are absolute,
    so a candidate that moves the decisive descriptor to another level
    diverges differently."""

    kind: DivergenceKind
    expected: tuple[str, ...]
    observed: str

    def describe(self) -> str:
        return (f"expected {' | '.join(self.expected) or '(no outcome)'}, "
                f"observed {self.observed}"
                + (" [memory]" if self.kind is DivergenceKind.MEMORY else ""))


@dataclasses.dataclass(frozen=True, order=True)
class FamilyKey:
    """Divergences of one kind of disagreement: same arch, kind, permitted
    outcome labels, observed label and aim without level and values."""

    arch: str
    kind: str
    expected: tuple[str, ...]
    observed: str
    aim: str


def family_key(arch: str, kind: DivergenceKind, expected: Sequence[str], observed: str,
               aim: str, raw: Mapping[str, str] | None) -> FamilyKey:
    """The family of a divergence record's fields (a memory divergence by
    the bits written, see :func:`memory_family_label`)."""
    if kind is DivergenceKind.MEMORY:
        return FamilyKey(arch, kind.value, MEMORY_FAMILY_EXPECTED,
                         memory_family_label(raw, observed), aim_family(aim))
    return FamilyKey(arch, kind.value, tuple(expected), observed, aim_family(aim))


# ---------------------------------------------------------------------------
# Kinds of case (what a matrix entry generates)
# ---------------------------------------------------------------------------

class CaseKind(enum.Enum):
    """What a matrix entry generates (MatrixEntry.kind)."""

    AT = "at"                   # AT S12E* probes, stage 1 off, with fan-out
    ACCESS = "access"           # loads, stores, DC ZVA, fetches from EL1 (PL1), TLB steps
    STAGE1 = "stage1"           # AT S12E*/S1E* probes with stage 1 on


def entry_kind(entry: str) -> CaseKind:
    """The kind of case a matrix entry (its name, or a case key
    ``ENTRY#n``) generates: access and stage-1 entries end in their
    kind's tag (harness.matrix), every other one is AT."""
    tag = entry.split("#", 1)[0].rsplit("/", 1)[-1]
    return next((k for k in CaseKind if k is not CaseKind.AT and k.value == tag), CaseKind.AT)


# ---------------------------------------------------------------------------
# CPU models (kind cpu-model)
# ---------------------------------------------------------------------------

def model_value_label(what: str, value: object) -> str:
    """'ID_DFR0=0x2000505', 'FEAT_TTST=True': one side of a model
    difference (an ID register's value in hex, a decoded property as is)."""
    if isinstance(value, int) and not isinstance(value, bool) and what.startswith(("ID_", "MIDR",
                                                                                    "DCZID")):
        return f"{what}={value:#x}"
    return f"{what}={value}"


def model_aim(cpu: str, what: str) -> str:
    """The aim of a cpu-model divergence: which model, which register or property."""
    return f"-cpu {cpu}: {what}"


# ---------------------------------------------------------------------------
# Access probes (kinds access and data)
# ---------------------------------------------------------------------------

# Long-descriptor fault status codes an access probe can show besides the
# walk's (reference.outcome.decode_fsc): Alignment, and the AArch32
# short-descriptor DFSR.FS of an Alignment fault (stage 1 off, TTBCR.EAE = 0).
_FSC_ALIGNMENT = 0b100001
_FS_SHORT_ALIGNMENT = 0b00001
# ESR_ELx / HSR exception classes of an abort: (instruction, data) from a
# lower level, then the same taken without a change of level.
_ABORT_ECS = {0x20: "instruction abort", 0x24: "data abort", 0x21: "instruction abort",
              0x25: "data abort"}


def access_outcome_label(taken: str, status: str | None, level: int | None) -> str:
    """A permitted access outcome: 'completed', 'EL2 permission L3',
    'EL1 alignment'.  ``taken``: 'completed', 'EL2' or 'EL1'; ``status``:
    the abort's fault status (reference.access.AbortStatus value)."""
    if taken == "completed" or status is None:
        return "completed"
    return f"{taken} {status}" + ("" if level is None else f" L{level}")


def _fsc_label(fsc: int) -> str:
    if fsc == _FSC_ALIGNMENT:
        return "alignment"
    decoded = decode_fsc(fsc)
    if decoded is None:
        return f"FSC {fsc:#04x}"
    kind, level = decoded
    return f"{kind.value} L{level}"


def access_record_label(arch: Arch, kind: int, esr: int) -> str:
    """What an access probe's record shows, by the same words: where it
    ended and, for an abort, the fault status its syndrome encodes (ESR_EL2
    / HSR / ESR_EL1 long-descriptor DFSC/IFSC; an AArch32 PL1 abort with
    TTBCR.EAE = 0 has a short-descriptor FSR)."""
    if kind == ObsKind.ACCESS_DONE.value:
        return "completed"
    if kind == ObsKind.MAINT_DONE.value:
        return "maintenance done"
    if kind == ObsKind.NOT_RUN.value:
        return "not run"
    if kind == ObsKind.EL1_EXCEPTION.value and arch is Arch.AARCH32:
        fs = (esr >> 6) & 0x10 | esr & 0xF
        return "EL1 alignment" if fs == _FS_SHORT_ALIGNMENT else f"EL1 FSR {esr:#x}"
    where = "EL1" if kind == ObsKind.EL1_EXCEPTION.value else "EL2"
    ec = esr >> 26
    if ec not in _ABORT_ECS:
        return f"{where} EC {ec:#x}"
    return f"{where} {_fsc_label(esr & 0x3F)}"


def access_observed_label(record_label: str, closest_label: str | None,
                          fields: Sequence[str]) -> str:
    """The observed label of a diverging access: the record's label, and
    where it ended as the closest permitted outcome did, the names of the
    syndrome / address / data fields that differ ('EL2 sea-on-walk L1;
    differs in ISV, SAS, SRT')."""
    if closest_label is not None and record_label == closest_label and fields:
        return f"{record_label}; differs in {', '.join(dict.fromkeys(fields))}"
    return record_label


def raw_record(row) -> dict[str, object]:
    """All eight words of a result record as a case file keeps an access
    step's observation (docs/job-abi.md: kind data0 esr far hpfar vector
    elr data1), the kind by name and by code."""
    words = [int(v) for v in row]
    kinds = {k.value: k.name for k in ObsKind}
    out: dict[str, object] = {"kind": kinds.get(words[0], str(words[0])), "kind_code": words[0]}
    for name, value in zip(("data0", "esr", "far", "hpfar", "vector", "elr", "data1"), words[1:]):
        out[name] = f"{value:#x}"
    return out


DATA_EXPECTED = ("data chunk as the permitted stores leave it",)
# The observed label of a data chunk no permitted sequence of stores
# leaves (which bytes differ is in the record's text and raw values).
DATA_OBSERVED = "data chunk holds other bytes"


# ---------------------------------------------------------------------------
# PAR fields (stage-1-on AT probes)
# ---------------------------------------------------------------------------

def par_fields(arch: Arch) -> tuple[tuple[str, int], ...]:
    """(name, mask) of the PAR fields, success and fault layouts together
    (AArch64.EncodePAR, AArch32.EncodePARLD)."""
    pa = ((1 << 52) - (1 << 12)) if arch is Arch.AARCH64 else ((1 << 40) - (1 << 12))
    return (("F", 1), ("FST", 0x7E), ("SH", 0x180), ("PTW", 0x100), ("S/NS", 0x200),
            ("PA", pa), ("ATTR", 0xFF << 56))


def par_difference(arch: Arch, raw: int, value: int, care: int) -> list[str]:
    """The PAR fields where ``raw`` differs from the pattern (``value`` on
    the bits of ``care``): 'ok; differs in ATTR, SH'."""
    wrong = (raw ^ value) & care
    if wrong & 1:
        return ["F"]
    fault = bool(value & 1)
    return [name for name, m in par_fields(arch) if wrong & m
            and (name in ("FST", "PTW", "S/NS") if fault else name in ("PA", "SH", "S/NS", "ATTR"))]
