//! A routine's schedule (issue 15; spec 3.2 and choice 6) on a clock the
//! test moves: activate switches an engine schedule on, each cron fire is
//! a routine run with an empty payload, pause switches it off and activate
//! on again, a cron more often than hourly is a 422, and a fire while the
//! previous scheduled run is still active is recorded as `skipped`.

#[path = "support/http.rs"]
mod client;
mod support;

use std::sync::Arc;
use std::time::Duration;

use client::{Response, TestServer};
use serde_json::{json, Value};
use support::{config_from_toml, wait_for, TestDir};
use taskyard::engine::ManualClock;
use taskyard::faces::archastro::ids;
use taskyard::faces::parallel::Api;
use taskyard::{Engine, Timestamp};

/// 2026-12-07T12:01:00Z.
const START_MICROS: i64 = 1_796_644_860_000_000;
const HOUR: Duration = Duration::from_secs(3_600);
const DEADLINE: Duration = Duration::from_secs(20);

/// A server on a manual clock whose `agi_slow` takes `latency_ms`.
fn server(dir: &TestDir, latency_ms: u64) -> (TestServer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(START_MICROS)));
    let config = config_from_toml(
        dir,
        "taskyard.toml",
        &format!("[processors.slow]\nkind = \"mock\"\nlatency_ms = {latency_ms}\n"),
    )
    .expect("config");
    let config = taskyard::Config {
        clock: clock.clone(),
        ..config
    };
    let engine = Engine::open(dir.db(), config).expect("engine");
    (TestServer::start_on_engine(Api::new(engine), |_| {}), clock)
}

fn post(server: &TestServer, path: &str, body: Option<&Value>) -> Response {
    let body = body.map(Value::to_string);
    server.send(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_deref().map(str::as_bytes),
    )
}

/// A `do_task` routine of `agent` on `cron`, made and activated.
fn active_routine(server: &TestServer, agent: &str, cron: &str) -> String {
    let made = post(
        server,
        &format!("/api/v1/agents/{agent}/agent_routines"),
        Some(
            &json!({"name": "tick", "handler_type": "preset", "preset_name": "do_task",
                     "preset_config": {"instructions": "Tick"}, "schedule": cron}),
        ),
    );
    assert_eq!(made.status, 200, "{}", made.text());
    let id = made.json()["id"].as_str().expect("id").to_string();
    let active = post(
        server,
        &format!("/api/v1/agent_routines/{id}/activate"),
        None,
    );
    assert_eq!(active.json()["status"], "active", "{}", active.text());
    id
}

/// The routine's runs, newest first.
fn runs(server: &TestServer, routine: &str) -> Vec<Value> {
    let page = server.get(&format!("/api/v1/agent_routines/{routine}/runs"));
    assert_eq!(page.status, 200, "{}", page.text());
    page.json()["data"].as_array().expect("data").clone()
}

fn statuses(server: &TestServer, routine: &str) -> Vec<String> {
    runs(server, routine)
        .iter()
        .map(|run| run["status"].as_str().expect("status").to_string())
        .collect()
}

#[test]
fn activate_fires_on_the_cron_pause_stops_it_and_activate_resumes_it() {
    let dir = TestDir::new();
    let (server, clock) = server(&dir, 0);
    let routine = active_routine(&server, "agi_core", "30 * * * *");
    assert!(runs(&server, &routine).is_empty());

    clock.advance(Duration::from_secs(29 * 60));
    wait_for("the 12:30 fire", DEADLINE, || {
        statuses(&server, &routine) == ["completed"]
    });
    let fired = &runs(&server, &routine)[0];
    assert_eq!(fired["payload"], json!({}));
    assert_eq!(fired["routine"], routine.as_str());
    assert_eq!(
        fired["result"]["content"]
            .as_str()
            .map(|t| t.contains("Tick")),
        Some(true)
    );

    let paused = post(
        &server,
        &format!("/api/v1/agent_routines/{routine}/pause"),
        None,
    );
    assert_eq!(paused.json()["status"], "paused");
    // A witness on the same cron: once it has fired for 13:30, the timer
    // has passed that time, and the paused routine did not fire with it.
    let witness = active_routine(&server, "agi_core", "30 * * * *");
    clock.advance(HOUR);
    wait_for("the witness's 13:30 fire", DEADLINE, || {
        statuses(&server, &witness) == ["completed"]
    });
    assert_eq!(
        statuses(&server, &routine),
        ["completed"],
        "a paused routine fired"
    );

    let again = post(
        &server,
        &format!("/api/v1/agent_routines/{routine}/activate"),
        None,
    );
    assert_eq!(again.json()["status"], "active");
    clock.advance(HOUR);
    wait_for("the 14:30 fire after resuming", DEADLINE, || {
        statuses(&server, &routine) == ["completed", "completed"]
    });
}

#[test]
fn a_cron_more_often_than_hourly_is_a_422() {
    let dir = TestDir::new();
    let (server, _clock) = server(&dir, 0);
    for cron in ["* * * * *", "*/30 * * * *", "0,30 * * * *", "0-59 * * * *"] {
        let made = post(
            &server,
            "/api/v1/agents/agi_core/agent_routines",
            Some(
                &json!({"name": "n", "handler_type": "preset", "preset_name": "do_task",
                         "schedule": cron}),
            ),
        );
        assert_eq!(made.status, 422, "{cron}: {}", made.text());
        let error = &made.json()["error"];
        assert_eq!(error["fields"][0]["field"], "schedule", "{error}");
        assert!(error["fields"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("hourly")));
    }
    let routine = active_routine(&server, "agi_core", "0 9 * * 1");
    let faster = server.send(
        "PATCH",
        &format!("/api/v1/agent_routines/{routine}"),
        &[("Content-Type", "application/json")],
        Some(br#"{"schedule": "*/10 * * * *"}"#),
    );
    assert_eq!(faster.status, 422, "{}", faster.text());
    let kept = server.get(&format!("/api/v1/agent_routines/{routine}"));
    assert_eq!(
        kept.json()["schedule"],
        "0 9 * * 1",
        "a refused update changed the routine"
    );
    assert!(server
        .engine
        .engine()
        .list_schedules()
        .expect("schedules")
        .iter()
        .all(
            |s| matches!(&s.when, taskyard::model::When::Cron { cron, .. } if cron == "0 9 * * 1")
        ));
}

#[test]
fn a_fire_while_the_previous_scheduled_run_is_active_is_skipped() {
    let dir = TestDir::new();
    let (server, clock) = server(&dir, 60_000);
    let routine = active_routine(&server, "agi_slow", "0 * * * *");
    clock.advance(HOUR);
    wait_for("the first fire, running", DEADLINE, || {
        statuses(&server, &routine) == ["running"]
    });
    clock.advance(HOUR);
    wait_for("the second fire, skipped", DEADLINE, || {
        statuses(&server, &routine) == ["skipped", "running"]
    });
    let skipped = runs(&server, &routine)[0].clone();
    assert_eq!(skipped["worker"]["status"], "cancelled");
    assert_eq!(skipped["result"], Value::Null);
    let only = server.get(&format!(
        "/api/v1/agent_routines/{routine}/runs?status=skipped"
    ));
    assert_eq!(only.json()["data"].as_array().map(Vec::len), Some(1));

    // The skipped run's stream is its one state, then the end.
    let id = skipped["id"].as_str().expect("id");
    let mut stream = server
        .stream(&format!("/api/v1/agent_routine_runs/{id}/stream"), &[])
        .expect("a stream");
    let until = std::time::Instant::now() + DEADLINE;
    while !stream.ended {
        assert!(std::time::Instant::now() < until, "the stream did not end");
        stream.next_chunk(DEADLINE);
    }
    let body = String::from_utf8(stream.body.clone()).expect("UTF-8");
    assert!(body.starts_with("event: run_update\ndata: {"), "{body:?}");
    assert_eq!(body.matches("event: ").count(), 1, "{body:?}");
    assert!(body.contains("\"status\":\"skipped\""), "{body:?}");

    // Once the first run has ended, the next fire runs again.
    let first = runs(&server, &routine)[1]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let run_id = ids::run_of("arr_", &first).expect("an arr_ id");
    server.engine.engine().cancel_run(&run_id).expect("cancel");
    wait_for("the first run cancelled", DEADLINE, || {
        statuses(&server, &routine) == ["skipped", "cancelled"]
    });
    clock.advance(HOUR);
    wait_for("the third fire, running", DEADLINE, || {
        statuses(&server, &routine) == ["running", "skipped", "cancelled"]
    });
    let third = runs(&server, &routine)[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    server
        .engine
        .engine()
        .cancel_run(&ids::run_of("arr_", &third).expect("id"))
        .expect("cancel");
}

#[test]
fn a_schedule_made_just_before_a_crash_is_found_by_its_index() {
    let dir = TestDir::new();
    let (server, _clock) = server(&dir, 0);
    let made = post(
        &server,
        "/api/v1/agents/agi_core/agent_routines",
        Some(
            &json!({"name": "n", "handler_type": "preset", "preset_name": "do_task",
                     "schedule": "0 * * * *"}),
        ),
    );
    let routine = made.json()["id"].as_str().expect("id").to_string();
    let engine = server.engine.engine();
    // What activate writes first: the engine schedule with its index
    // record, in one transaction; the routine's own save never came.
    let run = taskyard::model::RunRequest::new(json!("Tick"), "core");
    let when = taskyard::model::When::Cron {
        cron: "0 * * * *".into(),
        timezone: "UTC".into(),
    };
    let prefix = format!("{routine}/");
    let orphan = engine
        .create_exclusive_schedule(
            taskyard::model::ScheduleRequest { when, run },
            ("archastro", "schedule", &prefix),
        )
        .expect("a schedule");
    let paused = post(
        &server,
        &format!("/api/v1/agent_routines/{routine}/pause"),
        None,
    );
    assert_eq!(paused.json()["status"], "paused");
    let state = |id: &str| engine.get_schedule(id).expect("schedule").state;
    assert_eq!(state(&orphan.id), taskyard::model::ScheduleState::Paused);
    let active = post(
        &server,
        &format!("/api/v1/agent_routines/{routine}/activate"),
        None,
    );
    assert_eq!(active.json()["status"], "active");
    assert_eq!(state(&orphan.id), taskyard::model::ScheduleState::Active);
    assert_eq!(
        engine.list_schedules().expect("schedules").len(),
        1,
        "no second schedule"
    );
    let deleted = server.send(
        "DELETE",
        &format!("/api/v1/agent_routines/{routine}"),
        &[],
        None,
    );
    assert_eq!(deleted.status, 204);
    assert_eq!(state(&orphan.id), taskyard::model::ScheduleState::Cancelled);

    // A refused schedule leaves no index record.
    let bad = taskyard::model::ScheduleRequest {
        when: taskyard::model::When::Cron {
            cron: "not cron".into(),
            timezone: "UTC".into(),
        },
        run: taskyard::model::RunRequest::new(json!("x"), "core"),
    };
    assert!(engine
        .create_exclusive_schedule(bad, ("archastro", "schedule", "arn_other/"))
        .is_err());
    let listed = engine.list_records("archastro", "schedule", "arn_other/", 10);
    assert!(listed.expect("records").is_empty());
}
