//! Storage faults over HTTP: a database that cannot grow and a write lock
//! held by another process make writes answer 503 with `retry-after` in
//! the error envelope, never hang or half-write, while reads keep working;
//! the runs already acknowledged finish once space returns: after a
//! restart with a larger budget, and, on a real filesystem that fills up
//! (a small tmpfs), without any restart at all.

#[path = "support/http.rs"]
mod client;
mod support;

use std::time::Duration;

use client::TestServer;
use serde_json::{json, Value};
use support::*;
use taskyard::Config;

/// A 503 in the spec's envelope with retry headers (spec 1.7).
fn assert_retry_later(response: &client::Response, what: &str) {
    assert_eq!(response.status, 503, "{what}: {}", response.text());
    let seconds: u64 = response
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no retry-after"));
    assert!((1..=60).contains(&seconds), "{what}: retry-after {seconds}");
    assert!(response.header("retry-after-ms").is_some(), "{what}");
    let body: Value = serde_json::from_slice(&response.body).expect("JSON envelope");
    assert_eq!(body["type"], "error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(what)),
        "{body}"
    );
}

fn runs_in(dir: &TestDir) -> i64 {
    sqlite(dir)
        .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
        .expect("count")
}

#[test]
fn a_database_that_cannot_grow_refuses_writes_with_503_and_keeps_reading() {
    if !support::sqlite_only(
        "a_database_that_cannot_grow_refuses_writes_with_503_and_keeps_reading",
    ) {
        return;
    }
    let dir = TestDir::new();
    let config = Config {
        database_bytes_max: Some(400 * 1024),
        ..taskyard::faces::default_config()
    };
    let server = TestServer::start_on_engine(open_with(&dir, config), |_| {});
    let group = server.post_json("/v1/tasks/groups", &json!({}));
    assert_eq!(group.status, 200);
    let group_id = group.json()["taskgroup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let text = "x".repeat(2_000);
    let batch = json!({"inputs": (0..20).map(|_| json!({"input": text, "processor": "lite"})).collect::<Vec<_>>()});
    let mut acknowledged = 0;
    let full = loop {
        let response = server.post_json(&format!("/v1/tasks/groups/{group_id}/runs"), &batch);
        if response.status != 200 {
            break response;
        }
        acknowledged += 20;
        assert!(acknowledged < 10_000, "the database never filled up");
    };
    assert_retry_later(&full, "storage full");
    // Smaller writes may still fit in the last free pages, then are refused
    // too; nothing of a refused request is written.
    let mut standalone = 0;
    let single = loop {
        let response = server.post_json(
            "/v1/tasks/runs",
            &json!({"input": text, "processor": "lite"}),
        );
        if response.status != 202 {
            break response;
        }
        standalone += 1;
        assert!(standalone < 1_000, "single runs never filled the database");
    };
    assert_retry_later(&single, "storage full");
    assert_eq!(
        runs_in(&dir),
        acknowledged + standalone,
        "every acknowledged run and no other"
    );
    // Reads keep working.
    let read = server.get(&format!("/v1/tasks/groups/{group_id}"));
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["status"]["num_task_runs"], json!(acknowledged));
    assert_eq!(server.get("/healthz").status, 200);
    drop(server);

    // Space returns (a larger budget): every acknowledged run finishes.
    let server = TestServer::start_on_engine(open(&dir), |_| {});
    let path = format!("/v1/tasks/groups/{group_id}");
    wait_for(
        "the acknowledged runs finish",
        Duration::from_secs(60),
        || server.get(&path).json()["status"]["is_active"] == json!(false),
    );
    let status = server.get(&path).json()["status"].clone();
    assert_eq!(
        status["task_run_status_counts"]["completed"],
        json!(acknowledged),
        "{status}"
    );
    let again = server.post_json(
        "/v1/tasks/runs",
        &json!({"input": "after", "processor": "lite"}),
    );
    assert_eq!(again.status, 202, "writes work again: {}", again.text());
}

#[test]
fn a_write_lock_held_elsewhere_gives_503_after_the_busy_timeout_not_a_hang() {
    if !support::sqlite_only(
        "a_write_lock_held_elsewhere_gives_503_after_the_busy_timeout_not_a_hang",
    ) {
        return;
    }
    let dir = TestDir::new();
    let config = Config {
        busy_timeout: Duration::from_millis(200),
        ..taskyard::faces::default_config()
    };
    let server = TestServer::start_on_engine(open_with(&dir, config), |_| {});
    let blocker = rusqlite::Connection::open(dir.db()).expect("second connection");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("write lock");
    let started = std::time::Instant::now();
    let refused = server.post_json("/v1/tasks/groups", &json!({}));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the busy timeout"
    );
    assert_retry_later(&refused, "storage busy");
    assert_eq!(
        server.get("/healthz").status,
        200,
        "reads work while locked"
    );
    blocker.execute_batch("ROLLBACK").expect("release");
    assert_eq!(server.post_json("/v1/tasks/groups", &json!({})).status, 200);
}

/// A tmpfs mounted for one test, unmounted on drop (even when it fails).
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    /// Mounting needs root; the CI machine runs as root. Elsewhere the test
    /// says why it did not run instead of passing silently.
    fn mount(megabytes: u64) -> Option<SmallFilesystem> {
        let dir = tempfile::tempdir().expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(status) if status.success() => Some(SmallFilesystem { dir }),
            other => {
                assert!(
                    !is_root(),
                    "running as root, yet a tmpfs could not be mounted: {other:?}"
                );
                None
            }
        }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

#[test]
fn a_full_filesystem_refuses_writes_and_recovers_without_a_restart_when_space_returns() {
    if !support::sqlite_only(
        "a_full_filesystem_refuses_writes_and_recovers_without_a_restart_when_space_returns",
    ) {
        return;
    }
    let Some(fs) = SmallFilesystem::mount(16) else {
        eprintln!("not run: mounting a tmpfs needs root");
        return;
    };
    let db = fs.path().join("taskyard.db");
    let engine = taskyard::faces::parallel::Api::new(
        taskyard::Engine::open(&db, taskyard::faces::default_config()).expect("engine on tmpfs"),
    );
    let server = TestServer::start_on_engine(engine, |_| {});
    let group = server.post_json("/v1/tasks/groups", &json!({}));
    assert_eq!(group.status, 200);
    let group_id = group.json()["taskgroup_id"]
        .as_str()
        .expect("id")
        .to_string();
    // Leave about 3 MiB free: a few batches fit, then the disk is full.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![1u8; 13 * 1024 * 1024]).expect("filler");
    let text = "x".repeat(2_000);
    let batch = json!({"inputs": (0..50).map(|_| json!({"input": text, "processor": "lite"})).collect::<Vec<_>>()});
    let runs_path = format!("/v1/tasks/groups/{group_id}/runs");
    let mut acknowledged = 0;
    let full = loop {
        let response = server.post_json(&runs_path, &batch);
        if response.status != 200 {
            break response;
        }
        acknowledged += 50;
        assert!(acknowledged < 20_000, "the filesystem never filled up");
    };
    assert!(acknowledged > 0, "no batch fitted before the disk was full");
    assert_retry_later(&full, "storage full");
    let path = format!("/v1/tasks/groups/{group_id}");
    let read = server.get(&path);
    assert_eq!(
        read.status,
        200,
        "reads work on a full disk: {}",
        read.text()
    );
    assert_eq!(read.json()["status"]["num_task_runs"], json!(acknowledged));

    // Space returns; the same server takes writes again and finishes every
    // acknowledged run (finishes refused meanwhile are retried).
    std::fs::remove_file(&filler).expect("free space");
    let mut accepted_after = None;
    wait_for("writes are accepted again", Duration::from_secs(30), || {
        let response = server.post_json(&runs_path, &batch);
        if response.status == 200 {
            accepted_after = Some(50);
            true
        } else {
            assert_eq!(response.status, 503, "{}", response.text());
            false
        }
    });
    let total = acknowledged + accepted_after.expect("accepted");
    wait_for(
        "every acknowledged run finishes",
        Duration::from_secs(60),
        || server.get(&path).json()["status"]["is_active"] == json!(false),
    );
    let status = server.get(&path).json()["status"].clone();
    assert_eq!(status["num_task_runs"], json!(total), "{status}");
    assert_eq!(
        status["task_run_status_counts"]["completed"],
        json!(total),
        "{status}"
    );
    drop(server);
    let check = rusqlite::Connection::open(&db).expect("reopen");
    let integrity: String = check
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    let stored: i64 = check
        .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
        .expect("count");
    assert_eq!(stored, total, "every acknowledged run and no other");
}

/// Regression (issue 11, bug 6): a status the code does not know (written
/// by a newer taskyard, or by hand) read as `failed`. It is an error now
/// that names the row and the text, an internal error (500) to a client;
/// and opening such a database does not trip recovery.
#[test]
fn unknown_stored_status_is_an_error_naming_the_row() {
    if !support::sqlite_only("unknown_stored_status_is_an_error_naming_the_row") {
        return;
    }
    let dir = TestDir::new();
    let (run_id, run_seq) = {
        let engine = open(&dir);
        let run = engine
            .create_run(taskyard::faces::parallel::wire::RunInput::new("x", "echo"))
            .expect("run");
        engine
            .wait_for_result(&run.run_id, Duration::from_secs(10))
            .expect("completes");
        engine.shutdown(Duration::from_secs(5));
        let seq: i64 = sqlite(&dir)
            .query_row(
                "SELECT seq FROM runs WHERE id = ?1",
                [support::stored_id(&run.run_id)],
                |row| row.get(0),
            )
            .expect("seq");
        (run.run_id, seq)
    };
    let db = rusqlite::Connection::open(dir.db()).expect("database opens");
    db.execute(
        "UPDATE runs SET status = 'paused' WHERE id = ?1",
        [support::stored_id(&run_id)],
    )
    .expect("status written");
    drop(db);

    let engine = open(&dir);
    assert_eq!(engine.recovered(), taskyard::store::Recovered::default());
    let check = |what: &str, error: taskyard::Error| {
        let message = match &error {
            taskyard::Error::Internal(message) => message.clone(),
            other => panic!("{what}: {other:?}"),
        };
        // The row as stored: the engine's id, without the wire's prefix.
        let stored_id = support::stored_id(&run_id);
        for part in ["runs", &stored_id, &format!("seq {run_seq}"), "'paused'"] {
            assert!(message.contains(part), "{what}: {message:?} lacks {part:?}");
        }
        assert_eq!(
            taskyard::faces::parallel::ApiError::from(error).status,
            500,
            "{what}"
        );
    };
    check(
        "get",
        engine
            .get_run(&run_id)
            .expect_err("a status this taskyard does not know"),
    );
    check(
        "list",
        engine
            .list_runs(&taskyard::faces::parallel::ListQuery {
                limit: 10,
                ..taskyard::faces::parallel::ListQuery::default()
            })
            .expect_err("a page with that run"),
    );
    engine.shutdown(Duration::from_secs(5));
}
