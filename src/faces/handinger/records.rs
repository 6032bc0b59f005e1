//! What the face keeps through the engine's records: workers and tasks.
//!
//! A worker is a saved instruction with an optional output schema; a task
//! is a chain of turns (an engine interaction keyed `handinger:<task id>`)
//! on one worker. Both are JSON bodies the engine stores and never reads
//! (`Engine::insert_record`); their shape is this file's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{HError, Result};
use super::FACE_NAME;
use crate::engine::Engine;

const WORKER: &str = "worker";
const TASK: &str = "task";
const SCHEDULE: &str = "schedule";

/// A worker as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    pub id: String,
    pub instructions: String,
    /// A JSON Schema the outputs of its turns must match.
    pub output_schema: Option<Value>,
    pub title: String,
    pub summary: String,
    /// `public` or `private`.
    pub visibility: String,
    /// Unix microseconds.
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub deleted: bool,
    /// The task it worked on last, whose state `GET` answers.
    pub latest_task: Option<String>,
    /// Its schedules' ids, oldest first.
    #[serde(default)]
    pub schedules: Vec<String>,
    #[serde(default)]
    pub webhook: Option<super::webhooks::WorkerWebhook>,
}

impl Worker {
    /// A private worker with no instructions, schema, schedule or webhook.
    pub fn new(title: String, id: String, created_at: i64) -> Worker {
        Worker {
            id,
            instructions: String::new(),
            output_schema: None,
            title,
            summary: String::new(),
            visibility: "private".into(),
            created_at,
            updated_at: None,
            deleted: false,
            latest_task: None,
            schedules: Vec::new(),
            webhook: None,
        }
    }
}

/// A worker's schedule as kept; the firing is the engine's schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: String,
    /// The engine schedule that fires it.
    pub engine_id: String,
    pub worker_id: String,
    pub input: String,
    pub budget: String,
    /// `when` as the client sent it.
    pub when: Value,
    pub cancelled: bool,
}

/// A task as kept; its turns are the engine's interaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub worker_id: String,
    pub title: String,
    pub archived: bool,
    /// `api` or `schedule`.
    pub triggered_by: String,
    /// Unix microseconds.
    pub created_at: i64,
}

impl Task {
    /// The engine interaction that holds its turns.
    pub fn interaction(&self) -> String {
        interaction_of(&self.id)
    }
}

pub fn interaction_of(task_id: &str) -> String {
    format!("{FACE_NAME}:{task_id}")
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        HError::new(
            500,
            "internal",
            format!("stored {what} does not decode: {e}"),
        )
    })
}

fn encode<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub fn worker(engine: &Engine, id: &str) -> Result<Option<Worker>> {
    engine
        .record(FACE_NAME, WORKER, id)?
        .map(|record| decode(record.body, "worker"))
        .transpose()
}

/// A worker that exists and is not deleted, else 404.
pub fn live_worker(engine: &Engine, id: &str) -> Result<Worker> {
    match worker(engine, id)? {
        Some(worker) if !worker.deleted => Ok(worker),
        _ => Err(HError::not_found(format!("worker {id} not found"))),
    }
}

pub fn insert_worker(engine: &Engine, worker: &Worker) -> Result<()> {
    engine.insert_record(FACE_NAME, WORKER, &worker.id, &encode(worker))?;
    Ok(())
}

pub fn save_worker(engine: &Engine, worker: &Worker) -> Result<()> {
    engine.update_record(FACE_NAME, WORKER, &worker.id, &encode(worker))?;
    Ok(())
}

pub fn task(engine: &Engine, id: &str) -> Result<Option<Task>> {
    engine
        .record(FACE_NAME, TASK, id)?
        .map(|record| decode(record.body, "task"))
        .transpose()
}

/// Inserts a new task; answers false when one of that id was made first
/// (two first turns sent at once: the other one won).
pub fn insert_task(engine: &Engine, task: &Task) -> Result<bool> {
    match engine.insert_record(FACE_NAME, TASK, &task.id, &encode(task)) {
        Ok(_) => Ok(true),
        Err(crate::engine::Error::Exists { .. }) => Ok(false),
        Err(other) => Err(other.into()),
    }
}

pub fn save_task(engine: &Engine, task: &Task) -> Result<()> {
    engine.update_record(FACE_NAME, TASK, &task.id, &encode(task))?;
    Ok(())
}

pub fn schedule(engine: &Engine, id: &str) -> Result<Option<Schedule>> {
    engine
        .record(FACE_NAME, SCHEDULE, id)?
        .map(|record| decode(record.body, "schedule"))
        .transpose()
}

pub fn insert_schedule(engine: &Engine, schedule: &Schedule) -> Result<()> {
    engine.insert_record(FACE_NAME, SCHEDULE, &schedule.id, &encode(schedule))?;
    Ok(())
}

pub fn save_schedule(engine: &Engine, schedule: &Schedule) -> Result<()> {
    engine.update_record(FACE_NAME, SCHEDULE, &schedule.id, &encode(schedule))?;
    Ok(())
}
