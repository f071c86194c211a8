//! The chaos service's [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use battlement_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

type Answer<S, Req> = Result<<S as Service<Req>>::Response, BoxError>;

pin_project! {
    /// The response future of [`ChaosService`](crate::ChaosService): the
    /// inner future of a call passed through (nothing else: no allocation,
    /// no clock), an immediately ready injected answer, or a sleep followed
    /// by the call or by the answer (boxed with the inner service and the
    /// request it will call, so the other cases stay small: a delayed call
    /// is one allocation).
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Called { #[pin] fut: S::Future },
        Delayed { delayed: Pin<Box<Delayed<S, Req>>> },
        Answered { answer: Option<Answer<S, Req>> },
    }
}

pin_project! {
    /// A delayed call's sleep and what follows it.
    struct Delayed<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        sleep: Sleep,
        next: Option<Next<S, Req>>,
    }
}

/// What a delayed call does once its sleep is over.
enum Next<S: Service<Req>, Req> {
    Call(S, Req),
    Answer(Answer<S, Req>),
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    #[inline]
    pub(crate) fn called(fut: S::Future) -> Self {
        ResponseFuture {
            kind: Kind::Called { fut },
        }
    }

    pub(crate) fn answered(answer: Answer<S, Req>) -> Self {
        ResponseFuture {
            kind: Kind::Answered {
                answer: Some(answer),
            },
        }
    }

    pub(crate) fn delayed_call(delay: Duration, inner: S, req: Req) -> Self {
        Self::delayed(delay, Next::Call(inner, req))
    }

    pub(crate) fn delayed_answer(delay: Duration, answer: Answer<S, Req>) -> Self {
        Self::delayed(delay, Next::Answer(answer))
    }

    fn delayed(delay: Duration, next: Next<S, Req>) -> Self {
        ResponseFuture {
            kind: Kind::Delayed {
                delayed: Box::pin(Delayed {
                    sleep: tokio::time::sleep(delay),
                    next: Some(next),
                }),
            },
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Delayed { .. } => "delayed",
            Kind::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Answer<S, Req>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Called { fut } => return fut.poll(cx).map_err(Into::into),
                KindProj::Answered { answer } => {
                    return Poll::Ready(
                        answer
                            .take()
                            .expect("ResponseFuture polled after completion"),
                    );
                }
                KindProj::Delayed { delayed } => match ready!(delayed.as_mut().poll_next(cx)) {
                    Next::Answer(answer) => return Poll::Ready(answer),
                    Next::Call(mut inner, req) => {
                        let fut = inner.call(req);
                        kind.set(Kind::Called { fut });
                    }
                },
            }
        }
    }
}

impl<S: Service<Req>, Req> Delayed<S, Req> {
    /// What follows the sleep, once it is over.
    #[inline(never)]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Next<S, Req>> {
        let this = self.project();
        ready!(this.sleep.poll(cx));
        Poll::Ready(
            this.next
                .take()
                .expect("ResponseFuture polled after completion"),
        )
    }
}
