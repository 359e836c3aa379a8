//! The futures of the fallback services: [`FallbackFuture`] and [`AsyncFallbackFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::hot::{Rejected, ResultClassifier};
use crate::tower::FuseboxError;
use crate::tower::future::{AdmittedCall, ResponseFuture};

pin_project! {
    /// The future a [`Fallback`](super::Fallback) returns: a
    /// [`FuseboxService`](crate::tower::FuseboxService)'s, with rejections answered by the
    /// fallback `F`.
    #[must_use = "futures do nothing unless polled; dropped, this one records nothing"]
    pub struct FallbackFuture<Fut, C, F> {
        #[pin]
        response: ResponseFuture<Fut, C>,
        fallback: Arc<F>,
    }
}

impl<Fut, C, F> FallbackFuture<Fut, C, F> {
    pub(super) fn new(response: ResponseFuture<Fut, C>, fallback: Arc<F>) -> Self {
        Self { response, fallback }
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
    C: ResultClassifier<T, E>,
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

pin_project! {
    /// The future an [`AsyncFallback`](super::AsyncFallback) returns: the admitted inner
    /// call `Fut`, whose outcome it records, or the fallback's answer `Answer` to a
    /// rejection.
    #[must_use = "futures do nothing unless polled; dropped, this one records nothing"]
    pub struct AsyncFallbackFuture<Fut, C, Answer> {
        #[pin]
        state: AsyncFallbackState<Fut, C, Answer>,
    }
}

pin_project! {
    /// Admitted or answered by the fallback: decided in `call`.
    #[project = AsyncFallbackProjection]
    pub(super) enum AsyncFallbackState<Fut, C, Answer> {
        /// The inner call runs; the permit reports how it went.
        Admitted {
            #[pin]
            call: AdmittedCall<Fut, C>,
        },
        /// The breaker turned the call away; the fallback answers.
        Fallback {
            #[pin]
            answer: Answer,
        },
    }
}

impl<Fut, C, Answer> AsyncFallbackFuture<Fut, C, Answer> {
    pub(super) fn new(state: AsyncFallbackState<Fut, C, Answer>) -> Self {
        Self { state }
    }
}

impl<Fut, C, Answer> fmt::Debug for AsyncFallbackFuture<Fut, C, Answer> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admitted = matches!(self.state, AsyncFallbackState::Admitted { .. });
        f.debug_struct("AsyncFallbackFuture").field("admitted", &admitted).finish_non_exhaustive()
    }
}

impl<Fut, C, Answer, T, E> Future for AsyncFallbackFuture<Fut, C, Answer>
where
    Fut: Future<Output = Result<T, E>>,
    C: ResultClassifier<T, E>,
    Answer: Future<Output = Result<T, FuseboxError<E>>>,
{
    type Output = Result<T, FuseboxError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            AsyncFallbackProjection::Admitted { call } => call.poll(cx).map_err(FuseboxError::Failed),
            AsyncFallbackProjection::Fallback { answer } => answer.poll(cx),
        }
    }
}
