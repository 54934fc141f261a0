"""A named core whose QEMU reports other ID registers than reference/cpus.py
says the core has, as results records of their own kind (``cpu-model``).

One divergence per register and per decoded stage-2 property that differs
(reference.cpus.model_differences).  They belong to no case and no batch
(``batch`` MODEL_BATCH): the run writes them once, after its header, for
every (QEMU, -cpu) it uses; their key names the model and the register, so
the shards of a run, which each write them, merge into one.  A baseline
entry of kind ``cpu-model`` can know one (docs/baseline.md), like any
divergence.
"""
from __future__ import annotations

from collections.abc import Iterable

from reference.cpus import ModelDifference

from ..qemu.models import MachineModel
from ..records import Divergence, DivergenceRecord, Permitted
from ..vocabulary import DivergenceKind, model_aim, model_value_label

MODEL_BATCH = -1        # the batch number of records that belong to no batch
MODEL_GROUP = "cpu models"


def model_key(mm: MachineModel, what: str) -> str:
    return f"{mm.arch.value}/{mm.cpu}/cpu-model/{what}"


def model_divergence(mm: MachineModel, d: ModelDifference) -> Divergence:
    """Difference ``d`` of ``mm`` as a divergence: expected is the named
    table's value, observed what the QEMU build reports."""
    rule = (f"reference/cpus.py: the named model of {mm.cpu} ({mm.model.description}) "
            f"has {model_value_label(d.what, d.expected)}")
    return Divergence(
        kind=DivergenceKind.CPU_MODEL, probe=None, ipa=None, at=None,
        aim=model_aim(mm.cpu, d.what), arch=mm.arch.value, cpu=mm.cpu, granule=None,
        config=f"-cpu {mm.cpu}", vtcr="", vttbr="",
        expected=(model_value_label(d.what, d.expected),),
        permitted=(Permitted(model_value_label(d.what, d.expected), (rule,), ()),),
        observed=model_value_label(d.what, d.observed), observed_text=d.describe(),
        raw=tuple((n, f"{v:#x}") for n, v in mm.registers))


def model_records(models: Iterable[MachineModel]) -> list[DivergenceRecord]:
    """The records a run writes for the models it uses (without ``known``:
    harness.baseline.apply_baseline marks them)."""
    return [DivergenceRecord.of(model_divergence(mm, d), key=model_key(mm, d.what),
                                entry=f"{mm.arch.value}/{mm.cpu}", group=MODEL_GROUP,
                                batch=MODEL_BATCH, qemu_version=mm.qemu_version, argv=None)
            for mm in models for d in mm.differences]
