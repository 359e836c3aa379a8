"""The fleet's decision for one breaker, enforced in this process: :class:`LocalBreaker`
applies decisions and admits or rejects calls. Pure (no NATS, no clock), thread-safe, and
the one place the admission rules live; :mod:`fusebox_client.follower` feeds it from the
state bucket.

The rules are those of a Rust node's hot path for the fleet state (docs/wire-format.md,
"Decisions"):

| decision in force | a call |
|---|---|
| none yet, ``closed``, ``forced_closed``, ``disabled``, ``metrics_only`` | goes ahead |
| ``open``, ``forced_open`` | is rejected (the decider ends an open state, not a timer here) |
| ``half_open`` | goes ahead as a probe while this node has probes of the round's grant left; rejected otherwise |
| ``ramping`` | exactly ``admit_per_mille`` calls of every thousand go ahead, spread out |

A grant is the total for its half-open round (the decision's ``phase``): a later decision of
the same round changes the grant, never re-arms it. A probe that ends ``ignored`` or is
released without an outcome gives its slot back if its round is still the current one,
as on Rust nodes, so the grant bounds the probes in flight plus those that ended in a
success, failure or slow call.

A decision is applied only if its ``id`` is newer in ``(term, seq)`` than the one in force;
a value that cannot be used leaves the last good decision in force and is counted.
:meth:`LocalBreaker.on_decision` tells a caller of each decision applied, in ``(term, seq)``
order, each once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from .errors import BadDecision
from .wire import ALLOWING_STATES, Decision, DecisionId, check_name, parse_decision

__all__ = ["LocalBreaker", "Ticket", "DecisionCallback"]

log = logging.getLogger("fusebox_client")

DecisionCallback = Callable[[Decision], None]
"""Called with a decision just put in force (see :meth:`LocalBreaker.on_decision`)."""


class _Listener:
    """One :meth:`LocalBreaker.on_decision` callback and the newest decision it was given:
    it is called in ``(term, seq)`` order and never twice for one decision, whichever thread
    applies decisions or registers it."""

    __slots__ = ("callback", "lock", "last")

    def __init__(self, callback: DecisionCallback) -> None:
        self.callback = callback
        self.lock = threading.Lock()
        self.last: Optional[DecisionId] = None

    def deliver(self, decision: Decision, breaker: str) -> None:
        with self.lock:
            if self.last is not None and decision.id <= self.last:
                return
            self.last = decision.id
            try:
                self.callback(decision)
            except Exception:  # a callback's bug must not stop the follower
                log.exception("fusebox breaker %s: on_decision callback failed", breaker)


@dataclass(frozen=True)
class Ticket:
    """An admitted call: the decision it was admitted under and whether it is a probe of
    that decision's half-open round."""

    decision: Optional[Decision]
    probe: bool

    @property
    def applied(self) -> Optional[DecisionId]:
        """The ``id`` to report the call's outcome under."""
        return self.decision.id if self.decision is not None else None


class LocalBreaker:
    """Applies decisions for breaker ``breaker`` and admits calls of node ``node``."""

    def __init__(self, breaker: str, node: str) -> None:
        self.breaker = check_name("breaker", breaker)
        self.node = check_name("node", node)
        self._lock = threading.Lock()
        self._decision: Optional[Decision] = None
        # The round (half-open) or stage (ramping) the counters below belong to: its phase.
        self._phase: Optional[DecisionId] = None
        self._issued = 0
        self._ramp_position = 0
        #: Values refused (malformed, another version or breaker, deleted), by kind.
        self.refusals: Dict[str, int] = {}
        #: Calls rejected since the start.
        self.rejected = 0
        #: Probes handed out since the start (slots given back are not subtracted).
        self.probes = 0
        #: Decisions applied since the start.
        self.applied_count = 0
        self._listeners: List[_Listener] = []

    @property
    def refused(self) -> int:
        """How many values could not be used, of every kind."""
        with self._lock:
            return sum(self.refusals.values())

    @property
    def decision(self) -> Optional[Decision]:
        """The decision in force, if any."""
        return self._decision

    def applied_id(self) -> Optional[DecisionId]:
        """The ``(term, seq)`` in force: what to report as ``applied``."""
        decision = self._decision
        return decision.id if decision is not None else None

    def refuse(self, kind: str) -> None:
        """Counts a value that could not be used; the decision in force stays."""
        with self._lock:
            self.refusals[kind] = self.refusals.get(kind, 0) + 1

    def offer(self, data: Optional[bytes]) -> Optional[Decision]:
        """Reads a stored value and applies it if it is newer; returns it if applied. A value
        that cannot be read is counted (:attr:`refusals`), never raised."""
        try:
            decision = parse_decision(data, self.breaker)
        except BadDecision as error:
            self.refuse(error.kind)
            return None
        return decision if self.apply(decision) else None

    def apply(self, decision: Decision) -> bool:
        """Puts ``decision`` in force if it is for this breaker and newer than the one in
        force; whether it did. The :meth:`on_decision` callbacks are called after it is in
        force, in the thread that applied it."""
        if decision.breaker != self.breaker:
            self.refuse("wrong_breaker")
            return False
        with self._lock:
            if self._decision is not None and decision.id <= self._decision.id:
                return False
            self._decision = decision
            self.applied_count += 1
            if decision.phase != self._phase:
                self._phase = decision.phase
                self._issued = 0
                self._ramp_position = 0
            listeners = list(self._listeners)
        for listener in listeners:
            listener.deliver(decision, self.breaker)
        return True

    def on_decision(self, callback: DecisionCallback, current: bool = True) -> Callable[[], None]:
        """Calls ``callback(decision)`` for every decision put in force from now on (and at
        once with the one in force, if any, when ``current``), in ``(term, seq)`` order and
        once each, even when decisions are applied on another thread meanwhile. It runs in
        the thread that applied the decision (the client's event loop for a followed
        breaker): keep it short, and do not block. An exception it raises is logged, never
        passed on. Returns a function that stops the calls."""
        listener = _Listener(callback)
        with self._lock:
            self._listeners.append(listener)
            decision = self._decision
        if current and decision is not None:
            listener.deliver(decision, self.breaker)
        elif not current and decision is not None:
            with listener.lock:
                listener.last = decision.id if listener.last is None else max(listener.last, decision.id)

        def cancel() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return cancel

    def _admits(self, decision: Optional[Decision]) -> bool:
        if decision is None or decision.state in ALLOWING_STATES:
            return True
        if decision.state == "half_open":
            return self._issued < decision.grants.get(self.node, 0)
        if decision.state == "ramping":
            per_mille = decision.admit_per_mille
            n = self._ramp_position % 1000
            # Call n of a thousand goes ahead when it raises floor(n * per_mille / 1000):
            # exactly per_mille of every thousand, spread out.
            return (n + 1) * per_mille // 1000 > n * per_mille // 1000
        return False

    def admit(self) -> Optional[Ticket]:
        """A :class:`Ticket` if a call may go ahead now (a probe uses up a slot of the
        round's grant), else ``None`` (counted in :attr:`rejected`)."""
        with self._lock:
            decision = self._decision
            admitted = self._admits(decision)
            probe = admitted and decision is not None and decision.state == "half_open"
            if decision is not None and decision.state == "ramping":
                self._ramp_position += 1
            if probe:
                self._issued += 1
                self.probes += 1
            if not admitted:
                self.rejected += 1
                return None
            return Ticket(decision, probe)

    def give_back(self, ticket: Ticket) -> None:
        """A probe ended neutrally (``ignored``) or without an outcome: its slot is free
        again if its round is still the current one (a slot of a finished round is
        worthless)."""
        if not ticket.probe or ticket.decision is None:
            return
        with self._lock:
            if self._phase == ticket.decision.phase and self._issued > 0:
                self._issued -= 1

    def would_allow(self) -> bool:
        """What :meth:`admit` would answer now, without using anything up."""
        with self._lock:
            return self._admits(self._decision)

    def probes_left(self) -> int:
        """Probes of the current half-open round this node may still send (0 outside one)."""
        with self._lock:
            decision = self._decision
            if decision is None or decision.state != "half_open":
                return 0
            return max(0, decision.grants.get(self.node, 0) - self._issued)
