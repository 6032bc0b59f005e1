//! Retention (issue 12): what the policy says is old enough is pruned in
//! small batches while the writer is idle, and reads as gone (410), never
//! as a silent gap; what is active (a running run, a run with a pending
//! webhook delivery, a group with active runs) is never pruned.

#[path = "support/http.rs"]
mod client;
mod support;

use std::time::Duration;

use serde_json::json;
use support::{metadata, open_with, wait_for, TestDir};
use taskyard::engine::Retention;
use taskyard::faces::parallel::wire::{AddRuns, RunInput};
use taskyard::model::{RunRequest, ScheduleRequest, Timestamp, When};
use taskyard::Error;

/// Prune terminal runs (and inactive groups) 300 ms after their last
/// change, keys and finished deliveries at once: a group made empty is
/// given its runs well within the 300 ms.
fn prune_all() -> taskyard::Config {
    let mut config = taskyard::faces::default_config();
    config.retention = Retention {
        runs: Some(Duration::from_millis(300)),
        idempotency_keys: Some(Duration::ZERO),
        deliveries: Some(Duration::ZERO),
        look_every: None,
    };
    config.webhooks.retry_base = Duration::from_secs(3_600);
    config
}

#[test]
fn old_terminal_runs_and_groups_go_and_read_as_gone_and_active_ones_stay() {
    let dir = TestDir::new();
    let engine = open_with(&dir, prune_all());
    let done = engine.create_group(None).expect("group");
    let added = engine
        .add_runs(
            &done.taskgroup_id,
            AddRuns {
                inputs: (0..5)
                    .map(|i| RunInput::new(format!("run {i}"), "echo"))
                    .collect(),
                default_task_spec: None,
            },
        )
        .expect("runs");
    // Active: a slow run in a group of its own.
    let busy = engine.create_group(None).expect("busy group");
    let slow = engine
        .add_runs(
            &busy.taskgroup_id,
            AddRuns {
                inputs: vec![RunInput::new("slow", "echo")
                    .with_metadata(metadata(json!({"mock_delay_ms": 60_000})))],
                default_task_spec: None,
            },
        )
        .expect("slow run");
    // A finished run whose webhook is still pending (nothing listens).
    let mut hooked = RunInput::new("hooked", "echo");
    hooked.webhook = Some(json!({"url": "http://127.0.0.1:9/nobody"}));
    let hooked = engine.create_run(hooked).expect("hooked run");

    wait_for("the finished group pruned", Duration::from_secs(30), || {
        matches!(
            engine.get_group(&done.taskgroup_id),
            Err(Error::Gone { .. })
        )
    });
    for run_id in &added.run_ids {
        assert!(
            matches!(engine.get_run(run_id), Err(Error::Gone { .. })),
            "{run_id}"
        );
    }
    // Never pruned: the active group and its run, the pending delivery's run.
    assert!(engine.get_group(&busy.taskgroup_id).is_ok());
    assert!(engine.get_run(&slow.run_ids[0]).is_ok());
    let kept = engine
        .get_run(&hooked.run_id)
        .expect("a pending delivery keeps its run");
    assert!(kept.status.is_terminal());
    // An id that never was stays not found.
    assert!(matches!(
        engine.get_run("trun_00000000000000000000000000000000"),
        Err(Error::NotFound { .. })
    ));
    // The counts follow: only the kept runs are counted.
    let counted: u64 = engine
        .runs_by_status()
        .expect("counts")
        .iter()
        .map(|(_, count)| count)
        .sum();
    assert_eq!(counted, 2, "the slow run and the hooked one");
    engine.shutdown(Duration::ZERO);
}

#[test]
fn a_pruned_run_is_410_over_http_and_a_pruned_key_creates_anew() {
    let dir = TestDir::new();
    let server = client::TestServer::start_on_engine(open_with(&dir, prune_all()), |_| {});
    let body = json!({"input": "x", "processor": "echo"}).to_string();
    let create = || {
        client::send(
            server.addr,
            "POST",
            "/v1/tasks/runs",
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "k-1"),
            ],
            Some(body.as_bytes()),
        )
    };
    let first = create();
    assert_eq!(first.status, 202, "{}", first.text());
    let run_id = first.json()["run_id"].as_str().expect("id").to_string();
    wait_for("the run pruned", Duration::from_secs(30), || {
        server.get(&format!("/v1/tasks/runs/{run_id}")).status == 410
    });
    let gone = server.get(&format!("/v1/tasks/runs/{run_id}"));
    assert_eq!(gone.json()["type"], "error");
    assert!(gone.text().contains("pruned"), "{}", gone.text());
    // Its key went too: the same key and body make a new run.
    let again = create();
    assert_eq!(again.status, 202, "{}", again.text());
    assert_ne!(again.json()["run_id"], json!(run_id));
}

/// Creates a 16 KiB `echo` run and waits for it to finish.
fn finished_big_run(engine: &taskyard::faces::parallel::Api) -> Result<String, Error> {
    let run = engine.create_run(RunInput::new("x".repeat(16 * 1024), "echo"))?;
    wait_for("the run to finish", Duration::from_secs(30), || {
        engine
            .get_run(&run.run_id)
            .map_or(true, |run| run.status.is_terminal())
    });
    Ok(run.run_id)
}

/// With a size budget and a policy, a write that finds the database full
/// prunes what the policy allows at once (the pruner's timer is an hour
/// away here) and succeeds: twice the budget's worth of runs go through.
/// The policy lets every finished run go, so that what is old enough does
/// not hang on how fast this machine runs them.
#[test]
fn a_full_database_prunes_what_the_policy_allows_before_it_answers() {
    if !support::sqlite_only("a_full_database_prunes_what_the_policy_allows_before_it_answers") {
        return;
    }
    let dir = TestDir::new();
    let budget: u64 = 2 * 1024 * 1024;
    let mut config = prune_all();
    config.database_bytes_max = Some(budget);
    config.retention.runs = Some(Duration::ZERO);
    config.retention.look_every = Some(Duration::from_secs(3_600));
    let engine = open_with(&dir, config);
    let mut first = None;
    let runs = 2 * budget as usize / (16 * 1024);
    for index in 0..runs {
        let run_id = finished_big_run(&engine)
            .unwrap_or_else(|error| panic!("run {index} of {runs}: {error:?}"));
        first.get_or_insert(run_id);
    }
    let first = first.expect("a run");
    assert!(
        matches!(engine.get_run(&first), Err(Error::Gone { .. })),
        "the first run was pruned to make room"
    );
    let size = std::fs::metadata(dir.db()).expect("database file").len();
    assert!(size <= budget, "{size} bytes, over the {budget} budget");
    engine.shutdown(Duration::ZERO);
}

/// When the policy allows nothing to go (every run is younger than it),
/// a full database still answers `Full` (503 over HTTP), at once.
#[test]
fn a_full_database_with_nothing_old_enough_answers_full() {
    if !support::sqlite_only("a_full_database_with_nothing_old_enough_answers_full") {
        return;
    }
    let dir = TestDir::new();
    let mut config = prune_all();
    config.database_bytes_max = Some(2 * 1024 * 1024);
    config.retention.runs = Some(Duration::from_secs(3_600));
    let engine = open_with(&dir, config);
    let mut made = 0;
    let full = loop {
        match engine.create_run(RunInput::new("x".repeat(16 * 1024), "echo")) {
            Ok(_) => made += 1,
            Err(error) => break error,
        }
        assert!(made < 10_000, "the budget never filled");
    };
    assert!(
        matches!(full, Error::Unavailable(taskyard::store::Error::Full(_))),
        "{full:?}"
    );
    engine.shutdown(Duration::ZERO);
}

/// Pruning gives pages back to the file system (`auto_vacuum=INCREMENTAL`
/// and `incremental_vacuum`): a file grown by runs kept for good shrinks
/// once a policy prunes them.
#[test]
fn pruning_shrinks_the_database_file() {
    if !support::sqlite_only("pruning_shrinks_the_database_file") {
        return;
    }
    let dir = TestDir::new();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let engine = open_with(&dir, taskyard::faces::default_config());
    for _ in 0..300 {
        finished_big_run(&engine).expect("a run");
    }
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    let grown = std::fs::metadata(dir.db()).expect("database file").len();
    assert!(mib(grown) > 4.0, "{:.2} MiB", mib(grown));

    let engine = open_with(&dir, prune_all());
    wait_for("the file to shrink", Duration::from_secs(60), || {
        let size = std::fs::metadata(dir.db()).expect("database file").len();
        size * 4 < grown
    });
    engine.shutdown(Duration::ZERO);
}

/// One lone run of a generated mix: what the pruner must do with it.
#[derive(Clone, Copy, Debug)]
enum Lone {
    /// Finished and old: pruned.
    Done,
    /// Still running: kept.
    Slow,
    /// Finished with a webhook nobody receives: kept while it is pending.
    Hooked,
}

fn slow_input(label: String) -> RunInput {
    RunInput::new(label, "echo").with_metadata(metadata(json!({"mock_delay_ms": 60_000})))
}

/// Whatever the mix of groups and lone runs, the pruner prunes exactly the
/// old terminal runs of inactive groups, those groups, and lone finished
/// runs without a pending delivery, and nothing else: a group with one
/// slow run keeps every run it has, and no schedule (active or paused) is
/// ever pruned.
#[test]
fn whatever_the_mix_nothing_active_is_pruned() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, TestRunner};

    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(4);
    let lone = prop_oneof![Just(Lone::Done), Just(Lone::Slow), Just(Lone::Hooked)];
    // Each group: for each of its runs, whether it is slow.
    // Each schedule: whether it is paused.
    let strategy = (
        prop::collection::vec(prop::collection::vec(any::<bool>(), 1..4), 0..4),
        prop::collection::vec(lone, 0..5),
        prop::collection::vec(any::<bool>(), 0..3),
    );
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 50,
        ..ProptestConfig::default()
    });
    let outcome = runner.run(&strategy, |(groups, lones, schedules)| {
        let dir = TestDir::new();
        let engine = open_with(&dir, prune_all());
        let mut kept_schedules = Vec::new();
        for paused in &schedules {
            // The engine's own schedules, not the face's wire form.
            let engine: &taskyard::Engine = &engine;
            let at = Timestamp(Timestamp::now().micros() + 3_600_000_000);
            let schedule = engine
                .create_schedule(ScheduleRequest {
                    when: When::At { at },
                    run: RunRequest::new("later", "echo"),
                })
                .expect("schedule");
            if *paused {
                engine.pause_schedule(&schedule.id).expect("paused");
            }
            kept_schedules.push(schedule.id);
        }
        let mut gone_ids = Vec::new();
        let mut kept_groups = Vec::new();
        let mut kept_runs = Vec::new();
        for (g, slows) in groups.iter().enumerate() {
            let group = engine.create_group(None).expect("group");
            let inputs = slows
                .iter()
                .enumerate()
                .map(|(i, slow)| {
                    let label = format!("g{g} r{i}");
                    if *slow {
                        slow_input(label)
                    } else {
                        RunInput::new(label, "echo")
                    }
                })
                .collect();
            let added = engine
                .add_runs(
                    &group.taskgroup_id,
                    AddRuns {
                        inputs,
                        default_task_spec: None,
                    },
                )
                .expect("runs");
            if slows.iter().any(|slow| *slow) {
                kept_groups.push(group.taskgroup_id);
                kept_runs.extend(added.run_ids);
            } else {
                gone_ids.extend(added.run_ids);
                gone_ids.push(group.taskgroup_id);
            }
        }
        for (i, kind) in lones.iter().enumerate() {
            let label = format!("lone {i}");
            let input = match kind {
                Lone::Done => RunInput::new(label, "echo"),
                Lone::Slow => slow_input(label),
                Lone::Hooked => {
                    let mut input = RunInput::new(label, "echo");
                    input.webhook = Some(json!({"url": "http://127.0.0.1:9/nobody"}));
                    input
                }
            };
            let run = engine.create_run(input).expect("lone run");
            match kind {
                Lone::Done => gone_ids.push(run.run_id),
                Lone::Slow | Lone::Hooked => kept_runs.push(run.run_id),
            }
        }
        let is_gone = |id: &String| {
            let read = if id.starts_with("tgrp_") {
                engine.get_group(id).map(|_| ())
            } else {
                engine.get_run(id).map(|_| ())
            };
            matches!(read, Err(Error::Gone { .. }))
        };
        // A marker made after everything else: once it is gone, the pruner
        // has passed over the whole mix at least once after it was old.
        let marker = engine
            .create_run(RunInput::new("marker", "echo"))
            .expect("marker")
            .run_id;
        wait_for("the old ones pruned", Duration::from_secs(30), || {
            is_gone(&marker) && gone_ids.iter().all(is_gone)
        });
        for id in &kept_groups {
            prop_assert!(engine.get_group(id).is_ok(), "group {id} was pruned");
        }
        for id in &kept_runs {
            prop_assert!(engine.get_run(id).is_ok(), "run {id} was pruned");
        }
        for id in &kept_schedules {
            prop_assert!(
                taskyard::Engine::get_schedule(&engine, id).is_ok(),
                "schedule {id} was pruned"
            );
        }
        engine.shutdown(Duration::ZERO);
        Ok(())
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
}
