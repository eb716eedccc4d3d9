"""Render each service once and reuse the result while the service is unchanged."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from discobridge.model import Service

T = TypeVar("T")


class PerService(Generic[T]):
    """Applies `render` to the services of each snapshot, reusing results for equal services:
    a change to one task re-renders one service, not the estate."""

    def __init__(self, render: Callable[[Service], T]) -> None:
        self._render = render
        self._cache: dict[Service, T] = {}

    def __call__(self, services: Mapping[str, Service]) -> dict[str, T]:
        cache: dict[Service, T] = {}
        rendered: dict[str, T] = {}
        for name, service in services.items():
            result = self._cache.get(service)
            if result is None:
                result = self._render(service)
            cache[service] = rendered[name] = result
        self._cache = cache  # only the current services: memory follows the estate
        return rendered
