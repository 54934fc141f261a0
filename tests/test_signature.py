"""Crash signatures (harness.qemu.signature): what makes two crashes of
QEMU one family, from recorded console text."""
from __future__ import annotations

import pytest

from harness.qemu.signature import console_tail, crash_signature, dying_line

# The line Debian's QEMU 10.0.2 dies with on an AT whose stage-2 walk takes
# a Permission fault (/work/notes/triage/REPORT.md, family A), as the two
# emulators print it.
A64 = ("qemu-system-aarch64: target/arm/helper.c:3508: do_ats_write: Assertion "
       "`!res.cacheattrs.is_s2_format' failed.")
A32 = A64.replace("qemu-system-aarch64", "qemu-system-arm")
FAMILY_A = ("target/arm/helper.c:N: do_ats_write: Assertion `!res.cacheattrs.is_s2_format' "
            "failed. [SIGABRT]")


class TestCrashSignature:
    def test_both_emulators_of_a_release_give_one_family(self):
        assert crash_signature(A64 + "\n", 6, None) == FAMILY_A
        assert crash_signature("some guest output\n" + A32 + "\n", 6, None) == FAMILY_A

    def test_line_numbers_and_addresses_are_masked_names_are_not(self):
        moved = A64.replace("3508", "3612")
        assert crash_signature(moved, 6, None) == FAMILY_A
        assert "is_s2_format" in FAMILY_A       # digits inside names stay
        assert crash_signature("qemu: fatal: bad ram pointer 0x7f3a12345678\n", 6, None) == \
            "qemu: fatal: bad ram pointer ADDR [SIGABRT]"

    def test_another_assertion_or_signal_is_another_family(self):
        other = A64.replace("do_ats_write", "get_phys_addr_lpae")
        assert crash_signature(other, 6, None) != FAMILY_A
        assert crash_signature(A64, 11, None) == FAMILY_A.replace("SIGABRT", "SIGSEGV")

    def test_the_assertion_is_taken_from_a_line_the_guest_had_begun(self):
        # The guest's console line cut short by the abort shares its line.
        assert crash_signature("INFO: ha" + A64 + "\n", 6, None) == FAMILY_A

    @pytest.mark.parametrize("console, signal, code, hang, expected", [
        ("", 9, None, False, "[SIGKILL]"),
        ("EXIT: STATUS=0\n", None, 1, False, "[exit 1]"),            # the stub's line is not QEMU's
        ("anything\n", None, None, True, "[hang]"),
        ("glib: something odd happened at 12\n", 6, None, False,
         "glib: something odd happened at N [SIGABRT]"),
    ])
    def test_without_an_assertion(self, console, signal, code, hang, expected):
        assert crash_signature(console, signal, code, hang=hang) == expected

    def test_dying_line_and_tail(self):
        assert dying_line("a\nb\n" + A64 + "\nc\n") == A64
        assert console_tail("\n".join(map(str, range(30))), lines=3) == "27\n28\n29"
