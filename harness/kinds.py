"""The kinds of case a run plans, each a reference generator with its own
job image: AT probes with stage 1 off (reference.generate.Case, with
fan-out), real accesses from EL1 (reference.access_case.AccessCase), and AT
probes with stage 1 on (reference.generate_s1.S1Case).

For each kind: the PA window one case needs in the arena
(``case_window_bytes``), the generation (``generate_kind_case``) and the
job image the stub runs (``kind_job_image``; docs/job-abi.md).  Pure but
for nothing: no I/O here, the stub's EL1 window comes in as an argument.
"""
from __future__ import annotations

from typing import Union

import numpy as np

from reference.access_case import (
    AccessCase,
    AccessStep,
    DescWriteStep,
    El1Window,
    generate_access_case,
)
from reference.arch import Arch, Granule
from reference.config import S2Config
from reference.cpus import CpuModel
from reference.generate import Case, MemoryMap, OptIn, generate_case
from reference.generate_s1 import (
    S1Case,
    Stage1Shape,
    generate_s1_case,
    s1_window_bytes,
    stage1_shapes,
)
from reference.s1config import S1Config

from .qemu.job import KIND_DESC_WRITE, KIND_SET_VTTBR, PROBE_DTYPE, JobImage
from .vocabulary import CaseKind

FLAG_HCR_DC = 1 << 0        # access probe flags: run with HCR_EL2.DC = 1

# Data pages an access case may place (one granule each): every leaf level
# takes about a dozen (each permission, AF, fetches, DC ZVA, DBM, beyond
# the output size), the TLB steps three.
ACCESS_DATA_PAGES = 64


RunCase = Union[Case, AccessCase, S1Case]


def _stage2_window(config: S2Config) -> int:
    """Room for a full concatenated start level (16 tables) and ~60
    next-level tables of the granule."""
    granule = config.granule or Granule.G4K
    return 1 << (granule.bits + 7)


def stage1_shape(cpu: CpuModel, shape: Stage1Shape | None, index: int) -> Stage1Shape:
    """The stage-1 shape of case ``index`` of a STAGE1 entry: the entry's
    own, or (None) the shapes of the model in turn, case after case
    (reference.generate_s1.stage1_shapes): one entry per model covers every
    stage-1 granule, VA size and table placement over its cases."""
    if shape is not None:
        return shape
    shapes = stage1_shapes(cpu)
    return shapes[index % len(shapes)]


def case_window_bytes(kind: CaseKind, config: S2Config, shape: Stage1Shape | None = None,
                      cpu: CpuModel | None = None) -> int:
    """Bytes of the arena one case of ``kind`` needs.  An access case: the
    tables of its two images (the second one holds the VMID steps), then
    its data pages; a stage-1 case: reference.generate_s1.s1_window_bytes of
    its shape, or of the largest shape of ``cpu`` when the shape rotates."""
    if kind is CaseKind.ACCESS:
        granule = config.granule or Granule.G4K
        return 2 * _stage2_window(config) + (ACCESS_DATA_PAGES << granule.bits)
    if kind is CaseKind.STAGE1:
        if shape is not None:
            return s1_window_bytes(config, shape)
        if cpu is None:
            raise ValueError("a stage-1 entry without a shape needs its CPU model")
        return max(s1_window_bytes(config, s) for s in stage1_shapes(cpu))
    return _stage2_window(config)


def generate_kind_case(kind: CaseKind, cpu: CpuModel, config: S2Config, seed: int, key: str,
                       window: tuple[int, int], mmap: MemoryMap, *, fanout: int = 0,
                       opt_in: frozenset[OptIn] = frozenset(),
                       shape: Stage1Shape | None = None,
                       el1: El1Window | None = None) -> RunCase:
    """One case of ``kind`` inside ``window`` = (base PA, case_window_bytes).
    ``el1``: the stub's EL1 window (access cases need it)."""
    if kind is CaseKind.ACCESS:
        if el1 is None:
            raise ValueError("an access case needs the stub's EL1 window")
        tables = 2 * _stage2_window(config)
        return generate_access_case(cpu, config, seed, key, (window[0], tables),
                                    (window[0] + tables, window[1] - tables), mmap, el1)
    if kind is CaseKind.STAGE1:
        if shape is None:
            raise ValueError("a stage-1 case needs a Stage1Shape (stage1_shape)")
        return generate_s1_case(cpu, config, shape, seed, key, window, mmap)
    return generate_case(cpu, config, seed, key, window, mmap, fanout=fanout, opt_in=opt_in)


# --- job images -----------------------------------------------------------------

def at_job_image(case: Case) -> JobImage:
    """A stage-2 case: its named probes, then its fan-out probes."""
    table = np.zeros(len(case.probes) + len(case.fanout), dtype=PROBE_DTYPE)
    named = len(case.probes)
    table["ipa"][:named] = [p.ipa for p in case.probes]
    table["kind"][:named] = [p.at.value for p in case.probes]
    table["ipa"][named:] = case.fanout.ipa
    table["kind"][named:] = case.fanout.at
    return JobImage(vtcr=case.config.vtcr(), vttbr=case.config.vttbr,
                    regions=tuple((r.pa, r.data) for r in case.image.regions), probes=table,
                    s2pir=case.config.s2pir)


def access_probe_array(case: AccessCase) -> np.ndarray:
    """The steps of an access case as probe records (PROBE_DTYPE)."""
    table = np.zeros(len(case.steps), dtype=PROBE_DTYPE)
    for i, step in enumerate(case.steps):
        if isinstance(step, AccessStep):
            table[i] = (step.ipa, step.kind.code, FLAG_HCR_DC if step.hcr_dc else 0,
                        step.data[0], step.data[1])
        elif isinstance(step, DescWriteStep):
            table[i] = (step.pa, KIND_DESC_WRITE, int(step.tlbi), step.value, step.ipa)
        else:
            table[i] = (0, KIND_SET_VTTBR, int(step.tlbi), step.vttbr, 0)
    return table


def access_job_image(case: AccessCase) -> JobImage:
    """One job image: both images' tables, the data chunks, every step."""
    regions = case.image.regions + (case.other.regions if case.other else ()) + case.data
    return JobImage(case.config.vtcr(), case.image.vttbr, tuple((r.pa, r.data) for r in regions),
                    access_probe_array(case), el1_ipa=case.el1_ipa, s2pir=case.config.s2pir)


def s1_job_image(case: S1Case) -> JobImage:
    """A stage-1-on case: the stage-2 and stage-1 tables, its VA probes,
    and the EL1&0 registers it runs under (docs/job-abi.md: AArch32 packs
    HCR2 above HCR and MAIR1 above MAIR0, and gives the SCTLR bits to set)."""
    s1, hcr = case.stage1.config, case.stage1.hcr
    table = np.zeros(len(case.probes), dtype=PROBE_DTYPE)
    table["ipa"] = [p.va for p in case.probes]
    table["kind"] = [p.at.code for p in case.probes]
    regions = tuple((r.pa, r.data) for r in sorted(case.image.regions + case.stage1.regions,
                                                     key=lambda r: r.pa))
    if isinstance(s1, S1Config):
        return JobImage(case.config.vtcr(), case.config.vttbr, regions, table,
                        s2pir=case.config.s2pir, hcr=hcr.hcr_el2(), sctlr=s1.sctlr_el1(),
                        tcr=s1.tcr, ttbr0=s1.ttbr0, ttbr1=s1.ttbr1, mair=s1.mair)
    assert case.cpu.arch is Arch.AARCH32
    return JobImage(case.config.vtcr(), case.config.vttbr, regions, table,
                    hcr=hcr.hcr() | hcr.hcr2() << 32, sctlr=s1.sctlr_bits(), tcr=s1.ttbcr,
                    ttbr0=s1.ttbr0, ttbr1=s1.ttbr1, mair=s1.mair0 | s1.mair1 << 32)


def kind_job_image(case: RunCase) -> JobImage:
    """The job image of a case of any kind."""
    if isinstance(case, AccessCase):
        return access_job_image(case)
    if isinstance(case, S1Case):
        return s1_job_image(case)
    return at_job_image(case)


def case_kind(case: RunCase) -> CaseKind:
    if isinstance(case, AccessCase):
        return CaseKind.ACCESS
    if isinstance(case, S1Case):
        return CaseKind.STAGE1
    return CaseKind.AT
