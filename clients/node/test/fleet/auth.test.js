// Fleet scenario (tests/tests/node_client.rs: node_connects_with_an_nkey_seed_and_with_creds):
// an nkey seed file (NATS_NKEY) and an operator-mode .creds file (NATS_CREDS) each admit the
// client, which reports and follows; creds of an account the server never trusted are
// refused with a typed ConnectError.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ConnectError, connect } from "../../index.js";
import { setting } from "./support.js";

const node = setting("FUSEBOX_TEST_NODE");
const breaker = setting("FUSEBOX_TEST_BREAKER");

async function reportsAndFollows(env) {
  const fusebox = await connect({ node, connectTimeoutMs: 3000 }, env);
  try {
    fusebox.reporter.failure(breaker);
    await fusebox.reporter.flush();
    assert.equal(fusebox.reporter.stats().callsSent, 1);
    assert.equal(fusebox.follower.bucket, "fusebox_state");
  } finally {
    await fusebox.close();
  }
}

test("an nkey seed file admits the client", async () => {
  await reportsAndFollows({ NATS_URL: setting("FUSEBOX_TEST_NKEY_URL"), NATS_NKEY: setting("FUSEBOX_TEST_NKEY_FILE") });
});

test("operator-mode creds admit the client; a stranger's are refused", async () => {
  const url = setting("FUSEBOX_TEST_CREDS_URL");
  await reportsAndFollows({ NATS_URL: url, NATS_CREDS: setting("FUSEBOX_TEST_CREDS_FILE") });
  await assert.rejects(
    connect({ node, connectTimeoutMs: 3000, follow: false }, { NATS_URL: url, NATS_CREDS: setting("FUSEBOX_TEST_STRANGER_FILE") }),
    (e) => e instanceof ConnectError && /authoriz/i.test(e.message),
  );
});
