//! Parallel's wire types (spec sections 2 and 6) and their mapping from
//! and to the engine's nouns.
//!
//! This is the one place where a field's spelling on Parallel's wire is
//! decided: `run_id`, `taskgroup_id`, `interaction_id`, `basis`, the
//! `trun_` and `tgrp_` id prefixes. No I/O, no SQL, no HTTP.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{
    self, is_id, to_json, Content, Evidence, JsonObject, RunError, RunRequest, RunStatus, TaskSpec,
    Timestamp, Warning, WebhookTarget,
};

/// The error object of a failed run or a request (spec 2.1): the engine's
/// run error has the same fields.
pub type ErrorObject = RunError;

/// The evidence of one output field (spec 2.4): the engine's, spelled the
/// same.
pub type FieldBasis = Evidence;

pub use crate::model::Citation;

pub const RUN_ID_PREFIX: &str = "trun_";
pub const GROUP_ID_PREFIX: &str = "tgrp_";
/// The prefix of a schedule's id (a taskyard extension).
pub const SCHEDULE_ID_PREFIX: &str = "tsch_";
/// The prefix of a webhook delivery's `webhook-id` (spec 9).
pub const DELIVERY_ID_PREFIX: &str = "whevent_";

/// A run's id on the wire.
pub fn wire_run_id(id: &str) -> String {
    format!("{RUN_ID_PREFIX}{id}")
}

/// A group's id on the wire.
pub fn wire_group_id(id: &str) -> String {
    format!("{GROUP_ID_PREFIX}{id}")
}

/// The engine's id of a wire id with `prefix`: `None` for any other shape,
/// which names nothing (spec 1.8).
pub fn engine_id<'a>(prefix: &str, wire: &'a str) -> Option<&'a str> {
    wire.strip_prefix(prefix).filter(|id| is_id(id))
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

impl From<&model::Run> for Run {
    fn from(run: &model::Run) -> Run {
        let run_id = wire_run_id(&run.id);
        Run {
            interaction_id: run_id.clone(),
            run_id,
            status: run.status,
            is_active: run.status.is_active(),
            processor: run.processor.clone(),
            metadata: run.metadata.clone(),
            error: run.error.clone(),
            warnings: run.warnings.clone(),
            taskgroup_id: run.group_id.as_deref().map(wire_group_id),
            created_at: run.created_at,
            modified_at: run.modified_at,
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

    /// Where the run's end is to be POSTed, as the engine keeps it.
    pub fn webhook_target(&self) -> Option<WebhookTarget> {
        self.webhook
            .as_ref()
            .and_then(|webhook| webhook.get("url"))
            .and_then(Value::as_str)
            .map(|url| WebhookTarget {
                url: url.to_string(),
                face: super::FACE_NAME.to_string(),
                owner: None,
            })
    }

    /// The engine's request for this run: the request as given travels as
    /// the run's document, so that `.../input` answers it as sent.
    pub fn to_request(&self) -> RunRequest {
        RunRequest {
            processor: self.processor.clone(),
            input: self.input.clone(),
            task_spec: self.task_spec.clone(),
            metadata: self.metadata.clone(),
            enable_events: self.enable_events,
            document: Some(to_json(self)),
            warnings: Vec::new(),
            webhook: self.webhook_target(),
            // An interaction's id is its run's: `trun_` and the engine id.
            previous_run_id: self
                .previous_interaction_id
                .as_deref()
                .map(|id| engine_id(RUN_ID_PREFIX, id).unwrap_or(id).to_string()),
            interaction: None,
        }
    }
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

impl From<&model::Output> for Output {
    fn from(output: &model::Output) -> Output {
        match &output.content {
            Content::Json(content) => Output::Json {
                content: content.clone(),
                basis: output.evidence.clone(),
                output_schema: output.schema.clone(),
                mcp_tool_calls: None,
                beta_fields: None,
            },
            Content::Text(content) => Output::Text {
                content: content.clone(),
                basis: output.evidence.clone(),
                mcp_tool_calls: None,
                beta_fields: None,
            },
        }
    }
}

/// An upstream's output as the engine keeps it (the `replay` processor).
impl From<Output> for model::Output {
    fn from(output: Output) -> model::Output {
        let (content, evidence, schema) = match output {
            Output::Json {
                content,
                basis,
                output_schema,
                ..
            } => (Content::Json(content), basis, output_schema),
            Output::Text { content, basis, .. } => (Content::Text(content), basis, None),
        };
        model::Output {
            content,
            evidence,
            schema,
            usage: None,
        }
    }
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

impl From<&model::GroupStatus> for GroupStatus {
    fn from(status: &model::GroupStatus) -> GroupStatus {
        let mut counts = Map::new();
        for run_status in RunStatus::ALL {
            let count = status.counts.get(run_status);
            if count > 0 {
                counts.insert(run_status.as_str().to_string(), count.into());
            }
        }
        GroupStatus {
            num_task_runs: status.counts.num_runs.max(0) as u64,
            task_run_status_counts: counts,
            is_active: status.is_active(),
            status_message: None,
            modified_at: status.modified_at,
        }
    }
}

impl From<&model::Group> for Group {
    fn from(group: &model::Group) -> Group {
        Group {
            taskgroup_id: wire_group_id(&group.id),
            status: GroupStatus::from(&group.status),
            created_at: group.created_at,
            metadata: group.metadata.clone(),
        }
    }
}

impl From<&model::AddedRuns> for AddRunsResponse {
    /// Both cursors are the same id (spec 6).
    fn from(added: &model::AddedRuns) -> AddRunsResponse {
        let cursor = added.cursor.map(|id| id.to_string());
        AddRunsResponse {
            run_ids: added.run_ids.iter().map(|id| wire_run_id(id)).collect(),
            status: GroupStatus::from(&added.group.status),
            run_cursor: cursor.clone(),
            event_cursor: cursor,
        }
    }
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

/// A webhook delivery of a run (a taskyard extension:
/// `GET /v1/tasks/runs/{run_id}/webhook_deliveries`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookDelivery {
    /// The `webhook-id` every attempt carried.
    pub id: String,
    pub run_id: String,
    pub url: String,
    /// `pending`, `delivered` or `expired`.
    pub status: model::DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub expires_at: Timestamp,
    /// The HTTP status the receiver answered last, if it answered.
    pub last_response_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

impl From<&model::Delivery> for WebhookDelivery {
    fn from(delivery: &model::Delivery) -> WebhookDelivery {
        WebhookDelivery {
            id: format!("{DELIVERY_ID_PREFIX}{}", delivery.id),
            run_id: wire_run_id(&delivery.run_id),
            url: delivery.url.clone(),
            status: delivery.state,
            attempts: delivery.attempts,
            next_attempt_at: delivery.next_at,
            expires_at: delivery.expires_at,
            last_response_status: delivery.last_code,
            last_error: delivery.last_error.clone(),
            created_at: delivery.created_at,
            modified_at: delivery.modified_at,
        }
    }
}

/// A schedule (a taskyard extension: `/v1/schedules`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    pub schedule_id: String,
    /// `{"kind": "at" | "delay" | "cron" | "interval", ...}`.
    pub when: model::When,
    /// `active`, `paused`, `done` (a one-time schedule that fired) or
    /// `cancelled`.
    pub status: model::ScheduleState,
    pub processor: String,
    /// When it fires next, while active.
    pub next_fire_at: Option<Timestamp>,
    /// Runs it has made.
    pub fires: u32,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

impl From<&model::Schedule> for Schedule {
    fn from(schedule: &model::Schedule) -> Schedule {
        Schedule {
            schedule_id: format!("{SCHEDULE_ID_PREFIX}{}", schedule.id),
            when: schedule.when.clone(),
            status: schedule.state,
            processor: schedule.processor.clone(),
            next_fire_at: schedule.next_at,
            fires: schedule.fires,
            created_at: schedule.created_at,
            modified_at: schedule.modified_at,
        }
    }
}
