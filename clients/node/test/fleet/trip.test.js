// Fleet scenario (tests/tests/node_client.rs: node_reports_trip_the_rust_fleet): failures
// reported from Node trip the Rust fleet, and the follower applies the open decision and
// rejects calls with the state.

import assert from "node:assert/strict";
import { test } from "node:test";

import { BreakerRejectedError, connect } from "../../index.js";
import { capture, setting, until } from "./support.js";

test("failures reported through call() trip the fleet; the follower then rejects with the state", async () => {
  const url = setting("FUSEBOX_TEST_URL");
  const breakerName = setting("FUSEBOX_TEST_BREAKER");
  const node = setting("FUSEBOX_TEST_NODE");
  const wire = await capture(url, node);
  const fusebox = await connect({ node, servers: url }, {});
  try {
    const payments = fusebox.breaker(breakerName);
    assert.equal(payments.state, "closed", "the fleet's decision was read before the first call");
    const closedId = payments.decision.id;
    const flaky = payments.wrap(async (n) => {
      if (n % 5 !== 0) {
        throw new Error(`dependency down (${n})`);
      }
      return n;
    });
    for (let n = 1; n <= 10; n += 1) {
      await flaky(n).catch(() => {});
    }
    await fusebox.reporter.flush();
    const stats = fusebox.reporter.stats();
    assert.equal(stats.callsSent, 10);
    assert.equal(stats.droppedMessages, 0);
    await until("the open decision", () => payments.state === "open");
    const error = await payments.call(async () => "never").then(
      () => assert.fail("an open breaker let a call through"),
      (e) => e,
    );
    assert.ok(error instanceof BreakerRejectedError);
    assert.equal(error.state, "open");
    assert.ok(error.decisionId.term > closedId.term || error.decisionId.seq > closedId.seq, "a newer decision");
    await fusebox.reporter.flush();
    await until("every message on the wire", () => wire.calls("rejected") === 1 && wire.calls("failure") === 8);
    assert.equal(wire.calls("success"), 2);
    for (const m of wire.seen) {
      assert.ok(m.json.applied, "each message names the decision it ran under");
    }
    wire.check();
  } finally {
    await fusebox.close();
    await wire.close();
  }
});
