//! **battlement-fallback**: answer something useful when the primary
//! service fails.
//!
//! # The problem
//!
//! A dependency is down, overloaded, or refused by one of our own layers
//! (an open circuit, a shed, a passed deadline). Returning the error is
//! often the worst answer: a default, a secondary backend, or the last
//! response that worked is better for the user. [`FallbackLayer`] wraps a
//! service and, when its result is a classified failure, answers from a
//! list of fallback sources tried in order.
//!
//! # When to use it
//!
//! Outermost but for instrumentation, so it sees every failure of the
//! stack beneath (gate, deadline, retries, breaker): `InstrumentLayer →
//! FallbackLayer → GateLayer → DeadlineLayer → RetryLayer → BreakerLayer →
//! service`. Use it for reads that have a sensible substitute; do not use
//! it for writes whose failure the caller must see.
//!
//! # Sources
//!
//! Tried in the order they were added to the builder; each is optional:
//!
//! - a value ([`value`](FallbackBuilder::value)) or a closure of the failure,
//!   the primary's error and the request's saved key
//!   ([`value_fn`](FallbackBuilder::value_fn)). Neither needs `Clone` on
//!   the request;
//! - other services with the same request and response types
//!   ([`service`](FallbackBuilder::service), once per service: secondary,
//!   emergency, ...). The request is cloned before the primary is called
//!   only when a service source exists. A service whose breaker is open
//!   answers `CircuitOpen` at once without calling its backend: it counts as
//!   *skipped*, not failed, and an [`EventKind::Skipped`] is emitted;
//! - a last-known-good cache ([`cache`](FallbackBuilder::cache), with a
//!   [`key`](FallbackBuilder::key) computed from the request): every
//!   success of the primary is stored; on failure a stored response still
//!   fresh ([`fresh_for`](CacheConfig::fresh_for), HTTP's `max-age`) is
//!   served (source `cache`), one past its freshness but within the
//!   [`stale_if_error`](CacheConfig::stale_if_error) window (HTTP's
//!   `stale-if-error`) is served stale (source `cache_stale`), an older
//!   one is dropped. `key` and `cache` may be called in either order.
//!   It is bounded in entries (at most [`MAX_CACHE_ENTRIES`]) and, with a
//!   weigher, bytes, with eviction by the
//!   [`quick_cache`](https://docs.rs/quick_cache) crate; ages are read on
//!   tokio's clock. Both bounds are exact maxima, never exceeded: each of
//!   the cache's shards gets its share rounded down, and a byte-bounded
//!   cache has one shard, so it keeps any response up to about 97% of
//!   `max_bytes` (several shards would each get a fraction of the bytes,
//!   and a response larger than a shard's share would never be kept).
//! - for `http::Response<B>` whose body is not `Clone` (axum's
//!   `Response`; any `B: http_body::Body<Data = Bytes> + From<Bytes>`), the
//!   same cache over the responses' bytes
//!   ([`http_cache`](FallbackBuilder::http_cache), feature `http`, after
//!   [`key`](FallbackBuilder::key)): see [HTTP responses](#http-responses).
//!
//! # HTTP responses
//!
//! [`http_cache`](FallbackBuilder::http_cache) stores a successful
//! response as its status, version, headers and body bytes, and rebuilds a
//! fresh `Response<B>` from them (`B::from(bytes)`) for each fallback
//! answer, marked as any fallback answer is
//! ([`http_header`](FallbackBuilder::http_header)). Storing means reading
//! the body, so on success, and only with this cache:
//!
//! - a body whose `size_hint` promises at most
//!   [`max_body_bytes`](HttpCacheConfig::max_body_bytes) (256 KiB by
//!   default: a body built from bytes, a string or JSON) is read to its
//!   end before the response is handed on, rebuilt from the same bytes,
//!   so the caller still gets all of it. The wait is for bytes the caller
//!   would read anyway, and bounded by their number;
//! - any other body (larger, or of unknown size: a stream, which may never
//!   end) is handed on untouched, at once, and not stored: no response is
//!   held back or lost for the cache's sake;
//! - a body that fails while it is read makes the call a failure (judged
//!   by the classifier, as an error of the primary), which the fallback
//!   answers, the cache included: the caller gets the last good response
//!   rather than a broken one;
//! - extensions and trailers are not kept (a rebuilt response has none);
//!   do not cache gRPC responses this way, whose status is in the
//!   trailers.
//!
//! # What triggers it
//!
//! The classifier ([`ErrorClassifier`] by default, which calls every `Ok`
//! a success) judges the primary's result. A failure triggers the
//! fallback, unless narrowed with [`trigger_on`](FallbackBuilder::trigger_on)
//! or [`trigger_on_kinds`](FallbackBuilder::trigger_on_kinds); a success or
//! an `Ignored` outcome never does. With
//! [`ErrorClassifier::with_responses`] an `Ok` response such as an HTTP 503
//! triggers it too.
//!
//! # What the caller sees
//!
//! - A response served by fallback can be marked: for `http::Response`,
//!   [`http_marker`](FallbackBuilder::http_marker) inserts a [`Fallback`]
//!   (source and reason) into its extensions and
//!   [`http_header`](FallbackBuilder::http_header) also sets
//!   `x-battlement-fallback: <source>`; for any type,
//!   [`on_fallback`](FallbackBuilder::on_fallback) runs a hook.
//! - Every activation emits [`EventKind::Fallback`] (and a `tracing` event).
//! - When every source fails after a primary *error*, the error is
//!   [`FallbackFailed`]: the primary error as `source()` and each source's
//!   name and error in the order tried ([`CacheMiss`] for the cache,
//!   [`FailureResponse`] for a service's failure response, `CircuitOpen`
//!   for a skipped one). When the primary answered an `Ok` failure response
//!   (a 503) and every source fails, that response is returned unchanged:
//!   it is still the best answer there is.
//!
//! # Costs
//!
//! On success: the classification and nothing else when there is no key
//! and no service source (no allocation, no lock, no clock read), plus one
//! `Arc` count for the response future's handle on the shared state, or
//! none for a layer kept in a `static` ([`FallbackLayer::from_static`]).
//! The success path is inlined into the caller's poll; the failure
//! handling is out of line. A key costs its function; a service source
//! costs a clone of the request; the cache costs an insert (a lock on one
//! of its shards, the only one with a byte bound; a clock read and a clone
//! of the response); the HTTP cache, for a response it stores, a boxed
//! future that reads the body, and a copy of the headers. On failure
//! the fallback chain is boxed once.
//!
//! Measured in `benches/benches/fallback.rs` (a `u64` request, value
//! source, `call_now` driving `poll_ready`, `call` and one poll):
//!
//! | per call                        | instructions | time | allocations |
//! |---------------------------------|-----|--------|---|
//! | bare `service_fn`               | 5   | 1.0-1.2 ns | 0 |
//! | success, value source (`Arc`)   | 46  | 5.3-5.9 ns | 0 |
//! | success, layer from a `static`  | 41  | 4.9-5.1 ns | 0 |
//! | success, with the cache         | -   | 53-54 ns   | 0 |
//! | `tower-resilience`, success     | 457 | 74-81 ns   | 2 |
//! | failure, value source           | -   | 107-108 ns | 1 (+2 for the failing service's error) |
//! | `tower-resilience`, failure     | -   | 120-124 ns | 3 (its failing service allocates none) |
//!
//! So a success costs about 4.5 ns over the bare service (the issue's
//! budget is 10 ns; before the success path was made inline it cost about
//! 25-57 ns). Instructions are counted with `valgrind --tool=callgrind`
//! on the bench's `BATTLEMENT_IR` mode (repeatable under load); times are
//! criterion medians of two runs on a 2-core AMD EPYC VM with a load
//! average of about 1 (other builds running).
//!
//! The cache path once undid it: with `store` returning its result in
//! memory, the plain success's result was merged with it there, and the
//! caller's read of it stalled on store forwarding (14.4 ns a success,
//! 7 December 2026). The cache path now hands the result through a slot
//! of its own, and a success is back at 5.0 ns (bare 0.8).
//!
//! # Example
//!
//! ```
//! use battlement_core::{BoxError, ErrorClassifier, FailureKind, Outcome};
//! use battlement_fallback::{CacheConfig, FallbackLayer};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The primary answers a status and a body; 503 means "down".
//! let primary = service_fn(|id: u32| async move {
//!     if id == 0 { Ok::<_, BoxError>((503, String::new())) } else { Ok((200, format!("user {id}"))) }
//! });
//! let secondary = service_fn(|_id: u32| async { Err::<(u16, String), BoxError>("replica down".into()) });
//!
//! let layer = FallbackLayer::builder("users")
//!     .classifier(ErrorClassifier::new().with_responses(|(status, _): &(u16, String)| {
//!         if *status >= 500 { Outcome::failure(FailureKind::Unavailable) } else { Outcome::Success }
//!     }))
//!     .key(|id: &u32| Some(*id))
//!     .service("replica", secondary)
//!     .cache(CacheConfig::new())
//!     .value((200, "anonymous".to_owned()))
//!     .build()
//!     .expect("valid config");
//! let mut svc = layer.layer(primary);
//!
//! let res = svc.ready().await.unwrap().call(7).await.unwrap();
//! assert_eq!(res.1, "user 7");
//! // The primary is down for 0: the replica fails, nothing is cached, the value answers.
//! let res = svc.ready().await.unwrap().call(0).await.unwrap();
//! assert_eq!(res.1, "anonymous");
//! assert_eq!(layer.activations(), 1);
//! # }
//! ```
//!
//! # Decisions
//!
//! - The service type is [`FallbackService`]; the name `Fallback` is the
//!   marker handlers look for in extensions.
//! - Fallback services' `Ok` answers are judged by the same classifier.
//! - A request whose key function returns `None` is not cached.
//! - The HTTP cache is a second method, not a `CacheConfig` for
//!   `http::Response`: what it keeps is not the response (which cannot be
//!   cloned) but what rebuilds it, so its byte bound weighs bytes and
//!   headers itself ([`HttpCacheConfig::max_bytes`] takes no weigher). It
//!   is added after the key only: the other order would need the key's
//!   type to make it, as [`cache`](FallbackBuilder::cache) before `key`
//!   does, for a second kind of store.
//! - The component's health is always `healthy`: a fallback that serves is
//!   doing its job; its details tell how often it does.

mod cache;
mod config;
mod error;
mod future;
#[cfg(feature = "http")]
mod http_cache;
mod layer;
mod marker;
mod service;
mod shared;

pub use battlement_core::{ErrorClassifier, EventKind, FallbackFailed};
pub use cache::{CacheConfig, MAX_CACHE_ENTRIES, Weigher};
pub use config::{CacheAwaitingKey, FallbackBuilder, NoKey};
pub use error::{CacheMiss, FailureResponse};
pub use future::ResponseFuture;
#[cfg(feature = "http")]
pub use http_cache::{DEFAULT_MAX_BODY_BYTES, HttpCacheConfig};
pub use layer::FallbackLayer;
pub use marker::{Fallback, HEADER, Source};
pub use service::FallbackService;
pub use shared::Failed;
