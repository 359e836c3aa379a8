#!/usr/bin/env python3
"""Report a Python service's call outcomes to a Fusebox fleet over NATS JetStream.

Fusebox decides a breaker from the outcomes every node reports. A non-Rust service reports
its calls as JSON (docs/wire-format.md, "Foreign outcomes (JSON)") on the outcome subject
``<prefix>.out.<breaker>.<node>``, which the stream ``<PREFIX>_OUTCOMES`` stores and the
breaker's decider reads. This module is meant to be copied into such a service: standard
library plus nats-py (``pip install nats-py``), nothing else.

- :func:`outcome_message` and :func:`batch_message` build the two JSON forms;
- :class:`OutcomePublisher` publishes one message and waits for the stream's acknowledgement,
  with a unique ``Nats-Msg-Id`` (reused only when it retries the same message) and a clear
  :class:`PublishRefused` when the server's permissions refuse the subject;
- :class:`OutcomeReporter` counts outcomes as calls finish and sends one batch per breaker
  per :meth:`OutcomeReporter.flush`, only when something happened.

Run it as a program to send outcomes once, for example::

    python fusebox_publish.py --url nats://127.0.0.1:4222 --breaker payments --node py1 \\
        --failures 10 --successes 2

Exit status: 0 when the stream acknowledged every message, 1 when a publish was refused or
never acknowledged (the reason goes to stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

import nats

import fusebox_connect
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

#: The foreign JSON format version this module writes.
VERSION = 1
#: Outcomes the decider understands (docs/wire-format.md).
OUTCOMES = ("success", "failure", "slow", "ignored", "rejected")
#: Bounds the decoder enforces; a message outside them is dropped by the consumer, silently
#: for the publisher, so they are checked here before anything is sent.
MAX_COUNT = 1_000_000
MAX_EVENTS = 1024
MAX_PAYLOAD = 65_536
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
DEFAULT_PREFIX = "fusebox"
#: How long one publish waits for the stream's acknowledgement, and how often a message
#: whose acknowledgement was lost is sent again (with the same id: the stream drops repeats).
ACK_TIMEOUT = 2.0
ATTEMPTS = 3
#: How long a first connection may take before giving up.
CONNECT_DEADLINE = 5.0

DecisionId = Tuple[int, int]
"""A decision's ``id`` as ``(term, seq)``, as read from the state bucket."""


class AppliedSource(Protocol):
    """Anything that knows which decision this node has applied (see fusebox_follow.py)."""

    def applied_id(self) -> Optional[DecisionId]:
        """The ``(term, seq)`` of the decision in force, or None before the first one."""
        ...


class PublishRefused(Exception):
    """The server refused the publish, or the stream never acknowledged it.

    ``by_permissions`` tells the first: sending the same message again cannot help.
    """

    def __init__(self, message: str, by_permissions: bool = False) -> None:
        super().__init__(message)
        self.by_permissions = by_permissions


def check_name(what: str, value: str) -> str:
    """Returns ``value`` if it is a valid breaker name or node id, else raises ValueError."""
    if not NAME.match(value):
        raise ValueError(f"{what} {value!r} is not 1 to 64 bytes of [A-Za-z0-9_-]")
    return value


def outcome_subject(prefix: str, breaker: str, node: str) -> str:
    """The subject a node reports a breaker's outcomes on: ``<prefix>.out.<breaker>.<node>``."""
    if not PREFIX.match(prefix):
        raise ValueError(f"prefix {prefix!r} is not 1 to 32 bytes of [a-z0-9_] starting with a letter")
    return f"{prefix}.out.{check_name('breaker', breaker)}.{check_name('node', node)}"


def _event(outcome: str, count: int) -> Dict[str, Any]:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    # bool is an int in Python, but the decoder wants a JSON number.
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count {count!r} is not an integer from 1 to {MAX_COUNT}")
    return {"outcome": outcome} if count == 1 else {"outcome": outcome, "count": count}


def _header(breaker: str, node: str, applied: Optional[DecisionId]) -> Dict[str, Any]:
    message: Dict[str, Any] = {
        "version": VERSION,
        "breaker": check_name("breaker", breaker),
        "node": check_name("node", node),
    }
    if applied is not None:
        term, seq = applied
        message["applied"] = {"term": int(term), "seq": int(seq)}
    return message


def outcome_message(
    breaker: str, node: str, outcome: str, count: int = 1, applied: Optional[DecisionId] = None
) -> Dict[str, Any]:
    """One event: ``count`` calls with the same outcome."""
    message = _header(breaker, node, applied)
    message.update(_event(outcome, count))
    return message


def batch_message(
    breaker: str, node: str, events: Sequence[Tuple[str, int]], applied: Optional[DecisionId] = None
) -> Dict[str, Any]:
    """A batch: ``(outcome, count)`` events in the order the calls finished.

    Order matters: the decider's consecutive-failures rule reads the longest run of failures
    in event order.
    """
    if not 1 <= len(events) <= MAX_EVENTS:
        raise ValueError(f"a batch has 1 to {MAX_EVENTS} events, not {len(events)}")
    message = _header(breaker, node, applied)
    message["events"] = [_event(outcome, count) for outcome, count in events]
    return message


def encode(message: Dict[str, Any]) -> bytes:
    """Compact JSON (a full batch fits in the 64 KiB limit only when written compactly)."""
    payload = json.dumps(message, separators=(",", ":")).encode()
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"message of {len(payload)} bytes is over the {MAX_PAYLOAD}-byte limit")
    return payload


class OutcomePublisher:
    """Publishes outcome messages through JetStream and waits for each acknowledgement.

    Connect with :meth:`connect`, or pass an existing nats-py client whose ``error_cb``
    forwards to :meth:`on_error` (nats-py reports a permission violation only there: the
    server drops the message and the publish would simply time out).
    """

    def __init__(
        self,
        nc: Client,
        node: str,
        prefix: str = DEFAULT_PREFIX,
        ack_timeout: float = ACK_TIMEOUT,
        attempts: int = ATTEMPTS,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.node = check_name("node", node)
        self.prefix = prefix
        self.ack_timeout = ack_timeout
        self.attempts = max(1, attempts)
        # Publishes waiting for their ack, per subject, oldest first: the server reports a
        # refused publish only as an error on the connection, naming the subject, in order.
        self._waiting: Dict[str, List["asyncio.Future[str]"]] = {}

    @classmethod
    async def connect(
        cls,
        servers: List[str],
        node: str,
        user: Optional[str] = None,
        password: Optional[str] = None,
        prefix: str = DEFAULT_PREFIX,
        connect_deadline: float = CONNECT_DEADLINE,
        **options: Any,
    ) -> "OutcomePublisher":
        """Connects to ``servers`` (optionally as ``user``/``password``) for node ``node``.

        Further keyword ``options`` go to ``nats.connect``. Raises ``asyncio.TimeoutError``
        if no server answers within ``connect_deadline`` seconds.
        """
        holder: List[OutcomePublisher] = []

        async def error_cb(error: Exception) -> None:
            if holder:
                await holder[0].on_error(error)
            else:
                print(f"fusebox: NATS error: {error}", file=sys.stderr)

        # Reconnect forever once connected, but give up on a first connection after
        # `connect_deadline`: nats-py's own first-connect loop would retry without end.
        # Credentials and TLS from the environment (fusebox_connect), explicit options first.
        settings = fusebox_connect.options_from_env(user, password)
        settings.update(options)
        connect = nats.connect(
            servers,
            error_cb=error_cb,
            connect_timeout=settings.pop("connect_timeout", 2),
            max_reconnect_attempts=settings.pop("max_reconnect_attempts", -1),
            reconnect_time_wait=settings.pop("reconnect_time_wait", 0.5),
            **settings,
        )
        nc = await asyncio.wait_for(connect, connect_deadline)
        publisher = cls(nc, node, prefix)
        holder.append(publisher)
        return publisher

    async def on_error(self, error: Exception) -> None:
        """Feed nats-py's ``error_cb`` here: a permission violation fails its publish at once."""
        text = str(error)
        match = re.search(r'permissions violation for publish to "([^"]+)"', text, re.IGNORECASE)
        if match is None:
            print(f"fusebox: NATS error: {text}", file=sys.stderr)
            return
        for refused in self._waiting.get(match.group(1), []):
            if not refused.done():
                refused.set_result(text)
                return

    async def publish(self, breaker: str, message: Dict[str, Any]) -> Any:
        """Publishes ``message`` on this node's subject for ``breaker``; returns the PubAck.

        A lost acknowledgement is retried with the same ``Nats-Msg-Id``, so the stream keeps
        the message once. Raises :class:`PublishRefused` if the server refuses the subject or
        no attempt is acknowledged.
        """
        subject = outcome_subject(self.prefix, breaker, self.node)
        payload = encode(message)
        headers = {"Content-Type": "application/json", "Nats-Msg-Id": f"{self.node}:{uuid.uuid4()}"}
        last_error: Optional[BaseException] = None
        for _ in range(self.attempts):
            refused: "asyncio.Future[str]" = asyncio.get_running_loop().create_future()
            waiting = self._waiting.setdefault(subject, [])
            waiting.append(refused)
            attempt = asyncio.ensure_future(self.js.publish(subject, payload, timeout=self.ack_timeout, headers=headers))
            try:
                done, _pending = await asyncio.wait({attempt, refused}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.remove(refused)
            if refused in done:
                attempt.cancel()
                raise PublishRefused(f"publish to {subject} refused by the server: {refused.result()}", True)
            try:
                return attempt.result()
            except (nats.errors.TimeoutError, asyncio.TimeoutError) as error:
                last_error = error
            except nats.errors.Error as error:
                raise PublishRefused(f"publish to {subject} failed: {error!r}") from error
        raise PublishRefused(
            f"publish to {subject} not acknowledged after {self.attempts} attempts of {self.ack_timeout}s "
            f"(no stream on the subject, or the server dropped it): {last_error!r}"
        )

    async def close(self) -> None:
        """Drains and closes the connection."""
        if not self.nc.is_closed:
            await self.nc.drain()


@dataclass(frozen=True)
class Sent:
    """One acknowledged message: the stream's PubAck, the breaker, the decision it was
    attributed to (None: the decider takes its newest) and how many calls it reported."""

    ack: Any
    breaker: str
    applied: Optional[DecisionId]
    calls: int


@dataclass
class _Pending:
    """Outcomes of one breaker under one applied decision, run-length encoded in call order."""

    events: List[List[Any]] = field(default_factory=list)

    def add(self, outcome: str, count: int) -> None:
        if self.events and self.events[-1][0] == outcome and self.events[-1][1] + count <= MAX_COUNT:
            self.events[-1][1] += count
        else:
            self.events.append([outcome, count])


class OutcomeReporter:
    """Counts outcomes as calls finish; :meth:`flush` reports them, one batch per breaker.

    Call :meth:`success`, :meth:`failure`, :meth:`slow` (or :meth:`record`) from the code
    around each call, and :meth:`flush` on a short timer, or run :meth:`run` as a task (Rust
    nodes flush every 5 ms by default; the sooner failures arrive, the sooner a trip).
    With ``applied_source`` (a ``DecisionFollower`` or ``LocalBreaker`` from
    fusebox_follow.py), each outcome carries the decision in force when it was recorded, so
    the decider does not count failures from before a transition after it; outcomes
    recorded under different decisions go out in separate batches.
    """

    def __init__(self, publisher: OutcomePublisher, applied_source: Optional[AppliedSource] = None) -> None:
        self.publisher = publisher
        self.applied_source = applied_source
        self._pending: Dict[Tuple[str, Optional[DecisionId]], _Pending] = {}
        #: Calls given up because the server refused their subject (see PublishRefused).
        self.dropped_calls = 0

    def record(self, breaker: str, outcome: str, count: int = 1) -> None:
        """Counts ``count`` calls of ``breaker`` with ``outcome`` (see OUTCOMES)."""
        _event(outcome, count)
        check_name("breaker", breaker)
        applied = self.applied_source.applied_id() if self.applied_source is not None else None
        self._pending.setdefault((breaker, applied), _Pending()).add(outcome, count)

    def success(self, breaker: str, count: int = 1) -> None:
        """Calls that succeeded in time."""
        self.record(breaker, "success", count)

    def failure(self, breaker: str, count: int = 1) -> None:
        """Calls that failed in a way that counts against the dependency."""
        self.record(breaker, "failure", count)

    def slow(self, breaker: str, count: int = 1) -> None:
        """Calls that succeeded but took at least the breaker's slow-call threshold."""
        self.record(breaker, "slow", count)

    def rejected(self, breaker: str, count: int = 1) -> None:
        """Calls this service's own breaker held back (``LocalBreaker.allow()`` said no)."""
        self.record(breaker, "rejected", count)

    def pending(self) -> int:
        """How many calls are waiting for the next flush."""
        return sum(count for p in self._pending.values() for _, count in p.events)

    async def flush(self) -> List[Sent]:
        """Sends what was recorded since the last flush; returns what was sent (none if idle).

        A batch that is not acknowledged stays pending (ahead of what comes after it) and the
        error is raised, so a caller on a timer simply flushes again later; its new attempt
        has a new ``Nats-Msg-Id``, so a message whose every ack was lost may count twice. A
        batch the server refuses by permissions is dropped and counted in ``dropped_calls``.
        """
        pending, self._pending = self._pending, {}
        sent: List[Sent] = []
        try:
            for (breaker, applied), batch in pending.items():
                while batch.events:
                    chunk = [(outcome, count) for outcome, count in batch.events[:MAX_EVENTS]]
                    message = batch_message(breaker, self.publisher.node, chunk, applied)
                    try:
                        ack = await self.publisher.publish(breaker, message)
                    except PublishRefused as error:
                        if error.by_permissions:
                            # It would be refused again: drop it rather than pile up.
                            self.dropped_calls += sum(count for _, count in batch.events)
                            batch.events.clear()
                        raise
                    sent.append(Sent(ack, breaker, applied, sum(count for _, count in chunk)))
                    del batch.events[: len(chunk)]
        finally:
            # Whatever was not sent goes back, ahead of what was recorded meanwhile.
            for key, batch in pending.items():
                newer = self._pending.pop(key, None)
                if newer is not None:
                    for outcome, count in newer.events:
                        batch.add(outcome, count)
                if batch.events:
                    self._pending[key] = batch
        return sent

    async def run(self, interval: float = 0.05) -> None:
        """Flushes every ``interval`` seconds until cancelled; failed flushes are retried."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except (PublishRefused, ValueError) as error:
                # Kept pending (PublishRefused) and tried again next round; the service goes on.
                print(f"fusebox: report not sent: {error}", file=sys.stderr)


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Report call outcomes of a breaker to Fusebox (JSON over JetStream).")
    parser.add_argument("--url", help="NATS URL(s), comma-separated (default: NATS_URL, else nats://127.0.0.1:4222)")
    parser.add_argument("--user", help="NATS user (with --password)")
    parser.add_argument("--password", help="NATS password")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="Fusebox prefix (default: fusebox)")
    parser.add_argument("--breaker", required=True, help="breaker name")
    parser.add_argument("--node", required=True, help="this app's node id (the last subject token)")
    helps = {
        "successes": "calls that succeeded in time",
        "failures": "calls that failed",
        "slow": "calls that succeeded slowly",
        "ignored": "calls whose errors do not count",
        "rejected": "calls this app's own breaker held back",
    }
    for option, text in helps.items():
        parser.add_argument(f"--{option}", type=int, default=0, metavar="N", help=f"number of {text}")
    parser.add_argument(
        "--applied", metavar="TERM:SEQ", help="the decision the calls ran under (default: none, or with --follow the current one)"
    )
    parser.add_argument(
        "--follow", action="store_true", help="read the current decision from the state bucket and report it as applied"
    )
    parser.add_argument("--ack-timeout", type=float, default=ACK_TIMEOUT, help="seconds to wait for each ack")
    args = parser.parse_args(argv)
    try:
        outcome_subject(args.prefix, args.breaker, args.node)
        for outcome in ("successes", "failures", "slow", "ignored", "rejected"):
            if getattr(args, outcome) < 0:
                raise ValueError(f"--{outcome} must not be negative")
        if args.applied is not None:
            term, _, seq = args.applied.partition(":")
            if not (term.isdigit() and seq.isdigit()):
                raise ValueError(f"--applied {args.applied!r} is not TERM:SEQ")
            args.applied = (int(term), int(seq))
    except ValueError as error:
        parser.error(str(error))
    return args


class _Fixed:
    """An AppliedSource that always names the same decision (``--applied``)."""

    def __init__(self, applied: DecisionId) -> None:
        self._applied = applied

    def applied_id(self) -> Optional[DecisionId]:
        return self._applied


async def _run(args: argparse.Namespace) -> int:
    servers = fusebox_connect.servers(args.url)
    try:
        publisher = await OutcomePublisher.connect(
            servers, args.node, user=args.user, password=args.password, prefix=args.prefix
        )
    except asyncio.TimeoutError:
        print(f"fusebox_publish: no NATS server answered at {','.join(servers)} within {CONNECT_DEADLINE}s", file=sys.stderr)
        return 1
    except fusebox_connect.ConnectSettingsError as error:
        print(f"fusebox_publish: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # nats-py raises several unrelated types for a failed connect
        print(f"fusebox_publish: cannot connect to {','.join(servers)}: {error!r}", file=sys.stderr)
        return 1
    publisher.ack_timeout = args.ack_timeout
    follower = None
    try:
        source: Optional[AppliedSource] = _Fixed(args.applied) if args.applied else None
        if args.follow and source is None:
            # Imported here so that a copy of this file works without fusebox_follow.py.
            from fusebox_follow import DecisionFollower

            follower = DecisionFollower(publisher.nc, args.breaker, args.node, prefix=args.prefix)
            await follower.start()
            await follower.wait_ready(timeout=5)
            source = follower
        reporter = OutcomeReporter(publisher, applied_source=source)
        counts = [
            ("success", args.successes),
            ("failure", args.failures),
            ("slow", args.slow),
            ("ignored", args.ignored),
            ("rejected", args.rejected),
        ]
        wanted = [(o, c) for o, c in counts if c > 0]
        if len(wanted) == 1:
            # One kind of outcome: the single-event form.
            outcome, count = wanted[0]
            applied = source.applied_id() if source is not None else None
            sent = []
            while count > 0:
                step = min(count, MAX_COUNT)
                message = outcome_message(args.breaker, args.node, outcome, step, applied)
                sent.append(Sent(await publisher.publish(args.breaker, message), args.breaker, applied, step))
                count -= step
        else:
            for outcome, count in wanted:
                reporter.record(args.breaker, outcome, count)
            sent = await reporter.flush()
        for s in sent:
            applied_json = {"term": s.applied[0], "seq": s.applied[1]} if s.applied is not None else None
            line = {"stream": s.ack.stream, "seq": s.ack.seq, "duplicate": bool(s.ack.duplicate)}
            line.update({"calls": s.calls, "applied": applied_json})
            print(json.dumps(line), flush=True)
        if not sent:
            print("fusebox_publish: nothing to report (no outcome counts given)", file=sys.stderr)
        return 0
    except PublishRefused as error:
        print(f"fusebox_publish: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        print(f"fusebox_publish: {error!r}", file=sys.stderr)
        return 1
    finally:
        if follower is not None:
            await follower.stop()
        try:
            await asyncio.wait_for(publisher.close(), timeout=2)
        except Exception:  # closing is best effort: the outcome is already decided
            pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command-line entry point; returns the exit status."""
    return asyncio.run(_run(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
