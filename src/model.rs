//! The nouns of the Task API: groups, runs, statuses, task specs, outputs
//! and stream events, with serde derives that match the wire exactly.
//!
//! The engine's types are the wire types (spec sections 2 and 6), so this
//! module is the single place where a field's spelling is decided. It holds
//! no I/O, no SQL and no HTTP; every other module may depend on it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// A JSON object, in the order its keys were given.
pub type JsonObject = Map<String, Value>;

/// Status of a run (spec 2.1). `ActionRequired` exists on the wire but
/// taskyard never produces it.
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

    /// True exactly for `queued`, `running` and `cancelling` (spec 2.1).
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

/// A point in time with microsecond precision, written on the wire as
/// RFC 3339 UTC with six fractional digits (spec 1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(since.as_micros() as i64)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    fn system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.0.max(0) as u64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_micros(self.system_time())
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let time = humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)?;
        let since = time
            .duration_since(UNIX_EPOCH)
            .map_err(serde::de::Error::custom)?;
        Ok(Timestamp(since.as_micros() as i64))
    }
}

/// Makes run and group ids: a prefix and the 128 bits of a ULID as 32
/// lowercase hex digits, so ids sort by creation time (spec 1.8). One
/// monotonic generator for the process, so that ids made within the same
/// millisecond (the runs of one add) still sort in the order they were made.
pub fn new_id(prefix: &str) -> String {
    static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let ulid = {
        let mut generator = GENERATOR
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        generator
            .get_or_insert_with(ulid::Generator::new)
            .generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
    };
    format!("{prefix}{:032x}", ulid.0)
}

pub const RUN_ID_PREFIX: &str = "trun_";
pub const GROUP_ID_PREFIX: &str = "tgrp_";

/// True when `id` has the shape `prefix` + 32 lowercase hex digits; any
/// other shape is simply not found (spec 1.8).
pub fn is_id_of(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// A fresh UUID v4 for the `ref_id` of an error (spec 1.6).
pub fn new_ref_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The error of a failed run, or of a request (spec 2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub ref_id: String,
    pub message: String,
    pub detail: Option<Value>,
}

impl ErrorObject {
    pub fn new(message: impl Into<String>, detail: Option<Value>) -> ErrorObject {
        ErrorObject {
            ref_id: new_ref_id(),
            message: message.into(),
            detail,
        }
    }
}

/// A warning attached to a run (spec 2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub detail: Option<Value>,
}

/// A task run as the API shows it (spec 2.1). Every key is always present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub run_id: String,
    pub interaction_id: String,
    pub status: RunStatus,
    pub is_active: bool,
    pub processor: String,
    pub metadata: Option<JsonObject>,
    pub error: Option<ErrorObject>,
    pub warnings: Option<Vec<Warning>>,
    pub taskgroup_id: Option<String>,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

/// A task spec, schemas kept exactly as sent (spec 2.3). Which kind a
/// schema is comes from [`SchemaKind::of`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub output_schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
}

impl TaskSpec {
    /// The spec a run gets when neither it nor its group names one.
    pub fn auto() -> TaskSpec {
        TaskSpec {
            output_schema: serde_json::json!({"type": "auto"}),
            input_schema: None,
        }
    }
}

/// What a schema value in a task spec means (spec 2.3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SchemaKind<'a> {
    /// `{"type": "json", "json_schema": {...}}`; holds the `json_schema`.
    Json(&'a Value),
    /// `{"type": "text", "description": ...}` or a bare string.
    Text(Option<&'a str>),
    /// `{"type": "auto"}`.
    Auto,
}

impl<'a> SchemaKind<'a> {
    /// Reads a schema that validation has already accepted. An object with
    /// no `type` is json when it has `json_schema`, else text (a spec
    /// choice); anything unreadable falls back to auto.
    pub fn of(schema: &'a Value) -> SchemaKind<'a> {
        match schema {
            Value::String(text) => SchemaKind::Text(Some(text)),
            Value::Object(object) => {
                let description = object.get("description").and_then(Value::as_str);
                match object.get("type").and_then(Value::as_str) {
                    Some("json") => object
                        .get("json_schema")
                        .map(SchemaKind::Json)
                        .unwrap_or(SchemaKind::Auto),
                    Some("text") => SchemaKind::Text(description),
                    Some(_) => SchemaKind::Auto,
                    None => match object.get("json_schema") {
                        Some(json_schema) => SchemaKind::Json(json_schema),
                        None => SchemaKind::Text(description),
                    },
                }
            }
            _ => SchemaKind::Auto,
        }
    }
}

/// A run as requested (spec 2.2): the body of create run, an element of
/// add-runs `inputs`, and the answer of `.../input`. Absent fields stay
/// absent when echoed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInput {
    pub input: Value,
    pub processor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_spec: Option<TaskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_events: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced_settings: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_scope_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_interaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Value>,
}

impl RunInput {
    /// The smallest valid run input: `input` for `processor`, nothing else.
    pub fn new(input: impl Into<Value>, processor: impl Into<String>) -> RunInput {
        RunInput {
            input: input.into(),
            processor: processor.into(),
            metadata: None,
            task_spec: None,
            enable_events: None,
            source_policy: None,
            advanced_settings: None,
            mcp_servers: None,
            memory_scope_key: None,
            previous_interaction_id: None,
            webhook: None,
        }
    }

    pub fn with_task_spec(mut self, task_spec: TaskSpec) -> RunInput {
        self.task_spec = Some(task_spec);
        self
    }

    pub fn with_metadata(mut self, metadata: JsonObject) -> RunInput {
        self.metadata = Some(metadata);
        self
    }
}

/// One citation of a basis entry (spec 2.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    pub url: String,
    pub title: Option<String>,
    pub excerpts: Option<Vec<String>>,
}

/// Why an output field has its value (spec 2.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldBasis {
    pub field: String,
    pub reasoning: String,
    pub citations: Vec<Citation>,
    pub confidence: Option<String>,
}

/// A run's output, told apart by `type` (spec 2.4). Every key is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Output {
    #[serde(rename = "json")]
    Json {
        content: JsonObject,
        basis: Vec<FieldBasis>,
        output_schema: Option<Value>,
        mcp_tool_calls: Option<Vec<Value>>,
        beta_fields: Option<Value>,
    },
    #[serde(rename = "text")]
    Text {
        content: String,
        basis: Vec<FieldBasis>,
        mcp_tool_calls: Option<Vec<Value>>,
        beta_fields: Option<Value>,
    },
}

/// A completed run and its output (spec 2.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub run: Run,
    pub output: Output,
}

/// Counts and activity of a group (spec 2.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub num_task_runs: u64,
    /// Statuses with a count above zero only (a spec choice).
    pub task_run_status_counts: Map<String, Value>,
    pub is_active: bool,
    pub status_message: Option<String>,
    pub modified_at: Timestamp,
}

/// A task group (spec 2.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub taskgroup_id: String,
    pub status: GroupStatus,
    pub created_at: Timestamp,
    pub metadata: Option<JsonObject>,
}

/// The body of an add-runs request (spec 4.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddRuns {
    pub inputs: Vec<RunInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_task_spec: Option<TaskSpec>,
}

/// The answer to an add-runs request (spec 2.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddRunsResponse {
    pub run_ids: Vec<String>,
    pub status: GroupStatus,
    pub run_cursor: Option<String>,
    pub event_cursor: Option<String>,
}

/// The `type` of each event a stream can carry (spec 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    RunState,
    GroupStatus,
    Error,
    ProgressPlan,
    ProgressSearch,
    ProgressResult,
    ProgressToolCall,
    ProgressExecStatus,
    ProgressStats,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RunState => "task_run.state",
            EventType::GroupStatus => "task_group_status",
            EventType::Error => "error",
            EventType::ProgressPlan => "task_run.progress_msg.plan",
            EventType::ProgressSearch => "task_run.progress_msg.search",
            EventType::ProgressResult => "task_run.progress_msg.result",
            EventType::ProgressToolCall => "task_run.progress_msg.tool_call",
            EventType::ProgressExecStatus => "task_run.progress_msg.exec_status",
            EventType::ProgressStats => "task_run.progress_stats",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        [
            EventType::RunState,
            EventType::GroupStatus,
            EventType::Error,
            EventType::ProgressPlan,
            EventType::ProgressSearch,
            EventType::ProgressResult,
            EventType::ProgressToolCall,
            EventType::ProgressExecStatus,
            EventType::ProgressStats,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// One event of a stream, already in its wire form: `data` is the compact
/// JSON object the SSE `data:` line carries, stored once when the event was
/// recorded and sent as is (no re-serialisation on the read path).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event-log id, the resumable cursor; `None` where the stream is
    /// not resumable (run events, spec 4.3).
    pub id: Option<u64>,
    pub kind: EventType,
    pub data: String,
}

impl Event {
    /// The event's JSON, parsed; for tests and library users.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// The wire object of a `task_run.state` event (spec 2.6).
#[derive(Debug, Clone, Serialize)]
pub struct RunStateEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub event_id: Option<String>,
    pub run: &'a Run,
    pub input: Option<&'a RunInput>,
    pub output: Option<&'a Output>,
}

impl<'a> RunStateEvent<'a> {
    pub fn new(
        event_id: Option<u64>,
        run: &'a Run,
        input: Option<&'a RunInput>,
        output: Option<&'a Output>,
    ) -> RunStateEvent<'a> {
        RunStateEvent {
            kind: EventType::RunState.as_str(),
            event_id: event_id.map(|id| id.to_string()),
            run,
            input,
            output,
        }
    }

    pub fn to_event(&self, id: Option<u64>) -> Event {
        Event {
            id,
            kind: EventType::RunState,
            data: to_json(self),
        }
    }
}

/// The `data` of a `task_run.state` event built from stored JSON text, so
/// that stored inputs and outputs are streamed as they are, never parsed
/// and serialised again. `input` and `output` must be JSON object text.
pub fn run_state_data(
    event_id: Option<u64>,
    run: &Run,
    input: Option<&str>,
    output: Option<&str>,
) -> String {
    let run_json = to_json(run);
    let mut data = String::with_capacity(
        run_json.len() + input.map_or(4, str::len) + output.map_or(4, str::len) + 64,
    );
    data.push_str("{\"type\":\"task_run.state\",\"event_id\":");
    match event_id {
        Some(id) => {
            data.push('"');
            data.push_str(&id.to_string());
            data.push('"');
        }
        None => data.push_str("null"),
    }
    data.push_str(",\"run\":");
    data.push_str(&run_json);
    data.push_str(",\"input\":");
    data.push_str(input.unwrap_or("null"));
    data.push_str(",\"output\":");
    data.push_str(output.unwrap_or("null"));
    data.push('}');
    data
}

/// The wire object of a `task_group_status` event (spec 2.6).
#[derive(Debug, Clone, Serialize)]
pub struct GroupStatusEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub event_id: String,
    pub status: &'a GroupStatus,
}

/// Serialises a model value that cannot fail to serialise (no maps with
/// non-string keys, no failing `Serialize` impls).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("model types always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_six_fraction_digits_and_z() {
        let text = Timestamp(1_745_439_708_037_943).to_string();
        assert_eq!(text, "2025-04-23T20:21:48.037943Z");
    }

    #[test]
    fn ids_made_in_a_row_sort_in_order() {
        let ids: Vec<String> = (0..1_000).map(|_| new_id(RUN_ID_PREFIX)).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn ids_have_prefix_and_32_hex_digits() {
        let id = new_id(RUN_ID_PREFIX);
        assert!(is_id_of(RUN_ID_PREFIX, &id), "{id}");
        assert!(!is_id_of(GROUP_ID_PREFIX, &id));
        assert!(!is_id_of(RUN_ID_PREFIX, "trun_XYZ"));
    }

    #[test]
    fn schema_kind_follows_the_spec_choices() {
        let json = serde_json::json!({"json_schema": {"type": "object"}});
        assert!(matches!(SchemaKind::of(&json), SchemaKind::Json(_)));
        let text = serde_json::json!({"description": "a poem"});
        assert_eq!(SchemaKind::of(&text), SchemaKind::Text(Some("a poem")));
        let bare = Value::String("a haiku".into());
        assert_eq!(SchemaKind::of(&bare), SchemaKind::Text(Some("a haiku")));
        let auto = serde_json::json!({"type": "auto"});
        assert_eq!(SchemaKind::of(&auto), SchemaKind::Auto);
    }
}
