//! Agent routines (spec 3.2 and 4.2): a saved task (agent, instructions,
//! schedule) that runs when invoked, and on an engine schedule while
//! active. The schedule is an exclusive one, so a fire while the previous
//! scheduled run is active records a `skipped` run; pause pauses it.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::error::{AError, Result};
use super::handlers::{
    optional_name, optional_object, optional_string, required_long_text, required_text,
};
use super::limits::{NAME_CHARS_MAX, ROUTINES_SCANNED_MAX};
use super::query::Query;
use super::records::{self, Routine};
use super::wire::{self, RunDocument, PRESET_NAME, ROUTINE_FIELDS};
use super::{ids, ArchAstro, FACE_NAME};
use crate::engine::{Created, Engine, Idempotency};
use crate::model::{Run, RunRequest, ScheduleRequest, ScheduleState, TaskSpec, Timestamp, When};

const HANDLER_TYPES: &[&str] = &["workflow_graph", "script", "preset", "chain"];

/// The metadata key that names a routine run's routine on its engine run.
pub const ROUTINE_METADATA_KEY: &str = "archastro_routine";

/// Fields whose value must be a map when sent.
const MAP_FIELDS: &[&str] = &[
    "preset_config",
    "event_config",
    "config",
    "metadata",
    "acl",
    "message_policy",
    "last_applied_template_config",
];

/// The problems of a create's or update's fields, every one named.
fn check_fields(
    engine: &Engine,
    body: &Map<String, Value>,
    creating: bool,
) -> Vec<(String, String)> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut add = |field: &str, message: &str| problems.push((field.into(), message.into()));
    if creating || body.get("name").is_some_and(|name| !name.is_null()) {
        if let Err(error) = required_text(body, "name", NAME_CHARS_MAX, "NAME_CHARS_MAX") {
            for (field, message) in error.fields {
                add(&field, &message);
            }
        }
    }
    match body.get("handler_type") {
        None | Some(Value::Null) if creating => add("handler_type", "is required"),
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if HANDLER_TYPES.contains(&kind.as_str()) => {}
        Some(_) => add(
            "handler_type",
            "must be one of workflow_graph, script, preset, chain",
        ),
    }
    for key in MAP_FIELDS {
        if body
            .get(*key)
            .is_some_and(|value| !value.is_null() && !value.is_object())
        {
            add(key, "must be a map");
        }
    }
    for key in [
        "description",
        "preset_name",
        "event_type",
        "script",
        "trigger_context",
    ] {
        if body
            .get(key)
            .is_some_and(|value| !value.is_null() && !value.is_string())
        {
            add(key, "must be a string");
        }
    }
    match optional_name(body, "lookup_key") {
        Err(error) => {
            for (field, message) in error.fields {
                add(&field, &message);
            }
        }
        Ok(Some(key)) if key == "presets" || key == "runs" => add(
            "lookup_key",
            "names a route (presets, runs): choose another",
        ),
        Ok(_) => {}
    }
    if body
        .get("steps")
        .is_some_and(|steps| !steps.is_null() && !steps.is_array())
    {
        add("steps", "must be a list");
    }
    let instructions = body
        .get("preset_config")
        .and_then(|config| config.get("instructions"));
    if instructions.is_some_and(|text| !text.is_null() && !text.is_string()) {
        add("preset_config.instructions", "must be a string");
    }
    match body.get("schedule") {
        None | Some(Value::Null) => {}
        Some(Value::String(cron)) if cron.is_empty() => {}
        Some(Value::String(cron)) => {
            if let Some(message) = schedule_problem(engine, cron) {
                add("schedule", &message);
            }
        }
        Some(_) => add("schedule", "must be a 5-field cron expression"),
    }
    problems
}

/// Why `cron` cannot be a routine's schedule: not a 5-field cron, or one
/// that fires more often than hourly (the hosted minimum: a single
/// minute, so at most one fire an hour).
fn schedule_problem(engine: &Engine, cron: &str) -> Option<String> {
    let when = When::Cron {
        cron: cron.to_string(),
        timezone: "UTC".into(),
    };
    if let Some(error) = engine.check_when(&when).first() {
        return Some(error.msg.clone());
    }
    let minute = cron.split_whitespace().next().unwrap_or_default();
    if !minute.parse::<u8>().is_ok_and(|minute| minute < 60) {
        return Some(format!(
            "'{cron}' fires more often than hourly: its minute must be one number (0-59)"
        ));
    }
    None
}

/// Stores the sent fields (`null` clears one, as `user: null` does).
fn apply_fields(routine: &mut Routine, body: &Map<String, Value>) {
    for key in ROUTINE_FIELDS {
        match body.get(*key) {
            None => {}
            Some(Value::Null) => {
                routine.fields.remove(*key);
            }
            Some(Value::String(text)) if text.is_empty() && *key == "user" => {
                routine.fields.remove(*key);
            }
            Some(value) => {
                routine.fields.insert((*key).to_string(), value.clone());
            }
        }
    }
}

/// The problems that keep a routine from running (spec 3.2): taskyard
/// runs the `do_task` preset only.
fn runnable(routine: &Routine) -> Result<()> {
    if routine.text("handler_type") != Some("preset") {
        return Err(AError::invalid(
            "handler_type",
            "taskyard runs preset routines only",
        ));
    }
    match routine.text("preset_name") {
        Some(PRESET_NAME) => Ok(()),
        other => Err(AError::invalid(
            "preset_name",
            format!(
                "'{}' is not a preset: the one preset is {PRESET_NAME}",
                other.unwrap_or("null")
            ),
        )),
    }
}

fn instructions(routine: &Routine) -> String {
    routine
        .fields
        .get("preset_config")
        .and_then(|config| config.get("instructions"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn processor(face: &ArchAstro, engine: &Engine, routine: &Routine) -> Result<String> {
    face.processor_of(engine, &routine.agent)
        .ok_or_else(|| AError::not_found(format!("Agent {} not found", routine.agent)))
}

/// A run of the routine: its instructions, a blank line, then `message`.
fn run_request(
    face: &ArchAstro,
    engine: &Engine,
    routine: &Routine,
    message: Option<&str>,
    metadata: &Map<String, Value>,
    document: &RunDocument,
) -> Result<RunRequest> {
    let saved = instructions(routine);
    let input = match message {
        Some(message) if saved.is_empty() => message.to_string(),
        Some(message) => format!("{saved}\n\n{message}"),
        None => saved,
    };
    let mut request = RunRequest::new(Value::String(input), processor(face, engine, routine)?);
    request.task_spec = Some(TaskSpec {
        output_schema: json!({"type": "text"}),
        input_schema: None,
    });
    let mut run_metadata = metadata.clone();
    run_metadata.insert(ROUTINE_METADATA_KEY.into(), json!(routine.id));
    request.metadata = Some(run_metadata);
    request.document = Some(serde_json::to_string(document).unwrap_or_default());
    Ok(request)
}

/// `POST /api/v1/agents/{agent}/agent_routines`.
pub fn create(
    face: &ArchAstro,
    engine: &Engine,
    agent: &str,
    body: &Map<String, Value>,
) -> Result<Value> {
    face.processor_of(engine, agent)
        .ok_or_else(|| AError::not_found(format!("Agent {agent} not found")))?;
    let mut problems = check_fields(engine, body, true);
    let status = match optional_string(body, "status") {
        Ok(None) => "draft".to_string(),
        Ok(Some(status)) if status == "draft" || status == "active" => status,
        Ok(Some(_)) | Err(_) => {
            problems.push(("status".into(), "must be draft or active".into()));
            String::new()
        }
    };
    if !problems.is_empty() {
        return Err(AError::invalid_fields(problems));
    }
    let now = Timestamp::now().micros();
    let mut routine = Routine {
        id: ids::mint(wire::ROUTINE_PREFIX),
        agent: agent.to_string(),
        fields: Map::new(),
        status: "draft".into(),
        created_at: now,
        updated_at: now,
        deleted: false,
    };
    apply_fields(&mut routine, body);
    if status == "active" {
        runnable(&routine)?;
    }
    records::insert_routine(engine, &routine)?;
    if status == "active" {
        return activate(face, engine, &routine.id);
    }
    Ok(wire::routine(&routine, face.app()))
}

/// `GET /api/v1/agent_routines/{id}`.
pub fn get(face: &ArchAstro, engine: &Engine, id: &str) -> Result<Value> {
    Ok(wire::routine(&records::routine(engine, id)?, face.app()))
}

/// `GET /api/v1/agent_routines`: every match, newest first.
pub fn list(face: &ArchAstro, engine: &Engine, query: &Query) -> Result<Value> {
    let agents = query.list("agent")?;
    for agent in &agents {
        face.processor_of(engine, agent)
            .ok_or_else(|| AError::not_found(format!("Agent {agent} not found")))?;
    }
    let event_type = query.one("event_type")?;
    let data: Vec<Value> = records::routines(engine, ROUTINES_SCANNED_MAX)?
        .into_iter()
        .filter(|routine| !routine.deleted)
        .filter(|routine| agents.is_empty() || agents.contains(&routine.agent))
        .filter(|routine| {
            event_type
                .as_deref()
                .is_none_or(|wanted| routine.text("event_type") == Some(wanted))
        })
        .map(|routine| wire::routine(&routine, face.app()))
        .collect();
    Ok(json!({ "data": data }))
}

/// `PATCH /api/v1/agent_routines/{id}`: the sent fields change; an active
/// routine's schedule follows a new `schedule` at once.
pub fn update(
    face: &ArchAstro,
    engine: &Engine,
    id: &str,
    body: &Map<String, Value>,
) -> Result<Value> {
    let mut routine = records::routine(engine, id)?;
    let problems = check_fields(engine, body, false);
    if !problems.is_empty() {
        return Err(AError::invalid_fields(problems));
    }
    let before = routine.text("schedule").map(str::to_string);
    apply_fields(&mut routine, body);
    if routine.status == "active" {
        runnable(&routine)?;
    }
    routine.updated_at = Timestamp::now().micros();
    if routine.status == "active" && routine.text("schedule").map(str::to_string) != before {
        switch_on(face, engine, &routine)?;
    }
    records::save_routine(engine, &routine)?;
    Ok(wire::routine(&routine, face.app()))
}

/// The routine's cron, when it has one.
fn cron_of(routine: &Routine) -> Option<String> {
    routine
        .text("schedule")
        .filter(|cron| !cron.is_empty())
        .map(str::to_string)
}

/// Makes the engine schedules match the routine's `schedule` and fire:
/// the newest one resumes (or goes on) when its cron is the same, every
/// other one still live is cancelled, and a new one is made when none is
/// kept. Every schedule is found through its index record, so one made
/// just before a crash is found too.
fn switch_on(face: &ArchAstro, engine: &Engine, routine: &Routine) -> Result<()> {
    let cron = cron_of(routine);
    let mut kept = false;
    for (newest, schedule_id) in records::schedules(engine, &routine.id)?.iter().enumerate() {
        let current = engine.get_schedule(schedule_id)?;
        let same =
            matches!(&current.when, When::Cron { cron: now, .. } if Some(now) == cron.as_ref());
        match current.state {
            ScheduleState::Paused if same && newest == 0 => {
                engine.resume_schedule(schedule_id)?;
                kept = true;
            }
            ScheduleState::Active if same && newest == 0 => kept = true,
            ScheduleState::Active | ScheduleState::Paused => {
                engine.cancel_schedule(schedule_id)?;
            }
            ScheduleState::Done | ScheduleState::Cancelled => {}
        }
    }
    let Some(cron) = cron.filter(|_| !kept) else {
        return Ok(());
    };
    let document = RunDocument {
        routine: routine.id.clone(),
        agent: routine.agent.clone(),
        payload: json!({}),
        metadata: json!({}),
        participants: Value::Null,
        delivery: json!({"type": "none", "status": "not_requested"}),
    };
    let run = run_request(face, engine, routine, None, &Map::new(), &document)?;
    let (face_name, kind, prefix) = records::schedule_index(&routine.id);
    engine.create_exclusive_schedule(
        ScheduleRequest {
            when: When::Cron {
                cron,
                timezone: "UTC".into(),
            },
            run,
        },
        (face_name, kind, &prefix),
    )?;
    Ok(())
}

/// Ends or pauses every live engine schedule of the routine.
fn switch_off(engine: &Engine, routine: &Routine, cancel: bool) -> Result<()> {
    for schedule_id in records::schedules(engine, &routine.id)? {
        match engine.get_schedule(&schedule_id)?.state {
            ScheduleState::Active | ScheduleState::Paused if cancel => {
                engine.cancel_schedule(&schedule_id)?;
            }
            ScheduleState::Active => {
                engine.pause_schedule(&schedule_id)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// `POST /api/v1/agent_routines/{id}/activate`.
pub fn activate(face: &ArchAstro, engine: &Engine, id: &str) -> Result<Value> {
    let mut routine = records::routine(engine, id)?;
    runnable(&routine)?;
    if let Some(cron) = cron_of(&routine) {
        if let Some(message) = schedule_problem(engine, &cron) {
            return Err(AError::invalid("schedule", message));
        }
    }
    switch_on(face, engine, &routine)?;
    routine.status = "active".into();
    routine.updated_at = Timestamp::now().micros();
    records::save_routine(engine, &routine)?;
    Ok(wire::routine(&routine, face.app()))
}

/// `POST /api/v1/agent_routines/{id}/pause`: no more fires; runs already
/// made go on.
pub fn pause(face: &ArchAstro, engine: &Engine, id: &str) -> Result<Value> {
    let mut routine = records::routine(engine, id)?;
    switch_off(engine, &routine, false)?;
    routine.status = "paused".into();
    routine.updated_at = Timestamp::now().micros();
    records::save_routine(engine, &routine)?;
    Ok(wire::routine(&routine, face.app()))
}

/// `DELETE /api/v1/agent_routines/{id}`: the schedule ends; the routine
/// is kept, marked deleted, so that its runs stay readable.
pub fn delete(engine: &Engine, id: &str) -> Result<()> {
    let mut routine = records::routine(engine, id)?;
    switch_off(engine, &routine, true)?;
    routine.deleted = true;
    routine.updated_at = Timestamp::now().micros();
    records::save_routine(engine, &routine)
}

/// A routine by id, else by its `lookup_key` (spec 4: invoke).
fn by_id_or_lookup_key(engine: &Engine, id: &str) -> Result<Routine> {
    match records::routine(engine, id) {
        Ok(routine) => Ok(routine),
        Err(not_found) => records::routines(engine, ROUTINES_SCANNED_MAX)?
            .into_iter()
            .find(|routine| !routine.deleted && routine.text("lookup_key") == Some(id))
            .ok_or(not_found),
    }
}

/// `POST /api/v1/agent_routines/{id}/invoke`: a new run of the saved
/// routine, only while active. With an `idempotency_key`, a second invoke
/// answers the first run while it is active and 409 once it has ended.
pub fn invoke(
    face: &ArchAstro,
    engine: &Engine,
    id: &str,
    body: &Map<String, Value>,
) -> Result<Value> {
    let routine = by_id_or_lookup_key(engine, id)?;
    let message = required_long_text(body, "message")?;
    let key = optional_name(body, "idempotency_key")?;
    let metadata = optional_object(body, "metadata")?.unwrap_or_default();
    let delivery = match optional_object(body, "delivery")? {
        None => json!({"type": "none", "status": "not_requested"}),
        Some(delivery) => {
            let kind = delivery
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("none");
            if !["none", "thread", "reply"].contains(&kind) {
                return Err(AError::invalid(
                    "delivery.type",
                    "must be none, thread or reply",
                ));
            }
            if kind == "none" {
                json!({"type": "none", "status": "not_requested"})
            } else {
                // Stored, not delivered (spec choice 7): no threads here.
                let mut answer = delivery.clone();
                answer.insert("status".into(), json!("failed"));
                answer.insert("last_error".into(), json!("delivery_unsupported"));
                Value::Object(answer)
            }
        }
    };
    if routine.status != "active" {
        return Err(AError::invalid(
            "status",
            format!("the routine is {}: activate it first", routine.status),
        ));
    }
    runnable(&routine)?;
    let mut payload = body.clone();
    for key in ["idempotency_key", "delivery", "participants"] {
        payload.remove(key);
    }
    let document = RunDocument {
        routine: routine.id.clone(),
        agent: routine.agent.clone(),
        payload: Value::Object(payload),
        metadata: Value::Object(metadata.clone()),
        participants: body.get("participants").cloned().unwrap_or(Value::Null),
        delivery,
    };
    let request = run_request(face, engine, &routine, Some(&message), &metadata, &document)?;
    let (face_name, kind, prefix) = records::invoked_index(&routine.id);
    let index = (face_name, kind, prefix.as_str());
    let run = match key {
        None => match engine.create_indexed_run(request, index, None)? {
            Created::Fresh { value, .. } => value,
            Created::Replayed { .. } => {
                return Err(AError::internal("an invoke without a key was replayed"))
            }
        },
        Some(key) => {
            let once = Idempotency {
                key: format!("{FACE_NAME}:{}:{key}", routine.id),
                // Any body: the key alone names the run (spec 3.2).
                fingerprint: "invoke".into(),
            };
            let answer: crate::engine::RenderAnswer<Run> = Arc::new(|run: &Run| run.id.clone());
            match engine.create_indexed_run(request, index, Some((once, answer)))? {
                Created::Fresh { value, .. } => value,
                Created::Replayed { body: run_id } => {
                    let run = engine.get_run(&run_id)?;
                    if run.status.is_terminal() {
                        return Err(AError::conflict(format!(
                            "idempotency_key '{key}' was used by run {}, which has ended",
                            ids::of_run(wire::RUN_PREFIX, &run.id)
                        )));
                    }
                    run
                }
            }
        }
    };
    super::runs::get_engine_run(face, engine, &run.id)
}
