//! Model checks of the slot pool with `loom`: every interleaving of the
//! threads below, up to loom's bounds, of the admission compare-and-swap,
//! the release's `fetch_sub`, and the queue of waiters behind its mutex.
//!
//! Run with `.ci/extra.d/loom.sh`, or
//! `RUSTFLAGS="--cfg battlement_loom" CARGO_TARGET_DIR=target/loom cargo test -p battlement-limit --test loom --release`.
//!
//! Time is kept out of the models: every model runs inside one
//! current-thread tokio runtime on paused time that nothing drives, so a
//! waiter's timer (one hour) never fires; only the slot protocol moves.
//! (loom runs its threads as coroutines on the test's own thread, so the
//! runtime's context, entered once around `loom::model`, is the context of
//! every modelled thread.)
#![cfg(battlement_loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use battlement_core::BoxError;
use battlement_limit::{Bulkhead, BulkheadService};
use loom::thread;
use tower::{Service, service_fn};

type Fut = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// Inner service: `true` never completes (a call held in flight), `false`
/// completes at once.
type Inner = tower::util::ServiceFn<fn(bool) -> Fut>;

fn inner(hold: bool) -> Fut {
    Box::pin(async move {
        if hold {
            std::future::pending::<()>().await;
        }
        Ok(())
    })
}

fn svc(b: &Bulkhead) -> BulkheadService<Inner> {
    BulkheadService::new(service_fn(inner as fn(bool) -> Fut), b.clone())
}

/// A waker that remembers it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn poll_ready(s: &mut BulkheadService<Inner>, waker: &Waker) -> Poll<()> {
    s.poll_ready(&mut Context::from_waker(waker))
        .map(|r| r.expect("a bulkhead's readiness does not fail"))
}

/// Calls `s` with a call that never completes: `Some(future)` when it was
/// admitted (the future holds the slot), `None` when refused.
fn hold(s: &mut BulkheadService<Inner>) -> Option<Fut> {
    let mut f: Fut = Box::pin(s.call(true));
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Pending => Some(f),
        Poll::Ready(Ok(())) => unreachable!("a held call never completes"),
        Poll::Ready(Err(e)) => {
            assert!(e.is::<battlement_limit::BulkheadFull>(), "{e}");
            None
        }
    }
}

/// A call admitted through a fresh service of `b` and held: the future
/// keeps its slot (the service is not needed any more).
fn held_call(b: &Bulkhead) -> Fut {
    let mut s = svc(b);
    assert!(poll_ready(&mut s, Waker::noop()).is_ready());
    hold(&mut s).expect("a free slot")
}

fn bulkhead(max_concurrent: u32, max_waiting: u32) -> Bulkhead {
    let b = Bulkhead::builder("loom").max_concurrent(max_concurrent);
    let b = if max_waiting > 0 {
        b.wait(Duration::from_secs(3600), max_waiting)
    } else {
        b
    };
    b.build().unwrap()
}

/// Runs `f` under `loom::model` inside a paused, undriven tokio runtime.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _entered = rt.enter();
    loom::model(f);
}

/// Two callers race for one slot with nobody allowed to wait: exactly one
/// is admitted, the slot is never counted twice, the refusal is counted,
/// and the pool is back to empty once the admitted call is dropped.
#[test]
fn two_callers_one_slot() {
    model(|| {
        let b = bulkhead(1, 0);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let mut s = svc(&b);
                let b = b.clone();
                thread::spawn(move || {
                    assert!(poll_ready(&mut s, Waker::noop()).is_ready());
                    let held = hold(&mut s);
                    if held.is_some() {
                        assert_eq!(b.in_flight(), 1, "a slot counted twice");
                    }
                    assert!(b.in_flight() <= 1);
                    held
                })
            })
            .collect();
        let held: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(held.iter().filter(|f| f.is_some()).count(), 1);
        let m = b.metrics();
        assert_eq!(
            (m.in_flight, m.waiting, m.admitted, m.rejected),
            (1, 0, 1, 1)
        );
        drop(held);
        assert_eq!((b.in_flight(), b.waiting()), (0, 0));
    });
}

/// A release racing a new caller who finds the only slot taken and joins
/// the queue: the caller gets the slot either way (taken directly if the
/// release came first, handed over by the release otherwise), is woken if
/// it was left pending, and the counts end at zero.
#[test]
fn release_hands_the_slot_to_a_racing_waiter() {
    model(|| {
        let b = bulkhead(1, 1);
        let held = held_call(&b);

        let mut waiter = svc(&b);
        let b2 = b.clone();
        let caller = thread::spawn(move || {
            let flag = Arc::new(Flag::default());
            let ready = poll_ready(&mut waiter, &Waker::from(flag.clone())).is_ready();
            assert!(b2.in_flight() <= 1);
            (waiter, flag, ready)
        });
        let releaser = thread::spawn(move || drop(held));
        releaser.join().unwrap();
        let (mut waiter, flag, ready) = caller.join().unwrap();
        if !ready {
            assert!(
                flag.0.load(Ordering::SeqCst),
                "a waiter granted a slot was not woken"
            );
            assert!(poll_ready(&mut waiter, Waker::noop()).is_ready());
        }
        let call = hold(&mut waiter).expect("the waiter holds the slot");
        let m = b.metrics();
        assert_eq!(
            (m.in_flight, m.waiting, m.admitted, m.rejected),
            (1, 0, 2, 0)
        );
        drop(call);
        assert_eq!((b.in_flight(), b.waiting()), (0, 0));
    });
}

/// A waiter that gives up (its service dropped) while the holder releases:
/// whether the slot was handed to it first (it then passes it on) or it
/// left the queue first, no slot and no place in the queue is leaked, and
/// a new caller is admitted at once.
#[test]
fn waiter_gives_up_while_the_slot_is_released() {
    model(|| {
        let b = bulkhead(1, 1);
        let held = held_call(&b);
        let mut waiter = svc(&b);
        assert!(poll_ready(&mut waiter, Waker::noop()).is_pending());
        assert_eq!((b.in_flight(), b.waiting()), (1, 1));

        let quitter = thread::spawn(move || drop(waiter));
        let releaser = thread::spawn(move || drop(held));
        quitter.join().unwrap();
        releaser.join().unwrap();
        assert_eq!((b.in_flight(), b.waiting()), (0, 0), "a slot leaked");

        let mut next = svc(&b);
        assert!(poll_ready(&mut next, Waker::noop()).is_ready());
        assert!(hold(&mut next).is_some());
    });
}

/// Two slots, two callers waiting, one release and one waiter giving up
/// at once with a third thread releasing: the slots in flight never pass
/// the limit, and every slot comes back.
#[test]
fn two_waiters_two_releases() {
    model(|| {
        let b = bulkhead(2, 2);
        let mut holders: Vec<_> = (0..2).map(|_| held_call(&b)).collect();
        let mut w1 = svc(&b);
        let mut w2 = svc(&b);
        assert!(poll_ready(&mut w1, Waker::noop()).is_pending());
        assert!(poll_ready(&mut w2, Waker::noop()).is_pending());
        assert_eq!((b.in_flight(), b.waiting()), (2, 2));

        let h1 = holders.pop().unwrap();
        let h2 = holders.pop().unwrap();
        let b2 = b.clone();
        let t1 = thread::spawn(move || {
            drop(h1);
            assert!(b2.in_flight() <= 2);
        });
        let t2 = thread::spawn(move || {
            drop(h2);
            drop(w2);
        });
        t1.join().unwrap();
        t2.join().unwrap();
        // `w1` came first: it holds a slot now, whoever released it.
        assert!(poll_ready(&mut w1, Waker::noop()).is_ready());
        let call = hold(&mut w1).expect("the first waiter was served");
        assert_eq!((b.in_flight(), b.waiting()), (1, 0));
        drop(call);
        assert_eq!((b.in_flight(), b.waiting()), (0, 0));
    });
}

/// A release racing a newcomer while someone already waits: the newcomer
/// may find the slot free for an instant (the release's `fetch_sub` done,
/// its hand-over not yet), but the waiter came first and gets it; the
/// newcomer joins the queue behind it. First come, first served in every
/// order.
#[test]
fn a_newcomer_never_passes_a_waiter_while_the_slot_is_released() {
    model(|| {
        let b = bulkhead(1, 2);
        let held = held_call(&b);
        let mut first = svc(&b);
        let woken = Arc::new(Flag::default());
        assert!(poll_ready(&mut first, &Waker::from(woken.clone())).is_pending());

        let mut newcomer = svc(&b);
        let caller = thread::spawn(move || {
            let ready = poll_ready(&mut newcomer, Waker::noop()).is_ready();
            (newcomer, ready)
        });
        let releaser = thread::spawn(move || drop(held));
        releaser.join().unwrap();
        let (newcomer, ready) = caller.join().unwrap();
        assert!(!ready, "the newcomer passed the waiter");
        assert!(woken.0.load(Ordering::SeqCst), "the waiter was not woken");
        assert!(poll_ready(&mut first, Waker::noop()).is_ready());
        let call = hold(&mut first).expect("the waiter holds the slot");
        assert_eq!((b.in_flight(), b.waiting()), (1, 1));
        drop(newcomer);
        drop(call);
        assert_eq!((b.in_flight(), b.waiting()), (0, 0));
    });
}
