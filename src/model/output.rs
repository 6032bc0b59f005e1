//! What a completed run produced: its content and the evidence for each
//! field of it.
//!
//! No I/O. This is the engine's form, stored as is; each face renders it
//! in its own wire (Parallel calls the evidence `basis`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::JsonObject;

/// The content of an output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// An object that fits the run's JSON output schema.
    Json(JsonObject),
    /// Prose.
    Text(String),
}

/// One source behind a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    pub url: String,
    pub title: Option<String>,
    pub excerpts: Option<Vec<String>>,
}

/// Why one field of the content has its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub field: String,
    pub reasoning: String,
    pub citations: Vec<Citation>,
    pub confidence: Option<String>,
}

/// A run's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub content: Content,
    pub evidence: Vec<Evidence>,
    /// The JSON Schema the content was made to, when the processor chose
    /// it (an `auto` spec); `None` when the run's spec gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Tokens a model spent on it, when a model made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A model's token count for one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Output {
    /// A JSON output.
    pub fn json(content: JsonObject, evidence: Vec<Evidence>) -> Output {
        Output {
            content: Content::Json(content),
            evidence,
            schema: None,
            usage: None,
        }
    }

    /// A text output.
    pub fn text(content: impl Into<String>, evidence: Vec<Evidence>) -> Output {
        Output {
            content: Content::Text(content.into()),
            evidence,
            schema: None,
            usage: None,
        }
    }
}
