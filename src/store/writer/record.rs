//! Faces' records: JSON bodies kept by face, kind and id, inserted,
//! replaced or deleted in the writer's transaction like every other
//! change. The engine never reads a body; a face owns its shape.
//!
//! Runs on the writer thread inside the batch's transaction.

use super::*;

/// A record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    pub id: String,
    pub body: String,
    pub created_at: i64,
    pub modified_at: i64,
}

/// How a put treats a record that is (or is not) there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordWrite {
    /// Only a new one: an existing id is `Exists`.
    Insert,
    /// Only an existing one: a missing id is `NotFound`.
    Update,
}

/// Which record, by face, kind and id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordKey {
    pub face: String,
    pub kind: String,
    pub id: String,
}

/// A face's index record for a row made in the same transaction (a run,
/// a schedule): `index.id` followed by the row's id, an empty body.
pub(super) fn insert_index(
    transaction: &Sql<'_>,
    batch: &Batch,
    index: &RecordKey,
    row_id: &str,
) -> Result<()> {
    transaction.execute(
        "INSERT INTO records (face, kind, id, body, created_at, modified_at) \
             VALUES (?1, ?2, ?3, '{}', ?4, ?4) ON CONFLICT DO NOTHING",
        params![
            index.face,
            index.kind,
            format!("{}{row_id}", index.id),
            batch.now
        ],
    )?;
    Ok(())
}

pub(super) fn put_record(
    transaction: &Sql<'_>,
    batch: &Batch,
    key: &RecordKey,
    body: &str,
    write: RecordWrite,
) -> Result<RecordRow> {
    let created_at: Option<i64> = transaction.query_row(
        "SELECT created_at FROM records WHERE face = ?1 AND kind = ?2 AND id = ?3",
        params![key.face, key.kind, key.id],
        |row| row.get(0),
    )?;
    let created_at = match (write, created_at) {
        (RecordWrite::Insert, Some(_)) => {
            return Err(Error::Exists {
                kind: key.kind.clone(),
                id: key.id.clone(),
            })
        }
        (RecordWrite::Update, None) => {
            return Err(Error::NotFound {
                kind: "record",
                id: format!("{} {}", key.kind, key.id),
            })
        }
        (_, created_at) => created_at.unwrap_or(batch.now),
    };
    transaction.execute(
        "INSERT INTO records (face, kind, id, body, created_at, modified_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (face, kind, id) DO UPDATE SET \
             body = excluded.body, created_at = excluded.created_at, \
             modified_at = excluded.modified_at",
        params![key.face, key.kind, key.id, body, created_at, batch.now],
    )?;
    Ok(RecordRow {
        id: key.id.clone(),
        body: body.to_string(),
        created_at,
        modified_at: batch.now,
    })
}

/// True when there was one to delete.
pub(super) fn delete_record(transaction: &Sql<'_>, key: &RecordKey) -> Result<bool> {
    Ok(transaction.execute(
        "DELETE FROM records WHERE face = ?1 AND kind = ?2 AND id = ?3",
        params![key.face, key.kind, key.id],
    )? > 0)
}

/// Stores a face's answer under an idempotency key, unless the key has one:
/// then answers the fingerprint and body stored first.
pub(super) fn remember_key(
    transaction: &Sql<'_>,
    batch: &Batch,
    record: &IdempotencyRecord,
    body: &str,
) -> Result<Option<(String, String)>> {
    let seen: Option<(String, String)> = transaction.query_row(
        "SELECT fingerprint, body FROM idempotency_keys WHERE key = ?1",
        params![&record.key],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    if seen.is_none() {
        transaction.execute(
            "INSERT INTO idempotency_keys (key, fingerprint, body, created_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            params![record.key, record.fingerprint, body, batch.now],
        )?;
    }
    Ok(seen)
}
