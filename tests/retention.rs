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

/// With a size budget and a policy, a full database (503) takes new work
/// again once old runs are pruned: their pages are reused.
#[test]
fn a_full_database_takes_new_work_again_after_pruning() {
    let dir = TestDir::new();
    let mut config = prune_all();
    config.database_bytes_max = Some(2 * 1024 * 1024);
    let engine = open_with(&dir, config);
    let big = "x".repeat(16 * 1024);
    let mut made = 0;
    let full = loop {
        match engine.create_run(RunInput::new(big.clone(), "echo")) {
            Ok(_) => made += 1,
            Err(error) => break error,
        }
        assert!(made < 10_000, "the budget never filled");
    };
    assert!(
        matches!(full, Error::Unavailable(taskyard::store::Error::Full(_))),
        "{full:?}"
    );
    wait_for("a create after pruning", Duration::from_secs(60), || {
        engine
            .create_run(RunInput::new(big.clone(), "echo"))
            .is_ok()
    });
    engine.shutdown(Duration::ZERO);
}
