//! A worker's schedules (spec 4.5) on the engine's schedules: each fire
//! makes a new task (`triggeredBy: schedule`) on the worker.
//!
//! The engine schedule's run template carries the interaction prefix
//! `handinger:tsk_`, so each fire starts its own interaction keyed by the
//! fired run's id, and that task's id is `tsk_<run id>`. The template's
//! document names the worker; the face makes the task's record the first
//! time it is read (`fired_task`).

use serde_json::{json, Map, Value};
use ulid::Ulid;

use super::error::{HError, Result};
use super::handlers::{budget_processor, spec_of, title_of, turn_input};
use super::limits::SCHEDULE_SECONDS_MAX;
use super::records::{self, interaction_of, Schedule, Task, Worker};
use super::{wire, Handinger, FACE_NAME};
use crate::engine::Engine;
use crate::model::{RunRequest, ScheduleRequest, ScheduleState, Timestamp, When};

/// The prefix of every fired task's id.
const FIRED_TASK_PREFIX: &str = "tsk_";

/// `POST /api/workers/{id}/schedules`.
pub fn create(
    face: &Handinger,
    engine: &Engine,
    worker_id: &str,
    body: &Map<String, Value>,
) -> Result<Value> {
    let mut worker = records::live_worker(engine, worker_id)?;
    let input = turn_input(body)?;
    let (budget, processor) = budget_processor(face, body)?;
    let when_wire = body
        .get("when")
        .filter(|when| when.is_object())
        .ok_or_else(|| HError::bad_request("when is required: an object with a type"))?;
    let when = when_of(when_wire)?;
    let mut run = RunRequest::new(Value::String(input.clone()), processor);
    run.task_spec = Some(spec_of(&worker));
    run.interaction = Some(format!("{FACE_NAME}:{FIRED_TASK_PREFIX}"));
    run.document = Some(json!({"workerId": worker.id}).to_string());
    run.webhook = super::webhooks::target(&worker);
    let made = engine.create_schedule(ScheduleRequest { when, run })?;
    let schedule = Schedule {
        id: format!("sch_{}", Ulid::new()),
        engine_id: made.id.clone(),
        worker_id: worker.id.clone(),
        input,
        budget,
        when: when_wire.clone(),
        cancelled: false,
    };
    records::insert_schedule(engine, &schedule)?;
    worker.schedules.push(schedule.id.clone());
    records::save_worker(engine, &worker)?;
    Ok(schedule_json(&schedule, made.next_at))
}

/// `GET /api/workers/{id}/schedules`: the ones that will still fire.
pub fn list(engine: &Engine, worker_id: &str) -> Result<Value> {
    let worker = records::live_worker(engine, worker_id)?;
    let mut schedules = Vec::new();
    for id in &worker.schedules {
        let Some(schedule) = records::schedule(engine, id)? else {
            continue;
        };
        let fired = engine.get_schedule(&schedule.engine_id)?;
        if !schedule.cancelled && fired.state == ScheduleState::Active {
            schedules.push(schedule_json(&schedule, fired.next_at));
        }
    }
    Ok(json!({"schedules": schedules, "workerId": worker.id}))
}

/// `DELETE /api/workers/{id}/schedules/{schedule_id}`.
pub fn cancel(engine: &Engine, worker_id: &str, schedule_id: &str) -> Result<Value> {
    let worker = records::live_worker(engine, worker_id)?;
    let mut schedule = records::schedule(engine, schedule_id)?
        .filter(|schedule| schedule.worker_id == worker.id && !schedule.cancelled)
        .ok_or_else(|| HError::not_found(format!("schedule {schedule_id} not found")))?;
    let fired = engine.get_schedule(&schedule.engine_id)?;
    if fired.state != ScheduleState::Cancelled && fired.state != ScheduleState::Done {
        engine.cancel_schedule(&schedule.engine_id)?;
    }
    schedule.cancelled = true;
    records::save_schedule(engine, &schedule)?;
    Ok(json!({"cancelled": true}))
}

/// The task a fire made, when `id` names one: its record, made from the
/// fired run the first time it is asked for.
pub fn fired_task(engine: &Engine, id: &str) -> Result<Option<Task>> {
    if !id.starts_with(FIRED_TASK_PREFIX) {
        return Ok(None);
    }
    let turns = engine.interaction(&interaction_of(id))?;
    let Some(first) = turns.first() else {
        return Ok(None);
    };
    let document = engine.get_run_request(&first.run.id)?.document;
    let worker_id = document
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|doc| doc["workerId"].as_str().map(str::to_string))
        .ok_or_else(|| HError::new(500, "internal", format!("fired task {id} names no worker")))?;
    let task = Task {
        id: id.to_string(),
        worker_id,
        title: title_of(&wire::input_of(&first.input)),
        archived: false,
        triggered_by: "schedule".into(),
        created_at: first.run.created_at.micros(),
    };
    if records::insert_task(engine, &task)? {
        Ok(Some(task))
    } else {
        records::task(engine, id)
    }
}

/// The newest task a schedule of `worker` fired, as (when, task id).
pub fn latest_fired(engine: &Engine, worker: &Worker) -> Result<Option<(Timestamp, String)>> {
    let mut latest: Option<(Timestamp, String)> = None;
    for id in &worker.schedules {
        let Some(schedule) = records::schedule(engine, id)? else {
            continue;
        };
        if let Some(run) = engine
            .schedule_runs(&schedule.engine_id)?
            .into_iter()
            .last()
        {
            if latest.as_ref().is_none_or(|(at, _)| run.created_at > *at) {
                latest = Some((run.created_at, format!("{FIRED_TASK_PREFIX}{}", run.id)));
            }
        }
    }
    Ok(latest)
}

/// The engine's `When` of a wire `when` (spec 4.5).
fn when_of(when: &Value) -> Result<When> {
    let seconds = |key: &str| -> Result<u64> {
        let value = when[key]
            .as_u64()
            .filter(|s| (1..=SCHEDULE_SECONDS_MAX).contains(s));
        value.ok_or_else(|| {
            HError::bad_request(format!(
                "when.{key} must be a whole number of seconds from 1 to {SCHEDULE_SECONDS_MAX} \
                 (SCHEDULE_SECONDS_MAX)"
            ))
        })
    };
    match when["type"].as_str() {
        Some("scheduled") => {
            let date = when["date"]
                .as_str()
                .ok_or_else(|| HError::bad_request("when.date is required: an ISO 8601 time"))?;
            let at = chrono::DateTime::parse_from_rfc3339(date).map_err(|e| {
                HError::bad_request(format!("when.date '{date}' is not an ISO 8601 time: {e}"))
            })?;
            Ok(When::At {
                at: Timestamp(at.timestamp_micros()),
            })
        }
        Some("delayed") => Ok(When::Delay {
            delay_ms: seconds("delayInSeconds")? * 1_000,
        }),
        Some("cron") => {
            let cron = when["cron"]
                .as_str()
                .ok_or_else(|| HError::bad_request("when.cron is required: a cron expression"))?;
            Ok(When::Cron {
                cron: cron.to_string(),
                timezone: "UTC".into(),
            })
        }
        Some("interval") => Ok(When::Interval {
            every_s: seconds("intervalSeconds")?,
        }),
        _ => Err(HError::bad_request(
            "when.type must be scheduled, delayed, cron or interval",
        )),
    }
}

/// A WorkerSchedule (spec 2.4), told apart by `type`.
fn schedule_json(schedule: &Schedule, next_at: Option<Timestamp>) -> Value {
    let mut answer = json!({
        "id": schedule.id,
        "type": schedule.when["type"],
        "input": schedule.input,
        "budget": schedule.budget,
        "nextRunAt": next_at.map(wire::time),
    });
    for key in ["delayInSeconds", "cron", "intervalSeconds"] {
        if let Some(value) = schedule.when.get(key) {
            answer[key] = value.clone();
        }
    }
    answer
}
