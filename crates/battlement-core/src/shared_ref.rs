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
    /// Borrowed for the whole program: copies count nothing. The state
    /// itself, reached in one step (a read through the `Arc` would touch
    /// one more cache line per use, cold on a server's call path), and
    /// the `Arc` it lives in, for [`arc`](SharedRef::arc).
    Static(&'static T, &'static Arc<T>),
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
            SharedRef::Static(_, arc) => Arc::clone(arc),
        }
    }

    /// The same state, kept for the rest of the process and reached
    /// without counting from now on: copies of the result count nothing.
    ///
    /// For state made once for the life of the process (a server's
    /// policy): it is never freed, so leaking the state of something made
    /// per connection or per test grows without bound. One small
    /// allocation (the `Arc` it keeps) the first time; none if it is
    /// already static.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use battlement_core::SharedRef;
    ///
    /// let state = SharedRef::new(7).leak();
    /// let copy = state.clone();
    /// assert!(copy.is_static());
    /// assert_eq!(Arc::strong_count(&copy.arc()), 2); // the kept one, and this
    /// ```
    pub fn leak(self) -> Self {
        match self {
            SharedRef::Counted(arc) => {
                let arc: &'static Arc<T> = Box::leak(Box::new(arc));
                SharedRef::Static(arc, arc)
            }
            kept @ SharedRef::Static(..) => kept,
        }
    }

    /// `true` when copies count nothing ([`leak`](Self::leak) or
    /// [`to_static`](Self::to_static) made it).
    pub fn is_static(&self) -> bool {
        matches!(self, SharedRef::Static(..))
    }

    /// The same state, reached without counting: for a value that lives in
    /// a `static`.
    pub fn to_static(&'static self) -> Self {
        match self {
            SharedRef::Counted(arc) => SharedRef::Static(arc, arc),
            SharedRef::Static(value, arc) => SharedRef::Static(value, arc),
        }
    }
}

impl<T> Clone for SharedRef<T> {
    #[inline]
    fn clone(&self) -> Self {
        match self {
            SharedRef::Counted(arc) => SharedRef::Counted(Arc::clone(arc)),
            SharedRef::Static(value, arc) => SharedRef::Static(value, arc),
        }
    }
}

impl<T> Deref for SharedRef<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self {
            SharedRef::Counted(arc) => arc,
            SharedRef::Static(value, _) => value,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for SharedRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// A layer whose shared state can be kept for the rest of the process, so
/// that copies of its services and their response futures count no
/// reference: each part's `Arc` clone and drop (two atomic
/// read-modify-writes, on a cache line every core serving the layer
/// writes) leaves every service clone and every call.
///
/// That matters where a service is cloned per request: axum's `Router`
/// calls a clone of a route's service for each request, and a clone of a
/// stack of parts counts one reference per part, dropped once the call
/// is made. Behaviour is the same in every other respect; the state is
/// never freed, so leak what is made once for the life of the process (a
/// server's policy), not per connection or per test.
///
/// ```
/// use battlement_core::Leak;
/// use tower::layer::util::Identity;
///
/// fn kept<L: Leak>(layer: L) -> L {
///     layer.leak()
/// }
/// let _ = kept(Identity::new());
/// ```
pub trait Leak: Sized {
    /// The same layer, its shared state kept for the rest of the process.
    fn leak(self) -> Self;
}

/// No state: nothing to keep.
impl Leak for tower::layer::util::Identity {
    fn leak(self) -> Self {
        self
    }
}

impl<T> Leak for SharedRef<T> {
    fn leak(self) -> Self {
        SharedRef::leak(self)
    }
}
