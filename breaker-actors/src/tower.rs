//! `tower` middleware over a [`Breaker`] (feature `tower`): [`FuseboxLayer`] wraps a service
//! so every call first asks the breaker's hot path for a permit and reports how it went.
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
//! [`Fallback`] takes one more, of its fallback). The response future is a named type,
//! [`ResponseFuture`], with the inner service's future inline, so nothing is boxed. (It
//! used to be a boxed `async` block, one allocation per call: with only borrowing permits,
//! a compiler-built future, which has no name to give `Service::Future` on stable Rust, was
//! the only one that could hold both the breaker and a permit borrowing it.) Two things
//! make a named future possible:
//!
//! - an owned permit: a response future must own what it holds, and a
//!   [`Permit`](crate::hot::Permit) borrows its breaker. `call` takes an
//!   [`OwnedPermit`] instead ([`Breaker::try_acquire_owned`]), the
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
//!   and the future is ready with [`FuseboxError::Rejected`]. Admitted: the inner service is
//!   called (the one polled ready: nothing is cloned), and the slow-call clock, if one is
//!   configured, starts.
//! - The response future, when the inner one completes, records the outcome: a success, or
//!   what the classifier makes of the error.
//! - A response future dropped before it completes records nothing, and a half-open probe's
//!   slot goes back to the breaker.

use std::fmt;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use ::tower::{Layer, Service};
use pin_project_lite::pin_project;

use crate::hot::{AllErrorsFail, Breaker, CallError, Classifier, OwnedPermit, Rejected};

/// What a [`FuseboxService`] returns when it does not return the inner service's response:
/// the same error as [`Breaker::call`]'s (`Failed` holds the inner service's error, from
/// `poll_ready` or the call).
pub type FuseboxError<E> = CallError<E>;

/// Wraps services in a [`FuseboxService`] over one breaker.
pub struct FuseboxLayer<C = AllErrorsFail> {
    breaker: Breaker,
    classifier: Arc<C>,
}

impl FuseboxLayer {
    /// Every inner error counts as a failure (see [`FuseboxLayer::classify_with`]).
    pub fn new(breaker: Breaker) -> Self {
        Self { breaker, classifier: Arc::new(AllErrorsFail) }
    }
}

impl<C> FuseboxLayer<C> {
    /// Lets `classifier` decide which inner errors count as failures and which are neutral.
    pub fn classify_with<C2>(self, classifier: C2) -> FuseboxLayer<C2> {
        FuseboxLayer { breaker: self.breaker, classifier: Arc::new(classifier) }
    }

    /// Answers rejected calls with `fallback(rejection)` instead of an error (see
    /// [`FuseboxService::with_fallback`]).
    pub fn with_fallback<F>(self, fallback: F) -> FallbackLayer<C, F> {
        FallbackLayer { layer: self, fallback: Arc::new(fallback) }
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<C> Clone for FuseboxLayer<C> {
    fn clone(&self) -> Self {
        Self { breaker: self.breaker.clone(), classifier: Arc::clone(&self.classifier) }
    }
}

impl<C> fmt::Debug for FuseboxLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FuseboxLayer").field("breaker", self.breaker.name()).finish_non_exhaustive()
    }
}

impl<S, C> Layer<S> for FuseboxLayer<C> {
    type Service = FuseboxService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        FuseboxService { inner, breaker: self.breaker.clone(), classifier: Arc::clone(&self.classifier) }
    }
}

/// A service behind a breaker: see the [module docs](self).
pub struct FuseboxService<S, C = AllErrorsFail> {
    inner: S,
    breaker: Breaker,
    classifier: Arc<C>,
}

impl<S> FuseboxService<S> {
    /// `inner` behind `breaker`; every inner error counts as a failure.
    pub fn new(inner: S, breaker: Breaker) -> Self {
        FuseboxLayer::new(breaker).layer(inner)
    }
}

impl<S, C> FuseboxService<S, C> {
    /// Answers rejected calls with `fallback(rejection)` instead of an error; inner errors
    /// come back as they are (the wrapper's error type is the inner service's).
    pub fn with_fallback<F>(self, fallback: F) -> Fallback<S, C, F> {
        Fallback { service: self, fallback: Arc::new(fallback) }
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
}

impl<S: Clone, C> Clone for FuseboxService<S, C> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), breaker: self.breaker.clone(), classifier: Arc::clone(&self.classifier) }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for FuseboxService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FuseboxService")
            .field("inner", &self.inner)
            .field("breaker", self.breaker.name())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The future a [`FuseboxService`] returns: the inner service's future `Fut`, whose
    /// outcome it records when it completes, or the rejection (see the [module docs](self)).
    #[must_use = "futures do nothing unless polled; dropped, this one records nothing"]
    pub struct ResponseFuture<Fut, C> {
        #[pin]
        state: ResponseState<Fut, C>,
    }
}

pin_project! {
    /// Admitted or not: decided in `call`, before there is a future.
    #[project = ResponseStateProjection]
    enum ResponseState<Fut, C> {
        /// The inner call runs; the permit reports how it went.
        Admitted {
            #[pin]
            call: Fut,
            // Taken when the call completes: a permit reports once.
            permit: Option<OwnedPermit>,
            classifier: Arc<C>,
        },
        /// The breaker turned the call away: the inner service was not called.
        Rejected {
            rejection: Ready<Rejected>,
        },
    }
}

impl<Fut, C> fmt::Debug for ResponseFuture<Fut, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admitted = matches!(self.state, ResponseState::Admitted { .. });
        f.debug_struct("ResponseFuture").field("admitted", &admitted).finish_non_exhaustive()
    }
}

impl<Fut, C, T, E> Future for ResponseFuture<Fut, C>
where
    Fut: Future<Output = Result<T, E>>,
    C: Classifier<E>,
{
    type Output = Result<T, FuseboxError<E>>;

    /// # Panics
    ///
    /// A rejected call's future panics if polled again after it completed (as
    /// [`std::future::Ready`] does); an admitted one polls the inner future again.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ResponseStateProjection::Admitted { call, permit, classifier } => {
                let result = ready!(call.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.record_result(&result, &**classifier);
                }
                Poll::Ready(result.map_err(FuseboxError::Failed))
            }
            ResponseStateProjection::Rejected { rejection } => {
                Pin::new(rejection).poll(cx).map(|rejected| Err(FuseboxError::Rejected(rejected)))
            }
        }
    }
}

impl<S, C, Req> Service<Req> for FuseboxService<S, C>
where
    S: Service<Req>,
    C: Classifier<S::Error>,
{
    type Response = S::Response;
    type Error = FuseboxError<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(FuseboxError::Failed)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let state = match self.breaker.try_acquire_owned() {
            Ok(permit) => ResponseState::Admitted {
                call: self.inner.call(request),
                permit: Some(permit),
                classifier: Arc::clone(&self.classifier),
            },
            Err(rejected) => ResponseState::Rejected { rejection: std::future::ready(rejected) },
        };
        ResponseFuture { state }
    }
}

/// Wraps services in a breaker whose rejections are answered by a fallback
/// ([`FuseboxLayer::with_fallback`]).
pub struct FallbackLayer<C, F> {
    layer: FuseboxLayer<C>,
    fallback: Arc<F>,
}

impl<C, F> Clone for FallbackLayer<C, F> {
    fn clone(&self) -> Self {
        Self { layer: self.layer.clone(), fallback: Arc::clone(&self.fallback) }
    }
}

impl<C, F> fmt::Debug for FallbackLayer<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer").field("layer", &self.layer).finish_non_exhaustive()
    }
}

impl<S, C, F> Layer<S> for FallbackLayer<C, F> {
    type Service = Fallback<S, C, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback { service: self.layer.layer(inner), fallback: Arc::clone(&self.fallback) }
    }
}

/// A [`FuseboxService`] whose rejections are answered by a fallback response
/// ([`FuseboxService::with_fallback`]).
pub struct Fallback<S, C, F> {
    service: FuseboxService<S, C>,
    fallback: Arc<F>,
}

impl<S: Clone, C, F> Clone for Fallback<S, C, F> {
    fn clone(&self) -> Self {
        Self { service: self.service.clone(), fallback: Arc::clone(&self.fallback) }
    }
}

impl<S: fmt::Debug, C, F> fmt::Debug for Fallback<S, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback").field("service", &self.service).finish_non_exhaustive()
    }
}

impl<S, C, F, Req> Service<Req> for Fallback<S, C, F>
where
    S: Service<Req>,
    C: Classifier<S::Error>,
    F: Fn(Rejected) -> S::Response,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = FallbackFuture<S::Future, C, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        FallbackFuture { response: self.service.call(request), fallback: Arc::clone(&self.fallback) }
    }
}

pin_project! {
    /// The future a [`Fallback`] returns: a [`FuseboxService`]'s, with rejections answered
    /// by the fallback `F`.
    #[must_use = "futures do nothing unless polled; dropped, this one records nothing"]
    pub struct FallbackFuture<Fut, C, F> {
        #[pin]
        response: ResponseFuture<Fut, C>,
        fallback: Arc<F>,
    }
}

impl<Fut, C, F> fmt::Debug for FallbackFuture<Fut, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackFuture").field("response", &self.response).finish_non_exhaustive()
    }
}

impl<Fut, C, F, T, E> Future for FallbackFuture<Fut, C, F>
where
    Fut: Future<Output = Result<T, E>>,
    C: Classifier<E>,
    F: Fn(Rejected) -> T,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.response.poll(cx).map(|result| match result {
            Ok(response) => Ok(response),
            Err(FuseboxError::Rejected(rejected)) => Ok((this.fallback)(rejected)),
            Err(FuseboxError::Failed(error)) => Err(error),
        })
    }
}
