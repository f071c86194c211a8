//! axum glue (feature `axum`): priorities for a gate from the matched
//! route.
//!
//! The rest of what an axum service needs works without this feature:
//! [`ErrorResponseLayer`](crate::ErrorResponseLayer) makes a stack's
//! error `Infallible` for `route_layer`, and
//! `battlement_gate::HeaderPriority` reads `x-priority`.

use std::sync::Arc;

use axum::extract::MatchedPath;
use battlement_core::Priority;
use http::Request;

/// A priority per route pattern, read from the [`MatchedPath`] axum puts
/// in a request's extensions once it is routed (so use it in a
/// `route_layer`, or in a layer of a nested router): `None` (the gate's
/// default priority) for a route the table does not list, or a request
/// that was not routed.
///
/// Any `Fn(&Request<B>) -> Option<Priority>` is a priority extractor for
/// `GateLayer` and `PolicyBuilder::priority`.
///
/// ```
/// use axum::extract::MatchedPath;
/// use battlement_core::Priority;
/// use battlement_http::axum::route_priority;
///
/// let priority = route_priority([("/reports", Priority::Low), ("/orders/{id}", Priority::High)]);
/// let req = http::Request::get("/orders/7").body(()).unwrap();
/// assert_eq!(priority(&req), None, "not routed yet");
/// ```
pub fn route_priority<B>(
    routes: impl IntoIterator<Item = (&'static str, Priority)>,
) -> impl Fn(&Request<B>) -> Option<Priority> + Clone + Send + Sync + 'static {
    let table: Arc<[(&'static str, Priority)]> = routes.into_iter().collect();
    move |req: &Request<B>| {
        let matched = req.extensions().get::<MatchedPath>()?;
        table
            .iter()
            .find(|(route, _)| *route == matched.as_str())
            .map(|(_, priority)| *priority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    /// The route's pattern decides, whatever the path's values.
    #[tokio::test]
    async fn the_matched_route_gives_the_priority() {
        let priority = route_priority([("/orders/{id}", Priority::High)]);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = Router::new()
            .route("/orders/{id}", get(|| async { "order" }))
            .route("/other", get(|| async { "other" }))
            .route_layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    log.lock().unwrap().push(priority(&req));
                    next.run(req)
                },
            ));
        for path in ["/orders/1", "/orders/2", "/other"] {
            let req = Request::get(path).body(axum::body::Body::empty()).unwrap();
            assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [Some(Priority::High), Some(Priority::High), None]
        );
    }
}
