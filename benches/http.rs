//! `http`: the HTTP layer under load on loopback, with its own keep-alive
//! client (raw HTTP/1.1 over `TcpStream`), in one process with the server.
//!
//! 1. `GET /v1/tasks/groups/{id}` from `TASKYARD_BENCH_CLIENTS` (32) keep-alive
//!    clients for `TASKYARD_BENCH_SECONDS` (5; smoke 0.3): requests/s.
//! 2. `POST /v1/tasks/runs` from the same number of clients: p50 and p99
//!    latency.
//! 3. Stream latency: a client follows a group's events while runs complete;
//!    the time from each run's recorded completion (`modified_at`) to its
//!    event reaching the client (`TASKYARD_BENCH_STREAM_RUNS`, 1,000; smoke
//!    20): p50 and p99.
//! 4. End to end: a client adds `TASKYARD_BENCH_RUNS` (100,000; smoke 1,000)
//!    runs in batches of 1,000 with `POST /v1beta/tasks/groups/{id}/runs`
//!    and consumes the group events stream to its end (resuming from its
//!    last `event_id` if the group went idle between two batches): runs/s,
//!    and the ratio to the raw SQLite floor run in the same invocation,
//!    `TASKYARD_BENCH_REPEAT` (3; smoke 1) rounds back to back, medians
//!    (target >= 0.75 since issue 18; 0.50 before). Every run's terminal
//!    event must arrive exactly once.
//!
//! Prints a table and writes `target/bench/http.json`.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::{Client, Row, RunTemplate};
use serde_json::{json, Value};
use taskyard::server::{Server, ServerConfig};
use taskyard::Engine;

/// Runs `work` on `clients` threads for `seconds`; answers each call's
/// latency in milliseconds, sorted, and the elapsed time.
fn load(
    addr: SocketAddr,
    clients: usize,
    seconds: f64,
    work: impl Fn(&mut Client) + Sync,
) -> (Vec<f64>, f64) {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(clients + 1);
    let mut latencies = Vec::new();
    let mut elapsed = 0.0;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::connect(addr);
                    let mut mine = Vec::new();
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        work(&mut client);
                        mine.push(started.elapsed().as_secs_f64() * 1e3);
                    }
                    mine
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        // Pacing the load, not waiting for a condition: the clients run
        // for a fixed time and are counted.
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        for handle in handles {
            latencies.extend(handle.join().expect("client thread"));
        }
        elapsed = started.elapsed().as_secs_f64();
    });
    latencies.sort_by(|a, b| a.total_cmp(b));
    (latencies, elapsed)
}

fn create_group(client: &mut Client) -> String {
    let answer = client.call("POST", "/v1/tasks/groups", "{}");
    assert_eq!(answer.status, 200);
    answer.json()["taskgroup_id"]
        .as_str()
        .expect("taskgroup_id")
        .to_string()
}

/// Follows a group's events over SSE; answers completion-to-arrival
/// latencies in milliseconds.
fn stream_latency(addr: SocketAddr, runs: usize) -> Vec<f64> {
    let mut client = Client::connect(addr);
    let group_id = create_group(&mut client);
    // One long run keeps the group active, so the stream stays open while
    // the measured runs are added one by one; it is cancelled at the end.
    let keeper = json!({"inputs": [{"input": "keeper", "processor": "lite",
        "metadata": {"mock_delay_ms": 600_000}}]})
    .to_string();
    let answer = client.call(
        "POST",
        &format!("/v1/tasks/groups/{group_id}/runs"),
        &keeper,
    );
    assert_eq!(answer.status, 200);
    let path = format!("/v1/tasks/groups/{group_id}/events");
    let reader = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        let mut stream = Client::connect(addr);
        stream.stream(&path, |data, arrived| {
            let event: Value = serde_json::from_str(data).expect("event json");
            if event["type"] == "task_run.state" {
                let completed = common::parse_rfc3339_micros(
                    event["run"]["modified_at"].as_str().expect("modified_at"),
                );
                latencies.push((arrived - completed) as f64 / 1e3);
            }
            latencies.len() < runs
        });
        latencies
    });
    // Runs added one request at a time, spaced so completions are spread.
    for index in 0..runs {
        let body =
            json!({"inputs": [{"input": format!("run {index}"), "processor": "lite"}]}).to_string();
        let answer = client.call("POST", &format!("/v1/tasks/groups/{group_id}/runs"), &body);
        assert_eq!(answer.status, 200);
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut latencies = reader.join().expect("reader");
    let answer = client.call("POST", &format!("/v1/tasks/groups/{group_id}/cancel"), "");
    assert_eq!(answer.status, 200);
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}

/// One end-to-end pass on a fresh database and server: answers runs/s.
fn end_to_end(runs: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(
        dir.path().join("bench.db"),
        taskyard::faces::default_config(),
    )
    .expect("engine");
    let server = Server::start(
        engine.clone(),
        ServerConfig {
            addr: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        },
    )
    .expect("server");
    let addr = server.local_addr();
    let started = Instant::now();
    let mut client = Client::connect(addr);
    let group_id = create_group(&mut client);
    let add_path = format!("/v1beta/tasks/groups/{group_id}/runs");
    let batch_body = |first: usize, count: usize| {
        let inputs: Vec<Value> = (first..first + count)
            .map(|i| json!({"input": common::bench_input(i), "processor": "mock"}))
            .collect();
        json!({ "inputs": inputs }).to_string()
    };
    let first = runs.min(1_000);
    let answer = client.call("POST", &add_path, &batch_body(0, first));
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let events_path = format!("/v1beta/tasks/groups/{group_id}/events");
    let reader = std::thread::spawn(move || {
        let mut seen: HashSet<String> = HashSet::with_capacity(runs);
        let mut last_event_id: Option<String> = None;
        let mut stream = Client::connect(addr);
        let deadline = Instant::now() + Duration::from_secs(3_600);
        while seen.len() < runs {
            assert!(Instant::now() < deadline, "the group never finished");
            let path = match &last_event_id {
                Some(id) => format!("{events_path}?last_event_id={id}"),
                None => events_path.clone(),
            };
            // The stream ends when the group is inactive; a group that went
            // idle between two batches is followed again from its cursor.
            stream.stream(&path, |data, _| {
                let event: Value = serde_json::from_str(data).expect("event json");
                last_event_id = event["event_id"].as_str().map(str::to_string);
                if event["type"] == "task_run.state" {
                    let run_id = event["run"]["run_id"].as_str().expect("run_id");
                    assert_eq!(event["run"]["status"], "completed");
                    assert!(seen.insert(run_id.to_string()), "{run_id} twice");
                }
                true
            });
        }
        seen.len()
    });
    let mut created = first;
    while created < runs {
        let batch = (runs - created).min(1_000);
        let answer = client.call("POST", &add_path, &batch_body(created, batch));
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        created += batch;
    }
    let finished = reader.join().expect("events reader");
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(finished, runs);
    let status = taskyard::faces::parallel::Api::new(engine.clone())
        .get_group(&group_id)
        .expect("group")
        .status;
    assert_eq!(status.num_task_runs as usize, runs);
    assert!(!status.is_active);
    server.stop();
    engine.shutdown(Duration::from_secs(5));
    runs as f64 / elapsed
}

fn main() {
    let clients = common::env_usize("TASKYARD_BENCH_CLIENTS", 32, 4);
    let seconds = common::env_f64("TASKYARD_BENCH_SECONDS", 5.0, 0.3);
    let stream_runs = common::env_usize("TASKYARD_BENCH_STREAM_RUNS", 1_000, 20);
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 100_000, 1_000);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);

    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(
        dir.path().join("bench.db"),
        taskyard::faces::default_config(),
    )
    .expect("engine");
    let server = Server::start(
        engine.clone(),
        ServerConfig {
            addr: "127.0.0.1:0".into(),
            request_threads: clients.max(16),
            ..ServerConfig::default()
        },
    )
    .expect("server");
    let addr = server.local_addr();

    let group_id = taskyard::faces::parallel::Api::new(engine.clone())
        .create_group(None)
        .expect("group")
        .taskgroup_id;
    let path = format!("/v1/tasks/groups/{group_id}");
    let (get_latencies, get_elapsed) = load(addr, clients, seconds, |client| {
        let answer = client.call("GET", &path, "");
        assert_eq!(answer.status, 200);
    });
    let get_rps = get_latencies.len() as f64 / get_elapsed;

    let create = json!({"input": "bench", "processor": "lite"}).to_string();
    let (post_latencies, post_elapsed) = load(addr, clients, seconds, |client| {
        let answer = client.call("POST", "/v1/tasks/runs", &create);
        assert_eq!(answer.status, 202);
    });
    let post_rps = post_latencies.len() as f64 / post_elapsed;

    let sse = stream_latency(addr, stream_runs);
    assert_eq!(sse.len(), stream_runs, "every run's event arrived");
    server.stop();
    engine.shutdown(Duration::from_secs(5));
    drop(dir);

    let floor_dir = tempfile::tempdir().expect("temporary directory");
    let template = RunTemplate::sample(floor_dir.path(), runs / 2);
    let mut floor_passes = Vec::new();
    let mut http_passes = Vec::new();
    for _ in 0..repeat {
        floor_passes.push(common::raw_sqlite(floor_dir.path(), runs, &template).runs_per_s);
        http_passes.push(end_to_end(runs));
    }
    let floor = common::median(&floor_passes);
    let end_to_end_median = common::median(&http_passes);
    let ratio = end_to_end_median / floor;
    let list = |passes: &[f64]| common::passes_list(passes, 0);
    let p = |sorted: &[f64], q: f64| common::percentile(sorted, q);
    let rows = vec![
        Row::new(
            format!("GET /v1/tasks/groups/{{id}}, {clients} clients"),
            get_rps,
            "req/s",
        ),
        Row::new("  p50", p(&get_latencies, 0.5), "ms"),
        Row::new("  p99", p(&get_latencies, 0.99), "ms"),
        Row::new(
            format!("POST /v1/tasks/runs, {clients} clients"),
            post_rps,
            "req/s",
        ),
        Row::new("  p50", p(&post_latencies, 0.5), "ms"),
        Row::new("  p99", p(&post_latencies, 0.99), "ms"),
        Row::new(
            format!("run completed -> SSE client ({stream_runs} runs), p50"),
            p(&sse, 0.5),
            "ms",
        ),
        Row::new("  p99", p(&sse, 0.99), "ms"),
        Row::new(
            format!("raw SQLite floor ({})", list(&floor_passes)),
            floor,
            "runs/s",
        ),
        Row::new(
            format!("HTTP end to end, {runs} runs ({})", list(&http_passes)),
            end_to_end_median,
            "runs/s",
        ),
        Row::new("HTTP end to end / floor", ratio, "").at_least(0.75),
    ];
    common::report(
        "http",
        &format!("loopback, keep-alive clients, {seconds} s per load, medians of {repeat}"),
        &rows,
        json!({
            "clients": clients,
            "seconds": seconds,
            "get_group": {"requests_per_s": get_rps, "p50_ms": p(&get_latencies, 0.5), "p99_ms": p(&get_latencies, 0.99)},
            "post_run": {"requests_per_s": post_rps, "p50_ms": p(&post_latencies, 0.5), "p99_ms": p(&post_latencies, 0.99)},
            "sse_latency": {"runs": stream_runs, "p50_ms": p(&sse, 0.5), "p99_ms": p(&sse, 0.99), "max_ms": sse.last()},
            "end_to_end": {
                "runs": runs,
                "floor_passes_runs_per_s": floor_passes,
                "http_passes_runs_per_s": http_passes,
                "floor_median_runs_per_s": floor,
                "http_median_runs_per_s": end_to_end_median,
                "ratio": ratio,
            },
        }),
    );
}
