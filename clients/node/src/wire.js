// The wire format a foreign app speaks (docs/wire-format.md): names and their rules, the
// subjects and bucket of a prefix, and the JSON outcome message. Pure: no NATS here.

import { ValidationError } from "./errors.js";

/** The foreign JSON format version this package writes and the decision version it reads. */
export const VERSION = 1;
/** Outcomes the decider understands. */
export const OUTCOMES = Object.freeze(["success", "failure", "slow", "ignored", "rejected"]);
/** The largest `count` of one event; bigger counts are split into several events. */
export const MAX_COUNT = 1_000_000;
/** The most events in one message; more go out in further messages. */
export const MAX_EVENTS = 1024;
/** The default prefix of every stream, bucket and subject. */
export const DEFAULT_PREFIX = "fusebox";

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const PREFIX = /^[a-z][a-z0-9_]{0,31}$/;

/** Whether `value` is a valid breaker name or node id (one subject token). */
export function isName(value) {
  return typeof value === "string" && NAME.test(value);
}

/** Returns `value` if it is a valid breaker name or node id, else throws ValidationError. */
export function checkName(what, value) {
  if (!isName(value)) {
    throw new ValidationError(`${what} ${JSON.stringify(value)} is not 1 to 64 bytes of [A-Za-z0-9_-]`);
  }
  return value;
}

/** Returns `prefix` if valid (1 to 32 bytes of [a-z0-9_], a letter first), else throws. */
export function checkPrefix(prefix) {
  if (typeof prefix !== "string" || !PREFIX.test(prefix)) {
    throw new ValidationError(`prefix ${JSON.stringify(prefix)} is not 1 to 32 bytes of [a-z0-9_] starting with a letter`);
  }
  return prefix;
}

/** The names a prefix gives (docs/nats.md, "Layout"). */
export function layout(prefix = DEFAULT_PREFIX) {
  checkPrefix(prefix);
  return Object.freeze({
    prefix,
    outcomeStream: `${prefix.toUpperCase()}_OUTCOMES`,
    stateBucket: `${prefix}_state`,
    outcomeSubject: (breaker, node) => `${prefix}.out.${checkName("breaker", breaker)}.${checkName("node", node)}`,
  });
}

/** Throws unless `outcome` is one of OUTCOMES. */
export function checkOutcome(outcome) {
  if (!OUTCOMES.includes(outcome)) {
    throw new ValidationError(`outcome ${JSON.stringify(outcome)} is not one of ${OUTCOMES.join(", ")}`);
  }
  return outcome;
}

/** Throws unless `count` is a positive safe integer (counts above MAX_COUNT are split). */
export function checkCount(count) {
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new ValidationError(`count ${String(count)} is not a positive integer`);
  }
  return count;
}

/** Throws unless `applied` is null/undefined or a decision id `{term, seq}` of safe integers. */
export function checkApplied(applied) {
  if (applied === null || applied === undefined) {
    return null;
  }
  if (
    typeof applied !== "object" ||
    !Number.isSafeInteger(applied.term) ||
    !Number.isSafeInteger(applied.seq) ||
    applied.term < 0 ||
    applied.seq < 0
  ) {
    throw new ValidationError(`applied ${JSON.stringify(applied)} is not {term, seq} of unsigned integers`);
  }
  return { term: applied.term, seq: applied.seq };
}

/**
 * Adds `count` calls of `outcome` to run-length encoded `events` (`[outcome, count]` pairs
 * in call order): merged into the last run when it has the same outcome and room, split
 * into runs of at most MAX_COUNT otherwise. Returns how many runs were added.
 */
export function addRun(events, outcome, count) {
  let added = 0;
  let left = count;
  const last = events[events.length - 1];
  if (last !== undefined && last[0] === outcome && last[1] < MAX_COUNT) {
    const take = Math.min(left, MAX_COUNT - last[1]);
    last[1] += take;
    left -= take;
  }
  while (left > 0) {
    const take = Math.min(left, MAX_COUNT);
    events.push([outcome, take]);
    left -= take;
    added += 1;
  }
  return added;
}

/**
 * The batch message of `events` (`[outcome, count]` runs, 1 to MAX_EVENTS of them, each
 * count 1 to MAX_COUNT) for `breaker` from `node`, attributed to `applied` if given.
 */
export function batchMessage(breaker, node, events, applied = null) {
  checkName("breaker", breaker);
  checkName("node", node);
  if (!Array.isArray(events) || events.length < 1 || events.length > MAX_EVENTS) {
    throw new ValidationError(`a batch has 1 to ${MAX_EVENTS} events, not ${events?.length}`);
  }
  const message = { version: VERSION, breaker, node };
  const id = checkApplied(applied);
  if (id !== null) {
    message.applied = id;
  }
  message.events = events.map(([outcome, count]) => {
    checkOutcome(outcome);
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_COUNT) {
      throw new ValidationError(`count ${String(count)} is not an integer from 1 to ${MAX_COUNT}`);
    }
    return count === 1 ? { outcome } : { outcome, count };
  });
  return message;
}
