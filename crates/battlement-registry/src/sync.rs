//! The synchronisation primitives of the instruments' counters, their slot
//! pool and the registry's map, swapped for `loom`'s under
//! `--cfg battlement_loom` so the slot protocol can be model checked
//! (`tests/loom.rs`). In a normal build these are `std`'s own types,
//! re-exported: no wrapper, no cost.
//!
//! Under loom the pool of released slots is a `loom::lazy_static` (loom's
//! mutex cannot be made in a `static`; a fresh pool per loom run also
//! keeps one run's slots out of the next), and `Counters::new` is not a
//! `const fn` (loom's atomics are made at run time); neither changes a
//! normal build but for `Counters::new`, called once per slot made.
//!
//! Modelled: calls counted while a report reads them, instruments made
//! and dropped at once (the pool's hand-outs), and a call ending while its
//! instrument is dropped and the slot reused (the generation and
//! "settled" protocol). Not modelled, and why:
//!
//! - the latency histogram (`histogram.rs`): 496 relaxed bucket counters,
//!   which as loom atomics would swamp every model; it stays on `std`'s
//!   atomics, and the models race untimed calls, whose last write is a
//!   loom atomic;
//! - the count of slots ever made (a process-wide `static`, kept across
//!   loom's runs) and the slots' quarantine (a clock: time is kept out);
//! - the event stream (`tokio::sync::broadcast`, not loom-aware).

#[cfg(battlement_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize};
#[cfg(battlement_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[cfg(not(battlement_loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize};
#[cfg(not(battlement_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
