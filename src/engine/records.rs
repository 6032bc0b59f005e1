//! Faces' records and interactions through the engine.
//!
//! A face that keeps nouns of its own (Handinger's workers and tasks)
//! stores them here, by face, kind and id, as JSON the engine never reads,
//! so that every face writes through the one engine and store. An
//! interaction is a chain of runs under a key the face chose: a run created
//! in it follows its latest run (`RunRequest::interaction`), and its turns
//! read back in order. Holds no SQL.

use serde_json::Value;

use super::error::{Error, Result};
use super::Engine;
use crate::limits::RECORD_BODY_BYTES_MAX;
use crate::model::{to_json, FieldError, InteractionTurn, Loc, Record, Timestamp};
use crate::store::{self, Op, RecordKey, RecordRow, RecordWrite};

fn key(face: &str, kind: &str, id: &str) -> RecordKey {
    RecordKey {
        face: face.to_string(),
        kind: kind.to_string(),
        id: id.to_string(),
    }
}

fn record_of(row: RecordRow) -> Result<Record> {
    Ok(Record {
        body: serde_json::from_str(&row.body)
            .map_err(|e| Error::Internal(format!("stored record does not decode: {e}")))?,
        id: row.id,
        created_at: Timestamp(row.created_at),
        modified_at: Timestamp(row.modified_at),
    })
}

impl Engine {
    fn write_record(
        &self,
        face: &str,
        kind: &str,
        id: &str,
        body: &Value,
        write: RecordWrite,
    ) -> Result<Record> {
        let body = to_json(body);
        if body.len() > RECORD_BODY_BYTES_MAX {
            return Err(Error::Invalid(vec![FieldError::limit(
                vec![Loc::Key("record".into())],
                "RECORD_BODY_BYTES_MAX",
                RECORD_BODY_BYTES_MAX as u64,
                body.len() as u64,
            )]));
        }
        let row = self.write(|reply| Op::PutRecord {
            key: key(face, kind, id),
            body: body.clone(),
            write,
            reply,
        })?;
        record_of(row)
    }

    /// Stores a new record; one of that id is `Error::Exists`.
    pub fn insert_record(&self, face: &str, kind: &str, id: &str, body: &Value) -> Result<Record> {
        self.write_record(face, kind, id, body, RecordWrite::Insert)
    }

    /// Replaces a record's body; a missing one is not found.
    pub fn update_record(&self, face: &str, kind: &str, id: &str, body: &Value) -> Result<Record> {
        self.write_record(face, kind, id, body, RecordWrite::Update)
    }

    pub fn record(&self, face: &str, kind: &str, id: &str) -> Result<Option<Record>> {
        self.inner
            .store
            .record(&key(face, kind, id))?
            .map(record_of)
            .transpose()
    }

    /// A face's records of one kind whose ids start with `prefix`, by id
    /// from the greatest down, at most `limit`: a face that mints ids in
    /// creation order lists its newest first.
    pub fn list_records(
        &self,
        face: &str,
        kind: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<Record>> {
        self.inner
            .store
            .records(face, kind, prefix, limit)?
            .into_iter()
            .map(record_of)
            .collect()
    }

    /// Deletes a record; true when there was one.
    pub fn delete_record(&self, face: &str, kind: &str, id: &str) -> Result<bool> {
        Ok(self.write(|reply| Op::DeleteRecord {
            key: key(face, kind, id),
            reply,
        })?)
    }

    /// The turns of an interaction, in order; none for a key never used.
    pub fn interaction(&self, interaction: &str) -> Result<Vec<InteractionTurn>> {
        self.inner
            .store
            .interaction_turns(interaction)?
            .into_iter()
            .map(|stored| {
                Ok(InteractionTurn {
                    turn: stored.turn as u32,
                    input: serde_json::from_str(&stored.input).map_err(|e| {
                        Error::Internal(format!("stored run input does not decode: {e}"))
                    })?,
                    output: stored
                        .output
                        .as_deref()
                        .map(store::parse_output)
                        .transpose()?,
                    run: stored.run.to_model()?,
                })
            })
            .collect()
    }
}
