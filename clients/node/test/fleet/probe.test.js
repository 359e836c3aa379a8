// Fleet scenario (tests/tests/node_client.rs: node_follower_probes_only_as_granted): Node
// trips the fleet alone, its rejected calls while open are the demand, in half-open exactly
// its granted probes go through, and their reported successes close the round.

import assert from "node:assert/strict";
import { test } from "node:test";

import { BreakerRejectedError, connect } from "../../index.js";
import { capture, setting, until } from "./support.js";

test("rejected while open, exactly the granted probes in half-open, closed by their results", async () => {
  const url = setting("FUSEBOX_TEST_URL");
  const breakerName = setting("FUSEBOX_TEST_BREAKER");
  const node = setting("FUSEBOX_TEST_NODE");
  const wire = await capture(url, node);
  const decisions = [];
  const fusebox = await connect({ node, servers: url, onDecision: (d) => decisions.push(d) }, {});
  try {
    const b = fusebox.breaker(breakerName);
    for (let i = 0; i < 10; i += 1) {
      await b.call(async () => Promise.reject(new Error("down"))).catch(() => {});
    }
    await fusebox.reporter.flush();
    await until("open", () => b.state === "open");

    // While open every call is rejected (and reported as demand) until the round starts.
    let rejectedWhileOpen = 0;
    await until(
      "half-open",
      () => {
        if (b.state === "open") {
          assert.throws(() => b.allow(), (e) => e instanceof BreakerRejectedError && e.state === "open");
          rejectedWhileOpen += 1;
        }
        return b.state === "half_open";
      },
      15_000,
    );
    assert.ok(rejectedWhileOpen > 0, "calls were rejected while open");
    const granted = b.decision.grants.get(node);
    assert.equal(granted, Number(setting("FUSEBOX_TEST_BUDGET")), "the whole budget to the only node that asked");

    // Many callers at once: exactly `granted` permits, the rest rejected as probes_used.
    const permits = [];
    const refusals = [];
    for (let i = 0; i < granted + 20; i += 1) {
      try {
        permits.push(b.allow());
      } catch (error) {
        assert.ok(error instanceof BreakerRejectedError);
        refusals.push(error.why);
      }
    }
    assert.equal(permits.length, granted);
    assert.ok(permits.every((p) => p.probe));
    assert.deepEqual(new Set(refusals), new Set(["probes_used"]));
    assert.equal(refusals.length, 20);
    assert.equal(b.state, "half_open", "the round waits for the probes' results");

    for (const p of permits) {
      p.success();
    }
    await until("closed by the probes", () => b.state === "closed");
    assert.equal(b.decision.reason, "probes_succeeded");
    assert.ok(await b.call(async () => true), "closed again: calls go through");
    await fusebox.reporter.flush();
    const half = decisions.find((d) => d.state === "half_open");
    const probeMessages = wire.seen.filter((m) => m.json.applied && m.json.applied.term === half.id.term && m.json.applied.seq === half.id.seq);
    const probeSuccesses = probeMessages.flatMap((m) => m.json.events).filter((e) => e.outcome === "success").reduce((n, e) => n + (e.count ?? 1), 0);
    assert.equal(probeSuccesses, granted, "each probe's result reported under the half-open decision");
    wire.check();
  } finally {
    await fusebox.close();
    await wire.close();
  }
});
