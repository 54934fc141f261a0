"""Debugging a finding: crash and hang isolation (``isolate``), shrinking a
divergent case (``lab``, ``rebuild``, ``ddmin``, ``shrink``), explaining
and localizing it (``explain``, ``localize``, ``minimize``), and
bisecting QEMU commits (``bisect``).  Every candidate is checked in QEMU."""
