"""The records of ``results.jsonl`` (docs/results.md), defined once: the
run header, the batch, the case, the divergence, the crash and the end
record, each a frozen
dataclass with ``to_json`` (the object written, keys in the order version 1
writers have always written them, so files stay byte-compatible) and
``from_json`` (the reader's validation: a record that does not follow the
format raises :class:`InvalidRecord` saying why; fields the reports do not
need are read leniently).

Longer than 500 lines because the six record types, their field readers
and the file's two ends are one definition: split, the writer's and the
reader's halves of a record would drift apart again.

The writer (harness.judge, harness.workers), the reader (harness.report),
``--resume``, the progress display, baseline matching and the tests all use
these types; :class:`RecordSink` and :func:`read_json_lines` are the file's
two ends.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

from reference.arch import Arch
from reference.config import S2Config

from .qemu.boot import BatchStatus, FailureKind
from .vocabulary import FANOUT_AIM, DivergenceKind, FamilyKey, Signature, family_key

RESULTS_VERSION = 1
RECORDS = "results.jsonl"

Json = dict[str, Any]


class InvalidRecord(Exception):
    """A record that does not follow docs/results.md; the message says why."""


class ResultsVersionError(Exception):
    """A run header of another results version: nothing in the file can be
    trusted to mean what this reader thinks."""

    def __init__(self, version: Any) -> None:
        super().__init__(f"results version {version!r}, this s2diff reads version "
                         f"{RESULTS_VERSION}")
        self.version = version


class CaseStatus(enum.Enum):
    """``status`` of a case record."""

    PASS = "pass"
    DIVERGE = "diverge"
    TIMEOUT = "timeout"
    CRASH = "crash"
    GUEST_ERROR = "guest-error"
    NOT_RUN = "not-run"


# ---------------------------------------------------------------------------
# Field readers: strict ones raise InvalidRecord, lenient ones default
# ---------------------------------------------------------------------------

E = TypeVar("E", bound=enum.Enum)


def _int(rec: Mapping[str, Any], name: str) -> int:
    value = rec.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(f"'{name}' missing or not an integer")
    return value


def _str(rec: Mapping[str, Any], name: str) -> str:
    value = rec.get(name)
    if not isinstance(value, str):
        raise InvalidRecord(f"'{name}' missing or not a string")
    return value


def _bool(rec: Mapping[str, Any], name: str) -> bool:
    value = rec.get(name)
    if not isinstance(value, bool):
        raise InvalidRecord(f"'{name}' missing or not a boolean")
    return value


def _enum(cls: type[E], rec: Mapping[str, Any], name: str) -> E:
    if name not in rec:
        raise InvalidRecord(f"'{name}' missing")
    try:
        return cls(rec[name])
    except (ValueError, TypeError):
        raise InvalidRecord(f"'{name}' is {rec[name]!r}, not one of "
                            f"{', '.join(str(m.value) for m in cls)}") from None


def _arch(rec: Mapping[str, Any]) -> str:
    """The ``arch`` field, checked to name an architecture, as written."""
    return _enum(Arch, rec, "arch").value


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> tuple[str, ...] | None:
    """A list of strings as a tuple; None when absent or not a list."""
    if not isinstance(value, list):
        return None
    return tuple(str(v) for v in value)


# ---------------------------------------------------------------------------
# The run header
# ---------------------------------------------------------------------------

SHARD = re.compile(r"(\d+)/(\d+)")


@dataclasses.dataclass(frozen=True)
class QemuInfo:
    """One QEMU build of a run (``--qemu``, or the one on PATH): its
    ``label`` (what every batch, case, divergence and crash record names
    it by), its ``version`` line and the programs run for each
    architecture (None: the build has no emulator for it)."""

    label: str
    version: str
    aarch64: str | None
    arm: str | None

    def to_json(self) -> Json:
        return {"label": self.label, "version": self.version, "aarch64": self.aarch64,
                "arm": self.arm}

    @classmethod
    def from_json(cls, rec: Any) -> QemuInfo | None:
        if not isinstance(rec, dict) or not isinstance(rec.get("label"), str):
            return None
        return cls(label=rec["label"], version=_text(rec.get("version")),
                   aarch64=_opt_str(rec.get("aarch64")), arm=_opt_str(rec.get("arm")))


@dataclasses.dataclass(frozen=True)
class RunHeader:
    """The first record of a run.  ``shard`` is (K, N) of ``--shard K/N``;
    ``qemu`` pairs (arch, version) of the first QEMU in the order written
    (what version-1 readers read); ``qemus`` every QEMU build of the run
    (empty in files written before several QEMUs could run: one QEMU);
    ``options`` the run's options as ``--resume`` needs them (JSON values,
    docs/results.md); ``None`` stands for a field the file does not give
    (the reader is lenient about all but ``seed`` and ``version``)."""

    seed: int
    cases_per_entry: int | None
    fanout: int | None
    shard: tuple[int, int] | None
    entries: int | None
    batches: int | None
    cases: int | None
    argv: tuple[str, ...]
    started: str
    qemu: tuple[tuple[str, str], ...]
    baseline: str | None
    qemus: tuple[QemuInfo, ...] = ()
    options: Json | None = dataclasses.field(default=None, hash=False)

    def to_json(self) -> Json:
        out: Json = {"type": "run", "version": RESULTS_VERSION, "seed": self.seed,
                     "cases_per_entry": self.cases_per_entry, "fanout": self.fanout,
                     "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
                     "entries": self.entries, "batches": self.batches, "cases": self.cases,
                     "argv": list(self.argv), "started": self.started,
                     "qemu": dict(self.qemu), "baseline": self.baseline}
        if self.qemus:
            out["qemus"] = [q.to_json() for q in self.qemus]
        if self.options is not None:
            out["options"] = self.options
        return out

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> RunHeader:
        """ResultsVersionError for another version; InvalidRecord otherwise."""
        version = rec.get("version")
        if version != RESULTS_VERSION:
            raise ResultsVersionError(version)
        shard = None
        text = rec.get("shard")
        if text is not None:
            m = SHARD.fullmatch(str(text))
            if not m or not 1 <= int(m[1]) <= int(m[2]):
                raise InvalidRecord(f"'shard' is {text!r}, not K/N")
            shard = (int(m[1]), int(m[2]))
        qemu = rec.get("qemu")
        qemus = rec.get("qemus")
        options = rec.get("options")
        return cls(seed=_int(rec, "seed"), cases_per_entry=_opt_int(rec.get("cases_per_entry")),
                   fanout=_opt_int(rec.get("fanout")), shard=shard,
                   entries=_opt_int(rec.get("entries")), batches=_opt_int(rec.get("batches")),
                   cases=_opt_int(rec.get("cases")), argv=_strings(rec.get("argv")) or (),
                   started=_text(rec.get("started")),
                   qemu=tuple((str(a), str(v)) for a, v in qemu.items())
                   if isinstance(qemu, dict) else (),
                   baseline=_opt_str(rec.get("baseline")),
                   qemus=tuple(q for q in map(QemuInfo.from_json, qemus) if q is not None)
                   if isinstance(qemus, list) else (),
                   options=options if isinstance(options, dict) else None)

    def versions(self) -> tuple[tuple[str, str], ...]:
        """(arch, version) pairs with a version, sorted: of every QEMU
        build (``qemus``), else of the ``qemu`` field."""
        if self.qemus:
            pairs = {(arch, q.version) for q in self.qemus for arch, path in
                     (("aarch64", q.aarch64), ("arm", q.arm)) if path and q.version}
            return tuple(sorted(pairs))
        return tuple(sorted((a, v) for a, v in self.qemu if v))

    @property
    def labels(self) -> tuple[str, ...]:
        """The QEMU labels of the run, in ``--qemu`` order ("" for a file
        written before labels: one QEMU)."""
        return tuple(q.label for q in self.qemus) or ("",)


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Isolation:
    """The ``isolated`` field of a crashed or timed-out batch: whether one
    case reproduces the failure and, for a finding, its kind, case key,
    probe and case file (relative to the run directory); ``why`` when it
    does not; ``boots`` the QEMU boots the search took."""

    reproduced: bool
    why: str | None = None
    kind: FailureKind | None = None
    key: str | None = None
    probe: int | None = None
    case_file: str | None = None
    boots: int | None = None

    def to_json(self) -> Json:
        out: Json = {"reproduced": self.reproduced}
        for name, value in (("why", self.why), ("kind", self.kind and self.kind.value),
                            ("key", self.key), ("probe", self.probe),
                            ("case_file", self.case_file), ("boots", self.boots)):
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, rec: Any) -> Isolation | None:
        if not isinstance(rec, dict) or not isinstance(rec.get("reproduced"), bool):
            return None
        kind = rec.get("kind")
        return cls(reproduced=rec["reproduced"], why=_opt_str(rec.get("why")),
                   kind=FailureKind(kind) if kind in {k.value for k in FailureKind} else None,
                   key=_opt_str(rec.get("key")), probe=_opt_int(rec.get("probe")),
                   case_file=_opt_str(rec.get("case_file")), boots=_opt_int(rec.get("boots")))


@dataclasses.dataclass(frozen=True)
class BatchRecord:
    """One batch on one QEMU: its QEMU boot(s), or the harness failing on
    it (status HARNESS_ERROR, no case records, the traceback or QEMU's
    message as ``diagnostic``).  ``elapsed`` in seconds; ``qemu`` the
    build's label ("" in files of one-QEMU runs written before labels);
    ``boots`` how many QEMU boots it took (crash-resume and the results
    area's size may need several; None: not recorded); ``profile``: seconds
    per stage of the worker (`s2diff bench`; None: not profiled)."""

    batch: int
    arch: str
    cpu: str
    status: BatchStatus
    images: int
    images_done: int
    elapsed: float
    argv: tuple[str, ...]
    qemu_version: str
    diagnostic: str
    isolated: Isolation | None = None
    qemu: str = ""
    boots: int | None = None
    profile: tuple[tuple[str, float], ...] | None = None

    def to_json(self) -> Json:
        out: Json = {"type": "batch", "batch": self.batch, "arch": self.arch, "cpu": self.cpu,
                     "status": self.status.value, "images": self.images,
                     "images_done": self.images_done, "elapsed": self.elapsed,
                     "argv": list(self.argv), "qemu_version": self.qemu_version,
                     "diagnostic": self.diagnostic}
        if self.isolated is not None:
            out["isolated"] = self.isolated.to_json()
        out["qemu"] = self.qemu
        if self.boots is not None:
            out["boots"] = self.boots
        if self.profile is not None:
            out["profile"] = {name: round(seconds, 6) for name, seconds in self.profile}
        return out

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> BatchRecord:
        elapsed = rec.get("elapsed")
        return cls(batch=_int(rec, "batch"), arch=_arch(rec), cpu=_str(rec, "cpu"),
                   status=_enum(BatchStatus, rec, "status"),
                   images=_opt_int(rec.get("images")) or 0,
                   images_done=_opt_int(rec.get("images_done")) or 0,
                   elapsed=float(elapsed) if isinstance(elapsed, (int, float))
                   and not isinstance(elapsed, bool) else 0.0,
                   argv=_strings(rec.get("argv")) or (),
                   qemu_version=_text(rec.get("qemu_version")),
                   diagnostic=_text(rec.get("diagnostic")),
                   isolated=Isolation.from_json(rec.get("isolated")),
                   qemu=_text(rec.get("qemu")), boots=_opt_int(rec.get("boots")),
                   profile=_profile(rec.get("profile")))


def _profile(value: Any) -> tuple[tuple[str, float], ...] | None:
    if not isinstance(value, dict):
        return None
    return tuple((str(k), float(v)) for k, v in value.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool))


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CaseCounts:
    """Probes of one case (named and fan-out) by verdict; ``diverged`` also
    counts descriptor words written against the reference.  Of the
    ``not_run`` probes, ``crashed`` were in flight when QEMU died or hung
    (each has a crash record) and ``held`` were held back from QEMU because
    the reference predicts the outcome a crash family was seen on
    (docs/results.md, crash-resume).  ``rules``: the rules the probes that
    ran reached (CaseRecord.rules)."""

    probes: int
    passed: int
    diverged: int
    not_run: int
    crashed: int = 0
    held: int = 0
    rules: tuple[tuple[str, int], ...] | None = None


@dataclasses.dataclass(frozen=True)
class CaseRecord:
    """One case (configuration, table image, probes) of a batch.

    ``rules`` (optional; stream C, docs/coverage.md): the architecture rules
    the case's probes reached, as (rule key, probes) pairs sorted by key;
    None in files written before rule coverage."""

    key: str
    entry: str
    group: str
    arch: str
    cpu: str
    vtcr: str
    vttbr: str
    valid: bool
    kvm: bool
    batch: int
    status: CaseStatus
    probes: int
    passed: int
    diverged: int
    not_run: int
    qemu: str = ""
    crashed: int = 0
    held: int = 0
    rules: tuple[tuple[str, int], ...] | None = None

    def to_json(self) -> Json:
        out: Json = {"type": "case", "key": self.key, "entry": self.entry, "group": self.group,
                     "arch": self.arch, "cpu": self.cpu, "vtcr": self.vtcr, "vttbr": self.vttbr,
                     "valid": self.valid, "kvm": self.kvm, "batch": self.batch,
                     "status": self.status.value, "probes": self.probes, "passed": self.passed,
                     "diverged": self.diverged, "not_run": self.not_run, "qemu": self.qemu}
        # Written only when there are any: most cases of most runs have none.
        if self.crashed:
            out["crashed"] = self.crashed
        if self.held:
            out["held"] = self.held
        if self.rules is not None:
            out["rules"] = dict(self.rules)
        return out

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> CaseRecord:
        arch = _arch(rec)
        vtcr = _str(rec, "vtcr")
        try:
            _config(arch, vtcr)
        except ValueError:
            raise InvalidRecord(f"'vtcr' is {vtcr!r}, not a hex number") from None
        kvm = rec.get("kvm")
        return cls(key=_str(rec, "key"), entry=_str(rec, "entry"), group=_str(rec, "group"),
                   arch=arch, cpu=_str(rec, "cpu"), vtcr=vtcr, vttbr=_text(rec.get("vttbr")),
                   valid=_bool(rec, "valid"), kvm=kvm if isinstance(kvm, bool) else False,
                   batch=_int(rec, "batch"), status=_enum(CaseStatus, rec, "status"),
                   probes=_int(rec, "probes"), passed=_int(rec, "passed"),
                   diverged=_int(rec, "diverged"), not_run=_int(rec, "not_run"),
                   qemu=_text(rec.get("qemu")), crashed=_opt_int(rec.get("crashed")) or 0,
                   held=_opt_int(rec.get("held")) or 0, rules=_rule_counts(rec.get("rules")))

    @property
    def granule(self) -> str | None:
        """The granule TG0 names (None for the reserved encoding)."""
        g = _config(self.arch, self.vtcr).granule
        return g.label if g else None

    @property
    def ia_bits(self) -> int:
        return _config(self.arch, self.vtcr).ia_bits


def _rule_counts(value: Any) -> tuple[tuple[str, int], ...] | None:
    """A case record's ``rules``: an object of rule key -> probes, or absent."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in value.items()):
        raise InvalidRecord("'rules' is not an object of rule key -> probe count")
    return tuple(sorted(value.items()))


@functools.lru_cache(maxsize=4096)
def _config(arch: str, vtcr: str) -> S2Config:
    """The configuration a record's VTCR text decodes to (ValueError if it
    is not hex); a run has few distinct values."""
    return S2Config.from_vtcr(Arch(arch), int(vtcr, 16))


# ---------------------------------------------------------------------------
# Divergences
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Permitted:
    """One permitted outcome of the reference walk: result, rules, trace lines."""

    result: str
    rules: tuple[str, ...]
    trace: tuple[str, ...]

    def to_json(self) -> Json:
        return {"result": self.result, "rules": list(self.rules), "trace": list(self.trace)}


@dataclasses.dataclass(frozen=True)
class Span:
    """The IPAs a placed table entry covers: [base, base + 2^bits)."""

    base: str
    bits: int


@dataclasses.dataclass(frozen=True)
class Divergence:
    """A probe (or descriptor) outside the permitted set, as judging one
    case finds it, before the run adds its context.

    ``probe``: index in the case (named probes, then fan-out probes; for
    memory the first named probe whose walk read the descriptor);
    ``expected``: sorted labels of the permitted outcomes;
    ``observed``: the observed label (harness.vocabulary).  A fan-out
    divergence stands for ``count`` probes (``ipas``: the first few,
    ``span``: the entry's IPAs).  ``permitted`` and ``raw`` are None when
    not written (known divergences drop them)."""

    kind: DivergenceKind
    probe: int | None
    ipa: str | None
    at: str | None
    aim: str
    arch: str
    cpu: str
    granule: str | None
    config: str
    vtcr: str
    vttbr: str
    expected: tuple[str, ...]
    permitted: tuple[Permitted, ...] | None
    observed: str
    observed_text: str
    raw: tuple[tuple[str, str], ...] | None
    count: int = 1
    ipas: tuple[str, ...] | None = None
    span: Span | None = None

    @property
    def fanout(self) -> bool:
        return self.aim == FANOUT_AIM

    @property
    def raw_map(self) -> dict[str, str]:
        return dict(self.raw or ())

    @property
    def signature(self) -> Signature:
        """Kind and labels, as written (see harness.vocabulary.Signature)."""
        return Signature(self.kind, self.expected, self.observed)

    @property
    def family(self) -> FamilyKey:
        return family_key(self.arch, self.kind, self.expected, self.observed, self.aim,
                          None if self.raw is None else self.raw_map)

    def summary(self, key: str = "") -> str:
        """One line: where, expected vs observed."""
        where = key if self.probe is None else f"{key} probe {self.probe}"
        aim = f" ({self.aim})" if self.aim else ""
        return f"{where}{aim}: expected {' | '.join(self.expected)}, observed {self.observed}"

    def _body_json(self) -> Json:
        out: Json = {"type": "divergence", "kind": self.kind.value, "probe": self.probe,
                     "ipa": self.ipa, "at": self.at, "aim": self.aim, "arch": self.arch,
                     "cpu": self.cpu, "granule": self.granule, "config": self.config,
                     "vtcr": self.vtcr, "vttbr": self.vttbr, "expected": list(self.expected)}
        if self.permitted is not None:
            out["permitted"] = [p.to_json() for p in self.permitted]
        out["observed"] = self.observed
        out["observed_text"] = self.observed_text
        if self.raw is not None:
            out["raw"] = dict(self.raw)
        if self.fanout:
            # Fan-out records carry their count here; the sample IPAs and
            # the span are dropped from known ones.
            out["count"] = self.count
            if self.ipas is not None:
                out["ipas"] = list(self.ipas)
            if self.span is not None:
                out["span"] = {"base": self.span.base, "bits": self.span.bits}
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class DivergenceRecord(Divergence):
    """A divergence record of results.jsonl: the divergence, the case and
    batch it belongs to, the QEMU that showed it (``qemu``: the build's
    label, "" in files of one-QEMU runs written before labels;
    ``qemu_version``: its version line), ``known`` (the baseline entry id;
    None when new) and, for a new one, ``case_file`` (relative to the run
    directory).  ``base_dir``: the directory of the results file it was
    read from (set by the reader, never written or compared)."""

    key: str
    entry: str
    group: str
    batch: int
    qemu_version: str
    argv: tuple[str, ...] | None
    known: str | None = None
    case_file: str | None = None
    qemu: str = ""
    base_dir: Path | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def is_new(self) -> bool:
        return self.known is None

    @classmethod
    def of(cls, d: Divergence, *, key: str, entry: str, group: str, batch: int,
           qemu_version: str, argv: tuple[str, ...] | None, qemu: str = "") -> DivergenceRecord:
        """The record of divergence ``d`` found in case ``key`` of ``batch``."""
        return cls(**{f.name: getattr(d, f.name) for f in dataclasses.fields(Divergence)},
                   key=key, entry=entry, group=group, batch=batch, qemu_version=qemu_version,
                   argv=argv, qemu=qemu)

    def summary(self, key: str | None = None) -> str:
        return super().summary(self.key if key is None else key)

    def to_json(self) -> Json:
        out = self._body_json()
        out.update(key=self.key, entry=self.entry, group=self.group, batch=self.batch,
                   qemu_version=self.qemu_version)
        if self.argv is not None:
            out["argv"] = list(self.argv)
        out["known"] = self.known
        if self.case_file is not None:
            out["case_file"] = self.case_file
        if not self.fanout and self.count != 1:
            # Divergences of one case and one root cause merged into one record.
            out["count"] = self.count
        out["qemu"] = self.qemu
        return out

    @classmethod
    def from_json(cls, rec: Mapping[str, Any], base_dir: Path | None = None) -> DivergenceRecord:
        probe = rec.get("probe")
        if probe is not None and (isinstance(probe, bool) or not isinstance(probe, int)):
            raise InvalidRecord("'probe' is not an integer or null")
        expected = rec.get("expected")
        if not isinstance(expected, list) or not all(isinstance(e, str) for e in expected):
            raise InvalidRecord("'expected' missing or not a list of strings")
        known = rec.get("known")
        if known is not None and not isinstance(known, str):
            raise InvalidRecord("'known' is not a string or null")
        count = rec.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidRecord("'count' is not a positive integer")
        raw = rec.get("raw")
        span = rec.get("span")
        return cls(
            kind=_enum(DivergenceKind, rec, "kind"), probe=probe, ipa=_opt_str(rec.get("ipa")),
            at=_opt_str(rec.get("at")), aim=_text(rec.get("aim")), arch=_arch(rec),
            cpu=_str(rec, "cpu"), granule=_opt_str(rec.get("granule")),
            config=_text(rec.get("config")), vtcr=_text(rec.get("vtcr")),
            vttbr=_text(rec.get("vttbr")), expected=tuple(expected),
            permitted=_permitted(rec["permitted"]) if "permitted" in rec else None,
            observed=_str(rec, "observed"), observed_text=_text(rec.get("observed_text")),
            raw=None if "raw" not in rec else
            tuple((str(k), str(v)) for k, v in raw.items()) if isinstance(raw, dict) else (),
            count=count, ipas=_strings(rec.get("ipas")),
            span=Span(str(span.get("base")), int(span["bits"]))
            if isinstance(span, dict) and _opt_int(span.get("bits")) is not None else None,
            key=_str(rec, "key"), entry=_str(rec, "entry"), group=_str(rec, "group"),
            batch=_int(rec, "batch"), qemu_version=_text(rec.get("qemu_version")),
            argv=_strings(rec.get("argv")), known=known,
            case_file=_opt_str(rec.get("case_file")), qemu=_text(rec.get("qemu")),
            base_dir=base_dir)


def _permitted(value: Any) -> tuple[Permitted, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(Permitted(result=_text(p.get("result")),
                           rules=tuple(str(r) for r in p.get("rules") or () if r is not None),
                           trace=tuple(str(t) for t in p.get("trace") or () if t is not None))
                 for p in value if isinstance(p, dict))


# ---------------------------------------------------------------------------
# Shrinks (run --shrink)
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class ShrinkRecord:
    """What ``run --shrink`` made of one divergence family: the case file
    shrunk and the probe followed, the minimal case and its report
    (``min_case``, ``report``: paths relative to the run directory, None
    when shrinking failed), the localization (``level``: the walk level,
    None for the configuration; ``field``: the field named, "" when not
    localized) and ``note`` (why it could not keep the family, or failed).
    ``base_dir`` as for DivergenceRecord."""

    family: FamilyKey
    case_file: str
    probe: int | None
    min_case: str | None
    report: str | None
    level: int | None
    address: str | None
    field: str
    note: str = ""
    base_dir: Path | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def level_text(self) -> str:
        return "configuration" if self.level is None else f"L{self.level} descriptor"

    def to_json(self) -> Json:
        f = self.family
        return {"type": "shrink", "family": {"arch": f.arch, "kind": f.kind,
                                             "expected": list(f.expected),
                                             "observed": f.observed, "aim": f.aim},
                "case_file": self.case_file, "probe": self.probe, "min_case": self.min_case,
                "report": self.report, "level": self.level, "address": self.address,
                "field": self.field, "note": self.note}

    @classmethod
    def from_json(cls, rec: Mapping[str, Any], base_dir: Path | None = None) -> ShrinkRecord:
        fam = rec.get("family")
        if not isinstance(fam, dict):
            raise InvalidRecord("'family' missing or not an object")
        expected = fam.get("expected")
        if not isinstance(expected, list):
            raise InvalidRecord("'family.expected' missing or not a list")
        return cls(family=FamilyKey(_arch(fam), _str(fam, "kind"),
                                    tuple(str(e) for e in expected), _str(fam, "observed"),
                                    _text(fam.get("aim"))),
                   case_file=_str(rec, "case_file"), probe=_opt_int(rec.get("probe")),
                   min_case=_opt_str(rec.get("min_case")), report=_opt_str(rec.get("report")),
                   level=_opt_int(rec.get("level")), address=_opt_str(rec.get("address")),
                   field=_text(rec.get("field")), note=_text(rec.get("note")),
                   base_dir=base_dir)


# ---------------------------------------------------------------------------
# Crashes and hangs, and the end of a run
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CrashRecord:
    """QEMU died (a signal, a failed assertion, an exit without the end
    marker) or hung while it ran one probe: that probe (``probe``, its
    index in case ``key``; ``ipa``, ``at``, ``aim`` and the reference's
    ``expected`` outcome labels), how QEMU ended (``kind``: crash or hang;
    ``signal`` or ``returncode``), its ``signature`` (the assertion or last
    console line with addresses and numbers masked, and the signal: what a
    crash family is), the last console lines (``console``), and for the
    first crash of a family the case file of that single probe
    (``case_file``, relative to the run directory) with ``reproduced``:
    whether a re-run of it alone failed the same way (None: not checked
    here, the family's case file is another record's).  ``known``: the
    baseline crash entry that matches (None: new).  ``held``: probes of
    its case the harness held back from QEMU because the reference
    predicts the same outcome as this probe's (``quarantine``, the
    expected labels with levels masked): QEMU is not made to die on each
    of them."""

    qemu: str
    qemu_version: str
    batch: int
    arch: str
    cpu: str
    key: str
    entry: str
    group: str
    probe: int | None
    ipa: str | None
    at: str | None
    aim: str
    expected: tuple[str, ...]
    kind: FailureKind
    signature: str
    signal: int | None
    returncode: int | None
    console: str
    argv: tuple[str, ...] = ()
    granule: str | None = None
    config: str = ""
    quarantine: str = ""
    held: int = 0
    case_file: str | None = None
    reproduced: bool | None = None
    known: str | None = None

    @property
    def is_new(self) -> bool:
        return self.known is None

    def to_json(self) -> Json:
        return {"type": "crash", "qemu": self.qemu, "qemu_version": self.qemu_version,
                "batch": self.batch, "arch": self.arch, "cpu": self.cpu, "key": self.key,
                "entry": self.entry, "group": self.group, "probe": self.probe, "ipa": self.ipa,
                "at": self.at, "aim": self.aim, "expected": list(self.expected),
                "kind": self.kind.value, "signature": self.signature, "signal": self.signal,
                "returncode": self.returncode, "console": self.console, "argv": list(self.argv),
                "granule": self.granule, "config": self.config, "quarantine": self.quarantine,
                "held": self.held, "case_file": self.case_file,
                "reproduced": self.reproduced, "known": self.known}

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> CrashRecord:
        expected = rec.get("expected")
        reproduced = rec.get("reproduced")
        known = rec.get("known")
        if known is not None and not isinstance(known, str):
            raise InvalidRecord("'known' is not a string or null")
        return cls(qemu=_text(rec.get("qemu")), qemu_version=_text(rec.get("qemu_version")),
                   batch=_int(rec, "batch"), arch=_arch(rec), cpu=_str(rec, "cpu"),
                   key=_str(rec, "key"), entry=_str(rec, "entry"), group=_text(rec.get("group")),
                   probe=_opt_int(rec.get("probe")), ipa=_opt_str(rec.get("ipa")),
                   at=_opt_str(rec.get("at")), aim=_text(rec.get("aim")),
                   expected=tuple(str(e) for e in expected) if isinstance(expected, list) else (),
                   kind=_enum(FailureKind, rec, "kind"), signature=_str(rec, "signature"),
                   signal=_opt_int(rec.get("signal")), returncode=_opt_int(rec.get("returncode")),
                   console=_text(rec.get("console")), argv=_strings(rec.get("argv")) or (),
                   granule=_opt_str(rec.get("granule")), config=_text(rec.get("config")),
                   quarantine=_text(rec.get("quarantine")), held=_opt_int(rec.get("held")) or 0,
                   case_file=_opt_str(rec.get("case_file")),
                   reproduced=reproduced if isinstance(reproduced, bool) else None, known=known)


class EndReason(enum.Enum):
    """``reason`` of an end record: why the run stopped."""

    COMPLETE = "complete"           # every planned batch ran on every QEMU that could run it
    BUDGET = "budget"               # --budget: batches not started by then were not run
    INTERRUPTED = "interrupted"     # Ctrl-C or SIGTERM


@dataclasses.dataclass(frozen=True)
class NotRun:
    """A matrix entry of which no case ran on one QEMU, and why."""

    entry: str
    qemu: str
    reason: str

    def to_json(self) -> Json:
        return {"entry": self.entry, "qemu": self.qemu, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class EndRecord:
    """The last record of a run (of a shard): why it ended, how much of the
    plan ran, counted in (batch, QEMU) pairs and in cases, and every matrix
    entry of which no case ran on some QEMU (``entries_not_run``, with the
    reason: the budget, an interruption, or a QEMU without that CPU model).
    ``elapsed`` in seconds.  A run killed without a chance to write it has
    none: readers then know only what the other records say."""

    reason: EndReason
    batches_planned: int
    batches_run: int
    cases_planned: int
    cases_run: int
    entries: int
    entries_not_run: tuple[NotRun, ...]
    elapsed: float
    shard: tuple[int, int] | None = None

    def to_json(self) -> Json:
        return {"type": "end", "reason": self.reason.value,
                "batches_planned": self.batches_planned, "batches_run": self.batches_run,
                "cases_planned": self.cases_planned, "cases_run": self.cases_run,
                "entries": self.entries,
                "entries_not_run": [n.to_json() for n in self.entries_not_run],
                "elapsed": self.elapsed,
                "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None}

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> EndRecord:
        missing = rec.get("entries_not_run")
        shard = None
        m = SHARD.fullmatch(str(rec.get("shard")))
        if m and 1 <= int(m[1]) <= int(m[2]):
            shard = (int(m[1]), int(m[2]))
        elapsed = rec.get("elapsed")
        return cls(reason=_enum(EndReason, rec, "reason"),
                   batches_planned=_int(rec, "batches_planned"),
                   batches_run=_int(rec, "batches_run"),
                   cases_planned=_opt_int(rec.get("cases_planned")) or 0,
                   cases_run=_opt_int(rec.get("cases_run")) or 0,
                   entries=_opt_int(rec.get("entries")) or 0,
                   entries_not_run=tuple(
                       NotRun(str(n.get("entry")), _text(n.get("qemu")), _text(n.get("reason")))
                       for n in missing if isinstance(n, dict))
                   if isinstance(missing, list) else (),
                   elapsed=float(elapsed) if isinstance(elapsed, (int, float))
                   and not isinstance(elapsed, bool) else 0.0,
                   shard=shard)



# ---------------------------------------------------------------------------
# Any record, and the file
# ---------------------------------------------------------------------------

Record = Union[RunHeader, BatchRecord, CaseRecord, DivergenceRecord, CrashRecord, EndRecord,
               ShrinkRecord]


def parse_record(rec: Mapping[str, Any], base_dir: Path | None = None) -> Record:
    """The typed record of a JSON object; InvalidRecord (an unknown type
    included), or ResultsVersionError for a run header of another version."""
    rtype = rec.get("type")
    if rtype == "run":
        return RunHeader.from_json(rec)
    if rtype == "batch":
        return BatchRecord.from_json(rec)
    if rtype == "case":
        return CaseRecord.from_json(rec)
    if rtype == "divergence":
        return DivergenceRecord.from_json(rec, base_dir)
    if rtype == "crash":
        return CrashRecord.from_json(rec)
    if rtype == "end":
        return EndRecord.from_json(rec)
    if rtype == "shrink":
        return ShrinkRecord.from_json(rec, base_dir)
    raise InvalidRecord(f"unknown type {rtype!r}")


def record_line(record: Record) -> str:
    """The line a record is written as (without the newline)."""
    return json.dumps(record.to_json(), separators=(",", ":"))


def batch_number(record: Record) -> int | None:
    """The batch a record belongs to (None for the run header, the end and a shrink)."""
    return None if isinstance(record, (RunHeader, EndRecord, ShrinkRecord)) else record.batch


def batch_id(record: Record) -> tuple[int, str] | None:
    """(batch, QEMU label) of a record: a batch runs once on every QEMU of
    the run (None for the run header, the end record and a shrink)."""
    if isinstance(record, (RunHeader, EndRecord, ShrinkRecord)):
        return None
    return record.batch, record.qemu


class RecordSink:
    """Appends records to ``path`` as JSON Lines: each write is flushed and
    fsync'd so that nothing finished is lost if the run is killed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "a", encoding="utf-8")

    def write(self, records: Iterable[Record]) -> None:
        for rec in records:
            self._f.write(record_line(rec) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def rewrite_records(path: Path, records: Iterable[Record]) -> None:
    """Replace the results file with ``records``, atomically (temporary
    file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(record_line(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json_lines(path: Path) -> Iterator[Json]:
    """The JSON objects with a ``type`` of a results file; a torn last line
    (killed mid-write), or any line that is not such an object (not even
    UTF-8), is skipped."""
    with open(path, "rb") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:      # JSONDecodeError, UnicodeDecodeError
                continue
            if isinstance(rec, dict) and "type" in rec:
                yield rec


def read_records(path: Path) -> Iterator[Record]:
    """The valid records of a results file (see read_json_lines), typed;
    invalid ones are skipped (the report loader counts them instead)."""
    for rec in read_json_lines(path):
        try:
            yield parse_record(rec, path.parent)
        except (InvalidRecord, ResultsVersionError):
            continue


def crash_family_state(members: Sequence[CrashRecord]) -> str:
    """'new', 'known: ID', or for a family only some of whose probes a
    baseline entry describes (its expected outcomes are narrower than the
    family) 'known: ID for K of N probes, M new'."""
    known = [c.known for c in members if c.known]
    if not known:
        return "new"
    ids = ", ".join(sorted(set(known)))
    if len(known) == len(members):
        return f"known: {ids}"
    return f"known: {ids} for {len(known)} of {len(members)} probes, {len(members) - len(known)} new"
