//! A run, what it was asked to do, and how it ended: the engine's own
//! nouns, stored and passed between engine, store, scheduler and faces.
//!
//! No I/O. Field names here are the engine's; each face maps them to its
//! wire (Parallel calls a run's `group_id` its task group's id).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{new_ref_id, JsonObject, Output, RunStatus, TaskSpec, Timestamp, WebhookTarget};

/// The error of a failed run: a message, a reference a user can report,
/// and optional structured detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    pub ref_id: String,
    pub message: String,
    pub detail: Option<Value>,
}

impl RunError {
    pub fn new(message: impl Into<String>, detail: Option<Value>) -> RunError {
        RunError {
            ref_id: new_ref_id(),
            message: message.into(),
            detail,
        }
    }
}

/// A warning attached to a run (a retried attempt, an input that does not
/// fit its schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub detail: Option<Value>,
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    /// The group the run belongs to, if any.
    pub group_id: Option<String>,
    pub status: RunStatus,
    pub processor: String,
    pub metadata: Option<JsonObject>,
    pub error: Option<RunError>,
    pub warnings: Option<Vec<Warning>>,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

/// An earlier turn of an interaction, as a follow-up run's processor sees
/// it: what was asked and what came back (none when that run did not
/// complete).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub run_id: String,
    pub input: Value,
    pub output: Option<Output>,
}

/// A run to create, already parsed by a face.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub processor: String,
    pub input: Value,
    /// The run's own spec; without one the group's default applies, else
    /// [`TaskSpec::auto`].
    pub task_spec: Option<TaskSpec>,
    pub metadata: Option<JsonObject>,
    /// Whether progress events are recorded; the processor's default when
    /// absent.
    pub enable_events: Option<bool>,
    /// What the face needs to answer about this run exactly as it was
    /// asked (Parallel: the request as sent, for `.../input`). Opaque to
    /// the engine: stored and given back, never read.
    pub document: Option<String>,
    /// Warnings the face found (its wire's own advice), recorded with the
    /// run after the engine's.
    pub warnings: Vec<Warning>,
    /// Where to POST the run's terminal status, if anywhere.
    pub webhook: Option<WebhookTarget>,
    /// The run this one follows up (the earlier turn of its interaction):
    /// it must exist, and the processor sees the earlier turns.
    pub previous_run_id: Option<String>,
    /// The interaction (a key the face chose) this run is the next turn
    /// of: it follows the interaction's latest run. Not with
    /// `previous_run_id`. In a schedule's run template it is a prefix:
    /// each fire starts an interaction of its own, keyed by the prefix
    /// followed by the fired run's id.
    pub interaction: Option<String>,
}

impl RunRequest {
    /// The smallest request: `input` for `processor`, nothing else.
    pub fn new(input: impl Into<Value>, processor: impl Into<String>) -> RunRequest {
        RunRequest {
            processor: processor.into(),
            input: input.into(),
            task_spec: None,
            metadata: None,
            enable_events: None,
            document: None,
            warnings: Vec::new(),
            webhook: None,
            previous_run_id: None,
            interaction: None,
        }
    }
}

/// Runs to add to a group, all or nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct AddRuns {
    pub runs: Vec<RunRequest>,
    /// The spec of every run that has none of its own.
    pub default_task_spec: Option<TaskSpec>,
}

/// What an add-runs call created.
#[derive(Debug, Clone, PartialEq)]
pub struct AddedRuns {
    pub run_ids: Vec<String>,
    /// The largest event id before the first run added, when the group had
    /// runs before: where a stream of only the new runs resumes.
    pub cursor: Option<u64>,
    pub group: super::Group,
}

/// A run's request as stored: the face's document, and the effective
/// task spec when it came from the group's default.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRequest {
    pub run: Run,
    pub document: Option<String>,
    pub input: Value,
    pub task_spec: TaskSpec,
    /// True when `task_spec` is the group's default, not the run's own.
    pub spec_from_group: bool,
}
