"""Renderers turn a snapshot's services into documents and bytes, once per snapshot.

Each document family (DNS answers, resolver JSON, Eureka, the status page, ...) is one renderer
registered with the store under its own key; a frontend reads its documents back with that key.
Adding a family is a new renderer and a new route module, not an edit of the snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, Protocol, TypeVar

from discobridge.model import Service

T = TypeVar("T")


class ViewKey(Generic[T]):
    """Names one document family in a snapshot, and the type of its documents."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ViewKey({self.name!r})"


class Renderer(Protocol[T]):
    """Renders one document family from a snapshot's services.

    State that must survive between snapshots (Eureka's recent changes) lives in the documents
    themselves: the renderer gets the previous snapshot's documents and returns the next ones, so
    a build that fails anywhere leaves nothing half-updated. Caches of pure results are allowed.
    """

    @property
    def key(self) -> ViewKey[T]: ...

    def __call__(self, services: Mapping[str, Service], generation: int, previous: T | None) -> T: ...
