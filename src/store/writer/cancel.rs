//! Cancelling a run or every active run of a group: queued runs end at
//! once, running ones go to `cancelling` for the scheduler to stop.
//!
//! Runs on the writer thread inside the batch's transaction.

use super::*;

pub(super) fn cancel_one(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    run: &mut RunRow,
    changes: &mut CountChanges,
) -> Result<()> {
    match run.status {
        RunStatus::Queued => transition(
            transaction,
            batch,
            run,
            RunStatus::Cancelled,
            None,
            None,
            changes,
        ),
        RunStatus::Running => transition(
            transaction,
            batch,
            run,
            RunStatus::Cancelling,
            None,
            None,
            changes,
        ),
        _ => Ok(()),
    }
}

pub(super) fn cancel_run(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    run_id: &str,
) -> Result<RunCancel> {
    let mut run = run_by_id(transaction, run_id)?;
    let before = run.status;
    let mut changes = CountChanges::default();
    cancel_one(transaction, batch, &mut run, &mut changes)?;
    changes.apply(transaction, batch)?;
    Ok(RunCancel { before, run })
}

pub(super) fn cancel_group(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    group_id: &str,
) -> Result<(GroupRow, Vec<i64>)> {
    let group = group_by_id(transaction, group_id)?;
    let mut runs = transaction.query_map(
        &format!(
            "SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN groups g ON g.seq = r.group_seq \
             WHERE r.group_seq = ?1 AND r.status IN ('queued', 'running') ORDER BY r.seq"
        ),
        params![group.seq],
        RunRow::from_row,
    )?;
    let mut changes = CountChanges::default();
    let mut cancelling = Vec::new();
    for run in &mut runs {
        cancel_one(transaction, batch, run, &mut changes)?;
        if run.status == RunStatus::Cancelling {
            cancelling.push(run.seq);
        }
    }
    changes.apply(transaction, batch)?;
    let group = group_by_id(transaction, group_id)?;
    Ok((group, cancelling))
}
