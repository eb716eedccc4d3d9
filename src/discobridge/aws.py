"""aiobotocore clients for ECS, EC2 and Cloud Map, and the single gate every AWS call passes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AsyncExitStack
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

from discobridge.aws_budget import AWS_BUCKETS, TokenBucket, bucket_of
from discobridge.aws_loop import AwsLoop
from discobridge.config import AwsConfig
from discobridge.metrics import Metrics

log = structlog.get_logger(__name__)

# Every AWS operation discobridge may call, by botocore service name. The IAM policy in deploy/
# must grant exactly these; AwsClients refuses anything else, so no call ships without its grant.
OPERATIONS: Mapping[str, frozenset[str]] = {
    "ecs": frozenset(
        {
            "ListClusters",
            "DescribeClusters",
            "ListTasks",
            "DescribeTasks",
            "ListContainerInstances",
            "DescribeContainerInstances",
            "DescribeTaskDefinition",
        }
    ),
    "ec2": frozenset({"DescribeInstances"}),
    "servicediscovery": frozenset({"ListNamespaces", "ListServices", "DiscoverInstances"}),
    # The shared snapshot ([snapshot] path = "s3://bucket/key"): that one object only.
    "s3": frozenset({"GetObject", "PutObject"}),
    # ECS events ([events] topic_arn): this replica's own queue, and the orphans of crashed ones.
    "sqs": AWS_BUCKETS["sqs"].operations,  # every SQS call draws on one bucket: the list is there
    "sns": frozenset({"Subscribe", "Unsubscribe", "ListSubscriptionsByTopic"}),
    # [[accounts]]: the roles discobridge reads other accounts through (aws_roles.AssumedRole).
    # and the local account's own id, which tells its ECS events from other accounts' on one bus.
    "sts": frozenset({"AssumeRole", "GetCallerIdentity"}),
}

# An SQS long poll holds its request open for up to 20 s by design: its client waits that much longer.
LONG_POLL_S = 20

# Set by a group of calls (sources.base.gather_kept) once one of them failed: the calls of the
# group not sent yet are dropped and give their budget back, those in flight finish.
_ABANDON: ContextVar[asyncio.Event | None] = ContextVar("discobridge_abandon", default=None)
ABANDONED = "Abandoned"


@contextlib.contextmanager
def abandoning_unsent_calls(signal: asyncio.Event) -> Iterator[None]:
    """Calls started (as tasks) inside this block are dropped before they are sent once
    `signal` is set."""
    token = _ABANDON.set(signal)
    try:
        yield
    finally:
        _ABANDON.reset(token)


_THROTTLE_CODES = frozenset({"ThrottlingException", "Throttling", "RequestLimitExceeded", "TooManyRequestsException"})


class AwsCallError(Exception):
    """An AWS call failed; `code` is AWS's error code or the exception name."""

    def __init__(self, operation: str, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation, self.code, self.message, self.retryable = operation, code, message, retryable


def keep_only(model: Any, operations: Iterable[str]) -> None:
    """Drop from a loaded botocore service model every operation (and every shape only they use)
    that discobridge never calls. botocore keeps the whole model in memory for the process's life:
    EC2's has hundreds of operations and thousands of shapes, about 10 MB, of which
    DescribeInstances needs a few dozen. The model is the loader's cached one, so every client of
    the service made later shares the smaller model. Best effort: a model of another shape is kept."""
    try:
        description = model._service_description
        all_operations, shapes = description["operations"], description["shapes"]
        kept = {name: all_operations[name] for name in operations}
    except (AttributeError, KeyError, TypeError):
        return
    needed: set[str] = set()
    pending = [
        ref["shape"]
        for op in kept.values()
        for ref in (op.get("input"), op.get("output"), *op.get("errors", ()))
        if ref
    ]
    while pending:
        name = pending.pop()
        if name in needed or name not in shapes:
            continue
        needed.add(name)
        shape = shapes[name]
        pending += [member["shape"] for member in shape.get("members", {}).values()]
        pending += [shape[part]["shape"] for part in ("member", "key", "value") if part in shape]
    all_operations.clear()
    all_operations.update(kept)
    for name in [name for name in shapes if name not in needed]:
        del shapes[name]


async def _complete(method: Any, params: dict[str, Any]) -> dict[str, Any]:
    """One call on the AWS loop, with a streamed body (S3) read there too: it belongs to that loop."""
    response: dict[str, Any] = await method(**params)
    body = response.get("Body")
    if body is not None and hasattr(body, "read"):
        async with body:
            response["Body"] = await body.read()
    return response


class AwsClients:
    """Opens one aiobotocore client per AWS service for one account and region, and runs every
    call with bounded concurrency within that account and region's own budget (AWS throttles
    each account in each region apart)."""

    def __init__(
        self,
        *,
        config: AwsConfig,
        metrics: Metrics,
        session: AioSession | None = None,
        account: str | None = None,
        region: str | None = None,
        credentials: Callable[[AioSession], AioSession] | None = None,
        loop: AwsLoop | None = None,
        max_concurrency: int = 20,
        max_attempts: int = 3,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        call_timeout_s: float | None = None,
        services: Iterable[str] = ("ecs", "ec2", "servicediscovery"),
        backoff_s: float = 0.1,
        backoff_cap_s: float = 5.0,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self.account = account or config.account_name
        self.region = region or config.region
        self._labels = (self.account, self.region)
        self._session = session or get_session()
        # Another account's clients sign with its role's credentials: a session of their own.
        self._credentials = credentials
        # Bounds in-flight requests across all sources (Prometheus ECS discovery uses the same 20).
        self._slots = asyncio.Semaphore(max_concurrency)
        self._max_attempts = max(1, max_attempts)
        # Each attempt is bounded as a whole (a server trickling bytes defeats a read timeout);
        # time spent waiting for budget or a free slot is not part of it.
        self._attempt_timeout_s = call_timeout_s or connect_timeout_s + read_timeout_s + 5.0
        self._read_timeout_s = read_timeout_s
        self._services = tuple(services)
        self._backoff_s, self._backoff_cap_s = backoff_s, backoff_cap_s
        share = config.api_rate_fraction
        now = time.monotonic()
        self._buckets = {
            name: TokenBucket(burst=b.burst * share, per_s=b.per_s * share, now=now) for name, b in AWS_BUCKETS.items()
        }
        self._boto_config = AioConfig(
            # botocore makes one attempt; call() retries itself, so every attempt is budgeted and counted.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            # With an endpoint_url (moto, LocalStack) Cloud Map's data plane must not be sent to
            # "data-<host>", which does not exist there.
            inject_host_prefix=config.endpoint_url is None,
        )
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        # One loop for every account's clients (a thread each would buy nothing): the daemon's.
        self._owns_loop = loop is None
        self._loop = loop or AwsLoop()

    async def __aenter__(self) -> AwsClients:
        if self._owns_loop:
            self._loop.start()
        try:
            await self._loop.run(self._open())
        except BaseException:
            if self._owns_loop:
                self._loop.stop()
            raise
        return self

    async def _open(self) -> None:
        """Create the clients (on the AWS loop: their connections belong to it)."""
        if self._credentials is not None:
            session, credentials = self._credentials(self._session), {}
        else:
            session, credentials = self._session, self._local_endpoint_credentials()
        for service in self._services:
            self._clients[service] = client = await self._stack.enter_async_context(
                session.create_client(
                    service,
                    region_name=self.region,
                    endpoint_url=self._config.endpoint_url,
                    config=self._boto_config
                    if service != "sqs"
                    else self._boto_config.merge(AioConfig(read_timeout=self._read_timeout_s + LONG_POLL_S)),
                    **credentials,
                )
            )
            keep_only(client.meta.service_model, OPERATIONS[service])

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._loop.run(self._stack.aclose())
        finally:
            if self._owns_loop:
                self._loop.stop()

    def budget_rates(self) -> dict[tuple[str, str, str], float]:
        """Each throttle bucket's rate now, in calls per second, by (account, region, bucket):
        its share, or less while AWS throttles this account and region."""
        return {(*self._labels, name): bucket.rate for name, bucket in self._buckets.items()}

    def _local_endpoint_credentials(self) -> dict[str, str]:
        # moto and LocalStack accept any key. Without one in the environment, the standard chain
        # would go on to ask the EC2 metadata service, which a local endpoint never needs.
        if self._config.endpoint_url is None:
            return {}
        if os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"):
            return {}
        return {"aws_access_key_id": "discobridge", "aws_secret_access_key": "discobridge"}

    async def call(self, service: str, operation: str, *, attempts: int | None = None, **params: Any) -> dict[str, Any]:
        """Call one AWS operation within the budget, retrying throttles, 5xx and timeouts with
        jittered backoff (up to `attempts`, default max_attempts); raise AwsCallError when it
        still fails."""
        if operation not in OPERATIONS.get(service, ()):
            raise ValueError(f"{service}:{operation} is not in aws.OPERATIONS (and not in IAM)")
        method = getattr(self._clients[service], xform_name(operation))
        bucket_name = bucket_of(operation)
        bucket = self._buckets[bucket_name]
        abandon = _ABANDON.get()
        last = attempts or self._max_attempts
        for attempt in range(1, last + 1):
            await self._take_token(bucket, bucket_name, abandon)
            try:
                response: dict[str, Any] = await self._attempt(method, operation, params, bucket, abandon)
            except AwsCallError as exc:
                if exc.code in _THROTTLE_CODES and exc.operation == operation:  # not STS's, for credentials
                    bucket.throttled()
                if not exc.retryable or attempt == last:
                    raise
                self._metrics.aws_retries.labels(*self._labels, operation, exc.code).inc()
                # Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
                delay = random.uniform(0, min(self._backoff_cap_s, self._backoff_s * 2**attempt))  # noqa: S311 - jitter
                await asyncio.sleep(delay)
            else:
                bucket.succeeded()
                return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _take_token(self, bucket: TokenBucket, bucket_name: str, abandon: asyncio.Event | None) -> None:
        """Wait for this call's share of the budget (or until its group is abandoned); a call
        cancelled while waiting gives its token back, so cancelled work never leaves the next
        attempt deeper in debt."""
        wait_s = bucket.reserve(time.monotonic())
        if not wait_s:
            return
        started = time.monotonic()
        try:
            if abandon is None:
                await asyncio.sleep(wait_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(abandon.wait(), timeout=wait_s)
        except asyncio.CancelledError:
            bucket.refund()
            raise
        finally:
            self._metrics.aws_token_wait.labels(*self._labels, bucket_name).inc(time.monotonic() - started)

    async def _attempt(
        self, method: Any, operation: str, params: dict[str, Any], bucket: TokenBucket, abandon: asyncio.Event | None
    ) -> dict[str, Any]:
        """One attempt, its token already taken: given back if the attempt is never sent (its
        group abandoned, or the caller cancelled while it waited for a free slot)."""
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            bucket.refund()
            raise
        try:
            if abandon is not None and abandon.is_set():
                bucket.refund()
                raise AwsCallError(operation, ABANDONED, "not sent: another call of the same refresh failed")
            return await self._send(method, operation, params)
        finally:
            self._slots.release()

    async def _send(self, method: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        long_poll = LONG_POLL_S if operation == "ReceiveMessage" else 0
        with self._outcome(operation):
            async with asyncio.timeout(self._attempt_timeout_s + long_poll):
                response: dict[str, Any] = await self._loop.run(_complete(method, params))
            return response

    async def call_on_aws_loop(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """One attempt of a call made by code already running on the AWS loop (a credential
        refresh, inside another account's call): counted like every call, bounded by the same
        attempt timeout, outside the budget (it happens about once an hour)."""
        if operation not in OPERATIONS.get(service, ()):
            raise ValueError(f"{service}:{operation} is not in aws.OPERATIONS (and not in IAM)")
        method = getattr(self._clients[service], xform_name(operation))
        with self._outcome(operation):
            async with asyncio.timeout(self._attempt_timeout_s):
                return await _complete(method, params)

    @contextlib.contextmanager
    def _outcome(self, operation: str) -> Iterator[None]:
        """Count and time one attempt; turn whatever it raised into an AwsCallError."""
        started = time.monotonic()
        outcome = "ok"
        try:
            yield
        except AwsCallError as exc:  # raised by a credential refresh inside this call (aws_roles)
            outcome = f"{exc.operation}:{exc.code}"  # "AssumeRole:AccessDenied": not this call's own error
            raise
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "ClientError")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            outcome = "throttled" if code in _THROTTLE_CODES else code
            retryable = code in _THROTTLE_CODES or status >= 500
            raise AwsCallError(operation, code, str(error.get("Message", "")), retryable=retryable) from exc
        except (TimeoutError, BotoCoreError, OSError) as exc:  # TimeoutError: the attempt's own bound
            outcome = type(exc).__name__
            raise AwsCallError(operation, outcome, str(exc), retryable=True) from exc
        finally:
            self._metrics.aws_calls.labels(*self._labels, operation, outcome).inc()
            self._metrics.aws_call_duration.labels(*self._labels, operation).observe(time.monotonic() - started)

    async def pages(self, service: str, operation: str, token: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Yield every page of a paginated operation; `token` names its next-token field."""
        while True:
            page = await self.call(service, operation, **params)
            yield page
            next_token = page.get(token)
            if not next_token:
                return
            params[token] = next_token

    async def collect(self, service: str, operation: str, key: str, token: str, **params: Any) -> list[Any]:
        """Every item under `key` across all pages of a paginated operation."""
        items: list[Any] = []
        async for page in self.pages(service, operation, token, **params):
            items.extend(page.get(key, []))
        return items
