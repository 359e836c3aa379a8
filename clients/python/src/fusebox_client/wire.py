"""The wire formats fusebox-client speaks, as pure functions (no I/O): names and subjects,
the foreign outcome messages it writes, the decisions and breaker configs it reads.

The formats are specified in docs/wire-format.md ("Foreign outcomes (JSON)", "Decisions",
"Breaker configs"); this module is their one Python implementation, so the checks the
Rust decoder makes are made here before anything is sent (a message the decider cannot
decode is acknowledged by the stream all the same and dropped without a word to the
publisher).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import BadDecision, InvalidInput

__all__ = [
    "VERSION",
    "OUTCOMES",
    "STATES",
    "ALLOWING_STATES",
    "MAX_COUNT",
    "MAX_EVENTS",
    "MAX_PAYLOAD",
    "DEFAULT_PREFIX",
    "DecisionId",
    "Decision",
    "check_name",
    "check_prefix",
    "outcome_subject",
    "state_bucket",
    "config_bucket",
    "outcome_stream",
    "event",
    "outcome_message",
    "batch_message",
    "encode",
    "parse_decision",
    "parse_slow_threshold",
]

#: The foreign outcome format version written, and the decision version read.
VERSION = 1
#: Outcomes the decider understands.
OUTCOMES = ("success", "failure", "slow", "ignored", "rejected")
#: Every ``state.state`` of a version-1 decision.
STATES = ("closed", "ramping", "open", "half_open", "forced_open", "forced_closed", "disabled", "metrics_only")
#: States in which every call goes ahead.
ALLOWING_STATES = ("closed", "forced_closed", "disabled", "metrics_only")
#: Bounds of the decoder (``codec::Limits`` defaults).
MAX_COUNT = 1_000_000
MAX_EVENTS = 1024
MAX_PAYLOAD = 65_536
DEFAULT_PREFIX = "fusebox"
U64_MAX = 2**64 - 1
#: The largest term a decision may carry (2^53 - 1: every JSON reader holds it exactly).
MAX_TERM = 2**53 - 1

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

DecisionId = Tuple[int, int]
"""A decision's ``id`` as ``(term, seq)``: decisions are ordered by it, lexicographically."""


def check_name(what: str, value: str) -> str:
    """``value`` if it is a valid breaker name or node id (one subject token: 1 to 64 bytes
    of ``[A-Za-z0-9_-]``), else :class:`InvalidInput`."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(f"{what} {value!r} is not 1 to 64 bytes of [A-Za-z0-9_-]")
    return value


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is a valid Fusebox prefix (1 to 32 bytes of ``[a-z0-9_]``, starting
    with a letter), else :class:`InvalidInput`."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise InvalidInput(f"prefix {prefix!r} is not 1 to 32 bytes of [a-z0-9_] starting with a letter")
    return prefix


def outcome_subject(prefix: str, breaker: str, node: str) -> str:
    """``<prefix>.out.<breaker>.<node>``: where a node reports a breaker's outcomes."""
    return f"{check_prefix(prefix)}.out.{check_name('breaker', breaker)}.{check_name('node', node)}"


def outcome_stream(prefix: str) -> str:
    """The outcome stream, ``<PREFIX>_OUTCOMES``."""
    return f"{check_prefix(prefix).upper()}_OUTCOMES"


def state_bucket(prefix: str) -> str:
    """The KV bucket of decisions, ``<prefix>_state``."""
    return f"{check_prefix(prefix)}_state"


def config_bucket(prefix: str) -> str:
    """The KV bucket of breaker configs, ``<prefix>_config``."""
    return f"{check_prefix(prefix)}_config"


def _count(count: Any) -> int:
    # bool is an int in Python but not a JSON number; 3.0 is not an integer for the decoder.
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidInput(f"count {count!r} is not an integer from 1 to {MAX_COUNT}")
    return count


def check_outcome(outcome: str) -> str:
    """``outcome`` if it is one of :data:`OUTCOMES`, else :class:`InvalidInput`."""
    if outcome not in OUTCOMES:
        raise InvalidInput(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    return outcome


def event(outcome: str, count: int = 1) -> Dict[str, Any]:
    """One event of a batch: ``{"outcome": ..., "count": ...}`` (``count`` left out at 1)."""
    check_outcome(outcome)
    _count(count)
    return {"outcome": outcome} if count == 1 else {"outcome": outcome, "count": count}


def _header(breaker: str, node: Optional[str], applied: Optional[DecisionId]) -> Dict[str, Any]:
    message: Dict[str, Any] = {"version": VERSION, "breaker": check_name("breaker", breaker)}
    if node is not None:
        message["node"] = check_name("node", node)
    if applied is not None:
        term, seq = applied
        for part in (term, seq):
            if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part <= U64_MAX:
                raise InvalidInput(f"applied {applied!r} is not two unsigned 64-bit integers")
        message["applied"] = {"term": term, "seq": seq}
    return message


def outcome_message(
    breaker: str, node: Optional[str], outcome: str, count: int = 1, applied: Optional[DecisionId] = None
) -> Dict[str, Any]:
    """A single-event message: ``count`` calls with the same outcome."""
    message = _header(breaker, node, applied)
    message.update(event(outcome, count))
    return message


def batch_message(
    breaker: str,
    node: Optional[str],
    events: Sequence[Tuple[str, int]],
    applied: Optional[DecisionId] = None,
) -> Dict[str, Any]:
    """A batch of ``(outcome, count)`` events in the order the calls finished (the
    consecutive-failures rule reads runs in event order); 1 to 1024 events."""
    if not 1 <= len(events) <= MAX_EVENTS:
        raise InvalidInput(f"a batch has 1 to {MAX_EVENTS} events, not {len(events)}")
    message = _header(breaker, node, applied)
    message["events"] = [event(outcome, count) for outcome, count in events]
    return message


def encode(message: Mapping[str, Any]) -> bytes:
    """Compact JSON; :class:`InvalidInput` over the 64 KiB payload limit."""
    payload = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(payload) > MAX_PAYLOAD:
        raise InvalidInput(f"message of {len(payload)} bytes is over the {MAX_PAYLOAD}-byte limit")
    return payload


@dataclass(frozen=True)
class Decision:
    """What a follower needs of a decision; ``raw`` is the whole JSON object as read."""

    breaker: str
    id: DecisionId
    phase: DecisionId
    state: str
    grants: Mapping[str, int] = field(default_factory=dict)
    admit_per_mille: int = 1000
    reason: str = ""
    config_version: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict)

    def granted(self, node: str) -> int:
        """The probes this round grants ``node`` (0 outside half-open)."""
        return self.grants.get(node, 0) if self.state == "half_open" else 0


def _u64(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise BadDecision("malformed", f"{what} is not an unsigned 64-bit integer: {value!r}")
    return value


def _id(value: Any, what: str) -> DecisionId:
    if not isinstance(value, dict) or "term" not in value or "seq" not in value:
        raise BadDecision("malformed", f"{what} is not {{term, seq}}: {value!r}")
    return (_u64(value["term"], f"{what}.term"), _u64(value["seq"], f"{what}.seq"))


def parse_decision(data: Optional[bytes], breaker: str) -> Decision:
    """Reads the decision stored under key ``breaker``; :class:`BadDecision` if it cannot
    be used.

    As the Rust decoder: the version first (another one is ``unsupported_version`` whatever
    else the value holds), then the form; ``breaker`` must equal the key
    (``wrong_breaker``); unknown fields are ignored. As the machine on applying: ``seq``
    above 0, ``phase`` not after ``id``, the term at most 2^53 - 1, grants within the
    half-open budget.
    """
    if data is None:
        raise BadDecision("malformed", "no value")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadDecision("malformed", f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadDecision("malformed", "not a JSON object")
    version = value.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadDecision("malformed", f"version is not an integer: {version!r}")
    if version != VERSION:
        raise BadDecision("unsupported_version", f"version {version}")
    named = value.get("breaker")
    if not isinstance(named, str):
        raise BadDecision("malformed", f"breaker is not a string: {named!r}")
    if named != breaker:
        raise BadDecision("wrong_breaker", f"{named!r} under key {breaker!r}")
    decision_id = _id(value.get("id"), "id")
    phase = _id(value.get("phase"), "phase")
    if decision_id[1] == 0:
        raise BadDecision("malformed", "id.seq is 0")
    if decision_id[0] > MAX_TERM:
        raise BadDecision("malformed", f"id.term {decision_id[0]} is above 2^53 - 1")
    if phase > decision_id:
        raise BadDecision("malformed", f"phase {phase} is after id {decision_id}")
    state = value.get("state")
    if not isinstance(state, dict) or state.get("state") not in STATES:
        raise BadDecision("malformed", f"unknown state: {state!r}")
    grants: Dict[str, int] = {}
    admit = 1000
    if state["state"] == "half_open":
        listed = state.get("grants")
        budget = _u64(state.get("budget"), "budget")
        if not isinstance(listed, list):
            raise BadDecision("malformed", f"half_open without grants: {state!r}")
        for grant in listed:
            if not isinstance(grant, dict) or not isinstance(grant.get("node"), str):
                raise BadDecision("malformed", f"bad grant: {grant!r}")
            grants[grant["node"]] = _u64(grant.get("probes"), "grant.probes")
        if sum(grants.values()) > budget:
            raise BadDecision("malformed", f"grants {sum(grants.values())} over the budget {budget}")
    elif state["state"] == "ramping":
        admit = _u64(state.get("admit_per_mille"), "admit_per_mille")
        if admit > 1000:
            raise BadDecision("malformed", f"admit_per_mille {admit} is over 1000")
    reason = value.get("reason")
    kind = reason.get("kind") if isinstance(reason, dict) else None
    config_version = value.get("config_version", 0)
    return Decision(
        breaker=breaker,
        id=decision_id,
        phase=phase,
        state=state["state"],
        grants=grants,
        admit_per_mille=admit,
        reason=kind if isinstance(kind, str) else "",
        config_version=_u64(config_version, "config_version"),
        raw=value,
    )


def parse_slow_threshold(data: Optional[bytes]) -> Tuple[int, Optional[float]]:
    """The config version and slow-call threshold (seconds, ``None``: no threshold) of a
    breaker config envelope from the config bucket; :class:`BadDecision` (kind
    ``malformed_config``) if it cannot be read.

    Only these two fields are read; the registry validates the rest. A threshold given as
    humantime text (``"slow_call_threshold": "2s"``), which only Rust readers accept, is read
    as no threshold.
    """
    try:
        value = json.loads(data or b"")
    except (ValueError, UnicodeDecodeError) as error:
        raise BadDecision("malformed_config", f"not JSON: {error}") from None
    config = value.get("config") if isinstance(value, dict) else None
    if not isinstance(config, dict) or value.get("version") != VERSION:
        raise BadDecision("malformed_config", "not a version-1 config envelope")
    version = config.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise BadDecision("malformed_config", f"config version is not an integer: {version!r}")
    threshold = config.get("slow_call_threshold_ms")
    if threshold is None:
        return version, None
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise BadDecision("malformed_config", f"slow_call_threshold_ms is not an integer: {threshold!r}")
    return version, threshold / 1000.0


def runs(events: List[List[Any]], outcome: str, count: int) -> None:
    """Adds ``count`` calls of ``outcome`` to run-length encoded ``events`` in call order:
    a repeat of the last outcome extends its run (up to :data:`MAX_COUNT`)."""
    if events and events[-1][0] == outcome and events[-1][1] + count <= MAX_COUNT:
        events[-1][1] += count
    else:
        events.append([outcome, count])
