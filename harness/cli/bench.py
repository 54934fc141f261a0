"""`s2diff bench`: throughput figures (harness.bench)."""
from __future__ import annotations

import argparse
import json
import os

from ..bench import render, run_bench
from ..errors import UsageError
from ..run import NIGHTLY_FANOUT
from .common import Outcome, Streams, Subcommand


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes for the end-to-end figures (default: the cores)")
    p.add_argument("--fanout", type=int, default=NIGHTLY_FANOUT, metavar="N",
                   help=f"fan-out probes per placed entry (default {NIGHTLY_FANOUT}, as nightly)")
    p.add_argument("--small", action="store_true",
                   help="a tiny run of every measurement, to check that bench works (the "
                        "figures then mean little)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def run_bench_command(args: argparse.Namespace, io: Streams) -> Outcome:
    if args.jobs < 1:
        raise UsageError("--jobs: must be at least 1")
    if args.fanout < 0:
        raise UsageError("--fanout: must be 0 or more")
    # Progress on stderr: stdout holds the figures (--json parses).
    result = run_bench(args.jobs, args.fanout, small=args.small,
                       log=lambda line: print(f"bench: {line}", file=io.err, flush=True))
    if args.json:
        print(json.dumps(result.as_dict(), indent=1), file=io.out)
    else:
        print(render(result), file=io.out)
    return Outcome.OK


COMMANDS = (
    Subcommand("bench", "measure QEMU's raw rates, the harness's end-to-end rates and the "
               "naive baseline in one run; print the ratios", _bench_arguments,
               run_bench_command),
)
