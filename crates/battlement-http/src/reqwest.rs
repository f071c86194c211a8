//! reqwest glue (feature `reqwest`): [`HttpClassifier`] judges
//! `reqwest::Response`s and recognises `reqwest::Error` in an error's
//! chain (the table is on [`HttpClassifier`]).

use std::error::Error;

use battlement_core::{AsDynError, Classify, Failure, FailureKind, Outcome};

use crate::HttpClassifier;
use crate::classify::{GrpcClassifier, classify_error};

impl<E: AsDynError> Classify<reqwest::Response, E> for HttpClassifier {
    /// The same table as for an `http::Response`: status, `Retry-After`.
    fn classify(&self, result: &Result<reqwest::Response, E>) -> Outcome {
        match result {
            Ok(res) => self.classify_status(res.status(), res.headers()),
            Err(e) => classify_error(e.as_dyn_error(), &GrpcClassifier::new()),
        }
    }
}

/// The failure a `reqwest::Error` is, if `e` is one: the table on
/// [`HttpClassifier`].
pub(crate) fn recognise(e: &(dyn Error + 'static)) -> Option<Failure> {
    let e = e.downcast_ref::<reqwest::Error>()?;
    use FailureKind::*;
    let failure = if e.is_timeout() {
        Failure::new(Timeout)
    } else if e.is_connect() || e.is_request() {
        Failure::new(Network)
    } else if let Some(status) = e.status() {
        match HttpClassifier::new().classify_status(status, &http::HeaderMap::new()) {
            Outcome::Failure(failure) => failure,
            _ => Failure::new(InvalidRequest).retryable(false),
        }
    } else if e.is_body() {
        Failure::new(Network).retryable(false)
    } else if e.is_decode() {
        Failure::new(Unknown).retryable(false)
    } else if e.is_builder() {
        Failure::new(InvalidRequest).retryable(false)
    } else if e.is_redirect() {
        Failure::new(Configuration).retryable(false)
    } else {
        Failure::new(Unknown)
    };
    Some(failure)
}
