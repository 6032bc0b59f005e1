//! `read_paths`: the read side over HTTP on a database of stored runs.
//!
//! The database holds one group per size of `TASKYARD_BENCH_SIZES`
//! (1,000, 100,000, 1,000,000; smoke 50, 500, 2,000), every run completed
//! by `mock`; it is built once through the engine and cached under
//! `target/bench/` (see `common::stored_runs`). Then, on a server in this
//! process, over one keep-alive connection:
//!
//! 1. `GET /v1/tasks/groups/{id}` for each group, `TASKYARD_BENCH_READS`
//!    times (2,000; smoke 50): p50 and p99. Targets: the largest group's p50
//!    under 1 ms, and within 2x of the smallest's (the summary is one row).
//! 2. `GET /v1/tasks/runs/{id}` of runs picked across the database: p50, p99.
//! 3. `GET /v1beta/tasks/groups/{id}/runs?include_output=true` of the group
//!    nearest 100,000 runs, read to its end (spec 4.7), `TASKYARD_BENCH_REPEAT`
//!    times (3; smoke 1): runs/s, median. Every run must come once, in
//!    order, completed and with its output.
//!
//! Writes `target/bench/read_paths.json`.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Picker, Row};
use rusqlite::Connection;
use serde_json::{json, Value};
use taskyard::server::{Server, ServerConfig};
use taskyard::Engine;

fn timed_gets(client: &mut Client, paths: &[String]) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(paths.len());
    for path in paths {
        let started = Instant::now();
        let answer = client.call("GET", path, "");
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(answer.status, 200, "GET {path}");
    }
    latencies
}

fn main() {
    let sizes = common::env_sizes(
        "TASKYARD_BENCH_SIZES",
        &[1_000, 100_000, 1_000_000],
        &[50, 500, 2_000],
    );
    let reads = common::env_usize("TASKYARD_BENCH_READS", 2_000, 50).max(1);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let stored = common::stored_runs(&sizes);
    let engine = Engine::open(&stored.path, taskyard::faces::default_config()).expect("engine");
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
    let mut rows = Vec::new();
    let mut details = Vec::new();

    // 1. The group summary, by group size.
    let mut group_p50 = Vec::new();
    for (size, group_id) in &stored.groups {
        let path = format!("/v1/tasks/groups/{group_id}");
        let answer = client.call("GET", &path, "");
        assert_eq!(answer.json()["status"]["num_task_runs"], json!(size));
        let paths = vec![path; reads];
        timed_gets(&mut client, &paths[..reads.min(20)]); // warm-up
        let mut latencies = timed_gets(&mut client, &paths);
        let (p50, p99, _) = common::summary(&mut latencies);
        group_p50.push(p50);
        details.push(json!({"measure": "get_group", "runs": size, "p50_ms": p50, "p99_ms": p99}));
        rows.push(Row::new(
            format!("GET /v1/tasks/groups/{{id}}, {size} runs, p50"),
            p50,
            "ms",
        ));
        rows.push(Row::new("  p99", p99, "ms"));
    }
    let largest_p50 = *group_p50.last().expect("a size");
    let flatness = largest_p50 / group_p50[0];
    rows.push(Row::new("  largest group p50", largest_p50, "ms").below(1.0));
    rows.push(
        Row::new(
            format!(
                "  p50 {} runs / p50 {} runs",
                stored.groups.last().expect("a size").0,
                stored.groups[0].0
            ),
            flatness,
            "x",
        )
        .target("<= 2", flatness <= 2.0),
    );

    // 2. A run by id, picked across the whole database.
    let total = stored.total_runs() as u64;
    let connection = Connection::open(&stored.path).expect("open for ids");
    let mut picker = Picker::new(0x5eed);
    let run_paths: Vec<String> = (0..reads)
        .map(|_| {
            let seq = picker.below(total) as i64 + 1;
            let id: String = connection
                .query_row("SELECT id FROM runs WHERE seq = ?1", [seq], |row| {
                    row.get(0)
                })
                .expect("a run");
            // The stored id is the engine's; the path takes the wire id.
            format!(
                "/v1/tasks/runs/{}",
                taskyard::faces::parallel::wire::wire_run_id(&id)
            )
        })
        .collect();
    drop(connection);
    let mut latencies = timed_gets(&mut client, &run_paths);
    let (run_p50, run_p99, _) = common::summary(&mut latencies);
    rows.push(Row::new(
        format!("GET /v1/tasks/runs/{{id}}, of {total} runs, p50"),
        run_p50,
        "ms",
    ));
    rows.push(Row::new("  p99", run_p99, "ms"));
    details.push(
        json!({"measure": "get_run", "stored_runs": total, "p50_ms": run_p50, "p99_ms": run_p99}),
    );

    // 3. The group runs stream with outputs.
    let (stream_size, stream_group) = stored
        .groups
        .iter()
        .min_by_key(|(size, _)| size.abs_diff(100_000))
        .expect("a size")
        .clone();
    let path = format!("/v1beta/tasks/groups/{stream_group}/runs?include_output=true");
    let mut passes = Vec::new();
    let mut bytes = 0usize;
    for _ in 0..repeat {
        let mut count = 0usize;
        let mut last_cursor = 0u64;
        bytes = 0;
        let started = Instant::now();
        let ended = client.stream(&path, |data, _| {
            // Checked without parsing every event, so that the client's
            // JSON work does not stand in for the server's; every 1,000th
            // event is parsed whole.
            assert!(data.contains("\"status\":\"completed\""), "{data}");
            assert!(!data.ends_with("\"output\":null}"), "a run without output");
            if count % 1_000 == 0 {
                let event: Value = serde_json::from_str(data).expect("event json");
                assert_eq!(event["output"]["type"], "json");
                let cursor: u64 = event["event_id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .expect("event_id");
                assert!(cursor > last_cursor, "runs in cursor order");
                last_cursor = cursor;
            }
            bytes += data.len();
            count += 1;
            true
        });
        let elapsed = started.elapsed().as_secs_f64();
        assert!(ended);
        assert_eq!(count, stream_size, "every run of the group once");
        passes.push(stream_size as f64 / elapsed);
    }
    let stream_median = common::median(&passes);
    rows.push(Row::new(
        format!("group runs stream, include_output, {stream_size} runs"),
        stream_median,
        "runs/s",
    ));
    rows.push(Row::new(
        "  mean event size",
        bytes as f64 / stream_size as f64,
        "B",
    ));
    details.push(json!({"measure": "group_runs_stream", "runs": stream_size, "passes_runs_per_s": passes, "median_runs_per_s": stream_median, "bytes": bytes}));

    server.stop();
    engine.shutdown(Duration::from_secs(5));
    common::report(
        "read_paths",
        &format!(
            "{reads} reads each, one keep-alive client; database of {total} runs, {}",
            stored.how
        ),
        &rows,
        json!({
            "sizes": sizes,
            "database": stored.path.display().to_string(),
            "database_bytes": common::database_bytes(&stored.path),
            "how": stored.how,
            "built_s": stored.built_s,
            "measures": details,
        }),
    );
}
