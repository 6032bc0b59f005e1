//! Moving a run between statuses with its event (a terminal one also in
//! the group stream, as recorded), ending attempts (a late second finish is
//! ignored: DESIGN invariant 5), warnings and progress events.
//!
//! Runs on the writer thread inside the batch's transaction.

use super::*;
use crate::limits::WEBHOOK_DELIVERY_S_MAX;
use crate::store::packed::Packed;

/// The delivery of a run's terminal event to each of its webhooks, one
/// statement per dialect for the id the database makes.
const DELIVERY_INSERT_SQLITE: &str = "INSERT INTO webhook_deliveries (id, run_seq, event_id, \
     url, face, state, next_at, expires_at, created_at, modified_at) \
     SELECT lower(hex(randomblob(16))), run_seq, CAST(?2 AS BIGINT), url, face, 'pending', \
     CAST(?3 AS BIGINT), CAST(?4 AS BIGINT), CAST(?3 AS BIGINT), CAST(?3 AS BIGINT) \
     FROM run_webhooks WHERE run_seq = ?1";
const DELIVERY_INSERT_POSTGRES: &str = "INSERT INTO webhook_deliveries (id, run_seq, event_id, \
     url, face, state, next_at, expires_at, created_at, modified_at) \
     SELECT replace(gen_random_uuid()::text, '-', ''), run_seq, CAST(?2 AS BIGINT), url, face, \
     'pending', CAST(?3 AS BIGINT), CAST(?4 AS BIGINT), CAST(?3 AS BIGINT), CAST(?3 AS BIGINT) \
     FROM run_webhooks WHERE run_seq = ?1";

/// Moves a run to `to`, writing its event; a terminal move also records the
/// run as the group events stream shows it (spec 4.6: "as recorded").
pub(in crate::store) fn transition(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    run: &mut RunRow,
    to: RunStatus,
    error: Option<&RunError>,
    output: Option<Packed<'_>>,
    changes: &mut CountChanges,
) -> Result<()> {
    let from = run.status;
    let error_json = error.map(to_json);
    transaction.execute(
        "UPDATE runs SET status = ?2, modified_at = ?3, error = coalesce(?4, error), \
             output = coalesce(?5, output) WHERE seq = ?1",
        params![run.seq, to.as_str(), batch.now, error_json, output],
    )?;
    run.status = to;
    run.modified_at = batch.now;
    if error_json.is_some() {
        run.error = error_json;
    }
    if to.is_terminal() {
        let stream = if run.group_seq.is_some() {
            Stream::Group
        } else {
            Stream::History
        };
        let event_id = batch.append_run_end(transaction, run, stream)?;
        // The outbox (issue 12): the delivery that tells of this status is
        // written with it, or not at all. Its id is random, and the same on
        // every attempt: 32 hex digits made by the database, so that a
        // run with no webhook costs no id.
        if any_webhooks(transaction, batch)? {
            let insert = match transaction.dialect() {
                Dialect::Sqlite => DELIVERY_INSERT_SQLITE,
                Dialect::Postgres => DELIVERY_INSERT_POSTGRES,
            };
            let added = transaction.execute(
                insert,
                params![
                    run.seq,
                    event_id as i64,
                    batch.now,
                    batch.now + (WEBHOOK_DELIVERY_S_MAX * 1_000_000) as i64
                ],
            )?;
            batch.deliveries |= added > 0;
        }
        // wait_for_result and run streams wait on this key.
        batch.keys.push(StreamKey::Run(run.seq));
    } else {
        batch.append_event(
            transaction,
            EventKind::RunStatus,
            (run.group_seq, Some(run.seq)),
            Stream::History,
            Some(to),
            None,
        )?;
    }
    changes.moved(run.group_seq, from, to);
    Ok(())
}

/// Whether any run has a webhook (see `Batch::webhooks`). A run this batch
/// creates with one sets it (`create::insert_run`); rows another node
/// commits meanwhile cannot matter, since a run of another node that this
/// batch ends was created in a commit before the batch began.
fn any_webhooks(transaction: &Sql<'_>, batch: &mut Batch) -> Result<bool> {
    if let Some(known) = batch.webhooks {
        return Ok(known);
    }
    let rows: i64 = transaction.query_one(
        "SELECT count(*) FROM (SELECT 1 FROM run_webhooks LIMIT 1) AS w",
        params![],
        |row| row.get(0),
    )?;
    batch.webhooks = Some(rows > 0);
    Ok(rows > 0)
}

pub(super) fn finish_run(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    run_seq: i64,
    finish: Finish,
) -> Result<bool> {
    if let Some(node) = &batch.node {
        // PostgreSQL: only the node that holds the run's lease finishes
        // it. One whose lease ran out lost the run to another node, and
        // its finish is ignored as a late second finish is (invariant 5).
        let held = transaction.execute(
            "DELETE FROM run_leases WHERE run_seq = ?1 AND node = ?2",
            params![run_seq, node.as_ref()],
        )?;
        if held == 0 {
            return Ok(false);
        }
    }
    // The run and its enable_events in one lookup: a second query per
    // finish showed in the writer's profile.
    let (mut run, enable_events) = transaction
        .query_row(
            &format!(
                "SELECT {RUN_COLUMNS}, r.enable_events FROM runs r \
             LEFT JOIN groups g ON g.seq = r.group_seq WHERE r.seq = ?1"
            ),
            params![run_seq],
            |row| Ok((RunRow::from_row(row)?, row.get::<bool>(RUN_COLUMNS_COUNT)?)),
        )?
        .ok_or_else(|| Error::NotFound {
            kind: "run",
            id: run_seq.to_string(),
        })?;
    let mut changes = CountChanges::default();
    match (run.status, finish) {
        (RunStatus::Running, Finish::Completed { output }) => {
            if enable_events {
                // Stats at 100 on completion (Parallel's spec 4.3 choice,
                // kept for every face).
                batch.append_event(
                    transaction,
                    EventKind::Stats,
                    (run.group_seq, Some(run.seq)),
                    Stream::Run,
                    None,
                    Some(EventData::Stats {
                        meter: 100.0,
                        counters: Default::default(),
                    }),
                )?;
            }
            let output = Some(output.packed(transaction.dialect()));
            transition(
                transaction,
                batch,
                &mut run,
                RunStatus::Completed,
                None,
                output,
                &mut changes,
            )?;
        }
        (RunStatus::Running, Finish::Failed { error }) => {
            transition(
                transaction,
                batch,
                &mut run,
                RunStatus::Failed,
                Some(&error),
                None,
                &mut changes,
            )?;
        }
        (RunStatus::Running, Finish::Requeue) => {
            transition(
                transaction,
                batch,
                &mut run,
                RunStatus::Queued,
                None,
                None,
                &mut changes,
            )?;
            transaction.execute(
                "UPDATE runs SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
                 WHERE seq = ?1",
                params![run_seq],
            )?;
        }
        (RunStatus::Running, Finish::Cancelled) | (RunStatus::Cancelling, _) => {
            // A finish after a cancel is dropped: the run ends cancelled.
            transition(
                transaction,
                batch,
                &mut run,
                RunStatus::Cancelled,
                None,
                None,
                &mut changes,
            )?;
        }
        // Already terminal (or queued again): a late finish is ignored,
        // never recorded (invariant 5).
        _ => return Ok(false),
    }
    changes.defer(batch);
    Ok(true)
}

pub(super) fn warn(
    transaction: &Sql<'_>,
    _batch: &mut Batch,
    run_seq: i64,
    warning: &Warning,
) -> Result<()> {
    // Appended as text, in both backends alike (SQLite's json_insert has
    // no PostgreSQL twin that keeps the bytes): the stored array is
    // compact JSON that this code wrote.
    // Not once the run has ended (a stale attempt's late word): its
    // terminal event is made from the row as it is (`append_run_end`).
    let stored: Option<Option<String>> = transaction.query_row(
        "SELECT warnings FROM runs WHERE seq = ?1 \
         AND status NOT IN ('completed', 'failed', 'cancelled')",
        params![run_seq],
        |row| row.get(0),
    )?;
    let Some(stored) = stored else {
        return Ok(());
    };
    let warning = to_json(warning);
    let warnings = match stored.as_deref().map(str::trim_end) {
        None | Some("[]") | Some("") => format!("[{warning}]"),
        Some(array) => {
            let head = array.strip_suffix(']').ok_or_else(|| {
                Error::Sqlite(format!("run {run_seq} has warnings that are not an array"))
            })?;
            format!("{head},{warning}]")
        }
    };
    transaction.execute(
        "UPDATE runs SET warnings = ?2 WHERE seq = ?1",
        params![run_seq, warnings],
    )?;
    Ok(())
}

pub(super) fn progress(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    run_seq: i64,
    data: EventData,
) -> Result<()> {
    let run = run_by_seq(transaction, run_seq)?;
    if !run.status.is_active() {
        return Ok(());
    }
    let kind = match data {
        EventData::Stats { .. } => EventKind::Stats,
        _ => EventKind::Progress,
    };
    batch.append_event(
        transaction,
        kind,
        (run.group_seq, Some(run_seq)),
        Stream::Run,
        None,
        Some(data),
    )?;
    Ok(())
}

/// Claims due deliveries: each one answered is held until `hold_until`,
/// in the transaction that read it under its row lock, so another node
/// neither reads it meanwhile nor attempts it until the hold runs out.
pub(super) fn claim_deliveries(
    transaction: &Sql<'_>,
    now: i64,
    limit: usize,
    hold_until: i64,
) -> Result<Vec<super::super::DueDelivery>> {
    let due = super::super::read::due_deliveries(transaction, now, limit)?;
    for delivery in &due {
        transaction.execute(
            "UPDATE webhook_deliveries SET next_at = ?2 WHERE seq = ?1",
            params![delivery.seq, hold_until],
        )?;
    }
    Ok(due)
}

/// Records how one delivery attempt ended. A delivery already delivered or
/// expired stays so (a late outcome of a duplicate attempt is ignored).
pub(super) fn record_delivery(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    seq: i64,
    outcome: &DeliveryOutcome,
) -> Result<()> {
    // The attempts log first, while the row is still pending: a late
    // outcome of a duplicate attempt is logged by neither.
    transaction.execute(
        "INSERT INTO webhook_attempts (delivery_seq, run_seq, owner, url, started_at, \
             duration_us, code, error) \
             SELECT d.seq, d.run_seq, w.owner, d.url, CAST(?2 AS BIGINT), CAST(?3 AS BIGINT), \
             CAST(?4 AS BIGINT), CAST(?5 AS TEXT) FROM webhook_deliveries d \
             LEFT JOIN run_webhooks w ON w.run_seq = d.run_seq \
             WHERE d.seq = ?1 AND d.state = 'pending'",
        params![
            seq,
            outcome.started_at,
            outcome.duration_us,
            outcome.code.map(i64::from),
            outcome.error
        ],
    )?;
    transaction.execute(
        "UPDATE webhook_deliveries SET state = ?2, attempts = attempts + 1, next_at = ?3, \
             last_code = ?4, last_error = ?5, modified_at = ?6 \
             WHERE seq = ?1 AND state = 'pending'",
        params![
            seq,
            outcome.state.as_str(),
            outcome.next_at,
            outcome.code.map(i64::from),
            outcome.error,
            batch.now
        ],
    )?;
    Ok(())
}
