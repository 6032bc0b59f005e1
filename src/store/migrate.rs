//! Migrations: `schema.sql` is the whole schema at the latest version, what
//! a new database gets; a database of an older version gets each migration
//! after its version, numbered by its place in [`MIGRATIONS`] (`PRAGMA
//! user_version` is the number of the last one applied), so that old and
//! new databases end in one shape.
//!
//! Owns the conversion of rows stored in an older form. Version 4 (issue
//! 11) made stored rows the engine's own instead of Parallel's wire: ids
//! without the `trun_`/`tgrp_` prefixes, the run's input in a column of its
//! own and the request as sent kept as the face's opaque `document`,
//! outputs and events as the model's JSON, and no HTTP status beside
//! idempotency keys. Touches nothing outside the database it is given.

use rusqlite::{params, Connection, Transaction};
use serde_json::{json, Map, Value};

use super::{Error, Result};
#[cfg(test)]
use crate::model::EventKind;
use crate::model::{
    to_json, Content, EventData, GroupStatus, Output, ProgressKind, Run, RunCounts, RunStatus,
    Timestamp,
};

/// The schema, applied on open to a new database.
const SCHEMA_SQL: &str = include_str!("../../schema.sql");

/// One step from a version to the next.
enum Migration {
    /// Plain SQL.
    Sql(&'static str),
    /// SQL, then rows rewritten in Rust (what SQL cannot say well).
    Code(fn(&Transaction<'_>) -> Result<()>),
}

/// Migrations after the first schema, in order; `PRAGMA user_version` is
/// the number of the last one applied (the first schema is version 1, and
/// `MIGRATIONS[i]` makes version `i + 2`). Each brings a database of the
/// version before to what `schema.sql` makes of a new one; the test
/// `a_migrated_version_1_database_has_the_schema_of_a_new_one` compares.
const MIGRATIONS: &[Migration] = &[
    // 2: runs by status in one row, kept with every run change, so that
    // `/metrics` does not count every run on each scrape (issue 11); filled
    // here from a full count, once.
    Migration::Code(run_counts),
    // 3: the indexes of the lists, each filter searched in page order
    // (issue 11: a status filter walked every run).
    Migration::Sql(
        "CREATE INDEX runs_by_status_id ON runs(status, id);
CREATE INDEX runs_by_group_id ON runs(group_seq, id);
CREATE INDEX groups_by_activity ON groups((n_queued + n_running + n_cancelling > 0), id);",
    ),
    // 4: rows in the engine's own form, not Parallel's wire (issue 11).
    Migration::Code(to_engine_rows),
    // 5: the webhook outbox (issue 12).
    Migration::Code(webhooks),
    // 6: schedules (issue 12).
    Migration::Code(schedules),
    // 7: retention's tombstones and the keys' age index (issue 12).
    Migration::Code(retention),
    // 8: every event of a run indexed, not only its progress (issue 12).
    Migration::Sql(
        "DROP INDEX events_run_stream;
CREATE INDEX events_by_run ON events(run_seq, id);",
    ),
    // 9: the run a run follows up (issue 13).
    Migration::Code(follow_ups),
    // 10: interactions and faces' records (issue 14).
    Migration::Code(interactions_and_records),
    // 11: webhook targets a face lists by, and each delivery attempt
    // (issue 14).
    Migration::Code(webhook_attempts),
    // 12: run leases, for several nodes on PostgreSQL (issue 17).
    Migration::Sql(
        "CREATE TABLE run_leases (
    run_seq        INTEGER PRIMARY KEY,
    node           TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL
);",
    ),
];

/// Version a database has once every migration is applied.
pub const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`] in one transaction: a crash
/// midway leaves it at the version it had.
pub(super) fn migrate(connection: &mut Connection) -> Result<()> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaNewer {
            version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        // Only a database without tables takes this setting; one made
        // before it is rebuilt below.
        connection.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
    }
    let transaction = connection.transaction()?;
    if version == 0 {
        // schema.sql is the whole schema at the latest version: a new
        // database takes no migration (they would add what it has).
        transaction.execute_batch(SCHEMA_SQL)?;
    } else {
        for migration in MIGRATIONS.iter().skip((version - 1) as usize) {
            match migration {
                Migration::Sql(sql) => transaction.execute_batch(sql)?,
                Migration::Code(apply) => apply(&transaction)?,
            }
        }
    }
    transaction.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    transaction.commit()?;
    incremental_vacuum(connection)
}

/// `auto_vacuum = INCREMENTAL`, so that pruning can give pages back to the
/// file system (`PRAGMA incremental_vacuum`) instead of only keeping them
/// for reuse (issue 12). It is a setting of the file's header, not of the
/// schema, and so is not numbered with the migrations: a database made
/// before it (any of versions 1 to 8) is rebuilt once by `VACUUM`, which
/// is atomic (a crash leaves the old file) and needs free disk space about
/// the size of the database while it runs.
fn incremental_vacuum(connection: &Connection) -> Result<()> {
    const INCREMENTAL: i64 = 2;
    let mode = |connection: &Connection| -> Result<i64> {
        Ok(connection.query_row("PRAGMA auto_vacuum", [], |row| row.get(0))?)
    };
    if mode(connection)? == INCREMENTAL {
        return Ok(());
    }
    connection.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
    match mode(connection)? {
        INCREMENTAL => Ok(()),
        other => Err(Error::Sqlite(format!(
            "auto_vacuum is {other} after VACUUM, expected {INCREMENTAL} (incremental)"
        ))),
    }
}

/// Version 2: the `run_counts` row, made as schema.sql makes it and filled
/// from one full count.
fn run_counts(transaction: &Transaction<'_>) -> Result<()> {
    transaction.execute_batch(&schema_statements("run_counts", Made::Table))?;
    transaction.execute_batch(
        "INSERT INTO run_counts (id, num_runs, n_queued, n_running, n_cancelling, n_completed,
             n_failed, n_cancelled)
         SELECT 1, count(*), count(*) FILTER (WHERE status = 'queued'),
             count(*) FILTER (WHERE status = 'running'),
             count(*) FILTER (WHERE status = 'cancelling'),
             count(*) FILTER (WHERE status = 'completed'),
             count(*) FILTER (WHERE status = 'failed'),
             count(*) FILTER (WHERE status = 'cancelled')
         FROM runs;",
    )?;
    Ok(())
}

/// Version 5: the webhook targets and the outbox, as schema.sql makes them.
fn webhooks(transaction: &Transaction<'_>) -> Result<()> {
    transaction.execute_batch(&schema_statements("run_webhooks", Made::Table))?;
    transaction.execute_batch(&schema_statements("webhook_deliveries", Made::Table))?;
    transaction.execute_batch(&schema_statements("webhook_deliveries", Made::Indexes))?;
    Ok(())
}

/// Version 7: the tombstones of pruned rows and the keys' age index.
fn retention(transaction: &Transaction<'_>) -> Result<()> {
    transaction.execute_batch(&schema_statements("pruned", Made::Table))?;
    transaction.execute_batch(&schema_statements("idempotency_keys", Made::Indexes))?;
    Ok(())
}

/// Version 6: schedules and the runs they made, as schema.sql makes them.
fn schedules(transaction: &Transaction<'_>) -> Result<()> {
    transaction.execute_batch(&schema_statements("schedules", Made::Table))?;
    transaction.execute_batch(&schema_statements("schedules", Made::Indexes))?;
    transaction.execute_batch(&schema_statements("schedule_runs", Made::Table))?;
    Ok(())
}

/// Version 4: rows in the engine's own form (see the module doc). The
/// tables whose columns change are made anew from schema.sql's own
/// statements, so that a migrated database and a new one have the same
/// schema to the letter.
fn to_engine_rows(transaction: &Transaction<'_>) -> Result<()> {
    // The renamed table keeps its indexes (and their names) until it is
    // dropped: the new ones come after.
    transaction.execute_batch("ALTER TABLE runs RENAME TO runs_v3;")?;
    transaction.execute_batch(&schema_statements("runs", Made::Table))?;
    transaction.execute_batch(
        "INSERT INTO runs (seq, id, group_seq, cursor, status, processor, input, document,
             task_spec, default_spec, metadata, enable_events, attempts, max_attempts, error,
             warnings, output, created_at, modified_at)
         SELECT seq, CASE WHEN id LIKE 'trun\\_%' ESCAPE '\\' THEN substr(id, 6) ELSE id END,
             group_seq, cursor, status, processor, coalesce(request -> '$.input', 'null'),
             request, task_spec, default_spec, metadata, enable_events, attempts,
             max_attempts, error, warnings, output, created_at, modified_at
         FROM runs_v3;
         DROP TABLE runs_v3;",
    )?;
    transaction.execute_batch(&schema_statements("runs", Made::Indexes))?;
    transaction.execute_batch("ALTER TABLE idempotency_keys RENAME TO idempotency_keys_v3;")?;
    transaction.execute_batch(&schema_statements("idempotency_keys", Made::Table))?;
    transaction.execute_batch(
        "INSERT INTO idempotency_keys (key, fingerprint, body, created_at)
             SELECT key, fingerprint, body, created_at FROM idempotency_keys_v3;
         DROP TABLE idempotency_keys_v3;
         UPDATE groups SET id = substr(id, 6) WHERE id LIKE 'tgrp\\_%' ESCAPE '\\';
         UPDATE events SET type = 'run.status' WHERE type = 'task_run.state' AND data IS NULL;",
    )?;
    rewrite(
        transaction,
        "SELECT seq, output FROM runs WHERE output IS NOT NULL",
        "UPDATE runs SET output = ?2 WHERE seq = ?1",
        |text| Ok((None, to_json(&output_of(&parse(text)?)?))),
    )?;
    rewrite(
        transaction,
        "SELECT id, data FROM events WHERE data IS NOT NULL",
        "UPDATE events SET type = coalesce(?3, type), data = ?2 WHERE id = ?1",
        |text| {
            let data = event_of(&parse(text)?)?;
            Ok((Some(data.kind_name()), to_json(&data)))
        },
    )?;
    Ok(())
}

/// Version 9: `runs.previous_id`. The table is made anew from schema.sql's
/// statement (as in version 4) rather than altered, so that its SQL is a
/// new database's to the letter.
fn follow_ups(transaction: &Transaction<'_>) -> Result<()> {
    transaction.execute_batch("ALTER TABLE runs RENAME TO runs_v8;")?;
    transaction.execute_batch(&schema_statements("runs", Made::Table))?;
    transaction.execute_batch(
        "INSERT INTO runs (seq, id, group_seq, cursor, status, processor, input, document,
             task_spec, default_spec, metadata, enable_events, attempts, max_attempts, error,
             warnings, output, created_at, modified_at)
         SELECT seq, id, group_seq, cursor, status, processor, input, document, task_spec,
             default_spec, metadata, enable_events, attempts, max_attempts, error, warnings,
             output, created_at, modified_at
         FROM runs_v8;
         DROP TABLE runs_v8;",
    )?;
    transaction.execute_batch(&schema_statements("runs", Made::Indexes))?;
    Ok(())
}

/// Version 10: `interaction_turns` and `records`, new tables.
fn interactions_and_records(transaction: &Transaction<'_>) -> Result<()> {
    transaction.execute_batch(&schema_statements("interaction_turns", Made::Table))?;
    transaction.execute_batch(&schema_statements("interaction_turns", Made::Indexes))?;
    transaction.execute_batch(&schema_statements("records", Made::Table))?;
    Ok(())
}

/// Version 11: a target's owner and the attempts log.
fn webhook_attempts(transaction: &Transaction<'_>) -> Result<()> {
    // Migration 5 makes `run_webhooks` from today's schema.sql, so a
    // database that was older than 5 has the column already.
    let has_owner: bool = transaction.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('run_webhooks') WHERE name = 'owner'",
        [],
        |row| row.get(0),
    )?;
    if !has_owner {
        // Made anew rather than altered: `ADD COLUMN` would store SQL that
        // differs from schema.sql's, and a migrated database must read as
        // a new one.
        transaction.execute_batch("ALTER TABLE run_webhooks RENAME TO run_webhooks_v10")?;
        transaction.execute_batch(&schema_statements("run_webhooks", Made::Table))?;
        transaction.execute_batch(
            "INSERT INTO run_webhooks (run_seq, url, face) \
             SELECT run_seq, url, face FROM run_webhooks_v10;
             DROP TABLE run_webhooks_v10;",
        )?;
    }
    transaction.execute_batch(&schema_statements("webhook_attempts", Made::Table))?;
    transaction.execute_batch(&schema_statements("webhook_attempts", Made::Indexes))?;
    Ok(())
}

/// Which of schema.sql's statements about a table.
#[derive(Clone, Copy, PartialEq)]
enum Made {
    Table,
    Indexes,
}

/// schema.sql's statement that makes `table`, or those that make its
/// indexes, in order.
fn schema_statements(table: &str, made: Made) -> String {
    let creates_table = format!("CREATE TABLE {table} (");
    let on_table = format!(" ON {table}(");
    // Comment lines first: they are not part of a statement, and may hold
    // a `;` of their own.
    let statements: String = SCHEMA_SQL
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    statements
        .split(';')
        .map(str::trim)
        .filter(|statement| match made {
            Made::Table => statement.starts_with(&creates_table),
            Made::Indexes => statement.starts_with("CREATE INDEX") && statement.contains(&on_table),
        })
        .map(|statement| format!("{statement};\n"))
        .collect()
}

/// Rewrites one column of every row `select` finds (its key and the old
/// text) with `update` (key, new text, and the new type when `convert`
/// gives one).
fn rewrite(
    transaction: &Transaction<'_>,
    select: &str,
    update: &str,
    convert: impl Fn(&str) -> Result<(Option<&'static str>, String)>,
) -> Result<()> {
    let rows: Vec<(i64, String)> = transaction
        .prepare(select)?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut statement = transaction.prepare(update)?;
    for (key, text) in rows {
        let (kind, converted) = convert(&text)
            .map_err(|error| Error::Sqlite(format!("row {key} cannot migrate: {error}")))?;
        match kind {
            Some(kind) => statement.execute(params![key, converted, kind])?,
            None => statement.execute(params![key, converted])?,
        };
    }
    Ok(())
}

fn parse(text: &str) -> Result<Value> {
    Ok(serde_json::from_str(text)?)
}

/// An id without the wire prefix it was stored with.
fn engine_id(id: &str) -> String {
    ["trun_", "tgrp_"]
        .iter()
        .find_map(|prefix| id.strip_prefix(prefix))
        .unwrap_or(id)
        .to_string()
}

fn field<'a>(object: &'a Value, key: &str) -> Result<&'a Value> {
    object
        .get(key)
        .ok_or_else(|| Error::Sqlite(format!("stored JSON has no `{key}`")))
}

fn timestamp(value: &Value) -> Result<Timestamp> {
    Ok(serde_json::from_value(value.clone())?)
}

/// A stored output of version 1 (Parallel's wire output) as the model's.
fn output_of(old: &Value) -> Result<Output> {
    let content = match field(old, "type")?.as_str() {
        Some("text") => Content::Text(
            field(old, "content")?
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        _ => Content::Json(
            field(old, "content")?
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
    };
    Ok(Output {
        content,
        evidence: serde_json::from_value(old.get("basis").cloned().unwrap_or(json!([])))?,
        schema: old.get("output_schema").filter(|v| !v.is_null()).cloned(),
        usage: None,
    })
}

/// A stored event of version 1 (Parallel's wire event) as the model's.
fn event_of(old: &Value) -> Result<EventData> {
    let kind = field(old, "type")?.as_str().unwrap_or_default();
    match kind {
        "task_run.state" => {
            let run = field(old, "run")?;
            let text = |key: &str| run.get(key).and_then(Value::as_str).map(engine_id);
            fn optional<T: serde::de::DeserializeOwned>(
                run: &Value,
                key: &str,
            ) -> serde_json::Result<Option<T>> {
                run.get(key)
                    .filter(|value| !value.is_null())
                    .map(|value| serde_json::from_value(value.clone()))
                    .transpose()
            }
            let status = text("status")
                .and_then(|status| RunStatus::parse(&status))
                .ok_or_else(|| Error::Sqlite("stored run state has no status".into()))?;
            Ok(EventData::RunStatus {
                run: Run {
                    id: text("run_id").unwrap_or_default(),
                    group_id: text("taskgroup_id"),
                    status,
                    processor: text("processor").unwrap_or_default(),
                    metadata: optional(run, "metadata")?,
                    error: optional(run, "error")?,
                    warnings: optional(run, "warnings")?,
                    created_at: timestamp(field(run, "created_at")?)?,
                    modified_at: timestamp(field(run, "modified_at")?)?,
                },
                output: None,
            })
        }
        "task_group_status" => {
            let status = field(old, "status")?;
            let empty = Map::new();
            let counted = status
                .get("task_run_status_counts")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let mut counts = RunCounts {
                num_runs: status
                    .get("num_task_runs")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                ..RunCounts::default()
            };
            for (name, count) in counted {
                if let Some(status) = RunStatus::parse(name) {
                    counts.add(status, count.as_i64().unwrap_or(0));
                }
            }
            Ok(EventData::GroupStatus {
                status: GroupStatus {
                    counts,
                    modified_at: timestamp(field(status, "modified_at")?)?,
                },
            })
        }
        "task_run.progress_stats" => {
            let mut counters = std::collections::BTreeMap::new();
            let stats = old.get("source_stats").cloned().unwrap_or(Value::Null);
            for (old_name, name) in [
                ("num_sources_considered", "sources_considered"),
                ("num_sources_read", "sources_read"),
            ] {
                if let Some(count) = stats.get(old_name).and_then(Value::as_u64) {
                    counters.insert(name.to_string(), count);
                }
            }
            Ok(EventData::Stats {
                meter: field(old, "progress_meter")?.as_f64().unwrap_or(0.0),
                counters,
            })
        }
        other => {
            let progress = other
                .strip_prefix("task_run.progress_msg.")
                .and_then(|name| ProgressKind::ALL.into_iter().find(|k| k.as_str() == name))
                .ok_or_else(|| Error::Sqlite(format!("stored event of unknown type {other}")))?;
            Ok(EventData::Progress {
                progress,
                message: field(old, "message")?
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                at: timestamp(field(old, "timestamp")?)?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds version 2 writes in the `type` column.
    const KINDS: [EventKind; 4] = [
        EventKind::RunStatus,
        EventKind::GroupStatus,
        EventKind::Progress,
        EventKind::Stats,
    ];

    /// A version 1 database as the code before issue 11 wrote it: one
    /// group with a completed run, progress, stats, a group status event
    /// and an idempotency key.
    const VERSION_1_ROWS: &str = r#"
        INSERT INTO groups (seq, id, metadata, created_at, modified_at, num_runs, n_completed)
            VALUES (1, 'tgrp_0000000000000000000000000000000a', NULL, 1, 2, 1, 1);
        INSERT INTO runs (seq, id, group_seq, cursor, status, processor, request, task_spec,
            default_spec, metadata, enable_events, attempts, max_attempts, error, warnings,
            output, created_at, modified_at)
            VALUES (1, 'trun_0000000000000000000000000000000b', 1, 1, 'completed', 'lite',
            '{"input":{"q":"x"},"processor":"lite"}', '{"output_schema":{"type":"auto"}}', 0,
            NULL, 1, 1, 3, NULL, NULL,
            '{"type":"json","content":{"a":1},"basis":[{"field":"a","reasoning":"r","citations":[],"confidence":"high"}],"output_schema":{"type":"object"},"mcp_tool_calls":null,"beta_fields":null}',
            1, 2);
        INSERT INTO events (id, type, group_seq, run_seq, stream, status, data, created_at) VALUES
            (1, 'task_run.state', 1, 1, 0, 'queued', NULL, 1),
            (2, 'task_group_status', 1, NULL, 1, NULL,
             '{"type":"task_group_status","event_id":"2","status":{"num_task_runs":1,"task_run_status_counts":{"queued":1},"is_active":true,"status_message":null,"modified_at":"2025-04-23T20:21:48.037943Z"}}', 1),
            (3, 'task_run.progress_msg.exec_status', 1, 1, 2, NULL,
             '{"type":"task_run.progress_msg.exec_status","message":"attempt 1 of 3 started","timestamp":"2025-04-23T20:21:48.037943Z"}', 1),
            (4, 'task_run.progress_stats', 1, 1, 2, NULL,
             '{"type":"task_run.progress_stats","progress_meter":100.0,"source_stats":{"num_sources_considered":null,"num_sources_read":null,"sources_read_sample":null}}', 2),
            (5, 'task_run.state', 1, 1, 1, 'completed',
             '{"type":"task_run.state","event_id":"5","run":{"run_id":"trun_0000000000000000000000000000000b","interaction_id":"trun_0000000000000000000000000000000b","status":"completed","is_active":false,"processor":"lite","metadata":null,"error":null,"warnings":null,"taskgroup_id":"tgrp_0000000000000000000000000000000a","created_at":"2025-04-23T20:21:48.037943Z","modified_at":"2025-04-23T20:21:48.037943Z"},"input":null,"output":null}', 2);
        INSERT INTO idempotency_keys (key, fingerprint, status, body, created_at)
            VALUES ('k', 'POST /v1/tasks/runs', 202, '{"run_id":"trun_0000000000000000000000000000000b"}', 1);
        PRAGMA user_version = 1;
    "#;

    #[test]
    fn a_version_1_database_migrates_to_engine_rows() {
        let mut connection = Connection::open_in_memory().expect("in-memory database");
        connection
            .execute_batch(SCHEMA_V1_SQL)
            .expect("version 1 schema");
        connection
            .execute_batch(VERSION_1_ROWS)
            .expect("version 1 rows");
        migrate(&mut connection).expect("migrates");

        let (id, input, document, output): (String, String, String, String) = connection
            .query_row(
                "SELECT id, input, document, output FROM runs WHERE seq = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .expect("run");
        assert_eq!(id, "0000000000000000000000000000000b");
        assert_eq!(input, r#"{"q":"x"}"#);
        assert_eq!(document, r#"{"input":{"q":"x"},"processor":"lite"}"#);
        let output: Output = serde_json::from_str(&output).expect("model output");
        assert_eq!(output.evidence.len(), 1);
        assert_eq!(output.schema, Some(json!({"type": "object"})));
        assert!(matches!(output.content, Content::Json(_)));

        let group_id: String = connection
            .query_row("SELECT id FROM groups WHERE seq = 1", [], |row| row.get(0))
            .expect("group");
        assert_eq!(group_id, "0000000000000000000000000000000a");

        let mut statement = connection
            .prepare("SELECT type, data FROM events ORDER BY id")
            .expect("events");
        let events: Vec<(String, Option<String>)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let names: Vec<&str> = KINDS.iter().map(|kind| kind.as_str()).collect();
        for (kind, data) in &events {
            assert!(names.contains(&kind.as_str()), "{kind}");
            if let Some(data) = data {
                let data: EventData = serde_json::from_str(data).expect("model event");
                assert_eq!(data.kind_name(), kind);
            }
        }
        let last: EventData =
            serde_json::from_str(events[4].1.as_deref().expect("data")).expect("run status");
        let EventData::RunStatus { run, .. } = last else {
            panic!("{last:?}");
        };
        assert_eq!(run.id, "0000000000000000000000000000000b");
        assert_eq!(
            run.group_id.as_deref(),
            Some("0000000000000000000000000000000a")
        );
        let first_group: EventData =
            serde_json::from_str(events[1].1.as_deref().expect("data")).expect("group status");
        let EventData::GroupStatus { status } = first_group else {
            panic!("{first_group:?}");
        };
        assert_eq!(status.counts.queued, 1);
        assert_eq!(status.counts.num_runs, 1);

        let columns: Vec<String> = connection
            .prepare("SELECT name FROM pragma_table_info('idempotency_keys')")
            .expect("columns")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert!(!columns.iter().any(|name| name == "status"), "{columns:?}");
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// The schema as taskyard made it before migration 2.
    const SCHEMA_V1_SQL: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schema_v1.sql"
    ));

    fn version_1_database() -> Connection {
        let connection = Connection::open_in_memory().expect("in-memory database");
        connection
            .execute_batch(SCHEMA_V1_SQL)
            .expect("the version 1 schema applies");
        connection
            .execute_batch("PRAGMA user_version = 1")
            .expect("user_version");
        connection
    }

    /// Every table and index with its SQL, whitespace folded, by name.
    fn schema_of(connection: &Connection) -> Vec<(String, String, String)> {
        let mut statement = connection
            .prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_master ORDER BY name")
            .expect("sqlite_master");
        let rows = statement
            .query_map([], |row| {
                let sql: String = row.get(2)?;
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    sql.split_whitespace().collect::<Vec<_>>().join(" "),
                ))
            })
            .expect("rows")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("rows read");
        rows
    }

    fn user_version(connection: &Connection) -> i64 {
        connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("user_version")
    }

    #[test]
    fn a_migrated_version_1_database_has_the_schema_of_a_new_one() {
        let mut new = Connection::open_in_memory().expect("in-memory database");
        migrate(&mut new).expect("schema applies");
        let mut old = version_1_database();
        migrate(&mut old).expect("migrations apply");
        assert_eq!(user_version(&new), SCHEMA_VERSION);
        assert_eq!(user_version(&old), SCHEMA_VERSION);
        assert_eq!(schema_of(&old), schema_of(&new));
        // Both start with the one run_counts row, and can give pages back.
        for connection in [&new, &old] {
            let auto_vacuum: i64 = connection
                .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
                .expect("auto_vacuum");
            assert_eq!(auto_vacuum, 2, "incremental");
            let rows: i64 = connection
                .query_row("SELECT count(*) FROM run_counts", [], |row| row.get(0))
                .expect("run_counts");
            assert_eq!(rows, 1);
        }
    }

    /// Migration 11 on a database made at version 10 (after migration 5
    /// made `run_webhooks` without an owner): the column is added, and the
    /// schema is a new one's.
    #[test]
    fn a_version_10_database_gets_webhook_owners_and_the_attempts_log() {
        let mut new = Connection::open_in_memory().expect("in-memory database");
        migrate(&mut new).expect("schema applies");
        let mut old = Connection::open_in_memory().expect("in-memory database");
        migrate(&mut old).expect("schema applies");
        old.execute_batch(
            "DROP TABLE webhook_attempts;
             DROP TABLE run_leases;
             DROP TABLE run_webhooks;
             CREATE TABLE run_webhooks (
                 run_seq        INTEGER PRIMARY KEY,
                 url            TEXT    NOT NULL,
                 face           TEXT    NOT NULL
             );
             INSERT INTO run_webhooks VALUES (7, 'http://127.0.0.1:9/hook', 'parallel');
             PRAGMA user_version = 10;",
        )
        .expect("back to version 10");
        migrate(&mut old).expect("migrations 11 and 12 apply");
        assert_eq!(user_version(&old), SCHEMA_VERSION);
        assert_eq!(schema_of(&old), schema_of(&new));
        let kept: (i64, String, String, Option<String>) = old
            .query_row(
                "SELECT run_seq, url, face, owner FROM run_webhooks",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .expect("the target is kept");
        assert_eq!(
            kept,
            (7, "http://127.0.0.1:9/hook".into(), "parallel".into(), None)
        );
    }

    /// Regression (issue 11, bug 3): `/metrics` counted every run by status
    /// on each scrape. The counts are now a row kept with every run change;
    /// a database made before it gets the row from one full count.
    #[test]
    fn migration_2_fills_run_counts_from_a_full_count() {
        let mut connection = version_1_database();
        connection
            .execute_batch(
                "INSERT INTO groups (id, created_at, modified_at) VALUES ('tgrp_a', 0, 0);",
            )
            .expect("group");
        let statuses = [
            ("queued", 5),
            ("running", 3),
            ("cancelling", 1),
            ("completed", 40),
            ("failed", 7),
            ("cancelled", 2),
        ];
        let mut index = 0;
        for (status, count) in statuses {
            for _ in 0..count {
                // Every other run without a group: those count too.
                let group_seq = (index % 2 == 0).then_some(1);
                connection
                    .execute(
                        "INSERT INTO runs (id, group_seq, cursor, status, processor, request, \
                         task_spec, default_spec, enable_events, max_attempts, created_at, \
                         modified_at) VALUES (?1, ?2, ?3, ?4, 'mock', '{}', '{}', 0, 0, 3, 0, 0)",
                        rusqlite::params![format!("trun_{index}"), group_seq, index, status],
                    )
                    .expect("run");
                index += 1;
            }
        }
        migrate(&mut connection).expect("migrations apply");
        let stored: Vec<i64> = connection
            .query_row(
                "SELECT num_runs, n_queued, n_running, n_cancelling, n_completed, n_failed, \
                 n_cancelled FROM run_counts WHERE id = 1",
                [],
                |row| (0..7).map(|column| row.get(column)).collect(),
            )
            .expect("the run_counts row");
        let mut expected = vec![statuses.iter().map(|(_, count)| *count).sum::<i64>()];
        expected.extend(statuses.iter().map(|(_, count)| *count));
        assert_eq!(stored, expected);
    }
}
