//! [`SharedRef`]: how a layer's services and response futures reach the
//! layer's shared state.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A layer's shared state as its services and futures hold it: counted
/// (an `Arc`, one atomic increment and decrement per copy), or through a
/// layer or policy kept in a `static`, with nothing to count per call.
///
/// ```
/// use std::sync::{Arc, LazyLock};
/// use battlement_core::SharedRef;
///
/// static STATE: LazyLock<SharedRef<u32>> = LazyLock::new(|| SharedRef::new(7));
///
/// let counted = SharedRef::new(7);
/// let free = STATE.to_static();
/// assert_eq!(*counted.clone() + *free, 14);
/// assert_eq!(Arc::strong_count(&free.arc()), 2);
/// ```
pub enum SharedRef<T: 'static> {
    /// Counted.
    Counted(Arc<T>),
    /// Borrowed for the whole program: copies count nothing.
    Static(&'static Arc<T>),
}

impl<T> SharedRef<T> {
    /// Counted state holding `value`.
    pub fn new(value: T) -> Self {
        SharedRef::Counted(Arc::new(value))
    }

    /// A counted reference, for holders that may outlive a `static`'s
    /// borrow rules (a registry, say).
    pub fn arc(&self) -> Arc<T> {
        match self {
            SharedRef::Counted(arc) => Arc::clone(arc),
            SharedRef::Static(arc) => Arc::clone(arc),
        }
    }

    /// The same state, reached without counting: for a value that lives in
    /// a `static`.
    pub fn to_static(&'static self) -> Self {
        match self {
            SharedRef::Counted(arc) => SharedRef::Static(arc),
            SharedRef::Static(arc) => SharedRef::Static(arc),
        }
    }
}

impl<T> Clone for SharedRef<T> {
    #[inline]
    fn clone(&self) -> Self {
        match self {
            SharedRef::Counted(arc) => SharedRef::Counted(Arc::clone(arc)),
            SharedRef::Static(arc) => SharedRef::Static(arc),
        }
    }
}

impl<T> Deref for SharedRef<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self {
            SharedRef::Counted(arc) => arc,
            SharedRef::Static(arc) => arc,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for SharedRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}
