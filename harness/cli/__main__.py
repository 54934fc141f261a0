"""``python -m harness.cli``: the s2diff command line."""
from __future__ import annotations

from .main import main

raise SystemExit(main())
