"""Render each service once and reuse the result while the service is unchanged."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from discobridge.model import Service

T = TypeVar("T")


class PerService(Generic[T]):
    """Applies `render` to the services of each snapshot, reusing results for unchanged ones: a
    change to one task re-renders one service, not the estate. The snapshot keeps an unchanged
    service as the same object, so the check is one identity test, with equality as fallback."""

    def __init__(self, render: Callable[[Service], T]) -> None:
        self._render = render
        self._cache: dict[str, tuple[Service, T]] = {}

    def __call__(self, services: Mapping[str, Service]) -> dict[str, T]:
        cache: dict[str, tuple[Service, T]] = {}
        rendered: dict[str, T] = {}
        for name, service in services.items():
            hit = self._cache.get(name)
            fresh = hit is None or (hit[0] is not service and hit[0] != service)
            result = self._render(service) if fresh or hit is None else hit[1]
            cache[name] = (service, result)
            rendered[name] = result
        self._cache = cache  # only the current services: memory follows the estate
        return rendered
