//! What a JSON schema says, read without making anything: the kinds its
//! `type` names, whether a value fits it alone, and how two schemas merge
//! into one (`allOf`). Pure like `generate.rs`, which owns the walk and the
//! values; this holds no seed and no budget.

use serde_json::{json, Value};

use super::numbers::Bounds;
use crate::model::JsonObject;

/// Keywords that only annotate; merging ignores them.
const ANNOTATIONS: [&str; 17] = [
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "$schema",
    "$id",
    "$defs",
    "definitions",
    "$anchor",
    "$dynamicAnchor",
    "$vocabulary",
    "deprecated",
    "readOnly",
    "writeOnly",
    "discriminator",
    "contentMediaType",
];

/// Stands in for an absent subschema, which allows anything.
pub(super) static ANY: Value = Value::Bool(true);

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "null" => Kind::Null,
            "boolean" => Kind::Boolean,
            "integer" => Kind::Integer,
            "number" => Kind::Number,
            "string" => Kind::String,
            "array" => Kind::Array,
            "object" => Kind::Object,
            _ => return None,
        })
    }
}

/// The schema of keys that `properties` does not name.
pub(super) fn extra_schema(schema: &JsonObject) -> &Value {
    match schema.get("additionalProperties") {
        Some(extra @ Value::Object(_)) => extra,
        _ => &ANY,
    }
}

/// Merges the constraints of `other` into `target`, so that a value meeting
/// the result meets both (for the keywords handled; other conflicts set
/// `uncertain`). `$ref`, `allOf` and annotations are left out: the caller
/// follows the first two, and the last constrain nothing.
pub(super) fn merge_into(target: &mut JsonObject, other: &JsonObject, uncertain: &mut bool) {
    // A closed object in `allOf` rejects the properties its siblings add,
    // which a merged schema allows.
    let closed =
        |schema: &JsonObject| schema.get("additionalProperties") == Some(&Value::Bool(false));
    if (closed(target) || closed(other))
        && target.contains_key("properties")
        && other.contains_key("properties")
    {
        *uncertain = true;
    }
    for (key, value) in other {
        let key = key.as_str();
        if key == "$ref" || key == "allOf" || ANNOTATIONS.contains(&key) {
            continue;
        }
        let Some(existing) = target.get_mut(key) else {
            target.insert(key.to_string(), value.clone());
            continue;
        };
        if existing == value {
            continue;
        }
        match key {
            "properties" | "patternProperties" | "dependentSchemas" => {
                match (existing.as_object_mut(), value.as_object()) {
                    (Some(existing), Some(value)) => {
                        for (name, schema) in value {
                            match existing.get_mut(name) {
                                Some(mine) if mine != schema => {
                                    conjoin(mine, schema);
                                }
                                Some(_) => {}
                                None => {
                                    existing.insert(name.clone(), schema.clone());
                                }
                            }
                        }
                    }
                    _ => *uncertain = true,
                }
            }
            "required" => {
                if let (Some(existing), Some(value)) = (existing.as_array_mut(), value.as_array()) {
                    for name in value {
                        if !existing.contains(name) {
                            existing.push(name.clone());
                        }
                    }
                }
            }
            "type" => {
                let mine = kinds_of_value(existing);
                let theirs = kinds_of_value(value);
                let both: Vec<Value> = mine
                    .iter()
                    .filter_map(|&kind| {
                        if theirs.contains(&kind) {
                            Some(kind)
                        } else if kind == Kind::Integer && theirs.contains(&Kind::Number)
                            || kind == Kind::Number && theirs.contains(&Kind::Integer)
                        {
                            Some(Kind::Integer)
                        } else {
                            None
                        }
                    })
                    .map(|kind| Value::from(kind_name(kind)))
                    .collect();
                if both.is_empty() {
                    *uncertain = true;
                } else {
                    *existing = Value::Array(both);
                }
            }
            "minimum" | "minLength" | "minItems" | "minProperties" | "minContains" => {
                match (existing.as_f64(), value.as_f64()) {
                    (Some(mine), Some(theirs)) if theirs > mine => *existing = value.clone(),
                    (Some(_), Some(_)) => {}
                    _ => *uncertain = true,
                }
            }
            "maximum" | "maxLength" | "maxItems" | "maxProperties" | "maxContains" => {
                match (existing.as_f64(), value.as_f64()) {
                    (Some(mine), Some(theirs)) if theirs < mine => *existing = value.clone(),
                    (Some(_), Some(_)) => {}
                    _ => *uncertain = true,
                }
            }
            "exclusiveMinimum" | "exclusiveMaximum" => {
                let lower = key == "exclusiveMinimum";
                match (existing.as_f64(), value.as_f64()) {
                    (Some(mine), Some(theirs)) => {
                        if (lower && theirs > mine) || (!lower && theirs < mine) {
                            *existing = value.clone();
                        }
                    }
                    // Draft 4 booleans: exclusive wins.
                    _ if value == &Value::Bool(true) => *existing = value.clone(),
                    _ => *uncertain = true,
                }
            }
            "enum" => match (existing.as_array_mut(), value.as_array()) {
                (Some(mine), Some(theirs)) => mine.retain(|option| theirs.contains(option)),
                _ => *uncertain = true,
            },
            "uniqueItems" => {
                if value == &Value::Bool(true) {
                    *existing = Value::Bool(true);
                }
            }
            "items"
            | "additionalItems"
            | "additionalProperties"
            | "contains"
            | "propertyNames"
            | "unevaluatedProperties"
            | "unevaluatedItems" => {
                if existing.is_array() || value.is_array() {
                    *uncertain = true;
                } else if existing == &Value::Bool(false) || value == &Value::Bool(false) {
                    *existing = Value::Bool(false);
                } else {
                    conjoin(existing, value);
                }
            }
            // Neither A nor B: not (A or B).
            "not" => *existing = json!({"anyOf": [existing.take(), value]}),
            // Two patterns, formats, consts, `multipleOf`s or `anyOf`s:
            // keep the first and let the whole-schema check judge.
            _ => *uncertain = true,
        }
    }
}

/// Makes `existing` require `value` too. Adds to an `allOf` made here
/// before rather than nesting one per merge, so that many `allOf` branches
/// on one property stay one level deep.
fn conjoin(existing: &mut Value, value: &Value) {
    if let Value::Object(object) = existing {
        if object.len() == 1 {
            if let Some(Value::Array(parts)) = object.get_mut("allOf") {
                parts.push(value.clone());
                return;
            }
        }
    }
    *existing = json!({"allOf": [existing.take(), value]});
}

/// The types a schema's `type` names, `None` when it has no `type`.
pub(super) fn kinds_of(schema: &JsonObject) -> Option<Vec<Kind>> {
    schema.get("type").map(kinds_of_value)
}

fn kinds_of_value(types: &Value) -> Vec<Kind> {
    match types {
        Value::String(name) => Kind::parse(name).into_iter().collect(),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .filter_map(Kind::parse)
            .collect(),
        _ => Vec::new(),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Null => "null",
        Kind::Boolean => "boolean",
        Kind::Integer => "integer",
        Kind::Number => "number",
        Kind::String => "string",
        Kind::Array => "array",
        Kind::Object => "object",
    }
}

pub(super) fn has_kind(value: &Value, kind: Kind) -> bool {
    match (kind, value) {
        (Kind::Null, Value::Null)
        | (Kind::Boolean, Value::Bool(_))
        | (Kind::Number, Value::Number(_))
        | (Kind::String, Value::String(_))
        | (Kind::Array, Value::Array(_))
        | (Kind::Object, Value::Object(_)) => true,
        (Kind::Integer, Value::Number(number)) => {
            number.is_i64() || number.is_u64() || number.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// Whether the input's value can be echoed for a field: a scalar that the
/// field's schema clearly accepts. Conservative: a schema with any keyword
/// beyond types, enums, lengths and bounds gets a generated value instead.
pub(super) fn echo_fits(schema: &JsonObject, value: &Value) -> bool {
    const CHECKED: [&str; 12] = [
        "type",
        "enum",
        "const",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "title",
        "description",
        "default",
    ];
    if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
        return false;
    }
    if schema.keys().any(|key| !CHECKED.contains(&key.as_str())) {
        return false;
    }
    if schema
        .get("const")
        .is_some_and(|constant| constant != value)
    {
        return false;
    }
    if let Some(options) = schema.get("enum") {
        if !options
            .as_array()
            .is_some_and(|options| options.contains(value))
        {
            return false;
        }
    }
    if let Some(kinds) = kinds_of(schema) {
        if !kinds.iter().any(|&kind| has_kind(value, kind)) {
            return false;
        }
    }
    match value {
        Value::String(text) => {
            let length = text.chars().count();
            usize_of(schema.get("minLength")).is_none_or(|min| length >= min)
                && usize_of(schema.get("maxLength")).is_none_or(|max| length <= max)
        }
        Value::Number(number) => number
            .as_f64()
            .is_some_and(|number| Bounds::of(schema).contains(number)),
        _ => true,
    }
}

/// Whether a `const` or `enum` value meets the rest of `schema` without
/// looking further: its `type` fits and nothing else constrains it. Merged
/// schemas can put a `const` next to anything (`contains` under `items`).
pub(super) fn fits_alone(schema: &JsonObject, value: &Value) -> bool {
    let kinds_fit =
        kinds_of(schema).is_none_or(|kinds| kinds.iter().any(|&kind| has_kind(value, kind)));
    let in_enum = schema.get("enum").is_none_or(|options| {
        options
            .as_array()
            .is_some_and(|options| options.contains(value))
    });
    let constant_fits = schema.get("const").is_none_or(|constant| constant == value);
    kinds_fit
        && in_enum
        && constant_fits
        && schema.keys().all(|key| {
            matches!(key.as_str(), "type" | "const" | "enum") || ANNOTATIONS.contains(&key.as_str())
        })
}

/// A non-negative whole number keyword such as `minLength`; `2.0` counts.
pub(super) fn usize_of(value: Option<&Value>) -> Option<usize> {
    let value = value?;
    if let Some(number) = value.as_u64() {
        return Some(usize::try_from(number).unwrap_or(usize::MAX));
    }
    let number = value.as_f64()?;
    (number >= 0.0 && number.fract() == 0.0).then_some(number.min(usize::MAX as f64) as usize)
}
