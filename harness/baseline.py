"""The known-divergence baseline (TOML, docs/baseline.md).

An entry describes a divergence that is understood — an emulator bug, with
its evidence — by the configurations and probes it concerns, the
reference's outcome and the observed one.  A divergence matching an entry
is reported as known instead of new; an entry matching nothing in a run is
reported as stale.  Entries are data: fields are plain strings and lists
matched as regular expressions, nothing is executed.
"""
from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Iterable

from .datafile import load_data_file
from .errors import UsageError
from .qemu.builds import version_number
from .records import Divergence, DivergenceRecord, Record
from .vocabulary import DivergenceKind

VERSION = 1
_LIST_FIELDS = ("cpus", "granules", "qemu_versions")
_REGEX_FIELDS = ("expected", "observed", "aim", "config", "rule")
_TEXT_FIELDS = ("id", "title", "evidence", "upstream", "case", "kind", "arch", "verdict")
_KNOWN = set(_LIST_FIELDS) | set(_REGEX_FIELDS) | set(_TEXT_FIELDS)
_KINDS = tuple(k.value for k in DivergenceKind)
_VERDICTS = ("qemu-bug", "architecture-permitted", "reference-limitation")


@dataclasses.dataclass(frozen=True)
class BaselineEntry:
    """One known divergence.

    ``expected`` is matched (re.fullmatch) against the permitted-outcome
    labels joined with " | " (sorted, e.g. "translation L1"); ``observed``
    (fullmatch) against the observed label; ``aim`` and ``config`` (search)
    against the probe's aim and the configuration text; ``rule`` (search)
    against the rules of the permitted outcomes, i.e. the architecture rule
    the emulator breaks.  ``cpus``,
    ``granules`` and ``qemu_versions`` (prefixes of the version string)
    restrict the entry when given."""

    id: str
    title: str
    verdict: str
    evidence: str
    case: str
    kind: str = "probe"
    arch: str | None = None
    cpus: tuple[str, ...] = ()
    granules: tuple[str, ...] = ()
    qemu_versions: tuple[str, ...] = ()
    upstream: str = ""
    expected: re.Pattern | None = None
    observed: re.Pattern | None = None
    aim: re.Pattern | None = None
    config: re.Pattern | None = None
    rule: re.Pattern | None = None

    def matches(self, d: Divergence, qemu_version: str) -> bool:
        """Whether divergence ``d``, seen on ``qemu_version``, is this entry."""
        if d.kind.value != self.kind:
            return False
        if self.arch and d.arch != self.arch:
            return False
        if self.cpus and d.cpu not in self.cpus:
            return False
        if self.granules and d.granule not in self.granules:
            return False
        if self.qemu_versions and not any(version_number(qemu_version).startswith(v)
                                          for v in self.qemu_versions):
            return False
        if self.expected and not self.expected.fullmatch(" | ".join(sorted(d.expected))):
            return False
        if self.observed and not self.observed.fullmatch(d.observed):
            return False
        if self.aim and not self.aim.search(d.aim):
            return False
        if self.config and not self.config.search(d.config):
            return False
        if self.rule and not any(self.rule.search(r) for p in d.permitted or ()
                                 for r in p.rules):
            return False
        return True


@dataclasses.dataclass(frozen=True)
class Baseline:
    path: Path | None
    entries: tuple[BaselineEntry, ...]

    def match(self, d: Divergence, qemu_version: str) -> BaselineEntry | None:
        return next((e for e in self.entries if e.matches(d, qemu_version)), None)


def _regex(value: Any, where: str) -> re.Pattern:
    if not isinstance(value, str):
        raise UsageError(f"{where}: expected a string (regular expression)")
    try:
        return re.compile(value)
    except re.error as exc:
        raise UsageError(f"{where}: bad regular expression ({exc})") from None


def parse_baseline(data: dict[str, Any], where: str = "baseline") -> Baseline:
    """Validate TOML data against docs/baseline.md."""
    version = data.get("version")
    if version != VERSION:
        raise UsageError(f"{where}: version: expected {VERSION}, got {version!r}")
    unknown_top = set(data) - {"version", "divergence"}
    if unknown_top:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown_top))}")
    raw = data.get("divergence", [])
    if not isinstance(raw, list):
        raise UsageError(f"{where}: [[divergence]] must be an array of tables")
    entries, ids = [], set()
    for i, item in enumerate(raw):
        at = f"{where}: divergence[{i}]"
        if not isinstance(item, dict):
            raise UsageError(f"{at}: expected a table")
        extra = set(item) - _KNOWN
        if extra:
            raise UsageError(f"{at}: unknown key(s) {', '.join(sorted(extra))} "
                             f"(allowed: {', '.join(sorted(_KNOWN))})")
        for key in ("id", "title", "verdict", "evidence", "case"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise UsageError(f"{at}.{key}: required, a non-empty string")
        if item["id"] in ids:
            raise UsageError(f"{at}.id: {item['id']!r} is used twice")
        ids.add(item["id"])
        if item["verdict"] not in _VERDICTS:
            raise UsageError(f"{at}.verdict: {item['verdict']!r} is not one of {', '.join(_VERDICTS)}")
        kind = item.get("kind", "probe")
        if kind not in _KINDS:
            raise UsageError(f"{at}.kind: {kind!r} is not one of {', '.join(_KINDS)}")
        lists: dict[str, Any] = {}
        for key in _LIST_FIELDS:
            value = item.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{at}.{key}: expected a list of strings")
            lists[key] = tuple(value)
        regexes: dict[str, Any] = {key: _regex(item[key], f"{at}.{key}") for key in _REGEX_FIELDS if key in item}
        for key in ("arch", "upstream"):
            if key in item and not isinstance(item[key], str):
                raise UsageError(f"{at}.{key}: expected a string")
        entries.append(BaselineEntry(id=item["id"], title=item["title"], verdict=item["verdict"],
                                     evidence=item["evidence"], case=item["case"], kind=kind,
                                     arch=item.get("arch"), upstream=item.get("upstream", ""),
                                     **lists, **regexes))
    return Baseline(None, tuple(entries))


def load_baseline(path: str | Path) -> Baseline:
    """Read and validate a baseline file; UsageError (one line) otherwise."""
    p = Path(path)
    data = load_data_file(p, "baseline", "TOML", tomllib.loads)
    baseline = parse_baseline(data, str(p))
    return dataclasses.replace(baseline, path=p)


EMPTY = Baseline(None, ())


def apply_baseline(baseline: Baseline, records: Iterable[Record]) -> list[Record]:
    """Mark each divergence record ``known`` (entry id) or new (None)."""
    out: list[Record] = []
    for rec in records:
        if isinstance(rec, DivergenceRecord):
            entry = baseline.match(rec, rec.qemu_version)
            rec = dataclasses.replace(rec, known=entry.id if entry else None)
        out.append(rec)
    return out


def default_baseline() -> Path | None:
    """The repository's baseline.toml, when there is one."""
    path = Path(__file__).resolve().parent.parent / "baseline.toml"
    return path if path.is_file() else None


def stale_entries(baseline: Baseline, used: set, ran: set,
                  root: Path | None = None) -> list[BaselineEntry]:
    """Entries that matched no divergence (``used``: the ids that did)
    although the run executed the configuration of their case file (its
    (arch, CPU model, VTCR) is in ``ran``): the bug they describe did not
    show where it used to."""
    base = root or (baseline.path.parent if baseline.path else Path("."))
    stale = []
    for e in baseline.entries:
        if e.id in used:
            continue
        try:
            data = json.loads((base / e.case).read_text(encoding="utf-8"))
            where = (data["arch"], data["cpu"], data["config"]["vtcr"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a missing or broken case file is reported by the tests
        if where in ran:
            stale.append(e)
    return stale
