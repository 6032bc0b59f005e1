//! The PostgreSQL backend of the store (issue 17): connections from a
//! `postgres://` URL, the schema (`schema.postgres.sql`) applied to an
//! empty database in one transaction with its version recorded, and the
//! connections the writer and the readers run [`Sql`] on. The reads and
//! op bodies themselves are the SQLite backend's, written once against
//! `store::sql`; docs/postgres.md says what is done and what comes next.
//!
//! Owns the PostgreSQL connections and schema, as `store/mod.rs` owns the
//! SQLite file. Like the rest of `store`, it must not know the engine, the
//! scheduler, the server or any face.

mod listen;

use std::cell::RefCell;
use std::time::Duration;

use postgres::{Client, IsolationLevel};

use postgres::{Config, NoTls};
use r2d2_postgres::PostgresConnectionManager;

pub(crate) use listen::{Listener, Publish};

use super::sql::{Sql, Statements};
use super::{Error, Result, SCHEMA_VERSION};

/// The schema, applied to a new database.
const SCHEMA_SQL: &str = include_str!("../../../schema.postgres.sql");

/// The first version the PostgreSQL schema had: the SQLite schema's
/// version when the backend was added. Versions before it never existed
/// on PostgreSQL.
const FIRST_VERSION: i64 = 11;

/// Migrations after [`FIRST_VERSION`], in order: `POSTGRES_MIGRATIONS[i]`
/// makes version `FIRST_VERSION + 1 + i`, the same number the SQLite
/// migration of the same change has (issue 17: one numbering).
const POSTGRES_MIGRATIONS: &[&str] = &[
    // 12: run leases (issue 17), as SQLite's migration 12.
    "CREATE TABLE run_leases (
    run_seq        BIGINT  PRIMARY KEY,
    node           TEXT    COLLATE \"C\" NOT NULL,
    expires_at     BIGINT  NOT NULL
);",
];

// A migration added to one backend and not the other fails the build here,
// so the two numberings cannot drift apart.
const _: () = assert!(FIRST_VERSION + POSTGRES_MIGRATIONS.len() as i64 == SCHEMA_VERSION);

/// The transaction-scoped advisory lock that serialises schema application:
/// nodes started at once on an empty database apply it once, the others
/// wait and then find it applied. 'migrate!' in ASCII, as
/// `schema.postgres.sql` records beside the other keys (7883946363647714593).
const MIGRATION_LOCK: i64 = 0x6d69_6772_6174_6521;

/// A pool of connections to one PostgreSQL database.
pub type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// How to connect.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections in the pool, at most.
    pub connections_max: u32,
    /// How long taking a connection from the pool, or opening one, may
    /// wait before it fails.
    pub connect_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            // The SQLite backend's writer plus its four readers.
            connections_max: 5,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What [`migrate`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// The database was empty; the whole schema is applied.
    Created,
    /// Brought from this version to [`SCHEMA_VERSION`].
    From(i64),
    /// Already at [`SCHEMA_VERSION`]: nothing was changed.
    Current,
}

/// A pool on the database at `url` (`postgres://user@host:port/db`). The
/// pool is built eagerly, so a database that cannot be reached fails here
/// with [`Error::Postgres`], not at the first write.
pub fn connect(url: &str, options: &Options) -> Result<Pool> {
    let mut config: Config = url
        .parse()
        .map_err(|error| Error::Postgres(format!("bad PostgreSQL URL: {error}")))?;
    // Pass the timeout explicitly rather than trust the client's default
    // of none (TigerStyle: limits on everything); a URL's own wins.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    let manager = PostgresConnectionManager::new(config, NoTls);
    r2d2::Pool::builder()
        .max_size(options.connections_max.max(1))
        .connection_timeout(options.connect_timeout)
        .build(manager)
        .map_err(|error| Error::Postgres(format!("cannot connect to PostgreSQL: {error}")))
}

/// Brings the database to [`SCHEMA_VERSION`] in one transaction, under
/// [`MIGRATION_LOCK`]: an empty database gets `schema.postgres.sql` whole,
/// one of an older version its migrations, one already current nothing.
/// A database of a newer version is refused with [`Error::SchemaNewer`];
/// one that has tables but no `schema_version` (another program's, or a
/// half-made one) is refused too, rather than written into.
pub fn migrate(pool: &Pool) -> Result<Migrated> {
    migrate_client(&mut *client(pool)?)
}

/// [`migrate`] on a connection of its own, for `Store::open`.
pub(crate) fn migrate_with(config: &Config) -> Result<Migrated> {
    migrate_client(&mut config.connect(NoTls)?)
}

/// The sequence [`super::EventIds::PlainSequence`] numbers event blocks
/// from, made if missing (under the migration lock, as nodes may open at
/// once).
pub(crate) fn create_plain_sequence(config: &Config) -> Result<()> {
    let mut client = config.connect(NoTls)?;
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute(&format!("CREATE SEQUENCE IF NOT EXISTS {PLAIN_SEQUENCE}"))?;
    transaction.commit()?;
    Ok(())
}

/// See [`create_plain_sequence`].
pub(crate) const PLAIN_SEQUENCE: &str = "taskyard_plain_event_blocks";

fn migrate_client(client: &mut Client) -> Result<Migrated> {
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    let migrated = match version(&mut transaction)? {
        None => {
            let tables: i64 = transaction
                .query_one(
                    "SELECT count(*) FROM information_schema.tables \
                     WHERE table_schema = current_schema()",
                    &[],
                )?
                .get(0);
            if tables > 0 {
                return Err(Error::Postgres(format!(
                    "the database has {tables} tables but no taskyard schema_version: \
                     taskyard needs an empty database or one it made"
                )));
            }
            transaction.batch_execute(SCHEMA_SQL)?;
            transaction.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, $1)",
                &[&SCHEMA_VERSION],
            )?;
            Migrated::Created
        }
        Some(found) if found > SCHEMA_VERSION => {
            return Err(Error::SchemaNewer {
                version: found,
                supported: SCHEMA_VERSION,
            })
        }
        Some(found) if found == SCHEMA_VERSION => Migrated::Current,
        Some(found) if found < FIRST_VERSION => {
            return Err(Error::Postgres(format!(
                "schema_version is {found}, older than any PostgreSQL schema taskyard made \
                 ({FIRST_VERSION})"
            )))
        }
        Some(found) => {
            for migration in POSTGRES_MIGRATIONS
                .iter()
                .skip((found - FIRST_VERSION) as usize)
            {
                transaction.batch_execute(migration)?;
            }
            transaction.execute(
                "UPDATE schema_version SET version = $1 WHERE id = 1",
                &[&SCHEMA_VERSION],
            )?;
            Migrated::From(found)
        }
    };
    transaction.commit()?;
    Ok(migrated)
}

/// The connection settings of `url`, with the store's timeout when the
/// URL sets none.
pub(crate) fn config(url: &str, options: &super::Options) -> Result<Config> {
    let mut config: Config = url
        .parse()
        .map_err(|error| Error::Postgres(format!("bad PostgreSQL URL: {error}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.busy_timeout);
    }
    Ok(config)
}

/// One connection of the store's own (the writer's, or a reader's), with
/// its prepared statements. A connection the server dropped (a restart, a
/// failover) is opened again at its next use, so the node recovers
/// without a restart of its own; until the server answers, each use fails
/// `Unreachable`.
pub(crate) struct Connection {
    client: Client,
    statements: RefCell<Statements>,
    config: Config,
    lock_timeout: Duration,
}

impl Connection {
    /// A connection whose statements wait at most `lock_timeout` for a
    /// lock another transaction holds, then fail `Busy`: the store's
    /// `busy_timeout`, as on SQLite.
    pub(crate) fn open(config: &Config, lock_timeout: Duration) -> Result<Connection> {
        Ok(Connection {
            client: connect_client(config, lock_timeout)?,
            statements: RefCell::new(Statements::new()),
            config: config.clone(),
            lock_timeout,
        })
    }

    /// Opens the connection again if the server dropped it; prepared
    /// statements die with their connection.
    fn ensure_open(&mut self) -> Result<()> {
        if self.client.is_closed() {
            self.client = connect_client(&self.config, self.lock_timeout)?;
            self.statements.borrow_mut().clear();
        }
        Ok(())
    }

    /// Runs `read` in one read-only REPEATABLE READ transaction: one
    /// snapshot for all its statements, as a SQLite read transaction.
    pub(crate) fn read<T>(&mut self, read: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
        self.ensure_open()?;
        let error = match read_transaction(&mut self.client) {
            Ok(transaction) => return finish_read(transaction, &self.statements, read),
            Err(error) => error,
        };
        if !self.client.is_closed() {
            return Err(error.into());
        }
        // A connection the server dropped while it sat in the pool is found
        // so only at its next use: open another and begin once more.
        self.ensure_open()?;
        let transaction = read_transaction(&mut self.client)?;
        finish_read(transaction, &self.statements, read)
    }

    /// A READ COMMITTED transaction for the writer (schema.postgres.sql
    /// says why not REPEATABLE READ).
    pub(crate) fn begin(&mut self) -> Result<Sql<'_>> {
        // A connection the server dropped fails the first batch that uses
        // it (a 503 to retry) and is opened again for the next one.
        self.ensure_open()?;
        let transaction = self.client.transaction()?;
        Ok(Sql::postgres(transaction, &self.statements))
    }
}

/// A read-only REPEATABLE READ transaction: one snapshot for a read.
fn read_transaction(
    client: &mut Client,
) -> std::result::Result<postgres::Transaction<'_>, postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
}

/// Runs `read` in `transaction` and commits it.
fn finish_read<T>(
    transaction: postgres::Transaction<'_>,
    statements: &RefCell<Statements>,
    read: impl FnOnce(&Sql<'_>) -> Result<T>,
) -> Result<T> {
    let sql = Sql::postgres(transaction, statements);
    let answer = read(&sql)?;
    sql.commit()?;
    Ok(answer)
}

fn connect_client(config: &Config, lock_timeout: Duration) -> Result<Client> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!(
        "SET lock_timeout = {}",
        lock_timeout.as_millis().max(1)
    ))?;
    Ok(client)
}

/// The recorded schema version; `None` when the database has no
/// `schema_version` table (taskyard never applied its schema there).
pub fn schema_version(pool: &Pool) -> Result<Option<i64>> {
    let mut client = client(pool)?;
    let mut transaction = client.transaction()?;
    let found = version(&mut transaction)?;
    transaction.commit()?;
    Ok(found)
}

/// A pooled connection, or the pool's reason for none (every connection
/// in use past the timeout, or the server unreachable).
fn client(pool: &Pool) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>> {
    pool.get()
        .map_err(|error| Error::Postgres(format!("no PostgreSQL connection: {error}")))
}

fn version(transaction: &mut postgres::Transaction<'_>) -> Result<Option<i64>> {
    let table: Option<String> = transaction
        .query_one("SELECT to_regclass('schema_version')::text", &[])?
        .get(0);
    if table.is_none() {
        return Ok(None);
    }
    let row = transaction.query_opt("SELECT version FROM schema_version WHERE id = 1", &[])?;
    match row {
        Some(row) => Ok(Some(row.get(0))),
        None => Err(Error::Postgres(
            "schema_version has no row: the schema was not applied by taskyard".into(),
        )),
    }
}

impl From<postgres::Error> for Error {
    /// A lost or refused connection is `Unreachable` (the server restarts,
    /// a failover): the engine answers 503 with `retry-after` and the
    /// connection is opened again at its next use. A lock or serialisation
    /// failure is `Busy`. Anything else is reported whole, with the
    /// server's SQLSTATE, message and detail (the client's own text for a
    /// server error is only "db error").
    fn from(error: postgres::Error) -> Error {
        use postgres::error::SqlState;
        let Some(db) = error.as_db_error() else {
            // The client's own errors: a connection refused ("error
            // connecting to server"), broken ("error communicating with the
            // server") or closed. Anything else (a bad parameter) stays.
            let text = error.to_string();
            if error.is_closed() || text.contains("connect") || text.contains("communicat") {
                return Error::Unreachable(text);
            }
            return Error::Postgres(text);
        };
        let mut text = format!("{}: {}", db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        let code = db.code();
        if code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            Error::Unreachable(text)
        } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
        {
            Error::Busy(text)
        } else {
            Error::Postgres(text)
        }
    }
}
