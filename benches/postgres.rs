//! `postgres`: taskyard on PostgreSQL (issue 17) against a throw-away
//! cluster of its own (`initdb`/`pg_ctl`, as the tests start one): a raw
//! PostgreSQL floor (the rows taskyard writes over a run's life, in plain
//! SQL, 1,000 runs per transaction, three commits per batch as the SQLite
//! floor), beside taskyard with one node and with two nodes on one
//! database, in runs/s and ratios; and the wake-up latency from a commit on
//! one node to the event at a stream on the other (p50/p99), which the
//! listener's `LISTEN`/`NOTIFY` carries (or its poll, at most
//! `EVENT_POLL_MS_MAX` late).
//!
//! It also times the lease take-over: a `taskyard serve` node running a
//! run is killed with `kill -9`, and the clock runs until the run's next
//! attempt starts on the surviving node.
//!
//! `TASKYARD_BENCH_RUNS` (20,000; smoke 500) runs of the zero-latency
//! `mock` per pass, `TASKYARD_BENCH_REPEAT` (3; smoke 1) passes, each on a
//! fresh database; `TASKYARD_BENCH_WAKEUPS` (300; smoke 20) wake-ups;
//! `TASKYARD_BENCH_TAKEOVERS` (10; smoke 2) take-overs.
//! Writes `target/bench/postgres.json`.

#[path = "../tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres_cluster;

#[path = "../tests/support/node.rs"]
mod node;

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Row, RunTemplate};
use postgres::{Client, NoTls};
use serde_json::json;
use taskyard::model::{AddRuns, RunRequest};
use taskyard::processors::{ProcessorConfig, ProcessorError, RunContext};
use taskyard::{Config, Engine, StreamKind};

/// The floor: taskyard's rows in plain SQL on taskyard's PostgreSQL
/// schema, row by row in one transaction per moment of a batch (add,
/// claim, finish), as `common::raw_sqlite` does on SQLite.
fn raw_postgres(url: &str, runs: usize, template: &RunTemplate) -> f64 {
    // The schema, applied by taskyard (not timed).
    Engine::open(url, taskyard::faces::default_config())
        .expect("taskyard's schema")
        .shutdown(Duration::from_secs(5));
    let mut client = Client::connect(url, NoTls).expect("connects");
    let started = Instant::now();
    let now = common::now_micros();
    let group_seq: i64 = client
        .query_one(
            "INSERT INTO groups (id, metadata, created_at, modified_at) \
             VALUES ('floorgroup', NULL, $1, $1) RETURNING seq",
            &[&now],
        )
        .expect("group")
        .get(0);
    let insert_run = client
        .prepare(
            "INSERT INTO runs (id, group_seq, cursor, status, processor, input, document, \
             task_spec, default_spec, metadata, enable_events, max_attempts, warnings, \
             created_at, modified_at) VALUES ($1, $2, $3, 'queued', $4, $5, NULL, $6, false, \
             NULL, false, $7, NULL, $8, $8) RETURNING seq",
        )
        .expect("prepare");
    let insert_event = client
        .prepare(
            "INSERT INTO events (id, type, group_seq, run_seq, stream, status, data, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .expect("prepare");
    let claim = client
        .prepare(
            "UPDATE runs SET status = 'running', attempts = 1, modified_at = $2 WHERE seq = $1",
        )
        .expect("prepare");
    let finish = client
        .prepare(
            "UPDATE runs SET status = 'completed', modified_at = $2, output = $3 WHERE seq = $1",
        )
        .expect("prepare");
    let counts = client
        .prepare(
            "UPDATE groups SET num_runs = num_runs + $2, n_queued = n_queued + $3, \
             n_running = n_running + $4, n_completed = n_completed + $5, modified_at = $6 \
             WHERE seq = $1",
        )
        .expect("prepare");
    let mut next_event: i64 = 1;
    let mut done = 0;
    while done < runs {
        let batch = (runs - done).min(1_000);
        let size = batch as i64;
        let now = common::now_micros();
        let mut seqs = Vec::with_capacity(batch);
        let mut transaction = client.transaction().expect("begin add");
        for index in 0..batch {
            let id = format!("{:032x}", done + index);
            let seq: i64 = transaction
                .query_one(
                    &insert_run,
                    &[
                        &id,
                        &group_seq,
                        &next_event,
                        &template.processor,
                        &template.input,
                        &template.task_spec,
                        &template.max_attempts,
                        &now,
                    ],
                )
                .expect("run row")
                .get(0);
            transaction
                .execute(
                    &insert_event,
                    &[
                        &next_event,
                        &"run.status",
                        &group_seq,
                        &Some(seq),
                        &0i64,
                        &Some("queued"),
                        &None::<String>,
                        &now,
                    ],
                )
                .expect("queued event");
            next_event += 1;
            seqs.push(seq);
        }
        transaction
            .execute(&counts, &[&group_seq, &size, &size, &0i64, &0i64, &now])
            .expect("counts");
        transaction.commit().expect("commit add");
        let mut transaction = client.transaction().expect("begin claim");
        for seq in &seqs {
            transaction.execute(&claim, &[seq, &now]).expect("claim");
            transaction
                .execute(
                    &insert_event,
                    &[
                        &next_event,
                        &"run.status",
                        &group_seq,
                        &Some(*seq),
                        &0i64,
                        &Some("running"),
                        &None::<String>,
                        &now,
                    ],
                )
                .expect("running event");
            next_event += 1;
        }
        transaction
            .execute(&counts, &[&group_seq, &0i64, &-size, &size, &0i64, &now])
            .expect("counts");
        transaction.commit().expect("commit claim");
        let mut transaction = client.transaction().expect("begin finish");
        for seq in &seqs {
            transaction
                .execute(&finish, &[seq, &now, &template.output])
                .expect("finish");
            transaction
                .execute(
                    &insert_event,
                    &[
                        &next_event,
                        &"run.status",
                        &group_seq,
                        &Some(*seq),
                        &1i64,
                        &Some("completed"),
                        // Made from the run's row by readers, as taskyard does.
                        &Option::<String>::None,
                        &now,
                    ],
                )
                .expect("terminal event");
            next_event += 1;
        }
        transaction
            .execute(&counts, &[&group_seq, &0i64, &0i64, &-size, &size, &now])
            .expect("counts");
        transaction.commit().expect("commit finish");
        done += batch;
    }
    runs as f64 / started.elapsed().as_secs_f64()
}

/// taskyard end to end on `nodes` engines sharing the database: runs added
/// on the first, executed by all, followed on the first to the end.
fn taskyard_pass(url: &str, runs: usize, nodes: usize) -> f64 {
    let engines: Vec<Engine> = (0..nodes)
        .map(|_| Engine::open(url, taskyard::faces::default_config()).expect("node"))
        .collect();
    let started = Instant::now();
    common::engine_lifecycle(&engines[0], runs, "mock");
    let rate = runs as f64 / started.elapsed().as_secs_f64();
    for engine in engines {
        engine.shutdown(Duration::from_secs(5));
    }
    rate
}

/// Holds its run until cancelled: the wake-up pass's runs stay running and
/// write no more group events.
struct Hold;

impl taskyard::processors::Processor for Hold {
    fn run(&self, ctx: &RunContext<'_>) -> Result<taskyard::model::Output, ProcessorError> {
        while !ctx.cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(ProcessorError::Permanent("cancelled".into()))
    }
}

/// Milliseconds from an add's commit on node A (its answer) to the
/// group's status event at a stream on node B, one add at a time.
fn wakeups(url: &str, count: usize) -> Vec<f64> {
    let config = || {
        let mut registry = taskyard::faces::default_registry();
        registry.insert(ProcessorConfig::new("hold", "bench", Arc::new(Hold)));
        Config {
            registry,
            ..taskyard::faces::default_config()
        }
    };
    let a = Engine::open(url, config()).expect("node A");
    let b = Engine::open(url, config()).expect("node B");
    let group = a.create_group(None).expect("group");
    let mut stream = b
        .subscribe(
            StreamKind::GroupEvents(group.id.clone()),
            b.last_event_id(),
            Duration::from_secs(600),
        )
        .expect("subscribed on B");
    let mut latencies = Vec::with_capacity(count);
    for index in 0..count {
        a.add_runs(
            &group.id,
            AddRuns {
                runs: vec![RunRequest::new(common::bench_input(index), "hold")],
                default_task_spec: None,
            },
        )
        .expect("added on A");
        let committed = Instant::now();
        stream
            .next()
            .expect("the stream goes on")
            .expect("an event");
        latencies.push(committed.elapsed().as_secs_f64() * 1_000.0);
    }
    drop(stream);
    let _ = a.cancel_group(&group.id);
    a.shutdown(Duration::from_secs(5));
    b.shutdown(Duration::from_secs(5));
    latencies
}

/// Marks when its run starts on the surviving node, then holds it until
/// cancelled.
struct Started(Arc<Mutex<Option<Instant>>>);

impl taskyard::processors::Processor for Started {
    fn run(&self, ctx: &RunContext<'_>) -> Result<taskyard::model::Output, ProcessorError> {
        self.0
            .lock()
            .expect("lock")
            .get_or_insert_with(Instant::now);
        Hold.run(ctx)
    }
}

/// Creates one run of `processor` on the node at `base_url` (the Parallel
/// face, no key configured).
fn post_run(base_url: &str, processor: &str) {
    let body = json!({"input": "take me over", "processor": processor}).to_string();
    let (status, answer) = node::post_json(base_url, "/v1/tasks/runs", &body);
    assert!(status / 100 == 2, "run not created: {answer}");
}

/// Polls `condition` every millisecond until it holds; panics with `label`
/// after `deadline`.
fn wait_until(label: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for: {label}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Milliseconds from a `kill -9` of the `taskyard serve` node running a run
/// to that run's next attempt starting on the other node, once per fresh
/// database. By design 2 to 4 s: the killed node's lease (`LEASE_MS`,
/// 3,000) ran out up to a renewal period (1,000) after its last renewal,
/// and the survivor looks for expired leases once per period.
fn take_overs(cluster: &postgres_cluster::Postgres, count: usize) -> Vec<f64> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config_path = dir.path().join("taskyard.toml");
    std::fs::write(
        &config_path,
        "[processors.slow]\nkind = \"mock\"\nlatency_ms = 3600000\n",
    )
    .expect("config written");
    let args = [
        "--config",
        config_path.to_str().expect("a path"),
        "--workers",
        "1",
    ];
    let mut latencies = Vec::with_capacity(count);
    for trial in 0..count {
        let url = cluster.create_database(&format!("takeover_{trial}"));
        let (mut a, base_url) = node::start_server(std::path::Path::new(&url), &args);
        post_run(&base_url, "slow");
        let mut client = Client::connect(&url, NoTls).expect("connects");
        wait_until("the run running on A", Duration::from_secs(30), || {
            let running: i64 = client
                .query_one("SELECT count(*) FROM runs WHERE status = 'running'", &[])
                .expect("count")
                .get(0);
            running == 1
        });
        // B opens while A's lease is fresh, so its recovery leaves the
        // run alone: only the lease's running out hands it over.
        let started = Arc::new(Mutex::new(None));
        let mut registry = taskyard::faces::default_registry();
        registry.insert(ProcessorConfig::new(
            "slow",
            "bench",
            Arc::new(Started(started.clone())),
        ));
        let b = Engine::open(
            url.as_str(),
            Config {
                registry,
                ..taskyard::faces::default_config()
            },
        )
        .expect("node B");
        // The kill lands at a different phase of A's renewal period each
        // trial (A has renewed at least once by then), so the figures
        // span the design's range instead of one point of it.
        let period = Duration::from_millis(1_000);
        std::thread::sleep(period + period.mul_f64(trial as f64 / count as f64));
        a.child.kill().expect("kill -9");
        let killed = Instant::now();
        a.child.wait().expect("reaped");
        wait_until("the run started on B", Duration::from_secs(30), || {
            started.lock().expect("lock").is_some()
        });
        let at = started.lock().expect("lock").expect("started");
        latencies.push(at.duration_since(killed).as_secs_f64() * 1_000.0);
        b.shutdown(Duration::ZERO);
    }
    latencies
}

fn main() {
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 20_000, 500);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let wakeup_count = common::env_usize("TASKYARD_BENCH_WAKEUPS", 300, 20);
    let takeover_count = common::env_usize("TASKYARD_BENCH_TAKEOVERS", 10, 2);
    let cluster = postgres_cluster::Postgres::start();
    let template_dir = tempfile::tempdir().expect("temporary directory");
    let template = RunTemplate::sample(template_dir.path(), runs / 2);
    let mut floor = Vec::new();
    let mut one = Vec::new();
    let mut two = Vec::new();
    for pass in 0..repeat {
        floor.push(raw_postgres(
            &cluster.create_database(&format!("floor_{pass}")),
            runs,
            &template,
        ));
        one.push(taskyard_pass(
            &cluster.create_database(&format!("one_{pass}")),
            runs,
            1,
        ));
        two.push(taskyard_pass(
            &cluster.create_database(&format!("two_{pass}")),
            runs,
            2,
        ));
    }
    let mut latencies = wakeups(&cluster.create_database("wakeups"), wakeup_count);
    let (p50, p99, max) = common::summary(&mut latencies);
    let mut takeovers = take_overs(&cluster, takeover_count);
    let (takeover_p50, takeover_p99, takeover_max) = common::summary(&mut takeovers);
    let (takeover_min, takeover_max_s) = (takeovers[0] / 1_000.0, takeover_max / 1_000.0);
    let (floor_median, one_median, two_median) = (
        common::median(&floor),
        common::median(&one),
        common::median(&two),
    );
    let list = |passes: &[f64]| common::passes_list(passes, 0);
    let rows = vec![
        Row::new(
            format!("raw PostgreSQL floor ({})", list(&floor)),
            floor_median,
            "runs/s",
        ),
        Row::new(
            format!("taskyard, one node ({})", list(&one)),
            one_median,
            "runs/s",
        ),
        Row::new(
            format!("taskyard, two nodes ({})", list(&two)),
            two_median,
            "runs/s",
        ),
        Row::new("one node / floor", one_median / floor_median, ""),
        Row::new("two nodes / floor", two_median / floor_median, ""),
        Row::new("two nodes / one node", two_median / one_median, ""),
        Row::new("wake-up, commit on A -> stream on B, p50", p50, "ms"),
        Row::new("wake-up, commit on A -> stream on B, p99", p99, "ms"),
        Row::new("wake-up, max", max, "ms"),
        Row::new(
            format!(
                "lease take-over, kill -9 of node A -> next attempt on B, p50 \
                 ({takeover_count} kills, {takeover_min:.2} to {takeover_max_s:.2} s)"
            ),
            takeover_p50 / 1_000.0,
            "s",
        ),
        Row::new("lease take-over, p99", takeover_p99 / 1_000.0, "s"),
    ];
    common::report(
        "postgres",
        &format!(
            "{runs} runs of 'mock' per pass, medians of {repeat}; {wakeup_count} wake-ups; \
             {takeover_count} take-overs; a throw-away cluster on loopback (fsync off)"
        ),
        &rows,
        json!({
            "runs": runs,
            "floor_runs_per_s": floor,
            "one_node_runs_per_s": one,
            "two_nodes_runs_per_s": two,
            "wakeup_ms": {"p50": p50, "p99": p99, "max": max},
            "takeover_ms": takeovers,
        }),
    );
}
