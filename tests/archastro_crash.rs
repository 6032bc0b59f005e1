//! `kill -9` while ArchAstro sessions and routine runs are active (issue
//! 15): after a restart on the same database every acknowledged session
//! completes with each acknowledged turn once and in order, every invoked
//! and scheduled routine run completes, each id resolves on this face and
//! its runs on the Parallel face, and the schedule that fired before the
//! kill fired once, and fires once more on its next time.

#[path = "support/http.rs"]
mod client;
#[path = "support/node.rs"]
mod node;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::{wait_for, TestDir};
use taskyard::faces::archastro::ids;

const DEADLINE: Duration = Duration::from_secs(60);

fn call(base: &str, method: &str, path: &str, body: Option<&Value>) -> client::Response {
    let addr = base
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let body = body.map(Value::to_string);
    client::send(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_deref().map(str::as_bytes),
    )
}

fn get(base: &str, path: &str) -> Value {
    let answer = call(base, "GET", path, None);
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    answer.json()
}

fn routine_runs(base: &str, routine: &str) -> Vec<Value> {
    get(base, &format!("/api/v1/agent_routines/{routine}/runs"))["data"]
        .as_array()
        .expect("data")
        .clone()
}

/// The engine runs of a session's turns, in order, read from the database.
fn session_runs(dir: &TestDir, session: &str) -> Vec<String> {
    support::stored(dir)
        .rows(
            "SELECT run_id FROM interaction_turns WHERE interaction = ?1 ORDER BY turn",
            &[&format!("archastro:{session}")],
        )
        .into_iter()
        .map(|row| row[0].clone().expect("a run id"))
        .collect()
}

#[test]
fn acknowledged_sessions_and_routine_runs_complete_after_kill_9() {
    let dir = TestDir::new();
    // Slow enough that turns and runs are running at the kill.
    let config = support::config_file(
        &dir,
        "[processors.core]\nkind = \"mock\"\nlatency_ms = 400\n",
    );
    let config = config.display().to_string();
    let args = ["--config", config.as_str(), "--test-clock"];
    let (mut server, base) = node::start_server(&dir.db(), &args);

    // Session id -> the turns acknowledged (1 + messages).
    let mut sessions: BTreeMap<String, usize> = BTreeMap::new();
    for index in 0..8 {
        let created = call(
            &base,
            "POST",
            "/api/v1/agent_sessions",
            Some(&json!({"agent": "agi_core", "instructions": format!("question {index}")})),
        );
        assert_eq!(created.status, 201, "{}", created.text());
        let id = created.json()["id"].as_str().expect("id").to_string();
        let mut turns = 1;
        if index % 3 == 0 {
            // A follow-up, queued behind the running first turn.
            let message = call(
                &base,
                "POST",
                &format!("/api/v1/agent_sessions/{id}/message"),
                Some(&json!({"content": "and then?"})),
            );
            assert_eq!(message.status, 200, "{}", message.text());
            turns += 1;
        }
        sessions.insert(id, turns);
    }
    let made = call(
        &base,
        "POST",
        "/api/v1/agents/agi_core/agent_routines",
        Some(
            &json!({"name": "hourly", "handler_type": "preset", "preset_name": "do_task",
                     "preset_config": {"instructions": "Tick"}, "schedule": "0 * * * *",
                     "status": "active"}),
        ),
    );
    assert_eq!(made.json()["status"], "active", "{}", made.text());
    let routine = made.json()["id"].as_str().expect("id").to_string();
    let mut invoked = Vec::new();
    for index in 0..3 {
        let run = call(
            &base,
            "POST",
            &format!("/api/v1/agent_routines/{routine}/invoke"),
            Some(&json!({"message": format!("now {index}")})),
        );
        assert_eq!(run.status, 200, "{}", run.text());
        invoked.push(run.json()["id"].as_str().expect("id").to_string());
    }
    let moved = node::post_clock(&base, 3_600);
    assert_eq!(moved, 200);
    wait_for("the scheduled fire", DEADLINE, || {
        routine_runs(&base, &routine)
            .iter()
            .any(|run| run["payload"] == json!({}))
    });
    wait_for("a running turn", DEADLINE, || {
        sessions
            .keys()
            .any(|id| get(&base, &format!("/api/v1/agent_sessions/{id}"))["status"] == "running")
    });
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reaped");

    let (mut server, base) = node::start_server(&dir.db(), &args);
    for (id, turns) in &sessions {
        let path = format!("/api/v1/agent_sessions/{id}");
        wait_for(&format!("session {id} completed"), DEADLINE, || {
            get(&base, &path)["status"] == "completed"
        });
        assert_eq!(get(&base, &path)["id"], id.as_str());
        let runs = session_runs(&dir, id);
        assert_eq!(runs.len(), *turns, "each acknowledged turn once: {runs:?}");
        for run in runs {
            let parallel = get(&base, &format!("/v1/tasks/runs/trun_{run}"));
            assert_eq!(parallel["status"], "completed");
            assert_eq!(parallel["metadata"]["archastro_session"], id.as_str());
        }
    }
    wait_for("every routine run completed", DEADLINE, || {
        routine_runs(&base, &routine)
            .iter()
            .all(|run| run["status"] == "completed")
    });
    let runs = routine_runs(&base, &routine);
    let scheduled = runs
        .iter()
        .filter(|run| run["payload"] == json!({}))
        .count();
    assert_eq!(
        scheduled, 1,
        "the fire before the kill happened once: {runs:?}"
    );
    for id in &invoked {
        assert!(
            runs.iter().any(|run| run["id"] == id.as_str()),
            "{id} listed"
        );
        let hex = ids::run_of("arr_", id).expect("an arr_ id");
        let parallel = get(&base, &format!("/v1/tasks/runs/trun_{hex}"));
        assert_eq!(parallel["status"], "completed");
        assert_eq!(
            get(&base, &format!("/api/v1/agent_routines/runs/{id}"))["status"],
            "completed"
        );
    }

    // The restarted clock starts at the real time again: two hours on is
    // past the schedule's next time, which fires once.
    assert_eq!(node::post_clock(&base, 2 * 3_600), 200);
    wait_for("the next scheduled fire", DEADLINE, || {
        let runs = routine_runs(&base, &routine);
        runs.iter()
            .filter(|run| run["payload"] == json!({}))
            .count()
            == 2
            && runs.iter().all(|run| run["status"] == "completed")
    });
    assert!(
        matches!(server.child.try_wait(), Ok(None)),
        "the server is up"
    );
    server.child.kill().expect("stopped");
}
