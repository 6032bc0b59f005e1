//! Handinger's wire: the JSON of each answer (spec section 2), built from
//! the face's records and the engine's runs.
//!
//! camelCase everywhere but on the Worker's own top-level keys; timestamps
//! RFC 3339 UTC with milliseconds, except the Worker's `created_at` (Unix
//! seconds); integers where the SDK's strict mode wants them. Constants
//! stand in for the hosted-only fields (spec 7.8).

use serde_json::{json, Value};

use super::records::{Task, Worker};
use crate::model::{Content, InteractionTurn, Output, Run, RunStatus, Timestamp};

/// `organizationId` and `userId` of everything taskyard makes.
pub const ORGANIZATION_ID: &str = "org_local";
pub const USER_ID: &str = "usr_local";

/// A turn's id: its engine run's, as the Parallel face shows it, so that
/// the same run is `GET /v1/tasks/runs/{id}` there.
pub fn turn_id(run_id: &str) -> String {
    format!("trun_{run_id}")
}

/// RFC 3339 UTC with milliseconds: `2026-05-11T10:00:00.000Z`.
pub fn time(at: Timestamp) -> String {
    let seconds = at.micros().div_euclid(1_000_000);
    let millis = at.micros().rem_euclid(1_000_000) / 1_000;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds.max(0) as u64);
    let whole = humantime::format_rfc3339_seconds(time).to_string();
    format!("{}.{millis:03}Z", whole.trim_end_matches('Z'))
}

/// The Task and Turn vocabulary of a run status (spec 3.2).
pub fn status(status: RunStatus) -> &'static str {
    match status {
        // A run waiting on its caller is not done: the turn is pending.
        RunStatus::Queued | RunStatus::ActionRequired => "pending",
        RunStatus::Running | RunStatus::Cancelling => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "error",
        RunStatus::Cancelled => "aborted",
    }
}

/// What a turn answered, as text: the text, or the JSON object compact;
/// for a failed turn the error message (spec 3.2).
pub fn output_text(turn: &InteractionTurn) -> String {
    run_output_text(&turn.run, turn.output.as_ref())
}

/// [`output_text`] of a run and its output, if it has one yet.
pub fn run_output_text(run: &Run, output: Option<&Output>) -> String {
    if let Some(output) = output {
        return match &output.content {
            Content::Text(text) => text.clone(),
            Content::Json(object) => Value::Object(object.clone()).to_string(),
        };
    }
    match (&run.status, &run.error) {
        (RunStatus::Failed, Some(error)) => error.message.clone(),
        _ => String::new(),
    }
}

fn structured_output(turn: &InteractionTurn, worker: &Worker) -> Value {
    match (
        &worker.output_schema,
        turn.output.as_ref().map(|o| &o.content),
    ) {
        (Some(_), Some(Content::Json(object))) => Value::Object(object.clone()),
        _ => Value::Null,
    }
}

fn completed_at(turn: &InteractionTurn) -> Option<Timestamp> {
    turn.run
        .status
        .is_terminal()
        .then_some(turn.run.modified_at)
}

/// Creation to terminal, in whole milliseconds; 0 while active.
fn duration_ms(turn: &InteractionTurn) -> i64 {
    completed_at(turn).map_or(0, |end| {
        (end.micros() - turn.run.created_at.micros()).max(0) / 1_000
    })
}

fn tokens(turn: &InteractionTurn) -> (u64, u64) {
    turn.output
        .as_ref()
        .and_then(|output| output.usage)
        .map_or((0, 0), |usage| (usage.input_tokens, usage.output_tokens))
}

/// An input as text: a string as it is, anything else as JSON.
pub fn input_of(input: &Value) -> String {
    match input {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A Turn (spec 2.3).
pub fn turn(turn: &InteractionTurn, task: &Task, worker: &Worker) -> Value {
    let (input_tokens, output_tokens) = tokens(turn);
    json!({
        "id": turn_id(&turn.run.id),
        "taskId": task.id,
        "seq": turn.turn,
        "role": "user",
        "status": status(turn.run.status),
        "input": input_of(&turn.input),
        "outputText": output_text(turn),
        "structuredOutput": structured_output(turn, worker),
        // Never null, as strict mode wants: the turn's creation.
        "startedAt": time(turn.run.created_at),
        "completedAt": completed_at(turn).map(time),
        "durationMs": duration_ms(turn),
        "credits": 0,
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
    })
}

/// A Task with its totals (spec 2.2).
pub fn task(task: &Task, turns: &[InteractionTurn], base: &str) -> Value {
    let latest = turns.last();
    json!({
        "id": task.id,
        "completedAt": latest.and_then(completed_at).map(time),
        "createdAt": time(Timestamp(task.created_at)),
        "createdByUserId": null,
        "organizationId": ORGANIZATION_ID,
        "status": latest.map_or("pending", |turn| status(turn.run.status)),
        "title": task.title,
        "totals": {
            "credits": 0,
            "durationMs": turns.iter().map(duration_ms).sum::<i64>(),
            "turnCount": turns.len(),
        },
        "triggeredBy": task.triggered_by,
        "url": format!("{base}/api/tasks/{}", task.id),
        "workerId": task.worker_id,
    })
}

/// TaskWithTurns (spec 2.4).
pub fn task_with_turns(
    task: &Task,
    turns: &[InteractionTurn],
    worker: &Worker,
    base: &str,
) -> Value {
    json!({
        "task": self::task(task, turns, base),
        "turns": turns.iter().map(|t| self::turn(t, task, worker)).collect::<Vec<_>>(),
    })
}

/// The Worker (spec 2.1): the worker's state as of its task `latest`, with
/// `taskId` and `turnId` added (spec choice 2). A failure shows as
/// `completed` with `metadata.taskStatus` and `metadata.error` (choice 3).
pub fn worker(worker: &Worker, latest: Option<(&Task, &[InteractionTurn])>, base: &str) -> Value {
    let last = latest.and_then(|(_, turns)| turns.last());
    let (status, running) = match last.map(|turn| turn.run.status) {
        Some(RunStatus::Queued | RunStatus::ActionRequired) => ("pending", true),
        Some(RunStatus::Running | RunStatus::Cancelling) => ("running", true),
        _ => ("completed", false),
    };
    let mut messages = Vec::new();
    if let Some((_, turns)) = latest {
        for turn in turns {
            messages.push(
                json!({"id": turn_id(&turn.run.id), "role": "user", "content": input_of(&turn.input)}),
            );
            if turn.output.is_some() {
                messages.push(json!({"id": format!("{}_answer", turn_id(&turn.run.id)),
                                     "role": "assistant", "content": output_text(turn)}));
            }
        }
    }
    let completed = last.filter(|turn| turn.output.is_some());
    let output: Vec<Value> = completed
        .map(|turn| {
            json!({"id": format!("{}_answer", turn_id(&turn.run.id)), "type": "message",
                   "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": output_text(turn)}]})
        })
        .into_iter()
        .collect();
    let mut metadata = serde_json::Map::new();
    let mut answer = json!({
        "id": worker.id,
        "object": "worker",
        "created_at": worker.created_at.div_euclid(1_000_000),
        "status": status,
        "running": running,
        "error": null,
        "incomplete_details": null,
        "files": [],
        "messages": messages,
        "output": output,
        "output_text": completed.map(output_text).unwrap_or_default(),
        "sources": [],
        "structured_output": completed.map_or(Value::Null, |turn| structured_output(turn, worker)),
        "url": format!("{base}/api/workers/{}", worker.id),
        "usage": {"credits": 0, "durationMs": last.map_or(0, duration_ms)},
    });
    if let (Some((task, _)), Some(turn)) = (latest, last) {
        let turn_id = turn_id(&turn.run.id);
        metadata.insert("taskId".into(), json!(task.id));
        metadata.insert("turnId".into(), json!(turn_id));
        metadata.insert("taskStatus".into(), json!(self::status(turn.run.status)));
        if let (RunStatus::Failed, Some(error)) = (turn.run.status, &turn.run.error) {
            metadata.insert("error".into(), json!(error.message));
        }
        answer["taskId"] = json!(task.id);
        answer["turnId"] = json!(turn_id);
    }
    answer["metadata"] = Value::Object(metadata);
    answer
}

/// A WorkerTemplate: the answer of workers create and update (spec 2.4).
pub fn worker_template(worker: &Worker, base: &str) -> Value {
    json!({
        "id": worker.id,
        "instructions": worker.instructions,
        "organizationId": ORGANIZATION_ID,
        "summary": worker.summary,
        "title": worker.title,
        "url": format!("{base}/api/workers/{}", worker.id),
        "userId": USER_ID,
        "visibility": worker.visibility,
        "createdAt": time(Timestamp(worker.created_at)),
        "updatedAt": worker.updated_at.map(|at| time(Timestamp(at))),
        "outputSchema": worker.output_schema,
    })
}
