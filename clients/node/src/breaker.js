// Breaker and Permit: the fleet's decision for one breaker enforced in this process —
// allow() hands out permits or throws BreakerRejectedError (and reports the rejection as
// demand), call()/wrap() run async functions under a permit and report their outcome.

import { BreakerRejectedError, ValidationError } from "./errors.js";
import { OUTCOMES } from "./wire.js";

/** The default classifier: a thrown error is a failure, anything else a success. */
export function defaultClassify({ ok }) {
  return ok ? "success" : "failure";
}

/**
 * Leave to go ahead with one call, admitted under `decisionId` (null: no decision yet).
 * `probe` is true for a half-open probe, whose result the decider waits for: report it
 * (`success()`, `failure()`, `slow()`, `ignored()`, or `finish()`), it goes out at once.
 * A permit reports once; later reports return false.
 */
export class Permit {
  constructor(breaker, probe, decisionId) {
    this.breaker = breaker;
    this.probe = probe;
    this.decisionId = decisionId;
    this.startedAt = performance.now();
    this.done = false;
  }

  /** Reports `outcome` (one of success, failure, slow, ignored); whether it was the first report. */
  report(outcome) {
    if (outcome === "rejected" || !OUTCOMES.includes(outcome)) {
      throw new ValidationError(`a permit reports success, failure, slow or ignored, not ${JSON.stringify(outcome)}`);
    }
    if (this.done) {
      return false;
    }
    this.done = true;
    this.breaker._outcome(this, outcome);
    return true;
  }

  success() {
    return this.report("success");
  }

  failure() {
    return this.report("failure");
  }

  slow() {
    return this.report("slow");
  }

  ignored() {
    return this.report("ignored");
  }

  /**
   * Reports the call's end through the breaker's classifier: `finish()` for a success,
   * `finish({error})` for a failure, `finish({result})`; a success that took at least the
   * breaker's `slowMs` is reported as slow. Returns the outcome reported (or null if the
   * permit had reported already).
   */
  finish({ error, result, ok = error === undefined } = {}) {
    if (this.done) {
      return null;
    }
    const outcome = this.breaker._classify({ ok, error, result, durationMs: performance.now() - this.startedAt });
    this.report(outcome);
    return outcome;
  }
}

/**
 * One breaker as this service sees it: the decision in force (`state`, `decision`) and
 * `allow()`, `call()`, `wrap()`. Get it from `FuseboxClient.breaker(name)` or
 * `Follower.breaker(name, {reporter})`.
 *
 * Options: `slowMs` (a success at least this long is reported as `slow`), `classify`
 * (`({ok, error, result, durationMs}) => "success" | "failure" | "slow" | "ignored"`).
 */
export class Breaker {
  constructor(name, decisions, reporter = null, options = {}) {
    this.name = name;
    this.decisions = decisions;
    this.reporter = reporter;
    if (options.slowMs !== undefined && !(Number.isFinite(options.slowMs) && options.slowMs > 0)) {
      throw new ValidationError(`slowMs must be a positive number of milliseconds, not ${options.slowMs}`);
    }
    if (options.classify !== undefined && typeof options.classify !== "function") {
      throw new ValidationError("classify must be a function");
    }
    this.slowMs = options.slowMs;
    this.classify = options.classify ?? defaultClassify;
    /** Calls let through, probes among them, calls rejected, classifier errors. */
    this.counters = { admitted: 0, probes: 0, rejected: 0, classifyErrors: 0 };
  }

  /** The decision in force (see decision.js), or null before the first. */
  get decision() {
    return this.decisions.decision;
  }

  /** The state in force (`closed` before any decision). */
  get state() {
    return this.decisions.decision?.state ?? "closed";
  }

  /** The probes this node may still start in the current half-open round. */
  get probesLeft() {
    return this.decisions.probesLeft();
  }

  /**
   * Leave for one call now: a Permit, or BreakerRejectedError (carrying the state) if the
   * fleet's decision holds it back; a rejection is reported as `rejected` (demand: it is
   * how the decider learns this node wants probes).
   */
  allow() {
    const verdict = this.decisions.admit();
    const id = verdict.decision?.id ?? null;
    if (!verdict.admitted) {
      this.counters.rejected += 1;
      this.reporter?.record(this.name, "rejected", 1, id);
      throw new BreakerRejectedError(this.name, verdict.decision.state, verdict.why, id);
    }
    this.counters.admitted += 1;
    if (verdict.probe) {
      this.counters.probes += 1;
    }
    return new Permit(this, verdict.probe, id);
  }

  /** Runs `fn(...args)` under a permit and reports how it ended; rejects like allow(). */
  async call(fn, ...args) {
    const permit = this.allow();
    let result;
    try {
      result = await fn(...args);
    } catch (error) {
      permit.finish({ ok: false, error });
      throw error;
    }
    permit.finish({ ok: true, result });
    return result;
  }

  /** `fn` guarded by this breaker: `(...args) => this.call(fn, ...args)`. */
  wrap(fn) {
    if (typeof fn !== "function") {
      throw new ValidationError("wrap takes a function");
    }
    return (...args) => this.call(fn, ...args);
  }

  _classify(ended) {
    let outcome;
    try {
      outcome = this.classify(ended);
    } catch {
      outcome = undefined;
    }
    if (outcome === "rejected" || !OUTCOMES.includes(outcome)) {
      // A classifier that throws or answers nonsense: count it, and count the call against the dependency only if it threw.
      this.counters.classifyErrors += 1;
      outcome = ended.ok ? "success" : "failure";
    }
    if (outcome === "success" && this.slowMs !== undefined && ended.durationMs >= this.slowMs) {
      outcome = "slow";
    }
    return outcome;
  }

  _outcome(permit, outcome) {
    if (this.reporter === null) {
      return;
    }
    this.reporter.record(this.name, outcome, 1, permit.decisionId);
    if (permit.probe) {
      // The round closes only on results: no waiting for the next tick.
      this.reporter.flushSoon();
    }
  }
}
