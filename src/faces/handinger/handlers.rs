//! Handinger's endpoints (spec section 4): each reads its request, calls
//! the engine (runs, interactions, records) and answers the wire of
//! `wire.rs`, or an error in the face's form.

use serde_json::{json, Map, Value};
use ulid::Ulid;

use super::error::{HError, Result};
use super::limits::{INPUT_CHARS_MAX, TASK_ID_CHARS_MAX, TITLE_CHARS_MAX, TURNS_PER_TASK_MAX};
use super::records::{self, Task, Worker};
use super::routes::Route;
use super::{stream, wire, Handinger};
use crate::engine::{Created, Engine, Idempotency};
use crate::model::{RunRequest, RunStatus, TaskSpec, Timestamp};
use crate::server::{Reply, Request};

/// Answers one request: JSON, or a turn's events where a stream is asked
/// for and accepted (`stream.rs`).
pub fn answer(face: &Handinger, request: &mut Request<'_>, route: Route) -> Reply {
    let events = stream::accepts_events(request);
    let reply = match route {
        Route::CreateTask => create_task_answer(face, request, events),
        Route::GetWorker(_) if events && query_flag(request.raw_query(), "stream") => {
            handle(face, request, route).map(|worker| turn_stream_or_json(request, worker))
        }
        route => handle(face, request, route).map(json_reply),
    };
    reply.unwrap_or_else(HError::into_reply)
}

fn json_reply(body: Value) -> Reply {
    Reply::Json(200, body.to_string(), Vec::new())
}

/// `POST /api/tasks`; with `"stream": true` and an `Accept` that names
/// `text/event-stream`, the new turn's events instead of the Worker.
fn create_task_answer(face: &Handinger, request: &mut Request<'_>, events: bool) -> Result<Reply> {
    let base = base_url(request);
    let engine = request.engine().clone();
    let body = body(request)?;
    let worker = once(request, &engine, &body, || {
        create_task(face, &engine, &body, &base)
    })?;
    if events && body.get("stream") == Some(&Value::Bool(true)) {
        return Ok(turn_stream_or_json(request, worker));
    }
    Ok(json_reply(worker))
}

/// The events of the turn a Worker answer names, or the Worker as JSON
/// when it names none (a worker that never ran).
fn turn_stream_or_json(request: &Request<'_>, worker: Value) -> Reply {
    let run_id = worker["turnId"]
        .as_str()
        .and_then(|turn| turn.strip_prefix("trun_"));
    match run_id {
        Some(run_id) => stream::turn_events(request.engine(), run_id),
        None => json_reply(worker),
    }
}

/// A query flag `name=true` (the SDK sends Python's `True` as `true`).
fn query_flag(query: &str, name: &str) -> bool {
    query_value(query, name) == Some("true")
}

/// The first value of `name` in a query string, as sent (the SDK's
/// parameters here are numbers and flags, never percent-encoded).
pub(super) fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn handle(face: &Handinger, request: &mut Request<'_>, route: Route) -> Result<Value> {
    let base = base_url(request);
    let engine = request.engine().clone();
    match route {
        // Answered by `create_task_answer`, which may stream.
        Route::CreateTask => Err(HError::new(
            500,
            "internal",
            "POST /api/tasks routed wrongly",
        )),
        Route::GetTask(id) => {
            let task = task_of(&engine, &id)?;
            let worker =
                records::worker(&engine, &task.worker_id)?.unwrap_or_else(|| gone_worker(&task));
            let turns = engine.interaction(&task.interaction())?;
            Ok(wire::task_with_turns(&task, &turns, &worker, &base))
        }
        Route::ArchiveTask(id) => {
            body(request)?;
            let mut task = task_of(&engine, &id)?;
            if !task.archived {
                task.archived = true;
                records::save_task(&engine, &task)?;
            }
            Ok(json!({"archived": true}))
        }
        Route::AbortTask(id) => {
            body(request)?;
            abort(&engine, &id, &base)
        }
        Route::CreateWorker => {
            let body = body(request)?;
            once(request, &engine, &body, || {
                create_worker(&engine, &body, &base)
            })
        }
        Route::GetWorker(id) => {
            let worker = records::live_worker(&engine, &id)?;
            let mut latest = match &worker.latest_task {
                Some(task_id) => records::task(&engine, task_id)?,
                None => None,
            };
            // A task a schedule fired after it is the latest.
            if let Some((at, task_id)) = super::schedules::latest_fired(&engine, &worker)? {
                if latest
                    .as_ref()
                    .is_none_or(|task| at.micros() > task.created_at)
                {
                    latest = super::schedules::fired_task(&engine, &task_id)?.or(latest);
                }
            }
            let turns = match &latest {
                Some(task) => engine.interaction(&task.interaction())?,
                None => Vec::new(),
            };
            Ok(wire::worker(
                &worker,
                latest.as_ref().map(|task| (task, turns.as_slice())),
                &base,
            ))
        }
        Route::UpdateWorker(id) => {
            let body = body(request)?;
            let mut worker = records::live_worker(&engine, &id)?;
            apply_worker_fields(&engine, &mut worker, &body)?;
            worker.updated_at = Some(Timestamp::now().micros());
            records::save_worker(&engine, &worker)?;
            Ok(wire::worker_template(&worker, &base))
        }
        Route::DeleteWorker(id) => {
            body(request)?;
            let mut worker = records::live_worker(&engine, &id)?;
            worker.deleted = true;
            records::save_worker(&engine, &worker)?;
            Ok(json!({"deleted": true}))
        }
        Route::CreateSchedule(worker_id) => {
            super::schedules::create(face, &engine, &worker_id, &body(request)?)
        }
        Route::ListSchedules(worker_id) => super::schedules::list(&engine, &worker_id),
        Route::CancelSchedule(worker_id, schedule_id) => {
            body(request)?;
            super::schedules::cancel(&engine, &worker_id, &schedule_id)
        }
        Route::GetWebhook(id) => Ok(super::webhooks::webhook_json(&records::live_worker(
            &engine, &id,
        )?)),
        Route::UpdateWebhook(id) => super::webhooks::update(&engine, &id, &body(request)?, &base),
        Route::DeleteWebhook(id) => {
            body(request)?;
            super::webhooks::delete(&engine, &id)
        }
        Route::WebhookExecutions(id) => {
            super::webhooks::executions(&engine, &id, request.raw_query())
        }
        Route::RegenerateWebhookToken(id) => {
            body(request)?;
            super::webhooks::regenerate_token(&engine, &id)
        }
        Route::WorkerEmail(id) => {
            let worker = records::live_worker(&engine, &id)?;
            Ok(json!({"email": format!("{}@taskyard.invalid", worker.id)}))
        }
    }
}

/// `POST /api/workers` (spec 4.4).
fn create_worker(engine: &Engine, body: &Map<String, Value>, base: &str) -> Result<Value> {
    let now = Timestamp::now().micros();
    let id = format!("wrk_{}", Ulid::new());
    let mut worker = Worker::new(default_title(&id), id, now);
    apply_worker_fields(engine, &mut worker, body)?;
    if !body.contains_key("instructions") {
        if let Some(prompt) = optional_string(body, "prompt")? {
            worker.instructions = prompt;
        }
    }
    records::insert_worker(engine, &worker)?;
    Ok(wire::worker_template(&worker, base))
}

/// `POST /api/tasks` (spec 4.1 and 3.3).
fn create_task(
    face: &Handinger,
    engine: &Engine,
    body: &Map<String, Value>,
    base: &str,
) -> Result<Value> {
    let input = turn_input(body)?;
    let processor = budget_processor(face, body)?.1;
    if let Some(stream) = body.get("stream") {
        if !stream.is_boolean() {
            return Err(HError::bad_request("stream must be true or false"));
        }
    }
    let task_id = optional_string(body, "taskId")?;
    if let Some(id) = &task_id {
        let length = id.chars().count();
        if length == 0 || length > TASK_ID_CHARS_MAX {
            return Err(HError::bad_request(format!(
                "taskId must be 1 to {TASK_ID_CHARS_MAX} characters (TASK_ID_CHARS_MAX), not {length}"
            )));
        }
    }
    let worker_id = optional_string(body, "workerId")?;

    let existing = match &task_id {
        Some(id) => match records::task(engine, id)? {
            Some(task) => Some(task),
            None => super::schedules::fired_task(engine, id)?,
        },
        None => None,
    };
    let worker = match (&worker_id, &existing) {
        (Some(id), _) => records::live_worker(engine, id)?,
        (None, Some(task)) => records::live_worker(engine, &task.worker_id)?,
        (None, None) => {
            // A worker made on the fly: its instructions are the input
            // (spec 3.4).
            let id = format!("wrk_{}", Ulid::new());
            let mut worker = Worker::new(default_title(&id), id, Timestamp::now().micros());
            worker.instructions = input.clone();
            records::insert_worker(engine, &worker)?;
            worker
        }
    };
    let task = match existing {
        Some(task) => task,
        None => {
            let task = Task {
                id: task_id
                    .clone()
                    .unwrap_or_else(|| format!("tsk_{}", Ulid::new())),
                worker_id: worker.id.clone(),
                title: title_of(&input),
                archived: false,
                triggered_by: "api".into(),
                created_at: Timestamp::now().micros(),
            };
            if records::insert_task(engine, &task)? {
                task
            } else {
                // Another first turn of this id made it first: join it.
                records::task(engine, &task.id)?
                    .ok_or_else(|| HError::new(500, "internal", "a task vanished"))?
            }
        }
    };
    if task.archived {
        return Err(HError::conflict(format!("task {} is archived", task.id)));
    }
    if task.worker_id != worker.id {
        return Err(HError::conflict(format!(
            "task {} belongs to worker {}, not {}",
            task.id, task.worker_id, worker.id
        )));
    }
    let turns_before = engine.interaction(&task.interaction())?.len();
    if turns_before >= TURNS_PER_TASK_MAX {
        return Err(HError::conflict(format!(
            "task {} has {turns_before} turns, at most {TURNS_PER_TASK_MAX} (TURNS_PER_TASK_MAX)",
            task.id
        )));
    }
    let mut request = RunRequest::new(Value::String(input), processor);
    request.task_spec = Some(spec_of(&worker));
    request.interaction = Some(task.interaction());
    request.webhook = super::webhooks::target(&worker);
    let run = engine.create_run(request)?;
    let mut worker = worker;
    if worker.latest_task.as_deref() != Some(task.id.as_str()) {
        worker.latest_task = Some(task.id.clone());
        records::save_worker(engine, &worker)?;
    }
    let mut turns = engine.interaction(&task.interaction())?;
    // The Worker as of this turn, even when another came right after.
    if let Some(position) = turns.iter().position(|turn| turn.run.id == run.id) {
        turns.truncate(position + 1);
    }
    Ok(wire::worker(&worker, Some((&task, &turns)), base))
}

/// A turn's `input`: a string of 1 to `INPUT_CHARS_MAX` characters.
pub(super) fn turn_input(body: &Map<String, Value>) -> Result<String> {
    let input =
        optional_string(body, "input")?.ok_or_else(|| HError::bad_request("input is required"))?;
    let length = input.chars().count();
    if length == 0 || length > INPUT_CHARS_MAX {
        return Err(HError::bad_request(format!(
            "input must be 1 to {INPUT_CHARS_MAX} characters (INPUT_CHARS_MAX), not {length}"
        )));
    }
    Ok(input)
}

/// The `budget` (`standard` when absent) and the processor it picks.
pub(super) fn budget_processor<'f>(
    face: &'f Handinger,
    body: &Map<String, Value>,
) -> Result<(String, &'f str)> {
    let budget = optional_string(body, "budget")?.unwrap_or_else(|| "standard".into());
    let processor = face.budgets.processor(&budget).ok_or_else(|| {
        HError::bad_request(format!(
            "budget must be one of low, standard, high, unlimited, not '{budget}'"
        ))
    })?;
    Ok((budget, processor))
}

/// `POST /api/tasks/{id}/abort` (spec choice 6): cancels the active turn.
fn abort(engine: &Engine, id: &str, base: &str) -> Result<Value> {
    let task = task_of(engine, id)?;
    let turns = engine.interaction(&task.interaction())?;
    let active = turns
        .iter()
        .rev()
        .find(|turn| matches!(turn.run.status, RunStatus::Queued | RunStatus::Running))
        .ok_or_else(|| HError::conflict(format!("task {} has no active turn", task.id)))?;
    engine.cancel_run(&active.run.id)?;
    let worker = records::worker(engine, &task.worker_id)?.unwrap_or_else(|| gone_worker(&task));
    let turns = engine.interaction(&task.interaction())?;
    Ok(wire::task_with_turns(&task, &turns, &worker, base))
}

/// A task by id: its record, else the task a schedule fired under it.
fn task_of(engine: &Engine, id: &str) -> Result<Task> {
    match records::task(engine, id)? {
        Some(task) => Ok(task),
        None => super::schedules::fired_task(engine, id)?
            .ok_or_else(|| HError::not_found(format!("task {id} not found"))),
    }
}

/// A task's worker whose record is missing: read as one without a schema.
pub(super) fn gone_worker(task: &Task) -> Worker {
    Worker {
        deleted: true,
        ..Worker::new(String::new(), task.worker_id.clone(), task.created_at)
    }
}

/// A turn's task spec: the worker's output schema as JSON, else text; its
/// instructions travel as the spec's `description` (which a model
/// processor puts in its system message).
pub(super) fn spec_of(worker: &Worker) -> TaskSpec {
    let mut output = match &worker.output_schema {
        Some(schema) => json!({"type": "json", "json_schema": schema}),
        None => json!({"type": "text"}),
    };
    if !worker.instructions.is_empty() {
        output["description"] = json!(worker.instructions);
    }
    TaskSpec {
        output_schema: output,
        input_schema: None,
    }
}

/// The keys of a worker create or update that change a worker; only
/// those sent change (`outputSchema: null` clears the schema).
fn apply_worker_fields(
    engine: &Engine,
    worker: &mut Worker,
    body: &Map<String, Value>,
) -> Result<()> {
    if let Some(instructions) = optional_string(body, "instructions")? {
        worker.instructions = instructions;
    }
    if let Some(summary) = optional_string(body, "summary")? {
        worker.summary = summary;
    }
    if let Some(title) = optional_string(body, "title")? {
        worker.title = title;
    }
    if let Some(visibility) = optional_string(body, "visibility")? {
        if visibility != "public" && visibility != "private" {
            return Err(HError::bad_request(format!(
                "visibility must be public or private, not '{visibility}'"
            )));
        }
        worker.visibility = visibility;
    }
    optional_string(body, "prompt")?;
    match body.get("outputSchema") {
        None => {}
        Some(Value::Null) => worker.output_schema = None,
        Some(schema @ Value::Object(_)) => {
            let spec = TaskSpec {
                output_schema: json!({"type": "json", "json_schema": schema}),
                input_schema: None,
            };
            let errors = engine.check_task_spec(&spec);
            if !errors.is_empty() {
                return Err(HError::bad_request(format!(
                    "outputSchema is not a usable JSON Schema: {}",
                    crate::model::field_error::summarize(&errors, "")
                )));
            }
            worker.output_schema = Some(schema.clone());
        }
        Some(_) => {
            return Err(HError::bad_request(
                "outputSchema must be an object or null",
            ))
        }
    }
    Ok(())
}

/// Runs a create at most once per `Idempotency-Key` (spec choice 7, an
/// extension the SDK sends only through `extra_headers`): the same key
/// and body replay the first answer, another body is a 409. Keys are
/// kept apart from the Parallel face's by a `handinger:` prefix.
fn once(
    request: &Request<'_>,
    engine: &Engine,
    body: &Map<String, Value>,
    work: impl FnOnce() -> Result<Value>,
) -> Result<Value> {
    let Some(key) = request.header("idempotency-key") else {
        return work();
    };
    let printable = key.bytes().all(|byte| (0x20..=0x7e).contains(&byte));
    if key.is_empty() || key.len() > 255 || !printable {
        return Err(HError::bad_request(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        ));
    }
    let mut fingerprint = format!("{} {}\n", request.method(), request.path());
    crate::model::canonical_json(&Value::Object(body.clone()), &mut fingerprint);
    let key = Idempotency {
        key: format!("{}:{key}", super::FACE_NAME),
        fingerprint,
    };
    let answer = engine.answer_once(key, || work().map(|value| value.to_string()))?;
    let body = match answer {
        Created::Fresh { body, .. } | Created::Replayed { body } => body,
    };
    serde_json::from_str(&body).map_err(|e| {
        HError::new(
            500,
            "internal",
            format!("a stored answer does not read: {e}"),
        )
    })
}

/// The body as a JSON object; no body (a DELETE with a content type and
/// nothing after it) is an empty one.
fn body(request: &mut Request<'_>) -> Result<Map<String, Value>> {
    let bytes = request.body().map_err(HError::from)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(HError::bad_request("the body must be a JSON object")),
        Err(error) => Err(HError::bad_request(format!(
            "the body is not JSON: {error}"
        ))),
    }
}

pub(super) fn optional_string(body: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(HError::bad_request(format!("{key} must be a string"))),
    }
}

/// A task's title: the first line of its first input, at most
/// `TITLE_CHARS_MAX` characters (spec choice 8).
pub(super) fn title_of(input: &str) -> String {
    input
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(TITLE_CHARS_MAX)
        .collect()
}

fn default_title(worker_id: &str) -> String {
    let id = worker_id.trim_start_matches("wrk_");
    format!("Worker {}", &id[..id.len().min(8)])
}

/// Where links point: this server, as the client reached it.
fn base_url(request: &Request<'_>) -> String {
    match request.header("host") {
        Some(host) => format!("http://{host}"),
        None => "http://127.0.0.1".into(),
    }
}
