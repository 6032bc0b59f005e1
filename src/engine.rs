//! The library API: [`Engine`], what the HTTP layer and the benchmarks use.
//!
//! Owns the checks every request passes (through `validate`), the mapping
//! from store rows to model objects, subscriptions to streams, and the
//! start and stop of the store, the hub and the scheduler. It holds no SQL
//! (the store does) and knows nothing of HTTP: its errors say what went
//! wrong, and the HTTP layer alone decides the status code.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::{Hub, Watcher};
use crate::limits::{RUNS_PER_REQUEST_MAX, STREAM_PAGE_ROWS_MAX};
use crate::model::{
    new_id, run_state_data, to_json, AddRuns, AddRunsResponse, ErrorObject, Event, EventType,
    Group, JsonObject, Output, Run, RunInput, RunResult, RunStatus, TaskSpec, GROUP_ID_PREFIX,
    RUN_ID_PREFIX,
};
use crate::processors::Registry;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::schema::SchemaCache;
pub use crate::store::Synchronous;
use crate::store::{
    self, CommitNotice, GroupRunRow, IdempotencyRecord, NewGroup, NewRun, Once, Op, Recovered,
    RunRow, Store, StreamKey,
};
use crate::validate::{self, FieldError, Loc};

/// What can go wrong in an engine call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is not valid; each problem names its field.
    #[error("invalid request: {}", validate::summarize(.0, "body"))]
    Invalid(Vec<FieldError>),
    /// No such run or group (or the id has the wrong shape).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The result of a run that failed.
    #[error("run {run_id} failed: {}", .error.message)]
    RunFailed {
        run_id: String,
        error: Box<ErrorObject>,
    },
    /// The result of a run that was cancelled.
    #[error("run {run_id} was cancelled")]
    RunCancelled { run_id: String },
    /// The wait for a result ended with the run still active.
    #[error("run {run_id} is still {status}")]
    Timeout { run_id: String, status: RunStatus },
    /// Cancel of a run that already completed or failed.
    #[error("run {run_id} is already {status}")]
    Conflict { run_id: String, status: RunStatus },
    /// An Idempotency-Key seen before with another request (spec 10.5).
    #[error("Idempotency-Key reused with a different request")]
    IdempotencyConflict,
    /// The database cannot take the write now (busy, full, closed); nothing
    /// was committed, so the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(store::Error),
    /// A bug or a corrupt database.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Error {
        match error {
            store::Error::NotFound { kind, id } => Error::NotFound { kind, id },
            store::Error::IdempotencyConflict => Error::IdempotencyConflict,
            store::Error::Busy(_)
            | store::Error::Full(_)
            | store::Error::Closed
            | store::Error::ReadersBusy { .. } => Error::Unavailable(error),
            store::Error::Open { .. }
            | store::Error::Sqlite(_)
            | store::Error::UnknownValue { .. } => Error::Internal(error.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to run an engine.
#[derive(Clone)]
pub struct Config {
    pub synchronous: Synchronous,
    /// How long a write waits for another process's lock.
    pub busy_timeout: Duration,
    /// Read-only connections in the store's pool.
    pub read_connections: usize,
    /// Largest size of the database file, in bytes; past it creates answer
    /// `Unavailable` (storage full) and reads keep working. `None`: no cap.
    pub database_bytes_max: Option<u64>,
    /// Worker threads of the scheduler.
    pub workers: usize,
    /// Time a cancelled running run gets before it is marked cancelled.
    pub cancel_grace: Duration,
    /// The processor names served, and what serves them.
    pub registry: Registry,
}

impl Default for Config {
    fn default() -> Config {
        let scheduler = SchedulerConfig::default();
        let store = store::Options::default();
        Config {
            synchronous: store.synchronous,
            busy_timeout: store.busy_timeout,
            read_connections: store.read_connections,
            database_bytes_max: store.database_bytes_max,
            workers: scheduler.workers,
            cancel_grace: scheduler.cancel_grace,
            registry: Registry::with_defaults(),
        }
    }
}

/// Which stream to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKind {
    /// A group's `task_group_status` events and its runs' terminal states
    /// (spec 4.6); resumable by event id.
    GroupEvents(String),
    /// A run's state, progress and final state (spec 4.3); not resumable.
    RunEvents(String),
}

/// Filters of the group runs stream (spec 4.7).
#[derive(Debug, Clone, Default)]
pub struct GroupRunsQuery {
    pub after: u64,
    pub status: Option<RunStatus>,
    pub include_input: bool,
    pub include_output: bool,
}

/// An Idempotency-Key and what identifies the request it came with
/// (spec 10.5): same key and fingerprint replay, another fingerprint is a
/// conflict.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    /// The request's method, path and canonical JSON body.
    pub fingerprint: String,
    /// The status of the first answer, replayed with it.
    pub status: u16,
}

/// What a create with an Idempotency-Key answered.
#[derive(Debug, Clone)]
pub enum Created<T> {
    /// Created now; `body` is the JSON answer, stored for replays.
    Fresh { value: T, body: String },
    /// Seen before: the first answer, byte for byte; nothing was created.
    Replayed { status: u16, body: String },
}

/// Filters of a list call (spec 10.3).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: usize,
    /// The id of the previous page's last item.
    pub after: Option<String>,
    pub status: Option<RunStatus>,
    pub taskgroup_id: Option<String>,
    pub is_active: Option<bool>,
}

/// One page of a list, newest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A taskyard engine: open it on a database file, then create groups and
/// runs; a pool of workers executes them. Clones share one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    hub: Arc<Hub>,
    scheduler: Scheduler,
    registry: Arc<Registry>,
    schemas: Arc<SchemaCache>,
    recovered: Recovered,
    stopped: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            self.scheduler.shutdown(Duration::ZERO);
            self.store.writer.stop();
        }
    }
}

impl Engine {
    /// Opens the database at `path` (created if missing), recovers runs a
    /// crash left running, and starts the workers.
    pub fn open(path: impl AsRef<Path>, config: Config) -> Result<Engine> {
        let hub = Arc::new(Hub::new(0));
        let publisher = hub.clone();
        let options = store::Options {
            synchronous: config.synchronous,
            busy_timeout: config.busy_timeout,
            read_connections: config.read_connections,
            database_bytes_max: config.database_bytes_max,
        };
        let (store, recovered) = Store::open(
            path.as_ref(),
            &options,
            Box::new(move |notice: &CommitNotice| publisher.publish(notice)),
        )
        .map_err(|error| match error {
            store::Error::Open { .. } => Error::Unavailable(error),
            other => Error::from(other),
        })?;
        let store = Arc::new(store);
        hub.publish(&CommitNotice {
            last_event_id: store.last_event_id()?,
            keys: Vec::new(),
            events: Vec::new(),
        });
        let registry = Arc::new(config.registry);
        let schemas = Arc::new(SchemaCache::default());
        let scheduler = Scheduler::start(
            store.clone(),
            registry.clone(),
            schemas.clone(),
            SchedulerConfig {
                workers: config.workers,
                cancel_grace: config.cancel_grace,
            },
        )
        .map_err(|e| Error::Internal(format!("cannot start the scheduler: {e}")))?;
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                hub,
                scheduler,
                registry,
                schemas,
                recovered,
                stopped: AtomicBool::new(false),
            }),
        })
    }

    /// What crash recovery changed when this engine opened.
    pub fn recovered(&self) -> Recovered {
        self.inner.recovered
    }

    /// The processor names this engine serves.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The largest committed event id.
    pub fn last_event_id(&self) -> u64 {
        self.inner.hub.last_event_id()
    }

    /// True when the database answers a read and the writer is alive.
    pub fn health(&self) -> Result<()> {
        if !self.inner.store.writer.is_alive() {
            return Err(Error::Unavailable(store::Error::Closed));
        }
        self.inner.store.ping()?;
        Ok(())
    }

    pub fn create_group(&self, metadata: Option<JsonObject>) -> Result<Group> {
        let row = fresh(self.create_group_with(metadata, None)?)?.0;
        Ok(row.to_model()?)
    }

    /// [`Engine::create_group`] at most once per Idempotency-Key.
    pub fn create_group_idempotent(
        &self,
        metadata: Option<JsonObject>,
        idempotency: Idempotency,
    ) -> Result<Created<Group>> {
        created(
            self.create_group_with(metadata, Some(idempotency))?,
            |row| Ok(row.to_model()?),
        )
    }

    fn create_group_with(
        &self,
        metadata: Option<JsonObject>,
        idempotency: Option<Idempotency>,
    ) -> Result<Once<store::GroupRow>> {
        if let Some(metadata) = &metadata {
            let errors = validate::check_metadata(metadata, false);
            if !errors.is_empty() {
                return Err(Error::Invalid(errors));
            }
        }
        let group = NewGroup {
            id: new_id(GROUP_ID_PREFIX),
            metadata: metadata.as_ref().map(to_json),
        };
        Ok(self.inner.store.writer.call(|reply| Op::CreateGroup {
            group,
            idempotency: idempotency.map(record),
            reply,
        })?)
    }

    /// Adds runs to a group, all or nothing (invariant 8): one invalid
    /// input rejects the request, with every problem named by its index.
    pub fn add_runs(&self, group_id: &str, request: AddRuns) -> Result<AddRunsResponse> {
        Ok(fresh(self.add_runs_with(group_id, request, None)?)?
            .0
            .to_model())
    }

    /// [`Engine::add_runs`] at most once per Idempotency-Key.
    pub fn add_runs_idempotent(
        &self,
        group_id: &str,
        request: AddRuns,
        idempotency: Idempotency,
    ) -> Result<Created<AddRunsResponse>> {
        created(
            self.add_runs_with(group_id, request, Some(idempotency))?,
            |added| Ok(added.to_model()),
        )
    }

    fn add_runs_with(
        &self,
        group_id: &str,
        request: AddRuns,
        idempotency: Option<Idempotency>,
    ) -> Result<Once<store::AddedRuns>> {
        if !crate::model::is_id_of(GROUP_ID_PREFIX, group_id) {
            return Err(not_found("group", group_id));
        }
        let count = request.inputs.len();
        if count == 0 || count > RUNS_PER_REQUEST_MAX {
            return Err(Error::Invalid(vec![FieldError::limit(
                vec![Loc::Key("inputs".into())],
                "RUNS_PER_REQUEST_MAX",
                RUNS_PER_REQUEST_MAX as u64,
                count as u64,
            )]));
        }
        let positions: Vec<usize> = (0..count).collect();
        let errors = self.check_add_runs(&request, &positions);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let runs = request
            .inputs
            .iter()
            .map(|input| self.new_run(input, request.default_task_spec.as_ref()))
            .collect();
        let added = self.inner.store.writer.call(|reply| Op::AddRuns {
            group_id: group_id.to_string(),
            runs,
            idempotency: idempotency.map(record),
            reply,
        })?;
        self.inner.scheduler.wake();
        Ok(added)
    }

    /// The semantic problems of an add-runs request (processors, metadata
    /// limits, schemas), each named by its input's position in the request
    /// (`positions[i]` for `request.inputs[i]`).
    pub fn check_add_runs(&self, request: &AddRuns, positions: &[usize]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(spec) = &request.default_task_spec {
            errors.extend(
                validate::check_task_spec(spec, &self.inner.schemas)
                    .into_iter()
                    .map(|e| e.prefixed(&[Loc::Key("default_task_spec".into())])),
            );
        }
        for (input, &index) in request.inputs.iter().zip(positions) {
            errors.extend(
                validate::check_run_input(
                    input,
                    request.default_task_spec.as_ref(),
                    &self.inner.registry,
                    &self.inner.schemas,
                )
                .into_iter()
                .map(|e| e.prefixed(&[Loc::Key("inputs".into()), Loc::Index(index)])),
            );
        }
        errors
    }

    /// The semantic problems of a run input (see [`Engine::check_add_runs`]).
    pub fn check_run_input(&self, input: &RunInput) -> Vec<FieldError> {
        validate::check_run_input(input, None, &self.inner.registry, &self.inner.schemas)
    }

    /// Creates a standalone run (no group).
    pub fn create_run(&self, input: RunInput) -> Result<Run> {
        let row = fresh(self.create_run_with(input, None)?)?.0;
        Ok(row.to_model()?)
    }

    /// [`Engine::create_run`] at most once per Idempotency-Key.
    pub fn create_run_idempotent(
        &self,
        input: RunInput,
        idempotency: Idempotency,
    ) -> Result<Created<Run>> {
        created(self.create_run_with(input, Some(idempotency))?, |row| {
            Ok(row.to_model()?)
        })
    }

    fn create_run_with(
        &self,
        input: RunInput,
        idempotency: Option<Idempotency>,
    ) -> Result<Once<RunRow>> {
        let errors = self.check_run_input(&input);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let run = self.new_run(&input, None);
        let row = self.inner.store.writer.call(|reply| Op::CreateRun {
            run,
            idempotency: idempotency.map(record),
            reply,
        })?;
        self.inner.scheduler.wake();
        Ok(row)
    }

    /// Turns a checked input into the row the store writes.
    fn new_run(&self, input: &RunInput, default_spec: Option<&TaskSpec>) -> NewRun {
        let auto = TaskSpec::auto();
        let (spec, from_default) = match (&input.task_spec, default_spec) {
            (Some(spec), _) => (spec, false),
            (None, Some(spec)) => (spec, true),
            (None, None) => (&auto, false),
        };
        let config = self.inner.registry.get(&input.processor);
        let warnings: Vec<_> = [
            validate::input_warning(input, spec, &self.inner.schemas),
            validate::spec_warning(spec),
        ]
        .into_iter()
        .flatten()
        .collect();
        NewRun {
            id: new_id(RUN_ID_PREFIX),
            processor: input.processor.clone(),
            request: to_json(input),
            task_spec: to_json(spec),
            default_spec: from_default,
            metadata: input.metadata.as_ref().map(to_json),
            enable_events: input
                .enable_events
                .unwrap_or_else(|| config.is_some_and(|c| c.enable_events_default)),
            max_attempts: config.map_or(crate::limits::MAX_ATTEMPTS_DEFAULT, |c| c.max_attempts),
            warnings: (!warnings.is_empty()).then(|| to_json(&warnings)),
        }
    }

    fn run_row(&self, run_id: &str) -> Result<RunRow> {
        if !crate::model::is_id_of(RUN_ID_PREFIX, run_id) {
            return Err(not_found("run", run_id));
        }
        self.inner
            .store
            .run(run_id)?
            .ok_or_else(|| not_found("run", run_id))
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        Ok(self.run_row(run_id)?.to_model()?)
    }

    /// A run of a group; not found also when the run is in another group.
    pub fn get_group_run(&self, group_id: &str, run_id: &str) -> Result<Run> {
        let row = self.run_row(run_id)?;
        if row.group_id.as_deref() != Some(group_id) {
            return Err(not_found("run", run_id));
        }
        Ok(row.to_model()?)
    }

    /// The run's input as given, plus the group default as `task_spec` when
    /// the run had none (spec 2.2 choice).
    pub fn get_run_input(&self, run_id: &str) -> Result<RunInput> {
        if !crate::model::is_id_of(RUN_ID_PREFIX, run_id) {
            return Err(not_found("run", run_id));
        }
        let (_, request, task_spec, from_default) = self
            .inner
            .store
            .run_request(run_id)?
            .ok_or_else(|| not_found("run", run_id))?;
        let mut input: RunInput = serde_json::from_str(&request)
            .map_err(|e| Error::Internal(format!("stored input does not decode: {e}")))?;
        if from_default {
            input.task_spec = Some(
                serde_json::from_str(&task_spec)
                    .map_err(|e| Error::Internal(format!("stored spec does not decode: {e}")))?,
            );
        }
        Ok(input)
    }

    pub fn get_group(&self, group_id: &str) -> Result<Group> {
        if !crate::model::is_id_of(GROUP_ID_PREFIX, group_id) {
            return Err(not_found("group", group_id));
        }
        let row = self
            .inner
            .store
            .group(group_id)?
            .ok_or_else(|| not_found("group", group_id))?;
        Ok(row.to_model()?)
    }

    /// Waits up to `timeout` for the run to finish. A completed run gives
    /// its result; a failed or cancelled one an error; a run still active
    /// when the wait ends gives [`Error::Timeout`].
    pub fn wait_for_result(&self, run_id: &str, timeout: Duration) -> Result<RunResult> {
        let row = self.run_row(run_id)?;
        let deadline = Instant::now() + timeout;
        let watcher = self.inner.hub.watch(StreamKey::Run(row.seq));
        loop {
            let seen = watcher.version();
            let (row, output) = self
                .inner
                .store
                .run_output(run_id)?
                .ok_or_else(|| not_found("run", run_id))?;
            match row.status {
                RunStatus::Completed => {
                    let output: Output = serde_json::from_str(output.as_deref().unwrap_or(""))
                        .map_err(|e| Error::Internal(format!("stored output: {e}")))?;
                    return Ok(RunResult {
                        run: row.to_model()?,
                        output,
                    });
                }
                RunStatus::Failed => {
                    let run = row.to_model()?;
                    return Err(Error::RunFailed {
                        run_id: run.run_id,
                        error: Box::new(
                            run.error
                                .unwrap_or_else(|| ErrorObject::new("run failed", None)),
                        ),
                    });
                }
                RunStatus::Cancelled => {
                    return Err(Error::RunCancelled {
                        run_id: run_id.to_string(),
                    })
                }
                status if Instant::now() >= deadline => {
                    return Err(Error::Timeout {
                        run_id: run_id.to_string(),
                        status,
                    })
                }
                _ if watcher.is_closed() => {
                    return Err(Error::Unavailable(store::Error::Closed));
                }
                _ => {
                    watcher.wait(seen, deadline);
                }
            }
        }
    }

    /// Cancels a run (spec 10.1): a queued run at once, a running one via
    /// `cancelling`. A completed or failed run is a conflict.
    pub fn cancel_run(&self, run_id: &str) -> Result<Run> {
        if !crate::model::is_id_of(RUN_ID_PREFIX, run_id) {
            return Err(not_found("run", run_id));
        }
        let cancel = self.inner.store.writer.call(|reply| Op::CancelRun {
            run_id: run_id.to_string(),
            reply,
        })?;
        if matches!(cancel.before, RunStatus::Completed | RunStatus::Failed) {
            return Err(Error::Conflict {
                run_id: run_id.to_string(),
                status: cancel.before,
            });
        }
        if cancel.run.status == RunStatus::Cancelling {
            self.inner.scheduler.cancel(vec![cancel.run.seq]);
        }
        Ok(cancel.run.to_model()?)
    }

    /// Cancels every active run of a group in one transaction (spec 10.2).
    pub fn cancel_group(&self, group_id: &str) -> Result<Group> {
        if !crate::model::is_id_of(GROUP_ID_PREFIX, group_id) {
            return Err(not_found("group", group_id));
        }
        let (group, cancelling) = self.inner.store.writer.call(|reply| Op::CancelGroup {
            group_id: group_id.to_string(),
            reply,
        })?;
        self.inner.scheduler.cancel(cancelling);
        Ok(group.to_model()?)
    }

    /// Follows a stream from just after `after` (0: from the start) for at
    /// most `timeout`.
    pub fn subscribe(
        &self,
        stream: StreamKind,
        after: u64,
        timeout: Duration,
    ) -> Result<Subscription> {
        let deadline = Instant::now() + timeout;
        let (key, state) = match &stream {
            StreamKind::GroupEvents(group_id) => {
                let group = self.get_group_row(group_id)?;
                (
                    StreamKey::Group(group.seq),
                    Following::Group {
                        seq: group.seq,
                        covered: after,
                        active: None,
                        status_seen: 0,
                    },
                )
            }
            StreamKind::RunEvents(run_id) => {
                let run = self.run_row(run_id)?;
                (
                    StreamKey::Run(run.seq),
                    Following::Run {
                        seq: run.seq,
                        started: false,
                    },
                )
            }
        };
        Ok(Subscription {
            store: self.inner.store.clone(),
            watcher: self.inner.hub.watch(key),
            following: state,
            cursor: after,
            deadline,
            buffer: VecDeque::new(),
            ended: false,
        })
    }

    fn get_group_row(&self, group_id: &str) -> Result<store::GroupRow> {
        if !crate::model::is_id_of(GROUP_ID_PREFIX, group_id) {
            return Err(not_found("group", group_id));
        }
        self.inner
            .store
            .group(group_id)?
            .ok_or_else(|| not_found("group", group_id))
    }

    /// The group runs stream (spec 4.7): one `task_run.state` event per run
    /// whose cursor is above `query.after`, in the order the runs were
    /// added, from one snapshot. `each` gets each event; answering false
    /// stops early.
    pub fn group_runs(
        &self,
        group_id: &str,
        query: &GroupRunsQuery,
        mut each: impl FnMut(Event) -> bool,
    ) -> Result<()> {
        let group = self.get_group_row(group_id)?;
        let mut failure = None;
        self.inner.store.group_runs(
            group.seq,
            query.after,
            query.status,
            query.include_input,
            query.include_output,
            |row: GroupRunRow| match group_run_event(&row) {
                Ok(event) => each(event),
                Err(error) => {
                    failure = Some(error);
                    false
                }
            },
        )?;
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// A page of runs, newest first (spec 10.3). `after` is the id of the
    /// previous page's last run; an unknown group gives an empty page.
    pub fn list_runs(&self, query: &ListQuery) -> Result<Page<Run>> {
        let mut filter = store::ListFilter {
            limit: query.limit,
            status: query.status,
            ..store::ListFilter::default()
        };
        if let Some(after) = &query.after {
            filter.before_id = Some(list_cursor(RUN_ID_PREFIX, after)?);
        }
        if let Some(group_id) = &query.taskgroup_id {
            match self.inner.store.seq_of("groups", group_id)? {
                Some(seq) => filter.group_seq = Some(seq),
                None => {
                    return Ok(Page {
                        data: Vec::new(),
                        next_cursor: None,
                    })
                }
            }
        }
        let page = self.inner.store.list_runs(&filter)?;
        let data = page
            .items
            .iter()
            .map(RunRow::to_model)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = page
            .more
            .then(|| data.last().map(|run| run.run_id.clone()))
            .flatten();
        Ok(Page { data, next_cursor })
    }

    /// A page of groups, newest first (spec 10.3).
    pub fn list_groups(&self, query: &ListQuery) -> Result<Page<Group>> {
        let mut filter = store::ListFilter {
            limit: query.limit,
            is_active: query.is_active,
            ..store::ListFilter::default()
        };
        if let Some(after) = &query.after {
            filter.before_id = Some(list_cursor(GROUP_ID_PREFIX, after)?);
        }
        let page = self.inner.store.list_groups(&filter)?;
        let data = page
            .items
            .iter()
            .map(store::GroupRow::to_model)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = page
            .more
            .then(|| data.last().map(|group| group.taskgroup_id.clone()))
            .flatten();
        Ok(Page { data, next_cursor })
    }

    /// Runs by status over the whole database (metrics).
    pub fn runs_by_status(&self) -> Result<Vec<(RunStatus, u64)>> {
        Ok(self.inner.store.runs_by_status()?)
    }

    /// Stops the engine: no new attempts start, running attempts get
    /// `grace` to finish, the rest go back to `queued`; then the writer
    /// drains and stops. Later calls fail with `Unavailable`.
    pub fn shutdown(&self, grace: Duration) {
        if !self.inner.stopped.swap(true, Ordering::SeqCst) {
            self.inner.scheduler.shutdown(grace);
            self.inner.store.writer.stop();
            self.inner.hub.close();
        }
    }
}

fn record(idempotency: Idempotency) -> Box<IdempotencyRecord> {
    Box::new(IdempotencyRecord {
        key: idempotency.key,
        fingerprint: idempotency.fingerprint,
        status: idempotency.status,
    })
}

/// The value of a create made without a key (never a replay).
fn fresh<T>(once: Once<T>) -> Result<(T, Option<String>)> {
    match once {
        Once::Fresh { value, body } => Ok((value, body)),
        Once::Replay { .. } => Err(Error::Internal("a replay without a key".into())),
    }
}

fn created<T, U>(once: Once<T>, model: impl FnOnce(T) -> Result<U>) -> Result<Created<U>> {
    match once {
        Once::Fresh {
            value,
            body: Some(body),
        } => Ok(Created::Fresh {
            value: model(value)?,
            body,
        }),
        Once::Fresh { body: None, .. } => {
            Err(Error::Internal("a keyed create without a body".into()))
        }
        Once::Replay { status, body } => Ok(Created::Replayed { status, body }),
    }
}

/// A list cursor: an id of the listed kind (spec 10.3). It need not exist:
/// ids sort by creation time, so any id is a position.
fn list_cursor(prefix: &str, id: &str) -> Result<String> {
    if crate::model::is_id_of(prefix, id) {
        Ok(id.to_string())
    } else {
        Err(Error::Invalid(vec![FieldError::value_error(
            vec![Loc::Key("after".into())],
            format!("'{id}' is not a cursor of this list (an id starting with {prefix})"),
        )]))
    }
}

fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}

fn group_run_event(row: &GroupRunRow) -> Result<Event> {
    let run = row.run.to_model()?;
    let input = match (&row.request, &row.default_task_spec) {
        (Some(request), Some(spec)) => Some(splice_task_spec(request, spec)),
        (Some(request), None) => Some(request.clone()),
        _ => None,
    };
    let id = row.run.cursor as u64;
    Ok(Event {
        id: Some(id),
        kind: EventType::RunState,
        data: run_state_data(Some(id), &run, input.as_deref(), row.output.as_deref()),
    })
}

/// Adds `"task_spec": spec` to a stored RunInput object that has none.
fn splice_task_spec(request: &str, spec: &str) -> String {
    let body = request.trim_end();
    match body.strip_suffix('}') {
        Some(head) => {
            let separator = if head.trim_end().ends_with('{') {
                ""
            } else {
                ","
            };
            format!("{head}{separator}\"task_spec\":{spec}}}")
        }
        None => request.to_string(),
    }
}

/// What a step of a subscription gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Event(Event),
    /// Nothing happened within the wait; the stream is still open (time for
    /// a keep-alive).
    Idle,
    /// The stream has ended.
    End,
}

enum Following {
    /// Every event of the group's stream up to `covered` has been taken;
    /// `active` is the group's state, when known. A group turns active or
    /// inactive only in a commit that also writes a `task_group_status`
    /// event, so the status events in the window keep it current.
    Group {
        seq: i64,
        covered: u64,
        active: Option<bool>,
        /// Every `task_group_status` event up to this id is reflected in
        /// `active` (the cursor may be past some: a resume from the future).
        status_seen: u64,
    },
    Run {
        seq: i64,
        started: bool,
    },
}

/// What a group stream's look at the hub's window found.
enum WindowStep {
    /// The window held the step: whether events were added, and the
    /// stream version they go with.
    Filled(bool, u64),
    /// The store must be read; the window's floor and version then.
    Behind { floor: u64, version: u64 },
}

/// Whether a `task_group_status` event says the group is active; `None`
/// when its data does not say (then the store is asked).
fn group_status_active(data: &str) -> Option<bool> {
    #[derive(serde::Deserialize)]
    struct Data {
        status: Status,
    }
    #[derive(serde::Deserialize)]
    struct Status {
        is_active: bool,
    }
    serde_json::from_str::<Data>(data)
        .ok()
        .map(|data| data.status.is_active)
}

/// A live stream: a blocking iterator over events, resumable by cursor.
pub struct Subscription {
    store: Arc<Store>,
    watcher: Watcher,
    following: Following,
    cursor: u64,
    deadline: Instant,
    buffer: VecDeque<Event>,
    ended: bool,
}

impl Subscription {
    /// The id of the last event read from the log (the resume cursor).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next event, waiting at most `wait`.
    pub fn next_within(&mut self, wait: Duration) -> Result<Next> {
        let until = (Instant::now() + wait).min(self.deadline);
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(Next::Event(event));
            }
            if self.ended || self.watcher.is_closed() {
                return Ok(Next::End);
            }
            let (added, seen) = self.fill()?;
            if added {
                continue;
            }
            if self.ended {
                return Ok(Next::End);
            }
            let now = Instant::now();
            if now >= self.deadline {
                self.ended = true;
                return Ok(Next::End);
            }
            if now >= until {
                return Ok(Next::Idle);
            }
            self.watcher.wait(seen, until);
        }
    }

    /// The next event without waiting and without reading the store:
    /// `None` when the next step needs the store (the subscription is
    /// behind the hub's window, or it follows a run, whose terminal state
    /// is read from its row). For a caller that must not block, such as
    /// the HTTP layer's fan-out thread; hand the subscription to a thread
    /// of its own for [`Subscription::next_within`] on `None`.
    pub fn next_in_memory(&mut self) -> Result<Option<Next>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(Some(Next::Event(event)));
            }
            if self.ended || self.watcher.is_closed() {
                return Ok(Some(Next::End));
            }
            if matches!(self.following, Following::Run { .. }) {
                return Ok(None);
            }
            match self.fill_from_window() {
                WindowStep::Behind { .. } => return Ok(None),
                WindowStep::Filled(true, _) => continue,
                WindowStep::Filled(false, _) if self.ended => return Ok(Some(Next::End)),
                WindowStep::Filled(false, _) if Instant::now() >= self.deadline => {
                    self.ended = true;
                    return Ok(Some(Next::End));
                }
                WindowStep::Filled(false, _) => return Ok(Some(Next::Idle)),
            }
        }
    }

    /// The followed stream's version: it moves with every commit that
    /// touches the stream. Read it before a step that found nothing; a
    /// version since moved means there may be more.
    pub fn version(&self) -> u64 {
        self.watcher.version()
    }

    /// Lists the calling thread to be unparked when the stream moves,
    /// without parking it: for a thread that waits on many subscriptions
    /// with its own `park`. Call it before reading [`Subscription::version`]
    /// so that no move is missed.
    pub fn listen(&self) {
        self.watcher.listen();
    }

    /// When the stream ends by its lifetime.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Takes what is new into the buffer: true when something was added,
    /// and the stream version to sleep on when nothing was.
    fn fill(&mut self) -> Result<(bool, u64)> {
        match self.following {
            Following::Group { .. } => match self.fill_from_window() {
                WindowStep::Filled(added, version) => Ok((added, version)),
                WindowStep::Behind { floor, version } => self.fill_from_store(floor, version),
            },
            Following::Run { seq, started } => self.fill_run(seq, started),
        }
    }

    /// A group stream's step from the hub's window, when the window holds
    /// it: it must hold both what is new and every status event since the
    /// group's state was last known.
    fn fill_from_window(&mut self) -> WindowStep {
        let Following::Group {
            ref mut covered,
            ref mut active,
            ref mut status_seen,
            ..
        } = self.following
        else {
            // Only group streams have a window.
            return WindowStep::Behind {
                floor: 0,
                version: self.watcher.version(),
            };
        };
        let recent = self.watcher.recent_after((*covered).min(*status_seen));
        if let (Some(events), Some(_)) = (recent.events, *active) {
            let mut added = false;
            for event in events {
                if event.kind == EventType::GroupStatus && event.id > *status_seen {
                    *active = group_status_active(&event.data);
                }
                *status_seen = (*status_seen).max(event.id);
                if event.id <= *covered {
                    continue;
                }
                // Paired with the writer's check that ids only grow.
                assert!(event.id > self.cursor, "stream ids must exceed the cursor");
                self.cursor = event.id;
                *covered = event.id;
                self.buffer.push_back(Event {
                    id: Some(event.id),
                    kind: event.kind,
                    data: String::from(&*event.data),
                });
                added = true;
            }
            match *active {
                Some(active) if !added => {
                    self.ended = !active;
                    return WindowStep::Filled(false, recent.version);
                }
                Some(_) => return WindowStep::Filled(true, recent.version),
                // A status event that did not decode: ask the store.
                None if added => return WindowStep::Filled(true, recent.version),
                None => {}
            }
        }
        WindowStep::Behind {
            floor: recent.floor,
            version: recent.version,
        }
    }

    /// A group stream's step from the store: behind the window, or the
    /// group's state is unknown. `floor` and `version` are the window's
    /// when it was found wanting.
    fn fill_from_store(&mut self, floor: u64, version: u64) -> Result<(bool, u64)> {
        let Following::Group {
            seq,
            ref mut covered,
            ref mut active,
            ref mut status_seen,
        } = self.following
        else {
            // Only group streams are read this way.
            return Ok((false, version));
        };
        let (rows, snapshot_active) =
            self.store
                .group_events(seq, *covered, STREAM_PAGE_ROWS_MAX)?;
        let full_page = rows.len() == STREAM_PAGE_ROWS_MAX;
        let added = !rows.is_empty();
        for row in rows {
            assert!(row.id > self.cursor, "stream ids must exceed the cursor");
            self.cursor = row.id;
            *covered = row.id;
            self.buffer.push_back(Event {
                id: Some(row.id),
                kind: row.kind,
                data: row.data,
            });
        }
        if full_page {
            *active = None;
        } else {
            // The snapshot began after `floor` was published and holds
            // every row of this stream up to its end: none lies between the
            // last one read and the floor, and the group's state is the
            // snapshot's, changed since only by status events above the
            // floor.
            *covered = (*covered).max(floor);
            *active = Some(snapshot_active);
            *status_seen = floor;
        }
        if !added {
            self.ended = !snapshot_active;
        }
        Ok((added, version))
    }

    /// A run stream's step: its new rows and its state, from the store.
    fn fill_run(&mut self, seq: i64, started: bool) -> Result<(bool, u64)> {
        let seen = self.watcher.version();
        let (rows, run, output) =
            self.store
                .run_progress(seq, self.cursor, STREAM_PAGE_ROWS_MAX)?;
        let run_model = run.to_model()?;
        let before = self.buffer.len();
        if !started {
            // Spec 4.3: the run as it is now, then every message so
            // far and only the latest stats.
            self.buffer.push_back(Event {
                id: None,
                kind: EventType::RunState,
                data: run_state_data(None, &run_model, None, None),
            });
            self.following = Following::Run { seq, started: true };
        }
        let latest_stats = rows
            .iter()
            .rposition(|row| row.kind == EventType::ProgressStats);
        let full_page = rows.len() == STREAM_PAGE_ROWS_MAX;
        for (index, row) in rows.into_iter().enumerate() {
            self.cursor = row.id;
            let old_stats =
                row.kind == EventType::ProgressStats && !started && Some(index) != latest_stats;
            if !old_stats {
                self.buffer.push_back(Event {
                    id: None,
                    kind: row.kind,
                    data: row.data,
                });
            }
        }
        if run.status.is_terminal() && !full_page {
            let output = output.filter(|_| run.status == RunStatus::Completed);
            self.buffer.push_back(Event {
                id: None,
                kind: EventType::RunState,
                data: run_state_data(None, &run_model, None, output.as_deref()),
            });
            self.ended = true;
        }
        Ok((self.buffer.len() > before, seen))
    }
}

impl Iterator for Subscription {
    type Item = Result<Event>;

    /// Blocks until the next event; `None` once the stream has ended.
    fn next(&mut self) -> Option<Result<Event>> {
        loop {
            let wait = self.deadline.saturating_duration_since(Instant::now());
            match self.next_within(wait.max(Duration::from_millis(1))) {
                Ok(Next::Event(event)) => return Some(Ok(event)),
                Ok(Next::Idle) => continue,
                Ok(Next::End) => return None,
                Err(error) => {
                    self.ended = true;
                    return Some(Err(error));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_task_spec_adds_the_key() {
        assert_eq!(
            splice_task_spec(r#"{"input":"x"}"#, r#"{"output_schema":"t"}"#),
            r#"{"input":"x","task_spec":{"output_schema":"t"}}"#
        );
        assert_eq!(splice_task_spec("{}", "1"), r#"{"task_spec":1}"#);
    }
}
