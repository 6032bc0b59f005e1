//! `kill -9` while Handinger tasks run (issue 14): after a restart on the
//! same database every acknowledged task completes, each of its
//! acknowledged turns among them, and every task id (client-chosen or
//! minted) and turn id still resolves, on this face and on the Parallel
//! face.

#[path = "support/http.rs"]
mod client;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::{serve_child, wait_for, TestDir};

fn call(addr: &str, method: &str, path: &str, body: Option<&Value>) -> client::Response {
    let body = body.map(Value::to_string);
    client::send(
        addr.parse().expect("an address"),
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_deref().map(str::as_bytes),
    )
}

/// A task id as one path segment.
fn segment(id: &str) -> String {
    id.replace('%', "%25")
        .replace('/', "%2F")
        .replace(' ', "%20")
}

#[test]
fn acknowledged_tasks_complete_after_kill_9_and_their_ids_resolve() {
    let dir = TestDir::new();
    // `standard` is `core`: slow enough that turns are running at the kill.
    let config = support::config_file(
        &dir,
        "[processors.core]\nkind = \"mock\"\nlatency_ms = 400\n",
    );
    let (mut server, addr) = serve_child(&dir, &config);

    // Task id -> the turn ids its creates acknowledged.
    let mut acknowledged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for index in 0..12 {
        let mut body = json!({"input": format!("question {index}")});
        if index % 2 == 0 {
            body["taskId"] = json!(format!("client task/{index}"));
        }
        let answer = call(&addr, "POST", "/api/tasks", Some(&body));
        assert_eq!(answer.status, 200, "{}", answer.text());
        let worker = answer.json();
        let task = worker["taskId"].as_str().expect("task id").to_string();
        acknowledged
            .entry(task.clone())
            .or_default()
            .push(worker["turnId"].as_str().expect("turn id").to_string());
        if index % 3 == 0 {
            // A follow-up, queued behind the running first turn.
            let answer = call(
                &addr,
                "POST",
                "/api/tasks",
                Some(&json!({"input": "and then?", "taskId": task})),
            );
            assert_eq!(answer.status, 200, "{}", answer.text());
            let turn = answer.json()["turnId"]
                .as_str()
                .expect("turn id")
                .to_string();
            acknowledged.get_mut(&task).expect("task").push(turn);
        }
    }
    // Kill while turns run: at least one reads running.
    wait_for("a running turn", Duration::from_secs(30), || {
        acknowledged.keys().any(|task| {
            call(&addr, "GET", &format!("/api/tasks/{}", segment(task)), None).json()["turns"]
                .as_array()
                .is_some_and(|turns| turns.iter().any(|turn| turn["status"] == "running"))
        })
    });
    server.kill().expect("kill -9");
    server.wait().expect("reaped");

    let (mut server, addr) = serve_child(&dir, &config);
    for (task, turns) in &acknowledged {
        let path = format!("/api/tasks/{}", segment(task));
        wait_for(
            &format!("task {task} to complete"),
            Duration::from_secs(60),
            || call(&addr, "GET", &path, None).json()["task"]["status"] == "completed",
        );
        let read = call(&addr, "GET", &path, None).json();
        assert_eq!(read["task"]["id"], json!(task));
        let kept: Vec<&Value> = read["turns"]
            .as_array()
            .expect("turns")
            .iter()
            .map(|turn| &turn["id"])
            .collect();
        assert_eq!(kept.len(), turns.len(), "{read}");
        for (turn, id) in read["turns"].as_array().expect("turns").iter().zip(turns) {
            assert_eq!(turn["id"], json!(id), "turns in order: {read}");
            assert_eq!(turn["status"], "completed", "{read}");
            let run = call(&addr, "GET", &format!("/v1/tasks/runs/{id}"), None);
            assert_eq!(run.status, 200, "{}", run.text());
            assert_eq!(run.json()["status"], "completed");
        }
    }
    server.kill().expect("stopped");
    server.wait().expect("reaped");
}
