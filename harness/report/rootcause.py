"""Root causes: what a person fixes, with the divergence families (the
symptoms) folded under them.  Functions of the records alone.

A **root cause** is one of:

* ``configuration``: every probe of a case departs the same way, because of
  the configuration rather than of any descriptor.  Either the reference
  rejects the configuration (reference.catalogue.judge: a configuration
  fault, e.g. AArch32.S2Walk's reserved SL0) and QEMU does something else
  with it; or the reference accepts it and QEMU answers every probe of the
  case with one and the same fault (e.g. 'translation L0' for a start
  level QEMU wrongly rejects).  Named by the configuration rule: the
  reference's verdict on the VTCR.
* ``descriptor``: families whose shrunk case was localized (``run --shrink``
  writes a shrink record) to a descriptor field; named by the field.
* ``family``: a divergence family nobody has localized yet; named by the
  family (aim, expected, observed).
* ``crash``: QEMU crashed or hung on a probe (crash records, or a batch's
  isolation finding); named by the crash signature.

A root cause is **new** when any divergence in it is new, else **known**
(with the baseline ids).  Counts are in probes (a fan-out record stands for
``count`` probes); descriptor writes (memory divergences) are counted
apart, so that passed + known + new + not run = probes.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import re
from collections.abc import Iterable, Sequence

from reference.arch import Arch
from reference.catalogue import judge
from reference.config import S2Config
from reference.cpus import get_cpu

from ..records import CaseRecord, DivergenceRecord, ShrinkRecord
from ..vocabulary import FANOUT_AIM, DivergenceKind, FamilyKey, outcome_label
from .families import Family, families_of
from .load import CrashView, RunData

# Share of a case's probes that must diverge, with one observed fault, for
# QEMU to be said to reject the configuration (the rest may coincide with
# that fault and pass, e.g. probes of an invalid level-0 entry).
REJECT_SHARE = 0.9


class CauseKind(enum.Enum):
    """What a root cause is named by (see the module docstring)."""

    CRASH = "crash"
    CONFIGURATION = "configuration"
    DESCRIPTOR = "descriptor"
    FAMILY = "family"


@dataclasses.dataclass(frozen=True)
class ConfigVerdict:
    """The reference's verdict on a case's configuration (VTCR and VTTBR on
    its CPU model): ``valid``, the failing rules (``problems``), the labels
    of the configuration faults they raise (``faults``) and the geometry
    in words (``geometry``: '4K, 40-bit IPA, start level 0')."""

    valid: bool
    problems: tuple[str, ...]
    faults: tuple[str, ...]
    geometry: str

    @property
    def rule_names(self) -> tuple[str, ...]:
        """The pseudocode functions of the problems ('AArch32.S2Walk')."""
        return tuple(dict.fromkeys(p.split(":")[0] for p in self.problems))


@functools.lru_cache(maxsize=1024)
def config_verdict(arch: str, cpu: str, vtcr: str, vttbr: str) -> ConfigVerdict | None:
    """reference.catalogue.judge on a record's configuration; None when the
    record does not name a CPU model or a VTCR the reference knows."""
    try:
        a = Arch(arch)
        config = S2Config.from_vtcr(a, int(vtcr, 16), int(vttbr or "0", 16))
        verdict = judge(get_cpu(a, cpu), config)
    except ValueError:
        return None
    faults = tuple(sorted({outcome_label(r.fault) for r in verdict.readings if r.fault}))
    granule = verdict.granule or config.granule
    parts = [granule.label.upper() if granule else "TG0 reserved",
             f"{verdict.ia_bits or config.ia_bits}-bit IPA"]
    if verdict.start_level is not None:
        parts.append(f"start level {verdict.start_level}")
    if arch == Arch.AARCH64.value and verdict.oa_bits is not None:
        parts.append(f"{verdict.oa_bits}-bit output")
    return ConfigVerdict(verdict.valid, verdict.problems, faults, ", ".join(parts))


def register_name(arch: str) -> str:
    return "VTCR_EL2" if arch == Arch.AARCH64.value else "VTCR"


@dataclasses.dataclass(frozen=True)
class RootCause:
    """One root cause and the divergences (or crashes) it explains.

    ``title`` names it (the rule, the field, the family or the crash);
    ``verdict`` is the one-line statement; ``detail`` a few lines more
    (configurations, localization).  ``new`` and ``known`` count diverging
    probes, ``writes_new``/``writes_known`` descriptor writes; ``known_ids``
    the baseline entries.  ``examples``: (case key, case file, base dir)
    of the first cases with a case file, in run order; ``qemus`` the QEMU
    labels (or versions) it was seen on."""

    kind: CauseKind
    key: tuple
    title: str
    verdict: str
    detail: tuple[str, ...]
    new: int
    known: int
    writes_new: int
    writes_known: int
    known_ids: tuple[str, ...]
    families: tuple[Family, ...]
    entries: tuple[str, ...]
    cases: tuple[str, ...]
    cpus: tuple[str, ...]
    qemus: tuple[str, ...]
    case_files: tuple[tuple[str, str], ...]     # (case file as recorded, base dir or "")
    shrink: ShrinkRecord | None = None
    crash: CrashView | None = None
    crashes: int = 0        # probes QEMU crashed or hung on (a crash root cause)
    crashes_new: int = 0    # of those, the ones no baseline entry describes

    @property
    def is_new(self) -> bool:
        if self.kind is CauseKind.CRASH:
            return self.crash is None or self.crashes_new > 0
        return bool(self.new or self.writes_new)

    @property
    def status(self) -> str:
        """'new', 'crash' or 'known (ids)'."""
        if self.kind is CauseKind.CRASH and self.is_new:
            return "crash" if self.crash is None or self.crash.reproduced else "crash (not reproduced alone)"
        if self.is_new:
            return "new"
        return f"known ({', '.join(self.known_ids)})" if self.known_ids else "known"

    @property
    def anchor(self) -> str:
        """A stable HTML id for this root cause."""
        return "rc-" + re.sub(r"[^a-z0-9]+", "-", "-".join(map(str, self.key)).lower()).strip("-")[:80]


def _observed_fault(label: str) -> bool:
    """A fault label ('translation L0', 'stage-1 address-size L0'), not
    'ok' or an exception."""
    return re.fullmatch(r"(stage-1 )?[a-z-]+ L-?\d", label) is not None


@dataclasses.dataclass(frozen=True)
class _Assign:
    kind: CauseKind
    key: tuple


def _case_assignments(case: CaseRecord | None,
                      divs: Sequence[DivergenceRecord]) -> dict[int, _Assign]:
    """The configuration root cause of each divergence of one case that has
    one, by position in ``divs``."""
    out: dict[int, _Assign] = {}
    if not divs:
        return out
    first = divs[0]
    verdict = config_verdict(first.arch, first.cpu, first.vtcr, first.vttbr)
    if verdict is None:
        return out
    probes = [(i, d) for i, d in enumerate(divs) if d.kind is DivergenceKind.PROBE]
    if not verdict.valid:
        # The reference rejects the configuration: every divergence whose
        # permitted outcomes are its configuration fault is about it.
        for i, d in probes:
            if set(d.expected) & set(verdict.faults):
                out[i] = _Assign(CauseKind.CONFIGURATION,
                                 ("invalid", first.arch, verdict.rule_names, d.expected))
        return out
    observed = {d.observed for _, d in probes}
    if case is None or len(observed) != 1 or not probes:
        return out
    label = observed.pop()
    diverging = sum(d.count for _, d in probes)
    ran = case.probes - case.not_run
    if (_observed_fault(label) and ran > 1 and diverging >= REJECT_SHARE * ran
            and len({d.expected for _, d in probes}) > 1):
        granule = case.granule or "?"
        for i, _ in probes:
            out[i] = _Assign(CauseKind.CONFIGURATION, ("rejected", first.arch, label, granule))
    return out


_LEVEL = re.compile(r"\bL(-?\d)\b")


def _levels_out(labels: Sequence[str]) -> tuple[str, ...]:
    """Labels with their levels replaced by 'Ln': a family root cause holds
    the same disagreement at every level, and named and fan-out probes."""
    return tuple(_LEVEL.sub("Ln", label) for label in labels)


def _levels_text(labels: Iterable[str]) -> str:
    """'ok L1', 'ok L3' -> 'ok L1, L3' (labels that differ only by level
    told once, with their levels)."""
    by_stem: dict[str, list[str]] = {}
    for label in sorted(set(labels)):
        m = _LEVEL.search(label)
        stem = _LEVEL.sub("Ln", label)
        by_stem.setdefault(stem, []).append(m.group(1) if m else "")
    parts = []
    for stem, levels in by_stem.items():
        levels = [lv for lv in levels if lv]
        parts.append(stem.replace("Ln", "L" + ", L".join(levels)) if levels else stem)
    return " / ".join(parts)


def _family_cause(f: FamilyKey) -> tuple:
    """The key of the family root cause a family falls under."""
    return ("family", f.arch, f.kind, _levels_out(f.expected), _levels_out((f.observed,))[0])


def _norm(text: str) -> str:
    """A field text without its values, as a grouping key."""
    return re.sub(r"0x[0-9a-fA-F]+|\b\d+\b", "#", text)


def assign(run: RunData) -> list[_Assign]:
    """The root cause of every divergence record of ``run``, in order."""
    cases = {(c.batch, c.key, _qemu(c)): c for c in run.cases}
    by_case: dict[tuple, list[int]] = collections.defaultdict(list)
    for i, d in enumerate(run.divergences):
        by_case[(d.batch, d.key, _qemu(d))].append(i)
    localized: dict[object, ShrinkRecord] = {}
    for s in run.shrinks:
        if s.field:
            localized.setdefault(s.family, s)
            localized.setdefault(_family_cause(s.family), s)
    out: list[_Assign | None] = [None] * len(run.divergences)
    for key, idx in by_case.items():
        divs = [run.divergences[i] for i in idx]
        for pos, a in _case_assignments(cases.get(key), divs).items():
            out[idx[pos]] = a
    for i, d in enumerate(run.divergences):
        if out[i] is not None:
            continue
        shrink = localized.get(d.family) or localized.get(_family_cause(d.family))
        if shrink is not None:
            out[i] = _Assign(CauseKind.DESCRIPTOR,
                             ("descriptor", d.arch, shrink.level_text, _norm(shrink.field)))
        else:
            out[i] = _Assign(CauseKind.FAMILY, _family_cause(d.family))
    return [a for a in out if a is not None]


def _qemu(rec: object) -> str:
    """The QEMU label a record names (results of several QEMUs); '' for a
    one-QEMU run."""
    label = getattr(rec, "qemu", None)
    return label if isinstance(label, str) else ""


def qemu_name(run: RunData, rec: object) -> str:
    """The QEMU a record ran on, as the reports name it: its label, else
    its version number."""
    label = _qemu(rec)
    if label:
        return label
    version = getattr(rec, "qemu_version", "") or ""
    return short_version(version) or "?"


def short_version(version: str) -> str:
    """'QEMU emulator version 7.2.22 (Debian ...)' -> '7.2.22'."""
    m = re.search(r"\d+\.\d+(\.\d+)?", version)
    return m.group(0) if m else version


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def _configuration_text(kind_key: tuple, divs: Sequence[DivergenceRecord],
                        cases: int) -> tuple[str, str, list[str]]:
    first = divs[0]
    verdict = config_verdict(first.arch, first.cpu, first.vtcr, first.vttbr)
    assert verdict is not None
    reg = register_name(first.arch)
    configs = sorted({(d.cpu, d.vtcr) for d in divs})
    where = "; ".join(f"{cpu} {reg}={vtcr}" for cpu, vtcr in configs[:4]) + (
        f"; and {len(configs) - 4} more" if len(configs) > 4 else "")
    observed = sorted({d.observed for d in divs})
    if kind_key[0] == "invalid":
        problems = sorted({p for d in divs
                           if (v := config_verdict(d.arch, d.cpu, d.vtcr, d.vttbr))
                           for p in v.problems})
        title = "; ".join(verdict.problems) + (
            f" (and {len(problems) - len(verdict.problems)} more configurations breaking "
            f"{', '.join(verdict.rule_names)})" if len(problems) > len(verdict.problems) else "")
        line = (f"the reference rejects the configuration ({' | '.join(first.expected)} for "
                f"every probe); QEMU answers {', '.join(observed[:3])}"
                + (f" and {len(observed) - 3} more" if len(observed) > 3 else "")
                + f" ({_plural(cases, 'case')})")
    else:
        label = kind_key[2]
        geometries = sorted({v.geometry for d in divs
                             if (v := config_verdict(d.arch, d.cpu, d.vtcr, d.vttbr))})
        title = (f"QEMU rejects a configuration the architecture accepts: "
                 f"{'; '.join(geometries[:3])}" + (" ..." if len(geometries) > 3 else ""))
        line = (f"QEMU answers every probe of {_plural(cases, 'case')} with {label}; the "
                f"reference accepts {reg} (AArch64.S2InvalidSL, S2InconsistentSL and "
                "S2TxSZFaults pass)" if first.arch == Arch.AARCH64.value else
                f"QEMU answers every probe of {_plural(cases, 'case')} with {label}; the "
                f"reference accepts {reg} (AArch32.S2Walk's start-level checks pass)")
    detail = [f"configuration: {where}" + (f" ({verdict.geometry})" if len(configs) == 1 else "")]
    if not verdict.valid and len(configs) == 1:
        detail = [f"configuration: {where} ({verdict.geometry})"]
    return title, line, detail


def _family_title(f: FamilyKey) -> str:
    what = f.aim or f.kind
    return f"{what}: expected {' | '.join(f.expected)}, QEMU {f.observed}"


def _group_title(families: Sequence[Family]) -> str:
    """Families that differ only by level and aim, in one phrase: 'expected
    ok L1, L2, L3; QEMU permission L1, L2, L3'."""
    if families[0].kind == DivergenceKind.MEMORY.value:
        return f"QEMU {families[0].observed}: a write no permitted outcome makes"
    expected = _levels_text(" | ".join(f.expected) for f in families)
    observed = _levels_text(f.observed for f in families)
    return f"expected {expected}; QEMU {observed}"


def root_causes(run: RunData) -> list[RootCause]:
    """The run's root causes: crashes first, then new before known, larger
    first (in probes, then descriptor writes), then by title."""
    groups: dict[_Assign, list[DivergenceRecord]] = collections.defaultdict(list)
    for a, d in zip(assign(run), run.divergences):
        groups[a].append(d)
    shrinks: dict[object, ShrinkRecord] = {}
    for s in run.shrinks:
        shrinks.setdefault(s.family, s)
    for s in run.shrinks:
        shrinks.setdefault(_family_cause(s.family), s)
    out = [_crash_cause(run, c) for c in crash_families(run.crashes)]
    for a, divs in groups.items():
        # Probes of every kind (AT, access, data chunks, a CPU model's ID
        # registers) count as probes; descriptor writes apart.
        probes = [d for d in divs if d.kind is not DivergenceKind.MEMORY]
        writes = [d for d in divs if d.kind is DivergenceKind.MEMORY]
        case_keys = list(dict.fromkeys(d.key for d in divs))
        families = families_of(divs)
        shrink = next((shrinks[k] for f in families for k in (f.key, _family_cause(f.key))
                       if k in shrinks), None)
        detail: list[str] = []
        if a.kind is CauseKind.CONFIGURATION:
            title, line, detail = _configuration_text(a.key, divs, len(case_keys))
        elif a.kind is CauseKind.DESCRIPTOR:
            assert shrink is not None
            title = f"{shrink.level_text}: {shrink.field}"
            line = (f"localized by shrinking ({_plural(len(families), 'family', )}): "
                    f"{_family_title(families[0].key)}")
        elif all(d.kind is DivergenceKind.CPU_MODEL for d in divs):
            # harness.judge.models: the ID registers of a named -cpu against
            # its table; nothing to shrink or localize.
            cpus = sorted({d.cpu for d in divs})
            title = (f"-cpu {', '.join(cpus)}: ID registers other than the model's table "
                     f"({', '.join(sorted({d.expected[0].split('=')[0] for d in divs if d.expected}))})")
            line = "; ".join(f"{d.cpu}: expected {', '.join(d.expected)}, QEMU {d.observed}"
                             for d in divs[:4]) + (" ..." if len(divs) > 4 else "")
        else:
            title = _group_title(families)
            aims = list(dict.fromkeys(f.aim for f in families if f.aim != FANOUT_AIM))
            cpus = sorted({c for f in families for c in f.cpus})
            line = (f"{_plural(len(families), 'family', 'families')} on {', '.join(cpus[:4])}"
                    + (" ..." if len(cpus) > 4 else "")
                    + (f"; aims: {'; '.join(aims[:4])}" + (" ..." if len(aims) > 4 else "")
                       if aims else "")
                    + "; not localized yet (s2diff shrink, or run --shrink)")
        files = tuple(dict.fromkeys((d.case_file, str(d.base_dir or ""))
                                    for d in divs if d.case_file))
        out.append(RootCause(
            kind=a.kind, key=a.key, title=title, verdict=line, detail=tuple(detail),
            new=sum(d.count for d in probes if d.is_new),
            known=sum(d.count for d in probes if not d.is_new),
            writes_new=sum(d.count for d in writes if d.is_new),
            writes_known=sum(d.count for d in writes if not d.is_new),
            known_ids=tuple(sorted({d.known for d in divs if d.known})),
            families=tuple(families), entries=tuple(dict.fromkeys(d.entry for d in divs)),
            cases=tuple(case_keys), cpus=tuple(sorted({d.cpu for d in divs})),
            qemus=tuple(sorted({qemu_name(run, d) for d in divs})),
            case_files=files, shrink=shrink))
    out.sort(key=lambda r: (r.kind is not CauseKind.CRASH, not r.is_new, -r.crashes,
                            -(r.new + r.known), -(r.writes_new + r.writes_known), r.title))
    return out


def crash_families(crashes: Iterable[CrashView]) -> list[list[CrashView]]:
    """Crash findings grouped by signature, in run order: one QEMU bug
    seen in qemu-system-aarch64 and qemu-system-arm (one source line) is
    one family, as the run's CRASH lines count it."""
    groups: dict[str, list[CrashView]] = {}
    for c in crashes:
        groups.setdefault(c.signature, []).append(c)
    return list(groups.values())


def _crash_cause(run: RunData, family: list[CrashView]) -> RootCause:
    first = next((c for c in family if c.reproduced), family[0])
    how = "hang" if first.hang else "crash"
    where = ", ".join(dict.fromkeys(f"{c.arch} {c.cpu}" for c in family))
    line = (f"QEMU {how}es on {_plural(len(family), 'probe')} ({where}"
            + (f", e.g. {first.key} probe {first.probe}" if first.key else "") + ")"
            + ("" if first.reproduced else "; not reproduced by one probe alone"))
    files = tuple((c.case_file, c.base_dir) for c in family if c.case_file)
    return RootCause(
        kind=CauseKind.CRASH, key=("crash", first.arch, first.signature),
        title=f"QEMU {how}: {first.signature}", verdict=line,
        detail=tuple(first.console_tail[-3:]), new=0, known=0, writes_new=0, writes_known=0,
        known_ids=tuple(sorted({c.known for c in family if c.known})), families=(),
        entries=tuple(dict.fromkeys(c.entry for c in family if c.entry)),
        cases=tuple(dict.fromkeys(c.key for c in family if c.key)),
        cpus=tuple(sorted({c.cpu for c in family})),
        qemus=tuple(sorted({c.qemu for c in family})), case_files=files, crash=first,
        crashes=len(family), crashes_new=sum(1 for c in family if c.known is None))
