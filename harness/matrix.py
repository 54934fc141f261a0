"""The configuration matrix: which (CPU model, stage-2 configuration)
entries a run covers.  Data, built from the reference's catalogue.

The default (nightly) matrix is every valid configuration for IPA sizes 32,
36, 40, 42, 44, 48 and 52 bits on every AArch64 CPU model and granule it
supports (25..40 bits on 32-bit ARM), the hardware Access flag / dirty
state variants on the models that implement FEAT_HAFDBS, KVM's choices with
stage-2 permission indirection on the models with FEAT_S2PIE (as the QEMU in
use reports them), KVM's 40-bit choices with a misaligned VTTBR, and the
invalid-configuration families, each named after the rule it breaks.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

from reference.arch import Arch, Granule
from reference.catalogue import (
    AARCH32_IPA_SIZES,
    Convention,
    catalogue,
    judge,
    kvm_start_level,
    vtcr_config,
)
from reference.config import (
    PS_ENCODING,
    TG0_ENCODING,
    S2Config,
    aarch32_config,
    aarch64_config,
)
from reference.cpus import CPUS, CpuModel, cpu_names, get_cpu, model_differences
from reference.generate import OptIn

from .errors import UsageError
from .kinds import CaseKind
from .plan import MatrixEntry

NIGHTLY_IPA_SIZES = (32, 36, 40, 42, 44, 48, 52)


def _name(cpu: CpuModel, config: S2Config, tag: str) -> str:
    g = config.granule.label if config.granule else f"tg0-{config.tg0}"
    extra = "".join(f"-{n}" for n in ("ha", "hd", "ds", "s2pie") if getattr(config, n, 0))
    return f"{cpu.arch.value}/{cpu.name}/{g}/ipa{config.ia_bits}/sl0-{config.sl0}{extra}/{tag}"


def valid_entries(cpu: CpuModel, ipa_sizes: Iterable[int] | None,
                  granules: Iterable[Granule] | None) -> list[MatrixEntry]:
    """The catalogue of ``cpu`` as matrix entries, KVM's choices marked."""
    out = []
    for e in catalogue(cpu, ipa_sizes, granules):
        kvm = Convention.KVM in e.conventions
        start = e.geometry.start_level
        tag = f"L{start}x{e.geometry.concat}" + ("-kvm" if kvm else "")
        group = f"{cpu.arch.value} {e.granule.label}" if cpu.arch is Arch.AARCH64 else "arm lpae"
        out.append(MatrixEntry(name=_name(cpu, e.config, tag), group=group, arch=cpu.arch,
                               cpu=cpu.name, config=e.config, valid=True, kvm=kvm))
    return out


def hafdbs_entries(cpu: CpuModel, ipa_sizes: Iterable[int] | None,
                   granules: Iterable[Granule] | None) -> list[MatrixEntry]:
    """KVM's choices again with VTCR_EL2.HA (and HA+HD) set, on models with
    FEAT_HAFDBS: exercises the hardware Access flag and dirty-state rules;
    and, with the highest HA/HD the model has, the first entry of every
    (granule, start level, DS) KVM never chooses, so that those rules are
    met from every start level (harness.coverage's cells)."""
    if cpu.arch is not Arch.AARCH64 or cpu.hafdbs == 0:
        return []
    out = []
    entries = valid_entries(cpu, ipa_sizes, granules)
    variants = ((1, 0), (1, 1)) if cpu.hafdbs >= 2 else ((1, 0),)

    def shape(e: MatrixEntry) -> tuple:
        return (e.config.tg0, e.config.sl0, e.config.sl2, e.config.ds)

    covered = {shape(e) for e in entries if e.kvm}
    for e in entries:
        if e.kvm:
            chosen = variants
        elif shape(e) not in covered:
            covered.add(shape(e))
            chosen = variants[-1:]
        else:
            continue
        for ha, hd in chosen:
            cfg = dataclasses.replace(e.config, ha=ha, hd=hd)
            out.append(dataclasses.replace(e, name=_name(cpu, cfg, "kvm" if e.kvm else "other"),
                                           config=cfg, group="aarch64 hafdbs"))
    return out


def s2pie_entries(cpu: CpuModel, ipa_sizes: Iterable[int] | None,
                  granules: Iterable[Granule] | None) -> list[MatrixEntry]:
    """KVM's choices with VTCR_EL2.S2PIE = 1 on models with FEAT_S2PIE (as
    the QEMU in use reports them: max from QEMU 10.2 on), with (HA, HD) =
    (0, 0), (1, 0) and (1, 1) where FEAT_HAFDBS allows: each case draws an
    S2PIR_EL2 holding every Perm encoding and places a leaf for every
    PIIndex (reference.generate), and under S2PIE the dirty state is
    descriptor bit 7 (AArch64.S2CheckPermissions, the S2PIE paths)."""
    if cpu.arch is not Arch.AARCH64 or not cpu.feat_s2pie:
        return []
    variants = [(0, 0)] + [(1, 0)] * (cpu.hafdbs >= 1) + [(1, 1)] * (cpu.hafdbs >= 2)
    out = []
    for e in valid_entries(cpu, ipa_sizes, granules):
        if not e.kvm:
            continue
        for ha, hd in variants:
            cfg = dataclasses.replace(e.config, s2pie=1, ha=ha, hd=hd)
            out.append(dataclasses.replace(e, name=_name(cpu, cfg, "kvm"), config=cfg,
                                           group="aarch64 s2pie"))
    return out


# The IPA size of the access entries: one KVM choice per granule (every
# model has a 40-bit one), so that every model and granule is covered.
ACCESS_IPA_BITS = 40


def access_entries(cpu: CpuModel, granules: Iterable[Granule] | None = None) -> list[MatrixEntry]:
    """Access cases (harness.kinds.CaseKind.ACCESS: loads, stores, DC ZVA,
    fetches from EL1 / PL1, TLB and VMID steps) for KVM's 40-bit choice of
    every granule of the model, and once more with VTCR_EL2.HA = HD = 1 on
    models with FEAT_HAFDBS level 2 (a real store sets the dirty state of
    a DBM page, which no AT does)."""
    out = []
    kvm = [e for e in valid_entries(cpu, [ACCESS_IPA_BITS], granules) if e.kvm]
    group = f"{cpu.arch.value} access" if cpu.arch is Arch.AARCH64 else "arm access"
    for e in kvm:
        out.append(dataclasses.replace(e, name=_name(cpu, e.config, "access"), group=group,
                                       kind=CaseKind.ACCESS))
    if cpu.arch is Arch.AARCH64 and cpu.hafdbs >= 2 and kvm:
        cfg = dataclasses.replace(kvm[0].config, ha=1, hd=1)
        out.append(dataclasses.replace(kvm[0], name=_name(cpu, cfg, "access"), config=cfg,
                                       group=group, kind=CaseKind.ACCESS))
    return out


def stage1_entries(cpu: CpuModel, granules: Iterable[Granule] | None = None) -> list[MatrixEntry]:
    """Stage-1-on cases (harness.kinds.CaseKind.STAGE1: AT S12E*/S1E* with
    stage-1 tables walked through stage 2, S1PTW faults, combined
    attributes) on KVM's 40-bit choice of one stage-2 granule, the model's
    stage-1 shapes in turn case after case (granule, VA size, tables low or
    high in IPA space; AArch32 LPAE: above 4 GiB).  One entry per model:
    the reference's two-stage walk costs ~3 ms a probe, so the group is
    kept to what the nightly can afford.  The stage-2 granule is the
    model's n-th, n its place in the table, so that the models between them
    walk stage 1 through every stage-2 granule."""
    kvm = [e for e in valid_entries(cpu, [ACCESS_IPA_BITS], granules) if e.kvm]
    if not kvm:
        return []
    e = kvm[cpu_names(cpu.arch).index(cpu.name) % len(kvm)] \
        if cpu.name in cpu_names(cpu.arch) else kvm[0]
    group = f"{cpu.arch.value} stage 1" if cpu.arch is Arch.AARCH64 else "arm stage 1"
    return [dataclasses.replace(e, name=_name(cpu, e.config, "stage1"), group=group,
                                kind=CaseKind.STAGE1)]


def misaligned_vttbr_entries(cpu: CpuModel) -> list[MatrixEntry]:
    """KVM's 40-bit choice of every granule with a VTTBR whose base has
    RES0 bits set (reference.generate.OptIn.MISALIGNED_VTTBR): a base not
    aligned to the start-level tables' size is CONSTRAINED UNPREDICTABLE
    (Arm ARM D24.2.225 VTTBR_EL2.BADDR, G8.2.173 VTTBR.BADDR: the bits are
    treated as zero, or the walk reads at the misaligned address), UNPREDICTABLE
    on ARMv7 (K1.1.15); the reference permits each reading."""
    out = []
    for e in valid_entries(cpu, [40], None):
        if not e.kvm:
            continue
        out.append(dataclasses.replace(
            e, name=_name(cpu, e.config, "misaligned-vttbr"),
            group="constrained unpredictable: misaligned VTTBR",
            opt_in=frozenset({OptIn.MISALIGNED_VTTBR})))
    return out


def invalid_entries(cpu: CpuModel) -> list[MatrixEntry]:
    """One entry per configuration rule that ``cpu`` can break, plus the
    legal-but-unusual families (PS above PARange, IPA larger than PS, a
    VTTBR base beyond PS) and the CONSTRAINED UNPREDICTABLE misaligned
    VTTBR base, whose cases set their VTTBR themselves (MatrixEntry.opt_in).
    Each is judged by the reference, which names the rule; the family name
    only groups them."""
    fam: list[tuple[str, S2Config]] = []
    # Families whose cases set the VTTBR themselves (reference.generate.OptIn).
    opt: list[tuple[str, S2Config, OptIn]] = []
    beyond, misaligned = "legal: VTTBR base beyond PS", "unpredictable: misaligned VTTBR"
    if cpu.arch is Arch.AARCH32:
        fam += [
            ("invalid: reserved SL0", dataclasses.replace(aarch32_config(40, 1), sl0=0b10)),
            ("invalid: VTCR.S != T0SZ[3]", dataclasses.replace(aarch32_config(40, 1), s=0)),
            ("invalid: inconsistent start level", aarch32_config(25, 1)),
            ("invalid: inconsistent start level", aarch32_config(40, 2)),
        ]
        opt += [(beyond, aarch32_config(32, 1), OptIn.VTTBR_BEYOND_PS),
                (misaligned, aarch32_config(38, 1), OptIn.MISALIGNED_VTTBR)]
    else:
        pa = cpu.pamax
        g4 = Granule.G4K
        ps_max = PS_ENCODING[min(pa, 48)]

        def cfg(granule: Granule, ia: int, level: int, **kw) -> S2Config:
            return aarch64_config(granule, ia, level, ps_bits=min(pa, 48), **kw)

        above = min(pa + 1, 53)
        fam.append(("invalid: T0SZ below minimum", dataclasses.replace(
            cfg(g4, 40, 1), t0sz=64 - above, sl0=0b10 if above > 43 else 0b01)))
        fam.append(("invalid: T0SZ above maximum", dataclasses.replace(cfg(g4, 25, 2), t0sz=40)))
        if cpu.feat_ttst:
            # FEAT_TTST raises the maximum T0SZ to 48 (4K): 49 is above it.
            fam.append(("invalid: T0SZ above maximum", dataclasses.replace(
                cfg(g4, 25, 2), t0sz=49, sl0=0b11)))
        fam.append(("invalid: reserved SL0", dataclasses.replace(cfg(g4, 40, 1), sl0=0b11)))
        if Granule.G64K in cpu.s2_granules:
            fam.append(("invalid: reserved SL0",
                        dataclasses.replace(cfg(Granule.G64K, 42, 2), sl0=0b11)))
            fam.append(("start level against PAMax", cfg(Granule.G64K, 44, 1)))
        fam.append(("start level against PAMax", cfg(g4, 40, 0)))
        fam.append(("invalid: inconsistent start level", dataclasses.replace(cfg(g4, 40, 1), sl0=0b00)))
        fam.append(("invalid: inconsistent start level", dataclasses.replace(cfg(g4, 32, 1), sl0=0b10)))
        fam.append(("implementation defined: reserved TG0",
                    dataclasses.replace(cfg(g4, 40, 1), tg0=0b11)))
        for granule in Granule:
            if not cpu.s2_granule_supported(granule):
                fam.append(("implementation defined: unsupported granule", S2Config(
                    arch=Arch.AARCH64, t0sz=24, sl0=0b01, tg0=TG0_ENCODING[granule], ps=ps_max,
                    irgn0=1, orgn0=1, sh0=3)))
        fam.append(("legal: PS above PARange", dataclasses.replace(cfg(g4, 40, 1), ps=0b110)))
        # A PS below PARange makes output and table addresses between PS and
        # PAMax Address size faults: the only way to reach them on a model
        # whose descriptors cannot hold an address beyond PAMax.
        small = 40 if pa > 40 else 36
        for granule in cpu.s2_granules:
            fam.append(("legal: PS below PARange", dataclasses.replace(
                aarch64_config(granule, small - 4, kvm_start_level(granule, small - 4),
                               ps_bits=small))))
        if pa >= 40:
            fam.append(("legal: IPA larger than PS", dataclasses.replace(
                cfg(g4, 40, 1), ps=PS_ENCODING[36])))
        if Granule.G16K in cpu.s2_granules:
            # 16K start level 0 needs DS = 1; start level 1 needs PAMax >= 42.
            fam.append(("invalid: reserved SL0", dataclasses.replace(
                cfg(Granule.G16K, 40, 1), sl0=0b11)))
            if pa < 42:
                fam.append(("start level against PAMax", cfg(Granule.G16K, 40, 1)))
        if cpu.feat_lpa2:
            # SL2 = 1 with SL0 != 0 is reserved (4K, DS = 1).
            fam.append(("invalid: reserved SL0", dataclasses.replace(
                aarch64_config(g4, 48, 0, ps_bits=48, ds=1), sl2=1, sl0=0b01)))
            # A 52-bit IPA from level -1 over a 48-bit PS: table and output
            # addresses between 2^48 and 2^52 are Address size faults at
            # every level, level -1 included.
            fam.append(("legal: IPA larger than PS", aarch64_config(g4, 52, -1, ps_bits=48, ds=1)))
            # DS = 1: VTTBR_EL2[5:2] hold BADDR[51:48] (AArch64.S2TTBaseAddress).
            # (52-bit IPAs: the classes of the catalogue's DS entries.)
            opt.append((beyond, aarch64_config(g4, 52, 0, ps_bits=48, ds=1),
                        OptIn.VTTBR_BEYOND_PS))
            opt.append((beyond, aarch64_config(Granule.G16K, 52, 0, ps_bits=48, ds=1),
                        OptIn.VTTBR_BEYOND_PS))
        opt.append((beyond, aarch64_config(g4, 36, kvm_start_level(g4, 36), ps_bits=36),
                    OptIn.VTTBR_BEYOND_PS))
        opt.append((misaligned, aarch64_config(g4, 38, 1, ps_bits=min(pa, 48)),
                    OptIn.MISALIGNED_VTTBR))
    out = []
    seen = set()
    for group, config, opt_in in [(g, c, frozenset()) for g, c in fam] + [
            (g, c, frozenset({o})) for g, c, o in opt]:
        valid = judge(cpu, config).valid
        name = _name(cpu, config, group.split(":")[-1].strip().replace(" ", "-").replace(".", "")
                     .replace("!=", "ne").replace("[", "").replace("]", ""))
        if name in seen:
            continue
        seen.add(name)
        out.append(MatrixEntry(name=name, group=group, arch=cpu.arch, cpu=cpu.name,
                               config=config, valid=valid, opt_in=opt_in))
    return out


def cpu_selection(arch: Arch | None = None, names: Sequence[str] | None = None,
                  available: Mapping[Arch, frozenset[str]] | None = None
                  ) -> list[tuple[Arch, str]]:
    """(arch, -cpu) of every CPU model a matrix with these options covers
    (the models of harness.qemu.models are read for them)."""
    return [(m.arch, m.name) for m in _cpus(arch, names, available)]


def _cpus(arch: Arch | None, names: Sequence[str] | None,
          available: Mapping[Arch, frozenset[str]] | None = None,
          models: Mapping[tuple[Arch, str], CpuModel] | None = None) -> list[CpuModel]:
    """The CPU models of a matrix: those named (every one must be a known
    model, and one the QEMU in use provides), else every known model the
    QEMU provides (``available``: its -cpu names per architecture; None:
    every model)."""
    arches = [arch] if arch else [Arch.AARCH64, Arch.AARCH32]
    out = []
    for a in arches:
        if names:
            for n in names:
                if (a, n) in CPUS:
                    out.append(CPUS[(a, n)])
        else:
            out.extend(CPUS[(a, n)] for n in cpu_names(a)
                       if available is None or n in available.get(a, frozenset()))
    if names:
        known = {n for a in arches for n in cpu_names(a)}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"--cpu: unknown CPU model {unknown[0]!r} "
                             f"(known: {', '.join(sorted(known))})")
        if available is not None:
            missing = [m for m in out if m.name not in available.get(m.arch, frozenset())]
            if missing:
                raise UsageError(f"--cpu: the QEMU in use has no {missing[0].arch.value} "
                                 f"-cpu {missing[0].name}")
    # The model of the QEMU in use where one was read (max follows its ID registers).
    return [(models or {}).get((m.arch, m.name), m) for m in out]


def _with_model(entries: list[MatrixEntry], cpu: CpuModel) -> list[MatrixEntry]:
    """Entries that carry ``cpu`` when it is not the named table's model
    (registers the model does not list read as zero: equal values are the
    same model)."""
    named = CPUS.get((cpu.arch, cpu.name))
    if named is not None and named.arch_version == cpu.arch_version \
            and not model_differences(named, cpu) and not model_differences(cpu, named):
        return entries
    return [dataclasses.replace(e, model=cpu) for e in entries]


def build_matrix(*, arch: Arch | None = None, cpus: Sequence[str] | None = None,
                 granules: Sequence[Granule] | None = None, ipa_sizes: Sequence[int] | None = None,
                 vtcr: int | None = None, vttbr: int = 0,
                 invalid: bool = True,
                 available: Mapping[Arch, frozenset[str]] | None = None,
                 models: Mapping[tuple[Arch, str], CpuModel] | None = None,
                 probes: Sequence[CaseKind] | None = None) -> list[MatrixEntry]:
    """The matrix a run covers.  With no arguments: the nightly matrix.

    ``vtcr`` selects exactly one entry: that register value on the one CPU
    model named (validating one hypervisor's configuration).  ``available``
    (the -cpu names of the QEMU in use, per architecture) leaves out the
    models that QEMU does not provide; ``models`` (harness.qemu.models:
    the models as that QEMU reports them) replace the named table's, and
    the entries of a model that differs carry it.  ``probes``: the kinds of
    case wanted (harness.kinds.CaseKind; None: every kind, or only AT cases
    when granules or IPA sizes are selected); the stage-2 AT entries are
    always there (they are the matrix)."""
    if vtcr is not None:
        chosen = _cpus(arch, cpus, available, models)
        if len(chosen) != 1:
            raise UsageError("--vtcr needs exactly one --cpu (and --arch when the name is ambiguous)")
        cpu = chosen[0]
        limit = 1 << (64 if cpu.arch is Arch.AARCH64 else 32)
        if not 0 <= vtcr < limit:
            raise UsageError(f"--vtcr: {vtcr:#x} does not fit the {cpu.arch.value} VTCR")
        config = vtcr_config(cpu, vtcr, vttbr)
        verdict = judge(cpu, config)
        return _with_model([MatrixEntry(name=f"{cpu.arch.value}/{cpu.name}/vtcr-{vtcr:#x}",
                                        group="--vtcr", arch=cpu.arch, cpu=cpu.name,
                                        config=config, valid=verdict.valid)], cpu)
    entries: list[MatrixEntry] = []
    # Without a granule or IPA-size selection every kind of case is in; a
    # selection of stage-2 configurations asks for AT cases on them unless
    # ``probes`` says otherwise.
    selected = granules is not None or ipa_sizes is not None
    kinds = set(probes) if probes is not None else \
        ({CaseKind.AT} if selected else set(CaseKind))
    for cpu in _cpus(arch, cpus, available, models):
        sizes = ipa_sizes
        if sizes is None:
            sizes = NIGHTLY_IPA_SIZES if cpu.arch is Arch.AARCH64 else AARCH32_IPA_SIZES
        # The configuration families first: a run stopped by its budget
        # runs the first entries of every model (plan_batches), and these
        # few are where most of the rules only one configuration reaches
        # are (harness.coverage).
        mine = []
        if invalid and granules is None and ipa_sizes is None:
            mine += invalid_entries(cpu)
            mine += misaligned_vttbr_entries(cpu)
        mine += valid_entries(cpu, sizes, granules)
        mine += hafdbs_entries(cpu, sizes, granules)
        mine += s2pie_entries(cpu, sizes, granules)
        if CaseKind.ACCESS in kinds:
            mine += access_entries(cpu, granules)
        if CaseKind.STAGE1 in kinds:
            mine += stage1_entries(cpu, granules)
        entries += _with_model(mine, cpu)
    return entries


__all__ = ["ACCESS_IPA_BITS", "NIGHTLY_IPA_SIZES", "access_entries", "build_matrix",
           "cpu_selection", "get_cpu", "hafdbs_entries", "invalid_entries", "misaligned_vttbr_entries", "s2pie_entries", "stage1_entries",
           "kvm_start_level", "valid_entries"]
