//! `kill -9` while Nextcloud tasks run (issue 14): after a restart on the
//! same database every acknowledged task is still there under the same
//! integer id, for the same engine run, with a sane status (scheduled,
//! running or done, never lost or unknown); the ones left active finish,
//! and the next schedule takes the next id.

#[path = "support/http.rs"]
mod client;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::{serve_child, wait_for, TestDir};

const V2: &str = "/ocs/v2.php/taskprocessing";

/// A request as nc-py-api sends it, as `alice` with the key `k`.
const HEADERS: &[(&str, &str)] = &[
    ("Authorization", "Basic YWxpY2U6aw=="),
    ("OCS-APIRequest", "true"),
    ("Accept", "application/json"),
    ("Content-Type", "application/json"),
];

fn call(addr: &str, method: &str, path: &str, body: Option<&Value>) -> client::Response {
    client::send_json(addr, method, path, HEADERS, body)
}

fn task(addr: &str, id: u64) -> (Value, String) {
    let answer = call(addr, "GET", &format!("{V2}/task/{id}"), None);
    assert_eq!(answer.status, 200, "task {id}: {}", answer.text());
    let run_id = answer
        .header("x-taskyard-run-id")
        .expect("a run id")
        .to_string();
    (answer.json()["ocs"]["data"]["task"].clone(), run_id)
}

#[test]
fn acknowledged_tasks_keep_their_ids_and_runs_after_kill_9() {
    let dir = TestDir::new();
    let config = dir.dir.path().join("taskyard.toml");
    // Slow enough that tasks are running and queued at the kill.
    std::fs::write(
        &config,
        "api_keys = [\"k\"]\nworkers = 2\n[processors.slow]\nkind = \"mock\"\nlatency_ms = 800\n\
         [nextcloud.task_types]\n\"core:text2text\" = \"slow\"\n",
    )
    .expect("config");
    let (mut server, addr) = serve_child(&dir, &config);

    // Id -> the run its schedule answered.
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();
    for index in 0..8 {
        let body = json!({"input": {"input": format!("text {index}")}, "type": "core:text2text",
                          "appId": "crash", "customId": format!("c{index}")});
        let answer = call(&addr, "POST", &format!("{V2}/schedule"), Some(&body));
        assert_eq!(answer.status, 200, "{}", answer.text());
        let id = answer.json()["ocs"]["data"]["task"]["id"]
            .as_u64()
            .expect("an integer id");
        let run_id = answer.header("x-taskyard-run-id").expect("run id");
        acknowledged.insert(id, run_id.to_string());
    }
    assert_eq!(
        acknowledged.keys().copied().collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    wait_for("a running task", Duration::from_secs(30), || {
        acknowledged
            .keys()
            .any(|id| task(&addr, *id).0["status"] == "STATUS_RUNNING")
    });
    server.kill().expect("kill -9");
    server.wait().expect("reaped");

    let (mut server, addr) = serve_child(&dir, &config);
    for (id, run_id) in &acknowledged {
        let (read, run) = task(&addr, *id);
        assert_eq!(read["id"], json!(id), "{read}");
        assert_eq!(&run, run_id, "task {id} is the same run");
        assert_eq!(read["customId"], json!(format!("c{}", id - 1)));
        let status = read["status"].as_str().expect("status");
        assert!(
            ["STATUS_SCHEDULED", "STATUS_RUNNING", "STATUS_SUCCESSFUL"].contains(&status),
            "task {id} after the restart: {read}"
        );
    }
    for id in acknowledged.keys() {
        wait_for(
            &format!("task {id} to finish"),
            Duration::from_secs(60),
            || task(&addr, *id).0["status"] == "STATUS_SUCCESSFUL",
        );
        let path = format!("/v1/tasks/runs/{}", acknowledged[id]);
        let run = client::send_json(&addr, "GET", &path, &[("x-api-key", "k")], None);
        assert_eq!(run.json()["status"], "completed", "{}", run.text());
    }
    let listed = call(&addr, "GET", &format!("{V2}/tasks"), None).json();
    let ids: Vec<u64> = listed["ocs"]["data"]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|task| task["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, (1..=8).collect::<Vec<_>>());
    let body = json!({"input": {"input": "after"}, "type": "core:text2text", "appId": "crash"});
    let next = call(&addr, "POST", &format!("{V2}/schedule"), Some(&body)).json();
    assert_eq!(next["ocs"]["data"]["task"]["id"], json!(9), "{next}");
    server.kill().expect("stopped");
    server.wait().expect("reaped");
}
