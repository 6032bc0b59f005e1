//! Crash recovery: the one place that repairs what a killed process left.
//!
//! Runs once on open, as the writer's first op (`Op::Recover`), before
//! the scheduler can claim anything. A run that was
//! `running` when the process died goes back to `queued` (its attempt is
//! counted), or to `failed` when it has no attempts left; a `cancelling`
//! run ends `cancelled`, as its cancel asked. Each change writes its event
//! and group counts like any other (invariants 1 and 6).

use super::sql::{params, Sql};
use super::writer::{transition, Batch, CountChanges};
use super::{Result, RunRow, RUN_COLUMNS};
use crate::model::{RunError, RunStatus};

/// What recovery changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    pub requeued: usize,
    pub failed: usize,
    pub cancelled: usize,
}

pub(super) fn recover(transaction: &Sql<'_>, batch: &mut Batch) -> Result<Recovered> {
    let mut runs = transaction.query_map(
        &format!(
            "SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN groups g ON g.seq = r.group_seq \
             WHERE r.status IN ('running', 'cancelling') ORDER BY r.seq"
        ),
        params![],
        RunRow::from_row,
    )?;
    let mut changes = CountChanges::default();
    let mut recovered = Recovered::default();
    for run in &mut runs {
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
