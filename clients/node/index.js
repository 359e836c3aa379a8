// @fusebox/client: the package's entry point; re-exports the public API of src/.

export { connect, FuseboxClient } from "./src/client.js";
export { connectNats, connectionOptions, parseServers, DEFAULT_URL } from "./src/connect.js";
export { Reporter, REPORTER_DEFAULTS } from "./src/reporter.js";
export { Follower } from "./src/follower.js";
export { Breaker, Permit, defaultClassify } from "./src/breaker.js";
export { DecisionState, DecisionError, parseDecision, compareIds, STATES, ALLOWING } from "./src/decision.js";
export {
  VERSION,
  OUTCOMES,
  MAX_COUNT,
  MAX_EVENTS,
  DEFAULT_PREFIX,
  batchMessage,
  layout,
  isName,
  checkName,
} from "./src/wire.js";
export {
  FuseboxError,
  ConnectSettingsError,
  ConnectError,
  ValidationError,
  BucketNotFoundError,
  BreakerRejectedError,
  PublishError,
} from "./src/errors.js";
