"""What the host needs from a built guest stub ELF: its symbols (the job
layout, harness.qemu.job.JobLayout), its loadable bytes (to disassemble around a
faulting PC in crash reports), and symbol names for addresses."""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import capstone
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from reference.access import AccessKind
from reference.access_case import El1Window
from reference.arch import Arch

from ..errors import BuildError
from .job import JobLayout

_MACHINES = {"EM_AARCH64": Arch.AARCH64, "EM_ARM": Arch.AARCH32}


@dataclass(frozen=True)
class StubElf:
    """A parsed stub ELF.  ``symbols``: every named symbol's value (absolute
    symbols included: the linker script's ``__s2_*`` addresses);
    ``segments``: (address, bytes) of each PT_LOAD segment's file image."""

    path: Path
    arch: Arch
    entry: int
    symbols: Mapping[str, int]
    code_labels: tuple[tuple[int, str], ...]     # (address, name) sorted, code symbols only
    segments: tuple[tuple[int, bytes], ...]

    @property
    def layout(self) -> JobLayout:
        return JobLayout.from_symbols(self.arch, self.symbols)

    def read(self, addr: int, length: int) -> bytes | None:
        """Bytes of the loaded image at [addr, addr+length), or None if not
        entirely inside one segment."""
        for base, data in self.segments:
            if base <= addr and addr + length <= base + len(data):
                return data[addr - base:addr - base + length]
        return None

    def symbolize(self, addr: int) -> str:
        """``label+0xoff`` for the nearest code label at or below ``addr``."""
        i = bisect.bisect_right(self.code_labels, (addr, "\uffff")) - 1
        if i < 0:
            return f"{addr:#x}"
        base, name = self.code_labels[i]
        return name if addr == base else f"{name}+{addr - base:#x}"

    def disassemble(self, pc: int, before: int = 6, after: int = 4) -> str:
        """Disassembly of ``before`` instructions up to ``pc`` and ``after``
        past it, the line of ``pc`` marked with ``=>``.  Instructions are
        4 bytes (A64, A32), so the window starts at a fixed offset."""
        start = pc - 4 * before
        code = self.read(start, 4 * (before + after + 1))
        if code is None:
            return f"(no code of {self.path.name} at {pc:#x})"
        if self.arch is Arch.AARCH64:
            md = capstone.Cs(getattr(capstone, "CS_ARCH_ARM64", None) or capstone.CS_ARCH_AARCH64,
                             capstone.CS_MODE_ARM)
        else:
            md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_ARM)
        lines = []
        for off in range(0, len(code), 4):
            addr = start + off
            insns = list(md.disasm(code[off:off + 4], addr))
            text = f"{insns[0].mnemonic} {insns[0].op_str}".strip() if insns else \
                f".inst {int.from_bytes(code[off:off + 4], 'little'):#010x}"
            mark = "=>" if addr == pc else "  "
            lines.append(f"{mark} {addr:#010x} <{self.symbolize(addr)}>: {text}")
        return "\n".join(lines)


@lru_cache(maxsize=16)
def _read_stub_cached(path: Path, mtime_ns: int, size: int) -> StubElf:
    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            arch = _MACHINES.get(elf.header["e_machine"])
            if arch is None:
                raise BuildError(f"{path}: not an ARM ELF ({elf.header['e_machine']})")
            symbols: dict[str, int] = {}
            labels = []
            for section in elf.iter_sections():
                if not isinstance(section, SymbolTableSection):
                    continue
                for sym in section.iter_symbols():
                    if not sym.name or sym.name.startswith("$"):
                        continue   # mapping symbols ($x, $d, $a) name no place
                    symbols.setdefault(sym.name, sym["st_value"])
                    if sym["st_shndx"] not in ("SHN_ABS", "SHN_UNDEF") and \
                            sym["st_info"]["type"] in ("STT_NOTYPE", "STT_FUNC"):
                        labels.append((sym["st_value"], sym.name))
            segments = tuple((seg["p_vaddr"], seg.data()) for seg in elf.iter_segments()
                             if seg["p_type"] == "PT_LOAD" and seg["p_filesz"])
            return StubElf(path, arch, elf.header["e_entry"], MappingProxyType(symbols),
                           tuple(sorted(set(labels))), segments)
    except (OSError, ELFError) as exc:
        raise BuildError(f"cannot read stub ELF {path}: {exc}") from exc


def read_stub(path: Path | str) -> StubElf:
    """Parse a stub ELF (cached while the file is unchanged)."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as exc:
        raise BuildError(f"cannot read stub ELF {p}: {exc}") from exc
    return _read_stub_cached(p, st.st_mtime_ns, st.st_size)


def el1_window(stub: StubElf) -> El1Window:
    """The EL1 window of ``stub`` from its symbols: ``__s2_el1_start/end``,
    and for every access kind of its architecture ``__s2_kind_<NAME>`` (must
    equal the reference's code) and ``__s2_el1_insn_<NAME>`` (and
    ``__s2_el1_insn2_`` for a second access).  Raises BuildError when the
    stub and reference/access.py disagree."""
    syms = stub.symbols
    try:
        start, end = syms["__s2_el1_start"], syms["__s2_el1_end"]
    except KeyError as exc:
        raise BuildError(f"{stub.path} has no EL1 window (symbol {exc} missing)") from exc
    kinds = [k for k in AccessKind if k.arch is stub.arch]
    stub_kinds = {n[len("__s2_kind_"):]: v for n, v in syms.items() if n.startswith("__s2_kind_")}
    if stub_kinds != {k.name: k.code for k in kinds}:
        raise BuildError(f"{stub.path}: access kinds {sorted(stub_kinds.items())} differ from "
                         f"reference/access.py {sorted((k.name, k.code) for k in kinds)}")
    insns = {}
    for k in kinds:
        first = syms.get(f"__s2_el1_insn_{k.name}")
        if first is None or not start <= first < end:
            raise BuildError(f"{stub.path}: no access instruction for {k.name} in the EL1 window")
        second = syms.get(f"__s2_el1_insn2_{k.name}")
        insns[k] = (first - start,) if second is None else (first - start, second - start)
    return El1Window(start, end - start, MappingProxyType(insns))
