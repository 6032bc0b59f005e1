//! Crash recovery: the one place that repairs what a killed process left.
//!
//! Runs once on open, before the writer thread starts. A run that was
//! `running` when the process died goes back to `queued` (its attempt is
//! counted), or to `failed` when it has no attempts left; a `cancelling`
//! run ends `cancelled`, as its cancel asked. Each change writes its event
//! and group counts like any other (invariants 1 and 6).

use rusqlite::{Connection, TransactionBehavior};

use super::writer::{transition, Batch, CountChanges};
use super::{Result, RunRow, RUN_COLUMNS};
use crate::model::{RunCounts as Counts, RunError, RunStatus, Timestamp};

/// What recovery changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    pub requeued: usize,
    pub failed: usize,
    pub cancelled: usize,
}

pub(super) fn recover(connection: &mut Connection) -> Result<Recovered> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let last_event_id: i64 = transaction.query_row(
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
        [],
        |row| row.get(0),
    )?;
    let mut runs = transaction
        .prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN groups g ON g.seq = r.group_seq \
             WHERE r.status IN ('running', 'cancelling') ORDER BY r.seq"
        ))?
        .query_map([], RunRow::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut batch = Batch {
        next_event_id: last_event_id as u64 + 1,
        keys: Vec::new(),
        events: Vec::new(),
        now: Timestamp::now().micros(),
        pending: CountChanges::default(),
        run_counts: Counts::default(),
        deliveries: false,
        // Recovery never prunes.
        page_cap: None,
    };
    let mut changes = CountChanges::default();
    let mut recovered = Recovered::default();
    for run in &mut runs {
        if run.status == RunStatus::Cancelling {
            transition(
                &transaction,
                &mut batch,
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
                &transaction,
                &mut batch,
                run,
                RunStatus::Failed,
                Some(&error),
                None,
                &mut changes,
            )?;
            recovered.failed += 1;
        } else {
            transition(
                &transaction,
                &mut batch,
                run,
                RunStatus::Queued,
                None,
                None,
                &mut changes,
            )?;
            recovered.requeued += 1;
        }
    }
    changes.apply(&transaction, &mut batch)?;
    batch.write_run_counts(&transaction)?;
    transaction.commit()?;
    Ok(recovered)
}
