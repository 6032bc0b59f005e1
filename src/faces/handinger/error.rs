//! Handinger's error form, mapped once from the server's refusals and the
//! engine's errors: `{"error": {"code": "...", "message": "..."}}` with
//! the status the SDK turns into its exception (spec 1.5).
//!
//! Every 409 carries `x-should-retry: false`: the SDK retries a 409 by
//! default and sends no idempotency key, so a retried create could add a
//! second turn.

use serde_json::json;

use crate::engine;
use crate::server::{Refusal, Reply};

/// One error answer.
#[derive(Debug)]
pub struct HError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
}

pub type Result<T, E = HError> = std::result::Result<T, E>;

impl HError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> HError {
        HError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> HError {
        HError::new(400, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> HError {
        HError::new(404, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> HError {
        HError::new(409, "conflict", message).with_header("x-should-retry", "false")
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> HError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn into_reply(self) -> Reply {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        Reply::Json(self.status, body.to_string(), self.headers)
    }
}

impl From<Refusal> for HError {
    fn from(refusal: Refusal) -> HError {
        let message = refusal.message();
        match refusal {
            Refusal::Unauthorized => HError::new(
                401,
                "unauthorized",
                "invalid or missing API key (Authorization: Bearer)",
            ),
            Refusal::NotFound { .. } => HError::not_found(message),
            Refusal::MethodNotAllowed { allowed, .. } => {
                HError::new(405, "method_not_allowed", message)
                    .with_header("allow", allowed.join(", "))
            }
            Refusal::BodyTooLarge { .. } => HError::new(413, "payload_too_large", message),
            // Not in the spec's list of codes: a body that never came is
            // neither bad nor too large (a choice; the SDK retries a 408).
            Refusal::BodyTimeout { .. } => HError::new(408, "request_timeout", message),
            Refusal::BodyUnreadable(_) => HError::bad_request(message),
            Refusal::StreamsFull { .. } => {
                HError::new(503, "unavailable", message).with_header("retry-after", "1")
            }
            Refusal::Engine(error) => HError::from(error),
            Refusal::RateLimited(limited) => HError::new(429, "rate_limited", message)
                .with_header("retry-after", limited.retry_after_s().to_string())
                .with_header("retry-after-ms", limited.retry_after_ms().to_string()),
        }
    }
}

impl From<engine::Error> for HError {
    fn from(error: engine::Error) -> HError {
        use engine::Error as E;
        match error {
            E::Invalid(errors) => {
                HError::bad_request(crate::model::field_error::summarize(&errors, ""))
            }
            E::NotFound { kind, id } => HError::not_found(format!("{kind} {id} not found")),
            E::Gone { kind, id } => {
                HError::not_found(format!("{kind} {id} was pruned by the retention policy"))
            }
            E::Exists { kind, id } => HError::conflict(format!("{kind} {id} exists")),
            E::Conflict { run_id, status } => {
                HError::conflict(format!("turn trun_{run_id} is already {status}"))
            }
            E::ScheduleConflict { schedule_id, state } => {
                HError::conflict(format!("schedule {schedule_id} is {}", state.as_str()))
            }
            E::IdempotencyConflict => {
                HError::conflict("Idempotency-Key reused with a different request")
            }
            E::RunFailed { run_id, error } => {
                HError::conflict(format!("turn trun_{run_id} failed: {}", error.message))
            }
            E::RunCancelled { run_id } => {
                HError::conflict(format!("turn trun_{run_id} was cancelled"))
            }
            E::Timeout { run_id, status } => HError::new(
                408,
                "request_timeout",
                format!("turn trun_{run_id} is still {status}"),
            ),
            E::Unavailable(store_error) => HError::new(
                503,
                "unavailable",
                format!("storage unavailable: {store_error}"),
            )
            .with_header("retry-after", "1"),
            E::Internal(message) => HError::new(500, "internal", message),
        }
    }
}
