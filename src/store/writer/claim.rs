//! Claiming queued runs for the scheduler, within each processor's
//! budget, and starting a retried run's next attempt; each attempt start
//! writes its exec_status progress event when the run has events on.
//!
//! Runs on the writer thread inside the batch's transaction.

use super::*;
use crate::limits::LEASE_MS;

pub(super) fn claim(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    max: usize,
    mut budgets: HashMap<String, usize>,
    limits: &HashMap<String, usize>,
) -> Result<Vec<ClaimedRun>> {
    if transaction.dialect() == Dialect::Postgres {
        // Runs of a node that stopped come back to the queue first, to be
        // claimed with the rest below.
        super::super::recovery::reclaim_expired(transaction, batch)?;
        // Limits are global: what every node runs of a processor counts.
        // No other node claims meanwhile (each batch holds `event_ids`).
        let active: Vec<(String, i64)> = transaction.query_map(
            "SELECT processor, count(*) FROM runs \
             WHERE status IN ('running', 'cancelling') GROUP BY processor",
            params![],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        for (processor, running) in active {
            if let Some(limit) = limits.get(&processor) {
                let headroom = limit.saturating_sub(running.max(0) as usize);
                let budget = budgets.entry(processor).or_insert(headroom);
                *budget = (*budget).min(headroom);
            }
        }
    }
    // Processors with no headroom are left out in SQL; the others are
    // counted down below, so one batch never exceeds a limit.
    let exclude: Vec<&String> = budgets
        .iter()
        .filter(|(_, budget)| **budget == 0)
        .map(|(name, _)| name)
        .collect();
    // INDEXED BY: with `runs_by_status_id` beside it, SQLite would rather
    // search that by status and sort every queued run by seq, on each
    // claim; the partial index is in seq order already.
    // A follow-up waits, queued, until the run it follows has ended, so
    // that its processor sees that turn's output and the turns of one
    // interaction run one at a time, in order.
    // PostgreSQL has no INDEXED BY; its planner takes the partial index
    // for the repeated `status = 'queued'` term.
    let indexed = match transaction.dialect() {
        Dialect::Sqlite => "INDEXED BY runs_queued",
        Dialect::Postgres => "",
    };
    let mut sql = format!(
        "SELECT seq, id, processor, input, task_spec, metadata, attempts, max_attempts, \
         enable_events, group_seq, previous_id FROM runs {indexed} \
         WHERE status = 'queued' AND (previous_id IS NULL OR NOT EXISTS (SELECT 1 FROM runs p \
         WHERE p.id = runs.previous_id AND p.status IN ('queued', 'running', 'cancelling')))"
    );
    if !exclude.is_empty() {
        sql.push_str(" AND processor NOT IN (");
        sql.push_str(&vec!["?"; exclude.len()].join(", "));
        sql.push(')');
    }
    // Rows for a processor out of budget are skipped below, so read past
    // them; with no budget that can run out, `max` rows are all it takes
    // (twice as many read showed as a tenth of the claim's time).
    let limit = if budgets.values().any(|budget| *budget > 0) {
        max * 2
    } else {
        max
    };
    sql.push_str(&format!(" ORDER BY seq LIMIT {limit}"));
    if transaction.dialect() == Dialect::Postgres {
        // Another node's claim holds its rows to its commit; skip them
        // rather than wait and then find them running.
        sql.push_str(" FOR UPDATE SKIP LOCKED");
    }
    let exclude: Vec<&dyn Param> = exclude.iter().map(|name| *name as &dyn Param).collect();
    let rows = transaction.query_map(&sql, &exclude, |row| {
        Ok((
            ClaimedRun {
                seq: row.get(0)?,
                id: row.get(1)?,
                processor: row.get(2)?,
                input: row.get(3)?,
                task_spec: row.get(4)?,
                metadata: row.get(5)?,
                attempt: row.get::<u32>(6)? + 1,
                max_attempts: row.get(7)?,
                enable_events: row.get(8)?,
                previous_id: row.get(10)?,
            },
            row.get::<Option<i64>>(9)?,
        ))
    })?;
    let mut changes = CountChanges::default();
    let mut claimed = Vec::with_capacity(max);
    for (run, group_seq) in rows {
        if claimed.len() == max {
            break;
        }
        if let Some(budget) = budgets.get_mut(&run.processor) {
            if *budget == 0 {
                continue;
            }
            *budget -= 1;
        }
        transaction.execute(
            "UPDATE runs SET status = 'running', attempts = ?2, modified_at = ?3 WHERE seq = ?1",
            params![run.seq, i64::from(run.attempt), batch.now],
        )?;
        if let Some(node) = &batch.node {
            batch.claimed.push(run.seq);
            transaction.execute(
                "INSERT INTO run_leases (run_seq, node, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (run_seq) DO UPDATE SET node = excluded.node, \
                 expires_at = excluded.expires_at",
                params![
                    run.seq,
                    node.as_ref(),
                    batch.now + (LEASE_MS * 1_000) as i64
                ],
            )?;
        }
        batch.append_event(
            transaction,
            EventKind::RunStatus,
            (group_seq, Some(run.seq)),
            Stream::History,
            Some(RunStatus::Running),
            None,
        )?;
        if run.enable_events {
            attempt_started(
                transaction,
                batch,
                (group_seq, run.seq),
                run.attempt,
                run.max_attempts,
            )?;
        }
        changes.moved(group_seq, RunStatus::Queued, RunStatus::Running);
        claimed.push(run);
    }
    changes.defer(batch);
    Ok(claimed)
}

/// An exec_status message when an attempt starts, so that a follower of
/// the run sees retries (Parallel's spec 4.3 choice, kept for every face).
pub(super) fn attempt_started(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    (group_seq, run_seq): (Option<i64>, i64),
    attempt: u32,
    max_attempts: u32,
) -> Result<u64> {
    let data = EventData::Progress {
        progress: ProgressKind::ExecStatus,
        message: format!("attempt {attempt} of {max_attempts} started"),
        at: Timestamp(batch.now),
    };
    batch.append_event(
        transaction,
        EventKind::Progress,
        (group_seq, Some(run_seq)),
        Stream::Run,
        None,
        Some(data),
    )
}

pub(super) fn start_attempt(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    run_seq: i64,
    attempt: u32,
) -> Result<RunStatus> {
    let (status, enable_events, max_attempts, group_seq): (String, bool, u32, Option<i64>) =
        transaction.query_one(
            "SELECT status, enable_events, max_attempts, group_seq FROM runs WHERE seq = ?1",
            params![run_seq],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )?;
    let status = RunStatus::parse(&status)
        .ok_or_else(|| Error::unknown_run_status(run_seq, None, &status))?;
    if status != RunStatus::Running {
        return Ok(status);
    }
    transaction.execute(
        "UPDATE runs SET attempts = ?2 WHERE seq = ?1",
        params![run_seq, i64::from(attempt)],
    )?;
    if enable_events {
        attempt_started(
            transaction,
            batch,
            (group_seq, run_seq),
            attempt,
            max_attempts,
        )?;
    }
    Ok(status)
}
