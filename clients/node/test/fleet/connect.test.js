// Fleet scenario (tests/tests/node_client.rs: node_connects_with_a_token_over_mutual_tls):
// the server wants a token over mutual TLS; the settings from the environment work, and each
// wrong one fails clearly: a typed ConnectError from the server's side, a
// ConnectSettingsError naming the setting before connecting.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ConnectError, ConnectSettingsError, connect } from "../../index.js";
import { setting } from "./support.js";

const good = {
  NATS_URL: setting("NATS_URL"),
  NATS_TOKEN: setting("NATS_TOKEN"),
  NATS_CA: setting("NATS_CA"),
  NATS_CERT: setting("NATS_CERT"),
  NATS_KEY: setting("NATS_KEY"),
};
const node = setting("FUSEBOX_TEST_NODE");
const breaker = setting("FUSEBOX_TEST_BREAKER");

function without(...names) {
  return Object.fromEntries(Object.entries(good).filter(([k]) => !names.includes(k)));
}

test("a token over mutual TLS from the environment reports and follows", async () => {
  const fusebox = await connect({ node, connectTimeoutMs: 3000 }, good);
  try {
    fusebox.reporter.failure(breaker);
    await fusebox.reporter.flush();
    assert.equal(fusebox.reporter.stats().callsSent, 1);
    assert.equal(fusebox.breaker(breaker).state, "closed");
  } finally {
    await fusebox.close();
  }
});

test("each wrong setting fails with a clear, typed error", async () => {
  const cases = [
    [without("NATS_CA"), ConnectError, /certificate/i],
    [{ ...good, NATS_TOKEN: "guess" }, ConnectError, /authorization/i],
    [without("NATS_CERT", "NATS_KEY"), ConnectError, /./],
    [{ ...good, NATS_CA: `${good.NATS_CA}.missing` }, ConnectSettingsError, /^NATS_CA: .*cannot read it/],
    [without("NATS_KEY"), ConnectSettingsError, /^NATS_CERT: /],
    [{ ...good, NATS_URL: "https://127.0.0.1:1" }, ConnectSettingsError, /^NATS_URL: /],
  ];
  for (const [env, type, says] of cases) {
    const error = await connect({ node, connectTimeoutMs: 3000, follow: false }, env).then(
      async (c) => {
        await c.close();
        return null;
      },
      (e) => e,
    );
    assert.ok(error instanceof type, `${JSON.stringify(Object.keys(env))}: expected ${type.name}, got ${error}`);
    assert.match(error.message, says);
  }
});
