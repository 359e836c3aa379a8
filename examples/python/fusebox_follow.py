#!/usr/bin/env python3
"""Print the decisions a Python node applies for a Fusebox breaker, with ``fusebox-client``.

This file owns the command line only: its options, its output lines and exit status. How a
decision is read, checked and ordered (``(term, seq)``), and what ``allow`` answers under it
(probes as granted, ramping), is the package's (clients/python/README.md)::

    python fusebox_follow.py --url nats://127.0.0.1:4222 --breaker payments --node py1 \\
        --until open --timeout 30

Prints one JSON line per decision applied, the one in force first,
``{"state": "open", "term": 3, "seq": 2, "allow": false, "reason": "tripped"}``, where
``allow`` is what ``allow()`` would answer next. Exit status: 0 once a decision with an
``--until`` state is applied (or at ``--timeout`` without ``--until``), 1 on timeout or when
NATS or the breaker's bucket cannot be reached, 2 for bad arguments or connection settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from typing import Optional, Sequence

import fusebox_client as fb
from fusebox_client.wire import STATES

PROG = "fusebox_follow"


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Follow a Fusebox breaker's decisions and print each one applied.")
    parser.add_argument("--url", help="NATS URL(s), comma-separated (default: NATS_URL, else nats://127.0.0.1:4222)")
    parser.add_argument("--user", help="NATS user (with --password; default: NATS_USER)")
    parser.add_argument("--password", help="NATS password (default: NATS_PASSWORD)")
    parser.add_argument("--prefix", default="fusebox", help="Fusebox prefix (default: fusebox)")
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
    return args


def settings(args: argparse.Namespace) -> fb.ConnectSettings:
    """The ``NATS_*`` environment's connection settings, ``--user``/``--password`` first."""
    given = {name: value for name, value in (("user", args.user), ("password", args.password)) if value}
    return fb.ConnectSettings.from_env().replace(**given)


async def _run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout if args.timeout is not None else math.inf
    try:
        client = await fb.connect(args.url, node=args.node, prefix=args.prefix, settings=settings(args))
    except (fb.ConnectSettingsError, fb.InvalidInput) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except fb.ConnectError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    reached = asyncio.Event()
    try:
        # The bucket may not exist yet: a Fusebox node creates it when it first runs.
        breaker = await client.breaker(args.breaker, provision_timeout=max(0.0, deadline - loop.time()))

        def on_decision(decision: fb.Decision) -> None:
            term, seq = decision.id
            line = {"state": decision.state, "term": term, "seq": seq, "allow": breaker.would_allow(), "reason": decision.reason}
            print(json.dumps(line), flush=True)
            if decision.state in args.until:
                reached.set()

        breaker.on_decision(on_decision)
        remaining = deadline - loop.time()
        waiting = reached.wait() if args.until else asyncio.Event().wait()
        try:
            await asyncio.wait_for(waiting, None if math.isinf(remaining) else max(0.0, remaining))
        except asyncio.TimeoutError:
            if args.until:
                print(
                    f"{PROG}: timed out after {args.timeout}s waiting for {', '.join(sorted(args.until))}"
                    f" (in force: {breaker.state or 'none'}; unreadable values: {breaker.local.refused})",
                    file=sys.stderr,
                )
                return 1
        return 0
    except fb.InvalidInput as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except fb.FuseboxError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    finally:
        await client.close(timeout=2.0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command-line entry point; returns the exit status."""
    try:
        return asyncio.run(_run(_parse_args(argv)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
