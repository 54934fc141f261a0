"""report.html in a real browser: Debian's chromium, headless, driven with
its own --dump-dom (scripts/setup.sh installs it).  The tests check what a
person sees: the banner's text, that every in-page link (the root causes',
the matrix marks') lands on an element that exists, that case-file links
name files that exist, and that the page is no wider than a 1280-pixel
window.

The report itself has no script; the test loads a copy with one appended
that measures the laid-out page and writes the figures into the DOM, which
--dump-dom then returns."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import batches_records, run_record, write_results
from test_triage import k1_records, write

from harness.qemu.boot import FailureKind
from harness.records import CrashRecord
from harness.report.load import load_run
from harness.report.write import write_reports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
VIEWPORT = (1280, 900)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (scripts/setup.sh installs it)")

_MEASURE = """<script>
(function () {
  var doc = document.documentElement;
  var missing = [];
  document.querySelectorAll('a[href^="#"]').forEach(function (a) {
    var id = a.getAttribute('href').slice(1);
    if (!document.getElementById(id)) missing.push(id);
  });
  var wide = [];
  document.querySelectorAll('body *').forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.right > window.innerWidth + 1 && el.closest('details:not([open])') === null)
      wide.push(el.tagName + '.' + el.className);
  });
  var out = document.createElement('pre');
  out.id = 's2diff-measure';
  out.textContent = JSON.stringify({
    scrollWidth: doc.scrollWidth, innerWidth: window.innerWidth,
    banner: (document.querySelector('#verdict h1') || {}).textContent || null,
    bannerClass: (document.getElementById('verdict') || {}).className || null,
    causes: document.querySelectorAll('#root-causes ~ .rc, #root-causes ~ details .rc').length,
    missing: missing, wide: wide.slice(0, 5),
    links: Array.prototype.map.call(document.querySelectorAll('a[href]'),
                                    function (a) { return a.getAttribute('href'); })
  });
  document.body.appendChild(out);
})();
</script>"""


def seen(report: Path) -> dict:
    """What chromium lays out for ``report`` in a 1280-pixel window."""
    assert CHROMIUM is not None, "chromium is missing (scripts/setup.sh installs it)"
    probe = report.with_name("measured.html")
    probe.write_text(report.read_text().replace("</body>", _MEASURE + "</body>"))
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
                           "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    m = re.search(r'<pre id="s2diff-measure">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"chromium gave no DOM (exit {proc.returncode}): {proc.stderr[-500:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&")
                      .replace("&lt;", "<").replace("&gt;", ">"))


def _check_page(page: dict, report: Path) -> None:
    assert page["innerWidth"] == VIEWPORT[0]
    assert page["scrollWidth"] <= page["innerWidth"], page["wide"]
    assert page["missing"] == []
    for href in page["links"]:
        if not href.startswith("#"):
            assert (report.parent / href).exists(), href


def test_k1_like_report(tmp_path):
    """A configuration QEMU rejects: the banner says NEW with one root
    cause, whose repro link resolves, and nothing is wider than the window."""
    out = write(tmp_path / "k1", k1_records())
    (out / "cases").mkdir()
    for i in range(5):
        (out / "cases" / f"k{i}.json").write_text("{}")
    report = write_reports(load_run([out]), out)["html"]
    page = seen(report)
    assert page["banner"] == "NEW: 1 root cause of new divergences (500 probes)"
    assert page["bannerClass"] == "banner new"
    assert page["causes"] == 1
    _check_page(page, report)
    assert "cases/k0.json" in page["links"]


def test_nightly_like_report(tmp_path):
    """Eight entries of every verdict on two architectures (the report
    tests' run): every mark links to its entry's row."""
    recs = batches_records()
    out = write_results(tmp_path / "n", [run_record(None)] + [r for n in sorted(recs)
                                                               for r in recs[n]])
    (out / "cases").mkdir()
    (out / "cases" / "E1_1.json").write_text("{}")
    report = write_reports(load_run([out]), out)["html"]
    page = seen(report)
    assert page["banner"].startswith("NEW: 2 root causes of new divergences")
    _check_page(page, report)
    marks = [h for h in page["links"] if h.startswith("#e-")]
    assert len(marks) == 8


def test_crash_report(tmp_path):
    """A QEMU crash pinned to a probe: the banner says CRASH."""
    recs = k1_records(1)[:3] + [CrashRecord(
        qemu="", qemu_version="QEMU 10.0.2", batch=0, arch="aarch64", cpu="max", key="x#0",
        entry="x", group="--vtcr", probe=4, ipa="0x1000", at="S12E0R", aim="L1 block S2AP=00 read",
        expected=("permission L1",), kind=FailureKind.CRASH,
        signature="target/arm/helper.c:N: do_ats_write: Assertion `!res.cacheattrs.is_s2_format' "
                  "failed. [SIGABRT]", signal=6, returncode=None,
        console="qemu-system-aarch64: target/arm/helper.c:3508: do_ats_write: Assertion "
                "`!res.cacheattrs.is_s2_format' failed.", case_file="cases/crash.json",
        reproduced=True)]
    recs[2] = dataclasses.replace(recs[2], diverged=0, passed=100)
    out = write(tmp_path / "c", recs)
    (out / "cases").mkdir()
    (out / "cases" / "crash.json").write_text("{}")
    report = write_reports(load_run([out]), out)["html"]
    page = seen(report)
    assert page["banner"] == "CRASH: 1 crash family"
    assert page["bannerClass"] == "banner crash"
    _check_page(page, report)
