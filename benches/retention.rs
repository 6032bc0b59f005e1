//! `retention`: pruning throughput (rows/s) and the longest writer pause
//! one prune batch causes (ms).
//!
//! Runs `TASKYARD_BENCH_RUNS` (20,000; smoke 500) `echo` runs in one group
//! through the engine, then prunes them all, batch by batch, through the
//! store's writer as the pruner does (`PRUNE_ROWS_PER_BATCH` runs and up
//! to `PRUNE_PAGES_PER_BATCH` pages given back per batch), timing each
//! batch: a batch is one transaction, so its time is how long it holds the
//! writer. Rows are runs, their events and the group. Also reports the
//! database file's size before and after (once the store is closed and
//! its WAL checkpointed), which shows the pages given back.
//! Each of `TASKYARD_BENCH_REPEAT` (3; smoke 1) passes on a fresh database.
//! Writes `target/bench/retention.json`.

mod common;

use std::time::{Duration, Instant};

use common::Row;
use serde_json::json;
use taskyard::faces::parallel::Api;
use taskyard::limits::{PRUNE_PAGES_PER_BATCH, PRUNE_ROWS_PER_BATCH};
use taskyard::model::Timestamp;
use taskyard::store::{self, Op, PrunePolicy, Store};
use taskyard::Engine;

/// What one pass measured.
struct Pass {
    rows_per_s: f64,
    longest_ms: f64,
    median_ms: f64,
    mib_before: f64,
    mib_after: f64,
}

fn mib(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).expect("database file").len() as f64 / (1024.0 * 1024.0)
}

fn pass(runs: usize) -> Pass {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bench.db");
    let api = Api::new(Engine::open(&path, taskyard::faces::default_config()).expect("engine"));
    common::finished_echo_group(&api, runs);
    api.shutdown(Duration::from_secs(5));
    drop(api);
    let mib_before = mib(&path);

    let (store, _) = Store::open(
        &path.clone().into(),
        &store::Options::default(),
        Box::new(|_| {}),
    )
    .expect("store");
    let policy = PrunePolicy {
        runs_before: Some(Timestamp::now().micros() + 1),
        ..PrunePolicy::default()
    };
    let started = Instant::now();
    let mut rows = 0;
    let mut batches = Vec::new();
    loop {
        let batch_started = Instant::now();
        let pruned = store
            .writer
            .call(|reply| Op::Prune {
                policy,
                rows_max: PRUNE_ROWS_PER_BATCH,
                pages_max: PRUNE_PAGES_PER_BATCH,
                reply,
            })
            .expect("a prune batch");
        batches.push(batch_started.elapsed().as_secs_f64() * 1e3);
        if pruned.rows() + pruned.pages == 0 {
            break;
        }
        rows += pruned.rows();
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(rows > runs, "every run and its events pruned: {rows} rows");
    drop(store);
    Pass {
        rows_per_s: rows as f64 / seconds,
        longest_ms: batches.iter().copied().fold(0.0, f64::max),
        median_ms: common::median(&batches),
        mib_before,
        mib_after: mib(&path),
    }
}

fn main() {
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 20_000, 500);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let passes: Vec<Pass> = (0..repeat).map(|_| pass(runs)).collect();
    let of = |field: fn(&Pass) -> f64| passes.iter().map(field).collect::<Vec<f64>>();
    let rates = of(|pass| pass.rows_per_s);
    let pauses = of(|pass| pass.longest_ms);
    let typical = of(|pass| pass.median_ms);
    let before = of(|pass| pass.mib_before);
    let after = of(|pass| pass.mib_after);
    let list = common::passes_list;
    common::report(
        "retention",
        &format!(
            "{runs} finished runs pruned in batches of {PRUNE_ROWS_PER_BATCH}, medians of {repeat}"
        ),
        &[
            Row::new(
                format!("pruned ({})", list(&rates, 0)),
                common::median(&rates),
                "rows/s",
            ),
            Row::new(
                format!("longest batch ({})", list(&pauses, 2)),
                common::median(&pauses),
                "ms",
            ),
            Row::new(
                format!("median batch ({})", list(&typical, 2)),
                common::median(&typical),
                "ms",
            ),
            Row::new(
                "database file before pruning",
                common::median(&before),
                "MiB",
            ),
            Row::new("database file after pruning", common::median(&after), "MiB"),
        ],
        json!({"runs": runs, "rows_per_s": rates, "longest_batch_ms": pauses, "median_batch_ms": typical,
               "mib_before": before, "mib_after": after}),
    );
}
