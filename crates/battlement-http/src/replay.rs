//! Replayable request bodies: [`ReplayBodyLayer`], [`ReplayBody`] and
//! [`ReplayState`].

use std::error::Error;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use battlement_core::BoxError;
use bytes::{Buf, Bytes};
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

/// The default bound of a [`ReplayBody`]'s buffer: 64 KiB, as linkerd's.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

/// Makes any `http::Request<B>` retryable: wraps its body in a
/// [`ReplayBody`] that keeps what it sends, up to a bound, so a retry can
/// send it again. Place it **above** the retry (a `Policy::http` or
/// `Policy::grpc`, a `RetryLayer`); the service below sees
/// `http::Request<ReplayBody<B>>`, and the retry copies such a request
/// through its [`RetryIf`](https://docs.rs/battlement-retry) (`Idempotent`
/// and `AnyMethod` of the `battlement` facade copy any
/// `http::Request<B: Clone>`).
///
/// # How it works
///
/// - Nothing is read up front: a streaming upload starts at once. As the
///   first attempt sends the body, each data frame is also kept (a
///   reference-counted [`Bytes`], no copy for `Bytes` bodies), and so are
///   the trailers (gRPC sends its status there).
/// - A copy of the request (made by the retry when the call starts) holds
///   a clone of the body. When a retry sends it, it replays the kept frames
///   and then, if the first attempt had not read the whole body, reads on
///   from the original, keeping what it reads for the next retry. Only one
///   body reads at a time: a clone polled while an earlier attempt still
///   holds the body (an HTTP/2 stream still sending) waits until that one
///   ends or is dropped.
/// - Past the bound (`max_bytes`, default [`DEFAULT_MAX_BYTES`]) the buffer
///   is dropped and the body is sent once: the attempt in flight goes on
///   with the rest, but the request is no longer replayable. A body whose
///   size hint already says it is larger than the bound is never buffered.
///   A body that failed while being read is not replayable either.
/// - The request's extensions get a [`ReplayState`], so a retry predicate
///   can ask [`ReplayState::is_replayable`] before each retry: the
///   facade's `Idempotent` and `AnyMethod` do, and a retryable failure of
///   a request whose body was too large ends as
///   `RetriesExhausted { reason: NotRepeatable }` (or the failed response
///   itself) instead of a retry. A clone polled anyway answers
///   [`NotReplayable`] as its body error, which says why.
///
/// The buffer's lock (`std::sync::Mutex`) is taken only to hand the body
/// from one attempt to the next and to read size hints, never across an
/// `.await` and never while a frame is read.
///
/// ```
/// use battlement_http::{ReplayBody, ReplayBodyLayer, ReplayState};
/// use http_body_util::{BodyExt, Full};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(ReplayBodyLayer::new().max_bytes(1024))
///     .service(service_fn(|req: http::Request<ReplayBody<Full<bytes::Bytes>>>| async move {
///         assert!(req.extensions().get::<ReplayState>().unwrap().is_replayable());
///         let replay = req.body().clone();
///         let first = req.into_body().collect().await?.to_bytes();
///         // The clone sends the same bytes again.
///         let again = replay.collect().await?.to_bytes();
///         assert_eq!(first, again);
///         Ok::<_, battlement_core::BoxError>(http::Response::new(first))
///     }));
/// let res = svc.oneshot(http::Request::new(Full::from("hello"))).await.unwrap();
/// assert_eq!(res.body(), "hello");
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ReplayBodyLayer {
    max_bytes: usize,
}

impl ReplayBodyLayer {
    /// A layer that keeps up to [`DEFAULT_MAX_BYTES`] of each body.
    pub const fn new() -> Self {
        ReplayBodyLayer {
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// Keeps up to `max` bytes of each body; a larger body is sent once.
    /// Zero makes only bodies without data replayable.
    #[must_use]
    pub const fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }
}

impl Default for ReplayBodyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ReplayBodyLayer {
    type Service = ReplayBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReplayBodyService::new(inner, self.max_bytes)
    }
}

/// The service of [`ReplayBodyLayer`]: wraps each request's body in a
/// [`ReplayBody`] and puts its [`ReplayState`] in the extensions.
#[derive(Debug, Clone)]
pub struct ReplayBodyService<S> {
    inner: S,
    max_bytes: usize,
}

impl<S> ReplayBodyService<S> {
    /// Wraps `inner`, keeping up to `max_bytes` of each body.
    pub const fn new(inner: S, max_bytes: usize) -> Self {
        ReplayBodyService { inner, max_bytes }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for ReplayBodyService<S>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let body = ReplayBody::new(body, self.max_bytes);
        parts.extensions.insert(body.state());
        self.inner.call(Request::from_parts(parts, body))
    }
}

const REPLAYABLE: u8 = 0;
const TOO_LARGE: u8 = 1;
const BODY_FAILED: u8 = 2;

/// Whether a [`ReplayBody`] can still be sent again, shared by the body
/// and its clones; [`ReplayBodyLayer`] puts it in the request's
/// extensions, so a retry predicate can ask before each retry.
#[derive(Clone)]
pub struct ReplayState {
    flags: Arc<Flags>,
}

struct Flags {
    state: AtomicU8,
    max_bytes: usize,
}

impl ReplayState {
    /// `true` while the body can be sent again: it has not grown past the
    /// bound and has not failed.
    pub fn is_replayable(&self) -> bool {
        self.flags.state.load(Ordering::Acquire) == REPLAYABLE
    }

    /// Why the body can no longer be sent again, if it cannot.
    pub fn reason(&self) -> Option<NotReplayable> {
        let reason = match self.flags.state.load(Ordering::Acquire) {
            REPLAYABLE => return None,
            TOO_LARGE => Reason::TooLarge,
            _ => Reason::BodyFailed,
        };
        Some(NotReplayable {
            reason,
            max_bytes: self.flags.max_bytes,
        })
    }

    /// The bound of the body's buffer, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.flags.max_bytes
    }

    fn give_up(&self, why: u8) {
        // The first reason stays.
        let _ =
            self.flags
                .state
                .compare_exchange(REPLAYABLE, why, Ordering::AcqRel, Ordering::Acquire);
    }
}

impl fmt::Debug for ReplayState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayState")
            .field("replayable", &self.is_replayable())
            .field("max_bytes", &self.flags.max_bytes)
            .finish()
    }
}

/// The error of a [`ReplayBody`] asked to send again what it could not
/// keep: the body was larger than the bound, or failed on an earlier
/// attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotReplayable {
    reason: Reason,
    max_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    TooLarge,
    BodyFailed,
}

impl NotReplayable {
    /// `true` when the body grew past the bound.
    pub fn is_too_large(&self) -> bool {
        self.reason == Reason::TooLarge
    }

    /// The bound of the buffer, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Reason::TooLarge => write!(
                f,
                "request body cannot be replayed: larger than the replay buffer ({} bytes)",
                self.max_bytes
            ),
            Reason::BodyFailed => f.write_str(
                "request body cannot be replayed: it failed while an earlier attempt sent it",
            ),
        }
    }
}

impl Error for NotReplayable {}

/// A request body that can be sent more than once: see
/// [`ReplayBodyLayer`]. Clones share one buffer; the first to be read
/// reads the inner body, each later one replays what was kept and reads
/// on.
pub struct ReplayBody<B> {
    shared: Arc<Shared<B>>,
    // The body and its buffer while this one reads them.
    held: Option<Buffer<B>>,
    // The next kept frame to replay, and the bytes replayed so far.
    next: usize,
    replayed: usize,
    trailers_sent: bool,
    finished: bool,
}

struct Shared<B> {
    state: ReplayState,
    slot: Mutex<Slot<B>>,
}

struct Slot<B> {
    // `None` while a body holds it.
    buffer: Option<Buffer<B>>,
    // Clones polled while another one holds the buffer.
    waiting: Vec<Waker>,
}

struct Buffer<B> {
    inner: Pin<Box<B>>,
    frames: Vec<Bytes>,
    bytes: usize,
    trailers: Option<HeaderMap>,
    // Anything read from `inner` yet.
    started: bool,
    // `inner` has ended (returned `None` or its trailers).
    ended: bool,
}

impl<B: Body> ReplayBody<B> {
    /// Wraps `body`, keeping up to `max_bytes` of it for replays.
    pub fn new(body: B, max_bytes: usize) -> Self {
        let state = ReplayState {
            flags: Arc::new(Flags {
                state: AtomicU8::new(REPLAYABLE),
                max_bytes,
            }),
        };
        if body.size_hint().lower() > max_bytes as u64 {
            state.give_up(TOO_LARGE);
        }
        ReplayBody {
            shared: Arc::new(Shared {
                state,
                slot: Mutex::new(Slot {
                    buffer: Some(Buffer {
                        inner: Box::pin(body),
                        frames: Vec::new(),
                        bytes: 0,
                        trailers: None,
                        started: false,
                        ended: false,
                    }),
                    waiting: Vec::new(),
                }),
            }),
            held: None,
            next: 0,
            replayed: 0,
            trailers_sent: false,
            finished: false,
        }
    }
}

impl<B> ReplayBody<B> {
    /// The state shared by this body and its clones.
    pub fn state(&self) -> ReplayState {
        self.shared.state.clone()
    }

    /// `true` while the body can be sent again.
    pub fn is_replayable(&self) -> bool {
        self.shared.state.is_replayable()
    }

    fn slot(&self) -> MutexGuard<'_, Slot<B>> {
        // A panic elsewhere cannot leave the slot half-written: every
        // critical section is a move in or out.
        self.shared
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the buffer back for the next clone and wakes those waiting.
    fn release(&mut self) {
        if let Some(buffer) = self.held.take() {
            let waiting = {
                let mut slot = self.slot();
                slot.buffer = Some(buffer);
                std::mem::take(&mut slot.waiting)
            };
            waiting.into_iter().for_each(Waker::wake);
        }
    }

    /// Whether a body at this one's position has nothing left in `buf`.
    fn ended_in(&self, buf: &Buffer<B>) -> bool
    where
        B: Body,
    {
        self.next >= buf.frames.len()
            && (buf.trailers.is_none() || self.trailers_sent)
            && (buf.ended || buf.inner.is_end_stream())
    }
}

impl<B> Clone for ReplayBody<B> {
    /// A body that sends the same bytes from the start.
    fn clone(&self) -> Self {
        ReplayBody {
            shared: Arc::clone(&self.shared),
            held: None,
            next: 0,
            replayed: 0,
            trailers_sent: false,
            finished: false,
        }
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("state", &self.shared.state)
            .field("reading", &self.held.is_some())
            .field("replayed", &self.replayed)
            .finish_non_exhaustive()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if this.held.is_none() {
            let mut slot = this.slot();
            match slot.buffer.take() {
                Some(buffer) => {
                    drop(slot);
                    this.held = Some(buffer);
                }
                None => {
                    // An earlier attempt still sends the body.
                    if !slot.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                        slot.waiting.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
            // What was read before and not kept cannot be sent again.
            if let Some(why) = this.shared.state.reason()
                && this.held.as_ref().is_some_and(|b| b.started)
            {
                this.finished = true;
                this.release();
                return Poll::Ready(Some(Err(Box::new(why))));
            }
        }
        let state = &this.shared.state;
        let Some(buf) = this.held.as_mut() else {
            unreachable!("the buffer was taken above");
        };
        if let Some(data) = buf.frames.get(this.next) {
            this.next += 1;
            this.replayed += data.len();
            return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
        }
        loop {
            if buf.ended {
                if let Some(trailers) = buf.trailers.as_ref().filter(|_| !this.trailers_sent) {
                    this.trailers_sent = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
                }
                this.finished = true;
                this.release();
                return Poll::Ready(None);
            }
            let frame = match std::task::ready!(buf.inner.as_mut().poll_frame(cx)) {
                None => {
                    buf.ended = true;
                    continue;
                }
                Some(Err(e)) => {
                    state.give_up(BODY_FAILED);
                    buf.frames = Vec::new();
                    buf.bytes = 0;
                    this.finished = true;
                    this.release();
                    return Poll::Ready(Some(Err(e.into())));
                }
                Some(Ok(frame)) => frame,
            };
            buf.started = true;
            let frame = match frame.into_data() {
                Ok(mut data) => {
                    let data = data.copy_to_bytes(data.remaining());
                    keep(state, buf, &data);
                    this.next = buf.frames.len();
                    this.replayed = buf.bytes;
                    Frame::data(data)
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        // Trailers end a body.
                        buf.ended = true;
                        buf.trailers = Some(trailers.clone());
                        this.trailers_sent = true;
                        Frame::trailers(trailers)
                    }
                    // A kind of frame `http-body` does not have yet: skip.
                    Err(_) => continue,
                },
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.finished {
            return true;
        }
        match &self.held {
            Some(buf) => self.ended_in(buf),
            None => {
                let slot = self.slot();
                // Held by an earlier attempt: not known yet.
                slot.buffer.as_ref().is_some_and(|buf| {
                    (self.shared.state.is_replayable() || !buf.started) && self.ended_in(buf)
                })
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.finished {
            return SizeHint::with_exact(0);
        }
        let hint = |buf: &Buffer<B>| {
            let kept = buf.bytes.saturating_sub(self.replayed) as u64;
            if buf.ended {
                return SizeHint::with_exact(kept);
            }
            let rest = buf.inner.size_hint();
            let mut hint = SizeHint::new();
            hint.set_lower(rest.lower().saturating_add(kept));
            if let Some(upper) = rest.upper() {
                hint.set_upper(upper.saturating_add(kept));
            }
            hint
        };
        match &self.held {
            Some(buf) => hint(buf),
            None => match &self.slot().buffer {
                Some(buf) if self.shared.state.is_replayable() || !buf.started => hint(buf),
                _ => SizeHint::default(),
            },
        }
    }
}

/// Keeps `data` in the buffer while it fits under the bound; past it,
/// drops the buffer and marks the body as sent once.
fn keep<B>(state: &ReplayState, buf: &mut Buffer<B>, data: &Bytes) {
    if !state.is_replayable() {
        return;
    }
    match buf.bytes.checked_add(data.len()) {
        Some(total) if total <= state.max_bytes() => {
            buf.frames.push(data.clone());
            buf.bytes = total;
        }
        _ => {
            tracing::debug!(
                max_bytes = state.max_bytes(),
                "request body is larger than the replay buffer: it is sent once"
            );
            state.give_up(TOO_LARGE);
            buf.frames = Vec::new();
            buf.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use tokio::sync::mpsc;

    type Chunk = Result<Frame<Bytes>, std::io::Error>;

    /// A body fed frame by frame through a channel: a streaming upload.
    struct ChannelBody(mpsc::UnboundedReceiver<Chunk>);

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
            self.0.poll_recv(cx)
        }
    }

    fn channel_body(max: usize) -> (mpsc::UnboundedSender<Chunk>, ReplayBody<ChannelBody>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, ReplayBody::new(ChannelBody(rx), max))
    }

    fn send(tx: &mpsc::UnboundedSender<Chunk>, s: &'static str) {
        tx.send(Ok(Frame::data(Bytes::from(s)))).unwrap();
    }

    async fn next<B: Body<Data = Bytes, Error = BoxError> + Unpin>(
        body: &mut B,
    ) -> Option<Frame<Bytes>> {
        body.frame().await.map(|f| f.unwrap())
    }

    fn data(frame: Option<Frame<Bytes>>) -> Bytes {
        frame.unwrap().into_data().unwrap()
    }

    fn poll_once<B: Body<Data = Bytes, Error = BoxError> + Unpin>(
        body: &mut B,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let waker = Waker::noop();
        Pin::new(body).poll_frame(&mut Context::from_waker(waker))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_clone_replays_every_frame_and_the_trailers() {
        let (tx, first) = channel_body(1024);
        let mut copy = first.clone();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        send(&tx, "ab");
        send(&tx, "cd");
        tx.send(Ok(Frame::trailers(trailers.clone()))).unwrap();
        drop(tx);
        let state = first.state();
        let got = first.collect().await.unwrap();
        assert_eq!(got.trailers(), Some(&trailers));
        assert_eq!(got.to_bytes(), "abcd");
        assert!(!copy.is_end_stream());
        assert_eq!(copy.size_hint().exact(), Some(4));
        let mut again = copy.clone();
        assert_eq!(data(next(&mut copy).await), "ab");
        assert_eq!(copy.size_hint().exact(), Some(2));
        assert_eq!(data(next(&mut copy).await), "cd");
        assert_eq!(
            next(&mut copy).await.unwrap().into_trailers().unwrap(),
            trailers
        );
        assert!(next(&mut copy).await.is_none());
        assert!(copy.is_end_stream());
        drop(copy);
        // And again, from the start.
        let got = (&mut again).collect().await.unwrap();
        assert_eq!(got.trailers(), Some(&trailers));
        assert_eq!(got.to_bytes(), "abcd");
        assert!(state.is_replayable());
    }

    /// The first attempt read part of the body and was dropped: the clone
    /// replays that part and reads on from the original.
    #[tokio::test(flavor = "current_thread")]
    async fn a_clone_reads_on_where_the_first_attempt_stopped() {
        let (tx, mut first) = channel_body(1024);
        let mut copy = first.clone();
        send(&tx, "ab");
        assert_eq!(data(next(&mut first).await), "ab");
        drop(first);
        send(&tx, "cd");
        drop(tx);
        assert_eq!(data(next(&mut copy).await), "ab");
        assert_eq!(data(next(&mut copy).await), "cd");
        assert!(next(&mut copy).await.is_none());
    }

    /// Only one body reads at a time: a clone polled while the first still
    /// sends waits, and is woken when the first ends.
    #[tokio::test(flavor = "current_thread")]
    async fn a_clone_waits_for_the_body_in_flight() {
        let (tx, mut first) = channel_body(1024);
        let mut copy = first.clone();
        send(&tx, "ab");
        assert_eq!(data(next(&mut first).await), "ab");
        assert!(poll_once(&mut copy).is_pending());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn(async move {
            let bytes = copy.collect().await.unwrap().to_bytes();
            done_tx.send(()).unwrap();
            bytes
        });
        tokio::task::yield_now().await;
        send(&tx, "cd");
        drop(tx);
        assert_eq!(data(next(&mut first).await), "cd");
        assert!(next(&mut first).await.is_none());
        done_rx.await.unwrap();
        assert_eq!(reader.await.unwrap(), "abcd");
        drop(first);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn past_the_bound_the_body_is_sent_once() {
        let (tx, mut first) = channel_body(3);
        let mut copy = first.clone();
        let state = first.state();
        send(&tx, "ab");
        send(&tx, "cd");
        drop(tx);
        assert_eq!(data(next(&mut first).await), "ab");
        assert!(state.is_replayable());
        // The attempt in flight still gets the whole body.
        assert_eq!(data(next(&mut first).await), "cd");
        assert!(next(&mut first).await.is_none());
        assert!(!state.is_replayable());
        let why = state.reason().unwrap();
        assert!(why.is_too_large());
        assert_eq!(why.max_bytes(), 3);
        assert!(
            why.to_string()
                .contains("larger than the replay buffer (3 bytes)")
        );
        drop(first);
        let err = copy.frame().await.unwrap().unwrap_err();
        assert_eq!(err.downcast_ref::<NotReplayable>(), Some(&why));
        assert!(next(&mut copy).await.is_none());
    }

    /// A body whose size hint is already over the bound is never buffered,
    /// but is sent whole the first time.
    #[tokio::test(flavor = "current_thread")]
    async fn a_body_known_to_be_too_large_is_not_replayable_up_front() {
        let body = ReplayBody::new(Full::new(Bytes::from(vec![7u8; 10])), 5);
        assert!(!body.is_replayable());
        let copy = body.clone();
        assert_eq!(body.size_hint().exact(), Some(10));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 10);
        assert!(copy.collect().await.is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_body_is_not_replayable() {
        let (tx, mut first) = channel_body(1024);
        let mut copy = first.clone();
        send(&tx, "ab");
        tx.send(Err(std::io::Error::other("upload broke"))).unwrap();
        assert_eq!(data(next(&mut first).await), "ab");
        let err = first.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "upload broke");
        assert!(!first.is_replayable());
        drop(first);
        let err = copy.frame().await.unwrap().unwrap_err();
        let why = err.downcast_ref::<NotReplayable>().unwrap();
        assert!(!why.is_too_large());
        assert!(why.to_string().contains("failed"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn empty_bodies_end_at_once() {
        let body = ReplayBody::new(Full::new(Bytes::new()), 0);
        assert!(body.is_end_stream());
        assert!(body.is_replayable());
        let copy = body.clone();
        assert!(copy.is_end_stream());
        assert!(body.collect().await.unwrap().to_bytes().is_empty());
        assert!(copy.collect().await.unwrap().to_bytes().is_empty());
        // A body with no data stays replayable even with a zero bound.
        let (tx, body) = channel_body(0);
        drop(tx);
        let copy = body.clone();
        assert!(body.collect().await.unwrap().to_bytes().is_empty());
        assert!(copy.is_replayable());
        assert!(copy.collect().await.unwrap().to_bytes().is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_layer_puts_the_state_in_the_extensions() {
        use tower::ServiceExt;
        let svc = ReplayBodyLayer::default()
            .max_bytes(2)
            .layer(tower::service_fn(
                |req: Request<ReplayBody<Full<Bytes>>>| async move {
                    let state = req.extensions().get::<ReplayState>().cloned().unwrap();
                    let _ = req.into_body().collect().await;
                    Ok::<_, BoxError>(state)
                },
            ));
        let state = svc
            .oneshot(Request::new(Full::new(Bytes::from("abc"))))
            .await
            .unwrap();
        assert_eq!(state.max_bytes(), 2);
        assert!(!state.is_replayable());
    }
}
