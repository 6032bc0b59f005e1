//! The PostgreSQL backend's groundwork (issue 17), against a throw-away
//! cluster of its own (`support/postgres.rs`): `schema.postgres.sql`
//! applied through `store::postgres` has every table, column and named
//! index of `schema.sql` (read from SQLite itself, so a change to
//! schema.sql without its PostgreSQL twin fails here), records
//! `SCHEMA_VERSION`, applies once, and refuses a newer database.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::postgres_cluster::Postgres;
use taskyard::store::postgres::{self as pg, Migrated, Options};
use taskyard::store::{Error, SCHEMA_VERSION};

/// A column as both backends are compared: name, type (PostgreSQL's
/// spelling), NOT NULL.
type Column = (String, String, bool);

/// A named index: its table, its key columns (`<expr>` for an
/// expression), and whether it is partial.
type Index = (String, Vec<String>, bool);

/// The columns SQLite keeps as 0/1 INTEGER and PostgreSQL as BOOLEAN
/// (the postgres crate maps Rust's bool to BOOLEAN only).
const BOOLEAN_COLUMNS: [(&str, &str); 2] = [("runs", "default_spec"), ("runs", "enable_events")];

/// Columns whose values PostgreSQL generates: the rowid keys SQLite
/// assigns itself. Not `events.id`: the writer assigns event ids from
/// `event_ids` under its row lock (the cursor scheme in
/// schema.postgres.sql), so that they commit in id order.
const IDENTITY_COLUMNS: [(&str, &str, &str); 5] = [
    ("groups", "seq", "BY DEFAULT"),
    ("runs", "seq", "BY DEFAULT"),
    ("schedules", "seq", "BY DEFAULT"),
    ("webhook_attempts", "seq", "BY DEFAULT"),
    ("webhook_deliveries", "seq", "BY DEFAULT"),
];

/// Tables only the PostgreSQL schema has: SQLite keeps its version in
/// `PRAGMA user_version` and its last event id in `sqlite_sequence`.
const POSTGRES_ONLY_TABLES: [&str; 2] = ["event_ids", "schema_version"];

/// schema.sql, as SQLite makes it.
struct SqliteSchema {
    tables: BTreeMap<String, Vec<Column>>,
    primary_keys: BTreeMap<String, Vec<String>>,
    indexes: BTreeMap<String, Index>,
}

fn sqlite_schema() -> SqliteSchema {
    let connection = rusqlite::Connection::open_in_memory().expect("in-memory SQLite");
    connection
        .execute_batch(include_str!("../schema.sql"))
        .expect("schema.sql applies");
    let names: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .expect("tables")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    let mut tables = BTreeMap::new();
    let mut primary_keys = BTreeMap::new();
    for table in names {
        let rows: Vec<(String, String, bool, i64)> = connection
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid")
            .expect("table_info")
            .query_map([&table], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let mut keys: Vec<(i64, String)> = Vec::new();
        let columns = rows
            .into_iter()
            .map(|(name, sqlite_type, not_null, pk)| {
                if pk > 0 {
                    keys.push((pk, name.clone()));
                }
                let is_boolean = BOOLEAN_COLUMNS.contains(&(table.as_str(), name.as_str()));
                let postgres_type = match (sqlite_type.as_str(), is_boolean) {
                    ("INTEGER", true) => "boolean",
                    ("INTEGER", false) => "bigint",
                    ("TEXT", false) => "text",
                    (other, _) => panic!("{table}.{name}: no PostgreSQL type for {other}"),
                };
                // A primary key column is NOT NULL in PostgreSQL; SQLite
                // says so of a rowid key only by what it does.
                (name, postgres_type.to_string(), not_null || pk > 0)
            })
            .collect();
        keys.sort();
        primary_keys.insert(
            table.clone(),
            keys.into_iter().map(|(_, name)| name).collect(),
        );
        tables.insert(table, columns);
    }
    let index_rows: Vec<(String, String, String)> = connection
        .prepare("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        .expect("indexes")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    let mut indexes = BTreeMap::new();
    for (name, table, sql) in index_rows {
        let keys: Vec<String> = connection
            .prepare("SELECT cid, name FROM pragma_index_xinfo(?1) WHERE key = 1 ORDER BY seqno")
            .expect("index_xinfo")
            .query_map([&name], |row| {
                let cid: i64 = row.get(0)?;
                let column: Option<String> = row.get(1)?;
                // cid -2: an expression, which has no column name.
                Ok(match (cid, column) {
                    (-2, _) | (_, None) => "<expr>".to_string(),
                    (_, Some(column)) => column,
                })
            })
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let partial = sql.to_ascii_uppercase().contains(" WHERE ");
        indexes.insert(name, (table, keys, partial));
    }
    SqliteSchema {
        tables,
        primary_keys,
        indexes,
    }
}

/// What PostgreSQL's catalog says of the current schema.
#[derive(Debug, PartialEq)]
struct PostgresSchema {
    tables: BTreeMap<String, Vec<Column>>,
    primary_keys: BTreeMap<String, Vec<String>>,
    indexes: BTreeMap<String, Index>,
    /// (table, column) -> collation, of every text column.
    collations: BTreeMap<(String, String), Option<String>>,
    /// (table, column) -> ALWAYS or BY DEFAULT.
    identities: BTreeMap<(String, String), String>,
}

fn postgres_schema(url: &str) -> PostgresSchema {
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connects");
    let mut tables: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    let mut collations = BTreeMap::new();
    let mut identities = BTreeMap::new();
    for row in client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text,
                    collation_name::text, identity_generation::text
             FROM information_schema.columns
             WHERE table_schema = current_schema()
             ORDER BY table_name, ordinal_position",
            &[],
        )
        .expect("columns")
    {
        let table: String = row.get(0);
        let column: String = row.get(1);
        let data_type: String = row.get(2);
        if data_type == "text" {
            collations.insert((table.clone(), column.clone()), row.get(4));
        }
        if let Some(generation) = row.get::<_, Option<String>>(5) {
            identities.insert((table.clone(), column.clone()), generation);
        }
        let not_null = row.get::<_, String>(3) == "NO";
        tables
            .entry(table)
            .or_default()
            .push((column, data_type, not_null));
    }
    let mut primary_keys = BTreeMap::new();
    for row in client
        .query(
            "SELECT c.relname::text,
                    array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indisprimary AND c.relnamespace = current_schema()::text::regnamespace
             GROUP BY c.relname",
            &[],
        )
        .expect("primary keys")
    {
        primary_keys.insert(row.get::<_, String>(0), row.get::<_, Vec<String>>(1));
    }
    let mut indexes = BTreeMap::new();
    // Named indexes only: those behind a primary key or UNIQUE constraint
    // are the constraint's, as SQLite's sqlite_autoindex_* are.
    for row in client
        .query(
            "SELECT ic.relname::text, tc.relname::text, i.indnkeyatts::int4,
                    i.indpred IS NOT NULL, i.indexrelid::int8,
                    i.indkey::int2[]
             FROM pg_index i
             JOIN pg_class ic ON ic.oid = i.indexrelid
             JOIN pg_class tc ON tc.oid = i.indrelid
             WHERE tc.relnamespace = current_schema()::text::regnamespace
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
            &[],
        )
        .expect("indexes")
    {
        let name: String = row.get(0);
        let table: String = row.get(1);
        let key_count: i32 = row.get(2);
        let partial: bool = row.get(3);
        let oid: i64 = row.get(4);
        let attnums: Vec<i16> = row.get(5);
        let mut keys = Vec::new();
        for position in 1..=key_count {
            // attnum 0: an expression.
            if attnums[(position - 1) as usize] == 0 {
                keys.push("<expr>".to_string());
            } else {
                let key: String = client
                    .query_one(
                        "SELECT pg_get_indexdef($1::int8::oid, $2, true)",
                        &[&oid, &position],
                    )
                    .expect("index key")
                    .get(0);
                keys.push(key);
            }
        }
        indexes.insert(name, (table, keys, partial));
    }
    PostgresSchema {
        tables,
        primary_keys,
        indexes,
        collations,
        identities,
    }
}

fn migrated_database(cluster: &Postgres, name: &str) -> (String, pg::Pool) {
    let url = cluster.create_database(name);
    let pool = pg::connect(&url, &Options::default()).expect("pool connects");
    assert_eq!(
        pg::migrate(&pool).expect("schema applies"),
        Migrated::Created
    );
    (url, pool)
}

#[test]
fn the_postgres_schema_has_every_table_column_and_index_of_schema_sql() {
    let cluster = Postgres::start();
    let (url, _pool) = migrated_database(&cluster, "taskyard");
    let sqlite = sqlite_schema();
    let mut postgres = postgres_schema(&url);

    for table in POSTGRES_ONLY_TABLES {
        assert!(postgres.tables.remove(table).is_some(), "{table} is made");
        postgres.primary_keys.remove(table);
    }
    // Table by table first, so that a failure names the table.
    for (table, columns) in &sqlite.tables {
        assert_eq!(
            postgres.tables.get(table),
            Some(columns),
            "{table}: columns (name, type, NOT NULL) in order"
        );
    }
    assert_eq!(
        postgres.tables.keys().collect::<Vec<_>>(),
        sqlite.tables.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    assert_eq!(postgres.primary_keys, sqlite.primary_keys, "primary keys");
    for (name, index) in &sqlite.indexes {
        assert_eq!(postgres.indexes.get(name), Some(index), "index {name}");
    }
    assert_eq!(postgres.indexes, sqlite.indexes, "the same named indexes");
    assert!(!sqlite.indexes.is_empty() && sqlite.tables.len() > 10);

    // Byte order on every text column, as SQLite's BINARY collation.
    for ((table, column), collation) in &postgres.collations {
        assert_eq!(collation.as_deref(), Some("C"), "{table}.{column}");
    }
    let expected: BTreeMap<(String, String), String> = IDENTITY_COLUMNS
        .iter()
        .map(|(table, column, how)| ((table.to_string(), column.to_string()), how.to_string()))
        .collect();
    assert_eq!(postgres.identities, expected, "generated keys");

    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
    let counter: Vec<(i16, i64)> = client
        .query("SELECT id, last_id FROM event_ids", &[])
        .expect("event_ids")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(counter, vec![(1, 0)], "one event id counter, at 0");

    // The one run_counts row, as schema.sql inserts it.
    let rows: i64 = client
        .query_one("SELECT count(*) FROM run_counts WHERE id = 1", &[])
        .expect("run_counts")
        .get(0);
    assert_eq!(rows, 1);
}

#[test]
fn the_version_is_recorded_and_applying_twice_changes_nothing() {
    let cluster = Postgres::start();
    let (url, pool) = migrated_database(&cluster, "twice");
    assert_eq!(
        pg::schema_version(&pool).expect("version"),
        Some(SCHEMA_VERSION)
    );
    let before = postgres_schema(&url);
    assert_eq!(
        pg::migrate(&pool).expect("applies again"),
        Migrated::Current
    );
    assert_eq!(postgres_schema(&url), before);
    assert_eq!(
        pg::schema_version(&pool).expect("version"),
        Some(SCHEMA_VERSION)
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
    for table in ["run_counts", "event_ids"] {
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .expect("rows counted")
            .get(0);
        assert_eq!(
            rows, 1,
            "the schema's own {table} row is not inserted twice"
        );
    }
}

#[test]
fn a_database_of_a_newer_taskyard_is_refused() {
    let cluster = Postgres::start();
    let (url, pool) = migrated_database(&cluster, "newer");
    let newer = SCHEMA_VERSION + 1;
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
    client
        .execute("UPDATE schema_version SET version = $1", &[&newer])
        .expect("marked newer");
    match pg::migrate(&pool) {
        Err(Error::SchemaNewer { version, supported }) => {
            assert_eq!((version, supported), (newer, SCHEMA_VERSION));
        }
        other => panic!("a newer database must be refused, got {other:?}"),
    }
    assert_eq!(pg::schema_version(&pool).expect("version"), Some(newer));
}

#[test]
fn a_database_with_tables_of_its_own_is_refused() {
    let cluster = Postgres::start();
    let url = cluster.create_database("foreign");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
    client
        .batch_execute("CREATE TABLE someone_elses (x int)")
        .expect("a table of another program");
    let pool = pg::connect(&url, &Options::default()).expect("pool connects");
    match pg::migrate(&pool) {
        Err(Error::Postgres(message)) => assert!(message.contains("no taskyard"), "{message}"),
        other => panic!("a database taskyard did not make must be refused, got {other:?}"),
    }
    assert_eq!(pg::schema_version(&pool).expect("version"), None);
}

/// Two nodes started at once on an empty database: the migration lock
/// makes one apply the schema and the other find it applied.
#[test]
fn nodes_started_at_once_apply_the_schema_once() {
    let cluster = Postgres::start();
    let url = cluster.create_database("race");
    let nodes: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let pool = pg::connect(&url, &Options::default()).expect("pool connects");
                pg::migrate(&pool).expect("migrates")
            })
        })
        .collect();
    let mut outcomes: Vec<Migrated> = nodes
        .into_iter()
        .map(|node| node.join().expect("node thread"))
        .collect();
    outcomes.sort_by_key(|outcome| format!("{outcome:?}"));
    assert_eq!(outcomes, vec![Migrated::Created, Migrated::Current]);
}

#[test]
fn a_url_that_is_not_postgres_is_an_error_not_a_panic() {
    match pg::connect("not a url", &Options::default()) {
        Err(Error::Postgres(message)) => assert!(message.contains("URL"), "{message}"),
        other => panic!("{:?}", other.map(|_| "a pool")),
    }
}

/// Reads the events after `cursor` as a resuming stream does, and answers
/// their ids in order.
fn events_after(client: &mut postgres::Client, table: &str, cursor: i64) -> Vec<i64> {
    client
        .query(
            &format!("SELECT id FROM {table} WHERE id > $1 ORDER BY id"),
            &[&cursor],
        )
        .expect("events read")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Why `events.id` is not a sequence (issue 17, "Cursors stay exact"):
/// with a plain sequence, two writers commit out of id order and a reader
/// that resumes from the id it saw never sees the earlier one. This pins
/// the failure the scheme exists for, in plain SQL.
#[test]
fn a_plain_sequence_loses_an_event_for_a_resuming_reader() {
    let cluster = Postgres::start();
    let url = cluster.create_database("sequence");
    let mut setup = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
    setup
        .batch_execute("CREATE TABLE plain_events (id BIGSERIAL PRIMARY KEY, what TEXT)")
        .expect("a table with a plain sequence");
    let mut first = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
    let mut second = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
    let mut reader = postgres::Client::connect(&url, postgres::NoTls).expect("connects");

    let mut slow = first.transaction().expect("begin");
    slow.execute("INSERT INTO plain_events (what) VALUES ('slow')", &[])
        .expect("takes id 1");
    second
        .execute("INSERT INTO plain_events (what) VALUES ('fast')", &[])
        .expect("takes id 2 and commits");
    let seen = events_after(&mut reader, "plain_events", 0);
    assert_eq!(seen, vec![2]);
    let cursor = *seen.last().expect("an event");
    slow.commit().expect("id 1 commits after id 2");
    assert_eq!(
        events_after(&mut reader, "plain_events", cursor),
        Vec::<i64>::new(),
        "the resuming reader has passed id 1: it is lost to it"
    );
}

/// The scheme of schema.postgres.sql, in plain SQL: a writer that reads
/// `event_ids` FOR UPDATE holds the next writer back until it commits, so
/// ids become visible in id order and the resuming reader misses nothing.
#[test]
fn event_ids_locked_to_commit_keep_a_resuming_reader_exact() {
    let cluster = Postgres::start();
    let (url, _pool) = migrated_database(&cluster, "counter");
    let mut first = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
    let mut reader = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
    let mut watcher = postgres::Client::connect(&url, postgres::NoTls).expect("connects");

    // One writer's transaction as schema.postgres.sql describes it.
    fn write_event(transaction: &mut postgres::Transaction<'_>, what: &str) -> i64 {
        let last: i64 = transaction
            .query_one("SELECT last_id FROM event_ids WHERE id = 1 FOR UPDATE", &[])
            .expect("the counter row")
            .get(0);
        let id = last + 1;
        transaction
            .execute(
                "INSERT INTO events (id, type, stream, status, created_at) \
                 VALUES ($1, $2, 0, NULL, 0)",
                &[&id, &what],
            )
            .expect("event inserted");
        transaction
            .execute("UPDATE event_ids SET last_id = $1 WHERE id = 1", &[&id])
            .expect("counter written back");
        id
    }

    let mut slow = first.transaction().expect("begin");
    assert_eq!(write_event(&mut slow, "slow"), 1);
    let fast_url = url.clone();
    let fast = std::thread::spawn(move || {
        let mut second = postgres::Client::connect(&fast_url, postgres::NoTls).expect("connects");
        let mut transaction = second.transaction().expect("begin");
        let id = write_event(&mut transaction, "fast");
        transaction.commit().expect("commits");
        id
    });
    // The second writer waits on the counter row's lock: it has taken no
    // id, so there is nothing for a reader to pass.
    let waiting = || {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .expect("pg_stat_activity")
            .get(0);
        waiting == 1
    };
    support::wait_for(
        "the second writer to wait on event_ids",
        Duration::from_secs(30),
        waiting,
    );
    assert_eq!(events_after(&mut reader, "events", 0), Vec::<i64>::new());
    slow.commit().expect("id 1 commits");
    assert_eq!(
        fast.join().expect("second writer"),
        2,
        "numbered after id 1"
    );
    let seen = events_after(&mut reader, "events", 0);
    assert_eq!(seen, vec![1, 2], "in id order, none skipped");
}
