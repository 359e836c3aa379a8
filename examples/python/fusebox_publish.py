#!/usr/bin/env python3
"""Report call outcomes to a Fusebox fleet from the command line, with ``fusebox-client``.

This file owns the command line only: its options, its output lines and exit status. How
outcomes are encoded, batched, given message ids, retried and attributed (``applied``) and
how the connection is configured (``NATS_*``) is the package's (clients/python/README.md)::

    python fusebox_publish.py --url nats://127.0.0.1:4222 --breaker payments --node py1 \\
        --failures 10 --successes 2

Prints one JSON line per message the stream acknowledged,
``{"stream": "FUSEBOX_OUTCOMES", "seq": 7, "duplicate": false, "calls": 12, "applied": null}``.
Exit status: 0 when the stream acknowledged every message, 1 when a publish was refused or
never acknowledged or NATS cannot be reached (the reason goes to stderr), 2 for bad
arguments or connection settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import List, Optional, Sequence

import fusebox_client as fb

PROG = "fusebox_publish"
#: Each option and the outcome it counts, in the order the calls are reported.
OUTCOME_OPTIONS = (
    ("successes", "success", "calls that succeeded in time"),
    ("failures", "failure", "calls that failed"),
    ("slow", "slow", "calls that succeeded slowly"),
    ("ignored", "ignored", "calls whose errors do not count"),
    ("rejected", "rejected", "calls this app's own breaker held back"),
)


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Report call outcomes of a breaker to Fusebox (JSON over JetStream).")
    parser.add_argument("--url", help="NATS URL(s), comma-separated (default: NATS_URL, else nats://127.0.0.1:4222)")
    parser.add_argument("--user", help="NATS user (with --password; default: NATS_USER)")
    parser.add_argument("--password", help="NATS password (default: NATS_PASSWORD)")
    parser.add_argument("--prefix", default="fusebox", help="Fusebox prefix (default: fusebox)")
    parser.add_argument("--breaker", required=True, help="breaker name")
    parser.add_argument("--node", required=True, help="this app's node id (the last subject token)")
    for option, _, text in OUTCOME_OPTIONS:
        parser.add_argument(f"--{option}", type=int, default=0, metavar="N", help=f"number of {text}")
    parser.add_argument(
        "--applied", metavar="TERM:SEQ", help="the decision the calls ran under (default: none, or with --follow the current one)"
    )
    parser.add_argument(
        "--follow", action="store_true", help="read the current decision from the state bucket and report it as applied"
    )
    parser.add_argument("--ack-timeout", type=float, default=2.0, help="seconds to wait for each ack (default: 2)")
    args = parser.parse_args(argv)
    for option, _, _ in OUTCOME_OPTIONS:
        if getattr(args, option) < 0:
            parser.error(f"--{option} must not be negative")
    if args.applied is not None:
        term, _, seq = args.applied.partition(":")
        if not (term.isdigit() and seq.isdigit()):
            parser.error(f"--applied {args.applied!r} is not TERM:SEQ")
        args.applied = (int(term), int(seq))
    return args


def settings(args: argparse.Namespace) -> fb.ConnectSettings:
    """The ``NATS_*`` environment's connection settings, ``--user``/``--password`` first."""
    given = {name: value for name, value in (("user", args.user), ("password", args.password)) if value}
    return fb.ConnectSettings.from_env().replace(**given)


def print_acks(sent: List[fb.Sent]) -> None:
    """One JSON line per acknowledged message."""
    for s in sent:
        applied = {"term": s.applied[0], "seq": s.applied[1]} if s.applied is not None else None
        line = {"stream": s.stream, "seq": s.seq, "duplicate": s.duplicate, "calls": s.calls, "applied": applied}
        print(json.dumps(line), flush=True)


async def _run(args: argparse.Namespace) -> int:
    try:
        # No background flusher: the one flush below is this program's whole report.
        reporting = fb.ReporterSettings(flush_interval=None, ack_timeout=args.ack_timeout)
        client = await fb.connect(args.url, node=args.node, prefix=args.prefix, settings=settings(args), reporting=reporting)
    except (fb.ConnectSettingsError, fb.InvalidInput) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except fb.ConnectError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    try:
        applied = args.applied
        if args.follow and applied is None:
            applied = (await client.breaker(args.breaker)).local.applied_id()
        for option, outcome, _ in OUTCOME_OPTIONS:
            count = getattr(args, option)
            if count > 0:
                client.reporter.record(args.breaker, outcome, count, applied)
        try:
            sent = await client.flush()
        except fb.PublishError as error:
            print_acks(error.sent)
            print(f"{PROG}: {error}", file=sys.stderr)
            return 1
        print_acks(sent)
        if not sent:
            print(f"{PROG}: nothing to report (no outcome counts given)", file=sys.stderr)
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
    return asyncio.run(_run(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
