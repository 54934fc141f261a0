"""Rule coverage of a run, from its case records alone (docs/coverage.md).

Each case record carries ``rules``: for every architecture rule its
probes reached (reference.rules, reference.coverage), how many probes.
This module adds them up per rule and per *cell* -- the (rule,
configuration class) pairs, a class being (arch, granule, start level,
DS, CPU model) and, for the rules decided before any descriptor is read,
(arch, CPU model) -- and lists the rules and the cells never reached.  It
reads nothing but the records: merged shards, offline, long after the run.

A cell is *applicable* when its rule can apply to the class (the rule's
conditions, reference.rules) and the run has a case of that class (a
valid case for a walk rule: an invalid configuration's class only tests
the configuration rules).  Some rules no case of the default matrix can
reach -- stage-1 and access probe rules, features no CPU model of the
matrix has: ``UNREACHABLE`` says why for each; any other rule left
unreached is a gap of the generator.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import functools
from collections.abc import Iterable, Mapping, Sequence

from reference import rules as R
from reference.arch import Arch
from reference.config import S2Config
from reference.coverage import class_facts, config_class
from reference.cpus import CPUS, CpuModel

from .records import CaseRecord

# The probe kinds whose rules this table counts (stage-2 AT with stage 1
# off; the access and stage-1 cases of the nightly do not record rules yet).
MATRIX_PROBES = frozenset({R.Probe.S2_AT})

_S2PIE = ("no named CPU model implements FEAT_S2PIE; only a QEMU whose max has it (10.1 and "
          "later: ID_AA64MMFR3_EL1.S2PIE, read by harness.qemu.models) runs the s2pie entries "
          "that reach these rules")

# Rules of the stage-2 AT probes that no case of the default nightly
# matrix can reach, and why.  Every other rule of those probes must be
# reached (tests/test_coverage.py).
UNREACHABLE: Mapping[str, str] = {
    **{r.key: _S2PIE for r in R.rule_ids() if r.key.startswith("a64.s2pie.")},
}


def unreachable_reason(rule: R.RuleId) -> str | None:
    """Why ``rule`` cannot be reached by the default matrix, or None."""
    if not rule.probes & MATRIX_PROBES:
        kinds = " or ".join(sorted(p.value for p in rule.probes))
        return f"needs {kinds} probes, whose cases record no rules yet"
    return UNREACHABLE.get(rule.key)


@functools.lru_cache(maxsize=4096)
def _class_of(arch: str, cpu: str, vtcr: str) -> tuple[R.ConfigClass, CpuModel] | None:
    """The class of a case record, None for a CPU model this s2diff does
    not know (a results file of another version)."""
    model = CPUS.get((Arch(arch), cpu))
    if model is None:
        return None
    config = S2Config.from_vtcr(Arch(arch), int(vtcr, 16))
    return config_class(model, config), model


class RuleStatus(enum.Enum):
    """What a run did with a rule."""

    REACHED = "reached"
    GAP = "GAP"                             # applicable to a class of the run, never reached
    NOT_APPLICABLE = "not applicable"       # no class of the run can meet it
    UNREACHABLE = "unreachable"             # by the matrix's probes (UNREACHABLE, probe kinds)


@dataclasses.dataclass(frozen=True)
class RuleRow:
    """One rule over a run: ``probes`` that reached it, the cells it
    reached and the applicable ones it did not (labels), and the reason it
    is unreachable by the matrix, if it is."""

    rule: R.RuleId
    probes: int
    reached_cells: tuple[str, ...]
    unreached_cells: tuple[str, ...]
    unreachable: str | None

    @property
    def reached(self) -> bool:
        return self.probes > 0

    @property
    def status(self) -> RuleStatus:
        if self.reached:
            return RuleStatus.REACHED
        if self.unreachable is not None:
            return RuleStatus.UNREACHABLE
        return RuleStatus.GAP if self.unreached_cells else RuleStatus.NOT_APPLICABLE


@dataclasses.dataclass(frozen=True)
class ClassRow:
    """One configuration class (or CPU cell): the cells of its applicable
    rules that the run reached and did not."""

    cell: str
    cases: int
    reached: int
    unreached: tuple[str, ...]     # rule keys


@dataclasses.dataclass(frozen=True)
class RuleCoverage:
    """The rule coverage of a run (see the module docstring).  ``cases``
    counts the case records, ``with_rules`` those that carry ``rules``
    (older results files have none); ``unknown`` the rule keys the
    records name that this s2diff does not know."""

    rules: tuple[RuleRow, ...]
    classes: tuple[ClassRow, ...]
    cases: int
    with_rules: int
    unknown: tuple[str, ...]

    def matrix_rules(self) -> list[RuleRow]:
        """The rules the matrix's probes can reach at all."""
        return [r for r in self.rules if r.rule.probes & MATRIX_PROBES]

    def gaps(self) -> list[RuleRow]:
        """Rules the matrix can reach, applicable to a class of the run,
        that the run did not reach."""
        return [r for r in self.matrix_rules() if r.status is RuleStatus.GAP]

    def unreached_cells(self) -> list[tuple[str, str]]:
        """(rule key, cell) of every applicable cell never reached."""
        return [(r.rule.key, c) for r in self.matrix_rules() if r.unreachable is None
                for c in r.unreached_cells]


def rule_coverage(cases: Iterable[CaseRecord]) -> RuleCoverage:
    """Rule coverage from case records (of one run or merged shards)."""
    probes: collections.Counter[str] = collections.Counter()
    reached: dict[str, set[str]] = collections.defaultdict(set)
    classes: dict[R.ConfigClass, CpuModel] = {}
    valid_classes: set[R.ConfigClass] = set()
    cases_per_cell: collections.Counter[str] = collections.Counter()
    unknown: set[str] = set()
    total = with_rules = 0
    known = {r.key: r for r in R.rule_ids()}
    for case in cases:
        total += 1
        found = _class_of(case.arch, case.cpu, case.vtcr)
        if found is not None:
            cls, model = found
            classes[cls] = model
            if case.valid:
                valid_classes.add(cls)
            for kind in R.Cell:
                cases_per_cell[cls.cell(kind)] += 1
        if case.rules is None:
            continue
        with_rules += 1
        for key, n in case.rules:
            rule = known.get(key)
            if rule is None:
                unknown.add(key)
                continue
            probes[key] += n
            if found is not None and n:
                reached[key].add(found[0].cell(rule.cell))
    facts = {cls: class_facts(cls, model) for cls, model in classes.items()}
    rows = []
    by_cell: dict[str, tuple[set[str], set[str]]] = collections.defaultdict(lambda: (set(), set()))
    for rule in R.rule_ids():
        pool = valid_classes if rule.cell is R.Cell.CLASS else classes.keys()
        applicable = {cls.cell(rule.cell) for cls in pool if rule.applies(facts[cls])}
        got = reached.get(rule.key, set())
        for cell in applicable | got:
            by_cell[cell][0 if cell in got else 1].add(rule.key)
        rows.append(RuleRow(rule, probes[rule.key], tuple(sorted(got)),
                            tuple(sorted(applicable - got)), unreachable_reason(rule)))
    class_rows = tuple(ClassRow(cell, cases_per_cell[cell], len(hit),
                                tuple(sorted(k for k in miss
                                             if unreachable_reason(known[k]) is None)))
                       for cell, (hit, miss) in sorted(by_cell.items()))
    return RuleCoverage(tuple(rows), class_rows, total, with_rules, tuple(sorted(unknown)))


# ---------------------------------------------------------------------------
# Tables for the reports (the text of `s2diff coverage`, the HTML section)
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Table:
    """A table for a report: a title, one line of summary, headers, rows."""

    title: str
    summary: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def status_counts(cov: RuleCoverage) -> dict[RuleStatus, int]:
    """How many rules of the matrix's probes have each status."""
    counts = collections.Counter(r.status for r in cov.matrix_rules())
    return {s: counts[s] for s in RuleStatus}


def summary_line(cov: RuleCoverage) -> str:
    matrix = cov.matrix_rules()
    n = status_counts(cov)
    cells = [(len(r.reached_cells), len(r.unreached_cells)) for r in matrix
             if r.unreachable is None]
    return (f"{n[RuleStatus.REACHED]} of {len(matrix)} rules of the stage-2 AT probes reached, "
            f"{n[RuleStatus.GAP]} gaps, {n[RuleStatus.NOT_APPLICABLE]} not applicable to the "
            f"run's configurations, {n[RuleStatus.UNREACHABLE]} unreachable by the matrix; "
            f"{sum(a for a, _ in cells)} of {sum(a + b for a, b in cells)} (rule x class) cells "
            f"reached; {cov.with_rules} of {cov.cases} case records carry rules")


def rule_table(cov: RuleCoverage, everything: bool = False) -> Table:
    """The gaps: rules the run left unreached although a class of it could
    meet them; with ``everything`` also those no class of the run can meet
    and those reached.  The rules unreachable by the matrix are one row per
    reason."""
    order = [RuleStatus.GAP] + (
        [RuleStatus.NOT_APPLICABLE, RuleStatus.REACHED] if everything else [])
    rows = []
    for status in order:
        for r in cov.matrix_rules():
            if r.status is status:
                rows.append((r.rule.key, status.value, f"{r.probes}",
                             f"{len(r.reached_cells)}/{len(r.reached_cells) + len(r.unreached_cells)}",
                             r.rule.function, r.rule.meaning))
    reasons: dict[str, list[str]] = collections.defaultdict(list)
    for r in cov.matrix_rules():
        if r.status is RuleStatus.UNREACHABLE and r.unreachable is not None:
            reasons[r.unreachable].append(r.rule.key)
    for reason, keys in reasons.items():
        shown = keys[0] if len(keys) == 1 else f"{keys[0]} .. ({len(keys)} rules)"
        rows.append((shown, RuleStatus.UNREACHABLE.value, "0", "-", "", reason))
    return Table("Rule coverage", summary_line(cov),
                 ("rule", "status", "probes", "cells", "pseudocode", "meaning / why unreachable"),
                 tuple(rows))


def class_table(cov: RuleCoverage) -> Table:
    """Per configuration class: cases, rules reached, the applicable ones not."""
    rows = tuple((c.cell, f"{c.cases}", f"{c.reached}", f"{len(c.unreached)}",
                  " ".join(c.unreached)) for c in cov.classes)
    return Table("Rule coverage per configuration class",
                 "applicable rules reached and not, per class (arch, CPU, granule, start level, "
                 "DS) or per (arch, CPU) for the configuration rules",
                 ("class", "cases", "reached", "unreached", "unreached rules"), rows)


def html_tables(cases: Sequence[CaseRecord]) -> tuple[Table, ...]:
    """The tables of the HTML report's rule-coverage section; () when no
    record carries rules (results written before rule coverage)."""
    cov = rule_coverage(cases)
    if not cov.with_rules:
        return ()
    return (rule_table(cov), class_table(cov))
