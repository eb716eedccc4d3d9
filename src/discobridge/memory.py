"""Handing freed memory back to the operating system after a large build.

A snapshot build of a large estate frees tens of MB of short-lived objects. glibc keeps freed
heap memory for reuse rather than returning it, so the process's RSS would stay at the build's
peak; malloc_trim(3) returns what is free. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    return trim


def release_free_memory() -> None:
    """Return the heap memory malloc holds but nothing uses (glibc only; ctypes drops the GIL)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
