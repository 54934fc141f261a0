"""CPU models: what each processor QEMU can emulate implements for stage 2.

The single source of truth for a model is the set of ID register values it
reports (the guest reads them and a test holds the two together); every
stage-2 property (PAMax, stage-2 granules, FEAT_LPA/LPA2/TTST/XNX/HAFDBS/
S2FWB/S2PIE) is decoded from those values by the Arm ARM field definitions.
A register of ``ID_REGISTERS`` that a model does not list reads as zero: the
ID registers are in the reserved ID space, RAZ where a feature is absent
(e.g. ID_AA64MMFR3_EL1 on every ARMv8.0-8.7 core).
For 32-bit ARM, whether the core is an ARMv7-A LPAE implementation or an
ARMv8-A AArch32 one is an explicit field (``arch_version``) because the two
architectures treat descriptor output-address bits [47:40] and misprogrammed
VTCR/VTTBR differently; ``CpuModel.from_id_registers`` decodes it from
ID_DFR0.CopDbg when that register is given.

``CPUS`` names the cores QEMU's virt machine emulates; a model can also be
built from the raw ID register values a guest read
(``CpuModel.from_id_registers``), which is how QEMU's ``max`` is followed
from one QEMU version to the next, and ``model_differences`` says where a
named model and the values a QEMU build reports disagree.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

from .arch import Arch, Granule
from .bits import field

# ID_AA64MMFR0_EL1.PARange -> PA size in bits (Arm ARM D19.2, ID_AA64MMFR0_EL1).
PARANGE_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}

# The ID registers a model may carry, per architecture.  Any of them that a
# model does not list reads as zero (RAZ reserved ID space).
ID_REGISTERS: dict[Arch, tuple[str, ...]] = {
    Arch.AARCH64: ("MIDR_EL1", "ID_AA64MMFR0_EL1", "ID_AA64MMFR1_EL1", "ID_AA64MMFR2_EL1",
                   "ID_AA64MMFR3_EL1", "ID_AA64PFR0_EL1", "ID_AA64PFR1_EL1", "DCZID_EL0",
                   "ID_AA64ISAR1_EL1"),
    Arch.AARCH32: ("MIDR", "ID_MMFR0", "ID_MMFR3", "ID_MMFR4", "ID_PFR1", "ID_DFR0", "ID_PFR0"),
}


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
    # Prose ("as QEMU 10.0.2 reports it"): two models of the same registers
    # are the same model whatever they say of where they come from.
    description: str = dataclasses.field(default="", compare=False)

    @functools.cached_property
    def _regs(self) -> dict[str, int]:
        return dict(self.id_regs)

    @classmethod
    def from_id_registers(cls, arch: Arch, name: str, regs: Mapping[str, int], *,
                          arch_version: int | None = None, description: str = "") -> "CpuModel":
        """A model from raw ID register values (e.g. as a guest read them).

        ``regs`` maps names of ``ID_REGISTERS[arch]`` to their values;
        absent ones read as zero.  AArch64 needs ID_AA64MMFR0_EL1 (PARange
        and the granule fields have no meaningful "absent" value).  For
        AArch32 ``arch_version`` is decoded from ID_DFR0.CopDbg [3:0]
        (Arm ARM G8.2.84: 0b0100/0b0101 are the v7 / v7.1 debug
        architectures, "not permitted in Armv8"; 0b0110 and up are Armv8
        and later) unless given; without ID_DFR0, or with CopDbg 0 (no
        debug architecture), it must be given.  ValueError (one line) for
        an unknown register, a value that does not fit it, or missing
        information."""
        known = ID_REGISTERS[arch]
        width = 64 if arch is Arch.AARCH64 else 32
        for reg_name, value in regs.items():
            if reg_name not in known:
                raise ValueError(f"{reg_name} is not an ID register of the {arch.value} models "
                                 f"(known: {', '.join(known)})")
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << width:
                raise ValueError(f"{reg_name}={value!r} is not a {width}-bit value")
        if arch is Arch.AARCH64:
            if "ID_AA64MMFR0_EL1" not in regs:
                raise ValueError("ID_AA64MMFR0_EL1 is needed (PARange, granule support)")
            version = 8 if arch_version is None else arch_version
        elif arch_version is not None:
            version = arch_version
        else:
            copdbg = field(regs.get("ID_DFR0", 0), 3, 0)
            if copdbg in (0b0100, 0b0101):
                version = 7
            elif copdbg >= 0b0110:
                version = 8
            else:
                raise ValueError("arch_version is needed: ID_DFR0.CopDbg does not say whether "
                                 "the core is ARMv7 or ARMv8")
        ordered = tuple((n, regs[n]) for n in known if n in regs)
        return cls(name=name, arch=arch, arch_version=version, id_regs=ordered,
                   description=description)

    def reg(self, name: str) -> int:
        """The value of ID register ``name``; 0 for one of ``ID_REGISTERS``
        the model does not list (RAZ); KeyError for any other name."""
        if name not in ID_REGISTERS[self.arch]:
            raise KeyError(f"{name} is not an ID register of the {self.arch.value} models")
        return self._regs.get(name, 0)

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
    def feat_s2pie(self) -> bool:
        """FEAT_S2PIE (ID_AA64MMFR3_EL1.S2PIE [15:12] >= 1): stage-2
        permission indirection, VTCR_EL2.S2PIE and S2PIR_EL2 (HaveS2PIExt).
        AArch64 only: S2PIR_EL2 is present only with FEAT_AA64."""
        return self.arch is Arch.AARCH64 and field(self.reg("ID_AA64MMFR3_EL1"), 15, 12) >= 1

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
            "FEAT_S2PIE": self.feat_s2pie,
            "FEAT_BBM": self.bbm,
            "arch_version": self.arch_version,
        }


def _a64(name: str, midr: int, mmfr0: int, mmfr1: int, mmfr2: int, pfr0: int,
         description: str, dczid: int = 4, pfr1: int = 0, isar1: int = 0,
         mmfr3: int = 0) -> CpuModel:
    # DCZID_EL0.BS = 4: 64-byte DC ZVA blocks, on every model QEMU has.
    # ID_AA64ISAR1_EL1 is always listed (0 for the v8.0 cores) so that
    # FEAT_XS is known rather than unknown (reference.stage1.feat_xs);
    # ID_AA64MMFR3_EL1 only where it is non-zero (RAZ elsewhere).
    regs = (("MIDR_EL1", midr), ("ID_AA64MMFR0_EL1", mmfr0), ("ID_AA64MMFR1_EL1", mmfr1),
            ("ID_AA64MMFR2_EL1", mmfr2)) + ((("ID_AA64MMFR3_EL1", mmfr3),) if mmfr3 else ()) \
        + (("ID_AA64PFR0_EL1", pfr0), ("ID_AA64PFR1_EL1", pfr1), ("DCZID_EL0", dczid),
           ("ID_AA64ISAR1_EL1", isar1))
    return CpuModel(name=name, arch=Arch.AARCH64, arch_version=8, description=description,
                    id_regs=regs)


def _a32(name: str, version: int, midr: int, mmfr0: int, mmfr3: int, mmfr4: int, pfr1: int,
         description: str, pfr0: int = 0x1131, dfr0: int = 0) -> CpuModel:
    return CpuModel(name=name, arch=Arch.AARCH32, arch_version=version, description=description,
                    id_regs=(("MIDR", midr), ("ID_MMFR0", mmfr0), ("ID_MMFR3", mmfr3),
                             ("ID_MMFR4", mmfr4), ("ID_PFR1", pfr1), ("ID_DFR0", dfr0),
                             ("ID_PFR0", pfr0)))


# The values each model reports under QEMU's virt machine with
# virtualization=on, secure=off (EL3 fields read as 0, no GICv3 system
# registers, no MTE).  For the real cores they are the values QEMU takes
# from the core's Technical Reference Manual (target/arm/tcg/cpu64.c); "max"
# is QEMU 7.2's model of "all features QEMU implements" (a newer QEMU's max
# is built from its own ID registers: CpuModel.from_id_registers).
#
# cortex-a55 (QEMU 8.0, aarch64_a55_initfn), neoverse-v1 (8.1,
# aarch64_neoverse_v1_initfn), cortex-a710 and neoverse-n2 (8.2,
# aarch64_a710_initfn, aarch64_neoverse_n2_initfn) and a64fx (6.2,
# aarch64_a64fx_initfn): MIDR and ID_AA64MMFR0-2 as set at QEMU v10.0.0
# (commit 7c949c53e9) and unchanged on master to 2026-02; ID_AA64PFR0 as
# the guest reads it (EL3 and GIC fields cleared by the board).  All five
# measured with the stub on Debian's QEMU 10.0.2, 10.0.13 and 11.1.3
# (identical); QEMU 7.2 has only a64fx of them.  cortex-a78ae (QEMU 10.2)
# is not accepted by the virt machine and is left out.
#
# ID_AA64PFR1_EL1, ID_AA64ISAR1_EL1 and ID_DFR0 (job ABI 3) as the stub
# reads them on QEMU 7.2.22, 10.0.2, 10.0.13 and 11.1.3, the same on all
# four except where noted; QEMU's TCG clears the trace fields it does not
# implement (ID_DFR0.MMapTrc, commit 7d8c283e10, QEMU 8.1), as it clears
# EL3 and GIC fields, so the table does too.  Known disagreements, reported
# by ``model_differences`` when a run meets them: cortex-a15/a7 on QEMU 7.2
# (ID_DFR0.MMapTrc = 1), neoverse-v1 on 11.1.3 (ID_AA64ISAR1_EL1.BF16 = 0;
# the core has FEAT_BF16, QEMU commit 8676007eff).
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
             "ARMv8.2, 40-bit PA, HAFDBS, XNX", pfr1=0x10, isar1=0x100001),
        _a64("neoverse-n1", 0x414FD0C1, 0x0000000000101125, 0x0000000010212122,
             0x0000000000001011, 0x1100000010110112,
             "ARMv8.2, 48-bit PA, HAFDBS, XNX", pfr1=0x20, isar1=0x100001),
        _a64("cortex-a55", 0x412FD050, 0x0000000000101122, 0x0000000010212122,
             0x0000000000001011, 0x0000000010110222,
             "ARMv8.2, 40-bit PA, HAFDBS, XNX", pfr1=0x10, isar1=0x100001),
        _a64("a64fx", 0x461F0010, 0x0000000000001122, 0x0000000011212100,
             0x0000000000001011, 0x0000000101110111,
             "ARMv8.2 (Fujitsu), 40-bit PA, no 16K granule, XNX, no HAFDBS",
             dczid=6,    # 256-byte DC ZVA blocks (aarch64_a64fx_initfn: dcz_blocksize = 6)
             isar1=0x10001),
        _a64("neoverse-v1", 0x411FD402, 0x0000000000101125, 0x0000000010212122,
             0x0220011102101011, 0x1101000120110112,
             "ARMv8.4, 48-bit PA, HAFDBS, XNX, S2FWB, BBM level 2",
             pfr1=0x20, isar1=0x0011100010211302),
        _a64("cortex-a710", 0x412FD471, 0x0000022200101122, 0x0000000010212122,
             0x1221011110101011, 0x1201001120110112,
             "ARMv9.0, 40-bit PA, HAFDBS, XNX, TTST, S2FWB, BBM level 2",
             pfr1=0x121, isar1=0x0010111110211502),
        _a64("neoverse-n2", 0x410FD493, 0x0000022200101125, 0x0000000010212122,
             0x1221011112101011, 0x1201001120110112,
             "ARMv9.0, 48-bit PA, HAFDBS, XNX, TTST, S2FWB, BBM level 2",
             pfr1=0x121, isar1=0x0011111110211502),
        _a64("max", 0x000F0510, 0x0000032310201126, 0x0000011010211122,
             0x1021011010011011, 0x1201001120110222,
             "QEMU max: 52-bit PA (LPA, LPA2), TTST, HAFDBS, XNX, S2FWB",
             pfr1=0x1000021, isar1=0x0011111101211012),
        _a32("cortex-a15", 7, 0x414FC0F0, 0x10201105, 0x02102211, 0x00000000, 0x00011001,
             "ARMv7-A with LPAE and virtualization", dfr0=0x02000505),
        _a32("cortex-a7", 7, 0x410FC075, 0x10101105, 0x02102211, 0x00000000, 0x00011001,
             "ARMv7-A with LPAE and virtualization", dfr0=0x02000505),
        _a32("max", 8, 0x411FD070, 0x10101105, 0x02122211, 0x00011110, 0x00011001,
             "QEMU max for qemu-system-arm: ARMv8-A AArch32 (Cortex-A57 view)",
             pfr0=0x11020131, dfr0=0x06010009),
    )
}


@dataclasses.dataclass(frozen=True)
class ModelDifference:
    """Where two models of one core disagree: an ID register (``what`` is
    its name, the values raw) or a stage-2 property decoded from them
    (``what`` is its key in CpuModel.features())."""

    what: str
    expected: object
    observed: object

    def describe(self) -> str:
        if isinstance(self.expected, int) and not isinstance(self.expected, bool) \
                and self.what.startswith(("ID_", "MIDR")):
            return f"{self.what}: model {self.expected:#x}, observed {self.observed:#x}"
        return f"{self.what}: model {self.expected}, observed {self.observed}"


def model_differences(model: CpuModel, observed: CpuModel) -> tuple[ModelDifference, ...]:
    """Every ID register ``observed`` lists whose value differs from
    ``model``'s (absent registers read as zero), then every decoded
    stage-2 property that differs.  Empty when they agree."""
    if model.arch is not observed.arch:
        raise ValueError(f"{model.name} is {model.arch.value}, {observed.name} is "
                         f"{observed.arch.value}")
    out = [ModelDifference(n, model.reg(n), v) for n, v in observed.id_regs if model.reg(n) != v]
    mine, theirs = model.features(), observed.features()
    out += [ModelDifference(k, mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]]
    return tuple(out)


def cpu_names(arch: Arch) -> list[str]:
    return [name for (a, name) in CPUS if a is arch]


def get_cpu(arch: Arch, name: str) -> CpuModel:
    """The model named ``name`` for ``arch``; ValueError lists the known ones."""
    try:
        return CPUS[(arch, name)]
    except KeyError:
        raise ValueError(f"unknown CPU model {name!r} for {arch.value} "
                         f"(known: {', '.join(cpu_names(arch))})") from None
