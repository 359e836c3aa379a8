"""Tests of fusebox-client's pure parts: the messages it builds (against the JSON
Schema), admission and probes in LocalBreaker, bad decisions, and the reporter's bounded
buffer. No server is needed.
"""

from __future__ import annotations

import json

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
