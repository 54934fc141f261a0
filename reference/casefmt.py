"""The case file: a self-contained, human-readable JSON form of a Case
(docs/case-file.md).  Pure: converts between a Case and plain JSON data and
validates the data field by field; reading and writing files is the
harness's business.

The inputs (CPU model, VTCR, VTTBR, memory map, image, probes) are
authoritative; the permitted outcomes written beside each probe are for the
reader, and are recomputed by the reference whenever a case is used.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from .arch import Arch, AtKind
from .config import S2Config
from .cpus import CPUS, CpuModel, get_cpu
from .generate import Case, FanOut, MemoryMap, Probe
from .image import Image
from .memory import Memory, Region
from .outcome import WalkResult
from .par import predict

FORMAT = "s2diff-case"
VERSION = 1
MAX_REGION_BYTES = 64 << 20
MAX_PROBES = 1 << 22


class CaseFormatError(ValueError):
    """The data is not a valid case; the message names the field."""


def _hex(value: int) -> str:
    return f"{value:#x}"


def outcome_data(arch: Arch, result: WalkResult, ipa: int) -> list[dict[str, Any]]:
    """The permitted outcomes of one probe as JSON data."""
    data = []
    for o in result.outcomes:
        pred = predict(arch, o, ipa)
        entry: dict[str, Any] = {
            "result": o.describe(),
            "rules": list(o.rules),
            "report": pred.report.value,
            "value": _hex(pred.pattern.value),
            "care": _hex(pred.pattern.care),
        }
        if pred.far is not None:
            entry["far"] = _hex(pred.far)
        if o.writes:
            entry["writes"] = [{"pa": _hex(w.pa), "old": _hex(w.old), "new": _hex(w.new)}
                               for w in o.writes]
        entry["trace"] = [t.describe() for t in o.trace]
        data.append(entry)
    return data


def regions_data(regions: tuple[Region, ...]) -> list[dict[str, str]]:
    """Memory regions as case-file data: PA and base64 bytes (every kind
    of case file)."""
    return [{"pa": _hex(r.pa), "data": base64.b64encode(r.data).decode("ascii")} for r in regions]


def read_regions(items: Any, where: str, budget: list[int]) -> tuple[Region, ...]:
    """Case-file region data back to Regions, checked: base64, 8-byte
    aligned and sized, ``budget[0]`` counting bytes against
    MAX_REGION_BYTES over all the file's regions."""
    if not isinstance(items, list):
        raise CaseFormatError(f"{where}: expected a list")
    out = []
    for i, reg in enumerate(items):
        pa = _int(_get(reg, "pa", str, f"{where}[{i}]"), f"{where}[{i}].pa", 52)
        try:
            blob = base64.b64decode(_get(reg, "data", str, f"{where}[{i}]"), validate=True)
        except (binascii.Error, ValueError):
            raise CaseFormatError(f"{where}[{i}].data: not valid base64") from None
        budget[0] += len(blob)
        if budget[0] > MAX_REGION_BYTES:
            raise CaseFormatError(f"{where}: more than {MAX_REGION_BYTES} bytes of regions")
        if pa % 8 or len(blob) % 8 or not blob:
            raise CaseFormatError(f"{where}[{i}]: PA and length must be non-zero multiples of 8")
        out.append(Region(pa, blob))
    return tuple(out)


def read_memory_map(data: dict[str, Any]) -> MemoryMap:
    """A case file's ``memory``: its RAM ranges (one at least) and the
    addresses with nothing behind them (every kind of case file)."""
    mem = _get(data, "memory", dict, "case")
    ram = []
    for i, pair in enumerate(_get(mem, "ram", list, "memory")):
        if not isinstance(pair, list) or len(pair) != 2:
            raise CaseFormatError(f"memory.ram[{i}]: expected [base, size]")
        ram.append((_int(pair[0], f"memory.ram[{i}][0]", 52), _int(pair[1], f"memory.ram[{i}][1]", 52)))
    if not ram:
        raise CaseFormatError("memory.ram: at least one RAM range is needed")
    empty = tuple(_int(a, f"memory.empty[{i}]", 52)
                  for i, a in enumerate(_get(mem, "empty", list, "memory")))
    return MemoryMap(ram=tuple(ram), empty=empty)


def head_data(fmt: str, version: int, key: str, seed: int, cpu: CpuModel) -> dict[str, Any]:
    """The first keys of a case file of any kind: format, version, key,
    seed, architecture and CPU -- with the whole model when it is not the
    named table's (e.g. QEMU's max built from the ID registers a newer QEMU
    reports), so that the case travels with it."""
    arch = cpu.arch
    return {"format": fmt, "version": version, "key": key, "seed": seed, "arch": arch.value,
            "cpu": cpu.name,
            **({"cpu_model": cpu_model_data(cpu)} if CPUS.get((arch, cpu.name)) != cpu else {})}


def read_head(data: Any, fmt: str, version: int, what: str) -> tuple[Arch, CpuModel]:
    """Check the head keys of case-file data (head_data) and return its
    architecture and CPU model; CaseFormatError saying what is wrong."""
    if not isinstance(data, dict):
        raise CaseFormatError("case: expected a JSON object")
    if data.get("format") != fmt:
        raise CaseFormatError(f"format: expected {fmt!r}, got {data.get('format')!r}")
    got = _get(data, "version", int, "case")
    if got != version:
        raise CaseFormatError(f"version: unsupported {what} version {got} "
                              f"(this s2diff reads {version})")
    arch_name = _get(data, "arch", str, "case")
    try:
        arch = Arch(arch_name)
    except ValueError:
        raise CaseFormatError(f"arch: {arch_name!r} is not one of aarch64, arm") from None
    cpu_name = _get(data, "cpu", str, "case")
    if "cpu_model" in data:
        return arch, cpu_model_from_data(data["cpu_model"], arch, cpu_name)
    try:
        return arch, get_cpu(arch, cpu_name)
    except ValueError as exc:
        raise CaseFormatError(f"cpu: {exc}") from None


def case_to_data(case: Case, *, with_outcomes: bool = True) -> dict[str, Any]:
    """JSON data for ``case`` (keys in a stable, readable order)."""
    arch = case.cpu.arch
    probes = []
    results = case.permitted() if with_outcomes else (None,) * len(case.probes)
    for probe, result in zip(case.probes, results):
        entry: dict[str, Any] = {"ipa": _hex(probe.ipa), "at": probe.at.name, "aim": probe.aim}
        if result is not None:
            entry["permitted"] = outcome_data(arch, result, probe.ipa)
            if result.unpredictable:
                # ARMv7 UNPREDICTABLE: anything is permitted (WalkResult).
                entry["unpredictable"] = list(result.unpredictable)
        probes.append(entry)
    return {
        **head_data(FORMAT, VERSION, case.key, case.seed, case.cpu),
        "config": {
            "vtcr": _hex(case.config.vtcr()),
            "vttbr": _hex(case.config.vttbr),
            # S2PIR_EL2 only where it can act: a case without it reads as before.
            **({"s2pir": _hex(case.config.s2pir)}
               if case.config.s2pie or case.config.s2pir else {}),
            "describe": case.config.describe(),
        },
        "memory": {
            "ram": [[_hex(b), _hex(s)] for b, s in case.memory_map.ram],
            "empty": [_hex(a) for a in case.memory_map.empty],
        },
        "image": {
            "window": [_hex(case.image.window[0]), _hex(case.image.window[1])],
            "root": _hex(case.image.root),
            "regions": [{"pa": _hex(r.pa), "data": base64.b64encode(r.data).decode("ascii")}
                        for r in case.image.regions],
        },
        "probes": probes,
        **({"fanout": fanout_data(case.fanout)} if len(case.fanout) else {}),
    }


def cpu_model_data(cpu: CpuModel) -> dict[str, Any]:
    """A CPU model as JSON data: its ID register values (hex) and, for
    AArch32, whether it is ARMv7 or ARMv8."""
    return {"id_registers": {n: _hex(v) for n, v in cpu.id_regs},
            "arch_version": cpu.arch_version, "description": cpu.description}


def cpu_model_from_data(data: Any, arch: Arch, name: str) -> CpuModel:
    """Inverse of cpu_model_data (CpuModel.from_id_registers)."""
    regs = _get(data, "id_registers", dict, "cpu_model")
    version = _get(data, "arch_version", int, "cpu_model")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise CaseFormatError("cpu_model.description: expected a string")
    values = {n: _int(v, f"cpu_model.id_registers.{n}") for n, v in regs.items()}
    try:
        return CpuModel.from_id_registers(arch, name, values, arch_version=version,
                                          description=description)
    except ValueError as exc:
        raise CaseFormatError(f"cpu_model: {exc}") from None


def fanout_data(fan: FanOut) -> dict[str, Any]:
    """Fan-out probes as compact arrays (little-endian, base64): ``ipa``
    u64, ``at`` u8 (AtKind codes), ``span`` i32 (index into ``spans``)."""
    b64 = lambda a: base64.b64encode(a.tobytes()).decode("ascii")  # noqa: E731
    return {"spans": [[_hex(base), bits] for base, bits in fan.spans],
            "ipa": b64(fan.ipa.astype("<u8")), "at": b64(fan.at.astype("u1")),
            "span": b64(fan.span.astype("<i4"))}


def _array(data: dict, key: str, dtype: str, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(_get(data, key, str, where), validate=True)
    except (binascii.Error, ValueError):
        raise CaseFormatError(f"{where}.{key}: not valid base64") from None
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise CaseFormatError(f"{where}.{key}: {len(raw)} bytes is not a whole number of {dtype}")
    return np.frombuffer(raw, dtype=dtype).copy()


def fanout_from_data(data: Any, arch: Arch) -> FanOut:
    where = "fanout"
    spans = []
    for i, pair in enumerate(_get(data, "spans", list, where)):
        if not isinstance(pair, list) or len(pair) != 2 or isinstance(pair[1], bool) \
                or not isinstance(pair[1], int) or not 0 <= pair[1] <= 64:
            raise CaseFormatError(f"fanout.spans[{i}]: expected [base, bits] with bits 0..64")
        spans.append((_int(pair[0], f"fanout.spans[{i}][0]"), pair[1]))
    ipa = _array(data, "ipa", "<u8", where).astype(np.uint64)
    at = _array(data, "at", "u1", where).astype(np.uint8)
    span = _array(data, "span", "<i4", where).astype(np.int32)
    if not len(ipa) == len(at) == len(span):
        raise CaseFormatError("fanout: ipa, at and span must have the same length")
    if len(ipa) > MAX_PROBES:
        raise CaseFormatError(f"fanout: more than {MAX_PROBES} probes")
    if len(at) and int(at.max()) >= len(AtKind):
        raise CaseFormatError("fanout.at: values must be AtKind codes 0..3")
    if len(span) and (int(span.min()) < 0 or int(span.max()) >= len(spans)):
        raise CaseFormatError("fanout.span: index outside fanout.spans")
    if arch is Arch.AARCH32 and len(ipa) and int(ipa.max()) >= 1 << 32:
        raise CaseFormatError("fanout.ipa: AArch32 probes need IPAs below 4 GiB")
    return FanOut(tuple(spans), ipa, at, span)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

def _get(data: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(data, dict):
        raise CaseFormatError(f"{where}: expected an object")
    if key not in data:
        raise CaseFormatError(f"{where}.{key}: missing")
    value = data[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise CaseFormatError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _int(text: Any, where: str, bits: int = 64) -> int:
    """A non-negative integer written as a hex string ("0x...") or a JSON number."""
    if isinstance(text, bool):
        raise CaseFormatError(f"{where}: expected a hex string")
    if isinstance(text, int):
        value = text
    elif isinstance(text, str):
        try:
            value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
        except ValueError:
            raise CaseFormatError(f"{where}: {text!r} is not a number") from None
    else:
        raise CaseFormatError(f"{where}: expected a hex string, got {type(text).__name__}")
    if not 0 <= value < 1 << bits:
        raise CaseFormatError(f"{where}: {text!r} is out of range (0 .. 2^{bits}-1)")
    return value


def case_from_data(data: Any) -> Case:
    """Validate JSON data and rebuild the Case it describes."""
    arch, cpu = read_head(data, FORMAT, VERSION, "case-file")
    cfg = _get(data, "config", dict, "case")
    vtcr = _int(_get(cfg, "vtcr", str, "config"), "config.vtcr",
                64 if arch is Arch.AARCH64 else 32)
    vttbr = _int(_get(cfg, "vttbr", str, "config"), "config.vttbr")
    s2pir = _int(cfg["s2pir"], "config.s2pir") if "s2pir" in cfg else 0
    if s2pir and arch is not Arch.AARCH64:
        raise CaseFormatError("config.s2pir: S2PIR_EL2 exists only for aarch64")
    config = S2Config.from_vtcr(arch, vtcr, vttbr, s2pir)

    mmap = read_memory_map(data)

    img = _get(data, "image", dict, "case")
    window = _get(img, "window", list, "image")
    if len(window) != 2:
        raise CaseFormatError("image.window: expected [base, size]")
    window_t = (_int(window[0], "image.window[0]", 52), _int(window[1], "image.window[1]", 52))
    regions = []
    total = 0
    for i, reg in enumerate(_get(img, "regions", list, "image")):
        pa = _int(_get(reg, "pa", str, f"image.regions[{i}]"), f"image.regions[{i}].pa", 52)
        try:
            blob = base64.b64decode(_get(reg, "data", str, f"image.regions[{i}]"), validate=True)
        except (binascii.Error, ValueError):
            raise CaseFormatError(f"image.regions[{i}].data: not valid base64") from None
        total += len(blob)
        if total > MAX_REGION_BYTES:
            raise CaseFormatError(f"image.regions: more than {MAX_REGION_BYTES} bytes")
        if pa % 8 or len(blob) % 8:
            raise CaseFormatError(f"image.regions[{i}]: PA and length must be multiples of 8")
        regions.append(Region(pa, blob))
    try:
        memory = Memory(ram=mmap.ram, regions=tuple(regions))
    except ValueError as exc:
        raise CaseFormatError(f"image.regions: {exc}") from None
    for r in memory.regions:
        if not (memory.is_ram(r.pa) and memory.is_ram(r.end - 1)):
            raise CaseFormatError(f"image.regions: region at {r.pa:#x} is not inside RAM")
    root = _int(img.get("root", _hex(window_t[0])), "image.root", 52)
    image = Image(regions=memory.regions, vttbr=vttbr, root=root, window=window_t, tables=())

    probes = []
    plist = _get(data, "probes", list, "case")
    if len(plist) > MAX_PROBES:
        raise CaseFormatError(f"probes: more than {MAX_PROBES} probes")
    for i, p in enumerate(plist):
        ipa = _int(_get(p, "ipa", str, f"probes[{i}]"), f"probes[{i}].ipa",
                   64 if arch is Arch.AARCH64 else 32)
        at_name = _get(p, "at", str, f"probes[{i}]")
        try:
            at = AtKind[at_name]
        except KeyError:
            raise CaseFormatError(f"probes[{i}].at: {at_name!r} is not one of "
                                  f"{', '.join(k.name for k in AtKind)}") from None
        aim = p.get("aim", "")
        if not isinstance(aim, str):
            raise CaseFormatError(f"probes[{i}].aim: expected a string")
        probes.append(Probe(ipa, at, aim))
    key = data.get("key", "")
    seed = data.get("seed", 0)
    if not isinstance(key, str) or isinstance(seed, bool) or not isinstance(seed, int):
        raise CaseFormatError("key/seed: expected a string and an integer")
    fanout = fanout_from_data(data["fanout"], arch) if "fanout" in data else FanOut.empty()
    return Case(key=key, seed=seed, cpu=cpu, config=config, image=image, memory_map=mmap,
                probes=tuple(probes), fanout=fanout)
