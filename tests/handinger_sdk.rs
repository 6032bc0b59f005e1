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

#[test]
fn handinger_sdk_suite() {
    venv::run_pytest(
        "handinger-sdk-venv",
        "tests/handinger_sdk/requirements.txt",
        "tests/handinger_sdk",
        std::path::Path::new(env!("CARGO_BIN_EXE_taskyard")),
    );
}
