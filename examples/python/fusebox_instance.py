#!/usr/bin/env python3
"""The Python instance of the local cluster demo (``make demo``), on ``fusebox-client``.

A service written in Python taking part in a Fusebox fleet: it calls the demo's HTTP
dependency ``--rate`` times a second through ``breaker.acquire()`` (the fleet's decision,
enforced by the package, probes only as granted to its node id; the calls it holds back are
reported as ``rejected``, so the decider grants it probes in half-open), and tells the demo's
orchestrator what it sees, one JSON object per line on stdout, in the same shape as the Rust
``service-instance``::

    {"kind": "status", "node": "py1", "state": "Closed", "ok": 10, "failed": 0,
     "rejected": 0, "probes": 0, "deciding": false, "term": 3}
    {"kind": "applied", "node": "py1", "term": 3, "seq": 2, "to": "Open", "at_ms": 1700000000000}

This file owns those lines, the HTTP calls and the demo's counters; the rules are the
package's (clients/python/README.md). It stops when its stdin closes (the orchestrator is
gone) or on SIGTERM/SIGINT.

    python fusebox_instance.py --url nats://127.0.0.1:4222 --node py1 --breaker inventory \\
        --dependency 127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from typing import Any, Dict, Optional, Sequence

import fusebox_client as fb
from fusebox_client import DecisionId

# How long to wait for a Fusebox node to create the state bucket.
BUCKET_WAIT_S = 30.0

# The Rust side prints state labels in their Debug form.
LABELS = {
    "closed": "Closed",
    "ramping": "Ramping",
    "open": "Open",
    "half_open": "HalfOpen",
    "forced_open": "ForcedOpen",
    "forced_closed": "ForcedClosed",
    "disabled": "Disabled",
    "metrics_only": "MetricsOnly",
}


def emit(line: Dict[str, Any]) -> None:
    """Writes one line for the orchestrator."""
    print(json.dumps(line), flush=True)


def request_line(node: str, probe_phase: Optional[DecisionId]) -> bytes:
    """The request: a probe names the half-open phase it is spent in (``/probe?phase=T.S``),
    so the demo counts it towards that round whatever the orchestrator saw when it arrived;
    every request names its node."""
    if probe_phase is None:
        return f"GET /?node={node} HTTP/1.0\r\n\r\n".encode()
    term, seq = probe_phase
    return f"GET /probe?phase={term}.{seq}&node={node} HTTP/1.0\r\n\r\n".encode()


async def call(host: str, port: int, timeout: float, node: str, probe_phase: Optional[DecisionId]) -> bool:
    """One GET against the dependency, a probe of ``probe_phase`` or (``None``) an ordinary
    call: True for a 2xx answer within ``timeout``."""

    async def attempt() -> bool:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request_line(node, probe_phase))
            await writer.drain()
            response = await reader.read()
            return response.startswith(b"HTTP/1.0 2")
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(attempt(), timeout)
    except (OSError, asyncio.TimeoutError):
        return False


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The Python instance of the Fusebox cluster demo.")
    parser.add_argument("--url", required=True, help="NATS URL(s), comma-separated")
    parser.add_argument("--node", default="py1", help="this instance's node id")
    parser.add_argument("--breaker", default="inventory", help="breaker name")
    parser.add_argument("--dependency", required=True, help="host:port of the demo's dependency")
    parser.add_argument("--rate", type=float, default=50.0, help="calls per second")
    return parser.parse_args(argv)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    # A thread: reading stdin without blocking the loop, portable across pipes and ttys.
    def read() -> None:
        while sys.stdin.buffer.read1(64):  # type: ignore[attr-defined]
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read, daemon=True).start()


async def _run(args: argparse.Namespace) -> int:
    host, _, port = args.dependency.rpartition(":")
    client = await fb.connect(
        args.url, node=args.node, settings=fb.ConnectSettings.from_env(), reporting=fb.ReporterSettings(flush_interval=0.02)
    )
    counts = {"ok": 0, "failed": 0, "rejected": 0, "probes": 0}
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    _watch_stdin(loop, stop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The Rust instances create the bucket; this one may well start first.
    breaker = await client.breaker(args.breaker, provision_timeout=BUCKET_WAIT_S)

    def on_decision(decision: fb.Decision) -> None:
        term, seq = decision.id
        to = LABELS.get(decision.state, decision.state)
        emit({"kind": "applied", "node": args.node, "term": term, "seq": seq, "to": to, "at_ms": int(time.time() * 1000)})

    breaker.on_decision(on_decision)

    async def calls() -> None:
        while True:
            await asyncio.sleep(1.0 / max(args.rate, 1.0))
            try:
                permit = breaker.acquire()
            except fb.Rejected:
                counts["rejected"] += 1  # reported as rejected by the package
                continue
            probe_phase = permit.decision.phase if permit.probe and permit.decision is not None else None
            if probe_phase is not None:
                counts["probes"] += 1
            try:
                ok = await call(host, int(port), 0.5, args.node, probe_phase)
            except BaseException:
                permit.release()  # cancelled: no outcome, a probe's slot back
                raise
            if ok:
                counts["ok"] += 1
                permit.success()
            else:
                counts["failed"] += 1
                permit.failure()

    async def status() -> None:
        while True:
            decision = breaker.decision
            state = LABELS.get(decision.state, decision.state) if decision is not None else "starting"
            term = decision.id[0] if decision is not None else 0
            emit({"kind": "status", "node": args.node, "state": state, "deciding": False, "term": term, **counts})
            await asyncio.sleep(0.25)

    tasks = [asyncio.ensure_future(t) for t in (calls(), status())]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close(timeout=2.0)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command-line entry point; returns the exit status."""
    return asyncio.run(_run(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
