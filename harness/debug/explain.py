"""The readable account of a (minimal) case: the configuration decoded
field by field, the reference's walk level by level (descriptor address,
raw value, fields by their Arm ARM names, the rule applied), the permitted
outcomes and the observation."""
from __future__ import annotations

import dataclasses
import struct

from reference import catalogue as cat
from reference.arch import Arch
from reference.bits import bit, field, mask
from reference.config import FINAL_LEVEL
from reference.generate import Case, build_layout
from reference.image import Layout
from reference.outcome import TraceStep
from reference.par import predict
from reference.walk import (
    aarch64_block_desc_supported,
    aarch64_nss2_ttw_params,
    aarch64_physical_address_size,
    walk,
)

from ..vocabulary import DivergenceKind, observation_text
from .lab import Trial
from .rebuild import NotRebuildable, longest_trace, table_address_mask


def oa_bits(case: Case) -> int:
    """The effective output address size in bits (AArch32: 40)."""
    if case.cpu.arch is Arch.AARCH32:
        return 40
    layout = build_layout(case.cpu, case.config)
    return aarch64_physical_address_size(case.cpu, case.config.ps, layout.granule)


def descriptor_address(case: Case, layout: Layout, value: int, low_bits: int) -> int:
    """The address a descriptor holds (bits [47:low_bits], or [39:low_bits]
    on AArch32, plus PA[51:48] where the layout keeps them)."""
    if case.cpu.arch is Arch.AARCH32:
        return field(value, 39, low_bits) << low_bits
    addr = field(value, 47, low_bits) << low_bits
    if layout.lpa64:
        addr |= field(value, 15, 12) << 48
    elif layout.ds:
        addr |= (field(value, 9, 8) << 2 | field(value, 49, 48)) << 48
    return addr


def block_allowed(case: Case, layout: Layout, level: int) -> bool:
    """Whether the architecture allows a leaf (block or page) at ``level``."""
    if level == FINAL_LEVEL:
        return True
    if case.cpu.arch is Arch.AARCH32:
        return level >= 1
    p = aarch64_nss2_ttw_params(case.cpu, case.config)[0][0]
    p = dataclasses.replace(p, granule=layout.granule, ds=int(layout.ds))
    return aarch64_block_desc_supported(case.cpu, p, level)


def decode_descriptor(case: Case, layout: Layout, step: TraceStep) -> str:
    """The fields of one descriptor read, by their Arm ARM names."""
    v = step.value
    if v is None:
        return "nothing read (no memory behind the address)"
    level = step.level
    if not v & 1:
        return "bits[1:0]=0b%d%d: invalid (bit 0 clear)" % (bit(v, 1), bit(v, 0))
    if v & 2 and level < FINAL_LEVEL:
        nxt = descriptor_address(case, layout, v, layout.granule.bits)
        other = v & ~table_address_mask(case.cpu.arch, layout) & ~0b11
        text = f"bits[1:0]=0b11 table: next-level table {nxt:#x}"
        if case.cpu.arch is Arch.AARCH32 and field(v, 47, 40):
            text += f", bits[47:40]={field(v, 47, 40):#x}"
            other &= ~mask(47, 40)
        return text + (f", other bits {other:#x}" if other else "")
    lsb = layout.geo.block_bits(level)
    kind = "page" if level == FINAL_LEVEL else "block"
    oa = descriptor_address(case, layout, v, lsb)
    parts = [f"bits[1:0]=0b{bit(v, 1)}{bit(v, 0)} {kind}: OA {oa:#x}"]
    if case.cpu.arch is Arch.AARCH32 and field(v, 47, 40):
        parts.append(f"bits[47:40]={field(v, 47, 40):#x}")
    parts.append(f"MemAttr={field(v, 5, 2):04b} S2AP={field(v, 7, 6):02b}")
    if not layout.ds:
        parts.append(f"SH={field(v, 9, 8):02b}")
    parts.append(f"AF={bit(v, 10)}")
    for name, n in (("nT", 16), ("DBM", 51), ("Contiguous", 52)):
        if bit(v, n):
            parts.append(f"{name}=1")
    parts.append(f"XN={field(v, 54, 53):02b}")
    return " ".join(parts)


def describe_config(case: Case) -> list[str]:
    """VTCR and VTTBR decoded field by field, and the geometry they select."""
    arch = case.cpu.arch
    c = case.config
    verdict = cat.judge(case.cpu, c)
    reg = "VTCR_EL2" if arch is Arch.AARCH64 else "VTCR"
    lines = [f"CPU {case.cpu.name} ({arch.value}, PAMax {case.cpu.pamax})",
             f"{reg} = {c.vtcr():#x}"]
    for f in cat.decode_vtcr(arch, c.vtcr(), verdict.start_level):
        bits = f"[{f.hi}:{f.lo}]" if f.hi != f.lo else f"[{f.hi}]"
        lines.append(f"  {f.name:<6}{bits:<8}{f.value:<5} {f.meaning}")
    if verdict.valid and verdict.start_level is not None and verdict.ia_bits is not None \
            and verdict.granule is not None:
        lines.append(f"  -> {verdict.granule.label} granule, {verdict.ia_bits}-bit IPA, start level "
                     f"{verdict.start_level}, {verdict.levels} levels, {verdict.concat} table(s) "
                     f"at the start level, output {verdict.oa_bits} bits")
    else:
        lines.append("  -> invalid: " + "; ".join(verdict.problems))
    vmid = field(c.vttbr, 63, 48) if arch is Arch.AARCH64 else field(c.vttbr, 55, 48)
    reg = "VTTBR_EL2" if arch is Arch.AARCH64 else "VTTBR"
    lines.append(f"{reg} = {c.vttbr:#x}: VMID {vmid:#x}, BADDR {c.vttbr & mask(47, 1):#x}"
                 + (", CnP" if c.vttbr & 1 else ""))
    return lines


# Image words listed by explain_case, and words per line (each line stays
# under ~130 characters: "[0x...] 0x................" is 40 at most).
IMAGE_WORDS = 48
WORDS_PER_LINE = 3


def image_lines(case: Case, walked: frozenset[int] | set[int] = frozenset()) -> list[str]:
    """The image's non-zero descriptor words, each with its own address,
    a few per line; the words a walk reads first (``walked``), at most
    IMAGE_WORDS, the rest counted."""
    words = [(r.pa + o, struct.unpack_from("<Q", r.data, o)[0])
             for r in case.image.regions for o in range(0, len(r.data) - 7, 8)]
    words = [(pa, v) for pa, v in words if v]
    if not words:
        return ["image: no non-zero descriptor (RAM reads as zero)"]
    shown = sorted(words, key=lambda w: (w[0] not in walked, w[0]))[:IMAGE_WORDS]
    shown.sort()
    cells = [f"[{pa:#x}] {v:#018x}" for pa, v in shown]
    out = [f"image: {len(words)} non-zero descriptor word{'s' if len(words) != 1 else ''}"
           + (f" ({len(shown)} shown: the walked ones first)" if len(shown) < len(words) else "")
           + ":"]
    out += ["  " + "  ".join(cells[i:i + WORDS_PER_LINE])
            for i in range(0, len(cells), WORDS_PER_LINE)]
    return out


def explain_case(case: Case, trial: Trial | None, index: int = 0,
                 number: int | None = None) -> str:
    """The readable account of probe ``index``: configuration decoded, the
    reference's walk level by level (descriptor address, raw value, decoded
    fields, the rule applied), the permitted outcomes and the observation.
    ``number``: the probe's number to show (its number in the case it was
    taken from; default ``index``)."""
    arch = case.cpu.arch
    layout = build_layout(case.cpu, case.config)
    probe = case.probes[index]
    lines = describe_config(case)
    res0 = walk(case.cpu, case.config, case.memory(), probe.ipa, probe.at)
    lines += image_lines(case, {t.address for o in res0.outcomes for t in o.trace})
    lines.append(f"probe {index if number is None else number}: {probe.at.name_for(arch)} "
                 f"IPA {probe.ipa:#x} ({probe.aim})")
    res = walk(case.cpu, case.config, case.memory(), probe.ipa, probe.at)
    try:
        trace = longest_trace(case, index)
    except NotRebuildable:
        trace = max((o.trace for o in res.outcomes), key=len)
    lines.append("walk (reference):")
    if not trace:
        lines.append("  no descriptor read")
    for step in trace:
        value = "no memory" if step.value is None else f"{step.value:#018x}"
        lines.append(f"  L{step.level} [{step.address:#x}] = {value}")
        lines.append(f"      {decode_descriptor(case, layout, step)}")
        lines.append(f"      {step.kind}" + (f": {step.note}" if step.note else ""))
    for o in res.outcomes:
        pred = predict(arch, o, probe.ipa, case.cpu.arch_version)
        lines.append(f"permitted: {o.describe()} -> {pred.report.value} {pred.pattern.value:#x} "
                     f"(care {pred.pattern.care:#x})")
        for rule in o.rules:
            lines.append(f"    rule: {rule}")
    if trial is not None and trial.completed:
        lines.append(f"observed ({trial.batch.qemu_version}): "
                     f"{observation_text(arch, trial.observation(index))}")
        for f in trial.divergences:
            if f.signature.kind is DivergenceKind.MEMORY:
                lines.append(f"observed: {f.record.observed_text} (no permitted outcome "
                             "writes this)")
    return "\n".join(lines)
