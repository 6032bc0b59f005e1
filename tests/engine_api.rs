//! The library API as a user calls it: groups, runs, results, streams.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use taskyard::faces::parallel::wire::{AddRuns, RunInput};
use taskyard::{Error, RunStatus};

#[test]
fn a_group_of_echo_runs_completes_and_its_stream_ends() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let group = engine.create_group(None).expect("group");
    assert_eq!(group.status.num_task_runs, 0);
    assert!(!group.status.is_active);
    let inputs = (0..50)
        .map(|i| json_run(&format!("hello {i}"), "echo"))
        .collect();
    let added = engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect("runs added");
    assert_eq!(added.run_ids.len(), 50);
    assert_eq!(
        added.run_cursor, None,
        "first add to an empty group has no cursor"
    );
    let events: Vec<_> = drain_group(&engine, &group.taskgroup_id, 0);
    let states = events
        .iter()
        .filter(|e| e.json()["type"] == "task_run.state")
        .count();
    assert_eq!(states, 50);
    let last = events.last().expect("events").json();
    assert_eq!(last["type"], "task_group_status");
    assert_eq!(last["status"]["is_active"], false);
    assert_eq!(last["status"]["task_run_status_counts"]["completed"], 50);
    let result = engine
        .wait_for_result(&added.run_ids[7], Duration::from_secs(5))
        .expect("result");
    assert_eq!(result.run.status, RunStatus::Completed);
    let output = serde_json::to_value(&result.output).expect("output json");
    assert_eq!(output["content"]["text"], "hello 7");
}

#[test]
fn a_standalone_run_gives_its_result() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let run = engine
        .create_run(RunInput::new("ping", "echo"))
        .expect("run");
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.taskgroup_id, None);
    let result = engine
        .wait_for_result(&run.run_id, Duration::from_secs(5))
        .expect("result");
    let output = serde_json::to_value(&result.output).expect("json");
    assert_eq!(output["type"], "json");
    assert_eq!(output["content"]["text"], "ping");
    let input = engine.get_run_input(&run.run_id).expect("input");
    assert_eq!(input.input, json!("ping"));
}

#[test]
fn unknown_ids_are_not_found() {
    let dir = TestDir::new();
    let engine = open(&dir);
    for id in ["trun_00000000000000000000000000000000", "nope", ""] {
        assert!(
            matches!(engine.get_run(id), Err(Error::NotFound { .. })),
            "{id}"
        );
    }
    assert!(matches!(
        engine.get_group("tgrp_00000000000000000000000000000000"),
        Err(Error::NotFound { .. })
    ));
}

fn key(key: &str, fingerprint: &str) -> taskyard::engine::Idempotency {
    taskyard::engine::Idempotency {
        key: key.into(),
        fingerprint: fingerprint.into(),
    }
}

#[test]
fn an_idempotency_key_creates_once_and_replays_byte_for_byte() {
    use taskyard::engine::Created;
    let dir = TestDir::new();
    let engine = open(&dir);
    let first = engine
        .create_run_idempotent(
            RunInput::new("once", "echo"),
            key("k", "POST /v1/tasks/runs {a}"),
        )
        .expect("first");
    let Created::Fresh { value: run, body } = first else {
        panic!("first create is fresh")
    };
    // Concurrent retries with the same key all get the first answer.
    let replays: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    engine.create_run_idempotent(
                        RunInput::new("once", "echo"),
                        key("k", "POST /v1/tasks/runs {a}"),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for replay in replays {
        match replay.expect("replay") {
            // The status a replay goes out with is the face's (issue 11:
            // the engine stores no HTTP status); the HTTP tests check it.
            Created::Replayed { body: again } => {
                assert_eq!(again, body, "byte for byte");
            }
            Created::Fresh { .. } => panic!("a second create with the same key"),
        }
    }
    let other = engine.create_run_idempotent(
        RunInput::new("other", "echo"),
        key("k", "POST /v1/tasks/runs {b}"),
    );
    assert!(
        matches!(other, Err(Error::IdempotencyConflict)),
        "{other:?}"
    );
    let runs = stored(&dir).int("SELECT count(*) FROM runs", &[]);
    assert_eq!(runs, 1, "one run for one key");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["run_id"],
        json!(run.run_id)
    );
    // The key survives a restart.
    drop(engine);
    let engine = open(&dir);
    let after = engine
        .create_run_idempotent(
            RunInput::new("once", "echo"),
            key("k", "POST /v1/tasks/runs {a}"),
        )
        .expect("replay after restart");
    assert!(matches!(after, Created::Replayed { .. }));
}

/// Regression (issue 11, bug 5): a read waited forever for a pooled read
/// connection, so streams holding every one (the group runs stream holds
/// its connection while it writes to its client) hung every other request.
/// Past `READ_CONNECTION_WAIT_MS_MAX` the read is unavailable: 503 with
/// `retry-after` over HTTP.
#[test]
fn read_with_every_pool_connection_held_is_unavailable_after_the_wait_limit() {
    use std::sync::mpsc;
    use taskyard::faces::parallel::ApiError;
    use taskyard::limits::READ_CONNECTION_WAIT_MS_MAX;
    use taskyard::store;

    const READ_CONNECTIONS: usize = 2;
    let dir = TestDir::new();
    let engine = open_with(
        &dir,
        taskyard::Config {
            read_connections: READ_CONNECTIONS,
            ..taskyard::faces::default_config()
        },
    );
    let group = engine.create_group(None).expect("group");
    let added = engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs: vec![RunInput::new("held", "echo")],
                default_task_spec: None,
            },
        )
        .expect("run added");
    let run_id = added.run_ids[0].clone();

    // Each holder reads the group's runs and stops in the middle, holding
    // its connection until released.
    let (entered_sender, entered) = mpsc::channel();
    let mut releases = Vec::new();
    let mut holders = Vec::new();
    for _ in 0..READ_CONNECTIONS {
        let (release_sender, release) = mpsc::channel::<()>();
        releases.push(release_sender);
        let (engine, group_id, entered_sender) = (
            engine.clone(),
            group.taskgroup_id.clone(),
            entered_sender.clone(),
        );
        holders.push(std::thread::spawn(move || {
            engine
                .group_runs(
                    &group_id,
                    &taskyard::engine::GroupRunsQuery::default(),
                    |_| {
                        let _ = entered_sender.send(());
                        let _ = release.recv_timeout(Duration::from_secs(60));
                        false
                    },
                )
                .expect("the held read ends well");
        }));
    }
    for _ in 0..READ_CONNECTIONS {
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("a holder has its connection");
    }

    // The read runs on a thread of its own, so that a read that waits
    // forever fails the test instead of hanging it.
    let wait_limit = Duration::from_millis(READ_CONNECTION_WAIT_MS_MAX);
    let (answer_sender, answer) = mpsc::channel();
    let started = std::time::Instant::now();
    {
        let (engine, run_id) = (engine.clone(), run_id.clone());
        std::thread::spawn(move || {
            let _ = answer_sender.send((engine.get_run(&run_id), started.elapsed()));
        });
    }
    let (result, waited) = answer
        .recv_timeout(wait_limit + Duration::from_secs(10))
        .expect("the read answers within the wait limit and a margin");
    let error = result.expect_err("no connection was free");
    assert!(
        matches!(error, Error::Unavailable(store::Error::ReadersBusy { .. })),
        "{error:?}"
    );
    assert!(waited >= wait_limit, "gave up after {waited:?}");
    let api_error = ApiError::from(error);
    assert_eq!(api_error.status, 503);
    assert!(
        api_error
            .headers
            .iter()
            .any(|(name, value)| *name == "retry-after" && value == "1"),
        "{:?}",
        api_error.headers
    );
    assert!(
        api_error.message.contains("READ_CONNECTION_WAIT_MS_MAX"),
        "{}",
        api_error.message
    );

    // Released, the pool answers again.
    for release in releases {
        let _ = release.send(());
    }
    for holder in holders {
        holder.join().expect("holder");
    }
    assert_eq!(engine.get_run(&run_id).expect("run").run_id, run_id);
    engine.shutdown(Duration::from_secs(5));
}
