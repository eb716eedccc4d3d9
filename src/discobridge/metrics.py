"""Prometheus metrics on a private registry, created once by the app and handed to whoever records."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    aws_calls: Counter
    aws_call_duration: Histogram
    aws_retries: Counter
    aws_token_wait: Counter
    source_refreshes: Counter
    source_refresh_duration: Histogram
    source_skipped_records: Counter
    source_list_shrinks: Counter
    event_loop_lag: Histogram
    events_received: Counter
    events_missed: Counter

    @classmethod
    def create(cls) -> Metrics:
        """Build every metric on a fresh registry (never the global one: tests run many apps)."""
        # A `_created` series per counter and histogram doubles what is scraped for nothing a
        # dashboard reads; prometheus_client has one switch for it, process-wide.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            aws_calls=Counter(
                "discobridge_aws_calls_total",
                "AWS API calls by account, region, operation and outcome (ok, throttled, or the error code).",
                ["account", "region", "operation", "outcome"],
                registry=registry,
            ),
            aws_call_duration=Histogram(
                "discobridge_aws_call_duration_seconds",
                "Duration of one attempt of an AWS API call, by account, region and operation.",
                ["account", "region", "operation"],
                registry=registry,
            ),
            aws_retries=Counter(
                "discobridge_aws_retries_total",
                "AWS calls attempted again, by account, region, operation and the error that caused it.",
                ["account", "region", "operation", "reason"],
                registry=registry,
            ),
            aws_token_wait=Counter(
                "discobridge_aws_token_wait_seconds_total",
                "Time calls waited for the client-side budget, by account, region and AWS throttle bucket.",
                ["account", "region", "bucket"],
                registry=registry,
            ),
            source_refreshes=Counter(
                "discobridge_source_refreshes_total",
                "Partition refreshes by source, partition (source/account/region/name) and outcome.",
                ["source", "partition", "outcome"],
                registry=registry,
            ),
            source_refresh_duration=Histogram(
                "discobridge_source_refresh_duration_seconds",
                "Duration of one refresh of a partition.",
                ["source", "partition"],
                registry=registry,
            ),
            source_skipped_records=Counter(
                "discobridge_source_skipped_records_total",
                "Records a source could not turn into an endpoint, by reason.",
                ["source", "reason"],
                registry=registry,
            ),
            source_list_shrinks=Counter(
                "discobridge_source_list_shrinks_total",
                "Polls whose task list lost more than [ecs] max_drop_fraction of a cluster's tasks "
                "that ECS still reports running; those tasks were kept.",
                ["source"],
                registry=registry,
            ),
            events_received=Counter(
                "discobridge_events_received_total",
                "ECS events taken from this replica's queue, by outcome (applied, stale: older than "
                "what was known, ignored: not for a configured cluster, or why it could not be read).",
                ["outcome"],
                registry=registry,
            ),
            events_missed=Counter(
                "discobridge_events_missed_total",
                "Task changes a reconciling poll found that no event had announced (then applied).",
                ["partition"],
                registry=registry,
            ),
            event_loop_lag=Histogram(
                "discobridge_event_loop_lag_seconds",
                "How much later than asked the event loop ran a 50 ms timer: what answers wait behind.",
                buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0),
                registry=registry,
            ),
        )

    def count_from(
        self, name: str, documentation: str, labels: Sequence[str], read: Callable[[], Mapping[Any, int]]
    ) -> None:
        """Export counts kept in a plain dict by a hot path, read only when Prometheus scrapes."""
        self.registry.register(_ReadAtScrape(CounterMetricFamily, name, documentation, labels, read))

    def gauge_from(
        self, name: str, documentation: str, labels: Sequence[str], read: Callable[[], Mapping[Any, float]]
    ) -> None:
        """Export values computed from current state when Prometheus scrapes (ages, counts)."""
        self.registry.register(_ReadAtScrape(GaugeMetricFamily, name, documentation, labels, read))


class _ReadAtScrape(Collector):
    def __init__(
        self,
        family: type[CounterMetricFamily] | type[GaugeMetricFamily],
        name: str,
        documentation: str,
        labels: Sequence[str],
        read: Callable[[], Mapping[Any, float]],
    ) -> None:
        self._family, self._name, self._documentation = family, name, documentation
        self._labels, self._read = list(labels), read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        family = self._family(self._name, self._documentation, labels=self._labels)
        for key, value in sorted(self._read().items()):
            family.add_metric(list(key), value)
        yield family
