//! Counts kept in the same transaction as every run change (DESIGN
//! invariant 6): a group's counts with its status event when it changes
//! state, and the `run_counts` row over all runs.
//!
//! Runs on the writer thread inside the batch's transaction.

use super::*;

/// Adds `delta` to a group's counts. Appends a `task_group_status` event
/// when `always_event`, or when the change made the group inactive
/// (spec 3): the status as recorded travels in the event.
pub(super) fn apply_counts(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    group_seq: i64,
    delta: &Counts,
    always_event: bool,
) -> Result<GroupRow> {
    let group = transaction.query_one(
        &format!(
            "UPDATE groups SET num_runs = num_runs + ?2, n_queued = n_queued + ?3, \
             n_running = n_running + ?4, n_cancelling = n_cancelling + ?5, \
             n_completed = n_completed + ?6, n_failed = n_failed + ?7, \
             n_cancelled = n_cancelled + ?8, modified_at = ?9 WHERE seq = ?1 \
             RETURNING {GROUP_COLUMNS}"
        ),
        params![
            group_seq,
            delta.num_runs,
            delta.queued,
            delta.running,
            delta.cancelling,
            delta.completed,
            delta.failed,
            delta.cancelled,
            batch.now
        ],
        GroupRow::from_row,
    )?;
    let before_active = (group.counts.queued - delta.queued)
        + (group.counts.running - delta.running)
        + (group.counts.cancelling - delta.cancelling)
        > 0;
    if always_event || (before_active && !group.counts.is_active()) {
        let status = group.status();
        batch.append_event(
            transaction,
            EventKind::GroupStatus,
            (Some(group_seq), None),
            Stream::Group,
            None,
            Some(EventData::GroupStatus { status }),
        )?;
    }
    Ok(group)
}

/// Count changes gathered over one op: per group, applied once per group,
/// and over every run, grouped or not, for the `run_counts` row.
#[derive(Default)]
pub(in crate::store) struct CountChanges {
    groups: HashMap<i64, Counts>,
    runs: Counts,
}

impl CountChanges {
    pub(super) fn moved(&mut self, group_seq: Option<i64>, from: RunStatus, to: RunStatus) {
        self.runs.add(from, -1);
        self.runs.add(to, 1);
        if let Some(group_seq) = group_seq {
            let counts = self.groups.entry(group_seq).or_default();
            counts.add(from, -1);
            counts.add(to, 1);
        }
    }

    /// Hands the changes of an op that succeeded to the batch, which
    /// applies them with the others (see `Batch::pending`).
    pub(super) fn defer(self, batch: &mut Batch) {
        for (group_seq, delta) in self.groups {
            merge_counts(batch.pending.groups.entry(group_seq).or_default(), &delta);
        }
        merge_counts(&mut batch.pending.runs, &self.runs);
    }

    pub(in crate::store) fn apply(self, transaction: &Sql<'_>, batch: &mut Batch) -> Result<()> {
        let mut groups: Vec<_> = self.groups.into_iter().collect();
        groups.sort_unstable_by_key(|(seq, _)| *seq);
        for (group_seq, delta) in groups {
            apply_counts(transaction, batch, group_seq, &delta, false)?;
        }
        merge_counts(&mut batch.run_counts, &self.runs);
        Ok(())
    }
}

/// Adds `delta` to `counts`, field by field.
pub(super) fn merge_counts(counts: &mut Counts, delta: &Counts) {
    counts.num_runs += delta.num_runs;
    counts.queued += delta.queued;
    counts.running += delta.running;
    counts.cancelling += delta.cancelling;
    counts.completed += delta.completed;
    counts.failed += delta.failed;
    counts.cancelled += delta.cancelled;
}
