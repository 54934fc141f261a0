"""The case file of a stage-1-on case (reference.generate_s1.S1Case):
format ``s2diff-s1-case``, self-contained JSON like the stage-2 case file
(reference.casefmt, docs/case-file.md), with the stage-1 registers and HCR
bits, the stage-1 tables (bytes at their PAs, and where stage 2 maps each),
and VA probes with their AT operation.  Pure: data in, data out.

The inputs are authoritative; ``permitted`` beside each probe (the
outcomes, with their rules and the PAR patterns reference.at.predict gives)
is for the reader and recomputed whenever the case is used.
"""
from __future__ import annotations

from typing import Any

from .arch import Arch, Granule
from .at import predict
from .casefmt import (
    CaseFormatError,
    _get,
    _int,
    head_data,
    read_head,
    read_memory_map,
    read_regions,
    regions_data,
)
from .config import S2Config
from .generate_s1 import S1Case, S1Probe, Stage1Part, Stage1Shape
from .image import Image
from .memory import Memory
from .s1config import Hcr, S1Config, S1ConfigA32
from .s1image import S1Table, TablePlacement
from .stage1 import AtOp

FORMAT = "s2diff-s1-case"
VERSION = 1
MAX_PROBES = 1 << 16
_HCR_BITS = ("ptw", "dc", "cd", "id", "fwb")


def _hex(value: int) -> str:
    return f"{value:#x}"


def _stage1_config(s1: S1Config | S1ConfigA32) -> dict[str, Any]:
    if isinstance(s1, S1Config):
        return {"tcr": _hex(s1.tcr), "ttbr0": _hex(s1.ttbr0), "ttbr1": _hex(s1.ttbr1),
                "mair": _hex(s1.mair), "m": s1.m, "c": s1.c, "wxn": s1.wxn,
                "describe": s1.describe()}
    return {"ttbcr": _hex(s1.ttbcr), "ttbr0": _hex(s1.ttbr0), "ttbr1": _hex(s1.ttbr1),
            "mair0": _hex(s1.mair0), "mair1": _hex(s1.mair1), "m": s1.m, "c": s1.c,
            "wxn": s1.wxn, "uwxn": s1.uwxn, "describe": s1.describe()}


def s1_case_to_data(case: S1Case, *, with_outcomes: bool = True) -> dict[str, Any]:
    """JSON data for ``case`` (keys in a stable, readable order)."""
    part = case.stage1
    probes = []
    results = case.permitted() if with_outcomes else (None,) * len(case.probes)
    for p, result in zip(case.probes, results):
        entry: dict[str, Any] = {"va": _hex(p.va), "at": p.at.name, "aim": p.aim}
        if result is not None:
            entry["permitted"] = [
                {"result": o.describe(), "rules": list(o.rules),
                 "reports": [{"report": r.prediction.report.value,
                              "value": _hex(r.prediction.pattern.value),
                              "care": _hex(r.prediction.pattern.care), "rules": list(r.rules)}
                             for r in predict(case.cpu, o, p.va)],
                 "trace": [t.describe() for t in o.trace]} for o in result.outcomes]
        probes.append(entry)
    return {
        **head_data(FORMAT, VERSION, case.key, case.seed, case.cpu),
        "config": {"vtcr": _hex(case.config.vtcr()), "vttbr": _hex(case.config.vttbr),
                   **({"s2pir": _hex(case.config.s2pir)} if case.config.s2pir else {}),
                   "describe": case.config.describe()},
        "memory": {"ram": [[_hex(b), _hex(s)] for b, s in case.memory_map.ram],
                   "empty": [_hex(a) for a in case.memory_map.empty]},
        "image": {"window": [_hex(case.image.window[0]), _hex(case.image.window[1])],
                  "root": _hex(case.image.root), "regions": regions_data(case.image.regions)},
        "stage1": {
            "config": _stage1_config(part.config),
            "hcr": {n: getattr(part.hcr, n) for n in _HCR_BITS},
            "shape": {"granule": part.shape.granule.label, "va_bits": part.shape.va_bits,
                      "tables_high": part.shape.tables_high},
            "regions": regions_data(part.regions),
            "tables": [{"level": t.level, "ipa": _hex(t.ipa),
                        "pa": None if t.pa is None else _hex(t.pa),
                        "placement": t.placement.value} for t in part.tables],
            "ipa_window": [_hex(part.ipa_window[0]), _hex(part.ipa_window[1])],
            "pa_window": [_hex(part.pa_window[0]), _hex(part.pa_window[1])],
        },
        "probes": probes,
    }


# --- reading ---------------------------------------------------------------------

def _pair(data: Any, where: str) -> tuple[int, int]:
    if not isinstance(data, list) or len(data) != 2:
        raise CaseFormatError(f"{where}: expected [base, size]")
    return _int(data[0], f"{where}[0]", 52), _int(data[1], f"{where}[1]", 52)


def _bit(data: dict, name: str, where: str) -> int:
    value = data.get(name, 0)
    if value not in (0, 1) or isinstance(value, bool):
        raise CaseFormatError(f"{where}.{name}: expected 0 or 1")
    return int(value)


def _read_stage1_config(data: Any, arch: Arch) -> S1Config | S1ConfigA32:
    where = "stage1.config"
    if arch is Arch.AARCH64:
        return S1Config(tcr=_int(_get(data, "tcr", str, where), f"{where}.tcr"),
                        ttbr0=_int(_get(data, "ttbr0", str, where), f"{where}.ttbr0"),
                        mair=_int(_get(data, "mair", str, where), f"{where}.mair"),
                        ttbr1=_int(data.get("ttbr1", "0x0"), f"{where}.ttbr1"),
                        m=_bit(data, "m", where), c=_bit(data, "c", where),
                        wxn=_bit(data, "wxn", where))
    return S1ConfigA32(ttbcr=_int(_get(data, "ttbcr", str, where), f"{where}.ttbcr", 32),
                       ttbr0=_int(_get(data, "ttbr0", str, where), f"{where}.ttbr0"),
                       mair0=_int(_get(data, "mair0", str, where), f"{where}.mair0", 32),
                       mair1=_int(data.get("mair1", "0x0"), f"{where}.mair1", 32),
                       ttbr1=_int(data.get("ttbr1", "0x0"), f"{where}.ttbr1"),
                       m=_bit(data, "m", where), c=_bit(data, "c", where),
                       wxn=_bit(data, "wxn", where), uwxn=_bit(data, "uwxn", where))


def s1_case_from_data(data: Any) -> S1Case:
    """Validate JSON data and rebuild the S1Case it describes."""
    arch, cpu = read_head(data, FORMAT, VERSION, "stage-1 case")
    cfg = _get(data, "config", dict, "case")
    vttbr = _int(_get(cfg, "vttbr", str, "config"), "config.vttbr")
    config = S2Config.from_vtcr(arch, _int(_get(cfg, "vtcr", str, "config"), "config.vtcr",
                                           64 if arch is Arch.AARCH64 else 32), vttbr,
                                _int(cfg.get("s2pir", "0x0"), "config.s2pir")
                                if arch is Arch.AARCH64 else 0)
    mmap = read_memory_map(data)
    budget = [0]
    img = _get(data, "image", dict, "case")
    image = Image(regions=read_regions(_get(img, "regions", list, "image"), "image.regions",
                                        budget),
                  vttbr=vttbr, root=_int(_get(img, "root", str, "image"), "image.root", 52),
                  window=_pair(_get(img, "window", list, "image"), "image.window"), tables=())
    s1 = _get(data, "stage1", dict, "case")
    hcr_data = _get(s1, "hcr", dict, "stage1")
    hcr = Hcr(**{n: _bit(hcr_data, n, "stage1.hcr") for n in _HCR_BITS})
    shape_data = _get(s1, "shape", dict, "stage1")
    try:
        shape = Stage1Shape(Granule.from_label(_get(shape_data, "granule", str, "stage1.shape")),
                            _get(shape_data, "va_bits", int, "stage1.shape"),
                            _get(shape_data, "tables_high", bool, "stage1.shape"))
    except ValueError as exc:
        raise CaseFormatError(f"stage1.shape.granule: {exc}") from None
    tables = []
    for i, t in enumerate(_get(s1, "tables", list, "stage1")):
        where = f"stage1.tables[{i}]"
        try:
            placement = TablePlacement(_get(t, "placement", str, where))
        except ValueError:
            raise CaseFormatError(f"{where}.placement: not one of "
                                  f"{', '.join(p.value for p in TablePlacement)}") from None
        pa = t.get("pa")
        tables.append(S1Table(_get(t, "level", int, where), _int(_get(t, "ipa", str, where),
                                                                  f"{where}.ipa"),
                              None if pa is None else _int(pa, f"{where}.pa", 52), placement))
    part = Stage1Part(config=_read_stage1_config(_get(s1, "config", dict, "stage1"), arch),
                      hcr=hcr, shape=shape,
                      regions=read_regions(_get(s1, "regions", list, "stage1"),
                                            "stage1.regions", budget),
                      tables=tuple(tables),
                      ipa_window=_pair(_get(s1, "ipa_window", list, "stage1"), "stage1.ipa_window"),
                      pa_window=_pair(_get(s1, "pa_window", list, "stage1"), "stage1.pa_window"))
    try:
        Memory(ram=mmap.ram, regions=image.regions + part.regions)
    except ValueError as exc:
        raise CaseFormatError(f"regions: {exc}") from None
    plist = _get(data, "probes", list, "case")
    if len(plist) > MAX_PROBES:
        raise CaseFormatError(f"probes: more than {MAX_PROBES}")
    probes = []
    for i, p in enumerate(plist):
        where = f"probes[{i}]"
        name = _get(p, "at", str, where)
        try:
            op = AtOp[name]
        except KeyError:
            raise CaseFormatError(f"{where}.at: {name!r} is not one of "
                                  f"{', '.join(o.name for o in AtOp)}") from None
        aim = p.get("aim", "")
        if not isinstance(aim, str):
            raise CaseFormatError(f"{where}.aim: expected a string")
        probes.append(S1Probe(_int(_get(p, "va", str, where), f"{where}.va",
                                   64 if arch is Arch.AARCH64 else 32), op, aim))
    key, seed = data.get("key", ""), data.get("seed", 0)
    if not isinstance(key, str) or isinstance(seed, bool) or not isinstance(seed, int):
        raise CaseFormatError("key/seed: expected a string and an integer")
    return S1Case(key=key, seed=seed, cpu=cpu, config=config, image=image, memory_map=mmap,
                  probes=tuple(probes), stage1=part)
