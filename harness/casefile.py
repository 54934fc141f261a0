"""Reading and writing case files (format: docs/case-file.md; an access case
is format s2diff-access-case, reference.access_casefmt; a stage-1-on case
s2diff-s1-case, reference.s1casefmt)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reference.access_case import AccessCase
from reference.access_casefmt import FORMAT as ACCESS_FORMAT
from reference.access_casefmt import access_case_from_data, access_case_to_data
from reference.casefmt import CaseFormatError, case_from_data, case_to_data
from reference.generate import Case
from reference.generate_s1 import S1Case
from reference.s1casefmt import FORMAT as S1_FORMAT
from reference.s1casefmt import s1_case_from_data, s1_case_to_data

AnyCase = Case | AccessCase | S1Case

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


def load_any_case(path: str | os.PathLike) -> AnyCase:
    """Read and validate a case file of any kind (a stage-2 AT case, an
    access case, a stage-1-on case)."""
    data = load_case_data(path)
    try:
        if data.get("format") == ACCESS_FORMAT:
            return access_case_from_data(data)
        if data.get("format") == S1_FORMAT:
            return s1_case_from_data(data)
        return case_from_data(data)
    except CaseFormatError as exc:
        raise UsageError(f"{path}: {exc}") from None


def load_case(path: str | os.PathLike) -> Case:
    """Read and validate a stage-2 AT case file (what shrink, localize,
    bisect and isolate work on); an access case is refused in one line."""
    data = load_case_data(path)
    if data.get("format") in (ACCESS_FORMAT, S1_FORMAT):
        raise UsageError(f"{path}: an {'access' if data['format'] == ACCESS_FORMAT else 'stage-1'}"
                         " case (probe, repro and walk take it; this command works on stage-2 "
                         "AT cases)")
    try:
        return case_from_data(data)
    except CaseFormatError as exc:
        raise UsageError(f"{path}: {exc}") from None


def case_json(case: AnyCase, extra: dict[str, Any] | None = None) -> str:
    """The text of a case file for ``case``; ``extra`` adds top-level keys
    (observation, QEMU command line and version, divergence)."""
    if isinstance(case, AccessCase):
        data = access_case_to_data(case)
    elif isinstance(case, S1Case):
        data = s1_case_to_data(case)
    else:
        data = case_to_data(case)
    if extra:
        data.update(extra)
    return json.dumps(data, indent=1) + "\n"


def save_case(path: str | os.PathLike, case: AnyCase, extra: dict[str, Any] | None = None) -> Path:
    """Write a case file atomically (temporary file + rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(case_json(case, extra), encoding="utf-8")
    os.replace(tmp, p)
    return p
