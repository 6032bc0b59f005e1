//! What the face keeps through the engine's records (spec 1.9, choice 6):
//! one record per task, keyed by its integer id, holding the engine run
//! it is and what Nextcloud shows that the run does not (owner, app,
//! type, customId, webhook, flags), and a counter record that hints the
//! last id given.
//!
//! An id is taken by inserting its record: the insert is the one atomic
//! step (a second insert of the id is `Exists`), so two schedules at once
//! never share an id, and the counter may lag without harm. The record is
//! reserved before its run is made (the run's metadata names the id, spec
//! choice 6) and gets the run's id once that commits: a crash between the
//! two leaves a reserved id no one was given and, at worst, a run no
//! Nextcloud id shows, never a task without its run. Records are never
//! deleted, so ids are dense from 1 and never reused; a deleted task, or a
//! reserved id whose run was refused, keeps its record, marked.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::{NcError, Result};
use super::limits::ID_PROBES_MAX;
use super::FACE_NAME;
use crate::engine::{self, Engine};

const TASK: &str = "task";
const COUNTER: &str = "counter";
const COUNTER_ID: &str = "task";

/// A task as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Filled from the record's key when read.
    #[serde(skip)]
    pub id: u64,
    pub run_id: String,
    pub user_id: String,
    pub app_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub custom_id: String,
    /// The input after the shape check (unknown keys dropped, defaults in).
    pub input: Map<String, Value>,
    pub webhook_uri: Option<String>,
    pub webhook_method: Option<String>,
    pub include_watermark: bool,
    pub prefer_streaming: bool,
    /// Unix seconds.
    pub scheduled_at: i64,
    pub completion_expected_at: i64,
    /// Hidden by `DELETE` (spec 3.4): later reads answer 404.
    pub deleted: bool,
}

fn decode(id: u64, body: Value) -> Result<TaskRecord> {
    let mut record: TaskRecord = serde_json::from_value(body).map_err(|e| {
        eprintln!("taskyard: nextcloud task {id} does not decode: {e}");
        NcError::new(500, "Internal error")
    })?;
    record.id = id;
    Ok(record)
}

fn encode(record: &TaskRecord) -> Value {
    serde_json::to_value(record).unwrap_or(Value::Null)
}

/// A task by id, deleted or not.
pub fn task(engine: &Engine, id: u64) -> Result<Option<TaskRecord>> {
    engine
        .record(FACE_NAME, TASK, &id.to_string())?
        .map(|record| decode(id, record.body))
        .transpose()
}

impl TaskRecord {
    /// True for a task `user` may see: theirs (spec choice 5), not
    /// deleted, and with its run (a reserved id whose run a crash or a
    /// refusal stopped was never given out).
    fn visible_to(&self, user: &str) -> bool {
        !self.deleted && !self.run_id.is_empty() && self.user_id == user
    }
}

/// A visible task of `user`.
pub fn owned(engine: &Engine, id: u64, user: &str) -> Result<Option<TaskRecord>> {
    Ok(task(engine, id)?.filter(|task| task.visible_to(user)))
}

fn last_hint(engine: &Engine) -> Result<u64> {
    Ok(engine
        .record(FACE_NAME, COUNTER, COUNTER_ID)?
        .and_then(|record| record.body.get("last").and_then(Value::as_u64))
        .unwrap_or(0))
}

/// Stores a new task under the next free id, with no run yet, and
/// answers it with its id.
pub fn reserve(engine: &Engine, mut record: TaskRecord) -> Result<TaskRecord> {
    let hint = last_hint(engine)?;
    let body = encode(&record);
    for id in hint + 1..=hint + ID_PROBES_MAX {
        match engine.insert_record(FACE_NAME, TASK, &id.to_string(), &body) {
            Ok(_) => {
                record.id = id;
                // The hint only saves probes: a failed or late write of it
                // is harmless.
                let counter = json!({ "last": id });
                let saved = match engine.update_record(FACE_NAME, COUNTER, COUNTER_ID, &counter) {
                    Err(engine::Error::NotFound { .. }) => engine
                        .insert_record(FACE_NAME, COUNTER, COUNTER_ID, &counter)
                        .map(|_| ()),
                    other => other.map(|_| ()),
                };
                if let Err(error) = saved {
                    if !matches!(error, engine::Error::Exists { .. }) {
                        eprintln!("taskyard: nextcloud id counter not saved: {error}");
                    }
                }
                return Ok(record);
            }
            Err(engine::Error::Exists { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(NcError::new(500, "Internal server error"))
}

pub fn save(engine: &Engine, record: &TaskRecord) -> Result<()> {
    engine.update_record(FACE_NAME, TASK, &record.id.to_string(), &encode(record))?;
    Ok(())
}

/// Every live task of `user` that `keep` accepts, id ascending (spec 3.5
/// choice): one read of every task record (ids are kept as decimal text,
/// so they are put in number order here).
pub fn list(
    engine: &Engine,
    user: &str,
    keep: impl Fn(&TaskRecord) -> bool,
) -> Result<Vec<TaskRecord>> {
    let mut found = Vec::new();
    for record in engine.list_records(FACE_NAME, TASK, "", usize::MAX)? {
        let Ok(id) = record.id.parse::<u64>() else {
            continue;
        };
        let task = decode(id, record.body)?;
        if task.visible_to(user) && keep(&task) {
            found.push(task);
        }
    }
    found.sort_by_key(|task| task.id);
    Ok(found)
}
