//! ArchAstro's routes (spec section 4), registered in the server's one
//! route table; literal segments win over ids (`presets`, `runs`). Path
//! ids arrive percent-encoded as one segment and are decoded once here.

use std::sync::Arc;

use percent_encoding::percent_decode_str;

use super::{handlers, ArchAstro};
use crate::server::{Request, Routes};

/// One endpoint, with the (decoded) ids taken from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    ListSessions,
    CreateSession,
    GetSession(String),
    UpdateSession(String),
    DeleteSession(String),
    CancelSession(String),
    MessageSession(String),
    StreamSession(String),
    SessionEvents(String),
    CreateRoutine(String),
    ListRoutines,
    Presets,
    GetRoutine(String),
    UpdateRoutine(String),
    DeleteRoutine(String),
    ActivateRoutine(String),
    PauseRoutine(String),
    InvokeRoutine(String),
    RoutineRuns(String),
    GetRun(String),
    RunJournal(String),
    ListRuns,
    StreamRun(String),
}

type Make = fn(&mut std::vec::IntoIter<String>) -> Route;

fn id(ids: &mut std::vec::IntoIter<String>) -> String {
    ids.next().unwrap_or_default()
}

const SESSION: &str = "/api/v1/agent_sessions/{session}";
const ROUTINE: &str = "/api/v1/agent_routines/{routine}";
const RUN: &str = "/api/v1/agent_routines/runs/{run}";

/// Every route: method, pattern, its ids' names, and the route it makes.
pub const API: &[(&str, &str, &[&str], Make)] = &[
    ("GET", "/api/v1/agent_sessions", &[], |_| {
        Route::ListSessions
    }),
    ("POST", "/api/v1/agent_sessions", &[], |_| {
        Route::CreateSession
    }),
    ("GET", SESSION, &["session"], |i| Route::GetSession(id(i))),
    ("PATCH", SESSION, &["session"], |i| {
        Route::UpdateSession(id(i))
    }),
    ("DELETE", SESSION, &["session"], |i| {
        Route::DeleteSession(id(i))
    }),
    (
        "POST",
        "/api/v1/agent_sessions/{session}/cancel",
        &["session"],
        |i| Route::CancelSession(id(i)),
    ),
    (
        "POST",
        "/api/v1/agent_sessions/{session}/message",
        &["session"],
        |i| Route::MessageSession(id(i)),
    ),
    (
        "GET",
        "/api/v1/agent_sessions/{session}/stream",
        &["session"],
        |i| Route::StreamSession(id(i)),
    ),
    (
        "GET",
        "/api/v1/agent_sessions/{session}/events",
        &["session"],
        |i| Route::SessionEvents(id(i)),
    ),
    (
        "POST",
        "/api/v1/agents/{agent}/agent_routines",
        &["agent"],
        |i| Route::CreateRoutine(id(i)),
    ),
    ("GET", "/api/v1/agent_routines", &[], |_| {
        Route::ListRoutines
    }),
    ("GET", "/api/v1/agent_routines/presets", &[], |_| {
        Route::Presets
    }),
    ("GET", ROUTINE, &["routine"], |i| Route::GetRoutine(id(i))),
    ("PATCH", ROUTINE, &["routine"], |i| {
        Route::UpdateRoutine(id(i))
    }),
    ("DELETE", ROUTINE, &["routine"], |i| {
        Route::DeleteRoutine(id(i))
    }),
    (
        "POST",
        "/api/v1/agent_routines/{routine}/activate",
        &["routine"],
        |i| Route::ActivateRoutine(id(i)),
    ),
    (
        "POST",
        "/api/v1/agent_routines/{routine}/pause",
        &["routine"],
        |i| Route::PauseRoutine(id(i)),
    ),
    (
        "POST",
        "/api/v1/agent_routines/{routine}/invoke",
        &["routine"],
        |i| Route::InvokeRoutine(id(i)),
    ),
    (
        "GET",
        "/api/v1/agent_routines/{routine}/runs",
        &["routine"],
        |i| Route::RoutineRuns(id(i)),
    ),
    ("GET", RUN, &["run"], |i| Route::GetRun(id(i))),
    (
        "GET",
        "/api/v1/agent_routines/runs/{run}/journal",
        &["run"],
        |i| Route::RunJournal(id(i)),
    ),
    ("GET", "/api/v1/agent_routine_runs", &[], |_| {
        Route::ListRuns
    }),
    (
        "GET",
        "/api/v1/agent_routine_runs/{run}/stream",
        &["run"],
        |i| Route::StreamRun(id(i)),
    ),
];

/// The id a path segment names, decoded once; `None` when it does not
/// decode to UTF-8 (no such id can exist).
fn decoded(request: &Request<'_>, name: &str) -> Option<String> {
    percent_decode_str(request.param(name))
        .decode_utf8()
        .ok()
        .map(|id| id.into_owned())
}

pub fn register(face: &Arc<ArchAstro>, routes: &mut Routes) {
    for (method, pattern, params, make) in API {
        let face = face.clone();
        let (params, make) = (*params, *make);
        routes.add(
            method,
            pattern.to_string(),
            pattern,
            true,
            Arc::new(move |request| {
                let mut ids = Vec::with_capacity(params.len());
                for name in params {
                    match decoded(request, name) {
                        Some(id) => ids.push(id),
                        None => {
                            return super::error::AError::not_found(format!(
                                "{} is not a valid id",
                                request.param(name)
                            ))
                            .into_reply()
                        }
                    }
                }
                handlers::answer(&face, request, make(&mut ids.into_iter()))
            }),
        );
    }
}
