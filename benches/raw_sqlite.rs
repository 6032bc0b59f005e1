//! `raw_sqlite`: the floor of the work, the rows taskyard writes over a
//! run's life (run row, events, group counts) written with plain rusqlite
//! on taskyard's own schema and pragmas, 1,000 runs per transaction.
//! `engine` and `http` run the same function in their own invocation and
//! report their ratio to it; this bench reports it alone, and proves that
//! the floor stores what the engine stores: the same events per run and
//! text columns of the same sizes as an engine pass of the same runs.
//!
//! `TASKYARD_BENCH_RUNS` (100,000; smoke 2,000), `TASKYARD_BENCH_REPEAT`
//! (3; smoke 1). Writes `target/bench/raw_sqlite.json`.

mod common;

use std::time::Duration;

use common::{Row, RunTemplate};
use serde_json::json;
use taskyard::Engine;

fn main() {
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 100_000, 2_000);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let dir = tempfile::tempdir().expect("temporary directory");
    let template = RunTemplate::sample(dir.path(), runs / 2);

    // The floor must write what the engine writes: compare one engine pass
    // with one floor pass of the same (small) size, row for row.
    let check_runs = runs.min(2_000);
    let engine_dir = tempfile::tempdir().expect("temporary directory");
    let engine_db = engine_dir.path().join("engine.db");
    let engine = Engine::open(&engine_db, taskyard::faces::default_config()).expect("engine");
    common::engine_lifecycle(&engine, check_runs, "mock");
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    let check_dir = tempfile::tempdir().expect("temporary directory");
    let check_template = RunTemplate::sample(check_dir.path(), check_runs / 2);
    common::raw_sqlite(check_dir.path(), check_runs, &check_template);
    let engine_shape = common::row_shape(&engine_db);
    let floor_shape = common::row_shape(&check_dir.path().join("raw.db"));
    common::assert_same_shape(&engine_shape, &floor_shape);

    let mut passes = Vec::new();
    let mut bytes_per_run = 0.0;
    for _ in 0..repeat {
        let floor = common::raw_sqlite(dir.path(), runs, &template);
        let path = dir.path().join("raw.db");
        let shape = common::row_shape(&path);
        assert_eq!(shape.runs as usize, runs, "every run stored");
        bytes_per_run = common::database_bytes(&path) as f64 / runs as f64;
        passes.push(floor.runs_per_s);
    }
    let median = common::median(&passes);
    let rows = vec![
        Row::new(
            format!("raw SQLite lifecycle, {runs} runs (median)"),
            median,
            "runs/s",
        ),
        Row::new("database bytes per run", bytes_per_run, "B"),
    ];
    common::report(
        "raw_sqlite",
        &format!(
            "{runs} runs, 1,000 per transaction, WAL, synchronous=NORMAL, {repeat} passes: {}",
            common::passes_list(&passes, 0)
        ),
        &rows,
        json!({
            "runs": runs,
            "passes_runs_per_s": passes,
            "median_runs_per_s": median,
            "database_bytes_per_run": bytes_per_run,
            "events_per_run": floor_shape.events_per_run.iter().map(|(kind, stream, status, n)| json!({"type": kind, "stream": stream, "status": status, "per_run": n})).collect::<Vec<_>>(),
            "mean_bytes": floor_shape.mean_bytes.iter().map(|(name, n)| json!({"column": name, "bytes": n})).collect::<Vec<_>>(),
        }),
    );
}
