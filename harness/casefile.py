"""Reading and writing case files (format: docs/case-file.md)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from reference.casefmt import CaseFormatError, case_from_data, case_to_data
from reference.generate import Case

from .errors import UsageError

MAX_FILE_BYTES = 256 << 20


def load_case_data(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON data of a case file; UsageError (one line) if unreadable."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise UsageError(f"{p}: larger than {MAX_FILE_BYTES >> 20} MiB, not a case file")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{p}: no such case file") from None
    except IsADirectoryError:
        raise UsageError(f"{p}: is a directory, expected a case file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: cannot read case file ({exc.__class__.__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except ValueError:
        # json reads integers with int(), which refuses more digits than this.
        raise UsageError(f"{p}: not a case file (a number of more than "
                         f"{sys.get_int_max_str_digits()} digits)") from None
    except RecursionError:
        raise UsageError(f"{p}: not a case file (JSON nested too deeply)") from None
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
