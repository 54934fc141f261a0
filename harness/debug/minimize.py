"""Shrink + localize, as `s2diff shrink` and `s2diff run --shrink` use it:
the minimal case file written, with the report beside it (its conclusion
first: the divergence kept, the minimal case and how to re-run it, where
QEMU departs)."""
from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..baseline import EMPTY, Baseline
from ..casefile import load_case, save_case
from ..vocabulary import raw_observation
from . import rebuild
from .explain import explain_case
from .lab import Lab
from .localize import Localization, localize
from .shrink import ShrinkResult, shrink


@dataclasses.dataclass(frozen=True)
class ShrinkReport:
    """What shrink_case_file produced: the shrink, the localization, the
    minimal case file written and the report text (also written beside it)."""

    shrink: ShrinkResult
    localization: Localization
    case_file: Path
    report_file: Path
    text: str


def minimal_case_path(case_path: Path) -> Path:
    """Default name of the minimal case: NAME.min.json beside NAME.json."""
    name = case_path.name[:-5] if case_path.name.endswith(".json") else case_path.name
    return case_path.with_name(name + ".min.json")


def _observed_extra(result: ShrinkResult, loc: Localization, source: Path) -> dict[str, Any]:
    trial = result.trial
    assert trial.image is not None
    obs = [raw_observation(o) for o in trial.image.observations]
    return {
        "observed": {"probes": obs,
                     "regions_after": [{"pa": f"{pa:#x}", "data": base64.b64encode(d).decode()}
                                       for pa, d in trial.image.regions_after]},
        "qemu": {"argv": list(trial.batch.argv), "version": trial.batch.qemu_version},
        # As harness.run writes them, so that bisect and the baseline read them alike.
        "divergence": [{"probe": f.probe, "kind": f.record.kind.value,
                        "expected": list(f.record.expected), "observed": f.record.observed}
                       for f in trial.divergences if f.signature == result.signature],
        "shrunk_from": {"case": str(source), "probe": result.probe,
                        "steps": [f"{s.name}: {s.text}" for s in result.steps]},
        "localization": {"level": loc.level,
                         "address": None if loc.address is None else f"{loc.address:#x}",
                         "value": None if loc.value is None else f"{loc.value:#x}",
                         "field": loc.field},
    }


def conclusion(result: ShrinkResult, loc: Localization, target: Path) -> list[str]:
    """What a shrink found, first: the divergence kept (new or known), the
    minimal case and how to re-run it, where QEMU departs."""
    status = f"known: {result.known}" if result.known else "new"
    probes = len(result.minimal.probes) + len(result.minimal.fanout)
    words = sum(len(r.data) // 8 for r in result.minimal.image.regions)
    where = ("the configuration" if loc.level is None else
             f"L{loc.level} descriptor [{loc.address:#x}] = {loc.value:#018x}")
    return [f"divergence kept: {result.signature.describe()} ({status})",
            f"minimal case: {target} ({probes} probe{'s' if probes != 1 else ''}, {words} "
            f"descriptor word{'s' if words != 1 else ''}, {describe_geometry(result.minimal)})",
            f"re-run: s2diff repro {target}",
            f"localized: {where}: {loc.field}"]


def describe_geometry(case) -> str:
    try:
        return rebuild.describe_geometry(case)
    except (ValueError, KeyError):
        return case.config.describe()


def shrink_case_file(case_path: str | Path, *, out: str | Path | None = None,
                     probe: int | None = None, qemu: str | Path | None = None,
                     timeout: float | None = None, baseline: Baseline = EMPTY,
                     stage: Callable[[str], None] | None = None,
                     on_boot: Callable[[str], None] | None = None) -> ShrinkReport:
    """Shrink the case file, localize its divergence, write the minimal case
    (``out``, default minimal_case_path) and the report beside it (.txt).
    ``baseline``: the divergence followed is one it does not explain when
    the case has such (harness.debug.shrink).  Progress: ``stage`` sees
    each pass as it starts, ``on_boot`` a line after each QEMU boot."""
    source = Path(case_path)
    case = load_case(source)
    lab = Lab(case.cpu.arch, case.cpu.name, qemu=qemu, timeout=timeout, on_boot=on_boot)
    result = shrink(case, lab, probe=probe, baseline=baseline, stage=stage)
    if stage is not None:
        stage("localize")
    loc = localize(result.minimal, lab, result.signature, result.trial)
    target = Path(out) if out is not None else minimal_case_path(source)
    save_case(target, result.minimal, _observed_extra(result, loc, source))
    report = target.with_suffix(".txt")
    text = "\n".join([
        f"shrink of {source}, probe {result.probe}",
        *conclusion(result, loc, target),
        "",
        result.summary(),
        "",
        "== the minimal case ==",
        explain_case(result.minimal, result.trial),
        "",
        "== localization ==",
        loc.render(),
        f"QEMU boots in all: {lab.boots}",
    ]) + "\n"
    report.write_text(text, encoding="utf-8")
    return ShrinkReport(result, loc, target, report, text)
