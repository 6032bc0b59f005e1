//! Schedules (issue 12) through the engine's API, on a clock the test
//! moves (`ManualClock`): each kind fires on time and once, missed ticks
//! make one catch-up run, pause, resume and cancel, and a bad cron
//! expression or time zone names its field.

#[path = "support/http.rs"]
mod client;
mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{wait_for, TestDir};
use taskyard::engine::ManualClock;
use taskyard::model::{RunRequest, ScheduleRequest, ScheduleState, When};
use taskyard::{Engine, Error, Timestamp};

/// 2026-12-07T12:01:00Z.
const START_MICROS: i64 = 1_796_644_860_000_000;

fn open(dir: &TestDir) -> (Engine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(START_MICROS)));
    let config = taskyard::Config {
        clock: clock.clone(),
        ..taskyard::faces::default_config()
    };
    (Engine::open(dir.db(), config).expect("engine"), clock)
}

fn schedule(when: When) -> ScheduleRequest {
    ScheduleRequest {
        when,
        run: RunRequest::new("tick", "echo"),
    }
}

/// Waits until the schedule has made `fires` runs.
fn wait_fires(engine: &Engine, id: &str, fires: u32) {
    wait_for(&format!("{fires} fires"), Duration::from_secs(10), || {
        engine.get_schedule(id).expect("schedule").fires >= fires
    });
    let schedule = engine.get_schedule(id).expect("schedule");
    assert_eq!(schedule.fires, fires, "exactly {fires}");
    assert_eq!(
        engine.schedule_runs(id).expect("runs").len(),
        fires as usize
    );
}

#[test]
fn an_interval_fires_on_time_and_missed_ticks_make_one_run() {
    let dir = TestDir::new();
    let (engine, clock) = open(&dir);
    let made = engine
        .create_schedule(schedule(When::Interval { every_s: 10 }))
        .expect("schedule");
    assert_eq!(made.next_at, Some(Timestamp(START_MICROS + 10_000_000)));
    clock.advance(Duration::from_secs(10));
    wait_fires(&engine, &made.id, 1);
    assert_eq!(
        engine.get_schedule(&made.id).expect("schedule").next_at,
        Some(Timestamp(START_MICROS + 20_000_000))
    );
    // Three ticks missed (20, 30, 40 s): one catch-up run, then on time.
    clock.advance(Duration::from_secs(35));
    wait_fires(&engine, &made.id, 2);
    assert_eq!(
        engine.get_schedule(&made.id).expect("schedule").next_at,
        Some(Timestamp(START_MICROS + 50_000_000))
    );
    // The runs are real runs: they complete.
    for run in engine.schedule_runs(&made.id).expect("runs") {
        engine
            .wait_for_result(&run.id, Duration::from_secs(10))
            .expect("a fired run completes");
    }
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn at_and_delay_fire_once_then_are_done() {
    let dir = TestDir::new();
    let (engine, clock) = open(&dir);
    let at = engine
        .create_schedule(schedule(When::At {
            at: Timestamp(START_MICROS + 60_000_000),
        }))
        .expect("at");
    let delay = engine
        .create_schedule(schedule(When::Delay { delay_ms: 30_000 }))
        .expect("delay");
    assert_eq!(delay.next_at, Some(Timestamp(START_MICROS + 30_000_000)));
    clock.advance(Duration::from_secs(30));
    wait_fires(&engine, &delay.id, 1);
    assert_eq!(engine.get_schedule(&at.id).expect("at").fires, 0);
    clock.advance(Duration::from_secs(300));
    wait_fires(&engine, &at.id, 1);
    for id in [&at.id, &delay.id] {
        let done = engine.get_schedule(id).expect("schedule");
        assert_eq!(done.state, ScheduleState::Done);
        assert_eq!(done.next_at, None);
    }
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn cron_fires_at_its_times_in_its_zone() {
    let dir = TestDir::new();
    let (engine, clock) = open(&dir);
    let made = engine
        .create_schedule(schedule(When::Cron {
            cron: "*/5 * * * *".into(),
            timezone: "Europe/Paris".into(),
        }))
        .expect("cron");
    // 12:01 UTC: the next five-minute mark is 12:05.
    assert_eq!(made.next_at, Some(Timestamp(START_MICROS + 240_000_000)));
    clock.advance(Duration::from_secs(240));
    wait_fires(&engine, &made.id, 1);
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn pause_resume_and_cancel() {
    let dir = TestDir::new();
    let (engine, clock) = open(&dir);
    let made = engine
        .create_schedule(schedule(When::Interval { every_s: 60 }))
        .expect("schedule");
    let paused = engine.pause_schedule(&made.id).expect("pause");
    assert_eq!(paused.state, ScheduleState::Paused);
    assert_eq!(paused.next_at, None);
    clock.advance(Duration::from_secs(600));
    let resumed = engine.resume_schedule(&made.id).expect("resume");
    assert_eq!(resumed.state, ScheduleState::Active);
    // From its next tick after now, not the ten it missed while paused.
    assert_eq!(resumed.next_at, Some(Timestamp(START_MICROS + 660_000_000)));
    assert_eq!(resumed.fires, 0);
    clock.advance(Duration::from_secs(60));
    wait_fires(&engine, &made.id, 1);
    let cancelled = engine.cancel_schedule(&made.id).expect("cancel");
    assert_eq!(cancelled.state, ScheduleState::Cancelled);
    assert!(matches!(
        engine.resume_schedule(&made.id),
        Err(Error::ScheduleConflict { .. })
    ));
    assert_eq!(engine.list_schedules().expect("list").len(), 1);
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn a_bad_cron_or_time_zone_names_its_field() {
    let dir = TestDir::new();
    let (engine, _clock) = open(&dir);
    for (when, field) in [
        (
            When::Cron {
                cron: "every minute".into(),
                timezone: "UTC".into(),
            },
            "when.cron",
        ),
        (
            When::Cron {
                cron: "0 * * * *".into(),
                timezone: "Atlantis/Capital".into(),
            },
            "when.timezone",
        ),
        (When::Interval { every_s: 0 }, "when.every_s"),
    ] {
        match engine.create_schedule(schedule(when)) {
            Err(Error::Invalid(problems)) => assert_eq!(problems[0].loc_string(), field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut unknown = schedule(When::Interval { every_s: 60 });
    unknown.run.processor = "nonesuch".into();
    match engine.create_schedule(unknown) {
        Err(Error::Invalid(problems)) => assert_eq!(problems[0].loc_string(), "run.processor"),
        other => panic!("{other:?}"),
    }
    engine.shutdown(Duration::from_secs(5));
}

/// The child's environment: its database.
const CHILD_DB_ENV: &str = "TASKYARD_SCHEDULE_CHILD_DB";

/// The child's entry point, not a test of its own: without
/// `TASKYARD_SCHEDULE_CHILD_DB` it returns at once. The parent re-runs this
/// binary with only this test selected and that variable set.
#[test]
fn schedule_child_entry() {
    let Some(db) = std::env::var_os(CHILD_DB_ENV) else {
        return;
    };
    // The real clock: the parent kills this process around fires.
    let engine = Engine::open(&db, taskyard::faces::default_config()).expect("child engine");
    if engine.list_schedules().expect("list").is_empty() {
        engine
            .create_schedule(schedule(When::Interval { every_s: 1 }))
            .expect("the schedule");
    }
    // Idle while the timer fires: the parent kills this process; nothing
    // waits on this sleep.
    std::thread::sleep(Duration::from_secs(600));
}

/// Fires and the runs they made, as stored: (fires, runs, run creation
/// times in order).
fn stored_fires(dir: &TestDir) -> (i64, i64, Vec<i64>) {
    let db = support::stored(dir);
    // Before the child's first commit the tables are not there yet.
    let fires = match db.try_rows("SELECT coalesce(sum(fires), 0) FROM schedules", &[]) {
        Ok(rows) => rows[0][0]
            .as_deref()
            .map_or(0, |n| n.parse().expect("a count")),
        Err(_) => return (0, 0, Vec::new()),
    };
    let Ok(rows) = db.try_rows(
        "SELECT r.created_at FROM schedule_runs s JOIN runs r ON r.seq = s.run_seq \
         ORDER BY r.seq",
        &[],
    ) else {
        return (0, 0, Vec::new());
    };
    let times: Vec<i64> = rows
        .into_iter()
        .map(|row| row[0].as_deref().expect("a time").parse().expect("micros"))
        .collect();
    (fires, times.len() as i64, times)
}

/// A fire makes its run exactly once: `kill -9` of a process whose timer
/// fires every second, again and again around the fires, never leaves a
/// fire without its run or a run without its fire, and never fires one
/// tick twice (two runs of one tick would be made within moments).
#[test]
fn fires_are_exactly_once_across_kill_9() {
    let dir = TestDir::new();
    // Kill points after the k-th observed fire, spread over a second.
    let delays_ms = [0u64, 130, 370, 610, 880, 50];
    let mut seen_fires = 0;
    for delay_ms in delays_ms {
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "schedule_child_entry", "--nocapture"])
            .env(CHILD_DB_ENV, dir.db())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("child");
        wait_for("the next fire", Duration::from_secs(20), || {
            // A SQLite file appears at the child's open; a PostgreSQL
            // database is there from the start.
            (support::on_postgres() || dir.db().exists()) && stored_fires(&dir).0 > seen_fires
        });
        // The kill point itself, not a wait for state: the test must hold
        // wherever between fires the kill lands.
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
        let (fires, runs, _) = stored_fires(&dir);
        assert_eq!(fires, runs, "every fire has its run, every run its fire");
        seen_fires = fires;
    }
    let (fires, runs, times) = stored_fires(&dir);
    assert_eq!(fires, runs);
    assert!(fires >= delays_ms.len() as i64, "{fires} fires");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 500_000,
            "two runs {} µs apart: one tick fired twice",
            pair[1] - pair[0]
        );
    }
    // And the survivors open clean: every made run is there.
    let engine = Engine::open(dir.db(), taskyard::faces::default_config()).expect("reopens");
    let schedules = engine.list_schedules().expect("list");
    assert_eq!(schedules.len(), 1, "the child made one schedule");
    assert_eq!(
        engine.schedule_runs(&schedules[0].id).expect("runs").len() as i64,
        runs
    );
    engine.shutdown(Duration::from_secs(5));
}

/// The taskyard extension over HTTP: make, read, list, pause and cancel,
/// the runs made, a conflict and a 422 in the hosted envelope.
#[test]
fn schedules_over_http() {
    let server = client::TestServer::start();
    let created = server.post_json(
        "/v1/schedules",
        &serde_json::json!({"when": {"kind": "delay", "delay_ms": 0},
                            "run": {"input": "now", "processor": "echo"}}),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let schedule = created.json();
    let id = schedule["schedule_id"].as_str().expect("id").to_string();
    assert!(id.starts_with("tsch_"), "{id}");
    assert_eq!(schedule["when"]["kind"], "delay");
    wait_for("the delayed fire", Duration::from_secs(10), || {
        server.get(&format!("/v1/schedules/{id}")).json()["status"] == "done"
    });
    let runs = server.get(&format!("/v1/schedules/{id}/runs")).json();
    assert_eq!(runs["data"].as_array().expect("runs").len(), 1);
    assert!(runs["data"][0]["run_id"]
        .as_str()
        .expect("a run")
        .starts_with("trun_"));
    let conflict = server.post_json(&format!("/v1/schedules/{id}/pause"), &serde_json::json!({}));
    assert_eq!(conflict.status, 409, "{}", conflict.text());

    let hourly = server
        .post_json(
            "/v1beta/schedules",
            &serde_json::json!({"when": {"kind": "cron", "cron": "0 * * * *"},
                                "run": {"input": "hourly", "processor": "echo"}}),
        )
        .json();
    assert_eq!(hourly["when"]["timezone"], "UTC");
    let hourly_id = hourly["schedule_id"].as_str().expect("id");
    let paused = server.post_json(
        &format!("/v1/schedules/{hourly_id}/pause"),
        &serde_json::json!({}),
    );
    assert_eq!(paused.json()["status"], "paused");
    assert_eq!(paused.json()["next_fire_at"], serde_json::Value::Null);
    let cancelled = server.post_json(
        &format!("/v1/schedules/{hourly_id}/cancel"),
        &serde_json::json!({}),
    );
    assert_eq!(cancelled.json()["status"], "cancelled");
    let list = server.get("/v1/schedules").json();
    assert_eq!(list["data"].as_array().expect("list").len(), 2);

    let bad = server.post_json(
        "/v1/schedules",
        &serde_json::json!({"when": {"kind": "cron", "cron": "0 * * *", "timezone": "UTC"},
                            "run": {"input": "x", "processor": "echo"}}),
    );
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert_eq!(
        bad.json()["error"]["detail"]["errors"][0]["loc"],
        serde_json::json!(["body", "when", "cron"])
    );
    let missing = server.get("/v1/schedules/tsch_00000000000000000000000000000000");
    assert_eq!(missing.status, 404);
}
