//! `effectum` (optional, `--features bench-effectum`, not in CI): taskyard
//! beside effectum, the closest embedded Rust peer, in one invocation.
//!
//! effectum links another SQLite crate than taskyard, which Cargo does not
//! allow in one dependency graph, so it lives in its own crate
//! (`benches/effectum-peer`, its own workspace and lock file). This bench
//! builds that crate with `cargo build --release` into
//! `target/effectum-peer` (a target directory of its own, so the build
//! does not wait on the lock `cargo bench` holds) and runs it as a child
//! process. Each of `TASKYARD_BENCH_REPEAT` (3) rounds runs, back to back on
//! fresh databases: the raw SQLite floor, taskyard's engine (the `engine`
//! bench's pass), and effectum enqueueing and running the same number of
//! no-op jobs (`TASKYARD_BENCH_RUNS`, 100,000). Medians, and each one's
//! ratio to the floor. Writes `target/bench/effectum.json`.
//!
//! effectum's worker runs 16 jobs at a time (taskyard's default worker
//! count) with `{"item": N}` payloads; `TASKYARD_BENCH_EFFECTUM=128,256,102`
//! gives it issue 18's configuration instead: min and max concurrency and
//! payload bytes.
//!
//! ```text
//! cargo bench --features bench-effectum --bench effectum
//! ```

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Row, RunTemplate};
use serde_json::{json, Value};
use taskyard::Engine;

fn build_peer() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/effectum-peer");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(root.join("benches/effectum-peer/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo for benches/effectum-peer");
    assert!(status.success(), "benches/effectum-peer does not build");
    target.join("release/effectum-peer")
}

fn effectum_pass(peer: &Path, jobs: usize, config: &[String]) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let output = Command::new(peer)
        .arg(jobs.to_string())
        .arg(dir.path().join("effectum.db"))
        .args(config)
        .output()
        .expect("run effectum-peer");
    assert!(
        output.status.success(),
        "effectum-peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(line.trim()).expect("effectum-peer's JSON line");
    assert_eq!(report["jobs"], json!(jobs));
    report["jobs_per_s"].as_f64().expect("jobs_per_s")
}

fn engine_pass(runs: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(
        dir.path().join("bench.db"),
        taskyard::faces::default_config(),
    )
    .expect("engine");
    let started = Instant::now();
    common::engine_lifecycle(&engine, runs, "mock");
    let runs_per_s = runs as f64 / started.elapsed().as_secs_f64();
    engine.shutdown(Duration::from_secs(5));
    runs_per_s
}

fn main() {
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 100_000, 1_000);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let peer = build_peer();
    let config: Vec<String> = match std::env::var("TASKYARD_BENCH_EFFECTUM") {
        Ok(given) => given.split(',').map(|n| n.trim().to_string()).collect(),
        Err(_) => Vec::new(),
    };
    assert!(
        config.is_empty() || config.len() == 3,
        "TASKYARD_BENCH_EFFECTUM is MIN,MAX,PAYLOAD_BYTES"
    );
    let floor_dir = tempfile::tempdir().expect("temporary directory");
    let template = RunTemplate::sample(floor_dir.path(), runs / 2);
    let (mut floor, mut taskyard, mut effectum) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeat {
        floor.push(common::raw_sqlite(floor_dir.path(), runs, &template).runs_per_s);
        taskyard.push(engine_pass(runs));
        effectum.push(effectum_pass(&peer, runs, &config));
    }
    let (floor_median, taskyard_median, effectum_median) = (
        common::median(&floor),
        common::median(&taskyard),
        common::median(&effectum),
    );
    let rows = vec![
        Row::new("raw SQLite floor", floor_median, "runs/s"),
        Row::new("taskyard engine, mock runs", taskyard_median, "runs/s"),
        Row::new("effectum 0.7, no-op jobs", effectum_median, "jobs/s"),
        Row::new("taskyard / floor", taskyard_median / floor_median, ""),
        Row::new("effectum / floor", effectum_median / floor_median, ""),
        Row::new("taskyard / effectum", taskyard_median / effectum_median, "").at_least(1.0),
    ];
    common::report(
        "effectum",
        &format!(
            "{runs} runs or jobs, batches of 1,000, medians of {repeat}; effectum {}",
            if config.is_empty() {
                "at concurrency 16, {\"item\": N} payloads".to_string()
            } else {
                format!(
                    "at concurrency {} to {}, {}-byte payloads",
                    config[0], config[1], config[2]
                )
            }
        ),
        &rows,
        json!({
            "runs": runs,
            "effectum_config": config,
            "floor_passes": floor,
            "taskyard_passes": taskyard,
            "effectum_passes": effectum,
        }),
    );
}
