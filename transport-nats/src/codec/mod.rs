//! The wire codecs of the NATS transport: outcome reports (postcard from Rust nodes, JSON
//! from foreign apps), decisions and breaker configs (JSON in KV buckets, so any language
//! can read them), operator commands (JSON on the control stream) and `describe` requests
//! and answers (JSON over core NATS request/reply).
//!
//! Every decoder checks the size first (before any parsing), then the version (so a message
//! of a newer version is [`DecodeError::UnsupportedVersion`], never "malformed"), then the
//! whole message, then its identity against the subject or key it arrived on. Every failure
//! is a typed [`DecodeError`] whose [`kind`](DecodeError::kind) a consumer counts before it
//! acks the message and moves on: a bad message never stops a consumer.
//!
//! `docs/wire-format.md` is the user's copy of these formats, with the JSON Schema of the
//! foreign outcome messages; its examples are decoded by this module's tests. The JSON of
//! decisions, commands and describe answers is spelled by this module's own wire types
//! (`codec/wire.rs`), and that of config envelopes by `codec/wire_config.rs`, not by the serde derives of the
//! core's types, so the core cannot change it unnoticed.

mod json;
mod wire;
mod wire_config;

use std::fmt;

use breaker_actors::machine::{
    BreakerConfig, BreakerName, Command, ConfigRecord, ConfigSource, Contribution, DeciderView, Decision, DecisionId,
    FleetState, MAX_TEXT_LEN, NodeId, OutcomeCounts, OverrideError, Reason, Report, Term, VectorClock, WIRE_VERSION,
    WindowCounts, check_override,
};
use breaker_actors::transport::Description;
use serde::{Deserialize, Serialize};

use self::json::{ObjectOnly, present};

/// The header naming a payload's format.
pub const CONTENT_TYPE: &str = "Content-Type";
/// The media type of JSON payloads (foreign outcomes, decisions, commands, configs).
pub const JSON: &str = "application/json";
/// The media type of postcard reports from Rust nodes.
pub const POSTCARD: &str = "application/x-fusebox-postcard";
/// The media type of a node's batch of postcard reports ([`NodeBatch`]).
pub const POSTCARD_BATCH: &str = "application/x-fusebox-batch+postcard";
/// The version of [`NodeBatch`], separate from [`WIRE_VERSION`] (the report inside).
pub const BATCH_VERSION: u16 = 1;
/// The default [`Limits::max_batch_payload`]: 1 MiB, the default `max_payload` of a
/// nats-server (a node's batcher sends at most 256 KiB).
pub const DEFAULT_MAX_BATCH_PAYLOAD: usize = 1024 * 1024;
/// The default [`Limits::max_batch_reports`].
pub const DEFAULT_MAX_BATCH_REPORTS: usize = 20_000;
/// `JetStream`'s deduplication header. Rust nodes set it to
/// `<breaker>:<node>:<incarnation>:<seq>` ([`report_msg_id`]).
pub const MSG_ID: &str = "Nats-Msg-Id";

/// The default [`Limits::max_payload`]: 64 KiB. A Rust report with a full clock is under
/// 10 KiB, and a full batch of foreign events written compactly about 45 KiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;
/// The default [`Limits::max_batch_events`].
pub const DEFAULT_MAX_BATCH_EVENTS: usize = 1024;
/// The largest `count` one foreign event may carry: large enough for any real flush, small
/// enough that a batch can never come near overflowing a counter.
pub const MAX_EVENT_COUNT: u64 = 1_000_000;
/// The version of the config envelope. Separate from [`WIRE_VERSION`] because the envelope
/// and the report format evolve independently.
pub const CONFIG_VERSION: u16 = 1;

/// What a decoder accepts at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest payload, in bytes, checked before any parsing.
    pub max_payload: usize,
    /// The most events in one foreign batch.
    pub max_batch_events: usize,
    /// The largest node batch ([`NodeBatch`]), in bytes, checked before any parsing.
    pub max_batch_payload: usize,
    /// The most reports in one node batch.
    pub max_batch_reports: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_batch_events: DEFAULT_MAX_BATCH_EVENTS,
            max_batch_payload: DEFAULT_MAX_BATCH_PAYLOAD,
            max_batch_reports: DEFAULT_MAX_BATCH_REPORTS,
        }
    }
}

/// A payload's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// postcard, from Rust nodes.
    Postcard,
    /// JSON.
    Json,
}

impl Format {
    /// The media type to put in [`CONTENT_TYPE`].
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Postcard => POSTCARD,
            Self::Json => JSON,
        }
    }

    /// A short name for messages and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postcard => "postcard",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The format of an outcome payload. A [`CONTENT_TYPE`] of [`JSON`] or [`POSTCARD`]
/// (case-insensitive, parameters such as `; charset=utf-8` ignored) decides. Without one,
/// or with any other media type, the payload decides: JSON if its first non-whitespace
/// byte is `{` or `[`, postcard otherwise. The fallback is for people publishing by hand
/// (`nats pub` without `-H`); it cannot mistake a current report for JSON, whose first
/// byte is its version (1).
pub fn format_of(content_type: Option<&str>, payload: &[u8]) -> Format {
    if let Some(content_type) = content_type {
        let media = content_type.split_once(';').map_or(content_type, |(media, _)| media).trim();
        if media.eq_ignore_ascii_case(JSON) {
            return Format::Json;
        }
        if media.eq_ignore_ascii_case(POSTCARD) {
            return Format::Postcard;
        }
    }
    match payload.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        Some(b'{' | b'[') => Format::Json,
        _ => Format::Postcard,
    }
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than [`Limits::max_payload`]; not parsed at all.
    Oversized {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a valid message of its format: bad bytes, truncated, trailing data, a missing
    /// or unknown field, an unknown outcome, an invalid name, a wrong shape.
    Malformed {
        /// The format it was read as.
        format: Format,
        /// What the parser said.
        detail: String,
    },
    /// A version this code does not read.
    UnsupportedVersion {
        /// The version in the message.
        got: u16,
    },
    /// The message names another breaker than its subject or key.
    WrongBreaker {
        /// The breaker of the subject or key.
        expected: BreakerName,
        /// The breaker in the message.
        got: BreakerName,
    },
    /// The message names another node than its subject.
    WrongNode {
        /// The node of the subject.
        expected: NodeId,
        /// The node in the message.
        got: NodeId,
    },
    /// A subject that is not `<prefix>.out.<breaker>.<node>` with valid names, or another
    /// breaker's than the consumer's.
    BadSubject {
        /// The subject.
        subject: String,
    },
    /// A foreign batch without events.
    EmptyBatch,
    /// A foreign batch with more than [`Limits::max_batch_events`] events.
    TooManyEvents {
        /// Events in the batch.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A foreign event's `count` outside `1..=`[`MAX_EVENT_COUNT`].
    InvalidCount {
        /// The count given.
        count: u64,
    },
    /// Free text over [`MAX_TEXT_LEN`] characters.
    TextTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A vector clock breaking its invariants (unsorted, duplicate or zero entries, over
    /// the cap): checked here so that it is counted with the other refusals.
    MalformedClock,
    /// A command's `duration_ms` that cannot be (zero, over 7 days, on a reset).
    BadOverride(OverrideError),
}

impl DecodeError {
    /// Every [`DecodeError::kind`], in declaration order (the `kind` values of the
    /// `fusebox_refused_messages_total` metric).
    pub const KINDS: [&'static str; 12] = [
        "oversized",
        "malformed",
        "unsupported_version",
        "wrong_breaker",
        "wrong_node",
        "bad_subject",
        "empty_batch",
        "too_many_events",
        "invalid_count",
        "text_too_long",
        "malformed_clock",
        "bad_override",
    ];

    /// A short, stable label for metrics counters (one of [`DecodeError::KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::Malformed { .. } => "malformed",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::WrongBreaker { .. } => "wrong_breaker",
            Self::WrongNode { .. } => "wrong_node",
            Self::BadSubject { .. } => "bad_subject",
            Self::EmptyBatch => "empty_batch",
            Self::TooManyEvents { .. } => "too_many_events",
            Self::InvalidCount { .. } => "invalid_count",
            Self::TextTooLong { .. } => "text_too_long",
            Self::MalformedClock => "malformed_clock",
            Self::BadOverride(_) => "bad_override",
        }
    }

    fn malformed(format: Format, detail: impl fmt::Display) -> Self {
        Self::Malformed { format, detail: detail.to_string() }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Oversized { len, max } => write!(f, "payload of {len} bytes exceeds the limit of {max}"),
            Self::Malformed { format, detail } => write!(f, "malformed {format} payload: {detail}"),
            Self::UnsupportedVersion { got } => write!(f, "unsupported version {got}"),
            Self::WrongBreaker { expected, got } => write!(f, "message for breaker {got:?} arrived for {expected:?}"),
            Self::WrongNode { expected, got } => {
                write!(f, "message from node {got:?} arrived on {expected:?}'s subject")
            }
            Self::BadSubject { subject } => write!(f, "{subject:?} is not an outcome subject of valid names"),
            Self::EmptyBatch => f.write_str("batch without events"),
            Self::TooManyEvents { len, max } => write!(f, "batch of {len} events exceeds the limit of {max}"),
            Self::InvalidCount { count } => write!(f, "event count {count} is outside 1..={MAX_EVENT_COUNT}"),
            Self::TextTooLong { field, len, max } => {
                write!(f, "{field} is {len} characters long, at most {max} allowed")
            }
            Self::MalformedClock => f.write_str("vector clock breaks its invariants"),
            Self::BadOverride(e) => write!(f, "invalid duration_ms: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::BadOverride(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a value could not be encoded. The types encoded here have no failing `Serialize`,
/// so this is not expected in practice; it is typed rather than a panic all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    /// The format being written.
    pub format: Format,
    /// What the serializer said.
    pub detail: String,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode as {}: {}", self.format, self.detail)
    }
}

impl std::error::Error for EncodeError {}

fn encode_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(value).map_err(|e| EncodeError { format: Format::Json, detail: e.to_string() })
}

fn check_size(payload: &[u8], limits: &Limits) -> Result<(), DecodeError> {
    if payload.len() > limits.max_payload {
        return Err(DecodeError::Oversized { len: payload.len(), max: limits.max_payload });
    }
    Ok(())
}

fn check_breaker(expected: &BreakerName, got: &BreakerName) -> Result<(), DecodeError> {
    if expected != got {
        return Err(DecodeError::WrongBreaker { expected: expected.clone(), got: got.clone() });
    }
    Ok(())
}

fn check_node(expected: &NodeId, got: &NodeId) -> Result<(), DecodeError> {
    if expected != got {
        return Err(DecodeError::WrongNode { expected: expected.clone(), got: got.clone() });
    }
    Ok(())
}

fn check_text(field: &'static str, text: &str) -> Result<(), DecodeError> {
    // Characters, not bytes: JSON Schema's `maxLength` counts characters, and the schemas
    // under `schemas/` must agree with this decoder (at most 1 KiB of UTF-8 either way).
    let len = text.chars().count();
    if len > MAX_TEXT_LEN {
        return Err(DecodeError::TextTooLong { field, len, max: MAX_TEXT_LEN });
    }
    Ok(())
}

fn check_clock(clock: &VectorClock) -> Result<(), DecodeError> {
    if !clock.is_well_formed() {
        return Err(DecodeError::MalformedClock);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Outcome reports
// ---------------------------------------------------------------------------------------

/// A decoded outcome message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A Rust node's postcard report.
    Report(Report),
    /// A foreign app's JSON event or batch; it becomes a report with
    /// [`ForeignOutcomes::into_report`].
    Foreign(ForeignOutcomes),
}

/// A foreign app's outcomes from one message: a batch summed into one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForeignOutcomes {
    /// The outcomes, summed (saturating).
    pub counts: OutcomeCounts,
    /// The longest run of consecutive failed calls in event order: a failure event of
    /// count `n` is a run of `n`; success and slow end a run; ignored and rejected calls
    /// neither extend nor end it.
    pub longest_failure_streak: u64,
    /// The decision the app says it had applied (read from the state bucket).
    pub applied: Option<DecisionId>,
}

impl ForeignOutcomes {
    /// The report these outcomes stand for. Foreign publishers are incarnation 0; `seq` is
    /// the message's stream sequence, which grows with every message of the stream, so the
    /// decider's per-node dedupe by `(incarnation, seq)` holds. `applied` is the newest
    /// decision the caller knows for the breaker, used when the app did not say; the clock
    /// is that decision's term with the foreign node ticked once.
    pub fn into_report(self, breaker: BreakerName, node: NodeId, seq: u64, applied: DecisionId) -> Report {
        let applied = self.applied.unwrap_or(applied);
        let mut clock = VectorClock::new(applied.term);
        clock.tick(&node);
        Report {
            version: WIRE_VERSION,
            breaker,
            node,
            incarnation: 0,
            seq,
            applied,
            clock,
            counts: self.counts,
            longest_failure_streak: self.longest_failure_streak,
            local_open: false,
        }
    }

    fn record(&mut self, outcome: ForeignOutcome, count: u64, streak: &mut u64) {
        let counter = match outcome {
            ForeignOutcome::Success => &mut self.counts.success,
            ForeignOutcome::Failure => &mut self.counts.failure,
            ForeignOutcome::Slow => &mut self.counts.slow,
            ForeignOutcome::Ignored => &mut self.counts.ignored,
            ForeignOutcome::Rejected => &mut self.counts.rejected,
        };
        *counter = counter.saturating_add(count);
        match outcome {
            ForeignOutcome::Failure => {
                *streak = streak.saturating_add(count);
                self.longest_failure_streak = self.longest_failure_streak.max(*streak);
            }
            ForeignOutcome::Success | ForeignOutcome::Slow => *streak = 0,
            ForeignOutcome::Ignored | ForeignOutcome::Rejected => {}
        }
    }
}

/// The `Nats-Msg-Id` of a Rust node's report: `<breaker>:<node>:<incarnation>:<seq>`, so a
/// republished report is dropped within the stream's duplicate window. The breaker is part
/// of it because `JetStream` deduplicates by id across the whole stream, not per subject,
/// and `seq` counts per breaker: `<node>:<incarnation>:<seq>` alone would make one
/// breaker's report a "duplicate" of another's. Names hold no `:`, so the id is unambiguous.
pub fn report_msg_id(report: &Report) -> String {
    format!("{}:{}:{}:{}", report.breaker, report.node, report.incarnation, report.seq)
}

/// A Rust node's report, in postcard. Its first field is the version, so a reader finds
/// the version before anything else.
pub fn encode_report(report: &Report) -> Result<Vec<u8>, EncodeError> {
    postcard::to_stdvec(report).map_err(|e| EncodeError { format: Format::Postcard, detail: e.to_string() })
}

/// One message of a Rust node's reports, every breaker's in one (`docs/wire-format.md`):
/// published on `<prefix>.out.~batch.<node>` with [`CONTENT_TYPE`] [`POSTCARD_BATCH`] and
/// [`MSG_ID`] [`batch_msg_id`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBatch {
    /// [`BATCH_VERSION`].
    pub version: u16,
    /// The sending node: every report's node.
    pub node: NodeId,
    /// The node's incarnation.
    pub incarnation: u64,
    /// Position among the incarnation's batches, from 1.
    pub seq: u64,
    /// The reports, at most a run per breaker.
    pub reports: Vec<Report>,
}

/// The deduplication id of a node's batch: `~batch:<node>:<incarnation>:<seq>`.
pub fn batch_msg_id(node: &NodeId, incarnation: u64, seq: u64) -> String {
    format!("~batch:{node}:{incarnation}:{seq}")
}

/// Encodes a node batch.
pub fn encode_batch(batch: &NodeBatch) -> Result<Vec<u8>, EncodeError> {
    postcard::to_stdvec(batch).map_err(|e| EncodeError { format: Format::Postcard, detail: e.to_string() })
}

/// Decodes a node batch from `node`'s batch subject: the size first, the version before
/// anything else, the batch's node against the subject's. A report inside that does not
/// check (another node's, a bad clock, another wire version) is refused on its own and
/// returned as an error beside the batch; the others stand.
pub fn decode_batch(
    node: &NodeId,
    payload: &[u8],
    limits: &Limits,
) -> Result<(NodeBatch, Vec<DecodeError>), DecodeError> {
    if payload.len() > limits.max_batch_payload {
        return Err(DecodeError::Oversized { len: payload.len(), max: limits.max_batch_payload });
    }
    let (version, _) =
        postcard::take_from_bytes::<u16>(payload).map_err(|e| DecodeError::malformed(Format::Postcard, e))?;
    if version != BATCH_VERSION {
        return Err(DecodeError::UnsupportedVersion { got: version });
    }
    let (mut batch, rest) =
        postcard::take_from_bytes::<NodeBatch>(payload).map_err(|e| DecodeError::malformed(Format::Postcard, e))?;
    if !rest.is_empty() {
        return Err(DecodeError::malformed(Format::Postcard, format_args!("{} trailing bytes", rest.len())));
    }
    check_node(node, &batch.node)?;
    if batch.reports.len() > limits.max_batch_reports {
        return Err(DecodeError::TooManyEvents { len: batch.reports.len(), max: limits.max_batch_reports });
    }
    let mut refused = Vec::new();
    batch.reports.retain(|report| {
        let checked = if report.version == WIRE_VERSION {
            check_node(node, &report.node).and_then(|()| check_clock(&report.clock))
        } else {
            Err(DecodeError::UnsupportedVersion { got: report.version })
        };
        match checked {
            Ok(()) => true,
            Err(e) => {
                refused.push(e);
                false
            }
        }
    });
    Ok((batch, refused))
}

/// Decodes a message from the outcome subject of `breaker` and `node` (taken from the
/// subject, which is what NATS permissions protect). Postcard must be a [`Report`] of the
/// same breaker and node; JSON must be the foreign schema of `docs/wire-format.md`.
///
/// ```
/// use breaker_actors::machine::{BreakerName, DecisionId, NodeId};
/// use transport_nats::codec::{JSON, Limits, Outcome, decode_outcome};
///
/// let breaker = BreakerName::new("payments").unwrap();
/// let node = NodeId::new("billing-py-1").unwrap();
/// let payload = br#"{"version":1,"events":[{"outcome":"failure","count":3},{"outcome":"success"}]}"#;
/// let Ok(Outcome::Foreign(outcomes)) = decode_outcome(&breaker, &node, Some(JSON), payload, &Limits::default())
/// else {
///     panic!("a valid batch")
/// };
/// assert_eq!((outcomes.counts.failure, outcomes.counts.success, outcomes.longest_failure_streak), (3, 1, 3));
/// // With the message's stream sequence and the newest decision known, it is a report.
/// let report = outcomes.into_report(breaker, node, 1_207, DecisionId::new(412, 3));
/// assert_eq!((report.incarnation, report.seq, report.applied), (0, 1_207, DecisionId::new(412, 3)));
/// ```
pub fn decode_outcome(
    breaker: &BreakerName,
    node: &NodeId,
    content_type: Option<&str>,
    payload: &[u8],
    limits: &Limits,
) -> Result<Outcome, DecodeError> {
    check_size(payload, limits)?;
    match format_of(content_type, payload) {
        Format::Postcard => decode_report(breaker, node, payload).map(Outcome::Report),
        Format::Json => decode_foreign(breaker, node, payload, limits).map(Outcome::Foreign),
    }
}

fn decode_report(breaker: &BreakerName, node: &NodeId, payload: &[u8]) -> Result<Report, DecodeError> {
    let (version, _) =
        postcard::take_from_bytes::<u16>(payload).map_err(|e| DecodeError::malformed(Format::Postcard, e))?;
    if version != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion { got: version });
    }
    let (report, rest) =
        postcard::take_from_bytes::<Report>(payload).map_err(|e| DecodeError::malformed(Format::Postcard, e))?;
    if !rest.is_empty() {
        return Err(DecodeError::malformed(Format::Postcard, format_args!("{} trailing bytes", rest.len())));
    }
    check_breaker(breaker, &report.breaker)?;
    check_node(node, &report.node)?;
    check_clock(&report.clock)?;
    Ok(report)
}

/// The outcome classes of the foreign schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ForeignOutcome {
    Success,
    Failure,
    Slow,
    Ignored,
    Rejected,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForeignEvent {
    outcome: ForeignOutcome,
    #[serde(default, deserialize_with = "present")]
    count: Option<u64>,
}

/// `DecisionId` as the state bucket spells it, but strict about its fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForeignDecisionId {
    term: u64,
    seq: u64,
}

/// One event (`outcome`, `count`) or a batch (`events`), never both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForeignMessage {
    // Checked by `json::read` before this parse; named so that it is a known field.
    #[serde(rename = "version")]
    _version: u16,
    #[serde(default, deserialize_with = "present")]
    breaker: Option<BreakerName>,
    #[serde(default, deserialize_with = "present")]
    node: Option<NodeId>,
    #[serde(default, deserialize_with = "present")]
    applied: Option<ObjectOnly<ForeignDecisionId>>,
    #[serde(default, deserialize_with = "present")]
    outcome: Option<ForeignOutcome>,
    #[serde(default, deserialize_with = "present")]
    count: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    events: Option<Vec<ObjectOnly<ForeignEvent>>>,
}

fn checked_count(count: Option<u64>) -> Result<u64, DecodeError> {
    match count.unwrap_or(1) {
        count @ 1..=MAX_EVENT_COUNT => Ok(count),
        count => Err(DecodeError::InvalidCount { count }),
    }
}

fn decode_foreign(
    breaker: &BreakerName,
    node: &NodeId,
    payload: &[u8],
    limits: &Limits,
) -> Result<ForeignOutcomes, DecodeError> {
    let message: ForeignMessage = json::read(payload, WIRE_VERSION)?;
    if let Some(got) = &message.breaker {
        check_breaker(breaker, got)?;
    }
    if let Some(got) = &message.node {
        check_node(node, got)?;
    }
    let mut out = ForeignOutcomes {
        applied: message.applied.map(|ObjectOnly(id)| DecisionId::new(id.term, id.seq)),
        ..ForeignOutcomes::default()
    };
    let mut streak = 0;
    match (message.outcome, message.events) {
        (Some(outcome), None) => out.record(outcome, checked_count(message.count)?, &mut streak),
        (None, Some(events)) => {
            if message.count.is_some() {
                return Err(DecodeError::malformed(Format::Json, "in a batch, `count` belongs to each event"));
            }
            if events.is_empty() {
                return Err(DecodeError::EmptyBatch);
            }
            if events.len() > limits.max_batch_events {
                return Err(DecodeError::TooManyEvents { len: events.len(), max: limits.max_batch_events });
            }
            for ObjectOnly(event) in events {
                out.record(event.outcome, checked_count(event.count)?, &mut streak);
            }
        }
        (Some(_), Some(_)) => {
            return Err(DecodeError::malformed(Format::Json, "`outcome` and `events` together: one event or a batch"));
        }
        (None, None) => {
            return Err(DecodeError::malformed(Format::Json, "neither `outcome` (one event) nor `events` (a batch)"));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Decisions, commands, configs: JSON
// ---------------------------------------------------------------------------------------

/// A decision as the state bucket holds it, in the shape of `docs/wire-format.md` (the
/// codec's own wire types spell it, not the core's serde derives).
pub fn encode_decision(decision: &Decision) -> Result<Vec<u8>, EncodeError> {
    encode_json(&wire::Decision::from(decision))
}

/// A decision read from the state bucket under the key `breaker`. Fields this version does
/// not know are ignored, so that a decider may add optional fields without a new version;
/// the checks the machine makes on a decision's contents (grants, phase) stay there.
pub fn decode_decision(breaker: &BreakerName, payload: &[u8], limits: &Limits) -> Result<Decision, DecodeError> {
    check_size(payload, limits)?;
    let decision: wire::Decision = json::read(payload, WIRE_VERSION)?;
    check_breaker(breaker, &decision.breaker.0)?;
    let decision = Decision::try_from(decision)?;
    if let Reason::Manual { actor, reason, .. } = &decision.reason {
        check_text("actor", actor)?;
        check_text("reason", reason)?;
    }
    Ok(decision)
}

/// An operator's command as published on the control subject, in the shape of
/// `docs/wire-format.md`.
pub fn encode_command(command: &Command) -> Result<Vec<u8>, EncodeError> {
    encode_json(&wire::Command::from(command))
}

/// A command from the control subject of `breaker`.
pub fn decode_command(breaker: &BreakerName, payload: &[u8], limits: &Limits) -> Result<Command, DecodeError> {
    check_size(payload, limits)?;
    let command: wire::Command = json::read(payload, WIRE_VERSION)?;
    check_breaker(breaker, &command.breaker.0)?;
    let command = Command::from(command);
    check_text("actor", &command.actor)?;
    check_text("reason", &command.reason)?;
    check_override(command.kind, command.duration_ms).map_err(DecodeError::BadOverride)?;
    Ok(command)
}

// ---------------------------------------------------------------------------------------
// Describe: JSON over core NATS request/reply
// ---------------------------------------------------------------------------------------

/// The version of describe requests and answers this code writes and reads.
pub const DESCRIBE_VERSION: u16 = 1;

/// An operator's request for what the decider of `breaker` holds, sent on
/// `<prefix>.describe.<breaker>` with a reply subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescribeRequest {
    /// [`DESCRIBE_VERSION`].
    pub version: u16,
    /// The breaker (the subject's last token too).
    pub breaker: BreakerName,
}

/// The evidence window's totals in a [`DescribeReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowReply {
    /// Decisive calls (successes, failures, slow).
    pub calls: u64,
    /// Failed calls.
    pub failures: u64,
    /// Slow calls.
    pub slow: u64,
}

/// What the deciding node answers a [`DescribeRequest`] with (nodes that do not decide the
/// breaker send nothing). Readers ignore fields they do not know. Its JSON (`Serialize`,
/// `Deserialize`, [`encode_describe_reply`]) is spelled by the codec's wire types, as that
/// of decisions and configs is.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeReply {
    /// [`DESCRIBE_VERSION`].
    pub version: u16,
    /// The breaker.
    pub breaker: BreakerName,
    /// The deciding node.
    pub node: NodeId,
    /// Its lease term.
    pub term: Term,
    /// The newest decision it made (written or not).
    pub last_decided: DecisionId,
    /// The phase it attributes reports against (the decision that began it).
    pub phase: DecisionId,
    /// The fleet state it holds, as in a decision.
    pub state: FleetState,
    /// Failed half-open rounds since the breaker last closed.
    pub backoff_level: u32,
    /// Its evidence window now.
    pub window: WindowReply,
    /// Failed and slow calls per node in this phase, sorted by node.
    pub contributions: Vec<Contribution>,
    /// For a time-boxed manual state: milliseconds until it ends on the decider's clock.
    pub override_ends_in_ms: Option<u64>,
    /// The breaker's config on the deciding node.
    pub config: BreakerConfig,
}

impl DescribeReply {
    /// The answer for `description` of `breaker`.
    pub fn new(breaker: BreakerName, description: Description) -> Self {
        let Description { node, config, view } = description;
        let DeciderView { term, last_decided, phase, state, backoff_level, window, contributions, override_ends_in_ms } =
            view;
        let WindowCounts { calls, failures, slow } = window;
        Self {
            version: DESCRIBE_VERSION,
            breaker,
            node,
            term,
            last_decided,
            phase,
            state,
            backoff_level,
            window: WindowReply { calls, failures, slow },
            contributions,
            override_ends_in_ms,
            config,
        }
    }
}

impl Serialize for DescribeReply {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        wire::DescribeReply::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DescribeReply {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        wire::DescribeReply::deserialize(deserializer).map(Self::from)
    }
}

/// A describe request for `breaker`.
pub fn encode_describe_request(breaker: &BreakerName) -> Result<Vec<u8>, EncodeError> {
    encode_json(&DescribeRequest { version: DESCRIBE_VERSION, breaker: breaker.clone() })
}

/// A describe request that arrived on the describe subject of `breaker`.
pub fn decode_describe_request(
    breaker: &BreakerName,
    payload: &[u8],
    limits: &Limits,
) -> Result<DescribeRequest, DecodeError> {
    check_size(payload, limits)?;
    let request: DescribeRequest = json::read(payload, DESCRIBE_VERSION)?;
    check_breaker(breaker, &request.breaker)?;
    Ok(request)
}

/// A describe answer.
pub fn encode_describe_reply(reply: &DescribeReply) -> Result<Vec<u8>, EncodeError> {
    encode_json(&wire::DescribeReply::from(reply))
}

/// A describe answer to a request for `breaker`.
pub fn decode_describe_reply(
    breaker: &BreakerName,
    payload: &[u8],
    limits: &Limits,
) -> Result<DescribeReply, DecodeError> {
    check_size(payload, limits)?;
    let reply: wire::DescribeReply = json::read(payload, DESCRIBE_VERSION)?;
    check_breaker(breaker, &reply.breaker.0)?;
    let reply = DescribeReply::from(reply);
    if reply.contributions.len() > usize::try_from(breaker_actors::machine::MAX_FLEET).unwrap_or(usize::MAX) {
        return Err(DecodeError::malformed(Format::Json, "more contributions than a fleet has nodes"));
    }
    Ok(reply)
}

/// A breaker's config as the config bucket holds it, without a source:
/// `{"version":1,"config":{...}}`.
pub fn encode_config(config: &BreakerConfig) -> Result<Vec<u8>, EncodeError> {
    encode_json(&wire_config::ConfigEnvelopeOut { version: CONFIG_VERSION, config: config.into(), source: None })
}

/// A config record as the config bucket holds it:
/// `{"version":1,"config":{"version":2,...},"source":{"kind":"deployed","node":"n1"}}`.
pub fn encode_config_record(record: &ConfigRecord) -> Result<Vec<u8>, EncodeError> {
    encode_json(&wire_config::ConfigEnvelopeOut {
        version: CONFIG_VERSION,
        config: (&record.config).into(),
        source: Some((&record.source).into()),
    })
}

/// A config from the config bucket. Only its form is checked; the registry validates it.
pub fn decode_config(payload: &[u8], limits: &Limits) -> Result<BreakerConfig, DecodeError> {
    decode_config_record(payload, limits).map(|record| record.config)
}

/// A config record from the config bucket (source [`ConfigSource::Unknown`] if it records
/// none). Only its form is checked; the registry validates the config.
pub fn decode_config_record(payload: &[u8], limits: &Limits) -> Result<ConfigRecord, DecodeError> {
    check_size(payload, limits)?;
    let envelope: wire_config::ConfigEnvelope = json::read(payload, CONFIG_VERSION)?;
    let source = envelope.source.map_or(ConfigSource::Unknown, ConfigSource::from);
    if let ConfigSource::Operator { actor, reason } = &source {
        check_text("actor", actor)?;
        check_text("reason", reason)?;
    }
    Ok(ConfigRecord { config: envelope.config.0.into(), source })
}

// ---------------------------------------------------------------------------------------
// Lease values and term records: JSON in the lease bucket
// ---------------------------------------------------------------------------------------

/// The version of the lease value and of the term record.
pub const LEASE_VERSION: u16 = 1;

/// A lease key's value: who holds the shard, under which term, renewed every third of
/// which TTL. `{"version":1,"node":"n1","term":20013,"ttl_ms":10000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseValue {
    /// [`LEASE_VERSION`].
    pub version: u16,
    /// The holder.
    pub node: NodeId,
    /// Its term (see `breaker_actors::machine::next_term`).
    pub term: Term,
    /// The holder's lease TTL in milliseconds: a value unchanged for longer is dead.
    pub ttl_ms: u64,
}

/// A lease key's value as decoded: the current format, or the node id alone that nodes
/// before the term record wrote (their term was the key's creating revision, unknown here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseHolder {
    /// The current format.
    Holder(LeaseValue),
    /// A node id alone (the format before terms were recorded).
    Legacy(NodeId),
}

impl LeaseHolder {
    /// The holding node.
    pub fn node(&self) -> &NodeId {
        match self {
            Self::Holder(v) => &v.node,
            Self::Legacy(n) => n,
        }
    }

    /// The recorded term, if the value records one.
    pub fn term(&self) -> Option<Term> {
        match self {
            Self::Holder(v) => Some(v.term),
            Self::Legacy(_) => None,
        }
    }
}

/// A lease value.
pub fn encode_lease(value: &LeaseValue) -> Result<Vec<u8>, EncodeError> {
    encode_json(value)
}

/// A lease value read from the lease bucket.
pub fn decode_lease(payload: &[u8], limits: &Limits) -> Result<LeaseHolder, DecodeError> {
    check_size(payload, limits)?;
    if payload.first() != Some(&b'{') {
        let text = std::str::from_utf8(payload).map_err(|e| DecodeError::malformed(Format::Json, e))?;
        return NodeId::new(text).map(LeaseHolder::Legacy).map_err(|e| DecodeError::malformed(Format::Json, e));
    }
    let value: LeaseValue = json::read(payload, LEASE_VERSION)?;
    Ok(LeaseHolder::Holder(value))
}

/// The last term granted for a shard, kept in the lease bucket without a TTL under
/// `terms.<shard>`: `{"version":1,"term":20013}`, with `"unexplained":1000000000000` once
/// a node asked for a term above a decision of a term this record never granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermRecord {
    /// [`LEASE_VERSION`].
    pub version: u16,
    /// The last term granted.
    pub term: Term,
    /// The newest term a node knew from a decision while this record held a lower one: a
    /// term no lease ever had (a forged decision, or a lease bucket restored older than the
    /// decisions). Kept until `fusebox repair` writes the record again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unexplained: Option<Term>,
}

/// A term record.
pub fn encode_term_record(record: &TermRecord) -> Result<Vec<u8>, EncodeError> {
    encode_json(record)
}

/// A term record read from the lease bucket.
pub fn decode_term_record(payload: &[u8], limits: &Limits) -> Result<TermRecord, DecodeError> {
    check_size(payload, limits)?;
    json::read(payload, LEASE_VERSION)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use breaker_actors::machine::{CommandKind, FleetState, Grant, Term, WindowConfig};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn name(s: &str) -> BreakerName {
        BreakerName::new(s).unwrap()
    }

    fn node(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn payments() -> BreakerName {
        name("payments")
    }

    fn n1() -> NodeId {
        node("node-1")
    }

    fn clock(term: u64, nodes: &[&str]) -> VectorClock {
        let mut clock = VectorClock::new(Term(term));
        for n in nodes {
            clock.tick(&node(n));
        }
        clock
    }

    fn report() -> Report {
        Report {
            version: WIRE_VERSION,
            breaker: payments(),
            node: n1(),
            incarnation: 3,
            seq: 42,
            applied: DecisionId::new(7, 2),
            clock: clock(7, &["node-1", "node-1", "node-2"]),
            counts: OutcomeCounts { success: 90, failure: 8, slow: 2, ignored: 1, rejected: 0 },
            longest_failure_streak: 4,
            local_open: false,
        }
    }

    fn decision() -> Decision {
        Decision {
            version: WIRE_VERSION,
            breaker: payments(),
            id: DecisionId::new(7, 3),
            phase: DecisionId::new(7, 3),
            state: FleetState::HalfOpen {
                budget: 10,
                grants: vec![Grant { node: n1(), probes: 4 }, Grant { node: node("node-2"), probes: 6 }],
            },
            backoff_level: 1,
            reason: Reason::OpenElapsed,
            decider: node("node-2"),
            clock: clock(7, &["node-1", "node-2", "node-2"]),
            config_version: 1,
            expires_after_ms: None,
        }
    }

    fn manual_decision(actor: &str, reason: &str) -> Decision {
        Decision {
            state: FleetState::ForcedOpen,
            reason: Reason::Manual { command: CommandKind::ForceOpen, actor: actor.into(), reason: reason.into() },
            ..decision()
        }
    }

    fn command() -> Command {
        Command {
            version: WIRE_VERSION,
            breaker: payments(),
            kind: CommandKind::ForceOpen,
            actor: "alice@ops".into(),
            reason: "INC-1234: provider outage".into(),
            duration_ms: None,
        }
    }

    fn limits() -> Limits {
        Limits::default()
    }

    fn outcome_json(payload: &serde_json::Value) -> Result<Outcome, DecodeError> {
        decode_outcome(&payments(), &n1(), Some(JSON), payload.to_string().as_bytes(), &limits())
    }

    fn foreign(payload: &serde_json::Value) -> Result<ForeignOutcomes, DecodeError> {
        match outcome_json(payload)? {
            Outcome::Foreign(f) => Ok(f),
            Outcome::Report(r) => panic!("JSON decoded as a report: {r:?}"),
        }
    }

    fn outcome_postcard(payload: &[u8]) -> Result<Outcome, DecodeError> {
        decode_outcome(&payments(), &n1(), Some(POSTCARD), payload, &limits())
    }

    fn assert_malformed<T: fmt::Debug>(result: Result<T, DecodeError>, format: Format) {
        match result {
            Err(DecodeError::Malformed { format: got, .. }) => assert_eq!(got, format),
            other => panic!("expected malformed {format}, got {other:?}"),
        }
    }

    // --- round trips ---------------------------------------------------------------

    #[test]
    fn report_round_trips_through_postcard() {
        let bytes = encode_report(&report()).unwrap();
        assert_eq!(outcome_postcard(&bytes), Ok(Outcome::Report(report())));
        // Without a header, a report is sniffed as postcard: its first byte is the version.
        assert_eq!(bytes[0], 1);
        assert_eq!(decode_outcome(&payments(), &n1(), None, &bytes, &limits()), Ok(Outcome::Report(report())));
    }

    #[test]
    fn report_layout_is_pinned() {
        // The field order of `Report` is the postcard layout (docs/wire-format.md): a change
        // here is a wire change and needs a new WIRE_VERSION.
        let r = Report {
            version: 1,
            breaker: name("b"),
            node: node("n"),
            incarnation: 2,
            seq: 300,
            applied: DecisionId::new(5, 6),
            clock: clock(5, &["n"]),
            counts: OutcomeCounts { success: 1, failure: 2, slow: 3, ignored: 4, rejected: 5 },
            longest_failure_streak: 2,
            local_open: true,
        };
        let expected: &[u8] = &[
            1, // version
            1, b'b', // breaker
            1, b'n', // node
            2,    // incarnation
            0xac, 0x02, // seq 300 as a varint
            5, 6, // applied (term, seq)
            5, 1, 1, b'n', 1, // clock: term, 1 entry, ("n", 1)
            1, 2, 3, 4, 5, // counts
            2, // longest_failure_streak
            1, // local_open
        ];
        assert_eq!(encode_report(&r).unwrap(), expected);
        assert_eq!(decode_outcome(&name("b"), &node("n"), None, expected, &limits()), Ok(Outcome::Report(r)));
    }

    #[test]
    fn decision_round_trips_through_json() {
        for d in [decision(), manual_decision("alice", "maintenance")] {
            let bytes = encode_decision(&d).unwrap();
            assert_eq!(decode_decision(&payments(), &bytes, &limits()), Ok(d));
        }
    }

    #[test]
    fn decision_ignores_fields_it_does_not_know() {
        let mut value = serde_json::to_value(decision()).unwrap();
        value["added_later"] = json!("x");
        assert_eq!(decode_decision(&payments(), value.to_string().as_bytes(), &limits()), Ok(decision()));
    }

    #[test]
    fn command_round_trips_through_json() {
        let bytes = encode_command(&command()).unwrap();
        assert_eq!(decode_command(&payments(), &bytes, &limits()), Ok(command()));
    }

    #[test]
    fn config_round_trips_in_its_envelope() {
        let mut custom = BreakerConfig { quorum: 3, slow_call_threshold_ms: Some(250), seed: 99, ..Default::default() };
        custom.trip.window = WindowConfig::Count { calls: 50 };
        custom.trip.consecutive_failures = Some(5);
        for config in [BreakerConfig::default(), custom] {
            let bytes = encode_config(&config).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(value["version"], json!(CONFIG_VERSION));
            assert!(value["config"].is_object());
            assert_eq!(decode_config(&bytes, &limits()), Ok(config));
        }
        // Every config field has a default: an empty config is the default config.
        assert_eq!(decode_config(br#"{"version":1,"config":{}}"#, &limits()), Ok(BreakerConfig::default()));
    }

    // --- format selection ----------------------------------------------------------

    #[test]
    fn the_header_selects_the_format_and_the_payload_decides_without_one() {
        assert_eq!(format_of(Some(JSON), b"\x01"), Format::Json);
        assert_eq!(format_of(Some("Application/JSON; charset=utf-8"), b"\x01"), Format::Json);
        assert_eq!(format_of(Some(POSTCARD), b"{}"), Format::Postcard);
        assert_eq!(format_of(None, b"  \r\n\t{\"version\":1}"), Format::Json);
        assert_eq!(format_of(None, b"[1]"), Format::Json);
        assert_eq!(format_of(None, b"\x01\x08payments"), Format::Postcard);
        assert_eq!(format_of(None, b""), Format::Postcard);
        assert_eq!(format_of(None, b"   "), Format::Postcard);
        // An unknown media type is as good as none.
        assert_eq!(format_of(Some("text/plain"), b"{}"), Format::Json);
        assert_eq!(format_of(Some("text/plain"), b"\x01"), Format::Postcard);
        assert_eq!(Format::Json.content_type(), JSON);
        assert_eq!(Format::Postcard.content_type(), POSTCARD);
    }

    // --- foreign outcomes ----------------------------------------------------------

    #[test]
    fn a_single_event_counts_once_or_count_times() {
        let f = foreign(&json!({"version": 1, "outcome": "failure"})).unwrap();
        assert_eq!(f.counts, OutcomeCounts { failure: 1, ..Default::default() });
        assert_eq!((f.longest_failure_streak, f.applied), (1, None));

        let f =
            foreign(&json!({"version": 1, "breaker": "payments", "node": "node-1", "outcome": "success", "count": 3}))
                .unwrap();
        assert_eq!(f.counts, OutcomeCounts { success: 3, ..Default::default() });
        assert_eq!(f.longest_failure_streak, 0);
    }

    #[test]
    fn a_batch_sums_and_finds_the_longest_failure_run() {
        let f = foreign(&json!({"version": 1, "breaker": "payments", "events": [
            {"outcome": "failure", "count": 3},
            {"outcome": "ignored"},
            {"outcome": "failure", "count": 2},   // 5: ignored does not break the run
            {"outcome": "success"},
            {"outcome": "failure", "count": 4},
            {"outcome": "rejected", "count": 2},
            {"outcome": "failure", "count": 3},   // 7: neither does rejected
            {"outcome": "slow"},
            {"outcome": "failure"},
        ]}))
        .unwrap();
        assert_eq!(f.counts, OutcomeCounts { success: 1, failure: 13, slow: 1, ignored: 1, rejected: 2 });
        assert_eq!(f.longest_failure_streak, 7);
    }

    #[test]
    fn counts_and_streaks_saturate() {
        let mut f = ForeignOutcomes {
            counts: OutcomeCounts { failure: u64::MAX - 1, ..Default::default() },
            ..Default::default()
        };
        let mut streak = u64::MAX - 1;
        f.record(ForeignOutcome::Failure, 5, &mut streak);
        assert_eq!((f.counts.failure, streak, f.longest_failure_streak), (u64::MAX, u64::MAX, u64::MAX));
    }

    #[test]
    fn the_applied_decision_is_read_strictly() {
        let f = foreign(&json!({"version": 1, "outcome": "slow", "applied": {"term": 7, "seq": 2}})).unwrap();
        assert_eq!(f.applied, Some(DecisionId::new(7, 2)));
        for bad in [json!({"term": 7}), json!({"term": 7, "seq": 2, "phase": 1}), json!([7, 2]), json!(null)] {
            assert_malformed(outcome_json(&json!({"version": 1, "outcome": "slow", "applied": bad})), Format::Json);
        }
    }

    #[test]
    fn foreign_outcomes_become_a_report_of_incarnation_zero() {
        let f = ForeignOutcomes {
            counts: OutcomeCounts { failure: 2, ..Default::default() },
            longest_failure_streak: 2,
            applied: None,
        };
        let r = f.into_report(payments(), node("py-1"), 1234, DecisionId::new(9, 4));
        assert_eq!(r.version, WIRE_VERSION);
        assert_eq!((r.breaker, r.node.clone()), (payments(), node("py-1")));
        assert_eq!((r.incarnation, r.seq, r.applied), (0, 1234, DecisionId::new(9, 4)));
        assert_eq!(r.clock, clock(9, &["py-1"]));
        assert_eq!((r.counts, r.longest_failure_streak, r.local_open), (f.counts, 2, false));

        // What the app says it had applied wins over what the caller knows.
        let r = ForeignOutcomes { applied: Some(DecisionId::new(8, 1)), ..f }.into_report(
            payments(),
            node("py-1"),
            1235,
            DecisionId::new(9, 4),
        );
        assert_eq!(r.applied, DecisionId::new(8, 1));
        assert_eq!(r.clock, clock(8, &["py-1"]));
    }

    #[test]
    fn report_msg_ids_differ_between_breakers_of_one_node() {
        assert_eq!(report_msg_id(&report()), "payments:node-1:3:42");
        assert_ne!(report_msg_id(&report()), report_msg_id(&Report { breaker: name("ledger"), ..report() }));
    }

    // --- every refusal -------------------------------------------------------------

    #[test]
    fn oversized_payloads_are_refused_before_parsing() {
        let small = Limits { max_payload: 16, ..Limits::default() };
        let big = vec![b'x'; 17];
        let oversized = DecodeError::Oversized { len: 17, max: 16 };
        assert_eq!(decode_outcome(&payments(), &n1(), None, &big, &small).unwrap_err(), oversized);
        assert_eq!(decode_decision(&payments(), &big, &small).unwrap_err(), oversized);
        assert_eq!(decode_command(&payments(), &big, &small).unwrap_err(), oversized);
        assert_eq!(decode_config(&big, &small).unwrap_err(), oversized);
        // At the limit exactly, the payload is parsed (and here found malformed).
        assert_malformed(decode_config(&big[..16], &small), Format::Json);
    }

    #[test]
    fn bad_postcard_is_malformed() {
        let good = encode_report(&report()).unwrap();
        // Garbage after a valid version byte.
        assert_malformed(outcome_postcard(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Format::Postcard);
        // Not even a version.
        assert_malformed(outcome_postcard(&[]), Format::Postcard);
        assert_malformed(outcome_postcard(&[0xff, 0xff, 0xff]), Format::Postcard);
        // Truncated, at every length.
        for len in 1..good.len() {
            assert_malformed(outcome_postcard(&good[..len]), Format::Postcard);
        }
        // Trailing bytes.
        let mut long = good.clone();
        long.push(0);
        assert_malformed(outcome_postcard(&long), Format::Postcard);
        // An invalid breaker name inside (byte 2 is its first character).
        let mut bytes = good;
        bytes[2] = b'.';
        assert_malformed(outcome_postcard(&bytes), Format::Postcard);
    }

    #[test]
    fn another_postcard_version_is_unsupported_whatever_follows() {
        let v2 = encode_report(&Report { version: 2, ..report() }).unwrap();
        assert_eq!(outcome_postcard(&v2), Err(DecodeError::UnsupportedVersion { got: 2 }));
        assert_eq!(outcome_postcard(&[2]), Err(DecodeError::UnsupportedVersion { got: 2 }));
        assert_eq!(outcome_postcard(&[0x80, 0x01, 0xff]), Err(DecodeError::UnsupportedVersion { got: 128 }));
    }

    #[test]
    fn another_json_version_is_unsupported_whatever_follows() {
        let v2 = json!({"version": 2, "anything": [1, {"at": "all"}], "outcome": "unheard-of"});
        assert_eq!(outcome_json(&v2), Err(DecodeError::UnsupportedVersion { got: 2 }));
        let bytes = v2.to_string();
        assert_eq!(
            decode_decision(&payments(), bytes.as_bytes(), &limits()),
            Err(DecodeError::UnsupportedVersion { got: 2 })
        );
        assert_eq!(
            decode_command(&payments(), bytes.as_bytes(), &limits()),
            Err(DecodeError::UnsupportedVersion { got: 2 })
        );
        assert_eq!(decode_config(bytes.as_bytes(), &limits()), Err(DecodeError::UnsupportedVersion { got: 2 }));
        // A version that is not a u16, or none at all, is malformed.
        assert_malformed(outcome_json(&json!({"version": 70000, "outcome": "success"})), Format::Json);
        assert_malformed(outcome_json(&json!({"version": "1", "outcome": "success"})), Format::Json);
        assert_malformed(outcome_json(&json!({"outcome": "success"})), Format::Json);
    }

    #[test]
    fn another_breaker_is_refused() {
        let wrong = DecodeError::WrongBreaker { expected: payments(), got: name("ledger") };
        let r = encode_report(&Report { breaker: name("ledger"), ..report() }).unwrap();
        assert_eq!(outcome_postcard(&r).unwrap_err(), wrong);
        let f = json!({"version": 1, "breaker": "ledger", "outcome": "success"});
        assert_eq!(outcome_json(&f).unwrap_err(), wrong);
        let d = encode_decision(&Decision { breaker: name("ledger"), ..decision() }).unwrap();
        assert_eq!(decode_decision(&payments(), &d, &limits()).unwrap_err(), wrong);
        let c = encode_command(&Command { breaker: name("ledger"), ..command() }).unwrap();
        assert_eq!(decode_command(&payments(), &c, &limits()).unwrap_err(), wrong);
    }

    #[test]
    fn another_node_is_refused() {
        let wrong = DecodeError::WrongNode { expected: n1(), got: node("node-9") };
        let r = encode_report(&Report { node: node("node-9"), ..report() }).unwrap();
        assert_eq!(outcome_postcard(&r).unwrap_err(), wrong);
        let f = json!({"version": 1, "node": "node-9", "outcome": "success"});
        assert_eq!(outcome_json(&f).unwrap_err(), wrong);
    }

    #[test]
    fn batches_are_bounded() {
        assert_eq!(outcome_json(&json!({"version": 1, "events": []})), Err(DecodeError::EmptyBatch));
        let events = vec![json!({"outcome": "success"}); 3];
        let payload = json!({"version": 1, "events": events}).to_string();
        let two = Limits { max_batch_events: 2, ..Limits::default() };
        assert_eq!(
            decode_outcome(&payments(), &n1(), Some(JSON), payload.as_bytes(), &two),
            Err(DecodeError::TooManyEvents { len: 3, max: 2 })
        );
        assert!(decode_outcome(&payments(), &n1(), Some(JSON), payload.as_bytes(), &limits()).is_ok());
    }

    #[test]
    fn counts_are_bounded() {
        for count in [0, MAX_EVENT_COUNT + 1, u64::MAX] {
            let invalid = Err(DecodeError::InvalidCount { count });
            assert_eq!(outcome_json(&json!({"version": 1, "outcome": "failure", "count": count})), invalid);
            let batch =
                json!({"version": 1, "events": [{"outcome": "success"}, {"outcome": "failure", "count": count}]});
            assert_eq!(outcome_json(&batch), invalid);
        }
        let max = foreign(&json!({"version": 1, "outcome": "failure", "count": MAX_EVENT_COUNT})).unwrap();
        assert_eq!(max.counts.failure, MAX_EVENT_COUNT);
        for not_a_count in [json!(-1), json!(1.5), json!("3"), json!(null)] {
            assert_malformed(
                outcome_json(&json!({"version": 1, "outcome": "failure", "count": not_a_count})),
                Format::Json,
            );
        }
    }

    #[test]
    fn the_foreign_schema_is_strict() {
        for bad in [
            json!({"version": 1, "outcome": "timeout"}), // unknown outcome
            json!({"version": 1, "outcome": "Failure"}), // case matters
            json!({"version": 1, "outcome": "success", "latency_ms": 3}), // unknown field
            json!({"version": 1, "events": [{"outcome": "success", "at": 1}]}), // unknown event field
            json!({"version": 1}),                       // neither
            json!({"version": 1, "outcome": "success", "events": [{"outcome": "slow"}]}), // both
            json!({"version": 1, "events": [{"outcome": "slow"}], "count": 2}), // batch-level count
            json!({"version": 1, "events": [["slow", 1]]}), // event as an array
            json!({"version": 1, "events": {"outcome": "slow"}}), // events not an array
            json!({"version": 1, "breaker": null, "outcome": "slow"}), // null for absent
            json!({"version": 1, "breaker": "pay.ments", "outcome": "slow"}), // not a name
            json!([{"outcome": "failure"}]),             // top-level array
            json!([1, "payments", null, null, "failure", 1, null]), // positional struct
            json!("failure"),
        ] {
            assert_malformed(outcome_json(&bad), Format::Json);
        }
        for text in [
            &b"{\"version\":1,\"outcome\":\"slow\"} x"[..],
            b"{\"version\":1,",
            b"{\"version\":1,\"version\":1,\"outcome\":\"slow\"}",
        ] {
            assert_malformed(decode_outcome(&payments(), &n1(), Some(JSON), text, &limits()), Format::Json);
        }
    }

    #[test]
    fn command_text_is_bounded() {
        let long = "x".repeat(MAX_TEXT_LEN + 1);
        let c = encode_command(&Command { actor: long.clone(), ..command() }).unwrap();
        assert_eq!(
            decode_command(&payments(), &c, &limits()),
            Err(DecodeError::TextTooLong { field: "actor", len: MAX_TEXT_LEN + 1, max: MAX_TEXT_LEN })
        );
        let c = encode_command(&Command { reason: long.clone(), ..command() }).unwrap();
        assert!(matches!(
            decode_command(&payments(), &c, &limits()),
            Err(DecodeError::TextTooLong { field: "reason", .. })
        ));
        let d = encode_decision(&manual_decision("bob", &long)).unwrap();
        assert!(matches!(
            decode_decision(&payments(), &d, &limits()),
            Err(DecodeError::TextTooLong { field: "reason", .. })
        ));
        let at_limit = "x".repeat(MAX_TEXT_LEN);
        let c = encode_command(&Command { actor: at_limit.clone(), reason: at_limit, ..command() }).unwrap();
        assert!(decode_command(&payments(), &c, &limits()).is_ok());
    }

    #[test]
    fn malformed_clocks_are_refused() {
        let unsorted: VectorClock =
            serde_json::from_value(json!({"term": 7, "entries": [["b", 1], ["a", 1]]})).unwrap();
        let zero: VectorClock = serde_json::from_value(json!({"term": 7, "entries": [["a", 0]]})).unwrap();
        for bad in [unsorted, zero] {
            let r = encode_report(&Report { clock: bad.clone(), ..report() }).unwrap();
            assert_eq!(outcome_postcard(&r), Err(DecodeError::MalformedClock));
            let d = encode_decision(&Decision { clock: bad, ..decision() }).unwrap();
            assert_eq!(decode_decision(&payments(), &d, &limits()), Err(DecodeError::MalformedClock));
        }
    }

    #[test]
    fn json_entry_points_take_objects_only() {
        for bad in [&b"[1]"[..], b"1", b"\"x\"", b"null", b""] {
            assert_malformed(decode_decision(&payments(), bad, &limits()), Format::Json);
            assert_malformed(decode_command(&payments(), bad, &limits()), Format::Json);
            assert_malformed(decode_config(bad, &limits()), Format::Json);
        }
        assert_malformed(decode_config(br#"{"version":1,"config":{"quorom":2}}"#, &limits()), Format::Json);
        assert_malformed(decode_config(br#"{"version":1,"config":{},"extra":1}"#, &limits()), Format::Json);
        assert_malformed(decode_config(br#"{"version":1}"#, &limits()), Format::Json);
        assert_malformed(
            decode_command(&payments(), br#"{"version":1,"breaker":"payments"}"#, &limits()),
            Format::Json,
        );
    }

    #[test]
    fn every_error_has_a_distinct_kind_and_a_message() {
        let errors = [
            DecodeError::Oversized { len: 2, max: 1 },
            DecodeError::Malformed { format: Format::Json, detail: "x".into() },
            DecodeError::UnsupportedVersion { got: 2 },
            DecodeError::WrongBreaker { expected: payments(), got: name("ledger") },
            DecodeError::WrongNode { expected: n1(), got: node("node-2") },
            DecodeError::EmptyBatch,
            DecodeError::TooManyEvents { len: 2, max: 1 },
            DecodeError::InvalidCount { count: 0 },
            DecodeError::TextTooLong { field: "actor", len: 2, max: 1 },
            DecodeError::MalformedClock,
        ];
        let kinds: std::collections::BTreeSet<_> = errors.iter().map(DecodeError::kind).collect();
        assert_eq!(kinds.len(), errors.len());
        for e in &errors {
            assert!(!e.to_string().is_empty());
            assert!(e.kind().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", e.kind());
        }
    }

    #[test]
    fn lease_values_and_term_records_round_trip_and_old_values_read_as_legacy() {
        let value = LeaseValue { version: LEASE_VERSION, node: n1(), term: Term(20_013), ttl_ms: 10_000 };
        let bytes = encode_lease(&value).unwrap();
        assert_eq!(decode_lease(&bytes, &limits()), Ok(LeaseHolder::Holder(value)));
        assert_eq!(decode_lease(b"node-1", &limits()), Ok(LeaseHolder::Legacy(n1())), "the node id alone");
        for bad in [&b"\x01garbage"[..], b"{\"version\":1}", b"{\"version\":9,\"node\":\"n1\"}", b""] {
            assert!(decode_lease(bad, &limits()).is_err(), "{bad:?}");
        }
        let record = TermRecord { version: LEASE_VERSION, term: Term(7), unexplained: None };
        let bytes = encode_term_record(&record).unwrap();
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), r#"{"version":1,"term":7}"#);
        assert_eq!(decode_term_record(&bytes, &limits()), Ok(record));
    }

    /// A config record round-trips with its source; a value written before sources (and
    /// config versions) existed decodes as version 1 from an unknown source; an operator's
    /// over-long text is refused.
    #[test]
    fn config_records_carry_their_source_and_old_values_still_decode() {
        let record = ConfigRecord {
            config: BreakerConfig { version: 4, quorum: 2, ..BreakerConfig::default() },
            source: ConfigSource::Operator { actor: "alice".into(), reason: "INC-7".into() },
        };
        let bytes = encode_config_record(&record).unwrap();
        assert_eq!(decode_config_record(&bytes, &limits()), Ok(record));
        let old = decode_config_record(br#"{"version":1,"config":{"quorum":1}}"#, &limits()).unwrap();
        assert_eq!(old.source, ConfigSource::Unknown);
        assert_eq!(old.config.version, 1);
        let long = format!(
            r#"{{"version":1,"config":{{}},"source":{{"kind":"operator","actor":"{}","reason":""}}}}"#,
            "a".repeat(MAX_TEXT_LEN + 1)
        );
        assert!(decode_config_record(long.as_bytes(), &limits()).is_err());
    }

    // --- time-boxed commands and describe ---------------------------------------------

    #[test]
    fn a_time_boxed_command_round_trips_and_an_impossible_one_is_refused() {
        use breaker_actors::machine::MAX_OVERRIDE_MS;
        let timed = Command { duration_ms: Some(1_800_000), ..command() };
        let bytes = encode_command(&timed).unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains(r#""duration_ms":1800000"#));
        assert_eq!(decode_command(&payments(), &bytes, &limits()), Ok(timed));
        // Without one the field is not written, and a command of before it decodes.
        assert!(!String::from_utf8_lossy(&encode_command(&command()).unwrap()).contains("duration_ms"));
        let old = br#"{"version":1,"breaker":"payments","kind":"force_open","actor":"a","reason":"r"}"#;
        assert_eq!(decode_command(&payments(), old, &limits()).map(|c| c.duration_ms), Ok(None));
        for (kind, ms, error) in [
            (CommandKind::Reset, 1, OverrideError::ForReset),
            (CommandKind::Disable, 0, OverrideError::Zero),
            (CommandKind::ForceOpen, MAX_OVERRIDE_MS + 1, OverrideError::TooLong { duration_ms: MAX_OVERRIDE_MS + 1 }),
        ] {
            let bytes = encode_command(&Command { kind, duration_ms: Some(ms), ..command() }).unwrap();
            let got = decode_command(&payments(), &bytes, &limits());
            assert_eq!(got, Err(DecodeError::BadOverride(error)));
            assert_eq!(got.unwrap_err().kind(), "bad_override");
        }
        // A decision without the time box reads as before; with one it round-trips.
        let boxed = Decision {
            state: FleetState::ForcedOpen,
            expires_after_ms: std::num::NonZeroU64::new(60_000),
            ..decision()
        };
        let bytes = encode_decision(&boxed).unwrap();
        assert_eq!(decode_decision(&payments(), &bytes, &limits()), Ok(boxed));
        assert!(!String::from_utf8_lossy(&encode_decision(&decision()).unwrap()).contains("expires_after_ms"));
    }

    #[test]
    fn describe_requests_and_answers_round_trip_and_bad_ones_are_refused() {
        let request = encode_describe_request(&payments()).unwrap();
        assert_eq!(
            decode_describe_request(&payments(), &request, &limits()),
            Ok(DescribeRequest { version: DESCRIBE_VERSION, breaker: payments() })
        );
        let other = BreakerName::new("ledger").unwrap();
        assert!(matches!(decode_describe_request(&other, &request, &limits()), Err(DecodeError::WrongBreaker { .. })));
        for bad in [
            &b"not json"[..],
            b"{}",
            br#"{"version":2,"breaker":"payments"}"#,
            br#"{"version":1,"breaker":"payments","x":1}"#,
        ] {
            assert!(decode_describe_request(&payments(), bad, &limits()).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let view = DeciderView {
            term: Term(7),
            last_decided: DecisionId::new(7, 3),
            phase: DecisionId::new(7, 1),
            state: FleetState::Closed,
            backoff_level: 0,
            window: WindowCounts { calls: 5, failures: 3, slow: 0 },
            contributions: vec![Contribution { node: n1(), failed: 3, slow: 0 }],
            override_ends_in_ms: None,
        };
        let description = Description { node: node("node-2"), config: BreakerConfig::default(), view };
        let reply = DescribeReply::new(payments(), description);
        let bytes = encode_describe_reply(&reply).unwrap();
        assert_eq!(decode_describe_reply(&payments(), &bytes, &limits()), Ok(reply));
        assert!(matches!(decode_describe_reply(&other, &bytes, &limits()), Err(DecodeError::WrongBreaker { .. })));
        let huge = vec![b' '; limits().max_payload + 1];
        assert!(matches!(decode_describe_reply(&payments(), &huge, &limits()), Err(DecodeError::Oversized { .. })));
    }

    // --- the wire types -----------------------------------------------------------------

    /// Every state, every reason (every rule, evidence with and without `top`), every
    /// command kind, grants, empty and full clocks, with and without the optional fields.
    fn representative_decisions() -> Vec<Decision> {
        use breaker_actors::machine::{Evidence, TripRule};
        let states = [
            FleetState::Closed,
            FleetState::Ramping { stage: 2, admit_per_mille: 250 },
            FleetState::Open { duration_ms: 60_000 },
            FleetState::HalfOpen { budget: 0, grants: vec![] },
            FleetState::HalfOpen {
                budget: 10,
                grants: vec![Grant { node: n1(), probes: 4 }, Grant { node: node("node-2"), probes: 6 }],
            },
            FleetState::ForcedOpen,
            FleetState::ForcedClosed,
            FleetState::Disabled,
            FleetState::MetricsOnly,
        ];
        let kinds = [
            CommandKind::ForceOpen,
            CommandKind::ForceClosed,
            CommandKind::Disable,
            CommandKind::MetricsOnly,
            CommandKind::Reset,
            CommandKind::Reconfigure,
        ];
        let evidence =
            |top: Vec<Contribution>| Evidence { decisive: 120, failed: 66, slow: 3, nodes: 3, streak: 9, top };
        let top = vec![
            Contribution { node: node("billing-py-1"), failed: 40, slow: 0 },
            Contribution { node: n1(), failed: 20, slow: 3 },
        ];
        let mut reasons = vec![
            Reason::Initial,
            Reason::TermStarted { previous: DecisionId::NONE },
            Reason::TermStarted { previous: DecisionId::new(6, 9) },
            Reason::OpenElapsed,
            Reason::HealthCheckPassed { successes: 3 },
            Reason::ProbesGranted,
            Reason::ProbesSucceeded { successes: 5 },
            Reason::ProbeFailed { failures: 1 },
            Reason::HalfOpenTimedOut,
            Reason::RampAdvanced,
            Reason::Reconfigured { from: 0, to: 2 },
            Reason::Manual { command: CommandKind::ForceOpen, actor: "alice@ops".into(), reason: String::new() },
            Reason::Manual {
                command: CommandKind::Reset,
                actor: "\u{e9}\"\\".into(),
                reason: "INC-1: \n \u{1}".into(),
            },
        ];
        for rule in [TripRule::FailureRate, TripRule::SlowCallRate, TripRule::ConsecutiveFailures, TripRule::BurnRate] {
            reasons.push(Reason::Tripped { rule, evidence: evidence(vec![]) });
            reasons.push(Reason::Tripped { rule, evidence: evidence(top.clone()) });
        }
        for command in kinds {
            reasons.push(Reason::Manual { command, actor: "bob".into(), reason: "why".into() });
            reasons.push(Reason::OverrideExpired { command, after_ms: 1_800_000 });
        }
        let mut out = Vec::new();
        for state in &states {
            out.push(Decision { state: state.clone(), ..decision() });
        }
        for reason in reasons {
            out.push(Decision { reason, ..decision() });
        }
        out.push(Decision { clock: VectorClock::new(Term(7)), config_version: 0, ..decision() });
        out.push(Decision {
            id: DecisionId::new(u64::MAX, u64::MAX),
            phase: DecisionId::NONE,
            backoff_level: u32::MAX,
            config_version: u64::MAX,
            expires_after_ms: std::num::NonZeroU64::new(1),
            clock: clock(u64::MAX, &["a", "b", "b", "c-_9"]),
            ..decision()
        });
        out.push(Decision {
            state: FleetState::ForcedOpen,
            expires_after_ms: std::num::NonZeroU64::new(1_800_000),
            ..manual_decision("alice", "deploy")
        });
        out
    }

    fn representative_commands() -> Vec<Command> {
        let mut out = Vec::new();
        for kind in [
            CommandKind::ForceOpen,
            CommandKind::ForceClosed,
            CommandKind::Disable,
            CommandKind::MetricsOnly,
            CommandKind::Reset,
            CommandKind::Reconfigure,
        ] {
            out.push(Command { kind, ..command() });
            out.push(Command { kind, duration_ms: Some(1_800_000), ..command() });
        }
        out.push(Command { actor: String::new(), reason: "\u{e9}\"\\\n".into(), ..command() });
        out
    }

    /// The wire types write the bytes the core's serde derives wrote when they were the
    /// format (the derives are the reference here only, while the core still has them), and
    /// read them back as the same value.
    #[test]
    fn the_wire_types_write_what_the_core_derives_wrote() {
        let decisions = representative_decisions();
        assert!(decisions.len() > 40);
        for d in decisions {
            let bytes = encode_decision(&d).unwrap();
            assert_eq!(
                String::from_utf8(bytes.clone()).unwrap(),
                serde_json::to_string(&d).unwrap(),
                "the bytes of {d:?}"
            );
            assert_eq!(decode_decision(&payments(), &bytes, &limits()), Ok(d));
        }
        for c in representative_commands() {
            let bytes = encode_command(&c).unwrap();
            assert_eq!(String::from_utf8(bytes.clone()).unwrap(), serde_json::to_string(&c).unwrap(), "{c:?}");
            // A time box on a reset is written as any field is, and refused on reading.
            let expected = check_override(c.kind, c.duration_ms).map(|()| c).map_err(DecodeError::BadOverride);
            assert_eq!(decode_command(&payments(), &bytes, &limits()), expected);
        }
    }

    /// The decoders as they were when the core's derives were the format: the reference
    /// for the refusals below.
    fn decode_by_core_derives(payload: &[u8]) -> (Result<Decision, DecodeError>, Result<Command, DecodeError>) {
        let decision = json::read::<Decision>(payload, WIRE_VERSION).and_then(|d| {
            check_breaker(&payments(), &d.breaker)?;
            check_clock(&d.clock)?;
            if let Reason::Manual { actor, reason, .. } = &d.reason {
                check_text("actor", actor)?;
                check_text("reason", reason)?;
            }
            Ok(d)
        });
        let command = json::read::<Command>(payload, WIRE_VERSION).and_then(|c| {
            check_breaker(&payments(), &c.breaker)?;
            check_text("actor", &c.actor)?;
            check_text("reason", &c.reason)?;
            check_override(c.kind, c.duration_ms).map_err(DecodeError::BadOverride)?;
            Ok(c)
        });
        (decision, command)
    }

    /// `value` changed in one place, every way.
    fn one_place_changes(value: &serde_json::Value) -> Vec<serde_json::Value> {
        use serde_json::Value;
        let mut out =
            vec![Value::Null, json!("x"), json!("not a name!"), json!(1.5), json!(-1), json!(0), json!({}), json!([])];
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    for changed in one_place_changes(child) {
                        let mut copy = map.clone();
                        copy.insert(key.clone(), changed);
                        out.push(Value::Object(copy));
                    }
                    let mut without = map.clone();
                    without.remove(key);
                    out.push(Value::Object(without));
                }
                let mut extra = map.clone();
                extra.insert("not_a_field".into(), json!(1));
                out.push(Value::Object(extra));
            }
            Value::Array(items) => {
                for (at, child) in items.iter().enumerate() {
                    for changed in one_place_changes(child) {
                        let mut copy = items.clone();
                        copy[at] = changed;
                        out.push(Value::Array(copy));
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// Every one-place change of the representative decisions and commands gets the same
    /// answer, to the error message, from the wire types as from the core's derives.
    #[test]
    fn the_wire_types_refuse_what_the_core_derives_refused_and_say_so_alike() {
        let mut values: Vec<serde_json::Value> =
            representative_decisions().iter().map(|d| serde_json::to_value(d).unwrap()).collect();
        values.extend(representative_commands().iter().map(|c| serde_json::to_value(c).unwrap()));
        let mut checked = 0;
        for value in values {
            for changed in one_place_changes(&value) {
                let payload = changed.to_string();
                let (decision, command) = decode_by_core_derives(payload.as_bytes());
                assert_eq!(decode_decision(&payments(), payload.as_bytes(), &limits()), decision, "{payload}");
                assert_eq!(decode_command(&payments(), payload.as_bytes(), &limits()), command, "{payload}");
                checked += 1;
            }
        }
        assert!(checked > 10_000, "only {checked}");
    }

    /// Configs with every policy variant: count and time windows, every trip rule, fixed and
    /// exponential (jittered) open policies, ramps, health checks, the overlay on, off and
    /// non-default, every outage policy, optional fields present and absent.
    fn representative_configs() -> Vec<BreakerConfig> {
        use breaker_actors::machine::{
            BurnRateRule, HalfOpenPolicy, HealthCheckPolicy, LocalOverlayPolicy, OpenPolicy, OutageConfig,
            OutagePolicy, RampPolicy, TripPolicy,
        };
        let default = BreakerConfig::default;
        let burn = BurnRateRule { objective: 0.999, long_window_ms: 3_600_000, short_window_ms: 300_000, factor: 14.4 };
        let trips = [
            TripPolicy::default(),
            TripPolicy { window: WindowConfig::Time { duration_ms: 10_000, buckets: 10 }, ..TripPolicy::default() },
            TripPolicy {
                failure_rate: None,
                slow_call_rate: Some(0.25),
                consecutive_failures: Some(5),
                burn_rate: Some(burn.clone()),
                max_evidence_age_ms: 120_000,
                minimum_calls: 0,
                ..TripPolicy::default()
            },
            TripPolicy { failure_rate: Some(1.0), slow_call_rate: Some(1e-9), ..TripPolicy::default() },
        ];
        let opens = [
            OpenPolicy::Fixed { duration_ms: 0 },
            OpenPolicy::Exponential { initial_ms: 1_000, max_ms: 300_000, multiplier: 2, jitter: 0.1 },
            OpenPolicy::Exponential { initial_ms: 5, max_ms: u64::MAX, multiplier: u32::MAX, jitter: 0.0 },
            OpenPolicy::Exponential { initial_ms: 5, max_ms: 10, multiplier: 3, jitter: 1.0 },
        ];
        let half_opens = [
            HalfOpenPolicy {
                ramp: Some(RampPolicy { stages_percent: vec![25, 50, 99], stage_ms: 90_000 }),
                ..HalfOpenPolicy::default()
            },
            HalfOpenPolicy {
                probe_budget: 1,
                success_threshold: 1,
                max_wait_ms: 1,
                ramp: Some(RampPolicy { stages_percent: vec![], stage_ms: 0 }),
            },
        ];
        let mut out = vec![default()];
        for trip in &trips {
            out.push(BreakerConfig { trip: trip.clone(), ..default() });
            let local = LocalOverlayPolicy { trip: trip.clone(), ..LocalOverlayPolicy::default() };
            out.push(BreakerConfig { local: Some(local), ..default() });
        }
        for open in &opens {
            out.push(BreakerConfig { open: open.clone(), ..default() });
            let local = LocalOverlayPolicy { open: open.clone(), ..LocalOverlayPolicy::default() };
            out.push(BreakerConfig { local: Some(local), ..default() });
        }
        for half_open in &half_opens {
            out.push(BreakerConfig { half_open: half_open.clone(), ..default() });
            let local = LocalOverlayPolicy { half_open: half_open.clone(), ..LocalOverlayPolicy::default() };
            out.push(BreakerConfig { local: Some(local), ..default() });
        }
        for policy in
            [OutagePolicy::LastKnown, OutagePolicy::LocalOnly, OutagePolicy::FailOpen, OutagePolicy::FailClosed]
        {
            out.push(BreakerConfig { outage: OutageConfig { policy, grace_ms: 1_500 }, ..default() });
        }
        for closes_directly in [false, true] {
            let health_check = HealthCheckPolicy {
                initial_interval_ms: 2_000,
                max_interval_ms: 60_000,
                successes_required: 2,
                closes_directly,
            };
            out.push(BreakerConfig { health_check: Some(health_check), ..default() });
        }
        out.push(BreakerConfig { local: None, slow_call_threshold_ms: Some(250), ..default() });
        out.push(BreakerConfig {
            version: breaker_actors::machine::MAX_CONFIG_VERSION,
            quorum: 0,
            max_nodes: u32::MAX,
            slow_call_threshold_ms: Some(0),
            seed: u64::MAX,
            trip: trips[2].clone(),
            open: opens[1].clone(),
            half_open: half_opens[0].clone(),
            health_check: Some(HealthCheckPolicy {
                initial_interval_ms: 1,
                max_interval_ms: u64::MAX,
                successes_required: 0,
                closes_directly: true,
            }),
            local: Some(LocalOverlayPolicy {
                trip: trips[1].clone(),
                open: opens[3].clone(),
                half_open: half_opens[1].clone(),
            }),
            outage: OutageConfig { policy: OutagePolicy::FailClosed, grace_ms: 0 },
        });
        out
    }

    fn representative_sources() -> Vec<ConfigSource> {
        vec![
            ConfigSource::Deployed { node: n1() },
            ConfigSource::Operator { actor: "alice@ops".into(), reason: "INC-7: trip later".into() },
            ConfigSource::Operator { actor: String::new(), reason: "\u{e9}\"\\\n".into() },
            ConfigSource::Unknown,
        ]
    }

    /// The envelope as it was written and read when the core's derives were the format:
    /// the reference for the config tests below.
    #[derive(Serialize)]
    struct CoreEnvelopeRef<'a> {
        version: u16,
        config: &'a BreakerConfig,
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<&'a ConfigSource>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CoreEnvelope {
        #[serde(rename = "version")]
        _version: u16,
        config: ObjectOnly<BreakerConfig>,
        #[serde(default)]
        source: Option<ConfigSource>,
    }

    fn decode_config_by_core_derives(payload: &[u8]) -> Result<ConfigRecord, DecodeError> {
        let envelope: CoreEnvelope = json::read(payload, CONFIG_VERSION)?;
        let source = envelope.source.unwrap_or(ConfigSource::Unknown);
        if let ConfigSource::Operator { actor, reason } = &source {
            check_text("actor", actor)?;
            check_text("reason", reason)?;
        }
        Ok(ConfigRecord { config: envelope.config.0, source })
    }

    /// The config envelope's wire types write the bytes the core's derives wrote, with and
    /// without a source, and read them back as the same record.
    #[test]
    fn the_config_wire_types_write_what_the_core_derives_wrote() {
        let configs = representative_configs();
        assert!(configs.len() > 20);
        for config in configs {
            let bytes = encode_config(&config).unwrap();
            let old =
                serde_json::to_string(&CoreEnvelopeRef { version: CONFIG_VERSION, config: &config, source: None })
                    .unwrap();
            assert_eq!(String::from_utf8(bytes.clone()).unwrap(), old, "the bytes of {config:?}");
            assert_eq!(decode_config(&bytes, &limits()), Ok(config.clone()));
            for source in representative_sources() {
                let record = ConfigRecord { config: config.clone(), source };
                let bytes = encode_config_record(&record).unwrap();
                let old = CoreEnvelopeRef { version: CONFIG_VERSION, config: &config, source: Some(&record.source) };
                assert_eq!(String::from_utf8(bytes.clone()).unwrap(), serde_json::to_string(&old).unwrap());
                assert_eq!(decode_config_record(&bytes, &limits()), Ok(record));
            }
        }
    }

    /// Every one-place change of the representative envelopes (and their humantime forms)
    /// gets the same answer, to the error message, from the wire types as from the core's
    /// derives.
    #[test]
    fn the_config_wire_types_refuse_what_the_core_derives_refused_and_say_so_alike() {
        let mut values = Vec::new();
        for config in representative_configs() {
            for source in representative_sources() {
                let record = ConfigRecord { config: config.clone(), source };
                values.push(
                    serde_json::from_slice::<serde_json::Value>(&encode_config_record(&record).unwrap()).unwrap(),
                );
            }
            values.push(serde_json::from_slice(&encode_config(&config).unwrap()).unwrap());
        }
        // The humantime spellings a Rust reader also accepts, and both forms at once.
        values.push(json!({"version": 1, "config": {
            "slow_call_threshold": "250ms",
            "trip": {
                "window": {"time": {"duration": "10s", "buckets": 10}},
                "max_evidence_age": "2m",
                "burn_rate": {"objective": 0.999, "long_window": "1h", "short_window": "5m", "factor": 14.4}
            },
            "open": {"exponential": {"initial": "1s", "max": "5m", "multiplier": 2, "jitter": 0.1}},
            "half_open": {"max_wait": "20s", "ramp": {"stages_percent": [25, 50], "stage": "1m 30s"}},
            "health_check": {"initial_interval": "2s", "max_interval": "1m", "successes_required": 2, "closes_directly": false},
            "local": {"open": {"fixed": {"duration": "10s"}}, "half_open": {"max_wait": "15s"}},
            "outage": {"policy": "fail_open", "grace": "1s 500ms", "grace_ms": 3}
        }}));
        values.push(json!({"version": 1, "config": {"open": {"fixed": {"duration": "1500us"}}, "local": {}}}));
        values.push(json!({"version": 1, "config": {}, "source": null}));
        let mut checked = 0;
        for value in values {
            for changed in one_place_changes(&value) {
                let payload = changed.to_string();
                let old = decode_config_by_core_derives(payload.as_bytes());
                assert_eq!(decode_config_record(payload.as_bytes(), &limits()), old, "{payload}");
                checked += 1;
            }
        }
        assert!(checked > 10_000, "only {checked}");
    }

    /// `DescribeReply` and `WindowReply` as they were when the core's derives spelled
    /// them: the reference for the describe tests below.
    mod core_derives {
        use breaker_actors::machine::{BreakerConfig, BreakerName, Contribution, DecisionId, FleetState, NodeId, Term};
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize)]
        pub(super) struct WindowReply {
            pub(super) calls: u64,
            pub(super) failures: u64,
            pub(super) slow: u64,
        }

        #[derive(Serialize, Deserialize)]
        pub(super) struct DescribeReply {
            pub(super) version: u16,
            pub(super) breaker: BreakerName,
            pub(super) node: NodeId,
            pub(super) term: Term,
            pub(super) last_decided: DecisionId,
            pub(super) phase: DecisionId,
            pub(super) state: FleetState,
            pub(super) backoff_level: u32,
            pub(super) window: WindowReply,
            pub(super) contributions: Vec<Contribution>,
            pub(super) override_ends_in_ms: Option<u64>,
            pub(super) config: BreakerConfig,
        }
    }

    fn to_core_derives(r: &DescribeReply) -> core_derives::DescribeReply {
        let WindowReply { calls, failures, slow } = r.window;
        core_derives::DescribeReply {
            version: r.version,
            breaker: r.breaker.clone(),
            node: r.node.clone(),
            term: r.term,
            last_decided: r.last_decided,
            phase: r.phase,
            state: r.state.clone(),
            backoff_level: r.backoff_level,
            window: core_derives::WindowReply { calls, failures, slow },
            contributions: r.contributions.clone(),
            override_ends_in_ms: r.override_ends_in_ms,
            config: r.config.clone(),
        }
    }

    fn from_core_derives(r: core_derives::DescribeReply) -> DescribeReply {
        let core_derives::WindowReply { calls, failures, slow } = r.window;
        DescribeReply {
            version: r.version,
            breaker: r.breaker,
            node: r.node,
            term: r.term,
            last_decided: r.last_decided,
            phase: r.phase,
            state: r.state,
            backoff_level: r.backoff_level,
            window: WindowReply { calls, failures, slow },
            contributions: r.contributions,
            override_ends_in_ms: r.override_ends_in_ms,
            config: r.config,
        }
    }

    fn decode_describe_reply_by_core_derives(payload: &[u8]) -> Result<DescribeReply, DecodeError> {
        let reply: core_derives::DescribeReply = json::read(payload, DESCRIBE_VERSION)?;
        check_breaker(&payments(), &reply.breaker)?;
        if reply.contributions.len() > usize::try_from(breaker_actors::machine::MAX_FLEET).unwrap_or(usize::MAX) {
            return Err(DecodeError::malformed(Format::Json, "more contributions than a fleet has nodes"));
        }
        Ok(from_core_derives(reply))
    }

    /// Describe answers in every fleet state, with and without contributions and an
    /// override's end, with every representative config.
    fn representative_describe_replies() -> Vec<DescribeReply> {
        let base = DescribeReply {
            version: DESCRIBE_VERSION,
            breaker: payments(),
            node: node("node-2"),
            term: Term(412),
            last_decided: DecisionId::new(412, 3),
            phase: DecisionId::new(412, 1),
            state: FleetState::Closed,
            backoff_level: 0,
            window: WindowReply { calls: 40, failures: 12, slow: 1 },
            contributions: vec![],
            override_ends_in_ms: None,
            config: BreakerConfig::default(),
        };
        let mut out = vec![base.clone()];
        let mut states: Vec<FleetState> = Vec::new();
        for d in representative_decisions() {
            if !states.contains(&d.state) {
                states.push(d.state);
            }
        }
        for state in states {
            out.push(DescribeReply { state, ..base.clone() });
        }
        for config in representative_configs() {
            out.push(DescribeReply { config, ..base.clone() });
        }
        out.push(DescribeReply {
            term: Term(u64::MAX),
            last_decided: DecisionId::NONE,
            phase: DecisionId::new(u64::MAX, u64::MAX),
            state: FleetState::ForcedOpen,
            backoff_level: u32::MAX,
            window: WindowReply { calls: u64::MAX, failures: 0, slow: u64::MAX },
            contributions: vec![
                Contribution { node: node("billing-py-1"), failed: 10, slow: 0 },
                Contribution { node: n1(), failed: 2, slow: u64::MAX },
            ],
            override_ends_in_ms: Some(1_800_000),
            ..base.clone()
        });
        out.push(DescribeReply {
            override_ends_in_ms: Some(0),
            contributions: vec![Contribution { node: n1(), failed: 0, slow: 0 }],
            ..base
        });
        out
    }

    /// The describe answer's wire types write the bytes the derives wrote (`Serialize`,
    /// as `fusebox describe --json` uses it, too), and read them back as the same answer.
    #[test]
    fn the_describe_wire_types_write_what_the_core_derives_wrote() {
        let replies = representative_describe_replies();
        assert!(replies.len() > 30);
        for reply in replies {
            let old = serde_json::to_string(&to_core_derives(&reply)).unwrap();
            let bytes = encode_describe_reply(&reply).unwrap();
            assert_eq!(String::from_utf8(bytes.clone()).unwrap(), old, "the bytes of {reply:?}");
            assert_eq!(serde_json::to_string(&reply).unwrap(), old);
            assert_eq!(decode_describe_reply(&payments(), &bytes, &limits()), Ok(reply.clone()));
            assert_eq!(serde_json::from_str::<DescribeReply>(&old).unwrap(), reply);
        }
    }

    /// Every one-place change of representative describe answers gets the same answer, to
    /// the error message, from the wire types as from the derives.
    #[test]
    fn the_describe_wire_types_refuse_what_the_core_derives_refused_and_say_so_alike() {
        let replies = representative_describe_replies();
        let mut checked = 0;
        for reply in replies.iter().take(14).chain(replies.iter().rev().take(3)) {
            let value = serde_json::to_value(to_core_derives(reply)).unwrap();
            for changed in one_place_changes(&value) {
                let payload = changed.to_string();
                let old = decode_describe_reply_by_core_derives(payload.as_bytes());
                assert_eq!(decode_describe_reply(&payments(), payload.as_bytes(), &limits()), old, "{payload}");
                checked += 1;
            }
        }
        assert!(checked > 10_000, "only {checked}");
    }

    #[test]
    fn the_wire_clock_is_refused_where_the_core_would_break() {
        for entries in [
            json!([["b", 1], ["a", 1]]),
            json!([["a", 1], ["a", 2]]),
            json!([["a", 0]]),
            json!((0..=breaker_actors::machine::CLOCK_CAP).map(|i| json!([format!("n{i:04}"), 1])).collect::<Vec<_>>()),
        ] {
            let mut value = serde_json::to_value(decision()).unwrap();
            value["clock"]["entries"] = entries;
            let got = decode_decision(&payments(), value.to_string().as_bytes(), &limits());
            assert_eq!(got, Err(DecodeError::MalformedClock));
            // The breaker is checked before the clock, as it always was.
            let got = decode_decision(&name("ledger"), value.to_string().as_bytes(), &limits());
            assert!(matches!(got, Err(DecodeError::WrongBreaker { .. })), "{got:?}");
        }
    }

    // --- the user's copy --------------------------------------------------------------

    /// Every JSON code block of docs/wire-format.md parses; those marked with an
    /// `<!-- example: ... -->` comment decode as what they claim to be (or, marked
    /// `refused`, do not decode).
    #[test]
    fn the_documented_examples_decode() {
        let doc = include_str!("../../../docs/wire-format.md");
        let (mut marker, mut checked) = (None, 0);
        let mut lines = doc.lines();
        while let Some(line) = lines.next() {
            if let Some(m) = line.trim().strip_prefix("<!-- example: ").and_then(|m| m.strip_suffix(" -->")) {
                marker = Some(m.to_owned());
                continue;
            }
            if line.trim() != "```json" {
                continue;
            }
            let block: String = lines.by_ref().take_while(|l| l.trim() != "```").flat_map(|l| [l, "\n"]).collect();
            serde_json::from_str::<serde_json::Value>(&block).unwrap_or_else(|e| panic!("{e}:\n{block}"));
            let bytes = block.as_bytes();
            match marker.take().as_deref() {
                None => {}
                Some("outcome") => {
                    let got = decode_outcome(&payments(), &node("billing-py-1"), Some(JSON), bytes, &limits());
                    assert!(matches!(got, Ok(Outcome::Foreign(_))), "{got:?}:\n{block}");
                }
                Some("refused") => {
                    let got = decode_outcome(&payments(), &node("billing-py-1"), Some(JSON), bytes, &limits());
                    assert!(got.is_err(), "{got:?}:\n{block}");
                }
                Some("decision") => assert!(decode_decision(&payments(), bytes, &limits()).is_ok(), "{block}"),
                Some("command") => assert!(decode_command(&payments(), bytes, &limits()).is_ok(), "{block}"),
                Some("refused_command") => {
                    let got = decode_command(&payments(), bytes, &limits());
                    assert!(matches!(got, Err(DecodeError::BadOverride(_))), "{got:?}:\n{block}");
                }
                Some("describe_request") => {
                    assert!(decode_describe_request(&payments(), bytes, &limits()).is_ok(), "{block}");
                }
                Some("describe_reply") => {
                    let got = decode_describe_reply(&payments(), bytes, &limits());
                    assert!(got.is_ok(), "{got:?}:\n{block}");
                }
                Some("config") => assert!(decode_config_record(bytes, &limits()).is_ok(), "{block}"),
                Some("lease") => {
                    assert!(matches!(decode_lease(bytes, &limits()), Ok(LeaseHolder::Holder(_))), "{block}");
                }
                Some("term_record") => assert!(decode_term_record(bytes, &limits()).is_ok(), "{block}"),
                Some(other) => panic!("unknown example marker {other:?}"),
            }
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} JSON blocks found");
    }

    // --- no input panics -----------------------------------------------------------

    fn decode_all(payload: &[u8]) {
        let l = limits();
        let _ = decode_outcome(&payments(), &n1(), None, payload, &l);
        let _ = decode_outcome(&payments(), &n1(), Some(JSON), payload, &l);
        let _ = decode_outcome(&payments(), &n1(), Some(POSTCARD), payload, &l);
        let _ = decode_decision(&payments(), payload, &l);
        let _ = decode_command(&payments(), payload, &l);
        let _ = decode_config(payload, &l);
        let _ = decode_lease(payload, &l);
        let _ = decode_term_record(payload, &l);
        let _ = decode_describe_request(&payments(), payload, &l);
        let _ = decode_describe_reply(&payments(), payload, &l);
    }

    fn valid_payloads() -> Vec<Vec<u8>> {
        vec![
            encode_report(&report()).unwrap(),
            encode_decision(&decision()).unwrap(),
            encode_command(&command()).unwrap(),
            encode_config(&BreakerConfig::default()).unwrap(),
            json!({"version": 1, "events": [{"outcome": "failure", "count": 2}, {"outcome": "success"}]})
                .to_string()
                .into_bytes(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all(&payload);
        }

        #[test]
        fn damaged_valid_payloads_never_panic(
            which in 0..5usize,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut payload = valid_payloads().swap_remove(which);
            let i = at.index(payload.len());
            payload[i] = byte;
            payload.truncate(cut.index(payload.len() + 1).max(1));
            decode_all(&payload);
        }
    }
}
