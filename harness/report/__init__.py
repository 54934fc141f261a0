"""Reports rebuilt from ``results.jsonl``: loading and merging (``load``),
the summary and per-entry verdicts (``summary``), divergence families
(``families``), JUnit XML (``junit``), the HTML page (``html``) and
writing them all (``write``).  Everything is a function from records to
text; only ``write_*`` touch the file system, and nothing prints."""
