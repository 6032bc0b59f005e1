//! Engine events as Parallel's SSE events (spec 5): the `event:` name is
//! the JSON's `type`, the `data:` line the compact JSON.
//!
//! Owns the wire form of stream events and of the ErrorEvent a stream ends
//! with when it fails after its headers (spec 5, rule 7).

use crate::model::{ErrorObject, Event};
use crate::server::sse::{Chunk, Render};

/// Parallel's rendering of stream events.
pub struct ParallelEvents;

impl Render for ParallelEvents {
    fn event(&self, event: &Event, chunk: &mut Chunk) {
        chunk.frame(event.kind.as_str(), &event.data);
    }

    fn error(&self, message: &str, chunk: &mut Chunk) {
        let error = ErrorObject::new(message, None);
        let data = serde_json::json!({"type": "error", "error": error}).to_string();
        chunk.frame("error", &data);
    }
}
