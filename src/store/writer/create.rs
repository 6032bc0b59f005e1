//! Creating groups and runs, each at most once per idempotency key: the
//! run rows with their creation events, and the group counts and status
//! event of an add.
//!
//! Runs on the writer thread inside the batch's transaction; owns no
//! connection and answers no caller (the batch does).

use super::*;

/// Runs a create at most once per idempotency key: a key seen with the
/// same fingerprint replays the stored answer, with another fingerprint it
/// is a conflict; a new key is stored with the face's answer in this
/// transaction.
pub(super) fn keyed<T>(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    once: Option<Keyed<T>>,
    work: impl FnOnce(&Sql<'_>, &mut Batch) -> Result<T>,
) -> Result<Once<T>> {
    let Some(Keyed { record, answer }) = once else {
        return Ok(Once::Fresh {
            value: work(transaction, batch)?,
            body: None,
        });
    };
    let seen: Option<(String, String)> = transaction.query_row(
        "SELECT fingerprint, body FROM idempotency_keys WHERE key = ?1",
        params![&record.key],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    if let Some((fingerprint, body)) = seen {
        if fingerprint != record.fingerprint {
            return Err(Error::IdempotencyConflict);
        }
        return Ok(Once::Replay { body });
    }
    let value = work(transaction, batch)?;
    let body = answer(&value);
    transaction.execute(
        "INSERT INTO idempotency_keys (key, fingerprint, body, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
        params![record.key, record.fingerprint, body, batch.now],
    )?;
    Ok(Once::Fresh {
        value,
        body: Some(body),
    })
}

pub(super) fn create_group(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    group: NewGroup,
) -> Result<GroupRow> {
    let seq = transaction.insert_seq(
        "INSERT INTO groups (id, metadata, created_at, modified_at) VALUES (?1, ?2, ?3, ?3)",
        params![group.id, group.metadata, batch.now],
    )?;
    Ok(GroupRow {
        seq,
        id: group.id,
        metadata: group.metadata,
        created_at: batch.now,
        modified_at: batch.now,
        counts: Counts::default(),
    })
}

/// Inserts one run and its creation event; returns the run's seq.
pub(super) fn insert_run(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    run: &NewRun,
    group_seq: Option<i64>,
) -> Result<(i64, i64)> {
    let cursor = batch.next_event_id as i64;
    let run_seq: i64 = transaction.insert_seq(
        "INSERT INTO runs (id, group_seq, cursor, status, processor, input, document, \
             task_spec, default_spec, metadata, enable_events, max_attempts, warnings, \
             created_at, modified_at, previous_id) \
             VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14)",
        params![
            run.id,
            group_seq,
            cursor,
            run.processor,
            run.input,
            run.document,
            run.task_spec,
            run.default_spec,
            run.metadata,
            run.enable_events,
            i64::from(run.max_attempts),
            run.warnings,
            batch.now,
            run.previous_id
        ],
    )?;
    if let Some(webhook) = &run.webhook {
        transaction.execute(
            "INSERT INTO run_webhooks (run_seq, url, face, owner) VALUES (?1, ?2, ?3, ?4)",
            params![run_seq, webhook.url, webhook.face, webhook.owner],
        )?;
        batch.webhooks = Some(true);
    }
    let id = batch.append_event(
        transaction,
        EventKind::RunStatus,
        (group_seq, Some(run_seq)),
        Stream::History,
        Some(RunStatus::Queued),
        None,
    )?;
    debug_assert_eq!(id as i64, cursor);
    Ok((run_seq, cursor))
}

pub(super) fn add_runs(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    group_id: &str,
    runs: Vec<NewRun>,
) -> Result<AddedRuns> {
    let group = group_by_id(transaction, group_id)?;
    let cursor = (group.counts.num_runs > 0).then(|| batch.next_event_id - 1);
    let mut run_ids = Vec::with_capacity(runs.len());
    for run in &runs {
        insert_run(transaction, batch, run, Some(group.seq))?;
        run_ids.push(run.id.clone());
    }
    let mut delta = Counts {
        num_runs: runs.len() as i64,
        ..Counts::default()
    };
    delta.add(RunStatus::Queued, runs.len() as i64);
    let group = apply_counts(transaction, batch, group.seq, &delta, true)?;
    merge_counts(&mut batch.run_counts, &delta);
    Ok(AddedRuns {
        run_ids,
        cursor,
        group,
    })
}

pub(super) fn create_run(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    mut run: NewRun,
) -> Result<RunRow> {
    if let Some(interaction) = &run.interaction {
        // The next turn follows the latest, read and written in this
        // transaction: two turns sent at once still make one chain.
        let latest: Option<(i64, String)> = transaction.query_row(
            "SELECT turn, run_id FROM interaction_turns WHERE interaction = ?1 \
                 ORDER BY turn DESC LIMIT 1",
            params![interaction],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let turn = latest.as_ref().map_or(1, |(turn, _)| turn + 1);
        run.previous_id = latest.map(|(_, run_id)| run_id);
        transaction.execute(
            "INSERT INTO interaction_turns (interaction, turn, run_id) VALUES (?1, ?2, ?3)",
            params![interaction, turn, run.id],
        )?;
    }
    let (seq, cursor) = insert_run(transaction, batch, &run, None)?;
    if let Some(index) = &run.index {
        super::record::insert_index(transaction, batch, index, &run.id)?;
    }
    // A run without a group has no group counts, but is counted with all.
    batch.run_counts.num_runs += 1;
    batch.run_counts.add(RunStatus::Queued, 1);
    Ok(RunRow {
        seq,
        id: run.id,
        group_id: None,
        group_seq: None,
        cursor,
        status: RunStatus::Queued,
        processor: run.processor,
        metadata: run.metadata,
        error: None,
        warnings: run.warnings,
        attempts: 0,
        max_attempts: run.max_attempts,
        created_at: batch.now,
        modified_at: batch.now,
    })
}

pub(super) fn group_by_id(transaction: &Sql<'_>, group_id: &str) -> Result<GroupRow> {
    transaction
        .query_row(
            &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE id = ?1"),
            params![group_id],
            GroupRow::from_row,
        )?
        .ok_or_else(|| Error::NotFound {
            kind: "group",
            id: group_id.to_string(),
        })
}
