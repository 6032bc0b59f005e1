//! The face's endpoints (spec section 3, choice 1): each reads its
//! parameters, calls the engine and the face's records, and answers the
//! envelope of `envelope.rs`, or an error of `error.rs`.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::envelope::Ocs;
use super::error::{Asked, NcError, Result};
use super::limits::{APP_ID_CHARS_MAX, CUSTOM_ID_CHARS_MAX, INPUT_BYTES_MAX, WEBHOOK_CHARS_MAX};
use super::records::{self, TaskRecord};
use super::routes::{Login, Params, Route};
use super::{types, wire, Nextcloud};
use crate::engine::{self, Engine};
use crate::model::{Output, Run, RunRequest, RunStatus, TaskSpec, Timestamp};
use crate::server::{Reply, Request};

/// The version Nextcloud reports (spec choice 1).
const VERSION: (u32, u32, u32) = (32, 0, 0);

/// The header that names the engine run behind a task: the same run is
/// `GET /v1/tasks/runs/{run_id}` on the Parallel face.
pub const RUN_ID_HEADER: &str = "X-Taskyard-Run-Id";

/// A handler's answer: the data, and headers to add.
type Answer = (Value, Vec<(&'static str, String)>);

pub fn answer(
    face: &Nextcloud,
    request: &mut Request<'_>,
    asked: &Asked,
    route: Route,
    login: &Login,
    params: &Params,
) -> Reply {
    let user = match login {
        Login::User { id, .. } => Some(id.as_str()),
        Login::Anonymous => None,
    };
    match handle(face, request.engine(), route, user, params) {
        Ok((data, headers)) => asked.answer(Ocs::ok(data), headers),
        Err(error) => error.into_reply(asked),
    }
}

fn handle(
    face: &Nextcloud,
    engine: &Engine,
    route: Route,
    user: Option<&str>,
    params: &Params,
) -> Result<Answer> {
    if let Route::Capabilities = route {
        return Ok((capabilities(), Vec::new()));
    }
    // Every other route is guarded by a login (routes.rs).
    let user = user.ok_or(NcError::NotLoggedIn)?;
    match route {
        Route::Capabilities => Ok((capabilities(), Vec::new())),
        Route::CurrentUser => Ok((
            json!({"id": user, "display-name": user, "email": null, "enabled": true}),
            Vec::new(),
        )),
        Route::TaskTypes => Ok((json!({ "types": task_types(face, engine) }), Vec::new())),
        Route::Schedule => schedule(face, engine, user, params),
        Route::GetTask(id) => {
            let record = records::owned(engine, id_of(id), user)?
                .ok_or_else(|| NcError::new(404, "Task not found"))?;
            one_task(engine, &record)
        }
        Route::DeleteTask(id) => {
            if let Some(mut record) = records::owned(engine, id_of(id), user)? {
                stop(engine, &record.run_id)?;
                record.deleted = true;
                records::save(engine, &record)?;
            }
            Ok((Value::Null, Vec::new()))
        }
        Route::CancelTask(id) => {
            let record = records::owned(engine, id_of(id), user)?
                .ok_or_else(|| NcError::new(404, "Not found"))?;
            stop(engine, &record.run_id)?;
            one_task(engine, &record)
        }
        Route::ListTasks => {
            let task_type = string_filter(params, "taskType")?;
            let custom_id = string_filter(params, "customId")?;
            list(engine, user, |task| {
                task_type.as_ref().is_none_or(|t| &task.task_type == t)
                    && custom_id.as_ref().is_none_or(|c| &task.custom_id == c)
            })
        }
        Route::ListAppTasks(app_id) => {
            let custom_id = string_filter(params, "customId")?;
            list(engine, user, |task| {
                task.app_id == app_id && custom_id.as_ref().is_none_or(|c| &task.custom_id == c)
            })
        }
        // No type has a file slot (spec choice 4): no task names a file.
        Route::TaskFile(_) => Err(NcError::new(404, "Not found")),
    }
}

/// A path id as a record id; 0 and negatives name no task.
fn id_of(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

/// `GET /tasktypes` (spec 3.1): the configured types whose processor the
/// engine has, in the config's order.
fn task_types(face: &Nextcloud, engine: &Engine) -> Value {
    let mut types = Map::new();
    for (id, processor) in &face.config.task_types {
        let Some(task_type) = types::known(id) else {
            continue;
        };
        if engine.registry().get(processor).is_none() {
            continue;
        }
        types.insert(
            id.clone(),
            types::describe(task_type, &face.config.provided(id)),
        );
    }
    Value::Object(types)
}

/// A parameter that must be a string when given (else PHP's TypeError).
fn string_param(params: &Params, name: &str) -> Result<Option<String>> {
    match params.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        // PHP casts a number to a string parameter.
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(NcError::TypeError),
    }
}

/// A list filter: absent is no filter, empty filters on `""` (spec 3.5).
fn string_filter(params: &Params, name: &str) -> Result<Option<String>> {
    string_param(params, name)
}

fn bool_param(params: &Params, name: &str, default: bool) -> Result<bool> {
    match params.get(name) {
        None => Ok(default),
        Some(Value::Bool(value)) => Ok(value),
        Some(Value::Number(number)) if number.as_i64() == Some(0) => Ok(false),
        Some(Value::Number(number)) if number.as_i64() == Some(1) => Ok(true),
        Some(Value::String(text)) => match text.as_str() {
            "1" | "true" => Ok(true),
            "0" | "false" | "" => Ok(false),
            _ => Err(NcError::TypeError),
        },
        Some(_) => Err(NcError::TypeError),
    }
}

/// A nullable string parameter of at most `max` characters.
fn optional_text(params: &Params, name: &str, max: usize, limit: &str) -> Result<Option<String>> {
    let value = match params.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(_) => string_param(params, name)?,
    };
    if let Some(text) = &value {
        let length = text.chars().count();
        if length > max {
            return Err(NcError::bad_request(format!(
                "{name} must be at most {max} characters ({limit}), not {length}"
            )));
        }
    }
    Ok(value)
}

/// `POST /schedule` (spec 3.2).
fn schedule(face: &Nextcloud, engine: &Engine, user: &str, params: &Params) -> Result<Answer> {
    // Every request that reaches the limiter counts, refused or not
    // (spec 1.8); only the 429s do not.
    if !face.limiter.take(user, Instant::now()) {
        return Err(NcError::RateLimited);
    }
    let input = match params.get("input") {
        Some(Value::Object(input)) => input,
        _ => return Err(NcError::TypeError),
    };
    let type_id = string_param(params, "type")?.ok_or(NcError::TypeError)?;
    let app_id = string_param(params, "appId")?.ok_or(NcError::TypeError)?;
    let custom_id = match params.get("customId") {
        None => String::new(),
        Some(_) => string_param(params, "customId")?.ok_or(NcError::TypeError)?,
    };
    for (name, value, max, limit) in [
        (
            "customId",
            &custom_id,
            CUSTOM_ID_CHARS_MAX,
            "CUSTOM_ID_CHARS_MAX",
        ),
        ("appId", &app_id, APP_ID_CHARS_MAX, "APP_ID_CHARS_MAX"),
    ] {
        let length = value.chars().count();
        if length > max {
            return Err(NcError::bad_request(format!(
                "{name} must be at most {max} characters ({limit}), not {length}"
            )));
        }
    }
    let webhook_uri = optional_text(params, "webhookUri", WEBHOOK_CHARS_MAX, "WEBHOOK_CHARS_MAX")?;
    let webhook_method = optional_text(
        params,
        "webhookMethod",
        WEBHOOK_CHARS_MAX,
        "WEBHOOK_CHARS_MAX",
    )?;
    let include_watermark = bool_param(params, "includeWatermark", true)?;
    let prefer_streaming = bool_param(params, "preferStreaming", false)?;

    let unavailable = || NcError::new(412, "The given provider is not available");
    let task_type = types::known(&type_id).ok_or_else(unavailable)?;
    let processor = face
        .config
        .processor(&type_id)
        .filter(|name| engine.registry().get(name).is_some())
        .ok_or_else(unavailable)?;
    let input = types::check_input(task_type, &face.config.provided(&type_id), &input)
        .map_err(NcError::bad_request)?;
    let input_bytes = crate::model::to_json(&input).len();
    if input_bytes > INPUT_BYTES_MAX {
        return Err(NcError::bad_request(format!(
            "input is {input_bytes} bytes as JSON, over {INPUT_BYTES_MAX} (INPUT_BYTES_MAX)"
        )));
    }

    // The id first (a record with no run yet), so that the run can carry
    // it from its first event on (spec choice 6); the record gets its run
    // once that commits.
    let scheduled_at = wire::seconds(Timestamp::now());
    let mut record = records::reserve(
        engine,
        TaskRecord {
            id: 0,
            run_id: String::new(),
            user_id: user.to_string(),
            app_id,
            task_type: type_id,
            custom_id,
            input,
            webhook_uri,
            webhook_method,
            include_watermark,
            prefer_streaming,
            scheduled_at,
            completion_expected_at: scheduled_at + face.config.expected_runtime_s as i64,
            deleted: false,
        },
    )
    .map_err(|_| NcError::new(500, "Internal server error"))?;
    let mut run_request = RunRequest::new(Value::Object(record.input.clone()), processor);
    // Text out: the model sees what the type asks for as the spec's
    // description.
    run_request.task_spec = Some(TaskSpec {
        output_schema: json!({
            "type": "text",
            "description": format!("{}: {}", task_type.name, task_type.description),
        }),
        input_schema: None,
    });
    run_request.webhook = super::webhooks::target(&face.config, engine, &record);
    let mut metadata = crate::model::JsonObject::new();
    metadata.insert("face".into(), json!(super::FACE_NAME));
    metadata.insert("nc_task_id".into(), json!(record.id));
    run_request.metadata = Some(metadata);
    let run = match engine.create_run(run_request) {
        Ok(run) => run,
        Err(error) => {
            // The id was never given out: retired, not reused, so that the
            // ids stay dense for the lists.
            record.deleted = true;
            let _ = records::save(engine, &record);
            return Err(match error {
                engine::Error::Invalid(_) => NcError::from(error),
                other => {
                    eprintln!("taskyard: nextcloud schedule: {other}");
                    NcError::new(500, "Internal server error")
                }
            });
        }
    };
    record.run_id = run.id.clone();
    record.scheduled_at = wire::seconds(run.created_at);
    record.completion_expected_at = record.scheduled_at + face.config.expected_runtime_s as i64;
    if let Err(error) = records::save(engine, &record) {
        // No one can ask for this run by id: stop it.
        let _ = engine.cancel_run(&run.id);
        eprintln!(
            "taskyard: nextcloud task {} not saved: {error:?}",
            record.id
        );
        return Err(NcError::new(500, "Internal server error"));
    }
    Ok((
        json!({ "task": wire::task(&record, &run, None) }),
        vec![(RUN_ID_HEADER, parallel_run_id(&run.id))],
    ))
}

/// A run and, when it completed, its output.
fn run_of(engine: &Engine, run_id: &str) -> Result<(Run, Option<Output>)> {
    let run = engine.get_run(run_id)?;
    let output = output_of(engine, &run)?;
    Ok((run, output))
}

/// A run's output, when it completed.
pub(super) fn output_of(engine: &Engine, run: &Run) -> Result<Option<Output>> {
    if run.status != RunStatus::Completed {
        return Ok(None);
    }
    match engine.wait_for_result(&run.id, Duration::ZERO) {
        Ok((_, output)) => Ok(Some(output)),
        Err(error) => Err(error.into()),
    }
}

/// `{"task": Task}` with the run-id header.
fn one_task(engine: &Engine, record: &TaskRecord) -> Result<Answer> {
    let (run, output) = run_of(engine, &record.run_id)?;
    Ok((
        json!({ "task": wire::task(record, &run, output.as_ref()) }),
        vec![(RUN_ID_HEADER, parallel_run_id(&run.id))],
    ))
}

/// Cancels a run that is still scheduled or running (spec 2.2); one that
/// ended is left as it is, and one that ends meanwhile too.
fn stop(engine: &Engine, run_id: &str) -> Result<()> {
    let run = engine.get_run(run_id)?;
    if matches!(run.status, RunStatus::Queued | RunStatus::Running) {
        match engine.cancel_run(run_id) {
            Ok(_) | Err(engine::Error::Conflict { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}

fn list(engine: &Engine, user: &str, keep: impl Fn(&TaskRecord) -> bool) -> Result<Answer> {
    let mut tasks = Vec::new();
    for record in records::list(engine, user, keep)? {
        match run_of(engine, &record.run_id) {
            Ok((run, output)) => tasks.push(wire::task(&record, &run, output.as_ref())),
            // A run retention pruned is a task Nextcloud would have
            // cleaned up: left out.
            Err(NcError::Controller { status: 404, .. }) => {}
            Err(other) => return Err(other),
        }
    }
    Ok((json!({ "tasks": tasks }), Vec::new()))
}

/// `cloud/capabilities` (spec choice 1).
fn capabilities() -> Value {
    let (major, minor, micro) = VERSION;
    json!({
        "version": {
            "major": major, "minor": minor, "micro": micro,
            "string": format!("{major}.{minor}.{micro}"),
            "edition": "", "extendedSupport": false,
        },
        "capabilities": {
            "core": {"pollinterval": 60, "webdav-root": "remote.php/webdav"},
        },
    })
}

/// `/status.php` (spec choice 1): not OCS, no login.
pub fn status_php() -> Reply {
    let (major, minor, micro) = VERSION;
    let body = json!({
        "installed": true,
        "maintenance": false,
        "needsDbUpgrade": false,
        "version": format!("{major}.{minor}.{micro}.0"),
        "versionstring": format!("{major}.{minor}.{micro}"),
        "edition": "",
        "productname": "taskyard",
        "extendedSupport": false,
    });
    Reply::Json(200, body.to_string(), Vec::new())
}

/// A run's id as the Parallel face shows it.
fn parallel_run_id(run_id: &str) -> String {
    format!("{}{run_id}", crate::faces::parallel::wire::RUN_ID_PREFIX)
}
