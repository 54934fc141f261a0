"""Reading the project's data files (case files: JSON, baselines: TOML)
with every way they can be unreadable turned into one line (UsageError)."""
from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable

from .errors import UsageError


def load_data_file(path: str | Path, what: str, syntax: str, parse: Callable[[str], Any],
                   max_bytes: int | None = None) -> Any:
    """``parse(text)`` of the file at ``path``; ``what`` names the file in
    messages ("case file", "baseline"), ``syntax`` its language ("JSON",
    "TOML")."""
    p = Path(path)
    try:
        if max_bytes is not None and p.stat().st_size > max_bytes:
            raise UsageError(f"{p}: larger than {max_bytes >> 20} MiB, not a {what}")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{p}: no such {what}") from None
    except IsADirectoryError:
        raise UsageError(f"{p}: is a directory, expected a {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: cannot read {what} ({exc.__class__.__name__})") from None
    try:
        return parse(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{p}: not valid TOML ({exc})") from None
    except ValueError:
        # json and tomllib read integers with int(), which refuses more digits than this.
        raise UsageError(f"{p}: not a {what} (a number of more than "
                         f"{sys.get_int_max_str_digits()} digits)") from None
    except RecursionError:
        raise UsageError(f"{p}: not a {what} ({syntax} nested too deeply)") from None
