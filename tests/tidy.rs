//! Tidiness rules over the source tree, read as plain text (issue 11):
//!
//! - every `.rs` file under `src/` opens with a `//!` line that says what
//!   the module is for;
//! - only the faces (`src/faces/`) and the server (`src/server/`) name a
//!   face's wire: `taskgroup_id`, `trun_`, `tgrp_`, `/v1/`. The engine is
//!   not neutral yet, so today's offenders are listed with their counts in
//!   `WIRE_ALLOWLIST`; the test fails when a file off the list names the
//!   wire, when a listed file names it more often, and when a listed file
//!   no longer names it at all, so the list can only shrink.
//!
//! Paths are relative to `src/`, with `/` separators. Comments, string
//! literals and test modules count the same as code.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Strings that belong to a face's wire format (Parallel's Task API).
const WIRE_STRINGS: [&str; 4] = ["taskgroup_id", "trun_", "tgrp_", "/v1/"];

/// Directories under `src/` where naming the wire is their job.
const WIRE_HOMES: [&str; 2] = ["faces/", "server/"];

/// Files outside `WIRE_HOMES` that name the wire, with how many
/// occurrences of `WIRE_STRINGS` each holds exactly. One only, for good:
/// the migration that converts rows version 1 stored in Parallel's wire
/// form (issue 11) must read that form. Nothing else may join it.
const WIRE_ALLOWLIST: &[(&str, usize)] = &[("store/migrate.rs", 15)];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively, as (path relative to `src/`
/// with `/` separators, text), sorted by path.
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let entries = fs::read_dir(dir).unwrap_or_else(|error| {
            panic!("cannot list {}: {error}", dir.display());
        });
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = fs::read_to_string(&path).unwrap_or_else(|error| {
                    panic!("cannot read {}: {error}", path.display());
                });
                let relative = path
                    .strip_prefix(root)
                    .expect("under src/")
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((relative, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn every_source_file_opens_with_a_module_doc_comment() {
    let files = rust_files(&src_dir());
    assert!(!files.is_empty(), "no .rs files under src/");
    let offenders: Vec<String> = files
        .iter()
        .filter(|(_, text)| {
            !text
                .lines()
                .next()
                .is_some_and(|line| line.starts_with("//!"))
        })
        .map(|(path, text)| {
            let first = text.lines().next().unwrap_or("");
            format!("src/{path}: first line is {first:?}")
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "every .rs file under src/ must open with a `//!` line saying what it is \
         for (no blank lines before it); these do not:\n{}",
        offenders.join("\n")
    );
}

/// Occurrences of `WIRE_STRINGS` in `text`, all strings together.
fn wire_count(text: &str) -> usize {
    WIRE_STRINGS
        .iter()
        .map(|wire| text.matches(wire).count())
        .sum()
}

#[test]
fn only_faces_and_the_server_name_a_face_wire() {
    let allowed: BTreeMap<&str, usize> = WIRE_ALLOWLIST.iter().copied().collect();
    assert_eq!(
        allowed.len(),
        WIRE_ALLOWLIST.len(),
        "a file is listed twice in WIRE_ALLOWLIST"
    );
    let found: BTreeMap<String, usize> = rust_files(&src_dir())
        .into_iter()
        .filter(|(path, _)| !WIRE_HOMES.iter().any(|home| path.starts_with(home)))
        .map(|(path, text)| (path, wire_count(&text)))
        .filter(|(_, count)| *count > 0)
        .collect();

    let mut problems = Vec::new();
    for (path, count) in &found {
        match allowed.get(path.as_str()) {
            None => problems.push(format!(
                "src/{path} names a face's wire ({count} occurrences) and is not in \
                 WIRE_ALLOWLIST: keep {WIRE_STRINGS:?} in src/faces/ or src/server/"
            )),
            Some(max) if count > max => problems.push(format!(
                "src/{path} names a face's wire {count} times, more than the {max} \
                 WIRE_ALLOWLIST allows: the list may only shrink"
            )),
            // Exact, so that a count that fell is written down and cannot
            // silently grow back to its old value.
            Some(max) if count < max => problems.push(format!(
                "src/{path} names a face's wire {count} times, fewer than the {max} \
                 WIRE_ALLOWLIST says: lower its count to {count}"
            )),
            Some(_) => {}
        }
    }
    for (path, max) in &allowed {
        if WIRE_HOMES.iter().any(|home| path.starts_with(home)) {
            problems.push(format!(
                "WIRE_ALLOWLIST lists src/{path}, which may name the wire anyway: remove it"
            ));
        } else if !found.contains_key(*path) {
            problems.push(format!(
                "src/{path} is in WIRE_ALLOWLIST (at most {max}) but no longer names a \
                 face's wire (or is gone): remove it from the list (or update its path)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "face wire strings {WIRE_STRINGS:?} outside src/faces/ and src/server/:\n{}",
        problems.join("\n")
    );
}
