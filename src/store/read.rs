//! Read queries, run on the pool's read-only connections.
//!
//! Each method is one consistent snapshot (one read transaction), so what
//! it answers was committed together (invariant 4). Event rows come back as
//! the model's [`EventData`].

use super::sql::{params, Dialect, Param, Sql, Value};

use super::{
    Error, GroupRow, RecordKey, RecordRow, Result, RunRow, ScheduleRow, Store, GROUP_COLUMNS,
    RUN_COLUMNS, RUN_COLUMNS_COUNT, SCHEDULE_COLUMNS,
};
use crate::model::{
    Delivery, DeliveryAttempt, DeliveryState, EventData, RunCounts as Counts, RunStatus,
    StoredRequest, TaskSpec, Timestamp, Turn,
};

/// The largest event id ever assigned (never lowered when retention
/// deletes the newest events: invariant 2): SQLite's AUTOINCREMENT row,
/// PostgreSQL's `event_ids` row (schema.postgres.sql says why).
pub(crate) fn last_event_id(connection: &Sql<'_>) -> Result<u64> {
    let sql = match connection.dialect() {
        Dialect::Sqlite => {
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
        }
        Dialect::Postgres => "SELECT last_id FROM event_ids WHERE id = 1",
    };
    let id: i64 = connection.query_one(sql, params![], |row| row.get(0))?;
    Ok(id as u64)
}

/// An event row: its id and what it says.
pub type EventRow = (u64, EventData);

/// One run of the group runs stream, with what the query asked to include.
#[derive(Debug, Clone)]
pub struct GroupRunRow {
    pub run: RunRow,
    /// The face's document, when requests were asked for.
    pub document: Option<String>,
    /// The input, when requests were asked for and there is no document.
    pub input: Option<String>,
    /// The effective task spec, when inputs were asked for and the run had
    /// none of its own (spec 2.2 choice: the group default is shown).
    pub default_task_spec: Option<String>,
    /// The output JSON, when outputs were asked for and the run completed.
    pub output: Option<String>,
}

/// One page of a list, newest first.
#[derive(Debug, Clone)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub more: bool,
}

/// Runs `read` in one read transaction. On SQLite, BEGIN and COMMIT go
/// through the statement cache: rusqlite's `Transaction` parses them on
/// every call, and with a stream read after every commit the SQL parser
/// showed in the profile. A PostgreSQL read is a snapshot already (one
/// REPEATABLE READ transaction per read, see `Store::read`).
fn snapshot<T>(connection: &Sql<'_>, read: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
    let Some(sqlite) = connection.sqlite_connection() else {
        return read(connection);
    };
    /// Ends the transaction however `read` ends, so that the connection
    /// goes back to the pool without a snapshot held open.
    struct End<'a>(&'a rusqlite::Connection);
    impl Drop for End<'_> {
        fn drop(&mut self) {
            if !self.0.is_autocommit() {
                let _ = self
                    .0
                    .prepare_cached("ROLLBACK")
                    .and_then(|mut statement| statement.execute([]));
            }
        }
    }
    connection.execute("BEGIN", params![])?;
    let end = End(sqlite);
    let answer = read(connection)?;
    connection.execute("COMMIT", params![])?;
    drop(end);
    Ok(answer)
}

fn event_rows(
    connection: &Sql<'_>,
    sql: &str,
    key: i64,
    after: u64,
    limit: usize,
) -> Result<Vec<EventRow>> {
    let rows = connection.query_map(sql, params![key, after as i64, limit as i64], |row| {
        Ok((
            row.get::<i64>(0)?,
            row.get::<String>(1)?,
            row.get::<Option<String>>(2)?,
        ))
    })?;
    rows.into_iter()
        .filter_map(|(id, _kind, data)| Some((id, data?)))
        .map(|(id, data)| Ok((id as u64, decode_event(id, &data)?)))
        .collect()
}

/// A group stream's events after `after`, at most `limit`: each as
/// stored, but a run's terminal event, which is stored without its data,
/// made from its run's row (see `Batch::append_run_end`).
fn group_event_rows(
    connection: &Sql<'_>,
    group_seq: i64,
    after: u64,
    limit: usize,
) -> Result<Vec<EventRow>> {
    let rows = connection.query_map(
        &format!(
            "SELECT {RUN_COLUMNS}, e.id, e.data FROM events e \
             LEFT JOIN runs r ON e.data IS NULL AND e.type = 'run.status' AND r.seq = e.run_seq \
             LEFT JOIN groups g ON g.seq = r.group_seq \
             WHERE e.group_seq = ?1 AND e.stream = 1 AND e.id > ?2 ORDER BY e.id LIMIT ?3"
        ),
        params![group_seq, after as i64, limit as i64],
        |row| {
            let id: i64 = row.get(RUN_COLUMNS_COUNT)?;
            let data: Option<String> = row.get(RUN_COLUMNS_COUNT + 1)?;
            let ended_run: Option<i64> = row.get(0)?;
            let event = match (data, ended_run) {
                (Some(text), _) => Some(decode_event(id, &text)?),
                (None, Some(_)) => Some(run_end_event(RunRow::from_row(row)?)?),
                (None, None) => None,
            };
            Ok(event.map(|event| (id as u64, event)))
        },
    )?;
    Ok(rows.into_iter().flatten().collect())
}

fn decode_event(id: i64, text: &str) -> Result<EventData> {
    serde_json::from_str(text)
        .map_err(|error| Error::Sqlite(format!("event {id} does not decode: {error}")))
}

/// A run's terminal status event, made from its row: what the writer
/// held in memory when it wrote the event, since a terminal run's row
/// does not change again.
fn run_end_event(run: RunRow) -> Result<EventData> {
    Ok(EventData::RunStatus {
        run: run.to_model()?,
        output: None,
    })
}

/// A group stream's events read on a plain SQLite connection, as the
/// engine's streams read them: for tests that read a database a killed
/// process left, without opening an engine on it.
pub fn sqlite_group_events(
    connection: &rusqlite::Connection,
    group_seq: i64,
    after: u64,
    limit: usize,
) -> Result<Vec<EventRow>> {
    group_event_rows(&Sql::sqlite(connection), group_seq, after, limit)
}

/// A turn of an interaction as stored: its number, run row, and the
/// run's input and output as JSON text.
pub struct StoredTurn {
    pub turn: i64,
    pub run: RunRow,
    pub input: String,
    pub output: Option<String>,
}

impl Store {
    pub fn run(&self, run_id: &str) -> Result<Option<RunRow>> {
        self.read(|connection| {
            connection.query_row(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN groups g ON g.seq = r.group_seq \
                     WHERE r.id = ?1"
                ),
                params![run_id],
                RunRow::from_row,
            )
        })
    }

    /// The run's request as stored: the face's document, its input and its
    /// effective task spec.
    pub fn run_request(&self, run_id: &str) -> Result<Option<StoredRequest>> {
        let found: Option<(RunRow, Option<String>, String, String, bool)> =
            self.read(|connection| {
                connection.query_row(
                    &format!(
                        "SELECT {RUN_COLUMNS}, r.document, r.input, r.task_spec, r.default_spec \
                     FROM runs r LEFT JOIN groups g ON g.seq = r.group_seq WHERE r.id = ?1"
                    ),
                    params![run_id],
                    |row| {
                        Ok((
                            RunRow::from_row(row)?,
                            row.get(14)?,
                            row.get(15)?,
                            row.get(16)?,
                            row.get(17)?,
                        ))
                    },
                )
            })?;
        let Some((run, document, input, task_spec, spec_from_group)) = found else {
            return Ok(None);
        };
        let task_spec: TaskSpec = serde_json::from_str(&task_spec)?;
        Ok(Some(StoredRequest {
            run: run.to_model()?,
            document,
            input: serde_json::from_str(&input)?,
            task_spec,
            spec_from_group,
        }))
    }

    /// The run and its output JSON (set once completed).
    pub fn run_output(&self, run_id: &str) -> Result<Option<(RunRow, Option<String>)>> {
        self.read(|connection| {
            connection.query_row(
                &format!(
                    "SELECT {RUN_COLUMNS}, r.output FROM runs r \
                     LEFT JOIN groups g ON g.seq = r.group_seq WHERE r.id = ?1"
                ),
                params![run_id],
                |row| Ok((RunRow::from_row(row)?, row.output(14)?)),
            )
        })
    }

    /// The fingerprint and stored answer of an idempotency key, if any.
    pub fn idempotency_key(&self, key: &str) -> Result<Option<(String, String)>> {
        self.read(|connection| {
            connection.query_row(
                "SELECT fingerprint, body FROM idempotency_keys WHERE key = ?1",
                params![key],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        })
    }

    /// A face's record, if there is one.
    pub fn record(&self, key: &RecordKey) -> Result<Option<RecordRow>> {
        self.read(|connection| {
            connection.query_row(
                "SELECT id, body, created_at, modified_at FROM records \
                     WHERE face = ?1 AND kind = ?2 AND id = ?3",
                params![key.face, key.kind, key.id],
                |row| {
                    Ok(RecordRow {
                        id: row.get(0)?,
                        body: row.get(1)?,
                        created_at: row.get(2)?,
                        modified_at: row.get(3)?,
                    })
                },
            )
        })
    }

    /// A face's records of one kind whose ids start with `prefix`, by id
    /// from the greatest down, at most `limit` (the primary key's order,
    /// so the read walks the index and stops at `limit`).
    pub fn records(
        &self,
        face: &str,
        kind: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<RecordRow>> {
        // `prefix` + U+10FFFF bounds the range without LIKE's escaping.
        let end = format!("{prefix}\u{10FFFF}");
        self.read(|connection| {
            connection.query_map(
                "SELECT id, body, created_at, modified_at FROM records \
                     WHERE face = ?1 AND kind = ?2 AND id >= ?3 AND id < ?4 \
                     ORDER BY id DESC LIMIT ?5",
                params![face, kind, prefix, end, limit.min(i64::MAX as usize) as i64],
                |row| {
                    Ok(RecordRow {
                        id: row.get(0)?,
                        body: row.get(1)?,
                        created_at: row.get(2)?,
                        modified_at: row.get(3)?,
                    })
                },
            )
        })
    }

    /// The turns of an interaction, in order: each turn's number, the run
    /// row, its input, and its output when it completed.
    pub fn interaction_turns(&self, interaction: &str) -> Result<Vec<StoredTurn>> {
        self.read(|connection| {
            connection.query_map(
                &format!(
                    "SELECT {RUN_COLUMNS}, r.output, t.turn, r.input FROM interaction_turns t \
                     JOIN runs r ON r.id = t.run_id LEFT JOIN groups g ON g.seq = r.group_seq \
                     WHERE t.interaction = ?1 ORDER BY t.turn"
                ),
                params![interaction],
                |row| {
                    Ok(StoredTurn {
                        turn: row.get(RUN_COLUMNS_COUNT + 1)?,
                        run: RunRow::from_row(row)?,
                        input: row.get(RUN_COLUMNS_COUNT + 2)?,
                        output: row.output(RUN_COLUMNS_COUNT)?,
                    })
                },
            )
        })
    }

    /// The turns a follow-up of `previous_id` continues: that run and the
    /// runs it follows in turn, the `max` latest, oldest first. A turn
    /// that did not complete has no output; the chain stops at a pruned
    /// turn.
    pub fn turns(&self, previous_id: &str, max: usize) -> Result<Vec<Turn>> {
        let rows: Vec<(String, String, String, Option<String>)> = self.read(|connection| {
            // The casts give PostgreSQL the types (and the collation of
            // `runs.id`) that SQLite does not need.
            let collate = match connection.dialect() {
                Dialect::Sqlite => "",
                Dialect::Postgres => " COLLATE \"C\"",
            };
            connection.query_map(
                // No cycle is possible (a run follows only a run made
                // before it); the depth bounds the walk all the same.
                &format!(
                    "WITH RECURSIVE chain(id, depth) AS \
                     (SELECT CAST(?1 AS TEXT){collate}, CAST(1 AS BIGINT) UNION ALL \
                     SELECT r.previous_id, c.depth + 1 FROM chain c JOIN runs r ON r.id = c.id \
                     WHERE r.previous_id IS NOT NULL AND c.depth < ?2) \
                     SELECT r.id, r.input, r.status, r.output FROM chain c \
                     JOIN runs r ON r.id = c.id ORDER BY c.depth DESC"
                ),
                params![previous_id, max as i64],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.output(3)?)),
            )
        })?;
        rows.into_iter()
            .map(|(run_id, input, status, output)| {
                let output = match (status.as_str(), output) {
                    ("completed", Some(text)) => Some(super::parse_output(&text)?),
                    _ => None,
                };
                Ok(Turn {
                    run_id,
                    input: serde_json::from_str::<serde_json::Value>(&input)?,
                    output,
                })
            })
            .collect()
    }

    pub fn group(&self, group_id: &str) -> Result<Option<GroupRow>> {
        self.read(|connection| {
            connection.query_row(
                &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE id = ?1"),
                params![group_id],
                GroupRow::from_row,
            )
        })
    }

    /// Group-stream events of a group after `after`, at most `limit`, and
    /// whether the group was active in the same snapshot: when the page is
    /// empty and the group inactive, the stream has ended (spec 4.6).
    pub fn group_events(
        &self,
        group_seq: i64,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<EventRow>, bool)> {
        self.read(|connection| {
            snapshot(connection, |transaction| {
                let events = group_event_rows(transaction, group_seq, after, limit)?;
                let active: bool = transaction.query_one(
                    "SELECT n_queued + n_running + n_cancelling > 0 FROM groups WHERE seq = ?1",
                    params![group_seq],
                    |row| row.get(0),
                )?;
                Ok((events, active))
            })
        })
    }

    /// Progress events of a run after `after`, and the run in the same
    /// snapshot.
    pub fn run_progress(
        &self,
        run_seq: i64,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<EventRow>, RunRow, Option<String>)> {
        self.read(|connection| {
            snapshot(connection, |transaction| {
                let events = event_rows(
                    transaction,
                    "SELECT id, type, data FROM events WHERE run_seq = ?1 AND stream = 2 \
                     AND id > ?2 ORDER BY id LIMIT ?3",
                    run_seq,
                    after,
                    limit,
                )?;
                let (run, output) = transaction.query_one(
                    &format!(
                        "SELECT {RUN_COLUMNS}, r.output FROM runs r \
                         LEFT JOIN groups g ON g.seq = r.group_seq WHERE r.seq = ?1"
                    ),
                    params![run_seq],
                    |row| Ok((RunRow::from_row(row)?, row.output(14)?)),
                )?;
                Ok((events, run, output))
            })
        })
    }

    /// Calls `each` for the runs of a group with a cursor above `after`, in
    /// cursor order, all from one snapshot; stops early when `each` answers
    /// false.
    pub fn group_runs(
        &self,
        group_seq: i64,
        after: u64,
        status: Option<RunStatus>,
        include_input: bool,
        include_output: bool,
        mut each: impl FnMut(GroupRunRow) -> bool,
    ) -> Result<()> {
        self.read(|connection| {
            snapshot(connection, |transaction| {
                transaction.query_each(
                    &format!(
                        "SELECT {RUN_COLUMNS}, \
                         CASE WHEN ?3 THEN r.document END, \
                         CASE WHEN ?3 AND r.document IS NULL THEN r.input END, \
                         CASE WHEN ?3 AND r.default_spec THEN r.task_spec END, \
                         CASE WHEN ?4 AND r.status = 'completed' THEN r.output END \
                         FROM runs r LEFT JOIN groups g ON g.seq = r.group_seq \
                         WHERE r.group_seq = ?1 AND r.cursor > ?2 \
                         AND (CAST(?5 AS TEXT) IS NULL OR r.status = ?5) ORDER BY r.cursor"
                    ),
                    params![
                        group_seq,
                        after as i64,
                        include_input,
                        include_output,
                        status.map(RunStatus::as_str)
                    ],
                    |row| {
                        Ok(each(GroupRunRow {
                            run: RunRow::from_row(row)?,
                            document: row.get(14)?,
                            input: row.get(15)?,
                            default_task_spec: row.get(16)?,
                            output: row.output(17)?,
                        }))
                    },
                )
            })
        })
    }

    /// The largest committed event id.
    pub fn last_event_id(&self) -> Result<u64> {
        self.read(last_event_id)
    }

    /// The runs now `cancelling`, by seq, for the scheduler when cancels
    /// came faster than its queue takes them. Searched by status
    /// (`runs_by_status_id`): as many rows as there are such runs.
    pub fn cancelling_runs(&self) -> Result<Vec<i64>> {
        self.read(|connection| {
            let seqs = connection.query_map(
                "SELECT seq FROM runs WHERE status = 'cancelling'",
                params![],
                |row| row.get(0),
            )?;
            Ok(seqs)
        })
    }

    /// True when a read answers (health check).
    pub fn ping(&self) -> Result<()> {
        self.read(|connection| {
            connection.query_one("SELECT 1", params![], |_| Ok(()))?;
            Ok(())
        })
    }
}

/// Filters of a list (spec 10.3). `before_id` is the id of the last item
/// of the previous page: lists run newest first, in id order, and ids sort
/// by creation time, so any well-formed id is a position in the list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub limit: usize,
    pub before_id: Option<String>,
    pub status: Option<RunStatus>,
    pub group_seq: Option<i64>,
    pub is_active: Option<bool>,
}

impl Store {
    /// The `seq` of a run or group id.
    pub fn seq_of(&self, table: &'static str, id: &str) -> Result<Option<i64>> {
        let sql = match table {
            "runs" => "SELECT seq FROM runs WHERE id = ?1",
            _ => "SELECT seq FROM groups WHERE id = ?1",
        };
        self.read(|connection| connection.query_row(sql, params![id], |row| row.get(0)))
    }

    /// A page of runs, newest first; one more than `limit` is read to know
    /// whether another page follows.
    pub fn list_runs(&self, filter: &ListFilter) -> Result<ListPage<RunRow>> {
        self.read(|connection| {
            let (sql, parameters) = list_runs_query(filter, connection.dialect());
            let mut items =
                connection.query_map(&sql, &params_of(&parameters), RunRow::from_row)?;
            let more = items.len() > filter.limit;
            items.truncate(filter.limit);
            Ok(ListPage { items, more })
        })
    }

    /// A page of groups, newest first.
    pub fn list_groups(&self, filter: &ListFilter) -> Result<ListPage<GroupRow>> {
        let (sql, parameters) = list_groups_query(filter);
        self.read(|connection| {
            let mut items =
                connection.query_map(&sql, &params_of(&parameters), GroupRow::from_row)?;
            let more = items.len() > filter.limit;
            items.truncate(filter.limit);
            Ok(ListPage { items, more })
        })
    }

    /// Runs by status over the whole database, for metrics: every status
    /// a run can have, zeros included, from the `run_counts` row (one row,
    /// kept with every run change), never from a count of the runs.
    pub fn runs_by_status(&self) -> Result<Vec<(RunStatus, u64)>> {
        self.read(|connection| {
            let counts = connection.query_one(
                "SELECT num_runs, n_queued, n_running, n_cancelling, n_completed, n_failed, \
                     n_cancelled FROM run_counts WHERE id = 1",
                params![],
                |row| {
                    Ok(Counts {
                        num_runs: row.get(0)?,
                        queued: row.get(1)?,
                        running: row.get(2)?,
                        cancelling: row.get(3)?,
                        completed: row.get(4)?,
                        failed: row.get(5)?,
                        cancelled: row.get(6)?,
                    })
                },
            )?;
            Ok(RunStatus::ALL
                .into_iter()
                .filter(|status| *status != RunStatus::ActionRequired)
                .map(|status| (status, counts.get(status).max(0) as u64))
                .collect())
        })
    }
}

/// The SQL of a page of runs, newest first, and its parameters. Only the
/// terms the filter sets are written: with `?1 IS NULL OR r.status = ?1`
/// SQLite cannot use an index for the term, so a status or group filter
/// walked every run newest first (issue 11: seconds for no queued run among
/// 1.1M). A status filter searches `runs_by_status_id`, a group filter
/// `runs_by_group_id`, no filter walks the id's own index: each gives the
/// order too, so that a page reads about as many index entries as it
/// answers rows. With both filters, the status term is written `+r.status`
/// so that SQLite searches by the group and checks the status on the way:
/// the walk is bounded by the group's runs, where the status index would
/// walk every run of that status in every group (schema.sql says why there
/// is no index for both). Public so that a test can ask SQLite for the
/// plan of each (tests/query_plans.rs). PostgreSQL gets the plain term.
pub fn list_runs_query(filter: &ListFilter, dialect: Dialect) -> (String, Vec<Value>) {
    let mut terms = Vec::new();
    let mut parameters = Vec::new();
    if let Some(status) = filter.status {
        parameters.push(Value::Text(status.as_str().to_string()));
        // PostgreSQL has no unary plus on text, and plans by its own costs.
        let column = if filter.group_seq.is_some() && dialect == Dialect::Sqlite {
            "+r.status"
        } else {
            "r.status"
        };
        terms.push(format!("{column} = ?{}", parameters.len()));
    }
    if let Some(group_seq) = filter.group_seq {
        parameters.push(Value::Integer(group_seq));
        terms.push(format!("r.group_seq = ?{}", parameters.len()));
    }
    if let Some(before_id) = &filter.before_id {
        parameters.push(Value::Text(before_id.clone()));
        terms.push(format!("r.id < ?{}", parameters.len()));
    }
    parameters.push(Value::Integer(filter.limit as i64 + 1));
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN groups g ON g.seq = r.group_seq{} \
         ORDER BY r.id DESC LIMIT ?{}",
        where_clause(&terms),
        parameters.len()
    );
    (sql, parameters)
}

/// The SQL of a page of groups, newest first, and its parameters; only the
/// terms the filter sets, as for runs. `is_active` is the expression that
/// `groups_by_activity` indexes, written the same way, or SQLite would not
/// match the two.
pub fn list_groups_query(filter: &ListFilter) -> (String, Vec<Value>) {
    let mut terms = Vec::new();
    let mut parameters = Vec::new();
    if let Some(is_active) = filter.is_active {
        parameters.push(Value::Bool(is_active));
        terms.push(format!(
            "(n_queued + n_running + n_cancelling > 0) = ?{}",
            parameters.len()
        ));
    }
    if let Some(before_id) = &filter.before_id {
        parameters.push(Value::Text(before_id.clone()));
        terms.push(format!("id < ?{}", parameters.len()));
    }
    parameters.push(Value::Integer(filter.limit as i64 + 1));
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM groups{} ORDER BY id DESC LIMIT ?{}",
        where_clause(&terms),
        parameters.len()
    );
    (sql, parameters)
}

fn params_of(values: &[Value]) -> Vec<&dyn Param> {
    values.iter().map(|value| value as &dyn Param).collect()
}

fn where_clause(terms: &[String]) -> String {
    if terms.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", terms.join(" AND "))
    }
}

/// Pending deliveries due at `now`, the earliest first; on PostgreSQL, rows
/// another transaction holds are skipped and those answered stay locked to
/// this transaction's end (the claim's, `Op::ClaimDeliveries`).
pub(crate) fn due_deliveries(
    connection: &Sql<'_>,
    now: i64,
    limit: usize,
) -> Result<Vec<DueDelivery>> {
    let lock = match connection.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE OF d SKIP LOCKED",
    };
    let rows: Vec<DueDelivery> = connection.query_map(
        &format!(
            "SELECT {RUN_COLUMNS}, d.seq, d.id, d.url, d.face, d.attempts, d.expires_at, \
             e.id, e.data, w.owner \
             FROM webhook_deliveries d JOIN events e ON e.id = d.event_id \
             LEFT JOIN runs r ON e.data IS NULL AND r.seq = e.run_seq \
             LEFT JOIN groups g ON g.seq = r.group_seq \
             LEFT JOIN run_webhooks w ON w.run_seq = d.run_seq \
             WHERE d.state = 'pending' AND d.next_at <= ?1 ORDER BY d.next_at LIMIT ?2{lock}"
        ),
        params![now, limit as i64],
        |row| {
            let at = RUN_COLUMNS_COUNT;
            let seq: i64 = row.get(at)?;
            let event_id: i64 = row.get(at + 6)?;
            let data: Option<String> = row.get(at + 7)?;
            let ended_run: Option<i64> = row.get(0)?;
            // The terminal event a delivery tells of is stored without its
            // data (`Batch::append_run_end`); rows from before, with it.
            let event = match (data, ended_run) {
                (Some(text), _) => decode_event(event_id, &text)?,
                (None, Some(_)) => run_end_event(RunRow::from_row(row)?)?,
                (None, None) => {
                    return Err(Error::Sqlite(format!(
                        "delivery {seq} tells of event {event_id}, which has no data and no run"
                    )))
                }
            };
            Ok(DueDelivery {
                seq,
                id: row.get(at + 1)?,
                url: row.get(at + 2)?,
                face: row.get(at + 3)?,
                owner: row.get(at + 8)?,
                attempts: row.get(at + 4)?,
                expires_at: row.get(at + 5)?,
                event,
            })
        },
    )?;
    Ok(rows)
}

/// A webhook delivery that is due, with the event it tells of.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub seq: i64,
    /// 32 hex digits, the same on every attempt.
    pub id: String,
    pub url: String,
    pub face: String,
    /// The key the face gave the run's target, if any.
    pub owner: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
    pub expires_at: i64,
    /// The terminal event: the run as recorded at its status change.
    pub event: EventData,
}

impl Store {
    /// Pending deliveries due at `now`, the earliest first.
    pub fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<DueDelivery>> {
        self.read(|connection| due_deliveries(connection, now, limit))
    }

    /// Due deliveries for this process to attempt, the earliest first. On
    /// SQLite, the due ones (one process, which keeps its own attempts in
    /// flight apart). On PostgreSQL they are claimed in the writer: each is
    /// held until `hold_until` (past the attempt's timeout), so that no
    /// other node attempts it meanwhile, and a node that stops mid-attempt
    /// only delays the retry.
    pub fn claim_due_deliveries(
        &self,
        now: i64,
        limit: usize,
        hold_until: i64,
    ) -> Result<Vec<DueDelivery>> {
        match self.readers {
            super::Readers::Sqlite(_) => self.due_deliveries(now, limit),
            // No more than the senders take at once: a claimed delivery
            // waits in their queue at most one attempt, well inside its
            // hold, and the rest stay for other nodes.
            super::Readers::Postgres(_) => self.writer.call(|reply| super::Op::ClaimDeliveries {
                now,
                limit: limit.min(crate::limits::WEBHOOK_DELIVERIES_CONCURRENT_MAX),
                hold_until,
                reply,
            }),
        }
    }

    /// When the earliest pending delivery falls due.
    pub fn next_delivery_at(&self) -> Result<Option<i64>> {
        self.read(|connection| {
            connection.query_one(
                "SELECT min(next_at) FROM webhook_deliveries WHERE state = 'pending'",
                params![],
                |row| row.get(0),
            )
        })
    }

    /// The delivery attempts of the targets `owner` names, newest first:
    /// at most `limit` after skipping `offset`, and how many there are.
    pub fn owner_attempts(
        &self,
        owner: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<DeliveryAttempt>, u64)> {
        self.read(|connection| {
            let total: i64 = connection.query_one(
                "SELECT count(*) FROM webhook_attempts WHERE owner = ?1",
                params![owner],
                |row| row.get(0),
            )?;
            let attempts = connection.query_map(
                "SELECT a.seq, d.id, r.id, a.url, a.started_at, a.duration_us, a.code, \
                     a.error FROM webhook_attempts a \
                     JOIN webhook_deliveries d ON d.seq = a.delivery_seq \
                     JOIN runs r ON r.seq = a.run_seq \
                     WHERE a.owner = ?1 ORDER BY a.seq DESC LIMIT ?2 OFFSET ?3",
                params![owner, limit as i64, offset as i64],
                |row| {
                    Ok(DeliveryAttempt {
                        seq: row.get(0)?,
                        delivery_id: row.get(1)?,
                        run_id: row.get(2)?,
                        url: row.get(3)?,
                        started_at: Timestamp(row.get(4)?),
                        duration_ms: (row.get::<i64>(5)?.max(0) / 1_000) as u64,
                        code: row.get(6)?,
                        error: row.get(7)?,
                    })
                },
            )?;
            Ok((attempts, total.max(0) as u64))
        })
    }

    /// The interaction `run_id` is a turn of, if any.
    pub fn run_interaction(&self, run_id: &str) -> Result<Option<String>> {
        self.read(|connection| {
            connection.query_row(
                "SELECT interaction FROM interaction_turns WHERE run_id = ?1",
                params![run_id],
                |row| row.get(0),
            )
        })
    }

    /// Every delivery of a run, oldest first.
    pub fn run_deliveries(&self, run_id: &str) -> Result<Vec<Delivery>> {
        self.read(|connection| {
            let rows = connection.query_map(
                "SELECT d.id, r.id, d.url, d.state, d.attempts, d.next_at, d.expires_at, \
                 d.last_code, d.last_error, d.created_at, d.modified_at \
                 FROM webhook_deliveries d JOIN runs r ON r.seq = d.run_seq \
                 WHERE r.id = ?1 ORDER BY d.seq",
                params![run_id],
                |row| {
                    let state: String = row.get(3)?;
                    let state = DeliveryState::parse(&state).unwrap_or(DeliveryState::Expired);
                    Ok(Delivery {
                        id: row.get(0)?,
                        run_id: row.get(1)?,
                        url: row.get(2)?,
                        state,
                        attempts: row.get(4)?,
                        next_at: (state == DeliveryState::Pending)
                            .then(|| row.get::<i64>(5).map(Timestamp))
                            .transpose()?,
                        expires_at: Timestamp(row.get(6)?),
                        last_code: row.get(7)?,
                        last_error: row.get(8)?,
                        created_at: Timestamp(row.get(9)?),
                        modified_at: Timestamp(row.get(10)?),
                    })
                },
            )?;
            Ok(rows)
        })
    }
}

impl Store {
    /// Active schedules due at `now`: (seq, next_at, the `When` as JSON,
    /// created_at), the earliest first.
    pub fn due_schedules(&self, now: i64, limit: usize) -> Result<Vec<(i64, i64, String, i64)>> {
        self.read(|connection| {
            connection.query_map(
                "SELECT seq, next_at, spec, created_at FROM schedules \
                     WHERE state = 'active' AND next_at <= ?1 ORDER BY next_at LIMIT ?2",
                params![now, limit as i64],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
        })
    }

    /// When the earliest active schedule falls due.
    pub fn next_schedule_at(&self) -> Result<Option<i64>> {
        self.read(|connection| {
            connection.query_one(
                "SELECT min(next_at) FROM schedules WHERE state = 'active'",
                params![],
                |row| row.get(0),
            )
        })
    }

    pub fn schedule(&self, id: &str) -> Result<Option<ScheduleRow>> {
        self.read(|connection| {
            connection.query_row(
                &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1"),
                params![id],
                ScheduleRow::from_row,
            )
        })
    }

    /// Every schedule, newest first.
    pub fn list_schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.read(|connection| {
            connection.query_map(
                &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY seq DESC"),
                params![],
                ScheduleRow::from_row,
            )
        })
    }

    /// The runs a schedule made, oldest first.
    pub fn schedule_runs(&self, schedule_seq: i64) -> Result<Vec<RunRow>> {
        self.read(|connection| {
            connection.query_map(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM schedule_runs s JOIN runs r ON r.seq = s.run_seq \
                     LEFT JOIN groups g ON g.seq = r.group_seq WHERE s.schedule_seq = ?1 \
                     ORDER BY s.run_seq"
                ),
                params![schedule_seq],
                RunRow::from_row,
            )
        })
    }
}
