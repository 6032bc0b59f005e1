//! One handler per route of Parallel's Task API: parse the request, call
//! the engine, shape the answer. Handlers hold no SQL and pick no status
//! for engine errors (those go through `error.rs`); they only choose the
//! success status the spec names for each endpoint.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::api::{engine_stream, ListQuery};
use super::error::ApiError;
use super::limits::{
    GROUP_EVENTS_TIMEOUT_S_MAX, RESULT_TIMEOUT_S_DEFAULT, RESULT_TIMEOUT_S_MAX,
    RUN_EVENTS_STREAM_S_MAX,
};
use super::parse;
use super::query::{parse_cursor, Query};
use super::routes::Route;
use super::wire::RunInput;
use super::{Parallel, OPENAPI_JSON};
use crate::engine::{Created, GroupRunsQuery, Idempotency, StreamKind};
use crate::model::{to_json, FieldError, Loc};
use crate::processors::ProcessorConfig;
use crate::server::{sse, Reply, Request};

/// What a handler may read of its request.
struct Context<'r, 'a> {
    face: &'r Parallel,
    request: &'r mut Request<'a>,
    query: Query,
}

/// Answers one request of the face: its handler's reply, or its error in
/// the face's envelope.
pub(super) fn answer(face: &Parallel, request: &mut Request<'_>, route: Route) -> Reply {
    let query = Query::parse(request.raw_query());
    let mut context = Context {
        face,
        request,
        query,
    };
    match dispatch(&mut context, route) {
        Ok(reply) => reply,
        Err(error) => error.into_reply(),
    }
}

/// A reply or an error, both as the face answers them, for the long waits
/// that finish on a thread of their own.
fn settled(result: Result<Reply, ApiError>) -> Reply {
    result.unwrap_or_else(ApiError::into_reply)
}

/// The request's Idempotency-Key (spec 10.5), checked: 1 to 255 printable
/// ASCII characters, else a 400.
fn idempotency(context: &Context<'_, '_>, body: &Value) -> Result<Option<Idempotency>, ApiError> {
    let Some(key) = context.request.header("idempotency-key") else {
        return Ok(None);
    };
    let printable = key.bytes().all(|byte| (0x20..=0x7e).contains(&byte));
    if key.is_empty() || key.len() > 255 || !printable {
        return Err(ApiError::bad_request(vec![FieldError::value_error(
            vec![
                Loc::Key("header".into()),
                Loc::Key("Idempotency-Key".into()),
            ],
            "must be 1 to 255 printable ASCII characters",
        )]));
    }
    // `/v1beta` is read as `/v1`: both prefixes are one endpoint.
    let path = match context.request.path().strip_prefix("/v1beta/") {
        Some(rest) => format!("/v1/{rest}"),
        None => context.request.path().to_string(),
    };
    let mut fingerprint = format!(
        "{} {}\n",
        context.request.method(),
        path.trim_end_matches('/')
    );
    crate::model::canonical_json(body, &mut fingerprint);
    Ok(Some(Idempotency { key, fingerprint }))
}

/// The answer of a create that carried an Idempotency-Key: `status` for a
/// fresh create, the stored status for a replay.
fn created_reply<T>(created: Created<T>, status: u16) -> Result<Reply, ApiError> {
    match created {
        Created::Fresh { body, .. } => Ok(Reply::Json(status, body, Vec::new())),
        Created::Replayed { body } => Ok(Reply::Json(
            status,
            body,
            vec![("Idempotent-Replayed", "true".to_string())],
        )),
    }
}

fn json_reply<T: Serialize>(status: u16, value: &T) -> Result<Reply, ApiError> {
    Ok(Reply::Json(status, to_json(value), Vec::new()))
}

/// Parses a body that must be JSON: empty, not JSON or too deep is a 400.
fn body_json(context: &mut Context<'_, '_>) -> Result<Value, ApiError> {
    let body = context.request.body().map_err(ApiError::from)?;
    parse::parse_json_body(&body).map_err(|error| ApiError::bad_request(vec![error]))
}

/// Validation problems of a parsed body: 422 (403 when only processors).
/// One problem per field (a missing processor is not also unknown), in
/// the order of the inputs they belong to.
fn invalid(mut errors: Vec<FieldError>) -> ApiError {
    let mut seen = std::collections::HashSet::new();
    errors.retain(|error| seen.insert(error.loc_string()));
    errors.sort_by_key(|error| {
        error.loc.iter().find_map(|step| match step {
            Loc::Index(index) => Some(*index),
            Loc::Key(_) => None,
        })
    });
    ApiError::validation(
        422,
        errors
            .into_iter()
            .map(|error| error.prefixed(&[Loc::Key("body".into())]))
            .collect(),
    )
}

/// The stream cursor: the query's `last_event_id`, else `Last-Event-ID`.
fn last_event_id(context: &Context<'_, '_>) -> Result<u64, ApiError> {
    if let Some(cursor) = context.query.cursor("last_event_id")? {
        return Ok(cursor);
    }
    match context
        .request
        .header("last-event-id")
        .as_deref()
        .map(str::trim)
    {
        Some(text) if !text.is_empty() => parse_cursor("last_event_id", text).map_err(|_| {
            ApiError::bad_request(vec![FieldError::value_error(
                vec![Loc::Key("header".into()), Loc::Key("Last-Event-ID".into())],
                format!(
                    "'{text}' is not a cursor (a decimal integer from 0 to 9223372036854775807)"
                ),
            )])
        }),
        _ => Ok(0),
    }
}

/// Looks up the id of a route that takes a body, before the body is read.
fn precheck(engine: &super::Api, route: &Route) -> Result<(), ApiError> {
    match route {
        Route::AddRuns(group_id) | Route::CancelGroup(group_id) => {
            engine.get_group(group_id)?;
        }
        Route::CancelRun(run_id) => {
            engine.get_run(run_id)?;
        }
        _ => {}
    }
    Ok(())
}

fn dispatch(context: &mut Context<'_, '_>, route: Route) -> Result<Reply, ApiError> {
    let api = context.face.api.clone();
    let engine = &api;
    // Spec 1.6 order: an unknown id (404) before a body over the limit (413).
    precheck(engine, &route)?;
    match route {
        Route::CreateRun => {
            let body = body_json(context)?;
            let key = idempotency(context, &body)?;
            let (input, errors) = parse::parse_run_input_lenient(&body).map_err(invalid)?;
            if !errors.is_empty() {
                // Report the semantic problems of what did parse as well.
                let mut errors = errors;
                errors.extend(engine.check_run_input(&input));
                return Err(invalid(errors));
            }
            match key {
                Some(key) => created_reply(engine.create_run_idempotent(input, key)?, 202),
                None => json_reply(202, &engine.create_run(input)?),
            }
        }
        Route::GetRun(run_id) => json_reply(200, &engine.get_run(&run_id)?),
        Route::GetRunInput(run_id) => {
            let input = engine.get_run_input(&run_id)?;
            Ok(Reply::Json(200, input_json(&input), Vec::new()))
        }
        Route::GetRunResult(run_id) => {
            // Spec 1.6 order: an unknown id (404) before a bad query (400).
            engine.get_run(&run_id)?;
            let timeout = context
                .query
                .seconds("timeout", RESULT_TIMEOUT_S_MAX)?
                .unwrap_or(Duration::from_secs(RESULT_TIMEOUT_S_DEFAULT));
            if timeout.is_zero() {
                return json_reply(200, &engine.wait_for_result(&run_id, timeout)?);
            }
            let engine = api.clone();
            Ok(Reply::Wait(Box::new(move || {
                settled(
                    engine
                        .wait_for_result(&run_id, timeout)
                        .map_err(ApiError::from)
                        .and_then(|result| json_reply(200, &result)),
                )
            })))
        }
        Route::RunEvents(run_id) => {
            engine.get_run(&run_id)?;
            let stream = engine_stream(StreamKind::RunEvents(run_id))?;
            let engine = api.engine().clone();
            let render = context.face.render.clone();
            Ok(Reply::Stream(
                "run_events",
                Box::new(move |out| {
                    sse::follow(
                        &engine,
                        stream,
                        0,
                        Duration::from_secs(RUN_EVENTS_STREAM_S_MAX),
                        render,
                        out,
                    )
                }),
            ))
        }
        Route::CancelRun(run_id) => json_reply(200, &engine.cancel_run(&run_id)?),
        Route::WebhookDeliveries(run_id) => json_reply(200, &engine.webhook_deliveries(&run_id)?),
        Route::CreateGroup => {
            let body = body_json(context)?;
            let key = idempotency(context, &body)?;
            let metadata = parse::parse_group_create(&body).map_err(invalid)?;
            match key {
                Some(key) => created_reply(engine.create_group_idempotent(metadata, key)?, 200),
                None => json_reply(200, &engine.create_group(metadata)?),
            }
        }
        Route::GetGroup(group_id) => json_reply(200, &engine.get_group(&group_id)?),
        Route::AddRuns(group_id) => {
            engine.get_group(&group_id)?;
            // Hosted default true; taskyard always answers the current
            // status, but a bad value is still a bad request.
            context.query.bool("refresh_status")?;
            let body = body_json(context)?;
            let key = idempotency(context, &body)?;
            let (request, positions, errors) =
                parse::parse_add_runs_lenient(&body).map_err(invalid)?;
            if !errors.is_empty() {
                let mut errors = errors;
                errors.extend(engine.check_add_runs(&request, &positions));
                return Err(invalid(errors));
            }
            match key {
                Some(key) => {
                    created_reply(engine.add_runs_idempotent(&group_id, request, key)?, 200)
                }
                None => json_reply(200, &engine.add_runs(&group_id, request)?),
            }
        }
        Route::GroupEvents(group_id) => {
            engine.get_group(&group_id)?;
            let after = last_event_id(context)?;
            let lifetime = context
                .query
                .seconds("timeout", GROUP_EVENTS_TIMEOUT_S_MAX)?
                .unwrap_or(Duration::from_secs(GROUP_EVENTS_TIMEOUT_S_MAX));
            let stream = engine_stream(StreamKind::GroupEvents(group_id))?;
            let engine = api.engine().clone();
            let render = context.face.render.clone();
            Ok(Reply::Stream(
                "group_events",
                Box::new(move |out| sse::follow(&engine, stream, after, lifetime, render, out)),
            ))
        }
        Route::GroupRuns(group_id) => {
            engine.get_group(&group_id)?;
            let query = GroupRunsQuery {
                after: last_event_id(context)?,
                status: context.query.status("status")?,
                include_request: context.query.bool("include_input")?.unwrap_or(false),
                include_output: context.query.bool("include_output")?.unwrap_or(false),
            };
            let api = api.clone();
            let render = context.face.render.clone();
            Ok(Reply::Stream(
                "group_runs",
                Box::new(move |out| {
                    sse::snapshot(render, out, |each| {
                        api.group_runs(&group_id, &query, |event| {
                            each(event.kind.as_str(), &event.data)
                        })
                    })
                }),
            ))
        }
        Route::GetGroupRun(group_id, run_id) => {
            json_reply(200, &engine.get_group_run(&group_id, &run_id)?)
        }
        Route::CancelGroup(group_id) => json_reply(200, &engine.cancel_group(&group_id)?),
        Route::ListRuns | Route::ListGroups => {
            let query = ListQuery {
                limit: context.query.integer("limit", 1, 100)?.unwrap_or(20) as usize,
                after: context.query.get("after").map(str::to_string),
                status: match route {
                    Route::ListRuns => context.query.status("status")?,
                    _ => None,
                },
                taskgroup_id: context.query.get("taskgroup_id").map(str::to_string),
                is_active: match route {
                    Route::ListGroups => context.query.bool("is_active")?,
                    _ => None,
                },
            };
            let page = if route == Route::ListRuns {
                to_json(&engine.list_runs(&query).map_err(bad_cursor)?)
            } else {
                to_json(&engine.list_groups(&query).map_err(bad_cursor)?)
            };
            Ok(Reply::Json(200, page, Vec::new()))
        }
        Route::CreateSchedule => {
            let body = body_json(context)?;
            let (when, run) = parse::parse_schedule_create(&body).map_err(invalid)?;
            json_reply(200, &engine.create_schedule(when, run)?)
        }
        Route::ListSchedules => json_reply(200, &engine.list_schedules()?),
        Route::GetSchedule(id) => json_reply(200, &engine.get_schedule(&id)?),
        Route::ChangeSchedule(id, verb) => json_reply(200, &engine.change_schedule(&id, verb)?),
        Route::ScheduleRuns(id) => json_reply(200, &engine.schedule_runs(&id)?),
        Route::ListProcessors => {
            let data: Vec<Value> = engine.registry().iter().map(processor_json).collect();
            json_reply(200, &json!({"data": data, "next_cursor": null}))
        }
        Route::GetProcessor(name) => match engine.registry().get(&name) {
            Some(config) => json_reply(200, &processor_json(config)),
            None => Err(ApiError::new(404, format!("processor {name} not found"))),
        },
        Route::OpenApi => Ok(Reply::Json(200, OPENAPI_JSON.to_string(), Vec::new())),
    }
}

/// A list cursor that names no item of the list is a 400 (spec 10.3).
fn bad_cursor(error: crate::engine::Error) -> ApiError {
    match error {
        crate::engine::Error::Invalid(errors) => ApiError::bad_request(
            errors
                .into_iter()
                .map(|error| error.prefixed(&[Loc::Key("query".into())]))
                .collect(),
        ),
        other => other.into(),
    }
}

/// A RunInput for `.../input`: MCP server headers are write-only.
fn input_json(input: &RunInput) -> String {
    let mut value = serde_json::to_value(input).unwrap_or(Value::Null);
    if let Some(servers) = value.get_mut("mcp_servers").and_then(Value::as_array_mut) {
        for server in servers {
            if let Some(object) = server.as_object_mut() {
                if object.contains_key("headers") {
                    object.insert("headers".into(), Value::Null);
                }
            }
        }
    }
    value.to_string()
}

fn processor_json(config: &ProcessorConfig) -> Value {
    json!({
        "name": config.name,
        "kind": config.kind,
        "description": config.description,
        "input_schema": config.input_schema,
        "output_schema": config.output_schema,
        "enable_events_default": config.enable_events_default,
        "max_attempts": config.max_attempts,
        "max_concurrency": config.max_concurrency,
        "timeout_ms": config.timeout.map(|timeout| timeout.as_millis() as u64),
        "backoff_ms": config.backoff.first.as_millis() as u64,
        "backoff_max_ms": config.backoff.max.as_millis() as u64,
    })
}
