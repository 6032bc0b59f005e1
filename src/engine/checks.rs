//! The checks every run request passes in the engine, whichever face it
//! came through: a known processor, valid forcing keys, a task spec whose
//! JSON Schemas compile and are not nested too deep, and the warning of an
//! input that does not fit its input schema.
//!
//! A face checks its own wire first (shapes, its limits); these checks need
//! the registry or the schema cache, so they live here. Locations are
//! relative to the run request (`["processor"]`, `["task_spec",
//! "output_schema", "json_schema"]`); the face prefixes its own path.

use serde_json::Value;

use crate::limits;
use crate::model::{FieldError, FieldErrorKind, Loc, RunRequest, SchemaKind, TaskSpec, Warning};
use crate::processors::Registry;
use crate::scheduler::forcing;
use crate::schema::{self, SchemaCache};

/// A limit's name and value together, so an error can never cite one
/// limit with another's number.
macro_rules! named_limit {
    ($name:ident) => {
        (stringify!($name), limits::$name as u64)
    };
}

fn loc_of(steps: &[&str]) -> Vec<Loc> {
    steps
        .iter()
        .map(|step| Loc::Key(step.to_string()))
        .collect()
}

/// The engine's checks of one run request. The group's default spec is
/// not checked here: the caller checks it once per request with
/// [`check_task_spec`] rather than once per run.
pub fn check_run(run: &RunRequest, registry: &Registry, schemas: &SchemaCache) -> Vec<FieldError> {
    let mut errors: Vec<FieldError> = check_processor(&run.processor, registry)
        .into_iter()
        .collect();
    if let Some(metadata) = &run.metadata {
        errors.extend(forcing::check(metadata));
    }
    errors.extend(check_run_task_spec(run.task_spec.as_ref(), schemas));
    errors
}

/// A run's own task spec, at `["task_spec", ...]`.
pub fn check_run_task_spec(spec: Option<&TaskSpec>, schemas: &SchemaCache) -> Vec<FieldError> {
    let Some(spec) = spec else {
        return Vec::new();
    };
    let prefix = loc_of(&["task_spec"]);
    check_task_spec(spec, schemas)
        .into_iter()
        .map(|error| error.prefixed(&prefix))
        .collect()
}

/// An unknown processor, at `["processor"]`.
pub fn check_processor(name: &str, registry: &Registry) -> Option<FieldError> {
    registry.get(name).is_none().then(|| {
        FieldError::new(
            loc_of(&["processor"]),
            FieldErrorKind::UnknownProcessor,
            format!("unknown processor '{name}'"),
        )
    })
}

/// Which side of a task spec a schema is on; `auto` and the top-level
/// `type` rule differ between them.
#[derive(Clone, Copy, PartialEq)]
pub enum SchemaSide {
    Output,
    Input,
}

impl SchemaSide {
    pub fn key(self) -> &'static str {
        match self {
            SchemaSide::Output => "output_schema",
            SchemaSide::Input => "input_schema",
        }
    }
}

/// The checks of a parsed task spec that need the schema cache: each
/// `json_schema` is nested at most `SCHEMA_DEPTH_MAX` deep and is a valid
/// JSON Schema. Locations like `["output_schema", "json_schema"]`.
pub fn check_task_spec(spec: &TaskSpec, schemas: &SchemaCache) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let sides = [
        (SchemaSide::Output, Some(&spec.output_schema)),
        (SchemaSide::Input, spec.input_schema.as_ref()),
    ];
    for (side, schema_value) in sides {
        let Some(schema_value) = schema_value else {
            continue;
        };
        let SchemaKind::Json(json_schema) = SchemaKind::of(schema_value) else {
            continue;
        };
        let loc = loc_of(&[side.key(), "json_schema"]);
        let (limit, max) = named_limit!(SCHEMA_DEPTH_MAX);
        let schema_depth = schema::depth(json_schema) as u64;
        if schema_depth > max {
            errors.push(FieldError::new(
                loc,
                FieldErrorKind::LimitExceeded {
                    limit,
                    max,
                    got: schema_depth,
                },
                format!("schema nested too deep: {schema_depth} levels, at most {max} ({limit})"),
            ));
            continue;
        }
        if let Err(message) = schemas.compile(json_schema) {
            errors.push(FieldError::value_error(loc, message));
        }
    }
    errors
}

/// An `input_validation_warning` when `input` fails the json
/// `input_schema` of the effective spec; the run still goes ahead.
pub fn input_warning(
    input: &Value,
    effective_spec: &TaskSpec,
    schemas: &SchemaCache,
) -> Option<Warning> {
    let input_schema = effective_spec.input_schema.as_ref()?;
    let SchemaKind::Json(json_schema) = SchemaKind::of(input_schema) else {
        return None;
    };
    // A schema that does not compile was already refused by
    // `check_task_spec`; there is nothing to warn about here.
    let validator = schemas.compile(json_schema).ok()?;
    let violation = schema::first_violation(&validator, input)?;
    Some(Warning {
        kind: "input_validation_warning".to_string(),
        message: format!("input does not match input_schema: {violation}"),
        detail: None,
    })
}
