"""Memory attributes of a translation, and how the two stages combine them.

The records and functions follow the Arm ARM pseudocode (DDI 0487, as
published in the Sail translation rems-project/sail-arm, arm-v9.4-a
v8_base.sail): ``MemoryAttributes``/``MemAttrHints`` and the decoders
S1DecodeMemAttrs, S2DecodeMemAttrs, DecodeLDFAttr, S2DecodeCacheability,
DecodeShareability; the combiners S2CombineS1MemAttrs, S2CombineS1Device,
S2CombineS1AttrHints, S2CombineS1Shareability, EffectiveShareability,
AArch64.S2ApplyFWBMemAttrs (HCR_EL2.FWB = 1), NormalNCMemAttr and the
attributes of AArch64.S1DisabledOutput; and the PAR encoders
EncodePARAttrs and PAREncodeShareability.

Where the pseudocode takes a CONSTRAINED UNPREDICTABLE choice (a reserved
shareability or cacheability encoding, a reserved MAIR attribute) a decoder
returns every permitted value, each with the rule that permits it.  The
IMPLEMENTATION DEFINED ReportedPARAttrs / ReportedPARShareability are
modelled by :func:`reported_par_attrs` and :func:`reported_par_shareability`
(see their docstrings for exactly which implementation choices the set
admits).

Not modelled: FEAT_MTE (allocation tags), FEAT_MTE_PERM, FEAT_AIE (MAIR2).
FEAT_XS is a parameter (``feat_xs``): the CPU models in reference/cpus.py
do not carry ID_AA64ISAR1_EL1, so for them it is unknown (None): the
XS-dependent MAIR values (0x40, 0xA0, Device with bit 0 set) are taken as
reserved (attributes UNKNOWN), the stage-2 FnXS bit as 0, and both PAR
encodings of an XS = 0 result are admitted (:func:`reported_par_attrs`).
"""
from __future__ import annotations

import dataclasses
import enum

from . import rules as R
from .bits import bit, field


class MemType(enum.Enum):
    NORMAL = "Normal"
    DEVICE = "Device"


class DeviceType(enum.Enum):
    """Device memory types; ``value`` is the 2-bit encoding of DecodeDevice
    (0b00 nGnRnE, the most restrictive, to 0b11 GRE)."""

    nGnRnE = 0b00
    nGnRE = 0b01
    nGRE = 0b10
    GRE = 0b11


class Cacheability(enum.Enum):
    """MemAttrHints.attrs: Non-cacheable, Write-Through, Write-Back."""

    NC = "NC"
    WT = "WT"
    WB = "WB"


class Shareability(enum.Enum):
    NSH = "NSH"
    ISH = "ISH"
    OSH = "OSH"


# MemHint values (MemAttrHints.hints): allocation hints, 2 bits.
HINT_NO, HINT_WA, HINT_RA, HINT_RWA = 0b00, 0b01, 0b10, 0b11


@dataclasses.dataclass(frozen=True)
class AttrHints:
    """MemAttrHints: the cacheability of one level (inner or outer).

    ``hints`` and ``transient`` are None where the pseudocode leaves them
    UNKNOWN (stage-2 cacheability carries no hints, S2DecodeCacheability);
    no combination ever reports such a value."""

    attrs: Cacheability
    hints: int | None = None
    transient: bool | None = None

    def describe(self) -> str:
        if self.attrs is Cacheability.NC:
            return "NC"
        alloc = {None: "", HINT_NO: "", HINT_WA: " WA", HINT_RA: " RA", HINT_RWA: " RWA"}[self.hints]
        return f"{self.attrs.value}{' transient' if self.transient else ''}{alloc}"


NC_HINTS = AttrHints(Cacheability.NC)


@dataclasses.dataclass(frozen=True)
class MemAttrs:
    """MemoryAttributes: Normal (inner/outer cacheability) or Device (its
    type), the shareability and the XS attribute.  Tags are not modelled."""

    memtype: MemType
    shareability: Shareability
    xs: int
    device: DeviceType | None = None
    inner: AttrHints | None = None
    outer: AttrHints | None = None

    def describe(self) -> str:
        if self.memtype is MemType.DEVICE:
            assert self.device is not None
            return f"Device-{self.device.name} {self.shareability.value}"
        assert self.inner is not None and self.outer is not None
        return (f"Normal inner {self.inner.describe()} outer {self.outer.describe()} "
                f"{self.shareability.value}")


def device_attrs(device: DeviceType, xs: int = 1,
                 shareability: Shareability = Shareability.OSH) -> MemAttrs:
    return MemAttrs(MemType.DEVICE, shareability, xs, device=device)


def normal_attrs(inner: AttrHints, outer: AttrHints, shareability: Shareability,
                 xs: int | None = None) -> MemAttrs:
    """A Normal MemoryAttributes; XS defaults as S1DecodeMemAttrs sets it
    (0 for Write-Back inner and outer, 1 otherwise)."""
    if xs is None:
        xs = 0 if inner.attrs is outer.attrs is Cacheability.WB else 1
    return MemAttrs(MemType.NORMAL, shareability, xs, inner=inner, outer=outer)


# ---------------------------------------------------------------------------
# Decoders
# ---------------------------------------------------------------------------

def decode_shareability(sh: int, what: str) -> list[tuple[Shareability, tuple[str, ...]]]:
    """DecodeShareability: 0b00 NSH, 0b10 OSH, 0b11 ISH; the reserved 0b01
    is CONSTRAINED UNPREDICTABLE (Unpredictable_Shareability): NSH, ISH or
    OSH."""
    known = {0b00: Shareability.NSH, 0b10: Shareability.OSH, 0b11: Shareability.ISH}
    if sh in known:
        return [(known[sh], ())]
    return [(s, (R.MEM_SH_RESERVED.text(
        f"CONSTRAINED UNPREDICTABLE (Unpredictable_Shareability): {what} SH=0b01 "
        f"taken as {s.value}"),)) for s in Shareability]


def decode_device(bits2: int) -> DeviceType:
    """DecodeDevice."""
    return DeviceType(bits2 & 0b11)


def decode_ldf_attr(nibble: int) -> AttrHints:
    """DecodeLDFAttr: one MAIR nibble (not 0b0000, and for an outer nibble
    not 0b0000 either) -> cacheability, allocation hints, transient.

    0b00RW (RW != 00) WT transient; 0b0100 NC; 0b01RW (RW != 00) WB
    transient; 0b10RW WT; 0b11RW WB.  Transient only with a hint."""
    if nibble == 0b0100:
        return NC_HINTS
    attrs = Cacheability.WT if not bit(nibble, 2) else Cacheability.WB
    hints = nibble & 0b11
    transient = hints != HINT_NO and bit(nibble, 3) == 0
    return AttrHints(attrs, hints, transient)


def s1_constrain_unpredictable_resmair(attr: int, s1aarch64: bool, feat_xs: bool) -> bool:
    """S1ConstrainUnpredictableRESMAIR: whether a MAIR attribute is a
    reserved encoding (its meaning is then CONSTRAINED UNPREDICTABLE).

    Reserved: Device with attr[1:0] != 00 (bit 0 alone is the XS bit with
    FEAT_XS in AArch64), 0x40 and 0xA0 without FEAT_XS, 0xF0 without
    FEAT_MTE2 (not modelled: always reserved), and a Normal outer nibble
    with an inner nibble of 0b0000."""
    if field(attr, 7, 4) == 0:
        if (attr & 0b11) == 0b01:
            return not (s1aarch64 and feat_xs)
        return attr & 0b11 != 0
    if attr in (0x40, 0xA0):
        return not (s1aarch64 and feat_xs)
    if attr == 0xF0:
        return True
    return attr & 0xF == 0


def s1_decode_mem_attrs(attr: int, sh: int, s1aarch64: bool,
                        feat_xs: bool = False) -> list[tuple[MemAttrs | None, tuple[str, ...]]]:
    """S1DecodeMemAttrs: a MAIR attribute and a descriptor SH field ->
    the stage-1 MemoryAttributes.

    A reserved attribute (S1ConstrainUnpredictableRESMAIR) is
    CONSTRAINED UNPREDICTABLE (Unpredictable_RESMAIR): the attributes are
    UNKNOWN, returned as None (every report of them is permitted).
    Device memory is reported with its shareability as OSH in the end
    (EffectiveShareability); the SH field is still decoded, as the
    pseudocode does."""
    if s1_constrain_unpredictable_resmair(attr, s1aarch64, feat_xs):
        return [(None, (R.MEM_RESMAIR.text(
            f"CONSTRAINED UNPREDICTABLE (Unpredictable_RESMAIR): MAIR attribute "
            f"{attr:#04x} is reserved, the attributes are UNKNOWN"),))]
    out: list[tuple[MemAttrs | None, tuple[str, ...]]] = []
    for share, rules in decode_shareability(sh, "stage-1"):
        if field(attr, 7, 4) == 0:
            xs = (1 - bit(attr, 0)) if s1aarch64 else 1
            out.append((device_attrs(decode_device(field(attr, 3, 2)), xs, share), rules))
        elif attr == 0x40:
            out.append((normal_attrs(NC_HINTS, NC_HINTS, share, xs=0), rules))
        elif attr == 0xA0:
            wt = AttrHints(Cacheability.WT, HINT_RA, False)
            out.append((normal_attrs(wt, wt, share, xs=0), rules))
        else:
            out.append((normal_attrs(decode_ldf_attr(field(attr, 3, 0)),
                                     decode_ldf_attr(field(attr, 7, 4)), share), rules))
    return out


def s2_decode_cacheability(bits2: int, what: str) -> list[tuple[AttrHints, tuple[str, ...]]]:
    """S2DecodeCacheability: 0b01 NC, 0b10 WT, 0b11 WB (hints UNKNOWN);
    the reserved 0b00 is CONSTRAINED UNPREDICTABLE (Unpredictable_S2RESMEMATTR):
    NC, WT or WB."""
    known = {0b01: Cacheability.NC, 0b10: Cacheability.WT, 0b11: Cacheability.WB}
    if bits2 in known:
        return [(AttrHints(known[bits2]), ())]
    return [(AttrHints(c), (R.MEM_S2_RESMEMATTR.text(
        f"CONSTRAINED UNPREDICTABLE (Unpredictable_S2RESMEMATTR): stage-2 "
        f"{what} cacheability 0b00 taken as {c.value}"),)) for c in Cacheability]


def s2_decode_mem_attrs(memattr: int, sh: int, fnxs: int = 0) -> list[tuple[MemAttrs, tuple[str, ...]]]:
    """S2DecodeMemAttrs (HCR_EL2.FWB = 0, and AArch32): MemAttr[3:2] = 00
    is Device with type MemAttr[1:0]; otherwise outer = MemAttr[3:2], inner
    = MemAttr[1:0] (S2DecodeCacheability).  XS = NOT FnXS
    (AArch64.S2NextWalkStateLeaf); FnXS is 0 without FEAT_XS.
    FEAT_MTE_PERM (MemAttr 0b0100 NoTagAccess) is not modelled."""
    out: list[tuple[MemAttrs, tuple[str, ...]]] = []
    xs = 1 - fnxs
    for share, srules in decode_shareability(sh, "stage-2"):
        if field(memattr, 3, 2) == 0:
            out.append((device_attrs(decode_device(memattr & 0b11), xs, share), srules))
            continue
        for outer, orules in s2_decode_cacheability(field(memattr, 3, 2), "outer"):
            for inner, irules in s2_decode_cacheability(field(memattr, 1, 0), "inner"):
                out.append((MemAttrs(MemType.NORMAL, share, xs, inner=inner, outer=outer),
                            srules + orules + irules))
    return out


# ---------------------------------------------------------------------------
# Fixed attribute sets
# ---------------------------------------------------------------------------

def normal_nc_mem_attr(xs: int) -> MemAttrs:
    """NormalNCMemAttr: Normal Inner and Outer Non-cacheable, Outer
    Shareable (callers copy XS from the attributes it replaces)."""
    return MemAttrs(MemType.NORMAL, Shareability.OSH, xs, inner=NC_HINTS, outer=NC_HINTS)


def s1_disabled_attrs(dc: int) -> MemAttrs:
    """The data-access attributes of AArch64.S1DisabledOutput /
    AArch32.S1DisabledOutput for the EL1&0 regime with EL2 enabled:
    HCR_EL2.DC = 1 gives Normal Write-Back non-transient Read/Write-Allocate,
    Non-shareable, XS 0; otherwise Device-nGnRnE, Outer Shareable, XS 1."""
    if dc:
        wb = AttrHints(Cacheability.WB, HINT_RWA, False)
        return MemAttrs(MemType.NORMAL, Shareability.NSH, 0, inner=wb, outer=wb)
    return device_attrs(DeviceType.nGnRnE, 1, Shareability.OSH)


# ---------------------------------------------------------------------------
# Combination of the two stages
# ---------------------------------------------------------------------------

def s2_combine_s1_device(s1: DeviceType, s2: DeviceType) -> DeviceType:
    """S2CombineS1Device: the more restrictive type (nGnRnE > nGnRE > nGRE > GRE)."""
    return DeviceType(min(s1.value, s2.value))


def s2_combine_s1_attr_hints(s1: AttrHints, s2: AttrHints) -> AttrHints:
    """S2CombineS1AttrHints: NC if either is NC, else WT if either is WT,
    else WB; the allocation and transient hints come from stage 1."""
    if Cacheability.NC in (s1.attrs, s2.attrs):
        return NC_HINTS
    attrs = Cacheability.WT if Cacheability.WT in (s1.attrs, s2.attrs) else Cacheability.WB
    return AttrHints(attrs, s1.hints, s1.transient)


def s2_combine_s1_shareability(s1: Shareability, s2: Shareability) -> Shareability:
    """S2CombineS1Shareability: OSH if either is OSH, else ISH if either is
    ISH, else NSH."""
    if Shareability.OSH in (s1, s2):
        return Shareability.OSH
    if Shareability.ISH in (s1, s2):
        return Shareability.ISH
    return Shareability.NSH


def effective_shareability(m: MemAttrs) -> Shareability:
    """EffectiveShareability: Device and Normal Inner+Outer Non-cacheable
    memory is Outer Shareable."""
    if m.memtype is MemType.DEVICE or _all_nc(m):
        return Shareability.OSH
    return m.shareability


def _all_nc(m: MemAttrs) -> bool:
    return (m.memtype is MemType.NORMAL and m.inner is not None and m.outer is not None
            and m.inner.attrs is Cacheability.NC and m.outer.attrs is Cacheability.NC)


def s2_combine_s1_mem_attrs(s1: MemAttrs, s2: MemAttrs, s2aarch64: bool) -> MemAttrs:
    """S2CombineS1MemAttrs (HCR_EL2.FWB = 0): Device wins over Normal (both
    Device: S2CombineS1Device); two Normal combine level by level
    (S2CombineS1AttrHints); shareability by S2CombineS1Shareability, then
    EffectiveShareability.  XS: 0 for Normal WB/WB, else the AND of both
    stages (AArch64 stage 2) or stage 1's (AArch32 stage 2)."""
    share = s2_combine_s1_shareability(s1.shareability, s2.shareability)
    if s1.memtype is MemType.DEVICE and s2.memtype is MemType.DEVICE:
        assert s1.device is not None and s2.device is not None
        m = MemAttrs(MemType.DEVICE, share, 0, device=s2_combine_s1_device(s1.device, s2.device))
    elif s1.memtype is MemType.DEVICE:
        m = dataclasses.replace(s1, shareability=share)
    elif s2.memtype is MemType.DEVICE:
        m = dataclasses.replace(s2, shareability=share)
    else:
        assert s1.inner and s1.outer and s2.inner and s2.outer
        m = MemAttrs(MemType.NORMAL, share, 0,
                     inner=s2_combine_s1_attr_hints(s1.inner, s2.inner),
                     outer=s2_combine_s1_attr_hints(s1.outer, s2.outer))
    if (m.memtype is MemType.NORMAL and m.inner and m.outer
            and m.inner.attrs is Cacheability.WB and m.outer.attrs is Cacheability.WB):
        xs = 0
    elif s2aarch64:
        xs = s2.xs & s1.xs
    else:
        xs = s1.xs
    m = dataclasses.replace(m, xs=xs)
    return dataclasses.replace(m, shareability=effective_shareability(m))


def s2_apply_fwb_mem_attrs(s1: MemAttrs, memattr: int, sh: int,
                           fnxs: int = 0) -> list[tuple[MemAttrs, tuple[str, ...]]]:
    """AArch64.S2ApplyFWBMemAttrs (HCR_EL2.FWB = 1): the stage-2 MemAttr
    decides and stage 1 fills in.

    MemAttr[2] = 0: Device, type MemAttr[1:0] combined with a stage-1
    Device type; MemAttr[1:0] = 0b11: the stage-1 attributes; 0b10: Normal
    Write-Back (hints from a cacheable stage 1, else RWA non-transient),
    XS 0; otherwise (0b01, and 0b00 which the pseudocode does not
    distinguish) Normal Non-cacheable, or stage 1's Device.  Shareability
    combined (S2CombineS1Shareability) then EffectiveShareability; FnXS = 1
    forces XS 0."""
    out: list[tuple[MemAttrs, tuple[str, ...]]] = []
    low = memattr & 0b11
    for s2_share, rules in decode_shareability(sh, "stage-2"):
        if bit(memattr, 2) == 0:
            s2_device = decode_device(low)
            device = (s2_combine_s1_device(s1.device, s2_device)
                      if s1.memtype is MemType.DEVICE and s1.device is not None else s2_device)
            m = MemAttrs(MemType.DEVICE, s1.shareability, s1.xs, device=device)
        elif low == 0b11:
            m = s1
        elif low == 0b10:
            m = MemAttrs(MemType.NORMAL, s1.shareability, 0,
                         inner=_fwb_wb(s1, s1.inner), outer=_fwb_wb(s1, s1.outer))
        elif s1.memtype is MemType.DEVICE:
            m = s1
        else:
            m = MemAttrs(MemType.NORMAL, s1.shareability, s1.xs, inner=NC_HINTS, outer=NC_HINTS)
        m = dataclasses.replace(m, shareability=s2_combine_s1_shareability(s1.shareability, s2_share))
        if fnxs:
            m = dataclasses.replace(m, xs=0)
        out.append((dataclasses.replace(m, shareability=effective_shareability(m)), rules))
    return out


def _fwb_wb(s1: MemAttrs, level: AttrHints | None) -> AttrHints:
    """The Write-Back level that FWB MemAttr 0b110 forces: stage 1's hints
    when stage 1 is Normal cacheable at that level, else RWA non-transient."""
    if s1.memtype is MemType.NORMAL and level is not None and level.attrs is not Cacheability.NC:
        return AttrHints(Cacheability.WB, level.hints, level.transient)
    return AttrHints(Cacheability.WB, HINT_RWA, False)


# ---------------------------------------------------------------------------
# What the PAR reports
# ---------------------------------------------------------------------------

def _encode_nibble(h: AttrHints) -> int:
    """One EncodePARAttrs nibble: WT 0b00RW (transient) / 0b10RW, WB 0b01RW
    (transient) / 0b11RW, NC 0b0100."""
    if h.attrs is Cacheability.NC:
        return 0b0100
    assert h.hints is not None, "a reported cacheable level always has stage-1 hints"
    top = {(Cacheability.WT, True): 0b00, (Cacheability.WT, False): 0b10,
           (Cacheability.WB, True): 0b01, (Cacheability.WB, False): 0b11}[(h.attrs, bool(h.transient))]
    return top << 2 | h.hints


def encode_par_attrs(m: MemAttrs, xs_encodings: bool = True) -> int:
    """EncodePARAttrs: the MAIR-format attribute byte of PAR.ATTR.

    Device: 0b0000dd0x with dd the type and bit 0 = NOT XS.  Normal with XS
    = 0: Write-Through non-transient Read-Allocate in and out -> 0xA0,
    Non-cacheable in and out -> 0x40 (the FEAT_XS encodings); otherwise
    outer nibble << 4 | inner nibble.  (Allocation tags: not modelled.)

    ``xs_encodings`` False gives the encoding of an implementation without
    FEAT_XS, where those MAIR values are reserved and XS has no encoding:
    the XS attribute is left out (Device bit 0 = 0, no 0x40/0xA0 forms)."""
    if m.memtype is MemType.DEVICE:
        assert m.device is not None
        return m.device.value << 2 | ((1 - m.xs) if xs_encodings else 0)
    assert m.inner is not None and m.outer is not None
    if m.xs == 0 and xs_encodings:
        if (m.outer.attrs is Cacheability.WT and m.inner.attrs is Cacheability.WT
                and not m.outer.transient and m.outer.hints == HINT_RA):
            return 0xA0
        if m.outer.attrs is Cacheability.NC and m.inner.attrs is Cacheability.NC:
            return 0x40
    return _encode_nibble(m.outer) << 4 | _encode_nibble(m.inner)


def par_encode_shareability(m: MemAttrs) -> int:
    """PAREncodeShareability: 0b10 for Device and for Normal Inner and Outer
    Non-cacheable; otherwise NSH 0b00, ISH 0b11, OSH 0b10."""
    if m.memtype is MemType.DEVICE or _all_nc(m):
        return 0b10
    return {Shareability.NSH: 0b00, Shareability.ISH: 0b11, Shareability.OSH: 0b10}[m.shareability]


def reported_par_attrs(m: MemAttrs, feat_xs: bool | None = True) -> list[tuple[int, tuple[str, ...]]]:
    """ReportedPARAttrs(EncodePARAttrs(m)): the ATTR values PAR may hold.

    The ASL leaves ReportedPARAttrs IMPLEMENTATION DEFINED; the PAR_EL1.ATTR
    description allows "the resulting attribute that is actually
    implemented, as determined by any permitted implementation choices".
    The set admits: the architected encoding, and, when a cacheable level
    is Transient, the same attribute with the Transient hint dropped (an
    implementation need not support Transient).  Other implementation
    choices (allocation hints, Write-Through implemented as Non-cacheable,
    a stronger Device type) are NOT admitted: add them with the Arm ARM
    text that permits them.

    XS: EncodePARAttrs reports a Normal Non-cacheable (or WT RA) result
    with XS = 0 as 0x40 (0xA0), and Device with XS = 0 with bit 0 set:
    FEAT_XS encodings.  XS = 0 arises from a Write-Back stage 1
    (S1DecodeMemAttrs) whatever stage 2 makes of it.  With ``feat_xs``
    False those encodings do not exist and XS is left out; with None (the
    CPU model does not say) both are admitted, tagged."""
    variants: list[tuple[bool, tuple[str, ...]]]
    if feat_xs is None:
        variants = [(True, (R.PAR_ATTRS_XS_UNKNOWN.text(
                        "EncodePARAttrs (FEAT_XS encodings of XS = 0)"),)),
                    (False, (R.PAR_ATTRS_XS_UNKNOWN.text(
                        "EncodePARAttrs without FEAT_XS (XS not encoded): FEAT_XS unknown "
                        "for this CPU model"),))]
    else:
        variants = [(feat_xs, (R.PAR_ATTRS.text("EncodePARAttrs"),))]
    out: list[tuple[int, tuple[str, ...]]] = []
    for xs_encodings, rules in variants:
        exact = encode_par_attrs(m, xs_encodings)
        if all(exact != v for v, _ in out):
            out.append((exact, rules))
        if m.memtype is MemType.NORMAL and m.inner and m.outer and (m.inner.transient or m.outer.transient):
            plain = dataclasses.replace(
                m, inner=dataclasses.replace(m.inner, transient=False) if m.inner.transient else m.inner,
                outer=dataclasses.replace(m.outer, transient=False) if m.outer.transient else m.outer)
            value = encode_par_attrs(plain, xs_encodings)
            if all(value != v for v, _ in out):
                out.append((value, rules + (R.PAR_ATTRS_TRANSIENT.text(
                    "IMPLEMENTATION DEFINED (ReportedPARAttrs): Transient "
                    "hint not implemented, reported as non-transient"),)))
    return out


def reported_par_shareability(m: MemAttrs) -> list[tuple[int, tuple[str, ...]]]:
    """ReportedPARShareability(PAREncodeShareability(m)): the SH values PAR
    may hold.

    0b10 is fixed for Device and Normal Non-cacheable memory (PAR_EL1.SH).
    Otherwise the architected value, or a more shareable domain than the
    descriptors give (an implementation may treat Non-shareable as Inner or
    Outer Shareable and Inner as Outer Shareable: "the resulting attribute,
    as determined by any permitted implementation choices")."""
    exact = par_encode_shareability(m)
    out: list[tuple[int, tuple[str, ...]]] = [(exact, (R.PAR_SH.text("PAREncodeShareability"),))]
    if m.memtype is MemType.DEVICE or _all_nc(m):
        return out
    wider = {0b00: (0b11, 0b10), 0b11: (0b10,), 0b10: ()}[exact]
    names = {0b11: "Inner Shareable", 0b10: "Outer Shareable"}
    for sh in wider:
        out.append((sh, (R.PAR_SH_WIDER.text(
            f"IMPLEMENTATION DEFINED (ReportedPARShareability): implemented as {names[sh]}"),)))
    return out
