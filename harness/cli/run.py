"""`s2diff run`: the differential run over the configuration matrix, its
end (reports, summary, stale baseline entries, findings) and ``--shrink``."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import NoReturn

from reference.arch import Arch

from ..baseline import default_baseline, load_baseline, stale_entries
from ..errors import UsageError
from ..judge.models import model_records
from ..kinds import CaseKind
from ..matrix import build_matrix, cpu_selection
from ..plan import parse_shard
from ..qemu.boot import BatchStatus
from ..qemu.models import machine_models
from ..records import RunHeader
from ..report.casefiles import CASE_FILES_PER_CAUSE, prune_case_files
from ..report.load import load_run
from ..report.write import write_reports
from ..run import (
    NIGHTLY_BUDGET,
    NIGHTLY_CASES,
    NIGHTLY_FANOUT,
    RunOptions,
    RunOutcome,
    check_resumable,
    run_matrix,
)
from .cases import manual_arguments, qemu_arg_list
from .common import (
    Outcome,
    Streams,
    Subcommand,
    available_cpus,
    baseline_arguments,
    granule_list,
    hex_value,
    ipa_list,
    name_list,
    qemu_arguments,
    qemu_for,
    seconds,
)
from .debug import shrink_root_causes
from .progress import Progress
from .report import new_divergences, print_summary, vtcr_notice

DEFAULT_OUT = "s2diff-out"


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=[a.value for a in Arch], help="only this architecture")
    p.add_argument("--cpu", type=name_list, metavar="NAME[,NAME]", help="only these CPU models")
    p.add_argument("--granule", type=granule_list, metavar="4k,16k,64k", help="only these granules")
    p.add_argument("--ipa", type=ipa_list, metavar="BITS[,BITS]", help="only these IPA sizes")
    p.add_argument("--vtcr", type=hex_value, metavar="HEX",
                   help="validate exactly this VTCR value on the one --cpu given")
    p.add_argument("--probes", type=probe_kinds, metavar="KIND[,KIND]",
                   help="kinds of case: at (AT probes with stage 1 off, fan-out), access "
                        "(loads, stores, DC ZVA, fetches from EL1), stage1 (AT with stage 1 "
                        "on); default: all in the nightly, only at with --arch, --cpu, "
                        "--granule or --ipa")
    p.add_argument("--seed", type=int, default=1, help="seed of the case generator (default 1)")
    p.add_argument("--cases", type=int, metavar="N",
                   help=f"cases per matrix entry (default {NIGHTLY_CASES})")
    p.add_argument("--fanout", type=int, metavar="N",
                   help=f"bulk probes per placed table entry (default {NIGHTLY_FANOUT}; 0: "
                        "only the named probes)")
    p.add_argument("--budget", type=seconds, metavar="SECONDS",
                   help=f"stop starting batches after this long (default {NIGHTLY_BUDGET:.0f} s "
                        "for the default matrix, none otherwise)")
    p.add_argument("--jobs", type=int, metavar="N", default=os.cpu_count() or 1,
                   help="worker processes (default: the number of cores)")
    p.add_argument("--shard", metavar="K/N", help="run only the K-th of N deterministic shards")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), metavar="DIR",
                   help=f"output directory (default ./{DEFAULT_OUT})")
    baseline_arguments(p)
    p.add_argument("--shrink", action="store_true",
                   help="shrink and localize one case of each new root cause (writes "
                        "NAME.min.json and NAME.min.txt beside its case file; the reports "
                        "link them)")
    p.add_argument("--case-files", type=int, metavar="N", default=CASE_FILES_PER_CAUSE,
                   help="case files kept per root cause of new divergences (default "
                        f"{CASE_FILES_PER_CAUSE})")
    manual_arguments(p)
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out without repeating finished batches")
    qemu_arguments(p)


def probe_kinds(text: str) -> list[CaseKind]:
    """Comma-separated kinds of case (harness.kinds.CaseKind values)."""
    kinds = []
    for item in name_list(text):
        try:
            kinds.append(CaseKind(item))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not a kind of case (known: "
                f"{', '.join(k.value for k in CaseKind)})") from None
    return kinds


def run_run(args: argparse.Namespace, io: Streams) -> Outcome:
    if args.cases is not None and args.cases < 1:
        raise UsageError("--cases: must be at least 1")
    if args.jobs < 1:
        raise UsageError("--jobs: must be at least 1")
    if args.fanout is not None and args.fanout < 0:
        raise UsageError("--fanout: must be 0 or more")
    if args.case_files < 0:
        raise UsageError("--case-files: must be 0 or more")
    shard = parse_shard(args.shard) if args.shard else None
    arch = Arch(args.arch) if args.arch else None
    if args.resume:
        check_resumable(args.out)  # before the CPU models boot anything
    available = available_cpus(args, arch)
    # The models as the QEMU in use reports them: max follows its ID
    # registers; a named core that differs from its table is a finding.
    machines = machine_models(cpu_selection(arch, args.cpu, available),
                              {a: qemu_for(args, a) for a in Arch})
    # The nightly runs every kind of case; a selection runs AT probes (what
    # it always did) unless --probes names the kinds.
    selection = any((args.arch, args.cpu, args.granule, args.ipa))
    probes = args.probes or ([CaseKind.AT] if selection else None)
    entries = build_matrix(arch=arch, cpus=args.cpu, granules=args.granule, ipa_sizes=args.ipa,
                           vtcr=args.vtcr, available=available,
                           models={k: m.model for k, m in machines.items()},
                           probes=probes)
    if not entries:
        raise UsageError("the selection leaves no configuration to run "
                         "(see `s2diff configs` for what each CPU model supports)")
    nightly = not any((args.arch, args.cpu, args.granule, args.ipa, args.vtcr is not None,
                       args.probes))
    baseline = None if args.no_baseline else (args.baseline or default_baseline())
    if baseline is not None:
        load_baseline(baseline)  # validate before starting anything
    opts = RunOptions(out=args.out, seed=args.seed,
                      cases_per_entry=args.cases or NIGHTLY_CASES,
                      budget=args.budget or (NIGHTLY_BUDGET if nightly else None),
                      jobs=args.jobs, shard=shard, baseline=baseline,
                      qemu={Arch.AARCH64: args.qemu_aarch64, Arch.AARCH32: args.qemu_arm},
                      resume=args.resume,
                      fanout=NIGHTLY_FANOUT if args.fanout is None else args.fanout,
                      qemu_args=tuple(qemu_arg_list(args.qemu_arg)), keep=args.keep)
    if args.vtcr is not None:
        # Say what the reference makes of the value before anything runs.
        for line in vtcr_notice(entries[0]):
            print(line, file=io.out, flush=True)
    progress = Progress(enabled=io.tty)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    def started(header: RunHeader) -> None:
        # The run's size, before anything runs (the probe count is an
        # estimate: each case places ~60 entries, each fanned out).
        probes = (header.cases or 0) * (60 + 60 * opts.fanout)
        print(f"s2diff run: {header.entries} configurations, {header.cases} cases in "
              f"{header.batches} batches, about {probes:,} probes "
              f"(seed {opts.seed}, {opts.cases_per_entry} cases per configuration, fan-out "
              f"{opts.fanout}{', budget %.0f s' % opts.budget if opts.budget else ''}); "
              f"output in {args.out}", file=io.out, flush=True)
        progress.start(header)

    try:
        with progress:
            outcome = run_matrix(entries, opts, argv=sys.argv, on_records=progress.update,
                                 on_start=started,
                                 preamble=model_records(machines.values()))
    finally:
        signal.signal(signal.SIGTERM, previous)
    result = finish_run(args.out, outcome, baseline, io, case_files=args.case_files)
    if args.keep is not None:
        print(f"boots kept in {args.keep}/batch-N; re-run one by hand: sh "
              f"{args.keep}/batch-N/rerun.sh", file=io.out)
    if args.shrink and not outcome.interrupted:
        shrink_root_causes(args.out, args, io)
    return result


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def finish_run(out: Path, outcome: RunOutcome, baseline: Path | None, io: Streams,
               case_files: int = CASE_FILES_PER_CAUSE) -> Outcome:
    """Reports for a finished (or interrupted) run, and its outcome: FOUND
    for a new divergence or a reproduced crash, INFRASTRUCTURE when nothing
    could run, INTERRUPTED, else OK.  Case files beyond ``case_files`` per
    root cause are removed first (harness.report.casefiles)."""
    prune_case_files(out, case_files)
    run = load_run([out])
    written = write_reports(run, out)
    print_summary(run, io, out)
    if baseline is not None:
        for entry in stale_entries(load_baseline(baseline), outcome.known_used, outcome.ran):
            print(f"STALE: baseline entry {entry.id} matched nothing although its configuration "
                  f"ran (fixed? case: {entry.case})", file=io.out)
    for name, path in written.items():
        print(f"{name}: {path}", file=io.out)
    for finding in outcome.findings:
        kind = finding.kind.value if finding.kind else None
        print(f"FINDING: QEMU {kind} reproduced by one case (key {finding.key}, "
              f"probe {finding.probe}): {out / (finding.case_file or '')} "
              f"(s2diff repro re-runs it)", file=io.out)
    if outcome.interrupted:
        print(f"interrupted: {outcome.batches_run} of {outcome.batches_planned} batches finished "
              f"and recorded; continue with --resume --out {out}", file=io.err)
        return Outcome.INTERRUPTED
    statuses = outcome.batch_status
    if statuses and not statuses.get(BatchStatus.COMPLETED, 0) and not outcome.findings:
        # Nothing ran to the end: QEMU or the harness is unusable here.
        print("nothing could run: no batch completed (see the summary's batch diagnostics)",
              file=io.err)
        return Outcome.INFRASTRUCTURE
    return Outcome.FOUND if new_divergences(run) or outcome.findings else Outcome.OK


COMMANDS = (
    Subcommand("run", "the differential run over the configuration matrix (default: the "
               "nightly matrix)", _run_arguments, run_run),
)
