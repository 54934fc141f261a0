"""A smoke test of `s2diff bench`: it runs every measurement end to end in
a tiny configuration (--small) and prints --json of the documented shape.
The figures themselves are not checked (speed is measured by bench, never
asserted in a test); only that each is there, of its type, and that the
counts agree with each other."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from harness.cli import main

pytestmark = pytest.mark.qemu

RATES = ("raw_at_per_s", "raw_at_before_per_s", "raw_at_after_per_s", "raw_access_per_s", "e2e_access_per_s", "raw_images_per_s", "boot_s", "e2e_probes_per_s", "e2e_images_per_s",
         "e2e_seconds", "e2e1_probes_per_s", "naive_probes_per_s", "peak_harness_mib",
         "peak_qemu_mib", "scaling_measured", "ratio_e2e_over_raw", "ratio_e2e_over_naive",
         "jobs_scaling", "host_cpu_us_per_probe", "qemu_cpu_us_per_probe",
         "ratio_host_over_qemu_cpu")


def test_bench_small_prints_every_figure_as_json():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", "--small", "--json", "--jobs", "2", "--fanout", "16"])
    assert code == 0
    # Strict JSON: a rate too short to measure is null, never NaN.
    figures = json.loads(out.getvalue(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert set(figures) == set(RATES) | {"e2e_probes", "e2e_images", "jobs", "fanout", "notes",
                                         "profile", "profile_cpu", "raw_at_rates", "e2e_rates",
                                         "ratios_per_round"}
    # --small runs (b) once, with a raw AT rate before and after it.
    assert len(figures["e2e_rates"]) == len(figures["ratios_per_round"]) == 1
    assert len(figures["raw_at_rates"]) == 2
    # A rate is a non-negative number, or null when --small's boots are too
    # short to tell from an empty one (harness.bench.net_rate); never the
    # absurd rate a near-zero difference gave (2e12 probes/s).
    assert all(figures[k] is None or isinstance(figures[k], float) and figures[k] >= 0
               for k in RATES)
    assert all(figures[k] is None or figures[k] < 1e9 for k in RATES if "per_s" in k)
    assert (figures["jobs"], figures["fanout"]) == (2, 16)
    # Every sampled entry ran one case; each case has its named probes and
    # 16 fan-out probes per placed entry on top.
    assert figures["e2e_images"] > 0
    assert figures["e2e_probes"] > 16 * figures["e2e_images"]
    assert any("--small" in n for n in figures["notes"])
    # Where the worker time of the end-to-end run went, per stage.
    stages = {"generate", "images", "pack", "qemu", "unpack", "boot", "run", "judge", "records"}
    assert set(figures["profile"]) == stages
    assert all(figures["profile"][s] >= 0 for s in stages) and figures["profile"]["qemu"] > 0
    # The same in CPU seconds: the worker's own per stage (pack, unpack and
    # boot are inside "run": only wall time splits them out of QEMU's), and
    # QEMU's processes, which did run.
    cpu_stages = {"generate", "images", "run", "judge", "records", "qemu"}
    assert set(figures["profile_cpu"]) == cpu_stages
    assert all(figures["profile_cpu"][s] >= 0 for s in cpu_stages)
    assert figures["profile_cpu"]["qemu"] > 0 and figures["qemu_cpu_us_per_probe"] > 0
    # The host-over-QEMU CPU ratio is the two per-probe figures' quotient.
    assert figures["ratio_host_over_qemu_cpu"] == pytest.approx(
        figures["host_cpu_us_per_probe"] / figures["qemu_cpu_us_per_probe"])


def test_bench_refuses_bad_options_in_one_line(capsys):
    assert main(["bench", "--jobs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "s2diff: error: --jobs: must be at least 1"


def test_a_boot_too_short_to_measure_has_no_rate():
    """net_rate: 1000 probes in a boot 2 ms longer than an empty one is
    below MIN_NET_SECONDS (10 ms): NaN, not 500,000 probes/s; 50 ms longer
    is 20,000/s (1000 / 0.05)."""
    import math

    from harness.bench import net_rate
    assert math.isnan(net_rate(1000, 0.032, 0.030))
    assert net_rate(1000, 0.080, 0.030) == 1000 / (0.080 - 0.030)


def test_a_raw_rate_is_the_time_average_of_its_pairs():
    """_paired_rate: three (empty, loaded) pairs of 100 probes whose loaded
    boots take 1, 3 and 1 s longer than their empty ones did 300 probes in
    5 s of extra time: 60/s (a median of the extras, 1 s, would say 100/s;
    the mean of the per-pair rates, 77.8/s).  The empty boot is the median
    of the empty ones (0.2 s)."""
    from harness.bench import _paired_rate
    times = iter([0.1, 1.1, 0.2, 3.2, 0.3, 1.3])
    rate, empty = _paired_rate(lambda images: next(times), ["job"], 100, 3)
    assert rate == pytest.approx(60.0) and empty == 0.2
