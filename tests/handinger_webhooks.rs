//! A Handinger worker's webhook (issue 14; spec 4.6) on the engine's
//! outbox, against the loopback receiver of `tests/webhooks/receiver.py`:
//! each turn of the worker is delivered as its TaskWithTurns with the
//! worker's token as `X-Handinger-Token`, every attempt is logged in the
//! worker's `executions` (newest first, the failures with their status),
//! a regenerated token is the one sent next, and bad URLs are 400s that
//! change nothing.

#[path = "support/http.rs"]
mod client;
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use std::time::Duration;

use client::{Response, TestServer};
use receiver::Receiver;
use serde_json::{json, Value};
use support::{open_with, wait_for, TestDir};

/// A server whose deliveries are retried 50 ms apart, on `dir`.
fn server(dir: &TestDir) -> TestServer {
    let mut config = taskyard::faces::default_config();
    config.webhooks.retry_base = Duration::from_millis(50);
    config.webhooks.retry_max = Duration::from_millis(50);
    TestServer::start_on_engine(open_with(dir, config), |_| {})
}

fn call(server: &TestServer, method: &str, path: &str, body: Option<Value>) -> Response {
    let body = body.map(|body| body.to_string());
    server.send(
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_deref().map(str::as_bytes),
    )
}

fn ok(answer: Response) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

fn executions(server: &TestServer, worker: &str, page: u32) -> Value {
    ok(server.get(&format!(
        "/api/workers/{worker}/webhook/executions?page={page}"
    )))
}

#[test]
fn each_turn_is_delivered_with_the_token_and_every_attempt_is_logged() {
    let dir = TestDir::new();
    let server = server(&dir);
    // Two refusals, then 204s: the first turn is logged as two errors and
    // a success.
    let receiver = Receiver::start(dir.dir.path(), 2, &[]);
    let worker = ok(call(
        &server,
        "POST",
        "/api/workers",
        Some(json!({"instructions": "answer briefly"})),
    ));
    let worker = worker["id"].as_str().expect("worker id").to_string();
    let none = ok(server.get(&format!("/api/workers/{worker}/webhook")));
    assert_eq!(none, json!({"url": null, "token": null}));

    let set = ok(call(
        &server,
        "PUT",
        &format!("/api/workers/{worker}/webhook"),
        Some(json!({"url": receiver.url()})),
    ));
    assert_eq!(set["url"], json!(receiver.url()));
    let token = set["token"].as_str().expect("a token minted").to_string();
    // A later update keeps the token.
    let again = ok(call(
        &server,
        "PUT",
        &format!("/api/workers/{worker}/webhook"),
        Some(json!({"url": receiver.url()})),
    ));
    assert_eq!(again["token"], json!(token));

    let turn = ok(call(
        &server,
        "POST",
        "/api/tasks",
        Some(json!({"input": "first question", "workerId": worker})),
    ));
    let task = turn["taskId"].as_str().expect("task id").to_string();
    wait_for("the first turn delivered", Duration::from_secs(30), || {
        receiver
            .requests()
            .iter()
            .any(|request| request["answered"] == 204)
    });
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "two refused, one taken: {requests:?}");
    for request in &requests {
        assert_eq!(request["token"], json!(token), "{request}");
        assert_eq!(request["body"]["task"]["id"], json!(task));
        assert_eq!(request["body"]["turns"][0]["status"], "completed");
        assert_eq!(request["body"]["turns"].as_array().map(Vec::len), Some(1));
    }
    let ids: Vec<&Value> = requests.iter().map(|r| &r["webhook_id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one id: {ids:?}");

    wait_for("three attempts logged", Duration::from_secs(10), || {
        executions(&server, &worker, 1)["totalCount"] == 3
    });
    let page = executions(&server, &worker, 1);
    assert_eq!(page["page"], 1);
    assert_eq!(page["pageCount"], 1);
    let logs = page["logs"].as_array().expect("logs");
    let statuses: Vec<(&Value, &Value)> = logs
        .iter()
        .map(|log| (&log["requestStatus"], &log["responseStatus"]))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (&json!("success"), &json!(204)),
            (&json!("error"), &json!(500)),
            (&json!("error"), &json!(500)),
        ],
        "newest first"
    );
    for log in logs {
        assert_eq!(log["taskId"], json!(task));
        assert_eq!(log["taskTitle"], "first question");
        assert_eq!(log["workerId"], json!(worker));
        assert_eq!(log["url"], json!(receiver.url()));
        assert!(log["durationMs"].is_u64(), "{log}");
    }
    assert!(logs[1]["errorMessage"]
        .as_str()
        .is_some_and(|message| message.contains("500")));
    assert_eq!(logs[0]["errorMessage"], Value::Null);

    // A new token is the one the next turn carries.
    let renewed = ok(call(
        &server,
        "POST",
        &format!("/api/workers/{worker}/webhook/regenerate-token"),
        None,
    ));
    let new_token = renewed["token"].as_str().expect("a token").to_string();
    assert_ne!(new_token, token);
    ok(call(
        &server,
        "POST",
        "/api/tasks",
        Some(json!({"input": "follow-up", "taskId": task})),
    ));
    wait_for("the second turn delivered", Duration::from_secs(30), || {
        receiver.requests().len() == 4
    });
    let last = receiver.requests().pop().expect("a request");
    assert_eq!(last["token"], json!(new_token));
    assert_eq!(
        last["body"]["turns"].as_array().map(Vec::len),
        Some(2),
        "as of the turn that ended"
    );

    // Cleared: later turns send nothing, and the log stays.
    let cleared = ok(call(
        &server,
        "DELETE",
        &format!("/api/workers/{worker}/webhook"),
        None,
    ));
    assert_eq!(cleared, json!({"url": null, "token": null}));
    let quiet = ok(call(
        &server,
        "POST",
        "/api/tasks",
        Some(json!({"input": "unheard", "workerId": worker})),
    ));
    let quiet_task = quiet["taskId"].as_str().expect("task id").to_string();
    wait_for("the quiet turn done", Duration::from_secs(30), || {
        ok(server.get(&format!("/api/tasks/{quiet_task}")))["turns"][0]["status"] == "completed"
    });
    assert_eq!(executions(&server, &worker, 1)["totalCount"], 4);
    assert_eq!(receiver.requests().len(), 4);
    assert_eq!(executions(&server, &worker, 2)["logs"], json!([]));
}

#[test]
fn bad_urls_and_pages_are_400s_and_unknown_workers_404s() {
    let dir = TestDir::new();
    let server = server(&dir);
    let worker = ok(call(&server, "POST", "/api/workers", Some(json!({}))));
    let worker = worker["id"].as_str().expect("worker id").to_string();
    let path = format!("/api/workers/{worker}/webhook");
    let long = format!("https://example.com/{}", "a".repeat(2_048));
    for (body, says) in [
        (json!({}), "url is required"),
        (json!({"url": 7}), "url must be a string or null"),
        (json!({"url": "ftp://example.com/x"}), "http(s)"),
        (
            json!({"url": "http://example.com/x"}),
            "http to this machine",
        ),
        (json!({"url": "https:///x"}), "names no host"),
        (json!({"url": long}), "WEBHOOK_URL_CHARS_MAX"),
    ] {
        let answer = call(&server, "PUT", &path, Some(body.clone()));
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        let message = answer.json()["error"]["message"].to_string();
        assert!(message.contains(says), "{body}: {message}");
    }
    assert_eq!(
        ok(server.get(&path)),
        json!({"url": null, "token": null}),
        "nothing was set"
    );
    // https anywhere is fine; http only to this machine.
    ok(call(
        &server,
        "PUT",
        &path,
        Some(json!({"url": "https://hooks.example.com/in"})),
    ));
    ok(call(
        &server,
        "PUT",
        &path,
        Some(json!({"url": "http://localhost:9/in"})),
    ));
    // Clearing with null drops the token too; a new URL mints a new one.
    let first = ok(server.get(&path))["token"].clone();
    assert_eq!(
        ok(call(&server, "PUT", &path, Some(json!({"url": null})))),
        json!({"url": null, "token": null})
    );
    let renewed = ok(call(
        &server,
        "PUT",
        &path,
        Some(json!({"url": "https://hooks.example.com/in"})),
    ));
    assert_ne!(renewed["token"], first);

    for page in ["0", "-1", "x", ""] {
        let answer = server.get(&format!("{path}/executions?page={page}"));
        assert_eq!(answer.status, 400, "page={page}: {}", answer.text());
    }
    let empty = ok(server.get(&format!("{path}/executions")));
    assert_eq!(
        empty,
        json!({"logs": [], "page": 1, "pageCount": 1, "totalCount": 0})
    );
    for (method, suffix) in [
        ("GET", ""),
        ("PUT", ""),
        ("DELETE", ""),
        ("GET", "/executions"),
        ("POST", "/regenerate-token"),
    ] {
        let answer = call(
            &server,
            method,
            &format!("/api/workers/wrk_nobody/webhook{suffix}"),
            (method == "PUT").then(|| json!({"url": null})),
        );
        assert_eq!(answer.status, 404, "{method} {suffix}: {}", answer.text());
    }
}

/// A host off `webhook_hosts_allowed` is refused when set, naming the key.
#[test]
fn a_host_off_the_allow_list_is_refused() {
    let dir = TestDir::new();
    let mut config = taskyard::faces::default_config();
    config.webhooks.hosts_allowed = Some(vec!["127.0.0.1".into()]);
    let server = TestServer::start_on_engine(open_with(&dir, config), |_| {});
    let worker = ok(call(&server, "POST", "/api/workers", Some(json!({}))));
    let path = format!(
        "/api/workers/{}/webhook",
        worker["id"].as_str().expect("id")
    );
    let refused = call(
        &server,
        "PUT",
        &path,
        Some(json!({"url": "https://hooks.example.com/in"})),
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("webhook_hosts_allowed"));
    ok(call(
        &server,
        "PUT",
        &path,
        Some(json!({"url": "http://127.0.0.1:9/in"})),
    ));
}
