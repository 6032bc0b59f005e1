//! Python virtual environments for the tests that drive Python tools
//! (`tests/sdk.rs`, `tests/handinger_sdk.rs`, `tests/schemathesis.rs`): one
//! per tool under cargo's
//! target directory, filled from a pinned `requirements.txt`, and made
//! anew when that file changes or an install was cut short. Included with
//! `#[path = "support/venv.rs"] mod venv;`.
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory, from where this test binary lives
/// (`<target>/<profile>/deps/`).
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| root().join("target"))
}

/// Runs a command to its end; fails the test, naming `what`, unless it
/// exits 0.
pub fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// Makes sure `<target>/<name>` holds exactly the packages of
/// `requirements` (relative to the repository root), and answers its `bin`
/// directory. A copy of the requirements inside it records what was
/// installed; it is written only once pip has succeeded.
pub fn ensure(name: &str, requirements: &str) -> PathBuf {
    let venv = target_dir().join(name);
    let bin = venv.join("bin");
    let stamp = venv.join("requirements.txt");
    let wanted = fs::read_to_string(root().join(requirements))
        .unwrap_or_else(|e| panic!("cannot read {requirements}: {e}"));
    let installed = fs::read_to_string(&stamp).ok();
    if bin.join("python").exists() && installed.as_deref() == Some(wanted.as_str()) {
        return bin;
    }
    eprintln!("{name}: installing {requirements} into {}", venv.display());
    // Anything half-made (an install that was cut short) goes first.
    if venv.exists() {
        fs::remove_dir_all(&venv)
            .unwrap_or_else(|e| panic!("cannot remove {}: {e}", venv.display()));
    }
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv (is python3 with the venv module installed?)",
    );
    run(
        Command::new(bin.join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
            ])
            .arg(root().join(requirements)),
        &format!("pip install -r {requirements}"),
    );
    fs::write(&stamp, &wanted).unwrap_or_else(|e| panic!("cannot write {}: {e}", stamp.display()));
    bin
}

/// Runs the pytest suite in `suite` (a directory under the repository
/// root) from the environment `name` made from `requirements`, against the
/// `taskyard` binary at `binary` (`TASKYARD_BIN`). pytest's output streams
/// past cargo's capture as it is written; fails unless pytest exits 0.
pub fn run_pytest(name: &str, requirements: &str, suite: &str, binary: &std::path::Path) {
    let python = ensure(name, requirements).join("python");
    let status = Command::new(&python)
        .args(["-m", "pytest", suite, "-q", "-p", "no:cacheprovider"])
        .current_dir(root())
        .env("TASKYARD_BIN", binary)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .status()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    assert!(
        status.success(),
        "the pytest suite {suite} failed: pytest {status}"
    );
}
