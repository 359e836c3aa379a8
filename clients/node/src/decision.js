// Decisions as the state bucket holds them (docs/wire-format.md, "Decisions"): reading one
// the way the Rust decoder does, and DecisionState, one breaker's decision in force and the
// admission rules a Rust node's hot path applies for the fleet state. Pure: no NATS here.

import { FuseboxError } from "./errors.js";
import { VERSION, isName } from "./wire.js";

/** Every `state.state` of version 1. */
export const STATES = Object.freeze([
  "closed",
  "ramping",
  "open",
  "half_open",
  "forced_open",
  "forced_closed",
  "disabled",
  "metrics_only",
]);
/** States in which every call goes ahead; `open` and `forced_open` reject every call. */
export const ALLOWING = Object.freeze(["closed", "forced_closed", "disabled", "metrics_only"]);

/** A bucket value this package cannot use; `kind` says why (`malformed`, `unsupported_version`, `wrong_breaker`). */
export class DecisionError extends FuseboxError {
  constructor(kind, detail) {
    super(`${kind}: ${detail}`);
    this.kind = kind;
  }
}

/** Orders decision ids `{term, seq}` lexicographically: negative, 0 or positive. */
export function compareIds(a, b) {
  return a.term !== b.term ? a.term - b.term : a.seq - b.seq;
}

function unsigned(value, what) {
  // Above 2^53 - 1 a JSON number is not exact in JavaScript; Rust nodes refuse such terms too.
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new DecisionError("malformed", `${what} is not an unsigned integer: ${JSON.stringify(value)}`);
  }
  return value;
}

function decisionId(value, what) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new DecisionError("malformed", `${what} is not {term, seq}: ${JSON.stringify(value)}`);
  }
  return Object.freeze({ term: unsigned(value.term, `${what}.term`), seq: unsigned(value.seq, `${what}.seq`) });
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads a decision stored under key `breaker` (bytes or a string); throws DecisionError.
 * Like the Rust decoder: the version first (another version is `unsupported_version`
 * whatever else the value holds), unknown fields ignored, `breaker` equal to the key.
 */
export function parseDecision(data, breaker) {
  let value;
  try {
    value = JSON.parse(typeof data === "string" ? data : decoder.decode(data));
  } catch (error) {
    throw new DecisionError("malformed", `not JSON: ${error.message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new DecisionError("malformed", "not a JSON object");
  }
  if (!Number.isInteger(value.version)) {
    throw new DecisionError("malformed", `version is not an integer: ${JSON.stringify(value.version)}`);
  }
  if (value.version !== VERSION) {
    throw new DecisionError("unsupported_version", `version ${value.version}`);
  }
  if (value.breaker !== breaker) {
    throw new DecisionError("wrong_breaker", `${JSON.stringify(value.breaker)} under key ${JSON.stringify(breaker)}`);
  }
  const state = value.state;
  if (state === null || typeof state !== "object" || !STATES.includes(state.state)) {
    throw new DecisionError("malformed", `unknown state: ${JSON.stringify(state)}`);
  }
  const grants = new Map();
  let admitPerMille = 1000;
  if (state.state === "half_open") {
    if (!Array.isArray(state.grants)) {
      throw new DecisionError("malformed", `half_open without grants: ${JSON.stringify(state)}`);
    }
    for (const grant of state.grants) {
      if (grant === null || typeof grant !== "object" || !isName(grant.node)) {
        throw new DecisionError("malformed", `bad grant: ${JSON.stringify(grant)}`);
      }
      grants.set(grant.node, unsigned(grant.probes, "grant.probes"));
    }
  } else if (state.state === "ramping") {
    admitPerMille = unsigned(state.admit_per_mille, "admit_per_mille");
    if (admitPerMille > 1000) {
      throw new DecisionError("malformed", `admit_per_mille ${admitPerMille} is over 1000`);
    }
  }
  const kind = value.reason !== null && typeof value.reason === "object" ? value.reason.kind : undefined;
  return Object.freeze({
    breaker,
    id: decisionId(value.id, "id"),
    phase: decisionId(value.phase, "phase"),
    state: state.state,
    grants,
    admitPerMille,
    reason: typeof kind === "string" ? kind : "",
    raw: value,
  });
}

/**
 * One breaker's decision in force, and whether a call may go ahead:
 *
 * - `closed`, `forced_closed`, `disabled`, `metrics_only`, or no decision yet: yes;
 * - `open`, `forced_open`: no (the decider, not a timer here, ends an open state);
 * - `half_open`: yes for as many calls as the decision grants this node (`grants`, by node
 *   id), counted across every decision of the same round (same `phase`: a grant is the
 *   round's total, so a later decision of the round does not re-arm it); no after that, and
 *   no at all for a node without a grant;
 * - `ramping`: exactly `admit_per_mille` calls in every thousand.
 *
 * A decision is applied only if its id is newer than the one in force, so a stale or
 * replayed value never goes back in time. A value that cannot be read leaves the last good
 * decision in force and is counted in `refused` / `refusals`.
 */
export class DecisionState {
  constructor(breaker, node) {
    if (!isName(breaker) || !isName(node)) {
      throw new FuseboxError("a breaker name and a node id are 1 to 64 bytes of [A-Za-z0-9_-]");
    }
    this.breaker = breaker;
    this.node = node;
    /** The decision in force, or null before the first. */
    this.decision = null;
    /** Values refused, in all and by kind. */
    this.refused = 0;
    this.refusals = {};
    this._phase = null;
    this._admitted = 0;
  }

  /** The `{term, seq}` in force (what to report as `applied`), or null. */
  appliedId() {
    return this.decision === null ? null : this.decision.id;
  }

  /** Reads a stored value and applies it if newer; returns the decision if it was applied. */
  offer(data) {
    let decision;
    try {
      decision = parseDecision(data, this.breaker);
    } catch (error) {
      if (!(error instanceof DecisionError)) {
        throw error;
      }
      this.refuse(error.kind);
      return null;
    }
    return this.apply(decision) ? decision : null;
  }

  /** Counts a value that could not be used (the last good decision stays in force). */
  refuse(kind) {
    this.refused += 1;
    this.lastRefusal = kind;
    this.refusals[kind] = (this.refusals[kind] ?? 0) + 1;
  }

  /** Puts `decision` in force if it is newer than the current one; whether it did. */
  apply(decision) {
    if (this.decision !== null && compareIds(decision.id, this.decision.id) <= 0) {
      return false;
    }
    this.decision = decision;
    if (this._phase === null || compareIds(decision.phase, this._phase) !== 0) {
      this._phase = decision.phase;
      this._admitted = 0;
    }
    return true;
  }

  /** The probes this node has left in the current half-open round (0 outside one). */
  probesLeft() {
    const d = this.decision;
    if (d === null || d.state !== "half_open") {
      return 0;
    }
    return Math.max(0, (d.grants.get(this.node) ?? 0) - this._admitted);
  }

  _verdict(admitted) {
    const d = this.decision;
    if (d === null || ALLOWING.includes(d.state)) {
      return null;
    }
    if (d.state === "half_open") {
      const granted = d.grants.get(this.node) ?? 0;
      if (granted === 0) {
        return "no_grant";
      }
      return admitted < granted ? null : "probes_used";
    }
    if (d.state === "ramping") {
      const position = admitted % 1000;
      const perMille = d.admitPerMille;
      // Call n of a thousand goes ahead when it raises floor(n * per_mille / 1000): spread
      // out, and exactly per_mille of every thousand.
      return Math.floor(((position + 1) * perMille) / 1000) > Math.floor((position * perMille) / 1000) ? null : "ramping";
    }
    return d.state; // open, forced_open
  }

  /**
   * Decides one call now: `{admitted, probe, why, decision}`. An admission in half-open
   * uses up one of this node's probes (`probe: true`); in ramping every call moves the
   * ramp's position.
   */
  admit() {
    const d = this.decision;
    const why = this._verdict(this._admitted);
    if (d !== null && (d.state === "ramping" || (d.state === "half_open" && why === null))) {
      this._admitted += 1;
    }
    return { admitted: why === null, probe: why === null && d !== null && d.state === "half_open", why, decision: d };
  }

  /** What admit() would answer now, without using anything up. */
  wouldAdmit() {
    return this._verdict(this._admitted) === null;
  }
}
