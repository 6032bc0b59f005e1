//! What the face keeps through the engine's records: sessions, routines
//! and the index of the runs invoked (which the engine writes with each
//! run; a scheduled run is found through its engine schedule instead).
//!
//! Bodies are JSON the engine stores and never reads; their shape is this
//! file's. Ids are minted in creation order (`ids.rs`), so the engine's
//! listing by id is newest first.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{AError, Result};
use super::FACE_NAME;
use crate::engine::Engine;

const SESSION: &str = "session";
const ROUTINE: &str = "routine";
const INVOKED: &str = "invoked";
const SCHEDULE: &str = "schedule";

/// A session as kept; its turns are the engine interaction
/// [`Session::interaction`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub agent: String,
    pub processor: String,
    pub instructions: String,
    pub name: Option<String>,
    pub metadata: Map<String, Value>,
    pub inbox: Vec<Value>,
    pub max_runs_per_turn: Value,
    pub max_tokens: Value,
    pub max_turns: u64,
    /// Made with `start_idle`: its first turn waits for a message.
    pub start_idle: bool,
    /// Unix microseconds.
    pub created_at: i64,
}

impl Session {
    pub fn interaction(&self) -> String {
        format!("{FACE_NAME}:{}", self.id)
    }
}

/// A routine as kept: the echoed fields as sent. Its engine schedules are
/// found through their index records ([`schedules`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routine {
    pub id: String,
    pub agent: String,
    /// The stored fields of spec 2.2 by wire name, as last sent.
    pub fields: Map<String, Value>,
    /// `draft`, `active` or `paused`.
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Deleted routines stay kept so that their runs list (spec 4.2).
    pub deleted: bool,
}

impl Routine {
    pub fn text(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| AError::internal(format!("stored {what} does not decode: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub fn session(engine: &Engine, id: &str) -> Result<Session> {
    engine
        .record(FACE_NAME, SESSION, id)?
        .map(|record| decode(record.body, "session"))
        .transpose()?
        .ok_or_else(|| AError::not_found("Agent session not found"))
}

pub fn insert_session(engine: &Engine, session: &Session) -> Result<()> {
    engine.insert_record(FACE_NAME, SESSION, &session.id, &encode(session))?;
    Ok(())
}

pub fn save_session(engine: &Engine, session: &Session) -> Result<()> {
    engine.update_record(FACE_NAME, SESSION, &session.id, &encode(session))?;
    Ok(())
}

pub fn delete_session(engine: &Engine, id: &str) -> Result<()> {
    engine.delete_record(FACE_NAME, SESSION, id)?;
    Ok(())
}

/// The newest sessions first, at most `limit`.
pub fn sessions(engine: &Engine, limit: usize) -> Result<Vec<Session>> {
    engine
        .list_records(FACE_NAME, SESSION, "", limit)?
        .into_iter()
        .map(|record| decode(record.body, "session"))
        .collect()
}

/// A routine, deleted ones included.
pub fn any_routine(engine: &Engine, id: &str) -> Result<Option<Routine>> {
    engine
        .record(FACE_NAME, ROUTINE, id)?
        .map(|record| decode(record.body, "routine"))
        .transpose()
}

/// A routine that is not deleted, else 404.
pub fn routine(engine: &Engine, id: &str) -> Result<Routine> {
    match any_routine(engine, id)? {
        Some(routine) if !routine.deleted => Ok(routine),
        _ => Err(AError::not_found("Agent routine not found")),
    }
}

pub fn insert_routine(engine: &Engine, routine: &Routine) -> Result<()> {
    engine.insert_record(FACE_NAME, ROUTINE, &routine.id, &encode(routine))?;
    Ok(())
}

pub fn save_routine(engine: &Engine, routine: &Routine) -> Result<()> {
    engine.update_record(FACE_NAME, ROUTINE, &routine.id, &encode(routine))?;
    Ok(())
}

/// The newest routines first, deleted ones included, at most `limit`.
pub fn routines(engine: &Engine, limit: usize) -> Result<Vec<Routine>> {
    engine
        .list_records(FACE_NAME, ROUTINE, "", limit)?
        .into_iter()
        .map(|record| decode(record.body, "routine"))
        .collect()
}

/// Where an invoked run's index record goes, written by the engine with
/// the run (`Engine::create_indexed_run`): `<routine>/<run id>`, so the
/// runs of a routine are one prefix.
pub fn invoked_index(routine: &str) -> (&'static str, &'static str, String) {
    (FACE_NAME, INVOKED, format!("{routine}/"))
}

/// Where a routine's engine schedule's index record goes, written by the
/// engine with the schedule (`Engine::create_exclusive_schedule`).
pub fn schedule_index(routine: &str) -> (&'static str, &'static str, String) {
    (FACE_NAME, SCHEDULE, format!("{routine}/"))
}

/// Every engine schedule a routine has had, newest first: their runs are
/// its scheduled runs, and the newest is its current one.
pub fn schedules(engine: &Engine, routine: &str) -> Result<Vec<String>> {
    let prefix = format!("{routine}/");
    Ok(engine
        .list_records(FACE_NAME, SCHEDULE, &prefix, usize::MAX)?
        .into_iter()
        .filter_map(|record| record.id.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// The runs invoked on `routine` (all routines when `None`), at most
/// `limit`, as (routine id, engine run id).
pub fn invoked(
    engine: &Engine,
    routine: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, String)>> {
    let prefix = routine.map_or(String::new(), |id| format!("{id}/"));
    engine
        .list_records(FACE_NAME, INVOKED, &prefix, limit)?
        .into_iter()
        .map(|record| {
            record
                .id
                .split_once('/')
                .map(|(routine, run)| (routine.to_string(), run.to_string()))
                .ok_or_else(|| {
                    AError::internal(format!("invoked index '{}' names no run", record.id))
                })
        })
        .collect()
}
