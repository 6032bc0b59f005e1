//! What every bench shares: sizes from the environment, the full/smoke
//! switch, medians and percentiles, the printed table, the JSON report in
//! `target/bench/NAME.json`, RSS from `/proc`, a raw HTTP/1.1 client with a
//! chunked Server-Sent Events reader, the raw SQLite floor that the
//! engine and HTTP ratios are measured against in the same process, and
//! the cached database of stored runs that the read benches share.
//! Smoke runs (`cargo test`) report to `target/bench/smoke/` instead.
//!
//! Each bench includes this file with `mod common;`. Not every bench uses
//! every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};
use serde_json::{json, Value};
use taskyard::model::{AddRuns, EventData, RunRequest};
use taskyard::{Engine, StreamKind, Timestamp};

/// True under `cargo bench` (which passes `--bench`); false under
/// `cargo test`, where each bench runs as a small smoke test on a debug
/// build: tiny sizes, correctness assertions kept, targets not asserted.
pub fn full_run() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// `name` from the environment, else `full` under `cargo bench` and
/// `smoke` under `cargo test`.
pub fn env_usize(name: &str, full: usize, smoke: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.replace('_', "").parse().ok())
        .unwrap_or(if full_run() { full } else { smoke })
}

/// Like [`env_usize`], for fractions (seconds).
pub fn env_f64(name: &str, full: f64, smoke: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(if full_run() { full } else { smoke })
}

/// A comma-separated list of sizes from the environment.
pub fn env_sizes(name: &str, full: &[usize], smoke: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(text) => text
            .split(',')
            .map(|part| {
                part.trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: '{part}' is not a size"))
            })
            .collect(),
        Err(_) if full_run() => full.to_vec(),
        Err(_) => smoke.to_vec(),
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[sorted.len() / 2]
}

/// Each pass's figure with `digits` decimals, for a row's label: a median
/// is reported beside the passes it came from.
pub fn passes_list(values: &[f64], digits: usize) -> String {
    values
        .iter()
        .map(|value| format!("{value:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Nearest-rank percentile of already sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// p50, p99 and max of latencies (any order), in their own unit.
pub fn summary(latencies: &mut [f64]) -> (f64, f64, f64) {
    latencies.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    )
}

/// Where reports and cached databases go.
pub fn bench_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    dir
}

/// A figure beside its target, for the table and the JSON report.
pub struct Row {
    pub measure: String,
    pub value: f64,
    pub unit: &'static str,
    /// Human form of the target, e.g. "≥ 0.85" or "< 5 ms"; empty: none.
    pub target: String,
    /// `Some(met)` when the row has a target.
    pub met: Option<bool>,
}

impl Row {
    pub fn new(measure: impl Into<String>, value: f64, unit: &'static str) -> Row {
        Row {
            measure: measure.into(),
            value,
            unit,
            target: String::new(),
            met: None,
        }
    }

    /// The target is met when `value >= bound`.
    pub fn at_least(mut self, bound: f64) -> Row {
        self.target = format!(">= {}", format_value(bound));
        self.met = Some(self.value >= bound);
        self
    }

    /// The target is met when `value < bound`.
    pub fn below(mut self, bound: f64) -> Row {
        self.target = format!("< {} {}", format_value(bound), self.unit);
        self.met = Some(self.value < bound);
        self
    }

    /// A target stated in words, met or not.
    pub fn target(mut self, text: impl Into<String>, met: bool) -> Row {
        self.target = text.into();
        self.met = Some(met);
        self
    }
}

fn format_value(value: f64) -> String {
    if value.abs() >= 1_000.0 {
        let whole = value.round() as i64;
        let digits = whole.abs().to_string();
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if whole < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Prints the table, writes `target/bench/NAME.json` with the rows and
/// `extra`, and under `cargo bench` fails when a target is missed and
/// `TASKYARD_BENCH_ASSERT_TARGETS=1` asks for it (off by default: a busy
/// machine should report, not abort).
pub fn report(name: &str, heading: &str, rows: &[Row], extra: Value) {
    println!();
    println!("{name}: {heading}");
    println!(
        "{:<58} {:>14} {:<6} {:<16}",
        "measure", "value", "unit", "target"
    );
    for row in rows {
        // A smoke run is a debug build on tiny sizes: its figures say
        // nothing about the targets.
        let verdict = match row.met {
            Some(_) if !full_run() => "(smoke: not judged)",
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!(
            "{:<58} {:>14} {:<6} {:<16} {}",
            row.measure,
            format_value(row.value),
            row.unit,
            row.target,
            verdict
        );
    }
    let figures: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "measure": row.measure,
                "value": row.value,
                "unit": row.unit,
                "target": row.target,
                "met": row.met,
            })
        })
        .collect();
    let document = json!({
        "bench": name,
        "full": full_run(),
        "figures": figures,
        "details": extra,
    });
    // Smoke runs write beside, never over, the last full figures.
    let dir = if full_run() {
        bench_dir()
    } else {
        let dir = bench_dir().join("smoke");
        std::fs::create_dir_all(&dir).expect("target/bench/smoke");
        dir
    };
    let path = dir.join(format!("{name}.json"));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&document).expect("json"),
    )
    .expect("write report");
    println!("written to {}", path.display());
    let strict = std::env::var("TASKYARD_BENCH_ASSERT_TARGETS").is_ok_and(|v| v == "1");
    if full_run() && strict {
        let missed: Vec<&str> = rows
            .iter()
            .filter(|row| row.met == Some(false))
            .map(|row| row.measure.as_str())
            .collect();
        assert!(missed.is_empty(), "targets missed: {missed:?}");
    }
}

/// A field of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64
}

pub fn parse_rfc3339_micros(text: &str) -> i64 {
    let time = humantime::parse_rfc3339(text).expect("timestamp");
    time.duration_since(UNIX_EPOCH)
        .expect("after epoch")
        .as_micros() as i64
}

/// Waits for `done` with a deadline, polling; panics naming `what`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Bytes of a database with its WAL and shared-memory files.
pub fn database_bytes(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(PathBuf::from(name)).ok()
        })
        .map(|meta| meta.len())
        .sum()
}

// ---------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------

/// How long any single read of the client may block: far above every
/// answer a bench expects, so a hang is a clear failure, not a stuck bench.
pub const READ_WAIT_MAX: Duration = Duration::from_secs(120);

/// A keep-alive HTTP/1.1 connection with a strict little parser:
/// `Content-Length` or chunked bodies, CRLF line ends.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// An answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "answer {} is not JSON ({error}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(READ_WAIT_MAX))
            .expect("read timeout");
        Client {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    /// Sends a request; the answer is read with [`Client::head`] and a body
    /// reader, or all at once with [`Client::call`].
    pub fn send(&mut self, method: &str, path: &str, body: &str) {
        write!(
            self.writer,
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write request");
    }

    /// One request and its whole answer.
    pub fn call(&mut self, method: &str, path: &str, body: &str) -> Answer {
        self.send(method, path, body);
        let (status, length, chunked) = self.head().expect("answer head");
        let body = if chunked {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk().expect("chunk") {
                body.extend_from_slice(&chunk);
            }
            body
        } else {
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body).expect("answer body");
            body
        };
        Answer { status, body }
    }

    /// The socket and the bytes already read from it but not yet taken,
    /// for a caller that reads the rest itself.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        let leftover = self.reader.buffer().to_vec();
        (self.writer, leftover)
    }

    /// Status line and headers: status, content length, chunked.
    pub fn head(&mut self) -> io::Result<(u16, usize, bool)> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0;
        let mut chunked = false;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "in headers"));
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().map_err(io::Error::other)?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        Ok((status, length, chunked))
    }

    /// The next chunk of a chunked body; `None` at its end.
    pub fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim_end(), 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
        let mut chunk = vec![0; size];
        self.reader.read_exact(&mut chunk)?;
        let mut crlf = [0; 2];
        self.reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(io::Error::other("chunk without CRLF"));
        }
        Ok((size > 0).then_some(chunk))
    }

    /// Opens an SSE stream with GET `path` and hands each event's data
    /// (its JSON text) to `each` with the wall-clock micros at which its
    /// chunk arrived, until the stream ends (true) or `each` answers false
    /// (false). Panics on a status other than 200.
    pub fn stream(&mut self, path: &str, mut each: impl FnMut(&str, i64) -> bool) -> bool {
        self.send("GET", path, "");
        let (status, length, chunked) = self.head().expect("stream head");
        if status != 200 {
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body).expect("error body");
            panic!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
        }
        assert!(chunked, "an SSE stream is chunked");
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let Some(chunk) = self.chunk().expect("stream chunk") else {
                assert!(pending.is_empty(), "stream ended inside an event");
                return true;
            };
            let arrived = now_micros();
            pending.extend_from_slice(&chunk);
            while let Some(end) = find(&pending, b"\n\n") {
                let block = String::from_utf8(pending[..end].to_vec()).expect("utf-8 event");
                pending.drain(..end + 2);
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    if !each(data, arrived) {
                        return false;
                    }
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A thread with a small stack, for benches that open hundreds of clients.
pub fn spawn_small<T: Send + 'static>(
    name: String,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(128 * 1024)
        .spawn(work)
        .expect("spawn client thread")
}

// ---------------------------------------------------------------------
// Engine helpers
// ---------------------------------------------------------------------

/// The input of run `index` in every throughput bench.
pub fn bench_input(index: usize) -> Value {
    json!({ "item": index })
}

/// Adds `runs` runs of `processor` in batches of 1,000 and follows the
/// group events stream to its end; answers the group id.
pub fn engine_lifecycle(engine: &Engine, runs: usize, processor: &str) -> String {
    let group = engine.create_group(None).expect("group");
    let mut created = 0;
    while created < runs {
        let batch = (runs - created).min(1_000);
        let runs = (0..batch)
            .map(|i| RunRequest::new(bench_input(created + i), processor))
            .collect();
        engine
            .add_runs(
                &group.id,
                AddRuns {
                    runs,
                    default_task_spec: None,
                },
            )
            .expect("runs added");
        created += batch;
    }
    // The group events stream ends once the group is inactive.
    let mut terminal = 0;
    for event in engine
        .subscribe(
            StreamKind::GroupEvents(group.id.clone()),
            0,
            Duration::from_secs(3_600),
        )
        .expect("subscribe")
    {
        let event = event.expect("event");
        if matches!(event.data(), EventData::RunStatus { .. }) {
            terminal += 1;
        }
    }
    assert_eq!(terminal, runs, "one terminal event per run");
    group.id
}

// ---------------------------------------------------------------------
// The raw SQLite floor
// ---------------------------------------------------------------------

/// What taskyard stores for one run of the throughput benches, taken from
/// a run the engine really made, so that the floor writes rows of the same
/// contents and sizes as the engine (and stays so when the mock changes).
#[derive(Debug, Clone)]
pub struct RunTemplate {
    pub processor: String,
    pub input: String,
    pub task_spec: String,
    /// The output's text (what PostgreSQL stores).
    pub output: String,
    /// The output as SQLite stored it: packed in a BLOB when that is
    /// smaller (src/store/packed.rs), so the floor writes the same bytes.
    pub stored_output: rusqlite::types::Value,
    pub max_attempts: i64,
}

impl RunTemplate {
    /// Runs one `mock` run through the engine in a scratch database and
    /// reads back what it stored. `item` is the input's number: pick one
    /// with as many digits as most runs of the pass have, since the input
    /// is echoed in the output.
    pub fn sample(dir: &Path, item: usize) -> RunTemplate {
        let path = dir.join("template.db");
        let engine = Engine::open(&path, taskyard::faces::default_config()).expect("engine");
        let group = engine.create_group(None).expect("group");
        let added = engine
            .add_runs(
                &group.id,
                AddRuns {
                    runs: vec![RunRequest::new(bench_input(item), "mock")],
                    default_task_spec: None,
                },
            )
            .expect("run added");
        engine
            .wait_for_result(&added.run_ids[0], Duration::from_secs(30))
            .expect("the sampled run completes");
        engine.shutdown(Duration::from_secs(5));
        drop(engine);
        let connection = Connection::open(&path).expect("template db");
        connection
            .query_row(
                "SELECT processor, input, task_spec, output, max_attempts FROM runs",
                [],
                |row| {
                    let stored_output: rusqlite::types::Value = row.get(3)?;
                    let output = match &stored_output {
                        rusqlite::types::Value::Text(text) => text.clone(),
                        rusqlite::types::Value::Blob(bytes) => String::from_utf8(
                            lz4_flex::decompress_size_prepended(bytes).expect("unpacks"),
                        )
                        .expect("UTF-8"),
                        other => panic!("an output of {other:?}"),
                    };
                    Ok(RunTemplate {
                        processor: row.get(0)?,
                        input: row.get(1)?,
                        task_spec: row.get(2)?,
                        output,
                        stored_output,
                        max_attempts: row.get(4)?,
                    })
                },
            )
            .expect("the sampled run")
    }
}

/// The outcome of one floor pass.
pub struct Floor {
    pub runs: usize,
    pub seconds: f64,
    pub runs_per_s: f64,
}

/// Ids that sort in creation order, of taskyard's shape (32 hex digits),
/// so the unique index sees the same key sizes and order.
fn floor_id(base: u128, index: usize) -> String {
    format!("{:032x}", base + index as u128)
}

/// The group status event's data as taskyard records it (the model's
/// JSON): every count, zero or not.
fn group_status_json(runs: i64, queued: i64, completed: i64, at: i64) -> String {
    format!(
        "{{\"kind\":\"group_status\",\"status\":{{\"counts\":{{\"num_runs\":{runs},\
         \"queued\":{queued},\"running\":0,\"cancelling\":0,\"completed\":{completed},\
         \"failed\":0,\"cancelled\":0}},\"modified_at\":\"{}\"}}}}",
        Timestamp(at)
    )
}

/// The floor of the work: the rows taskyard writes over a run's life,
/// written with plain rusqlite on taskyard's own schema and pragmas (WAL,
/// `synchronous=NORMAL`, foreign keys on), 1,000 runs per transaction
/// (`TASKYARD_BENCH_FLOOR_BATCH` sets another count: at 32, the floor
/// commits about as often per run as the engine does).
///
/// Each batch of 1,000 runs is three commits, the three moments of a run's
/// life that are durable on their own in taskyard:
/// 1. add: the run rows, a `queued` history event per run, the group's
///    counts, and the group's status event;
/// 2. claim: status `running` and `attempts = 1`, a `running` history event
///    per run, the group's counts;
/// 3. finish: status `completed` with the output, the terminal
///    `task_run.state` event with the run as recorded (group stream), the
///    group's counts; after the last batch the group's final
///    status event.
///
/// Group counts are updated once per transaction, where taskyard may do it
/// once per op: the floor does the least work the same end state needs,
/// so the ratios against it are conservative. Answers runs/s from the first
/// add to the last commit; the database is left in `dir` for checks.
pub fn raw_sqlite(dir: &Path, runs: usize, template: &RunTemplate) -> Floor {
    let path = dir.join("raw.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut connection = Connection::open(&path).expect("raw db");
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .expect("wal");
    assert_eq!(mode.to_lowercase(), "wal");
    connection
        .execute_batch(
            "PRAGMA synchronous = 1; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .expect("pragmas");
    // taskyard's schema at its current version: the engine applies
    // schema.sql and its migrations (not timed).
    Engine::open(&path, taskyard::faces::default_config())
        .expect("taskyard's schema")
        .shutdown(Duration::from_secs(5));
    let group_id = floor_id(0x01a2_0000_0000_0000_0000_0000_0000_0000, 0);
    let started = Instant::now();
    let now = now_micros();
    connection
        .execute(
            "INSERT INTO groups (id, metadata, created_at, modified_at) VALUES (?1, NULL, ?2, ?2)",
            params![group_id, now],
        )
        .expect("group");
    let group_seq = connection.last_insert_rowid();
    let mut next_event_id: i64 = 1;
    let mut done = 0usize;
    let mut run_seq_next: i64 = 1;
    // Runs per transaction: 1,000 unless `TASKYARD_BENCH_FLOOR_BATCH`
    // says otherwise, to see what committing as often as the engine does
    // costs the same rows.
    let floor_batch = env_usize("TASKYARD_BENCH_FLOOR_BATCH", 1_000, 1_000).max(1);
    while done < runs {
        let batch = (runs - done).min(floor_batch);
        let first_seq = run_seq_next;
        // 1. add
        let now = now_micros();
        let transaction = connection.transaction().expect("begin add");
        {
            let mut insert_run = transaction
                .prepare_cached(
                    "INSERT INTO runs (id, group_seq, cursor, status, processor, input, \
                     document, task_spec, default_spec, metadata, enable_events, max_attempts, \
                     warnings, created_at, modified_at) VALUES (?1, ?2, ?3, 'queued', ?4, ?5, \
                     NULL, ?6, 0, NULL, 0, ?7, NULL, ?8, ?8)",
                )
                .expect("insert run");
            let mut insert_event = transaction
                .prepare_cached(
                    "INSERT INTO events (id, type, group_seq, run_seq, stream, status, data, \
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .expect("insert event");
            for index in 0..batch {
                let run_id = floor_id(0x01a2_0000_0000_0000, done + index);
                insert_run
                    .execute(params![
                        run_id,
                        group_seq,
                        next_event_id,
                        template.processor,
                        template.input,
                        template.task_spec,
                        template.max_attempts,
                        now
                    ])
                    .expect("run row");
                let run_seq = transaction.last_insert_rowid();
                insert_event
                    .execute(params![
                        next_event_id,
                        "run.status",
                        group_seq,
                        run_seq,
                        0,
                        "queued",
                        Option::<String>::None,
                        now
                    ])
                    .expect("queued event");
                next_event_id += 1;
                run_seq_next = run_seq + 1;
            }
            transaction
                .prepare_cached(
                    "UPDATE groups SET num_runs = num_runs + ?2, n_queued = n_queued + ?2, \
                     modified_at = ?3 WHERE seq = ?1",
                )
                .expect("group update")
                .execute(params![group_seq, batch as i64, now])
                .expect("group counts");
            let total = (done + batch) as i64;
            let data = group_status_json(total, batch as i64, done as i64, now);
            insert_event
                .execute(params![
                    next_event_id,
                    "group.status",
                    group_seq,
                    Option::<i64>::None,
                    1,
                    Option::<String>::None,
                    data,
                    now
                ])
                .expect("group status event");
            next_event_id += 1;
        }
        transaction.commit().expect("commit add");
        // 2. claim
        let now = now_micros();
        let transaction = connection.transaction().expect("begin claim");
        {
            let mut update = transaction
                .prepare_cached(
                    "UPDATE runs SET status = 'running', attempts = ?2, modified_at = ?3 \
                     WHERE seq = ?1",
                )
                .expect("claim update");
            let mut insert_event = transaction
                .prepare_cached(
                    "INSERT INTO events (id, type, group_seq, run_seq, stream, status, data, \
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .expect("insert event");
            for run_seq in first_seq..first_seq + batch as i64 {
                update.execute(params![run_seq, 1, now]).expect("claim");
                insert_event
                    .execute(params![
                        next_event_id,
                        "run.status",
                        group_seq,
                        run_seq,
                        0,
                        "running",
                        Option::<String>::None,
                        now
                    ])
                    .expect("running event");
                next_event_id += 1;
            }
            transaction
                .prepare_cached(
                    "UPDATE groups SET n_queued = n_queued - ?2, n_running = n_running + ?2, \
                     modified_at = ?3 WHERE seq = ?1",
                )
                .expect("group update")
                .execute(params![group_seq, batch as i64, now])
                .expect("group counts");
        }
        transaction.commit().expect("commit claim");
        // 3. finish
        let now = now_micros();
        let transaction = connection.transaction().expect("begin finish");
        {
            let mut update = transaction
                .prepare_cached(
                    "UPDATE runs SET status = 'completed', modified_at = ?2, \
                     error = coalesce(?3, error), output = coalesce(?4, output) WHERE seq = ?1",
                )
                .expect("finish update");
            let mut insert_event = transaction
                .prepare_cached(
                    "INSERT INTO events (id, type, group_seq, run_seq, stream, status, data, \
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .expect("insert event");
            for run_seq in first_seq..first_seq + batch as i64 {
                update
                    .execute(params![
                        run_seq,
                        now,
                        Option::<String>::None,
                        template.stored_output
                    ])
                    .expect("finish");
                // taskyard stores a run's terminal event without its data:
                // readers make it from the run's row.
                let data = Option::<String>::None;
                insert_event
                    .execute(params![
                        next_event_id,
                        "run.status",
                        group_seq,
                        run_seq,
                        1,
                        "completed",
                        data,
                        now
                    ])
                    .expect("terminal event");
                next_event_id += 1;
            }
            transaction
                .prepare_cached(
                    "UPDATE groups SET n_running = n_running - ?2, \
                     n_completed = n_completed + ?2, modified_at = ?3 WHERE seq = ?1",
                )
                .expect("group update")
                .execute(params![group_seq, batch as i64, now])
                .expect("group counts");
            done += batch;
            if done == runs {
                let data = group_status_json(runs as i64, 0, runs as i64, now);
                insert_event
                    .execute(params![
                        next_event_id,
                        "group.status",
                        group_seq,
                        Option::<i64>::None,
                        1,
                        Option::<String>::None,
                        data,
                        now
                    ])
                    .expect("final group status event");
                next_event_id += 1;
            }
        }
        transaction.commit().expect("commit finish");
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(connection);
    Floor {
        runs,
        seconds,
        runs_per_s: runs as f64 / seconds,
    }
}

/// What a database holds per run, to check that the floor writes what the
/// engine writes: rows per run of each event kind, and the mean bytes of
/// each stored text column.
#[derive(Debug)]
pub struct RowShape {
    pub runs: i64,
    /// (type, stream, status) → rows per run.
    pub events_per_run: Vec<(String, i64, String, f64)>,
    /// column → mean length in bytes over the runs or events that have it.
    pub mean_bytes: Vec<(String, f64)>,
}

pub fn row_shape(path: &Path) -> RowShape {
    let connection = Connection::open(path).expect("open for shape");
    let runs: i64 = connection
        .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
        .expect("runs");
    let mut statement = connection
        .prepare(
            "SELECT type, stream, coalesce(status, ''), count(*) FROM events \
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .expect("events");
    let events_per_run = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)? as f64 / runs.max(1) as f64,
            ))
        })
        .expect("query")
        .collect::<rusqlite::Result<Vec<_>>>()
        .expect("rows");
    let mut mean_bytes = Vec::new();
    for (name, sql) in [
        ("runs.id", "SELECT avg(length(id)) FROM runs"),
        ("runs.input", "SELECT avg(length(input)) FROM runs"),
        ("runs.task_spec", "SELECT avg(length(task_spec)) FROM runs"),
        ("runs.output", "SELECT avg(length(output)) FROM runs"),
        (
            "events.data (run.status)",
            "SELECT avg(length(data)) FROM events WHERE type = 'run.status' AND data IS NOT NULL",
        ),
    ] {
        let mean: Option<f64> = connection
            .query_row(sql, [], |row| row.get(0))
            .expect("mean");
        mean_bytes.push((name.to_string(), mean.unwrap_or(0.0)));
    }
    RowShape {
        runs,
        events_per_run,
        mean_bytes,
    }
}

/// Panics unless the floor's database holds the engine's rows per run:
/// the same event kinds in the same numbers (group status events aside,
/// whose number depends on batching) and text columns of the same sizes
/// within 3% (ids, counts and timestamps vary in digits).
pub fn assert_same_shape(engine: &RowShape, floor: &RowShape) {
    let per_run = |shape: &RowShape| -> Vec<(String, i64, String, f64)> {
        shape
            .events_per_run
            .iter()
            .filter(|(kind, ..)| kind != "group.status")
            .cloned()
            .collect()
    };
    let (engine_events, floor_events) = (per_run(engine), per_run(floor));
    assert_eq!(
        engine_events.len(),
        floor_events.len(),
        "event kinds differ: engine {engine_events:?}, floor {floor_events:?}"
    );
    for (a, b) in engine_events.iter().zip(&floor_events) {
        assert!(
            a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && (a.3 - b.3).abs() < 1e-9,
            "events per run differ: engine {a:?}, floor {b:?}"
        );
    }
    for ((name, a), (_, b)) in engine.mean_bytes.iter().zip(&floor.mean_bytes) {
        let tolerance = (a * 0.03).max(2.0);
        assert!(
            (a - b).abs() <= tolerance,
            "{name}: the engine stores {a:.1} bytes per row, the floor {b:.1}"
        );
    }
}

// ---------------------------------------------------------------------
// A database of stored runs for the read and footprint benches
// ---------------------------------------------------------------------

/// A database holding one group per size, every run completed by `mock`.
pub struct StoredRuns {
    pub path: PathBuf,
    /// (runs, group id), in the order of the sizes asked for.
    pub groups: Vec<(usize, String)>,
    /// How the database was made, for the report.
    pub how: String,
    /// Seconds the build took, when it was built now.
    pub built_s: Option<f64>,
    /// Keeps a scratch directory alive when the database is not cached.
    _scratch: Option<tempfile::TempDir>,
}

impl StoredRuns {
    pub fn total_runs(&self) -> usize {
        self.groups.iter().map(|(runs, _)| runs).sum()
    }
}

/// The database for `sizes`: under `cargo bench` cached in
/// `target/bench/stored-runs-SIZES-SCHEMA.db` (keyed by the sizes and a
/// hash of `schema.sql` and the schema version) so that reruns skip the
/// build; under `cargo test`
/// built fresh in a scratch directory.
///
/// Built through the engine, the honest path: each group's runs added in
/// batches of 1,000 and completed by the zero-latency `mock`, waited until
/// the group is inactive; then the WAL is checkpointed into the file.
pub fn stored_runs(sizes: &[usize]) -> StoredRuns {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    include_str!("../../schema.sql").hash(&mut hasher);
    // A migration changes what is stored as much as schema.sql does.
    taskyard::store::SCHEMA_VERSION.hash(&mut hasher);
    let key = format!(
        "stored-runs-{}-{:016x}",
        sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("-"),
        hasher.finish()
    );
    let how = "built through the engine: runs added in batches of 1,000, completed by `mock`";
    let (scratch, path) = if full_run() {
        (None, bench_dir().join(format!("{key}.db")))
    } else {
        let scratch = tempfile::tempdir().expect("temporary directory");
        let path = scratch.path().join("stored.db");
        (Some(scratch), path)
    };
    let sidecar = path.with_extension("json");
    if full_run() && path.exists() {
        if let Ok(text) = std::fs::read_to_string(&sidecar) {
            let groups: Vec<(usize, String)> = serde_json::from_str(&text).expect("cached sidecar");
            return StoredRuns {
                path,
                groups,
                how: format!("{how} (cached in {})", bench_dir().display()),
                built_s: None,
                _scratch: scratch,
            };
        }
    }
    // Build under a temporary name so that an interrupted build is never
    // taken for a finished one.
    let building = path.with_extension("building.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", building.display()));
    }
    let started = Instant::now();
    let engine = Engine::open(&building, taskyard::faces::default_config()).expect("engine");
    let mut groups = Vec::new();
    for &size in sizes {
        eprintln!("building a group of {size} runs in {}", building.display());
        // The wire id: the read benches ask for it over HTTP.
        let group_id = engine_lifecycle(&engine, size, "mock");
        groups.push((
            size,
            taskyard::faces::parallel::wire::wire_group_id(&group_id),
        ));
    }
    engine.shutdown(Duration::from_secs(10));
    drop(engine);
    let connection = Connection::open(&building).expect("reopen");
    connection
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    drop(connection);
    let built_s = started.elapsed().as_secs_f64();
    std::fs::rename(&building, &path).expect("rename the built database");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", building.display()));
    }
    std::fs::write(&sidecar, serde_json::to_string(&groups).expect("json")).expect("sidecar");
    StoredRuns {
        path,
        groups,
        how: format!("{how} (built now in {built_s:.0} s)"),
        built_s: Some(built_s),
        _scratch: scratch,
    }
}

/// A small deterministic generator (xorshift) for picking rows to read.
pub struct Picker(u64);

impl Picker {
    pub fn new(seed: u64) -> Picker {
        Picker(seed.max(1))
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// A group of `runs` finished `echo` runs on `api`, added 1,000 a request;
/// answers the group's id once none is active.
pub fn finished_echo_group(api: &taskyard::faces::parallel::Api, runs: usize) -> String {
    use taskyard::faces::parallel::wire::{AddRuns, RunInput};
    let group = api.create_group(None).expect("group");
    for first in (0..runs).step_by(1_000) {
        let inputs = (first..(first + 1_000).min(runs))
            .map(|index| RunInput::new(json!({ "item": index }), "echo"))
            .collect();
        api.add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect("runs added");
    }
    wait_until(
        "the runs to finish",
        std::time::Duration::from_secs(900),
        || {
            !api.get_group(&group.taskgroup_id)
                .expect("group")
                .status
                .is_active
        },
    );
    group.taskgroup_id
}
