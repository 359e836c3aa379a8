#!/usr/bin/env python3
"""A simulated Python service in a Fusebox fleet: follow, enforce, report, recover.

It calls a pretend dependency every ``--interval`` seconds, asking ``LocalBreaker.allow()``
first, and reports every call through an ``OutcomeReporter`` that stamps the decision in force
(``applied``). The dependency fails until the fleet's breaker opens and works from then on.
So the service trips the breaker with its failures, reports the calls it holds back while the
breaker is open (``rejected``: that is how the decider learns this node wants probes), gets
probes granted in half-open, and its successful probes close the breaker again.

    python fusebox_demo.py --url nats://127.0.0.1:4222 --breaker payments --node py1

Prints one JSON line per decision applied (state, id, reason, grants) and exits 0 once the
breaker is closed again by successful probes; 1 on timeout (``--timeout``, default 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Optional, Sequence

import fusebox_connect
from fusebox_follow import Decision, DecisionFollower, LocalBreaker
from fusebox_publish import OutcomePublisher, OutcomeReporter, PublishRefused


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A simulated service that trips and recovers a Fusebox breaker.")
    parser.add_argument("--url", help="NATS URL(s), comma-separated (default: NATS_URL, else nats://127.0.0.1:4222)")
    parser.add_argument("--user", help="NATS user (with --password)")
    parser.add_argument("--password", help="NATS password")
    parser.add_argument("--prefix", default="fusebox", help="Fusebox prefix (default: fusebox)")
    parser.add_argument("--breaker", required=True, help="breaker name")
    parser.add_argument("--node", required=True, help="this service's node id")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between calls")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> int:
    servers = fusebox_connect.servers(args.url)
    publisher = await OutcomePublisher.connect(
        servers, args.node, user=args.user, password=args.password, prefix=args.prefix
    )

    def on_apply(decision: Decision, breaker: LocalBreaker) -> None:
        term, seq = decision.id
        line = {"state": decision.state, "term": term, "seq": seq, "reason": decision.reason}
        line["grants"] = dict(decision.grants)
        print(json.dumps(line), flush=True)

    follower = DecisionFollower(publisher.nc, args.breaker, args.node, prefix=args.prefix, on_apply=on_apply)
    reporter = OutcomeReporter(publisher, applied_source=follower)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    try:
        await follower.start()
        await follower.wait_ready(timeout=5)
        healthy = False
        while loop.time() < deadline:
            decision = follower.breaker.decision
            if decision is not None and decision.state == "open":
                healthy = True  # the outage is over by the time the fleet has reacted
            if decision is not None and decision.reason == "probes_succeeded":
                return 0
            if follower.allow():
                if healthy:
                    reporter.success(args.breaker)
                else:
                    reporter.failure(args.breaker)
            else:
                reporter.rejected(args.breaker)
            try:
                await reporter.flush()
            except PublishRefused as error:
                print(f"fusebox_demo: {error}", file=sys.stderr)
            await asyncio.sleep(args.interval)
        print(f"fusebox_demo: not closed by probes within {args.timeout}s", file=sys.stderr)
        return 1
    finally:
        await follower.stop()
        await publisher.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command-line entry point; returns the exit status."""
    return asyncio.run(_run(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
