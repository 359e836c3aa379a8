"""Tests of fusebox-client's pure parts: the messages it builds (against the JSON
Schema), admission and probes in LocalBreaker, bad decisions, the reporter's bounded
buffer, and the hooks the command-line examples use (``on_decision``, ``Permit.decision``,
the acks of a flush that raised, waiting for the state bucket), with fakes of nats-py's
JetStream. No server is needed.
"""

from __future__ import annotations

import json
from typing import Optional

import pytest
from nats.aio.client import Client as NatsClient

import fusebox_client as fb
from fusebox_client import wire
from fusebox_client.reporter import _Batch


def decision(state: dict, term: int = 3, seq: int = 1, phase: tuple = (3, 1), breaker: str = "b") -> bytes:
    return json.dumps(
        {
            "version": 1,
            "breaker": breaker,
            "id": {"term": term, "seq": seq},
            "phase": {"term": phase[0], "seq": phase[1]},
            "state": state,
            "backoff_level": 0,
            "reason": {"kind": "open_elapsed"},
            "decider": "n1",
            "clock": {"term": term, "entries": [["n1", 1]]},
        }
    ).encode()


def test_messages_validate_against_the_schema(validate):
    msgs = [
        wire.batch_message("b", "py1", [("success", 10), ("failure", 1), ("rejected", 1_000_000)], (412, 3)),
        wire.outcome_message("b", "py1", "failure", 3),
        wire.batch_message("b", "py1", [("slow", 1)] * wire.MAX_EVENTS, None),
    ]
    for message in msgs:
        checked = validate(wire.encode(message))
        counts = [e.get("count", 1) for e in checked.get("events", [checked])]
        assert all(type(c) is int for c in counts), checked
        # JSON Schema calls 3.0 an integer, the decoder does not: no float is ever written.
        assert b"." not in wire.encode(message)
    # The schema refuses what the builders refuse.
    with pytest.raises(Exception):
        validate(b'{"version": 1, "outcome": "failure", "count": 0}')
    for bad in (lambda: wire.event("timeout"), lambda: wire.event("failure", 0), lambda: wire.event("failure", 3.0),
                lambda: wire.event("failure", True), lambda: wire.check_name("node", "a.b"),
                lambda: wire.batch_message("b", "n", [])):
        with pytest.raises(fb.InvalidInput):
            bad()


def test_the_reporter_builds_schema_valid_batches_with_unique_ids(validate):
    reporter = fb.Reporter(NatsClient(), "py1", settings=fb.ReporterSettings(flush_interval=None))
    for outcome in ("failure", "failure", "success", "rejected"):
        reporter.record("b", outcome, applied=(7, 2))
    reporter.record("c", "slow", 5)
    ids = set()
    while True:
        sealed = reporter._seal_head()
        if sealed is None:
            break
        batch, subject, payload = sealed
        message = validate(payload)
        assert subject == f"fusebox.out.{batch.breaker}.py1"
        ids.add(batch.msg_id)
        assert reporter._seal_head()[0].msg_id == batch.msg_id, "a retry keeps its id"
        reporter._done(batch)
        if batch.breaker == "b":
            assert message["applied"] == {"term": 7, "seq": 2}
            assert message["events"] == [{"outcome": "failure", "count": 2}, {"outcome": "success"}, {"outcome": "rejected"}]
    assert len(ids) == 2


def test_the_buffer_is_bounded_and_drops_the_oldest():
    reporter = fb.Reporter(NatsClient(), "py1", settings=fb.ReporterSettings(flush_interval=None, max_buffered_events=2048))
    for i in range(3000):
        reporter.record("b", "failure" if i % 2 else "success")
    assert reporter.pending_events() == 2048
    assert reporter.stats.dropped_events == 3000 - 2048
    assert reporter.stats.dropped_calls == 3000 - 2048
    assert reporter.stats.recorded_calls == 3000
    # The newest survive: the last event recorded (i = 2999, a failure) is still there.
    last: _Batch = reporter._queue[-1]
    assert last.events[-1] == ["failure", 1]


def test_a_closed_reporter_refuses_records():
    import asyncio

    reporter = fb.Reporter(NatsClient(), "py1", settings=fb.ReporterSettings(flush_interval=None))
    reporter._closed = True
    with pytest.raises(fb.ReporterClosed):
        reporter.success("b")
    assert issubclass(fb.ReporterClosed, fb.FuseboxError)
    del asyncio


def test_half_open_admits_exactly_the_grant_and_ignored_probes_give_back():
    local = fb.LocalBreaker("b", "py1")
    assert local.admit() is not None, "no decision yet: calls go ahead"
    assert local.offer(decision({"state": "open", "duration_ms": 500}, seq=1, phase=(3, 1)))
    assert local.admit() is None and local.rejected == 1
    half = {"state": "half_open", "budget": 3, "grants": [{"node": "n1", "probes": 1}, {"node": "py1", "probes": 2}]}
    assert local.offer(decision(half, seq=2, phase=(3, 2)))
    tickets = [local.admit() for _ in range(5)]
    assert [t is not None and t.probe for t in tickets] == [True, True, False, False, False]
    local.give_back(tickets[0])
    assert local.admit() is not None, "an ignored probe's slot is free again"
    assert local.admit() is None
    # A later decision of the same round does not re-arm the grant.
    assert local.offer(decision(half, seq=3, phase=(3, 2)))
    assert local.admit() is None
    # A stale decision is not applied.
    assert local.offer(decision({"state": "closed"}, seq=1, phase=(3, 1))) is None
    assert local.decision.state == "half_open"


def test_bad_values_are_counted_and_skipped():
    local = fb.LocalBreaker("b", "py1")
    assert local.offer(decision({"state": "open", "duration_ms": 1}))
    for bad, kind in [
        (b"not json", "malformed"),
        (b'{"version": 2}', "unsupported_version"),
        (decision({"state": "closed"}, seq=9, breaker="other"), "wrong_breaker"),
        (decision({"state": "exploded"}, seq=9), "malformed"),
        (decision({"state": "half_open", "budget": 1, "grants": [{"node": "py1", "probes": 5}]}, seq=9), "malformed"),
        (None, "malformed"),
    ]:
        assert local.offer(bad) is None
        assert local.refusals.get(kind, 0) >= 1, (bad, local.refusals)
    assert local.decision.state == "open", "the last good decision stays"


def test_ramping_admits_the_share():
    local = fb.LocalBreaker("b", "py1")
    local.offer(decision({"state": "ramping", "stage": 1, "admit_per_mille": 250}))
    admitted = sum(local.admit() is not None for _ in range(1000))
    assert admitted == 250


def test_call_context_manager_and_decorator_record_outcomes():
    reporter = fb.Reporter(NatsClient(), "py1", settings=fb.ReporterSettings(flush_interval=None))
    local = fb.LocalBreaker("b", "py1")
    breaker = fb.Breaker(local, reporter)
    with breaker.call():
        pass
    with pytest.raises(KeyError):
        with breaker.call(ignore=(KeyError,)):
            raise KeyError("x")

    @breaker.protect
    def boom() -> None:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        boom()
    local.offer(decision({"state": "open", "duration_ms": 1}))
    with pytest.raises(fb.BreakerOpen) as rejected:
        with breaker.call():
            raise AssertionError("not run")
    assert rejected.value.state == "open" and rejected.value.decision_id == (3, 1)
    assert breaker.protect(fallback=lambda r: "cached")(lambda: "live")() == "cached"
    events = [(b.applied, [tuple(e) for e in b.events]) for b in reporter._queue]
    assert events == [
        (None, [("success", 1), ("ignored", 1), ("failure", 1)]),
        ((3, 1), [("rejected", 2)]),
    ]


def test_on_decision_reports_each_applied_decision_once_in_order():
    local = fb.LocalBreaker("b", "py1")
    seen: list = []
    local.offer(decision({"state": "closed"}, seq=1))
    cancel = local.on_decision(lambda d: seen.append((d.state, d.id)))
    assert seen == [("closed", (3, 1))], "the decision in force comes first"
    later: list = []
    local.on_decision(lambda d: later.append(d.id), current=False)
    assert later == [], "current=False: only what comes next"
    local.offer(decision({"state": "open", "duration_ms": 5}, seq=2))
    local.offer(decision({"state": "closed"}, seq=1))  # stale: not applied, not reported
    local.offer(b"not json")
    assert seen == [("closed", (3, 1)), ("open", (3, 2))]
    assert later == [(3, 2)]

    def boom(_: fb.Decision) -> None:
        raise RuntimeError("a callback's bug")

    local.on_decision(boom)
    cancel()
    assert local.offer(decision({"state": "closed"}, seq=3)), "a failing callback does not stop applying"
    assert seen == [("closed", (3, 1)), ("open", (3, 2))], "cancelled: nothing more"
    assert later == [(3, 2), (3, 3)]
    # A Breaker hands out the same hook.
    breaker = fb.Breaker(local, fb.Reporter(NatsClient(), "py1", settings=fb.ReporterSettings(flush_interval=None)))
    states: list = []
    breaker.on_decision(lambda d: states.append(d.state))
    assert states == ["closed"]


def test_a_probes_permit_names_its_decision_and_round():
    reporter = fb.Reporter(NatsClient(), "py1", settings=fb.ReporterSettings(flush_interval=None))
    local = fb.LocalBreaker("b", "py1")
    breaker = fb.Breaker(local, reporter)
    assert breaker.acquire().decision is None, "no decision yet"
    half = {"state": "half_open", "budget": 1, "grants": [{"node": "py1", "probes": 1}]}
    local.offer(decision(half, seq=4, phase=(3, 2)))
    permit = breaker.acquire()
    assert permit.probe and permit.decision is not None
    assert (permit.decision.state, permit.decision.id, permit.decision.phase) == ("half_open", (3, 4), (3, 2))


class _Ack:
    def __init__(self, seq: int) -> None:
        self.stream, self.seq, self.duplicate = "FUSEBOX_OUTCOMES", seq, False


class _FakeJetStream:
    """Acknowledges every publish except those on ``refuse``'s subject, which time out."""

    def __init__(self, refuse: str) -> None:
        self.refuse = refuse
        self.published: list = []

    async def publish(self, subject: str, payload: bytes, timeout: float, headers: dict) -> _Ack:
        import nats.errors

        self.published.append(subject)
        if subject == self.refuse:
            raise nats.errors.TimeoutError
        return _Ack(len(self.published))


def test_a_flush_that_raises_still_hands_over_its_acks():
    import asyncio

    js = _FakeJetStream(refuse="fusebox.out.b.py1")
    settings = fb.ReporterSettings(flush_interval=None, max_attempts=1, ack_timeout=0.1)
    reporter = fb.Reporter(NatsClient(), "py1", settings=settings, js=js)  # type: ignore[arg-type]
    reporter.failure("a", 3)
    reporter.failure("b")
    reporter.success("c", 2, applied=(5, 1))
    with pytest.raises(fb.PublishTimeout) as error:
        asyncio.run(reporter.flush())
    assert error.value.subject == "fusebox.out.b.py1" and error.value.calls == 1
    assert [(s.breaker, s.calls, s.applied, s.stream) for s in error.value.sent] == [
        ("a", 3, None, "FUSEBOX_OUTCOMES"),
        ("c", 2, (5, 1), "FUSEBOX_OUTCOMES"),
    ], "the messages after the one given up are still sent, and their acks are not lost"
    assert js.published == ["fusebox.out.a.py1", "fusebox.out.b.py1", "fusebox.out.c.py1"]


class _Watcher:
    def __init__(self) -> None:
        self.marker_sent = False

    def __aiter__(self) -> "_Watcher":
        return self

    async def __anext__(self) -> None:
        import asyncio

        if not self.marker_sent:
            self.marker_sent = True
            return None  # nats-py's marker: the current value (none here) is in
        await asyncio.Event().wait()  # no change ever

    async def stop(self) -> None:
        pass


class _EmptyBucket:
    async def watch(self, key: str) -> _Watcher:
        return _Watcher()

    async def get(self, key: str) -> None:
        import nats.js.errors

        raise nats.js.errors.KeyNotFoundError


class _LateJetStream:
    """A server whose state bucket appears at the ``appears_at``-th look (``None``: never)."""

    def __init__(self, appears_at: Optional[int]) -> None:
        self.appears_at = appears_at
        self.looks = 0

    async def key_value(self, bucket: str) -> _EmptyBucket:
        import nats.js.errors

        if bucket == "fusebox_state":
            self.looks += 1
            if self.appears_at is not None and self.looks >= self.appears_at:
                return _EmptyBucket()
        raise nats.js.errors.BucketNotFoundError


def test_following_waits_for_the_bucket_up_to_the_provision_timeout():
    import asyncio
    import time

    from fusebox_client.follower import Follower

    async def start(js: _LateJetStream, provision_timeout: float) -> Follower:
        follower = Follower(js, fb.LocalBreaker("b", "py1"))  # type: ignore[arg-type]
        await follower.start(ready_timeout=1.0, provision_timeout=provision_timeout)
        return follower

    async def late() -> None:
        js = _LateJetStream(appears_at=3)
        follower = await start(js, provision_timeout=5.0)
        assert follower.ready and js.looks == 3
        await follower.stop()

    asyncio.run(late())

    never = _LateJetStream(appears_at=None)
    started = time.monotonic()
    with pytest.raises(fb.NotProvisioned, match="after 0.3s"):
        asyncio.run(start(never, provision_timeout=0.3))
    assert time.monotonic() - started >= 0.3 and never.looks >= 2, "looked again until the deadline"

    at_once = _LateJetStream(appears_at=None)
    with pytest.raises(fb.NotProvisioned):
        asyncio.run(start(at_once, provision_timeout=0.0))
    assert at_once.looks == 1, "the default: no waiting"
