//! ArchAstro's routes (spec section 4), registered in the server's one
//! route table; literal segments win over ids (`presets`, `runs`). Path
//! ids are decoded once, by `faces::register_table`.

use std::sync::Arc;

use super::{handlers, ArchAstro};
use crate::faces::{register_table, RouteRow};
use crate::server::Routes;

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

use crate::faces::next_id as id;

const SESSION: &str = "/api/v1/agent_sessions/{session}";
const ROUTINE: &str = "/api/v1/agent_routines/{routine}";
const RUN: &str = "/api/v1/agent_routines/runs/{run}";

/// Every route: method, pattern, its ids' names, and the route it makes.
pub const API: &[RouteRow<Route>] = &[
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

pub fn register(face: &Arc<ArchAstro>, routes: &mut Routes) {
    let face = face.clone();
    register_table(
        routes,
        API,
        |raw| super::error::AError::not_found(format!("{raw} is not a valid id")).into_reply(),
        Arc::new(move |request, route| handlers::answer(&face, request, route)),
    );
}
