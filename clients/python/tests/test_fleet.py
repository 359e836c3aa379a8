"""fusebox-client in a fleet of Rust nodes (started by tests/tests/python_client.rs, which
also checks the Rust side): reports trip the fleet; the follower rejects while open,
reports that as demand, lets exactly its granted probes through and reports their results;
the thread-backed API does the same from plain threads. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import pytest

import fusebox_client as fb
from fusebox_client import wire

DEADLINE = 12.0


async def until(check: Callable[[], bool], what: str, step: Callable[[], None] = lambda: None) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        step()
        await asyncio.sleep(0.02)


def test_reports_trip_the_fleet(url, breaker_name, validate):
    async def go() -> None:
        reporting = fb.ReporterSettings(flush_interval=None)
        client = await fb.connect(url, node="py1", reporting=reporting)
        try:
            breaker = await client.breaker(breaker_name)
            assert breaker.state == "closed"
            closed_id = breaker.decision.id
            for _ in range(10):
                with pytest.raises(ConnectionError):
                    with breaker.call():
                        raise ConnectionError("dependency down")
            # What goes out is what the schema allows.
            batch, _subject, payload = client.reporter._seal_head()
            message = validate(payload)
            assert message["events"] == [{"outcome": "failure", "count": 10}]
            assert message["applied"] == {"term": closed_id[0], "seq": closed_id[1]}
            sent = await client.flush()
            assert [(s.calls, s.duplicate, s.applied) for s in sent] == [(10, False, closed_id)]
            assert sent[0].stream == wire.outcome_stream("fusebox")
            assert sent[0].msg_id == batch.msg_id and sent[0].msg_id.startswith("py1:")
            await until(lambda: breaker.state == "open", "the fleet to open the breaker")
            assert breaker.decision.reason == "tripped"
            assert client.reporter.stats.failed_messages == 0
        finally:
            await client.close()

    asyncio.run(go())


def test_follower_rejects_while_open_and_probes_exactly_its_grant(url, breaker_name):
    async def go() -> None:
        client = await fb.connect(url, node="py1")
        try:
            breaker = await client.breaker(breaker_name)
            for _ in range(10):
                permit = breaker.acquire()
                permit.failure()
            await until(lambda: breaker.state == "open", "open")
            with pytest.raises(fb.BreakerOpen) as rejected:
                breaker.acquire()
            assert rejected.value.state == "open"
            # Rejected calls while open are the demand; keep asking until half-open.
            probes = []

            def ask() -> None:
                try:
                    probes.append(breaker.acquire())
                except fb.Rejected:
                    pass

            await until(lambda: breaker.state == "half_open", "half-open", ask)
            for _ in range(10):
                ask()
            granted = breaker.decision.granted("py1")
            assert granted == 2, breaker.decision.raw
            assert len(probes) == granted, "exactly the granted probes went through"
            assert all(p.probe for p in probes)
            assert not breaker.would_allow()
            assert client.reporter.stats.recorded_calls >= 10 + 10
            for permit in probes:
                permit.success()
            await until(lambda: breaker.state == "closed", "closed by the probes")
            assert breaker.decision.reason == "probes_succeeded"
            assert breaker.allow()
        finally:
            await client.close()

    asyncio.run(go())


def test_sync_api_trips_and_recovers(url, breaker_name):
    healthy = False
    calls = {"run": 0}

    client = fb.connect_sync(url, node="py-sync")
    try:
        breaker = client.breaker(breaker_name)

        @breaker.protect(fallback=lambda rejection: "fallback")
        def call_dependency() -> str:
            calls["run"] += 1
            if not healthy:
                raise ConnectionError("down")
            return "live"

        def one() -> str:
            try:
                return call_dependency()
            except ConnectionError:
                return "error"

        deadline = time.monotonic() + DEADLINE
        with ThreadPoolExecutor(4) as pool:
            while breaker.state != "open":
                assert time.monotonic() < deadline, "never opened"
                list(pool.map(lambda _: one(), range(4)))
                time.sleep(0.01)
            healthy = True
            ran_when_open = calls["run"]
            assert one() == "fallback"
            while breaker.state != "closed":
                assert time.monotonic() < deadline, f"never closed again: {breaker.state}"
                list(pool.map(lambda _: one(), range(4)))
                time.sleep(0.01)
        assert breaker.decision.reason == "probes_succeeded"
        assert breaker.local.probes == 2, "the two granted probes, no more"
        assert calls["run"] >= ran_when_open + 2
        sent = client.flush(timeout=10)
        assert client.reporter.stats.failed_messages == 0, client.reporter.stats
        del sent
    finally:
        assert client.close() == 0


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is stopped (state ``T``), from /proc."""
    import glob

    states = []
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            with open(stat) as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            continue
    return bool(states) and all(state in ("T", "t") for state in states)


def test_a_lost_ack_is_retried_with_the_same_id(url, breaker_name):
    """The server is stopped (SIGSTOP) while a message is in flight, so its first ack is
    lost; the retry carries the same Nats-Msg-Id and the stream stores the message once."""
    import os
    import signal

    pid = int(os.environ["FUSEBOX_TEST_NATS_PID"])

    async def go() -> None:
        reporting = fb.ReporterSettings(flush_interval=None, ack_timeout=0.5, backoff_initial=0.1, max_attempts=5)
        client = await fb.connect(url, node="py-retry", reporting=reporting)
        loop = asyncio.get_running_loop()
        try:
            client.reporter.failure(breaker_name, 7)
            os.kill(pid, signal.SIGSTOP)
            # A group stop takes effect thread by thread: publish only once every thread of
            # the server is stopped (seen failing: the first attempt was acknowledged).
            deadline = loop.time() + 10
            while not _all_threads_stopped(pid):
                assert loop.time() < deadline, "the server never stopped"
                await asyncio.sleep(0.005)
            flush = asyncio.ensure_future(client.flush())
            # Thawed once the first attempt has timed out and the retry has begun, as the
            # reporter's counter shows (a timer of the test's own raced the reporter's
            # under load: the first attempt was acknowledged and nothing was retried).
            deadline = loop.time() + 10
            try:
                while client.reporter.stats.retries < 1:
                    assert loop.time() < deadline, "the first attempt never timed out"
                    assert not flush.done(), "acknowledged while the server was stopped"
                    await asyncio.sleep(0.01)
            finally:
                os.kill(pid, signal.SIGCONT)
            sent = await flush
            assert len(sent) == 1 and sent[0].attempts >= 2, sent
            assert sent[0].duplicate, "the stream had stored the first attempt under the same id"
            assert client.reporter.stats.retries >= 1
            subject = wire.outcome_subject("fusebox", breaker_name, "py-retry")
            info = await client.js.stream_info(wire.outcome_stream("fusebox"), subjects_filter=subject)
            assert info.state.subjects == {subject: 1}, info.state.subjects
        finally:
            os.kill(pid, signal.SIGCONT)
            await client.close()

    asyncio.run(go())
