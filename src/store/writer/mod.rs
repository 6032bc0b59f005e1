//! The writer thread: the one owner of the write connection.
//!
//! Every change to the database is an [`Op`] sent here. The thread takes
//! whatever ops are waiting (up to `WRITER_BATCH_OPS_MAX`) and commits them
//! in one transaction (group commit, after effectum's db_writer). Every op
//! but claims and finishes runs inside a savepoint, so that one that fails
//! for a reason of its own does not sink its neighbours; claims and
//! finishes run without one (see `Op::needs_savepoint`), and when one of
//! them fails the whole batch fails. Callers are answered only after the
//! commit; a failed commit or batch answers every op in it with the error,
//! none is dropped. Each state change and its event row are written by the
//! same op, so they commit together (invariant 1).

mod cancel;
mod claim;
mod counts;
mod create;
mod finish;
pub(in crate::store) mod postgres;
mod prune;
mod record;
mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use rusqlite::TransactionBehavior;

use super::sql::{params, Dialect, Param, Sql};

use super::{
    Error, EventIds, GroupRow, Result, RunRow, ScheduleRow, GROUP_COLUMNS, RUN_COLUMNS,
    RUN_COLUMNS_COUNT, SCHEDULE_COLUMNS,
};
use crate::limits::{LEASE_MS, WRITER_BATCH_OPS_MAX, WRITER_QUEUE_MAX};
use crate::model::{
    to_json, Event, EventData, EventKind, ProgressKind, RunCounts as Counts, RunError, RunStatus,
    Timestamp, Warning,
};
use cancel::{cancel_group, cancel_run};
use claim::{claim, start_attempt};
pub(in crate::store) use counts::CountChanges;
use counts::{apply_counts, merge_counts};
use create::{add_runs, create_group, create_run, group_by_id, insert_run, keyed};
pub(in crate::store) use finish::transition;
use finish::{claim_deliveries, finish_run, progress, record_delivery, warn};
use postgres::{commit_postgres, Lease, LEASE_RENEW_EVERY};
pub use prune::{PrunePolicy, Pruned};
use record::{delete_record, put_record, remember_key};
pub use record::{RecordKey, RecordRow, RecordWrite};
use schedule::{change_schedule, create_schedule, fire_schedules};
pub use schedule::{Fire, NewSchedule, ScheduleChange};

/// How an op's result reaches its caller: called once, after the commit.
pub type Reply<T> = Box<dyn FnOnce(Result<T>) + Send>;

/// A stream whose events a commit may have advanced; the hub wakes only
/// the subscribers of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKey {
    /// The group events stream of a group (by its `seq`).
    Group(i64),
    /// A run's progress or terminal state (by its `seq`).
    Run(i64),
}

/// What one commit changed, for the hub.
#[derive(Debug, Clone)]
pub struct CommitNotice {
    /// The largest event id now committed.
    pub last_event_id: u64,
    pub keys: Vec<StreamKey>,
    /// The group and run stream rows this commit wrote, in id order, so
    /// that the hub can hand them to caught-up subscribers from memory.
    pub events: Vec<CommittedEvent>,
    /// True when the commit wrote webhook deliveries (the deliverer wakes).
    pub deliveries: bool,
    /// PostgreSQL, several nodes: the ids up to this one may hold events
    /// other nodes committed, which `events` does not carry, so a follower
    /// must read them from the store (the hub resets its windows).
    pub others_upto: Option<u64>,
    /// Runs went back to the queue without a create (leases taken back):
    /// the scheduler should claim.
    pub runs_queued: bool,
}

/// A committed group or run stream row, as the hub keeps it.
#[derive(Debug, Clone)]
pub struct CommittedEvent {
    pub id: u64,
    pub key: StreamKey,
    pub event: Event,
}

/// A group to create.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub id: String,
    pub metadata: Option<String>,
}

/// A run to create, already validated; JSON fields are compact text. A
/// schedule keeps one as its template (as JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewRun {
    pub id: String,
    pub processor: String,
    /// The run's input.
    pub input: String,
    /// The face's document of the request, opaque here.
    pub document: Option<String>,
    /// The effective task spec.
    pub task_spec: String,
    /// True when `task_spec` came from the group's default.
    pub default_spec: bool,
    pub metadata: Option<String>,
    pub enable_events: bool,
    pub max_attempts: u32,
    pub warnings: Option<String>,
    /// Where to POST the run's terminal status.
    pub webhook: Option<crate::model::WebhookTarget>,
    /// The run this one follows up, by id.
    #[serde(default)]
    pub previous_id: Option<String>,
    /// The interaction the run is the next turn of: it follows the
    /// interaction's latest run (and `previous_id` is that run's).
    #[serde(default)]
    pub interaction: Option<String>,
    /// In a schedule's run template: a fire while the schedule's previous
    /// run is still active makes its run already cancelled as skipped
    /// (`model::SKIPPED_DETAIL`), so runs of one schedule never overlap.
    #[serde(default)]
    pub skip_while_active: bool,
    /// A face's index record written with the run, in its transaction:
    /// the key's id followed by the run's id, an empty body.
    #[serde(default)]
    pub index: Option<RecordKey>,
}

/// A run the scheduler took from the queue; it is `running` now.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    pub seq: i64,
    pub id: String,
    pub processor: String,
    pub input: String,
    pub task_spec: String,
    pub metadata: Option<String>,
    /// This attempt's number, 1-based.
    pub attempt: u32,
    pub max_attempts: u32,
    pub enable_events: bool,
    /// The run this one follows up: its processor sees the earlier turns.
    pub previous_id: Option<String>,
}

/// How a run attempt ended.
#[derive(Debug, Clone)]
pub enum Finish {
    /// `output` is the model's Output as JSON.
    Completed {
        output: super::packed::FinishOutput,
    },
    Failed {
        error: RunError,
    },
    /// The cancel flag was seen, or the cancel grace ran out.
    Cancelled,
    /// Shutdown interrupted the attempt: back to `queued`, attempt not counted.
    Requeue,
}

/// How one webhook delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryOutcome {
    /// The state after the attempt.
    pub state: crate::model::DeliveryState,
    /// When a still pending delivery is tried next (micros).
    pub next_at: i64,
    /// The receiver's HTTP status, if it answered.
    pub code: Option<u16>,
    pub error: Option<String>,
    /// When the attempt started (micros), and how long it took.
    pub started_at: i64,
    pub duration_us: i64,
}

/// The answer to a run cancel: the status before, and the run after.
#[derive(Debug, Clone)]
pub struct RunCancel {
    pub before: RunStatus,
    pub run: RunRow,
}

/// The answer to an add-runs op.
#[derive(Debug, Clone)]
pub struct AddedRuns {
    pub run_ids: Vec<String>,
    /// The largest event id before this request's first row, if the group
    /// had runs before.
    pub cursor: Option<u64>,
    pub group: GroupRow,
}

impl AddedRuns {
    pub fn to_model(&self) -> Result<crate::model::AddedRuns> {
        Ok(crate::model::AddedRuns {
            run_ids: self.run_ids.clone(),
            cursor: self.cursor,
            group: self.group.to_model()?,
        })
    }
}

/// The idempotency key of a create.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    /// The face's canonical form of the request.
    pub fingerprint: String,
}

/// A key and how the face renders the answer stored with it.
pub struct Keyed<T> {
    pub record: Box<IdempotencyRecord>,
    pub answer: Box<dyn FnOnce(&T) -> String + Send>,
}

/// The answer to a create that may carry an idempotency key. Answered once
/// per op, by value: boxing the fresh value would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Once<T> {
    /// Created now; `body` is the stored answer when a key was given, so
    /// that the first answer and every replay are the same bytes.
    Fresh { value: T, body: Option<String> },
    /// The key was seen with the same request: nothing was created.
    Replay { body: String },
}

/// Every change the store can make. Ops travel by value through the
/// writer's bounded queue; a create is the largest, and boxing it would add
/// an allocation per op on the hot path.
#[allow(clippy::large_enum_variant)]
pub enum Op {
    CreateGroup {
        group: NewGroup,
        once: Option<Keyed<crate::model::Group>>,
        reply: Reply<Once<crate::model::Group>>,
    },
    AddRuns {
        group_id: String,
        runs: Vec<NewRun>,
        once: Option<Keyed<crate::model::AddedRuns>>,
        reply: Reply<Once<crate::model::AddedRuns>>,
    },
    CreateRun {
        run: NewRun,
        once: Option<Keyed<crate::model::Run>>,
        reply: Reply<Once<crate::model::Run>>,
    },
    /// Moves up to `max` queued runs to `running`, oldest first, taking at
    /// most `budgets[name]` runs of each processor named there (its
    /// concurrency headroom); a run over budget stays queued.
    Claim {
        max: usize,
        budgets: HashMap<String, usize>,
        /// Each processor's `max_concurrency`. On PostgreSQL the claim
        /// holds it against the runs every node has running (claims of all
        /// nodes are serialised by the `event_ids` row each batch locks
        /// first), so a limit is global; SQLite's one process needs only
        /// `budgets`.
        limits: HashMap<String, usize>,
        reply: Reply<Vec<ClaimedRun>>,
    },
    /// Ends an attempt. Answers false when the run was no longer running
    /// or cancelling, so the finish was ignored (invariant 5).
    Finish {
        run_seq: i64,
        finish: Finish,
        reply: Reply<bool>,
    },
    /// Starts attempt `attempt` of a run in retry: counts it and writes
    /// its exec_status message. Answers the run's status, so a run that
    /// was cancelled during its backoff is not attempted again.
    StartAttempt {
        run_seq: i64,
        attempt: u32,
        reply: Reply<RunStatus>,
    },
    /// Adds a warning to a run without changing its status.
    Warn {
        run_seq: i64,
        warning: Warning,
        reply: Reply<()>,
    },
    /// Appends a progress or stats event (run events stream).
    Progress {
        run_seq: i64,
        data: EventData,
        reply: Reply<()>,
    },
    CancelRun {
        run_id: String,
        reply: Reply<RunCancel>,
    },
    CreateSchedule {
        schedule: NewSchedule,
        reply: Reply<ScheduleRow>,
    },
    ChangeSchedule {
        id: String,
        change: ScheduleChange,
        reply: Reply<ScheduleRow>,
    },
    /// Prunes one batch of what `policy` says is old enough, then gives
    /// at most `pages_max` free pages back to the file system.
    Prune {
        policy: PrunePolicy,
        rows_max: usize,
        pages_max: usize,
        reply: Reply<Pruned>,
    },
    /// Fires due schedules; answers the seqs of the runs made.
    FireSchedules {
        fires: Vec<Fire>,
        reply: Reply<Vec<i64>>,
    },
    /// PostgreSQL: claims due deliveries for this node, each held until
    /// `hold_until` (see `Store::claim_due_deliveries`).
    ClaimDeliveries {
        now: i64,
        limit: usize,
        hold_until: i64,
        reply: Reply<Vec<super::DueDelivery>>,
    },
    /// Records one delivery attempt's outcome (see `webhooks.rs`).
    RecordDelivery {
        seq: i64,
        outcome: DeliveryOutcome,
        reply: Reply<()>,
    },
    /// Inserts or updates a face's record.
    PutRecord {
        key: RecordKey,
        body: String,
        write: RecordWrite,
        reply: Reply<RecordRow>,
    },
    /// Stores a face's answer under an idempotency key, or answers the
    /// fingerprint and body the key already has.
    RememberKey {
        record: IdempotencyRecord,
        body: String,
        reply: Reply<Option<(String, String)>>,
    },
    /// Deletes a face's record; answers whether there was one.
    DeleteRecord { key: RecordKey, reply: Reply<bool> },
    /// Cancels every active run of a group; answers the group after and the
    /// runs that are now `cancelling` (their processors must be told).
    CancelGroup {
        group_id: String,
        reply: Reply<(GroupRow, Vec<i64>)>,
    },
    /// Repairs what a killed process left (`recovery.rs`): sent once, by
    /// `Store::open`, before anything else can claim a run.
    Recover { reply: Reply<super::Recovered> },
}

impl Op {
    /// Ops that can fail for a reason of their own (a conflict, a bad
    /// request, an unknown id found after a write) and so run inside a
    /// savepoint, to be undone alone. Claims and finishes, the hot path,
    /// fail only when SQLite does: a savepoint would only copy every page
    /// they touch to the statement journal first (the writer's largest
    /// `memmove` in the profile), so they run without one, and their
    /// failure fails the batch.
    fn needs_savepoint(&self) -> bool {
        !matches!(
            self,
            Op::Claim { .. } | Op::Finish { .. } | Op::Recover { .. }
        )
    }

    /// Ops that read or write a group row, and so must see the counts the
    /// ops before them in the batch deferred (`Batch::pending`).
    fn reads_groups(&self) -> bool {
        match self {
            Op::CreateGroup { .. }
            | Op::AddRuns { .. }
            | Op::CreateRun { .. }
            | Op::CancelRun { .. }
            | Op::CancelGroup { .. } => true,
            Op::RecordDelivery { .. }
            | Op::ClaimDeliveries { .. }
            | Op::PutRecord { .. }
            | Op::RememberKey { .. }
            | Op::DeleteRecord { .. }
            | Op::CreateSchedule { .. }
            | Op::ChangeSchedule { .. }
            | Op::FireSchedules { .. } => false,
            Op::Prune { .. } | Op::Recover { .. } => true,
            Op::Claim { .. }
            | Op::Finish { .. }
            | Op::Warn { .. }
            | Op::StartAttempt { .. }
            | Op::Progress { .. } => false,
        }
    }
}

// Large for the reason `Op` is.
#[allow(clippy::large_enum_variant)]
enum Message {
    Op(Op),
    Stop,
}

/// Handle to the writer thread.
pub struct Writer {
    sender: Sender<Message>,
    thread: Mutex<Option<JoinHandle<()>>>,
    on_full: FullHook,
    dialect: Dialect,
}

impl Writer {
    pub(super) fn start(
        event_ids: EventIds,
        connection: WriteConnection,
        page_cap: Option<u64>,
        on_commit: Box<dyn Fn(&CommitNotice) + Send>,
    ) -> Result<Writer> {
        let last_event_id = match &connection {
            WriteConnection::Sqlite(connection) => {
                super::read::last_event_id(&Sql::sqlite(connection))?
            }
            // Read again under its row lock by every batch (see
            // `commit_postgres`): other nodes assign ids too.
            WriteConnection::Postgres(_) => 0,
        };
        let dialect = match &connection {
            WriteConnection::Sqlite(_) => Dialect::Sqlite,
            WriteConnection::Postgres(_) => Dialect::Postgres,
        };
        let (sender, receiver) = bounded(WRITER_QUEUE_MAX);
        let on_full = FullHook::default();
        let hook = on_full.clone();
        let thread = std::thread::Builder::new()
            .name("taskyard-writer".into())
            .spawn(move || {
                let lease = match &connection {
                    WriteConnection::Sqlite(_) => None,
                    WriteConnection::Postgres(_) => Some(Lease {
                        node: Arc::from(ulid::Ulid::new().to_string()),
                        // The first op, `Op::Recover`, takes back what
                        // stopped nodes left; renewal starts a period on.
                        renewed_at: Instant::now(),
                    }),
                };
                let mut thread = WriterThread {
                    event_ids,
                    in_doubt: Vec::new(),
                    connection,
                    lease,
                    last_event_id,
                    page_cap,
                    on_commit,
                    on_full: hook,
                };
                thread.run(receiver);
            })
            .map_err(|e| Error::Sqlite(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            sender,
            thread: Mutex::new(Some(thread)),
            on_full,
            dialect,
        })
    }

    /// Calls `hook` (on the writer thread, so it must not wait for the
    /// writer) whenever a write fails because the database is full. Set
    /// once; a second call is ignored and answers false.
    pub fn on_full(&self, hook: Box<dyn Fn() + Send + Sync>) -> bool {
        self.on_full.set(hook).is_ok()
    }

    /// Queues an op; its reply is called after its transaction commits.
    /// Blocks while the queue is full (back-pressure).
    pub fn submit(&self, mut op: Op) -> Result<()> {
        // Off the serial path: the sender's thread packs the output.
        if let Op::Finish {
            finish: Finish::Completed { output },
            ..
        } = &mut op
        {
            output.prepack(self.dialect);
        }
        self.sender.send(Message::Op(op)).map_err(|_| Error::Closed)
    }

    /// Queues the op that `make` builds around a reply channel and waits
    /// for the answer, which arrives only once the rows are durable.
    pub fn call<T: Send + 'static>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T> {
        let (sender, receiver) = bounded(1);
        self.submit(make(Box::new(move |result| {
            let _ = sender.send(result);
        })))?;
        receiver.recv().map_err(|_| Error::Closed)?
    }

    /// Lets the queue drain, then stops the thread. Later ops get `Closed`.
    pub fn stop(&self) {
        let _ = self.sender.send(Message::Stop);
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }

    /// True when no op waits in the queue: the writer is idle, and a
    /// background batch (pruning) delays nobody.
    pub fn is_idle(&self) -> bool {
        self.sender.is_empty()
    }

    /// True while the writer thread runs.
    pub fn is_alive(&self) -> bool {
        self.thread
            .lock()
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs after the commit: answers one op's caller.
type Completion = Box<dyn FnOnce(Option<&Error>) + Send>;

/// The connection the writer owns, of either backend. One per writer,
/// moved once into its thread: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum WriteConnection {
    Sqlite(rusqlite::Connection),
    Postgres(super::postgres::Connection),
}

struct WriterThread {
    event_ids: EventIds,
    /// PostgreSQL: runs claimed by batches whose commit failed. A commit
    /// that fails as the connection drops may have been made all the same,
    /// leaving runs `running` under this node's lease that no worker runs;
    /// renewal would keep them so for ever. The next batch to commit ends
    /// their leases first, before any claim of its own, so that they are
    /// taken back as interrupted attempts (a lease row that was never
    /// written is simply not found).
    in_doubt: Vec<i64>,
    connection: WriteConnection,
    /// PostgreSQL's; `None` on SQLite.
    lease: Option<Lease>,
    last_event_id: u64,
    /// `PRAGMA max_page_count` as configured (`database_bytes_max`).
    page_cap: Option<u64>,
    on_commit: Box<dyn Fn(&CommitNotice) + Send>,
    on_full: FullHook,
}

/// What to call when a write finds the database full; set once, by
/// whoever can make room (the engine's pruner), after the writer starts.
type FullHook = Arc<OnceLock<Box<dyn Fn() + Send + Sync>>>;

impl WriterThread {
    fn run(&mut self, receiver: Receiver<Message>) {
        let mut stopping = false;
        while !stopping {
            let received = match &self.lease {
                // A quiet PostgreSQL writer still renews its leases.
                Some(_) => match receiver.recv_timeout(LEASE_RENEW_EVERY) {
                    Ok(message) => Some(message),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                },
                None => match receiver.recv() {
                    Ok(message) => Some(message),
                    Err(_) => break,
                },
            };
            let first = match received {
                Some(Message::Op(op)) => op,
                Some(Message::Stop) => break,
                None => {
                    self.commit_batch(Vec::new());
                    continue;
                }
            };
            let mut ops = vec![first];
            while ops.len() < WRITER_BATCH_OPS_MAX {
                match receiver.try_recv() {
                    Ok(Message::Op(op)) => ops.push(op),
                    Ok(Message::Stop) => {
                        stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(ops);
        }
        // Ops that raced with the stop are answered, not dropped.
        for message in receiver.try_iter() {
            if let Message::Op(op) = message {
                fail_op(op, Error::Closed);
            }
        }
    }

    fn commit_batch(&mut self, ops: Vec<Op>) {
        let on_full = self.on_full.clone();
        // Every failure passes here before it is answered, so that a full
        // database is told (the pruner makes room) whichever op found it.
        let noticed = move |error: &Error| {
            if matches!(error, Error::Full(_)) {
                if let Some(hook) = on_full.get() {
                    hook();
                }
            }
        };
        let mut batch = Batch {
            next_event_id: self.last_event_id + 1,
            keys: Vec::new(),
            events: Vec::new(),
            now: Timestamp::now().micros(),
            page_cap: self.page_cap,
            pending: CountChanges::default(),
            run_counts: Counts::default(),
            deliveries: false,
            webhooks: None,
            others_upto: None,
            node: self.lease.as_ref().map(|lease| lease.node.clone()),
            runs_queued: false,
            claimed: Vec::new(),
        };
        let committed = match &mut self.connection {
            WriteConnection::Sqlite(connection) => {
                commit_sqlite(connection, &mut batch, ops, &noticed)
            }
            WriteConnection::Postgres(connection) => {
                let lease = self.lease.as_mut();
                let committed = commit_postgres(
                    connection,
                    self.event_ids,
                    lease,
                    &self.in_doubt,
                    &mut batch,
                    ops,
                    &noticed,
                );
                if committed.is_some() {
                    self.in_doubt.clear();
                } else {
                    self.in_doubt.append(&mut batch.claimed);
                }
                committed
            }
        };
        let Some(completions) = committed else {
            return;
        };
        let last_event_id = batch.next_event_id - 1;
        assert!(
            last_event_id >= self.last_event_id,
            "event ids must never go back"
        );
        self.last_event_id = last_event_id;
        let mut keys = batch.keys;
        keys.sort_unstable_by_key(|key| match key {
            StreamKey::Group(seq) => (0, *seq),
            StreamKey::Run(seq) => (1, *seq),
        });
        keys.dedup();
        (self.on_commit)(&CommitNotice {
            last_event_id,
            keys,
            events: batch.events,
            deliveries: batch.deliveries,
            others_upto: batch.others_upto,
            runs_queued: batch.runs_queued,
        });
        for completion in completions {
            completion(None);
        }
    }
}

/// One batch on SQLite: `BEGIN IMMEDIATE` takes the write lock up front,
/// so the batch never fails half-way for want of it. Answers the
/// completions when it committed; otherwise every op was answered.
fn commit_sqlite(
    connection: &mut rusqlite::Connection,
    batch: &mut Batch,
    ops: Vec<Op>,
    noticed: &dyn Fn(&Error),
) -> Option<Vec<Completion>> {
    let transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(transaction) => transaction,
        Err(error) => {
            let error = Error::from(error);
            noticed(&error);
            for op in ops {
                fail_op(op, error.clone());
            }
            return None;
        }
    };
    let completions = apply_batch(&Sql::sqlite(&transaction), batch, ops, noticed)?;
    finish_commit(
        transaction.commit().map_err(Error::from),
        completions,
        noticed,
    )
}

/// Answers the completions when the commit failed; hands them back when
/// it succeeded.
fn finish_commit(
    committed: Result<()>,
    completions: Vec<Completion>,
    noticed: &dyn Fn(&Error),
) -> Option<Vec<Completion>> {
    match committed {
        Ok(()) => Some(completions),
        Err(error) => {
            noticed(&error);
            for completion in completions {
                completion(Some(&error));
            }
            None
        }
    }
}

/// Applies a batch's ops in `transaction`, each in a savepoint when it
/// needs one. Answers the completions when the batch may commit; when it
/// may not, every op has been answered with the error and nothing is
/// left to do but roll back (the transaction is dropped by the caller).
fn apply_batch(
    transaction: &Sql<'_>,
    batch: &mut Batch,
    ops: Vec<Op>,
    noticed: &dyn Fn(&Error),
) -> Option<Vec<Completion>> {
    let mut completions: Vec<Completion> = Vec::with_capacity(ops.len());
    let mut ops = ops.into_iter();
    while let Some(op) = ops.next() {
        if op.reads_groups() {
            if let Err(error) = batch.flush_counts(transaction) {
                noticed(&error);
                fail_batch(completions, std::iter::once(op).chain(ops), &error);
                return None;
            }
        }
        if !op.needs_savepoint() {
            let (failure, completion) = apply(transaction, batch, op);
            completions.push(completion);
            if let Some(error) = failure {
                noticed(&error);
                // No savepoint to roll back to, and the op may have
                // written part of its work: nothing of the batch may
                // commit. Such ops fail only when the database does (a
                // full disk, an I/O error), which fails the others too.
                fail_batch(completions, ops, &error);
                return None;
            }
            continue;
        }
        let event_id_before = batch.next_event_id;
        let keys_before = batch.keys.len();
        let events_before = batch.events.len();
        let run_counts_before = batch.run_counts;
        if let Err(error) = transaction.execute("SAVEPOINT op", params![]) {
            noticed(&error);
            completions.push(Box::new(move |_| fail_op(op, error)));
            continue;
        }
        let (failure, completion) = apply(transaction, batch, op);
        if let Some(error) = &failure {
            noticed(error);
        }
        let end = if failure.is_none() {
            transaction.execute("RELEASE SAVEPOINT op", params![])
        } else {
            batch.next_event_id = event_id_before;
            batch.keys.truncate(keys_before);
            batch.events.truncate(events_before);
            batch.run_counts = run_counts_before;
            transaction
                .execute("ROLLBACK TO SAVEPOINT op", params![])
                .and_then(|_| transaction.execute("RELEASE SAVEPOINT op", params![]))
        };
        if let Err(error) = end {
            // SQLite rolls a whole transaction back on some errors (a
            // full disk among them), and the savepoint is gone with it:
            // nothing of this batch is committed, so every op in it is
            // answered with the op's own error, which says why.
            let error = failure.unwrap_or(error);
            noticed(&error);
            completions.push(completion);
            fail_batch(completions, ops, &error);
            return None;
        }
        completions.push(completion);
    }
    if let Err(error) = batch
        .flush_counts(transaction)
        .and_then(|()| batch.write_run_counts(transaction))
    {
        noticed(&error);
        fail_batch(completions, std::iter::empty(), &error);
        return None;
    }
    Some(completions)
}

/// Answers a batch whose transaction was rolled back: the ops that ran
/// get `error` through their completions, the ops not reached yet too.
fn fail_batch(completions: Vec<Completion>, rest: impl Iterator<Item = Op>, error: &Error) {
    for completion in completions {
        completion(Some(error));
    }
    for op in rest {
        fail_op(op, error.clone());
    }
}

/// Answers an op that never ran.
fn fail_op(op: Op, error: Error) {
    match op {
        Op::CreateGroup { reply, .. } => reply(Err(error)),
        Op::AddRuns { reply, .. } => reply(Err(error)),
        Op::CreateRun { reply, .. } => reply(Err(error)),
        Op::Claim { reply, .. } => reply(Err(error)),
        Op::Finish { reply, .. } => reply(Err(error)),
        Op::Warn { reply, .. } => reply(Err(error)),
        Op::StartAttempt { reply, .. } => reply(Err(error)),
        Op::Progress { reply, .. } => reply(Err(error)),
        Op::CancelRun { reply, .. } => reply(Err(error)),
        Op::CancelGroup { reply, .. } => reply(Err(error)),
        Op::RecordDelivery { reply, .. } => reply(Err(error)),
        Op::ClaimDeliveries { reply, .. } => reply(Err(error)),
        Op::CreateSchedule { reply, .. } => reply(Err(error)),
        Op::ChangeSchedule { reply, .. } => reply(Err(error)),
        Op::FireSchedules { reply, .. } => reply(Err(error)),
        Op::Prune { reply, .. } => reply(Err(error)),
        Op::PutRecord { reply, .. } => reply(Err(error)),
        Op::DeleteRecord { reply, .. } => reply(Err(error)),
        Op::RememberKey { reply, .. } => reply(Err(error)),
        Op::Recover { reply } => reply(Err(error)),
    }
}

/// State of the transaction being built.
pub(super) struct Batch {
    pub(super) next_event_id: u64,
    pub(super) keys: Vec<StreamKey>,
    /// Group and run stream rows written so far, for the commit notice.
    pub(super) events: Vec<CommittedEvent>,
    pub(super) now: i64,
    /// Count changes of claims and finishes, applied to the groups once per
    /// transaction instead of once per op: a finish's `UPDATE groups` was a
    /// tenth of the writer's time when every op applied its own. Flushed
    /// before any op that reads or writes a group row, and before commit.
    pub(super) pending: CountChanges,
    /// Change to the `run_counts` row (every run, grouped or not) over the
    /// transaction, written once just before commit: nothing in the writer
    /// reads the row. An op rolled back to its savepoint takes its share
    /// back out (`commit_batch` keeps the value from before the op).
    pub(super) run_counts: Counts,
    /// A terminal status change wrote a webhook delivery.
    pub(super) deliveries: bool,
    /// Whether any run has a webhook, asked once per batch at the first
    /// terminal change (`None` until then): without one, a terminal change
    /// skips the outbox insert, a statement per run in the profile.
    pub(super) webhooks: Option<bool>,
    /// The configured page cap, which pruning lifts for its batch.
    pub(super) page_cap: Option<u64>,
    /// Set when the ids before this batch's were not all this writer's
    /// (another node wrote events since): see `CommitNotice::others_upto`.
    pub(super) others_upto: Option<u64>,
    /// PostgreSQL: this node's name in `run_leases`; `None` on SQLite,
    /// where one process owns the file and needs no lease.
    pub(super) node: Option<Arc<str>>,
    /// Leases taken back requeued runs (see `CommitNotice::runs_queued`).
    pub(super) runs_queued: bool,
    /// PostgreSQL: the runs this batch's claims took, which are in doubt
    /// if its commit fails (see `WriterThread::in_doubt`).
    pub(super) claimed: Vec<i64>,
}

/// Where an event row shows (the `stream` column).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    History = 0,
    Group = 1,
    Run = 2,
}

impl Batch {
    /// Applies the deferred count changes (see `pending`).
    fn flush_counts(&mut self, transaction: &Sql<'_>) -> Result<()> {
        std::mem::take(&mut self.pending).apply(transaction, self)
    }

    /// Writes the transaction's change to the `run_counts` row (see
    /// `run_counts`); call once, after the last `flush_counts`.
    pub(super) fn write_run_counts(&mut self, transaction: &Sql<'_>) -> Result<()> {
        let delta = std::mem::take(&mut self.run_counts);
        if delta == Counts::default() {
            return Ok(());
        }
        let updated = transaction.execute(
            "UPDATE run_counts SET num_runs = num_runs + ?1, n_queued = n_queued + ?2, \
                 n_running = n_running + ?3, n_cancelling = n_cancelling + ?4, \
                 n_completed = n_completed + ?5, n_failed = n_failed + ?6, \
                 n_cancelled = n_cancelled + ?7 WHERE id = 1",
            params![
                delta.num_runs,
                delta.queued,
                delta.running,
                delta.cancelling,
                delta.completed,
                delta.failed,
                delta.cancelled
            ],
        )?;
        if updated != 1 {
            // schema.sql and migration 2 both write the one row.
            return Err(Error::Sqlite("the run_counts row is missing".into()));
        }
        Ok(())
    }

    /// Appends an event row. `data`, the event's content, is stored as
    /// the model's JSON; a row of a group or run stream also goes to the
    /// hub with the commit notice.
    fn append_event(
        &mut self,
        transaction: &Sql<'_>,
        kind: EventKind,
        at: (Option<i64>, Option<i64>),
        stream: Stream,
        status: Option<RunStatus>,
        data: Option<EventData>,
    ) -> Result<u64> {
        let text = data.as_ref().map(to_json);
        self.insert_event(transaction, kind, at, stream, status, text, data)
    }

    /// A run's terminal status event. Its data, the run as it ends, is not
    /// stored: a terminal run's row never changes again, so readers make it
    /// from the row (`read.rs`, `run_end_event`). That saves about 290
    /// bytes a run on disk, and the writer its JSON. The group's followers
    /// still get it from memory, made here.
    fn append_run_end(
        &mut self,
        transaction: &Sql<'_>,
        run: &RunRow,
        stream: Stream,
    ) -> Result<u64> {
        let data = match stream {
            Stream::Group => Some(EventData::RunStatus {
                run: run.to_model()?,
                output: None,
            }),
            // Not followed by any stream: only a webhook delivery reads
            // it, from the row.
            Stream::History | Stream::Run => None,
        };
        self.insert_event(
            transaction,
            EventKind::RunStatus,
            (run.group_seq, Some(run.seq)),
            stream,
            Some(run.status),
            None,
            data,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_event(
        &mut self,
        transaction: &Sql<'_>,
        kind: EventKind,
        at: (Option<i64>, Option<i64>),
        stream: Stream,
        status: Option<RunStatus>,
        text: Option<String>,
        data: Option<EventData>,
    ) -> Result<u64> {
        let (group_seq, run_seq) = at;
        let id = self.next_event_id;
        transaction.execute(
            "INSERT INTO events (id, type, group_seq, run_seq, stream, status, data, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                id as i64,
                kind.as_str(),
                group_seq,
                run_seq,
                stream as i64,
                status.map(RunStatus::as_str),
                text,
                self.now
            ],
        )?;
        // Paired with the stream's check that each id it sends exceeds its
        // cursor: ids only grow within a transaction (invariant 2).
        if let Some(connection) = transaction.sqlite_connection() {
            assert_eq!(
                connection.last_insert_rowid(),
                id as i64,
                "event id assigned"
            );
        }
        self.next_event_id = id + 1;
        let key = match (stream, group_seq, run_seq) {
            (Stream::Group, Some(group_seq), _) => Some(StreamKey::Group(group_seq)),
            (Stream::Run, _, Some(run_seq)) => Some(StreamKey::Run(run_seq)),
            _ => None,
        };
        if let Some(key) = key {
            self.keys.push(key);
            if let Some(data) = data {
                self.events.push(CommittedEvent {
                    id,
                    key,
                    event: Event::new(Some(id), data),
                });
            }
        }
        Ok(id)
    }
}

/// Applies one op; answers its error when it failed (the caller then rolls
/// back its savepoint, or fails the whole batch for an op without one) and
/// the completion that answers its caller.
fn apply(transaction: &Sql<'_>, batch: &mut Batch, op: Op) -> (Option<Error>, Completion) {
    match op {
        Op::CreateGroup { group, once, reply } => done(
            keyed(transaction, batch, once, |transaction, batch| {
                create_group(transaction, batch, group)?.to_model()
            }),
            reply,
        ),
        Op::AddRuns {
            group_id,
            runs,
            once,
            reply,
        } => done(
            keyed(transaction, batch, once, |transaction, batch| {
                add_runs(transaction, batch, &group_id, runs)?.to_model()
            }),
            reply,
        ),
        Op::CreateRun { run, once, reply } => done(
            keyed(transaction, batch, once, |transaction, batch| {
                create_run(transaction, batch, run)?.to_model()
            }),
            reply,
        ),
        Op::Claim {
            max,
            budgets,
            limits,
            reply,
        } => done(claim(transaction, batch, max, budgets, &limits), reply),
        Op::Finish {
            run_seq,
            finish,
            reply,
        } => done(finish_run(transaction, batch, run_seq, finish), reply),
        Op::Warn {
            run_seq,
            warning,
            reply,
        } => done(warn(transaction, batch, run_seq, &warning), reply),
        Op::StartAttempt {
            run_seq,
            attempt,
            reply,
        } => done(start_attempt(transaction, batch, run_seq, attempt), reply),
        Op::Progress {
            run_seq,
            data,
            reply,
        } => done(progress(transaction, batch, run_seq, data), reply),
        Op::CancelRun { run_id, reply } => done(cancel_run(transaction, batch, &run_id), reply),
        Op::RecordDelivery {
            seq,
            outcome,
            reply,
        } => done(record_delivery(transaction, batch, seq, &outcome), reply),
        Op::ClaimDeliveries {
            now,
            limit,
            hold_until,
            reply,
        } => done(claim_deliveries(transaction, now, limit, hold_until), reply),
        Op::CreateSchedule { schedule, reply } => {
            done(create_schedule(transaction, batch, schedule), reply)
        }
        Op::ChangeSchedule { id, change, reply } => {
            done(change_schedule(transaction, batch, &id, change), reply)
        }
        Op::FireSchedules { fires, reply } => {
            done(fire_schedules(transaction, batch, fires), reply)
        }
        Op::Prune {
            policy,
            rows_max,
            pages_max,
            reply,
        } => done(
            prune::prune(transaction, batch, policy, rows_max, pages_max),
            reply,
        ),
        Op::PutRecord {
            key,
            body,
            write,
            reply,
        } => done(put_record(transaction, batch, &key, &body, write), reply),
        Op::DeleteRecord { key, reply } => done(delete_record(transaction, &key), reply),
        Op::RememberKey {
            record,
            body,
            reply,
        } => done(remember_key(transaction, batch, &record, &body), reply),
        Op::CancelGroup { group_id, reply } => {
            done(cancel_group(transaction, batch, &group_id), reply)
        }
        Op::Recover { reply } => done(super::recovery::recover(transaction, batch), reply),
    }
}

/// Pairs an op's result with its reply, to be sent after the commit.
fn done<T: Send + 'static>(result: Result<T>, reply: Reply<T>) -> (Option<Error>, Completion) {
    let failure = result.as_ref().err().cloned();
    let ok = failure.is_none();
    let completion: Completion = Box::new(move |commit_error| match commit_error {
        Some(error) if ok => reply(Err(error.clone())),
        _ => reply(result),
    });
    (failure, completion)
}

/// The run whose `column` (`seq` or `id`) is `key`.
fn run_where(
    transaction: &Sql<'_>,
    column: &str,
    key: &dyn Param,
    shown: String,
) -> Result<RunRow> {
    transaction
        .query_row(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN groups g ON g.seq = r.group_seq \
             WHERE r.{column} = ?1"
            ),
            &[key],
            RunRow::from_row,
        )?
        .ok_or(Error::NotFound {
            kind: "run",
            id: shown,
        })
}

fn run_by_seq(transaction: &Sql<'_>, run_seq: i64) -> Result<RunRow> {
    run_where(transaction, "seq", &run_seq, run_seq.to_string())
}

fn run_by_id(transaction: &Sql<'_>, run_id: &str) -> Result<RunRow> {
    run_where(transaction, "id", &run_id, run_id.to_string())
}
