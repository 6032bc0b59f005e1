//! The official TypeScript SDK against a real server: `parallel-web` 1.3.3
//! (pinned in `tests/sdk_ts/package.json` and its lock file) runs
//! `tests/sdk_ts/smoke.mjs` with node against `taskyard serve` on a free
//! loopback port and a temporary database. The script creates a group,
//! adds runs, follows the group's events to their end, reads the runs with
//! their outputs, retrieves the group and a run, and waits for a
//! standalone run's result; it exits non-zero on the first failed check.
//!
//! Needs `node` and `npm` on PATH. `npm ci` runs first when
//! `tests/sdk_ts/node_modules` is missing or older than the lock file.

#[path = "support/node.rs"]
mod node;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Time for the whole smoke script (it takes about a second).
const SMOKE_DEADLINE: Duration = Duration::from_secs(180);

#[test]
fn typescript_sdk_smoke() {
    let sdk_dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sdk_ts");
    node::ensure_node_modules(&sdk_dir);

    let tmp = tempfile::tempdir().expect("temporary directory");
    let (mut server, base_url) = node::start_server(&tmp.path().join("t.db"), &[]);

    node::run_relayed(
        "node smoke.mjs",
        Command::new("node")
            .arg(sdk_dir.join("smoke.mjs"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("TASKYARD_BASE_URL", &base_url),
        SMOKE_DEADLINE,
    );

    // The server must still be up after the script: a crash mid-way would
    // have failed the script, but one at the very end would not.
    assert!(
        matches!(server.child.try_wait(), Ok(None)),
        "taskyard serve exited during the smoke run"
    );
    drop(server);
}
