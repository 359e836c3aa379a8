// Fleet scenario (tests/tests/node_client.rs: node_follower_skips_malformed_values): values
// in the state bucket the follower cannot use (not JSON, another breaker's decision under a
// key, another version) are counted and skipped, and the fleet's next decision still applies.

import assert from "node:assert/strict";
import { test } from "node:test";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";

import { connect } from "../../index.js";
import { setting, until } from "./support.js";

test("malformed and misplaced values are counted and skipped, nothing else is lost", async () => {
  const url = setting("FUSEBOX_TEST_URL");
  const breakerName = setting("FUSEBOX_TEST_BREAKER");
  const node = setting("FUSEBOX_TEST_NODE");
  const refused = [];
  const fusebox = await connect({ node, servers: url, onRefused: (kind, key) => refused.push([kind, key]) }, {});
  try {
    const b = fusebox.breaker(breakerName);
    assert.equal(b.state, "closed");
    const kv = await new Kvm(jetstream(fusebox.nc)).open("fusebox_state", { bindOnly: true });
    const current = b.decision.raw;
    await kv.put("junk", "this is not JSON");
    await kv.put("elsewhere", JSON.stringify({ ...current, id: { term: current.id.term + 100, seq: 1 }, state: { state: "forced_open" } }));
    await kv.put("future", JSON.stringify({ ...current, version: 2, breaker: "future" }));
    await until("three refusals", () => fusebox.follower.stats().refused === 3);
    assert.deepEqual(fusebox.follower.stats().refusals, { malformed: 1, wrong_breaker: 1, unsupported_version: 1 });
    assert.deepEqual(refused.map(([, key]) => key).sort(), ["elsewhere", "future", "junk"]);
    assert.equal(fusebox.breaker("elsewhere").state, "closed", "a decision under another key is not applied");
    assert.equal(b.state, "closed");

    // The watch goes on: the fleet's next decision arrives.
    fusebox.reporter.failure(breakerName, 10, b.decision.id);
    await fusebox.reporter.flush();
    await until("open after the garbage", () => b.state === "open");
    assert.equal(fusebox.follower.stats().refused, 3);
  } finally {
    await fusebox.close();
  }
});
