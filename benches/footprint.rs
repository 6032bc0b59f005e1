//! `footprint`: what the real binary costs, measured on `taskyard serve` as
//! a child process (the binary cargo built beside this bench).
//!
//! 1. Cold start: from spawning `taskyard serve` on an existing database of
//!    stored runs (the one `read_paths` caches; sizes from
//!    `TASKYARD_BENCH_SIZES`, 1,000, 100,000, 1,000,000; smoke 50, 500,
//!    2,000) to the first answered `GET /v1/tasks/groups/{id}` of its
//!    largest group, `TASKYARD_BENCH_REPEAT` times (3; smoke 1), median.
//!    Target < 50 ms. The page cache is warm: the file was just read.
//! 2. RSS of that server once it has answered, and database bytes, per
//!    1,000,000 stored runs.
//! 3. Peak RSS (`VmHWM`) of a server on a fresh database while a group of
//!    `TASKYARD_BENCH_RUNS` (100,000; smoke 2,000) `mock` runs executes,
//!    added over HTTP in batches of 1,000 and followed to its end on the
//!    group events stream. Target < 64 MiB.
//! 4. The binary's size once stripped (a copy, with `strip`). Target
//!    < 15 MiB; meaningful only for the release build (`cargo bench`).
//!
//! Writes `target/bench/footprint.json`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, Row};
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_taskyard");

/// A `taskyard serve` child; stopped with SIGTERM on drop.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Served {
    /// Starts the server on `db` and waits for its start line, which names
    /// the port it bound.
    fn start(db: &Path) -> Served {
        let mut child = Command::new(BINARY)
            .args(["serve", "--addr", "127.0.0.1:0", "--db"])
            .arg(db)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn taskyard serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("start line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in the start line {line:?}"));
        Served { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kib(&self, field: &str) -> u64 {
        common::proc_status_kib(self.pid(), field)
            .unwrap_or_else(|| panic!("{field} of the server"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn to first answer, ms; answers the server too, still running.
fn cold_start(db: &Path, group_id: &str, runs: usize) -> (f64, Served) {
    let started = Instant::now();
    let served = Served::start(db);
    let mut client = Client::connect(served.addr);
    let answer = client.call("GET", &format!("/v1/tasks/groups/{group_id}"), "");
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["status"]["num_task_runs"], json!(runs));
    (elapsed, served)
}

/// Runs a group of `runs` runs through a fresh server; answers its peak
/// and final RSS in KiB and the runs per second from the first add to the
/// last event.
fn executing_group(runs: usize) -> (u64, u64, f64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let served = Served::start(&dir.path().join("fresh.db"));
    let addr = served.addr;
    let mut client = Client::connect(addr);
    let answer = client.call("POST", "/v1/tasks/groups", "{}");
    assert_eq!(answer.status, 200);
    let group_id = answer.json()["taskgroup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let add_path = format!("/v1/tasks/groups/{group_id}/runs");
    let batch = |first: usize, count: usize| {
        let inputs: Vec<Value> = (first..first + count)
            .map(|i| json!({"input": common::bench_input(i), "processor": "mock"}))
            .collect();
        json!({ "inputs": inputs }).to_string()
    };
    let mut created = 0;
    let mut completed = 0;
    let mut last_event_id: Option<String> = None;
    let mut stream = Client::connect(addr);
    let started = Instant::now();
    while created < runs {
        let count = (runs - created).min(1_000);
        let answer = client.call("POST", &add_path, &batch(created, count));
        assert_eq!(answer.status, 200);
        created += count;
    }
    // Follow to the end, resuming if the group went idle between batches.
    let deadline = Instant::now() + Duration::from_secs(3_600);
    while completed < runs {
        assert!(Instant::now() < deadline, "the group never finished");
        let path = match &last_event_id {
            Some(id) => format!("/v1/tasks/groups/{group_id}/events?last_event_id={id}"),
            None => format!("/v1/tasks/groups/{group_id}/events"),
        };
        stream.stream(&path, |data, _| {
            let event: Value = serde_json::from_str(data).expect("event");
            last_event_id = event["event_id"].as_str().map(str::to_string);
            if event["type"] == "task_run.state" {
                completed += 1;
            }
            true
        });
    }
    assert_eq!(completed, runs);
    let rate = runs as f64 / started.elapsed().as_secs_f64();
    (served.kib("VmHWM"), served.kib("VmRSS"), rate)
}

fn stripped_size() -> Option<u64> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let copy = dir.path().join("taskyard");
    std::fs::copy(BINARY, &copy).expect("copy the binary");
    let stripped = Command::new("strip").arg(&copy).status().ok()?;
    stripped
        .success()
        .then(|| std::fs::metadata(&copy).expect("size").len())
}

fn main() {
    let sizes = common::env_sizes(
        "TASKYARD_BENCH_SIZES",
        &[1_000, 100_000, 1_000_000],
        &[50, 500, 2_000],
    );
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 100_000, 2_000);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let mib = |kib: u64| kib as f64 / 1024.0;

    let stored = common::stored_runs(&sizes);
    let total = stored.total_runs();
    let (largest, largest_group) = stored.groups.last().expect("a size").clone();
    let mut starts = Vec::new();
    let mut idle_rss_kib = 0;
    for _ in 0..repeat {
        let (ms, served) = cold_start(&stored.path, &largest_group, largest);
        starts.push(ms);
        idle_rss_kib = served.kib("VmRSS");
    }
    let start_median = common::median(&starts);
    let database_bytes = common::database_bytes(&stored.path);
    let per_million = 1_000_000.0 / total as f64;

    // Peak RSS varies from run to run with how the allocator's arenas
    // fill, so the group runs `repeat` times and the worst peak counts.
    let groups: Vec<(u64, u64, f64)> = (0..repeat).map(|_| executing_group(runs)).collect();
    let peaks: Vec<u64> = groups.iter().map(|g| g.0).collect();
    let peak_kib = *peaks.iter().max().expect("a group");
    let final_kib = groups.iter().map(|g| g.1).max().expect("a group");
    let group_rate = common::median(&groups.iter().map(|g| g.2).collect::<Vec<_>>());
    let stripped = stripped_size();

    let mut rows = vec![
        Row::new(
            format!("cold start to first answer, {total} stored runs"),
            start_median,
            "ms",
        )
        .below(50.0),
        Row::new(
            format!("RSS after the first answer, {total} stored runs"),
            mib(idle_rss_kib),
            "MiB",
        ),
        Row::new(
            "database size per 1,000,000 stored runs",
            database_bytes as f64 * per_million / (1024.0 * 1024.0),
            "MiB",
        ),
        Row::new(
            format!("peak RSS while a {runs}-run group executes, worst of {repeat}"),
            mib(peak_kib),
            "MiB",
        )
        .below(64.0),
        Row::new("  RSS at the group's end", mib(final_kib), "MiB"),
        Row::new(
            "  the group's rate, add to last event, median",
            group_rate,
            "runs/s",
        ),
    ];
    match stripped {
        Some(bytes) => rows.push(
            Row::new(
                "binary size, stripped",
                bytes as f64 / (1024.0 * 1024.0),
                "MiB",
            )
            .below(15.0),
        ),
        None => eprintln!("footprint: `strip` is not available; binary size not measured"),
    }
    common::report(
        "footprint",
        &format!(
            "{BINARY}; database of {total} runs, {}; cold starts: {}",
            stored.how,
            starts
                .iter()
                .map(|ms| format!("{ms:.1} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &rows,
        json!({
            "binary": BINARY,
            "stored_runs": total,
            "cold_start_ms": starts,
            "cold_start_median_ms": start_median,
            "idle_rss_kib": idle_rss_kib,
            "database_bytes": database_bytes,
            "database_bytes_per_million_runs": database_bytes as f64 * per_million,
            "group_runs": runs,
            "peak_rss_kib": peak_kib,
            "peak_rss_kib_each": peaks,
            "group_runs_per_s": group_rate,
            "final_rss_kib": final_kib,
            "binary_stripped_bytes": stripped,
            "binary_bytes": std::fs::metadata(BINARY).map(|m| m.len()).ok(),
        }),
    );
}
