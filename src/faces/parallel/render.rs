//! Engine events as Parallel's stream events (spec 2.6, 5): the `event:`
//! name is the JSON's `type`, the `data:` line the compact JSON.
//!
//! Owns the wire form of every stream event and of the ErrorEvent a stream
//! ends with when it fails after its headers (spec 5, rule 7). A rendering
//! is made once per event and kept with it (slot [`RENDER_SLOT`]), so the
//! followers of a group share it.

use serde_json::{json, Value};

use super::wire::{self, EventType, RunInput};
use crate::engine::GroupRun;
use crate::model::{to_json, Event, EventData, ProgressKind};
use crate::server::sse::{Chunk, Render};

/// This face's slot in an event's renderings (`crate::faces` hands them
/// out; one per face).
pub const RENDER_SLOT: usize = crate::faces::PARALLEL_RENDER_SLOT;

/// Parallel's rendering of stream events.
pub struct ParallelEvents;

impl Render for ParallelEvents {
    fn event(&self, event: &Event, chunk: &mut Chunk) {
        let frame = event.rendered(RENDER_SLOT, |event| {
            let wire = to_wire(event);
            frame_bytes(wire.kind.as_str(), &wire.data)
        });
        chunk.framed_event(frame);
    }

    fn error(&self, message: &str, chunk: &mut Chunk) {
        let error = wire::ErrorObject::new(message, None);
        let data = json!({"type": "error", "error": error}).to_string();
        chunk.frame("error", &data);
    }
}

/// One SSE frame's bytes, as [`Chunk::frame`] writes them.
fn frame_bytes(name: &str, data: &str) -> Vec<u8> {
    let mut chunk = Chunk::default();
    chunk.frame(name, data);
    chunk.queued().to_vec()
}

/// An engine event as Parallel's wire event.
pub fn to_wire(event: &Event) -> wire::Event {
    let id = event.id();
    let (kind, data) = match event.data() {
        EventData::RunStatus { run, output } => (
            EventType::RunState,
            run_state(
                id,
                &wire::Run::from(run),
                None,
                output
                    .as_ref()
                    .map(|output| to_json(&wire::Output::from(output))),
            ),
        ),
        EventData::GroupStatus { status } => (
            EventType::GroupStatus,
            to_json(&json!({
                "type": EventType::GroupStatus.as_str(),
                "event_id": id.map(|id| id.to_string()),
                "status": wire::GroupStatus::from(status),
            })),
        ),
        EventData::Progress {
            progress,
            message,
            at,
        } => {
            let kind = progress_type(*progress);
            (
                kind,
                to_json(&json!({"type": kind.as_str(), "message": message, "timestamp": at})),
            )
        }
        EventData::Stats { meter, counters } => (
            EventType::ProgressStats,
            to_json(&json!({
                "type": EventType::ProgressStats.as_str(),
                "progress_meter": meter,
                "source_stats": {
                    "num_sources_considered": counters.get("sources_considered"),
                    "num_sources_read": counters.get("sources_read"),
                    "sources_read_sample": Value::Null,
                },
            })),
        ),
    };
    wire::Event { id, kind, data }
}

fn progress_type(kind: ProgressKind) -> EventType {
    match kind {
        ProgressKind::Plan => EventType::ProgressPlan,
        ProgressKind::Search => EventType::ProgressSearch,
        ProgressKind::Result => EventType::ProgressResult,
        ProgressKind::ToolCall => EventType::ProgressToolCall,
        ProgressKind::ExecStatus => EventType::ProgressExecStatus,
    }
}

/// The `data` of a `task_run.state` event: `input` and `output` are JSON
/// object text, spliced in as they are.
fn run_state(
    event_id: Option<u64>,
    run: &wire::Run,
    input: Option<&str>,
    output: Option<String>,
) -> String {
    let run_json = to_json(run);
    let mut data = String::with_capacity(
        run_json.len() + input.map_or(4, str::len) + output.as_ref().map_or(4, String::len) + 64,
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
    data.push_str(output.as_deref().unwrap_or("null"));
    data.push('}');
    data
}

/// One run of the group runs stream (spec 4.7) as a `task_run.state`
/// event: its cursor is the event id, the input is the request as given
/// (with the group's default spec when the run had none: a spec 2.2
/// choice).
pub fn group_run(item: &GroupRun) -> wire::Event {
    let run = wire::Run::from(&item.run);
    let input = match (&item.document, &item.input) {
        (Some(document), _) => Some(match &item.group_spec {
            Some(spec) => splice_task_spec(document, &to_json(spec)),
            None => document.clone(),
        }),
        // A run that came through the library or another face: its
        // request as Parallel would have sent it.
        (None, Some(input)) => {
            let mut request = RunInput::new(input.clone(), item.run.processor.clone());
            request.metadata = item.run.metadata.clone();
            request.task_spec = item.group_spec.clone();
            Some(to_json(&request))
        }
        (None, None) => None,
    };
    let output = item
        .output
        .as_ref()
        .map(|output| to_json(&wire::Output::from(output)));
    wire::Event {
        id: Some(item.cursor),
        kind: EventType::RunState,
        data: run_state(Some(item.cursor), &run, input.as_deref(), output),
    }
}

/// Adds `"task_spec": spec` to a stored RunInput object that has none.
fn splice_task_spec(request: &str, spec: &str) -> String {
    let body = request.trim_end();
    match body.strip_suffix('}') {
        Some(head) => {
            let separator = if head.trim_end().ends_with('{') {
                ""
            } else {
                ","
            };
            format!("{head}{separator}\"task_spec\":{spec}}}")
        }
        None => request.to_string(),
    }
}

/// Parallel's webhook deliveries (spec 9): the body `{"timestamp", "type":
/// "task_run.status", "data": <the run as GET returns it>}`, the id
/// `whevent_` and 32 hex digits.
pub struct ParallelWebhooks;

impl crate::webhooks::WebhookRender for ParallelWebhooks {
    fn body(
        &self,
        _engine: &crate::engine::Engine,
        run: &crate::model::Run,
        _owner: Option<&str>,
    ) -> Result<String, String> {
        Ok(json!({
            "timestamp": run.modified_at,
            "type": "task_run.status",
            "data": wire::Run::from(run),
        })
        .to_string())
    }

    fn delivery_id(&self, id: &str) -> String {
        format!("{}{id}", wire::DELIVERY_ID_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_task_spec_adds_the_key() {
        assert_eq!(
            splice_task_spec(r#"{"input":"x"}"#, r#"{"output_schema":"t"}"#),
            r#"{"input":"x","task_spec":{"output_schema":"t"}}"#
        );
        assert_eq!(splice_task_spec("{}", "1"), r#"{"task_spec":1}"#);
    }
}
