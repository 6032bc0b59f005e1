//! `stream_latency`: with `TASKYARD_BENCH_SUBSCRIBERS` (1,000; smoke 20)
//! clients following streams over HTTP, the time from the commit of a
//! run's terminal state to its event reaching each client, and proof that
//! no client missed an event.
//!
//! One group gets `TASKYARD_BENCH_STREAM_RUNS` runs (200; smoke 10) in one
//! request, run `i` lasting `TASKYARD_BENCH_STREAM_DELAY_MS` (3,000; smoke
//! 1,000) plus `i` times `TASKYARD_BENCH_STREAM_GAP_MS` (5) so completions
//! are spread out, spread over the hosted processor names so that no
//! concurrency limit holds them back. Before the first can finish, half the
//! subscribers open the group's events stream and the other half open run
//! events streams, shared out over the runs; they connect in waves of
//! `TASKYARD_BENCH_CONNECT_WAVE` (50), each wave's streams open before the
//! next connects, so that the figure is stream latency, not the time a
//! burst of connections waits in the listen backlog. Each event's latency is its
//! arrival (wall clock, at the chunk it came in) minus the run's
//! `modified_at` in the event, the time the terminal state was recorded in
//! the committing transaction. Every group subscriber must see every run's
//! terminal event exactly once and its stream must end (the group went
//! inactive); every run subscriber must see its run's terminal state. p50,
//! p99 and max over all (run, subscriber) pairs; target p99 < 5 ms.
//! Writes `target/bench/stream_latency.json`.

mod common;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, Row};
use serde_json::{json, Value};
use taskyard::http::{Server, ServerConfig};
use taskyard::{Config, Engine};

/// Processor names served by `mock` by default, each with its own
/// concurrency limit; runs are dealt out over them.
const PROCESSORS: &[&str] = &[
    "lite", "base", "core", "core2x", "pro", "ultra", "ultra2x", "ultra4x", "ultra8x",
];

/// What one subscriber saw.
struct Seen {
    /// Latency of each terminal event, ms.
    latencies: Vec<f64>,
    /// Run ids whose terminal event arrived.
    runs: Vec<String>,
    ended: bool,
}

/// Opens `path` and records terminal run events until the stream ends.
fn subscribe(addr: std::net::SocketAddr, path: String, connected: Arc<AtomicUsize>) -> Seen {
    let mut client = Client::connect(addr);
    let mut seen = Seen {
        latencies: Vec::new(),
        runs: Vec::new(),
        ended: false,
    };
    client.send("GET", &path, "");
    let (status, _, chunked) = client.head().expect("stream head");
    assert_eq!(status, 200, "GET {path}");
    assert!(chunked);
    connected.fetch_add(1, Ordering::SeqCst);
    let mut pending = String::new();
    while let Some(chunk) = client.chunk().expect("stream chunk") {
        let arrived = common::now_micros();
        pending.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let event: Value = serde_json::from_str(data).expect("event json");
            if event["type"] != "task_run.state" || event["run"]["is_active"] != false {
                continue;
            }
            let completed = common::parse_rfc3339_micros(
                event["run"]["modified_at"].as_str().expect("modified_at"),
            );
            seen.latencies.push((arrived - completed) as f64 / 1e3);
            seen.runs
                .push(event["run"]["run_id"].as_str().expect("run_id").into());
        }
    }
    seen.ended = true;
    seen
}

fn main() {
    let subscribers = common::env_usize("TASKYARD_BENCH_SUBSCRIBERS", 1_000, 20).max(2);
    let runs = common::env_usize("TASKYARD_BENCH_STREAM_RUNS", 200, 10).max(1);
    let delay_ms = common::env_usize("TASKYARD_BENCH_STREAM_DELAY_MS", 3_000, 1_000);
    let gap_ms = common::env_usize("TASKYARD_BENCH_STREAM_GAP_MS", 5, 5);
    let wave = common::env_usize("TASKYARD_BENCH_CONNECT_WAVE", 50, 50).max(1);
    let per_name = runs.div_ceil(PROCESSORS.len());
    assert!(
        per_name <= 64,
        "{runs} runs would queue behind the mock's concurrency limit of 64 per name"
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let config = Config {
        // Every run sleeps at once; none may wait for a worker.
        workers: runs + 4,
        ..Config::default()
    };
    let engine = Engine::open(dir.path().join("bench.db"), config).expect("engine");
    let server = Server::start(
        engine.clone(),
        ServerConfig {
            addr: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        },
    )
    .expect("server");
    let addr = server.local_addr();
    let mut client = Client::connect(addr);
    let answer = client.call("POST", "/v1/tasks/groups", "{}");
    assert_eq!(answer.status, 200);
    let group_id = answer.json()["taskgroup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let inputs: Vec<Value> = (0..runs)
        .map(|i| {
            json!({
                "input": format!("run {i}"),
                "processor": PROCESSORS[i % PROCESSORS.len()],
                "metadata": {"mock_delay_ms": delay_ms + i * gap_ms},
            })
        })
        .collect();
    let added_at = Instant::now();
    let answer = client.call(
        "POST",
        &format!("/v1/tasks/groups/{group_id}/runs"),
        &json!({ "inputs": inputs }).to_string(),
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let run_ids: Vec<String> = answer.json()["run_ids"]
        .as_array()
        .expect("run_ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_string())
        .collect();

    // Even subscribers follow the group, odd ones a run, so that each wave
    // of connections holds both kinds.
    let group_subscribers = subscribers.div_ceil(2);
    let connected = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(subscribers);
    let first_run_lasts = Duration::from_millis(delay_ms as u64);
    let mut shown = 0;
    for wave_start in (0..subscribers).step_by(wave) {
        let wave_end = (wave_start + wave).min(subscribers);
        for index in wave_start..wave_end {
            let (path, run) = if index % 2 == 0 {
                (format!("/v1/tasks/groups/{group_id}/events"), None)
            } else {
                let run = (index / 2) % runs;
                (format!("/v1/tasks/runs/{}/events", run_ids[run]), Some(run))
            };
            let connected = connected.clone();
            let handle = common::spawn_small(format!("subscriber-{index}"), move || {
                subscribe(addr, path, connected)
            });
            handles.push((run, handle));
        }
        common::wait_until(
            "the subscribers' streams to open before the first run ends \
             (raise TASKYARD_BENCH_STREAM_DELAY_MS)",
            first_run_lasts.saturating_sub(added_at.elapsed()),
            || {
                let now = connected.load(Ordering::SeqCst);
                if now != shown && std::io::stderr().is_terminal() {
                    eprint!("\rstreams open: {now} of {subscribers}");
                    shown = now;
                }
                now == wave_end
            },
        );
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let all_connected_ms = added_at.elapsed().as_secs_f64() * 1e3;
    assert!(
        all_connected_ms < delay_ms as f64,
        "the subscribers took {all_connected_ms:.0} ms to connect, longer than the first run \
         lasts: raise TASKYARD_BENCH_STREAM_DELAY_MS"
    );

    let mut latencies = Vec::new();
    let mut group_latencies = Vec::new();
    let mut run_latencies = Vec::new();
    for (run, handle) in handles {
        let seen = handle.join().expect("subscriber thread");
        assert!(seen.ended, "every stream ends");
        match run {
            None => {
                let distinct: HashSet<&String> = seen.runs.iter().collect();
                assert_eq!(seen.runs.len(), runs, "a group subscriber missed events");
                assert_eq!(
                    distinct.len(),
                    runs,
                    "a group subscriber got an event twice"
                );
                group_latencies.extend(&seen.latencies);
            }
            Some(run) => {
                assert_eq!(
                    seen.runs,
                    vec![run_ids[run].clone()],
                    "a run subscriber missed its run's terminal state"
                );
                run_latencies.extend(&seen.latencies);
            }
        }
        latencies.extend(&seen.latencies);
    }
    assert_eq!(
        latencies.len(),
        group_subscribers * runs + (subscribers - group_subscribers),
        "one latency per (run, subscriber) pair"
    );
    let status = engine.get_group(&group_id).expect("group").status;
    assert!(!status.is_active);
    assert_eq!(
        status.task_run_status_counts.get("completed"),
        Some(&json!(runs))
    );
    server.stop();
    engine.shutdown(Duration::from_secs(5));

    let (p50, p99, max) = common::summary(&mut latencies);
    let (group_p50, group_p99, _) = common::summary(&mut group_latencies);
    let (run_p50, run_p99, _) = common::summary(&mut run_latencies);
    let rows = vec![
        Row::new("commit -> client, all pairs, p50", p50, "ms"),
        Row::new("commit -> client, all pairs, p99", p99, "ms").below(5.0),
        Row::new("commit -> client, all pairs, max", max, "ms"),
        Row::new("  group stream subscribers, p50", group_p50, "ms"),
        Row::new("  group stream subscribers, p99", group_p99, "ms"),
        Row::new("  run stream subscribers, p50", run_p50, "ms"),
        Row::new("  run stream subscribers, p99", run_p99, "ms"),
        Row::new("subscribers that missed an event", 0.0, "").target("0", true),
    ];
    common::report(
        "stream_latency",
        &format!(
            "{subscribers} subscribers ({group_subscribers} on the group stream, {} on run \
             streams), {runs} runs completing {gap_ms} ms apart, {} pairs",
            subscribers - group_subscribers,
            latencies.len()
        ),
        &rows,
        json!({
            "subscribers": subscribers,
            "group_subscribers": group_subscribers,
            "run_subscribers": subscribers - group_subscribers,
            "runs": runs,
            "gap_ms": gap_ms,
            "pairs": latencies.len(),
            "connect_all_ms": all_connected_ms,
            "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            "group_p50_ms": group_p50, "group_p99_ms": group_p99,
            "run_p50_ms": run_p50, "run_p99_ms": run_p99,
        }),
    );
}
