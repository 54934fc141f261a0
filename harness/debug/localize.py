"""Localizing a divergence: the first walk level at which QEMU departs from
the reference, the descriptor there and the field involved; and the readable
explanation of a (minimal) case.

The experiment (docs/debugging.md has the worked reasoning).  For each level
L of the reference's walk of the probe, variants replace the descriptor at
L, and nothing else, by one whose outcome the architecture fixes:

* ``invalid``: the same descriptor with bit[0] cleared: a Translation fault
  at level L for every walker that reads it at that address;
* ``leaf``: where the architecture allows a block or page at L, a valid leaf
  (AF = 1, S2AP = 0b11) with an in-range output address: a translation at L.

QEMU *reaches* level L when it agrees with the reference on every variant at
L **and** its answer changed (some variant's observation differs from the
unmodified case's): it reads the descriptor at the reference's address, by
the same interpretation of everything above it, and handles ordinary values
there as the reference does.  The levels reached form a prefix of the walk.
The departure is at the last level of that prefix:

* every level is reached down to the terminal descriptor (the one that
  decides the outcome): QEMU reads that descriptor and differs only on its
  value, so the departure is a field of the terminal descriptor;
* the prefix stops at level K above the terminal: QEMU reads the table
  descriptor at K but does not arrive where the reference does at K + 1, so
  it interprets that table descriptor differently;
* no level is reached: QEMU departs before the first descriptor read, in
  the configuration (VTCR, VTTBR).  Configuration variants then change one
  field at a time (PS, T0SZ, SL0), keeping only those for which the
  reference's outcome is unchanged; a field for which QEMU then agrees is
  implicated.

The field of a departing descriptor is named from the reference's rule for
it (and the observed outcome), and confirmed where a *repair* variant exists:
the same descriptor with only that field made ordinary (OA bits above the
output size cleared, AF set, S2AP = 0b11, ...); QEMU agreeing on the repair
shows that field is the one it treats differently.

Variants are rebuilt walks (harness.shrink.rebuild) in windows of their
own, so one QEMU boot runs them all; an unmodified rebuilt control must
diverge the same way first.  When the walk cannot be rebuilt, each variant
edits the case's image in place and runs in a boot of its own.
"""
from __future__ import annotations

import dataclasses
import textwrap
from typing import Sequence

from reference.arch import Arch
from reference.bits import bit, field, mask
from reference.catalogue import judge
from reference.config import FINAL_LEVEL
from reference.generate import Case
from reference.image import Layout
from reference.outcome import TraceStep
from reference.walk import walk

from ..vocabulary import DivergenceKind, Signature
from .explain import block_allowed, descriptor_address, oa_bits
from .lab import Lab, Trial, only
from .rebuild import (
    NotRebuildable,
    WalkPath,
    table_address_mask,
    walk_path,
)
from .variants import Maker, Variant, config_summary, config_variants, leaf_value, obs_key

# Longest line localize prints.
LINE_WIDTH = 150

# ---------------------------------------------------------------------------
# The field involved
# ---------------------------------------------------------------------------

_BIT_NAMES = {0: "valid", 1: "type", 6: "S2AP[0]", 7: "S2AP[1]", 10: "AF", 16: "nT",
              51: "DBM", 52: "Contiguous", 53: "XN[0]", 54: "XN[1]"}


def _granule_blocks(case: Case, layout: Layout) -> str:
    g = layout.granule
    levels = [lvl for lvl in range(-1, FINAL_LEVEL) if block_allowed(case, layout, lvl)]
    where = ", ".join(str(lvl) for lvl in levels) or "no level"
    return f"{g.label} blocks are allowed at level {where} here"


def _oa_repair(case: Case, layout: Layout, value: int, low_bits: int, limit: int) -> int:
    """``value`` with the address bits at and above ``limit`` cleared (in
    bits [47:low_bits] and in the PA[51:48] fields of the layout)."""
    addr = descriptor_address(case, layout, value, low_bits)
    keep = addr & ((1 << limit) - 1)
    if case.cpu.arch is Arch.AARCH32:
        return (value & ~mask(47, low_bits)) | keep
    cleared = value & ~mask(47, low_bits)
    if layout.lpa64:
        cleared &= ~mask(15, 12)
    if layout.ds:
        cleared &= ~(mask(9, 8) | mask(49, 48))
    return cleared | keep


@dataclasses.dataclass(frozen=True)
class FieldFinding:
    """The field named for the departing descriptor, and the repair variant
    that would confirm it (None when there is none)."""

    text: str
    repair: int | None = None
    repair_text: str = ""


def terminal_field(case: Case, path: WalkPath, sig: Signature) -> FieldFinding:
    """The field of the terminal descriptor the reference's rule turns on
    (or, for an expected translation, the one the observed fault names)."""
    layout = path.layout
    step = path.terminal
    v = step.value
    assert v is not None
    level = step.level
    probe = case.probes[0]
    res = walk(case.cpu, case.config, case.memory(), probe.ipa, probe.at)
    rules = " ".join(r for o in res.outcomes for r in o.rules)
    size = oa_bits(case)
    if sig.kind is DivergenceKind.MEMORY:
        after = v ^ int(sig.observed.split()[2], 16)
        allowed = {v} | {w.new for o in res.outcomes for w in o.writes if w.pa == step.address}
        nearest = min(allowed, key=lambda a: bin(a ^ after).count("1"))
        extra = after ^ nearest
        names = ", ".join(_BIT_NAMES.get(n, f"bit {n}") for n in range(64) if extra >> n & 1)
        state = (f"DBM={bit(v, 51)}, S2AP={field(v, 7, 6):02b}, AF={bit(v, 10)}, "
                 f"VTCR_EL2.HA={case.config.ha} HD={case.config.hd}")
        repair = (v & ~(1 << 51), "DBM cleared") if bit(v, 51) and extra & (1 << 7) else (None, "")
        return FieldFinding(f"QEMU writes descriptor bits {extra:#x} ({names}) that no permitted "
                            f"outcome of {probe.at.name_for(case.cpu.arch)} writes ({state}; "
                            f"written {v:#x} -> {after:#x})", *repair)
    if step.kind == "reserved":
        if level == FINAL_LEVEL:
            return FieldFinding("descriptor bits[1:0] = 0b01 at level 3: reserved, only 0b11 is a "
                                "page (AArch64.DecodeDescriptorType)")
        return FieldFinding(f"descriptor bits[1:0] = 0b01 (a block) at level {level}, where "
                            f"AArch64.BlockDescSupported is FALSE ({_granule_blocks(case, layout)})")
    if step.kind == "invalid":
        return FieldFinding(f"descriptor bits[1:0] = 0b{bit(v, 1)}{bit(v, 0)}: bit 0 clear, an "
                            "invalid descriptor")
    if step.kind == "table":
        nxt = descriptor_address(case, layout, v, layout.granule.bits)
        if "synchronous External abort" in rules:
            return FieldFinding(f"next-level table address {nxt:#x} (descriptor bits "
                                f"[47:{layout.granule.bits}]): no memory behind it")
        if case.cpu.arch is Arch.AARCH32 and field(v, 47, 40):
            return FieldFinding(f"table descriptor bits[47:40] = {field(v, 47, 40):#x}, which must "
                                "be zero (AArch32.S2Walk)", v & ~mask(47, 40),
                                "bits[47:40] cleared")
        where = _high_field(layout)
        return FieldFinding(f"next-level table address {nxt:#x} (bits [47:{layout.granule.bits}]"
                            f"{where}) has bits above the {size}-bit output size",
                            _oa_repair(case, layout, v, layout.granule.bits, size),
                            f"address bits >= {size} cleared")
    lsb = layout.geo.block_bits(level)
    oa = descriptor_address(case, layout, v, lsb)
    if "beyond" in rules and "output address" in rules:
        return FieldFinding(f"output address {oa:#x} (bits [47:{lsb}]{_high_field(layout)}) has "
                            f"bits above the {size}-bit output size: {oa >> size << size:#x}",
                            _oa_repair(case, layout, v, lsb, size), f"OA bits >= {size} cleared")
    if "bits [47:40]" in rules:
        return FieldFinding(f"output address bits[47:40] = {field(v, 47, 40):#x}",
                            v & ~mask(47, 40), "bits[47:40] cleared")
    if "AF = 0" in rules:
        return FieldFinding("AF (bit 10) = 0", v | 1 << 10, "AF set")
    if "S2CheckPermissions" in rules:
        return FieldFinding(f"S2AP (bits[7:6]) = {field(v, 7, 6):02b}", v | 0b11 << 6,
                            "S2AP = 0b11")
    if "ContiguousBitFaults" in rules:
        return FieldFinding("Contiguous (bit 52) on a range larger than the IPA space",
                            v & ~(1 << 52), "Contiguous cleared")
    if "BlocknTFaults" in rules:
        return FieldFinding("nT (bit 16) = 1", v & ~(1 << 16), "nT cleared")
    observed = sig.observed
    if observed.startswith("address-size"):
        return FieldFinding(f"output address {oa:#x} (bits [47:{lsb}]{_high_field(layout)}): QEMU "
                            f"finds it out of range, the reference within {size} bits")
    if observed.startswith("permission"):
        return FieldFinding(f"S2AP (bits[7:6]) = {field(v, 7, 6):02b} for "
                            f"{probe.at.name_for(case.cpu.arch)}")
    if observed.startswith("access-flag"):
        return FieldFinding(f"AF (bit 10) = {bit(v, 10)}")
    if observed.startswith("translation"):
        return FieldFinding(f"descriptor type bits[1:0] = 0b{bit(v, 1)}{bit(v, 0)} at level {level}: "
                            "QEMU finds it invalid")
    if observed == "ok":
        return FieldFinding(f"output address {oa:#x} (bits [47:{lsb}]): QEMU reports another PA "
                            "or attributes")
    return FieldFinding(f"the {step.kind} descriptor at level {level} as a whole")


def _high_field(layout: Layout) -> str:
    if layout.lpa64:
        return ", PA[51:48] in bits [15:12]"
    if layout.ds:
        return ", PA[51:50] in bits [9:8], PA[49:48] in bits [49:48]"
    return ""


# ---------------------------------------------------------------------------
# Localization
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LevelEvidence:
    """What the variants at one walk level showed: the texts of those QEMU
    disagreed on, how many there were, and whether any changed QEMU's answer
    from the unmodified case's."""

    level: int
    disagreed: tuple[str, ...]
    variants: int
    responded: bool


def reached_levels(evidence: Sequence[LevelEvidence]) -> tuple[list[int], str]:
    """The levels QEMU reaches, in walk order, as a prefix (see the module
    docstring), and why the prefix stops ("" when it covers every level).

    A level is reached when there were variants, QEMU agreed on all of them
    and at least one changed its answer."""
    reached: list[int] = []
    for e in evidence:
        if e.variants and not e.disagreed and e.responded:
            reached.append(e.level)
            continue
        if not e.variants:
            return reached, f"level {e.level}: no variant is possible there"
        if not e.disagreed:
            return reached, (f"level {e.level} is inconclusive: QEMU agrees with the variants but "
                             "its answer did not change, so they do not show that it reads this "
                             "descriptor")
        return reached, (f"level {e.level} is not reached: QEMU differs from the reference on "
                         + ", ".join(e.disagreed))
    return reached, ""


@dataclasses.dataclass(frozen=True)
class Localization:
    """Where QEMU departs: ``level`` None means before the first descriptor
    read (the configuration); ``address``/``value`` the descriptor there;
    ``field`` the field involved; ``reasoning`` how the variants show it."""

    level: int | None
    address: int | None
    value: int | None
    field: str
    reasoning: tuple[str, ...]
    variants: tuple[Variant, ...]
    boots: int
    rebuilt: bool

    def render(self) -> str:
        if self.level is None:
            head = "QEMU departs from the reference before the first descriptor read: the configuration"
        else:
            head = (f"QEMU departs from the reference at level {self.level}: descriptor "
                    f"[{self.address:#x}] = {self.value:#018x}")
        how = ("rebuilt in windows of their own, one boot" if self.rebuilt
               else "edited in place, one boot each")
        lines = [head, f"field: {self.field}",
                 f"variants ({len(self.variants)}, {how}; {self.boots} QEMU boot"
                 f"{'s' if self.boots != 1 else ''}):"]
        lines += [f"  {v.line()}" for v in self.variants]
        lines += [f"reasoning: {self.reasoning[0]}"] + [f"  {r}" for r in self.reasoning[1:]]
        # No line over LINE_WIDTH: a long one wraps under its own indent.
        out = []
        for line in lines:
            indent = " " * (len(line) - len(line.lstrip()) + 4)
            out += textwrap.wrap(line, LINE_WIDTH, subsequent_indent=indent,
                                 break_on_hyphens=False) or [line]
        return "\n".join(out)


@dataclasses.dataclass(frozen=True)
class _Variants:
    """The variants of one experiment: the rebuilt control (none when
    editing in place), the descriptor variants by walk level, the terminal
    descriptor's repair and the configuration variants."""

    control: tuple[Variant, ...]
    levels: dict[int, tuple[Variant, ...]]
    repair: Variant | None
    configs: tuple[Variant, ...]

    def all(self) -> list[Variant]:
        return [*self.control, *(v for vs in self.levels.values() for v in vs),
                *([self.repair] if self.repair else []), *self.configs]


def _level_variants(case: Case, path: WalkPath, step: TraceStep, maker: Maker) -> list[Variant]:
    """The descriptor at ``step`` made invalid (bit 0 cleared), and made a
    valid leaf where the architecture allows one at that level."""
    v = step.value
    assert v is not None
    out = []
    if v & 1:
        out.append(Variant("invalid", step.level, f"L{step.level} bit 0 cleared ({v & ~1:#x})",
                           maker.descriptor(step.level, v & ~1)))
    if block_allowed(case, path.layout, step.level):
        leaf = leaf_value(case, path.layout, step.level)
        if leaf != v:
            kind = "page" if step.level == FINAL_LEVEL else "block"
            out.append(Variant("leaf", step.level, f"L{step.level} valid {kind} {leaf:#x}",
                               maker.descriptor(step.level, leaf)))
    return out


def _repair_variant(level: int, finding: FieldFinding, maker: Maker) -> Variant | None:
    if finding.repair is None:
        return None
    return Variant("repair", level, f"L{level} {finding.repair_text} ({finding.repair:#x})",
                   maker.descriptor(level, finding.repair))


def _plan(case: Case, path: WalkPath | None, maker: Maker, sig: Signature) -> _Variants:
    control = ((Variant("control", None, "control: the same walk rebuilt elsewhere",
                        maker.control()),) if maker.rebuilt else ())
    levels: dict[int, tuple[Variant, ...]] = {}
    repair = None
    if path is not None:
        levels = {step.level: tuple(_level_variants(case, path, step, maker))
                  for step in path.steps}
        repair = _repair_variant(path.terminal.level, terminal_field(case, path, sig), maker)
    return _Variants(control, levels, repair, tuple(config_variants(case, maker, sig)))


def _run(variants: _Variants, lab: Lab) -> _Variants:
    """The variants with their trials: every one in as few boots as the
    lab can pack them (one, when rebuilt in windows of their own)."""
    done = iter(lab.run([v.case for v in variants.all()]))

    def tried(vs: tuple[Variant, ...]) -> tuple[Variant, ...]:
        return tuple(dataclasses.replace(v, trial=next(done)) for v in vs)

    control = tried(variants.control)
    levels = {level: tried(vs) for level, vs in variants.levels.items()}
    repair = tried((variants.repair,))[0] if variants.repair else None
    return _Variants(control, levels, repair, tried(variants.configs))


def _at_level(case: Case, lab: Lab, sig: Signature, path: WalkPath, reached: list[int],
              stop_note: str, maker: Maker, done: _Variants,
              reasoning: list[str]) -> tuple[FieldFinding, Variant | None]:
    """The departure at the last level reached: the terminal descriptor's
    value, or the table descriptor above where QEMU stops following the
    reference.  Returns the field and the repair variant run for it."""
    level = reached[-1]
    step = path.at(level)
    assert step is not None and step.value is not None
    reasoning.append(f"level{'s' if len(reached) > 1 else ''} "
                     f"{', '.join(str(x) for x in reached)} reached: QEMU agrees on every "
                     "variant there and its answer changes with them, so it reads "
                     f"{'those descriptors' if len(reached) > 1 else 'that descriptor'} at the "
                     "reference's address")
    if level == path.terminal.level:
        reasoning.append(f"the level-{level} descriptor decides the reference's outcome, and "
                         "with ordinary values there QEMU agrees: the departure is in this "
                         "descriptor's value")
        return terminal_field(case, path, sig), done.repair
    amask = table_address_mask(case.cpu.arch, path.layout)
    other = step.value & ~amask & ~0b11
    finding = FieldFinding(
        f"the table descriptor's next-level address {step.value & amask:#x}"
        + (f" and its other bits {other:#x}" if other else "")
        + ": QEMU does not arrive where the reference goes next",
        (step.value & ~other) if other else None, "non-address bits cleared")
    reasoning.append(stop_note)
    reasoning.append(f"so QEMU interprets the level-{level} table descriptor differently")
    repair = _repair_variant(level, finding, maker)
    if repair is not None:
        repair = dataclasses.replace(repair, trial=lab.run([repair.case])[0])
    return finding, repair


def _in_configuration(case: Case, cvars: Sequence[Variant], stop_note: str,
                      reasoning: list[str]) -> str:
    """The departure before the first descriptor read: the VTCR fields
    whose one-field changes make QEMU agree, or the configuration as a
    whole."""
    if stop_note:
        reasoning.append(stop_note)
    reasoning.append("no level is reached: QEMU's answer does not come from the reference's walk, "
                     "so it departs in the configuration (VTCR, VTTBR)")
    agreeing = [v for v in cvars if v.agrees]
    if agreeing:
        reasoning.append(f"{len(agreeing)} of {len(cvars)} one-field configuration changes that "
                         "leave the reference's outcome unchanged make QEMU agree")
        return "VTCR " + "; ".join(config_summary(case, agreeing, cvars))
    reasoning.append(f"none of {len(cvars)} one-field configuration changes makes QEMU agree")
    verdict = judge(case.cpu, case.config)
    if verdict.problems:
        # The reference rejects the configuration: the rule that does is
        # what QEMU handles differently (e.g. the level of the fault).
        reasoning.append("the reference rejects this configuration before any walk; QEMU's "
                         "answer to it differs")
        return f"the configuration rule {'; '.join(verdict.problems)} ({case.config.describe()})"
    return f"the configuration as a whole ({case.config.describe()})"


def localize(case: Case, lab: Lab, sig: Signature, base: Trial, index: int = 0) -> Localization:
    """Localize the divergence ``sig`` of probe ``index`` (observed in
    ``base``, the case's own trial) by the experiment in the module
    docstring.  With a rebuildable walk every variant (the control, the
    level variants, the terminal descriptor's repair and the configuration
    variants) runs in one QEMU boot; the repair of a table descriptor above
    the terminal one, when the departure is there, takes one more."""
    boots0 = lab.boots
    if len(case.probes) != 1 or len(case.fanout):
        case = only(case, [case.probes[index]])
        base = lab.run([case])[0]
    base_key = obs_key(base)
    reasoning: list[str] = []
    try:
        path: WalkPath | None = walk_path(case, 0)
    except NotRebuildable as exc:
        path = None
        reasoning.append(f"no descriptor variants: {exc}")
    maker = Maker(case, path, lab, rebuilt=path is not None)
    done = _run(_plan(case, path, maker, sig), lab)
    if done.control and not (done.control[0].trial and done.control[0].trial.shows(sig)):
        reasoning.append("the rebuilt control does not diverge the same way: variants are edited "
                         "in place instead")
        maker = Maker(case, path, lab, rebuilt=False)
        done = _run(_plan(case, path, maker, sig), lab)
    variants: list[Variant] = [*done.control, *(v for vs in done.levels.values() for v in vs)]
    evidence = [LevelEvidence(level, tuple(v.text for v in vs if not v.agrees), len(vs),
                              any(obs_key(v.trial) != base_key for v in vs))
                for level, vs in done.levels.items()]
    reached, stop_note = reached_levels(evidence)
    if path is not None and reached:
        finding, repair = _at_level(case, lab, sig, path, reached, stop_note, maker, done,
                                    reasoning)
        if repair is not None:
            variants.append(repair)
            if repair.agrees:
                reasoning.append(f"confirmed: with only that field changed ({finding.repair_text}) "
                                 "QEMU agrees with the reference")
            else:
                reasoning.append(f"not confirmed: with {finding.repair_text} QEMU still differs")
        step = path.at(reached[-1])
        assert step is not None
        return Localization(step.level, step.address, step.value, finding.text,
                            tuple(reasoning), tuple(variants), lab.boots - boots0, maker.rebuilt)
    text = _in_configuration(case, done.configs, stop_note, reasoning)
    variants += done.configs
    return Localization(None, None, None, text, tuple(reasoning), tuple(variants),
                        lab.boots - boots0, maker.rebuilt)
