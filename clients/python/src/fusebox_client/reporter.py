"""The reporter: counts call outcomes as they finish and publishes them to the fleet, in
batches, through JetStream (docs/wire-format.md, "Foreign outcomes (JSON)").

What it guarantees:

- **Batching.** Outcomes are run-length encoded in call order per ``(breaker, applied)``
  and sent as one message per batch (at most 1024 events), every ``flush_interval``
  seconds, at once for a probe's result (the half-open round waits for it) or a full batch.
- **Message ids.** Every message gets its own ``Nats-Msg-Id`` (``<node>:<incarnation>:<seq>``,
  the incarnation a random id of this reporter), kept for every retry of that same message,
  so the stream keeps it once however often its acknowledgement was lost. Headers:
  ``Content-Type: application/json``.
- **Retries, bounded.** A message is sent up to ``max_attempts`` times, each waiting
  ``ack_timeout`` seconds for the stream's acknowledgement, with exponential backoff from
  ``backoff_initial`` up to ``backoff_max`` between attempts; then it is given up and
  counted (:attr:`ReporterStats.failed_calls`, :attr:`ReporterStats.last_error`). A
  publish the server's permissions refuse is given up at once (:class:`PublishRefused`).
- **A bounded buffer that drops the oldest.** At most ``max_buffered_events`` events wait
  (a run of equal outcomes is one event). Recording never blocks and never fails for want
  of room: when the buffer is full, the oldest waiting event is dropped and counted
  (:attr:`ReporterStats.dropped_calls`, :attr:`ReporterStats.dropped_events`), because
  the decider values recent evidence over old (a window is about now, and a stale
  report is dropped by the decider anyway). The message being sent is never changed.
- **Thread-safe recording.** :meth:`Reporter.record` and its shorthands may be called from
  any thread; the sending runs on the event loop the reporter was started on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from .errors import InvalidInput, PublishError, PublishRefused, PublishTimeout, ReporterClosed
from .wire import (
    DEFAULT_PREFIX,
    MAX_EVENTS,
    DecisionId,
    batch_message,
    check_name,
    check_outcome,
    check_prefix,
    encode,
    outcome_subject,
    runs,
)

__all__ = ["Reporter", "ReporterSettings", "ReporterStats", "Sent"]

log = logging.getLogger("fusebox_client")

_VIOLATION = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


@dataclass(frozen=True)
class ReporterSettings:
    """How the reporter batches, retries and bounds what waits. Times in seconds."""

    #: How often waiting outcomes are sent (Rust nodes: every 5 ms); ``None``: only on
    #: :meth:`Reporter.flush`.
    flush_interval: Optional[float] = 0.05
    #: Events waiting at most (the oldest are dropped beyond it); at least 2048.
    max_buffered_events: int = 16_384
    ack_timeout: float = 2.0
    max_attempts: int = 5
    backoff_initial: float = 0.1
    backoff_max: float = 2.0

    def __post_init__(self) -> None:
        if self.flush_interval is not None and not self.flush_interval > 0:
            raise InvalidInput(f"flush_interval {self.flush_interval!r} is not a positive number of seconds")
        if self.max_buffered_events < 2 * MAX_EVENTS:
            raise InvalidInput(f"max_buffered_events {self.max_buffered_events} is below {2 * MAX_EVENTS}")
        if not 1 <= self.max_attempts <= 100:
            raise InvalidInput(f"max_attempts {self.max_attempts} is not 1 to 100")
        if not (self.ack_timeout > 0 and 0 < self.backoff_initial <= self.backoff_max <= 60):
            raise InvalidInput("ack_timeout and 0 < backoff_initial <= backoff_max <= 60 seconds are required")


@dataclass(frozen=True)
class Sent:
    """One message the stream acknowledged."""

    breaker: str
    #: The decision it was attributed to (``None``: the decider takes its newest).
    applied: Optional[DecisionId]
    calls: int
    events: int
    msg_id: str
    stream: str
    seq: int
    #: The stream already had this id: an earlier attempt was stored, its ack lost.
    duplicate: bool
    attempts: int


@dataclass
class ReporterStats:
    """Counters since the reporter started (read them any time; they only grow)."""

    recorded_calls: int = 0
    sent_messages: int = 0
    sent_calls: int = 0
    #: Attempts after the first, over all messages.
    retries: int = 0
    #: Acknowledgements that named an id the stream had already stored.
    duplicates: int = 0
    #: Dropped from a full buffer (oldest first).
    dropped_events: int = 0
    dropped_calls: int = 0
    #: Given up after every attempt, or refused by the server's permissions.
    failed_messages: int = 0
    failed_calls: int = 0
    last_error: Optional[PublishError] = None


class _Batch:
    """Outcomes of one breaker under one applied decision, in call order. Once sealed (given
    its id, on its first attempt) it never changes."""

    __slots__ = ("breaker", "applied", "events", "msg_id")

    def __init__(self, breaker: str, applied: Optional[DecisionId]) -> None:
        self.breaker = breaker
        self.applied = applied
        self.events: List[List[Any]] = []
        self.msg_id: Optional[str] = None

    def calls(self) -> int:
        return sum(count for _, count in self.events)


class Reporter:
    """Reports the outcomes of node ``node`` through JetStream on ``nc``.

    Start the background flusher with :meth:`start` (from the event loop; the client does
    it), record with :meth:`success`, :meth:`failure`, :meth:`slow`, :meth:`ignored`,
    :meth:`rejected` or :meth:`record` from anywhere, and :meth:`close` at the end.
    Feed nats-py's error callback to :meth:`on_error` (the client does): the server reports
    a refused publish only there.
    """

    def __init__(
        self,
        nc: NatsClient,
        node: str,
        prefix: str = DEFAULT_PREFIX,
        settings: Optional[ReporterSettings] = None,
        js: Optional[JetStreamContext] = None,
        on_sent: Optional[Callable[[Sent], None]] = None,
    ) -> None:
        self.nc = nc
        self.js = js if js is not None else nc.jetstream()
        self.node = check_name("node", node)
        self.prefix = check_prefix(prefix)
        self.settings = settings if settings is not None else ReporterSettings()
        self.stats = ReporterStats()
        self.on_sent = on_sent
        self.incarnation = uuid.uuid4().hex
        self._next_seq = 0
        self._lock = threading.Lock()
        self._queue: Deque[_Batch] = collections.deque()
        self._open: Dict[Tuple[str, Optional[DecisionId]], _Batch] = {}
        self._events = 0
        self._sending: Optional[_Batch] = None
        self._closed = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._wake: Optional[asyncio.Event] = None
        self._drain_lock: Optional[asyncio.Lock] = None
        self._task: Optional["asyncio.Task[None]"] = None
        # Publishes waiting for their ack, per subject, oldest first: a refused publish is
        # reported only as an error on the connection naming the subject.
        self._waiting: Dict[str, List["asyncio.Future[str]"]] = {}

    # -- recording (any thread) ---------------------------------------------------------

    def record(
        self, breaker: str, outcome: str, count: int = 1, applied: Optional[DecisionId] = None, urgent: bool = False
    ) -> None:
        """Counts ``count`` calls of ``breaker`` that ended with ``outcome``, under the
        decision ``applied`` (``None``: not following). ``urgent`` sends it at once (a
        probe's result). Raises :class:`InvalidInput` for a bad name, outcome or count,
        :class:`ReporterClosed` after :meth:`close`."""
        check_name("breaker", breaker)
        check_outcome(outcome)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1_000_000:
            raise InvalidInput(f"count {count!r} is not an integer from 1 to 1000000")
        full = False
        with self._lock:
            if self._closed:
                raise ReporterClosed(f"reporter of node {self.node} is closed: {count} {outcome} of {breaker} not recorded")
            key = (breaker, applied)
            batch = self._open.get(key)
            if batch is None or len(batch.events) >= MAX_EVENTS:
                batch = _Batch(breaker, applied)
                self._open[key] = batch
                self._queue.append(batch)
            before = len(batch.events)
            runs(batch.events, outcome, count)
            self.stats.recorded_calls += count
            if len(batch.events) > before:
                self._events += 1
                full = len(batch.events) >= MAX_EVENTS
                while self._events > self.settings.max_buffered_events:
                    self._drop_oldest()
        if urgent or full:
            self.wake()

    def _drop_oldest(self) -> None:
        # Called with the lock held. The batch being sent (sealed) is never touched.
        for batch in self._queue:
            if batch is self._sending or batch.msg_id is not None or not batch.events:
                continue
            _, count = batch.events.pop(0)
            self._events -= 1
            self.stats.dropped_events += 1
            self.stats.dropped_calls += count
            if not batch.events:
                self._queue.remove(batch)
                if self._open.get((batch.breaker, batch.applied)) is batch:
                    del self._open[(batch.breaker, batch.applied)]
            if self.stats.dropped_events == 1 or self.stats.dropped_events % 1000 == 0:
                log.warning(
                    "fusebox reporter %s: buffer full (%d events), dropped the oldest (%d calls so far)",
                    self.node,
                    self.settings.max_buffered_events,
                    self.stats.dropped_calls,
                )
            return

    def success(self, breaker: str, count: int = 1, applied: Optional[DecisionId] = None) -> None:
        """Calls that succeeded in time."""
        self.record(breaker, "success", count, applied)

    def failure(self, breaker: str, count: int = 1, applied: Optional[DecisionId] = None) -> None:
        """Calls that failed in a way that counts against the dependency."""
        self.record(breaker, "failure", count, applied)

    def slow(self, breaker: str, count: int = 1, applied: Optional[DecisionId] = None) -> None:
        """Calls that succeeded, but took at least the breaker's slow-call threshold."""
        self.record(breaker, "slow", count, applied)

    def ignored(self, breaker: str, count: int = 1, applied: Optional[DecisionId] = None) -> None:
        """Calls whose errors do not count against the dependency (neutral)."""
        self.record(breaker, "ignored", count, applied)

    def rejected(self, breaker: str, count: int = 1, applied: Optional[DecisionId] = None) -> None:
        """Calls this process held back (the fleet's decision said no): the demand that
        makes the decider grant this node probes."""
        self.record(breaker, "rejected", count, applied)

    def pending_calls(self) -> int:
        """Calls recorded and not yet acknowledged or given up."""
        with self._lock:
            return sum(batch.calls() for batch in self._queue)

    def pending_events(self) -> int:
        """Events waiting (what ``max_buffered_events`` bounds)."""
        with self._lock:
            return self._events

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def wake(self) -> None:
        """Asks the flusher to send what waits now (from any thread)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop is shutting down: close() sends what is left
            pass

    # -- sending (the event loop) ---------------------------------------------------------

    def _bind(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._drain_lock = asyncio.Lock()

    def start(self) -> None:
        """Starts the background flusher on the running event loop (no-op without a
        ``flush_interval``, or if started)."""
        self._bind()
        if self._task is None and self.settings.flush_interval is not None:
            self._task = asyncio.ensure_future(self._run(self.settings.flush_interval))

    async def _run(self, interval: float) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except PublishError:
                pass  # counted in stats and logged; the next round goes on
            except Exception:  # never let the flusher die: it is the only one
                log.exception("fusebox reporter %s: flush failed", self.node)

    async def on_error(self, error: Exception) -> None:
        """nats-py's error callback: a permissions violation fails its publish at once."""
        match = _VIOLATION.search(str(error))
        if match is None:
            return
        for refused in self._waiting.get(match.group(1), []):
            if not refused.done():
                refused.set_result(str(error))
                return

    def _seal_head(self) -> Optional[Tuple[_Batch, str, bytes]]:
        with self._lock:
            if not self._queue:
                return None
            batch = self._queue[0]
            if batch.msg_id is None:
                self._next_seq += 1
                batch.msg_id = f"{self.node}:{self.incarnation}:{self._next_seq}"
                if self._open.get((batch.breaker, batch.applied)) is batch:
                    del self._open[(batch.breaker, batch.applied)]
            self._sending = batch
            events = [(outcome, count) for outcome, count in batch.events]
        subject = outcome_subject(self.prefix, batch.breaker, self.node)
        payload = encode(batch_message(batch.breaker, self.node, events, batch.applied))
        return batch, subject, payload

    def _done(self, batch: _Batch) -> None:
        with self._lock:
            if self._queue and self._queue[0] is batch:
                self._queue.popleft()
            self._events -= len(batch.events)
            self._sending = None

    async def flush(self) -> List[Sent]:
        """Sends everything waiting now, in order; returns what the stream acknowledged.

        A message given up (after every attempt, or refused) is counted and dropped, the
        rest still sent; then the first such error is raised (:class:`PublishTimeout`,
        :class:`PublishRefused`), its ``sent`` the acknowledgements this flush did get."""
        self._bind()
        assert self._drain_lock is not None
        sent: List[Sent] = []
        first_error: Optional[PublishError] = None
        async with self._drain_lock:
            # What waits now, not what keeps coming: under a steady load a flush still ends.
            with self._lock:
                remaining = len(self._queue)
            while remaining > 0:
                remaining -= 1
                sealed = self._seal_head()
                if sealed is None:
                    break
                batch, subject, payload = sealed
                assert batch.msg_id is not None
                calls = batch.calls()
                try:
                    ack, attempts = await self._publish(subject, payload, batch.msg_id, calls)
                except PublishError as error:
                    self._done(batch)
                    self.stats.failed_messages += 1
                    self.stats.failed_calls += calls
                    self.stats.last_error = error
                    log.warning("fusebox reporter %s: %s", self.node, error)
                    first_error = first_error or error
                    continue
                except BaseException:
                    with self._lock:
                        self._sending = None  # kept, sealed: the next flush retries it as it is
                    raise
                self._done(batch)
                result = Sent(
                    breaker=batch.breaker,
                    applied=batch.applied,
                    calls=calls,
                    events=len(batch.events),
                    msg_id=batch.msg_id,
                    stream=ack.stream,
                    seq=ack.seq,
                    duplicate=bool(ack.duplicate),
                    attempts=attempts,
                )
                self.stats.sent_messages += 1
                self.stats.sent_calls += calls
                self.stats.duplicates += int(result.duplicate)
                sent.append(result)
                if self.on_sent is not None:
                    self.on_sent(result)
        if first_error is not None:
            first_error.sent = sent
            raise first_error
        return sent

    async def _publish(self, subject: str, payload: bytes, msg_id: str, calls: int) -> Tuple[Any, int]:
        settings = self.settings
        headers = {"Content-Type": "application/json", "Nats-Msg-Id": msg_id}
        backoff = settings.backoff_initial
        last: Optional[BaseException] = None
        loop = asyncio.get_running_loop()
        for attempt in range(1, settings.max_attempts + 1):
            if attempt > 1:
                self.stats.retries += 1
            refused: "asyncio.Future[str]" = loop.create_future()
            waiting = self._waiting.setdefault(subject, [])
            waiting.append(refused)
            publish = asyncio.ensure_future(
                self.js.publish(subject, payload, timeout=settings.ack_timeout, headers=headers)
            )
            try:
                done, _ = await asyncio.wait({publish, refused}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.remove(refused)
                if not waiting:
                    self._waiting.pop(subject, None)
            if refused in done:
                publish.cancel()
                raise PublishRefused(
                    f"publish to {subject} refused by the server's permissions: {refused.result()}",
                    subject,
                    msg_id,
                    calls,
                    attempt,
                )
            try:
                return publish.result(), attempt
            except (nats.errors.TimeoutError, asyncio.TimeoutError, nats.errors.NoRespondersError) as error:
                last = error
            except nats.errors.ConnectionClosedError as error:
                raise PublishTimeout(f"publish to {subject}: the connection is closed", subject, msg_id, calls, attempt) from error
            except nats.errors.Error as error:
                # A JetStream API error (a stream that refuses the message) or a dropped
                # connection: retried like a lost ack, with the same id.
                last = error
            if attempt < settings.max_attempts:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, settings.backoff_max)
        raise PublishTimeout(
            f"publish to {subject} not acknowledged after {settings.max_attempts} attempts "
            f"({settings.ack_timeout}s each; no stream on the subject, or no server): {last!r}",
            subject,
            msg_id,
            calls,
            settings.max_attempts,
        ) from last

    async def close(self, timeout: float = 5.0) -> int:
        """Records nothing more, sends what waits (for at most ``timeout`` seconds), stops
        the flusher; returns how many calls were left unsent (counted as dropped)."""
        with self._lock:
            self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except (PublishError, asyncio.TimeoutError):
            pass
        with self._lock:
            left = sum(batch.calls() for batch in self._queue)
            self.stats.dropped_calls += left
            self.stats.dropped_events += self._events
            self._queue.clear()
            self._open.clear()
            self._events = 0
        return left
