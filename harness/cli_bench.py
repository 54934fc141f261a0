"""`s2diff bench`: throughput figures (harness.bench)."""
from __future__ import annotations

import argparse
import json
import os

from .cli import Streams, subcommand
from .errors import UsageError


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    from .cli_cases import NIGHTLY_FANOUT
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes for the end-to-end figures (default: the cores)")
    p.add_argument("--fanout", type=int, default=NIGHTLY_FANOUT, metavar="N",
                   help=f"fan-out probes per placed entry (default {NIGHTLY_FANOUT}, as nightly)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


@subcommand("bench", "measure QEMU's raw rates, the harness's end-to-end rates and the naive "
            "baseline in one run; print the ratios", _bench_arguments)
def run_bench_command(args: argparse.Namespace, io: Streams) -> int:
    from .bench import render, run_bench
    if args.jobs < 1:
        raise UsageError("--jobs: must be at least 1")
    if args.fanout < 0:
        raise UsageError("--fanout: must be 0 or more")
    result = run_bench(args.jobs, args.fanout)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1), file=io.out)
    else:
        print(render(result), file=io.out)
    return 0
