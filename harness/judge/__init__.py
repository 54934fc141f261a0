"""Judging observations against the reference: one probe (``compare``),
the fan-out probes in bulk (``bulk``), a case and a batch as results
records (``case``).  Pure: nothing here runs QEMU or touches files."""
