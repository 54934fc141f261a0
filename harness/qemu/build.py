"""Build the guest stubs (guest/<arch>/stub.S + link.ld) with the cross
binutils into a build directory outside git.

Nothing prebuilt is kept in the repository: the ELF is rebuilt whenever it
is missing or older than any of its sources (the stub's directory and this
file, which holds the flags).  The result is written to a temporary name
and renamed into place, so concurrent builds never see a half-written ELF.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from reference.arch import Arch

from ..errors import BuildError, ToolMissing

REPO_ROOT = Path(__file__).resolve().parents[2]
GUEST_DIR = REPO_ROOT / "guest"


@dataclass(frozen=True)
class Toolchain:
    """Cross assembler and linker for one stub, and the Debian package
    that provides them."""

    arch: Arch
    assembler: str
    linker: str
    package: str
    as_flags: tuple[str, ...] = ()


TOOLCHAINS = {
    Arch.AARCH64: Toolchain(Arch.AARCH64, "aarch64-linux-gnu-as", "aarch64-linux-gnu-ld",
                            "binutils-aarch64-linux-gnu"),
    # The ARM stub selects armv7-a + virt itself (.arch directives).
    Arch.AARCH32: Toolchain(Arch.AARCH32, "arm-none-eabi-as", "arm-none-eabi-ld",
                            "binutils-arm-none-eabi"),
}


def default_build_dir() -> Path:
    """``$S2DIFF_BUILD_DIR`` or ``build/guest`` under the repository root
    (gitignored)."""
    env = os.environ.get("S2DIFF_BUILD_DIR")
    return Path(env) if env else REPO_ROOT / "build" / "guest"


def stub_sources(arch: Arch) -> tuple[Path, ...]:
    """Every file the stub of ``arch`` is built from."""
    src = GUEST_DIR / arch.value
    files = tuple(sorted(p for p in src.iterdir() if p.is_file()))
    if not (src / "stub.S").exists() or not (src / "link.ld").exists():
        raise BuildError(f"guest sources missing in {src} (expected stub.S and link.ld)")
    return files


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} not found: install the Debian package {package}")
    return path


@lru_cache(maxsize=None)
def _ld_knows_rwx_flag(linker: str) -> bool:
    # binutils >= 2.39 warns that the stub's single RWX segment is RWX; the
    # stub is one flat bare-metal image, so the warning says nothing.
    out = subprocess.run([linker, "--help"], capture_output=True, text=True, check=False)
    return "--no-warn-rwx-segments" in out.stdout


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr.strip()}")


def build_stub(arch: Arch, *, build_dir: Path | None = None, force: bool = False) -> Path:
    """Path of the stub ELF for ``arch``, (re)built if needed.

    Raises ToolMissing (naming the Debian package) when the cross binutils
    are absent and BuildError when assembling or linking fails."""
    chain = TOOLCHAINS[arch]
    sources = stub_sources(arch) + (Path(__file__).resolve(),)
    out_dir = (build_dir or default_build_dir()) / arch.value
    elf = out_dir / "stub.elf"
    newest = max(p.stat().st_mtime_ns for p in sources)
    if not force and elf.exists() and elf.stat().st_mtime_ns >= newest:
        return elf

    assembler = _tool(chain.assembler, chain.package)
    linker = _tool(chain.linker, chain.package)
    src = GUEST_DIR / arch.value
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out_dir) as tmp:
        obj = Path(tmp) / "stub.o"
        tmp_elf = Path(tmp) / "stub.elf"
        _run([assembler, *chain.as_flags, "-I", str(src), "-o", str(obj), str(src / "stub.S")])
        ld_flags = ["--no-warn-rwx-segments"] if _ld_knows_rwx_flag(linker) else []
        _run([linker, *ld_flags, "-T", str(src / "link.ld"), "-o", str(tmp_elf), str(obj)])
        os.replace(tmp_elf, elf)
    return elf
