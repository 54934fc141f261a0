"""`s2diff configs`: the catalogue of legal stage-2 configurations per CPU
model, or one VTCR value decoded and judged (reference.catalogue)."""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table

from reference import catalogue as cat
from reference.arch import Arch, Granule
from reference.cpus import CpuModel, cpu_names, get_cpu

from ..errors import QemuError, UsageError
from ..qemu.builds import resolve, version_number
from ..qemu.launcher import qemu_cpus
from ..qemu.models import machine_model
from .common import (
    IPA_RANGE,
    Outcome,
    Streams,
    Subcommand,
    granule_list,
    hex_value,
    ipa_list,
    name_list,
)

Listing = list[tuple[CpuModel, list[cat.Entry]]]


def _configs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=[a.value for a in Arch], default=Arch.AARCH64.value,
                   help="aarch64 (VTCR_EL2) or arm (AArch32 VTCR); default aarch64")
    p.add_argument("--cpu", type=name_list, metavar="NAME[,NAME]",
                   help="CPU models (default: all of the architecture)")
    p.add_argument("--ipa", type=ipa_list, metavar="BITS[,BITS]",
                   help=f"IPA sizes in bits, {IPA_RANGE[0]}..{IPA_RANGE[1]} "
                        f"(default: 32..52 for aarch64, 25..40 for arm)")
    p.add_argument("--granule", type=granule_list, metavar="G[,G]",
                   help="granules: 4k, 16k, 64k (default: all the CPU has)")
    p.add_argument("--vtcr", type=hex_value, metavar="HEX",
                   help="judge this VTCR_EL2 (or VTCR) value instead of listing")
    p.add_argument("--vttbr", type=hex_value, metavar="HEX",
                   help="with --vtcr: the VTTBR_EL2 (or VTTBR) value, default 0")
    p.add_argument("--qemu", metavar="PATH",
                   help="the CPU models as this QEMU reports them (a folder with "
                        "qemu-system-aarch64/-arm, one of them, or a cached suite such as "
                        "sid): max follows its ID registers; a named core that reports other "
                        "values than its model is noted")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _select_cpus(arch: Arch, names: list[str] | None) -> list[CpuModel]:
    if not names:
        return [get_cpu(arch, n) for n in cpu_names(arch)]
    cpus = []
    for name in dict.fromkeys(names):
        try:
            cpus.append(get_cpu(arch, name))
        except ValueError as exc:
            raise UsageError(f"--cpu: {exc}") from None
    return cpus


_CONFIGS_EPILOG = """\
Without --vtcr: every valid (granule, IPA size, start level) per CPU model,
KVM's choice marked with *.  With --vtcr: the register decoded and judged;
exit status 1 if it is invalid on a selected CPU model."""


def _machine_cpus(arch: Arch, cpus: list[CpuModel], spec: str,
                  io: Streams) -> list[CpuModel]:
    """The models of ``cpus`` as the QEMU ``spec`` (--qemu) reports them:
    a model that follows the machine (max) from its ID registers, a named
    one from the table, with a note per difference; a -cpu that QEMU does
    not have is left out with a note."""
    binary = resolve(spec).path(arch)
    have = qemu_cpus(binary)
    out = []
    for cpu in cpus:
        if cpu.name not in have:
            io.note(f"{binary} has no {arch.value} -cpu {cpu.name}")
            continue
        try:
            mm = machine_model(arch, cpu.name, binary)
        except QemuError as exc:
            raise UsageError(f"--qemu {spec}: -cpu {cpu.name}: {exc}") from None
        for d in mm.differences:
            io.note(f"{cpu.name} on QEMU {version_number(mm.qemu_version)}: {d.describe()} "
                    "(the named model is used)")
        out.append(mm.model)
    if not out:
        raise UsageError(f"--qemu {spec}: none of the CPU models selected is in this QEMU")
    return out


def run_configs(args: argparse.Namespace, io: Streams) -> Outcome:
    arch = Arch(args.arch)
    cpus = _select_cpus(arch, args.cpu)
    if args.qemu:
        cpus = _machine_cpus(arch, cpus, args.qemu, io)
    if args.vtcr is None:
        if args.vttbr is not None:
            raise UsageError("--vttbr: only with --vtcr")
        return _list_configs(args, arch, cpus, io)
    for option in ("ipa", "granule"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option}: selects catalogue entries, it does not apply to --vtcr")
    return _judge_vtcr(args, arch, cpus, io)


# -- the catalogue -----------------------------------------------------------

def _granule_missing(cpu: CpuModel, granule: Granule) -> str:
    if cpu.arch is Arch.AARCH32:
        return f"{cpu.name} (arm) has no {granule.label} granule: AArch32 stage 2 uses 4K only"
    n = {Granule.G4K: "4", Granule.G16K: "16", Granule.G64K: "64"}[granule]
    return (f"{cpu.name} has no {granule.label} granule at stage 2 "
            f"(ID_AA64MMFR0_EL1.TGran{n}_2 / TGran{n}: not implemented)")


def _ipa_missing(cpu: CpuModel, ipa: int, granules: list[Granule]) -> str:
    if cpu.arch is Arch.AARCH32:
        return (f"{cpu.name} (arm) has no {ipa}-bit IPA: AArch32 stage 2 takes 25..40 bits "
                f"(AArch32.S2IASize)")
    for g in granules:
        lo, hi = cat.ipa_limits(cpu, g)
        if ipa > hi:
            return (f"{cpu.name} has no {ipa}-bit IPA with {g.label}: AArch64.S2MinTxSZ limits "
                    f"it to {hi} bits (PAMax {cpu.pamax})")
        if ipa < lo:
            return (f"{cpu.name} has no {ipa}-bit IPA with {g.label}: AArch64.MaxTxSZ needs at "
                    f"least {lo} bits (no FEAT_TTST)")
    return f"{cpu.name} has no valid configuration with a {ipa}-bit IPA"


def _list_configs(args: argparse.Namespace, arch: Arch, cpus: list[CpuModel],
                  io: Streams) -> Outcome:
    wanted = args.granule or list(Granule)
    listing: list[tuple[CpuModel, list[cat.Entry]]] = []
    notes: list[str] = []
    for cpu in cpus:
        granules = [g for g in dict.fromkeys(wanted) if cpu.s2_granule_supported(g)]
        if args.granule:
            notes.extend(_granule_missing(cpu, g) for g in dict.fromkeys(wanted)
                         if g not in granules)
        entries = cat.catalogue(cpu, args.ipa, granules)
        if args.ipa and granules:
            have = {e.ia_bits for e in entries}
            notes.extend(_ipa_missing(cpu, ipa, granules) for ipa in dict.fromkeys(args.ipa)
                         if ipa not in have)
        if entries:
            listing.append((cpu, entries))
    if not listing:
        raise UsageError("nothing to list: " + "; ".join(notes) if notes else
                         "nothing to list")
    if args.json:
        json.dump([cat.entry_record(e) for _, es in listing for e in es], io.out, indent=2)
        io.out.write("\n")
    elif io.tty:
        _print_rich(listing, arch, io)
    else:
        _print_plain(listing, arch, io)
    for text in notes:
        io.note(text)
    return Outcome.OK


def _size(n: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


_COLUMNS = ("KVM", "granule", "IPA", "T0SZ", "SL0", "DS/SL2", "start", "levels", "concat",
            "root table", "VTTBR align", "PS", "OA", "VTCR", "remark")
_RIGHT = {"IPA", "T0SZ", "start", "levels", "concat", "root table", "VTTBR align", "OA"}


def _row(e: cat.Entry) -> list[str]:
    c = e.config
    a64 = c.arch is Arch.AARCH64
    flags = " ".join(n for n, v in (("DS", c.ds), ("SL2", c.sl2)) if a64 and v)
    return ["*" if cat.Convention.KVM in e.conventions else "", e.granule.label, str(e.ia_bits),
            str(c.t0sz), f"{c.sl0:02b}", flags, f"L{e.start_level}", str(e.geometry.levels),
            str(e.geometry.concat), _size(e.geometry.root_bytes), _size(e.vttbr_align),
            f"{c.ps:03b}" if a64 else "-", str(e.oa_bits),
            f"{c.vtcr():#x}", e.remark]


def _feature_text(cpu: CpuModel) -> str:
    """The stage-2 features a model has, decoded from its ID registers."""
    f = cpu.features()
    names = [n for n in ("FEAT_LPA", "FEAT_LPA2", "FEAT_TTST", "FEAT_XNX", "FEAT_S2FWB",
                         "FEAT_S2PIE") if f[n]]
    if f["FEAT_HAFDBS"]:
        names.append(f"FEAT_HAFDBS {f['FEAT_HAFDBS']}")
    if f["FEAT_BBM"]:
        names.append(f"FEAT_BBM {f['FEAT_BBM']}")
    return ", ".join(names) or "none of LPA/LPA2/TTST/XNX/S2FWB/S2PIE/HAFDBS"


def _cpu_title(cpu: CpuModel) -> str:
    granules = ", ".join(g.label for g in cpu.s2_granules)
    version = f"ARMv{cpu.arch_version}; " if cpu.arch is Arch.AARCH32 else ""
    return (f"{cpu.name} ({cpu.arch.value}; {cpu.description}; {version}PAMax {cpu.pamax}; "
            f"stage-2 granules {granules}; {_feature_text(cpu)})")


def _legend(arch: Arch) -> list[str]:
    if arch is Arch.AARCH64:
        return [
            "* KVM's choice: kvm_get_vtcr (arch/arm64/kvm/hyp/pgtable.c), levels = "
            "ARM64_HW_PGTABLE_LEVELS(IPA - 4), at least 2, start level = 4 - levels.",
            "Xen's choice: pa_range_info in xen/arch/arm/mmu/p2m.c (4k, IPA = PA size).",
            "Unmarked rows are legal alternatives (same granule and IPA, another start level).",
            "PS: the CPU's PARange as KVM programs it (48 bits without DS for 4k/16k); any PS "
            "is legal, a smaller one only lowers the output size OA "
            "(AArch64.PhysicalAddressSize).",
        ]
    return [
        "* KVM's choice: KVM/arm (arch/arm/include/asm/kvm_arm.h, Linux <= 5.6): "
        "40-bit IPA, SL0 = 1.",
        "Xen's choice: pa_range_info in xen/arch/arm/mmu/p2m.c (CONFIG_ARM_32).",
        "Output size is 40 bits (AArch32.S2Walk).",
    ]


def _print_plain(listing: Listing, arch: Arch, io: Streams) -> None:
    for cpu, entries in listing:
        rows = [list(_COLUMNS)] + [_row(e) for e in entries]
        widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
        print(_cpu_title(cpu), file=io.out)
        for r in rows:
            cells = [cell.rjust(w) if name in _RIGHT else cell.ljust(w)
                     for name, cell, w in zip(_COLUMNS, r, widths)]
            print("  " + "  ".join(cells).rstrip(), file=io.out)
        print(file=io.out)
    for line in _legend(arch):
        print(line, file=io.out)


# The terminal view fits 80 columns: T0SZ, SL0, DS/SL2 and PS are in the
# VTCR value, and the remark is left to the plain and JSON forms.
_RICH_COLUMNS = ("", "gran", "IPA", "start", "lvl", "cat", "root", "align", "OA", "VTCR")
_RICH_LEGEND = ("x = Xen's choice; start = start level, lvl = levels, cat = concatenated "
                "tables at the start level, root = their size, align = VTTBR alignment, "
                "OA = output bits.")


def _print_rich(listing: Listing, arch: Arch, io: Streams) -> None:
    console = Console(file=io.out)
    for cpu, entries in listing:
        table = Table(title=_cpu_title(cpu), title_justify="left", box=None, padding=(0, 1),
                      pad_edge=False, header_style="bold")
        for name in _RICH_COLUMNS:
            table.add_column(name, no_wrap=True,
                             justify="left" if name in ("", "gran", "VTCR") else "right")
        for e in entries:
            row = dict(zip(_COLUMNS, _row(e)))
            mark = row["KVM"] + ("x" if cat.Convention.XEN in e.conventions else "")
            table.add_row(mark, row["granule"], row["IPA"], row["start"], row["levels"],
                          row["concat"], row["root table"], row["VTTBR align"], row["OA"],
                          row["VTCR"],
                          style="bold green" if cat.Convention.KVM in e.conventions else None)
        console.print(table)
        console.print()
    for line in [_RICH_LEGEND, *_legend(arch)]:
        console.print(line, highlight=False, markup=False)


# -- one register value ------------------------------------------------------

def _judge_vtcr(args: argparse.Namespace, arch: Arch, cpus: list[CpuModel],
                io: Streams) -> Outcome:
    width = 64 if arch is Arch.AARCH64 else 32
    register = "VTCR_EL2" if arch is Arch.AARCH64 else "VTCR"
    if args.vtcr >> width:
        raise UsageError(f"--vtcr: {args.vtcr:#x} does not fit {register} ({width} bits)")
    vttbr = args.vttbr or 0
    if vttbr >> 64:
        raise UsageError(f"--vttbr: {vttbr:#x} does not fit VTTBR (64 bits)")
    verdicts = [cat.judge(cpu, cat.vtcr_config(cpu, args.vtcr, vttbr)) for cpu in cpus]
    if args.json:
        json.dump([cat.verdict_record(v) for v in verdicts], io.out, indent=2)
        io.out.write("\n")
    else:
        for v in verdicts:
            _print_verdict(v, args.vtcr, io)
    return Outcome.OK if all(v.valid for v in verdicts) else Outcome.FOUND


def _reading_text(r: cat.Reading) -> str:
    g = r.geometry
    # A reading that walks has its geometry, granule and alignment.
    assert g is not None and r.granule is not None and r.vttbr_align is not None
    tables = f"{g.concat} concatenated tables" if g.concat > 1 else "1 table"
    return (f"{r.granule.label} granule, {r.ia_bits}-bit IPA, start level {r.start_level}, "
            f"{g.levels} levels, {tables} at the start level ({_size(g.root_bytes)}, VTTBR "
            f"aligned to {_size(r.vttbr_align)}), output {r.oa_bits} bits")


def _print_verdict(v: cat.Verdict, vtcr: int, io: Streams) -> None:
    out = io.out
    c = v.config
    register = "VTCR_EL2" if c.arch is Arch.AARCH64 else "VTCR"
    print(f"{v.cpu.name} ({c.arch.value}, PAMax {v.cpu.pamax}): {register} = {vtcr:#x}, "
          f"VTTBR = {c.vttbr:#x}", file=out)
    for f in cat.decode_vtcr(c.arch, vtcr, v.start_level):
        bits = f"[{f.hi}:{f.lo}]" if f.hi != f.lo else f"[{f.hi}]"
        value = (str(f.value) if f.name == "T0SZ" or f.hi == f.lo
                 else f"{f.value:#0{f.hi - f.lo + 3}b}")
        print(f"  {f.name:<6}{bits:<9}{value:<6} {f.meaning}", file=out)
    other = cat.uninterpreted_bits(c.arch, vtcr)
    if other:
        print(f"  bits {other:#x} are set but not interpreted by the model "
              f"(RES0, or a feature it does not implement)", file=out)
    walking = [r for r in v.readings if r.walks]
    unique = v.valid and None not in (v.granule, v.ia_bits, v.start_level)
    if unique:
        print("  valid: " + _reading_text(walking[0]), file=out)
        if v.choices:
            print("  (the same under every permitted choice:)", file=out)
            _print_choices(v.choices, out)
    elif v.valid:
        print("  valid, but the geometry depends on the choices:", file=out)
        for r in walking:
            _print_choices(r.choices, out)
            print("      -> " + _reading_text(r), file=out)
    else:
        print("  INVALID: " + ("some permitted readings fault before the walk" if walking
                               else "every access faults before the walk"), file=out)
        if len(v.readings) > 4:
            # Many readings come from one choice (e.g. an UNKNOWN T0SZ): summarise.
            _print_choices(v.choices, out)
            print(f"    {len(walking)} of {len(v.readings)} readings walk; the others fault:",
                  file=out)
            for problem, fault in dict.fromkeys((r.problem, r.fault) for r in v.readings
                                                if not r.walks):
                # A reading that does not walk has the fault that stops it.
                print(f"    {problem} -> {fault.describe() if fault else '?'}", file=out)
        else:
            for r in v.readings:
                _print_choices([text for text in r.choices if text != r.problem], out)
                if r.walks:
                    print("      -> walks: " + _reading_text(r), file=out)
                else:
                    print(f"    {r.problem} -> {r.fault.describe() if r.fault else '?'}",
                          file=out)
    for text in v.notes:
        print(f"  note: {text}", file=out)
    if unique:
        print("  " + _conventions_text(v), file=out)
    print(file=out)


def _conventions_text(v: cat.Verdict) -> str:
    marks = cat.verdict_conventions(v)
    kvm = "yes" if cat.Convention.KVM in marks else "no"
    xen = "yes" if cat.Convention.XEN in marks else "no"
    lo, hi = cat.kvm_ipa_range(v.cpu)
    # Called for a unique valid reading: granule and IPA size are known.
    assert v.granule is not None and v.ia_bits is not None
    if kvm == "no" and v.config.arch is Arch.AARCH64 and lo <= v.ia_bits <= hi:
        kvm += (f" (KVM starts a {v.ia_bits}-bit {v.granule.label} walk at level "
                f"{cat.kvm_start_level(v.granule, v.ia_bits)})")
    return f"KVM's choice: {kvm}; Xen's choice: {xen}"


def _print_choices(choices: Sequence[str], out: TextIO) -> None:
    shown = list(choices) if len(choices) <= 4 else list(choices[:2])
    for text in shown:
        print(f"    choice: {text}", file=out)
    if len(shown) < len(choices):
        print(f"    ... and {len(choices) - len(shown)} more choices of the same kind", file=out)


COMMANDS = (
    Subcommand("configs", "list the valid stage-2 configurations, or judge one VTCR value",
               _configs_arguments, run_configs, epilog=_CONFIGS_EPILOG),
)
