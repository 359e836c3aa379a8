// FuseboxClient: the few lines a service writes — connect once (connect.js), then a Reporter
// and a Follower sharing the connection, and breaker(name) handles wired to both.

import { connectNats } from "./connect.js";
import { Follower } from "./follower.js";
import { Reporter } from "./reporter.js";
import { checkName } from "./wire.js";

/**
 * Connects and starts reporting and following. `options`: `node` (this service's node id,
 * required), `prefix`, the connection settings of connect.js (or the environment),
 * `reporter` (Reporter options), `follow` (default true; false: report only, e.g. with
 * publish-only credentials), `bucketWaitMs`, `slowMs`, `classify` (defaults of every
 * breaker), `nats` (further nats.js options). Throws ConnectSettingsError, ConnectError,
 * BucketNotFoundError.
 */
export async function connect(options = {}, env = process.env) {
  checkName("node", options.node);
  const nc = await connectNats(options, env);
  try {
    const reporter = new Reporter(nc, { ...(options.reporter ?? {}), node: options.node, prefix: options.prefix });
    let follower = null;
    if (options.follow !== false) {
      follower = await Follower.start(nc, {
        node: options.node,
        prefix: options.prefix,
        bucketWaitMs: options.bucketWaitMs ?? 0,
        onDecision: options.onDecision,
        onRefused: options.onRefused,
      });
    }
    return new FuseboxClient(nc, reporter, follower, options);
  } catch (error) {
    await nc.close().catch(() => {});
    throw error;
  }
}

/** What connect() returns: `nc`, `reporter`, `follower`, `breaker(name)`, `close()`. */
export class FuseboxClient {
  constructor(nc, reporter, follower, options = {}) {
    this.nc = nc;
    this.reporter = reporter;
    this.follower = follower;
    this.node = options.node;
    this._defaults = { slowMs: options.slowMs, classify: options.classify };
    this._breakers = new Map();
  }

  /** The Breaker `name` (one per name), enforcing the fleet's decisions and reporting outcomes. */
  breaker(name, options = {}) {
    let breaker = this._breakers.get(name);
    if (breaker === undefined) {
      const merged = { ...this._defaults, ...options, reporter: this.reporter };
      for (const key of Object.keys(merged)) {
        if (merged[key] === undefined) {
          delete merged[key];
        }
      }
      if (this.follower === null) {
        throw new Error("breaker() needs the follower: connect with follow: true");
      }
      breaker = this.follower.breaker(name, merged);
      this._breakers.set(name, breaker);
    }
    return breaker;
  }

  /** Sends what waits, stops following and closes the connection. */
  async close() {
    await this.reporter.close();
    await this.follower?.stop();
    await this.nc.drain().catch(() => {});
  }
}
