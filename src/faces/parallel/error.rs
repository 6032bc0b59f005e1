//! The one place where Parallel's face turns errors into HTTP: status,
//! headers and the hosted `ErrorResponse` envelope (spec 1.6), for engine
//! errors and for the server's refusals alike.
//!
//! Every engine error is mapped here in a single `match`; handlers never
//! choose a status code for an engine error themselves. Messages never
//! echo secrets (API keys, MCP headers).

use serde_json::{json, Value};

use crate::engine;
use crate::model::field_error::summarize;
use crate::model::new_ref_id;
use crate::model::{FieldError, FieldErrorKind, Loc};
use crate::server::{Refusal, Reply};
use crate::store;

/// An HTTP error answer, ready to be written.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Boxed: errors travel in every handler's `Result`, so keep them small.
    pub detail: Option<Box<Value>>,
    /// Extra headers (`retry-after`, `x-should-retry`, `allow`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: Value) -> ApiError {
        self.detail = Some(Box::new(detail));
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    /// 400 for a problem found before validation (JSON, query, header).
    pub fn bad_request(errors: Vec<FieldError>) -> ApiError {
        ApiError::validation(400, errors)
    }

    /// A 400, 403 or 422 naming every problem: 403 when the only problems
    /// are unknown processors (the hosted API's answer), else `status`.
    pub fn validation(status: u16, errors: Vec<FieldError>) -> ApiError {
        let only_processors = !errors.is_empty()
            && errors
                .iter()
                .all(|error| error.kind == FieldErrorKind::UnknownProcessor);
        let status = if only_processors { 403 } else { status };
        let items: Vec<Value> = errors.iter().map(FieldError::to_json).collect();
        // Locations already start with `body`, `query` or `header`.
        ApiError::new(status, summarize(&errors, "")).with_detail(json!({ "errors": items }))
    }

    /// A single problem with a query parameter.
    pub fn bad_query(name: &str, message: impl Into<String>) -> ApiError {
        ApiError::bad_request(vec![FieldError::value_error(
            vec![Loc::Key("query".into()), Loc::Key(name.into())],
            message,
        )])
    }

    /// 503 with the retry headers of spec 1.7: nothing was committed.
    pub fn unavailable(message: impl Into<String>, retry_after_s: u64) -> ApiError {
        ApiError::new(503, message)
            .with_header("retry-after", retry_after_s.to_string())
            .with_header("retry-after-ms", (retry_after_s * 1_000).to_string())
    }

    /// The envelope body: a fresh `ref_id` per error.
    pub fn body(&self) -> (String, String) {
        let ref_id = new_ref_id();
        let body = json!({
            "type": "error",
            "error": {"ref_id": ref_id, "message": self.message, "detail": self.detail},
        });
        (ref_id, body.to_string())
    }

    /// The error as the server writes it; a 5xx is also logged with its
    /// `ref_id`, so that a user's report can be found.
    pub fn into_reply(self) -> Reply {
        let (ref_id, body) = self.body();
        if self.status >= 500 {
            eprintln!(
                "taskyard: {} {} (ref_id {ref_id})",
                self.status, self.message
            );
        }
        Reply::Json(self.status, body, self.headers)
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::Unauthorized => {
                ApiError::new(401, "Unauthorized: invalid or missing credentials")
            }
            Refusal::NotFound { method, path } => {
                ApiError::new(404, format!("no route for {method} {path}"))
            }
            Refusal::MethodNotAllowed {
                method,
                path,
                allowed,
            } => ApiError::new(
                405,
                format!(
                    "method {method} is not allowed on {path}; allowed: {}",
                    allowed.join(", ")
                ),
            )
            .with_header("allow", allowed.join(", ")),
            Refusal::BodyTooLarge { max, got } => ApiError::new(
                413,
                format!("request body is over {max} bytes (BODY_BYTES_MAX)"),
            )
            .with_detail(json!({"errors": [{
                "loc": ["body"], "msg": format!("body is over {max} bytes"),
                "type": "limit_exceeded", "limit": "BODY_BYTES_MAX", "max": max, "got": got,
            }]})),
            Refusal::BodyTimeout { timeout } => ApiError::new(
                408,
                format!(
                    "request body not received within the read timeout ({} s)",
                    timeout.as_secs_f64()
                ),
            ),
            Refusal::BodyUnreadable(message) => {
                ApiError::new(400, format!("cannot read the request body: {message}"))
            }
            Refusal::StreamsFull { open, max } => ApiError::unavailable(
                format!("too many open streams: {open} open, at most {max} (STREAMS_OPEN_MAX)"),
                1,
            ),
            Refusal::Engine(error) => ApiError::from(error),
            Refusal::RateLimited(limited) => ApiError::new(429, limited.message())
                .with_header("retry-after", limited.retry_after_s().to_string())
                .with_header("retry-after-ms", limited.retry_after_ms().to_string()),
        }
    }
}

/// Prefixes body locations with `body`: the engine names fields relative
/// to the request body.
fn in_body(errors: Vec<FieldError>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|error| error.prefixed(&[Loc::Key("body".into())]))
        .collect()
}

impl From<engine::Error> for ApiError {
    fn from(error: engine::Error) -> ApiError {
        match error {
            engine::Error::Invalid(errors) => ApiError::validation(422, in_body(errors)),
            engine::Error::NotFound { kind, id } => {
                ApiError::new(404, format!("{kind} {id} not found"))
            }
            engine::Error::Gone { kind, id } => ApiError::new(
                410,
                format!("{kind} {id} was pruned by the retention policy"),
            )
            .with_header("x-should-retry", "false"),
            engine::Error::RunFailed { run_id, error } => {
                ApiError::new(404, format!("run {run_id} failed: {}", error.message))
                    .with_detail(json!({"run_id": run_id, "status": "failed"}))
            }
            engine::Error::RunCancelled { run_id } => {
                ApiError::new(404, format!("run {run_id} was cancelled"))
                    .with_detail(json!({"run_id": run_id, "status": "cancelled"}))
            }
            engine::Error::Timeout { run_id, status } => {
                ApiError::new(408, "Request timed out; run still active")
                    .with_detail(json!({"run_id": run_id, "status": status}))
            }
            engine::Error::Conflict { run_id, status } => {
                ApiError::new(409, format!("run {run_id} is already {status}"))
                    .with_detail(json!({"run_id": run_id, "status": status}))
                    .with_header("x-should-retry", "false")
            }
            engine::Error::ScheduleConflict { schedule_id, state } => {
                ApiError::new(409, format!("schedule {schedule_id} is {}", state.as_str()))
                    .with_detail(json!({"schedule_id": schedule_id, "status": state}))
                    .with_header("x-should-retry", "false")
            }
            // The Parallel face keeps no records; another face's conflict
            // reads as one.
            engine::Error::Exists { kind, id } => ApiError::new(409, format!("{kind} {id} exists"))
                .with_header("x-should-retry", "false"),
            engine::Error::IdempotencyConflict => {
                ApiError::new(409, "Idempotency-Key reused with a different request")
                    .with_header("x-should-retry", "false")
            }
            engine::Error::Unavailable(store_error) => match store_error {
                store::Error::Full(_) => {
                    ApiError::unavailable("storage full: the database cannot grow", 5)
                }
                store::Error::Busy(_) => {
                    ApiError::unavailable("storage busy: the database is locked", 1)
                }
                readers @ store::Error::ReadersBusy { .. } => {
                    ApiError::unavailable(format!("storage busy: {readers}"), 1)
                }
                other => ApiError::unavailable(format!("storage unavailable: {other}"), 1),
            },
            engine::Error::Internal(message) => {
                ApiError::new(500, format!("internal error: {message}"))
            }
        }
    }
}
