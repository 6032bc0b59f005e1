//! The Handinger face's proof with its official client (issue 14): runs
//! `pytest tests/handinger_sdk` with the `handinger` Python SDK 0.18.0 in
//! strict response validation mode against the built binary, from a
//! virtual environment made from `tests/handinger_sdk/requirements.txt`
//! (`<target>/handinger-sdk-venv`, remade when that file changes).
//!
//! Needs `python3` with `venv`, and the Python package index the first
//! time or after the requirements change.

#[path = "support/venv.rs"]
mod venv;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn handinger_sdk_suite() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_taskyard"));
    let root = venv::root();
    let python =
        venv::ensure("handinger-sdk-venv", "tests/handinger_sdk/requirements.txt").join("python");
    let status = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "tests/handinger_sdk",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(&root)
        .env("TASKYARD_BIN", &binary)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .status()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    assert!(
        status.success(),
        "the Handinger SDK suite (tests/handinger_sdk) failed: pytest {status}"
    );
}
