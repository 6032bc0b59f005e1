//! `engine`: runs/s end to end through the library API.
//!
//! Creates a group, adds `TASKYARD_BENCH_RUNS` runs (default 100,000) in
//! batches of 1,000 with the zero-latency `mock` processor, and waits until
//! the group is inactive. Repeats `TASKYARD_BENCH_REPEAT` times (default 3)
//! on fresh databases and reports the median. Prints a table and writes
//! `target/bench/engine.json`.

use std::time::{Duration, Instant};

use serde_json::json;
use taskyard::{AddRuns, Config, Engine, RunInput, StreamKind};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn one_pass(runs: usize, processor: &str) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(dir.path().join("bench.db"), Config::default()).expect("engine");
    let group = engine.create_group(None).expect("group");
    let started = Instant::now();
    let mut created = 0;
    while created < runs {
        let batch = (runs - created).min(1_000);
        let inputs = (0..batch)
            .map(|i| RunInput::new(json!({ "item": created + i }), processor))
            .collect();
        engine
            .add_runs(
                &group.taskgroup_id,
                AddRuns {
                    inputs,
                    default_task_spec: None,
                },
            )
            .expect("runs added");
        created += batch;
    }
    // The group events stream ends once the group is inactive.
    for event in engine
        .subscribe(
            StreamKind::GroupEvents(group.taskgroup_id.clone()),
            0,
            Duration::from_secs(3_600),
        )
        .expect("subscribe")
    {
        event.expect("event");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let status = engine.get_group(&group.taskgroup_id).expect("group").status;
    assert_eq!(status.num_task_runs as usize, runs);
    assert!(!status.is_active);
    engine.shutdown(Duration::from_secs(5));
    runs as f64 / elapsed
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let runs = env_usize("TASKYARD_BENCH_RUNS", 100_000);
    let repeat = env_usize("TASKYARD_BENCH_REPEAT", 3).max(1);
    let processor = std::env::var("TASKYARD_BENCH_PROCESSOR").unwrap_or_else(|_| "mock".into());
    let passes: Vec<f64> = (0..repeat).map(|_| one_pass(runs, &processor)).collect();
    let median_runs_per_s = median(passes.clone());
    println!("engine: {runs} runs of '{processor}' through the library API, {repeat} passes");
    println!("{:<10} {:>14}", "pass", "runs/s");
    for (index, value) in passes.iter().enumerate() {
        println!("{:<10} {:>14.0}", index + 1, value);
    }
    println!("{:<10} {:>14.0}", "median", median_runs_per_s);
    let report = json!({
        "bench": "engine",
        "runs": runs,
        "processor": processor,
        "passes_runs_per_s": passes,
        "median_runs_per_s": median_runs_per_s,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(out.join("engine.json"), report.to_string()).expect("write report");
}
