"""Query parameters the HTTP routes share the rules for: unknown ones, and snapshot generations."""

from __future__ import annotations

from aiohttp import web


def known_parameters(request: web.Request, *known: str) -> None:
    """A parameter we do not know is a mistake to name, not to ignore (`?clutser=prod` would
    otherwise answer for every cluster)."""
    unknown = sorted(set(request.query) - set(known))
    if unknown:
        raise web.HTTPBadRequest(
            reason=f"unknown query parameter {unknown[0]!r}: this path takes {', '.join(known) or 'none'}"
        )


def generation(request: web.Request, key: str) -> int:
    """The snapshot generation in parameter `key` (?index= of a long poll, ?after= of the status
    page). 20 digits hold any 64-bit one, and int() of thousands of digits is refused by Python
    (and slow before that)."""
    text = request.query[key]
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise web.HTTPBadRequest(reason=f"{key} must be a snapshot generation (a whole number >= 0), got {text[:40]!r}")
    return int(text)
