//! The test clock's routes (`taskyard serve --test-clock`): a test suite
//! reads the clock schedules fire by and moves it on, so that a schedule
//! of any kind fires when the test says, not after a real wait.
//!
//! Served only with the flag, behind the API keys like any face's route.
//! The answers are the server's own small JSON, as `/healthz`'s are. Owns
//! the routes; the clock itself is the engine's ([`ManualClock`]).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{Reply, Request, Routes};
use crate::engine::{Clock, ManualClock};
use crate::limits::TEST_CLOCK_ADVANCE_S_MAX;

pub(super) fn register(routes: &mut Routes, clock: Arc<ManualClock>) {
    let reading = clock.clone();
    routes.add(
        "GET",
        "/taskyard/clock".to_string(),
        "/taskyard/clock",
        true,
        Arc::new(move |_| now(&reading)),
    );
    routes.add(
        "POST",
        "/taskyard/clock".to_string(),
        "/taskyard/clock",
        true,
        Arc::new(move |request| advance(&clock, request)),
    );
}

fn now(clock: &ManualClock) -> Reply {
    let micros = clock.now().micros();
    let at = UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64);
    let body = json!({
        "now": humantime::format_rfc3339_micros(at).to_string(),
        "now_us": micros,
    });
    Reply::Json(200, body.to_string(), Vec::new())
}

/// `{"advance_s": N}`: moves the clock on by N seconds (a number above 0,
/// at most `TEST_CLOCK_ADVANCE_S_MAX`) and answers the new time.
fn advance(clock: &ManualClock, request: &mut Request<'_>) -> Reply {
    let refused =
        |message: String| Reply::Json(400, json!({"error": message}).to_string(), Vec::new());
    let body = match request.body() {
        Ok(body) => body,
        Err(refusal) => return request.refuse(refusal),
    };
    let seconds = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|body| body.get("advance_s").and_then(Value::as_f64));
    match seconds {
        Some(seconds) if seconds > 0.0 && seconds <= TEST_CLOCK_ADVANCE_S_MAX as f64 => {
            clock.advance(Duration::from_secs_f64(seconds));
            now(clock)
        }
        _ => refused(format!(
            "the body must be {{\"advance_s\": N}}, N seconds above 0 and at most \
             {TEST_CLOCK_ADVANCE_S_MAX} (TEST_CLOCK_ADVANCE_S_MAX)"
        )),
    }
}
