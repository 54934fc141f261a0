"""`s2diff run`: the differential run over the configuration matrix, its
end (reports, summary, stale baseline entries, findings) and ``--shrink``."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reference.arch import Arch, Granule
from reference.cpus import CpuModel

from ..baseline import default_baseline, load_baseline, stale_entries
from ..errors import UsageError
from ..judge.models import model_records
from ..kinds import CaseKind
from ..matrix import build_matrix, cpu_selection
from ..plan import parse_shard
from ..qemu.boot import BatchStatus
from ..qemu.builds import version_number
from ..qemu.launcher import qemu_cpus
from ..qemu.models import machine_models
from ..records import (
    RECORDS,
    CrashRecord,
    InvalidRecord,
    ResultsVersionError,
    RunHeader,
    crash_family_state,
    read_json_lines,
)
from ..report.casefiles import CASE_FILES_PER_CAUSE, prune_case_files
from ..report.load import load_run
from ..report.write import write_reports
from ..run import (
    NIGHTLY_BUDGET,
    NIGHTLY_CASES,
    NIGHTLY_FANOUT,
    RunOptions,
    RunOutcome,
    run_matrix,
)
from .cases import manual_arguments, qemu_arg_list
from .common import (
    Outcome,
    Streams,
    Subcommand,
    baseline_arguments,
    builds_cpus,
    granule_list,
    hex_value,
    ipa_list,
    multi_qemu_argument,
    name_list,
    qemu_arguments,
    qemu_builds_of,
    seconds,
)
from .debug import shrink_root_causes
from .progress import Progress
from .report import new_divergences, print_summary, vtcr_notice

DEFAULT_OUT = "s2diff-out"


def _run_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults are None (applied in run_run): `--resume --out DIR` alone
    # continues with the options recorded in DIR, and an option given
    # explicitly is compared with the recorded one.
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
    p.add_argument("--seed", type=int, help="seed of the case generator (default 1)")
    p.add_argument("--cases", type=int, metavar="N",
                   help=f"cases per matrix entry (default {NIGHTLY_CASES})")
    p.add_argument("--fanout", type=int, metavar="N",
                   help=f"bulk probes per placed table entry (default {NIGHTLY_FANOUT}; 0: "
                        "only the named probes)")
    p.add_argument("--budget", type=seconds, metavar="SECONDS",
                   help=f"stop starting batches after this long (default {NIGHTLY_BUDGET:.0f} s "
                        "for the default matrix, none otherwise); every entry runs its first "
                        "case before any runs a second, so a stop thins cases, not entries")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="worker processes (default: the number of cores)")
    p.add_argument("--shard", metavar="K/N|auto",
                   help="run only the K-th of N deterministic shards; auto: K and N from the "
                        "CI system's variables (docs/ci.md)")
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
                   help="continue the interrupted run in --out with its recorded options, "
                        "without repeating finished batches")
    multi_qemu_argument(p)
    qemu_arguments(p)


# The options a run records in its header (docs/results.md, `options`), with
# the flag that sets each.  --budget is recorded but may change on --resume
# (resuming a run that the budget stopped with more time is the point).
RECORDED = {"arch": "--arch", "cpu": "--cpu", "granule": "--granule", "ipa": "--ipa",
            "vtcr": "--vtcr", "seed": "--seed", "cases": "--cases", "fanout": "--fanout",
            "budget": "--budget", "shard": "--shard", "baseline": "--baseline",
            "qemu": "--qemu", "qemu_aarch64": "--qemu-aarch64", "qemu_arm": "--qemu-arm",
            "qemu_arg": "--qemu-arg", "probes": "--probes"}
MAY_CHANGE_ON_RESUME = ("budget",)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The recorded options the command line gives explicitly, as JSON
    values (None: not given)."""
    baseline: Any = None
    if args.no_baseline:
        baseline = "none"
    elif args.baseline is not None:
        baseline = str(Path(args.baseline).resolve())
    return {"arch": args.arch, "cpu": args.cpu,
            "granule": [g.label for g in args.granule] if args.granule else None,
            "ipa": args.ipa, "vtcr": f"{args.vtcr:#x}" if args.vtcr is not None else None,
            "seed": args.seed, "cases": args.cases, "fanout": args.fanout, "budget": args.budget,
            "shard": "{}/{}".format(*parse_shard(args.shard)) if args.shard else None,
            "baseline": baseline, "qemu": args.qemu, "qemu_aarch64": args.qemu_aarch64,
            "qemu_arm": args.qemu_arm, "qemu_arg": args.qemu_arg,
            "probes": [k.value for k in args.probes] if args.probes else None}


def _apply(args: argparse.Namespace, options: dict[str, Any]) -> None:
    """Set ``args`` from recorded ``options`` (JSON values)."""
    args.arch = options.get("arch")
    args.cpu = options.get("cpu")
    args.granule = ([Granule.from_label(g) for g in options["granule"]]
                    if options.get("granule") else None)
    args.ipa = options.get("ipa")
    args.vtcr = int(options["vtcr"], 16) if options.get("vtcr") else None
    args.seed = options.get("seed")
    args.cases = options.get("cases")
    args.fanout = options.get("fanout")
    args.budget = args.budget if args.budget is not None else options.get("budget")
    args.shard = options.get("shard")
    baseline = options.get("baseline")
    args.no_baseline = baseline == "none"
    args.baseline = Path(baseline) if baseline not in (None, "none") else None
    args.qemu = options.get("qemu")
    args.qemu_aarch64 = options.get("qemu_aarch64")
    args.qemu_arm = options.get("qemu_arm")
    args.qemu_arg = options.get("qemu_arg")
    args.probes = [CaseKind(k) for k in options["probes"]] if options.get("probes") else None


def _describe(key: str, value: Any) -> str:
    if value is None:
        return f"no {RECORDED[key]}"
    if key == "baseline" and value == "none":
        return "--no-baseline"
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"{RECORDED[key]} {value}"


def resume_options(args: argparse.Namespace) -> None:
    """``--resume``: continue with the options the run in --out recorded.
    An option given explicitly must be the recorded one (UsageError naming
    the recorded value); the others are taken from the record.  A run
    recorded before options were (no ``options``): the command line must
    repeat them, as before."""
    header = read_header(args.out / RECORDS)
    if header is None:
        raise UsageError(f"--resume: {args.out / RECORDS} has no run header (nothing to resume)")
    if header.options is None:
        return
    given = _given(args)
    for key in RECORDED:
        if key in MAY_CHANGE_ON_RESUME or given[key] is None:
            continue
        recorded = header.options.get(key)
        if given[key] != recorded:
            raise UsageError(f"--resume: the run in {args.out} was started with "
                             f"{_describe(key, recorded)}; {_describe(key, given[key])} differs "
                             "(leave it out to continue with the recorded value)")
    _apply(args, header.options)


def read_header(path: Path) -> RunHeader | None:
    """The run header of a results file, or None."""
    if not path.is_file():
        return None
    for rec in read_json_lines(path):
        if rec.get("type") == "run":
            try:
                return RunHeader.from_json(rec)
            except (InvalidRecord, ResultsVersionError):
                return None
    return None
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
    # SIGTERM is a Ctrl-C from the start (harness.cli.main): the workers
    # and their QEMUs are stopped and what finished stays recorded.
    if args.resume:
        resume_options(args)
    if args.cases is not None and args.cases < 1:
        raise UsageError("--cases: must be at least 1")
    jobs = args.jobs if args.jobs is not None else os.cpu_count() or 1
    if jobs < 1:
        raise UsageError("--jobs: must be at least 1")
    if args.fanout is not None and args.fanout < 0:
        raise UsageError("--fanout: must be 0 or more")
    if args.case_files < 0:
        raise UsageError("--case-files: must be 0 or more")
    shard = parse_shard(args.shard) if args.shard else None
    arch = Arch(args.arch) if args.arch else None
    arches = [arch] if arch else [Arch.AARCH64, Arch.AARCH32]
    builds = qemu_builds_of(args, arches)
    available = builds_cpus(builds, arches)
    # The models as each QEMU reports them: max follows its ID registers; a
    # named core that differs from its table is a finding.  The matrix is
    # made for the first build's models; a build whose model of a CPU
    # differs does not run that CPU (recorded as not run, with why).
    wanted = cpu_selection(arch, args.cpu, available)
    models = {b.label: machine_models([(a, c) for a, c in wanted
                                       if a in b.paths and c in qemu_cpus(b.paths[a])],
                                      b.paths)
              for b in builds}
    machines = models[builds[0].label]
    model_gaps = {b.label: {key: f"QEMU {b.label}'s -cpu {key[1]} is not the CPU model "
                                 f"QEMU {builds[0].label}'s is (ID registers); run it alone"
                            for key, m in models[b.label].items()
                            if key in machines and m.model != machines[key].model}
                  for b in builds[1:]}
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
    seed = 1 if args.seed is None else args.seed
    cases = args.cases or NIGHTLY_CASES
    fanout = NIGHTLY_FANOUT if args.fanout is None else args.fanout
    budget = args.budget or (NIGHTLY_BUDGET if nightly else None)
    recorded = dict(_given(args), seed=seed, cases=cases, fanout=fanout, budget=budget,
                    shard=f"{shard[0]}/{shard[1]}" if shard else None,
                    baseline=str(Path(baseline).resolve()) if baseline else "none")
    opts = RunOptions(out=args.out, seed=seed, cases_per_entry=cases, budget=budget,
                      jobs=jobs, shard=shard, baseline=baseline,
                      qemu={Arch.AARCH64: args.qemu_aarch64, Arch.AARCH32: args.qemu_arm},
                      resume=args.resume, fanout=fanout, qemus=tuple(builds),
                      recorded=recorded, qemu_args=tuple(qemu_arg_list(args.qemu_arg)),
                      keep=args.keep, model_gaps=model_gaps)
    if args.vtcr is not None:
        # Say what the reference makes of the value before anything runs.
        for line in vtcr_notice(entries[0]):
            print(line, file=io.out, flush=True)
    progress = Progress(enabled=io.tty, out=io.out, budget=budget)

    def started(header: RunHeader) -> None:
        # The run's size, before anything runs (the probe count is an
        # estimate: each case places ~60 entries, each fanned out).
        probes = (header.cases or 0) * (60 + 60 * opts.fanout)
        on = ("" if len(builds) == 1 else
              f" on {len(builds)} QEMUs ({', '.join(b.label for b in builds)})")
        print(f"s2diff run: {header.entries} configurations, {header.cases} cases in "
              f"{header.batches} batches{on}, about {probes:,} probes "
              f"(seed {opts.seed}, {opts.cases_per_entry} cases per configuration, fan-out "
              f"{opts.fanout}{', budget %.0f s' % opts.budget if opts.budget else ''}"
              f"{', shard %d/%d' % shard if shard else ''}); output in {args.out}",
              file=io.out, flush=True)
        progress.start(header)

    with progress:
        outcome = run_matrix(entries, opts, argv=sys.argv, on_records=progress.update,
                             on_start=started, preamble=[
                                 dataclasses.replace(r, qemu=label) for label, ms in models.items()
                                 for r in model_records(ms.values())])
    ran_models = {(version_number(mm.qemu_version), a.value, c): mm.model
                  for per_build in models.values() for (a, c), mm in per_build.items()}
    result = finish_run(args.out, outcome, baseline, io, case_files=args.case_files,
                        models=ran_models)
    if args.keep is not None:
        print(f"boots kept in {args.keep}/batch-N; re-run one by hand: sh "
              f"{args.keep}/batch-N/rerun.sh", file=io.out)
    if args.shrink and not outcome.interrupted:
        shrink_root_causes(args.out, args, io)
    return result


def finish_run(out: Path, outcome: RunOutcome, baseline: Path | None, io: Streams,
               case_files: int = CASE_FILES_PER_CAUSE,
               models: Mapping[tuple[str, str, str], CpuModel] | None = None) -> Outcome:
    """Reports for a finished run, and its outcome: FOUND for a new
    divergence or a reproduced crash, INFRASTRUCTURE when nothing could
    run, else OK.  Case files beyond ``case_files`` per root cause are
    removed first (harness.report.casefiles).  An interrupted run ends at
    once (INTERRUPTED): its records are on disk, and rebuilding the reports
    of a long run takes seconds; `s2diff report` or `--resume` does it."""
    if outcome.interrupted:
        print(f"interrupted: {outcome.batches_run} of {outcome.batches_planned} batches finished "
              f"and recorded in {out / RECORDS}; reports: s2diff report {out}; continue with "
              f"s2diff run --resume --out {out}", file=io.err)
        return Outcome.INTERRUPTED
    prune_case_files(out, case_files)
    run = load_run([out])
    written = write_reports(run, out)
    print_summary(run, io, out)
    if baseline is not None:
        for entry in stale_entries(load_baseline(baseline), outcome.known_used, outcome.ran,
                                   models=models):
            print(f"STALE: baseline entry {entry.id} matched nothing although its configuration "
                  f"ran (fixed? case: {entry.case or 'its -cpu model, ' + ', '.join(entry.cpus)})", file=io.out)
    for name, path in written.items():
        print(f"{name}: {path}", file=io.out)
    for finding in outcome.findings:
        kind = finding.kind.value if finding.kind else None
        print(f"FINDING: QEMU {kind} reproduced by one case (key {finding.key}, "
              f"probe {finding.probe}): {out / (finding.case_file or '')} "
              f"(s2diff repro re-runs it)", file=io.out)
    print_crash_families(out, outcome.crashes, io)
    statuses = outcome.batch_status
    if statuses and not statuses.get(BatchStatus.COMPLETED, 0) and not outcome.findings \
            and not outcome.crashes:
        # Nothing ran to the end: QEMU or the harness is unusable here.
        print("nothing could run: no batch completed (see the summary's batch diagnostics)",
              file=io.err)
        return Outcome.INFRASTRUCTURE
    found = new_divergences(run) or outcome.findings or outcome.new_crash_families
    return Outcome.FOUND if found else Outcome.OK


def print_crash_families(out: Path, crashes: Sequence[CrashRecord], io: Streams) -> None:
    """One CRASH line per crash family (QEMU, signature): how many probes
    QEMU died or hung on, how many were held back, the case file of the
    single probe that reproduces it, known or new."""
    families: dict[tuple[str, str], list[CrashRecord]] = {}
    for c in crashes:
        families.setdefault((c.qemu, c.signature), []).append(c)
    for (label, signature), members in sorted(families.items()):
        files = [c.case_file for c in members if c.case_file]
        checked = [c for c in members if c.reproduced is not None]
        if files and any(c.reproduced for c in members):
            how = f"reproduced by one probe: {out / files[0]}"
        elif files:
            how = f"not by one probe alone; isolated to {out / files[0]}"
        elif checked:
            how = "not reproduced by a re-run (infrastructure, not a finding)"
        else:
            how = "not checked"
        state = crash_family_state(members)
        keys = sorted({c.quarantine for c in members if c.quarantine})
        print(f"CRASH{'' if state == 'new' else ' (' + state + ')'}: "
              f"{'QEMU ' + label + ': ' if label else ''}{signature} -- QEMU died on "
              f"{len(members)} probe(s) ({'; '.join(keys)}); {how}", file=io.out)


COMMANDS = (
    Subcommand("run", "the differential run over the configuration matrix (default: the "
               "nightly matrix)", _run_arguments, run_run),
)
