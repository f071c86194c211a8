//! The synchronisation primitives, swapped for `loom`'s under
//! `--cfg battlement_loom` so the lock-free state machine can be model
//! checked (`tests/loom.rs`).

#[cfg(battlement_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64};
#[cfg(battlement_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(battlement_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64};
#[cfg(not(battlement_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
