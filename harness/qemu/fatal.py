"""Decoding the stub's FATAL report: exception syndromes (ESR_EL2 / HSR)
and vectors in words, the faulting PC symbolized and disassembled.  Pure
functions of the recorded values and the stub ELF."""
from __future__ import annotations

from reference.arch import Arch

from .elf import StubElf
from .job import FatalInfo, FatalReason

_EC_NAMES = {
    0x00: "unknown reason", 0x01: "WFI/WFE", 0x03: "MCR/MRC (cp15)", 0x04: "MCRR/MRRC (cp15)",
    0x05: "MCR/MRC (cp14)", 0x06: "LDC/STC", 0x07: "SIMD/FP access", 0x0C: "MRRC (cp14)",
    0x0E: "illegal execution state", 0x11: "SVC (AArch32)", 0x12: "HVC (AArch32)",
    0x13: "SMC (AArch32)", 0x15: "SVC (AArch64)", 0x16: "HVC (AArch64)", 0x17: "SMC (AArch64)",
    0x18: "MSR/MRS/system instruction", 0x20: "instruction abort from a lower EL",
    0x21: "instruction abort without a change in EL", 0x22: "PC alignment",
    0x24: "data abort from a lower EL", 0x25: "data abort without a change in EL",
    0x26: "SP alignment", 0x2F: "SError", 0x30: "breakpoint (lower EL)",
    0x31: "breakpoint (same EL)", 0x32: "software step (lower EL)",
    0x33: "software step (same EL)", 0x34: "watchpoint (lower EL)",
    0x35: "watchpoint (same EL)", 0x38: "BKPT (AArch32)", 0x3C: "BRK (AArch64)",
}

_FSC_GROUPS = {0b0000: "address size fault", 0b0001: "translation fault",
               0b0010: "access flag fault", 0b0011: "permission fault",
               0b0101: "synchronous external abort on translation table walk",
               0b0111: "synchronous parity/ECC error on translation table walk"}

_VECTORS = {
    Arch.AARCH64: {0x000: "current EL, SP_EL0", 0x200: "current EL, SP_ELx",
                   0x400: "lower EL, AArch64", 0x600: "lower EL, AArch32"},
    Arch.AARCH32: {0x00: "reset (unused)", 0x04: "undefined instruction", 0x08: "HVC/SVC",
                   0x0C: "prefetch abort", 0x10: "data abort", 0x14: "hyp trap",
                   0x18: "IRQ", 0x1C: "FIQ"},
}


def describe_vector(arch: Arch, offset: int) -> str:
    """Name of the vector at ``offset`` in VBAR_EL2 / HVBAR."""
    if arch is Arch.AARCH64:
        base = _VECTORS[arch].get(offset & ~0x1FF, "?")
        kind = ("synchronous", "IRQ", "FIQ", "SError")[(offset >> 7) & 3]
        return f"{base}, {kind}"
    return _VECTORS[arch].get(offset, "?")


def describe_esr(esr: int) -> str:
    """ESR_EL2 / HSR decoded to EC name, IL and, for aborts, the fault status."""
    ec = (esr >> 26) & 0x3F
    il = (esr >> 25) & 1
    iss = esr & 0x1FFFFFF
    text = f"EC {ec:#04x} ({_EC_NAMES.get(ec, 'reserved')}), IL={il}, ISS {iss:#x}"
    if ec in (0x20, 0x21, 0x24, 0x25):
        fsc = iss & 0x3F
        group = _FSC_GROUPS.get(fsc >> 2)
        if group is not None:
            text += f", FSC {fsc:#04x}: {group}, level {fsc & 3}"
        elif fsc == 0x10:
            text += f", FSC {fsc:#04x}: synchronous external abort (not on a walk)"
        elif fsc == 0x21:
            text += f", FSC {fsc:#04x}: alignment fault"
        else:
            text += f", FSC {fsc:#04x}"
        if ec in (0x24, 0x25):
            text += f", WnR={(iss >> 6) & 1}, S1PTW={(iss >> 7) & 1}"
    return text


def describe_fatal(stub: StubElf, fatal: FatalInfo) -> str:
    """Human text for a FATAL stop: the reason, the decoded syndrome, the
    faulting PC's symbol and the stub's code around it."""
    if fatal.reason is not FatalReason.EXCEPTION:
        return f"stub refused the job: {fatal.reason.name} (detail {fatal.detail:#x})"
    return "\n".join([
        f"unexpected exception at EL2: vector {fatal.vector:#x} "
        f"({describe_vector(stub.arch, fatal.vector)})",
        f"ESR {fatal.esr:#x}: {describe_esr(fatal.esr)}",
        f"ELR {fatal.elr:#x} <{stub.symbolize(fatal.elr)}>  FAR {fatal.far:#x}",
        stub.disassemble(fatal.elr),
    ])
