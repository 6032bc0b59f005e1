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
//! `TASKYARD_BENCH_RUNS` (20,000; smoke 500) runs of the zero-latency
//! `mock` per pass, `TASKYARD_BENCH_REPEAT` (3; smoke 1) passes, each on a
//! fresh database; `TASKYARD_BENCH_WAKEUPS` (300; smoke 20) wake-ups.
//! Writes `target/bench/postgres.json`.

#[path = "../tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres_cluster;

mod common;

use std::sync::Arc;
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
                        &Some(format!("{{\"kind\":\"run_status\",\"seq\":{seq}}}")),
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

fn main() {
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 20_000, 500);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let wakeup_count = common::env_usize("TASKYARD_BENCH_WAKEUPS", 300, 20);
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
    ];
    common::report(
        "postgres",
        &format!(
            "{runs} runs of 'mock' per pass, medians of {repeat}; {wakeup_count} wake-ups; \
             a throw-away cluster on loopback (fsync off)"
        ),
        &rows,
        json!({
            "runs": runs,
            "floor_runs_per_s": floor,
            "one_node_runs_per_s": one,
            "two_nodes_runs_per_s": two,
            "wakeup_ms": {"p50": p50, "p99": p99, "max": max},
        }),
    );
}
