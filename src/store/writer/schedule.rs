//! Schedules: making one, pausing, resuming and cancelling it, and firing
//! the due ones, each fire inserting its run in the transaction that moves
//! the schedule's next fire time on (so a fire happens exactly once).
//!
//! Runs on the writer thread inside the batch's transaction. When a
//! schedule fires next is the engine's to compute (it knows cron); here
//! the move is a compare-and-set on the old time.

use super::*;

/// A schedule to insert.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub id: String,
    /// The model's `When`, as JSON.
    pub spec: String,
    /// The run every fire inserts, less its id.
    pub template: NewRun,
    pub next_at: i64,
    /// By the engine's clock: intervals count from it.
    pub created_at: i64,
    /// A face's index record written with the schedule: the key's id
    /// followed by the schedule's id, an empty body.
    pub index: Option<RecordKey>,
}

/// One due schedule to fire: its next time moves from `expected` to
/// `next_at` (`None`: a one-time schedule, now done).
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    pub seq: i64,
    pub expected: i64,
    pub next_at: Option<i64>,
}

/// What a state change asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleChange {
    /// Active to paused.
    Pause,
    /// Paused to active, next firing at this time.
    Resume { next_at: Option<i64> },
    /// Active or paused to cancelled.
    Cancel,
}

pub(super) fn create_schedule(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    schedule: NewSchedule,
) -> Result<ScheduleRow> {
    let template = serde_json::to_string(&schedule.template)?;
    transaction.execute(
        "INSERT INTO schedules (id, spec, template, processor, state, next_at, created_at, \
             modified_at) VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7)",
        params![
            schedule.id,
            schedule.spec,
            template,
            schedule.template.processor,
            schedule.next_at,
            schedule.created_at,
            batch.now
        ],
    )?;
    if let Some(index) = &schedule.index {
        super::record::insert_index(transaction, batch, index, &schedule.id)?;
    }
    schedule_by_id(transaction, &schedule.id)
}

pub(super) fn change_schedule(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    id: &str,
    change: ScheduleChange,
) -> Result<ScheduleRow> {
    let (sql, next_at) = match change {
        ScheduleChange::Pause => (
            "UPDATE schedules SET state = 'paused', modified_at = ?2 \
             WHERE id = ?1 AND state = 'active'",
            None,
        ),
        ScheduleChange::Resume { next_at } => (
            "UPDATE schedules SET state = CASE WHEN CAST(?3 AS BIGINT) IS NULL THEN 'done' ELSE 'active' END, \
             next_at = ?3, modified_at = ?2 WHERE id = ?1 AND state = 'paused'",
            next_at,
        ),
        ScheduleChange::Cancel => (
            "UPDATE schedules SET state = 'cancelled', modified_at = ?2 \
             WHERE id = ?1 AND state IN ('active', 'paused')",
            None,
        ),
    };
    if sql.contains("?3") {
        transaction.execute(sql, params![id, batch.now, next_at])?;
    } else {
        transaction.execute(sql, params![id, batch.now])?;
    }
    schedule_by_id(transaction, id)
}

/// Fires each schedule whose next time is still the one the timer read:
/// inserts its run and moves the time on, or does nothing (another fire or
/// a change came first). Answers the seqs of the runs made.
pub(super) fn fire_schedules(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    fires: Vec<Fire>,
) -> Result<Vec<i64>> {
    let mut made = Vec::new();
    for fire in fires {
        let moved = transaction.query_row(
            "UPDATE schedules SET next_at = ?3, fires = fires + 1, modified_at = ?4, \
                 state = CASE WHEN CAST(?3 AS BIGINT) IS NULL THEN 'done' ELSE state END \
                 WHERE seq = ?1 AND state = 'active' AND next_at = ?2 RETURNING template",
            params![fire.seq, fire.expected, fire.next_at, batch.now],
            |row| row.get::<String>(0),
        )?;
        let Some(template) = moved else {
            continue;
        };
        let mut run: NewRun = serde_json::from_str(&template)?;
        run.id = crate::model::new_id();
        if let Some(prefix) = run.interaction.take() {
            // A template's interaction is a prefix: each fire starts an
            // interaction of its own, keyed by the prefix and its run's id
            // (a Handinger schedule makes a new task per fire).
            let interaction = format!("{prefix}{}", run.id);
            transaction.execute(
                "INSERT INTO interaction_turns (interaction, turn, run_id) VALUES (?1, 1, ?2)",
                params![interaction, run.id],
            )?;
            run.interaction = Some(interaction);
        }
        let overlapping = run.skip_while_active
            && transaction
                .query_row(
                    "SELECT 1 FROM schedule_runs s JOIN runs r ON r.seq = s.run_seq \
                     WHERE s.schedule_seq = ?1 AND r.status IN ('queued', 'running', 'cancelling') \
                     LIMIT 1",
                    params![fire.seq],
                    |_| Ok(()),
                )?
                .is_some();
        let (run_seq, _) = insert_run(transaction, batch, &run, None)?;
        transaction.execute(
            "INSERT INTO schedule_runs (schedule_seq, run_seq) VALUES (?1, ?2)",
            params![fire.seq, run_seq],
        )?;
        batch.run_counts.num_runs += 1;
        batch.run_counts.add(RunStatus::Queued, 1);
        if overlapping {
            // Recorded, not run: the fire shows, the runs do not overlap.
            let mut row = run_by_id(transaction, &run.id)?;
            let error = crate::model::RunError::new(
                "skipped: the schedule's previous run is still active",
                Some(serde_json::json!({ crate::model::SKIPPED_DETAIL: true })),
            );
            let mut changes = CountChanges::default();
            super::finish::transition(
                transaction,
                batch,
                &mut row,
                RunStatus::Cancelled,
                Some(&error),
                None,
                &mut changes,
            )?;
            changes.apply(transaction, batch)?;
        }
        made.push(run_seq);
    }
    Ok(made)
}

fn schedule_by_id(transaction: &Sql<'_>, id: &str) -> Result<ScheduleRow> {
    transaction
        .query_row(
            &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1"),
            params![id],
            ScheduleRow::from_row,
        )?
        .ok_or_else(|| Error::NotFound {
            kind: "schedule",
            id: id.to_string(),
        })
}
