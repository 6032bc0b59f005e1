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

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory: the binary lives in `<target>/<profile>/`.
fn target_dir(binary: &Path) -> PathBuf {
    binary
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root().join("target"))
}

fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// Makes sure `venv` holds exactly the packages of `requirements`, and
/// answers its Python.
fn ensure_venv(venv: &Path, requirements: &Path) -> PathBuf {
    let python = venv.join("bin").join("python");
    let stamp = venv.join("requirements.txt");
    let wanted = fs::read_to_string(requirements)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", requirements.display()));
    let installed = fs::read_to_string(&stamp).ok();
    if python.exists() && installed.as_deref() == Some(wanted.as_str()) {
        return python;
    }
    eprintln!(
        "sdk: installing {} into {}",
        requirements.display(),
        venv.display()
    );
    // Anything half-made (an install that was cut short) goes first; the
    // copy of requirements.txt is written only once pip has succeeded.
    if venv.exists() {
        fs::remove_dir_all(venv)
            .unwrap_or_else(|e| panic!("cannot remove {}: {e}", venv.display()));
    }
    run(
        Command::new("python3").arg("-m").arg("venv").arg(venv),
        "python3 -m venv (is python3 with the venv module installed?)",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
            ])
            .arg(requirements),
        "pip install -r tests/sdk/requirements.txt",
    );
    fs::write(&stamp, &wanted).unwrap_or_else(|e| panic!("cannot write {}: {e}", stamp.display()));
    python
}

#[test]
fn python_sdk_suite() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_taskyard"));
    let root = root();
    let venv = target_dir(&binary).join("sdk-venv");
    let python = ensure_venv(&venv, &root.join("tests/sdk/requirements.txt"));

    // The child inherits stdout and stderr, so pytest's output streams
    // past cargo's capture as it is written.
    let status = Command::new(&python)
        .args(["-m", "pytest", "tests/sdk", "-q", "-p", "no:cacheprovider"])
        .current_dir(&root)
        .env("TASKYARD_BIN", &binary)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .status()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    assert!(
        status.success(),
        "the Python SDK suite (tests/sdk) failed: pytest {status}"
    );
}
