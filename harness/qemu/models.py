"""CPU models from the machine: the ID registers a QEMU build's ``-cpu``
reports, read by the stub at its first boot and cached, and the reference
CPU model a run uses for that (build, ``-cpu``).

QEMU's ``max`` changes with every release (FEAT_XS in 10.0, FEAT_S2PIE in
10.2, ...), so a run judges it by the model its own ID registers decode to
(``CpuModel.from_id_registers``); a named core is judged by the named table
of reference/cpus.py, which says what the real core is, and where the
QEMU build reports other values the run says so (``model_differences``: a
finding of its own kind, harness.judge.models).

The registers are read once per (QEMU binary, its ``--version`` line,
architecture, ``-cpu``, job ABI) -- the job ABI because it fixes which
registers the stub reads -- and kept in a small JSON file in the user's
cache directory (``cache_file``), so that later runs need no boot for it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Iterable, Mapping

from reference.arch import Arch
from reference.cpus import CPUS, CpuModel, ModelDifference, model_differences

from ..errors import InfrastructureError
from .boot import BatchStatus, run_batch
from .builds import version_number
from .job import ABI_VERSION, ID_REGISTER_NAMES
from .launcher import find_qemu, qemu_version

CACHE_NAME = "cpu-models.json"
CACHE_FORMAT = 1

# -cpu models whose reference model follows what the QEMU build reports,
# rather than a named table entry: "all features this QEMU implements".
FOLLOWS_THE_MACHINE = frozenset({"max"})


def cache_file(override: str | Path | None = None) -> Path:
    """``override``, else ``$S2DIFF_CPU_CACHE``, else
    ``$XDG_CACHE_HOME/s2diff/cpu-models.json`` (``~/.cache/s2diff/...``)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("S2DIFF_CPU_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "s2diff" / CACHE_NAME


def cache_key(binary: Path, version: str, arch: Arch, cpu: str) -> str:
    return "\t".join((str(binary), version, arch.value, cpu, f"abi{ABI_VERSION}"))


@dataclasses.dataclass(frozen=True)
class MachineModel:
    """What one (QEMU build, ``-cpu``) is: the ID registers its stub read
    (``registers``, in slot order), the reference model a run uses for it
    (``model``: decoded from the registers for a model that follows the
    machine, else the named table's), and where the registers and the
    named table disagree (``differences``; always empty for a model that
    follows the machine, which has no table to disagree with)."""

    arch: Arch
    cpu: str
    qemu_version: str
    registers: tuple[tuple[str, int], ...]
    model: CpuModel
    differences: tuple[ModelDifference, ...]

    @property
    def follows(self) -> bool:
        return self.cpu in FOLLOWS_THE_MACHINE

    def observed(self) -> CpuModel:
        """The model the registers decode to (for AArch32 the architecture
        version from ID_DFR0, else the named table's)."""
        return observed_model(self.arch, self.cpu, dict(self.registers), self.qemu_version)


def observed_model(arch: Arch, cpu: str, registers: Mapping[str, int],
                   qemu_version: str = "") -> CpuModel:
    """``CpuModel.from_id_registers`` of what a stub read; an AArch32 core
    whose ID_DFR0 does not say v7 or v8 keeps the named table's version."""
    named = CPUS.get((arch, cpu))
    description = f"as QEMU {version_number(qemu_version)} reports it" if qemu_version else \
        "as a QEMU reports it"
    try:
        return CpuModel.from_id_registers(arch, cpu, registers, description=description)
    except ValueError:
        if named is None:
            raise
        return CpuModel.from_id_registers(arch, cpu, registers, arch_version=named.arch_version,
                                          description=description)


def _load(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT \
            or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def _store(path: Path, key: str, entry: dict) -> None:
    """Add one entry, atomically (other runs may write the same file:
    read, update, write a temporary file, rename).  A cache that cannot be
    written only costs a boot next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _load(path)
        entries[key] = entry
        fd, tmp = tempfile.mkstemp(prefix=".cpu-models-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": CACHE_FORMAT, "entries": entries}, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def read_id_registers(arch: Arch, cpu: str, qemu: Path | str | None = None, *,
                      stub: Path | None = None, cache: Path | None = None
                      ) -> tuple[str, dict[str, int]]:
    """(QEMU version line, ID registers by name) of ``-cpu cpu`` on the QEMU
    ``qemu`` (find_qemu's default when None): from the cache, else one
    empty boot of the stub, whose result is cached.  QemuError when QEMU
    does not start (e.g. it has no such ``-cpu``), InfrastructureError when
    the boot does not complete."""
    binary = Path(find_qemu(arch, qemu)).resolve()
    version = qemu_version(binary)
    path = cache_file(cache)
    key = cache_key(binary, version, arch, cpu)
    names = ID_REGISTER_NAMES[arch]
    hit = _load(path).get(key)
    if isinstance(hit, dict) and isinstance(hit.get("registers"), dict):
        try:
            regs = {n: int(hit["registers"][n], 16) for n in names}
            return version, regs
        except (KeyError, TypeError, ValueError):
            pass
    result = run_batch(arch, cpu, [], qemu=binary, stub=stub)
    if result.status is not BatchStatus.COMPLETED:
        raise InfrastructureError(f"reading the ID registers of {arch.value} -cpu {cpu} on "
                                  f"{binary}: {result.status.value}: {result.diagnostic}")
    regs = {n: int(result.id_registers[n]) for n in names}
    _store(path, key, {"binary": str(binary), "version": version, "arch": arch.value,
                       "cpu": cpu, "abi": ABI_VERSION,
                       "registers": {n: f"{v:#x}" for n, v in regs.items()},
                       "read": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return version, regs


def machine_model(arch: Arch, cpu: str, qemu: Path | str | None = None, *,
                  stub: Path | None = None, cache: Path | None = None) -> MachineModel:
    """The model a run uses for ``-cpu cpu`` on the QEMU ``qemu`` (see the
    module docstring).  A name that is neither in the named table nor
    follows the machine is a ValueError."""
    named = CPUS.get((arch, cpu))
    if named is None and cpu not in FOLLOWS_THE_MACHINE:
        raise ValueError(f"no CPU model {cpu!r} for {arch.value}")
    version, regs = read_id_registers(arch, cpu, qemu, stub=stub, cache=cache)
    observed = observed_model(arch, cpu, regs, version)
    registers = tuple((n, regs[n]) for n in ID_REGISTER_NAMES[arch])
    if cpu in FOLLOWS_THE_MACHINE or named is None:
        return MachineModel(arch, cpu, version, registers, observed, ())
    return MachineModel(arch, cpu, version, registers, named, model_differences(named, observed))


def machine_models(wanted: Iterable[tuple[Arch, str]], qemu: Mapping[Arch, Path | str | None],
                   *, cache: Path | None = None) -> dict[tuple[Arch, str], MachineModel]:
    """``machine_model`` of every (arch, -cpu) in ``wanted`` on that
    architecture's QEMU."""
    return {(a, c): machine_model(a, c, qemu.get(a), cache=cache) for a, c in wanted}
