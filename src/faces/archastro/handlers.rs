//! ArchAstro's endpoints: reads each request, hands it to the module of
//! its resource (sessions, routines, runs) and answers JSON, a stream, a
//! 204, or an error in the face's form. Owns the body and field readers
//! every resource shares.

use serde_json::{Map, Value};

use super::error::{AError, Result};
use super::limits::{NAME_CHARS_MAX, TEXT_CHARS_MAX};
use super::query::Query;
use super::routes::Route;
use super::{routines, runs, sessions, stream, ArchAstro};
use crate::server::{Reply, Request};

/// What an endpoint answers.
pub enum Answer {
    /// 200, or the status given, with a JSON body.
    Json(u16, Value),
    /// 204, no body: the SDK parses every other 2xx as JSON (spec 1.4).
    NoContent,
    Stream(Reply),
}

impl Answer {
    pub fn ok(value: Value) -> Answer {
        Answer::Json(200, value)
    }
}

pub fn answer(face: &ArchAstro, request: &mut Request<'_>, route: Route) -> Reply {
    match handle(face, request, route) {
        Ok(Answer::Json(status, body)) => Reply::Json(status, body.to_string(), Vec::new()),
        Ok(Answer::NoContent) => Reply::Json(204, String::new(), Vec::new()),
        Ok(Answer::Stream(reply)) => reply,
        Err(error) => error.into_reply(),
    }
}

fn handle(face: &ArchAstro, request: &mut Request<'_>, route: Route) -> Result<Answer> {
    let engine = request.engine().clone();
    let query = Query::parse(request.raw_query());
    match route {
        Route::ListSessions => sessions::list(&engine, &query).map(Answer::ok),
        Route::CreateSession => {
            sessions::create(face, &engine, &body(request)?).map(|s| Answer::Json(201, s))
        }
        Route::GetSession(id) => sessions::get(&engine, &id).map(Answer::ok),
        Route::UpdateSession(id) => sessions::update(&engine, &id, &body(request)?).map(Answer::ok),
        Route::DeleteSession(id) => {
            body(request)?;
            sessions::delete(&engine, &id).map(|()| Answer::NoContent)
        }
        Route::CancelSession(id) => {
            body(request)?;
            sessions::cancel(&engine, &id).map(Answer::ok)
        }
        Route::MessageSession(id) => {
            sessions::message(&engine, &id, &body(request)?).map(Answer::ok)
        }
        Route::StreamSession(id) => stream::session(face, &engine, &id).map(Answer::Stream),
        Route::SessionEvents(id) => {
            // Harness events are hosted-only (spec 5: Python's `events`).
            super::records::session(&engine, &id)?;
            Ok(Answer::ok(Value::Array(Vec::new())))
        }
        Route::CreateRoutine(agent) => {
            routines::create(face, &engine, &agent, &body(request)?).map(Answer::ok)
        }
        Route::ListRoutines => routines::list(face, &engine, &query).map(Answer::ok),
        Route::Presets => Ok(Answer::ok(super::wire::presets())),
        Route::GetRoutine(id) => routines::get(face, &engine, &id).map(Answer::ok),
        Route::UpdateRoutine(id) => {
            routines::update(face, &engine, &id, &body(request)?).map(Answer::ok)
        }
        Route::DeleteRoutine(id) => {
            body(request)?;
            routines::delete(&engine, &id).map(|()| Answer::NoContent)
        }
        Route::ActivateRoutine(id) => {
            body(request)?;
            routines::activate(face, &engine, &id).map(Answer::ok)
        }
        Route::PauseRoutine(id) => {
            body(request)?;
            routines::pause(face, &engine, &id).map(Answer::ok)
        }
        Route::InvokeRoutine(id) => {
            routines::invoke(face, &engine, &id, &body(request)?).map(Answer::ok)
        }
        Route::RoutineRuns(id) => runs::of_routine(face, &engine, &id, &query).map(Answer::ok),
        Route::GetRun(id) => runs::get(face, &engine, &id).map(Answer::ok),
        Route::RunJournal(id) => runs::journal(&engine, &id).map(Answer::ok),
        Route::ListRuns => runs::list(face, &engine, &query).map(Answer::ok),
        Route::StreamRun(id) => stream::routine_run(face, &engine, &id).map(Answer::Stream),
    }
}

/// The body as a JSON object; no body (the SDK's body-less POST with a
/// content type) is an empty one (spec 1.2).
fn body(request: &mut Request<'_>) -> Result<Map<String, Value>> {
    let bytes = request.body().map_err(AError::from)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(AError::invalid("body", "must be a JSON object")),
        Err(error) => Err(AError::invalid("body", format!("is not JSON: {error}"))),
    }
}

/// A string field; `null` or absent is `None` (spec 1.4).
pub fn optional_string(body: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(AError::invalid(key, "must be a string")),
    }
}

/// A required string of 1 to `max` characters (`limit` names the max).
pub fn required_text(
    body: &Map<String, Value>,
    key: &str,
    max: usize,
    limit: &str,
) -> Result<String> {
    let text = optional_string(body, key)?.ok_or_else(|| AError::invalid(key, "is required"))?;
    let length = text.chars().count();
    if length == 0 {
        return Err(AError::invalid(key, "must not be empty"));
    }
    if length > max {
        return Err(AError::invalid(
            key,
            format!("is {length} characters, at most {max} ({limit})"),
        ));
    }
    Ok(text)
}

/// A long text field (`TEXT_CHARS_MAX`).
pub fn required_long_text(body: &Map<String, Value>, key: &str) -> Result<String> {
    required_text(body, key, TEXT_CHARS_MAX, "TEXT_CHARS_MAX")
}

/// A short optional string (`NAME_CHARS_MAX`).
pub fn optional_name(body: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    let text = optional_string(body, key)?;
    if let Some(text) = &text {
        let length = text.chars().count();
        if length > NAME_CHARS_MAX {
            return Err(AError::invalid(
                key,
                format!("is {length} characters, at most {NAME_CHARS_MAX} (NAME_CHARS_MAX)"),
            ));
        }
    }
    Ok(text)
}

/// An object field; `null` or absent is `None`.
pub fn optional_object(body: &Map<String, Value>, key: &str) -> Result<Option<Map<String, Value>>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object.clone())),
        Some(_) => Err(AError::invalid(key, "must be a map")),
    }
}
