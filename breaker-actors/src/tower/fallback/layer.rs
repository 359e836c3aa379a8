//! The layers of the fallback services: [`FallbackLayer`] and [`AsyncFallbackLayer`], a
//! [`FuseboxLayer`] with the fallback its services answer rejections with.

use std::fmt;
use std::sync::Arc;

use ::tower::Layer;

use super::{AsyncFallback, Fallback};
use crate::tower::{FuseboxLayer, ProbesUnmarked};

/// Wraps services in a breaker whose rejections are answered by a fallback
/// ([`FuseboxLayer::with_fallback`]).
pub struct FallbackLayer<C, F, P = ProbesUnmarked> {
    layer: FuseboxLayer<C, P>,
    fallback: Arc<F>,
}

impl<C, F, P> FallbackLayer<C, F, P> {
    /// `layer`, its services' rejections answered with `fallback(rejection)`.
    pub fn new(layer: FuseboxLayer<C, P>, fallback: F) -> Self {
        Self { layer, fallback: Arc::new(fallback) }
    }
}

impl<C, F, P> Clone for FallbackLayer<C, F, P> {
    fn clone(&self) -> Self {
        Self { layer: self.layer.clone(), fallback: Arc::clone(&self.fallback) }
    }
}

impl<C, F, P> fmt::Debug for FallbackLayer<C, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer").field("layer", &self.layer).finish_non_exhaustive()
    }
}

impl<S, C, F, P> Layer<S> for FallbackLayer<C, F, P> {
    type Service = Fallback<S, C, F, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback { service: self.layer.layer(inner), fallback: Arc::clone(&self.fallback) }
    }
}

/// Wraps services in a breaker whose rejections are answered by an asynchronous,
/// request-aware fallback ([`FuseboxLayer::with_async_fallback`]).
pub struct AsyncFallbackLayer<C, F, P = ProbesUnmarked> {
    layer: FuseboxLayer<C, P>,
    fallback: Arc<F>,
}

impl<C, F, P> AsyncFallbackLayer<C, F, P> {
    /// `layer`, its services' rejections answered by `fallback(request, rejection)`.
    pub fn new(layer: FuseboxLayer<C, P>, fallback: F) -> Self {
        Self { layer, fallback: Arc::new(fallback) }
    }
}

impl<C, F, P> Clone for AsyncFallbackLayer<C, F, P> {
    fn clone(&self) -> Self {
        Self { layer: self.layer.clone(), fallback: Arc::clone(&self.fallback) }
    }
}

impl<C, F, P> fmt::Debug for AsyncFallbackLayer<C, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFallbackLayer").field("layer", &self.layer).finish_non_exhaustive()
    }
}

impl<S, C, F, P> Layer<S> for AsyncFallbackLayer<C, F, P> {
    type Service = AsyncFallback<S, C, F, P>;

    fn layer(&self, inner: S) -> Self::Service {
        AsyncFallback { service: self.layer.layer(inner), fallback: Arc::clone(&self.fallback) }
    }
}
