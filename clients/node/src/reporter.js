// Reporter: counts a service's call outcomes and publishes them to the fleet through
// JetStream, one JSON batch per breaker (and applied decision) per flush, on
// `<prefix>.out.<breaker>.<node>`; with a bounded buffer that drops the oldest outcomes,
// bounded retries under the same Nats-Msg-Id, and counters for everything given up.

import { randomUUID } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import { headers as natsHeaders, errors as natsErrors } from "@nats-io/transport-node";

import { PublishError, ValidationError } from "./errors.js";
import {
  DEFAULT_PREFIX,
  MAX_EVENTS,
  addRun,
  batchMessage,
  checkApplied,
  checkCount,
  checkName,
  checkOutcome,
  layout,
} from "./wire.js";

const encoder = new TextEncoder();

export const REPORTER_DEFAULTS = Object.freeze({
  flushIntervalMs: 50,
  maxBufferedEvents: 100_000,
  ackTimeoutMs: 2_000,
  maxAttempts: 8,
  retryBackoffMs: 20,
  maxRetryBackoffMs: 1_000,
});

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Reports outcomes: `record()` (or `success()`, `failure()`, ...) counts them as calls
 * finish, and a timer (`flushIntervalMs`) or `flush()` sends what is waiting. Messages go
 * out one at a time, in the order they were sealed (the decider keeps a node's reports in
 * stream order); each has its own `Nats-Msg-Id` (`<node>:<incarnation>:<seq>`), kept when
 * it is retried after a lost acknowledgement so the stream stores it once.
 *
 * Bounded: at most `maxBufferedEvents` runs of outcomes wait (a run is consecutive calls of
 * one breaker with one outcome); past that the oldest waiting outcomes are dropped (whole
 * sealed messages first) and counted in `stats().dropped.overflow`. A message is tried at
 * most `maxAttempts` times (backoff from `retryBackoffMs` doubling to `maxRetryBackoffMs`);
 * then its calls count as `dropped.gaveUp`. A publish the server's permissions refuse is
 * not retried (`dropped.refused`). Failures go to `onError(PublishError)`.
 */
export class Reporter {
  constructor(nc, options = {}) {
    if (nc === null || typeof nc !== "object") {
      throw new ValidationError("Reporter needs a NATS connection");
    }
    this.node = checkName("node", options.node);
    this.layout = layout(options.prefix ?? DEFAULT_PREFIX);
    const o = { ...REPORTER_DEFAULTS, ...options };
    for (const name of Object.keys(REPORTER_DEFAULTS)) {
      if (!Number.isFinite(o[name]) || o[name] < (name === "flushIntervalMs" ? 0 : 1)) {
        throw new ValidationError(`${name} must be a positive number, not ${o[name]}`);
      }
    }
    this.options = o;
    this.nc = nc;
    this.js = options.js ?? jetstream(nc, options.jetstream ?? {});
    this.onError = options.onError ?? ((error) => console.error(`@fusebox/client: ${error.message}`));
    this.incarnation = randomUUID();
    this._seq = 0;
    // Waiting outcomes not yet in a message: key `${breaker}\0${term}:${seq}` -> entry.
    this._pending = new Map();
    // Sealed messages, oldest first; _outbox[0] may be in flight.
    this._outbox = [];
    this._inFlight = null;
    this._bufferedEvents = 0;
    this._sealed = 0;
    this._settled = 0;
    this._waiters = [];
    this._timer = null;
    this._pump = null;
    this._closed = false;
    this._stats = {
      recordedCalls: 0,
      messagesSent: 0,
      callsSent: 0,
      duplicates: 0,
      retries: 0,
      droppedMessages: 0,
      dropped: { overflow: 0, refused: 0, gaveUp: 0, closed: 0 },
    };
  }

  /** Counts `count` calls of `breaker` that ended with `outcome`, under decision `applied`. */
  record(breaker, outcome, count = 1, applied = null) {
    checkName("breaker", breaker);
    checkOutcome(outcome);
    checkCount(count);
    const id = checkApplied(applied);
    if (this._closed) {
      this._stats.dropped.closed += count;
      return;
    }
    const key = id === null ? `${breaker}\0` : `${breaker}\0${id.term}:${id.seq}`;
    let entry = this._pending.get(key);
    if (entry === undefined) {
      entry = { breaker, applied: id, events: [] };
      this._pending.set(key, entry);
    }
    this._bufferedEvents += addRun(entry.events, outcome, count);
    this._stats.recordedCalls += count;
    this._bound();
    this._schedule();
  }

  /** Calls that succeeded in time. */
  success(breaker, count = 1, applied = null) {
    this.record(breaker, "success", count, applied);
  }

  /** Calls that failed in a way that counts against the dependency. */
  failure(breaker, count = 1, applied = null) {
    this.record(breaker, "failure", count, applied);
  }

  /** Calls that succeeded but took at least the breaker's slow-call threshold. */
  slow(breaker, count = 1, applied = null) {
    this.record(breaker, "slow", count, applied);
  }

  /** Calls whose errors do not count against the dependency. */
  ignored(breaker, count = 1, applied = null) {
    this.record(breaker, "ignored", count, applied);
  }

  /** Calls this service's own breaker held back (demand for probes). */
  rejected(breaker, count = 1, applied = null) {
    this.record(breaker, "rejected", count, applied);
  }

  /** Seals what waits and sends it now rather than at the next tick (probe results). */
  flushSoon() {
    if (this._closed) {
      return;
    }
    this._seal();
    this._kick();
  }

  /**
   * Sends everything recorded so far; resolves once each of those messages was
   * acknowledged or given up (see `stats()`), without waiting for later records.
   */
  async flush() {
    this._seal();
    const target = this._sealed;
    this._kick();
    if (this._settled >= target) {
      return;
    }
    await new Promise((resolve) => this._waiters.push({ target, resolve }));
  }

  /** Flushes, then stops: later records are counted as `dropped.closed`. The connection stays open. */
  async close() {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    await this.flush();
    this._closed = true;
  }

  /**
   * The counters: calls recorded, waiting (`bufferedCalls`, `bufferedEvents`), sent
   * (`messagesSent`, `callsSent`, `duplicates`: messages the stream already had), `retries`,
   * and calls `dropped` by why (`overflow`, `refused`, `gaveUp`, `closed`) with
   * `droppedMessages`.
   */
  stats() {
    let bufferedCalls = 0;
    for (const entry of this._pending.values()) {
      for (const [, count] of entry.events) {
        bufferedCalls += count;
      }
    }
    for (const message of this._outbox) {
      bufferedCalls += message.calls;
    }
    return {
      ...this._stats,
      dropped: { ...this._stats.dropped },
      bufferedCalls,
      bufferedEvents: this._bufferedEvents,
    };
  }

  _schedule() {
    if (this._timer !== null || this._closed) {
      return;
    }
    this._timer = setTimeout(() => {
      this._timer = null;
      this._seal();
      this._kick();
    }, this.options.flushIntervalMs);
    this._timer.unref?.();
  }

  // Turns every pending entry into messages of at most MAX_EVENTS runs, in record order.
  _seal() {
    for (const entry of this._pending.values()) {
      for (let start = 0; start < entry.events.length; start += MAX_EVENTS) {
        const chunk = entry.events.slice(start, start + MAX_EVENTS);
        const message = batchMessage(entry.breaker, this.node, chunk, entry.applied);
        this._seq += 1;
        this._outbox.push({
          subject: this.layout.outcomeSubject(entry.breaker, this.node),
          message,
          payload: encoder.encode(JSON.stringify(message)),
          msgId: `${this.node}:${this.incarnation}:${this._seq}`,
          events: chunk.length,
          calls: chunk.reduce((sum, [, count]) => sum + count, 0),
        });
        this._sealed += 1;
      }
    }
    this._pending.clear();
  }

  // Drops the oldest waiting outcomes while more than maxBufferedEvents runs wait.
  _bound() {
    while (this._bufferedEvents > this.options.maxBufferedEvents) {
      const first = this._outbox.findIndex((m) => m !== this._inFlight);
      if (first !== -1) {
        const [message] = this._outbox.splice(first, 1);
        this._bufferedEvents -= message.events;
        this._stats.dropped.overflow += message.calls;
        this._stats.droppedMessages += 1;
        this._settle(1);
        continue;
      }
      const oldest = this._pending.entries().next();
      if (oldest.done) {
        break; // only the message in flight is left
      }
      const [key, entry] = oldest.value;
      const [, count] = entry.events.shift();
      this._bufferedEvents -= 1;
      this._stats.dropped.overflow += count;
      if (entry.events.length === 0) {
        this._pending.delete(key);
      }
    }
  }

  _settle(n) {
    this._settled += n;
    this._waiters = this._waiters.filter((w) => {
      if (this._settled >= w.target) {
        w.resolve();
        return false;
      }
      return true;
    });
  }

  _kick() {
    if (this._pump === null && this._outbox.length > 0) {
      this._pump = this._drain().finally(() => {
        this._pump = null;
        if (this._outbox.length > 0) {
          this._kick();
        }
      });
    }
  }

  async _drain() {
    while (this._outbox.length > 0) {
      const message = this._outbox[0];
      this._inFlight = message;
      try {
        await this._send(message);
      } finally {
        this._inFlight = null;
        // Overflow may have dropped older messages meanwhile, never the one in flight.
        const at = this._outbox.indexOf(message);
        if (at !== -1) {
          this._outbox.splice(at, 1);
          this._bufferedEvents -= message.events;
          this._settle(1);
        }
      }
    }
  }

  async _send(message) {
    const h = natsHeaders();
    h.set("Content-Type", "application/json");
    let delay = this.options.retryBackoffMs;
    let last = null;
    for (let attempt = 1; attempt <= this.options.maxAttempts; attempt += 1) {
      try {
        const ack = await this.js.publish(message.subject, message.payload, {
          msgID: message.msgId,
          headers: h,
          timeout: this.options.ackTimeoutMs,
        });
        this._stats.messagesSent += 1;
        this._stats.callsSent += message.calls;
        if (ack.duplicate) {
          this._stats.duplicates += 1;
        }
        return;
      } catch (error) {
        last = error;
        if (error instanceof natsErrors.PermissionViolationError) {
          this._stats.dropped.refused += message.calls;
          this._stats.droppedMessages += 1;
          this._report(
            new PublishError(`publish to ${message.subject} refused by the server: ${error.message}`, {
              subject: message.subject,
              calls: message.calls,
              byPermissions: true,
              cause: error,
            }),
          );
          return;
        }
        if (error instanceof natsErrors.ClosedConnectionError || this.nc.isClosed?.()) {
          break;
        }
      }
      if (attempt < this.options.maxAttempts) {
        this._stats.retries += 1;
        await sleep(delay);
        delay = Math.min(delay * 2, this.options.maxRetryBackoffMs);
      }
    }
    this._stats.dropped.gaveUp += message.calls;
    this._stats.droppedMessages += 1;
    this._report(
      new PublishError(
        `publish to ${message.subject} not acknowledged after ${this.options.maxAttempts} attempts ` +
          `(no stream on the subject, or no server): ${last?.message ?? last}`,
        { subject: message.subject, calls: message.calls, cause: last ?? undefined },
      ),
    );
  }

  _report(error) {
    try {
      this.onError(error);
    } catch {
      // An onError that throws must not stop the reporter.
    }
  }
}
