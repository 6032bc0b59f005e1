//! A group of runs and its status, kept current in the same transaction as
//! each run change (DESIGN invariant 6).
//!
//! No I/O; the engine's names (`id`, `counts`), mapped by each face.

use serde::{Deserialize, Serialize};

use super::{JsonObject, RunCounts, Timestamp};

/// A group's counts and activity as of `modified_at`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub counts: RunCounts,
    pub modified_at: Timestamp,
}

impl GroupStatus {
    /// True while any of its runs is active.
    pub fn is_active(&self) -> bool {
        self.counts.is_active()
    }
}

/// A group of runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub metadata: Option<JsonObject>,
    pub created_at: Timestamp,
    pub status: GroupStatus,
}
