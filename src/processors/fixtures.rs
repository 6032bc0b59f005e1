//! Fixtures: recorded outputs in a JSON Lines file, one entry per line,
//! found again by a stable key of what was asked (processor, input, task
//! spec and earlier turns).
//!
//! The file is meant to be committed and reviewed: every line is one
//! entry, the entries are sorted by key and each key is there once, so
//! that recording again rewrites only the lines whose answers changed. It
//! is written whole to a temporary file and renamed over the old one, so
//! a crash leaves the old file or the new one, never half of either.
//! Knows nothing of where the outputs come from (the record/replay kind
//! does) nor of any face.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{Output, TaskSpec, Timestamp, Turn};

/// One recorded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// [`key`] of the rest: what finds this entry again.
    pub key: String,
    /// What was asked, for the reader of the file (the key decides).
    pub processor: String,
    pub input: Value,
    pub task_spec: Value,
    /// How many earlier turns the question had.
    pub turns: usize,
    /// The answer.
    pub output: Output,
    /// How long the recorded run took, in milliseconds.
    pub duration_ms: u64,
    pub recorded_at: Timestamp,
    /// The id the answer had where it was recorded, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
}

/// The key of a question: SHA-256, in hex, of its canonical JSON (object
/// keys sorted at every depth, so that the same question has the same key
/// whatever order its JSON came in).
pub fn key(processor: &str, input: &Value, task_spec: &TaskSpec, turns: &[Turn]) -> String {
    let turns: Vec<Value> = turns
        .iter()
        .map(|turn| {
            serde_json::json!({
                "input": turn.input,
                "output": turn.output.as_ref().map(|output| &output.content),
            })
        })
        .collect();
    let question = serde_json::json!({
        "processor": processor,
        "input": input,
        "task_spec": task_spec,
        "turns": turns,
    });
    let mut canonical = String::new();
    crate::model::canonical_json(&question, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The entries of one fixtures file, kept in memory and written through.
pub struct Fixtures {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Fixtures {
    /// Reads `path`; a file that is not there is empty. A line that is not
    /// an entry is an error naming the file and the line.
    pub fn open(path: &Path) -> Result<Fixtures, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(format!("cannot read fixtures {}: {error}", path.display())),
        };
        let mut entries = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry: Entry = serde_json::from_str(line).map_err(|error| {
                format!(
                    "fixtures {}, line {}: not a recorded entry ({error})",
                    path.display(),
                    index + 1
                )
            })?;
            entries.insert(entry.key.clone(), entry);
        }
        Ok(Fixtures {
            path: path.to_path_buf(),
            entries: Mutex::new(entries),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        self.entries.lock().get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds or replaces the entry of its key, and writes the file.
    pub fn put(&self, entry: Entry) -> Result<(), String> {
        let mut entries = self.entries.lock();
        entries.insert(entry.key.clone(), entry);
        let mut text = String::new();
        for entry in entries.values() {
            let line = serde_json::to_string(entry)
                .map_err(|e| format!("cannot write a fixture entry: {e}"))?;
            text.push_str(&line);
            text.push('\n');
        }
        let temporary = self.path.with_extension("jsonl.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)
        };
        write().map_err(|error| format!("cannot write fixtures {}: {error}", self.path.display()))
    }
}
