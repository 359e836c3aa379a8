// Unit tests of src/decision.js and src/breaker.js: decoding like the Rust decoder, applying
// only newer ids, half-open grants per round, ramping, and Breaker's permits and reports.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Breaker } from "../../src/breaker.js";
import { DecisionError, DecisionState, parseDecision } from "../../src/decision.js";
import { BreakerRejectedError } from "../../src/errors.js";

function decision(id, state, extra = {}, phase = id) {
  return JSON.stringify({
    version: 1,
    breaker: "payments",
    id: { term: id[0], seq: id[1] },
    phase: { term: phase[0], seq: phase[1] },
    state: { state, ...extra },
    backoff_level: 0,
    reason: { kind: "tripped" },
    decider: "n1",
    clock: { term: id[0], entries: [] },
    later_field: "ignored",
  });
}

test("decisions decode like the Rust decoder: version first, key checked, unknown fields ignored", () => {
  const d = parseDecision(decision([3, 2], "open", { duration_ms: 1000 }), "payments");
  assert.equal(d.state, "open");
  assert.deepEqual(d.id, { term: 3, seq: 2 });
  assert.equal(d.reason, "tripped");
  const kind = (data, key = "payments") => {
    try {
      parseDecision(data, key);
    } catch (error) {
      assert.ok(error instanceof DecisionError);
      return error.kind;
    }
    return "accepted";
  };
  assert.equal(kind("{not json"), "malformed");
  assert.equal(kind('{"version": 2, "breaker": "other"}'), "unsupported_version");
  assert.equal(kind(decision([1, 1], "closed"), "other"), "wrong_breaker");
  assert.equal(kind(decision([1, 1], "sideways")), "malformed");
  assert.equal(kind(decision([2 ** 60, 1], "closed")), "malformed");
  assert.equal(kind(decision([1, 1], "half_open", { budget: 2 })), "malformed");
  assert.equal(kind(new Uint8Array([0xff, 0xfe])), "malformed");
});

test("only a newer (term, seq) is applied; refusals keep the decision in force", () => {
  const s = new DecisionState("payments", "js-1");
  assert.ok(s.offer(decision([2, 5], "open", { duration_ms: 1 })));
  assert.equal(s.offer(decision([2, 4], "closed")), null, "older seq");
  assert.equal(s.offer(decision([1, 9], "closed")), null, "older term");
  assert.equal(s.offer("garbage"), null);
  assert.equal(s.decision.state, "open");
  assert.deepEqual(s.refusals, { malformed: 1 });
  assert.ok(s.offer(decision([3, 1], "closed")), "newer term");
  assert.equal(s.decision.state, "closed");
});

test("half-open lets through exactly this node's grant per round, whatever decisions the round adds", () => {
  const s = new DecisionState("payments", "js-1");
  s.offer(decision([4, 1], "half_open", { budget: 3, grants: [{ node: "js-1", probes: 2 }, { node: "n1", probes: 1 }] }));
  const verdicts = Array.from({ length: 5 }, () => s.admit());
  assert.deepEqual(
    verdicts.map((v) => [v.admitted, v.probe, v.why]),
    [[true, true, null], [true, true, null], [false, false, "probes_used"], [false, false, "probes_used"], [false, false, "probes_used"]],
  );
  // A later decision of the same round (same phase) raising the grant to 3: one more.
  s.offer(decision([4, 2], "half_open", { budget: 3, grants: [{ node: "js-1", probes: 3 }] }, [4, 1]));
  assert.equal(s.admit().admitted, true);
  assert.equal(s.admit().admitted, false);
  // A new round re-arms.
  s.offer(decision([5, 1], "half_open", { budget: 1, grants: [{ node: "js-1", probes: 1 }] }));
  assert.equal(s.admit().admitted, true);
  const other = new DecisionState("payments", "js-2");
  other.offer(decision([5, 1], "half_open", { budget: 1, grants: [{ node: "js-1", probes: 1 }] }));
  assert.equal(other.admit().why, "no_grant");
});

test("ramping admits exactly admit_per_mille of every thousand calls", () => {
  const s = new DecisionState("payments", "js-1");
  s.offer(decision([1, 1], "ramping", { stage: 0, admit_per_mille: 250 }));
  let admitted = 0;
  for (let i = 0; i < 2000; i += 1) {
    admitted += s.admit().admitted ? 1 : 0;
  }
  assert.equal(admitted, 500);
});

class FakeReporter {
  constructor() {
    this.records = [];
    this.soon = 0;
  }
  record(breaker, outcome, count, applied) {
    this.records.push([breaker, outcome, count, applied]);
  }
  flushSoon() {
    this.soon += 1;
  }
}

test("a Breaker rejects with the state and reports demand; call() reports outcomes under the admitting decision", async () => {
  const s = new DecisionState("payments", "js-1");
  const reporter = new FakeReporter();
  const b = new Breaker("payments", s, reporter, { slowMs: 20 });
  assert.equal(await b.call(async () => 7), 7, "no decision yet: allowed");
  s.offer(decision([2, 1], "open", { duration_ms: 100 }));
  assert.throws(
    () => b.allow(),
    (e) => e instanceof BreakerRejectedError && e.state === "open" && e.decisionId.term === 2,
  );
  await assert.rejects(b.call(async () => 1), BreakerRejectedError);
  s.offer(decision([2, 2], "closed"));
  const failing = b.wrap(async () => {
    throw new Error("boom");
  });
  await assert.rejects(failing(), /boom/);
  await b.call(() => new Promise((resolve) => setTimeout(resolve, 30)));
  assert.deepEqual(reporter.records, [
    ["payments", "success", 1, null],
    ["payments", "rejected", 1, { term: 2, seq: 1 }],
    ["payments", "rejected", 1, { term: 2, seq: 1 }],
    ["payments", "failure", 1, { term: 2, seq: 2 }],
    ["payments", "slow", 1, { term: 2, seq: 2 }],
  ]);
  assert.equal(reporter.soon, 0, "no probe: no immediate flush");
});

test("a classifier decides; a probe's result is flushed at once; a permit reports once", async () => {
  const s = new DecisionState("payments", "js-1");
  const reporter = new FakeReporter();
  const classify = ({ ok, error }) => (ok ? "success" : error.code === 404 ? "ignored" : "failure");
  const b = new Breaker("payments", s, reporter, { classify });
  await assert.rejects(b.call(async () => Promise.reject(Object.assign(new Error("nf"), { code: 404 }))));
  s.offer(decision([3, 1], "half_open", { budget: 1, grants: [{ node: "js-1", probes: 1 }] }));
  const permit = b.allow();
  assert.equal(permit.probe, true);
  assert.equal(b.probesLeft, 0);
  assert.ok(permit.success());
  assert.equal(permit.failure(), false);
  assert.deepEqual(reporter.records, [
    ["payments", "ignored", 1, null],
    ["payments", "success", 1, { term: 3, seq: 1 }],
  ]);
  assert.equal(reporter.soon, 1);
  assert.throws(() => b.allow(), (e) => e.why === "probes_used");
});
