"""Credentials for another AWS account ([[accounts]]): its role, assumed through the local
account's STS client and renewed by botocore's refreshing credentials shortly before they expire
(from 15 minutes ahead; while STS fails the credentials in hand are used until 2 minutes are
left), never once per call.

A failed AssumeRole (AccessDenied, a revoked trust policy) fails only that account's calls, with
the role named; it is tried again at most every RETRY_S, however many of its calls come meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import structlog
from aiobotocore.credentials import AioCredentialResolver, AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession

from discobridge.aws import AwsCallError, AwsClients

log = structlog.get_logger(__name__)

RETRY_S = 30.0
UtcNow = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class AssumedRole:
    """One role in another account, assumed as needed; `session` makes sessions that sign with it."""

    def __init__(
        self,
        *,
        sts: AwsClients,
        role_arn: str,
        account: str,
        external_id: str | None = None,
        now: UtcNow = utc_now,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sts = sts
        self.role_arn, self._external_id = role_arn, external_id
        # Shows in the member account's CloudTrail as who read it.
        self._session_name = f"discobridge-{account}"[:64]
        self._now, self._clock = now, clock
        self._failure: tuple[float, AwsCallError] | None = None
        # One object for every region of the account: one AssumeRole per hour, not one per region.
        self._credentials = _RoleCredentials(
            refresh_using=self._assume, method="discobridge-assume-role", time_fetcher=now
        )

    def session(self, base: AioSession) -> AioSession:
        """A session that signs with this role, sharing `base`'s loaded service models."""
        session = AioSession()
        session.register_component("data_loader", base.get_component("data_loader"))
        session.register_component("credential_provider", AioCredentialResolver([_Given(self._credentials)]))
        return session

    async def _assume(self) -> dict[str, Any]:
        """botocore's refresh (on the AWS loop, inside one of the account's calls)."""
        if self._failure is not None and self._clock() - self._failure[0] < RETRY_S:
            # Not retryable: the call fails at once, and its partition backs off as for any failure.
            failed = self._failure[1]
            raise AwsCallError("AssumeRole", failed.code, failed.message)
        params = {"RoleArn": self.role_arn, "RoleSessionName": self._session_name}
        if self._external_id:
            params["ExternalId"] = self._external_id
        try:
            response = await self._sts.call_on_aws_loop("sts", "AssumeRole", **params)
        except AwsCallError as exc:
            failed = AwsCallError("AssumeRole", exc.code, f"{self.role_arn}: {exc.message}", retryable=exc.retryable)
            if self._failure is None:
                log.warning("aws_assume_role_failed", role_arn=self.role_arn, error=str(failed))
            self._failure = (self._clock(), failed)
            raise failed from None
        if self._failure is not None:
            log.info("aws_assume_role_recovered", role_arn=self.role_arn)
        self._failure = None
        credentials = response["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": self._expiry(credentials["Expiration"], response).isoformat(),
        }

    def _expiry(self, expiration: datetime, response: dict[str, Any]) -> datetime:
        """When the credentials expire by this host's clock: their lifetime as STS counts it
        (from its own Date header), so a host clock minutes off neither renews every call nor
        uses expired credentials."""
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            issued = parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            issued = None
        if issued is None or issued.tzinfo is None:
            return expiration
        return self._now() + (expiration - issued)


class _RoleCredentials(AioDeferredRefreshableCredentials):  # type: ignore[misc]  # aiobotocore is untyped
    # botocore renews 15 minutes ahead and, from 10 minutes ahead, makes every call wait for the
    # renewal and fail with it. An hour's credentials are good to their last minute: while STS
    # fails, the account's calls go on with them until 2 minutes are left.
    _mandatory_refresh_timeout = 2 * 60


class _Given:
    """A credential provider that hands out one credentials object: the role's."""

    METHOD = "discobridge-assume-role"

    def __init__(self, credentials: _RoleCredentials) -> None:
        self._credentials = credentials

    async def load(self) -> _RoleCredentials:
        return self._credentials
