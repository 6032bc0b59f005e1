//! A run's status and the counts of a group's runs by status.
//!
//! No I/O. The status names are the engine's own (`queued`, `running`,
//! ...); a face that spells them otherwise maps them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Status of a run. `ActionRequired` is a status hosted APIs have (a run
/// waiting on a person) that the engine never produces; it is kept so that
/// a filter on it finds nothing instead of failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    ActionRequired,
    Running,
    Completed,
    Failed,
    Cancelling,
    Cancelled,
}

impl RunStatus {
    /// Every status, in the order counts are reported.
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::ActionRequired,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelling,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::ActionRequired => "action_required",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelling => "cancelling",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// True exactly for `queued`, `running` and `cancelling`.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RunStatus::Queued | RunStatus::Running | RunStatus::Cancelling
        )
    }

    /// True for the three statuses a run never leaves (DESIGN invariant 5).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Runs of a group by status; `num_runs` is their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub num_runs: i64,
    pub queued: i64,
    pub running: i64,
    pub cancelling: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
}

impl RunCounts {
    /// True while any run is queued, running or cancelling.
    pub fn is_active(&self) -> bool {
        self.queued + self.running + self.cancelling > 0
    }

    pub fn get(&self, status: RunStatus) -> i64 {
        match status {
            RunStatus::Queued => self.queued,
            RunStatus::Running => self.running,
            RunStatus::Cancelling => self.cancelling,
            RunStatus::Completed => self.completed,
            RunStatus::Failed => self.failed,
            RunStatus::Cancelled => self.cancelled,
            RunStatus::ActionRequired => 0,
        }
    }

    pub fn add(&mut self, status: RunStatus, delta: i64) {
        match status {
            RunStatus::Queued => self.queued += delta,
            RunStatus::Running => self.running += delta,
            RunStatus::Cancelling => self.cancelling += delta,
            RunStatus::Completed => self.completed += delta,
            RunStatus::Failed => self.failed += delta,
            RunStatus::Cancelled => self.cancelled += delta,
            RunStatus::ActionRequired => {}
        }
    }
}
