//! Helpers shared by the integration tests: a fresh database directory,
//! an engine on it, and waiting on a condition with a label and a deadline
//! (never a bare sleep).
//!
//! The backend: a SQLite file in the directory, or, when the environment
//! sets `TASKYARD_TEST_DB=postgres`, a fresh database per [`TestDir`] in
//! one throw-away PostgreSQL cluster per test binary (`postgres.rs`),
//! stopped when the binary exits. The same tests then prove both backends.
#![allow(dead_code)]

#[path = "postgres.rs"]
pub mod postgres_cluster;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use taskyard::faces::parallel::wire::{engine_id, Event, RunInput, GROUP_ID_PREFIX};
use taskyard::faces::parallel::Api;
use taskyard::{Config, Engine, StreamKind, TaskSpec};

/// A temporary directory that lives as long as the test holds it, and
/// the test's database.
pub struct TestDir {
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database's URL, when the suite runs on PostgreSQL.
    database: Option<String>,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::tempdir().expect("temporary directory"),
            database: on_postgres().then(postgres_cluster::fresh_database),
        }
    }

    /// The database, as `Engine::open` and `--db` take it: the SQLite file
    /// in the directory, or the PostgreSQL URL (a `postgres://` text as a
    /// path, which `Location` reads as the URL it is).
    pub fn db(&self) -> PathBuf {
        match &self.database {
            Some(url) => PathBuf::from(url),
            None => self.dir.path().join("taskyard.db"),
        }
    }
}

/// True when the suite runs on PostgreSQL (`TASKYARD_TEST_DB=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("TASKYARD_TEST_DB").is_ok_and(|value| value == "postgres")
}

/// Whether a test of SQLite's own behaviour (its file, its pragmas) runs:
/// false on PostgreSQL, said on stderr so a run shows what it left out.
pub fn sqlite_only(test: &str) -> bool {
    if on_postgres() {
        eprintln!("{test}: SQLite's own behaviour, not run on PostgreSQL");
        return false;
    }
    true
}

/// An engine on the directory's database, seen through Parallel's wire
/// types (the `Api` derefs to the engine for everything else).
pub fn open(dir: &TestDir) -> Api {
    open_with(dir, taskyard::faces::default_config())
}

pub fn open_with(dir: &TestDir, config: Config) -> Api {
    Api::new(Engine::open(dir.db(), config).expect("engine opens"))
}

/// An engine config whose processors are those of `toml`, written to
/// `name` in the test's directory and read as `taskyard serve --config`
/// reads it: the error when the file does not build.
pub fn config_from_toml(dir: &TestDir, name: &str, toml: &str) -> Result<Config, String> {
    let path = dir.dir.path().join(name);
    std::fs::write(&path, toml).expect("config written");
    let registry = taskyard::config::FileConfig::load(&path).and_then(|file| file.registry())?;
    Ok(Config {
        registry,
        ..taskyard::faces::default_config()
    })
}

/// An output as SQLite stores it in `runs.output`: text, or an LZ4
/// block (its length first) in a BLOB (src/store/packed.rs).
pub fn stored_output(value: rusqlite::types::Value) -> Option<String> {
    match value {
        rusqlite::types::Value::Null => None,
        rusqlite::types::Value::Text(text) => Some(text),
        rusqlite::types::Value::Blob(bytes) => Some(
            String::from_utf8(lz4_flex::decompress_size_prepended(&bytes).expect("unpacks"))
                .expect("UTF-8"),
        ),
        other => panic!("an output of {other:?}"),
    }
}

/// A config file `taskyard.toml` in the test's directory, holding `toml`.
pub fn config_file(dir: &TestDir, toml: &str) -> PathBuf {
    let path = dir.dir.path().join("taskyard.toml");
    std::fs::write(&path, toml).expect("config written");
    path
}

/// Polls `condition` until it holds; panics with `label` after `deadline`.
pub fn wait_for(label: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    let mut pause = Duration::from_millis(1);
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for: {label}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A run of `processor` with a JSON output schema of one string field.
pub fn json_run(text: &str, processor: &str) -> RunInput {
    RunInput::new(json!({ "text": text }), processor).with_task_spec(TaskSpec {
        output_schema: json!({
            "type": "json",
            "json_schema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
                "additionalProperties": false
            }
        }),
        input_schema: None,
    })
}

/// Metadata from a JSON object literal.
pub fn metadata(value: Value) -> taskyard::JsonObject {
    value.as_object().expect("an object").clone()
}

/// Opens the database read-only with plain SQLite, to check what is stored.
pub fn sqlite(dir: &TestDir) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(dir.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("database opens")
}

/// The test's database opened with a plain client of its backend, to check
/// what is stored whichever backend the suite runs on.
pub fn stored(dir: &TestDir) -> Stored {
    match &dir.database {
        Some(url) => Stored::Postgres(std::cell::RefCell::new(
            postgres::Client::connect(url, postgres::NoTls).expect("database connects"),
        )),
        // Read-write: a test may forge a state (what a crash leaves).
        None => Stored::Sqlite(rusqlite::Connection::open(dir.db()).expect("database opens")),
    }
}

/// A plain connection to the test's database. Values come back as text
/// (NULL as `None`): every check compares them so, on either backend.
pub enum Stored {
    Sqlite(rusqlite::Connection),
    Postgres(std::cell::RefCell<postgres::Client>),
}

impl Stored {
    /// Every row of `sql`, whose `?N` placeholders take `params`.
    pub fn rows(&self, sql: &str, params: &[&str]) -> Vec<Vec<Option<String>>> {
        self.try_rows(sql, params)
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// Runs statements that answer no rows (a test forging a state).
    pub fn execute_batch(&self, sql: &str) {
        match self {
            Stored::Sqlite(connection) => connection.execute_batch(sql).expect("statements run"),
            Stored::Postgres(client) => client
                .borrow_mut()
                .batch_execute(sql)
                .expect("statements run"),
        }
    }

    /// [`Stored::rows`], or the database's error (a table not made yet).
    pub fn try_rows(&self, sql: &str, params: &[&str]) -> Result<Vec<Vec<Option<String>>>, String> {
        match self {
            Stored::Sqlite(connection) => {
                let mut statement = connection.prepare(sql).map_err(|e| e.to_string())?;
                let columns = statement.column_count();
                let mut rows = statement
                    .query(rusqlite::params_from_iter(params))
                    .map_err(|e| e.to_string())?;
                let mut answer = Vec::new();
                while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                    answer.push(
                        (0..columns)
                            .map(|i| {
                                match row.get::<_, rusqlite::types::Value>(i).expect("value") {
                                    rusqlite::types::Value::Null => None,
                                    rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                                    rusqlite::types::Value::Real(x) => Some(x.to_string()),
                                    rusqlite::types::Value::Text(text) => Some(text),
                                    rusqlite::types::Value::Blob(bytes) => {
                                        Some(String::from_utf8_lossy(&bytes).into_owned())
                                    }
                                }
                            })
                            .collect(),
                    );
                }
                Ok(answer)
            }
            Stored::Postgres(client) => {
                // The simple protocol answers every value as text, as the
                // SQLite side gives them; parameters go in as literals.
                let mut text = sql.to_string();
                for (i, param) in params.iter().enumerate().rev() {
                    let literal = format!("'{}'", param.replace('\'', "''"));
                    text = text.replace(&format!("?{}", i + 1), &literal);
                }
                Ok(client
                    .borrow_mut()
                    .simple_query(&text)
                    .map_err(|error| format!("{text}: {error:?}"))?
                    .into_iter()
                    .filter_map(|message| match message {
                        postgres::SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).map(str::to_string))
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect())
            }
        }
    }

    /// The first column of the first row, as an integer.
    pub fn int(&self, sql: &str, params: &[&str]) -> i64 {
        self.text(sql, params)
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("{sql}: no integer answered"))
    }

    /// The first column of the first row.
    pub fn text(&self, sql: &str, params: &[&str]) -> Option<String> {
        self.rows(sql, params)
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
    }
}

/// The writer's lock, held by another connection until released: SQLite's
/// write lock (`BEGIN IMMEDIATE`), or PostgreSQL's `event_ids` row, which
/// every writer batch locks first. A write then waits its busy timeout
/// (`lock_timeout` on PostgreSQL) and fails.
pub struct WriteLock(Stored);

impl WriteLock {
    pub fn take(dir: &TestDir) -> WriteLock {
        let lock = match &dir.database {
            Some(_) => stored(dir),
            None => Stored::Sqlite(rusqlite::Connection::open(dir.db()).expect("connection")),
        };
        match &lock {
            Stored::Sqlite(connection) => connection
                .execute_batch("BEGIN IMMEDIATE")
                .expect("write lock"),
            Stored::Postgres(client) => client
                .borrow_mut()
                .batch_execute("BEGIN; SELECT last_id FROM event_ids WHERE id = 1 FOR UPDATE")
                .expect("event_ids locked"),
        }
        WriteLock(lock)
    }

    /// The connection that holds the lock, to write in its transaction.
    pub fn stored(&self) -> &Stored {
        &self.0
    }

    pub fn release(self) {
        match &self.0 {
            Stored::Sqlite(connection) => connection.execute_batch("ROLLBACK").expect("release"),
            Stored::Postgres(client) => client
                .borrow_mut()
                .batch_execute("ROLLBACK")
                .expect("release"),
        }
    }
}

/// Every event of a group's events stream after `after`, to its end (the
/// group inactive); panics if the stream fails or outlives a minute.
pub fn drain_group(engine: &Api, group_id: &str, after: u64) -> Vec<Event> {
    engine
        .subscribe(
            StreamKind::GroupEvents(group_id.to_string()),
            after,
            Duration::from_secs(60),
        )
        .expect("subscribe")
        .collect::<Result<_, _>>()
        .expect("stream reads")
}

/// The default configuration with `workers` worker threads.
pub fn with_workers(workers: usize) -> Config {
    Config {
        workers,
        ..taskyard::faces::default_config()
    }
}

/// The first line a started `taskyard serve` prints on stdout (its start
/// line), read on a thread so that a server that prints nothing fails the
/// test after `wait` instead of hanging it. Takes the child's stdout.
pub fn start_line(child: &mut std::process::Child, wait: Duration) -> Option<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take()?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    receiver.recv_timeout(wait).ok()
}

/// The real `taskyard serve` on the directory's database with `config`,
/// on a free port: the child (to `kill -9`) and its `host:port`.
pub fn serve_child(dir: &TestDir, config: &std::path::Path) -> (std::process::Child, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskyard"))
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(dir.db())
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskyard serve");
    let line = start_line(&mut child, Duration::from_secs(20)).expect("a start line");
    let addr = start_line_addr(&line).expect("an address").to_string();
    (child, addr)
}

/// The `host:port` of a start line: `taskyard X listening on http://ADDR
/// (database ...)`.
pub fn start_line_addr(line: &str) -> Option<&str> {
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
}

/// A group's events stream as stored, in id order, rendered as Parallel's
/// face renders it: (id, type, data). `group_id` is the wire id. A run's
/// terminal event is stored without data; it is made here from the run's
/// row, independently of the store's own code for it.
pub fn stored_group_stream(dir: &TestDir, group_id: &str) -> Vec<(u64, String, String)> {
    let id = engine_id(GROUP_ID_PREFIX, group_id).expect("a group id");
    stored(dir)
        .rows(
            "SELECT e.id, e.data, r.id, g.id, r.status, r.processor, r.metadata, r.error, \
             r.warnings, r.created_at, r.modified_at FROM events e \
             JOIN groups g ON g.seq = e.group_seq \
             LEFT JOIN runs r ON e.data IS NULL AND r.seq = e.run_seq \
             WHERE g.id = ?1 AND e.stream = 1 ORDER BY e.id",
            &[id],
        )
        .into_iter()
        .filter(|row| row[1].is_some() || row[2].is_some())
        .map(|row| {
            let id: u64 = row[0]
                .as_deref()
                .expect("an id")
                .parse()
                .expect("an integer");
            let data: taskyard::model::EventData = match &row[1] {
                Some(data) => serde_json::from_str(data).expect("a stored event"),
                None => run_end_from_row(&row[2..]),
            };
            let event = taskyard::faces::parallel::render::to_wire(&taskyard::model::Event::new(
                Some(id),
                data,
            ));
            (id, event.kind.as_str().to_string(), event.data)
        })
        .collect()
}

fn json_column<T: serde::de::DeserializeOwned>(column: &Option<String>) -> Option<T> {
    column
        .as_deref()
        .map(|text| serde_json::from_str(text).expect("a JSON column"))
}

/// A run's terminal event from its row's columns: id, group id, status,
/// processor, metadata, error, warnings, created_at, modified_at.
fn run_end_from_row(columns: &[Option<String>]) -> taskyard::model::EventData {
    let text = |index: usize| columns[index].clone();
    let micros = |index: usize| -> i64 {
        columns[index]
            .as_deref()
            .expect("a time")
            .parse()
            .expect("an integer")
    };
    taskyard::model::EventData::RunStatus {
        run: taskyard::model::Run {
            id: text(0).expect("a run id"),
            group_id: text(1),
            status: taskyard::RunStatus::parse(columns[2].as_deref().expect("a status"))
                .expect("a known status"),
            processor: text(3).expect("a processor"),
            metadata: json_column(&columns[4]),
            error: json_column(&columns[5]),
            warnings: json_column(&columns[6]),
            created_at: taskyard::Timestamp(micros(7)),
            modified_at: taskyard::Timestamp(micros(8)),
        },
        output: None,
    }
}

/// The id the database stores for a wire id (`trun_…`, `tgrp_…`): the
/// engine's own, without the face's prefix (issue 11).
pub fn stored_id(wire: &str) -> String {
    ["trun_", "tgrp_"]
        .iter()
        .find_map(|prefix| wire.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("{wire} is not a wire id"))
        .to_string()
}

/// A stored event row's data rendered as Parallel's face sends it, to
/// compare with what a subscriber received.
pub fn rendered_event_data(id: u64, stored: &str) -> String {
    rendered_event(id, stored).1
}

/// A group's stream as stored in a SQLite file, read as the engine's
/// streams read it (a run's terminal event is made from its row), each
/// event as Parallel's face renders it: (id, type, data).
pub fn sqlite_group_stream(
    db: &rusqlite::Connection,
    group_id: &str,
) -> Vec<(u64, String, String)> {
    let group_seq: i64 = db
        .query_row(
            "SELECT seq FROM groups WHERE id = ?1",
            [stored_id(group_id)],
            |row| row.get(0),
        )
        .expect("the group's row");
    let mut stream = Vec::new();
    let mut after = 0;
    loop {
        let page = taskyard::store::sqlite_group_events(db, group_seq, after, 1_000)
            .expect("the group's events");
        let Some(last) = page.last() else {
            return stream;
        };
        after = last.0;
        for (id, data) in page {
            let event = taskyard::faces::parallel::render::to_wire(&taskyard::model::Event::new(
                Some(id),
                data,
            ));
            stream.push((id, event.kind.as_str().to_string(), event.data));
        }
    }
}

/// A stored event row rendered as Parallel's face sends it: (type, data).
pub fn rendered_event(id: u64, stored: &str) -> (String, String) {
    let data: taskyard::model::EventData = serde_json::from_str(stored).expect("a stored event");
    let event =
        taskyard::faces::parallel::render::to_wire(&taskyard::model::Event::new(Some(id), data));
    (event.kind.as_str().to_string(), event.data)
}
