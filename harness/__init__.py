"""Everything in s2diff that does I/O: QEMU launcher, guest build, job
packing, comparison, runs, reports and the command line."""
