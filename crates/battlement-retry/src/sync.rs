//! The synchronisation primitives of the retry budget, swapped for
//! `loom`'s under `--cfg battlement_loom` so its token accounting and its
//! rotation can be model checked (`tests/loom.rs`). In a normal build
//! these are `std`'s own types, re-exported: no wrapper, no cost.
//!
//! Modelled: deposits and withdrawals against each other and against a
//! rotation of the ring (time moved by hand before the threads start,
//! fixed while they run). Not modelled, and why:
//!
//! - `refund` (a withdrawn token given back): it is reached only through a
//!   retry future dropped while it sleeps in backoff, which needs a
//!   running timer; it takes the rotation lock, so it cannot interleave
//!   with a rotation, only with the adds;
//! - `reset` racing the adds: under the same lock as a rotation;
//! - the statistics (`stats.rs`) and the seeded random source
//!   (`random.rs`): single relaxed counters, no protocol between them;
//!   they stay on `std`'s atomics.

#[cfg(battlement_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(battlement_loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU64};

#[cfg(not(battlement_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(battlement_loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU64};
