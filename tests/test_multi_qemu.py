"""Several QEMUs in one run (issue 10 item 2): `s2diff run --qemu A --qemu
B` plans each batch once and runs it on both builds -- same seed, same
images -- with every record labelled by its QEMU; a CPU model one build
does not provide is recorded as not run there, not as an error.

The second build is $S2DIFF_SECOND_QEMU (scripts/test fetches one: Debian
trixie's on a bookworm host, bookworm's elsewhere), else any cached build
(s2diff qemu list) of another version than the QEMU the tests run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import records, s2diff

from harness.qemu import builds
from harness.qemu.launcher import qemu_cpus, qemu_version
from reference.arch import Arch

pytestmark = pytest.mark.qemu


def first_qemu() -> builds.QemuBuild:
    return builds.default_build({}, [Arch.AARCH64, Arch.AARCH32])


def second_qemu(first: builds.QemuBuild) -> Path | None:
    wanted = os.environ.get("S2DIFF_SECOND_QEMU")
    if wanted == "none":
        return None
    candidates = [Path(wanted)] if wanted else [b.bin for b in builds.list_cached()]
    for path in candidates:
        try:
            build = builds.resolve(str(path))
        except Exception:
            continue
        if set(build.paths) == {Arch.AARCH64, Arch.AARCH32} and build.label != first.label:
            return path
    return None


def test_one_batch_on_two_qemus(tmp_path):
    first = first_qemu()
    second = second_qemu(first)
    if second is None:
        pytest.skip("no second QEMU build of another version: ./scripts/test fetches one, or "
                    "set S2DIFF_SECOND_QEMU to a folder of qemu-system-*")
    other = builds.resolve(str(second))
    # A CPU model only one of them provides (neoverse-n2 is in QEMU 8.x and
    # later), when there is one, shows the not-run path.
    models = ["cortex-a57"]
    a = qemu_cpus(first.paths[Arch.AARCH64])
    b = qemu_cpus(other.paths[Arch.AARCH64])
    one_sided = sorted(({"neoverse-n2", "cortex-a710"} & (a ^ b)))
    models += one_sided[:1]
    out = tmp_path / "out"
    code, text = s2diff("run", "--cpu", ",".join(models), "--granule", "4k", "--ipa", "40",
                        "--cases", "1", "--fanout", "16", "--jobs", "2", "--no-baseline",
                        "--qemu", first.paths[Arch.AARCH64].parent, "--qemu", second,
                        "--out", out)
    assert code in (0, 1), text
    header = records(out, "run")[0]
    labels = [q["label"] for q in header["qemus"]]
    assert len(labels) == 2 and labels[0] != labels[1]
    assert [q["version"] for q in header["qemus"]] == [
        qemu_version(first.paths[Arch.AARCH64]), qemu_version(other.paths[Arch.AARCH64])]
    cases = records(out, "case")
    by_qemu = {label: {c["key"]: c for c in cases if c["qemu"] == label} for label in labels}
    a57 = {label: {k: c for k, c in by_qemu[label].items() if c["cpu"] == "cortex-a57"}
           for label in labels}
    # The same cases, the same images (VTTBR: VMID and table base), the
    # same probes, on both.
    assert a57[labels[0]].keys() == a57[labels[1]].keys() and a57[labels[0]]
    for key, c in a57[labels[0]].items():
        d = a57[labels[1]][key]
        assert (c["vttbr"], c["vtcr"], c["probes"], c["batch"]) == \
            (d["vttbr"], d["vtcr"], d["probes"], d["batch"])
    batches = records(out, "batch")
    assert {(b["batch"], b["qemu"]) for b in batches if b["cpu"] == "cortex-a57"} == \
        {(b, label) for b in {c["batch"] for c in a57[labels[0]].values()} for label in labels}
    assert all(b["status"] != "harness-error" for b in batches)
    assert all(d["qemu"] in labels for d in records(out, "divergence"))
    (end,) = records(out, "end")
    assert end["reason"] == "complete"
    if len(models) > 1:
        lacking = labels[0] if models[1] not in a else labels[1]
        having = labels[1] if lacking == labels[0] else labels[0]
        assert {n["qemu"] for n in end["entries_not_run"]} == {lacking}
        assert all(n["reason"] == f"QEMU {lacking} has no -cpu {models[1]}"
                   for n in end["entries_not_run"])
        assert {c["cpu"] for c in by_qemu[having].values()} == set(models)
        assert {c["cpu"] for c in by_qemu[lacking].values()} == {"cortex-a57"}
    else:
        assert end["entries_not_run"] == []
