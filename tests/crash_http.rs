//! The crash loop over HTTP (issue 5): the real `taskyard serve` binary
//! serves one group to which a writer adds 20,000 runs in batches of 1,000
//! (each add carries an `Idempotency-Key` and is retried until it gets a
//! 2xx), while two readers follow the group events stream. The server is
//! SIGKILLed at seeded moments and restarted on the same database; the
//! readers reconnect with their last `event_id` (one through the
//! `last_event_id` query parameter, one through `Last-Event-ID`) and the
//! writer follows the new address. Half the kills land while batches are
//! still being added (the adds are released in steps so that they spread
//! over all batches, and every other one aims at an add on the wire), half
//! while runs execute (spread by the share of runs finished; the last batch
//! runs slowly so that the running phase outlasts its kills even in a
//! release build).
//!
//! It proves that every run whose creation got a 2xx exists and reached
//! exactly one terminal state, with the output or error its metadata
//! controls dictate (a kill may only turn a run into the recovery failure
//! "the process stopped during attempt k of k"); that each reader saw every
//! event of the group stream exactly once, in increasing id order; that the
//! group's counts equal a recount of its runs; and that the database passes
//! `PRAGMA integrity_check`. A regression test at the end pins the
//! scheduler bug the loop found (runs in a retry backoff held the workers'
//! slots).
//!
//! `TASKYARD_CRASH_SEED` picks the run mix and the kill delays (it is
//! printed, so a failing plan can be rerun; thread timing still varies),
//! `TASKYARD_CRASH_KILLS` sets the kills (10 by default; the long run is
//! `TASKYARD_CRASH_KILLS=50 cargo test --release --test crash_http -- --nocapture`)
//! and `TASKYARD_CRASH_RUNS` the runs (20,000 by default).

#[path = "support/http.rs"]
mod client;
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use client::{frames_of, read_chunk, read_head, read_response, request_bytes, Frame, Response};
use serde_json::{json, Value};
use support::{sqlite, TestDir};
use taskyard::faces::parallel::wire::RunInput;
use taskyard::limits::CLAIM_SLOTS_PER_WORKER;
use taskyard::processors::{MockProcessor, ProcessorConfig};
use taskyard::{Config, RunStatus};

const SEED_DEFAULT: u64 = 0x7a5c_4a11_c4a5_0005;
const KILLS_DEFAULT: usize = 10;
const RUNS_DEFAULT: usize = 20_000;
/// Runs per add request: the spec's `RUNS_PER_REQUEST_MAX`.
const BATCH: usize = 1_000;
/// A kill lands this long after the server answered its first request
/// (or, in the running phase, after the writer finished), drawn per kill.
const KILL_DELAY_MS_MIN: u64 = 50;
const KILL_DELAY_MS_MAX: u64 = 600;
/// Worker threads of the server; the slow tail is sized from it.
const WORKERS: usize = 16;
/// The last batch runs this long per run and per running-phase kill, so
/// that the running phase outlasts its kills: a tail of 1,000 runs on 16
/// workers lasts about 1 s per kill, while a kill cycle (restart, answer,
/// at most 600 ms) takes less.
const TAIL_DELAY_MS_PER_KILL: u64 = 16;
const TAIL_DELAY_MS_MIN: u64 = 30;
/// The configured processor with more attempts than the default 3.
const RETRY5: &str = "retry5";
const RETRY5_MAX_ATTEMPTS: u32 = 5;
const MAX_ATTEMPTS_DEFAULT: u32 = 3;
/// One standalone `POST /v1/tasks/runs` after every this many batches.
const STANDALONE_EVERY_BATCHES: usize = 5;
/// How long one request may take before the client gives up and retries.
const REQUEST_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long a stream may stay silent before its reader reconnects; the
/// server sends a keep-alive after 15 s of silence, and events flow far
/// more often than this while the group is active.
const STREAM_SILENCE_MAX: Duration = Duration::from_secs(5);
/// A server life must print its address and answer within this.
const START_WAIT_MAX: Duration = Duration::from_secs(60);
/// Pause between attempts to reach a server that is down or restarting.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// SplitMix64: a fixed, portable generator, so a seed replays a run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the test run looks like, from the environment.
#[derive(Debug, Clone, Copy)]
struct Plan {
    seed: u64,
    kills: usize,
    runs: usize,
    /// Kills while batches remain to be added; the rest land after.
    add_kills: usize,
    tail_delay_ms: u64,
}

impl Plan {
    fn from_env() -> Plan {
        let seed = env_number("TASKYARD_CRASH_SEED", SEED_DEFAULT);
        let kills = env_number("TASKYARD_CRASH_KILLS", KILLS_DEFAULT as u64) as usize;
        let runs = env_number("TASKYARD_CRASH_RUNS", RUNS_DEFAULT as u64) as usize;
        assert!(kills >= 2, "at least one kill per phase");
        assert!(
            runs >= 2 * BATCH && runs % BATCH == 0,
            "TASKYARD_CRASH_RUNS must be a multiple of {BATCH}, at least {}",
            2 * BATCH
        );
        let add_kills = kills.div_ceil(2);
        let run_kills = (kills - add_kills) as u64;
        Plan {
            seed,
            kills,
            runs,
            add_kills,
            tail_delay_ms: (run_kills * TAIL_DELAY_MS_PER_KILL).max(TAIL_DELAY_MS_MIN),
        }
    }

    fn batches(&self) -> usize {
        self.runs / BATCH
    }

    /// Runs finished before running-phase kill `kill` (counted from 0).
    fn finished_before_run_kill(&self, kill: usize) -> u64 {
        ((kill + 1) * self.runs / (self.kills - self.add_kills + 1)) as u64
    }

    /// Batches the writer may have acknowledged before add-phase kill
    /// `kill`: the adds are released in steps so that the add-phase kills
    /// spread over all batches however fast the server is.
    fn quota_before_add_kill(&self, kill: usize) -> usize {
        (kill + 1) * self.batches() / (self.add_kills + 1)
    }
}

/// What a run is asked to do through its processor and metadata controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Class {
    /// `mock`, no controls: completes at once.
    Plain,
    /// `echo`: completes with its input as output.
    Echo,
    /// `mock` with `mock_delay_ms` of a few to tens of ms.
    Latency,
    /// `mock_fail`: fails permanently with that message.
    FailPermanent,
    /// `mock_fail_times` 1 or 2 of 3 attempts: completes on a retry.
    Retried,
    /// `retry5` (5 attempts) with `mock_fail_times` 4: completes on the last.
    RetriedLong,
    /// `mock_fail_times` 3 of 3 attempts: fails once retries are exhausted.
    Exhausted,
    /// The last batch: `mock` with a long delay, so the running phase lasts.
    SlowTail,
}

/// The run at `index`: its class, processor and metadata.
fn run_spec(plan: &Plan, index: usize) -> (Class, &'static str, Option<Value>) {
    if index >= plan.runs - BATCH {
        return (
            Class::SlowTail,
            "mock",
            Some(json!({ "mock_delay_ms": plan.tail_delay_ms })),
        );
    }
    let draw = mix(plan.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    match draw % 100 {
        0..=54 => (Class::Plain, "mock", None),
        55..=64 => (Class::Echo, "echo", None),
        65..=76 => (
            Class::Latency,
            "mock",
            Some(json!({ "mock_delay_ms": 2 + (draw >> 8) % 29 })),
        ),
        77..=82 => (
            Class::FailPermanent,
            "mock",
            Some(json!({ "mock_fail": format!("forced failure of run {index}") })),
        ),
        83..=90 => (
            Class::Retried,
            "mock",
            Some(json!({ "mock_fail_times": 1 + (draw >> 8) % 2 })),
        ),
        91..=93 => (
            Class::RetriedLong,
            RETRY5,
            Some(json!({ "mock_fail_times": 4 })),
        ),
        _ => (
            Class::Exhausted,
            "mock",
            Some(json!({ "mock_fail_times": 3 })),
        ),
    }
}

fn run_text(index: usize) -> String {
    format!("run {index}")
}

/// The add-runs body of batch `batch`: each run's input names its index.
fn batch_body(plan: &Plan, batch: usize) -> Value {
    let inputs: Vec<Value> = (batch * BATCH..(batch + 1) * BATCH)
        .map(|index| {
            let (_, processor, metadata) = run_spec(plan, index);
            let mut input = json!({ "input": { "text": run_text(index) }, "processor": processor });
            if let Some(metadata) = metadata {
                input["metadata"] = metadata;
            }
            input
        })
        .collect();
    json!({
        "inputs": inputs,
        "default_task_spec": {
            "output_schema": {
                "type": "json",
                "json_schema": {
                    "type": "object",
                    "properties": { "text": { "type": "string" } },
                    "required": ["text"],
                    "additionalProperties": false
                }
            }
        }
    })
}

/// State shared by the controller, the writer and the readers.
#[derive(Default)]
struct State {
    /// The live server's address; `None` while it is down.
    addr: Option<SocketAddr>,
    /// Batches the writer may have acknowledged.
    quota: usize,
    /// Batches acknowledged so far.
    acked_batches: usize,
    /// True while the writer has a request on the wire.
    writer_in_request: bool,
    /// How long the writer's last acknowledged add took.
    last_add_ms: u64,
    /// Once set, readers stop when they have seen this event id.
    last_group_event: Option<u64>,
    /// The first failure of any thread, so that the others stop waiting.
    failure: Option<String>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().expect("state"));
        self.changed.notify_all();
    }

    fn read<T>(&self, look: impl FnOnce(&State) -> T) -> T {
        look(&self.state.lock().expect("state"))
    }

    fn fail(&self, message: String) {
        self.update(|state| {
            state.failure.get_or_insert(message);
        });
    }

    /// Waits until `ready` answers a value, a thread failed, or `deadline`.
    fn wait_until<T>(
        &self,
        label: &str,
        deadline: Instant,
        mut ready: impl FnMut(&State) -> Option<T>,
    ) -> Result<T, String> {
        let mut state = self.state.lock().expect("state");
        loop {
            if let Some(failure) = &state.failure {
                return Err(format!("stopped waiting for {label}: {failure}"));
            }
            if let Some(value) = ready(&state) {
                return Ok(value);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("timed out waiting for {label}"));
            }
            state = self
                .changed
                .wait_timeout(state, left.min(Duration::from_millis(100)))
                .expect("state")
                .0;
        }
    }

    fn addr(&self, deadline: Instant) -> Result<SocketAddr, String> {
        self.wait_until("the server address", deadline, |state| state.addr)
    }
}

/// One request on a new connection; any I/O failure (a killed server, a
/// refused connection, a timeout) is an `Err` for the caller to retry.
fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(REQUEST_WAIT_MAX))?;
    stream.set_write_timeout(Some(REQUEST_WAIT_MAX))?;
    stream.set_nodelay(true)?;
    let mut all_headers = vec![("Connection", "close")];
    all_headers.extend_from_slice(headers);
    if body.is_some() {
        all_headers.push(("Content-Type", "application/json"));
    }
    (&stream).write_all(&request_bytes(method, path, &all_headers, body))?;
    read_response(&mut BufReader::new(stream))
}

/// Sends one request to whichever server is live until it gets an answer
/// that is not a 503; answers that response, how many earlier attempts
/// failed on the way (a lost answer, a refused connection), and how long
/// the answered attempt took.
fn request_until_answered(
    shared: &Shared,
    deadline: Instant,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<(Response, usize, Duration), String> {
    let mut retries = 0;
    loop {
        let addr = shared.addr(deadline)?;
        let sent = Instant::now();
        match try_request(addr, method, path, headers, body) {
            Ok(response) if response.status != 503 => {
                return Ok((response, retries, sent.elapsed()))
            }
            Ok(_) | Err(_) => {
                retries += 1;
                if Instant::now() >= deadline {
                    return Err(format!("{method} {path}: no answer before the deadline"));
                }
                std::thread::sleep(RECONNECT_PAUSE);
            }
        }
    }
}

/// What the writer got acknowledged.
#[derive(Default)]
struct Written {
    /// The run ids of each batch's 2xx answer, in batch order.
    batches: Vec<Vec<String>>,
    /// Standalone runs (`POST /v1/tasks/runs`) and their input text.
    standalone: Vec<(String, String)>,
    /// Requests sent again after a failure.
    retries: usize,
    /// 2xx answers that were replays: the first attempt committed but its
    /// answer was lost to a kill.
    replays: usize,
}

fn writer(
    plan: Plan,
    shared: &Shared,
    group: &str,
    started: Instant,
    deadline: Instant,
) -> Result<Written, String> {
    let mut written = Written::default();
    let path = format!("/v1beta/tasks/groups/{group}/runs");
    for batch in 0..plan.batches() {
        shared.wait_until("the writer's quota", deadline, |state| {
            (state.quota > batch).then_some(())
        })?;
        let body = batch_body(&plan, batch).to_string();
        let key = format!("crash-http-batch-{batch}");
        shared.update(|state| state.writer_in_request = true);
        let answered = request_until_answered(
            shared,
            deadline,
            "POST",
            &path,
            &[("Idempotency-Key", &key)],
            Some(body.as_bytes()),
        );
        shared.update(|state| state.writer_in_request = false);
        let (response, retries, took) = answered?;
        written.retries += retries;
        if response.status != 200 {
            return Err(format!(
                "batch {batch}: status {} {}",
                response.status,
                response.text()
            ));
        }
        if response.header("Idempotent-Replayed") == Some("true") {
            written.replays += 1;
        }
        let answer: Value = serde_json::from_slice(&response.body)
            .map_err(|e| format!("batch {batch}: answer is not JSON: {e}"))?;
        let ids: Vec<String> = answer["run_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if ids.len() != BATCH {
            return Err(format!("batch {batch}: {} run ids in {answer}", ids.len()));
        }
        written.batches.push(ids);
        shared.update(|state| {
            state.acked_batches = batch + 1;
            state.last_add_ms = took.as_millis() as u64;
        });
        eprintln!(
            "crash_http: {:6.1} s batch {batch} acknowledged after {retries} retries",
            started.elapsed().as_secs_f64()
        );
        if batch % STANDALONE_EVERY_BATCHES == STANDALONE_EVERY_BATCHES - 1 {
            let text = format!("standalone after batch {batch}");
            let body = json!({
                "input": text,
                "processor": "echo",
                "task_spec": { "output_schema": "the input" },
                "metadata": { "mock_delay_ms": 5 }
            })
            .to_string();
            let key = format!("crash-http-standalone-{batch}");
            let (response, retries, _) = request_until_answered(
                shared,
                deadline,
                "POST",
                "/v1/tasks/runs",
                &[("Idempotency-Key", &key)],
                Some(body.as_bytes()),
            )?;
            written.retries += retries;
            if response.status != 202 {
                return Err(format!(
                    "standalone run: status {} {}",
                    response.status,
                    response.text()
                ));
            }
            let run: Value = serde_json::from_slice(&response.body)
                .map_err(|e| format!("standalone run answer is not JSON: {e}"))?;
            let id = run["run_id"]
                .as_str()
                .ok_or_else(|| format!("standalone run answer without run_id: {run}"))?;
            written.standalone.push((id.to_string(), text));
        }
    }
    Ok(written)
}

/// How a reader hands its cursor back on reconnect.
#[derive(Debug, Clone, Copy)]
enum Resume {
    /// `?last_event_id=X` on `/v1beta`.
    Query,
    /// `Last-Event-ID: X` on `/v1`.
    Header,
}

/// An event of the group stream as a reader got it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    id: u64,
    kind: String,
    data: String,
}

struct Followed {
    seen: Vec<Seen>,
    connections: usize,
}

/// Follows the group events stream across kills: reconnects after any
/// error or end with the last `event_id` it saw, until it has seen the
/// group's last event (known once the group is inactive for good).
fn reader(
    resume: Resume,
    shared: &Shared,
    group: &str,
    deadline: Instant,
) -> Result<Followed, String> {
    let mut seen: Vec<Seen> = Vec::new();
    let mut connections = 0;
    loop {
        let last = seen.last().map_or(0, |event| event.id);
        if shared.read(|state| state.last_group_event.is_some_and(|target| last >= target)) {
            return Ok(Followed { seen, connections });
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{resume:?} reader: deadline passed at event {last} after {connections} connections"
            ));
        }
        let addr = shared.addr(deadline)?;
        let before = seen.len();
        let (path, cursor_header);
        match resume {
            Resume::Query => {
                path = format!("/v1beta/tasks/groups/{group}/events?last_event_id={last}");
                cursor_header = None;
            }
            Resume::Header => {
                path = format!("/v1/tasks/groups/{group}/events");
                cursor_header = (last > 0).then(|| last.to_string());
            }
        }
        let mut headers = vec![("Accept", "text/event-stream"), ("Connection", "close")];
        if let Some(cursor) = &cursor_header {
            headers.push(("Last-Event-ID", cursor));
        }
        match read_stream(addr, &path, &headers, last, &mut seen) {
            Ok(()) => connections += 1,
            Err(StreamError::Io) => connections += 1,
            Err(StreamError::Status(503)) => {}
            Err(StreamError::Status(status)) => {
                return Err(format!("{resume:?} reader: {path} answered {status}"));
            }
            Err(StreamError::Bad(message)) => {
                return Err(format!("{resume:?} reader: {path}: {message}"));
            }
        }
        if seen.len() == before {
            // Nothing new: the server is down, or the group is inactive
            // and the test has not yet said which event is the last.
            std::thread::sleep(RECONNECT_PAUSE);
        }
    }
}

enum StreamError {
    /// The connection failed or was cut: reconnect.
    Io,
    /// An answer other than 200.
    Status(u16),
    /// The stream broke its contract: fail.
    Bad(String),
}

impl From<io::Error> for StreamError {
    fn from(_: io::Error) -> StreamError {
        StreamError::Io
    }
}

/// One connection to the group stream: appends every complete event to
/// `seen`, checking that ids only grow, until the stream ends (`Ok`) or
/// the connection fails. A chunk cut short by a kill is dropped whole, and
/// so is a frame without its closing blank line.
fn read_stream(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    cursor: u64,
    seen: &mut Vec<Seen>,
) -> Result<(), StreamError> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(STREAM_SILENCE_MAX))?;
    stream.set_nodelay(true)?;
    (&stream).write_all(&request_bytes("GET", path, headers, None))?;
    let mut reader = BufReader::new(stream);
    let (status, _) = read_head(&mut reader)?;
    if status != 200 {
        return Err(StreamError::Status(status));
    }
    let mut pending: Vec<u8> = Vec::new();
    while let Some(data) = read_chunk(&mut reader)? {
        pending.extend_from_slice(&data);
        let Some(end) = pending.windows(2).rposition(|pair| pair == b"\n\n") else {
            continue;
        };
        let complete: Vec<u8> = pending.drain(..end + 2).collect();
        for frame in frames_of(&complete, false) {
            let Frame::Event { name, data } = frame else {
                continue;
            };
            if name == "error" {
                return Err(StreamError::Bad(format!("an error event: {data}")));
            }
            let id: u64 = data["event_id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .ok_or_else(|| StreamError::Bad(format!("event without an event_id: {data}")))?;
            let last = seen.last().map_or(cursor, |event| event.id);
            if id <= last {
                return Err(StreamError::Bad(format!(
                    "event {id} came after event {last} (resumed from {cursor})"
                )));
            }
            seen.push(Seen {
                id,
                kind: name,
                data: data.to_string(),
            });
        }
    }
    Ok(())
}

/// One life of the server process.
struct Life {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
    /// Drains stdout so that the server never blocks on a full pipe.
    _stdout: JoinHandle<()>,
}

impl Life {
    fn start(dir: &TestDir, config: &Path, life: usize) -> Life {
        let stderr = dir.dir.path().join(format!("server-{life}.stderr"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_taskyard"))
            .arg("serve")
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(dir.db())
            .arg("--config")
            .arg(config)
            .arg("--workers")
            .arg(WORKERS.to_string())
            .env_remove("TASKYARD_ADDR")
            .env_remove("TASKYARD_DB")
            .env_remove("TASKYARD_API_KEYS")
            .env_remove("TASKYARD_API_KEY_FILE")
            .env_remove("TASKYARD_SYNCHRONOUS")
            .env_remove("TASKYARD_DB_SIZE_MAX_MB")
            .env_remove("TASKYARD_STREAMS_OPEN_MAX")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&stderr).expect("stderr file"),
            ))
            .spawn()
            .expect("the server starts");
        let stdout = child.stdout.take().expect("server stdout");
        let (sender, lines) = std::sync::mpsc::channel();
        let drain = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = sender.send(line);
            }
        });
        let line = match lines.recv_timeout(START_WAIT_MAX) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().expect("server reaped");
                panic!(
                    "server life {life} printed no start line ({status})\n{}",
                    tail(&stderr)
                );
            }
        };
        let addr = support::start_line_addr(&line)
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in the start line {line:?}"));
        Life {
            child,
            addr,
            stderr,
            _stdout: drain,
        }
    }

    /// Waits for the first answer of this life: `GET /healthz` 200.
    fn wait_answering(&mut self) {
        let until = Instant::now() + START_WAIT_MAX;
        loop {
            if let Ok(response) = try_request(self.addr, "GET", "/healthz", &[], None) {
                if response.status == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().expect("server status") {
                panic!("the server exited ({status})\n{}", tail(&self.stderr));
            }
            assert!(
                Instant::now() < until,
                "the server does not answer /healthz\n{}",
                tail(&self.stderr)
            );
            std::thread::sleep(RECONNECT_PAUSE);
        }
    }

    /// SIGKILL (`Child::kill` sends it on unix), then reap.
    fn kill(&mut self) {
        self.child.kill().expect("server killed");
        let status = self.child.wait().expect("server reaped");
        assert!(
            !status.success(),
            "the server had exited on its own before the kill\n{}",
            tail(&self.stderr)
        );
    }
}

/// A failing test must not leave a server behind.
impl Drop for Life {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(4_000);
    format!(
        "--- server stderr ---\n{}",
        String::from_utf8_lossy(&bytes[start..])
    )
}

/// The group's status through the API of the live server.
fn group_status(shared: &Shared, group: &str, deadline: Instant) -> Result<Value, String> {
    let (response, _, _) = request_until_answered(
        shared,
        deadline,
        "GET",
        &format!("/v1/tasks/groups/{group}"),
        &[],
        None,
    )?;
    if response.status != 200 {
        return Err(format!(
            "GET group: {} {}",
            response.status,
            response.text()
        ));
    }
    serde_json::from_slice::<Value>(&response.body)
        .map(|group| group["status"].clone())
        .map_err(|e| format!("GET group answer is not JSON: {e}"))
}

/// Polls the group through the API until `done` holds for its status.
fn wait_group(
    shared: &Shared,
    group: &str,
    deadline: Instant,
    life: &Life,
    mut done: impl FnMut(&Value) -> bool,
) {
    let mut pause = Duration::from_millis(1);
    loop {
        let status = group_status(shared, group, deadline)
            .unwrap_or_else(|message| panic!("{message}\n{}", tail(&life.stderr)));
        if done(&status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; the group is at {status}\n{}",
            tail(&life.stderr)
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn terminal_runs(status: &Value) -> u64 {
    ["completed", "failed", "cancelled"]
        .iter()
        .map(|name| status["task_run_status_counts"][name].as_u64().unwrap_or(0))
        .sum()
}

/// A kill and what was in flight when it landed.
#[derive(Debug)]
struct Kill {
    adding: bool,
    delay_ms: u64,
    /// The writer had an add or create on the wire.
    cut_request: bool,
    /// Runs `running` just before the kill, as the API reported.
    running: u64,
}

#[test]
fn crash_loop_over_http_loses_nothing_acknowledged_and_streams_every_event_once() {
    if !support::sqlite_only(
        "crash_loop_over_http_loses_nothing_acknowledged_and_streams_every_event_once",
    ) {
        return;
    }
    let started = Instant::now();
    let plan = Plan::from_env();
    eprintln!(
        "crash_http: seed {:#x} (TASKYARD_CRASH_SEED), {} kills, {} runs, tail delay {} ms",
        plan.seed, plan.kills, plan.runs, plan.tail_delay_ms
    );
    // Generous, but a hang still fails: per kill a restart and a few
    // seconds of work, plus the runs themselves.
    let deadline = started + Duration::from_secs(240 + 15 * plan.kills as u64);
    let dir = TestDir::new();
    let config = dir.dir.path().join("taskyard.toml");
    std::fs::write(
        &config,
        format!("[processors.{RETRY5}]\nkind = \"mock\"\nmax_attempts = {RETRY5_MAX_ATTEMPTS}\n"),
    )
    .expect("config written");

    let shared = Arc::new(Shared::default());
    let mut life = Life::start(&dir, &config, 0);
    life.wait_answering();
    shared.update(|state| state.addr = Some(life.addr));
    let (response, _, _) = request_until_answered(
        &shared,
        deadline,
        "POST",
        "/v1/tasks/groups",
        &[("Idempotency-Key", "crash-http-group")],
        Some(
            json!({"metadata": {"test": "crash_http"}})
                .to_string()
                .as_bytes(),
        ),
    )
    .expect("group created");
    assert_eq!(response.status, 200, "{}", response.text());
    let group = response.json()["taskgroup_id"]
        .as_str()
        .expect("taskgroup_id")
        .to_string();

    let writer_thread = {
        let (shared, group) = (shared.clone(), group.clone());
        std::thread::spawn(move || {
            let result = writer(plan, &shared, &group, started, deadline);
            if let Err(message) = &result {
                shared.fail(format!("writer: {message}"));
            }
            result
        })
    };
    let reader_threads: Vec<JoinHandle<Result<Followed, String>>> = [Resume::Query, Resume::Header]
        .into_iter()
        .map(|resume| {
            let (shared, group) = (shared.clone(), group.clone());
            std::thread::spawn(move || {
                let result = reader(resume, &shared, &group, deadline);
                if let Err(message) = &result {
                    shared.fail(message.clone());
                }
                result
            })
        })
        .collect();

    let mut random = SplitMix(plan.seed);
    let mut kills: Vec<Kill> = Vec::new();
    for kill in 0..plan.kills {
        let adding = kill < plan.add_kills;
        let acked = shared.read(|state| state.acked_batches);
        let mut quota = if adding {
            plan.quota_before_add_kill(kill)
        } else {
            plan.batches()
        };
        // Every other add-phase kill aims at a request on the wire, the
        // moment an answer can be lost after its commit (to be replayed on
        // retry) or the commit itself cut short: this life must add one.
        let mid_request = adding && kill % 2 == 1 && acked + 1 < plan.batches();
        if mid_request {
            quota = quota.max(acked + 1);
        }
        shared.update(|state| state.quota = quota);
        if !adding {
            // The running phase starts once every batch is acknowledged,
            // and its kills spread over it by the share of runs finished.
            let batches = plan.batches();
            shared
                .wait_until("every batch acknowledged", deadline, |state| {
                    (state.acked_batches == batches).then_some(())
                })
                .unwrap_or_else(|message| panic!("{message}\n{}", tail(&life.stderr)));
            let finished = plan.finished_before_run_kill(kill - plan.add_kills);
            wait_group(&shared, &group, deadline, &life, |status| {
                terminal_runs(status) >= finished || status["is_active"] == json!(false)
            });
        }
        let group_now = || {
            group_status(&shared, &group, deadline)
                .unwrap_or_else(|message| panic!("{message}\n{}", tail(&life.stderr)))
        };
        // The pauses are deliberate: they pick the kill moment.
        let (delay_ms, status) = if mid_request {
            let status = group_now();
            let add_ms = shared
                .wait_until("an add on the wire", deadline, |state| {
                    state.writer_in_request.then_some(state.last_add_ms)
                })
                .unwrap_or_else(|message| panic!("{message}\n{}", tail(&life.stderr)));
            // Over the whole request, its end included, where the commit
            // is done and the answer not yet out.
            let delay_ms = random.between(0, (add_ms + add_ms / 4).max(1));
            std::thread::sleep(Duration::from_millis(delay_ms));
            (delay_ms, status)
        } else {
            let delay_ms = random.between(KILL_DELAY_MS_MIN, KILL_DELAY_MS_MAX);
            std::thread::sleep(Duration::from_millis(delay_ms));
            (delay_ms, group_now())
        };
        let running = status["task_run_status_counts"]["running"]
            .as_u64()
            .unwrap_or(0);
        let finished = terminal_runs(&status);
        let (cut_request, acked) =
            shared.read(|state| (state.writer_in_request, state.acked_batches));
        if adding {
            assert!(acked < plan.batches(), "kill {kill}: nothing left to add");
        } else {
            assert_eq!(
                status["is_active"],
                json!(true),
                "kill {kill} of the running phase: the group finished first; \
                 the slow tail is too short ({status})"
            );
        }
        life.kill();
        shared.update(|state| state.addr = None);
        eprintln!(
            "crash_http: {:6.1} s kill {kill} ({}) after {delay_ms} ms: {acked} batches \
             acknowledged, {finished} runs finished, {running} running, a request on the wire: \
             {cut_request}",
            started.elapsed().as_secs_f64(),
            match (adding, mid_request) {
                (true, true) => "adding, aimed at a request",
                (true, false) => "adding",
                _ => "running",
            }
        );
        kills.push(Kill {
            adding,
            delay_ms,
            cut_request,
            running,
        });
        life = Life::start(&dir, &config, kill + 1);
        shared.update(|state| state.addr = Some(life.addr));
        life.wait_answering();
    }

    // The last life runs to the end: every batch in, the group inactive.
    shared.update(|state| state.quota = plan.batches());
    let written = writer_thread
        .join()
        .expect("writer thread")
        .unwrap_or_else(|message| panic!("writer: {message}\n{}", tail(&life.stderr)));
    wait_group(&shared, &group, deadline, &life, |status| {
        status["is_active"] == json!(false)
    });
    eprintln!(
        "crash_http: {:6.1} s the group is inactive",
        started.elapsed().as_secs_f64()
    );
    let stored_stream = group_stream_in_db(&dir, &group);
    let last_event = stored_stream.last().expect("group events").id;
    shared.update(|state| state.last_group_event = Some(last_event));
    let followed: Vec<Followed> = reader_threads
        .into_iter()
        .map(|thread| {
            thread
                .join()
                .expect("reader thread")
                .unwrap_or_else(|message| panic!("{message}\n{}", tail(&life.stderr)))
        })
        .collect();
    // The checks read a database that a SIGKILL left, as after any kill.
    life.kill();
    eprintln!(
        "crash_http: {:6.1} s the readers caught up; checking",
        started.elapsed().as_secs_f64()
    );

    assert_eq!(kills.len(), plan.kills, "kills done");
    let add_phase = kills.iter().filter(|kill| kill.adding).count();
    assert_eq!(add_phase, plan.add_kills);
    assert!(
        plan.kills - add_phase >= 1,
        "no kill landed in the running phase"
    );
    let cut_requests = kills.iter().filter(|kill| kill.cut_request).count();
    let with_runs_running = kills.iter().filter(|kill| kill.running > 0).count();

    let stored_stream = group_stream_in_db(&dir, &group);
    let streamed = check_stream(&plan, &stored_stream);
    let outcomes = check_database(&plan, &dir, &group, &written, &streamed);
    for (index, reader) in followed.iter().enumerate() {
        assert_eq!(
            reader.seen.len(),
            stored_stream.len(),
            "reader {index} saw {} events, the database holds {}",
            reader.seen.len(),
            stored_stream.len()
        );
        for (got, want) in reader.seen.iter().zip(&stored_stream) {
            assert_eq!(
                got, want,
                "reader {index}: event differs from the stored one"
            );
        }
    }

    eprintln!(
        "crash_http: seed {:#x}: {} kills ({add_phase} while adding, {} while running; \
         {cut_requests} cut a request on the wire, {with_runs_running} with runs running; \
         delays {:?} ms), {} runs acknowledged + {} standalone, {} writer retries, \
         {} batches replayed, {} group events checked per reader ({} and {} connections), \
         outcomes {:?}, {:.1} s",
        plan.seed,
        kills.len(),
        plan.kills - add_phase,
        kills.iter().map(|kill| kill.delay_ms).collect::<Vec<_>>(),
        written.batches.iter().map(Vec::len).sum::<usize>(),
        written.standalone.len(),
        written.retries,
        written.replays,
        stored_stream.len(),
        followed[0].connections,
        followed[1].connections,
        outcomes,
        started.elapsed().as_secs_f64()
    );
}

/// The group events stream as stored: the rows the stream shows, in order.
fn group_stream_in_db(dir: &TestDir, group: &str) -> Vec<Seen> {
    support::stored_group_stream(dir, group)
        .into_iter()
        .map(|(id, kind, data)| Seen { id, kind, data })
        .collect()
}

/// The stored stream itself: ids increase, each event carries its id and
/// type, each run shows once with a terminal status, and it ends inactive.
/// Answers each run's status as the stream showed it.
fn check_stream(plan: &Plan, stream: &[Seen]) -> HashMap<String, String> {
    for pair in stream.windows(2) {
        assert!(
            pair[0].id < pair[1].id,
            "stream ids {} then {}",
            pair[0].id,
            pair[1].id
        );
    }
    let mut runs: HashMap<String, String> = HashMap::new();
    let mut group_statuses = 0;
    for event in stream {
        let data: Value = serde_json::from_str(&event.data).expect("event data is JSON");
        assert_eq!(data["event_id"], json!(event.id.to_string()));
        assert_eq!(data["type"], json!(event.kind));
        match event.kind.as_str() {
            "task_run.state" => {
                let status = data["run"]["status"].as_str().expect("run status");
                assert!(
                    matches!(status, "completed" | "failed"),
                    "the group stream shows {status}"
                );
                let id = data["run"]["run_id"].as_str().expect("run id").to_string();
                let again = runs.insert(id.clone(), status.to_string());
                assert!(again.is_none(), "run {id} shows twice on the stream");
            }
            "task_group_status" => group_statuses += 1,
            other => panic!("unexpected event type {other}"),
        }
    }
    assert_eq!(runs.len(), plan.runs, "runs on the group stream");
    assert!(
        group_statuses > plan.batches(),
        "{group_statuses} group status events: one per add and one at the end at least"
    );
    let last: Value = serde_json::from_str(&stream.last().expect("events").data).expect("json");
    assert_eq!(last["type"], "task_group_status");
    assert_eq!(last["status"]["is_active"], false);
    assert_eq!(last["status"]["num_task_runs"], json!(plan.runs));
    runs
}

/// A run's row, as the checks need it.
struct RunRow {
    id: String,
    input_text: String,
    processor: String,
    status: String,
    metadata: Option<String>,
    attempts: u32,
    max_attempts: u32,
    error: Option<Value>,
    warnings: Vec<Value>,
    output: Option<Value>,
    terminal_events: i64,
    terminal_event_status: Option<String>,
}

fn run_rows(db: &rusqlite::Connection, filter: &str, param: &str) -> Vec<RunRow> {
    let sql = format!(
        "SELECT r.id, json_extract(r.input, '$.text'), r.processor, r.status, \
         r.metadata, r.attempts, r.max_attempts, r.error, r.warnings, r.output, \
         coalesce(t.events, 0), t.status \
         FROM runs r LEFT JOIN (SELECT run_seq, count(*) AS events, max(status) AS status \
         FROM events WHERE status IN ('completed', 'failed', 'cancelled') GROUP BY run_seq) t \
         ON t.run_seq = r.seq {filter} ORDER BY r.seq"
    );
    let json_of =
        |text: Option<String>| text.map(|text| serde_json::from_str(&text).expect("JSON column"));
    let mut select = db.prepare(&sql).expect("query");
    let rows = select
        .query_map([support::stored_id(param)], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, u32>(5)?,
                row.get::<_, u32>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, Option<String>>(8)?,
                support::stored_output(row.get(9)?),
                row.get::<_, i64>(10)?,
                row.get::<_, Option<String>>(11)?,
            ))
        })
        .expect("rows")
        .collect::<rusqlite::Result<Vec<_>>>()
        .expect("rows");
    rows.into_iter()
        .map(|row| RunRow {
            // The wire id, as the client saw it.
            id: format!("trun_{}", row.0),
            input_text: row.1.unwrap_or_default(),
            processor: row.2,
            status: row.3,
            metadata: row.4,
            attempts: row.5,
            max_attempts: row.6,
            error: json_of(row.7),
            warnings: json_of(row.8)
                .and_then(|value: Value| value.as_array().cloned())
                .unwrap_or_default(),
            // The output as Parallel's face shows it.
            output: row.9.map(|text| {
                let output: taskyard::model::Output =
                    serde_json::from_str(&text).expect("a stored output");
                serde_json::to_value(taskyard::faces::parallel::wire::Output::from(&output))
                    .expect("wire output")
            }),
            terminal_events: row.10,
            terminal_event_status: row.11,
        })
        .collect()
}

/// What only SQL can see; answers how many runs ended which way.
fn check_database(
    plan: &Plan,
    dir: &TestDir,
    group: &str,
    written: &Written,
    streamed: &HashMap<String, String>,
) -> BTreeMap<String, usize> {
    let db = sqlite(dir);
    db.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(integrity, "ok");

    // Every acknowledged run is in the group, and nothing else is: a batch
    // retried after a lost answer was replayed, not added twice.
    let acked: Vec<&String> = written.batches.iter().flatten().collect();
    let acked_set: HashSet<&String> = acked.iter().copied().collect();
    assert_eq!(acked.len(), plan.runs, "runs acknowledged");
    assert_eq!(acked_set.len(), acked.len(), "acknowledged ids repeat");
    let rows = run_rows(
        &db,
        "WHERE r.group_seq = (SELECT seq FROM groups WHERE id = ?1)",
        group,
    );
    assert_eq!(rows.len(), plan.runs, "runs stored in the group");
    let stored: HashSet<&String> = rows.iter().map(|row| &row.id).collect();
    assert_eq!(stored, acked_set, "stored runs vs acknowledged runs");
    let by_id: HashMap<&str, &RunRow> = rows.iter().map(|row| (row.id.as_str(), row)).collect();
    for (batch, ids) in written.batches.iter().enumerate() {
        for (offset, id) in ids.iter().enumerate() {
            assert_eq!(
                by_id[id.as_str()].input_text,
                run_text(batch * BATCH + offset),
                "run ids answer in input order"
            );
        }
    }

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut texts: HashSet<&str> = HashSet::new();
    for row in &rows {
        assert!(
            texts.insert(&row.input_text),
            "input {} twice",
            row.input_text
        );
        assert_eq!(
            streamed.get(&row.id),
            Some(&row.status),
            "{}: the group stream's terminal status vs the stored one",
            row.id
        );
        let index: usize = row
            .input_text
            .strip_prefix("run ")
            .and_then(|index| index.parse().ok())
            .unwrap_or_else(|| panic!("run {} has input {:?}", row.id, row.input_text));
        assert!(index < plan.runs);
        let (class, processor, metadata) = run_spec(plan, index);
        assert_eq!(row.processor, processor, "{}", row.id);
        let stored_metadata: Option<Value> = row
            .metadata
            .as_deref()
            .map(|text| serde_json::from_str(text).expect("metadata JSON"));
        assert_eq!(stored_metadata, metadata, "metadata of {}", row.id);
        *counts.entry(row.status.clone()).or_default() += 1;
        let outcome = check_outcome(class, index, row);
        *outcomes.entry(format!("{class:?} {outcome}")).or_default() += 1;
    }
    let cut_by_kills: usize = outcomes
        .iter()
        .filter(|(name, _)| name.ends_with("stopped by a kill"))
        .map(|(_, count)| count)
        .sum();
    assert!(
        cut_by_kills * 10 < plan.runs,
        "{cut_by_kills} runs failed because kills took all their attempts: {outcomes:?}"
    );
    // Every retry path ran as planned at least somewhere.
    for class in [Class::Retried, Class::RetriedLong] {
        assert!(
            outcomes.contains_key(&format!("{class:?} completed after its retries")),
            "no {class:?} run completed after its retries: {outcomes:?}"
        );
    }
    assert!(
        outcomes.contains_key("Exhausted failed: retries exhausted"),
        "{outcomes:?}"
    );

    // The kept counts equal a recount; the group is inactive.
    let kept: Vec<i64> = db
        .query_row(
            "SELECT num_runs, n_queued, n_running, n_cancelling, n_completed, n_failed, \
             n_cancelled FROM groups WHERE id = ?1",
            [support::stored_id(group)],
            |row| (0..7).map(|i| row.get(i)).collect(),
        )
        .expect("group counts");
    let count = |status: &str| counts.get(status).copied().unwrap_or(0);
    assert_eq!(
        kept,
        vec![
            plan.runs as i64,
            count("queued"),
            count("running"),
            count("cancelling"),
            count("completed"),
            count("failed"),
            count("cancelled"),
        ],
        "kept counts vs recount {counts:?}"
    );
    // And the counts over every run, standalone ones included (issue 11).
    let (total, kept_all) = stored_run_counts(dir);
    let recount_all = full_count(dir);
    assert_eq!(
        by_status(&kept_all),
        by_status(&recount_all),
        "run_counts vs recount"
    );
    assert_eq!(
        total,
        recount_all.values().sum::<i64>(),
        "run_counts total vs recount"
    );

    // The standalone creates: each acknowledged run exists and finished
    // once, with its input echoed.
    assert_eq!(
        written.standalone.len(),
        plan.batches() / STANDALONE_EVERY_BATCHES
    );
    for (id, text) in &written.standalone {
        let rows = run_rows(&db, "WHERE r.id = ?1", id);
        let row = rows
            .first()
            .unwrap_or_else(|| panic!("standalone run {id} is lost"));
        assert_eq!(row.terminal_events, 1, "terminal events of {id}");
        assert_eq!(
            row.terminal_event_status.as_deref(),
            Some(row.status.as_str())
        );
        if row.status == "completed" {
            let output = row.output.as_ref().expect("output");
            assert_eq!(output["type"], "text");
            assert_eq!(output["content"], json!(text));
        } else {
            assert_killed_out(row);
        }
    }
    let standalone_in_db: i64 = db
        .query_row(
            "SELECT count(*) FROM runs WHERE group_seq IS NULL",
            [],
            |row| row.get(0),
        )
        .expect("standalone count");
    assert_eq!(
        standalone_in_db as usize,
        written.standalone.len(),
        "standalone runs stored (a retried create was replayed, not made twice)"
    );
    outcomes
}

/// A run failed by recovery: a kill landed in its last attempt.
fn assert_killed_out(row: &RunRow) {
    assert_eq!(row.status, "failed", "{}", row.id);
    let error = row.error.as_ref().expect("error");
    let message = format!(
        "the process stopped during attempt {} of {} and no attempts are left",
        row.max_attempts, row.max_attempts
    );
    assert_eq!(error["message"], json!(message), "{}: {error}", row.id);
    assert_eq!(
        error["detail"],
        json!({"attempts": row.max_attempts, "transient": true}),
        "{}",
        row.id
    );
    assert_eq!(row.attempts, row.max_attempts, "{}", row.id);
}

/// Checks one run against what its class asks for; answers a label of the
/// way it ended.
fn check_outcome(class: Class, index: usize, row: &RunRow) -> &'static str {
    let id = &row.id;
    assert_eq!(row.terminal_events, 1, "{id}: terminal events");
    assert_eq!(
        row.terminal_event_status.as_deref(),
        Some(row.status.as_str()),
        "{id}: the terminal event's status"
    );
    let max_attempts = if class == Class::RetriedLong {
        RETRY5_MAX_ATTEMPTS
    } else {
        MAX_ATTEMPTS_DEFAULT
    };
    assert_eq!(row.max_attempts, max_attempts, "{id}");
    assert!(
        (1..=max_attempts).contains(&row.attempts),
        "{id}: {} attempts",
        row.attempts
    );
    if row.status == "failed"
        && row.error.as_ref().is_some_and(|error| {
            error["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("the process stopped"))
        })
    {
        assert_killed_out(row);
        return "stopped by a kill";
    }
    let fail_times = match class {
        Class::Retried | Class::RetriedLong | Class::Exhausted => {
            row.metadata
                .as_deref()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .and_then(|metadata| metadata["mock_fail_times"].as_u64())
                .expect("mock_fail_times") as u32
        }
        _ => 0,
    };
    // Every warning is a retried forced failure, each attempt at most once;
    // a kill may have taken an attempt instead, so there may be fewer.
    let mut warned = HashSet::new();
    for warning in &row.warnings {
        let attempt = warning["detail"]["attempt"]
            .as_u64()
            .expect("warning attempt") as u32;
        assert!(
            attempt <= fail_times && warned.insert(attempt),
            "{id}: warning {warning}"
        );
        assert_eq!(
            warning["message"],
            json!(format!(
                "attempt {attempt} failed and will be retried: forced transient failure \
                 {attempt} of {fail_times} (mock_fail_times)"
            )),
            "{id}"
        );
    }
    match class {
        Class::Plain
        | Class::Echo
        | Class::Latency
        | Class::SlowTail
        | Class::Retried
        | Class::RetriedLong => {
            assert_eq!(row.status, "completed", "{id} ({class:?}): {:?}", row.error);
            assert!(row.error.is_none(), "{id}");
            assert!(
                row.attempts > fail_times,
                "{id}: completed on attempt {}",
                row.attempts
            );
            let output = row.output.as_ref().expect("a completed run has output");
            assert_eq!(output["type"], "json", "{id}");
            assert!(output["content"]["text"].is_string(), "{id}: {output}");
            assert!(
                output["basis"]
                    .as_array()
                    .is_some_and(|basis| !basis.is_empty()),
                "{id}: {output}"
            );
            if class == Class::Echo {
                assert_eq!(output["content"], json!({"text": run_text(index)}), "{id}");
            }
            if fail_times > 0 {
                "completed after its retries"
            } else {
                "completed"
            }
        }
        Class::FailPermanent => {
            assert_eq!(row.status, "failed", "{id}");
            assert!(row.output.is_none(), "{id}");
            let error = row.error.as_ref().expect("error");
            assert_eq!(
                error["message"],
                json!(format!("forced failure of run {index}")),
                "{id}"
            );
            assert_eq!(error["detail"], Value::Null, "{id}");
            "failed: permanent"
        }
        Class::Exhausted => {
            assert_eq!(row.status, "failed", "{id}");
            assert!(row.output.is_none(), "{id}");
            let error = row.error.as_ref().expect("error");
            assert_eq!(
                error["message"],
                json!(format!(
                    "forced transient failure {max_attempts} of {fail_times} (mock_fail_times)"
                )),
                "{id}"
            );
            assert_eq!(
                error["detail"],
                json!({"attempts": max_attempts, "transient": true}),
                "{id}"
            );
            assert_eq!(row.attempts, max_attempts, "{id}");
            "failed: retries exhausted"
        }
    }
}

/// Regression, found by the crash loop above: runs waiting out a retry
/// backoff kept their dispatcher slots (then twice the workers), so a mix
/// with retries left the workers idle while runs waited in the queue; the
/// loop's 20,000 runs drained at a third of the speed. The retrying runs
/// take every claim slot of the one worker, whatever their number
/// (`CLAIM_SLOTS_PER_WORKER`): with fewer (two, when the test was written
/// for two slots per worker) the plain run found a free slot even when
/// runs in backoff kept theirs, and the test could not fail (issue 11).
#[test]
fn runs_in_retry_backoff_leave_the_workers_to_queued_runs() {
    let dir = TestDir::new();
    let mut registry = taskyard::faces::default_registry();
    registry.insert(ProcessorConfig {
        max_attempts: RETRY5_MAX_ATTEMPTS,
        ..ProcessorConfig::new(RETRY5, "mock", Arc::new(MockProcessor::default()))
    });
    // One worker: every one of its slots taken by a run whose first four
    // attempts fail, so they back off for at least 75 + 150 + 300 + 600 ms.
    let engine = support::open_with(
        &dir,
        Config {
            registry,
            ..support::with_workers(1)
        },
    );
    let retrying: Vec<String> = (0..CLAIM_SLOTS_PER_WORKER)
        .map(|index| {
            engine
                .create_run(
                    RunInput::new(format!("retrying {index}"), RETRY5)
                        .with_metadata(support::metadata(json!({ "mock_fail_times": 4 }))),
                )
                .expect("run")
                .run_id
        })
        .collect();
    let warnings = |run_id: &str| {
        let run = engine.get_run(run_id).expect("run");
        run.warnings.map_or(0, |warnings| warnings.len())
    };
    support::wait_for(
        "every retrying run backs off",
        Duration::from_secs(10),
        || retrying.iter().all(|run_id| warnings(run_id) >= 1),
    );
    let plain = engine
        .create_run(RunInput::new("plain", "mock"))
        .expect("run")
        .run_id;
    support::wait_for("the plain run completes", Duration::from_secs(10), || {
        engine.get_run(&plain).expect("run").status == RunStatus::Completed
    });
    for run_id in &retrying {
        let run = engine.get_run(run_id).expect("run");
        assert!(
            run.status.is_active(),
            "{run_id} is {:?} with {} warnings: the plain run waited for its slot",
            run.status,
            warnings(run_id)
        );
    }
    // And they still complete on their fifth attempt.
    for run_id in &retrying {
        support::wait_for(
            "the retrying run completes",
            Duration::from_secs(20),
            || engine.get_run(run_id).expect("run").status == RunStatus::Completed,
        );
        assert_eq!(warnings(run_id), 4, "{run_id}");
    }
    engine.shutdown(Duration::from_secs(5));
}

/// Runs by status as `taskyard_runs{status}` on the live server's `/metrics`.
fn runs_gauge(life: &Life) -> BTreeMap<String, i64> {
    let response = try_request(life.addr, "GET", "/metrics", &[], None).expect("metrics answered");
    assert_eq!(response.status, 200, "{}", response.text());
    response
        .text()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("taskyard_runs{status=\"")?;
            let (status, value) = rest.split_once("\"} ")?;
            Some((status.to_string(), value.parse().expect("a count")))
        })
        .collect()
}

/// The statuses the counts cover, each with the count given (0 if absent).
fn by_status(counts: &BTreeMap<String, i64>) -> Vec<(&'static str, i64)> {
    [
        "queued",
        "running",
        "cancelling",
        "completed",
        "failed",
        "cancelled",
    ]
    .into_iter()
    .map(|status| (status, counts.get(status).copied().unwrap_or(0)))
    .collect()
}

/// Every run counted, by status, the slow way.
fn full_count(dir: &TestDir) -> BTreeMap<String, i64> {
    let db = rusqlite::Connection::open(dir.db()).expect("database opens");
    let mut statement = db
        .prepare("SELECT status, count(*) FROM runs GROUP BY status")
        .expect("query");
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<BTreeMap<String, i64>, _>>()
        .expect("rows read");
    rows
}

/// The `run_counts` row as stored: its total, and the count per status.
fn stored_run_counts(dir: &TestDir) -> (i64, BTreeMap<String, i64>) {
    let db = rusqlite::Connection::open(dir.db()).expect("database opens");
    db.query_row(
        "SELECT num_runs, n_queued, n_running, n_cancelling, n_completed, n_failed, \
         n_cancelled FROM run_counts WHERE id = 1",
        [],
        |row| {
            let names = [
                "queued",
                "running",
                "cancelling",
                "completed",
                "failed",
                "cancelled",
            ];
            let mut counts = BTreeMap::new();
            for (index, name) in names.into_iter().enumerate() {
                counts.insert(name.to_string(), row.get(index + 1)?);
            }
            Ok((row.get(0)?, counts))
        },
    )
    .expect("the run_counts row")
}

/// Regression (issue 11, bug 3): `/metrics` counted every run by status on
/// each scrape (seconds at 1.1M runs). The counts are a row now, changed in
/// the same transaction as each run; this pins that the row, and the gauge
/// read from it, equal a full count after `kill -9` of the real server with
/// runs queued, running, cancelled, failed and completed, grouped and not,
/// and again once recovery has requeued what was running.
#[test]
fn runs_by_status_gauge_equals_a_full_count_after_kill_9() {
    if !support::sqlite_only("runs_by_status_gauge_equals_a_full_count_after_kill_9") {
        return;
    }
    let dir = TestDir::new();
    let config = dir.dir.path().join("taskyard.toml");
    std::fs::write(&config, "").expect("config written");
    let mut life = Life::start(&dir, &config, 0);
    life.wait_answering();
    let call = |life: &Life, method: &str, path: &str, body: Value| {
        let response = try_request(
            life.addr,
            method,
            path,
            &[],
            Some(body.to_string().as_bytes()),
        )
        .expect("answered");
        assert!(
            (200..300).contains(&response.status),
            "{method} {path}: {} {}",
            response.status,
            response.text()
        );
        response.json()
    };
    let group = call(&life, "POST", "/v1/tasks/groups", json!({}))["taskgroup_id"]
        .as_str()
        .expect("taskgroup_id")
        .to_string();
    // More slow runs than the server's claim slots, so that some wait in
    // the queue while the others run, beside fast and failing ones. The
    // slow runs come last and leave workers free until then: a claimed run
    // waits for a worker in memory, behind the slow ones.
    let slots = WORKERS * CLAIM_SLOTS_PER_WORKER;
    let slow =
        json!({"input": "slow", "processor": "mock", "metadata": {"mock_delay_ms": 600_000}});
    let fast = json!({"input": "fast", "processor": "mock"});
    let failing = json!({"input": "failing", "processor": "mock", "metadata": {"mock_fail": "no"}});
    let mut inputs = vec![fast.clone(); 40];
    inputs.extend(vec![failing.clone(); 10]);
    inputs.extend(vec![slow.clone(); WORKERS / 2]);
    call(
        &life,
        "POST",
        &format!("/v1/tasks/groups/{group}/runs"),
        json!({ "inputs": inputs }),
    );
    let mut standalone = Vec::new();
    for input in [fast, failing]
        .into_iter()
        .chain(std::iter::repeat_n(slow, slots))
    {
        standalone.push(
            call(&life, "POST", "/v1/tasks/runs", input)["run_id"]
                .as_str()
                .expect("run_id")
                .to_string(),
        );
    }
    // The last standalone run is still queued; the one before it may run.
    for run_id in standalone.iter().rev().take(2) {
        call(
            &life,
            "POST",
            &format!("/v1/tasks/runs/{run_id}/cancel"),
            json!({}),
        );
    }
    support::wait_for(
        "every slot running and every fast run finished",
        Duration::from_secs(30),
        || {
            let gauge = runs_gauge(&life);
            let count = |status: &str| gauge.get(status).copied().unwrap_or(0);
            count("running") as usize == slots && count("completed") == 41 && count("failed") == 11
        },
    );
    life.kill();

    // The file as the kill left it, before any recovery.
    let (total, stored) = stored_run_counts(&dir);
    let counted = full_count(&dir);
    assert_eq!(by_status(&stored), by_status(&counted), "after the kill");
    assert_eq!(total, counted.values().sum::<i64>(), "after the kill");
    assert!(
        by_status(&counted)
            .iter()
            .all(|(status, count)| *count > 0 || *status == "cancelling"),
        "a status missing from the mix: {counted:?}"
    );

    // Recovery requeues what ran; the scheduler claims it again at once,
    // so compare once the statuses settle.
    let life = Life::start(&dir, &config, 1);
    let mut last = (Vec::new(), Vec::new());
    support::wait_for(
        "the gauge equal to a full count after the restart",
        Duration::from_secs(30),
        || {
            let gauge = by_status(&runs_gauge(&life));
            let counted = by_status(&full_count(&dir));
            let settled =
                gauge == counted && runs_gauge(&life).get("running") == Some(&(slots as i64));
            last = (gauge, counted);
            settled
        },
    );
    let (total, stored) = stored_run_counts(&dir);
    let counted = full_count(&dir);
    assert_eq!(
        by_status(&stored),
        by_status(&counted),
        "after the restart: {last:?}"
    );
    assert_eq!(total, counted.values().sum::<i64>());
}
