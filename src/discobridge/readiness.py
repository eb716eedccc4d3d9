"""When the first snapshot may be published: the rule, as pure functions of attempts and time.

A unit is a partition (an ECS cluster, a Cloud Map namespace) or a scope's listing of them (the
clusters of `["*"]`). The first snapshot waits for every unit to have a first result, live or
restored. A unit still making progress holds it back for as long as it takes (a large estate read
within the API budget can take minutes); one whose attempts keep failing holds it back for at
most `startup_wait_s` from its first failure, and then only if some other unit has a result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Attempts:
    """What the pollers last learned about one unit: when it last succeeded, the last error."""

    last_success_at: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    # When the current streak of failures began, counting only failures that learned nothing:
    # an attempt that made progress is still on its way, not failing.
    failing_since: float | None = None

    def succeeded(self, at: float) -> Attempts:
        return Attempts(last_success_at=at)

    def failed(self, at: float, error: str, progressed: bool) -> Attempts:
        since = None if progressed else (self.failing_since if self.failing_since is not None else at)
        return replace(
            self, last_error=error or "unknown error", consecutive_failures=self.consecutive_failures + 1,
            failing_since=since,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Unit:
    """One thing the first snapshot waits for, named for people."""

    name: str
    attempts: Attempts
    has_result: bool
    holds_data: bool = True  # a partition does; a listing of partitions does not

    def __str__(self) -> str:
        error = self.attempts.last_error
        if not error:
            return f"{self.name}: first refresh in progress"
        # Partition errors already begin with the partition's name.
        return error if error.startswith(self.name) else f"{self.name}: {error}"


def ready(units: Iterable[Unit], now: float, startup_wait_s: float) -> bool:
    """Whether the first snapshot may be published: nothing holds it back, and there is data to
    publish (or there is nothing to wait for at all: an estate with no partitions)."""
    units = list(units)
    if holding_back(units, now, startup_wait_s):
        return False
    return any(u.has_result and u.holds_data for u in units) or all(u.has_result for u in units)


def without_result(units: Iterable[Unit], now: float, startup_wait_s: float) -> list[str]:
    """Every unit still without a result, for people: those given up on marked so."""
    return [
        str(u) + (" (failing too long: no longer waited for)" if _given_up(u.attempts, now, startup_wait_s) else "")
        for u in units
        if not u.has_result
    ]


def holding_back(units: Iterable[Unit], now: float, startup_wait_s: float) -> list[Unit]:
    """The units without a result that may still hold back the first snapshot at `now`."""
    return [u for u in units if not u.has_result and not _given_up(u.attempts, now, startup_wait_s)]


def _given_up(attempts: Attempts, now: float, startup_wait_s: float) -> bool:
    return attempts.failing_since is not None and now - attempts.failing_since >= startup_wait_s
