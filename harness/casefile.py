"""Reading and writing case files (format: docs/case-file.md): what a run
writes for a divergence (a sample of the fan-out, the rest regenerated from
the seed), and loading a case with its whole fan-out again.  An access case
is format s2diff-access-case (reference.access_casefmt), a stage-1-on case
s2diff-s1-case (reference.s1casefmt)."""
from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reference.access_case import AccessCase
from reference.access_casefmt import FORMAT as ACCESS_FORMAT
from reference.access_casefmt import access_case_from_data, access_case_to_data
from reference.casefmt import CaseFormatError, case_from_data, case_to_data
from reference.generate import Case, FanOut, generate_case
from reference.generate_s1 import S1Case
from reference.s1casefmt import FORMAT as S1_FORMAT
from reference.s1casefmt import s1_case_from_data, s1_case_to_data

from .datafile import load_data_file
from .errors import UsageError
from .qemu.job import ImageResult, row_observation
from .records import Divergence
from .vocabulary import DivergenceKind, raw_observation, raw_record

AnyCase = Case | AccessCase | S1Case

MAX_FILE_BYTES = 256 << 20


def load_case_data(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON data of a case file; UsageError (one line) if unreadable."""
    p = Path(path)
    data = load_data_file(p, "case file", "JSON", json.loads, max_bytes=MAX_FILE_BYTES)
    if not isinstance(data, dict):
        raise UsageError(f"{p}: a case file is a JSON object")
    return data


def load_any_case(path: str | os.PathLike) -> AnyCase:
    """Read and validate a case file of any kind (a stage-2 AT case, an
    access case, a stage-1-on case)."""
    data = load_case_data(path)
    try:
        if data.get("format") == ACCESS_FORMAT:
            return access_case_from_data(data)
        if data.get("format") == S1_FORMAT:
            return s1_case_from_data(data)
        return case_from_data(data)
    except CaseFormatError as exc:
        raise UsageError(f"{path}: {exc}") from None


def load_case(path: str | os.PathLike) -> Case:
    """Read and validate a stage-2 AT case file (what shrink, localize,
    bisect and isolate work on); an access case is refused in one line."""
    data = load_case_data(path)
    if data.get("format") in (ACCESS_FORMAT, S1_FORMAT):
        raise UsageError(f"{path}: an {'access' if data['format'] == ACCESS_FORMAT else 'stage-1'}"
                         " case (probe, repro and walk take it; this command works on stage-2 "
                         "AT cases)")
    try:
        return case_from_data(data)
    except CaseFormatError as exc:
        raise UsageError(f"{path}: {exc}") from None


def case_json(case: AnyCase, extra: dict[str, Any] | None = None) -> str:
    """The text of a case file for ``case``; ``extra`` adds top-level keys
    (observation, QEMU command line and version, divergence)."""
    if isinstance(case, AccessCase):
        data = access_case_to_data(case)
    elif isinstance(case, S1Case):
        data = s1_case_to_data(case)
    else:
        data = case_to_data(case)
    if extra:
        data.update(extra)
    return json.dumps(data, indent=1) + "\n"


def save_case(path: str | os.PathLike, case: AnyCase, extra: dict[str, Any] | None = None) -> Path:
    """Write a case file atomically (temporary file + rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(case_json(case, extra), encoding="utf-8")
    os.replace(tmp, p)
    return p


# ---------------------------------------------------------------------------
# Case files of a run's divergences (docs/case-file.md, "Fan-out")
# ---------------------------------------------------------------------------

# Fan-out probes a case file keeps: per diverging span (placed entry), and
# in all.  The full fan-out (~150,000 probes a nightly case) is not stored:
# ``fanout_source`` lets a reader regenerate it from the seed.
SAMPLE_PER_SPAN = 4
FANOUT_SAMPLE = 256


def sample_fanout(case: Case, divs: Sequence[Divergence]) -> list[int]:
    """Fan-out rows (indices into case.fanout) a case file keeps: the row
    each fan-out divergence record names, then further rows of the same
    span, up to SAMPLE_PER_SPAN per span and FANOUT_SAMPLE in all."""
    named = len(case.probes)
    fan = case.fanout
    rows: list[int] = []
    spans: list[int] = []
    for d in divs:
        if d.probe is not None and d.probe >= named and d.kind is DivergenceKind.PROBE:
            row = d.probe - named
            if row < len(fan) and row not in rows:
                rows.append(row)
                spans.append(int(fan.span[row]))
    for span in dict.fromkeys(spans):
        same = np.nonzero(fan.span == span)[0]
        have = sum(1 for r in rows if int(fan.span[r]) == span)
        for r in same:
            if have >= SAMPLE_PER_SPAN or len(rows) >= FANOUT_SAMPLE:
                break
            if int(r) not in rows:
                rows.append(int(r))
                have += 1
    return sorted(rows[:FANOUT_SAMPLE])


def case_for_file(case: Case, divs: Sequence[Divergence]) -> tuple[Case, list[int], dict[int, int]]:
    """The case as its file keeps it: every named probe and a sample of the
    fan-out probes (sample_fanout).  Returns the case, the original probe
    rows kept (in order) and the renumbering of probe indices."""
    named = len(case.probes)
    sample = sample_fanout(case, divs)
    fan = case.fanout
    keep = np.array(sample, dtype=np.int64)
    trimmed = FanOut(fan.spans, fan.ipa[keep], fan.at[keep], fan.span[keep]) if sample \
        else FanOut(fan.spans, fan.ipa[:0], fan.at[:0], fan.span[:0])
    rows = list(range(named)) + [named + r for r in sample]
    renumber = {old: new for new, old in enumerate(rows)}
    return dataclasses.replace(case, fanout=trimmed), rows, renumber


def divergence_case(case: AnyCase, image: ImageResult, argv: Sequence[str], qemu_version: str,
                    divs: Sequence[Divergence]) -> tuple[AnyCase, dict[str, Any]]:
    """What a run writes for a case with new divergences: the case with a
    sample of its fan-out (case_for_file), and the extra keys -- the
    observations of the probes kept, the table memory after the run, the
    QEMU command line and version, the divergences (probe numbers of the
    file, ``run_probe`` the run's), and ``fanout_source`` to regenerate the
    whole fan-out.  An access or stage-1-on case has no fan-out: it is kept
    whole, with each probe's raw record (vocabulary.raw_record)."""
    if not isinstance(case, Case):
        return case, {
            "observed": {"probes": [raw_record(r) for r in image.records],
                         "regions_after": [{"pa": f"{pa:#x}",
                                            "data": base64.b64encode(d).decode()}
                                           for pa, d in image.regions_after]},
            "qemu": {"argv": list(argv), "version": qemu_version},
            "divergence": [{"probe": d.probe, "run_probe": d.probe, "kind": d.kind.value,
                            "expected": list(d.expected), "observed": d.observed,
                            **({"count": d.count} if d.count != 1 else {})} for d in divs],
        }
    kept, rows, renumber = case_for_file(case, divs)
    spans = len(case.fanout.spans)
    extra: dict[str, Any] = {
        "observed": {"probes": [raw_observation(row_observation(image.records[row]))
                                for row in rows],
                     "regions_after": [{"pa": f"{pa:#x}", "data": base64.b64encode(d).decode()}
                                       for pa, d in image.regions_after]},
        "qemu": {"argv": list(argv), "version": qemu_version},
        "divergence": [{"probe": renumber.get(d.probe) if d.probe is not None else None,
                        "run_probe": d.probe, "kind": d.kind.value,
                        "expected": list(d.expected), "observed": d.observed,
                        **({"count": d.count} if d.count != 1 else {})} for d in divs],
    }
    if len(case.fanout) and spans:
        extra["fanout_source"] = {"per_entry": len(case.fanout) // spans,
                                  "probes": len(case.fanout), "sample": len(kept.fanout)}
    return kept, extra


def regenerate_fanout(case: Case, data: Mapping[str, Any]) -> tuple[Case, str]:
    """The case with its whole fan-out regenerated from the seed when the
    file says how (``fanout_source``) and the generator still builds the
    same image and named probes from it; else the case as the file has it.
    Returns the case and a note saying which (and why not)."""
    source = data.get("fanout_source")
    if not isinstance(source, dict):
        return case, ""
    per_entry = source.get("per_entry")
    if not isinstance(per_entry, int) or isinstance(per_entry, bool) or per_entry < 1:
        return case, "fan-out not regenerated: fanout_source.per_entry is not a count"
    try:
        again = generate_case(case.cpu, case.config, case.seed, case.key, case.image.window,
                              case.memory_map, fanout=per_entry)
    except (ValueError, KeyError) as exc:
        return case, f"fan-out not regenerated ({exc}): the file's {len(case.fanout)} sampled probes run"
    if again.image.regions != case.image.regions or again.probes != case.probes:
        return case, ("fan-out not regenerated: this generator builds another image from the "
                      f"seed; the file's {len(case.fanout)} sampled probes run")
    return dataclasses.replace(case, fanout=again.fanout), (
        f"fan-out regenerated from seed {case.seed}: {len(again.fanout):,} probes")
