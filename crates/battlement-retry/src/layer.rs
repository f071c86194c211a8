//! [`RetryLayer`]: wraps a service in [`Retry`].

use std::fmt;

use battlement_core::{ErrorClassifier, Leak};
use tower_layer::Layer;

use crate::config::{Always, RetryPolicy};
use crate::service::Retry;

/// Applies a [`RetryPolicy`] to a service: each request is sent again,
/// after a backoff, while its failures are retryable and the policy allows.
///
/// ```
/// use battlement_retry::{Backoff, RetryLayer, RetryPolicy};
/// use std::time::Duration;
///
/// let layer = RetryLayer::new(
///     RetryPolicy::builder()
///         .max_attempts(3)
///         .backoff(Backoff::exponential(Duration::from_millis(50)))
///         .build()
///         .unwrap(),
/// );
/// # let _ = layer;
/// ```
pub struct RetryLayer<C = ErrorClassifier, P = Always>
where
    C: 'static,
    P: 'static,
{
    policy: RetryPolicy<C, P>,
}

/// Its policy (and the policy's budget and counters) kept for the rest of
/// the process, as [`RetryPolicy::from_static`] does for a policy in a
/// `static`: copies of its services and their response futures count no
/// reference to it (see [`Leak`]). The first 64 services the layer makes
/// keep the spare copy of the inner service their retries are sent
/// through for the process as well, so their calls count no reference at
/// all; later ones (a leaked layer applied per connection) count one, to
/// their spare, so what is kept stays bounded.
impl<C: 'static, P: 'static> Leak for RetryLayer<C, P> {
    fn leak(self) -> Self {
        RetryLayer {
            policy: RetryPolicy {
                shared: self.policy.shared.leak(),
            },
        }
    }
}

impl<C: 'static, P: 'static> RetryLayer<C, P> {
    /// A layer applying `policy`.
    pub const fn new(policy: RetryPolicy<C, P>) -> Self {
        RetryLayer { policy }
    }

    /// The policy applied.
    pub fn policy(&self) -> &RetryPolicy<C, P> {
        &self.policy
    }
}

impl Default for RetryLayer {
    /// A layer with [`RetryPolicy::default`].
    fn default() -> Self {
        RetryLayer::new(RetryPolicy::default())
    }
}

impl<C: 'static, P: 'static> Clone for RetryLayer<C, P> {
    fn clone(&self) -> Self {
        RetryLayer {
            policy: self.policy.clone(),
        }
    }
}

impl<C: 'static, P: 'static> fmt::Debug for RetryLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S: Clone + 'static, C: 'static, P: 'static> Layer<S> for RetryLayer<C, P> {
    type Service = Retry<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.policy.clone())
    }
}
