//! The Task of Nextcloud's wire (spec 2.1, 2.2): its 18 fields in the
//! server's order, from the face's record and the engine's run.
//!
//! The engine keeps no start time or progress readable without its event
//! stream, so `startedAt` is the time the run was seen running (its last
//! change while it runs) and, once it ended, its scheduling time; and
//! `progress` is null until success, then 1.0 (README choices).

use serde_json::{json, Map, Value};

use super::limits::ERROR_MESSAGE_CHARS_MAX;
use super::records::TaskRecord;
use crate::model::{Content, Output, Run, RunStatus, Timestamp};

/// The wire name of a run status (spec 2.2).
pub fn status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Queued => "STATUS_SCHEDULED",
        RunStatus::Running | RunStatus::ActionRequired => "STATUS_RUNNING",
        RunStatus::Completed => "STATUS_SUCCESSFUL",
        RunStatus::Failed => "STATUS_FAILED",
        // The answer to a cancel already shows it (spec 2.2).
        RunStatus::Cancelling | RunStatus::Cancelled => "STATUS_CANCELLED",
    }
}

/// Unix seconds.
pub fn seconds(at: Timestamp) -> i64 {
    at.micros().div_euclid(1_000_000)
}

/// A run's output as the text types' `output` slot: the text, or the
/// object's own `output` string, else the object as compact JSON.
pub fn output_slots(output: &Output) -> Value {
    let text = match &output.content {
        Content::Text(text) => text.clone(),
        Content::Json(object) => match object.get("output") {
            Some(Value::String(text)) => text.clone(),
            _ => Value::Object(object.clone()).to_string(),
        },
    };
    json!({ "output": text })
}

/// The Task (spec 2.1), all 18 fields in order.
pub fn task(record: &TaskRecord, run: &Run, output: Option<&Output>) -> Value {
    let ended = run.status.is_terminal() || run.status == RunStatus::Cancelling;
    let ended_at = ended.then(|| seconds(run.modified_at));
    let started_at = match run.status {
        RunStatus::Running | RunStatus::ActionRequired => Some(seconds(run.modified_at)),
        RunStatus::Completed | RunStatus::Failed => Some(record.scheduled_at),
        _ => None,
    };
    let completed = run.status == RunStatus::Completed;
    let error_message = match (run.status, &run.error) {
        (RunStatus::Failed, Some(error)) => Some(
            error
                .message
                .chars()
                .take(ERROR_MESSAGE_CHARS_MAX)
                .collect::<String>(),
        ),
        (RunStatus::Failed, None) => Some("The task failed".to_string()),
        _ => None,
    };
    let mut task = Map::new();
    let mut put = |key: &str, value: Value| {
        task.insert(key.to_string(), value);
    };
    put("id", json!(record.id));
    put("type", json!(record.task_type));
    put(
        "lastUpdated",
        json!(seconds(run.modified_at).max(record.scheduled_at)),
    );
    put("status", json!(status(run.status)));
    put("userId", json!(record.user_id));
    put("appId", json!(record.app_id));
    put("input", Value::Object(record.input.clone()));
    put(
        "output",
        match output {
            Some(output) if completed => output_slots(output),
            _ => Value::Null,
        },
    );
    put("customId", json!(record.custom_id));
    put("completionExpectedAt", json!(record.completion_expected_at));
    put("progress", if completed { json!(1.0) } else { Value::Null });
    put("scheduledAt", json!(record.scheduled_at));
    put("startedAt", json!(started_at));
    put("endedAt", json!(ended_at));
    put("allowCleanup", json!(true));
    put("includeWatermark", json!(record.include_watermark));
    put("userFacingErrorMessage", json!(error_message));
    put("preferStreaming", json!(record.prefer_streaming));
    Value::Object(task)
}
