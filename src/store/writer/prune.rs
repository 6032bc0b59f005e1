//! Retention: pruning what a policy says is old enough, in small batches,
//! each one transaction that holds the writer a few milliseconds.
//!
//! Prunes terminal runs older than the policy's cut-off (lone runs, and the
//! runs of groups that are inactive and as old) with their events,
//! webhook targets and finished deliveries, then such groups once empty;
//! idempotency keys and finished deliveries by age. Never an active run, a
//! run with a pending delivery, a schedule, or an active group. Each pruned
//! run or group leaves a tombstone, so that it reads as gone, not as never
//! made.

use super::*;
use crate::limits::PRUNE_SLACK_PAGES;

/// Cut-offs in Unix microseconds: rows last changed before each are pruned;
/// `None` keeps that kind of row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunePolicy {
    pub runs_before: Option<i64>,
    pub keys_before: Option<i64>,
    pub deliveries_before: Option<i64>,
}

/// What one prune batch removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub runs: usize,
    pub groups: usize,
    pub events: usize,
    pub keys: usize,
    pub deliveries: usize,
    /// Free pages given back to the file system (`incremental_vacuum`).
    pub pages: usize,
}

impl Pruned {
    pub fn rows(&self) -> usize {
        self.runs + self.groups + self.events + self.keys + self.deliveries
    }
}

/// PostgreSQL's transaction-scoped advisory lock that lets one node prune
/// at a time ('retentn!' in ASCII, as schema.postgres.sql records).
const RETENTION_LOCK: i64 = 0x7265_7465_6e74_6e21;

pub(super) fn prune(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    policy: PrunePolicy,
    rows_max: usize,
    pages_max: usize,
) -> Result<Pruned> {
    if transaction.dialect() == Dialect::Postgres {
        // Several nodes, one retention: a node whose neighbour is pruning
        // prunes nothing this time, rather than both deleting the same rows.
        let mine: bool = transaction.query_one(
            "SELECT pg_try_advisory_xact_lock(?1)",
            params![RETENTION_LOCK],
            |row| row.get(0),
        )?;
        if !mine {
            return Ok(Pruned::default());
        }
    }
    // Deleting can itself take a page (a tombstone's new leaf, a b-tree
    // rebalance): a database full to its cap must still be able to prune,
    // or it stays full for good. The cap is lifted by a few pages for the
    // batch and put back after, failed or not; what the batch frees more
    // than pays them back.
    // PostgreSQL has no page cap (`database_bytes_max` is SQLite's).
    let Some(cap) = batch
        .page_cap
        .filter(|_| transaction.dialect() == Dialect::Sqlite)
    else {
        return prune_and_vacuum(transaction, batch, policy, rows_max, pages_max);
    };
    set_page_cap(transaction, cap + PRUNE_SLACK_PAGES)?;
    let pruned = prune_and_vacuum(transaction, batch, policy, rows_max, pages_max);
    // SQLite keeps the cap at the pages in use when that is more.
    set_page_cap(transaction, cap)?;
    pruned
}

fn prune_and_vacuum(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    policy: PrunePolicy,
    rows_max: usize,
    pages_max: usize,
) -> Result<Pruned> {
    let mut pruned = prune_rows(transaction, batch, policy, rows_max)?;
    if let Some(connection) = transaction.sqlite_connection() {
        pruned.pages = vacuum(connection, pages_max)?;
    }
    Ok(pruned)
}

fn set_page_cap(transaction: &Sql<'_>, pages: u64) -> Result<()> {
    // A pragma's argument cannot be bound; `pages` is a number.
    let _in_force: i64 = transaction.query_one(
        &format!("PRAGMA max_page_count = {pages}"),
        params![],
        |row| row.get(0),
    )?;
    Ok(())
}

/// Gives at most `pages_max` free pages back to the file system, and
/// answers how many. The file shrinks at the next complete checkpoint
/// (store/checkpoint.rs); until then the pages are the WAL's. Without it
/// pruned pages would only be reused, and a file once grown stays grown.
fn vacuum(transaction: &rusqlite::Connection, pages_max: usize) -> Result<usize> {
    let free = |transaction: &rusqlite::Connection| -> Result<i64> {
        Ok(transaction.query_row("PRAGMA freelist_count", [], |row| row.get(0))?)
    };
    let before = free(transaction)?;
    if before == 0 || pages_max == 0 {
        return Ok(0);
    }
    // A pragma's argument cannot be bound; `pages_max` is a number. Each
    // step gives back one page and answers a row: step to the end.
    let mut statement = transaction.prepare(&format!("PRAGMA incremental_vacuum({pages_max})"))?;
    let mut rows = statement.query([])?;
    while rows.next()?.is_some() {}
    Ok((before - free(transaction)?).max(0) as usize)
}

fn prune_rows(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    policy: PrunePolicy,
    rows_max: usize,
) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    if let Some(before) = policy.keys_before {
        pruned.keys = transaction.execute(
            "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys \
                 WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)",
            params![before, rows_max as i64],
        )?;
    }
    if let Some(before) = policy.deliveries_before {
        let seqs: Vec<i64> = transaction.query_map(
            "SELECT seq FROM webhook_deliveries WHERE state <> 'pending' AND modified_at < ?1 \
                 LIMIT ?2",
            params![before, rows_max as i64],
            |row| row.get(0),
        )?;
        for seq in seqs {
            transaction.execute(
                "DELETE FROM webhook_attempts WHERE delivery_seq = ?1",
                params![seq],
            )?;
            pruned.deliveries += transaction.execute(
                "DELETE FROM webhook_deliveries WHERE seq = ?1",
                params![seq],
            )?;
        }
    }
    let Some(before) = policy.runs_before else {
        return Ok(pruned);
    };
    // `+r.status`: walk the runs in seq order (the oldest first, where the
    // prunable ones are) and stop at the batch's size; by the status
    // index, SQLite read every finished run and sorted them, on each
    // batch. PostgreSQL has no unary plus on text, and plans by cost.
    let status = match transaction.dialect() {
        Dialect::Sqlite => "+r.status",
        Dialect::Postgres => "r.status",
    };
    let runs: Vec<(i64, String, String, Option<i64>)> = transaction.query_map(
        &format!(
            "SELECT r.seq, r.id, r.status, r.group_seq FROM runs r \
             WHERE {status} IN ('completed', 'failed', 'cancelled') AND r.modified_at < ?1 \
             AND (r.group_seq IS NULL OR r.group_seq IN (SELECT seq FROM groups \
                 WHERE (n_queued + n_running + n_cancelling > 0) = FALSE AND modified_at < ?1)) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                 WHERE d.run_seq = r.seq AND d.state = 'pending') \
             ORDER BY r.seq LIMIT ?2"
        ),
        params![before, rows_max as i64],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )?;
    for (seq, id, status, group_seq) in runs {
        pruned.events +=
            transaction.execute("DELETE FROM events WHERE run_seq = ?1", params![seq])?;
        for sql in [
            "DELETE FROM run_webhooks WHERE run_seq = ?1",
            "DELETE FROM webhook_attempts WHERE run_seq = ?1",
            "DELETE FROM webhook_deliveries WHERE run_seq = ?1",
            "DELETE FROM schedule_runs WHERE run_seq = ?1",
            "DELETE FROM runs WHERE seq = ?1",
        ] {
            transaction.execute(sql, params![seq])?;
        }
        transaction.execute(
            "DELETE FROM interaction_turns WHERE run_id = ?1",
            params![&id],
        )?;
        tombstone(transaction, batch, &id, "run")?;
        let status = RunStatus::parse(&status).unwrap_or(RunStatus::Failed);
        let mut gone = Counts {
            num_runs: -1,
            ..Counts::default()
        };
        gone.add(status, -1);
        merge_counts(&mut batch.run_counts, &gone);
        if let Some(group_seq) = group_seq {
            // The group's counts follow its runs out; its modified_at stays,
            // so that its own turn to go is unchanged.
            transaction.execute(
                "UPDATE groups SET num_runs = num_runs - 1, \
                     n_completed = n_completed - CASE WHEN ?2 = 'completed' THEN 1 ELSE 0 END, \
                     n_failed = n_failed - CASE WHEN ?2 = 'failed' THEN 1 ELSE 0 END, \
                     n_cancelled = n_cancelled - CASE WHEN ?2 = 'cancelled' THEN 1 ELSE 0 END \
                     WHERE seq = ?1",
                params![group_seq, status.as_str()],
            )?;
        }
        pruned.runs += 1;
    }
    let groups: Vec<(i64, String)> = transaction.query_map(
        "SELECT seq, id FROM groups WHERE (n_queued + n_running + n_cancelling > 0) = FALSE \
             AND modified_at < ?1 AND NOT EXISTS (SELECT 1 FROM runs WHERE group_seq = groups.seq) \
             ORDER BY seq LIMIT ?2",
        params![before, rows_max as i64],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    for (seq, id) in groups {
        pruned.events += transaction
            // The group's own rows (its status events, stream 1): its runs'
            // rows went with them. The term matches the partial index.
            .execute(
                "DELETE FROM events WHERE group_seq = ?1 AND stream = 1",
                params![seq],
            )?;
        transaction.execute("DELETE FROM groups WHERE seq = ?1", params![seq])?;
        tombstone(transaction, batch, &id, "group")?;
        pruned.groups += 1;
    }
    Ok(pruned)
}

fn tombstone(transaction: &Sql<'_>, batch: &Batch, id: &str, kind: &str) -> Result<()> {
    transaction.execute(
        "INSERT INTO pruned (id, kind, pruned_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, pruned_at = excluded.pruned_at",
        params![id, kind, batch.now],
    )?;
    Ok(())
}
