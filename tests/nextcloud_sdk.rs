//! The Nextcloud face's proof with a real client (issue 14): runs `pytest
//! tests/nextcloud_sdk` with nc-py-api 0.30.3 (its generic `ocs()` call,
//! the way a user drives TaskProcessing, spec 5.1) against the built
//! binary, from a virtual environment made from
//! `tests/nextcloud_sdk/requirements.txt` (`<target>/nextcloud-sdk-venv`,
//! remade when that file changes).
//!
//! Needs `python3` with `venv`, and the Python package index the first
//! time or after the requirements change.

#[path = "support/venv.rs"]
mod venv;

#[test]
fn nextcloud_sdk_suite() {
    venv::run_pytest(
        "nextcloud-sdk-venv",
        "tests/nextcloud_sdk/requirements.txt",
        "tests/nextcloud_sdk",
        std::path::Path::new(env!("CARGO_BIN_EXE_taskyard")),
    );
}
