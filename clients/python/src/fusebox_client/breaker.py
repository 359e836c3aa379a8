"""The breaker a service calls: the fleet's decision enforced locally (:class:`Breaker`),
with the permit of one admitted call (:class:`Permit`), a context manager (:class:`Call`,
``with`` and ``async with``) and a decorator (:meth:`Breaker.protect`) that record the
call's outcome.

Everything here is loop-free and thread-safe: a Flask view and an asyncio task use the
same object. What it reports, it reports through the :class:`~fusebox_client.reporter.Reporter`,
stamped with the decision the call ran under (``applied``):

- a rejected call (``allow()`` said no, ``acquire()`` raised) is reported as ``rejected``:
  the demand that makes the decider grant this node probes in half-open;
- a probe's result is sent at once (the round closes only on results);
- a probe that ends ``ignored``, or a permit released without an outcome (a cancelled
  call), gives its slot of the round back, as on Rust nodes.
"""

from __future__ import annotations

import functools
import inspect
import time
from types import TracebackType
from typing import Any, Awaitable, Callable, Optional, Tuple, Type, TypeVar, Union, cast, overload

from .errors import BreakerOpen, PermitSpent, Rejected
from .local import DecisionCallback, LocalBreaker, Ticket
from .reporter import Reporter
from .wire import Decision, DecisionId, check_outcome

__all__ = ["Breaker", "Permit", "Call"]

F = TypeVar("F", bound=Callable[..., Any])
ExceptionTypes = Union[Type[BaseException], Tuple[Type[BaseException], ...]]


class Permit:
    """One admitted call. Record its outcome once: :meth:`success`, :meth:`failure`,
    :meth:`slow`, :meth:`ignored`, or :meth:`release` (no outcome: a cancelled call);
    a second one raises :class:`PermitSpent`."""

    __slots__ = ("_breaker", "_ticket", "_spent", "started")

    def __init__(self, breaker: "Breaker", ticket: Ticket) -> None:
        self._breaker = breaker
        self._ticket = ticket
        self._spent = False
        #: ``time.monotonic()`` when the permit was granted.
        self.started = time.monotonic()

    @property
    def probe(self) -> bool:
        """Whether this call is a probe of a half-open round."""
        return self._ticket.probe

    @property
    def applied(self) -> Optional[DecisionId]:
        """The decision the call was admitted under (reported as ``applied``)."""
        return self._ticket.applied

    @property
    def decision(self) -> Optional[Decision]:
        """The whole decision the call was admitted under (``None``: none yet); for a probe,
        ``decision.phase`` names its half-open round."""
        return self._ticket.decision

    @property
    def spent(self) -> bool:
        """Whether an outcome was recorded or the permit released."""
        return self._spent

    def _spend(self) -> None:
        if self._spent:
            raise PermitSpent(f"{self._breaker.name}: this permit's outcome is already recorded")
        self._spent = True

    def record(self, outcome: str) -> None:
        """Records the call's outcome (one of ``success``, ``failure``, ``slow``,
        ``ignored``)."""
        check_outcome(outcome)
        if outcome == "rejected":
            raise ValueError("an admitted call is not rejected: record its outcome, or release() it")
        self._spend()
        if outcome == "ignored":
            self._breaker.local.give_back(self._ticket)
        self._breaker.reporter.record(self._breaker.name, outcome, 1, self._ticket.applied, urgent=self._ticket.probe)

    def success(self) -> None:
        """The call succeeded in time."""
        self.record("success")

    def failure(self) -> None:
        """The call failed in a way that counts against the dependency."""
        self.record("failure")

    def slow(self) -> None:
        """The call succeeded, but took at least the slow-call threshold."""
        self.record("slow")

    def ignored(self) -> None:
        """The call ended neutrally (an error that does not count); a probe's slot is
        given back."""
        self.record("ignored")

    def release(self) -> None:
        """No outcome (the call never happened, or was cancelled): nothing is reported and
        a probe's slot is given back."""
        self._spend()
        self._breaker.local.give_back(self._ticket)

    def finish(self, error: Optional[BaseException], ignore: ExceptionTypes = ()) -> None:
        """Records what a call that ended with ``error`` (``None``: it returned) amounts to:
        ``success`` or ``slow`` (by the breaker's slow-call threshold), ``failure``,
        ``ignored`` for an exception of ``ignore``; a ``BaseException`` that is not an
        ``Exception`` (cancellation, ``KeyboardInterrupt``) releases the permit."""
        if self._spent:
            return
        if error is None:
            threshold = self._breaker.slow_threshold
            slow = threshold is not None and time.monotonic() - self.started >= threshold
            self.record("slow" if slow else "success")
        elif ignore and isinstance(error, ignore):
            self.record("ignored")
        elif not isinstance(error, Exception):
            self.release()
        else:
            self.record("failure")


class Call:
    """``with breaker.call():`` / ``async with breaker.call():`` — raises
    :class:`Rejected` (:class:`BreakerOpen` when open) on entry if the fleet holds the call
    back, records the outcome on exit (see :meth:`Permit.finish`). Inside, ``call.permit``
    may record an outcome of its own (``call.permit.failure()`` for a 503 without an
    exception); then the exit records nothing more. Exceptions are never swallowed."""

    def __init__(self, breaker: "Breaker", ignore: ExceptionTypes = ()) -> None:
        self._breaker = breaker
        self._ignore = ignore
        self.permit: Optional[Permit] = None

    def __enter__(self) -> "Call":
        self.permit = self._breaker.acquire()
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        assert self.permit is not None
        self.permit.finish(exc, self._ignore)

    async def __aenter__(self) -> "Call":
        return self.__enter__()

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Breaker:
    """Breaker ``name`` of node ``node`` as the fleet decides it, enforced here.

    Made by ``Client.breaker(name)`` (or ``SyncClient.breaker``), which follows the state
    bucket. ``slow_after`` (seconds) overrides the config bucket's slow-call threshold.
    """

    def __init__(
        self,
        local: LocalBreaker,
        reporter: Reporter,
        slow_after: Optional[float] = None,
        config_threshold: Optional[Callable[[], Optional[float]]] = None,
    ) -> None:
        self.local = local
        self.reporter = reporter
        self.slow_after = slow_after
        self._config_threshold = config_threshold

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self.local.breaker

    @property
    def node(self) -> str:
        """This process's node id."""
        return self.local.node

    @property
    def decision(self) -> Optional[Decision]:
        """The decision in force (``None`` before the first one)."""
        return self.local.decision

    @property
    def state(self) -> Optional[str]:
        """The state in force (``"closed"``, ``"open"``, ``"half_open"``, ...), ``None``
        before the first decision."""
        decision = self.local.decision
        return decision.state if decision is not None else None

    @property
    def slow_threshold(self) -> Optional[float]:
        """Seconds from which a successful call counts as ``slow`` (``None``: never)."""
        if self.slow_after is not None:
            return self.slow_after
        return self._config_threshold() if self._config_threshold is not None else None

    def _rejected(self) -> Rejected:
        decision = self.local.decision
        state = decision.state if decision is not None else "closed"
        applied = decision.id if decision is not None else None
        self.reporter.record(self.name, "rejected", 1, applied)
        kind = BreakerOpen if state in ("open", "forced_open") else Rejected
        return kind(self.name, self.node, state, applied)

    def acquire(self) -> Permit:
        """A :class:`Permit` for one call, or :class:`Rejected` (:class:`BreakerOpen`),
        which is reported as ``rejected``. In half-open a permit is a probe and uses up
        one of the probes granted to this node."""
        ticket = self.local.admit()
        if ticket is None:
            raise self._rejected()
        return Permit(self, ticket)

    def allow(self) -> bool:
        """Whether a call may go ahead now. ``False`` is reported as ``rejected``; after
        ``True``, report the call's outcome with :meth:`success`, :meth:`failure`,
        :meth:`slow` or :meth:`ignored` (in half-open ``True`` uses up a probe: report it
        promptly). The outcome is attributed to the decision in force when it is recorded;
        :meth:`acquire` and :meth:`call` keep the decision the call was admitted under."""
        ticket = self.local.admit()
        if ticket is None:
            self._rejected()
            return False
        return True

    def would_allow(self) -> bool:
        """What :meth:`allow` would answer now, using nothing up and reporting nothing."""
        return self.local.would_allow()

    def on_decision(self, callback: DecisionCallback, current: bool = True) -> Callable[[], None]:
        """Calls ``callback(decision)`` with each decision the follower puts in force (first
        with the one in force, when ``current``), in ``(term, seq)`` order, once each, on the
        client's event loop; returns a function that stops it. See
        :meth:`LocalBreaker.on_decision`."""
        return self.local.on_decision(callback, current)

    def call(self, ignore: ExceptionTypes = ()) -> Call:
        """A context manager for one call (``with`` or ``async with``): see :class:`Call`.
        Exceptions of ``ignore`` are reported as ``ignored``."""
        return Call(self, ignore)

    @overload
    def protect(self, func: F) -> F: ...

    @overload
    def protect(
        self, func: None = None, *, ignore: ExceptionTypes = (), fallback: Optional[Callable[[Rejected], Any]] = None
    ) -> Callable[[F], F]: ...

    def protect(
        self,
        func: Optional[F] = None,
        *,
        ignore: ExceptionTypes = (),
        fallback: Optional[Callable[[Rejected], Any]] = None,
    ) -> Union[F, Callable[[F], F]]:
        """A decorator for a function (plain or ``async``) that makes one call: admitted by
        the fleet's decision, its outcome recorded (see :class:`Call`). A rejected call
        raises :class:`Rejected`, or returns ``fallback(rejection)`` when given (awaited if
        it returns an awaitable, for an ``async`` function)."""
        if func is None:
            return lambda f: self.protect(f, ignore=ignore, fallback=fallback)
        target = func
        if inspect.iscoroutinefunction(target):

            @functools.wraps(target)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    call = self.call(ignore).__enter__()
                except Rejected as rejection:
                    if fallback is None:
                        raise
                    result = fallback(rejection)
                    return await cast(Awaitable[Any], result) if inspect.isawaitable(result) else result
                try:
                    value = await target(*args, **kwargs)
                except BaseException as error:
                    call.__exit__(type(error), error, error.__traceback__)
                    raise
                call.__exit__(None, None, None)
                return value

            return cast(F, run_async)

        @functools.wraps(target)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                call = self.call(ignore).__enter__()
            except Rejected as rejection:
                if fallback is None:
                    raise
                return fallback(rejection)
            try:
                value = target(*args, **kwargs)
            except BaseException as error:
                call.__exit__(type(error), error, error.__traceback__)
                raise
            call.__exit__(None, None, None)
            return value

        return cast(F, run)

    def record(self, outcome: str, count: int = 1) -> None:
        """Records ``count`` calls of ``outcome`` under the decision in force (after
        :meth:`allow`; a probe's result is sent at once)."""
        urgent = self.state == "half_open"
        self.reporter.record(self.name, outcome, count, self.local.applied_id(), urgent=urgent)

    def success(self, count: int = 1) -> None:
        """Calls that succeeded in time."""
        self.record("success", count)

    def failure(self, count: int = 1) -> None:
        """Calls that failed in a way that counts against the dependency."""
        self.record("failure", count)

    def slow(self, count: int = 1) -> None:
        """Calls that succeeded, but took at least the slow-call threshold."""
        self.record("slow", count)

    def ignored(self, count: int = 1) -> None:
        """Calls that ended neutrally."""
        self.record("ignored", count)

