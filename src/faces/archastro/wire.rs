//! ArchAstro's wire: the JSON of each object (spec section 2), built from
//! the face's records and the engine's runs. Every key is sent, `null`
//! when unset, as hosted (spec 1.4); timestamps are RFC 3339 UTC with
//! microseconds, as on the Parallel face.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::ids;
use super::records::{Routine, Session};
use crate::model::{Content, InteractionTurn, Output, Run, RunStatus, Timestamp, SKIPPED_DETAIL};

pub const SESSION_PREFIX: &str = "ase_";
pub const ROUTINE_PREFIX: &str = "arn_";
pub const RUN_PREFIX: &str = "arr_";
pub const MESSAGE_PREFIX: &str = "asm_";
pub const TRAJECTORY_PREFIX: &str = "trj_";

/// The routine fields echoed as stored (spec 2.2), in wire order.
pub const ROUTINE_FIELDS: &[&str] = &[
    "name",
    "description",
    "handler_type",
    "preset_name",
    "preset_config",
    "event_type",
    "event_config",
    "schedule",
    "script",
    "config",
    "steps",
    "lookup_key",
    "metadata",
    "acl",
    "message_policy",
    "trigger_context",
    "last_applied_template_config",
    "user",
];

pub fn time(at: Timestamp) -> String {
    at.to_string()
}

fn micros(at: i64) -> String {
    time(Timestamp(at))
}

/// What a finished run answered, as `result` (spec 2.1): a JSON object
/// as is, text as `{"content": text}`.
pub fn result(output: Option<&Output>) -> Value {
    match output.map(|output| &output.content) {
        Some(Content::Json(object)) => Value::Object(object.clone()),
        Some(Content::Text(text)) => json!({ "content": text }),
        None => Value::Null,
    }
}

/// The session `status` of its latest turn's run (spec 3.1).
pub fn session_status(run: Option<&Run>) -> &'static str {
    match run.map(|run| run.status) {
        None => "waiting",
        Some(RunStatus::Queued | RunStatus::ActionRequired) => "pending",
        Some(RunStatus::Running) => "running",
        Some(RunStatus::Completed) => "completed",
        Some(RunStatus::Failed) => "failed",
        Some(RunStatus::Cancelling | RunStatus::Cancelled) => "cancelled",
    }
}

/// True for a session status after which its stream closes.
pub fn session_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

/// An AgentSession (spec 2.1) as of its latest turn (`last`, with its
/// output once it has one); `started` is its first turn's creation.
pub fn session(
    session: &Session,
    started: Option<Timestamp>,
    last: Option<(&Run, Option<&Output>)>,
) -> Value {
    let run = last.map(|(run, _)| run);
    let status = session_status(run);
    let completed = run.filter(|run| run.status.is_terminal());
    let error = match run {
        Some(run) if run.status == RunStatus::Failed => run
            .error
            .as_ref()
            .map(|error| json!(error.message))
            .unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let output = last.and_then(|(_, output)| output);
    json!({
        "id": session.id,
        "agent": session.agent,
        "status": status,
        "instructions": session.instructions,
        "name": session.name,
        "metadata": session.metadata,
        "inbox": session.inbox,
        "result": if status == "completed" { result(output) } else { Value::Null },
        "error": error,
        "trajectory": started.map(|_| format!(
            "{TRAJECTORY_PREFIX}{}",
            session.id.trim_start_matches(SESSION_PREFIX)
        )),
        "is_system_session": false,
        "max_runs_per_turn": session.max_runs_per_turn,
        "max_tokens": session.max_tokens,
        "max_turns": session.max_turns,
        "created_at": micros(session.created_at),
        "started_at": started.map(time),
        "completed_at": completed.map(|run| time(run.modified_at)),
    })
}

/// [`session`] from the session's turns as read now.
pub fn session_of_turns(record: &Session, turns: &[InteractionTurn]) -> Value {
    session(
        record,
        turns.first().map(|turn| turn.run.created_at),
        turns.last().map(|turn| (&turn.run, turn.output.as_ref())),
    )
}

/// An AgentRoutine (spec 2.2).
pub fn routine(routine: &Routine, app: &str) -> Value {
    let mut answer = Map::new();
    answer.insert("id".into(), json!(routine.id));
    answer.insert("agent".into(), json!(routine.agent));
    answer.insert("app".into(), json!(app));
    for key in ROUTINE_FIELDS {
        let value = routine.fields.get(*key).cloned().unwrap_or(Value::Null);
        answer.insert((*key).into(), value);
    }
    if answer["trigger_context"].is_null() {
        answer.insert("trigger_context".into(), json!("event"));
    }
    answer.insert("status".into(), json!(routine.status));
    answer.insert("created_at".into(), json!(micros(routine.created_at)));
    answer.insert("updated_at".into(), json!(micros(routine.updated_at)));
    Value::Object(answer)
}

/// What a routine run keeps in its engine run's document: where it came
/// from and what it was asked (spec 2.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDocument {
    pub routine: String,
    pub agent: String,
    pub payload: Value,
    pub metadata: Value,
    pub participants: Value,
    pub delivery: Value,
}

impl RunDocument {
    /// The document of a run, when the run is a routine run.
    pub fn of(document: Option<&str>) -> Option<RunDocument> {
        serde_json::from_str(document?).ok()
    }
}

/// True for a run an exclusive schedule recorded as skipped.
pub fn skipped(run: &Run) -> bool {
    run.status == RunStatus::Cancelled
        && run
            .error
            .as_ref()
            .and_then(|error| error.detail.as_ref())
            .is_some_and(|detail| detail[SKIPPED_DETAIL] == Value::Bool(true))
}

/// The routine run `status` and `worker.status` of a run (spec 3.2).
pub fn run_status(run: &Run) -> (&'static str, &'static str) {
    if skipped(run) {
        return ("skipped", "cancelled");
    }
    match run.status {
        RunStatus::Queued | RunStatus::ActionRequired => ("pending", "queued"),
        RunStatus::Running => ("running", "executing"),
        RunStatus::Completed => ("completed", "completed"),
        RunStatus::Failed => ("failed", "discarded"),
        RunStatus::Cancelling | RunStatus::Cancelled => ("cancelled", "cancelled"),
    }
}

/// True for a routine run status after which its stream closes.
pub fn run_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "skipped" | "cancelled")
}

/// An AgentRoutineRun (spec 2.3).
pub fn routine_run(
    run: &Run,
    output: Option<&Output>,
    document: &RunDocument,
    app: &str,
    max_attempts: u32,
) -> Value {
    let (status, worker_status) = run_status(run);
    let structured = match output.map(|output| &output.content) {
        Some(Content::Json(object)) => Value::Object(object.clone()),
        _ => Value::Null,
    };
    let duration_ms = run
        .status
        .is_terminal()
        .then(|| (run.modified_at.micros() - run.created_at.micros()).max(0) / 1_000);
    let attempt = u32::from(!matches!(status, "pending" | "skipped"));
    json!({
        "id": ids::of_run(RUN_PREFIX, &run.id),
        "routine": document.routine,
        "agent": document.agent,
        "app": app,
        "status": status,
        "payload": document.payload,
        "result": if status == "completed" { result(output) } else { Value::Null },
        "structured_response": structured,
        "duration_ms": duration_ms,
        "event_id": null,
        "metadata": document.metadata,
        "participants": document.participants,
        "delivery": document.delivery,
        "worker": {"attempt": attempt, "max_attempts": max_attempts, "status": worker_status},
        "acl": null,
        "created_at": time(run.created_at),
        "updated_at": time(run.modified_at),
    })
}

/// The one preset taskyard runs (spec 4.2 choice): the saved
/// instructions, with the invoke's message, as one run.
pub const PRESET_NAME: &str = "do_task";

pub fn presets() -> Value {
    json!([{
        "name": PRESET_NAME,
        "label": "Do a task",
        "description": "Runs the routine's preset_config.instructions (and an invoke's message) \
                        as one run on the agent's processor",
        "applicable_events": ["*"],
        "chainable": false,
        "sessionable": false,
        "unique": false,
    }])
}
