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
//! Why the response future is boxed, and the permit is taken when it is first polled rather
//! than in `call`: a hot-path [`Permit`](crate::hot::Permit) borrows its breaker, and a
//! response future must own everything it holds. Only a compiler-built `async` future may
//! hold both a `Breaker` and a permit borrowing it, and such a future has no name to put in
//! `Service::Future` on stable Rust. So `call` moves the ready inner service into that future
//! (tower's usual clone-and-swap), which then acquires, and calls the inner service only once
//! admitted: a rejected call never reaches it. The cost is one allocation per call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tower::{Layer, Service};

use crate::hot::{AllErrorsFail, Breaker, CallError, Classifier, Rejected};

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

/// The future a [`FuseboxService`] returns.
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, FuseboxError<E>>> + Send>>;

impl<S, C, Req> Service<Req> for FuseboxService<S, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: 'static,
    S::Error: 'static,
    C: Classifier<S::Error> + Send + Sync + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = FuseboxError<S::Error>;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(FuseboxError::Failed)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The service polled ready is the one that must serve this call: it goes into the
        // future and a clone stays behind to be polled ready for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let breaker = self.breaker.clone();
        let classifier = Arc::clone(&self.classifier);
        Box::pin(async move {
            let permit = breaker.try_acquire().map_err(FuseboxError::Rejected)?;
            match inner.call(request).await {
                Ok(response) => {
                    permit.success();
                    Ok(response)
                }
                Err(error) => {
                    permit.record(classifier.classify(&error));
                    Err(FuseboxError::Failed(error))
                }
            }
        })
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
    FuseboxService<S, C>: Service<Req, Error = FuseboxError<S::Error>, Future = ResponseFuture<S::Response, S::Error>>,
    S: Service<Req>,
    F: Fn(Rejected) -> S::Response,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = FallbackFuture<S::Response, S::Error, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        FallbackFuture { inner: self.service.call(request), fallback: Arc::clone(&self.fallback) }
    }
}

/// The future a [`Fallback`] returns.
pub struct FallbackFuture<T, E, F> {
    inner: ResponseFuture<T, E>,
    fallback: Arc<F>,
}

impl<T, E, F> fmt::Debug for FallbackFuture<T, E, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackFuture").finish_non_exhaustive()
    }
}

impl<T, E, F: Fn(Rejected) -> T> Future for FallbackFuture<T, E, F> {
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both fields are `Unpin` (a boxed future and an `Arc`), so no pin projection is needed.
        let this = self.get_mut();
        this.inner.as_mut().poll(cx).map(|result| match result {
            Ok(response) => Ok(response),
            Err(FuseboxError::Rejected(rejected)) => Ok((this.fallback)(rejected)),
            Err(FuseboxError::Failed(error)) => Err(error),
        })
    }
}
