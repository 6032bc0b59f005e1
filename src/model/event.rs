//! Events: what the append-only log records, in the engine's own form.
//!
//! A stored event is one of [`EventData`]'s kinds, written as the engine's
//! JSON; no face's event shape is stored. Each face renders an event in
//! its wire when it sends it, and an [`Event`] keeps each face's rendering
//! once made ([`Event::rendered`]), so that the 1,000 followers of a group
//! share one rendering per event instead of making 1,000.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::{GroupStatus, Output, Run, Timestamp};

/// Faces that can keep a rendering of an event, at most: each face's
/// rendering has its slot (`crate::faces` hands them out).
pub const RENDER_SLOTS_MAX: usize = 4;

/// The kind of a progress message a processor (or the engine) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressKind {
    /// What the processor means to do.
    Plan,
    /// A search it made.
    Search,
    /// A result it found.
    Result,
    /// A tool it called.
    ToolCall,
    /// The run's execution: an attempt started.
    ExecStatus,
}

impl ProgressKind {
    pub const ALL: [ProgressKind; 5] = [
        ProgressKind::Plan,
        ProgressKind::Search,
        ProgressKind::Result,
        ProgressKind::ToolCall,
        ProgressKind::ExecStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProgressKind::Plan => "plan",
            ProgressKind::Search => "search",
            ProgressKind::Result => "result",
            ProgressKind::ToolCall => "tool_call",
            ProgressKind::ExecStatus => "exec_status",
        }
    }
}

/// What an event says. A run status is larger than the rest; events live
/// behind an `Arc` (one per event, shared by every follower), so boxing it
/// would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventData {
    /// A run reached `run.status`, as recorded then. A run stream's first
    /// and last events are made this way from the run's row; the last one
    /// of a completed run carries its output.
    RunStatus {
        run: Run,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Output>,
    },
    /// A group's counts changed in a way its followers are told of: runs
    /// were added, or it became inactive.
    GroupStatus { status: GroupStatus },
    /// A progress message of a running run.
    Progress {
        progress: ProgressKind,
        message: String,
        at: Timestamp,
    },
    /// How far a running run has come, `meter` from 0 to 100, with the
    /// processor's own named counters (sources read, tokens, ...).
    Stats {
        meter: f64,
        counters: BTreeMap<String, u64>,
    },
}

impl EventData {
    /// The kind's name, as the log's `type` column holds it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            EventData::RunStatus { .. } => EventKind::RunStatus.as_str(),
            EventData::GroupStatus { .. } => EventKind::GroupStatus.as_str(),
            EventData::Progress { .. } => EventKind::Progress.as_str(),
            EventData::Stats { .. } => EventKind::Stats.as_str(),
        }
    }
}

/// The kinds of event the log holds (its `type` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    RunStatus,
    GroupStatus,
    Progress,
    Stats,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunStatus => "run.status",
            EventKind::GroupStatus => "group.status",
            EventKind::Progress => "run.progress",
            EventKind::Stats => "run.stats",
        }
    }
}

/// One event of a stream: its log id (the resumable cursor; `None` where
/// the stream is not resumable, as a run's is not) and what it says.
/// Clones share the event and its renderings.
#[derive(Clone)]
pub struct Event {
    inner: Arc<Inner>,
}

struct Inner {
    id: Option<u64>,
    data: EventData,
    rendered: [OnceLock<Box<[u8]>>; RENDER_SLOTS_MAX],
}

impl Event {
    pub fn new(id: Option<u64>, data: EventData) -> Event {
        Event {
            inner: Arc::new(Inner {
                id,
                data,
                rendered: Default::default(),
            }),
        }
    }

    pub fn id(&self) -> Option<u64> {
        self.inner.id
    }

    pub fn data(&self) -> &EventData {
        &self.inner.data
    }

    /// The rendering of face slot `slot`, made by `render` the first time
    /// it is asked for and kept with the event. `slot` must be below
    /// [`RENDER_SLOTS_MAX`].
    pub fn rendered(&self, slot: usize, render: impl FnOnce(&Event) -> Vec<u8>) -> &[u8] {
        assert!(slot < RENDER_SLOTS_MAX, "render slot {slot} out of range");
        self.inner.rendered[slot].get_or_init(|| render(self).into_boxed_slice())
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.inner.id)
            .field("data", &self.inner.data)
            .finish()
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.inner.id == other.inner.id && self.inner.data == other.inner.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendering_is_made_once_per_slot() {
        let event = Event::new(
            Some(7),
            EventData::Stats {
                meter: 50.0,
                counters: BTreeMap::new(),
            },
        );
        let mut made = 0;
        for _ in 0..3 {
            let bytes = event.rendered(0, |_| {
                made += 1;
                b"seven".to_vec()
            });
            assert_eq!(bytes, b"seven");
        }
        assert_eq!(made, 1);
        assert_eq!(event.rendered(1, |_| b"other".to_vec()), b"other");
    }

    #[test]
    fn event_data_round_trips_through_its_json() {
        let data = EventData::Progress {
            progress: ProgressKind::ToolCall,
            message: "called".into(),
            at: Timestamp(1_745_439_708_037_943),
        };
        let text = serde_json::to_string(&data).expect("serialises");
        assert_eq!(
            serde_json::from_str::<EventData>(&text).expect("parses"),
            data
        );
        assert_eq!(data.kind_name(), "run.progress");
    }
}
