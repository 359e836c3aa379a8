//! Classifiers for HTTP and gRPC responses (feature `http`): [`ResultClassifier`]s over
//! `Result<http::Response<B>, E>`, so a dependency that answers with a failure (an HTTP 5xx,
//! a gRPC error status) counts against the breaker although the call returned `Ok`, as
//! tower-http's `ServerErrorsAsFailures` and `GrpcErrorsAsFailures` do. Every `Err` (the
//! request never got an answer) is a failure; a success still counts as slow by its duration.
//!
//! ```
//! use breaker_actors::Outcome;
//! use breaker_actors::hot::ResultClassifier;
//! use breaker_actors::http::ServerErrorsAsFailures;
//!
//! let classifier = ServerErrorsAsFailures::new();
//! let answer = |status: u16| http::Response::builder().status(status).body(()).unwrap();
//! let judged = |response| classifier.classify_result(&Ok::<_, std::io::Error>(response));
//! assert_eq!(judged(answer(503)), Outcome::Failure);
//! assert_eq!(judged(answer(404)), Outcome::Success); // the dependency answered: healthy
//! assert_eq!(judged(answer(429)), Outcome::Success); // unless `also_too_many_requests`
//! ```

use std::fmt;

use http::{HeaderMap, Response, StatusCode};

use crate::hot::{Outcome, ResultClassifier};

/// HTTP responses with a 5xx status are failures (and, optionally, 429 Too Many Requests:
/// a dependency shedding load); every other status is a success, an `Err` a failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerErrorsAsFailures {
    too_many_requests: bool,
}

impl ServerErrorsAsFailures {
    /// 5xx are failures, nothing else is.
    pub fn new() -> Self {
        Self::default()
    }

    /// 429 Too Many Requests is a failure too: back off a dependency that sheds load.
    #[must_use]
    pub fn also_too_many_requests(self) -> Self {
        Self { too_many_requests: true }
    }

    /// How an answer with `status` counts (for clients whose responses are not
    /// `http::Response`s: reqwest's has `status()`).
    pub fn classify_status(&self, status: StatusCode) -> Outcome {
        let failed = status.is_server_error() || (self.too_many_requests && status == StatusCode::TOO_MANY_REQUESTS);
        if failed { Outcome::Failure } else { Outcome::Success }
    }

    /// How `response` counts.
    pub fn classify_response<B>(&self, response: &Response<B>) -> Outcome {
        self.classify_status(response.status())
    }
}

impl<B, E> ResultClassifier<Response<B>, E> for ServerErrorsAsFailures {
    fn classify_result(&self, result: &Result<Response<B>, E>) -> Outcome {
        result.as_ref().map_or(Outcome::Failure, |response| self.classify_response(response))
    }
}

/// A gRPC status code (the `grpc-status` values of the gRPC specification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[expect(missing_docs, reason = "the codes are the specification's, named as it names them")]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    const ALL: [Self; 17] = [
        Self::Ok,
        Self::Cancelled,
        Self::Unknown,
        Self::InvalidArgument,
        Self::DeadlineExceeded,
        Self::NotFound,
        Self::AlreadyExists,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::OutOfRange,
        Self::Unimplemented,
        Self::Internal,
        Self::Unavailable,
        Self::DataLoss,
        Self::Unauthenticated,
    ];

    /// The code a `grpc-status` value stands for: as the specification says of clients, a
    /// value that is not a known code (or not a number) is [`GrpcCode::Unknown`].
    pub fn from_header(value: &[u8]) -> Self {
        std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse::<usize>().ok())
            .and_then(|code| Self::ALL.get(code).copied())
            .unwrap_or(Self::Unknown)
    }

    /// The code a response with this HTTP status and no `grpc-status` stands for, by the
    /// specification's HTTP-to-gRPC mapping (`None` for 200: its status is in the trailers).
    pub fn from_http_status(status: StatusCode) -> Option<Self> {
        Some(match status.as_u16() {
            200 => return None,
            400 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::Unimplemented,
            429 | 502 | 503 | 504 => Self::Unavailable,
            _ => Self::Unknown,
        })
    }

    fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({})", *self as u8)
    }
}

/// gRPC responses whose status says the server is in trouble are failures: by default
/// `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `RESOURCE_EXHAUSTED`, `UNKNOWN` and
/// `DATA_LOSS`. Other codes (`NOT_FOUND`, `INVALID_ARGUMENT`, ...) are the caller's business
/// and count as successes: the dependency answered.
///
/// The status is read from the response headers, where a trailers-only response (how
/// servers answer an error before any message) carries `grpc-status`; a response without
/// it and with an HTTP status other than 200 counts by the specification's HTTP-to-gRPC
/// mapping (503 is `UNAVAILABLE`). A status sent in trailers, after the messages, is not seen
/// here: such a response counts as a success. Every `Err` is a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcErrorsAsFailures {
    failures: u32,
}

impl Default for GrpcErrorsAsFailures {
    fn default() -> Self {
        let failures = [
            GrpcCode::Unavailable,
            GrpcCode::DeadlineExceeded,
            GrpcCode::Internal,
            GrpcCode::ResourceExhausted,
            GrpcCode::Unknown,
            GrpcCode::DataLoss,
        ];
        Self { failures: failures.iter().fold(0, |set, code| set | code.bit()) }
    }
}

impl GrpcErrorsAsFailures {
    /// The default failure codes.
    pub fn new() -> Self {
        Self::default()
    }

    /// `code` counts as a failure too.
    #[must_use]
    pub fn with_failure(self, code: GrpcCode) -> Self {
        Self { failures: self.failures | code.bit() }
    }

    /// `code` no longer counts as a failure (OK never does).
    #[must_use]
    pub fn without_failure(self, code: GrpcCode) -> Self {
        Self { failures: self.failures & !code.bit() }
    }

    /// How a call that ended with `code` counts.
    pub fn classify_code(&self, code: GrpcCode) -> Outcome {
        let failed = code != GrpcCode::Ok && self.failures & code.bit() != 0;
        if failed { Outcome::Failure } else { Outcome::Success }
    }

    /// The status a response's `headers` and HTTP `status` say it ended with, if they say
    /// (see the type's documentation).
    pub fn status_of(headers: &HeaderMap, status: StatusCode) -> Option<GrpcCode> {
        match headers.get("grpc-status") {
            Some(value) => Some(GrpcCode::from_header(value.as_bytes())),
            None => GrpcCode::from_http_status(status),
        }
    }

    /// How `response` counts.
    pub fn classify_response<B>(&self, response: &Response<B>) -> Outcome {
        Self::status_of(response.headers(), response.status()).map_or(Outcome::Success, |code| self.classify_code(code))
    }
}

impl<B, E> ResultClassifier<Response<B>, E> for GrpcErrorsAsFailures {
    fn classify_result(&self, result: &Result<Response<B>, E>) -> Outcome {
        result.as_ref().map_or(Outcome::Failure, |response| self.classify_response(response))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn response(status: u16, grpc_status: Option<&str>) -> Response<()> {
        let mut builder = Response::builder().status(status);
        if let Some(code) = grpc_status {
            builder = builder.header("grpc-status", code);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn five_hundreds_fail_and_four_hundreds_do_not_unless_asked_for_429() {
        let plain = ServerErrorsAsFailures::new();
        let shedding = plain.also_too_many_requests();
        for (status, plain_outcome, shedding_outcome) in [
            (200, Outcome::Success, Outcome::Success),
            (302, Outcome::Success, Outcome::Success),
            (404, Outcome::Success, Outcome::Success),
            (429, Outcome::Success, Outcome::Failure),
            (500, Outcome::Failure, Outcome::Failure),
            (503, Outcome::Failure, Outcome::Failure),
            (599, Outcome::Failure, Outcome::Failure),
        ] {
            let answered = Ok::<_, ()>(response(status, None));
            assert_eq!(plain.classify_result(&answered), plain_outcome, "{status}");
            assert_eq!(shedding.classify_result(&answered), shedding_outcome, "{status}");
        }
        assert_eq!(plain.classify_result(&Err::<Response<()>, _>("refused")), Outcome::Failure);
    }

    #[test]
    fn grpc_statuses_fail_by_the_default_set_and_the_set_can_change() {
        let classifier = GrpcErrorsAsFailures::new();
        let judged = |status, code| classifier.classify_result(&Ok::<_, ()>(response(status, code)));
        for failing in ["14", "4", "13", "8", "2", "15"] {
            assert_eq!(judged(200, Some(failing)), Outcome::Failure, "{failing}");
        }
        for fine in ["0", "1", "3", "5", "6", "7", "9", "10", "11", "12", "16"] {
            assert_eq!(judged(200, Some(fine)), Outcome::Success, "{fine}");
        }
        // Not a code: UNKNOWN, a failure.
        for garbage in ["17", "-1", "x", "", "99999999999999999999999"] {
            assert_eq!(judged(200, Some(garbage)), Outcome::Failure, "{garbage:?}");
        }
        // No grpc-status: the status is in the trailers (unseen), or the HTTP status says.
        assert_eq!(judged(200, None), Outcome::Success);
        assert_eq!(judged(503, None), Outcome::Failure);
        assert_eq!(judged(404, None), Outcome::Success); // UNIMPLEMENTED
        assert_eq!(judged(500, None), Outcome::Failure); // UNKNOWN
        let relaxed = classifier.without_failure(GrpcCode::Unknown).with_failure(GrpcCode::Unimplemented);
        assert_eq!(relaxed.classify_result(&Ok::<_, ()>(response(200, Some("2")))), Outcome::Success);
        assert_eq!(relaxed.classify_result(&Ok::<_, ()>(response(404, None))), Outcome::Failure);
        assert_eq!(relaxed.without_failure(GrpcCode::Ok).classify_code(GrpcCode::Ok), Outcome::Success);
        assert_eq!(classifier.classify_result(&Err::<Response<()>, _>("reset")), Outcome::Failure);
        assert_eq!(GrpcCode::Unavailable.to_string(), "Unavailable (14)");
    }
}
