//! What the face keeps through the engine's records: sessions, routines
//! and the runs invoked (the index the runs lists read; a scheduled run
//! is found through its engine schedule instead).
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

/// A routine as kept: the echoed fields as sent, and the engine schedule
/// that fires it while active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routine {
    pub id: String,
    pub agent: String,
    /// The stored fields of spec 2.2 by wire name, as last sent.
    pub fields: Map<String, Value>,
    /// `draft`, `active` or `paused`.
    pub status: String,
    /// The engine schedule of its current `schedule`, if it has had one.
    pub schedule_id: Option<String>,
    /// Every engine schedule it ever had, oldest first: their runs are its
    /// scheduled runs.
    pub schedules: Vec<String>,
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

/// An invoked run's index entry, keyed `<routine>/<run>`: the runs of a
/// routine are one prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoked {
    pub routine: String,
    pub run_id: String,
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

pub fn insert_invoked(engine: &Engine, invoked: &Invoked) -> Result<()> {
    let id = format!("{}/{}", invoked.routine, invoked.run_id);
    match engine.insert_record(FACE_NAME, INVOKED, &id, &encode(invoked)) {
        // A replayed invoke indexes its run once.
        Ok(_) | Err(crate::engine::Error::Exists { .. }) => Ok(()),
        Err(other) => Err(other.into()),
    }
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
        .map(|record| decode::<Invoked>(record.body, "invoked run").map(|i| (i.routine, i.run_id)))
        .collect()
}
