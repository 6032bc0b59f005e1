//! One engine under every face (issue 14): a Handinger task and a
//! Nextcloud task are runs in the Parallel face's run list and on its
//! streams, with their events in the one event log; and `kill -9` of the
//! real server while tasks of both faces run loses none: after the
//! restart every acknowledged task completes, and its string (Handinger)
//! or integer (Nextcloud) id still resolves, on its face and on Parallel's.

#[path = "support/http.rs"]
mod client;
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{serve_child, wait_for, TestDir};

const NC: &str = "/ocs/v2.php/taskprocessing";

/// `alice` with the key `k`, as nc-py-api sends it.
const NC_HEADERS: &[(&str, &str)] = &[
    ("Authorization", "Basic YWxpY2U6aw=="),
    ("OCS-APIRequest", "true"),
    ("Accept", "application/json"),
    ("Content-Type", "application/json"),
];
const HANDINGER_HEADERS: &[(&str, &str)] = &[
    ("Authorization", "Bearer k"),
    ("Content-Type", "application/json"),
];
const PARALLEL_HEADERS: &[(&str, &str)] = &[("x-api-key", "k")];

/// A server on `dir` whose `slow` processor serves Handinger's `low`
/// budget and Nextcloud's `core:text2text`, `latency_ms` per run.
fn server(dir: &TestDir, latency_ms: u64) -> (std::process::Child, String) {
    let config = dir.dir.path().join("taskyard.toml");
    std::fs::write(
        &config,
        format!(
            "api_keys = [\"k\"]\nworkers = 2\n\
             [processors.slow]\nkind = \"mock\"\nlatency_ms = {latency_ms}\n\
             [handinger]\nbudgets = {{ low = \"slow\" }}\n\
             [nextcloud.task_types]\n\"core:text2text\" = \"slow\"\n"
        ),
    )
    .expect("config");
    serve_child(dir, &config)
}

/// A Handinger task: (task id, run id).
fn handinger_task(addr: &str, input: &str) -> (String, String) {
    let body = json!({"input": input, "budget": "low"});
    let answer = client::send_json(addr, "POST", "/api/tasks", HANDINGER_HEADERS, Some(&body));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let worker = answer.json();
    let task = worker["taskId"].as_str().expect("task id").to_string();
    let run = worker["turnId"].as_str().expect("turn id").to_string();
    (task, run)
}

/// A Nextcloud task: (integer id, run id).
fn nextcloud_task(addr: &str, input: &str) -> (u64, String) {
    let body = json!({"input": {"input": input}, "type": "core:text2text", "appId": "cross"});
    let answer = client::send_json(
        addr,
        "POST",
        &format!("{NC}/schedule"),
        NC_HEADERS,
        Some(&body),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let id = answer.json()["ocs"]["data"]["task"]["id"]
        .as_u64()
        .expect("an integer id");
    let run = answer
        .header("x-taskyard-run-id")
        .expect("run id")
        .to_string();
    (id, run)
}

fn parallel_run(addr: &str, run: &str) -> Value {
    let answer = client::send_json(
        addr,
        "GET",
        &format!("/v1/tasks/runs/{run}"),
        PARALLEL_HEADERS,
        None,
    );
    assert_eq!(answer.status, 200, "{run}: {}", answer.text());
    answer.json()
}

fn handinger_status(addr: &str, task: &str) -> Value {
    let answer = client::send_json(
        addr,
        "GET",
        &format!("/api/tasks/{task}"),
        HANDINGER_HEADERS,
        None,
    );
    assert_eq!(answer.status, 200, "{task}: {}", answer.text());
    answer.json()["task"]["status"].clone()
}

fn nextcloud_status(addr: &str, id: u64) -> Value {
    let answer = client::send_json(addr, "GET", &format!("{NC}/task/{id}"), NC_HEADERS, None);
    assert_eq!(answer.status, 200, "{id}: {}", answer.text());
    answer.json()["ocs"]["data"]["task"]["status"].clone()
}

#[test]
fn tasks_of_every_face_are_parallel_runs_on_its_list_and_streams_in_one_log() {
    let dir = TestDir::new();
    let (mut child, addr) = server(&dir, 0);
    let (handinger, handinger_run) = handinger_task(&addr, "from handinger");
    let (nextcloud, nextcloud_run) = nextcloud_task(&addr, "from nextcloud");

    // On the Parallel face's list of runs.
    let listed = client::send_json(
        &addr,
        "GET",
        "/v1/tasks/runs?limit=100",
        PARALLEL_HEADERS,
        None,
    )
    .json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|run| run["run_id"].as_str())
        .collect();
    assert!(ids.contains(&handinger_run.as_str()), "{ids:?}");
    assert!(ids.contains(&nextcloud_run.as_str()), "{ids:?}");

    // On its run streams, to the end.
    for run in [&handinger_run, &nextcloud_run] {
        let mut stream = client::SseStream::open(
            addr.parse().expect("an address"),
            &format!("/v1beta/tasks/runs/{run}/events"),
            PARALLEL_HEADERS,
        )
        .unwrap_or_else(|answer| panic!("{}: {}", answer.status, answer.text()));
        let events = client::events(&stream.read_to_end(Duration::from_secs(30)));
        let last = events.last().expect("events");
        assert_eq!(last["type"], "task_run.state");
        assert_eq!(last["run"]["status"], "completed", "{run}: {events:?}");
    }
    assert_eq!(handinger_status(&addr, &handinger), "completed");
    assert_eq!(nextcloud_status(&addr, nextcloud), "STATUS_SUCCESSFUL");

    // One event log: both runs' events, in one sequence of ids.
    let _ = child.kill();
    let _ = child.wait();
    let runs: Vec<(String, i64, i64)> = support::stored(&dir)
        .rows(
            "SELECT r.id, min(e.id), max(e.id) FROM events e JOIN runs r ON r.seq = e.run_seq \
             GROUP BY r.id ORDER BY min(e.id)",
            &[],
        )
        .into_iter()
        .map(|row| {
            let number = |i: usize| -> i64 {
                row[i]
                    .as_deref()
                    .expect("an id")
                    .parse()
                    .expect("an integer")
            };
            (row[0].clone().expect("a run id"), number(1), number(2))
        })
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(
        runs[0].1 < runs[1].1 && runs[1].2 > runs[0].1,
        "one id sequence: {runs:?}"
    );
    for (id, _, _) in &runs {
        assert!(
            handinger_run.ends_with(id.as_str()) || nextcloud_run.ends_with(id.as_str()),
            "{id}"
        );
    }
}

#[test]
fn kill_9_while_tasks_of_both_faces_run_loses_none() {
    let dir = TestDir::new();
    let (mut child, addr) = server(&dir, 600);
    let mut handinger = Vec::new();
    let mut nextcloud = Vec::new();
    for index in 0..6 {
        handinger.push(handinger_task(&addr, &format!("handinger {index}")));
        nextcloud.push(nextcloud_task(&addr, &format!("nextcloud {index}")));
    }
    wait_for(
        "a run of each face running",
        Duration::from_secs(30),
        || {
            handinger
                .iter()
                .any(|(_, run)| parallel_run(&addr, run)["status"] == "running")
                || nextcloud
                    .iter()
                    .any(|(_, run)| parallel_run(&addr, run)["status"] == "running")
        },
    );
    let unfinished = handinger
        .iter()
        .map(|(_, run)| run)
        .chain(nextcloud.iter().map(|(_, run)| run))
        .filter(|run| parallel_run(&addr, run)["status"] != "completed")
        .count();
    assert!(unfinished > 0, "killed while work was left");
    child.kill().expect("kill -9");
    child.wait().expect("reaped");

    let (mut child, addr) = server(&dir, 600);
    for (task, run) in &handinger {
        wait_for(
            &format!("handinger task {task}"),
            Duration::from_secs(60),
            || handinger_status(&addr, task) == "completed",
        );
        assert_eq!(parallel_run(&addr, run)["status"], "completed");
    }
    for (id, run) in &nextcloud {
        wait_for(
            &format!("nextcloud task {id}"),
            Duration::from_secs(60),
            || nextcloud_status(&addr, *id) == "STATUS_SUCCESSFUL",
        );
        assert_eq!(parallel_run(&addr, run)["status"], "completed");
    }
    let _ = child.kill();
    let _ = child.wait();
}
