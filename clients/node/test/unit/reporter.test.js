// Unit tests of src/reporter.js against a fake JetStream: batching per breaker and applied
// decision, ids kept across retries, bounded retries, refusals, the bounded buffer.

import assert from "node:assert/strict";
import { test } from "node:test";
import { errors } from "@nats-io/transport-node";

import { Reporter } from "../../src/reporter.js";
import { MAX_EVENTS } from "../../src/wire.js";
import { validator } from "../schema.js";

const valid = validator();
const decoder = new TextDecoder();

/** A JetStream stand-in: `script(n)` says what publish number n (from 1) does. */
function fakeJs(script = () => "ack") {
  const calls = [];
  return {
    calls,
    publish: async (subject, payload, opts) => {
      calls.push({ subject, message: JSON.parse(decoder.decode(payload)), msgId: opts.msgID, type: opts.headers.get("Content-Type") });
      const what = script(calls.length);
      if (what === "timeout") {
        throw new errors.TimeoutError();
      }
      if (what === "refused") {
        throw new errors.PermissionViolationError("Permissions Violation for Publish to x", "publish", subject);
      }
      if (what instanceof Promise) {
        await what;
      }
      return { stream: "FUSEBOX_OUTCOMES", seq: calls.length, duplicate: false };
    },
  };
}

const nc = { isClosed: () => false };

function reporter(js, options = {}) {
  return new Reporter(nc, { node: "js-1", js, onError: () => {}, retryBackoffMs: 1, maxRetryBackoffMs: 2, ...options });
}

test("one message per breaker and applied decision per flush, valid, with its headers", async () => {
  const js = fakeJs();
  const r = reporter(js, { flushIntervalMs: 60_000 });
  r.failure("payments", 3);
  r.success("payments");
  r.failure("payments", 2);
  r.rejected("search", 5, { term: 7, seq: 1 });
  r.failure("payments", 1, { term: 7, seq: 2 });
  await r.flush();
  assert.equal(js.calls.length, 3);
  for (const c of js.calls) {
    valid(c.message);
    assert.equal(c.type, "application/json");
  }
  assert.deepEqual(js.calls.map((c) => c.subject), ["fusebox.out.payments.js-1", "fusebox.out.search.js-1", "fusebox.out.payments.js-1"]);
  assert.deepEqual(js.calls[0].message.events, [{ outcome: "failure", count: 3 }, { outcome: "success" }, { outcome: "failure", count: 2 }]);
  assert.equal(js.calls[0].message.applied, undefined);
  assert.deepEqual(js.calls[1].message.applied, { term: 7, seq: 1 });
  assert.equal(new Set(js.calls.map((c) => c.msgId)).size, 3, "an id per message");
  const s = r.stats();
  assert.equal(s.messagesSent, 3);
  assert.equal(s.callsSent, 12);
  assert.equal(s.bufferedCalls, 0);
});

test("more than MAX_EVENTS runs go out in several messages", async () => {
  const js = fakeJs();
  const r = reporter(js, { flushIntervalMs: 60_000 });
  for (let i = 0; i < MAX_EVENTS + 10; i += 1) {
    r.record("payments", i % 2 ? "success" : "failure");
  }
  await r.flush();
  assert.deepEqual(js.calls.map((c) => c.message.events.length), [MAX_EVENTS, 10]);
  js.calls.forEach((c) => valid(c.message));
});

test("a lost acknowledgement is retried under the same id; retries are bounded", async () => {
  const js = fakeJs((n) => (n <= 2 ? "timeout" : "ack"));
  const errorsSeen = [];
  const r = reporter(js, { flushIntervalMs: 60_000, onError: (e) => errorsSeen.push(e) });
  r.failure("payments");
  await r.flush();
  assert.equal(js.calls.length, 3);
  assert.equal(new Set(js.calls.map((c) => c.msgId)).size, 1, "one id across the retries");
  assert.equal(r.stats().retries, 2);
  assert.equal(r.stats().messagesSent, 1);

  const dead = fakeJs(() => "timeout");
  const r2 = reporter(dead, { flushIntervalMs: 60_000, maxAttempts: 3, onError: (e) => errorsSeen.push(e) });
  r2.failure("payments", 4);
  await r2.flush();
  assert.equal(dead.calls.length, 3);
  assert.equal(r2.stats().dropped.gaveUp, 4);
  assert.equal(errorsSeen.length, 1);
  assert.match(errorsSeen[0].message, /not acknowledged after 3 attempts/);
});

test("a publish refused by permissions is not retried and is counted", async () => {
  const js = fakeJs(() => "refused");
  const seen = [];
  const r = reporter(js, { flushIntervalMs: 60_000, onError: (e) => seen.push(e) });
  r.failure("payments", 2);
  await r.flush();
  assert.equal(js.calls.length, 1);
  assert.equal(r.stats().dropped.refused, 2);
  assert.equal(seen[0].byPermissions, true);
});

test("the buffer is bounded: the oldest outcomes are dropped and counted, never the message in flight", async () => {
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const js = fakeJs((n) => (n === 1 ? gate : "ack"));
  const r = reporter(js, { flushIntervalMs: 60_000, maxBufferedEvents: 4 });
  r.failure("a");
  r.flushSoon(); // message 1 (a) in flight, held at the gate
  r.failure("b");
  r.flushSoon(); // message 2 (b) sealed, waiting
  r.success("c");
  r.failure("c");
  r.success("c"); // 5 runs wait: the oldest not in flight (b) goes
  assert.equal(r.stats().dropped.overflow, 1);
  r.failure("c", 2); // merged into c's last run? no: success then failure is a new run
  assert.equal(r.stats().bufferedEvents, 4);
  assert.equal(r.stats().dropped.overflow, 2, "c's oldest run went");
  release();
  await r.flush();
  assert.deepEqual(js.calls.map((c) => c.subject.split(".")[2]), ["a", "c"]);
  assert.deepEqual(js.calls[1].message.events, [{ outcome: "failure" }, { outcome: "success" }, { outcome: "failure", count: 2 }]);
  const s = r.stats();
  assert.equal(s.callsSent + s.dropped.overflow, s.recordedCalls);
});

test("the timer flushes; close() drains and later records are counted as closed", async () => {
  const js = fakeJs();
  const r = reporter(js, { flushIntervalMs: 5 });
  r.failure("payments");
  const deadline = Date.now() + 5000;
  while (js.calls.length === 0) {
    assert.ok(Date.now() < deadline, "the timer never flushed");
    await new Promise((resolve) => setImmediate(resolve));
  }
  r.success("payments", 3);
  await r.close();
  assert.equal(r.stats().callsSent, 4);
  r.failure("payments");
  assert.equal(r.stats().dropped.closed, 1);
});
