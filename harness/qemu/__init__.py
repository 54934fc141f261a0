"""Everything that touches QEMU and the guest stubs, bottom to top: the
stub build (``build``), its ELF symbols (``elf``), the job ABI (``job``),
the FATAL decoder (``fatal``), the launcher (``launcher``) and one boot of
a batch (``boot``).  Nothing here judges: results come back raw."""
