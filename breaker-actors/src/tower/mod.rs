//! `tower` middleware over a [`Breaker`] (feature `tower`): [`FuseboxLayer`] wraps a service
//! so every call first asks the breaker's hot path for a permit and reports how it went.
//! This module owns the service ([`FuseboxService`]); its layer, its response future and the
//! fallbacks that answer rejections are in the files beside it, as tower lays out its own
//! middleware.
//!
//! - What counts as a failure: every error, by default; [`FuseboxLayer::classify_with`]
//!   judges errors, [`FuseboxLayer::classify_results_with`] whole results, so an `Ok`
//!   response that reports a failure (an HTTP 5xx, a gRPC error status: the `http` feature's
//!   classifiers) counts against the breaker.
//! - What a rejected call gets: the typed [`FuseboxError::Rejected`]; a value made from
//!   the rejection ([`FuseboxLayer::with_fallback`]); or a response computed, asynchronously,
//!   from the request itself ([`FuseboxLayer::with_async_fallback`]: serve it from a cache).
//! - Half-open probes can be marked on their way out ([`FuseboxLayer::on_probe`]).
//!
//! ```
//! # async fn demo(breaker: breaker_actors::hot::Breaker) {
//! use breaker_actors::tower::{FuseboxError, FuseboxLayer};
//! use tower::{Layer, Service, ServiceExt};
//!
//! let inner = tower::service_fn(|name: String| async move { Ok::<_, std::io::Error>(format!("hello {name}")) });
//! let mut service = FuseboxLayer::new(breaker).layer(inner);
//! match service.ready().await.unwrap().call("fleet".into()).await {
//!     Ok(greeting) => println!("{greeting}"),
//!     Err(FuseboxError::Rejected(rejected)) => println!("not now: {rejected}"),
//!     Err(FuseboxError::Failed(error)) => println!("failed: {error}"),
//! }
//! # }
//! ```
//!
//! # No allocation per call
//!
//! A call through the layer allocates nothing: it is the hot path's acquire and record (see
//! [`crate::hot`]), the inner service's own call, and one reference-count increment (and
//! decrement) each for the breaker and the classifier, and only for an admitted call (a
//! [`Fallback`] takes one more, of its fallback; an [`AsyncFallback`] allocates whatever
//! its fallback's future does, and only for a rejected call). The response future is a
//! named type, [`ResponseFuture`], with the inner service's future inline, so nothing is
//! boxed. (It
//! used to be a boxed `async` block, one allocation per call: with only borrowing permits,
//! a compiler-built future, which has no name to give `Service::Future` on stable Rust, was
//! the only one that could hold both the breaker and a permit borrowing it.) Two things
//! make a named future possible:
//!
//! - an owned permit: a response future must own what it holds, and a
//!   [`Permit`](crate::hot::Permit) borrows its breaker. `call` takes an
//!   [`OwnedPermit`](crate::hot::OwnedPermit) instead ([`Breaker::try_acquire_owned`]), the
//!   same permit holding a share of the breaker's `Arc`; it records exactly as a borrowed
//!   permit does (on the counter shard of the thread that records it, which may be another
//!   worker than the one that called), and, dropped unrecorded, gives a probe slot back;
//! - pin projection without `unsafe` of this crate's own (the workspace forbids it): the
//!   inner future need not be `Unpin`, so polling it through `Pin<&mut ResponseFuture>`
//!   needs a pinned projection to the field, which `pin-project-lite` writes (the projection
//!   tokio and tower themselves use). Its macro expands to `unsafe` code, sound by that
//!   crate's construction, which this crate's `forbid(unsafe_code)` does not see: lints
//!   pass over code another crate's macro wrote.
//!
//! # What is taken when
//!
//! - `poll_ready` polls the inner service only; the breaker is not asked yet (a permit
//!   taken there could wait unused for as long as the caller likes).
//! - `call` asks the breaker at once. Rejected: the inner service is not called, its
//!   readiness stays for the next call, the rejection is counted (as demand) there and then,
//!   and the future is ready with [`FuseboxError::Rejected`] (an [`AsyncFallback`] hands
//!   the unused request to its fallback instead). Admitted: a probe's request is marked
//!   ([`FuseboxLayer::on_probe`]), the inner service is called (the one polled ready:
//!   nothing is cloned), and the slow-call clock, if one is configured, starts.
//! - The response future, when the inner one completes, records the outcome: what the
//!   classifier makes of the result (by default, a success or, for an error, a failure).
//! - A response future dropped before it completes records nothing, and a half-open probe's
//!   slot goes back to the breaker.

mod fallback;
mod future;
mod layer;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tower::{Layer, Service};

pub use self::fallback::{
    AsyncFallback, AsyncFallbackFuture, AsyncFallbackLayer, Fallback, FallbackFuture, FallbackLayer,
};
pub use self::future::ResponseFuture;
use self::future::{AdmittedCall, ResponseState};
pub use self::layer::FuseboxLayer;
use crate::hot::{AllErrorsFail, Breaker, CallError, Rejected, ResultClassifier};

/// What a [`FuseboxService`] returns when it does not return the inner service's response:
/// the same error as [`Breaker::call`]'s (`Failed` holds the inner service's error, from
/// `poll_ready` or the call).
pub type FuseboxError<E> = CallError<E>;

/// What is done to the request of an admitted half-open probe before the inner service sees
/// it ([`FuseboxLayer::on_probe`]): implemented by closures over `&mut Req`.
pub trait OnProbe<Req> {
    /// Marks `request`, which goes out as a probe.
    fn on_probe(&self, request: &mut Req);
}

/// Probes go out as they are: the default [`OnProbe`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbesUnmarked;

impl<Req> OnProbe<Req> for ProbesUnmarked {
    #[inline]
    fn on_probe(&self, _: &mut Req) {}
}

impl<Req, F: Fn(&mut Req)> OnProbe<Req> for F {
    #[inline]
    fn on_probe(&self, request: &mut Req) {
        self(request);
    }
}

/// A service behind a breaker: see the [module docs](self).
pub struct FuseboxService<S, C = AllErrorsFail, P = ProbesUnmarked> {
    inner: S,
    breaker: Breaker,
    classifier: Arc<C>,
    on_probe: Arc<P>,
}

impl<S> FuseboxService<S> {
    /// `inner` behind `breaker`; every inner error counts as a failure.
    pub fn new(inner: S, breaker: Breaker) -> Self {
        FuseboxLayer::new(breaker).layer(inner)
    }
}

impl<S, C, P> FuseboxService<S, C, P> {
    /// Answers rejected calls with `fallback(rejection)` instead of an error; inner errors
    /// come back as they are (the wrapper's error type is the inner service's).
    pub fn with_fallback<F>(self, fallback: F) -> Fallback<S, C, F, P> {
        Fallback::new(self, fallback)
    }

    /// Answers rejected calls with the future `fallback(request, rejection)` returns (see
    /// [`AsyncFallback`]).
    pub fn with_async_fallback<F>(self, fallback: F) -> AsyncFallback<S, C, F, P> {
        AsyncFallback::new(self, fallback)
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Asks the breaker: admitted, the inner service is called (a probe's request marked
    /// first) and its future comes back with the permit; rejected, the request comes back
    /// unused, with the rejection.
    fn admit<Req>(&mut self, mut request: Req) -> Result<AdmittedCall<S::Future, C>, (Req, Rejected)>
    where
        S: Service<Req>,
        P: OnProbe<Req>,
    {
        match self.breaker.try_acquire_owned() {
            Ok(permit) => {
                if permit.is_probe() {
                    self.on_probe.on_probe(&mut request);
                }
                Ok(AdmittedCall::new(self.inner.call(request), permit, Arc::clone(&self.classifier)))
            }
            Err(rejected) => Err((request, rejected)),
        }
    }
}

impl<S: Clone, C, P> Clone for FuseboxService<S, C, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: Arc::clone(&self.classifier),
            on_probe: Arc::clone(&self.on_probe),
        }
    }
}

impl<S: fmt::Debug, C, P> fmt::Debug for FuseboxService<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FuseboxService")
            .field("inner", &self.inner)
            .field("breaker", self.breaker.name())
            .finish_non_exhaustive()
    }
}

impl<S, C, P, Req> Service<Req> for FuseboxService<S, C, P>
where
    S: Service<Req>,
    C: ResultClassifier<S::Response, S::Error>,
    P: OnProbe<Req>,
{
    type Response = S::Response;
    type Error = FuseboxError<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(FuseboxError::Failed)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let state = match self.admit(request) {
            Ok(call) => ResponseState::Admitted { call },
            Err((_, rejected)) => ResponseState::Rejected { rejection: std::future::ready(rejected) },
        };
        ResponseFuture::new(state)
    }
}
