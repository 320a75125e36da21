"""Why a JSON text could not be read, in one wording for request bodies and drip graphs."""

from __future__ import annotations

import sys


def unreadable(exc: BaseException) -> str:
    """What is wrong with a JSON text that `json.loads` refused with `exc`."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return f"holds an integer longer than {sys.get_int_max_str_digits():,} digits"
    return "not valid JSON"
