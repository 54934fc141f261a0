"""The variants of the localization experiment (harness.debug.localize):
one modified case each, rebuilt in a window of its own when the walk can be
rebuilt (so that one boot runs them all), else edited in place."""
from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence

from reference.arch import Arch
from reference.config import PS_BITS, S2Config
from reference.generate import Case, build_layout
from reference.image import Layout, LeafAttrs, encode_leaf
from reference.memory import Region

from ..vocabulary import DivergenceKind, Signature, observed_label
from .lab import Lab, Trial, Windows, reference_labels, reference_rules
from .rebuild import (
    NotRebuildable,
    WalkPath,
    rebuild,
    rebuild_footprint,
)

# ---------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Variant:
    """One modified case run in QEMU.  ``level``: the walk level whose
    descriptor it replaces (None for a configuration variant); ``role``:
    'control', 'invalid', 'leaf', 'repair' or 'config'."""

    role: str
    level: int | None
    text: str
    case: Case
    trial: Trial | None = None
    param: str = ""         # configuration variants: the VTCR field changed
    setting: str = ""       # ... and what it was set to

    @property
    def expected(self) -> str:
        return " | ".join(reference_labels(self.case, 0))

    @property
    def observed(self) -> str:
        if self.trial is None or not self.trial.completed:
            return "not completed"
        text = observed_label(self.case.cpu.arch, self.trial.observation(0))
        written = [f.signature.observed for f in self.trial.divergences
                   if f.signature.kind is DivergenceKind.MEMORY]
        return text + "".join(f", {w}" for w in written)

    @property
    def agrees(self) -> bool:
        return self.trial is not None and self.trial.agrees

    def line(self) -> str:
        verdict = "agrees" if self.agrees else "DIFFERS"
        return (f"{self.text}: reference {self.expected}; QEMU {self.observed} -> {verdict}")


def obs_key(trial: Trial | None) -> tuple:
    """What QEMU did, comparable across windows: the raw report of probe 0
    and which descriptor bits it wrote."""
    if trial is None or not trial.completed:
        return ("not completed",)
    obs = trial.observation(0)
    written = tuple(sorted(f.signature.observed for f in trial.divergences
                           if f.signature.kind is DivergenceKind.MEMORY))
    return (obs.kind, obs.par, obs.esr, written)


def in_place(case: Case, address: int, value: int) -> Case:
    """The case with the 8-byte word at ``address`` set to ``value``."""
    words = {}
    for r in case.image.regions:
        for off in range(0, len(r.data) - 7, 8):
            words[r.pa + off] = struct.unpack_from("<Q", r.data, off)[0]
    words[address] = value
    regions = tuple(Region(pa, struct.pack("<Q", v)) for pa, v in sorted(words.items()) if v)
    return dataclasses.replace(case, image=dataclasses.replace(case.image, regions=regions))


class Maker:
    """Makes variants, rebuilt in windows of their own when the walk can be
    rebuilt, else edited in place."""

    def __init__(self, case: Case, path: WalkPath | None, lab: Lab, rebuilt: bool) -> None:
        self.case, self.path, self.lab, self.rebuilt = case, path, lab, rebuilt
        self.windows = Windows(lab.arena)

    def descriptor(self, level: int, value: int) -> Case:
        assert self.path is not None
        if self.rebuilt:
            return self._rebuild(replace={level: value})
        step = self.path.at(level)
        assert step is not None
        return in_place(self.case, step.address, value)

    def control(self) -> Case:
        return self._rebuild()

    def config(self, config: S2Config) -> Case | None:
        if self.rebuilt:
            try:
                return self._rebuild(config=config)
            except NotRebuildable:
                return None
        return dataclasses.replace(self.case, config=config.with_vttbr(self.case.config.vttbr))

    def _rebuild(self, config: S2Config | None = None, replace=None) -> Case:
        assert self.path is not None
        layout = build_layout(self.case.cpu, config or self.case.config)
        end = self.path.terminal.level
        if replace:
            end = min(end, min(replace))
        size, align = rebuild_footprint(layout, max(end, layout.start_level))
        base = self.windows.take(size, align)
        return rebuild(self.case, 0, self.path, base=base, config=config, replace=replace)


def leaf_value(case: Case, layout: Layout, level: int) -> int:
    """A valid leaf at ``level``: AF = 1, S2AP = 0b11, output address the
    RAM base rounded down to the leaf size (always within the output size)."""
    ram_base = case.memory_map.ram[0][0]
    lsb = layout.geo.block_bits(level)
    return encode_leaf(layout, level, ram_base >> lsb << lsb, LeafAttrs())


# ---------------------------------------------------------------------------
# Configuration variants
# ---------------------------------------------------------------------------

def config_variants(case: Case, maker: Maker, sig: Signature) -> list[Variant]:
    """Changes of exactly one VTCR field (PS, T0SZ, SL0) under which the
    reference's outcome stays the same: the same labels *and* the same
    rules (a valid configuration that also faults at level 1 is not the
    same outcome as a reserved SL0)."""
    arch = case.cpu.arch
    c = case.config
    rules = reference_rules(case)
    out = []
    seen = set()

    def add(text: str, config: S2Config, param: str, setting: str) -> None:
        if config.vtcr() in seen or config.vtcr() == c.vtcr():
            return
        seen.add(config.vtcr())
        try:
            var = maker.config(config)
        except (ValueError, NotRebuildable):
            return
        if var is None:
            return
        if reference_labels(var, 0) != sig.expected or reference_rules(var) != rules:
            return
        out.append(Variant("config", None, text, var, param=param, setting=setting))

    if arch is Arch.AARCH64:
        for ps in range(7):
            if ps != c.ps:
                add(f"PS {c.ps:#05b} ({PS_BITS[c.ps]} bits) -> {ps:#05b} ({PS_BITS[ps]} bits)",
                    dataclasses.replace(c, ps=ps), "PS", f"{PS_BITS[ps]}")
    for ia in range(25, 53):
        if ia == c.ia_bits or case.probes[0].ipa >> ia:
            continue
        t0sz = (64 if arch is Arch.AARCH64 else 32) - ia
        if arch is Arch.AARCH32:
            if not -8 <= t0sz <= 7:
                continue
            new = dataclasses.replace(c, t0sz=t0sz, s=(t0sz >> 3) & 1)
        else:
            new = dataclasses.replace(c, t0sz=t0sz)
        add(f"T0SZ {c.t0sz} -> {t0sz} ({ia}-bit IPA; SL0 kept)", new, "T0SZ", f"{ia}")
    for sl0 in range(4):
        if sl0 != c.sl0:
            add(f"SL0 {c.sl0} -> {sl0} (T0SZ kept)", dataclasses.replace(c, sl0=sl0), "SL0",
                f"SL0={sl0}")
    return out


_UNITS = {"PS": ("output size", "bits"), "T0SZ": ("IPA size", "bits"), "SL0": ("encoding", "")}


def config_summary(case: Case, agreeing: Sequence[Variant], tried: Sequence[Variant]) -> list[str]:
    """Per VTCR field: the settings under which QEMU agrees, of those tried."""
    layout = build_layout(case.cpu, case.config)
    now = {"PS": str(PS_BITS.get(case.config.ps, "?")), "T0SZ": str(layout.ia_bits),
           "SL0": f"SL0={case.config.sl0}"}
    out = []
    for param in dict.fromkeys(v.param for v in agreeing):
        ok = [v.setting for v in agreeing if v.param == param]
        n = sum(1 for v in tried if v.param == param)
        what, unit = _UNITS[param]
        out.append(f"{param}: QEMU agrees with {what} {', '.join(ok)}{' ' + unit if unit else ''} "
                   f"({len(ok)} of {n} tried; the case has {now[param]})")
    return out
