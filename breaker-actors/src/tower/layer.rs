//! [`FuseboxLayer`]: what puts services behind a breaker, and the builder of what the
//! service does with outcomes (the classifier), rejections (the fallbacks) and probes.

use std::fmt;
use std::sync::Arc;

use ::tower::Layer;

use super::{AsyncFallbackLayer, FallbackLayer, FuseboxService, ProbesUnmarked};
use crate::hot::{AllErrorsFail, Breaker, ErrorsOnly};

/// Wraps services in a [`FuseboxService`] over one breaker.
pub struct FuseboxLayer<C = AllErrorsFail, P = ProbesUnmarked> {
    breaker: Breaker,
    classifier: Arc<C>,
    on_probe: Arc<P>,
}

impl FuseboxLayer {
    /// Every inner error counts as a failure, every response as a success (see
    /// [`FuseboxLayer::classify_with`] and [`FuseboxLayer::classify_results_with`]).
    pub fn new(breaker: Breaker) -> Self {
        Self { breaker, classifier: Arc::new(AllErrorsFail), on_probe: Arc::new(ProbesUnmarked) }
    }
}

impl<C, P> FuseboxLayer<C, P> {
    /// Lets `classifier` (a [`Classifier`](crate::hot::Classifier) of errors) decide which
    /// inner errors count as failures and which are neutral; every response is a success.
    pub fn classify_with<C2>(self, classifier: C2) -> FuseboxLayer<ErrorsOnly<C2>, P> {
        self.classify_results_with(ErrorsOnly(classifier))
    }

    /// Lets `classifier` (a [`ResultClassifier`](crate::hot::ResultClassifier)) judge each
    /// whole result, so a response can count as a failure: an HTTP 5xx with the `http`
    /// feature's `ServerErrorsAsFailures`. A success still counts as slow by its duration.
    pub fn classify_results_with<C2>(self, classifier: C2) -> FuseboxLayer<C2, P> {
        FuseboxLayer { breaker: self.breaker, classifier: Arc::new(classifier), on_probe: self.on_probe }
    }

    /// Calls `on_probe(&mut request)` on the request of each admitted half-open probe before
    /// the inner service sees it: to tell the dependency (a header) or the inner service
    /// that this call is a probe of its recovery.
    pub fn on_probe<P2>(self, on_probe: P2) -> FuseboxLayer<C, P2> {
        FuseboxLayer { breaker: self.breaker, classifier: self.classifier, on_probe: Arc::new(on_probe) }
    }

    /// Answers rejected calls with `fallback(rejection)` instead of an error (see
    /// [`FuseboxService::with_fallback`]).
    pub fn with_fallback<F>(self, fallback: F) -> FallbackLayer<C, F, P> {
        FallbackLayer::new(self, fallback)
    }

    /// Answers rejected calls with the future `fallback(request, rejection)` returns (see
    /// [`AsyncFallback`](super::AsyncFallback)).
    pub fn with_async_fallback<F>(self, fallback: F) -> AsyncFallbackLayer<C, F, P> {
        AsyncFallbackLayer::new(self, fallback)
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<C, P> Clone for FuseboxLayer<C, P> {
    fn clone(&self) -> Self {
        Self {
            breaker: self.breaker.clone(),
            classifier: Arc::clone(&self.classifier),
            on_probe: Arc::clone(&self.on_probe),
        }
    }
}

impl<C, P> fmt::Debug for FuseboxLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FuseboxLayer").field("breaker", self.breaker.name()).finish_non_exhaustive()
    }
}

impl<S, C, P> Layer<S> for FuseboxLayer<C, P> {
    type Service = FuseboxService<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        FuseboxService {
            inner,
            breaker: self.breaker.clone(),
            classifier: Arc::clone(&self.classifier),
            on_probe: Arc::clone(&self.on_probe),
        }
    }
}
