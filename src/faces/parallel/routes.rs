//! Parallel's routes: every method and pattern of the Task API, with the
//! handler each reaches, registered in the server's one route table.
//!
//! Owns only the mapping from a matched pattern to a [`Route`] (the ids
//! taken from the path); handlers live in `handlers.rs`. Each `/v1` route
//! is also served under `/v1beta`, counted under the `/v1` pattern so that
//! the alias adds no metric series.

use std::sync::Arc;

use super::{handlers, Parallel};
use crate::server::{Request, Routes};

/// One endpoint, with the ids taken from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    CreateRun,
    ListRuns,
    GetRun(String),
    GetRunInput(String),
    GetRunResult(String),
    RunEvents(String),
    CancelRun(String),
    WebhookDeliveries(String),
    CreateGroup,
    ListGroups,
    GetGroup(String),
    AddRuns(String),
    GroupEvents(String),
    GroupRuns(String),
    GetGroupRun(String, String),
    CancelGroup(String),
    CreateSchedule,
    ListSchedules,
    GetSchedule(String),
    ChangeSchedule(String, super::ScheduleVerb),
    ScheduleRuns(String),
    ListProcessors,
    GetProcessor(String),
    OpenApi,
}

/// Builds a route from the ids its pattern took.
type Make = fn(&Request<'_>) -> Route;

fn run_id(request: &Request<'_>) -> String {
    request.param("run_id").to_string()
}

fn schedule_id(request: &Request<'_>) -> String {
    request.param("schedule_id").to_string()
}

fn group_id(request: &Request<'_>) -> String {
    request.param("taskgroup_id").to_string()
}

/// Every API route: method, pattern under `/v1`, and how its [`Route`] is
/// made. The order is the order of the OpenAPI document's paths.
const API: &[(&str, &str, Make)] = &[
    ("GET", "/v1/tasks/runs", |_| Route::ListRuns),
    ("POST", "/v1/tasks/runs", |_| Route::CreateRun),
    ("GET", "/v1/tasks/runs/{run_id}", |r| {
        Route::GetRun(run_id(r))
    }),
    ("GET", "/v1/tasks/runs/{run_id}/input", |r| {
        Route::GetRunInput(run_id(r))
    }),
    ("GET", "/v1/tasks/runs/{run_id}/result", |r| {
        Route::GetRunResult(run_id(r))
    }),
    ("GET", "/v1/tasks/runs/{run_id}/events", |r| {
        Route::RunEvents(run_id(r))
    }),
    ("POST", "/v1/tasks/runs/{run_id}/cancel", |r| {
        Route::CancelRun(run_id(r))
    }),
    ("GET", "/v1/tasks/runs/{run_id}/webhook_deliveries", |r| {
        Route::WebhookDeliveries(run_id(r))
    }),
    ("GET", "/v1/tasks/groups", |_| Route::ListGroups),
    ("POST", "/v1/tasks/groups", |_| Route::CreateGroup),
    ("GET", "/v1/tasks/groups/{taskgroup_id}", |r| {
        Route::GetGroup(group_id(r))
    }),
    ("GET", "/v1/tasks/groups/{taskgroup_id}/runs", |r| {
        Route::GroupRuns(group_id(r))
    }),
    ("POST", "/v1/tasks/groups/{taskgroup_id}/runs", |r| {
        Route::AddRuns(group_id(r))
    }),
    ("GET", "/v1/tasks/groups/{taskgroup_id}/events", |r| {
        Route::GroupEvents(group_id(r))
    }),
    (
        "GET",
        "/v1/tasks/groups/{taskgroup_id}/runs/{run_id}",
        |r| Route::GetGroupRun(group_id(r), run_id(r)),
    ),
    ("POST", "/v1/tasks/groups/{taskgroup_id}/cancel", |r| {
        Route::CancelGroup(group_id(r))
    }),
    ("GET", "/v1/schedules", |_| Route::ListSchedules),
    ("POST", "/v1/schedules", |_| Route::CreateSchedule),
    ("GET", "/v1/schedules/{schedule_id}", |r| {
        Route::GetSchedule(schedule_id(r))
    }),
    ("POST", "/v1/schedules/{schedule_id}/pause", |r| {
        Route::ChangeSchedule(schedule_id(r), super::ScheduleVerb::Pause)
    }),
    ("POST", "/v1/schedules/{schedule_id}/resume", |r| {
        Route::ChangeSchedule(schedule_id(r), super::ScheduleVerb::Resume)
    }),
    ("POST", "/v1/schedules/{schedule_id}/cancel", |r| {
        Route::ChangeSchedule(schedule_id(r), super::ScheduleVerb::Cancel)
    }),
    ("GET", "/v1/schedules/{schedule_id}/runs", |r| {
        Route::ScheduleRuns(schedule_id(r))
    }),
    ("GET", "/v1/processors", |_| Route::ListProcessors),
    ("GET", "/v1/processors/{name}", |r| {
        Route::GetProcessor(r.param("name").to_string())
    }),
];

/// Registers every route of the face with the server.
pub fn register(face: &Arc<Parallel>, routes: &mut Routes) {
    for (method, pattern, make) in API {
        let beta = pattern.replacen("/v1/", "/v1beta/", 1);
        for path in [pattern.to_string(), beta] {
            let face = face.clone();
            let make = *make;
            routes.add(
                method,
                path,
                pattern,
                true,
                Arc::new(move |request| handlers::answer(&face, request, make(request))),
            );
        }
    }
    super::dashboard::register(routes);
    // The document itself is open, like health and metrics; HEAD as GET.
    for method in ["GET", "HEAD"] {
        let face = face.clone();
        routes.add(
            method,
            "/openapi.json",
            "/openapi.json",
            false,
            Arc::new(move |request| handlers::answer(&face, request, Route::OpenApi)),
        );
    }
}
