// Unit tests of src/follower.js's handling of watch entries: malformed values, values
// naming another breaker, bad keys and deletions are counted and skipped, and lose nothing.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Follower } from "../../src/follower.js";

const encoder = new TextEncoder();
let revision = 0;

function entry(key, value, operation = "PUT") {
  revision += 1;
  return { key, value: encoder.encode(value), operation, revision, isUpdate: true };
}

function decision(breaker, term, seq, state) {
  return JSON.stringify({ version: 1, breaker, id: { term, seq }, phase: { term, seq }, state: { state } });
}

test("values that cannot be used are counted by kind and skipped; the others apply", () => {
  const refused = [];
  const applied = [];
  const f = new Follower({}, { node: "js-1", js: {}, onDecision: (d) => applied.push(d.breaker), onRefused: (k) => refused.push(k) });
  f._entry(entry("payments", decision("payments", 1, 1, "closed")));
  f._entry(entry("payments", "{garbage"));
  f._entry(entry("other", decision("payments", 9, 9, "open")));
  f._entry(entry("payments", JSON.stringify({ version: 7 })));
  f._entry(entry("payments", "", "DEL"));
  f._entry(entry("payments", decision("payments", 1, 1, "open")));
  f._entry(entry("payments", decision("payments", 1, 2, "open")));
  f._entry(entry("search", decision("search", 1, 1, "forced_open")));
  assert.deepEqual(refused, ["malformed", "wrong_breaker", "unsupported_version", "deleted"]);
  assert.deepEqual(f.stats().refusals, { malformed: 1, wrong_breaker: 1, unsupported_version: 1, deleted: 1 });
  assert.equal(f.stats().stale, 1);
  assert.deepEqual(applied, ["payments", "payments", "search"]);
  assert.equal(f.decisions("payments").decision.state, "open");
  assert.equal(f.decisions("search").decision.state, "forced_open");
  assert.equal(f.decisions("other").decision, null, "the value under key other named payments");
  assert.equal(f._revision, revision);
});

test("callbacks that throw do not end the watch", () => {
  const f = new Follower({}, {
    node: "js-1",
    js: {},
    onDecision: () => {
      throw new Error("app bug");
    },
    onRefused: () => {
      throw new Error("app bug");
    },
  });
  f._entry(entry("payments", "nope"));
  f._entry(entry("payments", decision("payments", 2, 1, "open")));
  assert.equal(f.decisions("payments").decision.state, "open");
});
