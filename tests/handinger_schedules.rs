//! A Handinger worker's schedules (issue 14; spec 4.5) on a clock the test
//! moves: each of the four `when` kinds fires a new task on the worker,
//! `triggeredBy: schedule`, that reads back on the face and as the
//! worker's latest task; a cancelled schedule is not listed and fires no
//! more; bad `when`s are 400s.

#[path = "support/http.rs"]
mod client;
mod support;

use std::sync::Arc;
use std::time::Duration;

use client::{Response, TestServer};
use serde_json::{json, Value};
use support::{wait_for, TestDir};
use taskyard::engine::ManualClock;
use taskyard::faces::parallel::Api;
use taskyard::{Engine, Timestamp};

/// 2026-12-07T12:01:00Z.
const START_MICROS: i64 = 1_796_644_860_000_000;

fn server(dir: &TestDir) -> (TestServer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(START_MICROS)));
    let config = taskyard::Config {
        clock: clock.clone(),
        ..taskyard::faces::default_config()
    };
    let engine = Engine::open(dir.db(), config).expect("engine");
    (TestServer::start_on_engine(Api::new(engine), |_| {}), clock)
}

fn post(server: &TestServer, path: &str, body: &Value) -> Response {
    server.post_json(path, body)
}

/// The tasks the worker's schedules fired so far, as the face reads them.
fn fired(server: &TestServer, schedule_engine_ids: &[String]) -> usize {
    schedule_engine_ids
        .iter()
        .map(|id| {
            server
                .engine
                .engine()
                .schedule_runs(id)
                .expect("runs")
                .len()
        })
        .sum()
}

#[test]
fn each_kind_fires_a_new_task_on_the_worker() {
    let dir = TestDir::new();
    let (server, clock) = server(&dir);
    let worker = post(&server, "/api/workers", &json!({"instructions": "Report."})).json();
    let worker_id = worker["id"].as_str().expect("worker id").to_string();
    let schedules_path = format!("/api/workers/{worker_id}/schedules");
    let whens = [
        json!({"type": "scheduled", "date": "2026-12-07T12:31:00+00:00"}),
        json!({"type": "delayed", "delayInSeconds": 30}),
        json!({"type": "cron", "cron": "0 13 * * *"}),
        json!({"type": "interval", "intervalSeconds": 3600}),
    ];
    let mut made = Vec::new();
    for when in &whens {
        let answer = post(
            &server,
            &schedules_path,
            &json!({"input": format!("{} report", when["type"]), "when": when, "budget": "low"}),
        );
        assert_eq!(answer.status, 200, "{}", answer.text());
        let schedule = answer.json();
        assert_eq!(schedule["type"], when["type"]);
        assert!(schedule["id"].as_str().expect("id").starts_with("sch_"));
        assert!(schedule["nextRunAt"].is_string(), "{schedule}");
        made.push(schedule);
    }
    assert_eq!(made[1]["delayInSeconds"], 30);
    assert_eq!(made[2]["cron"], "0 13 * * *");
    assert_eq!(made[3]["intervalSeconds"], 3600);
    let listed = server.get(&schedules_path).json();
    assert_eq!(listed["workerId"], json!(worker_id));
    assert_eq!(listed["schedules"].as_array().expect("list").len(), 4);

    let engine_ids: Vec<String> = server
        .engine
        .engine()
        .list_schedules()
        .expect("schedules")
        .into_iter()
        .map(|schedule| schedule.id)
        .collect();
    // Thirty seconds: the delayed one fires.
    clock.advance(Duration::from_secs(31));
    wait_for("the delayed fire", Duration::from_secs(10), || {
        fired(&server, &engine_ids) == 1
    });
    // Half an hour: the scheduled one; an hour: cron at 13:00 and the interval.
    clock.advance(Duration::from_secs(30 * 60));
    wait_for("the scheduled fire", Duration::from_secs(10), || {
        fired(&server, &engine_ids) == 2
    });
    clock.advance(Duration::from_secs(30 * 60));
    wait_for("cron and interval", Duration::from_secs(10), || {
        fired(&server, &engine_ids) == 4
    });

    // Each fire is a task of its own on the worker, triggered by a schedule.
    let runs: Vec<String> = engine_ids
        .iter()
        .flat_map(|id| server.engine.engine().schedule_runs(id).expect("runs"))
        .map(|run| run.id)
        .collect();
    for run_id in &runs {
        let task_id = format!("tsk_{run_id}");
        wait_for(
            "the fired task to complete",
            Duration::from_secs(30),
            || server.get(&format!("/api/tasks/{task_id}")).json()["task"]["status"] == "completed",
        );
        let task = server.get(&format!("/api/tasks/{task_id}")).json();
        assert_eq!(task["task"]["triggeredBy"], "schedule", "{task}");
        assert_eq!(task["task"]["workerId"], json!(worker_id));
        assert_eq!(task["turns"][0]["id"], json!(format!("trun_{run_id}")));
    }
    // The worker reads as of the latest fired task.
    let latest = server.get(&format!("/api/workers/{worker_id}")).json();
    assert!(
        runs.iter()
            .any(|run| latest["taskId"] == json!(format!("tsk_{run}"))),
        "{latest}"
    );
    // The one-time schedules are done: two are listed still.
    let listed = server.get(&schedules_path).json();
    assert_eq!(
        listed["schedules"].as_array().expect("list").len(),
        2,
        "{listed}"
    );

    // Cancelled: not listed, and the interval fires no more.
    let interval = made[3]["id"].as_str().expect("id");
    let cancelled = server.send("DELETE", &format!("{schedules_path}/{interval}"), &[], None);
    assert_eq!(cancelled.json(), json!({"cancelled": true}));
    let again = server.send("DELETE", &format!("{schedules_path}/{interval}"), &[], None);
    assert_eq!(again.status, 404, "{}", again.text());
    clock.advance(Duration::from_secs(2 * 3600));
    let listed = server.get(&schedules_path).json();
    assert_eq!(
        listed["schedules"].as_array().expect("list").len(),
        1,
        "{listed}"
    );
}

#[test]
fn a_bad_when_is_a_400() {
    let dir = TestDir::new();
    let (server, _clock) = server(&dir);
    let worker = post(&server, "/api/workers", &json!({})).json();
    let path = format!(
        "/api/workers/{}/schedules",
        worker["id"].as_str().expect("id")
    );
    for when in [
        json!({"type": "weekly"}),
        json!({"type": "delayed", "delayInSeconds": 0}),
        json!({"type": "interval", "intervalSeconds": 31_536_001}),
        json!({"type": "scheduled", "date": "next tuesday"}),
        json!({"type": "cron", "cron": "61 * * * *"}),
    ] {
        let answer = post(&server, &path, &json!({"input": "x", "when": when}));
        assert_eq!(answer.status, 400, "{when}: {}", answer.text());
        assert_eq!(answer.json()["error"]["code"], "bad_request");
    }
    let missing = post(
        &server,
        "/api/workers/wrk_nobody/schedules",
        &json!({"input": "x",
        "when": {"type": "delayed", "delayInSeconds": 5}}),
    );
    assert_eq!(missing.status, 404);
}
