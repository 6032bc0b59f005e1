//! `schedules`: the cost of a fire, as fires per second.
//!
//! Makes `TASKYARD_BENCH_SCHEDULES` interval schedules (5,000; smoke 50) on
//! a clock the bench moves, moves it past their first tick, and measures
//! from the move to the last fire committed (each fire inserts its run and
//! moves the schedule on in one transaction); each of
//! `TASKYARD_BENCH_REPEAT` (3; smoke 1) passes on a fresh database. Every
//! schedule is checked to have fired exactly once. Writes
//! `target/bench/schedules.json`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Row;
use serde_json::json;
use taskyard::engine::ManualClock;
use taskyard::model::{RunRequest, ScheduleRequest, When};
use taskyard::{Engine, Timestamp};

fn pass(schedules: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let config = taskyard::Config {
        clock: clock.clone(),
        // No worker takes the runs: the fire alone is measured.
        workers: 1,
        ..taskyard::faces::default_config()
    };
    let engine = Engine::open(dir.path().join("bench.db"), config).expect("engine");
    let mut ids = Vec::with_capacity(schedules);
    for index in 0..schedules {
        let schedule = engine
            .create_schedule(ScheduleRequest {
                when: When::Interval { every_s: 3_600 },
                run: RunRequest::new(json!({ "item": index }), "echo"),
            })
            .expect("a schedule");
        ids.push(schedule.id);
    }
    let started = Instant::now();
    clock.advance(Duration::from_secs(3_600));
    let deadline = Instant::now() + Duration::from_secs(300);
    while engine
        .list_schedules()
        .expect("schedules")
        .iter()
        .any(|schedule| schedule.fires == 0)
    {
        assert!(Instant::now() < deadline, "the schedules did not all fire");
        // Each look reads every schedule: not so often that it is what is
        // measured.
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed().as_secs_f64();
    for id in &ids {
        assert_eq!(engine.get_schedule(id).expect("schedule").fires, 1, "{id}");
    }
    engine.shutdown(Duration::from_secs(5));
    schedules as f64 / elapsed
}

fn main() {
    let schedules = common::env_usize("TASKYARD_BENCH_SCHEDULES", 5_000, 50);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let passes: Vec<f64> = (0..repeat).map(|_| pass(schedules)).collect();
    let median = common::median(&passes);
    let list = common::passes_list(&passes, 0);
    common::report(
        "schedules",
        &format!("{schedules} interval schedules due at once, medians of {repeat}"),
        &[Row::new(format!("fires ({list})"), median, "fires/s")],
        json!({"schedules": schedules, "passes": passes, "fires_per_s": median}),
    );
}
