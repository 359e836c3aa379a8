// Types of @fusebox/client (hand-written; the package is plain ESM JavaScript with no build
// step). test/types/usage.ts is type-checked against this file by tests/tests/node_client.rs.

import type { NatsConnection, NodeConnectionOptions } from "@nats-io/transport-node";
import type { JetStreamClient, JetStreamOptions } from "@nats-io/jetstream";

export type Outcome = "success" | "failure" | "slow" | "ignored" | "rejected";
export type PermitOutcome = Exclude<Outcome, "rejected">;
export type State =
  | "closed"
  | "ramping"
  | "open"
  | "half_open"
  | "forced_open"
  | "forced_closed"
  | "disabled"
  | "metrics_only";
export type RefusalKind =
  | "malformed"
  | "unsupported_version"
  | "wrong_breaker"
  | "bad_key"
  | "deleted"
  | "too_many_keys";
export type RejectionWhy = "open" | "forced_open" | "no_grant" | "probes_used" | "ramping";

/** A decision's id: decisions are ordered by `(term, seq)`. */
export interface DecisionId {
  readonly term: number;
  readonly seq: number;
}

/** The part of a stored decision a follower needs; `raw` is the whole JSON object. */
export interface Decision {
  readonly breaker: string;
  readonly id: DecisionId;
  readonly phase: DecisionId;
  readonly state: State;
  /** Half-open probes granted, by node id. */
  readonly grants: ReadonlyMap<string, number>;
  readonly admitPerMille: number;
  /** `reason.kind` (`tripped`, `probes_succeeded`, ...). */
  readonly reason: string;
  readonly raw: Record<string, unknown>;
}

export interface TlsSettings {
  /** PEM file of the CA certificates the server's must chain to (NATS_CA). */
  ca?: string;
  /** PEM file of a client certificate, for mutual TLS (NATS_CERT); needs `key`. */
  cert?: string;
  /** PEM file of its private key (NATS_KEY). */
  key?: string;
  /** Refuse a server without TLS. */
  required?: boolean;
  /** The TLS handshake before the server's INFO (NATS_TLS_FIRST=1). */
  handshakeFirst?: boolean;
}

/** Connection settings; each one given wins over its environment variable. */
export interface ConnectionSettings {
  /** URLs (`nats://host:port`, `tls://...`), an array or comma-separated (NATS_URL). */
  servers?: string | string[];
  user?: string;
  password?: string;
  token?: string;
  /** An nkey user seed (`SU...`). */
  nkeySeed?: string;
  /** A file holding an nkey user seed (NATS_NKEY). */
  nkeyFile?: string;
  /** The text of a `.creds` file. */
  creds?: string;
  /** A `.creds` file (NATS_CREDS). */
  credsFile?: string;
  tls?: TlsSettings;
  inboxPrefix?: string;
  name?: string;
  /** How long a first connection may take (default 5000). */
  connectTimeoutMs?: number;
  /** Further nats.js connection options, applied last. */
  nats?: Partial<NodeConnectionOptions>;
}

export type Env = Record<string, string | undefined>;

export declare const DEFAULT_URL: string;
export declare function connectionOptions(options?: ConnectionSettings, env?: Env): NodeConnectionOptions;
export declare function parseServers(setting: string, servers: string | string[]): string[];
export declare function connectNats(options?: ConnectionSettings, env?: Env): Promise<NatsConnection>;

export interface Ended {
  ok: boolean;
  error?: unknown;
  result?: unknown;
  durationMs: number;
}
export type Classifier = (ended: Ended) => PermitOutcome;
export declare function defaultClassify(ended: Ended): PermitOutcome;

export interface BreakerOptions {
  /** A success that took at least this long is reported as `slow`. */
  slowMs?: number;
  classify?: Classifier;
}

export interface ReporterOptions {
  node: string;
  prefix?: string;
  /** How long outcomes wait before they are sent (default 50). */
  flushIntervalMs?: number;
  /** Runs of outcomes that may wait; past it the oldest are dropped (default 100000). */
  maxBufferedEvents?: number;
  ackTimeoutMs?: number;
  /** Attempts per message, under one Nats-Msg-Id (default 8). */
  maxAttempts?: number;
  retryBackoffMs?: number;
  maxRetryBackoffMs?: number;
  onError?: (error: PublishError) => void;
  js?: JetStreamClient;
  jetstream?: JetStreamOptions;
}

export interface ReporterStats {
  recordedCalls: number;
  bufferedCalls: number;
  bufferedEvents: number;
  messagesSent: number;
  callsSent: number;
  duplicates: number;
  retries: number;
  droppedMessages: number;
  /** Calls given up, by why. */
  dropped: { overflow: number; refused: number; gaveUp: number; closed: number };
}

export declare const REPORTER_DEFAULTS: Readonly<Required<Pick<ReporterOptions,
  "flushIntervalMs" | "maxBufferedEvents" | "ackTimeoutMs" | "maxAttempts" | "retryBackoffMs" | "maxRetryBackoffMs">>>;

export declare class Reporter {
  constructor(nc: NatsConnection, options: ReporterOptions);
  readonly node: string;
  readonly incarnation: string;
  record(breaker: string, outcome: Outcome, count?: number, applied?: DecisionId | null): void;
  success(breaker: string, count?: number, applied?: DecisionId | null): void;
  failure(breaker: string, count?: number, applied?: DecisionId | null): void;
  slow(breaker: string, count?: number, applied?: DecisionId | null): void;
  ignored(breaker: string, count?: number, applied?: DecisionId | null): void;
  rejected(breaker: string, count?: number, applied?: DecisionId | null): void;
  flushSoon(): void;
  flush(): Promise<void>;
  close(): Promise<void>;
  stats(): ReporterStats;
}

export declare class DecisionState {
  constructor(breaker: string, node: string);
  readonly breaker: string;
  readonly node: string;
  readonly decision: Decision | null;
  readonly refused: number;
  readonly refusals: Partial<Record<RefusalKind, number>>;
  appliedId(): DecisionId | null;
  offer(data: Uint8Array | string): Decision | null;
  apply(decision: Decision): boolean;
  refuse(kind: RefusalKind): void;
  probesLeft(): number;
  admit(): { admitted: boolean; probe: boolean; why: RejectionWhy | null; decision: Decision | null };
  wouldAdmit(): boolean;
}

export declare class Permit {
  readonly probe: boolean;
  readonly decisionId: DecisionId | null;
  readonly startedAt: number;
  readonly done: boolean;
  report(outcome: PermitOutcome): boolean;
  success(): boolean;
  failure(): boolean;
  slow(): boolean;
  ignored(): boolean;
  finish(ended?: { ok?: boolean; error?: unknown; result?: unknown }): PermitOutcome | null;
}

export declare class Breaker {
  constructor(name: string, decisions: DecisionState, reporter?: Reporter | null, options?: BreakerOptions);
  readonly name: string;
  readonly decision: Decision | null;
  readonly state: State;
  readonly probesLeft: number;
  readonly counters: { admitted: number; probes: number; rejected: number; classifyErrors: number };
  /** A permit, or throws BreakerRejectedError (the rejection is reported as demand). */
  allow(): Permit;
  call<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>, ...args: A): Promise<R>;
  wrap<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>): (...args: A) => Promise<R>;
}

export interface FollowerOptions {
  node: string;
  prefix?: string;
  maxKeys?: number;
  bucketWaitMs?: number;
  readyTimeoutMs?: number;
  onDecision?: (decision: Decision) => void;
  onRefused?: (kind: RefusalKind, key: string) => void;
  js?: JetStreamClient;
  jetstream?: JetStreamOptions;
}

export interface FollowerStats {
  applied: number;
  stale: number;
  refused: number;
  refusals: Partial<Record<RefusalKind, number>>;
  watchRestarts: number;
  keys: number;
}

export declare class Follower {
  constructor(nc: NatsConnection, options: FollowerOptions);
  static start(nc: NatsConnection, options: FollowerOptions): Promise<Follower>;
  readonly bucket: string;
  start(options?: { bucketWaitMs?: number; readyTimeoutMs?: number }): Promise<void>;
  decisions(name: string): DecisionState;
  breaker(name: string, options?: BreakerOptions & { reporter?: Reporter | null }): Breaker;
  stats(): FollowerStats;
  stop(): Promise<void>;
}

export interface ClientOptions extends ConnectionSettings, BreakerOptions {
  /** This service's node id: the last token of its outcome subjects, the name in grants. */
  node: string;
  prefix?: string;
  reporter?: Omit<ReporterOptions, "node" | "prefix">;
  /** Follow the state bucket (default true). */
  follow?: boolean;
  bucketWaitMs?: number;
  onDecision?: (decision: Decision) => void;
  onRefused?: (kind: RefusalKind, key: string) => void;
}

export declare class FuseboxClient {
  readonly nc: NatsConnection;
  readonly reporter: Reporter;
  readonly follower: Follower | null;
  readonly node: string;
  breaker(name: string, options?: BreakerOptions): Breaker;
  close(): Promise<void>;
}

export declare function connect(options: ClientOptions, env?: Env): Promise<FuseboxClient>;

export declare const VERSION: 1;
export declare const OUTCOMES: readonly Outcome[];
export declare const MAX_COUNT: number;
export declare const MAX_EVENTS: number;
export declare const DEFAULT_PREFIX: string;
export declare const STATES: readonly State[];
export declare const ALLOWING: readonly State[];

export interface OutcomeMessage {
  version: 1;
  breaker: string;
  node: string;
  applied?: DecisionId;
  events: { outcome: Outcome; count?: number }[];
}
export declare function batchMessage(
  breaker: string,
  node: string,
  events: [Outcome, number][],
  applied?: DecisionId | null,
): OutcomeMessage;
export declare function layout(prefix?: string): {
  readonly prefix: string;
  readonly outcomeStream: string;
  readonly stateBucket: string;
  outcomeSubject(breaker: string, node: string): string;
};
export declare function isName(value: unknown): value is string;
export declare function checkName(what: string, value: unknown): string;
export declare function parseDecision(data: Uint8Array | string, breaker: string): Decision;
export declare function compareIds(a: DecisionId, b: DecisionId): number;

export declare class FuseboxError extends Error {}
export declare class ConnectSettingsError extends FuseboxError {
  readonly setting: string;
}
export declare class ConnectError extends FuseboxError {}
export declare class ValidationError extends FuseboxError {}
export declare class BucketNotFoundError extends FuseboxError {
  readonly bucket: string;
}
export declare class DecisionError extends FuseboxError {
  readonly kind: RefusalKind;
}
export declare class BreakerRejectedError extends FuseboxError {
  readonly breaker: string;
  readonly state: State;
  readonly why: RejectionWhy;
  readonly decisionId: DecisionId | null;
}
export declare class PublishError extends FuseboxError {
  readonly subject: string;
  readonly calls: number;
  readonly byPermissions: boolean;
}
