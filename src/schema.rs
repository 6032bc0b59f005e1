//! JSON Schema compilation, cached, and instance validation.
//!
//! Owns the one place where a `json_schema` from a task spec becomes a
//! compiled [`jsonschema::Validator`], and the shape of the messages a
//! violation turns into. It knows nothing of requests, runs or SQL: the
//! request checks live in `validate`, and callers decide what a violation
//! means (a 422, a warning, a failed run).
//!
//! Compilation never reaches outside the process: no network or file
//! retriever is compiled in (`default-features = false`) and the compiler
//! is told to stay offline, so an external `$ref` is an error, never a
//! fetch, a hang or a panic.

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{PatternOptions, Validator};
use parking_lot::Mutex;
use serde_json::Value;

use crate::limits::SCHEMA_DEPTH_MAX;

/// Compiled schemas kept at once. A busy server sees few distinct schemas
/// (one per task spec a client uses), so a full cache is simply cleared
/// instead of tracking recency: memory stays bounded and the next requests
/// recompile what they need.
pub const SCHEMA_CACHE_ENTRIES_MAX: usize = 1_024;

/// Backtracking steps a `pattern` may take on one string before the match
/// counts as an error. `fancy-regex` supports look-around and
/// backreferences, whose worst case is exponential; the bound keeps one
/// hostile schema from holding a worker. Stated here rather than trusting
/// the library's default.
pub const PATTERN_BACKTRACK_STEPS_MAX: usize = 1_000_000;

/// Approximate size of one compiled `pattern`, in bytes.
pub const PATTERN_COMPILED_BYTES_MAX: usize = 1024 * 1024;

/// Compiled validators by the compact JSON text of their schema.
///
/// Shared by every request thread; compiling happens outside the lock, so
/// a slow compile never blocks lookups of other schemas.
pub struct SchemaCache {
    validators_by_schema_text: Mutex<HashMap<String, Arc<Validator>>>,
}

impl Default for SchemaCache {
    fn default() -> Self {
        SchemaCache::new()
    }
}

impl SchemaCache {
    pub fn new() -> SchemaCache {
        SchemaCache {
            validators_by_schema_text: Mutex::new(HashMap::new()),
        }
    }

    /// Number of compiled schemas held now; for tests and metrics.
    pub fn len(&self) -> usize {
        self.validators_by_schema_text.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks `json_schema` against its meta-schema and compiles it, or
    /// answers the cached validator of an identical schema.
    ///
    /// The draft comes from `$schema` (2020-12 when absent) and `format`
    /// is asserted, because pydantic emits `format` for dates, emails and
    /// URLs and a client expects those to be checked. The error is a
    /// readable sentence, fit for a `value_error` message.
    pub fn compile(&self, json_schema: &Value) -> Result<Arc<Validator>, String> {
        // Keyed by text rather than by value so the lookup needs no
        // structural hashing; `preserve_order` makes the text stable for a
        // schema sent twice with the same key order.
        let schema_text = json_schema.to_string();
        if let Some(validator) = self.validators_by_schema_text.lock().get(&schema_text) {
            return Ok(Arc::clone(validator));
        }

        let validator = Arc::new(compile_uncached(json_schema)?);

        let mut validators_by_schema_text = self.validators_by_schema_text.lock();
        if validators_by_schema_text.len() >= SCHEMA_CACHE_ENTRIES_MAX {
            validators_by_schema_text.clear();
        }
        validators_by_schema_text.insert(schema_text, Arc::clone(&validator));
        debug_assert!(validators_by_schema_text.len() <= SCHEMA_CACHE_ENTRIES_MAX);
        Ok(validator)
    }
}

/// Meta-schema check and compilation of one schema, without the cache.
fn compile_uncached(json_schema: &Value) -> Result<Validator, String> {
    // A schema must be an object or a boolean; anything else is refused
    // here so the compiler never sees it.
    if !matches!(json_schema, Value::Object(_) | Value::Bool(_)) {
        return Err(format!(
            "a JSON Schema must be an object or a boolean, not {}",
            json_type_name(json_schema)
        ));
    }

    // The meta-schema check and the compiler recurse over the schema;
    // `validate` reports deeper schemas as a named limit before calling
    // here, and this check keeps any other caller equally bounded.
    let schema_depth = depth(json_schema);
    if schema_depth > SCHEMA_DEPTH_MAX {
        return Err(format!(
            "JSON Schema nested {schema_depth} levels deep, more than SCHEMA_DEPTH_MAX \
             ({SCHEMA_DEPTH_MAX})"
        ));
    }

    // The meta-schema check first: its errors point into the schema
    // (`at /properties/age/type: ...`), which is what the author needs.
    // A `$schema` naming an unknown meta-schema fails here, because no
    // retriever can fetch it.
    if let Err(error) = jsonschema::meta::validate(json_schema) {
        return Err(describe_schema_error(&error));
    }

    jsonschema::options()
        .should_validate_formats(true)
        .offline()
        .with_pattern_options(
            PatternOptions::fancy_regex()
                .backtrack_limit(PATTERN_BACKTRACK_STEPS_MAX)
                .size_limit(PATTERN_COMPILED_BYTES_MAX),
        )
        .build(json_schema)
        .map_err(|error| describe_schema_error(&error))
}

/// The message of a schema that failed its meta-schema or compilation.
fn describe_schema_error(error: &jsonschema::ValidationError<'_>) -> String {
    if let ValidationErrorKind::Referencing(_) = error.kind() {
        // Say why, so the author knows to inline the schema rather than
        // wait for a network that will never be used.
        return format!(
            "invalid JSON Schema: cannot resolve a $ref: {error} (taskyard resolves no \
             external schema; put it under $defs and use a local \"#/$defs/...\" $ref)"
        );
    }
    let path = error.instance_path().as_str();
    if path.is_empty() {
        format!("invalid JSON Schema: {error}")
    } else {
        format!("invalid JSON Schema at {path}: {error}")
    }
}

/// The first way `instance` violates the schema of `validator`, as
/// `at /path: <error>` (the root is `/`), or `None` when it is valid.
pub fn first_violation(validator: &Validator, instance: &Value) -> Option<String> {
    match validator.validate(instance) {
        Ok(()) => None,
        Err(error) => {
            let path = error.instance_path().as_str();
            let path = if path.is_empty() { "/" } else { path };
            Some(format!("at {path}: {error}"))
        }
    }
}

/// Nesting depth of a JSON value, counted in containers: a scalar is 0,
/// `[]`, `{}`, `[1]` and `{"a": 1}` are 1, `{"a": [1]}` is 2 (the way
/// serde_json counts its recursion limit). Iterative, so a deeply nested
/// value cannot overflow the stack.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((current, containers_above)) = pending.pop() {
        let current_depth = match current {
            Value::Array(_) | Value::Object(_) => containers_above + 1,
            _ => containers_above,
        };
        deepest = deepest.max(current_depth);
        match current {
            Value::Array(items) => {
                pending.extend(items.iter().map(|item| (item, current_depth)));
            }
            Value::Object(members) => {
                pending.extend(members.values().map(|member| (member, current_depth)));
            }
            _ => {}
        }
    }
    deepest
}

/// The JSON type of a value, as a user would name it in a message.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(schema: Value) -> Result<Arc<Validator>, String> {
        SchemaCache::new().compile(&schema)
    }

    #[test]
    fn pydantic_schema_compiles_and_validates() {
        let schema = json!({
            "$defs": {
                "Address": {
                    "properties": {"city": {"title": "City", "type": "string"}},
                    "required": ["city"],
                    "title": "Address",
                    "type": "object"
                }
            },
            "properties": {
                "name": {"title": "Name", "type": "string"},
                "home": {"$ref": "#/$defs/Address"},
                "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
                "kind": {"enum": ["a", "b"], "title": "Kind", "type": "string"},
                "born": {"format": "date", "type": "string"}
            },
            "required": ["name", "home", "kind", "born"],
            "additionalProperties": false,
            "title": "Person",
            "type": "object"
        });
        let validator = compile(schema).expect("pydantic schema compiles");
        let good =
            json!({"name": "Ada", "home": {"city": "London"}, "kind": "a", "born": "1815-12-10"});
        assert_eq!(first_violation(&validator, &good), None);

        let bad_ref = json!({"name": "Ada", "home": {}, "kind": "a", "born": "1815-12-10"});
        let message = first_violation(&validator, &bad_ref).expect("violation");
        assert!(message.starts_with("at /home: "), "{message}");

        // Format is asserted, not just annotated.
        let bad_date =
            json!({"name": "Ada", "home": {"city": "L"}, "kind": "a", "born": "tuesday"});
        let message = first_violation(&validator, &bad_date).expect("violation");
        assert!(message.starts_with("at /born: "), "{message}");
    }

    #[test]
    fn root_violation_names_the_root() {
        let validator = compile(json!({"type": "object"})).expect("compiles");
        let message = first_violation(&validator, &json!(3)).expect("violation");
        assert!(message.starts_with("at /: "), "{message}");
    }

    #[test]
    fn invalid_schema_is_a_message_with_its_path() {
        let error = compile(json!({"type": "object", "properties": {"a": {"type": "strin"}}}))
            .expect_err("invalid");
        assert!(error.contains("/properties/a/type"), "{error}");

        let error = compile(json!({"minLength": -1})).expect_err("invalid");
        assert!(error.starts_with("invalid JSON Schema"), "{error}");

        let error = compile(json!([1, 2])).expect_err("invalid");
        assert!(error.contains("object or a boolean"), "{error}");
    }

    #[test]
    fn external_refs_fail_cleanly() {
        for schema in [
            json!({"$ref": "https://example.com/schema.json"}),
            json!({"properties": {"a": {"$ref": "http://127.0.0.1:9/x.json#/a"}}}),
            json!({"$ref": "file:///etc/passwd"}),
            json!({"$ref": "other.json"}),
            json!({"$schema": "https://example.com/my-meta", "type": "object"}),
        ] {
            let result = compile(schema.clone());
            assert!(result.is_err(), "{schema} compiled");
        }
    }

    #[test]
    fn local_ref_cycles_compile_and_validate_without_hanging() {
        let validator = compile(json!({
            "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
            "$ref": "#/$defs/node"
        }))
        .expect("recursive schema compiles");
        assert_eq!(
            first_violation(&validator, &json!({"next": {"next": {}}})),
            None
        );
        assert!(first_violation(&validator, &json!({"next": {"next": 1}})).is_some());

        // A cycle that consumes no instance: must end, either way.
        let _ = compile(json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}))
            .map(|validator| first_violation(&validator, &json!({})));
        // A `$ref` to a place that is not there.
        assert!(compile(json!({"$ref": "#/$defs/missing"})).is_err());
    }

    #[test]
    fn odd_schema_keywords_do_not_panic() {
        for schema in [
            json!({"$schema": 5}),
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}),
            json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"}),
            json!({"pattern": "(unclosed"}),
            json!({"pattern": "^(a+)+$"}),
            json!({"format": "no-such-format"}),
            json!({"$id": "not a uri"}),
            json!({"$id": "https://example.com/root", "$ref": "#/$defs/x", "$defs": {"x": {}}}),
            json!(true),
            json!(false),
        ] {
            let _ = compile(schema);
        }
    }

    #[test]
    fn backtracking_pattern_ends() {
        if let Ok(validator) = compile(json!({"type": "string", "pattern": "^(a|a)*(?=b)$"})) {
            let _ = first_violation(&validator, &json!("a".repeat(64)));
        }
    }

    #[test]
    fn cache_reuses_and_stays_bounded() {
        let cache = SchemaCache::new();
        let first = cache.compile(&json!({"type": "object"})).expect("compiles");
        let second = cache.compile(&json!({"type": "object"})).expect("compiles");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.len(), 1);

        for index in 0..SCHEMA_CACHE_ENTRIES_MAX + 5 {
            cache
                .compile(&json!({"type": "object", "title": index.to_string()}))
                .expect("compiles");
            assert!(cache.len() <= SCHEMA_CACHE_ENTRIES_MAX);
        }
    }

    #[test]
    fn cache_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SchemaCache>();
    }

    #[test]
    fn depth_counts_nesting() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!("text")), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!([1])), 1);
        assert_eq!(depth(&json!({"a": [1]})), 2);
        assert_eq!(depth(&json!({"a": {"b": [1, {"c": 2}]}})), 4);

        // Built by hand: `json!([deep])` would serialise `deep` recursively.
        let mut deep = json!(0);
        for _ in 0..2_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(depth(&deep), 2_000);
    }
}
