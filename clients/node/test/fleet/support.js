// Helpers of the fleet tests (run by tests/tests/node_client.rs against a real nats-server
// and Rust nodes): the scenario's settings from the environment, a deadline-bounded poll,
// and a capture of every outcome message this node puts on the wire, checked against the
// schema and the header rules.

import assert from "node:assert/strict";
import { connect as natsConnect } from "@nats-io/transport-node";

import { validator } from "../schema.js";

/** The environment variable `name`; a fleet test without it fails (it is never skipped). */
export function setting(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: the fleet tests run from tests/tests/node_client.rs`);
  return value;
}

/** Polls `check` (sync or async) every few ms until it returns a truthy value; fails after `ms`. */
export async function until(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) {
      return value;
    }
    assert.ok(Date.now() < deadline, `timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Subscribes (own connection) to `fusebox.out.*.<node>` and keeps every message seen. */
export async function capture(url, node) {
  const nc = await natsConnect({ servers: url });
  const seen = [];
  const sub = nc.subscribe(`fusebox.out.*.${node}`, {
    callback: (_, m) => seen.push({ subject: m.subject, headers: m.headers, json: m.json() }),
  });
  await nc.flush();
  const valid = validator();
  return {
    seen,
    /** Checks every message: valid, JSON content type, a Nats-Msg-Id of its own, subject tokens equal to its body's. */
    check() {
      assert.ok(seen.length > 0, "no outcome message was seen on the wire");
      const ids = new Set();
      for (const m of seen) {
        valid(m.json);
        assert.equal(m.headers?.get("Content-Type"), "application/json");
        const id = m.headers?.get("Nats-Msg-Id");
        assert.ok(id, "every message has a Nats-Msg-Id");
        ids.add(id);
        const [, , breaker, from] = m.subject.split(".");
        assert.equal(m.json.breaker, breaker);
        assert.equal(m.json.node, from);
      }
      assert.equal(ids.size, seen.length, "each message its own id");
    },
    calls(outcome) {
      return seen.flatMap((m) => m.json.events).filter((e) => e.outcome === outcome).reduce((n, e) => n + (e.count ?? 1), 0);
    },
    async close() {
      sub.unsubscribe();
      await nc.close();
    },
  };
}
