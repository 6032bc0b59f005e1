//! `mock`: deterministic output from (processor name, input, task spec).
//!
//! The same request gives byte-identical output on every machine and run,
//! so tests can pin it. For a JSON output schema the content validates
//! against it; for text, text; for auto, a small object plus the schema it
//! chose. It reads no clock, no environment and no randomness of its own.
//!
//! This file holds the processor and the entry points: the seed, the retry
//! loop over generator variants, and the dispatch on the output kind. The
//! work itself is in its submodules:
//!
//! - `generate`: a value for a JSON schema, and schema merging.
//! - `numbers`: numeric bounds and exact decimal multiples.
//! - `regex`: strings sampled from a `pattern`.
//! - `prose`: basis entries and the wording of text and auto outputs.
//!
//! Nothing here does I/O or knows of HTTP, SQL or the scheduler beyond the
//! `Processor` trait; the only wait is the simulated latency, which the
//! run's cancel token cuts short.

mod generate;
mod numbers;
mod prose;
mod regex;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::kind::{Built, ConfigError, Kind, Section};
use super::{Processor, ProcessorError, RunContext};
use crate::limits::JSON_DEPTH_MAX;
use crate::model::{Content, JsonObject, Output, SchemaKind, TaskSpec};
use generate::{Checks, Generator};
use prose::{auto_content, basis_of, field_basis, text_content};

/// `kind = "mock"`: `latency_ms`, `failure_rate` (0.0 to 1.0) and `seed`.
pub(super) struct MockKind;

impl Kind for MockKind {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn build(&self, section: &Section<'_>) -> Result<Built, ConfigError> {
        Ok(Built::new(Arc::new(MockProcessor {
            latency: Duration::from_millis(
                section.u64("latency_ms", 0, u32::MAX as u64)?.unwrap_or(0),
            ),
            failure_rate: section.f64("failure_rate", 0.0, 1.0)?.unwrap_or(0.0),
            seed: section.u64("seed", 0, u64::MAX)?.unwrap_or(0),
        })))
    }
}

/// The deterministic stand-in for every hosted processor name.
#[derive(Debug, Clone, Default)]
pub struct MockProcessor {
    /// Simulated latency of every attempt; a cancel cuts it short.
    pub latency: Duration,
    /// Share of attempts, 0.0 to 1.0, that fail with a transient error,
    /// drawn from `seed` and the request so that a rerun fails the same way.
    pub failure_rate: f64,
    pub seed: u64,
}

impl Processor for MockProcessor {
    fn run(&self, ctx: &RunContext<'_>) -> Result<Output, ProcessorError> {
        if !self.latency.is_zero() {
            ctx.sleep(self.latency)?;
        }
        if self.failure_rate > 0.0 {
            let draw = fnv1a(&[
                &self.seed.to_le_bytes(),
                ctx.processor.as_bytes(),
                ctx.input.to_string().as_bytes(),
                &ctx.attempt.to_le_bytes(),
            ]);
            // The top 53 bits as a fraction in [0, 1).
            let fraction = (draw >> 11) as f64 / (1u64 << 53) as f64;
            if fraction < self.failure_rate {
                return Err(ProcessorError::Transient(format!(
                    "simulated transient failure (failure rate {})",
                    self.failure_rate
                )));
            }
        }
        Ok(mock_output(ctx.processor, ctx.input, ctx.task_spec))
    }
}

/// FNV-1a over several byte strings, each followed by a separator so that
/// ("ab", "c") and ("a", "bc") differ. Stable across machines and releases,
/// unlike `std`'s hashers.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The mock's output for a request. Pure: depends on its arguments only.
///
/// Every choice comes from one seed over the processor name, the input and
/// the task spec, so a different input gives different content and the same
/// request gives the same bytes.
pub fn mock_output(processor: &str, input: &Value, task_spec: &TaskSpec) -> Output {
    let spec = serde_json::to_string(task_spec).unwrap_or_default();
    let seed = fnv1a(&[
        processor.as_bytes(),
        input.to_string().as_bytes(),
        spec.as_bytes(),
    ]);
    match SchemaKind::of(&task_spec.output_schema) {
        SchemaKind::Json(schema) => {
            let content = json_content(schema, input, seed);
            let evidence = basis_of(&content, seed);
            Output::json(content, evidence)
        }
        SchemaKind::Text(description) => {
            let content = text_content(processor, input, description, seed);
            let evidence = vec![field_basis(seed, "output", &Value::String(content.clone()))];
            Output::text(content, evidence)
        }
        SchemaKind::Auto => {
            let (content, schema) = auto_content(input, seed);
            let evidence = basis_of(&content, seed);
            Output {
                content: Content::Json(content),
                evidence,
                schema: Some(schema),
                usage: None,
            }
        }
    }
}

/// Generation attempts when the first one may not validate: branch and enum
/// rotations, then minimal values.
const VARIANTS: u32 = 4;

/// The variant that makes minimal values everywhere.
const MINIMAL_VARIANT: u32 = 3;

/// Content that validates against `schema`, or the generator's best try for
/// schemas it cannot satisfy (the run then fails output validation, as it
/// would with a real processor).
///
/// Most schemas need one pass. When the generator met something it cannot
/// be sure of (`patternProperties`, a pattern no candidate matched, a
/// `oneOf` or `not` it could not check on its own, conflicting `allOf`
/// branches, ...) it says so, and the content is checked with `jsonschema`;
/// failing attempts are retried with other branch, enum and number
/// choices, then with minimal values.
fn json_content(schema: &Value, input: &Value, seed: u64) -> JsonObject {
    let mut checks = Checks::new();
    let mut checker: Option<Option<jsonschema::Validator>> = None;
    let mut first: Option<JsonObject> = None;
    let mut variant = 0;
    while variant < VARIANTS {
        let mut generator = Generator::new(schema, seed, variant, input.as_object(), &mut checks);
        let content = generator.root();
        if !generator.uncertain {
            return content;
        }
        variant += 1;
        if generator.exhausted() {
            // Out of budget: only smaller values can help, and checking a
            // value that big is slow.
            if first.is_none() {
                first = Some(content);
            }
            if variant > MINIMAL_VARIANT {
                break;
            }
            variant = MINIMAL_VARIANT;
            continue;
        }
        let checker = checker.get_or_insert_with(|| {
            // The validator's compiler recurses once per level, so a schema
            // deeper than any request body (which the API refuses before a
            // run exists) could overflow the stack.
            if deeper_than(schema, JSON_DEPTH_MAX) {
                return None;
            }
            jsonschema::options()
                .should_validate_formats(true)
                .build(schema)
                .ok()
        });
        let Some(checker) = checker else {
            // Nothing to check against (e.g. a remote `$ref`): the first
            // attempt is as good as any.
            return content;
        };
        let content = Value::Object(content);
        if checker.is_valid(&content) {
            return into_object(content);
        }
        if first.is_none() {
            first = Some(into_object(content));
        }
    }
    first.unwrap_or_default()
}

/// Whether `value` nests more than `limit` arrays and objects deep; walks
/// with its own stack, so any depth is safe.
fn deeper_than(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(_) | Value::Object(_) if depth >= limit => return true,
            Value::Array(items) => stack.extend(items.iter().map(|item| (item, depth + 1))),
            Value::Object(object) => stack.extend(object.values().map(|item| (item, depth + 1))),
            _ => {}
        }
    }
    false
}

fn into_object(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        other => {
            let mut object = JsonObject::new();
            object.insert("value".to_string(), other);
            object
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(schema: Value) -> TaskSpec {
        TaskSpec {
            output_schema: json!({"type": "json", "json_schema": schema}),
            input_schema: None,
        }
    }

    fn content(output: Output) -> JsonObject {
        match output.content {
            Content::Json(content) => content,
            Content::Text(_) => panic!("expected json output"),
        }
    }

    #[test]
    fn different_inputs_give_different_content() {
        let spec = spec(json!({
            "type": "object",
            "properties": {"title": {"type": "string"}, "year": {"type": "integer"}}
        }));
        let a = content(mock_output("core", &json!("first input"), &spec));
        let b = content(mock_output("core", &json!("second input"), &spec));
        let again = content(mock_output("core", &json!("first input"), &spec));
        assert_ne!(a, b);
        assert_eq!(a, again);
    }

    #[test]
    fn fnv1a_separates_parts() {
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    }
}
