//! The dashboard page of [`HealthService`](crate::HealthService):
//! `GET /health/dashboard`.
//!
//! One self-contained HTML document (`dashboard.html` beside this file):
//! its CSS and script are inline, it loads nothing else and talks only to
//! the service it came from, through URLs relative to where the service is
//! mounted (`<prefix>/health` for the report, `<prefix>/health/events` for
//! the event stream, `<prefix>/health/{name}/{action}` for controls). The
//! `content-security-policy` sent with it enforces that: inline script and
//! style, connections to the page's own origin, nothing else.
//!
//! Whether the control buttons are shown is decided when the page is
//! served (the `data-controls` attribute of `<body>`): shown when
//! controls are enabled on the service, hidden otherwise. The page asks
//! for the bearer token in a password field and sends it as
//! `Authorization: Bearer <token>`; the service still checks every
//! control, so the flag only spares users buttons that would answer `403`.

use http::Response;
use http::header::{self, HeaderValue};

use crate::body::HealthBody;

/// The page, with `{{CONTROLS}}` where the controls flag goes.
const PAGE: &str = include_str!("dashboard.html");

/// The marker in [`PAGE`] replaced by `true` or `false`.
const CONTROLS_MARKER: &str = "{{CONTROLS}}";

/// The `content-security-policy` of the page: inline script and style
/// only, `fetch`/`EventSource` to its own origin only, no frames, forms,
/// images or base URL.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page, controls shown when `controls` is true.
fn page(controls: bool) -> String {
    PAGE.replacen(CONTROLS_MARKER, if controls { "true" } else { "false" }, 1)
}

/// The `200` answer to `GET /health/dashboard`.
pub(crate) fn response(controls: bool) -> Response<HealthBody> {
    let mut res = Response::new(HealthBody::full(page(controls)));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controls_flag_is_set_once() {
        assert_eq!(PAGE.matches(CONTROLS_MARKER).count(), 1);
        assert!(page(true).contains(r#"data-controls="true""#));
        assert!(page(false).contains(r#"data-controls="false""#));
        assert!(!page(false).contains(CONTROLS_MARKER));
    }
}
