//! The group, run and schedule commands (issue 16), run as the real
//! binary against an embedded database and against a running server, with
//! their `--json` output parsed: what they print is what the API holds.

#[path = "support/http.rs"]
mod client;
mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use support::{serve_child, TestDir};

fn taskyard(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskyard"))
        .args(args)
        .env_remove("PARALLEL_API_KEY")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("taskyard runs")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_of(output: Output) -> Value {
    serde_json::from_str(&ok(output)).expect("--json prints JSON")
}

/// Runs every command against `target` (`--db e.db` or `--base-url URL`),
/// on a group of 5 rows made by `enrich` first.
fn every_command(dir: &Path, target: &[&str]) {
    std::fs::write(dir.join("rows.csv"), "name\na\nb\nc\nd\ne\n").expect("input");
    let mut args = vec!["enrich", "rows.csv", "-o", "out.csv", "--quiet"];
    args.extend_from_slice(target);
    ok(taskyard(dir, &args));
    let with = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(target);
        taskyard(dir, &all)
    };

    let groups = json_of(with(&["groups", "--json"]));
    let group = &groups["data"][0];
    let id = group["taskgroup_id"]
        .as_str()
        .expect("a group id")
        .to_string();
    assert_eq!(group["status"]["num_task_runs"], 5);
    let table = ok(with(&["groups", "--inactive"]));
    assert!(table.starts_with("id ") && table.contains(&id), "{table}");
    assert!(table.contains("completed 5"), "{table}");
    assert!(!ok(with(&["groups", "--active"])).contains(&id));

    let shown = json_of(with(&["group", "show", &id, "--json"]));
    assert_eq!(
        shown["status"]["task_run_status_counts"],
        json!({"completed": 5})
    );
    let watched = ok(with(&["group", "watch", &id]));
    assert!(
        watched.trim_end().ends_with("done: completed 5"),
        "{watched}"
    );
    let events: Vec<Value> = ok(with(&["group", "watch", &id, "--json"]))
        .lines()
        .map(|line| serde_json::from_str(line).expect("an event per line"))
        .collect();
    assert!(events
        .iter()
        .any(|event| event["type"] == "task_group_status"));

    let runs = json_of(with(&[
        "runs",
        "--group",
        &id,
        "--status",
        "completed",
        "--json",
    ]));
    let listed = runs["data"].as_array().expect("runs");
    assert_eq!(listed.len(), 5);
    let run_id = listed[0]["run_id"].as_str().expect("a run id").to_string();
    assert!(
        ok(with(&["runs", "--limit", "2"])).lines().count() == 3,
        "a header and 2 rows"
    );
    let run = json_of(with(&["run", "show", &run_id, "--json"]));
    assert_eq!(run["run"]["status"], "completed");
    assert!(run["output"]["content"].is_string(), "{run}");
    assert!(run["events"]
        .as_array()
        .is_some_and(|events| !events.is_empty()));
    let human = ok(with(&["run", "show", &run_id]));
    assert!(
        human.contains("status     completed") && human.contains("output "),
        "{human}"
    );

    let cancelled = json_of(with(&["group", "cancel", &id, "--json"]));
    assert_eq!(
        cancelled["taskgroup_id"],
        json!(id),
        "nothing active to cancel"
    );

    // Errors name what was wrong and exit non-zero.
    let missing = with(&["run", "show", "trun_00000000000000000000000000000000"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let bad = with(&["runs", "--limit", "0"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_commands_work_on_an_embedded_database() {
    let dir = TestDir::new();
    every_command(dir.dir.path(), &["--db", "e.db"]);
}

#[test]
fn the_commands_work_against_a_server_and_manage_its_schedules() {
    let dir = TestDir::new();
    let config = dir.dir.path().join("taskyard.toml");
    std::fs::write(&config, "").expect("config");
    let (mut server, addr) = serve_child(&dir, &config);
    let base = format!("http://{addr}");
    every_command(dir.dir.path(), &["--base-url", &base]);

    let body = json!({"when": {"kind": "interval", "every_s": 3600},
                      "run": {"input": "hourly", "processor": "lite"}})
    .to_string();
    let made = ureq_post(&format!("{base}/v1/schedules"), &body);
    let schedule = made["schedule_id"]
        .as_str()
        .expect("a schedule id")
        .to_string();
    let target = ["--base-url", base.as_str()];
    let with = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&target);
        taskyard(dir.dir.path(), &all)
    };
    let listed = json_of(with(&["schedules", "--json"]));
    assert_eq!(listed["data"][0]["schedule_id"], json!(schedule));
    assert!(ok(with(&["schedules"])).contains("active"));
    for (verb, status) in [
        ("pause", "paused"),
        ("resume", "active"),
        ("cancel", "cancelled"),
    ] {
        let changed = json_of(with(&["schedule", verb, &schedule, "--json"]));
        assert_eq!(changed["status"], status, "{verb}");
    }
    let _ = server.kill();
    let _ = server.wait();
}

fn ureq_post(url: &str, body: &str) -> Value {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_at(rest.find('/').expect("a path"));
    let answer = client::send(
        addr.parse().expect("an address"),
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert!(answer.status < 300, "{}", answer.text());
    answer.json()
}
