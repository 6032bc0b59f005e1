//! The parse functions' own cases: shapes, types and limits, each
//! problem at its field.

use super::*;
use crate::engine::checks::check_task_spec;
use crate::limits::{MOCK_DELAY_MS_MAX, MOCK_FAIL_TIMES_MAX};
use crate::model::field_error::summarize;
use crate::processors::{Processor, ProcessorConfig, ProcessorError, RunContext};
use crate::scheduler::forcing::{read as mock_controls, Forcing as MockControls};
use crate::schema;
use serde_json::json;
use std::sync::Arc;

/// The engine's input warning, for a wire run.
fn input_warning(run: &RunInput, spec: &TaskSpec, schemas: &SchemaCache) -> Option<Warning> {
    crate::engine::checks::input_warning(&run.input, spec, schemas)
}

struct NeverRuns;

impl Processor for NeverRuns {
    fn run(&self, _ctx: &RunContext<'_>) -> Result<crate::model::Output, ProcessorError> {
        Err(ProcessorError::Permanent("not run in these tests".into()))
    }
}

fn registry() -> Registry {
    let mut registry = Registry::empty();
    for name in ["core", "lite-fast", "mock"] {
        registry.insert(ProcessorConfig::new(name, "mock", Arc::new(NeverRuns)));
    }
    registry
}

/// Parses and checks a run the way the HTTP layer will: shape first,
/// then the semantic checks; every problem as `(loc, type)`.
fn problems_of_run(body: Value) -> Vec<(String, &'static str)> {
    let errors = match parse_run_input(&body) {
        Ok(run) => check_run_input(&run, None, &registry(), &SchemaCache::new()),
        Err(errors) => errors,
    };
    errors
        .iter()
        .map(|error| (error.loc_string(), error.type_str()))
        .collect()
}

fn check_run_problem(body: Value, loc: &str, kind: &str) {
    let problems = problems_of_run(body.clone());
    assert!(
        problems
            .iter()
            .any(|(got_loc, got_kind)| got_loc == loc && *got_kind == kind),
        "{body}: expected {kind} at '{loc}', got {problems:?}"
    );
}

fn good_run(body: Value) -> RunInput {
    let run = parse_run_input(&body).unwrap_or_else(|errors| panic!("{body}: {errors:?}"));
    let errors = check_run_input(&run, None, &registry(), &SchemaCache::new());
    assert!(errors.is_empty(), "{body}: {errors:?}");
    run
}

fn json_spec(json_schema: Value) -> Value {
    json!({"output_schema": {"type": "json", "json_schema": json_schema}})
}

/// A valid run (`"x"` for `core`) with `fields` added or replaced.
fn run_with(fields: Value) -> Value {
    let mut body = json!({"input": "x", "processor": "core"});
    if let (Value::Object(body), Value::Object(fields)) = (&mut body, fields) {
        body.extend(fields);
    }
    body
}

#[test]
// One case per line reads as a table; rustfmt would spread each over five.
#[rustfmt::skip]
fn bad_run_inputs_name_their_field() {
    let long_key = "k".repeat(17);
    let long_key_loc = format!("metadata.{long_key}");
    let long_key_metadata: JsonObject = [(long_key, json!(1))].into_iter().collect();
    let long_url = format!("https://h/{}", "a".repeat(2048));
    let too_many_domains = json!({"include_domains": vec!["a.com"; 150], "exclude_domains": vec!["b.com"; 51]});
    let xml = json!({"output_schema": {"type": "xml"}});
    let array_output = json_spec(json!({"type": "array"}));
    let typo_schema = json_spec(json!({"properties": {"a": {"type": "strin"}}}));
    let remote_ref = json_spec(json!({"properties": {"a": {"$ref": "https://example.com/a.json"}}}));
    let bad_input_schema =
        json!({"output_schema": "s", "input_schema": {"json_schema": {"minimum": "zero"}}});

    let whole_bodies: Vec<(Value, &str, &str)> = vec![
        (json!([]), "", "type_error"),
        (json!("text"), "", "type_error"),
        (json!({"processor": "core"}), "input", "missing"),
        (json!({"input": "x"}), "processor", "missing"),
    ];
    let with_fields: Vec<(Value, &str, &str)> = vec![
        (json!({"input": null}), "input", "missing"),
        (json!({"input": 5}), "input", "type_error"),
        (json!({"input": ["a"]}), "input", "type_error"),
        (json!({"processor": 7}), "processor", "type_error"),
        (json!({"processor": "cor"}), "processor", "unknown_processor"),
        (json!({"processor": "Core"}), "processor", "unknown_processor"),
        (json!({"metadata": []}), "metadata", "type_error"),
        (json!({"metadata": {"a": null}}), "metadata.a", "value_error"),
        (json!({"metadata": {"a": {}}}), "metadata.a", "value_error"),
        (json!({"metadata": {"a": [1]}}), "metadata.a", "value_error"),
        (json!({"metadata": long_key_metadata}), &long_key_loc, "limit_exceeded"),
        (json!({"metadata": {"a": "v".repeat(513)}}), "metadata.a", "limit_exceeded"),
        (json!({"metadata": {"mock_delay": 1}}), "metadata.mock_delay", "value_error"),
        (json!({"metadata": {"mock_delay_ms": -1}}), "metadata.mock_delay_ms", "value_error"),
        (json!({"metadata": {"mock_delay_ms": "soon"}}), "metadata.mock_delay_ms", "value_error"),
        (json!({"metadata": {"mock_delay_ms": 86_400_001}}), "metadata.mock_delay_ms", "limit_exceeded"),
        (json!({"metadata": {"mock_fail": ""}}), "metadata.mock_fail", "value_error"),
        (json!({"metadata": {"mock_fail": 3}}), "metadata.mock_fail", "type_error"),
        (json!({"metadata": {"mock_fail": "é".repeat(513)}}), "metadata.mock_fail", "limit_exceeded"),
        (json!({"metadata": {"mock_fail_times": 1.5}}), "metadata.mock_fail_times", "value_error"),
        (json!({"metadata": {"mock_fail_times": "-1"}}), "metadata.mock_fail_times", "value_error"),
        (json!({"metadata": {"mock_fail_times": 1001}}), "metadata.mock_fail_times", "limit_exceeded"),
        (json!({"enable_events": "yes"}), "enable_events", "type_error"),
        (json!({"source_policy": "x"}), "source_policy", "type_error"),
        (json!({"source_policy": {"include_domains": "a.com"}}), "source_policy.include_domains", "type_error"),
        (json!({"source_policy": {"exclude_domains": ["a", 3]}}), "source_policy.exclude_domains[1]", "type_error"),
        (json!({"source_policy": {"after_date": "2024-02-30"}}), "source_policy.after_date", "value_error"),
        (json!({"source_policy": {"after_date": "24-01-01"}}), "source_policy.after_date", "value_error"),
        (json!({"source_policy": too_many_domains}), "source_policy", "limit_exceeded"),
        (json!({"advanced_settings": []}), "advanced_settings", "type_error"),
        (json!({"mcp_servers": {}}), "mcp_servers", "type_error"),
        (json!({"mcp_servers": [5]}), "mcp_servers[0]", "type_error"),
        (json!({"mcp_servers": [{"url": "https://m"}]}), "mcp_servers[0].name", "missing"),
        (json!({"mcp_servers": [{"name": "m", "url": 1}]}), "mcp_servers[0].url", "type_error"),
        (json!({"mcp_servers": [{"name": "m", "url": "u", "type": "stdio"}]}), "mcp_servers[0].type", "value_error"),
        (json!({"mcp_servers": [{"name": "m", "url": "u", "headers": {"a": 1}}]}), "mcp_servers[0].headers.a", "type_error"),
        (json!({"mcp_servers": [{"name": "m", "url": "u", "allowed_tools": [true]}]}), "mcp_servers[0].allowed_tools[0]", "type_error"),
        (json!({"memory_scope_key": 5}), "memory_scope_key", "type_error"),
        (json!({"previous_interaction_id": {}}), "previous_interaction_id", "type_error"),
        (json!({"webhook": "https://h"}), "webhook", "type_error"),
        (json!({"webhook": {}}), "webhook.url", "missing"),
        (json!({"webhook": {"url": "ftp://h/x"}}), "webhook.url", "value_error"),
        (json!({"webhook": {"url": "https://"}}), "webhook.url", "value_error"),
        (json!({"webhook": {"url": long_url}}), "webhook.url", "limit_exceeded"),
        (json!({"webhook": {"url": "https://h", "event_types": ["task_run.state"]}}), "webhook.event_types[0]", "value_error"),
        (json!({"webhook": {"url": "https://h", "event_types": "task_run.status"}}), "webhook.event_types", "type_error"),
        (json!({"task_spec": "text"}), "task_spec", "type_error"),
        (json!({"task_spec": {}}), "task_spec.output_schema", "missing"),
        (json!({"task_spec": {"output_schema": 5}}), "task_spec.output_schema", "type_error"),
        (json!({"task_spec": xml}), "task_spec.output_schema.type", "value_error"),
        (json!({"task_spec": {"output_schema": {"type": 3}}}), "task_spec.output_schema.type", "type_error"),
        (json!({"task_spec": {"output_schema": "s", "input_schema": {"type": "auto"}}}), "task_spec.input_schema.type", "value_error"),
        (json!({"task_spec": {"output_schema": {"type": "json"}}}), "task_spec.output_schema.json_schema", "missing"),
        (json!({"task_spec": {"output_schema": {"type": "json", "json_schema": "{}"}}}), "task_spec.output_schema.json_schema", "type_error"),
        (json!({"task_spec": {"output_schema": {"json_schema": null}}}), "task_spec.output_schema.json_schema", "type_error"),
        (json!({"task_spec": array_output}), "task_spec.output_schema.json_schema.type", "value_error"),
        (json!({"task_spec": {"output_schema": {"description": 5}}}), "task_spec.output_schema.description", "type_error"),
        (json!({"task_spec": typo_schema}), "task_spec.output_schema.json_schema", "value_error"),
        (json!({"task_spec": remote_ref}), "task_spec.output_schema.json_schema", "value_error"),
        (json!({"task_spec": bad_input_schema}), "task_spec.input_schema.json_schema", "value_error"),
    ];
    assert!(whole_bodies.len() + with_fields.len() >= 30);
    for (body, loc, kind) in whole_bodies {
        check_run_problem(body, loc, kind);
    }
    for (fields, loc, kind) in with_fields {
        check_run_problem(run_with(fields), loc, kind);
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let problems = problems_of_run(json!({
        "input": 5,
        "processor": 7,
        "enable_events": "no",
        "metadata": {"a": null, "mock_x": 1},
    }));
    assert_eq!(
        problems,
        vec![
            ("input".to_string(), "type_error"),
            ("processor".to_string(), "type_error"),
            ("enable_events".to_string(), "type_error"),
        ],
        "shape errors come together; metadata values are a semantic check"
    );

    let run = parse_run_input(&json!({
        "input": "x", "processor": "nope", "metadata": {"a": null, "mock_x": 1},
    }))
    .expect("shape is fine");
    let errors = check_run_input(&run, None, &registry(), &SchemaCache::new());
    let kinds: Vec<&str> = errors.iter().map(FieldError::type_str).collect();
    assert_eq!(kinds, ["unknown_processor", "value_error", "value_error"]);
    assert_eq!(errors[0].msg, "unknown processor 'nope'");
}

#[test]
fn pydantic_text_string_and_auto_specs_are_accepted_as_sent() {
    let pydantic = json!({
        "$defs": {
            "Founder": {
                "properties": {
                    "name": {"title": "Name", "type": "string"},
                    "linkedin": {"anyOf": [{"format": "uri", "type": "string"}, {"type": "null"}], "default": null, "title": "Linkedin"}
                },
                "required": ["name"],
                "title": "Founder",
                "type": "object"
            }
        },
        "additionalProperties": false,
        "properties": {
            "founded": {"format": "date", "title": "Founded", "type": "string"},
            "stage": {"enum": ["seed", "series_a"], "title": "Stage", "type": "string"},
            "founders": {"items": {"$ref": "#/$defs/Founder"}, "title": "Founders", "type": "array"}
        },
        "required": ["founded", "stage", "founders"],
        "title": "Company",
        "type": "object"
    });
    let spec_value = json!({"output_schema": {"json_schema": pydantic, "type": "json"}});
    let run = good_run(
        json!({"input": "Parallel Web Systems", "processor": "core", "task_spec": spec_value}),
    );
    let spec = run.task_spec.expect("spec kept");
    assert_eq!(
        spec.output_schema, spec_value["output_schema"],
        "stored as sent"
    );
    assert!(matches!(
        SchemaKind::of(&spec.output_schema),
        SchemaKind::Json(_)
    ));

    for output_schema in [
        json!({"type": "text", "description": "a haiku"}),
        json!({"type": "text"}),
        json!({"description": "a haiku"}),
        json!({}),
        json!("a haiku about the sea"),
        json!({"type": "auto"}),
        json!({"json_schema": {"properties": {"a": {"type": "integer"}}}}),
    ] {
        let run = good_run(
            json!({"input": {"q": 1}, "processor": "core", "task_spec": {"output_schema": output_schema}}),
        );
        assert_eq!(run.task_spec.expect("kept").output_schema, output_schema);
    }

    let run = good_run(json!({
        "input": {"company": "x"}, "processor": "core",
        "task_spec": {"output_schema": "s", "input_schema": {"type": "json", "json_schema": {"type": "object"}}}
    }));
    assert!(run.task_spec.expect("kept").input_schema.is_some());
    let run = good_run(
        json!({"input": "x", "processor": "core", "task_spec": {"output_schema": "s", "input_schema": null}}),
    );
    assert_eq!(run.task_spec.expect("kept").input_schema, None);
    let run = good_run(
        json!({"input": "x", "processor": "core", "task_spec": {"output_schema": "s", "input_schema": "a company name"}}),
    );
    assert_eq!(
        run.task_spec.expect("kept").input_schema,
        Some(json!("a company name"))
    );
}

#[test]
fn null_fields_equal_absent_ones() {
    let with_nulls = good_run(json!({
        "input": "x", "processor": "core", "metadata": null, "task_spec": null,
        "enable_events": null, "source_policy": null, "advanced_settings": null,
        "mcp_servers": null, "memory_scope_key": null, "previous_interaction_id": null,
        "webhook": null,
    }));
    assert_eq!(with_nulls, RunInput::new("x", "core"));
}

#[test]
fn unknown_fields_are_dropped() {
    let run = good_run(json!({
        "input": {"a": 1}, "processor": "core", "surprise": true,
        "source_policy": {"include_domains": ["a.com"], "after_date": null, "extra": 1},
        "webhook": {"url": "https://hooks.example.com/x", "secret": "s"},
        "mcp_servers": [{"name": "m", "url": "https://m", "type": "url", "headers": {"k": "v"}, "color": "red"}],
        "advanced_settings": {"location": "us"},
    }));
    let stored = serde_json::to_value(&run).expect("serialises");
    assert_eq!(
        stored,
        json!({
            "input": {"a": 1}, "processor": "core",
            "source_policy": {"include_domains": ["a.com"]},
            "advanced_settings": {"location": "us"},
            "mcp_servers": [{"name": "m", "url": "https://m", "type": "url", "headers": {"k": "v"}}],
            "webhook": {"url": "https://hooks.example.com/x"},
        })
    );
}

#[test]
fn every_field_of_a_full_run_is_kept() {
    let body = json!({
        "input": "x", "processor": "lite-fast", "metadata": {"team": "a", "n": 1.5, "on": true},
        "task_spec": {"output_schema": "s"}, "enable_events": false,
        "source_policy": {"include_domains": ["a.com"], "exclude_domains": [], "after_date": "2024-02-29"},
        "advanced_settings": {"location": "us"},
        "mcp_servers": [{"name": "m", "url": "https://m", "allowed_tools": ["t"]}],
        "memory_scope_key": "k", "previous_interaction_id": "trun_1",
        "webhook": {"url": "HTTP://hooks.example.com", "event_types": ["task_run.status"]},
    });
    let run = good_run(body.clone());
    assert_eq!(serde_json::to_value(&run).expect("serialises"), body);
}

#[test]
fn metadata_limits_count_unicode_scalar_values() {
    // 16 two-byte characters: 32 bytes but 16 characters, within the limit.
    let key_at_limit = "é".repeat(16);
    let value_at_limit = "日".repeat(512);
    let mut metadata = JsonObject::new();
    metadata.insert(key_at_limit.clone(), Value::String(value_at_limit));
    assert!(check_metadata(&metadata, true).is_empty());

    metadata.insert("é".repeat(17), Value::from(1));
    metadata.insert("v".into(), Value::String("🦀".repeat(513)));
    let errors = check_metadata(&metadata, true);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        errors[0].kind,
        FieldErrorKind::LimitExceeded {
            limit: "METADATA_KEY_CHARS_MAX",
            max: 16,
            got: 17
        }
    );
    assert_eq!(
        errors[1].kind,
        FieldErrorKind::LimitExceeded {
            limit: "METADATA_VALUE_CHARS_MAX",
            max: 512,
            got: 513
        }
    );
    assert_eq!(errors[1].loc, vec![Loc::from("metadata"), Loc::from("v")]);

    let many: JsonObject = (0..=limits::METADATA_KEYS_MAX)
        .map(|index| (format!("k{index}"), Value::from(index)))
        .collect();
    let errors = check_metadata(&many, false);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].loc_string(), "metadata");
    assert_eq!(
        errors[0].kind,
        FieldErrorKind::LimitExceeded {
            limit: "METADATA_KEYS_MAX",
            max: 64,
            got: 65
        }
    );
}

#[test]
fn a_body_nested_as_deep_as_stored_runs_can_be_read_parses() {
    let nested = |depth: usize| {
        let mut text = String::from("1");
        for level in 0..depth {
            text = if level % 2 == 0 {
                format!("[{text}]")
            } else {
                format!("{{\"k\\\"]\":{text}}}")
            };
        }
        text
    };
    let value = parse_json_body(nested(JSON_DEPTH_READ_MAX).as_bytes()).expect("parses");
    assert_eq!(schema::depth(&value), JSON_DEPTH_READ_MAX);
    // What is stored must read back with the same limit.
    let stored = value.to_string();
    assert!(serde_json::from_str::<Value>(&stored).is_ok());
    let error = parse_json_body(nested(JSON_DEPTH_READ_MAX + 1).as_bytes()).expect_err("deeper");
    assert!(error.msg.contains("JSON_DEPTH_MAX"), "{error}");
    assert_eq!(
        parse_json_body(b" \n").expect_err("empty").kind,
        FieldErrorKind::Missing
    );
    assert!(parse_json_body(b"{} x").is_err(), "trailing characters");
}

#[test]
fn mock_keys_are_reserved_in_runs_only() {
    let mut metadata = JsonObject::new();
    metadata.insert("mock_delay".into(), Value::from(5));
    metadata.insert("mock_fail_times".into(), Value::from(-3));
    assert!(
        check_metadata(&metadata, false).is_empty(),
        "plain keys in a group"
    );
    let errors = check_metadata(&metadata, true);
    let locs: Vec<String> = errors.iter().map(FieldError::loc_string).collect();
    assert_eq!(locs, ["metadata.mock_delay", "metadata.mock_fail_times"]);
    assert!(errors[0].msg.contains("mock_delay_ms"), "{}", errors[0].msg);

    let group = parse_group_create(&json!({"metadata": {"mock_whatever": "x"}}))
        .expect("group metadata ignores mock_ keys");
    assert!(group.is_some());
}

#[test]
fn good_mock_values_and_their_controls() {
    let cases = [
        (
            json!({"mock_delay_ms": 1500}),
            MockControls {
                delay_ms: 1500,
                ..Default::default()
            },
        ),
        (
            json!({"mock_delay_ms": "1500"}),
            MockControls {
                delay_ms: 1500,
                ..Default::default()
            },
        ),
        (
            json!({"mock_delay_ms": 12.9}),
            MockControls {
                delay_ms: 12,
                ..Default::default()
            },
        ),
        (
            json!({"mock_delay_ms": "12.9"}),
            MockControls {
                delay_ms: 12,
                ..Default::default()
            },
        ),
        (json!({"mock_delay_ms": 0}), MockControls::default()),
        (
            json!({"mock_delay_ms": 86_400_000}),
            MockControls {
                delay_ms: 86_400_000,
                ..Default::default()
            },
        ),
        (
            json!({"mock_fail": "boom"}),
            MockControls {
                fail: Some("boom".into()),
                ..Default::default()
            },
        ),
        (
            json!({"mock_fail": "é".repeat(512)}),
            MockControls {
                fail: Some("é".repeat(512)),
                ..Default::default()
            },
        ),
        (
            json!({"mock_fail_times": 2}),
            MockControls {
                fail_times: 2,
                ..Default::default()
            },
        ),
        (
            json!({"mock_fail_times": "1000"}),
            MockControls {
                fail_times: 1000,
                ..Default::default()
            },
        ),
        (
            json!({"mock_delay_ms": 5, "mock_fail": "no", "mock_fail_times": 1, "team": "a"}),
            MockControls {
                delay_ms: 5,
                fail: Some("no".into()),
                fail_times: 1,
            },
        ),
    ];
    for (metadata_value, expected) in cases {
        let Value::Object(metadata) = metadata_value else {
            unreachable!("the table holds objects")
        };
        let errors = check_metadata(&metadata, true);
        assert!(errors.is_empty(), "{metadata:?}: {errors:?}");
        assert_eq!(mock_controls(Some(&metadata)), expected, "{metadata:?}");
    }
    assert_eq!(mock_controls(None), MockControls::default());
}

#[test]
fn bad_mock_values_are_refused_and_read_tolerantly() {
    for (metadata_value, kind) in [
        (json!({"mock_delay_ms": true}), "value_error"),
        (json!({"mock_delay_ms": "1e3"}), "value_error"),
        (json!({"mock_delay_ms": " 5"}), "value_error"),
        (json!({"mock_delay_ms": "5."}), "value_error"),
        (json!({"mock_delay_ms": null}), "value_error"),
        (json!({"mock_delay_ms": 1e300}), "limit_exceeded"),
        (
            json!({"mock_fail_times": "99999999999999999999999"}),
            "limit_exceeded",
        ),
        (json!({"mock_fail_times": ""}), "value_error"),
        (json!({"mock_fail_times": [1]}), "value_error"),
        (json!({"mock_fail": null}), "type_error"),
        (json!({"mock_": 1}), "value_error"),
    ] {
        let Value::Object(metadata) = metadata_value else {
            unreachable!("the table holds objects")
        };
        let errors = check_metadata(&metadata, true);
        assert_eq!(errors.len(), 1, "{metadata:?}: {errors:?}");
        assert_eq!(errors[0].type_str(), kind, "{metadata:?}");
        // Reading a refused value never panics and never exceeds a limit.
        let controls = mock_controls(Some(&metadata));
        assert!(controls.delay_ms <= MOCK_DELAY_MS_MAX);
        assert!(u64::from(controls.fail_times) <= MOCK_FAIL_TIMES_MAX);
    }
}

#[test]
fn add_runs_prefixes_each_input_and_bounds_the_batch() {
    let body = json!({
        "inputs": [
            {"input": "a", "processor": "core"},
            {"input": "b"},
            {"input": "c", "processor": "core", "task_spec": {"output_schema": {"type": "xml"}}},
        ],
        "default_task_spec": {"output_schema": {"type": "auto"}, "input_schema": {"type": "auto"}},
    });
    let errors = parse_add_runs(&body).expect_err("invalid");
    let problems: Vec<(String, &str)> = errors
        .iter()
        .map(|error| (error.loc_string(), error.type_str()))
        .collect();
    assert_eq!(
        problems,
        [
            ("inputs[1].processor".to_string(), "missing"),
            (
                "inputs[2].task_spec.output_schema.type".to_string(),
                "value_error"
            ),
            (
                "default_task_spec.input_schema.type".to_string(),
                "value_error"
            ),
        ]
    );
    assert_eq!(
        errors[0].clone().prefixed(&[Loc::from("body")]).to_json(),
        json!({"loc": ["body", "inputs", 1, "processor"], "msg": "field required", "type": "missing"})
    );

    let one_run = json!({"input": "x", "processor": "core"});
    let too_many = json!({"inputs": vec![one_run.clone(); 1_001]});
    let errors = parse_add_runs(&too_many).expect_err("over the limit");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].loc, vec![Loc::from("inputs")]);
    assert_eq!(
        errors[0].to_json(),
        json!({
            "loc": ["inputs"], "msg": errors[0].msg, "type": "limit_exceeded",
            "limit": "RUNS_PER_REQUEST_MAX", "max": 1000, "got": 1001
        })
    );

    let errors = parse_add_runs(&json!({"inputs": []})).expect_err("empty");
    assert_eq!(
        errors[0].kind,
        FieldErrorKind::LimitExceeded {
            limit: "RUNS_PER_REQUEST_MAX",
            max: 1000,
            got: 0
        }
    );
    let errors = parse_add_runs(&json!({"inputs": {}})).expect_err("not an array");
    assert_eq!(errors[0].type_str(), "type_error");
    let errors = parse_add_runs(&json!({})).expect_err("no inputs");
    assert_eq!(errors[0].type_str(), "missing");
    let errors = parse_add_runs(&json!([])).expect_err("not an object");
    assert!(errors[0].loc.is_empty());

    let at_limit = json!({"inputs": vec![one_run; 1_000], "default_task_spec": null});
    let add = parse_add_runs(&at_limit).expect("1,000 runs is fine");
    assert_eq!(add.inputs.len(), 1_000);
    assert_eq!(add.default_task_spec, None);
}

#[test]
fn group_create_bodies() {
    assert_eq!(parse_group_create(&json!({})), Ok(None));
    assert_eq!(parse_group_create(&json!({"metadata": null})), Ok(None));
    let metadata = parse_group_create(&json!({"metadata": {"a": 1}, "other": 2}))
        .expect("fine")
        .expect("metadata kept");
    assert_eq!(Value::Object(metadata), json!({"a": 1}));

    let errors = parse_group_create(&json!("x")).expect_err("not an object");
    assert_eq!(
        (errors[0].loc_string(), errors[0].type_str()),
        (String::new(), "type_error")
    );
    let errors = parse_group_create(&json!({"metadata": 1})).expect_err("bad metadata");
    assert_eq!(errors[0].loc_string(), "metadata");
    let errors = parse_group_create(&json!({"metadata": {"a": null}})).expect_err("null value");
    assert_eq!(
        (errors[0].loc_string(), errors[0].type_str()),
        ("metadata.a".to_string(), "value_error")
    );
}

#[test]
fn schema_at_the_depth_limit_is_fine() {
    // Each wrap adds two levels (the schema and its `properties`).
    let mut at_limit = json!({"type": "string"});
    for _ in 0..15 {
        at_limit = json!({"type": "object", "properties": {"a": at_limit}});
    }
    let at_limit = json!({"type": "object", "not": at_limit});
    assert_eq!(schema::depth(&at_limit), limits::SCHEMA_DEPTH_MAX);
    let spec = parse_task_spec(&json_spec(at_limit)).expect("shape is fine");
    let errors = check_task_spec(&spec, &SchemaCache::new());
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn too_deep_schemas_are_a_named_limit() {
    let mut deep = json!({"type": "string"});
    for _ in 0..limits::SCHEMA_DEPTH_MAX {
        deep = json!({"type": "object", "properties": {"a": deep}});
    }
    let spec = parse_task_spec(&json_spec(deep)).expect("shape is fine");
    let errors = check_task_spec(&spec, &SchemaCache::new());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].loc_string(), "output_schema.json_schema");
    assert!(matches!(
        errors[0].kind,
        FieldErrorKind::LimitExceeded {
            limit: "SCHEMA_DEPTH_MAX",
            max: 32,
            ..
        }
    ));
}

#[test]
fn external_ref_fails_cleanly_with_a_message() {
    let spec = parse_task_spec(&json_spec(json!({
        "type": "object",
        "properties": {"a": {"$ref": "https://example.com/a.json"}}
    })))
    .expect("shape is fine");
    let errors = check_task_spec(&spec, &SchemaCache::new());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].type_str(), "value_error");
    assert!(errors[0].msg.contains("$ref"), "{}", errors[0].msg);
}

#[test]
fn messages_and_locations_render_like_the_spec() {
    let errors = vec![
        FieldError::new(
            vec![Loc::from("inputs"), Loc::from(3), Loc::from("processor")],
            FieldErrorKind::UnknownProcessor,
            "unknown processor 'cor'",
        ),
        FieldError::missing(vec![Loc::from("inputs"), Loc::from(4), Loc::from("input")]),
    ];
    assert_eq!(errors[0].loc_string(), "inputs[3].processor");
    assert_eq!(
        summarize(&errors, "body"),
        "body.inputs[3].processor: unknown processor 'cor' (and 1 more)"
    );
    assert_eq!(
        summarize(&errors[..1], "body"),
        "body.inputs[3].processor: unknown processor 'cor'"
    );
    assert_eq!(
        summarize(&[FieldError::type_error(vec![], "an object")], "body"),
        "body: expected an object"
    );
    assert_eq!(
        serde_json::to_value(&errors[0].loc).expect("serialises"),
        json!(["inputs", 3, "processor"])
    );
    assert_eq!(
        errors[0].clone().prefixed(&[Loc::from("body")]).to_json(),
        json!({"loc": ["body", "inputs", 3, "processor"], "msg": "unknown processor 'cor'", "type": "unknown_processor"})
    );
    let limit = FieldError::limit(vec![Loc::from("x")], "SCHEMA_DEPTH_MAX", 32, 40);
    assert_eq!(limit.to_json()["limit"], "SCHEMA_DEPTH_MAX");
    assert_eq!(limit.to_json()["got"], 40);
}

#[test]
fn warnings_follow_the_effective_spec() {
    let schemas = SchemaCache::new();
    let spec = TaskSpec {
        output_schema: json!({"type": "json", "json_schema": {
            "type": "object",
            "properties": {"answer": {"type": "string"}, "sources": {"type": "array"}, "reasoning": {"type": "string"}}
        }}),
        input_schema: Some(json!({"type": "json", "json_schema": {
            "type": "object", "required": ["company"], "properties": {"company": {"type": "string"}}
        }})),
    };
    let warning = spec_warning(&spec).expect("warns");
    assert_eq!(warning.kind, "spec_validation_warning");
    assert!(
        warning.message.contains("'sources', 'reasoning'"),
        "{}",
        warning.message
    );

    let good = RunInput::new(json!({"company": "x"}), "core");
    assert_eq!(input_warning(&good, &spec, &schemas), None);
    let bad = RunInput::new(json!({"name": "x"}), "core");
    let warning = input_warning(&bad, &spec, &schemas).expect("warns");
    assert_eq!(warning.kind, "input_validation_warning");
    assert!(warning.message.contains("company"), "{}", warning.message);
    let text_input = RunInput::new("just text", "core");
    assert!(input_warning(&text_input, &spec, &schemas).is_some());

    assert_eq!(spec_warning(&TaskSpec::auto()), None);
    assert_eq!(input_warning(&bad, &TaskSpec::auto(), &schemas), None);
    let text_spec = TaskSpec {
        output_schema: json!("a poem"),
        input_schema: Some(json!("a topic")),
    };
    assert_eq!(spec_warning(&text_spec), None);
    assert_eq!(input_warning(&bad, &text_spec, &schemas), None);
}

#[test]
fn calendar_dates() {
    for good in ["2024-02-29", "2000-02-29", "1999-12-31", "0001-01-01"] {
        assert!(is_calendar_date(good), "{good}");
    }
    for bad in [
        "1900-02-29",
        "2023-02-29",
        "2024-13-01",
        "2024-00-10",
        "2024-01-32",
        "2024-1-01",
        "２０２４-01-01",
        "2024/01/01",
        "",
    ] {
        assert!(!is_calendar_date(bad), "{bad}");
    }
}
