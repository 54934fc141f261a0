"""Real guest accesses: the loads, stores, DC ZVA and instruction fetches an
EL1 (AArch64) or PL1 (AArch32, under Hyp) access routine of the stub makes,
and what the architecture permits each one to do under stage 2.

An *access kind* names one access routine of the stub: one instruction (two
for the exclusive pair) with a fixed register use, so the instruction
syndrome it must produce (ESR_EL2.ISS / HSR.ISS: SAS, SSE, SRT, SF, AR) is a
property of the kind.  ``AccessKind.code`` is the probe-record kind in the
job (docs/job-abi.md); the stubs export the same numbers as ``__s2_kind_*``
symbols and a test holds the two together.

``access_outcomes`` turns the stage-2 walk (reference.walk, which answers
for AT instructions) into the outcomes of a real access:

- an AT is permitted not to set the Access flag; a real access with
  VTCR_EL2.HA = 1 must (AArch64.S2Translate: ``walkparams.ha == '1' &&
  AArch64.SettingAccessFlagPermitted(fault)``), and a store with HA = HD = 1
  to a DBM page sets S2AP[1] (``new_desc<7> = '1'``), which no AT does;
- an instruction fetch is checked against execute permission only
  (AArch64.S2CheckPermissions, AccessType_IFETCH: XN/XNX, not S2AP), or in
  AArch32 against read-and-execute (AArch32.S2HasPermissionsFault);
  a fetch from stage-2 Device memory may take a Permission fault
  (ConstrainUnpredictable(Unpredictable_INSTRDEVICE));
- DC ZVA is checked for Device memory before permissions: at stage 1
  (AArch64.S1HasAlignmentFault: AccessType_DCZero and Device) and, with
  HCR_EL2.DC = 1 making stage 1 Normal, at stage 2
  (AArch64.S2HasAlignmentFault, checked in AArch64.S2Translate before
  AArch64.S2CheckPermissions).

With stage 1 off and HCR_EL2.DC = 0 every EL1 data access is Device-nGnRnE
(AArch64.S1DisabledOutput), so the generator only makes naturally aligned
accesses: an unaligned one would take a stage-1 Alignment fault before
stage 2 is consulted.

The module is pure: memory comes in as reference.memory.Memory (tables and
the data chunks the image places) and nothing is read from anywhere else.
"""
from __future__ import annotations

import dataclasses
import enum
import struct
from typing import Mapping

from . import rules as R
from .arch import Arch, AtKind
from .bits import bit, field
from .config import S2Config
from .cpus import CpuModel
from .memory import Memory, Region
from .outcome import DescriptorWrite, Fault, FaultKind, Outcome, Translation
from .walk import walk

DESC_AF = 1 << 10
DESC_S2AP_R = 1 << 6
DESC_S2AP_W = 1 << 7
DESC_S2AP = DESC_S2AP_R | DESC_S2AP_W
U64 = (1 << 64) - 1


class AccessOp(enum.Enum):
    """What an access routine does to memory."""

    LOAD = "load"
    STORE = "store"
    EXCLUSIVE = "load-exclusive then store-exclusive"   # LDXR/STXR, LDREX/STREX
    DC_ZVA = "DC ZVA"
    IFETCH = "instruction fetch"


@dataclasses.dataclass(frozen=True)
class AccessSpec:
    """One access routine of a stub.

    ``size``: bytes one access instruction transfers (16 for a pair of X
    registers or a Q register; the DC ZVA block size comes from DCZID_EL0).
    ``rt``: the Rt register number the instruction names (31 = XZR/WZR).
    ``reg64``: the instruction transfers a 64-bit general-purpose register
    (ESR_EL2.ISS.SF).  ``multi``: more than one register or a SIMD&FP
    register, i.e. not "a single general-purpose register".
    ``min_version``: the architecture version whose instruction set has it
    (LDA/STL are ARMv8 AArch32)."""

    arch: Arch
    mnemonic: str
    op: AccessOp
    size: int
    rt: int
    signed: bool = False
    reg64: bool = False
    writeback: bool = False
    multi: bool = False
    simd: bool = False
    exclusive: bool = False
    acqrel: bool = False
    min_version: int = 7

    @property
    def reads(self) -> bool:
        return self.op in (AccessOp.LOAD, AccessOp.EXCLUSIVE)

    @property
    def writes(self) -> bool:
        return self.op in (AccessOp.STORE, AccessOp.EXCLUSIVE, AccessOp.DC_ZVA)


A64, A32 = Arch.AARCH64, Arch.AARCH32
LOAD, STORE, EXCL, ZVA, FETCH = (AccessOp.LOAD, AccessOp.STORE, AccessOp.EXCLUSIVE,
                                 AccessOp.DC_ZVA, AccessOp.IFETCH)


class AccessKind(enum.Enum):
    """The stub's access routines; ``value`` is the probe kind code.

    AArch64 kinds are 16..63, AArch32 kinds 64..127 (AT kinds are 0..3,
    reference.arch.AtKind; maintenance kinds 128 and up)."""

    A64_LDRB_W = 16
    A64_LDRSB_W = 17
    A64_LDRSB_X = 18
    A64_LDRH_W = 19
    A64_LDRSH_W = 20
    A64_LDRSH_X = 21
    A64_LDR_W = 22
    A64_LDRSW_X = 23
    A64_LDR_X = 24
    A64_STRB_W = 25
    A64_STRH_W = 26
    A64_STR_W = 27
    A64_STR_X = 28
    A64_STR_XZR = 29
    A64_LDR_X_POST = 30
    A64_STR_X_PRE = 31
    A64_LDP_X = 32
    A64_STP_X = 33
    A64_LDXR_STXR = 34
    A64_LDAR_X = 35
    A64_LDARB_W = 36
    A64_STLR_W = 37
    A64_LDR_Q = 38
    A64_STR_Q = 39
    A64_DC_ZVA = 40
    A64_IFETCH = 41

    A32_LDR = 64
    A32_LDRB = 65
    A32_LDRH = 66
    A32_LDRSB = 67
    A32_LDRSH = 68
    A32_STR = 69
    A32_STRB = 70
    A32_STRH = 71
    A32_STR_LR = 72
    A32_LDR_POST = 73
    A32_STR_PRE = 74
    A32_LDRD = 75
    A32_STRD = 76
    A32_LDM = 77
    A32_LDREX_STREX = 78
    A32_LDA = 79
    A32_STL = 80
    A32_VLDR = 81
    A32_VSTR = 82
    A32_IFETCH = 83

    @property
    def code(self) -> int:
        return self.value

    @property
    def spec(self) -> AccessSpec:
        return _SPECS[self]

    @property
    def arch(self) -> Arch:
        return _SPECS[self].arch

    @classmethod
    def for_arch(cls, arch: Arch, version: int = 8) -> tuple["AccessKind", ...]:
        """Every kind the ``arch`` stub runs on an architecture-``version`` CPU."""
        return tuple(k for k in cls if k.spec.arch is arch and k.spec.min_version <= version)


# The stub's instruction for each kind (guest/aarch64/stub.S, guest/arm/stub.S,
# section .text.el1): Rt numbers are spread so that SRT is tested on more than
# one bit pattern, and kept clear of the registers the EL2/Hyp loop keeps.
_SPECS: Mapping[AccessKind, AccessSpec] = {
    AccessKind.A64_LDRB_W: AccessSpec(A64, "ldrb w3, [x0]", LOAD, 1, 3),
    AccessKind.A64_LDRSB_W: AccessSpec(A64, "ldrsb w4, [x0]", LOAD, 1, 4, signed=True),
    AccessKind.A64_LDRSB_X: AccessSpec(A64, "ldrsb x6, [x0]", LOAD, 1, 6, signed=True, reg64=True),
    AccessKind.A64_LDRH_W: AccessSpec(A64, "ldrh w7, [x0]", LOAD, 2, 7),
    AccessKind.A64_LDRSH_W: AccessSpec(A64, "ldrsh w8, [x0]", LOAD, 2, 8, signed=True),
    AccessKind.A64_LDRSH_X: AccessSpec(A64, "ldrsh x10, [x0]", LOAD, 2, 10, signed=True, reg64=True),
    AccessKind.A64_LDR_W: AccessSpec(A64, "ldr w11, [x0]", LOAD, 4, 11),
    AccessKind.A64_LDRSW_X: AccessSpec(A64, "ldrsw x12, [x0]", LOAD, 4, 12, signed=True, reg64=True),
    AccessKind.A64_LDR_X: AccessSpec(A64, "ldr x13, [x0]", LOAD, 8, 13, reg64=True),
    AccessKind.A64_STRB_W: AccessSpec(A64, "strb w14, [x0]", STORE, 1, 14),
    AccessKind.A64_STRH_W: AccessSpec(A64, "strh w15, [x0]", STORE, 2, 15),
    AccessKind.A64_STR_W: AccessSpec(A64, "str w16, [x0]", STORE, 4, 16),
    AccessKind.A64_STR_X: AccessSpec(A64, "str x17, [x0]", STORE, 8, 17, reg64=True),
    AccessKind.A64_STR_XZR: AccessSpec(A64, "str xzr, [x0]", STORE, 8, 31, reg64=True),
    AccessKind.A64_LDR_X_POST: AccessSpec(A64, "ldr x18, [x7], #8", LOAD, 8, 18, reg64=True,
                                          writeback=True),
    AccessKind.A64_STR_X_PRE: AccessSpec(A64, "str x1, [x7, #-16]!", STORE, 8, 1, reg64=True,
                                         writeback=True),
    AccessKind.A64_LDP_X: AccessSpec(A64, "ldp x3, x4, [x0]", LOAD, 16, 3, reg64=True, multi=True),
    AccessKind.A64_STP_X: AccessSpec(A64, "stp x1, x2, [x0]", STORE, 16, 1, reg64=True, multi=True),
    AccessKind.A64_LDXR_STXR: AccessSpec(A64, "ldxr x3, [x0]; stxr w4, x1, [x0]", EXCL, 8, 3,
                                         reg64=True, exclusive=True),
    AccessKind.A64_LDAR_X: AccessSpec(A64, "ldar x30, [x0]", LOAD, 8, 30, reg64=True, acqrel=True),
    AccessKind.A64_LDARB_W: AccessSpec(A64, "ldarb w5, [x0]", LOAD, 1, 5, acqrel=True),
    AccessKind.A64_STLR_W: AccessSpec(A64, "stlr w3, [x0]", STORE, 4, 3, acqrel=True),
    AccessKind.A64_LDR_Q: AccessSpec(A64, "ldr q1, [x0]", LOAD, 16, 1, multi=True, simd=True),
    AccessKind.A64_STR_Q: AccessSpec(A64, "str q1, [x0]", STORE, 16, 1, multi=True, simd=True),
    AccessKind.A64_DC_ZVA: AccessSpec(A64, "dc zva, x0", ZVA, 0, 0),
    AccessKind.A64_IFETCH: AccessSpec(A64, "br x0", FETCH, 4, 0),

    AccessKind.A32_LDR: AccessSpec(A32, "ldr r3, [r0]", LOAD, 4, 3),
    AccessKind.A32_LDRB: AccessSpec(A32, "ldrb r4, [r0]", LOAD, 1, 4),
    AccessKind.A32_LDRH: AccessSpec(A32, "ldrh r6, [r0]", LOAD, 2, 6),
    AccessKind.A32_LDRSB: AccessSpec(A32, "ldrsb r7, [r0]", LOAD, 1, 7, signed=True),
    AccessKind.A32_LDRSH: AccessSpec(A32, "ldrsh r8, [r0]", LOAD, 2, 8, signed=True),
    AccessKind.A32_STR: AccessSpec(A32, "str r9, [r0]", STORE, 4, 9),
    AccessKind.A32_STRB: AccessSpec(A32, "strb r10, [r0]", STORE, 1, 10),
    AccessKind.A32_STRH: AccessSpec(A32, "strh r11, [r0]", STORE, 2, 11),
    AccessKind.A32_STR_LR: AccessSpec(A32, "str lr, [r0]", STORE, 4, 14),
    AccessKind.A32_LDR_POST: AccessSpec(A32, "ldr r3, [r12], #4", LOAD, 4, 3, writeback=True),
    AccessKind.A32_STR_PRE: AccessSpec(A32, "str r1, [r12, #-8]!", STORE, 4, 1, writeback=True),
    AccessKind.A32_LDRD: AccessSpec(A32, "ldrd r4, r5, [r0]", LOAD, 8, 4, multi=True),
    AccessKind.A32_STRD: AccessSpec(A32, "strd r2, r3, [r0]", STORE, 8, 2, multi=True),
    AccessKind.A32_LDM: AccessSpec(A32, "ldm r0, {r3, r4}", LOAD, 8, 3, multi=True),
    AccessKind.A32_LDREX_STREX: AccessSpec(A32, "ldrex r3, [r0]; strex r4, r1, [r0]", EXCL, 4, 3,
                                           exclusive=True),
    AccessKind.A32_LDA: AccessSpec(A32, "lda r3, [r0]", LOAD, 4, 3, acqrel=True, min_version=8),
    AccessKind.A32_STL: AccessSpec(A32, "stl r1, [r0]", STORE, 4, 1, acqrel=True, min_version=8),
    AccessKind.A32_VLDR: AccessSpec(A32, "vldr d0, [r0]", LOAD, 8, 0, multi=True, simd=True),
    AccessKind.A32_VSTR: AccessSpec(A32, "vstr d0, [r0]", STORE, 8, 0, multi=True, simd=True),
    AccessKind.A32_IFETCH: AccessSpec(A32, "bx r0", FETCH, 4, 0),
}
assert set(_SPECS) == set(AccessKind)


def instruction_syndrome_valid(spec: AccessSpec) -> bool:
    """ESR_EL2.ISV / HSR.ISV for a stage-2 abort that is neither on a stage-1
    walk nor an External abort (Arm ARM D24.2.46 ESR_EL2 ISV; G8.2.74 HSR):
    1 only for a load or store of a single general-purpose register,
    acquire/release included, Load/Store Exclusive and register writeback
    excluded (AArch32: LDR/LDA/LDRH/.../STR/STL/STRB without writeback and
    not using the PC).  The A64 instructions that qualify are exactly those
    whose execute pseudocode calls AArch64.SetLSInstructionSyndrome."""
    return (spec.op in (AccessOp.LOAD, AccessOp.STORE) and not spec.multi
            and not spec.exclusive and not spec.writeback)


# --- the data an image places ---------------------------------------------------

HVC2 = {Arch.AARCH64: 0xD400_0042,      # HVC #2 (A64: 0xD4000002 | imm16 << 5)
        Arch.AARCH32: 0xE140_0072}      # HVC #2 (A32: cond 1110, imm12:imm4 = 0:2)
"""The instruction a fetch probe finds at its target: it returns to the
EL2/Hyp stub with immediate 2, so a completed fetch is told from a
completed data access (immediate 0) and from a fetch of anything else."""


def pattern_word(pa: int) -> int:
    """The 64-bit word the image places at the 8-byte aligned PA ``pa`` of
    a data chunk: splitmix64 of the address, so every word differs, wrong-PA
    loads show, and bytes with the top bit set exercise sign extension."""
    z = (pa + 0x9E37_79B9_7F4A_7C15) & U64
    z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & U64
    z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & U64
    return z ^ (z >> 31)


def pattern_bytes(pa: int, length: int) -> bytes:
    """``length`` bytes of the data pattern from the 8-byte aligned ``pa``."""
    if pa % 8 or length % 8:
        raise ValueError(f"pattern chunk [{pa:#x}, +{length:#x}) is not made of aligned words")
    return b"".join(struct.pack("<Q", pattern_word(pa + i)) for i in range(0, length, 8))


def fetch_target_bytes(arch: Arch, pa: int, length: int, offset: int) -> bytes:
    """A data chunk at ``pa`` holding the pattern, with HVC #2 at ``offset``
    (the fetch target) and HVC #3 after it (a fetch that ran on would say
    so instead of executing data)."""
    data = bytearray(pattern_bytes(pa, length))
    struct.pack_into("<I", data, offset, HVC2[arch])
    if offset + 8 <= length:
        struct.pack_into("<I", data, offset + 4, HVC2[arch] + (0x20 if arch is Arch.AARCH64 else 1))
    return bytes(data)


def read_bytes(memory: Memory, pa: int, length: int) -> bytes | None:
    """``length`` bytes of ``memory`` at ``pa`` (any alignment), or None
    when any of them has no RAM behind it."""
    start, end = pa & ~7, (pa + length + 7) & ~7
    words = []
    for a in range(start, end, 8):
        w = memory.read64(a)
        if w is None:
            return None
        words.append(struct.pack("<Q", w))
    raw = b"".join(words)
    return raw[pa - start:pa - start + length]


# --- outcomes of a real access ----------------------------------------------------

class Taken(enum.Enum):
    """Where an access ends."""

    EL2 = "stage-2 abort taken to EL2 (Hyp mode)"
    EL1 = "abort taken to EL1 (PL1)"
    COMPLETED = "completed"


class AbortStatus(enum.Enum):
    """FaultRecord.statuscode values an access probe can produce."""

    ADDRESS_SIZE = "address-size"
    TRANSLATION = "translation"
    ACCESS_FLAG = "access-flag"
    PERMISSION = "permission"
    SEA_ON_WALK = "sea-on-walk"
    ALIGNMENT = "alignment"

    @classmethod
    def of(cls, kind: FaultKind) -> "AbortStatus":
        return cls(kind.value)

    @property
    def fault_kind(self) -> FaultKind | None:
        """The walk's FaultKind for this status (None for Alignment)."""
        return None if self is AbortStatus.ALIGNMENT else FaultKind(self.value)


@dataclasses.dataclass(frozen=True)
class AbortRecord:
    """The parts of the pseudocode's FaultRecord a syndrome is built from.

    ``level``: lookup level (None for Alignment); ``secondstage``: a stage-2
    fault (FaultRecord.secondstage); ``write``: FaultRecord.write, which
    AArch64/AArch32.FaultSyndrome reports as WnR."""

    status: AbortStatus
    level: int | None
    secondstage: bool
    write: bool
    s2fs1walk: bool = False

    @property
    def external(self) -> bool:
        """IsExternalAbort: a synchronous External abort (here only on the walk)."""
        return self.status is AbortStatus.SEA_ON_WALK

    def describe(self) -> str:
        where = "stage-2" if self.secondstage else "stage-1"
        lvl = "" if self.level is None else f", level {self.level}"
        return f"{where} {self.status.value} fault{lvl} on a {'write' if self.write else 'read'}"


@dataclasses.dataclass(frozen=True)
class AccessOutcome:
    """One outcome the architecture permits for an access probe.

    ``insn``: which access instruction of the routine ends it (0; 1 for the
    store-exclusive of the exclusive pair), which gives the ELR.
    ``abort``: the fault for EL2/EL1 outcomes.  ``pa``: the translated PA of
    the (first) access when stage 2 translated it.  ``values``: the
    register values the routine hands back on completion (loaded data; the
    store-exclusive status), as the stub records them (u64 each).
    ``stores``: (PA, bytes) the access writes to memory; ``writes``:
    descriptor updates by the hardware (Access flag, dirty state)."""

    taken: Taken
    rules: tuple[str, ...]
    abort: AbortRecord | None = None
    insn: int = 0
    pa: int | None = None
    values: tuple[int, ...] = ()
    stores: tuple[tuple[int, bytes], ...] = ()
    writes: tuple[DescriptorWrite, ...] = ()

    def describe(self) -> str:
        if self.taken is not Taken.COMPLETED:
            assert self.abort is not None
            text = f"{self.abort.describe()}, taken to {'EL2' if self.taken is Taken.EL2 else 'EL1'}"
        else:
            text = f"completed at PA {self.pa:#x}" if self.pa is not None else "completed"
            if self.values:
                text += " -> " + ", ".join(f"{v:#x}" for v in self.values)
            if self.stores:
                text += "; stores " + ", ".join(f"{len(d)} bytes at {pa:#x}" for pa, d in self.stores)
        if self.writes:
            text += "; updates " + ", ".join(f"[{w.pa:#x}] {w.old:#x}->{w.new:#x}" for w in self.writes)
        return text


@dataclasses.dataclass(frozen=True)
class AccessContext:
    """What the prediction needs beyond the walk.

    ``hcr_dc``: HCR_EL2.DC (HCR.DC) for this access (stage 1 off then makes
    data accesses Normal write-back instead of Device-nGnRnE).
    ``dczva_bytes``: the DC ZVA block size, 4 << DCZID_EL0.BS bytes.
    ``store_data``: the two 64-bit words the probe hands the routine (x1,
    x2 / r1, r2:r1 ...) from which stores take their bytes."""

    hcr_dc: bool = False
    dczva_bytes: int = 64
    store_data: tuple[int, int] = (0, 0)


def _extend(raw: bytes, signed: bool, width: int) -> int:
    value = int.from_bytes(raw, "little")
    bits = 8 * len(raw)
    if signed and value >> (bits - 1):
        value -= 1 << bits
    return value & ((1 << width) - 1)


def loaded_values(arch: Arch, spec: AccessSpec, raw: bytes) -> tuple[int, ...]:
    """The register values a completed load routine hands back, from the
    ``raw`` bytes at its PA: one value extended to the register size
    (SignExtend/ZeroExtend(data, regsize) in the execute pseudocode; a W or
    an AArch32 register is 32 bits and the stub records it zero-extended),
    or two for a pair, an LDRD/LDM/VLDR or a Q register (lowest address
    first)."""
    if spec.multi:
        half = len(raw) // 2
        return (_extend(raw[:half], False, 64), _extend(raw[half:], False, 64))
    width = 64 if (arch is Arch.AARCH64 and spec.reg64) else 32
    return (_extend(raw, spec.signed, width),)


def stored_bytes(arch: Arch, kind: AccessKind, data: tuple[int, int]) -> bytes:
    """The bytes a store routine writes, lowest address first.  AArch64: the
    low ``size`` bytes of x1 (x1 then x2 for STP and the Q register; zeros
    for XZR).  AArch32: r1 = data[31:0], r2 = data[63:32] (STRD/VSTR store
    both words)."""
    spec = kind.spec
    if kind is AccessKind.A64_STR_XZR:
        return bytes(spec.size)
    lo, hi = data
    if spec.size == 16:
        return struct.pack("<QQ", lo & U64, hi & U64)
    return (lo & U64).to_bytes(8, "little")[:spec.size]


def _leaf(outcome: Outcome) -> tuple[int, int, int] | None:
    """(descriptor PA, descriptor, level) of the leaf a walk ended on, or
    None when it ended elsewhere (walk trace)."""
    for step in reversed(outcome.trace):
        if step.kind in ("page", "block") and step.value is not None:
            return step.address, step.value, step.level
    return None


def _with_descriptor(memory: Memory, pa: int, desc: int) -> Memory:
    """``memory`` with the 8 bytes at ``pa`` replaced by ``desc``."""
    regions = [r for r in memory.regions if not (r.pa <= pa < r.end)]
    for r in memory.regions:
        if r.pa <= pa < r.end:
            data = bytearray(r.data)
            struct.pack_into("<Q", data, pa - r.pa, desc)
            regions.append(Region(r.pa, bytes(data)))
            break
    else:
        regions.append(Region(pa, struct.pack("<Q", desc)))
    return Memory(ram=memory.ram, regions=tuple(regions))


def _unpermissioned(cpu: CpuModel, config: S2Config, memory: Memory, ipa: int,
                    outcome: Outcome) -> list[Outcome]:
    """The walk of ``ipa`` with the leaf that gave ``outcome`` (a Permission
    fault) readable and writable: its translations carry the leaf's output
    address and attributes, for the accesses whose permission check differs
    from an AT's (instruction fetch; DC ZVA, whose Device check comes first).
    The S2AP, the trace and the descriptor writes of the returned outcomes
    carry the real descriptor."""
    leaf = _leaf(outcome)
    assert leaf is not None, "a Permission fault is always on a leaf"
    address, desc, _ = leaf
    opened = walk(cpu, config, _with_descriptor(memory, address, desc | DESC_S2AP), ipa,
                  AtKind.S12E1R)
    s2ap = field(desc, 7, 6)

    def real(value: int) -> int:
        return value & ~DESC_S2AP | desc & DESC_S2AP

    return [dataclasses.replace(
        o, result=dataclasses.replace(o.result, s2ap=s2ap),
        writes=tuple(DescriptorWrite(w.pa, desc, real(w.new)) for w in o.writes),
        trace=tuple(dataclasses.replace(t, value=desc) if t.address == address else t
                    for t in o.trace))
        for o in opened.outcomes if isinstance(o.result, Translation)]


def _reopen_permission_faults(cpu: CpuModel, config: S2Config, memory: Memory, ipa: int,
                              at: AtKind, reopen) -> tuple[list[Outcome], list[Outcome]]:
    """The walk of ``ipa`` as ``at``, split into translations and faults,
    where each stage-2 Permission fault on a leaf descriptor for which
    ``reopen(desc)`` holds is replaced by the walk with that leaf's
    permission lifted (_unpermissioned): for accesses whose own checks
    differ from the AT's.  A leaf is redone once even when the walk gave
    its fault twice (AF set and not set)."""
    translations: list[Outcome] = []
    faults: list[Outcome] = []
    redone: set[tuple[int, int, int]] = set()
    for o in walk(cpu, config, memory, ipa, at).outcomes:
        f = o.result
        if not isinstance(f, Fault):      # stage 1 is off here: a Translation
            translations.append(o)
            continue
        leaf = _leaf(o)
        if f.kind is FaultKind.PERMISSION and f.stage2 and leaf is not None and reopen(leaf[1]):
            if leaf not in redone:
                redone.add(leaf)
                translations.extend(_unpermissioned(cpu, config, memory, ipa, o))
            continue
        faults.append(o)
    return translations, faults


def _real_access_translations(outcomes: tuple[Outcome, ...]) -> list[Outcome]:
    """Drop the AT-only choice of leaving AF clear: a real access that
    translates with HA = 1 sets the Access flag (AArch64.S2Translate,
    AArch64.SettingAccessFlagPermitted(Fault_None) is TRUE).  The walk
    returns that choice as a Translation with AF = 0 and no write."""
    kept = []
    for o in outcomes:
        if isinstance(o.result, Translation) and o.result.af == 0 and not o.writes:
            continue
        kept.append(o)
    return kept


def _dirty_writes(cpu: CpuModel, config: S2Config, o: Outcome, rules: list[str]
                  ) -> tuple[DescriptorWrite, ...]:
    """The descriptor write of a store that translated: AF (as the walk has
    it) and, with HA = HD = 1 and DBM = 1, S2AP[1] := 1 (AArch64.S2Translate:
    ``new_desc<7> = '1'`` for a write that is not AT, IC or DC)."""
    leaf = _leaf(o)
    result = o.result
    assert isinstance(result, Translation) and leaf is not None
    address, desc, _ = leaf
    hd = config.arch is Arch.AARCH64 and cpu.hafdbs >= 2 and config.ha and config.hd
    if hd and result.dbm and not desc & DESC_S2AP_W:
        rules.append(R.ACC_DIRTY_SET.text(
            "AArch64.S2Translate: HA = HD = 1, DBM = 1: the write sets S2AP[1] (dirty)"))
        new = (o.writes[0].new if o.writes else desc) | DESC_S2AP_W
        return (DescriptorWrite(address, desc, new),)
    return o.writes


def _is_device(memattr: int) -> bool:
    """Stage-2 MemAttr[3:2] = 0b00: Device memory (S2 memory attributes)."""
    return field(memattr, 3, 2) == 0


def _aarch64_execute_permitted(xn: int) -> bool:
    """AArch64.S2DirectBasePermissions: execute permission at EL1 (px) from
    XN[1:0] = desc[54:53] (desc[53] only with FEAT_XNX): 00 and 11 allow
    EL1 execution, 01 and 10 do not."""
    return xn in (0b00, 0b11)


def _aarch32_execute_permitted(cpu: CpuModel, xn: int, s2ap: int) -> bool:
    """AArch32.S2HasPermissionsFault for an instruction fetch at PL1: with
    FEAT_XNX, px = S2AP[0] for XN[1:0] 00 and 11, else 0; without it,
    x = S2AP[0] AND NOT XN.  Unlike AArch64, a fetch needs read permission."""
    r = s2ap & 1
    if cpu.feat_xnx:
        return bool(r) and xn in (0b00, 0b11)
    return bool(r) and not (xn >> 1)


def access_outcomes(cpu: CpuModel, config: S2Config, memory: Memory, ipa: int,
                    kind: AccessKind, ctx: AccessContext = AccessContext()) -> tuple[AccessOutcome, ...]:
    """Every outcome the architecture permits for the access routine
    ``kind`` applied to ``ipa`` (with stage 1 off, VA = IPA) under
    ``config``, and what it leaves in memory and in the tables.

    Raises ValueError for a probe the stubs cannot make: an access of the
    wrong architecture, or a misaligned address (stage 1 would fault first
    on Device memory; the generator never makes one)."""
    spec = kind.spec
    if spec.arch is not config.arch:
        raise ValueError(f"{kind.name} is an {spec.arch.value} access, the config is {config.arch.value}")
    align = 4 if spec.op in (AccessOp.IFETCH, AccessOp.DC_ZVA) else min(spec.size, 16)
    if spec.op is not AccessOp.DC_ZVA and ipa % align:
        raise ValueError(f"{kind.name} at {ipa:#x} is not {align}-byte aligned")
    if spec.op is AccessOp.IFETCH:
        return tuple(_fetch_outcomes(cpu, config, memory, ipa))
    if spec.op is AccessOp.DC_ZVA:
        return tuple(_dc_zva_outcomes(cpu, config, memory, ipa, ctx))
    if spec.op is AccessOp.EXCLUSIVE:
        return tuple(_exclusive_outcomes(cpu, config, memory, ipa, kind, ctx))
    return tuple(_data_outcomes(cpu, config, memory, ipa, kind, ctx, insn=0))


def _fault_outcome(o: Outcome, write: bool, insn: int, extra: tuple[str, ...] = ()) -> AccessOutcome:
    """The abort a faulting walk outcome becomes: a stage-1 Address size
    fault (IPA beyond PAMax with stage 1 off) is taken to EL1; every stage-2
    fault, the External abort on the stage-2 walk included, to EL2
    (AArch64.DataAbort / AArch64.InstructionAbort: route_to_el2 when
    IsSecondStage(fault); AArch64.SyncExternalAbortTarget likewise)."""
    f = o.result
    assert isinstance(f, Fault)
    record = AbortRecord(AbortStatus.of(f.kind), f.level, f.stage2, write, f.s1ptw)
    taken = Taken.EL2 if f.stage2 else Taken.EL1
    return AccessOutcome(taken, o.rules + extra, abort=record, insn=insn, writes=o.writes)


def _data_outcomes(cpu: CpuModel, config: S2Config, memory: Memory, ipa: int, kind: AccessKind,
                   ctx: AccessContext, insn: int) -> list[AccessOutcome]:
    """A load or a store (``kind.spec.op``): the walk for the access's
    direction, with the real-access AF and dirty-state rules."""
    spec = kind.spec
    is_write = spec.op is not AccessOp.LOAD and not (spec.op is AccessOp.EXCLUSIVE and insn == 0)
    res = walk(cpu, config, memory, ipa, AtKind.S12E1W if is_write else AtKind.S12E1R)
    out = []
    for o in _real_access_translations(res.outcomes):
        if isinstance(o.result, Fault):
            out.append(_fault_outcome(o, is_write, insn))
            continue
        rules = list(o.rules)
        writes = _dirty_writes(cpu, config, o, rules) if is_write else o.writes
        assert isinstance(o.result, Translation)     # stage 1 is off: no NestedTranslation
        pa = o.result.pa
        if is_write:
            stores = ((pa, stored_bytes(config.arch, kind, ctx.store_data)),)
            out.append(AccessOutcome(Taken.COMPLETED, tuple(rules), insn=insn, pa=pa,
                                     stores=stores, writes=writes))
            continue
        raw = read_bytes(memory, pa, spec.size)
        if raw is None:
            raise ValueError(f"{kind.name} at IPA {ipa:#x} would read PA {pa:#x}, where there is "
                             "no RAM (a generator must not make this probe)")
        out.append(AccessOutcome(Taken.COMPLETED, tuple(rules), insn=insn, pa=pa,
                                 values=loaded_values(config.arch, spec, raw), writes=writes))
    return out


def _exclusive_outcomes(cpu: CpuModel, config: S2Config, memory: Memory, ipa: int,
                        kind: AccessKind, ctx: AccessContext) -> list[AccessOutcome]:
    """LDXR then STXR (LDREX then STREX) to the same address.  The load
    runs first and may fault as a read.  After it, the store-exclusive
    translates as a write (AArch64.ExclusiveMonitorsPass translates once
    the monitor is set) and may fault; when it does not, it is permitted
    to fail (status 1, nothing stored: the local monitor may be cleared
    for IMPLEMENTATION DEFINED reasons, and exclusives on Device memory are
    IMPLEMENTATION DEFINED) or to succeed (status 0, the word stored)."""
    spec = kind.spec
    out = []
    for load in _data_outcomes(cpu, config, memory, ipa, kind, ctx, insn=0):
        if load.taken is not Taken.COMPLETED:
            out.append(load)
            continue
        # The loaded memory is the initial one: a data chunk serves one probe.
        after_load = memory if not load.writes else _apply_writes(memory, load.writes)
        for store in _data_outcomes(cpu, config, after_load, ipa, kind, ctx, insn=1):
            writes = _merge_writes(load.writes, store.writes)
            if store.taken is not Taken.COMPLETED:
                out.append(dataclasses.replace(store, rules=load.rules + store.rules, writes=writes))
                continue
            loaded = load.values[0]
            out.append(AccessOutcome(Taken.COMPLETED, load.rules + store.rules + (
                R.ACC_STXR_OK.text("store-exclusive succeeds (status 0)"),), insn=1, pa=store.pa,
                values=(loaded, 0), stores=store.stores, writes=writes))
            out.append(AccessOutcome(Taken.COMPLETED, load.rules + store.rules + (
                R.ACC_STXR_FAILS.text(
                    "store-exclusive fails (status 1): the local monitor may be cleared "
                    "(IMPLEMENTATION DEFINED), nothing is stored"),), insn=1, pa=store.pa,
                values=(loaded, 1), writes=_merge_writes(load.writes, ())))
    assert spec.op is AccessOp.EXCLUSIVE
    return out


def _apply_writes(memory: Memory, writes: tuple[DescriptorWrite, ...]) -> Memory:
    for w in writes:
        memory = _with_descriptor(memory, w.pa, w.new)
    return memory


def _merge_writes(first: tuple[DescriptorWrite, ...], second: tuple[DescriptorWrite, ...]
                  ) -> tuple[DescriptorWrite, ...]:
    """Successive updates of the same descriptor as one old -> new write."""
    merged: dict[int, DescriptorWrite] = {}
    for w in first + second:
        prev = merged.get(w.pa)
        merged[w.pa] = DescriptorWrite(w.pa, prev.old if prev else w.old, w.new)
    return tuple(w for w in merged.values() if w.old != w.new)


def _fetch_outcomes(cpu: CpuModel, config: S2Config, memory: Memory, ipa: int
                    ) -> list[AccessOutcome]:
    """An instruction fetch (BR/BX to ``ipa``).  Stage 1 off: Normal memory,
    no alignment fault.  Stage 2: the walk as for a read, then execute
    permission instead of read permission (see the module docstring), with
    INSTRDEVICE for Device memory.  A completed fetch executes HVC #2 when
    the image placed it at the PA (values () -- the stub records the HVC)."""
    # The read permission an AT checks is not the fetch's: every leaf that
    # denied it is walked again without it.
    translations, faults = _reopen_permission_faults(
        cpu, config, memory, ipa, AtKind.S12E1R, lambda desc: True)
    out = [_fault_outcome(o, False, 0) for o in faults]
    for o in _real_access_translations(tuple(translations)):
        t = o.result
        assert isinstance(t, Translation)
        leaf = _leaf(o)
        assert leaf is not None
        if config.arch is Arch.AARCH64:
            allowed = _aarch64_execute_permitted(t.xn)
            why = R.ACC_FETCH_XN[("a64", allowed)].text(
                f"AArch64.S2CheckPermissions (IFETCH): XN={t.xn:02b} gives px={int(allowed)}")
        else:
            allowed = _aarch32_execute_permitted(cpu, t.xn, t.s2ap)
            why = R.ACC_FETCH_XN[("a32", allowed)].text(
                f"AArch32.S2HasPermissionsFault (IFETCH): S2AP={t.s2ap:02b} XN={t.xn:02b} "
                f"gives x={int(allowed)}")
        perm = AbortRecord(AbortStatus.PERMISSION, t.level, True, False)
        af_choices = _af_on_permission_fault(config, leaf)
        if not allowed:
            out.extend(AccessOutcome(Taken.EL2, o.rules + (why,) + r, abort=perm, writes=w)
                       for r, w in af_choices)
            continue
        if _is_device(t.memattr):
            out.extend(AccessOutcome(Taken.EL2, o.rules + (R.ACC_INSTRDEVICE_FAULT.text(
                "ConstrainUnpredictable(Unpredictable_INSTRDEVICE) = Constraint_FAULT: fetch "
                f"from stage-2 Device memory (MemAttr={t.memattr:04b}) takes a Permission fault"),) + r,
                abort=perm, writes=w) for r, w in af_choices)
            dev_rule: tuple[str, ...] = (R.ACC_INSTRDEVICE_NONE.text(
                "ConstrainUnpredictable(Unpredictable_INSTRDEVICE) = Constraint_NONE: "
                "the fetch proceeds as Normal Non-cacheable"),)
        else:
            dev_rule = ()
        out.append(AccessOutcome(Taken.COMPLETED, o.rules + (why,) + dev_rule, pa=t.pa,
                                 writes=o.writes))
    return out


def _af_on_permission_fault(config: S2Config, leaf: tuple[int, int, int]
                            ) -> list[tuple[tuple[str, ...], tuple[DescriptorWrite, ...]]]:
    """AArch64.SettingAccessFlagPermitted for a Permission or Alignment
    fault with HA = 1 and AF = 0: ConstrainUnpredictableBool
    (Unpredictable_AFUPDATE), so both are permitted."""
    address, desc, _ = leaf
    if config.arch is Arch.AARCH64 and config.ha and bit(desc, 10) == 0:
        return [((R.A64_S2_AFUPDATE_NOT_SET.text(
                    "CONSTRAINED UNPREDICTABLE (Unpredictable_AFUPDATE): AF not set"),), ()),
                ((R.A64_S2_AFUPDATE_SET.text(
                    "CONSTRAINED UNPREDICTABLE (Unpredictable_AFUPDATE): AF set"),),
                 (DescriptorWrite(address, desc, desc | DESC_AF),))]
    return [((), ())]


def _dc_zva_outcomes(cpu: CpuModel, config: S2Config, memory: Memory, ipa: int,
                     ctx: AccessContext) -> list[AccessOutcome]:
    """DC ZVA of the block holding ``ipa`` (AArch64.MemZero, AArch64.
    DataMemZero): vaddress = Align(regval, size); a fault is reported at
    regval, the register's own value.  Stage 1 off with HCR_EL2.DC = 0 is
    Device memory: AArch64.S1HasAlignmentFault (AccessType_DCZero) raises a
    stage-1 Alignment fault, taken to EL1, before stage 2.  With DC = 1
    stage 1 is Normal; then stage 2 walks as a write, and a leaf whose
    MemAttr is Device gives a stage-2 Alignment fault
    (AArch64.S2HasAlignmentFault), checked before permissions."""
    size = ctx.dczva_bytes
    base = ipa & ~(size - 1)
    if ipa >> cpu.pamax:
        # AArch64.S1DisabledOutput checks the address size before alignment.
        return [AccessOutcome(Taken.EL1, (R.A64_S1_DISABLED_OUTPUT.text(
                                  "AArch64.S1DisabledOutput: IPA >= 2^PAMax with stage 1 off"),),
                              abort=AbortRecord(AbortStatus.ADDRESS_SIZE, 0, False, True))]
    if not ctx.hcr_dc:
        return [AccessOutcome(Taken.EL1, (
            R.ACC_S1_DEVICE.text("AArch64.S1DisabledOutput: HCR_EL2.DC = 0 gives Device-nGnRnE"),
            R.ACC_DCZVA_S1_ALIGN.text(
                "AArch64.S1HasAlignmentFault: AccessType_DCZero on Device memory")),
            abort=AbortRecord(AbortStatus.ALIGNMENT, None, False, True))]
    # Alignment is checked before permissions: a Device leaf that denied
    # the write is walked again without the permission check.
    translations, faults = _reopen_permission_faults(
        cpu, config, memory, base, AtKind.S12E1W, lambda desc: _is_device(field(desc, 5, 2)))
    out = [_fault_outcome(o, True, 0) for o in faults]
    for o in _real_access_translations(tuple(translations)):
        t = o.result
        assert isinstance(t, Translation)
        leaf = _leaf(o)
        assert leaf is not None
        if _is_device(t.memattr):
            align = AbortRecord(AbortStatus.ALIGNMENT, None, True, True)
            rule = (R.ACC_DCZVA_S2_ALIGN.text(
                f"AArch64.S2HasAlignmentFault: AccessType_DCZero on stage-2 Device memory "
                f"(MemAttr={t.memattr:04b})"),)
            out.extend(AccessOutcome(Taken.EL2, o.rules + rule + r, abort=align, writes=w)
                       for r, w in _af_on_permission_fault(config, leaf))
            continue
        rules = list(o.rules)
        writes = _dirty_writes(cpu, config, o, rules)
        out.append(AccessOutcome(Taken.COMPLETED, tuple(rules) + (R.ACC_DCZVA_ZERO.text(
            f"AArch64.DataMemZero: {size} bytes zeroed from Align(regval, {size})"),), pa=t.pa,
            stores=((t.pa, bytes(size)),), writes=writes))
    return out
