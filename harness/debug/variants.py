"""The variants of the localization experiment (harness.debug.localize):
one modified case each, rebuilt in a window of its own when the walk can be
rebuilt (so that one boot runs them all), else edited in place."""
from __future__ import annotations

import dataclasses
import struct

from reference.config import S2Config
from reference.generate import Case, build_layout
from reference.image import Layout, LeafAttrs, encode_leaf
from reference.memory import Region

from ..vocabulary import DivergenceKind, observed_label
from .lab import Lab, Trial, Windows, reference_labels
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
