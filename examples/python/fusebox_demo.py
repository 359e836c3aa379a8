#!/usr/bin/env python3
"""A simulated Python service in a Fusebox fleet, on ``fusebox-client``: it trips the
breaker, is granted probes and closes it again.

It calls a pretend dependency every ``--interval`` seconds through ``breaker.acquire()``.
The dependency fails until the fleet's breaker opens and works from then on. So the
service trips the breaker with its failures; while the breaker is open the package
reports the calls it holds back as ``rejected`` (how the decider learns this node wants
probes); in half-open it admits only the probes granted to this node, whose successes
close the breaker. This file owns the simulation and its output; every rule (admission,
grants, attribution, reporting) is the package's (clients/python/README.md)::

    python fusebox_demo.py --url nats://127.0.0.1:4222 --breaker payments --node py1

Prints one JSON line per decision applied (state, id, reason, grants) and exits 0 once the
breaker is closed again by successful probes; 1 on timeout (``--timeout``, default 30 s) or
when NATS cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Optional, Sequence

import fusebox_client as fb

PROG = "fusebox_demo"


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A simulated service that trips and recovers a Fusebox breaker.")
    parser.add_argument("--url", help="NATS URL(s), comma-separated (default: NATS_URL, else nats://127.0.0.1:4222)")
    parser.add_argument("--user", help="NATS user (with --password; default: NATS_USER)")
    parser.add_argument("--password", help="NATS password (default: NATS_PASSWORD)")
    parser.add_argument("--prefix", default="fusebox", help="Fusebox prefix (default: fusebox)")
    parser.add_argument("--breaker", required=True, help="breaker name")
    parser.add_argument("--node", required=True, help="this service's node id")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between calls")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> fb.ConnectSettings:
    """The ``NATS_*`` environment's connection settings, ``--user``/``--password`` first."""
    given = {name: value for name, value in (("user", args.user), ("password", args.password)) if value}
    return fb.ConnectSettings.from_env().replace(**given)


def print_decision(decision: fb.Decision) -> None:
    """One JSON line per decision applied."""
    term, seq = decision.id
    line = {"state": decision.state, "term": term, "seq": seq, "reason": decision.reason, "grants": dict(decision.grants)}
    print(json.dumps(line), flush=True)


async def _run(args: argparse.Namespace) -> int:
    try:
        reporting = fb.ReporterSettings(flush_interval=max(args.interval, 0.005))
        client = await fb.connect(args.url, node=args.node, prefix=args.prefix, settings=settings(args), reporting=reporting)
    except fb.FuseboxError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    try:
        breaker = await client.breaker(args.breaker)
        breaker.on_decision(print_decision)
        healthy = False
        while loop.time() < deadline:
            decision = breaker.decision
            if decision is not None and decision.state == "open":
                healthy = True  # the outage is over by the time the fleet has reacted
            if decision is not None and decision.reason == "probes_succeeded":
                return 0
            try:
                permit = breaker.acquire()
            except fb.Rejected:
                pass  # reported as rejected by the package: this node's demand for probes
            else:
                # A probe's result is sent at once; the rest every --interval.
                if healthy:
                    permit.success()
                else:
                    permit.failure()
            await asyncio.sleep(args.interval)
        print(f"{PROG}: not closed by probes within {args.timeout}s", file=sys.stderr)
        return 1
    except fb.FuseboxError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    finally:
        await client.close(timeout=2.0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command-line entry point; returns the exit status."""
    return asyncio.run(_run(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
