// Follower: one KV watch of the state bucket (`<prefix>_state`) for every breaker, keeping
// each key's newest decision (by id) in a DecisionState; values it cannot use are counted
// and skipped, and the watch starts again after the revision it last saw if it ends.

import { Kvm } from "@nats-io/kv";
import { jetstream } from "@nats-io/jetstream";

import { Breaker } from "./breaker.js";
import { DecisionState } from "./decision.js";
import { BucketNotFoundError, FuseboxError } from "./errors.js";
import { DEFAULT_PREFIX, checkName, isName, layout } from "./wire.js";

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function missingBucket(error) {
  const text = `${error?.message ?? ""} ${error?.cause?.message ?? ""}`.toLowerCase();
  return error?.name === "StreamNotFoundError" || text.includes("stream not found") || text.includes("not found");
}

/**
 * Follows the fleet's decisions. `Follower.start(nc, {node, prefix, bucketWaitMs,
 * maxKeys, onDecision, onRefused})` binds to the bucket (waiting up to `bucketWaitMs`,
 * default 0, for a Fusebox node to create it), starts the watch and resolves once the
 * current value of every key has been read (so `allow()` answers with the fleet's decision
 * from the first call).
 *
 * `stats()`: values applied, `stale` (not newer than the one in force), `refused` in all and
 * `refusals` by kind: `malformed`, `unsupported_version`, `wrong_breaker` (a value naming
 * another breaker than its key), `bad_key`, `deleted`, `too_many_keys`.
 */
export class Follower {
  constructor(nc, options = {}) {
    this.nc = nc;
    this.node = checkName("node", options.node);
    this.layout = layout(options.prefix ?? DEFAULT_PREFIX);
    this.bucket = this.layout.stateBucket;
    this.maxKeys = options.maxKeys ?? 100_000;
    this.onDecision = options.onDecision ?? null;
    this.onRefused = options.onRefused ?? null;
    this.js = options.js ?? jetstream(nc, options.jetstream ?? {});
    this._states = new Map();
    this._stats = { applied: 0, stale: 0, refused: 0, refusals: {}, watchRestarts: 0 };
    this._revision = 0;
    this._watch = null;
    this._stopped = false;
    this._loop = null;
    this._ready = null;
  }

  /** Creates a follower and starts it (see the class). */
  static async start(nc, options = {}) {
    const follower = new Follower(nc, options);
    await follower.start(options);
    return follower;
  }

  /** Binds to the bucket, starts watching, and waits until the current values are read. */
  async start({ bucketWaitMs = 0, readyTimeoutMs = 10_000 } = {}) {
    const deadline = Date.now() + bucketWaitMs;
    for (;;) {
      try {
        this.kv = await new Kvm(this.js).open(this.bucket, { bindOnly: true });
        await this.kv.status();
        break;
      } catch (error) {
        if (!missingBucket(error)) {
          throw error;
        }
        if (Date.now() >= deadline) {
          throw new BucketNotFoundError(this.bucket, { cause: error });
        }
        await sleep(100);
      }
    }
    let ready;
    this._ready = new Promise((resolve) => (ready = resolve));
    this._markReady = ready;
    await this._open();
    this._loop = this._run();
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new FuseboxError(`the current decisions of ${this.bucket} were not read within ${readyTimeoutMs} ms`)),
        readyTimeoutMs,
      );
    });
    try {
      await Promise.race([this._ready, timeout]);
    } catch (error) {
      await this.stop();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async _open() {
    const options = { key: ">" };
    if (this._revision > 0) {
      options.resumeFromRevision = this._revision + 1;
    }
    this._watch = await this.kv.watch(options);
    // The watch counts the values it has to deliver first (its consumer's pending count);
    // with none, the current state (no decisions) is read already.
    const info = await this._watch._data?.info?.(true).catch(() => null);
    if (info && info.num_pending === 0) {
      this._markReady();
    }
  }

  async _run() {
    while (!this._stopped) {
      try {
        for await (const entry of this._watch) {
          this._entry(entry);
          if (entry.isUpdate) {
            this._markReady();
          }
        }
      } catch {
        // Ended by an error: start again below.
      }
      if (this._stopped || this.nc.isClosed()) {
        return;
      }
      this._stats.watchRestarts += 1;
      for (;;) {
        await sleep(250);
        if (this._stopped || this.nc.isClosed()) {
          return;
        }
        try {
          await this._open();
          break;
        } catch {
          // The server is away: the decisions in force stay, try again.
        }
      }
    }
  }

  _refuse(kind, key, state) {
    this._stats.refused += 1;
    this._stats.refusals[kind] = (this._stats.refusals[kind] ?? 0) + 1;
    state?.refuse(kind);
    try {
      this.onRefused?.(kind, key);
    } catch {
      // A callback's error must not end the watch.
    }
  }

  _entry(entry) {
    if (entry.revision > this._revision) {
      this._revision = entry.revision;
    }
    const key = entry.key;
    if (!isName(key)) {
      this._refuse("bad_key", key, null);
      return;
    }
    let state = this._states.get(key);
    if (state === undefined) {
      if (this._states.size >= this.maxKeys) {
        this._refuse("too_many_keys", key, null);
        return;
      }
      state = new DecisionState(key, this.node);
      this._states.set(key, state);
    }
    if (entry.operation === "DEL" || entry.operation === "PURGE") {
      // Deciders never delete decisions: someone else did; the last good one stays.
      this._refuse("deleted", key, state);
      return;
    }
    const refusedBefore = state.refused;
    let decision;
    try {
      decision = state.offer(entry.value);
    } catch {
      decision = null;
      state.refuse("malformed");
    }
    if (state.refused > refusedBefore) {
      this._stats.refused += 1;
      const last = state.lastRefusal;
      this._stats.refusals[last] = (this._stats.refusals[last] ?? 0) + 1;
      try {
        this.onRefused?.(last, key);
      } catch {
        // ignored, as above
      }
      return;
    }
    if (decision === null) {
      this._stats.stale += 1;
      return;
    }
    this._stats.applied += 1;
    try {
      this.onDecision?.(decision);
    } catch {
      // ignored, as above
    }
  }

  /** The decisions of `name` (a DecisionState, created empty if no value was seen yet). */
  decisions(name) {
    checkName("breaker", name);
    let state = this._states.get(name);
    if (state === undefined) {
      state = new DecisionState(name, this.node);
      this._states.set(name, state);
    }
    return state;
  }

  /** A Breaker enforcing `name`'s decisions, reporting through `options.reporter` if given. */
  breaker(name, options = {}) {
    return new Breaker(name, this.decisions(name), options.reporter ?? null, options);
  }

  /** The counters (see the class). */
  stats() {
    return { ...this._stats, refusals: { ...this._stats.refusals }, keys: this._states.size };
  }

  /** Stops the watch (the connection stays open). */
  async stop() {
    this._stopped = true;
    this._watch?.stop();
    await this._loop?.catch(() => {});
  }
}
