//! The PostgreSQL writer's commit path (issue 17): event ids numbered
//! under the `event_ids` row lock, this node's leases renewed and expired
//! ones taken back, claims left in doubt by a failed commit ended, and the
//! commit's notification. Runs on the writer thread; the ops themselves
//! are the shared ones of this module's parent.

use super::*;

/// A PostgreSQL writer's leases: its node's name and when it last renewed
/// them.
pub(super) struct Lease {
    pub(super) node: Arc<str>,
    pub(super) renewed_at: Instant,
}

/// How often leases are renewed (and expired ones taken back): a third
/// of a lease, so two renewals can be missed before it runs out.
pub(super) const LEASE_RENEW_EVERY: Duration = Duration::from_millis(LEASE_MS / 3);

/// One batch on PostgreSQL. Event ids are assigned under the `event_ids`
/// row lock, taken first and held to the commit, so that ids become
/// visible in id order across every node (schema.postgres.sql's header).
#[allow(clippy::too_many_arguments)]
pub(super) fn commit_postgres(
    connection: &mut crate::store::postgres::Connection,
    event_ids: EventIds,
    lease: Option<&mut Lease>,
    in_doubt: &[i64],
    batch: &mut Batch,
    ops: Vec<Op>,
    noticed: &dyn Fn(&Error),
) -> Option<Vec<Completion>> {
    let begun = connection.begin().and_then(|sql| {
        let last_id: i64 = match event_ids {
            EventIds::Serialised => sql.query_one(
                "SELECT last_id FROM event_ids WHERE id = 1 FOR UPDATE",
                params![],
                |row| row.get(0),
            )?,
            // A block of ids per batch, numbered outside any lock: what a
            // `BIGSERIAL` does, shown wrong by `tests/pg_nodes.rs`.
            EventIds::PlainSequence => {
                let block: i64 = sql.query_one(
                    &format!(
                        "SELECT nextval('{}')",
                        crate::store::postgres::PLAIN_SEQUENCE
                    ),
                    params![],
                    |row| row.get(0),
                )?;
                block * PLAIN_SEQUENCE_BLOCK
            }
        };
        Ok((sql, last_id as u64))
    });
    let (sql, last_id) = match begun {
        Ok(begun) => begun,
        Err(error) => {
            noticed(&error);
            for op in ops {
                fail_op(op, error.clone());
            }
            return None;
        }
    };
    // Ids this writer did not assign came between its last batch and
    // this one: other nodes' events, which the hub's windows lack.
    if last_id + 1 != batch.next_event_id {
        batch.others_upto = Some(last_id);
    }
    batch.next_event_id = last_id + 1;
    if let Some(lease) = lease.filter(|lease| lease.renewed_at.elapsed() >= LEASE_RENEW_EVERY) {
        // Renewed first, so this node's own leases never look expired to
        // the take-back after.
        let renewed = crate::store::recovery::renew_leases(&sql, batch)
            .and_then(|()| crate::store::recovery::reclaim_expired(&sql, batch).map(|_| ()));
        if let Err(error) = renewed {
            noticed(&error);
            for op in ops {
                fail_op(op, error.clone());
            }
            return None;
        }
        lease.renewed_at = Instant::now();
    }
    if !in_doubt.is_empty() {
        let ended = end_leases_in_doubt(&sql, batch, in_doubt);
        if let Err(error) = ended {
            noticed(&error);
            for op in ops {
                fail_op(op, error.clone());
            }
            return None;
        }
    }
    let completions = apply_batch(&sql, batch, ops, noticed)?;
    let last_event_id = batch.next_event_id - 1;
    let written = if last_event_id > last_id {
        sql.execute(
            // GREATEST only matters to `PlainSequence`, whose blocks
            // commit out of order.
            "UPDATE event_ids SET last_id = GREATEST(last_id, ?1) WHERE id = 1",
            params![last_event_id as i64],
        )
        .and_then(|_| {
            // Delivered to every node's listener only if this commits.
            // A statement with a bound payload: NOTIFY takes only a
            // literal, which would prepare a new statement per commit.
            sql.execute(
                "SELECT pg_notify(?1, ?2)",
                params![EVENTS_CHANNEL, last_event_id.to_string()],
            )
        })
        .map(|_| ())
    } else {
        Ok(())
    };
    finish_commit(written.and_then(|()| sql.commit()), completions, noticed)
}

/// Ends this node's leases of `runs` and takes them back (see
/// `WriterThread::in_doubt`).
fn end_leases_in_doubt(sql: &Sql<'_>, batch: &mut Batch, runs: &[i64]) -> Result<()> {
    if let Some(node) = batch.node.clone() {
        for seq in runs {
            sql.execute(
                "UPDATE run_leases SET expires_at = 0 WHERE run_seq = ?1 AND node = ?2",
                params![*seq, node.as_ref()],
            )?;
        }
        crate::store::recovery::reclaim_expired(sql, batch)?;
    }
    Ok(())
}

/// Ids in one block of [`EventIds::PlainSequence`]: more than any batch
/// writes.
const PLAIN_SEQUENCE_BLOCK: i64 = 1 << 24;

/// The PostgreSQL channel each commit that wrote events notifies, with
/// its last event id as the payload.
pub(in crate::store) const EVENTS_CHANNEL: &str = "taskyard_events";
