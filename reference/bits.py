"""Bit-field helpers used by every register and descriptor codec."""
from __future__ import annotations


def field(value: int, hi: int, lo: int) -> int:
    """Bits [hi:lo] of ``value`` (inclusive, Arm ARM notation)."""
    return (value >> lo) & ((1 << (hi - lo + 1)) - 1)


def bit(value: int, n: int) -> int:
    """Bit [n] of ``value``."""
    return (value >> n) & 1


def place(value: int, hi: int, lo: int) -> int:
    """``value`` shifted into bits [hi:lo]; raises if it does not fit."""
    width = hi - lo + 1
    if value < 0 or value >> width:
        raise ValueError(f"{value:#x} does not fit in bits [{hi}:{lo}]")
    return value << lo


def mask(hi: int, lo: int) -> int:
    """A mask of bits [hi:lo]."""
    return ((1 << (hi - lo + 1)) - 1) << lo


def align_down(value: int, bits: int) -> int:
    """``value`` with bits [bits-1:0] cleared."""
    return value & ~((1 << bits) - 1)
