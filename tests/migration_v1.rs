//! A database made by version 1 (the code before the neutral engine, rows in
//! Parallel's wire form) opens with this code, which migrates it to the
//! latest schema version, and every answer of the HTTP API about it is the
//! one the old server gave; then it takes new runs.
//!
//! `tests/fixtures/v1/` holds the database the old server wrote and the
//! answers it gave about it (`answers.json`: request line -> body text, or
//! for a stream the list of its `data:` payloads); its README says how and
//! by which commit they were made.

#[path = "support/http.rs"]
mod client;
mod support;

use std::path::Path;
use std::time::Duration;

use client::{events, Response, TestServer};
use serde_json::{json, Map, Value};
use support::{wait_for, TestDir};

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1");

/// The group of the fixture with runs (see its README).
const GROUP_ID: &str = "tgrp_01a24ff8d57a6ba099b65739988b1f8b";

/// The idempotent create the fixture recorded the replay of, under the
/// request line `POST /v1/tasks/runs`: the key and the body of
/// `make_fixture.py` (in the fixture's README), byte for byte.
const IDEMPOTENCY_KEY: &str = "fixture-v1-key";
const IDEMPOTENT_BODY: &str =
    r#"{"input": {"text": "made once"}, "processor": "echo", "metadata": {"kind": "idempotent"}}"#;

/// How long any stream may take to end (each stream here is of an inactive
/// group or a terminal run, so it ends as soon as it has sent what is
/// stored).
const STREAM_END_WAIT_MAX: Duration = Duration::from_secs(20);

/// How long the run added after the migration may take to complete.
const NEW_RUN_WAIT_MAX: Duration = Duration::from_secs(60);

#[test]
fn a_database_made_by_version_1_answers_as_before() {
    if !support::sqlite_only("a_database_made_by_version_1_answers_as_before") {
        return;
    }
    let dir = TestDir::new();
    std::fs::copy(Path::new(FIXTURE_DIR).join("taskyard.db"), dir.db())
        .expect("the fixture database copies");
    let answers: Map<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(Path::new(FIXTURE_DIR).join("answers.json"))
            .expect("answers.json reads"),
    )
    .expect("answers.json is a JSON object");
    assert!(answers.len() > 40, "answers.json holds {}", answers.len());

    let user_version = |dir: &TestDir| -> i64 {
        support::sqlite(dir)
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("user_version")
    };
    assert_eq!(user_version(&dir), 1, "the fixture is a version 1 database");

    let server = TestServer::start_on_engine(support::open(&dir), |_| {});
    // Opening migrated it: the latest version, ids stored without the
    // face's prefixes.
    assert_eq!(user_version(&dir), taskyard::store::SCHEMA_VERSION);
    let stored_group: String = support::sqlite(&dir)
        .query_row("SELECT id FROM groups ORDER BY seq LIMIT 1", [], |row| {
            row.get(0)
        })
        .expect("a stored group");
    assert_eq!(stored_group, support::stored_id(GROUP_ID));

    let mut differences = Vec::new();
    for (request, recorded) in &answers {
        let (method, path) = request.split_once(' ').expect("a request line");
        match recorded {
            // A stream: the list of its `data:` payloads, in order.
            Value::Array(payloads) => {
                let old: Vec<Value> = payloads.iter().map(parse_payload).collect();
                let new = match server.stream(path, &[]) {
                    Ok(mut stream) => events(&stream.read_to_end(STREAM_END_WAIT_MAX)),
                    Err(response) => {
                        differences.push(format!(
                            "{request}: a stream before, now {} {}",
                            response.status,
                            response.text()
                        ));
                        continue;
                    }
                };
                if old != new {
                    differences.push(describe(request, &Value::from(old), &Value::from(new)));
                }
            }
            Value::String(body) => {
                let old: Value = serde_json::from_str(body)
                    .unwrap_or_else(|error| panic!("{request}: recorded body ({error})"));
                let (response, status) = match method {
                    "POST" => {
                        assert_eq!(path, "/v1/tasks/runs", "the only recorded POST");
                        let response = server.send(
                            "POST",
                            path,
                            &[
                                ("Content-Type", "application/json"),
                                ("Idempotency-Key", IDEMPOTENCY_KEY),
                            ],
                            Some(IDEMPOTENT_BODY.as_bytes()),
                        );
                        if response.header("Idempotent-Replayed") != Some("true") {
                            differences.push(format!(
                                "{request}: not answered as a replay (headers {:?})",
                                response.headers
                            ));
                        }
                        (response, 202)
                    }
                    "GET" => {
                        // The old server answered 200, except a 404 envelope
                        // for the result of the failed and the cancelled run.
                        let status = if old["type"] == "error" { 404 } else { 200 };
                        (server.get(path), status)
                    }
                    other => panic!("{request}: no recorded {other} requests"),
                };
                if response.status != status {
                    differences.push(format!(
                        "{request}: status {status} before, now {}: {}",
                        response.status,
                        response.text()
                    ));
                    continue;
                }
                let new = body_json(request, &response);
                let (old, new) = (without_fresh_fields(old), without_fresh_fields(new));
                if old != new {
                    differences.push(describe(request, &old, &new));
                }
            }
            other => panic!("{request}: a recorded answer is text or a list, not {other}"),
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ from version 1's:\n\n{}",
        differences.len(),
        answers.len(),
        differences.join("\n\n")
    );

    // The migrated database takes writes: a new run in the migrated group
    // completes, the group counts it, and its events follow the old ones.
    let added = server.post_json(
        &format!("/v1/tasks/groups/{GROUP_ID}/runs"),
        &json!({"inputs": [{"input": "after the migration", "processor": "lite",
                            "metadata": {"row": 7}}]}),
    );
    assert_eq!(added.status, 200, "add runs: {}", added.text());
    let run_id = added.json()["run_ids"][0]
        .as_str()
        .expect("a run id")
        .to_string();
    assert!(run_id.starts_with("trun_"), "new run id {run_id}");
    wait_for("the new run to be terminal", NEW_RUN_WAIT_MAX, || {
        let run = server.get(&format!("/v1/tasks/runs/{run_id}")).json();
        run["is_active"] == false
    });
    let result = server.get(&format!("/v1/tasks/runs/{run_id}/result?timeout=0"));
    assert_eq!(result.status, 200, "result: {}", result.text());
    let result = result.json();
    assert_eq!(result["run"]["status"], "completed", "{result}");
    assert_eq!(result["run"]["taskgroup_id"], GROUP_ID, "{result}");
    assert!(!result["output"]["content"].is_null(), "{result}");

    let group = server.get(&format!("/v1/tasks/groups/{GROUP_ID}")).json();
    assert_eq!(group["status"]["num_task_runs"], 7, "{group}");
    assert_eq!(
        group["status"]["task_run_status_counts"],
        json!({"completed": 5, "failed": 1, "cancelled": 1}),
        "{group}"
    );

    let events_request = format!("GET /v1/tasks/groups/{GROUP_ID}/events?timeout=0");
    let old_events: Vec<Value> = answers[&events_request]
        .as_array()
        .expect("a recorded stream")
        .iter()
        .map(parse_payload)
        .collect();
    let mut stream = server
        .stream(
            &format!("/v1/tasks/groups/{GROUP_ID}/events?timeout=0"),
            &[],
        )
        .unwrap_or_else(|response| panic!("group events: {}", response.text()));
    let now = events(&stream.read_to_end(STREAM_END_WAIT_MAX));
    assert_eq!(
        &now[..old_events.len()],
        &old_events[..],
        "the group's old events, then the new"
    );
    let last_old = event_id(old_events.last().expect("old events"));
    let new_events = &now[old_events.len()..];
    assert!(
        new_events
            .iter()
            .any(|event| event["run"]["run_id"] == run_id.as_str()),
        "the new run's terminal event: {new_events:#?}"
    );
    let mut previous = last_old;
    for event in new_events {
        let id = event_id(event);
        assert!(id > previous, "event ids increase: {new_events:#?}");
        previous = id;
    }
}

fn parse_payload(payload: &Value) -> Value {
    let text = payload.as_str().expect("a recorded payload is text");
    serde_json::from_str(text).unwrap_or_else(|error| panic!("payload {text:?}: {error}"))
}

fn body_json(request: &str, response: &Response) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|error| {
        panic!(
            "{request}: answer {} is not JSON ({error}): {:?}",
            response.status,
            response.text()
        )
    })
}

/// The answer without what is new on every request by design: the `ref_id`
/// of an error envelope (a fresh UUID per answer; the `ref_id` inside a
/// stored run's `error` is stored and compared). The `Idempotent-Replayed`
/// header is checked to be there, not compared, and no other header is
/// compared.
fn without_fresh_fields(mut value: Value) -> Value {
    if value["type"] == "error" {
        if let Some(error) = value["error"].as_object_mut() {
            error.remove("ref_id");
        }
    }
    value
}

/// A stream event's cursor: `event_id` as a string of digits.
fn event_id(event: &Value) -> u64 {
    event["event_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("an event id: {event}"))
}

/// Where `old` and `new` differ, by JSON path, then both in full.
fn describe(request: &str, old: &Value, new: &Value) -> String {
    let mut paths = Vec::new();
    differing_paths("$", old, new, &mut paths);
    format!(
        "{request}:\n  {}\n  old: {old}\n  new: {new}",
        paths.join("\n  ")
    )
}

fn differing_paths(at: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, value) in old {
                match new.get(key) {
                    Some(other) => differing_paths(&format!("{at}.{key}"), value, other, out),
                    None => out.push(format!("{at}.{key}: {value} -> (absent)")),
                }
            }
            for (key, value) in new {
                if !old.contains_key(key) {
                    out.push(format!("{at}.{key}: (absent) -> {value}"));
                }
            }
        }
        (Value::Array(old), Value::Array(new)) => {
            if old.len() != new.len() {
                out.push(format!("{at}: {} items -> {} items", old.len(), new.len()));
            }
            for (index, (a, b)) in old.iter().zip(new).enumerate() {
                differing_paths(&format!("{at}[{index}]"), a, b, out);
            }
        }
        _ if old != new => out.push(format!("{at}: {old} -> {new}")),
        _ => {}
    }
}
