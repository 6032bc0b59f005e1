//! The store: the only module that speaks SQL.
//!
//! Owns the SQLite file, its pragmas and migrations (`schema.sql`), the
//! writer thread that commits every change (`writer`), the read pool
//! (`read`), crash recovery (`recovery`) and the migrations of stored
//! rows (`migrate`). It knows the model (rows are stored in the model's
//! own form, events as the model's [`EventData`](crate::model::EventData))
//! but never a face, the server, the engine or the scheduler; everything
//! above reaches SQLite through the narrow interface here, so a second
//! backend could be one more module.

mod checkpoint;
mod migrate;
mod packed;
pub mod postgres;
mod read;
mod recovery;
pub(crate) mod sql;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, OpenFlags};

pub use packed::FinishOutput;
use sql::{params, Row, Sql};
pub use sql::{Dialect, Value};
use writer::WriteConnection;

pub use read::{
    list_groups_query, list_runs_query, sqlite_group_events, DueDelivery, EventRow, GroupRunRow,
    ListFilter, ListPage, StoredTurn,
};
pub use recovery::Recovered;
pub use writer::{
    AddedRuns, ClaimedRun, CommitNotice, CommittedEvent, DeliveryOutcome, Finish, Fire,
    IdempotencyRecord, Keyed, NewGroup, NewRun, NewSchedule, Once, Op, PrunePolicy, Pruned,
    RecordKey, RecordRow, RecordWrite, Reply, RunCancel, ScheduleChange, StreamKey, Writer,
};

use crate::limits::READ_CONNECTION_WAIT_MS_MAX;
use crate::model::{
    Group, GroupStatus, JsonObject, Output, Run, RunCounts, RunError, RunStatus, Timestamp, Warning,
};

pub use migrate::SCHEMA_VERSION;

/// What can go wrong in the store. Clone, because one failed commit is
/// answered to every caller whose request was in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Another process holds the write lock past the busy timeout.
    #[error("database busy: {0}")]
    Busy(String),
    /// The disk or the database's page limit is full.
    #[error("database full: {0}")]
    Full(String),
    /// The database could not be opened or prepared.
    #[error("cannot open database {path}: {message}")]
    Open { path: PathBuf, message: String },
    /// The writer thread has stopped (shutdown, or it died).
    #[error("the store is closed")]
    Closed,
    /// Every pooled read connection stayed in use past the wait limit.
    #[error(
        "every read connection stayed in use for {waited_ms} ms (READ_CONNECTION_WAIT_MS_MAX)"
    )]
    ReadersBusy { waited_ms: u64 },
    /// A row or id that an operation needs is not there.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// A record inserted under an id that has one.
    #[error("{kind} {id} exists")]
    Exists { kind: String, id: String },
    /// An Idempotency-Key seen before with another request (spec 10.5).
    #[error("Idempotency-Key reused with a different request")]
    IdempotencyConflict,
    /// A stored value this taskyard does not know (written by a newer one,
    /// or by hand), named with its table, row and text, so that it can be
    /// found and fixed; never read as some other value.
    #[error("{table} row {row} has {column} '{value}', which this taskyard does not know")]
    UnknownValue {
        table: &'static str,
        /// `seq N`, with the row's id when it was read.
        row: String,
        column: &'static str,
        value: String,
    },
    /// Any other SQLite failure, or a stored value that does not decode.
    #[error("database error: {0}")]
    Sqlite(String),
    /// The database was made by a newer taskyard: its schema `version` is
    /// past the `supported` one, and reading it could misread its rows.
    #[error("database schema version {version} is newer than this taskyard ({supported})")]
    SchemaNewer { version: i64, supported: i64 },
    /// Any other PostgreSQL failure, with the server's SQLSTATE.
    #[error("PostgreSQL error: {0}")]
    Postgres(String),
    /// The database server cannot be reached or dropped the connection
    /// (PostgreSQL restarting, a network fault): worth a retry later.
    #[error("database unreachable: {0}")]
    Unreachable(String),
}

impl Error {
    /// A run's status this taskyard does not know.
    pub(crate) fn unknown_run_status(seq: i64, id: Option<&str>, value: &str) -> Error {
        Error::UnknownValue {
            table: "runs",
            row: match id {
                Some(id) => format!("seq {seq} ({id})"),
                None => format!("seq {seq}"),
            },
            column: "status",
            value: value.to_string(),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode;
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                Error::Busy(error.to_string())
            }
            Some(ErrorCode::DiskFull) => Error::Full(error.to_string()),
            _ => Error::Sqlite(error.to_string()),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Error {
        Error::Sqlite(format!("stored JSON does not decode: {error}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// WAL with `synchronous=NORMAL`: a commit survives a process crash;
    /// a power loss may take back the last commits, never corrupt the file.
    #[default]
    Normal,
    /// `synchronous=FULL`: a commit is on disk before it is acknowledged,
    /// also across a power loss.
    Full,
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct Options {
    pub synchronous: Synchronous,
    /// How long a write waits for another process's lock before `Busy`.
    pub busy_timeout: Duration,
    /// Read-only connections in the pool.
    pub read_connections: usize,
    /// Largest size the database file may grow to, in bytes (an edge
    /// device's budget); past it writes fail with `Full`. `None`: no cap.
    pub database_bytes_max: Option<u64>,
    /// How event ids are assigned on PostgreSQL; SQLite has one writer and
    /// ignores it.
    pub event_ids: EventIds,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            database_bytes_max: None,
            event_ids: EventIds::Serialised,
        }
    }
}

/// How a PostgreSQL writer numbers the events it writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EventIds {
    /// Under the `event_ids` row lock, held to the commit, so that ids
    /// become visible in id order across nodes (schema.postgres.sql says
    /// why). The default and the only correct choice.
    #[default]
    Serialised,
    /// From a plain sequence, taken outside the lock, as a `BIGSERIAL`
    /// would: transactions then commit out of id order and a reader that
    /// resumes from its cursor can skip an event. Wrong on purpose: it
    /// exists so that `tests/pg_nodes.rs` can show its cursor test fails
    /// without the serialised scheme. Never use it for data you keep.
    PlainSequence,
}

/// Where the database is: a SQLite file (the embedded default) or a
/// PostgreSQL database shared by several nodes (issue 17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL, as libpq takes it.
    Postgres(String),
}

impl Location {
    /// A `--db` value or `TASKYARD_DB`: a `postgres://` (or
    /// `postgresql://`) URL, a `sqlite:` URL (`sqlite:PATH` or
    /// `sqlite://PATH`), or else a file path.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Location::Postgres(text.to_string());
        }
        let path = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .unwrap_or(text);
        Location::Sqlite(PathBuf::from(path))
    }

    /// The SQLite file, if it is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }
}

impl std::fmt::Display for Location {
    /// The file, or the URL without its password: it goes to logs.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(formatter, "{}", path.display()),
            Location::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let credentials = &url[scheme + 3..at];
                    match credentials.split_once(':') {
                        Some((user, _)) => {
                            write!(formatter, "{}{user}:***{}", &url[..scheme + 3], &url[at..])
                        }
                        None => write!(formatter, "{url}"),
                    }
                }
                _ => write!(formatter, "{url}"),
            },
        }
    }
}

impl<P: AsRef<Path>> From<P> for Location {
    /// A path, or a `postgres://` URL given where a path was (a string).
    fn from(path: P) -> Location {
        match path.as_ref().to_str() {
            Some(text) => Location::parse(text),
            None => Location::Sqlite(path.as_ref().to_path_buf()),
        }
    }
}

/// An open database: the writer handle and the read pool.
pub struct Store {
    pub writer: Writer,
    readers: Readers,
    location: Location,
    /// SQLite's; dropped after the writer (fields drop in order), so that
    /// it can copy the writer's last frames.
    _checkpointer: Option<checkpoint::Checkpointer>,
    /// PostgreSQL's: other nodes' commits, heard.
    _listener: Option<postgres::Listener>,
}

/// The read connections of either backend (which also says which backend
/// a store is).
enum Readers {
    Sqlite(ReadPool<rusqlite::Connection>),
    Postgres(ReadPool<postgres::Connection>),
}

impl Store {
    /// Opens the database at `location` (creating a SQLite file if
    /// needed), applies the schema and migrations, starts the writer
    /// thread and recovers runs a crash left running, as the writer's
    /// first op. `on_commit` runs on the writer thread after each commit
    /// (on PostgreSQL also on the listener's, for other nodes' commits),
    /// before any caller is answered.
    pub fn open(
        location: &Location,
        options: &Options,
        on_commit: Box<dyn Fn(&CommitNotice) + Send + Sync>,
    ) -> Result<(Store, Recovered)> {
        let store = match location {
            Location::Sqlite(path) => Store::open_sqlite(path, options, on_commit)?,
            Location::Postgres(url) => Store::open_postgres(url, options, on_commit)?,
        };
        let recovered = store.writer.call(|reply| Op::Recover { reply })?;
        Ok((store, recovered))
    }

    fn open_sqlite(
        path: &Path,
        options: &Options,
        on_commit: Box<dyn Fn(&CommitNotice) + Send + Sync>,
    ) -> Result<Store> {
        let open_error = |message: String| Error::Open {
            path: path.to_path_buf(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(open_error(format!(
                    "directory {} does not exist",
                    parent.display()
                )));
            }
        }
        let mut connection = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        // Every op's statements stay prepared (about thirty with the
        // claim's variants and the savepoints), past rusqlite's default of
        // 16: a statement evicted is parsed again on its next use.
        connection.set_prepared_statement_cache_capacity(READ_STATEMENTS_CACHED);
        let page_cap = configure_write_connection(&connection, options)
            .map_err(|e| open_error(e.to_string()))?;
        migrate::migrate(&mut connection).map_err(|e| open_error(e.to_string()))?;
        let readers = ReadPool::open_sqlite(path, options)?;
        let checkpointer = checkpoint::Checkpointer::start(path, options.busy_timeout)?;
        let notify = checkpointer.notify();
        let writer = Writer::start(
            EventIds::Serialised,
            WriteConnection::Sqlite(connection),
            page_cap,
            Box::new(move |notice: &CommitNotice| {
                on_commit(notice);
                notify();
            }),
        )?;
        Ok(Store {
            writer,
            readers: Readers::Sqlite(readers),
            location: Location::Sqlite(path.to_path_buf()),
            _checkpointer: Some(checkpointer),
            _listener: None,
        })
    }

    /// PostgreSQL: the schema applied under its advisory lock, a
    /// dedicated writer connection and a pool of readers.
    fn open_postgres(
        url: &str,
        options: &Options,
        on_commit: Box<dyn Fn(&CommitNotice) + Send + Sync>,
    ) -> Result<Store> {
        let location = Location::Postgres(url.to_string());
        let open_error = |error: Error| Error::Open {
            path: PathBuf::from(location.to_string()),
            message: error.to_string(),
        };
        let config = postgres::config(url, options).map_err(open_error)?;
        postgres::migrate_with(&config).map_err(open_error)?;
        if options.event_ids == EventIds::PlainSequence {
            postgres::create_plain_sequence(&config).map_err(open_error)?;
        }
        let writer =
            postgres::Connection::open(&config, options.busy_timeout).map_err(open_error)?;
        let mut idle = Vec::new();
        for _ in 0..options.read_connections.max(1) {
            idle.push(
                postgres::Connection::open(&config, options.busy_timeout).map_err(open_error)?,
            );
        }
        let on_commit: postgres::Publish = Arc::from(on_commit);
        let listener = postgres::Listener::start(config, on_commit.clone())
            .map_err(|e| Error::Postgres(format!("cannot start the listener thread: {e}")))?;
        let writer = Writer::start(
            options.event_ids,
            WriteConnection::Postgres(writer),
            None,
            Box::new(move |notice: &CommitNotice| on_commit(notice)),
        )?;
        Ok(Store {
            writer,
            readers: Readers::Postgres(ReadPool::new(idle)),
            location,
            _checkpointer: None,
            _listener: Some(listener),
        })
    }

    /// Where the database is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Runs `read` on a pooled read connection, in one snapshot on
    /// PostgreSQL (on SQLite `read.rs` begins one where it takes more than
    /// one statement).
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
        match &self.readers {
            Readers::Sqlite(pool) => pool.with(|connection| read(&Sql::sqlite(connection))),
            Readers::Postgres(pool) => pool.with(|connection| connection.read(read)),
        }
    }
}

/// Answers the page cap set for `database_bytes_max`, if any.
fn configure_write_connection(connection: &Connection, options: &Options) -> Result<Option<u64>> {
    connection.busy_timeout(options.busy_timeout)?;
    // Read each pragma back: SQLite ignores a misspelt pragma silently.
    let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Sqlite(format!(
            "journal_mode is {mode}, WAL is required"
        )));
    }
    let synchronous = match options.synchronous {
        Synchronous::Normal => 1,
        Synchronous::Full => 2,
    };
    connection.execute_batch(&format!("PRAGMA synchronous = {synchronous}"))?;
    let read_back: i64 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    if read_back != synchronous {
        return Err(Error::Sqlite(format!(
            "synchronous is {read_back}, expected {synchronous}"
        )));
    }
    connection.execute_batch("PRAGMA foreign_keys = ON")?;
    // Checkpoints are the checkpointer thread's; the writer only checkpoints
    // past this far mark, to bound the WAL (see checkpoint.rs).
    let pages: i64 = connection.query_row(
        &format!(
            "PRAGMA wal_autocheckpoint = {}",
            checkpoint::WRITER_CHECKPOINT_PAGES
        ),
        [],
        |row| row.get(0),
    )?;
    if pages != checkpoint::WRITER_CHECKPOINT_PAGES {
        return Err(Error::Sqlite(format!(
            "wal_autocheckpoint is {pages}, expected {}",
            checkpoint::WRITER_CHECKPOINT_PAGES
        )));
    }
    if let Some(bytes_max) = options.database_bytes_max {
        let page_size: u64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let pages_max = (bytes_max / page_size.max(1)).max(1);
        // SQLite answers the cap in force: never below the pages in use,
        // so a database already over the budget takes no new pages.
        let _pages_in_force: u64 =
            connection.query_row(&format!("PRAGMA max_page_count = {pages_max}"), [], |row| {
                row.get(0)
            })?;
        return Ok(Some(pages_max));
    }
    Ok(None)
}

/// Prepared statements each read connection keeps.
const READ_STATEMENTS_CACHED: usize = 64;

/// A small pool of read-only connections. WAL lets them read beside the
/// writer; each sees only committed transactions (DESIGN invariant 4).
struct ReadPool<C> {
    idle: Mutex<Vec<C>>,
    returned: Condvar,
}

impl ReadPool<Connection> {
    fn open_sqlite(path: &Path, options: &Options) -> Result<ReadPool<Connection>> {
        let mut idle = Vec::new();
        for _ in 0..options.read_connections.max(1) {
            let connection = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(|e| Error::Open {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            connection.busy_timeout(options.busy_timeout)?;
            // Every read statement and each list's variants (one per filter
            // combination, store/read.rs) stay prepared: about thirty, past
            // rusqlite's default of 16.
            connection.set_prepared_statement_cache_capacity(READ_STATEMENTS_CACHED);
            idle.push(connection);
        }
        Ok(ReadPool::new(idle))
    }
}

impl<C> ReadPool<C> {
    fn new(idle: Vec<C>) -> ReadPool<C> {
        ReadPool {
            idle: Mutex::new(idle),
            returned: Condvar::new(),
        }
    }

    /// Runs `read` on an idle connection, waiting for one at most
    /// `READ_CONNECTION_WAIT_MS_MAX`: a pool held by slow streams answers
    /// `ReadersBusy` instead of hanging every request behind them.
    fn with<T>(&self, read: impl FnOnce(&mut C) -> Result<T>) -> Result<T> {
        let deadline = Instant::now() + Duration::from_millis(READ_CONNECTION_WAIT_MS_MAX);
        let connection = {
            let mut idle = self.idle.lock();
            loop {
                if let Some(connection) = idle.pop() {
                    break connection;
                }
                if self.returned.wait_until(&mut idle, deadline).timed_out() {
                    match idle.pop() {
                        Some(connection) => break connection,
                        None => {
                            return Err(Error::ReadersBusy {
                                waited_ms: READ_CONNECTION_WAIT_MS_MAX,
                            })
                        }
                    }
                }
            }
        };
        // Give the connection back even if `read` panics, so one bad read
        // does not shrink the pool for everyone.
        struct Return<'a, C>(&'a ReadPool<C>, Option<C>);
        impl<C> Drop for Return<'_, C> {
            fn drop(&mut self) {
                if let Some(connection) = self.1.take() {
                    self.0.idle.lock().push(connection);
                    self.0.returned.notify_one();
                }
            }
        }
        let mut guard = Return(self, Some(connection));
        read(guard.1.as_mut().expect("held until drop"))
    }
}

/// A run as stored, with what the model needs to show it.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub seq: i64,
    pub id: String,
    pub group_id: Option<String>,
    pub group_seq: Option<i64>,
    pub cursor: i64,
    pub status: RunStatus,
    pub processor: String,
    pub metadata: Option<String>,
    pub error: Option<String>,
    pub warnings: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub created_at: i64,
    pub modified_at: i64,
}

/// The columns [`RunRow::from_row`] reads, for `SELECT` lists; the query
/// must join `groups g` on `r.group_seq`.
pub(crate) const RUN_COLUMNS: &str = "r.seq, r.id, g.id, r.group_seq, r.cursor, r.status, \
     r.processor, r.metadata, r.error, r.warnings, r.attempts, r.max_attempts, \
     r.created_at, r.modified_at";
/// How many columns `RUN_COLUMNS` names: the index of a column added after.
pub(crate) const RUN_COLUMNS_COUNT: usize = 14;

impl RunRow {
    pub(crate) fn from_row(row: &Row<'_>) -> Result<RunRow> {
        let seq: i64 = row.get(0)?;
        let id: String = row.get(1)?;
        let status: String = row.get(5)?;
        // Issue 11: an unknown status read as `failed`, silently.
        let Some(status) = RunStatus::parse(&status) else {
            return Err(Error::unknown_run_status(seq, Some(&id), &status));
        };
        Ok(RunRow {
            seq,
            id,
            group_id: row.get(2)?,
            group_seq: row.get(3)?,
            cursor: row.get(4)?,
            status,
            processor: row.get(6)?,
            metadata: row.get(7)?,
            error: row.get(8)?,
            warnings: row.get(9)?,
            attempts: row.get(10)?,
            max_attempts: row.get(11)?,
            created_at: row.get(12)?,
            modified_at: row.get(13)?,
        })
    }

    /// The run as the model has it.
    pub fn to_model(&self) -> Result<Run> {
        let metadata: Option<JsonObject> = parse_optional(&self.metadata)?;
        let error: Option<RunError> = parse_optional(&self.error)?;
        let warnings: Option<Vec<Warning>> = parse_optional(&self.warnings)?;
        Ok(Run {
            id: self.id.clone(),
            group_id: self.group_id.clone(),
            status: self.status,
            processor: self.processor.clone(),
            metadata,
            error,
            warnings,
            created_at: Timestamp(self.created_at),
            modified_at: Timestamp(self.modified_at),
        })
    }
}

fn parse_optional<T: serde::de::DeserializeOwned>(text: &Option<String>) -> Result<Option<T>> {
    match text {
        Some(text) => Ok(Some(serde_json::from_str(text)?)),
        None => Ok(None),
    }
}

/// A group as stored, counts included.
#[derive(Debug, Clone)]
pub struct GroupRow {
    pub seq: i64,
    pub id: String,
    pub metadata: Option<String>,
    pub created_at: i64,
    pub modified_at: i64,
    pub counts: RunCounts,
}

/// A stored output, read back as the model's.
pub fn parse_output(text: &str) -> Result<Output> {
    Ok(serde_json::from_str(text)?)
}

/// The columns [`GroupRow::from_row`] reads, in order.
pub(crate) const GROUP_COLUMNS: &str = "seq, id, metadata, created_at, modified_at, num_runs, \
     n_queued, n_running, n_cancelling, n_completed, n_failed, n_cancelled";

impl GroupRow {
    pub(crate) fn from_row(row: &Row<'_>) -> Result<GroupRow> {
        Ok(GroupRow {
            seq: row.get(0)?,
            id: row.get(1)?,
            metadata: row.get(2)?,
            created_at: row.get(3)?,
            modified_at: row.get(4)?,
            counts: RunCounts {
                num_runs: row.get(5)?,
                queued: row.get(6)?,
                running: row.get(7)?,
                cancelling: row.get(8)?,
                completed: row.get(9)?,
                failed: row.get(10)?,
                cancelled: row.get(11)?,
            },
        })
    }

    pub fn status(&self) -> GroupStatus {
        GroupStatus {
            counts: self.counts,
            modified_at: Timestamp(self.modified_at),
        }
    }

    pub fn to_model(&self) -> Result<Group> {
        Ok(Group {
            id: self.id.clone(),
            metadata: parse_optional(&self.metadata)?,
            created_at: Timestamp(self.created_at),
            status: self.status(),
        })
    }
}

impl Store {
    /// The kind (`run`, `group`) of a pruned id, if it was pruned.
    pub fn pruned(&self, id: &str) -> Result<Option<String>> {
        self.read(|connection| {
            connection.query_row(
                "SELECT kind FROM pruned WHERE id = ?1",
                params![id],
                |row| row.get(0),
            )
        })
    }
}

/// A schedule as stored.
#[derive(Debug, Clone)]
pub struct ScheduleRow {
    pub seq: i64,
    pub id: String,
    /// The model's `When`, as JSON.
    pub spec: String,
    pub processor: String,
    pub state: String,
    pub next_at: Option<i64>,
    pub fires: u32,
    pub created_at: i64,
    pub modified_at: i64,
}

/// The columns [`ScheduleRow::from_row`] reads, in order.
pub(crate) const SCHEDULE_COLUMNS: &str =
    "seq, id, spec, processor, state, next_at, fires, created_at, modified_at";

impl ScheduleRow {
    pub(crate) fn from_row(row: &Row<'_>) -> Result<ScheduleRow> {
        Ok(ScheduleRow {
            seq: row.get(0)?,
            id: row.get(1)?,
            spec: row.get(2)?,
            processor: row.get(3)?,
            state: row.get(4)?,
            next_at: row.get(5)?,
            fires: row.get(6)?,
            created_at: row.get(7)?,
            modified_at: row.get(8)?,
        })
    }

    pub fn to_model(&self) -> Result<crate::model::Schedule> {
        let state =
            crate::model::ScheduleState::parse(&self.state).ok_or_else(|| Error::UnknownValue {
                table: "schedules",
                row: format!("{} (seq {})", self.id, self.seq),
                column: "state",
                value: self.state.clone(),
            })?;
        Ok(crate::model::Schedule {
            id: self.id.clone(),
            when: serde_json::from_str(&self.spec)?,
            state,
            processor: self.processor.clone(),
            next_at: self
                .next_at
                .filter(|_| state == crate::model::ScheduleState::Active)
                .map(Timestamp),
            fires: self.fires,
            created_at: Timestamp(self.created_at),
            modified_at: Timestamp(self.modified_at),
        })
    }
}

/// Shared handle to the store for the layers above.
pub type SharedStore = Arc<Store>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_a_path_a_sqlite_url_or_a_postgres_url_shown_without_its_password() {
        assert_eq!(
            Location::parse("data/t.db"),
            Location::Sqlite(PathBuf::from("data/t.db"))
        );
        assert_eq!(
            Location::parse("sqlite:data/t.db"),
            Location::Sqlite(PathBuf::from("data/t.db"))
        );
        assert_eq!(
            Location::parse("sqlite:///var/t.db"),
            Location::Sqlite(PathBuf::from("/var/t.db"))
        );
        let url = "postgres://taskyard:s3cret@db.example:5432/taskyard";
        let location = Location::parse(url);
        assert_eq!(location, Location::Postgres(url.to_string()));
        assert_eq!(
            location.to_string(),
            "postgres://taskyard:***@db.example:5432/taskyard"
        );
        assert_eq!(
            Location::parse("postgresql://u@h/d").to_string(),
            "postgresql://u@h/d"
        );
        // A path given where a path is taken, as the tests and the library do.
        assert_eq!(
            Location::from(std::path::Path::new("x.db")),
            Location::Sqlite(PathBuf::from("x.db"))
        );
    }

    #[test]
    fn schema_applies_to_an_in_memory_database() {
        let mut connection = Connection::open_in_memory().expect("in-memory database");
        migrate::migrate(&mut connection).expect("schema applies");
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("user_version");
        assert_eq!(version, SCHEMA_VERSION);
        // A second open of the same database applies nothing twice.
        migrate::migrate(&mut connection).expect("migrations are idempotent");
    }
}
