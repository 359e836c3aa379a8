#!/usr/bin/env python3
"""Follow a Fusebox breaker's decisions from Python and enforce them locally.

The breaker's decider writes every decision to the KV bucket ``<prefix>_state`` under the
breaker's name, as JSON (docs/wire-format.md, "Decisions"). This module watches that key
(the current value, then every change), keeps the newest decision it could read, and answers
"may this call go ahead?" with :meth:`LocalBreaker.allow`, the way a Rust node's hot path
would for the fleet state. Copy it into a service next to fusebox_publish.py: standard
library plus nats-py, nothing else.

- :func:`parse_decision` checks a decision the way the Rust decoder does (version first);
- :class:`LocalBreaker` applies decisions newer in ``(term, seq)`` than the one it has and
  decides calls; it does not talk to NATS, so it can be tested alone;
- :class:`DecisionFollower` feeds a LocalBreaker from the bucket: a KV watch, plus a direct
  read every second because a watch notices a lost server only after missed heartbeats.

Run it as a program to print the decisions it applies, one JSON line each::

    python fusebox_follow.py --url nats://127.0.0.1:4222 --breaker payments --node py1 \\
        --until open --timeout 30

Exit status: 0 once a decision with an ``--until`` state is applied (or at ``--timeout``
without ``--until``), 1 on timeout or when NATS cannot be reached, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import nats

import fusebox_connect
import nats.errors
import nats.js.errors
from nats.aio.client import Client

#: The decision format version this module reads.
VERSION = 1
#: Every ``state.state`` of version 1.
STATES = ("closed", "ramping", "open", "half_open", "forced_open", "forced_closed", "disabled", "metrics_only")
#: States in which every call goes ahead; ``open`` and ``forced_open`` reject every call.
ALLOWING = ("closed", "forced_closed", "disabled", "metrics_only")
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
DEFAULT_PREFIX = "fusebox"
U64_MAX = 2**64 - 1
#: How often the follower reads the key directly besides watching it (Rust nodes: 1 s).
RESYNC = 1.0
#: How long a first connection may take before giving up.
CONNECT_DEADLINE = 5.0

DecisionId = Tuple[int, int]
"""A decision's ``id`` as ``(term, seq)``: decisions are ordered by it, lexicographically."""


class BadDecision(ValueError):
    """A value in the state bucket this module cannot use; ``kind`` says why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass(frozen=True)
class Decision:
    """The part of a decision a follower needs; ``raw`` is the whole JSON object."""

    breaker: str
    id: DecisionId
    phase: DecisionId
    state: str
    grants: Mapping[str, int] = field(default_factory=dict)
    admit_per_mille: int = 1000
    reason: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


def _u64(value: Any, what: str) -> int:
    # bool is an int in Python, but not in JSON.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise BadDecision("malformed", f"{what} is not an unsigned 64-bit integer: {value!r}")
    return value


def _id(value: Any, what: str) -> DecisionId:
    if not isinstance(value, dict) or "term" not in value or "seq" not in value:
        raise BadDecision("malformed", f"{what} is not {{term, seq}}: {value!r}")
    return (_u64(value["term"], f"{what}.term"), _u64(value["seq"], f"{what}.seq"))


def parse_decision(data: bytes, breaker: str) -> Decision:
    """Reads a decision stored under key ``breaker``; raises :class:`BadDecision`.

    Like the Rust decoder: the version is read first (another version is
    ``unsupported_version`` whatever else the value holds), unknown fields are ignored, and
    ``breaker`` must equal the key.
    """
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadDecision("malformed", f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadDecision("malformed", "not a JSON object")
    version = value.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadDecision("malformed", f"version is not an integer: {version!r}")
    if version != VERSION:
        raise BadDecision("unsupported_version", f"version {version}")
    if value.get("breaker") != breaker:
        raise BadDecision("wrong_breaker", f"{value.get('breaker')!r} under key {breaker!r}")
    state = value.get("state")
    if not isinstance(state, dict) or state.get("state") not in STATES:
        raise BadDecision("malformed", f"unknown state: {state!r}")
    grants: Dict[str, int] = {}
    admit = 1000
    if state["state"] == "half_open":
        listed = state.get("grants")
        if not isinstance(listed, list):
            raise BadDecision("malformed", f"half_open without grants: {state!r}")
        for grant in listed:
            if not isinstance(grant, dict) or not isinstance(grant.get("node"), str):
                raise BadDecision("malformed", f"bad grant: {grant!r}")
            grants[grant["node"]] = _u64(grant.get("probes"), "grant.probes")
    elif state["state"] == "ramping":
        admit = _u64(state.get("admit_per_mille"), "admit_per_mille")
        if admit > 1000:
            raise BadDecision("malformed", f"admit_per_mille {admit} is over 1000")
    reason = value.get("reason")
    kind = reason.get("kind") if isinstance(reason, dict) else None
    return Decision(
        breaker=breaker,
        id=_id(value.get("id"), "id"),
        phase=_id(value.get("phase"), "phase"),
        state=state["state"],
        grants=grants,
        admit_per_mille=admit,
        reason=kind if isinstance(kind, str) else "",
        raw=value,
    )


class LocalBreaker:
    """The fleet's decision for one breaker, enforced in this process.

    :meth:`allow` is what a call asks before it goes out:

    - ``closed``, ``forced_closed``, ``disabled``, ``metrics_only``, or no decision yet: yes;
    - ``open``, ``forced_open``: no (the decider, not a timer here, ends an open state);
    - ``half_open``: yes for as many calls as the decision grants this node (``grants``, by
      node id), counted here across every decision of the same half-open round (``phase``:
      a grant is the round's total, so a later decision of the round does not re-arm it);
      no after that, and no at all for a node that has no grant;
    - ``ramping``: exactly ``admit_per_mille`` calls in every thousand.

    Decisions are applied only if newer in ``(term, seq)`` than the one in force, as on Rust
    nodes, so a stale or replayed value never goes back in time. A value that cannot be read
    (malformed, another version, another breaker) leaves the last good decision in force and
    is counted in :attr:`refused`. Safe to call from several threads.
    """

    def __init__(self, breaker: str, node: str) -> None:
        if not NAME.match(breaker) or not NAME.match(node):
            raise ValueError("a breaker name and a node id are 1 to 64 bytes of [A-Za-z0-9_-]")
        self.breaker = breaker
        self.node = node
        self.refused = 0
        self.refusals: Dict[str, int] = {}
        self.rejected_calls = 0
        self._lock = threading.Lock()
        self._decision: Optional[Decision] = None
        # Calls admitted in the current half-open round or ramping stage, keyed by phase.
        self._phase: Optional[DecisionId] = None
        self._admitted = 0

    @property
    def decision(self) -> Optional[Decision]:
        """The decision in force, if any."""
        return self._decision

    def applied_id(self) -> Optional[DecisionId]:
        """The ``(term, seq)`` in force: what to report as ``applied`` with outcomes."""
        decision = self._decision
        return decision.id if decision is not None else None

    def offer(self, data: bytes) -> Optional[Decision]:
        """Reads a stored value and applies it if newer; returns it if it was applied."""
        try:
            decision = parse_decision(data, self.breaker)
        except BadDecision as error:
            self.refuse(error.kind)
            return None
        return decision if self.apply(decision) else None

    def refuse(self, kind: str) -> None:
        """Counts a value that could not be used (the last good decision stays in force)."""
        with self._lock:
            self.refused += 1
            self.refusals[kind] = self.refusals.get(kind, 0) + 1

    def apply(self, decision: Decision) -> bool:
        """Puts ``decision`` in force if it is newer than the current one."""
        with self._lock:
            if self._decision is not None and decision.id <= self._decision.id:
                return False
            self._decision = decision
            if decision.phase != self._phase:
                self._phase = decision.phase
                self._admitted = 0
            return True

    def _admits(self, decision: Optional[Decision], admitted: int) -> bool:
        if decision is None or decision.state in ALLOWING:
            return True
        if decision.state == "half_open":
            return admitted < decision.grants.get(self.node, 0)
        if decision.state == "ramping":
            per_mille = decision.admit_per_mille
            position = admitted % 1000
            # Call n of a thousand goes ahead when it raises floor(n * per_mille / 1000): spread
            # out, and exactly per_mille of every thousand.
            return (position + 1) * per_mille // 1000 > position * per_mille // 1000
        return False

    def allow(self) -> bool:
        """Whether a call may go ahead now; a ``True`` in half-open uses up one probe."""
        with self._lock:
            decision = self._decision
            if decision is not None and decision.state == "ramping":
                admitted = self._admits(decision, self._admitted)
                self._admitted += 1
                if not admitted:
                    self.rejected_calls += 1
                return admitted
            admitted = self._admits(decision, self._admitted)
            if admitted and decision is not None and decision.state == "half_open":
                self._admitted += 1
            if not admitted:
                self.rejected_calls += 1
            return admitted

    def would_allow(self) -> bool:
        """What :meth:`allow` would answer, without using anything up."""
        with self._lock:
            return self._admits(self._decision, self._admitted)


class DecisionFollower:
    """Keeps a :class:`LocalBreaker` up to date from the state bucket over NATS.

    ``on_apply(decision, breaker)`` is called after each decision that is applied. The
    follower also works as the ``applied_source`` of fusebox_publish's ``OutcomeReporter``.
    """

    def __init__(
        self,
        nc: Client,
        breaker: str,
        node: str,
        prefix: str = DEFAULT_PREFIX,
        resync: float = RESYNC,
        on_apply: Optional[Callable[[Decision, LocalBreaker], None]] = None,
    ) -> None:
        if not PREFIX.match(prefix):
            raise ValueError(f"prefix {prefix!r} is not 1 to 32 bytes of [a-z0-9_] starting with a letter")
        self.nc = nc
        self.bucket = f"{prefix}_state"
        self.breaker = LocalBreaker(breaker, node)
        self.resync = resync
        self.on_apply = on_apply
        self._ready = asyncio.Event()
        self._tasks: List["asyncio.Task[None]"] = []
        self._watcher: Any = None

    def applied_id(self) -> Optional[DecisionId]:
        """The decision in force (see :meth:`LocalBreaker.applied_id`)."""
        return self.breaker.applied_id()

    def allow(self) -> bool:
        """See :meth:`LocalBreaker.allow`."""
        return self.breaker.allow()

    async def start(self) -> None:
        """Binds to the bucket and starts following; raises if the bucket does not exist."""
        kv = await self.nc.jetstream().key_value(self.bucket)
        self._watcher = await kv.watch(self.breaker.breaker)
        self._tasks = [
            asyncio.ensure_future(self._watch()),
            asyncio.ensure_future(self._resync(kv)),
        ]

    async def start_when_created(self, deadline: Optional[float]) -> None:
        """Like :meth:`start`, but waits for a Fusebox node to create the bucket, until the
        event loop's ``deadline`` (``None``: forever); raises ``BucketNotFoundError`` after it."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.start()
                return
            except nats.js.errors.BucketNotFoundError:
                if deadline is not None and loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.1)

    async def wait_ready(self, timeout: float) -> None:
        """Waits until the current value (or its absence) has been read."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    def _offer(self, data: Optional[bytes]) -> None:
        if data is None:
            self.breaker.refuse("malformed")
            return
        decision = self.breaker.offer(data)
        if decision is not None and self.on_apply is not None:
            self.on_apply(decision, self.breaker)

    async def _watch(self) -> None:
        async for entry in self._watcher:
            if entry is None:
                # nats-py's marker: the current value, if any, has been delivered.
                self._ready.set()
                continue
            if entry.operation in ("DEL", "PURGE"):
                # Deciders never delete decisions: someone else did; keep the last good one.
                self.breaker.refuse("deleted")
                continue
            self._offer(entry.value)

    async def _resync(self, kv: Any) -> None:
        while True:
            await asyncio.sleep(self.resync)
            try:
                entry = await kv.get(self.breaker.breaker)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                continue
            except (nats.errors.Error, asyncio.TimeoutError):
                # Disconnected or slow: the next round tries again, the decision in force stays.
                continue
            self._offer(entry.value)

    async def stop(self) -> None:
        """Stops following (the connection stays open)."""
        for task in self._tasks:
            task.cancel()
        if self._watcher is not None:
            try:
                await self._watcher.stop()
            except nats.errors.Error:
                pass
        self._tasks = []


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Follow a Fusebox breaker's decisions and print each one applied.")
    parser.add_argument("--url", help="NATS URL(s), comma-separated (default: NATS_URL, else nats://127.0.0.1:4222)")
    parser.add_argument("--user", help="NATS user (with --password)")
    parser.add_argument("--password", help="NATS password")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="Fusebox prefix (default: fusebox)")
    parser.add_argument("--breaker", required=True, help="breaker name")
    parser.add_argument("--node", required=True, help="this app's node id (half-open grants name it)")
    parser.add_argument(
        "--until",
        action="append",
        default=[],
        metavar="STATE",
        help=f"exit 0 once a decision in this state is applied (repeatable or comma-separated: {', '.join(STATES)})",
    )
    parser.add_argument("--timeout", type=float, help="seconds before giving up (exit 1 if --until was not reached)")
    args = parser.parse_args(argv)
    args.until = {s.strip() for item in args.until for s in item.split(",") if s.strip()}
    unknown = args.until.difference(STATES)
    if unknown:
        parser.error(f"unknown state(s) {', '.join(sorted(unknown))}; known: {', '.join(STATES)}")
    if not PREFIX.match(args.prefix) or not NAME.match(args.breaker) or not NAME.match(args.node):
        parser.error("invalid --prefix, --breaker or --node")
    return args


async def _run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout if args.timeout is not None else None
    servers = fusebox_connect.servers(args.url)

    async def error_cb(error: Exception) -> None:
        print(f"fusebox_follow: NATS error: {error}", file=sys.stderr)

    try:
        # Reconnect forever once connected, but give up on a first connection after a while:
        # nats-py's own first-connect loop would retry without end.
        connect = nats.connect(
            servers,
            error_cb=error_cb,
            connect_timeout=2,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            **fusebox_connect.options_from_env(args.user, args.password),
        )
        first = CONNECT_DEADLINE if deadline is None else max(0.1, min(CONNECT_DEADLINE, deadline - loop.time()))
        nc = await asyncio.wait_for(connect, first)
    except asyncio.TimeoutError:
        print(f"fusebox_follow: no NATS server answered at {','.join(servers)}", file=sys.stderr)
        return 1
    except fusebox_connect.ConnectSettingsError as error:
        print(f"fusebox_follow: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # nats-py raises several unrelated types for a failed connect
        print(f"fusebox_follow: cannot connect to {','.join(servers)}: {error!r}", file=sys.stderr)
        return 1
    reached = asyncio.Event()

    def on_apply(decision: Decision, breaker: LocalBreaker) -> None:
        term, seq = decision.id
        line = {
            "state": decision.state,
            "term": term,
            "seq": seq,
            "allow": breaker.would_allow(),
            "reason": decision.reason,
        }
        print(json.dumps(line), flush=True)
        if decision.state in args.until:
            reached.set()

    follower = DecisionFollower(nc, args.breaker, args.node, prefix=args.prefix, on_apply=on_apply)
    try:
        await follower.start_when_created(deadline)
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            if args.until:
                await asyncio.wait_for(reached.wait(), remaining)
            elif remaining is not None:
                await asyncio.sleep(remaining)
            else:
                await asyncio.Event().wait()
        except asyncio.TimeoutError:
            if args.until:
                state = follower.breaker.decision.state if follower.breaker.decision else "none"
                print(
                    f"fusebox_follow: timed out after {args.timeout}s waiting for {', '.join(sorted(args.until))}"
                    f" (in force: {state}; unreadable values: {follower.breaker.refused})",
                    file=sys.stderr,
                )
                return 1
        return 0
    except nats.js.errors.BucketNotFoundError:
        print(f"fusebox_follow: bucket {follower.bucket} does not exist (no Fusebox node has run)", file=sys.stderr)
        return 1
    except nats.errors.Error as error:
        print(f"fusebox_follow: {error!r}", file=sys.stderr)
        return 1
    finally:
        await follower.stop()
        try:
            await asyncio.wait_for(nc.close(), timeout=2)
        except Exception:  # closing is best effort: the outcome is already decided
            pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command-line entry point; returns the exit status."""
    try:
        return asyncio.run(_run(_parse_args(argv)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
