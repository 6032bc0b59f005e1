//! Parallel's request shapes: turns the JSON a client sent into the wire
//! request types, or into a list of problems that each name their field.
//!
//! Owns the `parse_*` functions (shape and type: spec 2.2, 2.3, 4.4, 4.5),
//! the wire's own limits (spec 8: metadata, source policy) and its run
//! warning (spec 2.1: output properties the basis already carries). The
//! checks that need the registry or the schema cache (unknown processors,
//! forcing keys, JSON Schema validity) are the engine's
//! (`crate::engine::checks`); [`check_run_input`] runs both, in the order a
//! client has always seen them. Every problem found is reported, not just
//! the first. Locations are relative to the object parsed; the handlers
//! prefix `body`. It holds no SQL and no HTTP, and never panics on any
//! input: bad input is a `FieldError`.

use serde_json::{Map, Value};

use super::limits;
use super::wire::{AddRuns, RunInput};
use crate::engine::checks::{check_processor, check_run_task_spec, SchemaSide};
use crate::model::{
    FieldError, FieldErrorKind, JsonObject, Loc, SchemaKind, TaskSpec, Timestamp, Warning, When,
};
use crate::processors::Registry;
use crate::scheduler::forcing;
use crate::schema::{json_type_name, SchemaCache};

/// A limit's name and value together, so an error can never cite one
/// limit with another's number.
macro_rules! named_limit {
    ($name:ident) => {
        (stringify!($name), limits::$name as u64)
    };
}

// ---------------------------------------------------------------------
// The body as JSON (spec 1.4, 8)
// ---------------------------------------------------------------------

/// Reads a request body that must be JSON. Empty (or only whitespace), not
/// JSON, or nested too deep is one problem at `body`, which the HTTP layer
/// answers with a 400. Public so that the fuzz target (`fuzz/`) decodes
/// bodies exactly as the server does.
///
/// FIXME(issue 5): serde_json stops at 127 levels of nesting, one short of
/// JSON_DEPTH_MAX (128, spec 8), so a body of exactly 128 levels is a 400.
/// Lifting that here alone is not enough: the engine, the scheduler and
/// the store read stored runs back with serde_json's default limit, so a
/// 128-level run would be accepted and then fail on `.../input` (500) and
/// in the scheduler. Until those reads lift the limit too, 127 is the
/// depth every path can read; `tests/bad_input.rs` pins it.
pub fn parse_json_body(body: &[u8]) -> Result<Value, FieldError> {
    let body_loc = || loc_of(&["body"]);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FieldError::missing(body_loc()));
    }
    serde_json::from_slice(body).map_err(|error| {
        let message = if error.to_string().contains("recursion limit") {
            format!(
                "JSON nested too deep: at most {} levels are read (JSON_DEPTH_MAX)",
                JSON_DEPTH_READ_MAX
            )
        } else {
            format!("body is not valid JSON: {error}")
        };
        FieldError::value_error(body_loc(), message)
    })
}

/// The deepest nesting serde_json reads (see [`parse_json_body`]).
pub const JSON_DEPTH_READ_MAX: usize = limits::JSON_DEPTH_MAX - 1;

// ---------------------------------------------------------------------
// Reading fields. A field set to null equals an absent one (spec 1.4).
// ---------------------------------------------------------------------

fn loc_of(steps: &[&str]) -> Vec<Loc> {
    steps.iter().map(|step| Loc::from(*step)).collect()
}

fn with_step(loc: &[Loc], step: impl Into<Loc>) -> Vec<Loc> {
    let mut longer = loc.to_vec();
    longer.push(step.into());
    longer
}

/// A type error that also says what was sent.
fn wrong_type(loc: Vec<Loc>, expected: &str, got: &Value) -> FieldError {
    FieldError::new(
        loc,
        FieldErrorKind::TypeError,
        format!("expected {expected}, got {}", json_type_name(got)),
    )
}

/// The value of `key`, or `None` when it is absent or null.
fn present<'a>(object: &'a JsonObject, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

fn read_string(
    object: &JsonObject,
    key: &str,
    loc: &[Loc],
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match present(object, key)? {
        Value::String(text) => Some(text.clone()),
        other => {
            errors.push(wrong_type(with_step(loc, key), "a string", other));
            None
        }
    }
}

fn read_bool(
    object: &JsonObject,
    key: &str,
    loc: &[Loc],
    errors: &mut Vec<FieldError>,
) -> Option<bool> {
    match present(object, key)? {
        Value::Bool(flag) => Some(*flag),
        other => {
            errors.push(wrong_type(with_step(loc, key), "a boolean", other));
            None
        }
    }
}

fn read_object<'a>(
    object: &'a JsonObject,
    key: &str,
    loc: &[Loc],
    errors: &mut Vec<FieldError>,
) -> Option<&'a JsonObject> {
    match present(object, key)? {
        Value::Object(inner) => Some(inner),
        other => {
            errors.push(wrong_type(with_step(loc, key), "an object", other));
            None
        }
    }
}

/// An array of strings; each bad element is reported at its index.
fn read_string_array(
    object: &JsonObject,
    key: &str,
    loc: &[Loc],
    errors: &mut Vec<FieldError>,
) -> Option<Vec<String>> {
    let field_loc = with_step(loc, key);
    let items = match present(object, key)? {
        Value::Array(items) => items,
        other => {
            errors.push(wrong_type(field_loc, "an array of strings", other));
            return None;
        }
    };
    let errors_before = errors.len();
    let mut strings = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) => strings.push(text.clone()),
            other => errors.push(wrong_type(with_step(&field_loc, index), "a string", other)),
        }
    }
    (errors.len() == errors_before).then_some(strings)
}

/// A root that must be an object, or the one error saying it is not.
fn expect_root_object(value: &Value) -> Result<&JsonObject, Vec<FieldError>> {
    match value {
        Value::Object(object) => Ok(object),
        other => Err(vec![wrong_type(Vec::new(), "an object", other)]),
    }
}

fn finish<T>(value: T, errors: Vec<FieldError>) -> Result<T, Vec<FieldError>> {
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors)
    }
}

// ---------------------------------------------------------------------
// RunInput (spec 2.2)
// ---------------------------------------------------------------------

/// Reads one run as requested: the body of create run or an element of
/// add-runs `inputs`. Shape and types only; [`check_run_input`] does the
/// checks that need the registry or the schema cache. Unknown fields are
/// dropped here, so they are never stored (spec 1.4).
pub fn parse_run_input(value: &Value) -> Result<RunInput, Vec<FieldError>> {
    let (run, errors) = parse_run_input_lenient(value)?;
    finish(run, errors)
}

/// Like [`parse_run_input`], but a body with bad fields still gives the
/// run without them, beside the problems: the caller can then run the
/// semantic checks too and report every problem at once (spec 1.6). Fails
/// only when the body is not an object.
pub fn parse_run_input_lenient(
    value: &Value,
) -> Result<(RunInput, Vec<FieldError>), Vec<FieldError>> {
    let object = expect_root_object(value)?;
    let mut errors = Vec::new();
    let root: &[Loc] = &[];

    let input = match present(object, "input") {
        None => {
            errors.push(FieldError::missing(loc_of(&["input"])));
            Value::Null
        }
        Some(input @ (Value::String(_) | Value::Object(_))) => input.clone(),
        Some(other) => {
            errors.push(wrong_type(
                loc_of(&["input"]),
                "a string or an object",
                other,
            ));
            Value::Null
        }
    };

    let processor = match present(object, "processor") {
        None => {
            errors.push(FieldError::missing(loc_of(&["processor"])));
            String::new()
        }
        Some(Value::String(name)) => name.clone(),
        Some(other) => {
            errors.push(wrong_type(loc_of(&["processor"]), "a string", other));
            String::new()
        }
    };

    let metadata = read_object(object, "metadata", root, &mut errors).cloned();

    let task_spec = match present(object, "task_spec") {
        None => None,
        Some(spec_value) => match parse_task_spec(spec_value) {
            Ok(spec) => Some(spec),
            Err(spec_errors) => {
                let prefix = loc_of(&["task_spec"]);
                errors.extend(spec_errors.into_iter().map(|e| e.prefixed(&prefix)));
                None
            }
        },
    };

    let enable_events = read_bool(object, "enable_events", root, &mut errors);
    let source_policy = read_object(object, "source_policy", root, &mut errors)
        .map(|policy| parse_source_policy(policy, &mut errors));
    let advanced_settings = read_object(object, "advanced_settings", root, &mut errors)
        .map(|settings| Value::Object(settings.clone()));
    let mcp_servers = parse_mcp_servers(object, &mut errors);
    let memory_scope_key = read_string(object, "memory_scope_key", root, &mut errors);
    let previous_interaction_id = read_string(object, "previous_interaction_id", root, &mut errors);
    let webhook = read_object(object, "webhook", root, &mut errors)
        .map(|webhook| parse_webhook(webhook, &mut errors));

    let run = RunInput {
        input,
        processor,
        metadata,
        task_spec,
        enable_events,
        source_policy,
        advanced_settings,
        mcp_servers,
        memory_scope_key,
        previous_interaction_id,
        webhook,
    };
    Ok((run, errors))
}

/// SourcePolicy: known keys only, nulls left out. The domain count is a
/// limit, checked in [`check_run_input`].
fn parse_source_policy(policy: &JsonObject, errors: &mut Vec<FieldError>) -> Value {
    let loc = loc_of(&["source_policy"]);
    let mut kept = Map::new();
    for key in ["include_domains", "exclude_domains"] {
        if let Some(domains) = read_string_array(policy, key, &loc, errors) {
            kept.insert(
                key.to_string(),
                Value::Array(domains.into_iter().map(Value::String).collect()),
            );
        }
    }
    if let Some(after_date) = read_string(policy, "after_date", &loc, errors) {
        if is_calendar_date(&after_date) {
            kept.insert("after_date".into(), Value::String(after_date));
        } else {
            errors.push(FieldError::value_error(
                with_step(&loc, "after_date"),
                format!("expected a date as YYYY-MM-DD, got '{after_date}'"),
            ));
        }
    }
    Value::Object(kept)
}

/// True for `YYYY-MM-DD` naming a day that exists.
fn is_calendar_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits_at = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    if !(digits_at(0..4) && digits_at(5..7) && digits_at(8..10)) {
        return false;
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .fold(0u32, |sum, digit| sum * 10 + u32::from(digit - b'0'))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

/// McpServer[]: `name`, `url` required strings, `type` `"url"`, `headers`
/// an object of strings, `allowed_tools` a string array. Known keys only.
fn parse_mcp_servers(object: &JsonObject, errors: &mut Vec<FieldError>) -> Option<Vec<Value>> {
    let servers_loc = loc_of(&["mcp_servers"]);
    let servers = match present(object, "mcp_servers")? {
        Value::Array(servers) => servers,
        other => {
            errors.push(wrong_type(servers_loc, "an array of objects", other));
            return None;
        }
    };
    let mut kept_servers = Vec::with_capacity(servers.len());
    for (index, server) in servers.iter().enumerate() {
        let loc = with_step(&servers_loc, index);
        let Value::Object(server) = server else {
            errors.push(wrong_type(loc, "an object", server));
            continue;
        };
        let mut kept = Map::new();
        for key in ["name", "url"] {
            match read_string(server, key, &loc, errors) {
                Some(text) => {
                    kept.insert(key.to_string(), Value::String(text));
                }
                None if present(server, key).is_none() => {
                    errors.push(FieldError::missing(with_step(&loc, key)));
                }
                None => {}
            }
        }
        if let Some(kind) = read_string(server, "type", &loc, errors) {
            if kind == "url" {
                kept.insert("type".into(), Value::String(kind));
            } else {
                errors.push(FieldError::value_error(
                    with_step(&loc, "type"),
                    format!("expected \"url\", got '{kind}'"),
                ));
            }
        }
        if let Some(headers) = read_object(server, "headers", &loc, errors) {
            let headers_loc = with_step(&loc, "headers");
            let mut headers_ok = true;
            for (name, header_value) in headers {
                if !header_value.is_string() {
                    headers_ok = false;
                    errors.push(wrong_type(
                        with_step(&headers_loc, name.as_str()),
                        "a string",
                        header_value,
                    ));
                }
            }
            if headers_ok {
                kept.insert("headers".into(), Value::Object(headers.clone()));
            }
        }
        if let Some(tools) = read_string_array(server, "allowed_tools", &loc, errors) {
            kept.insert(
                "allowed_tools".into(),
                Value::Array(tools.into_iter().map(Value::String).collect()),
            );
        }
        kept_servers.push(Value::Object(kept));
    }
    Some(kept_servers)
}

/// The only webhook event type (spec 9).
const WEBHOOK_EVENT_TYPE: &str = "task_run.status";

/// Webhook: `url` (http or https, required), `event_types` (array of
/// `"task_run.status"`). Known keys only.
fn parse_webhook(webhook: &JsonObject, errors: &mut Vec<FieldError>) -> Value {
    let loc = loc_of(&["webhook"]);
    let mut kept = Map::new();
    match read_string(webhook, "url", &loc, errors) {
        Some(url) => {
            let url_loc = with_step(&loc, "url");
            let (limit, max) = named_limit!(WEBHOOK_URL_CHARS_MAX);
            let chars = url.chars().count() as u64;
            if chars > max {
                errors.push(FieldError::new(
                    url_loc,
                    FieldErrorKind::LimitExceeded {
                        limit,
                        max,
                        got: chars,
                    },
                    format!("URL too long: {chars} characters, at most {max} ({limit})"),
                ));
            } else if !is_http_url(&url) {
                errors.push(FieldError::value_error(
                    url_loc,
                    "expected an http or https URL",
                ));
            } else {
                kept.insert("url".into(), Value::String(url));
            }
        }
        None if present(webhook, "url").is_none() => {
            errors.push(FieldError::missing(with_step(&loc, "url")));
        }
        None => {}
    }
    if let Some(event_types) = read_string_array(webhook, "event_types", &loc, errors) {
        let types_loc = with_step(&loc, "event_types");
        let mut all_known = true;
        for (index, event_type) in event_types.iter().enumerate() {
            if event_type != WEBHOOK_EVENT_TYPE {
                all_known = false;
                errors.push(FieldError::value_error(
                    with_step(&types_loc, index),
                    format!("expected \"{WEBHOOK_EVENT_TYPE}\", got '{event_type}'"),
                ));
            }
        }
        if all_known {
            kept.insert(
                "event_types".into(),
                Value::Array(event_types.into_iter().map(Value::String).collect()),
            );
        }
    }
    Value::Object(kept)
}

/// An absolute http or https URL with a host and no whitespace. Not a full
/// URL parser: the delivery client rejects what this lets through, and
/// the point here is to refuse other schemes (`file:`, `javascript:`).
fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let Some(rest) = rest else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

// ---------------------------------------------------------------------
// TaskSpec (spec 2.3)
// ---------------------------------------------------------------------

/// Reads a task spec. Schemas are kept exactly as sent (spec 2.3); their
/// JSON Schema validity is for [`crate::engine::checks::check_task_spec`].
pub fn parse_task_spec(value: &Value) -> Result<TaskSpec, Vec<FieldError>> {
    let object = expect_root_object(value)?;
    let mut errors = Vec::new();

    let output_schema = match present(object, "output_schema") {
        None => {
            errors.push(FieldError::missing(loc_of(&["output_schema"])));
            Value::Null
        }
        Some(schema_value) => {
            check_schema_shape(schema_value, SchemaSide::Output, &mut errors);
            schema_value.clone()
        }
    };
    let input_schema = present(object, "input_schema").map(|schema_value| {
        check_schema_shape(schema_value, SchemaSide::Input, &mut errors);
        schema_value.clone()
    });

    finish(
        TaskSpec {
            output_schema,
            input_schema,
        },
        errors,
    )
}

/// The shape rules of one schema of a task spec; the kinds it accepts are
/// exactly those [`SchemaKind::of`] reads back.
fn check_schema_shape(schema_value: &Value, side: SchemaSide, errors: &mut Vec<FieldError>) {
    let loc = loc_of(&[side.key()]);
    let object = match schema_value {
        // A bare string is a text schema with that description.
        Value::String(_) => return,
        Value::Object(object) => object,
        other => {
            errors.push(wrong_type(loc, "a schema object or a string", other));
            return;
        }
    };

    if let Some(description) = object.get("description") {
        if !(description.is_string() || description.is_null()) {
            errors.push(wrong_type(
                with_step(&loc, "description"),
                "a string",
                description,
            ));
        }
    }

    let declared_type = match object.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(kind)) => Some(kind.as_str()),
        Some(other) => {
            errors.push(wrong_type(with_step(&loc, "type"), "a string", other));
            return;
        }
    };
    let is_json = match declared_type {
        Some("json") => true,
        Some("text") => false,
        Some("auto") if side == SchemaSide::Output => false,
        Some("auto") => {
            errors.push(FieldError::value_error(
                with_step(&loc, "type"),
                "an input schema cannot be auto; expected json or text",
            ));
            return;
        }
        Some(other) => {
            let allowed = match side {
                SchemaSide::Output => "json, text or auto",
                SchemaSide::Input => "json or text",
            };
            errors.push(FieldError::value_error(
                with_step(&loc, "type"),
                format!("unknown schema type '{other}'; expected {allowed}"),
            ));
            return;
        }
        // Without `type`, a `json_schema` key makes it json (spec 2.3).
        None => object.contains_key("json_schema"),
    };
    if !is_json {
        return;
    }

    let json_schema_loc = with_step(&loc, "json_schema");
    let json_schema = match object.get("json_schema") {
        // Present-but-null with no `type` is refused rather than read as
        // text: the schema is stored as sent, and `SchemaKind::of` would
        // read it back as json.
        None => {
            errors.push(FieldError::missing(json_schema_loc));
            return;
        }
        Some(Value::Null) if declared_type.is_some() => {
            errors.push(FieldError::missing(json_schema_loc));
            return;
        }
        Some(Value::Object(json_schema)) => json_schema,
        Some(other) => {
            errors.push(wrong_type(json_schema_loc, "an object", other));
            return;
        }
    };

    // Output `content` is always an object (spec 2.4).
    if side == SchemaSide::Output {
        if let Some(top_type) = json_schema.get("type") {
            if top_type.as_str() != Some("object") {
                errors.push(FieldError::value_error(
                    with_step(&json_schema_loc, "type"),
                    format!("an output json_schema must describe an object; got type {top_type}"),
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------
// Add runs and create group (spec 4.4, 4.5)
// ---------------------------------------------------------------------

/// Reads an add-runs body. Each input's errors carry its index, so the
/// whole batch is rejected naming each bad run (DESIGN invariant 8).
pub fn parse_add_runs(value: &Value) -> Result<AddRuns, Vec<FieldError>> {
    let (request, _, errors) = parse_add_runs_lenient(value)?;
    finish(request, errors)
}

/// Like [`parse_add_runs`], but keeps every input whose body is an object
/// (bad fields dropped) with its position in `inputs`, beside the problems,
/// so that the semantic checks can report on them too. Fails only when the
/// body is not an object.
pub fn parse_add_runs_lenient(
    value: &Value,
) -> Result<(AddRuns, Vec<usize>, Vec<FieldError>), Vec<FieldError>> {
    let object = expect_root_object(value)?;
    let mut errors = Vec::new();
    let inputs_loc = loc_of(&["inputs"]);

    let mut inputs = Vec::new();
    let mut positions = Vec::new();
    match present(object, "inputs") {
        None => errors.push(FieldError::missing(inputs_loc)),
        Some(Value::Array(items)) => {
            let (limit, max) = named_limit!(RUNS_PER_REQUEST_MAX);
            let got = items.len() as u64;
            if items.is_empty() || got > max {
                // Past the limit the entries are not read at all: the
                // answer is the same and the work stays bounded.
                errors.push(FieldError::new(
                    inputs_loc,
                    FieldErrorKind::LimitExceeded { limit, max, got },
                    format!("expected 1 to {max} inputs ({limit}), got {got}"),
                ));
            } else {
                inputs.reserve(items.len());
                for (index, item) in items.iter().enumerate() {
                    let prefix = with_step(&inputs_loc, index);
                    match parse_run_input_lenient(item) {
                        Ok((run, run_errors)) => {
                            inputs.push(run);
                            positions.push(index);
                            errors.extend(run_errors.into_iter().map(|e| e.prefixed(&prefix)));
                        }
                        Err(run_errors) => {
                            errors.extend(run_errors.into_iter().map(|e| e.prefixed(&prefix)));
                        }
                    }
                }
            }
        }
        Some(other) => errors.push(wrong_type(inputs_loc, "an array of run inputs", other)),
    }

    let default_task_spec = match present(object, "default_task_spec") {
        None => None,
        Some(spec_value) => match parse_task_spec(spec_value) {
            Ok(spec) => Some(spec),
            Err(spec_errors) => {
                let prefix = loc_of(&["default_task_spec"]);
                errors.extend(spec_errors.into_iter().map(|e| e.prefixed(&prefix)));
                None
            }
        },
    };

    Ok((
        AddRuns {
            inputs,
            default_task_spec,
        },
        positions,
        errors,
    ))
}

/// Reads a create-group body: `{}` or `{"metadata": {...}}`. Metadata
/// limits apply; `mock_` keys are plain keys in a group (spec 10.9).
pub fn parse_group_create(value: &Value) -> Result<Option<JsonObject>, Vec<FieldError>> {
    let object = expect_root_object(value)?;
    let mut errors = Vec::new();
    let metadata = read_object(object, "metadata", &[], &mut errors).cloned();
    if let Some(metadata) = &metadata {
        errors.extend(check_metadata(metadata, false));
    }
    finish(metadata, errors)
}

/// Reads a create-schedule body (a taskyard extension):
/// `{"when": {"kind": ...}, "run": <a RunInput>}`. `when` is one of
/// `{"kind": "at", "at": RFC 3339}`, `{"kind": "delay", "delay_ms": N}`,
/// `{"kind": "cron", "cron": "m h dom mon dow", "timezone": "UTC"}` (the
/// zone defaults to UTC) and `{"kind": "interval", "every_s": N}`.
pub fn parse_schedule_create(value: &Value) -> Result<(When, RunInput), Vec<FieldError>> {
    let object = expect_root_object(value)?;
    let mut errors = Vec::new();
    let when = match present(object, "when") {
        None => {
            errors.push(FieldError::missing(loc_of(&["when"])));
            None
        }
        Some(Value::Object(when)) => parse_when(when, &mut errors),
        Some(other) => {
            errors.push(wrong_type(loc_of(&["when"]), "an object", other));
            None
        }
    };
    let run = match present(object, "run") {
        None => {
            errors.push(FieldError::missing(loc_of(&["run"])));
            None
        }
        Some(run) => match parse_run_input(run) {
            Ok(run) => Some(run),
            Err(problems) => {
                errors.extend(problems.into_iter().map(|e| e.prefixed(&loc_of(&["run"]))));
                None
            }
        },
    };
    match (when, run) {
        (Some(when), Some(run)) if errors.is_empty() => Ok((when, run)),
        _ => Err(errors),
    }
}

/// The largest delay or interval a schedule takes: ten years, in seconds.
const SCHEDULE_SPAN_S_MAX: u64 = 10 * 366 * 86_400;

fn parse_when(when: &JsonObject, errors: &mut Vec<FieldError>) -> Option<When> {
    let loc = loc_of(&["when"]);
    let whole = |key: &str, max: u64, errors: &mut Vec<FieldError>| -> Option<u64> {
        let field = with_step(&loc, key);
        match present(when, key) {
            None => {
                errors.push(FieldError::missing(field));
                None
            }
            Some(value) => match value.as_u64() {
                Some(number) if number <= max => Some(number),
                Some(number) => {
                    errors.push(FieldError::value_error(
                        field,
                        format!("{number} is over {max}"),
                    ));
                    None
                }
                None => {
                    errors.push(wrong_type(field, "an integer >= 0", value));
                    None
                }
            },
        }
    };
    let kind = match read_string(when, "kind", &loc, errors) {
        Some(kind) => kind,
        None => {
            if present(when, "kind").is_none() {
                errors.push(FieldError::missing(with_step(&loc, "kind")));
            }
            return None;
        }
    };
    match kind.as_str() {
        "at" => {
            let field = with_step(&loc, "at");
            let text = read_string(when, "at", &loc, errors);
            match text {
                None => {
                    if present(when, "at").is_none() {
                        errors.push(FieldError::missing(field));
                    }
                    None
                }
                Some(text) => {
                    match serde_json::from_value::<Timestamp>(Value::String(text.clone())) {
                        Ok(at) => Some(When::At { at }),
                        Err(_) => {
                            errors.push(FieldError::value_error(
                                field,
                                format!("'{text}' is not an RFC 3339 time"),
                            ));
                            None
                        }
                    }
                }
            }
        }
        "delay" => whole("delay_ms", SCHEDULE_SPAN_S_MAX * 1_000, errors)
            .map(|delay_ms| When::Delay { delay_ms }),
        "interval" => {
            whole("every_s", SCHEDULE_SPAN_S_MAX, errors).map(|every_s| When::Interval { every_s })
        }
        "cron" => {
            let cron = read_string(when, "cron", &loc, errors);
            if cron.is_none() && present(when, "cron").is_none() {
                errors.push(FieldError::missing(with_step(&loc, "cron")));
            }
            let timezone =
                read_string(when, "timezone", &loc, errors).unwrap_or_else(|| "UTC".to_string());
            cron.map(|cron| When::Cron { cron, timezone })
        }
        other => {
            errors.push(FieldError::value_error(
                with_step(&loc, "kind"),
                format!("expected one of at, delay, cron, interval; got '{other}'"),
            ));
            None
        }
    }
}

// ---------------------------------------------------------------------
// Metadata (spec 8, 10.9)
// ---------------------------------------------------------------------

/// Checks a metadata object against spec 8; with `run`, also the reserved
/// `mock_` keys of spec 10.9. Locations are `["metadata", key]`.
pub fn check_metadata(metadata: &JsonObject, run: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let metadata_loc = loc_of(&["metadata"]);

    let (limit, max) = named_limit!(METADATA_KEYS_MAX);
    let keys = metadata.len() as u64;
    if keys > max {
        errors.push(FieldError::new(
            metadata_loc.clone(),
            FieldErrorKind::LimitExceeded {
                limit,
                max,
                got: keys,
            },
            format!("too many keys: {keys}, at most {max} ({limit})"),
        ));
    }

    for (key, value) in metadata {
        let loc = with_step(&metadata_loc, key.as_str());

        let (limit, max) = named_limit!(METADATA_KEY_CHARS_MAX);
        let key_chars = key.chars().count() as u64;
        if key_chars > max {
            errors.push(FieldError::new(
                loc.clone(),
                FieldErrorKind::LimitExceeded {
                    limit,
                    max,
                    got: key_chars,
                },
                format!("key too long: {key_chars} characters, at most {max} ({limit})"),
            ));
        }

        if run && key.starts_with(forcing::KEY_PREFIX) {
            if let Some(error) = forcing::check_key(key, value, loc) {
                errors.push(error);
            }
        } else if let Some(error) = check_metadata_value(value, loc) {
            errors.push(error);
        }
    }
    errors
}

/// A plain metadata value: a string of bounded length, a finite number or
/// a boolean.
fn check_metadata_value(value: &Value, loc: Vec<Loc>) -> Option<FieldError> {
    match value {
        Value::String(text) => {
            let (limit, max) = named_limit!(METADATA_VALUE_CHARS_MAX);
            let chars = text.chars().count() as u64;
            (chars > max).then(|| {
                FieldError::new(
                    loc,
                    FieldErrorKind::LimitExceeded {
                        limit,
                        max,
                        got: chars,
                    },
                    format!("value too long: {chars} characters, at most {max} ({limit})"),
                )
            })
        }
        Value::Bool(_) => None,
        // serde_json never parses a non-finite number, but a value built
        // in code could carry one through `as_f64`; refuse it all the same.
        Value::Number(number) => match number.as_f64() {
            Some(float) if !float.is_finite() => Some(FieldError::value_error(
                loc,
                "metadata numbers must be finite",
            )),
            _ => None,
        },
        Value::Null | Value::Array(_) | Value::Object(_) => Some(FieldError::value_error(
            loc,
            format!(
                "metadata values must be strings, numbers or booleans, got {}",
                json_type_name(value)
            ),
        )),
    }
}

// ---------------------------------------------------------------------
// Semantic checks
// ---------------------------------------------------------------------

/// The checks of one parsed run that need the registry or the schema
/// cache: known processor, metadata limits and reserved keys, source
/// policy size, and the run's own task spec.
///
/// `default_task_spec` is the group's default that applies when the run
/// has none. It is deliberately not checked here: the caller checks it
/// once per request (at `["default_task_spec"]`) rather than once per run.
pub fn check_run_input(
    run: &RunInput,
    default_task_spec: Option<&TaskSpec>,
    registry: &Registry,
    schemas: &SchemaCache,
) -> Vec<FieldError> {
    let _ = default_task_spec;
    let mut errors: Vec<FieldError> = check_processor(&run.processor, registry)
        .into_iter()
        .collect();

    if let Some(metadata) = &run.metadata {
        errors.extend(check_metadata(metadata, true));
    }

    if let Some(Value::Object(policy)) = &run.source_policy {
        let count_of = |key: &str| {
            policy
                .get(key)
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        let domains = (count_of("include_domains") + count_of("exclude_domains")) as u64;
        let (limit, max) = named_limit!(SOURCE_POLICY_DOMAINS_MAX);
        if domains > max {
            errors.push(FieldError::new(
                loc_of(&["source_policy"]),
                FieldErrorKind::LimitExceeded {
                    limit,
                    max,
                    got: domains,
                },
                format!(
                    "too many domains: {domains} in include_domains and exclude_domains \
                     together, at most {max} ({limit})"
                ),
            ));
        }
    }

    errors.extend(check_run_task_spec(run.task_spec.as_ref(), schemas));
    errors
}

// ---------------------------------------------------------------------
// Warnings (spec 2.1)
// ---------------------------------------------------------------------

/// Output property names that duplicate what the basis already carries
/// (spec 2.1).
const BASIS_LIKE_PROPERTY_NAMES: [&str; 7] = [
    "citations",
    "confidence",
    "evidence",
    "reasoning",
    "source",
    "sources",
    "source_urls",
];

/// A `spec_validation_warning` when the json output schema has top-level
/// properties whose names the basis already covers.
pub fn spec_warning(effective_spec: &TaskSpec) -> Option<Warning> {
    let SchemaKind::Json(json_schema) = SchemaKind::of(&effective_spec.output_schema) else {
        return None;
    };
    let properties = json_schema.get("properties")?.as_object()?;
    let named: Vec<&str> = properties
        .keys()
        .map(String::as_str)
        .filter(|name| BASIS_LIKE_PROPERTY_NAMES.contains(name))
        .collect();
    if named.is_empty() {
        return None;
    }
    let quoted: Vec<String> = named.iter().map(|name| format!("'{name}'")).collect();
    Some(Warning {
        kind: "spec_validation_warning".to_string(),
        message: format!(
            "output property {} duplicates what each output's basis already carries \
             (citations, reasoning, confidence)",
            quoted.join(", ")
        ),
        detail: Some(serde_json::json!({ "properties": named })),
    })
}

#[cfg(test)]
mod tests;
