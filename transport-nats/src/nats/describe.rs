//! Answering describe requests: the decider of a breaker replies with its description, any
//! request that is not one is counted and dropped.

use breaker_actors::transport::Describer;

use super::{Inner, TransportStats};
use crate::codec::{self, DecodeError};

/// Answers one describe request if this node decides its breaker; a request that is not
/// one (no reply subject, a bad subject, a payload that does not decode) is counted and
/// dropped, like a request for a breaker decided elsewhere (which is not counted: every
/// node but the decider sees it).
pub(super) async fn answer_describe(inner: &Inner, describer: &Describer, message: async_nats::Message) {
    let subject = message.subject.as_str();
    let Some(breaker) = inner.layout.parse_describe_subject(subject) else {
        let error = DecodeError::BadSubject { subject: subject.to_owned() };
        return inner.stats.reject("describe", subject, &error);
    };
    if let Err(error) = codec::decode_describe_request(&breaker, &message.payload, &inner.limits) {
        return inner.stats.reject("describe", subject, &error);
    }
    let Some(reply) = message.reply.clone() else {
        let error =
            DecodeError::Malformed { format: codec::Format::Json, detail: "no reply subject to answer on".to_owned() };
        return inner.stats.reject("describe", subject, &error);
    };
    let Some(description) = describer(breaker.clone()).await else {
        return;
    };
    let answer = codec::DescribeReply::new(breaker, description);
    match codec::encode_describe_reply(&answer) {
        Ok(payload) => match inner.client.publish(reply, payload.into()).await {
            Ok(()) => TransportStats::bump(&inner.stats.describes_answered),
            Err(e) => tracing::debug!(subject, error = %e, "could not answer a describe request"),
        },
        Err(e) => tracing::warn!(subject, error = %e, "could not encode a describe answer"),
    }
}
