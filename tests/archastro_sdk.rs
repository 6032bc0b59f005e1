//! The ArchAstro face's proof with its official client (issue 15):
//! `@archastro/sdk` 0.19.0 (pinned in `tests/archastro_sdk/package.json`
//! and its lock file) runs `tests/archastro_sdk/suite.mjs` with node
//! against `taskyard serve --test-clock` on a free loopback port, a
//! temporary database and a config file with an API key and three agents:
//! `agi_scribe` (a `command` processor, `historian.mjs`, that shows the
//! earlier turns it was given), `agi_slow` (a mock slow enough to cancel)
//! and the default `agi_core`. The script calls every method of spec
//! section 4 and exits non-zero on the first failed check.
//!
//! Needs `node` and `npm` on PATH. `npm ci` runs first when
//! `tests/archastro_sdk/node_modules` is missing or older than the lock
//! file.

#[path = "support/node.rs"]
mod node;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Time for the whole suite (it takes a few seconds).
const SUITE_DEADLINE: Duration = Duration::from_secs(240);

const API_KEY: &str = "sk_archastro_suite";

#[test]
fn archastro_typescript_sdk_suite() {
    let sdk_dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("archastro_sdk");
    node::ensure_node_modules(&sdk_dir);

    let tmp = tempfile::tempdir().expect("temporary directory");
    let config = tmp.path().join("taskyard.toml");
    let historian = sdk_dir.join("historian.mjs");
    std::fs::write(
        &config,
        format!(
            "api_keys = [\"{API_KEY}\"]\n\
             [processors.historian]\nkind = \"command\"\nargv = [\"node\", {:?}]\n\
             [processors.slow]\nkind = \"mock\"\nlatency_ms = 20000\n\
             [archastro.agents]\nagi_scribe = \"historian\"\n",
            historian.display().to_string()
        ),
    )
    .expect("config file");
    let config = config.display().to_string();
    let (mut server, base_url) = node::start_server(
        &tmp.path().join("t.db"),
        &["--config", &config, "--test-clock"],
    );

    node::run_relayed(
        "node suite.mjs",
        Command::new("node")
            .arg(sdk_dir.join("suite.mjs"))
            .current_dir(&sdk_dir)
            .env("TASKYARD_BASE_URL", &base_url)
            .env("TASKYARD_API_KEY", API_KEY),
        SUITE_DEADLINE,
    );

    // A crash at the very end would not have failed the script.
    assert!(
        matches!(server.child.try_wait(), Ok(None)),
        "taskyard serve exited during the suite"
    );
}
