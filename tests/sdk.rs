//! The Python SDK proof, run from `cargo test`: the pytest suite in
//! `tests/sdk/` drives the built `taskyard` binary with the official
//! `parallel-web` Python SDK, at the version pinned in
//! `tests/sdk/requirements.txt`, exactly as a user's code would.
//!
//! This test only prepares and launches it. It keeps a virtual environment
//! at `<target>/sdk-venv` (made with `python3 -m venv`, filled with
//! `pip install -r tests/sdk/requirements.txt`), with a copy of the
//! requirements it was installed from inside it; when `requirements.txt`
//! changes, or an install was cut short, the environment is made anew. Then
//! it runs `python -m pytest tests/sdk` with `TASKYARD_BIN` naming the
//! binary cargo built for this test, lets pytest's output through as it
//! comes, and fails unless pytest exits 0.
//!
//! Needs `python3` (3.9 or later, with the `venv` module) and the Python
//! package index the first time, or after `requirements.txt` changes.

#[path = "support/venv.rs"]
mod venv;

#[test]
fn python_sdk_suite() {
    venv::run_pytest(
        "sdk-venv",
        "tests/sdk/requirements.txt",
        "tests/sdk",
        std::path::Path::new(env!("CARGO_BIN_EXE_taskyard")),
    );
}
