// Unit tests of src/wire.js: names, run-length events, batch messages, all checked against
// the outcome JSON Schema.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ValidationError } from "../../src/errors.js";
import { MAX_COUNT, MAX_EVENTS, addRun, batchMessage, layout } from "../../src/wire.js";
import { validator } from "../schema.js";

const valid = validator();

test("the schema refuses what the wire format refuses", () => {
  assert.throws(() => valid({ version: 1, events: [] }));
  assert.throws(() => valid({ version: 1, outcome: "failure", count: 0 }));
  assert.throws(() => valid({ version: 2, outcome: "failure" }));
  assert.ok(valid({ version: 1, outcome: "failure", count: 3 }));
});

test("a batch message is valid and names breaker, node and applied", () => {
  const m = batchMessage("payments", "js-1", [["failure", 3], ["success", 1]], { term: 4, seq: 2 });
  valid(m);
  assert.deepEqual(m, {
    version: 1,
    breaker: "payments",
    node: "js-1",
    applied: { term: 4, seq: 2 },
    events: [{ outcome: "failure", count: 3 }, { outcome: "success" }],
  });
});

test("runs merge up to MAX_COUNT and split beyond it", () => {
  const events = [];
  assert.equal(addRun(events, "failure", 2), 1);
  assert.equal(addRun(events, "failure", 3), 0);
  assert.deepEqual(events, [["failure", 5]]);
  addRun(events, "failure", 2 * MAX_COUNT);
  assert.deepEqual(events, [["failure", MAX_COUNT], ["failure", MAX_COUNT], ["failure", 5]]);
  valid(batchMessage("b", "n", events));
});

test("batches hold 1 to MAX_EVENTS events and counts 1 to MAX_COUNT", () => {
  const full = Array.from({ length: MAX_EVENTS }, (_, i) => [i % 2 ? "success" : "failure", 1]);
  valid(batchMessage("b", "n", full));
  assert.throws(() => batchMessage("b", "n", [...full, ["slow", 1]]), ValidationError);
  assert.throws(() => batchMessage("b", "n", []), ValidationError);
  assert.throws(() => batchMessage("b", "n", [["failure", MAX_COUNT + 1]]), ValidationError);
  assert.throws(() => batchMessage("b", "n", [["timeout", 1]]), ValidationError);
  assert.throws(() => batchMessage("a.b", "n", [["failure", 1]]), ValidationError);
});

test("layout names follow the prefix", () => {
  const l = layout("acme");
  assert.equal(l.stateBucket, "acme_state");
  assert.equal(l.outcomeStream, "ACME_OUTCOMES");
  assert.equal(l.outcomeSubject("payments", "js-1"), "acme.out.payments.js-1");
  assert.throws(() => layout("Acme"), ValidationError);
});
