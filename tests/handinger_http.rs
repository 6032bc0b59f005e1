//! The Handinger face over raw HTTP (issue 14): bad input gets a clear
//! error in Handinger's own form with nothing written, every 409 says not
//! to retry, and a Handinger task is the same runs the Parallel face
//! shows, on its run endpoints and streams (one engine, one event log).

#[path = "support/http.rs"]
mod client;
mod support;

use std::time::Duration;

use client::{Response, TestServer};
use serde_json::{json, Value};
use support::wait_for;

fn post(server: &TestServer, path: &str, body: &[u8]) -> Response {
    server.send(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(body),
    )
}

/// `{"error": {"code", "message"}}` with this status and code.
fn assert_error(answer: &Response, status: u16, code: &str) -> String {
    assert_eq!(answer.status, status, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

#[test]
fn bad_input_is_a_400_in_handingers_form_and_writes_nothing() {
    let server = TestServer::start();
    let cases: Vec<(&[u8], &str)> = vec![
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (br#"{"budget": "low"}"#, "input is required"),
        (br#"{"input": ""}"#, "INPUT_CHARS_MAX"),
        (br#"{"input": 12}"#, "input must be a string"),
        (
            br#"{"input": "x", "budget": "bogus"}"#,
            "budget must be one of",
        ),
        (
            br#"{"input": "x", "stream": "yes"}"#,
            "stream must be true or false",
        ),
        (br#"{"input": "x", "taskId": ""}"#, "TASK_ID_CHARS_MAX"),
        (
            br#"{"input": "x", "workerId": 7}"#,
            "workerId must be a string",
        ),
    ];
    for (body, wanted) in cases {
        let answer = post(&server, "/api/tasks", body);
        let message = assert_error(&answer, 400, "bad_request");
        assert!(message.contains(wanted), "{wanted} in {message}");
    }
    let long = json!({"input": "x", "taskId": "t".repeat(256)}).to_string();
    assert_error(
        &post(&server, "/api/tasks", long.as_bytes()),
        400,
        "bad_request",
    );
    let worker = post(
        &server,
        "/api/workers",
        br#"{"outputSchema": {"type": 12}}"#,
    );
    assert!(assert_error(&worker, 400, "bad_request").contains("outputSchema"));
    let worker = post(&server, "/api/workers", br#"{"visibility": "secret"}"#);
    assert_error(&worker, 400, "bad_request");
    assert_eq!(server.runs_stored(), 0, "nothing was written");

    // Unknown ids and paths, and a method a path does not take.
    assert_error(&server.get("/api/tasks/tsk_nobody"), 404, "not_found");
    assert_error(
        &server.get("/api/workers/wrk_nobody/email"),
        404,
        "not_found",
    );
    assert_error(&server.get("/api/nothing-here"), 404, "not_found");
    let wrong = server.send("PUT", "/api/tasks", &[], None);
    assert_error(&wrong, 405, "method_not_allowed");
    // A DELETE with a content type and no body is no body, not a 400.
    let worker = post(&server, "/api/workers", b"{}").json();
    let id = worker["id"].as_str().expect("worker id");
    let deleted = server.send(
        "DELETE",
        &format!("/api/workers/{id}"),
        &[("Content-Type", "application/json")],
        None,
    );
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json(), json!({"deleted": true}));
}

#[test]
fn a_conflict_says_not_to_retry() {
    let server = TestServer::start();
    let created = post(
        &server,
        "/api/tasks",
        br#"{"input": "hi", "taskId": "t-1"}"#,
    )
    .json();
    let other = post(&server, "/api/workers", b"{}").json();
    let conflict = post(
        &server,
        "/api/tasks",
        json!({"input": "x", "taskId": "t-1", "workerId": other["id"]})
            .to_string()
            .as_bytes(),
    );
    assert_error(&conflict, 409, "conflict");
    assert_eq!(conflict.header("x-should-retry"), Some("false"));
    assert_eq!(created["taskId"], "t-1");
}

#[test]
fn a_handinger_task_is_the_same_runs_on_the_parallel_face() {
    let server = TestServer::start();
    let worker = post(&server, "/api/tasks", br#"{"input": "one engine"}"#).json();
    let turn_id = worker["turnId"].as_str().expect("turn id").to_string();
    let task_id = worker["taskId"].as_str().expect("task id").to_string();
    // The turn is a run of the Parallel face, by the same id.
    let result = server.get(&format!("/v1/tasks/runs/{turn_id}/result?timeout=30"));
    assert_eq!(result.status, 200, "{}", result.text());
    assert_eq!(result.json()["run"]["run_id"], json!(turn_id));
    let listed = server.get("/v1/tasks/runs?limit=10").json();
    let ids: Vec<&Value> = listed["data"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| &run["run_id"])
        .collect();
    assert!(ids.contains(&&json!(turn_id)), "{listed}");
    // Its events on the Parallel face's stream: the run's own, from the one
    // event log.
    let mut stream = server
        .stream(&format!("/v1/tasks/runs/{turn_id}/events"), &[])
        .unwrap_or_else(|answer| panic!("{}", answer.text()));
    let events = client::events(&stream.read_to_end(Duration::from_secs(30)));
    assert!(
        events
            .iter()
            .any(|event| event["run"]["status"] == "completed"),
        "{events:?}"
    );
    // And the task, read back on its own face, agrees.
    wait_for(
        "the task to read completed",
        Duration::from_secs(30),
        || server.get(&format!("/api/tasks/{task_id}")).json()["task"]["status"] == "completed",
    );
}

/// `Idempotency-Key` on creates (spec choice 7): the same key and body
/// replay the first answer and make nothing more; another body is a 409.
#[test]
fn an_idempotency_key_makes_a_create_happen_once() {
    let server = TestServer::start();
    let send = |path: &str, key: &str, body: &[u8]| {
        server.send(
            "POST",
            path,
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            Some(body),
        )
    };
    let first = send("/api/tasks", "k-1", br#"{"input": "once"}"#);
    assert_eq!(first.status, 200, "{}", first.text());
    let again = send("/api/tasks", "k-1", br#"{ "input" : "once" }"#);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["taskId"], first.json()["taskId"]);
    assert_eq!(again.json()["turnId"], first.json()["turnId"]);
    assert_eq!(server.runs_stored(), 1, "one turn, not two");
    let other = send("/api/tasks", "k-1", br#"{"input": "twice"}"#);
    assert_error(&other, 409, "conflict");
    assert_eq!(other.header("x-should-retry"), Some("false"));

    let worker = send("/api/workers", "w-1", br#"{"title": "Once"}"#).json();
    let replayed = send("/api/workers", "w-1", br#"{"title": "Once"}"#).json();
    assert_eq!(worker["id"], replayed["id"]);
    let bad = send("/api/workers", "", b"{}");
    assert_error(&bad, 400, "bad_request");
}

/// Spec choice 4: `stream` is JSON unless the request's `Accept` names
/// `text/event-stream`; then the turn's events, framed as the Parallel face
/// frames them, in Handinger's words, until the turn ends.
#[test]
fn a_stream_is_sent_only_when_accepted_and_follows_the_turn_to_its_end() {
    let server = TestServer::start();
    // Without the Accept: the Worker, as JSON.
    let plain = post(&server, "/api/tasks", br#"{"input": "hi", "stream": true}"#);
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.json()["object"], "worker");

    let body = json!({"input": "tell me", "stream": true}).to_string();
    let mut stream = client::SseStream::send(
        server.addr,
        "POST",
        "/api/tasks",
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
    .unwrap_or_else(|answer| panic!("{}: {}", answer.status, answer.text()));
    assert!(stream
        .header("content-type")
        .is_some_and(|kind| kind.starts_with("text/event-stream")));
    let events = client::events(&stream.read_to_end(Duration::from_secs(30)));
    assert!(stream.ended, "the stream ends with the turn");
    let last = events.last().expect("events");
    assert_eq!(last["type"], "turn.status", "{events:?}");
    assert_eq!(last["status"], "completed");
    assert!(last["outputText"]
        .as_str()
        .is_some_and(|text| !text.is_empty()));
    let turn = last["turnId"].as_str().expect("a turn id").to_string();
    assert!(events.iter().all(|event| event["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("turn."))));

    // `stream: false` with the Accept: JSON.
    let unasked = server.send(
        "POST",
        "/api/tasks",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "text/event-stream"),
        ],
        Some(br#"{"input": "no stream", "stream": false}"#),
    );
    assert_eq!(unasked.json()["object"], "worker", "{}", unasked.text());

    // A worker's latest turn, by `?stream=true`.
    let worker = plain.json()["id"].as_str().expect("worker id").to_string();
    let created = post(
        &server,
        "/api/tasks",
        json!({"input": "again", "workerId": worker})
            .to_string()
            .as_bytes(),
    );
    let latest = created.json()["turnId"].as_str().expect("turn").to_string();
    assert_ne!(latest, turn);
    let mut followed = client::SseStream::open(
        server.addr,
        &format!("/api/workers/{worker}?stream=true"),
        &[],
    )
    .unwrap_or_else(|answer| panic!("{}: {}", answer.status, answer.text()));
    let events = client::events(&followed.read_to_end(Duration::from_secs(30)));
    assert!(followed.ended);
    assert!(
        events.iter().all(|event| event["turnId"] == json!(latest)),
        "{events:?}"
    );
    assert_eq!(events.last().expect("events")["status"], "completed");
}

/// `[handinger] budgets` picks each budget's processor from the config
/// file; a budget naming a processor that is not served stops start-up
/// with the key.
#[test]
fn budgets_come_from_the_config_file() {
    let dir = support::TestDir::new();
    let config = dir.dir.path().join("taskyard.toml");
    std::fs::write(
        &config,
        "[processors.local]\nkind = \"echo\"\n\n[handinger]\nbudgets = { high = \"local\" }\n",
    )
    .expect("config written");
    let (mut child, addr) = support::serve_child(&dir, &config);
    let addr: std::net::SocketAddr = addr.parse().expect("an address");
    let create = |budget: &str| {
        let body = json!({"input": "which processor?", "budget": budget}).to_string();
        let answer = client::send(
            addr,
            "POST",
            "/api/tasks",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        );
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()["turnId"]
            .as_str()
            .expect("a turn")
            .to_string()
    };
    let processor = |turn: &str| {
        client::send(addr, "GET", &format!("/v1/tasks/runs/{turn}"), &[], None).json()["processor"]
            .clone()
    };
    assert_eq!(processor(&create("high")), "local");
    assert_eq!(processor(&create("low")), "lite", "the default stays");
    let _ = child.kill();
    let _ = child.wait();

    std::fs::write(&config, "[handinger]\nbudgets = { low = \"nowhere\" }\n")
        .expect("config written");
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_taskyard"))
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(dir.db())
        .arg("--config")
        .arg(&config)
        .output()
        .expect("taskyard serve runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("handinger.budgets.low") && stderr.contains("nowhere"),
        "{stderr}"
    );
}
