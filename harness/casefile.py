"""Reading and writing case files (format: docs/case-file.md)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reference.casefmt import CaseFormatError, case_from_data, case_to_data
from reference.generate import Case

from .datafile import load_data_file
from .errors import UsageError

MAX_FILE_BYTES = 256 << 20


def load_case_data(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON data of a case file; UsageError (one line) if unreadable."""
    p = Path(path)
    data = load_data_file(p, "case file", "JSON", json.loads, max_bytes=MAX_FILE_BYTES)
    if not isinstance(data, dict):
        raise UsageError(f"{p}: a case file is a JSON object")
    return data


def load_case(path: str | os.PathLike) -> Case:
    """Read and validate a case file."""
    data = load_case_data(path)
    try:
        return case_from_data(data)
    except CaseFormatError as exc:
        raise UsageError(f"{path}: {exc}") from None


def case_json(case: Case, extra: dict[str, Any] | None = None) -> str:
    """The text of a case file for ``case``; ``extra`` adds top-level keys
    (observation, QEMU command line and version, divergence)."""
    data = case_to_data(case)
    if extra:
        data.update(extra)
    return json.dumps(data, indent=1) + "\n"


def save_case(path: str | os.PathLike, case: Case, extra: dict[str, Any] | None = None) -> Path:
    """Write a case file atomically (temporary file + rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(case_json(case, extra), encoding="utf-8")
    os.replace(tmp, p)
    return p
