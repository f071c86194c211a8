//! The HTTP bench's `Policy::http` (see `support::http_policy!`) in
//! process: an axum `Request<Body>` through `ErrorResponseLayer` and the
//! policy to a handler that answers `hello`, the response's body read to
//! its end (the instrument and the breaker complete a call when its body
//! ends), against the same handler bare. What the policy costs a request
//! without the network and the load generator, whose noise on two cores
//! is larger than the policy (`benches/benches/http.rs`).
//!
//! `BATTLEMENT_IR=<calls>` runs each row `calls` times for
//! `valgrind --tool=callgrind` instead (instructions per request).

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::http::{Request, Response};
use battlement::deadline::Carry;
use battlement::http::ErrorResponseLayer;
use battlement::prelude::*;
use battlement_benches::{Service, call_now};
use criterion::{Criterion, criterion_group};
use tower::{ServiceBuilder, service_fn};

#[macro_use]
mod support;
use support::two_threads;

fn handler() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("hello")))
    })
}

fn request() -> Request<Body> {
    Request::get("/policy")
        .header("x-priority", "normal")
        .body(Body::empty())
        .expect("a valid request")
}

/// One request: the call, and its response body read to the end; `true`
/// when it had one data frame.
fn serve<S, B>(svc: &mut S) -> bool
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: http_body::Body + Unpin,
{
    let Ok(res) = call_now(svc, black_box(request())) else {
        return false;
    };
    let mut body = res.into_body();
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = 0;
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                frames += usize::from(frame.is_data());
            }
            Poll::Ready(None) => return frames == 1,
            Poll::Ready(Some(Err(_))) => return false,
            Poll::Pending => panic!("the bench body was not ready"),
        }
    }
}

/// The handler behind `ErrorResponseLayer` and the bench's
/// `Policy::http`, registered in `registry`; with `leak`, the policy made
/// once for the life of the process, as a server makes it (`Leak`): its
/// clones and futures count no reference.
fn policy_route(
    registry: &Registry,
    leak: bool,
) -> impl Service<Request<Body>, Response = Response<impl http_body::Body + Unpin>, Error = Infallible>
+ Clone {
    policy_route_carrying(registry, leak, Carry::IfCarried)
}

/// [`policy_route`] with the deadline carried as `carry` says.
fn policy_route_carrying(
    registry: &Registry,
    leak: bool,
    carry: Carry,
) -> impl Service<Request<Body>, Response = Response<impl http_body::Body + Unpin>, Error = Infallible>
+ Clone {
    let policy = http_policy!(registry, carry).expect("a valid policy");
    ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(if leak { policy.leak() } else { policy })
        .service(handler())
}

fn bench(c: &mut Criterion) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let registry = Registry::new();
    let leaked_registry = Registry::new();
    let mut bare = handler();
    let mut policed = policy_route(&registry, false);
    let mut leaked = policy_route(&leaked_registry, true);
    // The policy's default: the deadline written into each request's
    // extensions (an entry, and the map, for a request that has none).
    let carried_registry = Registry::new();
    let mut carried = policy_route_carrying(&carried_registry, false, Carry::Always);
    // What axum's `Router` copies per request (the route's service, into
    // a fresh box) and what it boxes (the response future).
    println!(
        "size http_stack/policy: {} bytes per service, {} bytes per response future",
        std::mem::size_of_val(&policed),
        std::mem::size_of_val(&policed.call(request()))
    );
    assert!(
        serve(&mut bare) && serve(&mut policed) && serve(&mut leaked) && serve(&mut carried),
        "all answer hello"
    );

    let mut group = c.benchmark_group("http_stack");
    group.bench_function("bare", |b| b.iter(|| serve(&mut bare)));
    group.bench_function("policy", |b| b.iter(|| serve(&mut policed)));
    group.bench_function("policy_carried", |b| b.iter(|| serve(&mut carried)));
    // As axum's `Router` serves a route: a clone of the route's service
    // per request, called once and dropped.
    group.bench_function("bare_cloned", |b| b.iter(|| serve(&mut bare.clone())));
    group.bench_function("policy_cloned", |b| b.iter(|| serve(&mut policed.clone())));
    group.bench_function("leaked_cloned", |b| b.iter(|| serve(&mut leaked.clone())));
    // The same on two threads sharing the service (a server's two
    // workers): the shared state's cache lines move between the cores.
    group.bench_function("bare_cloned_two_threads", |b| {
        b.iter_custom(|iters| two_threads(iters, bare.clone(), |s, _| serve(&mut s.clone())))
    });
    group.bench_function("policy_cloned_two_threads", |b| {
        b.iter_custom(|iters| two_threads(iters, policed.clone(), |s, _| serve(&mut s.clone())))
    });
    group.bench_function("leaked_cloned_two_threads", |b| {
        b.iter_custom(|iters| two_threads(iters, leaked.clone(), |s, _| serve(&mut s.clone())))
    });
    group.finish();
    let allocs_bare = battlement_benches::allocs_per_call(10_000, || {
        black_box(serve(&mut bare));
    });
    battlement_benches::report("http_stack/bare", allocs_bare);
    let allocs = battlement_benches::allocs_per_call(10_000, || {
        black_box(serve(&mut policed));
    });
    battlement_benches::report("http_stack/policy", allocs);
    let allocs = battlement_benches::allocs_per_call(10_000, || {
        black_box(serve(&mut carried));
    });
    battlement_benches::report("http_stack/policy_carried", allocs);
    for (name, svc) in [
        ("http_stack/policy_cloned", &policed),
        ("http_stack/leaked_cloned", &leaked),
    ] {
        let allocs = battlement_benches::allocs_per_call(10_000, || {
            black_box(serve(&mut svc.clone()));
        });
        battlement_benches::report(name, allocs);
    }

    // `BATTLEMENT_MIN_OF_BATCHES=1`: the one-thread rows as the minimum
    // over batches, the figure that survives a loaded machine.
    if battlement_benches::min_of_batches_wanted() {
        battlement_benches::min_of_batches("http_stack/bare", || {
            black_box(serve(&mut bare));
        });
        battlement_benches::min_of_batches("http_stack/policy", || {
            black_box(serve(&mut policed));
        });
        battlement_benches::min_of_batches("http_stack/policy_carried", || {
            black_box(serve(&mut carried));
        });
        for (name, svc) in [
            ("http_stack/policy_cloned", &policed),
            ("http_stack/leaked_cloned", &leaked),
        ] {
            battlement_benches::min_of_batches(name, || {
                black_box(serve(&mut svc.clone()));
            });
        }
    }
}

/// `fn $name(svc, n)`: `n` requests through [`serve`], a function of its
/// own per row so that callgrind attributes each row's instructions to it
/// (as `battlement_benches::ir_loop!` does for `u64` requests); with
/// `cloned`, each through a clone of `svc`, as axum's `Router` calls.
macro_rules! ir_requests {
    ($name:ident) => {
        ir_requests!($name, |svc: &mut S| serve(svc));
    };
    ($name:ident, cloned) => {
        ir_requests!($name, |svc: &mut S| serve(&mut svc.clone()));
    };
    ($name:ident, $call:expr) => {
        #[inline(never)]
        fn $name<S, B>(svc: &mut S, n: u64)
        where
            S: Service<Request<Body>, Response = Response<B>> + Clone,
            B: http_body::Body + Unpin,
        {
            // Keeps the linker from folding identical loops into one.
            black_box(stringify!($name));
            let call = $call;
            for _ in 0..n {
                black_box(call(svc));
            }
        }
    };
}

ir_requests!(ir_bare);
ir_requests!(ir_policy);
ir_requests!(ir_policy_carried);
ir_requests!(ir_policy_cloned, cloned);
ir_requests!(ir_leaked_cloned, cloned);

fn instructions(n: u64) {
    let rt = battlement_benches::runtime();
    let _guard = rt.enter();
    let registry = Registry::new();
    let leaked_registry = Registry::new();
    ir_bare(&mut handler(), n);
    ir_policy(&mut policy_route(&registry, false), n);
    let carried_registry = Registry::new();
    ir_policy_carried(
        &mut policy_route_carrying(&carried_registry, false, Carry::Always),
        n,
    );
    ir_policy_cloned(&mut policy_route(&registry, false), n);
    ir_leaked_cloned(&mut policy_route(&leaked_registry, true), n);
}

criterion_group!(benches, bench);

fn main() {
    battlement_benches::main_with_instructions(instructions, benches);
}
