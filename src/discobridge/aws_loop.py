"""An event loop on a thread of its own, where the aiobotocore clients live.

botocore parses every answer in Python: a DescribeTasks answer of 100 tasks takes tens of
milliseconds of CPU. On the serving event loop that would hold up every DNS and HTTP answer meanwhile; on
this thread it only competes for the interpreter, which Python hands over every few milliseconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class AwsLoop:
    """Runs coroutines on a private event loop in a daemon thread, for callers on another loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aws", daemon=True)
        self._thread.start()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await `coroutine` on the AWS loop; cancelling the caller cancels it there too."""
        assert self._loop is not None, "AwsLoop.start() first"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop, thread = self._loop, self._thread
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None
