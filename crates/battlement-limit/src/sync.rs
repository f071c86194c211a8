//! The synchronisation primitives of the slot pool and the adaptive
//! limit's window, swapped for `loom`'s under `--cfg battlement_loom` so
//! their protocols can be model checked (`tests/loom.rs`). In a normal
//! build these are `std`'s own types, re-exported: no wrapper, no cost.
//!
//! Modelled: the slot pool's `waiting << 32 | in_flight` word, its
//! compare-and-swaps and `fetch_sub`, and the queue of waiters behind its
//! mutex (admission, hand-over on release, a waiter giving up). Not
//! modelled, and why:
//!
//! - a wait that runs out: it is driven by a tokio timer, and the models
//!   keep time out (paused, never advanced); giving up is modelled by
//!   dropping the waiter instead, which takes the same `cancel` path;
//! - the adaptive limit's window (closed by a clock reading, its
//!   algorithm behind a `try_lock`): its atomics are routed here, but no
//!   model drives a window to its end;
//! - the keyed breakers' map, an `ArcSwap` that loom cannot see (its
//!   writers' mutex and the entries' flags are routed here; the breakers
//!   themselves are modelled in `battlement-breaker`).

#[cfg(battlement_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
#[cfg(battlement_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(battlement_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
#[cfg(not(battlement_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
