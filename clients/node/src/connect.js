// How @fusebox/client connects to NATS: every connection setting of the Rust side (servers,
// user/password, token, nkey seed or seed file, creds text or file, TLS: CA, client
// certificate and key, required, handshake first), as options or from the environment
// variables the Python examples read, checked before anything connects.
//
// | variable                  | option                      |
// |---------------------------|-----------------------------|
// | NATS_URL (comma-separated)| servers                     |
// | NATS_USER, NATS_PASSWORD  | user, password              |
// | NATS_TOKEN                | token                       |
// | NATS_CREDS (a file)       | credsFile (or creds: text)  |
// | NATS_NKEY (a seed file)   | nkeyFile (or nkeySeed)      |
// | NATS_CA                   | tls.ca                      |
// | NATS_CERT, NATS_KEY       | tls.cert, tls.key           |
// | NATS_TLS_FIRST=1          | tls.handshakeFirst          |
//
// An option given wins over its variable.

import { readFileSync } from "node:fs";
import { connect as natsConnect, credsAuthenticator, nkeyAuthenticator, nkeys } from "@nats-io/transport-node";

import { ConnectError, ConnectSettingsError } from "./errors.js";

export const DEFAULT_URL = "nats://127.0.0.1:4222";

const encoder = new TextEncoder();

function read(setting, path) {
  if (typeof path !== "string" || path === "") {
    throw new ConnectSettingsError(setting, `not a file path: ${JSON.stringify(path)}`);
  }
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new ConnectSettingsError(setting, `${path}: cannot read it: ${error.code ?? error.message}`, { cause: error });
  }
}

/** The servers of `servers` (a string, comma-separated, or an array), each checked. */
export function parseServers(setting, servers) {
  const listed = (Array.isArray(servers) ? servers : String(servers).split(","))
    .map((u) => (typeof u === "string" ? u.trim() : u))
    .filter((u) => u !== "");
  if (listed.length === 0) {
    throw new ConnectSettingsError(setting, "no server URL given");
  }
  for (const url of listed) {
    if (typeof url !== "string") {
      throw new ConnectSettingsError(setting, `not a URL: ${JSON.stringify(url)}`);
    }
    let parsed;
    try {
      parsed = new URL(url.includes("://") ? url : `nats://${url}`);
    } catch {
      throw new ConnectSettingsError(setting, `not a URL: ${JSON.stringify(url)}`);
    }
    if (parsed.protocol !== "nats:" && parsed.protocol !== "tls:") {
      throw new ConnectSettingsError(setting, `${JSON.stringify(url)}: the scheme must be nats:// or tls://`);
    }
    if (parsed.hostname === "" || (parsed.pathname !== "" && parsed.pathname !== "/") || parsed.search || parsed.hash) {
      throw new ConnectSettingsError(setting, `${JSON.stringify(url)}: expected nats://host:port`);
    }
  }
  return listed;
}

function pem(setting, path, what) {
  const text = read(setting, path);
  if (!text.includes("-----BEGIN ")) {
    throw new ConnectSettingsError(setting, `${path}: not a PEM file (${what})`);
  }
  return text;
}

function seedAuthenticator(setting, seed, path) {
  const text = seed.trim();
  const where = path ? `${path}: ` : "";
  if (!text.startsWith("SU")) {
    throw new ConnectSettingsError(setting, `${where}not an nkey user seed (SU...)`);
  }
  try {
    nkeys.fromSeed(encoder.encode(text));
  } catch (error) {
    throw new ConnectSettingsError(setting, `${where}not a valid nkey seed: ${error.message}`, { cause: error });
  }
  return nkeyAuthenticator(encoder.encode(text));
}

function credsAuth(setting, text, path) {
  const where = path ? `${path}: ` : "";
  if (!/-----BEGIN NATS USER JWT-----/.test(text) || !/-----BEGIN USER NKEY SEED-----/.test(text)) {
    throw new ConnectSettingsError(setting, `${where}not a .creds file (a user JWT and its nkey seed)`);
  }
  return credsAuthenticator(encoder.encode(text));
}

function flag(value) {
  return value !== undefined && value !== "" && value !== "0" && value.toLowerCase() !== "false";
}

/**
 * The nats.js connection options for `options` (see the table above) and `env`
 * (`process.env` unless given; `env: {}` reads none). Throws ConnectSettingsError naming the
 * setting; reads every file now, so nothing fails later.
 */
export function connectionOptions(options = {}, env = process.env) {
  const out = {};
  const pick = (option, variable) => {
    if (options[option] !== undefined && options[option] !== null) {
      return [option, options[option]];
    }
    if (env[variable] !== undefined && env[variable] !== "") {
      return [variable, env[variable]];
    }
    return [null, undefined];
  };

  const [serversFrom, servers] = pick("servers", "NATS_URL");
  out.servers = servers === undefined ? [DEFAULT_URL] : parseServers(serversFrom, servers);

  const [userFrom, user] = pick("user", "NATS_USER");
  const [passwordFrom, password] = pick("password", "NATS_PASSWORD");
  if (user !== undefined) {
    out.user = String(user);
    if (password !== undefined) {
      out.pass = String(password);
    }
  } else if (password !== undefined) {
    throw new ConnectSettingsError(passwordFrom, `a password without a user (${userFrom ?? "user / NATS_USER"})`);
  }
  const [, token] = pick("token", "NATS_TOKEN");
  if (token !== undefined) {
    out.token = String(token);
  }

  const authenticators = [];
  if (options.nkeySeed !== undefined && options.nkeySeed !== null) {
    authenticators.push(seedAuthenticator("nkeySeed", String(options.nkeySeed), null));
  } else {
    const [from, file] = pick("nkeyFile", "NATS_NKEY");
    if (file !== undefined) {
      authenticators.push(seedAuthenticator(from, read(from, file), file));
    }
  }
  if (options.creds !== undefined && options.creds !== null) {
    authenticators.push(credsAuth("creds", String(options.creds), null));
  } else {
    const [from, file] = pick("credsFile", "NATS_CREDS");
    if (file !== undefined) {
      authenticators.push(credsAuth(from, read(from, file), file));
    }
  }
  if (authenticators.length > 0) {
    out.authenticator = authenticators.length === 1 ? authenticators[0] : authenticators;
  }

  const tls = options.tls ?? {};
  if (typeof tls !== "object") {
    throw new ConnectSettingsError("tls", "must be an object {ca, cert, key, required, handshakeFirst}");
  }
  const tpick = (option, variable) => {
    if (tls[option] !== undefined && tls[option] !== null) {
      return [`tls.${option}`, tls[option]];
    }
    if (env[variable] !== undefined && env[variable] !== "") {
      return [variable, env[variable]];
    }
    return [null, undefined];
  };
  const [caFrom, ca] = tpick("ca", "NATS_CA");
  const [certFrom, cert] = tpick("cert", "NATS_CERT");
  const [keyFrom, key] = tpick("key", "NATS_KEY");
  if ((cert === undefined) !== (key === undefined)) {
    const [set, missing] = cert !== undefined ? [certFrom, "tls.key / NATS_KEY"] : [keyFrom, "tls.cert / NATS_CERT"];
    throw new ConnectSettingsError(set, `a client certificate and its key go together: ${missing} is not set`);
  }
  const first =
    tls.handshakeFirst !== undefined && tls.handshakeFirst !== null ? Boolean(tls.handshakeFirst) : flag(env.NATS_TLS_FIRST);
  const required = Boolean(tls.required);
  if (ca !== undefined || cert !== undefined || first || required) {
    const t = {};
    if (ca !== undefined) {
      t.ca = pem(caFrom, ca, "CA certificates");
    }
    if (cert !== undefined) {
      t.cert = pem(certFrom, cert, "a client certificate");
      t.key = pem(keyFrom, key, "a private key");
    }
    if (first) {
      t.handshakeFirst = true;
    }
    out.tls = t;
  }
  if (options.inboxPrefix !== undefined) {
    out.inboxPrefix = options.inboxPrefix;
  }
  if (options.name !== undefined) {
    out.name = options.name;
  }
  return out;
}

/**
 * Connects with the settings of `options` and the environment (connectionOptions), then
 * `options.nats` (any further nats.js connection options). Reconnects for ever once
 * connected; a first connection gives up after `options.connectTimeoutMs` (5 s).
 * Throws ConnectSettingsError before connecting, ConnectError when no server takes it.
 */
export async function connectNats(options = {}, env = process.env) {
  const settings = connectionOptions(options, env);
  const all = {
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    timeout: options.connectTimeoutMs ?? 5000,
    ...settings,
    ...(options.nats ?? {}),
  };
  try {
    return await natsConnect(all);
  } catch (error) {
    throw new ConnectError(`cannot connect to ${all.servers.join(",")}: ${error.message}`, { cause: error });
  }
}
