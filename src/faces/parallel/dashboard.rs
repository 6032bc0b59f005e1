//! The dashboard at `GET /`: one page shipped inside the binary (HTML, CSS
//! and JavaScript in `dashboard.html`, no build step, no CDN) that shows
//! groups, runs and schedules through the same public endpoints the SDKs
//! call, live from their streams. Owns the page and its route; the data
//! is the face's other routes'.

use std::sync::Arc;

use crate::server::{Reply, Routes};

/// The page, as served.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// `GET /` (and `HEAD`), open: the page asks for an API key itself when
/// the server needs one, and sends it with every call.
pub fn register(routes: &mut Routes) {
    for method in ["GET", "HEAD"] {
        routes.add(
            method,
            "/".to_string(),
            "/",
            false,
            Arc::new(|_| Reply::Text(200, DASHBOARD_HTML.to_string(), "text/html; charset=utf-8")),
        );
    }
}
