//! The words of the mock's output: the basis entries of spec 2.4, and the
//! content of text and auto outputs.
//!
//! Deterministic from the seed and the values it is given. No I/O, and no
//! schema walking: the auto output's schema is a fixed one written out
//! here, and nothing is made for or checked against a caller's schema.

use serde_json::{json, Value};

use super::{fnv1a, into_object};
use crate::model::{Citation, Evidence, JsonObject};

const CONFIDENCE: [&str; 3] = ["low", "medium", "high"];

/// Why each top-level value is what it is (spec 2.4): one entry per key in
/// content order, and `key.N` entries right after an array-valued key.
pub(super) fn basis_of(content: &JsonObject, seed: u64) -> Vec<Evidence> {
    let mut basis = Vec::new();
    for (key, value) in content {
        basis.push(field_basis(seed, key, value));
        if let Value::Array(items) = value {
            for (index, item) in items.iter().enumerate() {
                basis.push(field_basis(seed, &format!("{key}.{index}"), item));
            }
        }
    }
    basis
}

pub(super) fn field_basis(seed: u64, field: &str, value: &Value) -> Evidence {
    let hash = fnv1a(&[&seed.to_le_bytes(), b"basis", field.as_bytes()]);
    let shown = shorten(&display(value), 60);
    let citations = (0..1 + (hash & 1))
        .map(|number| {
            let id = fnv1a(&[&hash.to_le_bytes(), &number.to_le_bytes()]);
            Citation {
                url: format!("https://example.com/mock/{id:016x}"),
                title: Some(format!("Mock source {} for {field}", number + 1)),
                excerpts: Some(vec![format!("Mock excerpt supporting {field}: {shown}")]),
            }
        })
        .collect();
    Evidence {
        field: field.to_string(),
        reasoning: format!(
            "The mock processor derived {field} = {shown} from the input and the task spec."
        ),
        citations,
        confidence: Some(CONFIDENCE[((hash >> 8) % 3) as usize].to_string()),
    }
}

/// A value as a reader would quote it: strings bare, the rest as JSON.
fn display(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// At most `max_chars` characters of `text` on one line, `...` when cut.
fn shorten(text: &str, max_chars: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= max_chars {
        return line;
    }
    let mut short: String = line.chars().take(max_chars).collect();
    short.push_str("...");
    short
}

pub(super) fn text_content(
    processor: &str,
    input: &Value,
    description: Option<&str>,
    seed: u64,
) -> String {
    let input = shorten(&display(input), 120);
    let task = match description.map(str::trim).filter(|text| !text.is_empty()) {
        Some(description) => shorten(description, 200),
        None => "answer the input".to_string(),
    };
    format!(
        "Mock answer from processor {processor} (ref {seed:016x}) for the input \"{input}\". \
         Task: {task}. This text is generated deterministically by taskyard's mock processor \
         and reports no real research."
    )
}

/// The object an auto schema gets, and the schema it chose for it.
pub(super) fn auto_content(input: &Value, seed: u64) -> (JsonObject, Value) {
    let echo = shorten(&display(input), 120);
    let topic = shorten(&display(input), 40);
    let content = json!({
        "summary": format!("Mock summary of \"{echo}\" (ref {seed:016x})."),
        "input_echo": echo,
        "key_points": [
            format!("Mock key point 1 about \"{topic}\"."),
            format!("Mock key point 2 about \"{topic}\"."),
        ],
    });
    let schema = json!({
        "type": "object",
        "properties": {
            "summary": {"type": "string", "description": "A short summary of the answer."},
            "input_echo": {"type": "string", "description": "The input, shortened."},
            "key_points": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The main points of the answer."
            }
        },
        "required": ["summary", "input_echo", "key_points"],
        "additionalProperties": false
    });
    (into_object(content), schema)
}
