//! The engine's nouns: runs, groups, statuses, task specs, outputs with
//! their evidence, events, and the field errors every face reports.
//!
//! No I/O, no SQL, no HTTP, and no face's wire: these are the engine's own
//! names and shapes, stored as they are here. Each face (`crate::faces`)
//! maps them to and from its wire. Every other module may depend on this.

pub mod event;
pub mod field_error;
mod group;
mod id;
mod output;
mod record;
mod run;
mod schedule;
mod status;
mod task;
mod time;
mod webhook;

use serde::Serialize;
use serde_json::{Map, Value};

pub use event::{Event, EventData, EventKind, ProgressKind, RENDER_SLOTS_MAX};
pub use field_error::{FieldError, FieldErrorKind, Loc};
pub use group::{Group, GroupStatus};
pub use id::{is_id, new_id, new_ref_id};
pub use output::{Citation, Content, Evidence, Output, Usage};
pub use record::{InteractionTurn, Record};
pub use run::{AddRuns, AddedRuns, Run, RunError, RunRequest, StoredRequest, Turn, Warning};
pub use schedule::{Schedule, ScheduleRequest, ScheduleState, When, SKIPPED_DETAIL};
pub use status::{RunCounts, RunStatus};
pub use task::{SchemaKind, TaskSpec};
pub use time::Timestamp;
pub use webhook::{Delivery, DeliveryAttempt, DeliveryState, WebhookTarget};

/// A JSON object, in the order its keys were given.
pub type JsonObject = Map<String, Value>;

/// Writes `value` as compact JSON with object keys sorted at every depth,
/// so that two values that differ only in key order or spacing compare
/// equal (idempotency fingerprints, fixture keys).
pub fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_json(&object[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Serialises a model value that cannot fail to serialise (no maps with
/// non-string keys, no failing `Serialize` impls).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("model types always serialise")
}
