"""baseline.toml: every entry is backed by case files that reproduce it on
the QEMU versions it names and not on the others, and every entry is as
narrow as its bug: it claims the divergences of its own family and no
other entry's.

Three sources of divergences:

* the entries' case files, judged offline from the observation each one
  records (the QEMU they were recorded on), and re-run on the QEMU at
  hand (tests marked ``qemu``: it must show the entry when its version is
  in the entry's range, and must not diverge that way when it is outside:
  the bug is then "fixed in" or "not yet in" that version);
* tests/baseline/sampled-divergences.jsonl: up to two records of every
  divergence family of the default nightly matrix run with --no-baseline
  on QEMU 7.2.22, 10.0.2, 10.0.13 and 11.1.3 (scripts/sample-divergences,
  from the issue-10 triage runs and a --cases 1 --fanout 64 run on 7.2;
  the stage-1 and cpu-model families added from `run --probes stage1
  --cases 3 --no-baseline` on 7.2.22 and 11.1.3 and a neoverse-n2 run on
  11.1.3, then the families new in `run --probes stage1 --cases 10/15
  --fanout 16` on 7.2.22, 10.0.13 and 11.1.3): each must be claimed by
  exactly one entry, of its family.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harness.baseline import BaselineEntry, load_baseline, parse_baseline
from harness.casefile import load_any_case, load_case_data
from harness.debug.isolate import parse_expect, repro_crash
from harness.errors import ToolMissing
from harness.judge.case import judge_any_case
from harness.plan import job_image
from harness.qemu.boot import FailureKind
from harness.qemu.builds import version_number
from harness.qemu.job import RECORD_WORDS, ImageResult, ObsKind
from harness.qemu.launcher import find_qemu, qemu_cpus, qemu_version
from harness.qemu.signature import crash_signature
from harness.records import CrashRecord, Divergence, DivergenceRecord, parse_record
from harness.resume import run_resumable
from harness.vocabulary import outcome_label

ROOT = Path(__file__).resolve().parent.parent
BASELINE = load_baseline(ROOT / "baseline.toml")
SAMPLED = ROOT / "tests" / "baseline" / "sampled-divergences.jsonl"
ENTRY_CASES = [(e, c) for e in BASELINE.entries for c in e.cases]


def entry_case_id(pair) -> str:
    entry, case = pair if isinstance(pair, tuple) else (None, pair)
    return f"{entry.id}:{Path(case).stem}" if entry else str(pair)


def recorded_divergences(path: Path) -> tuple[list[Divergence], str]:
    """The divergences of a case file judged offline from the observation
    it records, and the QEMU version it was recorded on.  An AT case keeps
    five words a probe (raw_observation), an access or stage-1-on case all
    eight (vocabulary.raw_record)."""
    data = load_case_data(path)
    case = load_any_case(path)
    observed = data["observed"]
    rows = np.zeros((len(observed["probes"]), RECORD_WORDS), dtype=np.uint64)
    for i, raw in enumerate(observed["probes"]):
        if "kind_code" in raw:
            rows[i] = [int(raw["kind_code"])] + [int(raw[k], 16) for k in (
                "data0", "esr", "far", "hpfar", "vector", "elr", "data1")]
        else:
            rows[i, :5] = [ObsKind[raw["kind"]].value, int(raw["par"], 16), int(raw["esr"], 16),
                           int(raw["far"], 16), int(raw["hpfar"], 16)]
    after = tuple((int(r["pa"], 16), base64.b64decode(r["data"]))
                  for r in observed["regions_after"])
    _, divergences = judge_any_case(case, ImageResult(rows, after, True))
    return divergences, data["qemu"]["version"]


_LEVEL = re.compile(r"L-?\d+")


def family(d: Divergence) -> tuple:
    """A divergence's family as an entry is about it: architecture, kind,
    the permitted and observed labels with levels masked (an entry's
    pattern spans the levels of one rule), for memory the bits written."""
    key = d.family
    return (key.arch, key.kind, tuple(sorted({_LEVEL.sub("L*", e) for e in key.expected})),
            _LEVEL.sub("L*", key.observed))


def claimants(d: Divergence, version: str | None) -> list[BaselineEntry]:
    """The entries that match ``d``: on QEMU ``version``, or (None) on any."""
    return [e for e in BASELINE.entries
            if (e.unversioned().matches(d, "") if version is None else e.matches(d, version))]


# QEMU versions at which entries' claims must not overlap: the builds
# measured and a version inside every range boundary the file uses.  Two
# entries may share a pattern when their ranges are disjoint -- e.g. on 7.2
# a 52-bit IPA over a 48-bit PS meets qemu-7.2-ipa-larger-than-ps before the
# VTTBR base is read, from 8.0 it meets qemu-vttbr-ds-baddr-51-48-ignored:
# the same divergence, a different bug per version.
GRID = ("6.2.0", "7.2.22", "8.0.0", "8.2.0", "9.2.0", "10.0.2", "10.0.13", "10.1.0",
        "10.2.0", "11.0.0", "11.1.3", "99.0.0")


def claims_on_grid(d: Divergence) -> list[BaselineEntry]:
    """Every entry that claims ``d`` on some QEMU of GRID; at most one does
    on each of them."""
    seen: dict[str, BaselineEntry] = {}
    for v in GRID:
        claims = claimants(d, f"QEMU emulator version {v}")
        assert len(claims) <= 1, (v, d.summary(), [e.id for e in claims])
        seen.update((e.id, e) for e in claims)
    return list(seen.values())


CASELESS = [e for e in BASELINE.entries if not e.cases]


def own_families() -> dict[str, set[tuple]]:
    """Per entry, the families of the divergences it matches in its own
    case files (as recorded); for a cpu-model entry without a case file
    the one family its literal labels name (test_caseless_entries_name_
    their model_and_labels_literally)."""
    out: dict[str, set[tuple]] = collections.defaultdict(set)
    for entry, path in ENTRY_CASES:
        if entry.kind == "crash":
            continue
        divergences, _ = recorded_divergences(ROOT / path)
        out[entry.id] |= {family(d) for d in divergences if entry.unversioned().matches(d, "")}
    for entry in CASELESS:
        out[entry.id].add((entry.arch, entry.kind, (_LEVEL.sub("L*", entry.expected.pattern),),
                           _LEVEL.sub("L*", entry.observed.pattern)))
    return out


OWN = own_families()


def sampled() -> list[DivergenceRecord]:
    return [r for r in (parse_record(json.loads(line))
                        for line in SAMPLED.read_text().splitlines()) if
            isinstance(r, DivergenceRecord)]


# ---------------------------------------------------------------------------
# The file and its case files, offline
# ---------------------------------------------------------------------------

def test_every_entry_has_its_case_files():
    for entry, path in ENTRY_CASES:
        assert (ROOT / path).is_file(), f"{entry.id}: {path} is missing"
        load_any_case(ROOT / path)


@pytest.mark.parametrize("pair", [p for p in ENTRY_CASES if p[0].kind != "crash"],
                         ids=entry_case_id)
def test_each_case_file_shows_its_entry_as_recorded(pair):
    """The observation a case file records diverges the way its entry
    says, on the QEMU version it was recorded on, which is in the entry's
    range."""
    entry, path = pair
    divergences, version = recorded_divergences(ROOT / path)
    assert entry.applies_to(version), f"{path} was recorded on {version}"
    assert [d for d in divergences if entry.matches(d, version)], \
        f"{entry.id}: {path} as recorded does not diverge the entry's way"


@pytest.mark.parametrize("pair", [p for p in ENTRY_CASES if p[0].kind == "crash"],
                         ids=entry_case_id)
def test_each_crash_case_file_shows_its_entry_as_recorded(pair):
    entry, path = pair
    data = load_case_data(ROOT / path)
    expect = data["expect"]
    signature = expect.get("signature") or crash_signature(expect["console"], expect["signal"],
                                                          expect["returncode"])
    case = load_any_case(ROOT / path)
    rec = crash_record(entry, case, signature, data["qemu"]["version"])
    assert entry.matches_crash(rec), (entry.id, signature, rec.expected)
    assert [e.id for e in BASELINE.entries if e.unversioned().matches_crash(rec)] == [entry.id]


def crash_record(entry: BaselineEntry, case, signature: str, version: str) -> CrashRecord:
    """The crash record a run writes for a crash case's (single) probe."""
    probe = case.probes[0]
    labels = tuple(sorted({outcome_label(o.result) for o in case.permitted()[0].outcomes}))
    return CrashRecord(qemu=version_number(version), qemu_version=version, batch=0,
                       arch=case.cpu.arch.value, cpu=case.cpu.name, key=case.key, entry=case.key,
                       group="", probe=0, ipa=f"{probe.ipa:#x}", at=probe.at.name, aim=probe.aim,
                       expected=labels, kind=FailureKind.CRASH,
                       signature=signature, signal=6, returncode=None, console="",
                       granule=case.config.granule.label if case.config.granule else None,
                       config=case.config.describe())


@pytest.mark.parametrize("pair", [p for p in ENTRY_CASES if p[0].kind != "crash"],
                         ids=entry_case_id)
def test_no_entry_claims_another_entrys_divergences(pair):
    """Every entry's matcher against the divergences of every case file, on
    each QEMU version of GRID: at most one entry claims each there, and it
    is one of the claiming entry's own families."""
    entry, path = pair
    divergences, _ = recorded_divergences(ROOT / path)
    assert divergences
    for d in divergences:
        for e in claims_on_grid(d):
            assert family(d) in OWN[e.id], (e.id, d.summary(), family(d))


def test_every_sampled_divergence_has_exactly_one_entry_of_its_family():
    """The nightly's divergences on 7.2.22, 10.0.2, 10.0.13 and 11.1.3
    (sampled per family): each is claimed on its QEMU version by exactly
    one entry, whose own case files show that family; and no entry's
    pattern claims a divergence of another family on any QEMU of GRID."""
    records = sampled()
    versions = {version_number(r.qemu_version) for r in records}
    assert {"7.2.22", "10.0.2", "10.0.13", "11.1.3"} <= versions
    unclaimed = []
    for r in records:
        claims = claimants(r, r.qemu_version)
        if not claims:
            unclaimed.append(f"{version_number(r.qemu_version)}: {r.summary()}")
            continue
        assert len(claims) == 1, (r.summary(), [e.id for e in claims])
        assert family(r) in OWN[claims[0].id], (claims[0].id, r.summary())
        for e in claims_any(r):
            assert family(r) in OWN[e.id], (e.id, r.summary())
    assert not unclaimed, "divergences no entry knows:\n" + "\n".join(unclaimed[:20])


def claims_any(d: Divergence) -> list[BaselineEntry]:
    return claims_on_grid(d)


def test_the_matching_can_fail():
    """A sampled divergence of each entry's family, changed in one field
    the entry is about, is no longer claimed."""
    records = sampled()
    tried = 0
    for entry in BASELINE.entries:
        mine = [r for r in records if entry.matches(r, r.qemu_version)]
        if not mine:
            continue
        r = mine[0]
        tried += 1
        changes = [dict(observed="ok" if r.observed != "ok" else "stage-1 address-size L0")]
        if entry.arch:      # an entry of both architectures is not about arch
            changes.append(dict(arch="arm" if r.arch == "aarch64" else "aarch64"))
        if entry.permitted:
            changes.append(dict(permitted=tuple(dataclasses.replace(p, result="")
                                                for p in r.permitted)))
        for change in changes:
            assert not entry.matches(dataclasses.replace(r, **change), r.qemu_version), \
                (entry.id, change)
        outside = next((v for v in ("1.0.0", "7.2.22", "10.0.2", "10.0.13", "11.1.3", "99.0.0")
                        if not entry.applies_to(v)), None)
        if outside is not None:     # None: an entry of every version
            assert not entry.matches(r, f"QEMU emulator version {outside}")
    assert tried >= 6


# ---------------------------------------------------------------------------
# The case files re-run on the QEMU at hand
# ---------------------------------------------------------------------------

def qemu_at_hand(arch) -> tuple[str, str]:
    """(path, version line) of the QEMU the tests run for ``arch``
    ($S2DIFF_QEMU_AARCH64/ARM, else PATH)."""
    path = find_qemu(arch)
    return str(path), qemu_version(path)


@pytest.mark.qemu
@pytest.mark.parametrize("pair", ENTRY_CASES, ids=entry_case_id)
def test_case_reproduces_its_entry_on_the_versions_it_names(pair):
    """On a QEMU in the entry's range the case still diverges (or crashes)
    the entry's way; on one outside it, it does not: then the entry says
    the bug is fixed in (or not yet in) that version, and the case agrees."""
    entry, path = pair
    case = load_any_case(ROOT / path)
    try:
        binary, version = qemu_at_hand(case.cpu.arch)
    except ToolMissing as exc:
        pytest.skip(str(exc))
    if case.cpu.name not in qemu_cpus(binary):
        pytest.skip(f"QEMU {version_number(version)} has no -cpu {case.cpu.name}")
    inside = entry.applies_to(version)
    if entry.kind == "crash":
        expected = parse_expect(load_case_data(ROOT / path))
        assert expected is not None
        rep = repro_crash(case, expected)
        signature = crash_signature(rep.batch.console, rep.batch.signal, rep.batch.returncode)
        crashed_so = rep.observed is not None and bool(entry.signature.search(signature))
        assert crashed_so == inside, (
            f"{entry.id} on QEMU {version_number(version)} ({entry.qemu.describe()}): "
            f"{'no longer crashes so' if inside else 'crashes so outside its range'}; "
            f"observed: {rep.batch.diagnostic.splitlines()[:1]}")
        return
    # With crash-resume: on a QEMU that aborts on some probe of the case
    # (10.0.2: qemu-9.2-ats-s2-permission-fault-abort), the others are judged.
    run = run_resumable(case.cpu.arch, case.cpu.name, [job_image(case)], capacity=10**6,
                        qemu=binary)
    image = run.result.images[0]
    assert image.completed, run.result.diagnostic
    _, divergences = judge_any_case(case, image)
    matched = [d for d in divergences if entry.unversioned().matches(d, version)]
    if inside:
        assert matched, f"{entry.id} no longer reproduces with {path} on QEMU {version}"
    else:
        # Outside its range the case may still diverge this way when another
        # entry, in range there, explains it (an earlier check of that
        # version answers first: qemu-7.2-ipa-larger-than-ps on 7.2 for the
        # 52-bit cases of qemu-vttbr-ds-baddr-51-48-ignored).
        unexplained = [d for d in matched if not any(
            e.id != entry.id for e in claimants(d, version))]
        assert not unexplained, (f"{entry.id} ({entry.qemu.describe()}) shows on QEMU "
                                 f"{version_number(version)}: widen its range? "
                                 + "; ".join(d.summary() for d in unexplained[:3]))


def test_caseless_entries_name_their_model_and_labels_literally():
    """A cpu-model entry without a case file is reproduced by its models
    alone, so it names them, and its labels are the literal values (its one
    family)."""
    for entry in CASELESS:
        assert entry.kind == "cpu-model" and entry.arch and entry.cpus, entry.id
        for pattern in (entry.expected, entry.observed):
            assert pattern.fullmatch(pattern.pattern), (entry.id, pattern.pattern)


@pytest.mark.qemu
@pytest.mark.parametrize("entry", CASELESS, ids=lambda e: e.id)
def test_caseless_cpu_model_entry_reproduces_on_the_versions_it_names(entry):
    """The ID registers of each model the entry names, read from the QEMU
    at hand: on a version in its range the run's cpu-model records show
    the entry, outside it none does."""
    from harness.judge.models import model_records
    from harness.qemu.models import machine_model
    from reference.arch import Arch
    arch = Arch(entry.arch)
    try:
        binary, version = qemu_at_hand(arch)
    except ToolMissing as exc:
        pytest.skip(str(exc))
    present = [c for c in entry.cpus if c in qemu_cpus(binary)]
    if not present:
        pytest.skip(f"QEMU {version_number(version)} has none of {entry.cpus}")
    inside = entry.applies_to(version)
    for cpu in present:
        records = model_records([machine_model(arch, cpu, binary)])
        shown = [r for r in records if entry.unversioned().matches(r, version)]
        assert bool(shown) == inside, (
            f"{entry.id} ({entry.qemu.describe()}) on QEMU {version_number(version)} -cpu {cpu}: "
            + ("no longer shows" if inside else "shows outside its range: "
               + "; ".join(r.summary() for r in shown)))


def test_stale_needs_a_case_of_the_entrys_kind():
    """An entry is judged stale only where a case of its case file's kind
    ran on its configuration: tests/baseline/s1-device-nc-sh.json is a
    stage-1 case (key .../stage1#0) of cortex-a72, VTCR 0x80047558, whose
    entry is for QEMU < 8.2; an AT case of the same VTCR does not run its
    probes.  A case-less cpu-model entry is judged where its model ran."""
    from harness.baseline import Baseline, stale_entries
    entry = next(e for e in BASELINE.entries if e.id == "qemu-7.2-at-s1-device-nc-sh")
    model = next(e for e in BASELINE.entries if e.id == "qemu-7.2-a15-a7-id-dfr0-mmaptrc")
    one = Baseline(ROOT / "baseline.toml", (entry, model))
    where = ("aarch64", "cortex-a72", "0x80047558")
    v72 = "QEMU emulator version 7.2.22"
    assert stale_entries(one, set(), {where + (v72, "stage1")}) == [entry]
    assert stale_entries(one, set(), {where + (v72, "at")}) == []
    assert stale_entries(one, set(), {where + ("QEMU emulator version 11.1.3", "stage1")}) == []
    assert stale_entries(one, {entry.id}, {where + (v72, "stage1")}) == []
    assert stale_entries(one, set(), {("arm", "cortex-a7", "0x80003558", v72, "at")}) == [model]
    assert stale_entries(one, set(), {("arm", "max", "0x80003558", v72, "at")}) == []


def test_stale_needs_the_cpu_model_the_case_was_recorded_for():
    """tests/baseline/s1-max-fwb-xs.json is a -cpu max case recorded on
    11.1.3, whose max has FEAT_XS (ID_AA64ISAR1_EL1.XS, bits [59:56], = 1).
    QEMU 7.2's max has not: the Normal Non-cacheable result's PAR.ATTR is
    then 0x44 by EncodePARAttrs (XS = 1 without FEAT_XS), QEMU agrees, and
    the entry matching nothing there is not news (the 7.2 nightly printed
    it as STALE).  A run of the case's configuration counts only where the
    run's model of the CPU is the one the case records."""
    from harness.baseline import Baseline, stale_entries
    from reference.arch import Arch
    from reference.casefmt import cpu_model_from_data
    from reference.cpus import CpuModel
    entry = next(e for e in BASELINE.entries if e.id == "qemu-at-par-attr-xs-not-encoded")
    one = Baseline(ROOT / "baseline.toml", (entry,))
    data = json.loads((ROOT / "tests/baseline/s1-max-fwb-xs.json").read_text())
    recorded = cpu_model_from_data(data["cpu_model"], Arch.AARCH64, "max")
    regs = dict(recorded.id_regs)
    assert regs["ID_AA64ISAR1_EL1"] >> 56 & 0xF == 1
    regs["ID_AA64ISAR1_EL1"] &= ~(0xF << 56)
    without_xs = CpuModel.from_id_registers(Arch.AARCH64, "max", regs,
                                            arch_version=recorded.arch_version)
    ran = {("aarch64", "max", data["config"]["vtcr"], "QEMU emulator version 7.2.22", "stage1")}
    key = ("7.2.22", "aarch64", "max")
    assert stale_entries(one, set(), ran, models={key: without_xs}) == []
    assert stale_entries(one, set(), ran, models={key: recorded}) == [entry]
    assert stale_entries(one, set(), ran) == [entry]       # the model not known: as before


def attribute_entry(**fields: str) -> BaselineEntry:
    text = ('version = 1\n[[divergence]]\nid = "x"\ntitle = "t"\nverdict = "qemu-bug"\n'
            'evidence = "e"\ncase = "c.json"\n'
            + "".join(f"{k} = '{v}'\n" for k, v in fields.items()))
    return parse_baseline(tomllib.loads(text)).entries[0]


def test_par_and_permitted_patterns_match_and_can_fail():
    """``par`` reads the observed PAR decoded (SH, ATTR), ``permitted`` the
    permitted results: tests/baseline/s1-reserved-sh.json (11.1.3,
    cortex-a72) has probes observed 'ok; differs in SH' where the
    descriptor's reserved SH = 0b01 comes back in PAR.SH (PAR bits [8:7] =
    0b01) over Normal Write-Back memory (the reference permits NSH, ISH or
    OSH: 0b00, 0b11, 0b10)."""
    divergences, version = recorded_divergences(ROOT / "tests/baseline/s1-reserved-sh.json")
    d = next(d for d in divergences if d.observed == "ok; differs in SH"
             and (int(d.raw_map["par"], 16) >> 7) & 3 == 0b01)
    assert attribute_entry(par=" SH=01 ", permitted="; Normal inner WB").matches(d, version)
    # Other SH values in the PAR, other memory types: no match.
    assert not attribute_entry(par=" SH=(00|10|11) ").matches(d, version)
    assert not attribute_entry(permitted="; Device-").matches(d, version)
    moved = dataclasses.replace(d, raw=tuple((k, hex(int(v, 16) & ~0x180 | 0b11 << 7))
                                             if k == "par" else (k, v) for k, v in d.raw))
    assert not attribute_entry(par=" SH=01 ").matches(moved, version)
    # No PAR (an exception observed): nothing for a par pattern to read.
    trapped = dataclasses.replace(d, raw=(("kind", "EXCEPTION"), ("par", "0x0")))
    assert attribute_entry(par="^PAR ").matches(d, version)
    assert not attribute_entry(par="^PAR ").matches(trapped, version)


# ---------------------------------------------------------------------------
# Version ranges and the file's validation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec, inside, outside", [
    ("7.2", ["7.2.0", "7.2.22"], ["7.20.1", "7.1.9", "8.0"]),
    (">=8.0,<8.2", ["8.0", "8.0.0", "8.1.5"], ["7.2.22", "8.2.0", "10.0.2"]),
    (["7.2", ">=9.2"], ["7.2.1", "9.2.0", "11.1.3"], ["8.1.0", "9.1.9"]),
    ("10.0.0-10.0.2", ["10.0.0", "10.0.1", "10.0.2"], ["9.2.0", "10.0.3", "10.0.13"]),
    ("8.0-9", ["8.0.0", "9.2.1"], ["7.2.22", "10.0.0"]),
    (">=9.2,<10.0.13", ["9.2", "10.0.2", "10.0.12"], ["9.1.3", "10.0.13", "11.1.3"]),
    ("==10.0.2", ["10.0.2"], ["10.0.20", "10.0"]),
])
def test_version_ranges(spec, inside, outside):
    from harness.baseline import VersionRange
    r = VersionRange.parse(spec, "t")
    for v in inside:
        assert r.contains(f"QEMU emulator version {v} (Debian)"), (spec, v)
    for v in outside:
        assert not r.contains(f"QEMU emulator version {v} (Debian)"), (spec, v)


@pytest.mark.parametrize("extra, message", [
    ('qemu = "~8.0"', "not a version clause"),
    ('qemu = [1]', "version range"),
    ('qemu = "8.0"\nqemu_versions = ["8.0"]', "not both"),
    ('kind = "crash"', "signature: required"),
    ('signature = "x"', "only crash entries"),
    ('case = []', "case: required"),
    ('kind = "probe"\nnocase = 1', "case: required"),
    ('kind = "cpu-model"\nnocase = 1', "names its arch and cpus"),
])
def test_bad_entries_are_one_line_errors(tmp_path, extra, message):
    from harness.errors import UsageError
    text = ('version = 1\n[[divergence]]\nid = "x"\ntitle = "t"\nverdict = "qemu-bug"\n'
            'evidence = "e"\n')
    text += extra.replace("nocase = 1", "") + "\n" + (
        "" if extra.startswith("case") or "nocase" in extra else 'case = "c.json"\n')
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(UsageError, match=message):
        load_baseline(tmp_path / "b.toml")
