//! A task spec: what shape a run's output must have, and optionally what
//! its input should look like.
//!
//! No I/O. The encoding (`{"type": "json", "json_schema": ...}`, `{"type":
//! "text", "description": ...}`, a bare string, `{"type": "auto"}`) is the
//! engine's own; it happens to be the one Parallel's wire uses, so that
//! face passes a spec through unchanged, and other faces build it from
//! theirs (a Handinger worker's output schema is `Json`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task spec, schemas kept exactly as given. Which kind a schema is
/// comes from [`SchemaKind::of`].
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

/// What a schema value in a task spec means.
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

#[cfg(test)]
mod tests {
    use super::*;

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
