"""The snapshot file kept in S3 (`[snapshot] path = "s3://bucket/key"`), shared by every replica,
so one that starts on a fresh Fargate task answers at once with data of known age.

Every replica writes it, with a conditional put: If-Match the version it last read or wrote, or
If-None-Match when the key does not exist yet. When another replica wrote in between, the two
documents are merged (per partition the fresher result) and put again, so no replica's fresher
data is lost to another's older write.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from discobridge.aws import AwsCallError, AwsClients
from discobridge.snapshot_file import Saved, decode, encode, merge

log = structlog.get_logger(__name__)

_CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_ABSENT = frozenset({"NoSuchKey", "404", "NotFound"})


def split_url(url: str) -> tuple[str, str]:
    """("bucket", "key") of "s3://bucket/key"."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


class S3Snapshot:
    """One S3 object holding the snapshot document."""

    def __init__(self, *, aws: AwsClients, url: str) -> None:
        self.name = url
        self._aws = aws
        self._bucket, self._key = split_url(url)
        self._etag: str | None = None  # the version last read or written here; None: no object

    async def read(self) -> bytes | None:
        """The object's bytes, or None when it does not exist yet."""
        try:
            response = await self._aws.call("s3", "GetObject", Bucket=self._bucket, Key=self._key)
        except AwsCallError as exc:
            if exc.code in _ABSENT:
                self._etag = None
                return None
            raise
        data: bytes = response["Body"]  # read whole on the AWS loop by AwsClients
        self._etag = response.get("ETag")
        return data

    async def write(self, saved: Saved) -> None:
        """Put `saved`; if another replica wrote meanwhile, merge with its document and put again."""
        if await self._put(await asyncio.to_thread(encode, saved)):
            return
        theirs = await self.read()
        data = await asyncio.to_thread(self._merged, saved, theirs)  # a large document: not on the loop
        if not await self._put(data):
            log.info("snapshot_write_conflict", path=self.name)  # another replica keeps writing: it has the data

    def _merged(self, ours: Saved, theirs: bytes | None) -> bytes:
        return encode(merge(ours, decode(theirs, origin=self.name)) if theirs is not None else ours)

    async def _put(self, data: bytes) -> bool:
        condition: dict[str, Any] = {"IfMatch": self._etag} if self._etag else {"IfNoneMatch": "*"}
        try:
            response = await self._aws.call(
                "s3", "PutObject", Bucket=self._bucket, Key=self._key, Body=data,
                ContentType="application/json", **condition,
            )  # fmt: skip
        except AwsCallError as exc:
            if exc.code in _CONFLICT:
                return False
            if exc.code in _ABSENT and self._etag:  # deleted since we saw it: create it again
                self._etag = None
                return False
            raise
        self._etag = response.get("ETag")
        return True
