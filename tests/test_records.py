"""The results records end to end without QEMU: judge_batch's output, from
observations built out of the reference's own permitted outcomes (so every
probe passes) with a few planted disagreements, written by the runner's
sink and read back by the report loader.

What is checked: each record survives writing and reading unchanged and
is written back byte for byte (``--resume`` rewrites files this way); the
keys come in the order version-1 writers have always used (docs/results.md
readers may rely on it, and test_faults reads batch lines by their
prefix); the planted disagreements, and only they, come back as
divergences of the right kind; the counts add up.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness.baseline import EMPTY, Baseline, BaselineEntry, apply_baseline
from harness.judge.case import judge_batch
from harness.matrix import build_matrix
from harness.plan import VIRT_EMPTY, Batch, CaseSpec, generate_batch, job_image
from harness.qemu.boot import BatchResult, BatchStatus, FailureKind
from harness.qemu.job import RECORD_WORDS, GuestStatus, ImageResult, ObsKind
from harness.records import (
    RECORDS,
    BatchRecord,
    CaseRecord,
    CaseStatus,
    CrashRecord,
    DivergenceRecord,
    EndReason,
    EndRecord,
    InvalidRecord,
    NotRun,
    QemuInfo,
    RecordSink,
    RunHeader,
    parse_record,
    record_line,
)
from harness.report.load import load_run
from harness.report.summary import summary_table
from harness.vocabulary import FANOUT_AIM, DivergenceKind
from harness.workers import aggregate_known, compact_known
from reference.arch import Arch
from reference.generate import Case, MemoryMap
from reference.par import Report, predict
from reference.walk import walk

# QEMU virt's RAM (1 GiB at 0x40000000) and an arena inside it, as the stub
# layout gives them (harness.plan.Machine); no stub is built here.
RAM = (0x40000000, 0x40000000)
ARENA = (0x48000000, 0x60000000)
FANOUT = 4
# An exception no walk reports: EC 0x3f is reserved (ESR_EL2.EC).
NOT_AN_OUTCOME_ESR = 0x3F << 26

# The key order of each record type, as version-1 writers write them.
# Fields added later (the QEMU label, ...) come after them.
BATCH_KEYS = ["type", "batch", "arch", "cpu", "status", "images", "images_done", "elapsed",
              "argv", "qemu_version", "diagnostic", "qemu"]
CASE_KEYS = ["type", "key", "entry", "group", "arch", "cpu", "vtcr", "vttbr", "valid", "kvm",
             "batch", "status", "probes", "passed", "diverged", "not_run", "qemu"]
BODY_KEYS = ["type", "kind", "probe", "ipa", "at", "aim", "arch", "cpu", "granule", "config",
             "vtcr", "vttbr", "expected", "permitted", "observed", "observed_text", "raw"]
CONTEXT_KEYS = ["key", "entry", "group", "batch", "qemu_version", "argv", "known"]


def row_for(case: Case, ipa: int, at, arch_version: int) -> np.ndarray:
    """The results row the stub would write for an emulator that does what
    the reference's first permitted outcome says."""
    outcome = walk(case.cpu, case.config, case.memory(), ipa, at).outcomes[0]
    pred = predict(case.cpu.arch, outcome, ipa, arch_version)
    row = np.zeros(RECORD_WORDS, dtype=np.uint64)
    if pred.report is Report.PAR:
        row[0], row[1] = ObsKind.PAR.value, pred.pattern.value
    else:
        row[0], row[2], row[3] = ObsKind.EXCEPTION.value, pred.pattern.value, pred.far or 0
    return row


def agreeing_image(case: Case) -> ImageResult:
    rows = [row_for(case, p.ipa, p.at, case.cpu.arch_version) for p in case.probes]
    rows += [row_for(case, int(ipa), type(case.probes[0].at)(int(at)), case.cpu.arch_version)
             for ipa, at in zip(case.fanout.ipa, case.fanout.at)]
    regions = tuple((r.pa, r.data) for r in case.image.regions)
    return ImageResult(np.array(rows, dtype=np.uint64), regions, True)


def with_row(image: ImageResult, row: int, esr: int) -> ImageResult:
    records = image.records.copy()
    records[row] = 0
    records[row, 0], records[row, 2] = ObsKind.EXCEPTION.value, esr
    return dataclasses.replace(image, records=records)


def with_af_written(case: Case, image: ImageResult) -> tuple[ImageResult, int]:
    """The table memory after the run with the Access flag (bit 10) set in
    the first valid descriptor it does not have it in: a write no permitted
    outcome makes when HA = 0 (the case is generated with HA = 0)."""
    regions = [bytearray(d) for _, d in image.regions_after]
    for (pa, _), data in zip(image.regions_after, regions):
        for off in range(0, len(data), 8):
            word = int.from_bytes(data[off:off + 8], "little")
            if word & 1 and not word & (1 << 10):
                data[off:off + 8] = (word | 1 << 10).to_bytes(8, "little")
                after = tuple((pa_, bytes(d)) for (pa_, _), d in zip(image.regions_after, regions))
                return dataclasses.replace(image, regions_after=after), pa + off
    raise AssertionError("no descriptor without AF in the image")


@pytest.fixture(scope="module")
def judged() -> tuple[Batch, list[Case], BatchResult, list]:
    entries = [e for e in build_matrix(arch=Arch.AARCH64, cpus=["cortex-a57"], ipa_sizes=[40])
               if e.valid and not e.config.ha][:3]
    assert len(entries) == 3
    batch = Batch(5, Arch.AARCH64, "cortex-a57", tuple(CaseSpec(e, 0) for e in entries))
    cases = generate_batch(batch, 11, ARENA, MemoryMap(ram=(RAM,), empty=VIRT_EMPTY), FANOUT)
    images = [agreeing_image(c) for c in cases]
    named = len(cases[1].probes)
    images[1] = with_row(images[1], 0, NOT_AN_OUTCOME_ESR)             # a named probe
    images[1] = with_row(images[1], named + 1, NOT_AN_OUTCOME_ESR)     # a fan-out probe
    images[2], _ = with_af_written(cases[2], images[2])                # a descriptor write
    result = BatchResult(
        status=BatchStatus.COMPLETED, arch=Arch.AARCH64, cpu="cortex-a57", images=tuple(images),
        images_done=len(images), probes_done=sum(len(job_image(c).probes) for c in cases),
        id_registers={}, guest_status=GuestStatus.COMPLETED, fatal=None,
        argv=("qemu-system-aarch64", "-M", "virt"), qemu_version="QEMU emulator version 7.2.22",
        console="", elapsed=0.123456, returncode=0, signal=None, diagnostic="")
    records = apply_baseline(EMPTY, judge_batch(batch, cases, result))
    return batch, cases, result, records


def test_the_reference_agreeing_with_itself_passes_and_the_planted_ones_diverge(judged):
    batch, cases, _, records = judged
    head, *rest = records
    assert isinstance(head, BatchRecord) and head.status is BatchStatus.COMPLETED
    assert head.elapsed == 0.1235 and head.images == 3
    case_recs = [r for r in rest if isinstance(r, CaseRecord)]
    divs = [r for r in rest if isinstance(r, DivergenceRecord)]
    assert [c.status for c in case_recs] == [CaseStatus.PASS, CaseStatus.DIVERGE,
                                             CaseStatus.DIVERGE]
    named = len(cases[1].probes)
    assert [(d.key, d.kind, d.probe, d.aim == FANOUT_AIM) for d in divs] == [
        (cases[1].key, DivergenceKind.PROBE, 0, False),
        (cases[1].key, DivergenceKind.PROBE, named + 1, True),
        (cases[2].key, DivergenceKind.MEMORY, divs[2].probe, False)]
    assert divs[0].observed == divs[1].observed == "exception EC 0x3f DFSC 0x00"
    assert divs[2].observed.startswith("descriptor written ")
    assert all(d.known is None and d.qemu_version.endswith("7.2.22") for d in divs)
    by_key = {c.key: c for c in cases}
    for c in case_recs:
        assert c.probes == len(by_key[c.key].probes) + len(by_key[c.key].fanout) > 0
        # Every probe passed or diverged; the descriptor write is no probe.
        assert c.passed + c.diverged - (c.key == cases[2].key) == c.probes
    assert [c.diverged for c in case_recs] == [0, 2, 1]


def test_every_record_reads_back_unchanged_and_writes_back_byte_for_byte(judged):
    *_, records = judged
    for rec in records:
        line = record_line(rec)
        back = parse_record(json.loads(line))
        assert back == rec
        assert record_line(back) == line


def test_keys_come_in_the_version_1_order(judged):
    *_, records = judged
    head, *rest = records
    assert list(head.to_json()) == BATCH_KEYS
    for rec in rest:
        keys = list(rec.to_json())
        if isinstance(rec, CaseRecord):
            # ``rules`` (rule coverage) comes after the version-1 keys.
            assert keys == CASE_KEYS + ["rules"]
        elif rec.aim == FANOUT_AIM:
            assert keys == BODY_KEYS + ["count", "ipas", "span"] + CONTEXT_KEYS + ["qemu"]
        else:
            assert keys == BODY_KEYS + CONTEXT_KEYS + ["qemu"]


def test_known_divergences_compact_and_merge_and_still_read_back(judged):
    """Known records drop permitted, raw and argv and merge per (case,
    entry, kind, expected, observed), the count written last for named
    probes and in place for fan-out ones."""
    *_, records = judged
    # Two entries, so that the fan-out record is not merged with the named
    # probe's (records merge per entry id).
    entry = dict(title="t", verdict="qemu-bug", evidence="e", cases=("c.json",))
    baseline = Baseline(None, (BaselineEntry(id="fan", aim=re.compile("fan-out"), **entry),
                               BaselineEntry(id="planted", **entry)))
    known = apply_baseline(baseline, records)
    twice = [r for r in known if isinstance(r, DivergenceRecord) and r.kind.value == "probe"]
    merged = aggregate_known([compact_known(r) for r in known + twice[:1]])
    divs = [r for r in merged if isinstance(r, DivergenceRecord)]
    named = next(d for d in divs if d.aim != FANOUT_AIM and d.kind is DivergenceKind.PROBE)
    fan = next(d for d in divs if d.aim == FANOUT_AIM)
    assert named.count == 2 and fan.count == 1
    assert list(named.to_json())[-2:] == ["count", "qemu"] and "permitted" not in named.to_json()
    assert "ipas" not in fan.to_json() and list(fan.to_json()).index("count") < \
        list(fan.to_json()).index("key")
    for rec in merged:
        assert record_line(parse_record(json.loads(record_line(rec)))) == record_line(rec)


def test_the_reader_loads_what_the_sink_wrote(judged, tmp_path: Path):
    batch, cases, _, records = judged
    header = RunHeader(seed=11, cases_per_entry=1, fanout=FANOUT, shard=None, entries=3,
                       batches=1, cases=3, argv=("s2diff", "run"), started="2026-11-30T00:00:00Z",
                       qemu=(("aarch64", "QEMU emulator version 7.2.22"),), baseline=None)
    sink = RecordSink(tmp_path / RECORDS)
    sink.write([header])
    sink.write([r for r in records if not isinstance(r, BatchRecord)] + records[:1])
    sink.close()
    run = load_run([tmp_path])
    assert run.warnings == ()
    assert run.batches == (records[0],)
    # The loader orders records by (batch, case key, probe).
    order = lambda r: (r.key, getattr(r, "probe", None) or -1)  # noqa: E731
    assert list(run.cases) == sorted((r for r in records if isinstance(r, CaseRecord)), key=order)
    assert list(run.divergences) == sorted(
        (r for r in records if isinstance(r, DivergenceRecord)), key=order)
    assert all(d.base_dir == tmp_path for d in run.divergences)
    total = summary_table(run)[-1]
    # new counts diverging probes, descriptor writes apart (docs/reports.md).
    assert (total.cases, total.new, total.writes_new, total.known) == (3, 2, 1, 0)
    assert total.probes == sum(c.probes for c in run.cases)


# ---------------------------------------------------------------------------
# The records several QEMUs and crash-resume added (docs/results.md)
# ---------------------------------------------------------------------------

def crash_record(**kw) -> CrashRecord:
    fields = dict(qemu="10.0.2", qemu_version="QEMU emulator version 10.0.2", batch=3,
                  arch="aarch64", cpu="max", key="aarch64/max/4k#0", entry="aarch64/max/4k",
                  group="aarch64 4k", probe=17, ipa="0x610", at="S12E0R",
                  aim="L1 block S2AP=00 read", expected=("permission L1",),
                  kind=FailureKind.CRASH,
                  signature="target/arm/helper.c:N: do_ats_write: Assertion `x' failed. [SIGABRT]",
                  signal=6, returncode=None, console="qemu-system-aarch64: ...",
                  argv=("qemu-system-aarch64", "-M", "virt"), quarantine="permission L*",
                  held=12, case_file="cases/crash.json", reproduced=True, known=None)
    fields.update(kw)
    return CrashRecord(**fields)


def test_a_crash_family_is_known_only_as_far_as_its_members_are():
    """A crash family (QEMU, signature) whose baseline entry describes only
    some of its probes (the entry's expected outcomes narrower than the
    family's: a 10.0.2 run had 12 of 18 known) says so, where the first
    member's verdict used to speak for all."""
    from harness.records import crash_family_state
    e = "qemu-9.2-ats-s2-permission-fault-abort"
    assert crash_family_state([crash_record(), crash_record()]) == "new"
    assert crash_family_state([crash_record(known=e)] * 3) == f"known: {e}"
    mixed = [crash_record(known=e)] * 12 + [crash_record()] * 6
    assert crash_family_state(mixed) == f"known: {e} for 12 of 18 probes, 6 new"


def test_crash_end_and_header_records_read_back_unchanged():
    header = RunHeader(seed=1, cases_per_entry=2, fanout=0, shard=(1, 2), entries=3, batches=4,
                       cases=6, argv=("s2diff", "run"), started="2026-11-30T00:00:00Z",
                       qemu=(("aarch64", "QEMU emulator version 7.2.22"),), baseline=None,
                       qemus=(QemuInfo("7.2.22", "QEMU emulator version 7.2.22",
                                       "/usr/bin/qemu-system-aarch64", None),
                              QemuInfo("10.0.13", "QEMU emulator version 10.0.13", "/c/a",
                                       "/c/b")),
                       options={"seed": 1, "cpu": ["max"]})
    end = EndRecord(reason=EndReason.BUDGET, batches_planned=8, batches_run=5, cases_planned=12,
                    cases_run=9, entries=3,
                    entries_not_run=(NotRun("aarch64/max/4k", "7.2.22", "budget"),),
                    elapsed=12.5, shard=(1, 2))
    for rec in (header, end, crash_record(), crash_record(signal=None, returncode=1,
                                                          reproduced=None, case_file=None)):
        line = record_line(rec)
        back = parse_record(json.loads(line))
        assert back == rec
        assert record_line(back) == line
    assert header.labels == ("7.2.22", "10.0.13")
    # The versions of every build, per architecture it provides.
    assert header.versions() == (("aarch64", "QEMU emulator version 10.0.13"),
                                 ("aarch64", "QEMU emulator version 7.2.22"),
                                 ("arm", "QEMU emulator version 10.0.13"))


def test_files_of_one_qemu_runs_without_labels_still_read(judged, tmp_path: Path):
    """A results file written before QEMU labels (no ``qemu`` on batch,
    case and divergence records, no ``qemus``) reads as one QEMU, label ""."""
    *_, records = judged
    lines = []
    for rec in records:
        obj = rec.to_json()
        del obj["qemu"]
        lines.append(json.dumps(obj))
    back = [parse_record(json.loads(line)) for line in lines]
    assert back == records
    assert all(r.qemu == "" for r in back)
    old = {"type": "run", "version": 1, "seed": 3, "qemu": {"aarch64": "v"}}
    assert RunHeader.from_json(old).labels == ("",)


def test_the_same_batch_on_two_qemus_is_two_batches_for_the_reader(judged, tmp_path: Path):
    *_, records = judged
    sink = RecordSink(tmp_path / RECORDS)
    for label in ("7.2.22", "10.0.13"):
        sink.write([dataclasses.replace(r, qemu=label) for r in records])
    sink.write([crash_record(batch=5, key=records[1].key, qemu="10.0.13")])
    sink.close()
    run = load_run([tmp_path])
    assert run.warnings == ()
    assert [(b.batch, b.qemu) for b in run.batches] == [(5, "10.0.13"), (5, "7.2.22")]
    assert len(run.cases) == 2 * sum(isinstance(r, CaseRecord) for r in records)
    assert [c.qemu for c in run.crashes] == ["10.0.13"]


def test_a_crash_record_missing_its_signature_is_invalid():
    obj = crash_record().to_json()
    del obj["signature"]
    with pytest.raises(InvalidRecord, match="signature"):
        parse_record(obj)
