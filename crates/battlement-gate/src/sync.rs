//! The synchronisation primitives of the gate's level and counters and of
//! the throttle's ring, swapped for `loom`'s under `--cfg battlement_loom`
//! so they can be model checked (`tests/loom.rs`). In a normal build these
//! are `std`'s own types, re-exported: no wrapper, no cost.
//!
//! Modelled: calls reading the level and counting themselves while it
//! changes, the once-per-interval `Shed` event's compare-and-swap, a
//! governor's change racing a level set by hand, the in-flight count, and
//! the throttle's claim of a bucket for a new epoch. Not modelled, and why:
//!
//! - the latency histogram (`battlement_core`'s `AtomicHistogram`, behind
//!   a `std` `OnceLock`): relaxed bucket counters with no protocol between
//!   them, in another crate; 249 loom atomics would only slow the models;
//! - the governor's own state: it is `&mut self`, one owner, no sharing;
//! - the throttle's `record` and `cancel`: one `fetch_add` (or a
//!   saturating `fetch_update`) each, guarded by the same epoch check as
//!   the claim; time moving while threads run is kept out of every model.

#[cfg(battlement_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize};
#[cfg(battlement_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(battlement_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize};
#[cfg(not(battlement_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
