//! A shutdown leaves nothing of the engine running: after
//! `Engine::shutdown` and the last handle dropped, no thread of the engine
//! (workers, dispatcher, writer, checkpointer) is left holding the store,
//! so a caller may move or delete the database files at once.
//!
//! Alone in its test binary: it counts the process's threads by name, and
//! another test's engine in the same process would be counted too.

mod support;

use std::time::Duration;

use support::{open_with, with_workers, TestDir};
use taskyard::faces::parallel::wire::RunInput;

/// Threads of this process whose name starts with `taskyard-`.
fn engine_threads() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = entry.expect("a task").path().join("comm");
        if let Ok(name) = std::fs::read_to_string(path) {
            let name = name.trim().to_string();
            if name.starts_with("taskyard-") {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

/// Regression: a stopping scheduler joined only the workers that had
/// already exited, so idle workers, each holding the store, outlived the
/// shutdown; a bench that then renamed the database and removed its WAL
/// met "disk I/O error" on the next open.
#[test]
fn shutdown_leaves_no_engine_thread_holding_the_store() {
    assert_eq!(engine_threads(), Vec::<String>::new(), "before the engine");
    let dir = TestDir::new();
    let engine = open_with(&dir, with_workers(8));
    let run = engine
        .create_run(RunInput::new("x", "echo"))
        .expect("a run");
    engine
        .wait_for_result(&run.run_id, Duration::from_secs(10))
        .expect("it completes");
    assert!(
        engine_threads()
            .iter()
            .filter(|name| name.starts_with("taskyard-worker"))
            .count()
            == 8,
        "{:?}",
        engine_threads()
    );
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    assert_eq!(engine_threads(), Vec::<String>::new(), "after the shutdown");
    // And the files are the caller's: moved away, a new engine opens anew.
    if support::sqlite_only("a new engine on the files moved away") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", dir.db().display()));
        }
        let again = open_with(&dir, with_workers(1));
        assert!(again.get_run(&run.run_id).is_err(), "a fresh database");
        again.shutdown(Duration::from_secs(5));
    }
}
