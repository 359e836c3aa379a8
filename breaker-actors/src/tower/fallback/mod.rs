//! Services behind a breaker whose rejections get an answer other than the error:
//! [`Fallback`], a value made from the rejection on the spot, and [`AsyncFallback`], a
//! future made from the request and the rejection (serve the request from a cache, ask a
//! secondary). Both wrap a [`FuseboxService`] and report exactly what it does: a rejection
//! is counted as demand, the fallback's answer is not an outcome of the dependency.

mod future;
mod layer;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tower::Service;

use self::future::AsyncFallbackState;
pub use self::future::{AsyncFallbackFuture, FallbackFuture};
pub use self::layer::{AsyncFallbackLayer, FallbackLayer};
use super::{FuseboxError, FuseboxService, OnProbe, ProbesUnmarked};
use crate::hot::{Rejected, ResultClassifier};

/// A [`FuseboxService`] whose rejections are answered by a fallback response
/// ([`FuseboxService::with_fallback`]).
pub struct Fallback<S, C, F, P = ProbesUnmarked> {
    service: FuseboxService<S, C, P>,
    fallback: Arc<F>,
}

impl<S, C, F, P> Fallback<S, C, F, P> {
    /// `service`, its rejections answered with `fallback(rejection)`.
    pub fn new(service: FuseboxService<S, C, P>, fallback: F) -> Self {
        Self { service, fallback: Arc::new(fallback) }
    }
}

impl<S: Clone, C, F, P> Clone for Fallback<S, C, F, P> {
    fn clone(&self) -> Self {
        Self { service: self.service.clone(), fallback: Arc::clone(&self.fallback) }
    }
}

impl<S: fmt::Debug, C, F, P> fmt::Debug for Fallback<S, C, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback").field("service", &self.service).finish_non_exhaustive()
    }
}

impl<S, C, F, P, Req> Service<Req> for Fallback<S, C, F, P>
where
    S: Service<Req>,
    C: ResultClassifier<S::Response, S::Error>,
    P: OnProbe<Req>,
    F: Fn(Rejected) -> S::Response,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = FallbackFuture<S::Future, C, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        FallbackFuture::new(self.service.call(request), Arc::clone(&self.fallback))
    }
}

/// A [`FuseboxService`] whose rejections are answered by the future the fallback makes of
/// the request and the rejection ([`FuseboxService::with_async_fallback`]). The fallback is
/// a `Fn(Req, Rejected) -> impl Future<Output = Result<Response, FuseboxError<Error>>>`: it
/// owns the request the inner service never saw, and when it has no answer either (a cache
/// miss) it gives the rejection back. The service's response and error types are the
/// [`FuseboxService`]'s, so it stands wherever that one does.
///
/// Nothing is cloned or allocated for an admitted call; a rejected one costs what the
/// fallback's future does.
///
/// ```
/// # async fn demo(breaker: breaker_actors::hot::Breaker) {
/// use std::collections::HashMap;
/// use std::sync::Arc;
///
/// use breaker_actors::hot::Rejected;
/// use breaker_actors::tower::{FuseboxError, FuseboxLayer};
/// use tower::{Layer, Service, ServiceExt};
///
/// let cache = Arc::new(HashMap::from([("apple", 30_u32)]));
/// let prices = tower::service_fn(|item: &'static str| async move { Ok::<_, String>(item.len() as u32) });
/// let service = FuseboxLayer::new(breaker).with_async_fallback(move |item: &'static str, rejected: Rejected| {
///     let cache = Arc::clone(&cache);
///     async move { cache.get(item).copied().ok_or(FuseboxError::Rejected(rejected)) }
/// });
/// let mut prices = service.layer(prices);
/// let _ = prices.ready().await.unwrap().call("apple").await; // the dependency's, or the cache's
/// # }
/// ```
pub struct AsyncFallback<S, C, F, P = ProbesUnmarked> {
    service: FuseboxService<S, C, P>,
    fallback: Arc<F>,
}

impl<S, C, F, P> AsyncFallback<S, C, F, P> {
    /// `service`, its rejections answered by `fallback(request, rejection)`.
    pub fn new(service: FuseboxService<S, C, P>, fallback: F) -> Self {
        Self { service, fallback: Arc::new(fallback) }
    }

    /// The service behind the breaker.
    pub fn get_ref(&self) -> &FuseboxService<S, C, P> {
        &self.service
    }
}

impl<S: Clone, C, F, P> Clone for AsyncFallback<S, C, F, P> {
    fn clone(&self) -> Self {
        Self { service: self.service.clone(), fallback: Arc::clone(&self.fallback) }
    }
}

impl<S: fmt::Debug, C, F, P> fmt::Debug for AsyncFallback<S, C, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFallback").field("service", &self.service).finish_non_exhaustive()
    }
}

impl<S, C, F, P, Req, Answer> Service<Req> for AsyncFallback<S, C, F, P>
where
    S: Service<Req>,
    C: ResultClassifier<S::Response, S::Error>,
    P: OnProbe<Req>,
    F: Fn(Req, Rejected) -> Answer,
    Answer: Future<Output = Result<S::Response, FuseboxError<S::Error>>>,
{
    type Response = S::Response;
    type Error = FuseboxError<S::Error>;
    type Future = AsyncFallbackFuture<S::Future, C, Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let state = match self.service.admit(request) {
            Ok(call) => AsyncFallbackState::Admitted { call },
            Err((request, rejected)) => AsyncFallbackState::Fallback { answer: (self.fallback)(request, rejected) },
        };
        AsyncFallbackFuture::new(state)
    }
}
