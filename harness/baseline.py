"""The known-divergence baseline (TOML, docs/baseline.md).

An entry describes a divergence that is understood — an emulator bug, with
its evidence — by the QEMU versions it affects (:class:`VersionRange`), the
configurations and probes it concerns, the reference's outcome and the
observed one; a crash entry by the crash's signature instead of an
observation.  A divergence (crash) matching an entry is reported as known
instead of new; an entry matching nothing in a run that covered its
configuration on a QEMU of its range is reported as stale.  Entries are
data: fields are plain strings and lists matched as regular expressions
and version ranges, nothing is executed.
"""
from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

from reference.arch import Arch
from reference.casefmt import cpu_model_from_data
from reference.cpus import CpuModel

from .datafile import load_data_file
from .errors import UsageError
from .qemu.builds import version_number
from .records import CrashRecord, Divergence, DivergenceRecord, Record
from .vocabulary import DivergenceKind, entry_kind, observed_par_text

VERSION = 1
_LIST_FIELDS = ("cpus", "granules", "qemu_versions")
_REGEX_FIELDS = ("expected", "observed", "aim", "at", "config", "rule", "signature", "par",
                 "permitted")
_TEXT_FIELDS = ("id", "title", "evidence", "upstream", "kind", "arch", "verdict")
_KNOWN = set(_LIST_FIELDS) | set(_REGEX_FIELDS) | set(_TEXT_FIELDS) | {"qemu", "case"}
# Divergence kinds (harness.vocabulary), and crash entries (crash records).
_KINDS = (*(k.value for k in DivergenceKind), "crash")
_VERDICTS = ("qemu-bug", "architecture-permitted", "reference-limitation")


# ---------------------------------------------------------------------------
# QEMU version ranges
# ---------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+(?:\.\d+)*")
_CLAUSE = re.compile(r"^(>=|<=|==|>|<)?\s*(\d+(?:\.\d+)*)$")
_SPAN = re.compile(r"^(\d+(?:\.\d+)*)\s*-\s*(\d+(?:\.\d+)*)$")


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Compare dotted versions, the shorter padded with zeros (9.2 == 9.2.0)."""
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def _prefix(version: tuple[int, ...], spec: tuple[int, ...]) -> bool:
    """'7.2' names every 7.2.x: the leading numbers agree."""
    return version[:len(spec)] == spec


@dataclasses.dataclass(frozen=True)
class VersionRange:
    """Which QEMU versions an entry applies to: any of ``specs``, each a
    conjunction of clauses (``>=8.0,<8.2``).  A clause is ``>=V``, ``>V``,
    ``<=V``, ``<V``, ``==V``, a bare ``V`` (a prefix: ``7.2`` is every
    7.2.x), or ``A-B`` (from A to B inclusive, B a prefix: ``10.0.0-10.0.2``;
    ``8.0-9`` is 8.0.0 to every 9.x).  No spec: every version."""

    specs: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: Any, where: str) -> VersionRange:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise UsageError(f"{where}: expected a version range or a list of them "
                             "(e.g. \">=8.0,<8.2\", [\"7.2\", \">=9.2\"])")
        for item in items:
            for clause in item.split(","):
                if not (_CLAUSE.match(clause.strip()) or _SPAN.match(clause.strip())):
                    raise UsageError(f"{where}: {clause.strip()!r} is not a version clause "
                                     "(>=V, >V, <=V, <V, ==V, V or A-B)")
        return cls(tuple(items))

    def __bool__(self) -> bool:
        return bool(self.specs)

    def contains(self, version: str) -> bool:
        """Whether QEMU ``version`` (a number, or a --version line) is in
        the range (a version without a number is in no range)."""
        if not self.specs:
            return True
        m = _NUMBER.search(version_number(version))
        if not m:
            return False
        v = _numbers(m.group(0))
        return any(all(self._clause(v, c.strip()) for c in spec.split(","))
                   for spec in self.specs)

    @staticmethod
    def _clause(v: tuple[int, ...], clause: str) -> bool:
        span = _SPAN.match(clause)
        if span:
            lo, hi = _numbers(span[1]), _numbers(span[2])
            return _cmp(v, lo) >= 0 and (_cmp(v, hi) <= 0 or _prefix(v, hi))
        m = _CLAUSE.match(clause)
        assert m is not None
        op, ref = m[1] or "", _numbers(m[2])
        c = _cmp(v, ref)
        return {"": _prefix(v, ref), "==": c == 0, ">=": c >= 0, ">": c > 0,
                "<=": c <= 0, "<": c < 0}[op]

    def describe(self) -> str:
        return " or ".join(self.specs) if self.specs else "any version"


@dataclasses.dataclass(frozen=True)
class BaselineEntry:
    """One known divergence.

    ``expected`` is matched (re.fullmatch) against the permitted-outcome
    labels joined with " | " (sorted, e.g. "translation L1"); ``observed``
    (fullmatch) against the observed label; ``aim`` and ``config`` (search)
    against the probe's aim and the configuration text; ``at`` (fullmatch)
    against the probe's instruction (AtKind name, e.g. "S12E1W"); ``rule`` (search)
    against the rules of the permitted outcomes, i.e. the architecture rule
    the emulator breaks; ``par`` (search) against the observed PAR decoded
    field by field (vocabulary.observed_par_text: 'PA 0x... SH=11
    ATTR=0x44', or the fault it reports; nothing for an observation
    without a PAR), for the attribute families whose label says only
    'differs in SH'; ``permitted`` (search) against the results of the
    permitted outcomes (one must match, as for ``rule``: '; Device-' says
    the architecture gives Device memory); ``signature`` (search)
    against a crash record's signature (kind "crash").  ``cpus``, ``granules`` and ``qemu`` (a
    VersionRange; the old ``qemu_versions`` prefixes are read into it)
    restrict the entry when given."""

    id: str
    title: str
    verdict: str
    evidence: str
    cases: tuple[str, ...]
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
    at: re.Pattern | None = None
    signature: re.Pattern | None = None
    par: re.Pattern | None = None
    permitted: re.Pattern | None = None
    qemu: VersionRange = VersionRange()

    @property
    def case(self) -> str | None:
        """The entry's first case file (None: a cpu-model entry, which the
        models it names reproduce)."""
        return self.cases[0] if self.cases else None

    def unversioned(self) -> BaselineEntry:
        """The entry for any QEMU version: its pattern alone."""
        return dataclasses.replace(self, qemu=VersionRange())

    def applies_to(self, qemu_version: str) -> bool:
        """Whether the entry's version range holds ``qemu_version``."""
        return self.qemu.contains(qemu_version)

    def _where(self, arch: str, cpu: str, granule: str | None, qemu_version: str) -> bool:
        return (not (self.arch and arch != self.arch)
                and not (self.cpus and cpu not in self.cpus)
                and not (self.granules and granule not in self.granules)
                and self.applies_to(qemu_version))

    def matches_crash(self, c: CrashRecord) -> bool:
        """Whether crash ``c`` is this (crash) entry."""
        if self.kind != "crash" or not self._where(c.arch, c.cpu, c.granule, c.qemu_version):
            return False
        if self.signature and not self.signature.search(c.signature):
            return False
        if self.expected and not self.expected.fullmatch(" | ".join(sorted(c.expected))):
            return False
        if self.aim and not self.aim.search(c.aim):
            return False
        if self.at and not self.at.fullmatch(c.at or ""):
            return False
        if self.config and not self.config.search(c.config):
            return False
        return True

    def matches(self, d: Divergence, qemu_version: str) -> bool:
        """Whether divergence ``d``, seen on ``qemu_version``, is this entry."""
        if d.kind.value != self.kind:
            return False
        if not self._where(d.arch, d.cpu, d.granule, qemu_version):
            return False
        if self.expected and not self.expected.fullmatch(" | ".join(sorted(d.expected))):
            return False
        if self.observed and not self.observed.fullmatch(d.observed):
            return False
        if self.aim and not self.aim.search(d.aim):
            return False
        if self.at and not self.at.fullmatch(d.at or ""):
            return False
        if self.config and not self.config.search(d.config):
            return False
        if self.rule and not any(self.rule.search(r) for p in d.permitted or ()
                                 for r in p.rules):
            return False
        if self.par and not self.par.search(observed_par_text(d.arch, d.raw_map)):
            return False
        if self.permitted and not any(self.permitted.search(p.result) for p in d.permitted or ()):
            return False
        return True


@dataclasses.dataclass(frozen=True)
class Baseline:
    path: Path | None
    entries: tuple[BaselineEntry, ...]

    def match(self, d: Divergence, qemu_version: str) -> BaselineEntry | None:
        return next((e for e in self.entries if e.matches(d, qemu_version)), None)

    def match_crash(self, c: CrashRecord) -> BaselineEntry | None:
        return next((e for e in self.entries if e.matches_crash(c)), None)


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
        for key in ("id", "title", "verdict", "evidence"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise UsageError(f"{at}.{key}: required, a non-empty string")
        case = item.get("case")
        cases = [case] if isinstance(case, str) else case
        if case is None and item.get("kind") == "cpu-model":
            # A model difference belongs to no case: the (arch, -cpu) pair
            # reproduces it (tests/test_baseline.py reads the model again).
            if not isinstance(item.get("arch"), str) or not item.get("cpus"):
                raise UsageError(f"{at}: a cpu-model entry without a case names its arch "
                                 "and cpus (the models that reproduce it)")
            cases = []
        elif not isinstance(cases, list) or not cases or not all(
                isinstance(c, str) and c.strip() for c in cases):
            raise UsageError(f"{at}.case: required, a case file or a list of them "
                             "(only a cpu-model entry may go without)")
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
        if "qemu" in item and lists["qemu_versions"]:
            raise UsageError(f"{at}: give either qemu (version ranges) or qemu_versions, not both")
        versions = (VersionRange.parse(item["qemu"], f"{at}.qemu") if "qemu" in item
                    else VersionRange(lists["qemu_versions"]))
        if kind == "crash" and "signature" not in regexes:
            raise UsageError(f"{at}.signature: required for a crash entry (a regular expression "
                             "searched in the crash signature)")
        if kind != "crash" and "signature" in regexes:
            raise UsageError(f"{at}.signature: only crash entries have a signature")
        entries.append(BaselineEntry(id=item["id"], title=item["title"], verdict=item["verdict"],
                                     evidence=item["evidence"], cases=tuple(cases), kind=kind,
                                     arch=item.get("arch"), upstream=item.get("upstream", ""),
                                     qemu=versions, **lists, **regexes))
    return Baseline(None, tuple(entries))


def load_baseline(path: str | Path) -> Baseline:
    """Read and validate a baseline file; UsageError (one line) otherwise."""
    p = Path(path)
    data = load_data_file(p, "baseline", "TOML", tomllib.loads)
    baseline = parse_baseline(data, str(p))
    return dataclasses.replace(baseline, path=p)


EMPTY = Baseline(None, ())


def apply_baseline(baseline: Baseline, records: Iterable[Record]) -> list[Record]:
    """Mark each divergence and crash record ``known`` (entry id) or new (None)."""
    out: list[Record] = []
    for rec in records:
        if isinstance(rec, DivergenceRecord):
            entry = baseline.match(rec, rec.qemu_version)
            rec = dataclasses.replace(rec, known=entry.id if entry else None)
        elif isinstance(rec, CrashRecord):
            found = baseline.match_crash(rec)
            rec = dataclasses.replace(rec, known=found.id if found else None)
        out.append(rec)
    return out


def default_baseline() -> Path | None:
    """The repository's baseline.toml, when there is one."""
    path = Path(__file__).resolve().parent.parent / "baseline.toml"
    return path if path.is_file() else None


def _same_model(recorded: CpuModel | None, ran: CpuModel | None) -> bool:
    """Whether a case recorded for ``recorded`` (None: its named table's
    model) speaks for a run whose model of that CPU was ``ran`` (None: not
    known): the same ID registers, so the same features.  A ``max`` case
    recorded on a QEMU whose max has FEAT_XS says nothing about a QEMU
    whose max has not."""
    if recorded is None or ran is None:
        return True
    return (recorded.arch_version, recorded.id_regs) == (ran.arch_version, ran.id_regs)


def stale_entries(baseline: Baseline, used: set, ran: set,
                  root: Path | None = None,
                  models: Mapping[tuple[str, str, str], CpuModel] | None = None
                  ) -> list[BaselineEntry]:
    """Entries that matched no divergence or crash (``used``: the ids that
    did) although the run executed the configuration of their case file
    (its arch, CPU model and VTCR, in a case of the same kind: AT, access
    or stage 1 -- an AT case of the same VTCR does not run a stage-1
    case's probes) on a QEMU of their version range (``ran``: (arch, cpu,
    vtcr, QEMU version, kind) of every case run; without the version it
    counts for every range, without the kind for every kind) -- for a cpu-model entry
    without a case file, ran a case on one of its CPU models (whose ID
    registers every run reads): the bug they describe did not show where
    it used to.  ``models``: the CPU model the run used per (QEMU version
    number, arch, CPU); where a case file records its CPU's model (a
    ``max``, as the QEMU it was recorded on reports it), a run of another
    model of that CPU did not run its configuration."""
    base = root or (baseline.path.parent if baseline.path else Path("."))
    models = models or {}
    stale = []
    for e in baseline.entries:
        if e.id in used:
            continue
        wheres = []
        for case in e.cases:
            try:
                data = json.loads((base / case).read_text(encoding="utf-8"))
                arch = data["arch"]
                recorded = cpu_model_from_data(data["cpu_model"], Arch(arch), data["cpu"]) \
                    if "cpu_model" in data else None
                wheres.append(((arch, data["cpu"], data["config"]["vtcr"],
                                entry_kind(data["key"]).value), recorded))
            except (OSError, ValueError, KeyError, TypeError, AttributeError, UsageError):
                continue  # a missing or broken case file is reported by the tests
        if any(w[:3] == tuple(r[:3]) and (len(r) < 5 or r[4] == w[3])
               and (len(r) < 4 or e.applies_to(r[3]))
               and (len(r) < 4 or _same_model(recorded, models.get(
                   (version_number(r[3]), r[0], r[1]))))
               for r in ran for w, recorded in wheres):
            stale.append(e)
        elif not e.cases and any(r[0] == e.arch and r[1] in e.cpus
                                 and (len(r) < 4 or e.applies_to(r[3])) for r in ran):
            stale.append(e)     # a case-less cpu-model entry: the run used its model
    return stale
