//! The futures a [`FuseboxService`](super::FuseboxService) call returns: [`ResponseFuture`],
//! and [`AdmittedCall`], the inner call with the permit it reports to, which the fallbacks'
//! futures hold too.

use std::fmt;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::FuseboxError;
use crate::hot::{OwnedPermit, Rejected, ResultClassifier};

pin_project! {
    /// An admitted call: the inner future, and the permit that records how it went when it
    /// completes, as the classifier judges its result.
    pub(crate) struct AdmittedCall<Fut, C> {
        #[pin]
        call: Fut,
        // Taken when the call completes: a permit reports once.
        permit: Option<OwnedPermit>,
        classifier: Arc<C>,
    }
}

impl<Fut, C> AdmittedCall<Fut, C> {
    pub(crate) fn new(call: Fut, permit: OwnedPermit, classifier: Arc<C>) -> Self {
        Self { call, permit: Some(permit), classifier }
    }
}

impl<Fut, C, T, E> Future for AdmittedCall<Fut, C>
where
    Fut: Future<Output = Result<T, E>>,
    C: ResultClassifier<T, E>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.call.poll(cx));
        if let Some(permit) = this.permit.take() {
            permit.record_classified(&result, &**this.classifier);
        }
        Poll::Ready(result)
    }
}

pin_project! {
    /// The future a [`FuseboxService`](super::FuseboxService) returns: the inner service's
    /// future `Fut`, whose outcome it records when it completes, or the rejection (see the
    /// [module docs](super)).
    #[must_use = "futures do nothing unless polled; dropped, this one records nothing"]
    pub struct ResponseFuture<Fut, C> {
        #[pin]
        state: ResponseState<Fut, C>,
    }
}

pin_project! {
    /// Admitted or not: decided in `call`, before there is a future.
    #[project = ResponseStateProjection]
    pub(crate) enum ResponseState<Fut, C> {
        /// The inner call runs; the permit reports how it went.
        Admitted {
            #[pin]
            call: AdmittedCall<Fut, C>,
        },
        /// The breaker turned the call away: the inner service was not called.
        Rejected {
            rejection: Ready<Rejected>,
        },
    }
}

impl<Fut, C> ResponseFuture<Fut, C> {
    pub(crate) fn new(state: ResponseState<Fut, C>) -> Self {
        Self { state }
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
    C: ResultClassifier<T, E>,
{
    type Output = Result<T, FuseboxError<E>>;

    /// # Panics
    ///
    /// A rejected call's future panics if polled again after it completed (as
    /// [`std::future::Ready`] does); an admitted one polls the inner future again.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ResponseStateProjection::Admitted { call } => call.poll(cx).map_err(FuseboxError::Failed),
            ResponseStateProjection::Rejected { rejection } => {
                Pin::new(rejection).poll(cx).map(|rejected| Err(FuseboxError::Rejected(rejected)))
            }
        }
    }
}
