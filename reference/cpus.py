"""CPU models: what each processor QEMU can emulate implements for stage 2.

The single source of truth for a model is the set of ID register values it
reports (the guest reads them and a test holds the two together); every
stage-2 property (PAMax, stage-2 granules, FEAT_LPA/LPA2/TTST/XNX/HAFDBS/
S2FWB) is decoded from those values by the Arm ARM field definitions.
The one thing the ID registers cannot say for 32-bit ARM, whether the core is
an ARMv7-A LPAE implementation or an ARMv8-A AArch32 one, is an explicit
field because the two architectures treat descriptor output-address bits
[47:40] differently.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

from .arch import Arch, Granule
from .bits import field

# ID_AA64MMFR0_EL1.PARange -> PA size in bits (Arm ARM D19.2, ID_AA64MMFR0_EL1).
PARANGE_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}


@dataclasses.dataclass(frozen=True)
class CpuModel:
    """One processor model.

    ``id_regs`` maps register names (as the guest reports them, see
    docs/job-abi.md) to the value the model is expected to report.
    ``arch_version`` is 8 for ARMv8-A (and later) and 7 for ARMv7-A with LPAE.
    """

    name: str
    arch: Arch
    arch_version: int
    id_regs: tuple[tuple[str, int], ...]
    description: str = ""

    @functools.cached_property
    def _regs(self) -> dict[str, int]:
        return dict(self.id_regs)

    def reg(self, name: str) -> int:
        return self._regs[name]

    # -- AArch64 features, decoded from ID_AA64MMFR0/1/2_EL1 -----------------

    @functools.cached_property
    def pamax(self) -> int:
        """PAMax in bits: the largest physical (and stage-2 input) address size.

        AArch32 with LPAE: 40 bits (ARMv7 LPAE and ARMv8 AArch32 alike)."""
        if self.arch is Arch.AARCH32:
            return 40
        return PARANGE_BITS[field(self.reg("ID_AA64MMFR0_EL1"), 3, 0)]

    def _tgran(self, granule: Granule) -> tuple[int, int]:
        """(stage-1 field, stage-2 field) of ID_AA64MMFR0_EL1 for ``granule``."""
        mmfr0 = self.reg("ID_AA64MMFR0_EL1")
        if granule is Granule.G4K:
            return field(mmfr0, 31, 28), field(mmfr0, 43, 40)
        if granule is Granule.G16K:
            return field(mmfr0, 23, 20), field(mmfr0, 35, 32)
        return field(mmfr0, 27, 24), field(mmfr0, 39, 36)

    def s2_granule_supported(self, granule: Granule) -> bool:
        return self._s2_support[granule][0]

    def s2_granule_52bit(self, granule: Granule) -> bool:
        """Stage 2 supports 52-bit addresses with this 4K/16K granule (FEAT_LPA2)."""
        return self._s2_support[granule][1]

    @functools.cached_property
    def _s2_support(self) -> dict[Granule, tuple[bool, bool]]:
        """(supported, 52-bit) per granule, decoded once."""
        return {g: (self._decode_s2_granule(g), self._decode_s2_granule_52bit(g)) for g in Granule}

    def _decode_s2_granule(self, granule: Granule) -> bool:
        """Stage-2 support for ``granule`` (TGranX_2; 0b0000 means "as TGranX").

        TGran4/TGran64: 0b0000 supported, 0b0001 supported with 52-bit (4K),
        0b1111 not supported.  TGran16: 0b0000 not supported, 0b0001
        supported, 0b0010 with 52-bit.  TGranX_2: 0b0001 not supported,
        0b0010 supported, 0b0011 supported with 52-bit."""
        if self.arch is Arch.AARCH32:
            return granule is Granule.G4K
        s1, s2 = self._tgran(granule)
        if s2 == 0:
            if granule is Granule.G16K:
                return s1 in (1, 2)
            return s1 in (0, 1)
        return s2 in (2, 3)

    def _decode_s2_granule_52bit(self, granule: Granule) -> bool:
        if self.arch is Arch.AARCH32 or granule is Granule.G64K:
            return False
        s1, s2 = self._tgran(granule)
        if s2 == 0:
            return s1 == (1 if granule is Granule.G4K else 2)
        return s2 == 3

    @functools.cached_property
    def s2_granules(self) -> tuple[Granule, ...]:
        return tuple(g for g in Granule if self.s2_granule_supported(g))

    @functools.cached_property
    def feat_lpa(self) -> bool:
        """FEAT_LPA: 52-bit PA with the 64K granule (PARange = 0b0110)."""
        return self.arch is Arch.AARCH64 and self.pamax == 52

    @functools.cached_property
    def feat_lpa2(self) -> bool:
        """FEAT_LPA2: 52-bit addresses with 4K/16K granules (VTCR_EL2.DS)."""
        return any(self.s2_granule_52bit(g) for g in (Granule.G4K, Granule.G16K))

    @functools.cached_property
    def feat_ttst(self) -> bool:
        """FEAT_TTST (ID_AA64MMFR2_EL1.ST): small translation tables, T0SZ up to 48/47."""
        return self.arch is Arch.AARCH64 and field(self.reg("ID_AA64MMFR2_EL1"), 31, 28) >= 1

    @functools.cached_property
    def feat_xnx(self) -> bool:
        """FEAT_XNX (ID_AA64MMFR1_EL1.XNX, or ID_MMFR4.XNX [11:8] for AArch32):
        stage-2 XN[1:0] distinguishes EL0 and EL1."""
        if self.arch is Arch.AARCH32:
            return field(self.reg("ID_MMFR4"), 11, 8) >= 1
        return field(self.reg("ID_AA64MMFR1_EL1"), 31, 28) >= 1

    @functools.cached_property
    def bbm(self) -> int:
        """ID_AA64MMFR2_EL1.BBM: FEAT_BBM level (0, 1 or 2); with level 1 or 2
        a block's nT bit (16) may cause a Translation fault."""
        if self.arch is Arch.AARCH32:
            return 0
        return field(self.reg("ID_AA64MMFR2_EL1"), 55, 52)

    @functools.cached_property
    def hafdbs(self) -> int:
        """ID_AA64MMFR1_EL1.HAFDBS: 0 none, 1 hardware Access flag, 2 AF and dirty state."""
        if self.arch is Arch.AARCH32:
            return 0
        return field(self.reg("ID_AA64MMFR1_EL1"), 3, 0)

    @functools.cached_property
    def feat_s2fwb(self) -> bool:
        """FEAT_S2FWB (ID_AA64MMFR2_EL1.FWB)."""
        return self.arch is Arch.AARCH64 and field(self.reg("ID_AA64MMFR2_EL1"), 43, 40) >= 1

    @functools.cached_property
    def dczva_bytes(self) -> int:
        """DC ZVA block size in bytes: 4 << DCZID_EL0.BS (AArch64.MemZero)."""
        return 4 << field(self.reg("DCZID_EL0"), 3, 0)

    def features(self) -> Mapping[str, object]:
        """The decoded stage-2 properties, for listings and case files."""
        return {
            "pamax": self.pamax,
            "s2_granules": [g.label for g in self.s2_granules],
            "FEAT_LPA": self.feat_lpa,
            "FEAT_LPA2": self.feat_lpa2,
            "FEAT_TTST": self.feat_ttst,
            "FEAT_XNX": self.feat_xnx,
            "FEAT_HAFDBS": self.hafdbs,
            "FEAT_S2FWB": self.feat_s2fwb,
            "arch_version": self.arch_version,
        }


def _a64(name: str, midr: int, mmfr0: int, mmfr1: int, mmfr2: int, pfr0: int,
         description: str, dczid: int = 4) -> CpuModel:
    # DCZID_EL0.BS = 4: 64-byte DC ZVA blocks, on every model QEMU has.
    return CpuModel(name=name, arch=Arch.AARCH64, arch_version=8, description=description,
                    id_regs=(("MIDR_EL1", midr), ("ID_AA64MMFR0_EL1", mmfr0),
                             ("ID_AA64MMFR1_EL1", mmfr1), ("ID_AA64MMFR2_EL1", mmfr2),
                             ("ID_AA64PFR0_EL1", pfr0), ("DCZID_EL0", dczid)))


def _a32(name: str, version: int, midr: int, mmfr0: int, mmfr3: int, mmfr4: int, pfr1: int,
         description: str, pfr0: int = 0x1131) -> CpuModel:
    return CpuModel(name=name, arch=Arch.AARCH32, arch_version=version, description=description,
                    id_regs=(("MIDR", midr), ("ID_MMFR0", mmfr0), ("ID_MMFR3", mmfr3),
                             ("ID_MMFR4", mmfr4), ("ID_PFR1", pfr1), ("ID_PFR0", pfr0)))


# The values each model reports under QEMU's virt machine with
# virtualization=on, secure=off (EL3 fields read as 0).  For the real cores
# they are the values of the core's Technical Reference Manual; "max" is
# QEMU's own model of "all features QEMU implements".
CPUS: dict[tuple[Arch, str], CpuModel] = {
    (m.arch, m.name): m for m in (
        _a64("cortex-a35", 0x411FD040, 0x0000000000101122, 0, 0, 0x0000000000000222,
             "ARMv8.0, 40-bit PA, 4K/16K/64K"),
        _a64("cortex-a53", 0x410FD034, 0x0000000000001122, 0, 0, 0x0000000000000222,
             "ARMv8.0, 40-bit PA, no 16K granule"),
        _a64("cortex-a57", 0x411FD070, 0x0000000000001124, 0, 0, 0x0000000000000222,
             "ARMv8.0, 44-bit PA, no 16K granule"),
        _a64("cortex-a72", 0x410FD083, 0x0000000000001124, 0, 0, 0x0000000000000222,
             "ARMv8.0, 44-bit PA, no 16K granule"),
        _a64("cortex-a76", 0x414FD0B1, 0x0000000000101122, 0x0000000010212122,
             0x0000000000001011, 0x1100000010110112,
             "ARMv8.2, 40-bit PA, HAFDBS, XNX"),
        _a64("neoverse-n1", 0x414FD0C1, 0x0000000000101125, 0x0000000010212122,
             0x0000000000001011, 0x1100000010110112,
             "ARMv8.2, 48-bit PA, HAFDBS, XNX"),
        _a64("max", 0x000F0510, 0x0000032310201126, 0x0000011010211122,
             0x1021011010011011, 0x1201001120110222,
             "QEMU max: 52-bit PA (LPA, LPA2), TTST, HAFDBS, XNX, S2FWB"),
        _a32("cortex-a15", 7, 0x414FC0F0, 0x10201105, 0x02102211, 0x00000000, 0x00011001,
             "ARMv7-A with LPAE and virtualization"),
        _a32("cortex-a7", 7, 0x410FC075, 0x10101105, 0x02102211, 0x00000000, 0x00011001,
             "ARMv7-A with LPAE and virtualization"),
        _a32("max", 8, 0x411FD070, 0x10101105, 0x02122211, 0x00011110, 0x00011001,
             "QEMU max for qemu-system-arm: ARMv8-A AArch32 (Cortex-A57 view)",
             pfr0=0x11020131),
    )
}


def cpu_names(arch: Arch) -> list[str]:
    return [name for (a, name) in CPUS if a is arch]


def get_cpu(arch: Arch, name: str) -> CpuModel:
    """The model named ``name`` for ``arch``; ValueError lists the known ones."""
    try:
        return CPUS[(arch, name)]
    except KeyError:
        raise ValueError(f"unknown CPU model {name!r} for {arch.value} "
                         f"(known: {', '.join(cpu_names(arch))})") from None
