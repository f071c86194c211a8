//! HTTP propagation of the budget (feature `http`, on by default): the
//! deadline crosses process boundaries.
//!
//! - [`ServerDeadlineLayer`], in a server: reads `grpc-timeout` and
//!   `x-request-timeout-ms` into the request's deadline (capped), answers
//!   400 for a malformed header and 504 for a spent budget, and cuts a
//!   handler that is still running when the deadline passes (504, or
//!   `grpc-status: 4` for gRPC), unless told only to read.
//! - [`PropagateDeadlineLayer`], in a client: writes the time left, minus a
//!   margin, on the outgoing request.
//! - [`parse_grpc_timeout`], [`parse_millis`], [`format_grpc_timeout`],
//!   [`format_millis`]: the header formats on their own.
//!
//! This lives here rather than in `battlement-http` so that the deadline
//! and its wire format are one crate and one feature; `battlement-http`
//! keeps the classifiers, the error-to-response mapping and the health
//! endpoint.

mod client;
mod parse;
mod server;

pub use client::{PropagateDeadline, PropagateDeadlineLayer, PropagateFuture};
pub use parse::{
    HeaderError, format_grpc_timeout, format_millis, parse_grpc_timeout, parse_millis,
};
pub use server::{ServerDeadline, ServerDeadlineConfig, ServerDeadlineLayer, ServerResponseFuture};

/// gRPC's timeout header.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The default millisecond header.
pub const X_REQUEST_TIMEOUT_MS: &str = "x-request-timeout-ms";
