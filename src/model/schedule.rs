//! Schedules: a run template and when to make runs of it.
//!
//! No I/O. The engine's own noun beside groups and runs; faces map it to
//! their wire (Handinger's scheduled workers, ArchAstro's routines).

use serde::{Deserialize, Serialize};

use super::{RunRequest, Timestamp};

/// The key of a skipped fire's error detail (`{"skipped": true}`): the
/// run an exclusive schedule recorded, already cancelled, because its
/// previous run was still active.
pub const SKIPPED_DETAIL: &str = "skipped";

/// When a schedule makes its runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum When {
    /// Once, at a time.
    At { at: Timestamp },
    /// Once, this long after the schedule was made.
    Delay { delay_ms: u64 },
    /// At each time a 5-field cron expression names, in a time zone (an
    /// IANA name such as `Europe/Paris`, or `UTC`).
    Cron { cron: String, timezone: String },
    /// Every `every_s` seconds from the schedule's creation.
    Interval { every_s: u64 },
}

/// Where a schedule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleState {
    /// Fires when due.
    Active,
    /// Fires no more until resumed.
    Paused,
    /// A one-time schedule that has fired.
    Done,
    /// Removed: fires no more, ever.
    Cancelled,
}

impl ScheduleState {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleState::Active => "active",
            ScheduleState::Paused => "paused",
            ScheduleState::Done => "done",
            ScheduleState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<ScheduleState> {
        [
            ScheduleState::Active,
            ScheduleState::Paused,
            ScheduleState::Done,
            ScheduleState::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A schedule to make.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRequest {
    pub when: When,
    /// What each run is asked to do.
    pub run: RunRequest,
}

/// A schedule as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: String,
    pub when: When,
    pub state: ScheduleState,
    /// The processor its runs ask for.
    pub processor: String,
    /// When it fires next, while active.
    pub next_at: Option<Timestamp>,
    /// Runs it has made.
    pub fires: u32,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}
