"""The case file of an access case (reference.access_case.AccessCase):
format ``s2diff-access-case``, self-contained JSON like the stage-2 case
file (reference.casefmt, docs/case-file.md), with the second image of the
VMID steps, the data chunks, the stub's EL1 window and where the image maps
it, and the steps.  Pure: data in, data out; the harness reads and writes
the files.

The inputs are authoritative; ``expected`` beside each step (the permitted
observations in words, with their rules) is for the reader and recomputed
by the reference whenever the case is used.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any

from .access import AccessKind
from .access_case import (
    AccessCase,
    AccessStep,
    DescWriteStep,
    El1Window,
    MaintExpectation,
    SetVttbrStep,
    Step,
    Tlbi,
)
from .arch import Arch
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
from .image import Image
from .memory import Memory

FORMAT = "s2diff-access-case"
VERSION = 1
MAX_STEPS = 1 << 16


def _hex(value: int) -> str:
    return f"{value:#x}"


def _image(image: Image) -> dict[str, Any]:
    return {"vttbr": _hex(image.vttbr), "root": _hex(image.root),
            "window": [_hex(image.window[0]), _hex(image.window[1])],
            "tables": [[level, _hex(pa)] for level, pa in image.tables],
            "regions": regions_data(image.regions)}


def _step(step: Step) -> dict[str, Any]:
    if isinstance(step, AccessStep):
        out: dict[str, Any] = {"type": "access", "kind": step.kind.name, "ipa": _hex(step.ipa),
                               "aim": step.aim, "data": [_hex(step.data[0]), _hex(step.data[1])]}
        if step.hcr_dc:
            out["hcr_dc"] = True
        if step.chunk is not None:
            out["chunk"] = _hex(step.chunk)
        return out
    if isinstance(step, DescWriteStep):
        return {"type": "descriptor-write", "pa": _hex(step.pa), "value": _hex(step.value),
                "ipa": _hex(step.ipa), "tlbi": [str(t.name) for t in Tlbi if t and t in step.tlbi],
                "aim": step.aim}
    return {"type": "set-vttbr", "vttbr": _hex(step.vttbr), "tlbi": step.tlbi, "aim": step.aim}


def access_case_to_data(case: AccessCase, *, with_expected: bool = True) -> dict[str, Any]:
    """JSON data for ``case`` (keys in a stable, readable order)."""
    steps = [_step(s) for s in case.steps]
    if with_expected:
        for entry, exp in zip(steps, case.expectations()):
            if isinstance(exp, MaintExpectation):
                entry["expected"] = [{"result": "completes, replacing "
                                      + " or ".join(_hex(v) for v in sorted(exp.old))}]
            else:
                entry["expected"] = [{"result": e.describe(),
                                      "rules": list(e.outcome.rules + e.rules),
                                      "fields": [f.describe() for f in e.fields]} for e in exp]
    return {
        **head_data(FORMAT, VERSION, case.key, case.seed, case.cpu),
        "config": {"vtcr": _hex(case.config.vtcr()), "vttbr": _hex(case.config.vttbr),
                   **({"s2pir": _hex(case.config.s2pir)} if case.config.s2pir else {}),
                   "describe": case.config.describe()},
        "memory": {"ram": [[_hex(b), _hex(s)] for b, s in case.memory_map.ram],
                   "empty": [_hex(a) for a in case.memory_map.empty]},
        "image": _image(case.image),
        **({"other_image": _image(case.other)} if case.other else {}),
        "data": regions_data(case.data),
        "el1": {"pa": _hex(case.el1.pa), "size": _hex(case.el1.size),
                "insns": {k.name: [_hex(o) for o in offs] for k, offs in case.el1.insns.items()},
                "ipa": _hex(case.el1_ipa)},
        "steps": steps,
    }


# --- reading ---------------------------------------------------------------------

def _read_image(data: Any, where: str, budget: list[int]) -> Image:
    window = _get(data, "window", list, where)
    if len(window) != 2:
        raise CaseFormatError(f"{where}.window: expected [base, size]")
    return Image(regions=read_regions(_get(data, "regions", list, where), f"{where}.regions",
                                       budget),
                 vttbr=_int(_get(data, "vttbr", str, where), f"{where}.vttbr"),
                 root=_int(_get(data, "root", str, where), f"{where}.root", 52),
                 window=(_int(window[0], f"{where}.window[0]", 52),
                         _int(window[1], f"{where}.window[1]", 52)),
                 tables=tuple(_read_table(t, f"{where}.tables[{i}]")
                              for i, t in enumerate(data.get("tables", []))))


def _read_table(item: Any, where: str) -> tuple[int, int]:
    """(level, PA) of one table of an image (informational: which tables
    the generator built, e.g. for a reader looking for a leaf)."""
    if not isinstance(item, list) or len(item) != 2 or isinstance(item[0], bool) \
            or not isinstance(item[0], int) or not -1 <= item[0] <= 3:
        raise CaseFormatError(f"{where}: expected [level, PA]")
    return item[0], _int(item[1], f"{where}[1]", 52)


def _read_kind(name: Any, arch: Arch | None, where: str) -> AccessKind:
    """The access kind ``name`` (of ``arch`` unless None)."""
    try:
        kind = AccessKind[name]
    except (KeyError, TypeError):
        raise CaseFormatError(f"{where}: {name!r} is not an access kind") from None
    if arch is not None and kind.arch is not arch:
        raise CaseFormatError(f"{where}: {name} is not an access kind of {arch.value}")
    return kind


def _read_step(data: Any, arch: Arch, where: str) -> Step:
    kind = _get(data, "type", str, where)
    aim = data.get("aim", "")
    if not isinstance(aim, str):
        raise CaseFormatError(f"{where}.aim: expected a string")
    if kind == "access":
        words = _get(data, "data", list, where)
        if len(words) != 2:
            raise CaseFormatError(f"{where}.data: expected two words")
        chunk = data.get("chunk")
        hcr_dc = data.get("hcr_dc", False)
        if not isinstance(hcr_dc, bool):
            raise CaseFormatError(f"{where}.hcr_dc: expected a boolean")
        return AccessStep(_read_kind(data.get("kind"), arch, f"{where}.kind"),
                          _int(_get(data, "ipa", str, where), f"{where}.ipa",
                               64 if arch is Arch.AARCH64 else 32),
                          aim, hcr_dc, (_int(words[0], f"{where}.data[0]"),
                                        _int(words[1], f"{where}.data[1]")),
                          None if chunk is None else _int(chunk, f"{where}.chunk", 52))
    if kind == "descriptor-write":
        tlbi = Tlbi.NONE
        for name in _get(data, "tlbi", list, where):
            try:
                tlbi |= Tlbi[name]
            except (KeyError, TypeError):
                raise CaseFormatError(f"{where}.tlbi: {name!r} is not one of "
                                      f"{', '.join(str(t.name) for t in Tlbi if t)}") from None
        return DescWriteStep(_int(_get(data, "pa", str, where), f"{where}.pa", 52),
                             _int(_get(data, "value", str, where), f"{where}.value"),
                             _int(_get(data, "ipa", str, where), f"{where}.ipa"), tlbi, aim)
    if kind == "set-vttbr":
        return SetVttbrStep(_int(_get(data, "vttbr", str, where), f"{where}.vttbr"),
                            _get(data, "tlbi", bool, where), aim)
    raise CaseFormatError(f"{where}.type: {kind!r} is not access, descriptor-write or set-vttbr")


def access_case_from_data(data: Any) -> AccessCase:
    """Validate JSON data and rebuild the AccessCase it describes."""
    arch, cpu = read_head(data, FORMAT, VERSION, "access case")
    cfg = _get(data, "config", dict, "case")
    config = S2Config.from_vtcr(arch, _int(_get(cfg, "vtcr", str, "config"), "config.vtcr",
                                           64 if arch is Arch.AARCH64 else 32),
                                _int(_get(cfg, "vttbr", str, "config"), "config.vttbr"),
                                _int(cfg.get("s2pir", "0x0"), "config.s2pir")
                                if arch is Arch.AARCH64 else 0)
    mmap = read_memory_map(data)
    budget = [0]
    image = _read_image(_get(data, "image", dict, "case"), "image", budget)
    other = _read_image(data["other_image"], "other_image", budget) if "other_image" in data \
        else None
    chunks = read_regions(data.get("data", []), "data", budget)
    el1 = _get(data, "el1", dict, "case")
    insns = {}
    for name, offs in _get(el1, "insns", dict, "el1").items():
        if not isinstance(offs, list) or not 1 <= len(offs) <= 2:
            raise CaseFormatError(f"el1.insns.{name}: expected one or two offsets")
        insns[_read_kind(name, None, f"el1.insns.{name}")] = tuple(
            _int(o, f"el1.insns.{name}", 20) for o in offs)
    window = El1Window(_int(_get(el1, "pa", str, "el1"), "el1.pa", 52),
                       _int(_get(el1, "size", str, "el1"), "el1.size", 20),
                       MappingProxyType(insns))
    steps = _get(data, "steps", list, "case")
    if len(steps) > MAX_STEPS:
        raise CaseFormatError(f"steps: more than {MAX_STEPS}")
    parsed = tuple(_read_step(s, arch, f"steps[{i}]") for i, s in enumerate(steps))
    for i, s in enumerate(parsed):
        if isinstance(s, AccessStep) and s.kind not in insns:
            raise CaseFormatError(f"steps[{i}]: el1.insns has no {s.kind.name}")
    try:
        Memory(ram=mmap.ram, regions=image.regions + (other.regions if other else ()) + chunks)
    except ValueError as exc:
        raise CaseFormatError(f"regions: {exc}") from None
    key, seed = data.get("key", ""), data.get("seed", 0)
    if not isinstance(key, str) or isinstance(seed, bool) or not isinstance(seed, int):
        raise CaseFormatError("key/seed: expected a string and an integer")
    return AccessCase(key=key, seed=seed, cpu=cpu, config=config, image=image, other=other,
                      data=chunks, el1=window, el1_ipa=_int(_get(el1, "ipa", str, "el1"), "el1.ipa"),
                      memory_map=mmap, steps=parsed)
