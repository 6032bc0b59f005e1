//! `echo`: the input back as output. Useful to check plumbing end to end
//! and as the simplest example of a processor.

use serde_json::{Map, Value};

use std::sync::Arc;

use super::kind::{Built, ConfigError, Kind, Section};
use super::{Processor, ProcessorError, RunContext};
use crate::model::{Content, Evidence, Output, SchemaKind};

/// `kind = "echo"`: no keys of its own.
pub(super) struct EchoKind;

impl Kind for EchoKind {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn build(&self, _section: &Section<'_>) -> Result<Built, ConfigError> {
        Ok(Built::new(Arc::new(EchoProcessor)))
    }
}

/// Returns the run's input: as text for a text schema (objects as compact
/// JSON), as an object otherwise (a string input becomes `{"text": ...}`).
/// Output validation still applies, so an echo that does not fit a JSON
/// output schema fails the run, as any processor's output would.
pub struct EchoProcessor;

impl Processor for EchoProcessor {
    fn run(&self, ctx: &RunContext<'_>) -> Result<Output, ProcessorError> {
        let evidence = |field: &str| Evidence {
            field: field.to_string(),
            reasoning: "echoed from the input".to_string(),
            citations: Vec::new(),
            confidence: Some("high".to_string()),
        };
        match SchemaKind::of(&ctx.task_spec.output_schema) {
            SchemaKind::Text(_) => {
                let content = match ctx.input {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                Ok(Output::text(content, vec![evidence("output")]))
            }
            kind => {
                let content = match ctx.input {
                    Value::Object(object) => object.clone(),
                    other => {
                        let mut object = Map::new();
                        object.insert("text".to_string(), other.clone());
                        object
                    }
                };
                let evidence = content.keys().map(|key| evidence(key)).collect();
                let schema = match kind {
                    SchemaKind::Auto => Some(serde_json::json!({"type": "object"})),
                    _ => None,
                };
                Ok(Output {
                    content: Content::Json(content),
                    evidence,
                    schema,
                    usage: None,
                })
            }
        }
    }
}
