//! ArchAstro's error form (spec 1.6), mapped once from the server's
//! refusals and the engine's errors: always the nested
//! `{"error": {"code", "message"}}`, with `fields` on a 422 only, which
//! the SDK's `ApiError` reads as `Validation failed (field: message)`.

use serde_json::{json, Value};

use crate::engine;
use crate::server::{Refusal, Reply};

/// One error answer.
#[derive(Debug)]
pub struct AError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// `(field, message)` of a 422.
    pub fields: Vec<(String, String)>,
    pub headers: Vec<(&'static str, String)>,
}

pub type Result<T, E = AError> = std::result::Result<T, E>;

impl AError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> AError {
        AError {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> AError {
        AError::new(404, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> AError {
        AError::new(409, "conflict", message)
    }

    /// A 422 naming one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> AError {
        AError::invalid_fields(vec![(field.to_string(), message.into())])
    }

    pub fn invalid_fields(fields: Vec<(String, String)>) -> AError {
        AError {
            fields,
            ..AError::new(422, "validation_failed", "Validation failed")
        }
    }

    pub fn internal(message: impl Into<String>) -> AError {
        AError::new(500, "internal", message)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> AError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.fields.is_empty() {
            error["fields"] = self
                .fields
                .iter()
                .map(|(field, message)| json!({"field": field, "message": message}))
                .collect();
        }
        json!({ "error": error })
    }

    pub fn into_reply(self) -> Reply {
        Reply::Json(self.status, self.body().to_string(), self.headers)
    }
}

impl From<Refusal> for AError {
    fn from(refusal: Refusal) -> AError {
        let message = refusal.message();
        match refusal {
            Refusal::Unauthorized => AError::new(
                401,
                "unauthenticated",
                "invalid or missing API key (x-archastro-api-key or Authorization: Bearer)",
            ),
            Refusal::NotFound { .. } => AError::not_found(message),
            Refusal::MethodNotAllowed { allowed, .. } => {
                AError::new(405, "method_not_allowed", message)
                    .with_header("allow", allowed.join(", "))
            }
            // The spec's codes have no 413: a body too large or unreadable
            // is bad input on `body`.
            Refusal::BodyTooLarge { .. } | Refusal::BodyUnreadable(_) => {
                AError::invalid("body", message)
            }
            Refusal::BodyTimeout { .. } => AError::new(408, "request_timeout", message),
            Refusal::StreamsFull { .. } => {
                AError::new(503, "unavailable", message).with_header("retry-after", "1")
            }
            Refusal::Engine(error) => AError::from(error),
            Refusal::RateLimited(limited) => AError::new(429, "rate_limited", message)
                .with_header("retry-after", limited.retry_after_s().to_string()),
        }
    }
}

impl From<engine::Error> for AError {
    fn from(error: engine::Error) -> AError {
        use engine::Error as E;
        match error {
            E::Invalid(errors) => AError::invalid_fields(
                errors
                    .iter()
                    .map(|error| (error.loc_string(), error.msg.clone()))
                    .collect(),
            ),
            E::NotFound { kind, id } => AError::not_found(format!("{kind} {id} not found")),
            E::Gone { kind, id } => {
                AError::not_found(format!("{kind} {id} was pruned by the retention policy"))
            }
            E::Exists { kind, id } => AError::conflict(format!("{kind} {id} exists")),
            E::Conflict { run_id, status } => {
                AError::conflict(format!("run {run_id} is already {status}"))
            }
            E::ScheduleConflict { schedule_id, state } => {
                AError::conflict(format!("schedule {schedule_id} is {}", state.as_str()))
            }
            E::IdempotencyConflict => AError::conflict("idempotency_key reused"),
            E::RunFailed { run_id, error } => {
                AError::conflict(format!("run {run_id} failed: {}", error.message))
            }
            E::RunCancelled { run_id } => AError::conflict(format!("run {run_id} was cancelled")),
            E::Timeout { run_id, status } => AError::new(
                408,
                "request_timeout",
                format!("run {run_id} is still {status}"),
            ),
            E::Unavailable(store_error) => AError::new(
                503,
                "unavailable",
                format!("storage unavailable: {store_error}"),
            )
            .with_header("retry-after", "1"),
            E::Internal(message) => AError::internal(message),
        }
    }
}
