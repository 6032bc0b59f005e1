//! Load and slow clients against the real `taskyard serve` binary, so that
//! the server's memory can be read from `/proc/<pid>/status`:
//!
//! - 1,000 event-stream subscribers (group and run streams) and 32 writers
//!   for `TASKYARD_LOAD_SECS` (10 s by default): no request fails, every
//!   subscriber sees exactly the events the database holds for its stream
//!   (ids in order, data byte for byte), and the peak RSS stays bounded;
//! - past `--streams-open-max`, a 503 with `retry-after` and the error
//!   envelope, and a slot that frees when a stream ends;
//! - a reader that stops reading is cut off after the write timeout (its
//!   slot and thread freed) while other clients are answered promptly;
//! - a body sent a byte a second gets a 408 after the read timeout and
//!   writes nothing, a head sent that way is closed, an idle keep-alive
//!   connection is closed, and a quiet stream is not;
//! - running out of file descriptors does not stop the server accepting.
//!
//! The long run: `TASKYARD_LOAD_SECS=60 cargo test --release --test load
//! -- --nocapture`. Tests here run one at a time (they measure latency, and
//! the load test takes both cores).

#[path = "support/http.rs"]
mod client;
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use client::Response;
use serde_json::{json, Value};
use support::{wait_for, TestDir};

/// Seconds the writers write in the load test, unless `TASKYARD_LOAD_SECS`.
const LOAD_SECS_DEFAULT: u64 = 10;
const SUBSCRIBERS: usize = 1_000;
/// Groups the group-stream subscribers spread over.
const GROUPS: usize = 30;
/// Runs followed by run-stream subscribers, and subscribers per such run.
const WATCHED_RUNS: usize = 20;
const SUBSCRIBERS_PER_WATCHED_RUN: usize = 5;
const WRITERS: usize = 32;
/// Writers that create single runs; the rest add batches to groups.
const SINGLE_RUN_WRITERS: usize = 8;
const RUNS_PER_ADD: usize = 10;
/// Peak resident memory of the server the load test accepts. Generous:
/// the point is a bound that a leak per event or per stream would break.
const SERVER_RSS_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Client threads only parse HTTP; a small stack keeps 1,000 of them cheap.
const CLIENT_STACK_BYTES: usize = 256 * 1024;
/// How long an ordinary request may take when a test says "promptly".
const PROMPT_ANSWER_MAX: Duration = Duration::from_secs(2);
/// The read and write timeouts of the slow-client servers, in seconds.
const SHORT_TIMEOUT_S: u64 = 2;

/// One test at a time: see the module doc.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------
// The server process.
// ---------------------------------------------------------------------

/// A `taskyard serve` process on a fresh database, killed when dropped.
struct Served {
    child: Child,
    addr: std::net::SocketAddr,
    dir: TestDir,
}

impl Served {
    /// Starts the binary with `args` after `--addr` and `--db`, through
    /// `sh` when `shell_prefix` is set (to lower a limit first).
    fn start(args: &[&str], shell_prefix: Option<&str>) -> Served {
        let dir = TestDir::new();
        let binary = env!("CARGO_BIN_EXE_taskyard");
        let mut command = match shell_prefix {
            Some(prefix) => {
                let mut command = Command::new("sh");
                command
                    .arg("-c")
                    .arg(format!("{prefix} && exec \"$0\" \"$@\""))
                    .arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg("serve")
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(dir.db())
            .args(args)
            .env_remove("TASKYARD_API_KEYS")
            .env_remove("TASKYARD_CONFIG")
            .env_remove("TASKYARD_READ_TIMEOUT_S")
            .env_remove("TASKYARD_WRITE_TIMEOUT_S")
            .env_remove("TASKYARD_STREAMS_OPEN_MAX")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("taskyard starts");
        let line = support::start_line(&mut child, Duration::from_secs(20))
            .expect("the start line within 20 s");
        let addr = support::start_line_addr(&line)
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in the start line: {line:?}"));
        Served { child, addr, dir }
    }

    /// A line of `/proc/<pid>/status` in bytes (`VmHWM`, `VmRSS`) or as is.
    fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let line = status
            .lines()
            .find(|line| line.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in /proc status"));
        let mut words = line.split_whitespace().skip(1);
        let number: u64 = words.next().and_then(|n| n.parse().ok()).expect("a number");
        match words.next() {
            Some("kB") => number * 1024,
            _ => number,
        }
    }

    fn open_fds(&self) -> u64 {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|entries| entries.count() as u64)
            .unwrap_or(0)
    }

    fn get(&self, path: &str) -> Response {
        client::send(self.addr, "GET", path, &[], None)
    }

    fn post(&self, path: &str, body: &Value) -> Response {
        client::send(
            self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    }

    /// Plain SQLite on the server's database, read-only (the load test's
    /// own checks, SQLite's).
    fn sqlite(&self) -> rusqlite::Connection {
        support::sqlite(&self.dir)
    }

    /// The `taskyard_sse_streams_open` gauge of one stream kind.
    fn streams_open(&self, stream: &str) -> u64 {
        let metrics = self.get("/metrics");
        assert_eq!(metrics.status, 200, "{}", metrics.text());
        let prefix = format!("taskyard_sse_streams_open{{stream=\"{stream}\"}} ");
        metrics
            .text()
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A keep-alive connection for many requests in turn.
struct Connection {
    addr: std::net::SocketAddr,
    reader: Option<BufReader<TcpStream>>,
}

impl Connection {
    fn new(addr: std::net::SocketAddr) -> Connection {
        Connection { addr, reader: None }
    }

    /// One request; a broken connection is reopened for the next one.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, String> {
        if self.reader.is_none() {
            let stream = TcpStream::connect(self.addr).map_err(|e| format!("connect: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .map_err(|e| e.to_string())?;
            self.reader = Some(BufReader::new(stream));
        }
        let reader = self.reader.as_mut().expect("connected");
        let body = body.map(Value::to_string);
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        let bytes =
            client::request_bytes(method, path, headers, body.as_deref().map(str::as_bytes));
        let answer = reader
            .get_mut()
            .write_all(&bytes)
            .map_err(|e| format!("{method} {path}: write: {e}"))
            .and_then(|()| {
                client::read_response(reader).map_err(|e| format!("{method} {path}: read: {e}"))
            });
        if answer.is_err() {
            self.reader = None;
        }
        answer
    }

    /// A request that must answer `status`; answers the JSON body.
    fn expect(&mut self, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
        let response = self
            .request(method, path, body)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            response.status,
            status,
            "{method} {path}: {}",
            response.text()
        );
        response.json()
    }
}

/// 64-bit FNV-1a: a running digest of a stream's events, so that 1,000
/// subscribers need not keep every event to compare them with the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digest(u64);

impl Digest {
    fn new() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn add_event(&mut self, id: u64, data: &str) {
        self.add(&id.to_le_bytes());
        self.add(data.as_bytes());
    }
}

/// Reads a stream body chunk by chunk and hands each complete frame
/// (`event:` name and `data:` text; keep-alives skipped) to `each`. Answers
/// once the terminating chunk has come.
fn read_frames(
    reader: &mut impl BufRead,
    mut each: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), String> {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let chunk = client::read_chunk(reader).map_err(|e| format!("reading a chunk: {e}"))?;
        let Some(data) = chunk else {
            return if carry.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "the stream ended inside a frame: {:?}",
                    String::from_utf8_lossy(&carry)
                ))
            };
        };
        carry.extend_from_slice(&data);
        let mut start = 0;
        while let Some(end) = carry[start..].windows(2).position(|pair| pair == b"\n\n") {
            let frame = std::str::from_utf8(&carry[start..start + end])
                .map_err(|_| "a frame is not UTF-8".to_string())?;
            start += end + 2;
            if frame == ": keep-alive" {
                continue;
            }
            let (name, data) = frame
                .strip_prefix("event: ")
                .and_then(|rest| rest.split_once("\ndata: "))
                .ok_or_else(|| format!("not an event frame: {frame:?}"))?;
            each(name, data)?;
        }
        carry.drain(..start);
    }
}

/// Opens `path` as a stream on a new connection; answers the reader after
/// a 200 head.
fn open_stream(addr: std::net::SocketAddr, path: &str) -> Result<BufReader<TcpStream>, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    (&stream)
        .write_all(&client::request_bytes(
            "GET",
            path,
            &[("Accept", "text/event-stream")],
            None,
        ))
        .map_err(|e| format!("write: {e}"))?;
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let (status, _) = client::read_head(&mut reader).map_err(|e| format!("head: {e}"))?;
    if status != 200 {
        return Err(format!("{path}: status {status}"));
    }
    Ok(reader)
}

// ---------------------------------------------------------------------
// 1. 1,000 subscribers and 32 writers.
// ---------------------------------------------------------------------

/// What a group-stream subscriber saw.
#[derive(Debug)]
struct GroupSeen {
    group: usize,
    count: u64,
    last_id: u64,
    digest: Digest,
}

/// What a run-stream subscriber saw: every frame, in order (a few each).
#[derive(Debug)]
struct RunSeen {
    run: usize,
    frames: Vec<(String, String)>,
}

/// Follows a group's events stream from the start to its end, checking
/// as it goes that ids only grow.
fn follow_group(
    addr: std::net::SocketAddr,
    group: usize,
    group_id: &str,
    heads: &AtomicUsize,
) -> Result<GroupSeen, String> {
    let mut reader = open_stream(addr, &format!("/v1/tasks/groups/{group_id}/events"));
    heads.fetch_add(1, Ordering::SeqCst);
    let reader = reader.as_mut().map_err(|e| e.clone())?;
    let mut seen = GroupSeen {
        group,
        count: 0,
        last_id: 0,
        digest: Digest::new(),
    };
    read_frames(reader, |name, data| {
        // Both group-stream events open with their type and then their
        // cursor (spec 2.6), so the id is read without parsing the JSON.
        let prefix = format!("{{\"type\":\"{name}\",\"event_id\":\"");
        let id: u64 = data
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('"').next())
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| format!("no event_id after the type in {data:?}"))?;
        if id <= seen.last_id {
            return Err(format!("event {id} after {}", seen.last_id));
        }
        seen.last_id = id;
        seen.count += 1;
        seen.digest.add_event(id, data);
        Ok(())
    })?;
    Ok(seen)
}

fn follow_run(
    addr: std::net::SocketAddr,
    run: usize,
    run_id: &str,
    heads: &AtomicUsize,
) -> Result<RunSeen, String> {
    let mut reader = open_stream(addr, &format!("/v1/tasks/runs/{run_id}/events"));
    heads.fetch_add(1, Ordering::SeqCst);
    let reader = reader.as_mut().map_err(|e| e.clone())?;
    let mut frames = Vec::new();
    read_frames(reader, |name, data| {
        frames.push((name.to_string(), data.to_string()));
        Ok(())
    })?;
    Ok(RunSeen { run, frames })
}

/// The server's peaks while the load runs, sampled.
#[derive(Debug, Default)]
struct Peaks {
    threads: AtomicU64,
    fds: AtomicU64,
}

fn load_secs() -> u64 {
    std::env::var("TASKYARD_LOAD_SECS")
        .ok()
        .map(|value| {
            value
                .parse()
                .expect("TASKYARD_LOAD_SECS is a number of seconds")
        })
        .unwrap_or(LOAD_SECS_DEFAULT)
}

fn spawn_small<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(CLIENT_STACK_BYTES)
        .spawn(body)
        .expect("a client thread")
}

/// What the writers did.
#[derive(Debug, Default)]
struct Written {
    requests: u64,
    runs: u64,
    errors: Vec<String>,
    latencies_us: Vec<u64>,
}

/// One writer: adds batches to groups, or creates single runs, until
/// `stop`; every tenth run fails on purpose so that terminal events differ.
fn write_until(
    addr: std::net::SocketAddr,
    writer: usize,
    group_ids: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
) -> Written {
    let mut connection = Connection::new(addr);
    let mut written = Written::default();
    let mut round = 0usize;
    let run_input = |round: usize, index: usize| {
        let mut input =
            json!({"input": format!("w{writer} r{round} i{index}"), "processor": "lite"});
        if (round + index) % 10 == 0 {
            input["metadata"] = json!({"mock_fail": "failed on purpose"});
        }
        input
    };
    while !stop.load(Ordering::Relaxed) {
        let (path, body, runs) = if writer < SINGLE_RUN_WRITERS {
            ("/v1/tasks/runs".to_string(), run_input(round, 0), 1)
        } else {
            let group = group_ids[(writer + round) % group_ids.len()].clone();
            let inputs: Vec<Value> = (0..RUNS_PER_ADD)
                .map(|index| run_input(round, index))
                .collect();
            (
                format!("/v1/tasks/groups/{group}/runs"),
                json!({"inputs": inputs}),
                RUNS_PER_ADD,
            )
        };
        let sent = Instant::now();
        match connection.request("POST", &path, Some(&body)) {
            Ok(response) if response.status == 200 || response.status == 202 => {
                written.runs += runs as u64;
            }
            Ok(response) => written.errors.push(format!(
                "POST {path}: {} {}",
                response.status,
                response.text()
            )),
            Err(error) => written.errors.push(error),
        }
        written.latencies_us.push(sent.elapsed().as_micros() as u64);
        written.requests += 1;
        round += 1;
    }
    written
}

fn percentile(sorted: &[u64], share: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * share).round() as usize]
}

#[test]
fn a_thousand_subscribers_and_32_writers_lose_no_event_in_bounded_memory() {
    if !support::sqlite_only(
        "a_thousand_subscribers_and_32_writers_lose_no_event_in_bounded_memory",
    ) {
        return;
    }
    let _serial = serial();
    let secs = load_secs();
    let config_dir = TestDir::new();
    let config_path = config_dir.dir.path().join("taskyard.toml");
    // `hold` runs one at a time: a long run on it keeps every later `hold`
    // run queued, which keeps the groups active without tying up workers.
    std::fs::write(
        &config_path,
        "[processors.hold]\nkind = \"mock\"\nmax_concurrency = 1\n",
    )
    .expect("config file");
    let served = Served::start(
        &[
            "--workers",
            "48",
            "--config",
            config_path.to_str().expect("a UTF-8 path"),
        ],
        None,
    );
    let addr = served.addr;
    let mut setup = Connection::new(addr);

    let blocker = setup.expect(
        "POST",
        "/v1/tasks/runs",
        Some(&json!({"input": "blocker", "processor": "hold", "metadata": {"mock_delay_ms": 3_600_000}})),
        202,
    )["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    wait_for("the blocker runs", Duration::from_secs(20), || {
        setup.expect("GET", &format!("/v1/tasks/runs/{blocker}"), None, 200)["status"] == "running"
    });
    let mut group_ids = Vec::new();
    let mut keepers = Vec::new();
    for _ in 0..GROUPS {
        let group = setup.expect("POST", "/v1/tasks/groups", Some(&json!({})), 200)["taskgroup_id"]
            .as_str()
            .expect("taskgroup_id")
            .to_string();
        let added = setup.expect(
            "POST",
            &format!("/v1/tasks/groups/{group}/runs"),
            Some(&json!({"inputs": [{"input": "keeper", "processor": "hold"}]})),
            200,
        );
        keepers.push(added["run_ids"][0].as_str().expect("run id").to_string());
        group_ids.push(group);
    }
    // Watched runs finish one after another through the load: two attempts
    // each (the first fails on purpose), so each stream carries progress.
    let mut watched = Vec::new();
    for index in 0..WATCHED_RUNS {
        let delay_ms = secs * 1000 * (index as u64 + 1) / WATCHED_RUNS as u64 / 2;
        let run = setup.expect(
            "POST",
            "/v1/tasks/runs",
            Some(&json!({
                "input": format!("watched {index}"),
                "processor": "lite",
                "enable_events": true,
                "metadata": {"mock_delay_ms": delay_ms, "mock_fail_times": 1},
            })),
            202,
        );
        watched.push(run["run_id"].as_str().expect("run_id").to_string());
    }

    let heads = Arc::new(AtomicUsize::new(0));
    let subscribed = Instant::now();
    let run_subscribers = WATCHED_RUNS * SUBSCRIBERS_PER_WATCHED_RUN;
    let mut group_followers = Vec::new();
    let mut run_followers = Vec::new();
    for index in 0..SUBSCRIBERS {
        let heads = heads.clone();
        if index < run_subscribers {
            let run = index % WATCHED_RUNS;
            let run_id = watched[run].clone();
            run_followers.push(spawn_small("run-follower", move || {
                follow_run(addr, run, &run_id, &heads)
            }));
        } else {
            let group = index % GROUPS;
            let group_id = group_ids[group].clone();
            group_followers.push(spawn_small("group-follower", move || {
                follow_group(addr, group, &group_id, &heads)
            }));
        }
    }
    wait_for(
        "every subscriber has its stream's head",
        Duration::from_secs(60),
        || heads.load(Ordering::SeqCst) == SUBSCRIBERS,
    );
    let heads_after = subscribed.elapsed();

    let sampling = Arc::new(AtomicBool::new(true));
    let peaks = Arc::new(Peaks::default());
    let pid = served.child.id();
    let sampler = {
        let sampling = sampling.clone();
        let peaks = peaks.clone();
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(threads) = status
                        .lines()
                        .find_map(|line| line.strip_prefix("Threads:"))
                        .and_then(|n| n.trim().parse().ok())
                    {
                        peaks.threads.fetch_max(threads, Ordering::Relaxed);
                    }
                }
                if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                    peaks
                        .fds
                        .fetch_max(entries.count() as u64, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let stop = Arc::new(AtomicBool::new(false));
    let group_ids = Arc::new(group_ids);
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (group_ids, stop) = (group_ids.clone(), stop.clone());
            spawn_small("writer", move || write_until(addr, writer, group_ids, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut written = Written::default();
    for writer in writers {
        let one = writer.join().expect("writer thread");
        written.requests += one.requests;
        written.runs += one.runs;
        written.errors.extend(one.errors);
        written.latencies_us.extend(one.latencies_us);
    }
    let wrote_for = started.elapsed();

    // Let every group end: the keepers leave the queue, then the blocker.
    // A fresh connection: the setup one sat idle past the read timeout
    // with a long load, and the server has closed it.
    let mut setup = Connection::new(addr);
    for keeper in &keepers {
        setup.expect(
            "POST",
            &format!("/v1/tasks/runs/{keeper}/cancel"),
            None,
            200,
        );
    }
    setup.expect(
        "POST",
        &format!("/v1/tasks/runs/{blocker}/cancel"),
        None,
        200,
    );
    let group_seen: Vec<Result<GroupSeen, String>> = group_followers
        .into_iter()
        .map(|follower| follower.join().expect("group follower thread"))
        .collect();
    let run_seen: Vec<Result<RunSeen, String>> = run_followers
        .into_iter()
        .map(|follower| follower.join().expect("run follower thread"))
        .collect();
    let drained_after = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let rss_peak = served.status_field("VmHWM");

    // Every subscriber against the database.
    let database = served.sqlite();
    let mut expected_groups = HashMap::new();
    for (group, group_id) in group_ids.iter().enumerate() {
        let mut digest = Digest::new();
        let mut count = 0u64;
        let mut last_id = 0u64;
        // As the engine's streams read the log, and Parallel's face renders it.
        for (id, _kind, data) in support::sqlite_group_stream(&database, group_id) {
            digest.add_event(id, &data);
            count += 1;
            last_id = id;
        }
        expected_groups.insert(group, (count, last_id, digest));
    }
    let mut failures = Vec::new();
    let mut events_seen = 0u64;
    for seen in &group_seen {
        match seen {
            Ok(seen) => {
                events_seen += seen.count;
                let (count, last_id, digest) = expected_groups[&seen.group];
                if (seen.count, seen.last_id, seen.digest) != (count, last_id, digest) {
                    failures.push(format!(
                        "group {}: saw {} events up to {} (digest {:x}), the database holds {} up \
                         to {} (digest {:x})",
                        seen.group,
                        seen.count,
                        seen.last_id,
                        seen.digest.0,
                        count,
                        last_id,
                        digest.0
                    ));
                }
            }
            Err(error) => failures.push(format!("group subscriber: {error}")),
        }
    }
    for seen in &run_seen {
        match seen {
            Ok(seen) => {
                events_seen += seen.frames.len() as u64;
                if let Err(error) = check_run_stream(&database, &watched[seen.run], &seen.frames) {
                    failures.push(format!("run {}: {error}", seen.run));
                }
            }
            Err(error) => failures.push(format!("run subscriber: {error}")),
        }
    }
    let group_events_min = expected_groups
        .values()
        .map(|(count, _, _)| *count)
        .min()
        .unwrap_or(0);

    let mut latencies = written.latencies_us.clone();
    latencies.sort_unstable();
    println!(
        "load: {secs} s of writes ({wrote_for:.1?}), all streams drained at {drained_after:.1?}; \
         {SUBSCRIBERS} subscribers ({} group streams over {GROUPS} groups, {run_subscribers} run \
         streams) had their heads after {heads_after:.1?}",
        SUBSCRIBERS - run_subscribers
    );
    println!(
        "load: {WRITERS} writers made {} requests ({:.0}/s), {} runs; latency p50 {:.1} ms, p99 \
         {:.1} ms, max {:.1} ms; {} errors",
        written.requests,
        written.requests as f64 / wrote_for.as_secs_f64(),
        written.runs,
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        percentile(&latencies, 1.0) as f64 / 1000.0,
        written.errors.len()
    );
    println!(
        "load: subscribers received {events_seen} events, each checked against the database \
         (fewest events in a group stream: {group_events_min})"
    );
    println!(
        "load: server peak RSS (VmHWM) {:.1} MiB, peak threads {}, peak open fds {}",
        rss_peak as f64 / (1024.0 * 1024.0),
        peaks.threads.load(Ordering::Relaxed),
        peaks.fds.load(Ordering::Relaxed)
    );

    assert!(
        written.errors.is_empty(),
        "{} writer requests failed, first: {:#?}",
        written.errors.len(),
        &written.errors[..written.errors.len().min(5)]
    );
    assert!(
        failures.is_empty(),
        "{} subscribers differ from the database, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        written.runs >= (WRITERS * RUNS_PER_ADD) as u64 && group_events_min >= 3,
        "the load did not load: {} runs written, {group_events_min} events in the quietest group",
        written.runs
    );
    assert!(
        rss_peak < SERVER_RSS_BYTES_MAX,
        "peak RSS {rss_peak} bytes is over {SERVER_RSS_BYTES_MAX}"
    );
}

/// A run stream (spec 4.3) against the database: the run as it was, then
/// every progress row of the run in order, data byte for byte, then the
/// final state with the stored status.
fn check_run_stream(
    database: &rusqlite::Connection,
    run_id: &str,
    frames: &[(String, String)],
) -> Result<(), String> {
    let (status, progress): (String, Vec<(String, String)>) = {
        let status = database
            .query_row(
                "SELECT status FROM runs WHERE id = ?1",
                [support::stored_id(run_id)],
                |row| row.get(0),
            )
            .map_err(|e| e.to_string())?;
        let mut statement = database
            .prepare(
                "SELECT e.id, e.data FROM events e JOIN runs r ON r.seq = e.run_seq \
                 WHERE r.id = ?1 AND e.stream = 2 ORDER BY e.id",
            )
            .map_err(|e| e.to_string())?;
        let rows: Vec<(i64, String)> = statement
            .query_map([support::stored_id(run_id)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        // As Parallel's face renders the stored rows (a run stream's
        // events carry no id).
        let rows = rows
            .into_iter()
            .map(|(id, stored)| support::rendered_event(id as u64, &stored))
            .collect();
        (status, rows)
    };
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Err("no events".into());
    };
    if first.0 != "task_run.state" || last.0 != "task_run.state" || frames.len() < 2 {
        return Err(format!(
            "not opened and closed by task_run.state: {frames:?}"
        ));
    }
    let final_state: Value = serde_json::from_str(&last.1).map_err(|e| e.to_string())?;
    if final_state["run"]["status"] != status.as_str() {
        return Err(format!(
            "final state {} but the database says {status}",
            final_state["run"]["status"]
        ));
    }
    let middle = &frames[1..frames.len() - 1];
    if middle != progress.as_slice() {
        return Err(format!(
            "progress events differ from the database: saw {middle:?}, stored {progress:?}"
        ));
    }
    if progress.len() < 3 {
        return Err(format!(
            "expected two exec_status and a stats event, stored {progress:?}"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------
// 2. The stream cap.
// ---------------------------------------------------------------------

#[test]
fn past_the_stream_cap_a_503_with_retry_after_until_a_stream_ends() {
    let _serial = serial();
    const CAP: usize = 3;
    let served = Served::start(&["--streams-open-max", &CAP.to_string()], None);
    let group = served.post("/v1/tasks/groups", &json!({}));
    let group_id = group.json()["taskgroup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let keeper = served.post(
        &format!("/v1/tasks/groups/{group_id}/runs"),
        &json!({"inputs": [{"input": "keeper", "processor": "lite", "metadata": {"mock_delay_ms": 120_000}}]}),
    );
    assert_eq!(keeper.status, 200, "{}", keeper.text());
    let events = format!("/v1/tasks/groups/{group_id}/events");
    // The last stream of the cap ends by itself after three seconds.
    let mut open = Vec::new();
    for index in 0..CAP {
        let path = if index == CAP - 1 {
            format!("{events}?timeout=3")
        } else {
            events.clone()
        };
        open.push(
            client::SseStream::open(served.addr, &path, &[]).expect("a stream within the cap"),
        );
    }
    let refused = client::SseStream::open(served.addr, &events, &[])
        .err()
        .expect("a stream past the cap is refused");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    let envelope = refused.json();
    assert_eq!(envelope["type"], "error", "{envelope}");
    assert!(
        envelope["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("STREAMS_OPEN_MAX")),
        "{envelope}"
    );
    let healthy = served.get("/healthz");
    assert_eq!(
        healthy.status, 200,
        "ordinary requests still answer at the cap"
    );

    // The stream with a timeout ends; its slot is free again.
    open.pop()
        .expect("the short stream")
        .read_to_end(Duration::from_secs(10));
    let mut reopened = None;
    wait_for(
        "a stream slot frees",
        Duration::from_secs(10),
        || match client::SseStream::open(served.addr, &events, &[]) {
            Ok(stream) => {
                reopened = Some(stream);
                true
            }
            Err(response) => {
                assert_eq!(response.status, 503, "{}", response.text());
                false
            }
        },
    );
    assert!(reopened.is_some());
}

// ---------------------------------------------------------------------
// 3. A reader that stops reading.
// ---------------------------------------------------------------------

/// Metadata of about 16 KiB (32 keys of 500 characters, within the limits of
/// spec 8), so that each run's event is big and a stalled reader's socket
/// buffers fill with a few batches.
fn bulky_metadata() -> Value {
    let value = "x".repeat(500);
    Value::Object(
        (0..32)
            .map(|key| (format!("k{key:02}"), json!(value)))
            .collect(),
    )
}

#[test]
fn a_reader_that_stops_reading_is_cut_off_after_the_write_timeout_and_others_go_on() {
    let _serial = serial();
    let timeout = SHORT_TIMEOUT_S.to_string();
    // Two slots: the stalled stream and the healthy one; a third is a 503
    // until the stalled one is cut off.
    let served = Served::start(
        &[
            "--write-timeout-s",
            &timeout,
            "--read-timeout-s",
            &timeout,
            "--streams-open-max",
            "2",
        ],
        None,
    );
    let addr = served.addr;
    let group_id = served.post("/v1/tasks/groups", &json!({})).json()["taskgroup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let keeper = served.post(
        &format!("/v1/tasks/groups/{group_id}/runs"),
        &json!({"inputs": [{"input": "keeper", "processor": "lite", "metadata": {"mock_delay_ms": 120_000}}]}),
    );
    let keeper_id = keeper.json()["run_ids"][0]
        .as_str()
        .expect("run id")
        .to_string();
    let events = format!("/v1/tasks/groups/{group_id}/events");

    // The stalled reader reads the head and nothing more.
    let mut stalled = open_stream(addr, &events).expect("the stalled stream opens");
    // The healthy reader follows the same group to its end.
    let healthy = {
        let events = events.clone();
        std::thread::spawn(move || {
            let mut reader = open_stream(addr, &events)?;
            let mut ids = Vec::new();
            read_frames(&mut reader, |_, data| {
                let value: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
                ids.push(value["event_id"].as_str().unwrap_or_default().to_string());
                Ok(())
            })?;
            Ok::<_, String>(ids)
        })
    };
    wait_for("both streams are open", Duration::from_secs(10), || {
        served.streams_open("group_events") == 2
    });
    let third = client::SseStream::open(addr, &events, &[])
        .err()
        .expect("the cap is reached");
    assert_eq!(third.status, 503);

    // Ordinary requests meanwhile, timed.
    let probing = Arc::new(AtomicBool::new(true));
    let prober = {
        let probing = probing.clone();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut answered = 0;
            while probing.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let response = client::send(addr, "GET", "/healthz", &[], None);
                assert_eq!(response.status, 200);
                slowest = slowest.max(sent.elapsed());
                answered += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (answered, slowest)
        })
    };

    // Batches of bulky runs until the stalled stream is cut off.
    let stalled_since = Instant::now();
    let mut batches = 0;
    let mut cut_after = None;
    while stalled_since.elapsed() < Duration::from_secs(60) {
        let inputs: Vec<Value> = (0..200)
            .map(|index| json!({"input": format!("bulk {batches} {index}"), "processor": "lite", "metadata": bulky_metadata()}))
            .collect();
        let added = served.post(
            &format!("/v1/tasks/groups/{group_id}/runs"),
            &json!({"inputs": inputs}),
        );
        assert_eq!(added.status, 200, "{}", added.text());
        batches += 1;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if served.streams_open("group_events") < 2 {
                cut_after = Some(stalled_since.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if cut_after.is_some() {
            break;
        }
    }
    let cut_after = cut_after.expect("the stalled stream was cut off within 60 s");
    assert_eq!(
        served.streams_open("group_events"),
        1,
        "only the healthy stream is left"
    );
    // Its slot is free: a new stream opens where the third was refused.
    let fresh = client::SseStream::open(addr, &format!("{events}?timeout=1"), &[])
        .expect("the stalled stream's slot is free again");
    drop(fresh);

    // The stalled connection was closed: what it holds ends without the
    // terminating chunk.
    let mut rest = Vec::new();
    stalled
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let end = stalled.read_to_end(&mut rest);
    assert!(
        end.is_ok()
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the stalled connection is closed, not left hanging: {end:?}"
    );
    assert!(
        !rest.ends_with(b"0\r\n\r\n"),
        "the stalled stream was cut, not ended"
    );

    probing.store(false, Ordering::Relaxed);
    let (answered, slowest) = prober.join().expect("prober");
    let cancel = client::send(
        addr,
        "POST",
        &format!("/v1/tasks/runs/{keeper_id}/cancel"),
        &[],
        None,
    );
    assert_eq!(cancel.status, 200, "{}", cancel.text());
    let healthy_ids = healthy
        .join()
        .expect("healthy reader")
        .expect("the healthy stream reads to its end");
    // The healthy stream's slot comes back when its handler returns, which
    // can be just after its client read the end (CI saw the 503 once):
    // wait for the slot, as a client told `retry-after` would.
    let mut opened = None;
    wait_for(
        "a stream slot for the full read",
        Duration::from_secs(10),
        || match client::SseStream::open(addr, &events, &[]) {
            Ok(stream) => {
                opened = Some(stream);
                true
            }
            Err(response) if response.status == 503 => false,
            Err(response) => panic!("a full read of the stream: {response:?}"),
        },
    );
    let mut replay = opened.expect("opened once the wait ended");
    let all: Vec<String> = client::events(&replay.read_to_end(Duration::from_secs(30)))
        .iter()
        .map(|event| event["event_id"].as_str().unwrap_or_default().to_string())
        .collect();
    println!(
        "stalled reader: cut off {cut_after:.1?} after the first of {batches} batches of 200 \
         16 KiB runs ({} bytes reached its socket); {answered} requests answered meanwhile, the \
         slowest in {slowest:.1?}; the healthy stream got all {} events",
        rest.len(),
        healthy_ids.len()
    );
    assert!(
        slowest < PROMPT_ANSWER_MAX,
        "a request took {slowest:?} while a reader stalled"
    );
    assert_eq!(
        healthy_ids, all,
        "the healthy reader saw every event of the stream"
    );
    assert!(healthy_ids.len() > 200, "{} events", healthy_ids.len());
}

// ---------------------------------------------------------------------
// 4. Slow requests and idle connections.
// ---------------------------------------------------------------------

/// Sends `head` at once, then `trickle` a byte a second until the server
/// closes the connection or `give_up`; answers what came back and when.
fn trickle(
    addr: std::net::SocketAddr,
    head: &[u8],
    bytes: &[u8],
    give_up: Duration,
) -> (Vec<u8>, Duration) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(head).expect("head");
    let started = Instant::now();
    let reader = {
        let mut stream = stream.try_clone().expect("clone");
        stream
            .set_read_timeout(Some(give_up))
            .expect("read timeout");
        std::thread::spawn(move || {
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            (answer, started.elapsed())
        })
    };
    for byte in bytes.iter().cycle() {
        if reader.is_finished() || started.elapsed() > give_up {
            break;
        }
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        // Pacing a deliberately slow client; the test waits on the answer.
        std::thread::sleep(Duration::from_secs(1));
    }
    reader.join().expect("reader")
}

#[test]
fn slow_bodies_and_heads_are_cut_off_after_the_read_timeout_and_others_go_on() {
    let _serial = serial();
    let timeout = SHORT_TIMEOUT_S.to_string();
    let served = Served::start(
        &["--read-timeout-s", &timeout, "--write-timeout-s", &timeout],
        None,
    );
    let addr = served.addr;
    let give_up = Duration::from_secs(20);

    // Four bodies a byte a second (more than 1 KiB declared, so the body is
    // read by taskyard) and one head a byte a second.
    let body_head =
        b"POST /v1/tasks/groups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                      Content-Length: 100000\r\n\r\n{\"metadata\": {\"k\": \"";
    let slow_bodies: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || trickle(addr, body_head, b"x", give_up)))
        .collect();
    let slow_head = std::thread::spawn(move || {
        trickle(
            addr,
            b"POST /v1/tasks/groups HTTP/1.1\r\nX-Slow: ",
            b"y",
            give_up,
        )
    });

    // Meanwhile, groups created and health checked, each promptly.
    let mut connection = Connection::new(addr);
    let mut created = Vec::new();
    let mut slowest = Duration::ZERO;
    let probing_until = Instant::now() + Duration::from_secs(SHORT_TIMEOUT_S + 2);
    while Instant::now() < probing_until {
        let sent = Instant::now();
        let group = connection.expect("POST", "/v1/tasks/groups", Some(&json!({})), 200);
        created.push(group["taskgroup_id"].as_str().expect("id").to_string());
        connection.expect("GET", "/healthz", None, 200);
        slowest = slowest.max(sent.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }

    for slow in slow_bodies {
        let (answer, after) = slow.join().expect("slow body");
        let text = String::from_utf8_lossy(&answer).to_string();
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "a slow body gets a 408: {text:?}"
        );
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let envelope: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
        assert_eq!(envelope["type"], "error", "{envelope}");
        assert!(
            envelope["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("read timeout")),
            "{envelope}"
        );
        // The answer came about when the read timeout ran out, and the
        // connection closed after it (the reader saw its end).
        assert!(
            after >= Duration::from_secs(SHORT_TIMEOUT_S) - Duration::from_millis(100)
                && after < Duration::from_secs(SHORT_TIMEOUT_S * 2 + 2),
            "408 and close after {after:?}"
        );
    }
    let (answer, after) = slow_head.join().expect("slow head");
    assert!(
        answer.is_empty(),
        "a slow head is closed without an answer: {answer:?}"
    );
    assert!(
        after < Duration::from_secs(SHORT_TIMEOUT_S * 2 + 2),
        "closed after {after:?}"
    );
    assert!(
        slowest < PROMPT_ANSWER_MAX,
        "a request took {slowest:?} beside the slow clients"
    );

    // Nothing of the slow bodies was written: only the prompt groups exist.
    let stored = support::stored(&served.dir).int("SELECT COUNT(*) FROM groups", &[]);
    assert_eq!(
        stored as usize,
        created.len(),
        "no group from a cut-off body"
    );
    println!(
        "slow clients: 4 bodies a byte a second got a 408 and a close, a head a byte a second a \
         close after {after:.1?}; {} groups created beside them, the slowest request {slowest:.1?}",
        created.len()
    );
}

#[test]
fn an_idle_keep_alive_connection_closes_after_the_read_timeout_but_a_quiet_stream_lives_on() {
    let _serial = serial();
    // The timeouts from the config file this time, not flags.
    let config_dir = TestDir::new();
    let config_path = config_dir.dir.path().join("taskyard.toml");
    std::fs::write(
        &config_path,
        format!("read_timeout_s = {SHORT_TIMEOUT_S}\nwrite_timeout_s = {SHORT_TIMEOUT_S}\n"),
    )
    .expect("config file");
    let served = Served::start(
        &["--config", config_path.to_str().expect("a UTF-8 path")],
        None,
    );
    let addr = served.addr;

    // An idle keep-alive connection: answered, then closed after the read
    // timeout with nothing more sent.
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let mut reader = BufReader::new(stream);
    reader
        .get_mut()
        .write_all(&client::request_bytes("GET", "/healthz", &[], None))
        .expect("request");
    assert_eq!(
        client::read_response(&mut reader).expect("answer").status,
        200
    );
    let idle_since = Instant::now();
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("the server closes the idle connection");
    let idle_for = idle_since.elapsed();
    assert!(
        rest.is_empty(),
        "nothing is sent on an idle connection: {rest:?}"
    );
    assert!(
        idle_for >= Duration::from_secs(SHORT_TIMEOUT_S) - Duration::from_millis(100)
            && idle_for < Duration::from_secs(SHORT_TIMEOUT_S + 2),
        "closed after {idle_for:?} of idleness"
    );

    // A stream that stays quiet for longer than the read timeout is not
    // idleness: it lives on, delivers, ends, and its connection serves the
    // next request.
    let group_id = served.post("/v1/tasks/groups", &json!({})).json()["taskgroup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let added = served.post(
        &format!("/v1/tasks/groups/{group_id}/runs"),
        &json!({"inputs": [{"input": "slow", "processor": "lite",
                            "metadata": {"mock_delay_ms": (SHORT_TIMEOUT_S * 1000 * 3)}}]}),
    );
    assert_eq!(added.status, 200, "{}", added.text());
    let mut stream =
        client::SseStream::open(addr, &format!("/v1/tasks/groups/{group_id}/events"), &[])
            .expect("the stream opens");
    let frames = stream.read_to_end(Duration::from_secs(SHORT_TIMEOUT_S * 3 + 10));
    let kinds: Vec<String> = client::events(&frames)
        .iter()
        .map(|event| event["type"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["task_group_status", "task_run.state", "task_group_status"],
        "the quiet stream delivered the run's end"
    );
    assert_eq!(
        stream.reuse("/healthz", Duration::from_secs(5)),
        Some(200),
        "the stream's connection serves the next request"
    );
}

// ---------------------------------------------------------------------
// 5. Out of file descriptors.
// ---------------------------------------------------------------------

/// Regression: tiny_http 0.12 ended its accept thread on the first failed
/// accept (and panicked it when a socket could not be duplicated), so one
/// burst past the file-descriptor limit left the server deaf for good.
#[test]
fn running_out_of_file_descriptors_does_not_stop_the_server_accepting() {
    let _serial = serial();
    const FDS_MAX: usize = 128;
    let served = Served::start(&[], Some(&format!("ulimit -n {FDS_MAX}")));
    assert_eq!(served.get("/healthz").status, 200);
    let before = served.open_fds();
    // More connections than the server has descriptors for, all at once.
    let flood: Vec<TcpStream> = (0..FDS_MAX * 2)
        .filter_map(|_| TcpStream::connect(served.addr).ok())
        .collect();
    wait_for(
        "the server runs out of file descriptors",
        Duration::from_secs(10),
        || served.open_fds() as usize >= FDS_MAX - 2,
    );
    let exhausted = served.open_fds();
    drop(flood);
    let mut answered = None;
    wait_for("the server answers again", Duration::from_secs(20), || {
        // Stock tiny_http's accept thread died here: refused, or no answer.
        let Ok(stream) = TcpStream::connect(served.addr) else {
            return false;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("read timeout");
        let mut reader = BufReader::new(stream);
        let request = client::request_bytes("GET", "/healthz", &[("Connection", "close")], None);
        if reader.get_mut().write_all(&request).is_err() {
            return false;
        }
        match client::read_response(&mut reader) {
            Ok(response) => {
                answered = Some(response.status);
                true
            }
            Err(_) => false,
        }
    });
    assert_eq!(answered, Some(200));
    println!(
        "fd limit {FDS_MAX}: {before} open at rest, {exhausted} at the flood; answering again"
    );
}
