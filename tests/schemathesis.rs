//! schemathesis against `/openapi.json`, run from `cargo test` (issue 5,
//! "Bad input"): requests generated from the document reach an in-process
//! server, and every answer must be below 500 and match the document
//! (status code, content type, headers, body schema), valid requests must
//! be accepted and invalid ones refused.
//!
//! This test prepares and launches it, as `tests/sdk.rs` does for the SDK
//! suite: a virtual environment at `<target>/schemathesis-venv` (made with
//! `python3 -m venv`, filled with `pip install -r
//! tests/schemathesis/requirements.txt`), remade when that file changes or
//! an install was cut short. It fails when schemathesis reports a failure,
//! and prints how many test cases schemathesis generated.
//!
//! Bounded: `TASKYARD_SCHEMATHESIS_EXAMPLES` examples per operation and
//! phase (20 by default, about a minute on 2 cores), a fixed seed
//! (`TASKYARD_SCHEMATHESIS_SEED` changes it), 10 s per request. The three
//! event streams and `/result` are left out: they hold a request open for
//! as long as a run is active or the `timeout` the generator picks (up to
//! an hour), so schemathesis would wait on them rather than test anything;
//! `tests/http.rs`, `tests/openapi.rs` and the SDK suites cover them.
//!
//! Needs `python3` (3.9 or later, with the `venv` module) and the Python
//! package index the first time, or after `requirements.txt` changes.

#[path = "support/http.rs"]
mod client;
mod support;
#[path = "support/venv.rs"]
mod venv;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use client::TestServer;

/// Examples per operation and phase unless `TASKYARD_SCHEMATHESIS_EXAMPLES`
/// says otherwise.
const EXAMPLES_DEFAULT: u32 = 20;

/// The seed unless `TASKYARD_SCHEMATHESIS_SEED` says otherwise: CI runs the
/// same cases each time, so a red run is reproducible.
const SEED_DEFAULT: u64 = 5;

/// The longest one request may take before schemathesis counts it as a
/// failure: well above any answer of the operations tested, so that a hang
/// is a failure and not a stuck test.
const REQUEST_TIMEOUT_S: u32 = 10;

/// Operations left out, as a regular expression on the path: the long
/// requests (see the file comment), and the schedules list and create,
/// whose `when.cron` and `when.timezone` are strings whose validity JSON
/// Schema cannot express (a schema-valid pattern may still be a 422);
/// `tests/schedules.rs` covers them.
const EXCLUDED_PATHS: &str = "/(result|events)$|/schedules$";

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} does not parse")),
        Err(_) => default,
    }
}

/// The number of test cases from schemathesis's summary line, e.g.
/// `  2993 generated, 2993 passed`.
fn generated_count(line: &str) -> Option<u64> {
    let (count, rest) = line.trim().split_once(' ')?;
    rest.starts_with("generated").then(|| count.parse().ok())?
}

#[test]
fn every_answer_matches_the_openapi_document() {
    let target = venv::target_dir();
    let bin = venv::ensure("schemathesis-venv", "tests/schemathesis/requirements.txt");
    let examples: u32 = setting("TASKYARD_SCHEMATHESIS_EXAMPLES", EXAMPLES_DEFAULT);
    let seed: u64 = setting("TASKYARD_SCHEMATHESIS_SEED", SEED_DEFAULT);

    let server = TestServer::start();
    // Reports and caches land here, not in the repository.
    let work = target.join("schemathesis-run");
    fs::create_dir_all(&work).expect("work directory");
    let mut child = Command::new(bin.join("schemathesis"))
        .arg("run")
        .arg(format!("http://{}/openapi.json", server.addr))
        // Every check: none of them needs something this server lacks
        // (no auth is configured, so `ignored_auth` has nothing to find).
        .args(["--checks", "all"])
        .args(["--exclude-path-regex", EXCLUDED_PATHS])
        .arg(format!("--max-examples={examples}"))
        .arg(format!("--seed={seed}"))
        .arg(format!("--request-timeout={REQUEST_TIMEOUT_S}"))
        .args(["--generation-database", "none", "--no-color"])
        .current_dir(&work)
        // hooks.py: generated run bodies leave out previous_interaction_id
        // (it must name a run the server holds; see the file).
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis"),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start schemathesis: {e}"));

    // Passed through line by line, and the summary's count kept.
    let mut generated = None;
    let mut after_test_cases = false;
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("schemathesis output");
        println!("{line}");
        if line.trim() == "Test cases:" {
            after_test_cases = true;
        } else if after_test_cases && generated.is_none() {
            generated = generated_count(&line);
        }
    }
    let status = child.wait().expect("schemathesis exits");
    let generated = generated.expect("schemathesis printed no test case count");
    println!(
        "schemathesis: {generated} test cases generated ({examples} examples per operation \
         and phase, seed {seed})"
    );
    assert!(
        status.success(),
        "schemathesis found failures (exit {status}); its report is above"
    );
    assert!(generated > 0, "schemathesis generated no test case");
    let healthy = server.get("/healthz");
    assert_eq!(
        healthy.status,
        200,
        "health after the run: {}",
        healthy.text()
    );
}
