//! Fuzz target `request`: bytes through the path a request body takes in
//! the server, short of the store. The first byte picks the endpoint
//! (create run, create group, add runs); the rest is the body, decoded by
//! `parse::parse_json_body` as the handlers decode it, then read and
//! checked by the same Parallel parser and engine checks the server runs, and for an
//! accepted run, turned into what the engine stores and read back.
//!
//! Besides "no panic, no hang, no stack overflow", it asserts:
//! - every problem has a location, and its wire form (spec 1.6) renders;
//! - an accepted run reads back from its stored JSON unchanged (what the
//!   engine and the scheduler do with it later), and parses again as a
//!   valid request;
//! - the reserved keys of an accepted run read within their limits.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use taskyard::limits::{BODY_BYTES_MAX, MOCK_DELAY_MS_MAX, MOCK_FAIL_TIMES_MAX};
use taskyard::processors::Registry;
use taskyard::schema::SchemaCache;
use taskyard::faces::parallel::parse as validate;
use taskyard::faces::parallel::wire::RunInput;
use taskyard::model::FieldError;
use taskyard::TaskSpec;

/// What the engine holds for the life of the server: built once, as there.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(taskyard::faces::default_registry)
}

fn schemas() -> &'static SchemaCache {
    static SCHEMAS: OnceLock<SchemaCache> = OnceLock::new();
    SCHEMAS.get_or_init(SchemaCache::new)
}

/// The problems as the HTTP layer renders them: each item and the message.
fn render(errors: &[FieldError]) {
    assert!(!errors.is_empty(), "a rejection without a problem");
    for error in errors {
        let item = error.to_json();
        assert!(item["loc"].is_array() && item["msg"].is_string());
        let _ = error.loc_string();
    }
    let message = taskyard::model::field_error::summarize(errors, "body");
    assert!(!message.is_empty());
}

/// An accepted run: stored as the engine stores it, read back as the
/// engine and the scheduler read it, and checked again.
fn accepted_run(run: &RunInput, default_spec: Option<&TaskSpec>) {
    let auto = TaskSpec::auto();
    let spec = run.task_spec.as_ref().or(default_spec).unwrap_or(&auto);
    let _ = taskyard::engine::checks::input_warning(&run.input, spec, schemas());
    let _ = validate::spec_warning(spec);

    let stored = serde_json::to_string(run).expect("a run serializes");
    let read_back: RunInput = serde_json::from_str(&stored)
        .unwrap_or_else(|error| panic!("stored run does not read back ({error}): {stored}"));
    assert_eq!(&read_back, run, "the stored run reads back changed");
    let stored_spec = serde_json::to_string(spec).expect("a spec serializes");
    let spec_back: TaskSpec = serde_json::from_str(&stored_spec)
        .unwrap_or_else(|error| panic!("stored spec does not read back ({error})"));
    assert_eq!(&spec_back, spec);

    let as_value: Value = serde_json::from_str(&stored).expect("stored JSON");
    let again = validate::parse_run_input(&as_value)
        .unwrap_or_else(|errors| panic!("stored run no longer parses: {errors:?}"));
    assert!(
        validate::check_run_input(&again, default_spec, registry(), schemas()).is_empty(),
        "stored run no longer passes the checks"
    );

    let controls = taskyard::scheduler::forcing::read(run.metadata.as_ref());
    assert!(controls.delay_ms <= MOCK_DELAY_MS_MAX);
    assert!(u64::from(controls.fail_times) <= MOCK_FAIL_TIMES_MAX);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    // The server refuses a larger body with a 413 before decoding it.
    if body.len() > BODY_BYTES_MAX {
        return;
    }
    let value = match validate::parse_json_body(body) {
        Ok(value) => value,
        Err(error) => return render(&[error]),
    };
    match selector % 3 {
        0 => {
            // POST /v1/tasks/runs
            let (run, mut errors) = match validate::parse_run_input_lenient(&value) {
                Ok(parsed) => parsed,
                Err(errors) => return render(&errors),
            };
            errors.extend(validate::check_run_input(&run, None, registry(), schemas()));
            if errors.is_empty() {
                accepted_run(&run, None);
            } else {
                render(&errors);
            }
        }
        1 => {
            // POST /v1/tasks/groups
            if let Err(errors) = validate::parse_group_create(&value) {
                render(&errors);
            }
        }
        _ => {
            // POST /v1/tasks/groups/{id}/runs
            let (request, positions, mut errors) = match validate::parse_add_runs_lenient(&value) {
                Ok(parsed) => parsed,
                Err(errors) => return render(&errors),
            };
            assert_eq!(request.inputs.len(), positions.len());
            if let Some(spec) = &request.default_task_spec {
                errors.extend(taskyard::engine::checks::check_task_spec(spec, schemas()));
            }
            for run in &request.inputs {
                errors.extend(validate::check_run_input(
                    run,
                    request.default_task_spec.as_ref(),
                    registry(),
                    schemas(),
                ));
            }
            if errors.is_empty() {
                for run in &request.inputs {
                    accepted_run(run, request.default_task_spec.as_ref());
                }
            } else {
                render(&errors);
            }
        }
    }
});
