//! [`DeadlineCarrier`] for `reqwest::Request` (feature `reqwest`).
//!
//! reqwest keeps a request's extensions private, so the deadline cannot
//! travel there as it does on an `http::Request`. It travels as reqwest's
//! own per-request timeout instead, which reqwest enforces on the
//! transport: [`set_deadline`](DeadlineCarrier::set_deadline) sets the
//! timeout to what is left of the deadline, and
//! [`tighten_deadline`](DeadlineCarrier::tighten_deadline) never lengthens
//! a timeout the request already had. A timeout is relative to when the
//! request is sent and cannot be read back as an instant, so
//! [`deadline`](DeadlineCarrier::deadline) is `None`: the layers inside a
//! `DeadlineLayer` see its deadline in scope instead
//! ([`deadline::effective`](crate::deadline::effective)), which is what
//! they read first anyway.

use crate::deadline::{Deadline, DeadlineCarrier};

impl DeadlineCarrier for reqwest::Request {
    /// Replaces the request's timeout with what is left of `deadline`.
    fn set_deadline(&mut self, deadline: Deadline) {
        *self.timeout_mut() = Some(deadline.remaining());
    }

    /// Shortens the request's timeout to what is left of `deadline`, and
    /// never lengthens it.
    fn tighten_deadline(&mut self, deadline: Deadline) -> Deadline {
        let left = deadline.remaining();
        let timeout = self.timeout_mut();
        if timeout.is_none_or(|t| left < t) {
            *timeout = Some(left);
        }
        deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_deadline_becomes_the_timeout_and_never_lengthens_it() {
        let url = "http://127.0.0.1/".parse().unwrap();
        let mut req = reqwest::Request::new(reqwest::Method::GET, url);
        req.tighten_deadline(Deadline::after(Duration::from_secs(2)));
        assert_eq!(req.timeout(), Some(&Duration::from_secs(2)));
        req.tighten_deadline(Deadline::after(Duration::from_secs(5)));
        assert_eq!(
            req.timeout(),
            Some(&Duration::from_secs(2)),
            "never lengthened"
        );
        req.tighten_deadline(Deadline::after(Duration::from_secs(1)));
        assert_eq!(req.timeout(), Some(&Duration::from_secs(1)));
        req.set_deadline(Deadline::after(Duration::from_secs(3)));
        assert_eq!(req.timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(req.deadline(), None);
    }
}
