"""Carries ECS events from this replica's queue into the sources, and says whether they flow.

Subscribe first, then the sources' next refresh is a full poll, then what queued meanwhile is
applied: events are ordered by their `version`, so which of the two lands first changes nothing.
While events flow the sources reconcile every `[events] reconcile_s`; the moment SQS fails (the
queue deleted, AccessDenied, timeouts) they poll every `[ecs] poll_interval_s` again, say why in
their warnings, and the queue is retried with backoff (a new queue if it was deleted).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from discobridge.aws import AwsCallError, AwsClients
from discobridge.event_queue import HEARTBEAT_EVERY_S, QUEUE_GONE, WAIT_S, EventQueue, Message
from discobridge.metrics import Metrics
from discobridge.poller import delay_after
from discobridge.sources.base import EventStatus

log = structlog.get_logger(__name__)

IGNORED = "ignored"
# A message handed out this often without being applied (a bug, not a fault of AWS) is dropped:
# the next reconciling poll covers what it said.
MAX_RECEIVES = 5
# The backoff between attempts to reach the queue grows to this (the interval of delay_after).
RETRY_CAP_S = 60.0


class EventSink(Protocol):
    """A source that takes events: ECS in one account and region."""

    async def prepare_for_events(self) -> None:
        """What it needs to know before it can tell its events (its account's id); raise if
        that cannot be learned now (the feed is then down, and tries again)."""
        ...

    async def apply_events(self, events: Sequence[Any]) -> list[str]:
        """Each event's outcome, in order: "applied", "stale", "ignored" (not this source's)
        or "malformed"."""
        ...

    def events_up(self, since: float) -> None:
        """The subscription works since `since`: this source's events may flow."""
        ...

    def events_down(self, problem: str) -> None:
        """Events stopped (`problem` says why): poll instead, from now."""
        ...


class EventFeed:
    """Runs this replica's queue for as long as the daemon runs; removes it when stopped."""

    def __init__(
        self,
        *,
        aws: AwsClients,
        topic_arn: str,
        queue_prefix: str,
        sinks: Sequence[EventSink],
        metrics: Metrics,
        poll_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[float, float], float] = random.uniform,
        after_batch: Callable[[], None] = lambda: None,
        wait_s: int = WAIT_S,
    ) -> None:
        self._aws = aws
        self._topic_arn, self._prefix = topic_arn, queue_prefix
        self._sinks = tuple(sinks)
        self.status = EventStatus()  # the subscription's; each sink keeps its own from it
        self._metrics = metrics
        self._poll_interval_s = poll_interval_s
        self._clock, self._wall_clock, self._jitter = clock, wall_clock, jitter
        self._wait_s = wait_s
        self._after_batch = after_batch  # told when a batch is done, changed or not (waiters recheck)
        self._queue: EventQueue | None = None
        self._beat_at = 0.0
        self._reported: set[str] = set()  # outcomes already logged once
        metrics.gauge_from(
            "discobridge_events_flowing",
            "1 while ECS events arrive (the full poll then only reconciles), 0 while polling instead.",
            [],
            lambda: {(): 1.0 if self.status.live_since is not None else 0.0},
        )

    @property
    def queue_name(self) -> str:
        return self._queue.name if self._queue is not None else ""

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    await self.step()
                except Exception as exc:  # noqa: BLE001 - whatever fails, polling takes over; never a dead feed
                    if not isinstance(exc, AwsCallError):
                        log.error("events_feed_failed", error=repr(exc))
                    failures += 1
                    await self._down(exc)
                    await asyncio.sleep(delay_after(RETRY_CAP_S, failures, self._jitter))
                else:
                    failures = 0
        finally:
            await self._close()

    async def step(self) -> None:
        """Open the queue if there is none, then one long poll and what it brought."""
        if self._queue is None:
            for sink in self._sinks:
                await sink.prepare_for_events()
            queue = EventQueue(
                aws=self._aws,
                topic_arn=self._topic_arn,
                prefix=self._prefix,
                wall_clock=self._wall_clock,
                wait_s=self._wait_s,
            )
            try:
                await queue.open()
            except BaseException:
                await queue.close()  # whatever part of it was made
                raise
            self._queue, self._beat_at = queue, self._clock()
            self._up()
        messages = await self._queue.receive()
        self._up()
        if messages:
            await self._apply(messages)
        if self._clock() - self._beat_at >= HEARTBEAT_EVERY_S:
            self._beat_at = self._clock()
            try:
                await self._queue.heartbeat()
            except AwsCallError as exc:  # receives work: events flow; the next beat tries again
                log.warning("events_heartbeat_failed", queue=self.queue_name, error=str(exc))

    async def _apply(self, messages: Sequence[Message]) -> None:
        """Apply one batch, then delete it; the sources publish once for the whole batch."""
        assert self._queue is not None
        events: list[Any] = []
        readable: list[Message] = []
        done: list[Message] = []
        for message in messages:
            try:
                events.append(json.loads(message.body))
                readable.append(message)
            except (ValueError, RecursionError):  # RecursionError: thousands of nested brackets
                self._count("not_json", message)
                done.append(message)
        try:
            outcomes = await self._outcomes(events)
        except Exception as exc:  # noqa: BLE001 - a bug in applying must not stop the feed
            log.error("events_apply_failed", error=repr(exc), messages=len(readable))
            done += await self._one_by_one(readable, events)
        else:
            for message, outcome in zip(readable, outcomes, strict=True):
                self._count(outcome, message)
            done += readable
        if done:
            await self._queue.delete(done)
        self._after_batch()

    async def _one_by_one(self, messages: list[Message], events: list[Any]) -> list[Message]:
        """After a batch failed to apply: each message alone, so one bad message holds back no
        other. Returns those done with: applied, or handed out MAX_RECEIVES times already."""
        done = []
        for message, event in zip(messages, events, strict=True):
            try:
                (outcome,) = await self._outcomes([event])
            except Exception:  # noqa: BLE001 - that one message; it comes back after the visibility timeout
                if message.receives >= MAX_RECEIVES:
                    self._count("given_up", message)
                    done.append(message)
                continue
            self._count(outcome, message)
            done.append(message)
        return done

    async def _outcomes(self, events: list[Any]) -> list[str]:
        """Each event's outcome from the first source it is for ("ignored" if none)."""
        outcomes = [IGNORED] * len(events)
        for sink in self._sinks:
            pending = [i for i, outcome in enumerate(outcomes) if outcome == IGNORED]
            if not pending:
                break
            for index, outcome in zip(pending, await sink.apply_events([events[i] for i in pending]), strict=True):
                outcomes[index] = outcome
        return outcomes

    def _count(self, outcome: str, message: Message) -> None:
        self._metrics.events_received.labels(outcome).inc()
        if outcome not in ("applied", "stale", IGNORED) and outcome not in self._reported:
            self._reported.add(outcome)  # once per kind: a flood of garbage is one line
            log.warning("events_message_unreadable", reason=outcome, body=message.body[:200])

    def _up(self) -> None:
        if self.status.live_since is None:
            self.status.live_since, self.status.problem = self._clock(), ""
            log.info("events_flowing", queue=self.queue_name, then="one full poll, then reconcile")
            for sink in self._sinks:
                sink.events_up(self.status.live_since)

    async def _down(self, exc: Exception) -> None:
        problem = f"ECS events: {exc}; polling every {self._poll_interval_s:g} s until the queue works again"
        if self.status.problem != problem:
            log.warning("events_down", queue=self.queue_name, error=str(exc), fallback_s=self._poll_interval_s)
        changed = self.status.live_since is not None or not self.status.problem
        self.status.live_since, self.status.problem = None, problem
        if changed:  # polling takes over first; then whatever cleaning up the queue takes
            for sink in self._sinks:
                sink.events_down(problem)
        if not isinstance(exc, AwsCallError) or exc.code in QUEUE_GONE:
            await self._close()  # a deleted (or unknown-state) queue is not reused: the next step makes a new one

    async def _close(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            await queue.close()
