//! What can go wrong in an engine call: one enum, mapped once by each face
//! to its own status and error body.
//!
//! Holds no HTTP status and no face's wording: ids are the engine's, and a
//! face adds its prefixes when it words the error.

use crate::model::{FieldError, RunError, RunStatus};
use crate::store;

/// What can go wrong in an engine call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is not valid; each problem names its field.
    #[error("invalid request: {}", crate::model::field_error::summarize(.0, ""))]
    Invalid(Vec<FieldError>),
    /// No such run or group (or the id has the wrong shape).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// A run or group retention pruned: it was there, and is no more.
    #[error("{kind} {id} was pruned by the retention policy")]
    Gone { kind: &'static str, id: String },
    /// The result of a run that failed.
    #[error("run {run_id} failed: {}", .error.message)]
    RunFailed {
        run_id: String,
        error: Box<RunError>,
    },
    /// The result of a run that was cancelled.
    #[error("run {run_id} was cancelled")]
    RunCancelled { run_id: String },
    /// The wait for a result ended with the run still active.
    #[error("run {run_id} is still {status}")]
    Timeout { run_id: String, status: RunStatus },
    /// Cancel of a run that already completed or failed.
    #[error("run {run_id} is already {status}")]
    Conflict { run_id: String, status: RunStatus },
    /// A schedule change its state does not allow (pause a cancelled one).
    #[error("schedule {schedule_id} is {}", .state.as_str())]
    ScheduleConflict {
        schedule_id: String,
        state: crate::model::ScheduleState,
    },
    /// A face's record inserted under an id that has one.
    #[error("{kind} {id} exists")]
    Exists { kind: String, id: String },
    /// An idempotency key seen before with another request.
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    /// The database cannot take the write now (busy, full, closed); nothing
    /// was committed, so the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(store::Error),
    /// A bug or a corrupt database.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Error {
        match error {
            store::Error::NotFound { kind, id } => Error::NotFound { kind, id },
            store::Error::IdempotencyConflict => Error::IdempotencyConflict,
            store::Error::Exists { kind, id } => Error::Exists { kind, id },
            store::Error::Busy(_)
            | store::Error::Full(_)
            | store::Error::Closed
            | store::Error::Unreachable(_)
            | store::Error::ReadersBusy { .. } => Error::Unavailable(error),
            store::Error::Open { .. }
            | store::Error::Sqlite(_)
            | store::Error::SchemaNewer { .. }
            | store::Error::Postgres(_)
            | store::Error::UnknownValue { .. } => Error::Internal(error.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A not-found error for an id.
pub(crate) fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}
