"""The follower: keeps a :class:`~fusebox_client.local.LocalBreaker` up to date from the
fleet's state bucket over NATS, and learns the breaker's slow-call threshold from the
config bucket.

For each followed breaker it watches key ``<breaker>`` of ``<prefix>_state`` (the current
value, then every change; nats-py's watch queue holds at most 256 entries) and, because a
watch notices a lost server only after missed heartbeats, reads the key directly every
``resync`` seconds, as Rust nodes do. A value it cannot use (not JSON, another version,
another breaker, a deleted key) is counted in ``LocalBreaker.refusals`` and skipped: the
last good decision stays in force and nothing else is lost. A watch that fails is started
again after a second; neither task ever ends on an error from outside.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, List, Optional

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from .errors import BadDecision, NotProvisioned
from .local import LocalBreaker
from .wire import DEFAULT_PREFIX, Decision, config_bucket, parse_slow_threshold, state_bucket

__all__ = ["Follower"]

log = logging.getLogger("fusebox_client")

#: How often the key is read besides the watch (Rust nodes: 1 s).
RESYNC = 1.0
#: How long to wait before watching again after a watch failed.
REWATCH = 1.0
#: How often :meth:`Follower.start` looks for a state bucket that is not there yet.
PROVISION_POLL = 0.1


class Follower:
    """Feeds ``breaker`` from the state bucket through ``js``.

    ``on_apply(decision)`` runs (on the event loop) after every decision applied.
    :attr:`slow_threshold` is the breaker config's ``slow_call_threshold_ms`` in seconds
    (``None``: none, or no config readable), read at start and again whenever a decision
    names another config version.
    """

    def __init__(
        self,
        js: JetStreamContext,
        breaker: LocalBreaker,
        prefix: str = DEFAULT_PREFIX,
        resync: float = RESYNC,
        on_apply: Optional[Callable[[Decision], None]] = None,
    ) -> None:
        self.js = js
        self.breaker = breaker
        self.bucket = state_bucket(prefix)
        self.config_bucket = config_bucket(prefix)
        self.resync = resync
        self.on_apply: List[Callable[[Decision], None]] = [on_apply] if on_apply is not None else []
        self.slow_threshold: Optional[float] = None
        self.config_version: Optional[int] = None
        self._ready = asyncio.Event()
        self._tasks: List["asyncio.Task[None]"] = []
        self._config_kv: Any = None
        self._config_task: Optional["asyncio.Task[None]"] = None

    async def start(self, ready_timeout: float = 5.0, provision_timeout: float = 0.0) -> None:
        """Binds to the buckets, starts following and waits (at most ``ready_timeout``
        seconds) until the current decision, or its absence, has been read. Raises
        :class:`NotProvisioned` if the state bucket does not exist, or still does not after
        ``provision_timeout`` seconds (``math.inf``: wait for a Fusebox node for ever; it is
        looked for every :data:`PROVISION_POLL` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + provision_timeout
        while True:
            try:
                kv = await self.js.key_value(self.bucket)
                break
            except nats.js.errors.BucketNotFoundError as error:
                left = deadline - loop.time()
                if left <= 0:
                    waited = f" after {provision_timeout:g}s" if provision_timeout > 0 else ""
                    raise NotProvisioned(
                        f"no KV bucket {self.bucket}{waited} (no Fusebox node has run with this prefix, "
                        "or this account cannot see it)"
                    ) from error
                await asyncio.sleep(min(PROVISION_POLL, left))
        try:
            self._config_kv = await self.js.key_value(self.config_bucket)
        except (nats.js.errors.BucketNotFoundError, nats.errors.Error, asyncio.TimeoutError):
            self._config_kv = None
        await self._read_config()
        self._tasks = [asyncio.ensure_future(self._watch(kv)), asyncio.ensure_future(self._resync(kv))]
        try:
            await asyncio.wait_for(self._ready.wait(), ready_timeout)
        except asyncio.TimeoutError:
            # The resync below reads the key directly: one read settles it.
            await self._read(kv)
            self._ready.set()

    @property
    def ready(self) -> bool:
        """Whether the current value (or its absence) has been read."""
        return self._ready.is_set()

    def _offer(self, data: Optional[bytes]) -> None:
        decision = self.breaker.offer(data)
        if decision is None:
            return
        if decision.config_version != self.config_version and self._config_kv is not None:
            if self._config_task is None or self._config_task.done():
                self._config_task = asyncio.ensure_future(self._read_config())
        for callback in list(self.on_apply):
            try:
                callback(decision)
            except Exception:  # a callback's bug must not stop the follower
                log.exception("fusebox follower %s: on_apply callback failed", self.breaker.breaker)

    async def _read_config(self) -> None:
        if self._config_kv is None:
            return
        try:
            entry = await self._config_kv.get(self.breaker.breaker)
            self.config_version, self.slow_threshold = parse_slow_threshold(entry.value)
        except BadDecision as error:
            self.breaker.refuse(error.kind)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            pass
        except (nats.errors.Error, asyncio.TimeoutError):
            pass  # the next decision naming another version tries again

    async def _watch(self, kv: Any) -> None:
        while True:
            try:
                watcher = await kv.watch(self.breaker.breaker)
                try:
                    async for entry in watcher:
                        if entry is None:
                            self._ready.set()  # nats-py's marker: the current value is in
                            continue
                        if entry.operation in ("DEL", "PURGE"):
                            # Deciders never delete decisions: keep the last good one.
                            self.breaker.refuse("deleted")
                            continue
                        self._offer(entry.value)
                finally:
                    try:
                        await watcher.stop()
                    except Exception:  # the subscription may be gone with the connection
                        pass
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.breaker.refuse("watch_failed")
                log.warning("fusebox follower %s: watch failed, again in %ss: %r", self.breaker.breaker, REWATCH, error)
            await asyncio.sleep(REWATCH)

    async def _read(self, kv: Any) -> None:
        try:
            entry = await kv.get(self.breaker.breaker)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return
        except (nats.errors.Error, asyncio.TimeoutError):
            return  # disconnected or slow: the decision in force stays, the next round retries
        self._offer(entry.value)

    async def _resync(self, kv: Any) -> None:
        while True:
            await asyncio.sleep(self.resync)
            try:
                await self._read(kv)
            except asyncio.CancelledError:
                raise
            except Exception:  # whatever the server or the library does, the loop goes on
                log.exception("fusebox follower %s: resync failed", self.breaker.breaker)

    async def stop(self) -> None:
        """Stops following (the connection stays open)."""
        tasks = self._tasks + ([self._config_task] if self._config_task is not None else [])
        self._tasks, self._config_task = [], None
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
