"""The synchronous, thread-backed API (:func:`connect_sync`, :class:`SyncClient`) for code
without asyncio (Flask, Django, scripts): the asyncio :class:`~fusebox_client.client.Client`
runs on an event loop in a background thread of its own; the breakers it hands out are the
same loop-free objects (``breaker.allow()``, ``with breaker.call():``, ``@breaker.protect``).

Create the client after a pre-forking server forks (gunicorn's ``post_fork``), one per
process: a thread does not survive ``fork``.
"""

from __future__ import annotations

import asyncio
import atexit
import math
import threading
from types import TracebackType
from typing import Any, Coroutine, List, Optional, Sequence, Type, TypeVar, Union

from .breaker import Breaker
from .client import Client, connect
from .connect import ConnectSettings
from .reporter import Reporter, ReporterSettings, Sent
from .wire import DEFAULT_PREFIX

__all__ = ["SyncClient", "connect_sync"]

T = TypeVar("T")


class SyncClient:
    """A :class:`~fusebox_client.client.Client` on a background event-loop thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread, client: Client) -> None:
        self._loop = loop
        self._thread = thread
        self.client = client
        atexit.register(self.close)

    def _run(self, coroutine: "Coroutine[Any, Any, T]", timeout: Optional[float]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    @property
    def node(self) -> str:
        """This process's node id."""
        return self.client.node

    @property
    def reporter(self) -> Reporter:
        """The reporter; its ``record``/``success``/... methods are thread-safe."""
        return self.client.reporter

    def breaker(
        self, name: str, slow_after: Optional[float] = None, ready_timeout: float = 5.0, provision_timeout: float = 0.0
    ) -> Breaker:
        """See :meth:`Client.breaker`."""
        wait = ready_timeout + provision_timeout + 5.0
        coroutine = self.client.breaker(name, slow_after, ready_timeout, provision_timeout)
        return self._run(coroutine, wait if math.isfinite(wait) else None)

    def flush(self, timeout: float = 30.0) -> List[Sent]:
        """Sends every outcome waiting now; see :meth:`Reporter.flush`."""
        return self._run(self.client.flush(), timeout)

    def close(self, timeout: float = 5.0) -> int:
        """Sends what waits, closes the connection and stops the thread; returns the calls
        left unsent. Idempotent."""
        atexit.unregister(self.close)
        if not self._thread.is_alive():
            return 0
        try:
            left = self._run(self.client.close(timeout), timeout + 5.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        return left

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()


def connect_sync(
    servers: Union[str, Sequence[str], None] = None,
    *,
    node: str,
    prefix: str = DEFAULT_PREFIX,
    settings: Optional[ConnectSettings] = None,
    reporting: Optional[ReporterSettings] = None,
    **connect_settings: Any,
) -> SyncClient:
    """:func:`~fusebox_client.client.connect`, for synchronous code: same arguments, same
    errors, raised in the calling thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"fusebox-client:{node}", daemon=True)
    thread.start()
    coroutine = connect(servers, node=node, prefix=prefix, settings=settings, reporting=reporting, **connect_settings)
    try:
        client = asyncio.run_coroutine_threadsafe(coroutine, loop).result()
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)
        loop.close()
        raise
    return SyncClient(loop, thread, client)
