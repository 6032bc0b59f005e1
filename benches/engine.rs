//! `engine`: runs/s end to end through the library API, and its ratio to
//! the raw SQLite floor measured in the same invocation.
//!
//! Creates a group, adds `TASKYARD_BENCH_RUNS` runs (100,000; smoke 1,000)
//! in batches of 1,000 with the zero-latency `mock` processor, and waits
//! until the group is inactive. Each of `TASKYARD_BENCH_REPEAT` (3; smoke 1)
//! rounds runs one floor pass and one engine pass back to back on fresh
//! databases; the ratio is of the medians (target >= 0.85). Every engine
//! pass is checked against the floor: the same events per run and text
//! columns of the same sizes. `TASKYARD_BENCH_PROCESSOR` picks another
//! processor (the shape check then applies only to `mock`), and
//! `TASKYARD_BENCH_FLOOR_BATCH` the floor's runs per transaction (1,000).
//! Writes `target/bench/engine.json`.

mod common;

use std::time::{Duration, Instant};

use common::{Row, RunTemplate};
use serde_json::json;
use taskyard::Engine;

fn engine_pass(runs: usize, processor: &str) -> (f64, common::RowShape) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bench.db");
    let engine = Engine::open(&path, taskyard::faces::default_config()).expect("engine");
    let started = Instant::now();
    let group_id = common::engine_lifecycle(&engine, runs, processor);
    let elapsed = started.elapsed().as_secs_f64();
    let status = engine.get_group(&group_id).expect("group").status;
    assert_eq!(status.counts.num_runs as usize, runs);
    assert!(!status.is_active());
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    (runs as f64 / elapsed, common::row_shape(&path))
}

fn main() {
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 100_000, 1_000);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let processor = std::env::var("TASKYARD_BENCH_PROCESSOR").unwrap_or_else(|_| "mock".into());
    let floor_dir = tempfile::tempdir().expect("temporary directory");
    let template = RunTemplate::sample(floor_dir.path(), runs / 2);
    let mut floor_passes = Vec::new();
    let mut engine_passes = Vec::new();
    for _ in 0..repeat {
        let floor = common::raw_sqlite(floor_dir.path(), runs, &template);
        floor_passes.push(floor.runs_per_s);
        let (runs_per_s, shape) = engine_pass(runs, &processor);
        engine_passes.push(runs_per_s);
        if processor == "mock" {
            let floor_shape = common::row_shape(&floor_dir.path().join("raw.db"));
            common::assert_same_shape(&shape, &floor_shape);
        }
    }
    let floor = common::median(&floor_passes);
    let engine = common::median(&engine_passes);
    let ratio = engine / floor;
    let list = |passes: &[f64]| common::passes_list(passes, 0);
    let rows = vec![
        Row::new(
            format!("raw SQLite floor ({})", list(&floor_passes)),
            floor,
            "runs/s",
        ),
        Row::new(
            format!("engine end to end ({})", list(&engine_passes)),
            engine,
            "runs/s",
        ),
        Row::new("engine / floor", ratio, "").at_least(0.85),
    ];
    common::report(
        "engine",
        &format!("{runs} runs of '{processor}' through the library API, medians of {repeat}"),
        &rows,
        json!({
            "runs": runs,
            "processor": processor,
            "floor_passes_runs_per_s": floor_passes,
            "engine_passes_runs_per_s": engine_passes,
            "floor_median_runs_per_s": floor,
            "engine_median_runs_per_s": engine,
            "ratio": ratio,
        }),
    );
}
