"""Architectural reference model of ARM stage-2 translation (IPA -> PA).

Pure Python: no I/O, no clock, no globals that change.  Everything the
harness compares against comes from here, and everything here follows the
Arm Architecture Reference Manual (DDI 0487) pseudocode, not any emulator.
"""
