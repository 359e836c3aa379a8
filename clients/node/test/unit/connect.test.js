// Unit tests of src/connect.js: every setting from options and from the environment, and
// bad settings refused with a ConnectSettingsError naming the setting, before connecting.

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { nkeys } from "@nats-io/transport-node";

import { connect } from "../../src/client.js";
import { connectionOptions } from "../../src/connect.js";
import { ConnectSettingsError } from "../../src/errors.js";

const dir = mkdtempSync(join(tmpdir(), "fusebox-node-connect-"));
const pem = join(dir, "ca.pem");
writeFileSync(pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
const notPem = join(dir, "plain.txt");
writeFileSync(notPem, "hello");
const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
const seedFile = join(dir, "user.nk");
writeFileSync(seedFile, `${seed}\n`);
const missing = join(dir, "missing.pem");

function refused(fn, setting, says) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof ConnectSettingsError, `${e}`);
    assert.equal(e.setting, setting);
    assert.match(e.message, says);
    return true;
  });
}

test("settings come from the environment, options win", () => {
  const env = { NATS_URL: "nats://a:1, tls://b:2", NATS_USER: "u", NATS_PASSWORD: "p", NATS_TOKEN: "t", NATS_CA: pem, NATS_CERT: pem, NATS_KEY: pem, NATS_TLS_FIRST: "1", NATS_NKEY: seedFile };
  const o = connectionOptions({}, env);
  assert.deepEqual(o.servers, ["nats://a:1", "tls://b:2"]);
  assert.equal(o.user, "u");
  assert.equal(o.pass, "p");
  assert.equal(o.token, "t");
  assert.equal(typeof o.authenticator, "function");
  assert.match(o.tls.ca, /BEGIN CERTIFICATE/);
  assert.ok(o.tls.cert && o.tls.key && o.tls.handshakeFirst);
  const mine = connectionOptions({ servers: ["127.0.0.1:5000"], user: "me", password: "x", tls: { handshakeFirst: false } }, env);
  assert.deepEqual(mine.servers, ["127.0.0.1:5000"]);
  assert.equal(mine.user, "me");
  assert.equal(mine.tls.handshakeFirst, undefined);
  assert.deepEqual(connectionOptions({}, {}), { servers: ["nats://127.0.0.1:4222"] });
  assert.deepEqual(connectionOptions({ tls: { required: true } }, {}).tls, {});
  assert.equal(typeof connectionOptions({ nkeySeed: seed }, {}).authenticator, "function");
});

test("bad settings name themselves", () => {
  refused(() => connectionOptions({}, { NATS_CA: missing }), "NATS_CA", /cannot read it: ENOENT/);
  refused(() => connectionOptions({ tls: { ca: missing } }, {}), "tls.ca", /missing\.pem/);
  refused(() => connectionOptions({}, { NATS_CA: notPem }), "NATS_CA", /not a PEM file/);
  refused(() => connectionOptions({}, { NATS_CERT: pem }), "NATS_CERT", /NATS_KEY is not set/);
  refused(() => connectionOptions({}, { NATS_URL: "http://x:1" }), "NATS_URL", /scheme/);
  refused(() => connectionOptions({ servers: "nats://:::" }, {}), "servers", /not a URL/);
  refused(() => connectionOptions({}, { NATS_CREDS: missing }), "NATS_CREDS", /cannot read it/);
  refused(() => connectionOptions({}, { NATS_CREDS: pem }), "NATS_CREDS", /not a \.creds file/);
  refused(() => connectionOptions({}, { NATS_NKEY: pem }), "NATS_NKEY", /not an nkey user seed/);
  refused(() => connectionOptions({ nkeySeed: "SUnope" }, {}), "nkeySeed", /not a valid nkey seed/);
  refused(() => connectionOptions({}, { NATS_PASSWORD: "p" }), "NATS_PASSWORD", /without a user/);
});

test("connect() refuses bad settings before connecting", async () => {
  // Port 9 (discard) on loopback: nothing would answer; the error comes first.
  await assert.rejects(
    connect({ node: "js-1", servers: "nats://127.0.0.1:9" }, { NATS_KEY: pem }),
    (e) => e instanceof ConnectSettingsError && e.setting === "NATS_KEY",
  );
});
