// The typed errors of @fusebox/client: every error this package throws on purpose is a
// FuseboxError, so a caller can tell them from the app's own and from the NATS client's.

/** The base class of every error this package throws on purpose. */
export class FuseboxError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A connection setting that cannot be used (an unreadable file, a bad URL, a certificate
 * without its key, ...), raised before anything connects. `setting` names it as the caller
 * gave it: an option (`tls.ca`) or an environment variable (`NATS_CA`).
 */
export class ConnectSettingsError extends FuseboxError {
  constructor(setting, message, options) {
    super(`${setting}: ${message}`, options);
    this.setting = setting;
  }
}

/** No NATS server could be reached or it refused the connection (`cause` says why). */
export class ConnectError extends FuseboxError {
  constructor(message, options) {
    super(message, options);
  }
}

/** A breaker name, node id, prefix, outcome or count outside what the wire format allows. */
export class ValidationError extends FuseboxError {}

/** The state bucket does not exist: no Fusebox node has run against this server yet. */
export class BucketNotFoundError extends FuseboxError {
  constructor(bucket, options) {
    super(`bucket ${bucket} does not exist (no Fusebox node has provisioned it)`, options);
    this.bucket = bucket;
  }
}

/**
 * A call the fleet's decision does not let through. `state` is the decision's state
 * (`open`, `forced_open`, `half_open`, `ramping`), `why` says more: `open`, `forced_open`,
 * `no_grant` (half-open, this node was granted no probe), `probes_used` (half-open, this
 * node's probes are all out), `ramping` (held back by the ramp's admission rate).
 * `decisionId` is the `{term, seq}` of the decision in force.
 */
export class BreakerRejectedError extends FuseboxError {
  constructor(breaker, state, why, decisionId) {
    super(`breaker ${breaker} rejected the call: ${state}${why !== state ? ` (${why})` : ""}`);
    this.breaker = breaker;
    this.state = state;
    this.why = why;
    this.decisionId = decisionId;
  }
}

/**
 * A message the stream did not take: refused by the server's permissions
 * (`byPermissions`), or not acknowledged after every attempt. Handed to the reporter's
 * `onError`; the calls it carried are counted as dropped.
 */
export class PublishError extends FuseboxError {
  constructor(message, { subject, calls, byPermissions = false, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.subject = subject;
    this.calls = calls;
    this.byPermissions = byPermissions;
  }
}
