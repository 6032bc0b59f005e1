//! Crash recovery: the one place that repairs what a killed process left.
//!
//! Runs once on open, as the writer's first op (`Op::Recover`), before
//! the scheduler can claim anything. A run that was
//! `running` when the process died goes back to `queued` (its attempt is
//! counted), or to `failed` when it has no attempts left; a `cancelling`
//! run ends `cancelled`, as its cancel asked. Each change writes its event
//! and group counts like any other (invariants 1 and 6).

use super::sql::{params, Dialect, Sql};
use super::writer::{transition, Batch, CountChanges};
use super::{Result, RunRow, RUN_COLUMNS};
use crate::limits::LEASE_MS;
use crate::model::{RunError, RunStatus};

/// What recovery changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    pub requeued: usize,
    pub failed: usize,
    pub cancelled: usize,
}

/// On open. SQLite: every run left `running` or `cancelling` was this
/// file's one process's. PostgreSQL: other nodes may be running theirs, so
/// only runs whose lease ran out are taken back (a restarted node's own
/// runs follow once their lease expires, within `LEASE_MS`).
pub(super) fn recover(transaction: &Sql<'_>, batch: &mut Batch) -> Result<Recovered> {
    if transaction.dialect() == Dialect::Postgres {
        return reclaim_expired(transaction, batch);
    }
    let mut runs = transaction.query_map(
        &format!(
            "SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN groups g ON g.seq = r.group_seq \
             WHERE r.status IN ('running', 'cancelling') ORDER BY r.seq"
        ),
        params![],
        RunRow::from_row,
    )?;
    interrupted(transaction, batch, &mut runs)
}

/// PostgreSQL: pushes this node's leases on by `LEASE_MS`.
pub(super) fn renew_leases(transaction: &Sql<'_>, batch: &Batch) -> Result<()> {
    if let Some(node) = &batch.node {
        transaction.execute(
            "UPDATE run_leases SET expires_at = ?2 WHERE node = ?1",
            params![node.as_ref(), batch.now + (LEASE_MS * 1_000) as i64],
        )?;
    }
    Ok(())
}

/// PostgreSQL: takes back the runs whose lease ran out (their node stopped
/// or was cut off), each as an interrupted attempt, exactly as recovery on
/// open does for SQLite. Rows another node is taking back at the same
/// moment are skipped, not waited for.
pub(super) fn reclaim_expired(transaction: &Sql<'_>, batch: &mut Batch) -> Result<Recovered> {
    let mut expired: Vec<i64> = transaction.query_map(
        "SELECT run_seq FROM run_leases WHERE expires_at < ?1 ORDER BY run_seq \
         FOR UPDATE SKIP LOCKED",
        params![batch.now],
        |row| row.get(0),
    )?;
    // Active runs with no lease at all were never claimed by a node
    // (written by hand, or by a taskyard before leases): nobody runs them.
    expired.extend(transaction.query_map::<i64>(
        "SELECT r.seq FROM runs r WHERE r.status IN ('running', 'cancelling') \
         AND NOT EXISTS (SELECT 1 FROM run_leases l WHERE l.run_seq = r.seq) \
         ORDER BY r.seq FOR UPDATE SKIP LOCKED",
        params![],
        |row| row.get(0),
    )?);
    if expired.is_empty() {
        return Ok(Recovered::default());
    }
    let mut runs = Vec::with_capacity(expired.len());
    for seq in expired {
        transaction.execute("DELETE FROM run_leases WHERE run_seq = ?1", params![seq])?;
        let run = transaction.query_row(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN groups g ON g.seq = r.group_seq \
                 WHERE r.seq = ?1 AND r.status IN ('running', 'cancelling')"
            ),
            params![seq],
            RunRow::from_row,
        )?;
        runs.extend(run);
    }
    let recovered = interrupted(transaction, batch, &mut runs)?;
    batch.runs_queued |= recovered.requeued > 0;
    Ok(recovered)
}

/// Ends the attempts a stopped process left: requeued, failed when no
/// attempts are left, or cancelled when a cancel was asked.
fn interrupted(transaction: &Sql<'_>, batch: &mut Batch, runs: &mut [RunRow]) -> Result<Recovered> {
    let mut changes = CountChanges::default();
    let mut recovered = Recovered::default();
    for run in runs.iter_mut() {
        if run.status == RunStatus::Cancelling {
            transition(
                transaction,
                batch,
                run,
                RunStatus::Cancelled,
                None,
                None,
                &mut changes,
            )?;
            recovered.cancelled += 1;
        } else if run.attempts >= run.max_attempts {
            let error = RunError::new(
                format!(
                    "the process stopped during attempt {} of {} and no attempts are left",
                    run.attempts, run.max_attempts
                ),
                Some(serde_json::json!({"attempts": run.attempts, "transient": true})),
            );
            transition(
                transaction,
                batch,
                run,
                RunStatus::Failed,
                Some(&error),
                None,
                &mut changes,
            )?;
            recovered.failed += 1;
        } else {
            transition(
                transaction,
                batch,
                run,
                RunStatus::Queued,
                None,
                None,
                &mut changes,
            )?;
            recovered.requeued += 1;
        }
    }
    changes.apply(transaction, batch)?;
    Ok(recovered)
}
