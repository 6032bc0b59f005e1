//! Streams (spec choice 4): `stream` asks for one only when the request's
//! `Accept` names `text/event-stream`, which the SDK never sends, so its
//! typed calls always get JSON. Then the turn's run events are sent as SSE,
//! framed as the Parallel face frames them (`event:` and a one-line JSON
//! `data:`, no `id:`), in Handinger's vocabulary; the hosted chunk format
//! is unknown. Owns the frames; following the run is the server's
//! (`sse::follow`) and the engine's.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::limits::TURN_STREAM_S_MAX;
use super::wire;
use crate::engine::{Engine, StreamKind};
use crate::model::{Event, EventData};
use crate::server::sse::{self, Chunk, Render};
use crate::server::{Reply, Request};

/// The request takes a stream: its `Accept` names `text/event-stream`.
pub fn accepts_events(request: &Request<'_>) -> bool {
    request
        .header("accept")
        .is_some_and(|accept| accept.to_ascii_lowercase().contains("text/event-stream"))
}

/// A stream of `run_id`'s events, from its state now to its end.
pub fn turn_events(engine: &Engine, run_id: &str) -> Reply {
    let engine = engine.clone();
    let stream = StreamKind::RunEvents(run_id.to_string());
    Reply::Stream(
        "handinger_turn",
        Box::new(move |out| {
            sse::follow(
                &engine,
                stream,
                0,
                Duration::from_secs(TURN_STREAM_S_MAX),
                Arc::new(HandingerEvents),
                out,
            )
        }),
    )
}

/// A run's events as Handinger frames: `turn.status` (with `outputText`
/// once the turn has ended), `turn.progress` and `turn.stats`.
struct HandingerEvents;

impl Render for HandingerEvents {
    fn event(&self, event: &Event, chunk: &mut Chunk) {
        let (name, data) = match event.data() {
            EventData::RunStatus { run, output } => {
                let mut data = json!({
                    "type": "turn.status",
                    "turnId": wire::turn_id(&run.id),
                    "status": wire::status(run.status),
                });
                if run.status.is_terminal() {
                    data["outputText"] = json!(wire::run_output_text(run, output.as_ref()));
                }
                ("turn.status", data)
            }
            EventData::Progress {
                progress,
                message,
                at,
            } => (
                "turn.progress",
                json!({
                    "type": "turn.progress",
                    "kind": progress.as_str(),
                    "message": message,
                    "createdAt": wire::time(*at),
                }),
            ),
            EventData::Stats { meter, counters } => (
                "turn.stats",
                json!({"type": "turn.stats", "meter": meter, "counters": counters}),
            ),
            // A run stream has no group events.
            EventData::GroupStatus { .. } => return,
        };
        chunk.frame(name, &data.to_string());
    }

    fn error(&self, message: &str, chunk: &mut Chunk) {
        let data = json!({"type": "error", "error": {"code": "internal", "message": message}});
        chunk.frame("error", &data.to_string());
    }
}
