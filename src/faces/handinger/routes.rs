//! Handinger's routes (spec section 4), registered in the server's one
//! route table. Path ids are decoded once, by `faces::register_table`
//! (`a%2Fb` is the id `a/b`).

use std::sync::Arc;

use super::{handlers, Handinger};
use crate::faces::{register_table, RouteRow};
use crate::server::{Reply, Routes};

/// One endpoint, with the (decoded) ids taken from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    CreateTask,
    GetTask(String),
    ArchiveTask(String),
    AbortTask(String),
    CreateWorker,
    GetWorker(String),
    UpdateWorker(String),
    DeleteWorker(String),
    WorkerEmail(String),
    CreateSchedule(String),
    ListSchedules(String),
    CancelSchedule(String, String),
    GetWebhook(String),
    UpdateWebhook(String),
    DeleteWebhook(String),
    WebhookExecutions(String),
    RegenerateWebhookToken(String),
}

use crate::faces::next_id as id;

const API: &[RouteRow<Route>] = &[
    ("POST", "/api/tasks", &[], |_| Route::CreateTask),
    ("GET", "/api/tasks/{task_id}", &["task_id"], |i| {
        Route::GetTask(id(i))
    }),
    ("DELETE", "/api/tasks/{task_id}", &["task_id"], |i| {
        Route::ArchiveTask(id(i))
    }),
    ("POST", "/api/tasks/{task_id}/abort", &["task_id"], |i| {
        Route::AbortTask(id(i))
    }),
    ("POST", "/api/workers", &[], |_| Route::CreateWorker),
    ("GET", "/api/workers/{worker_id}", &["worker_id"], |i| {
        Route::GetWorker(id(i))
    }),
    ("PATCH", "/api/workers/{worker_id}", &["worker_id"], |i| {
        Route::UpdateWorker(id(i))
    }),
    ("DELETE", "/api/workers/{worker_id}", &["worker_id"], |i| {
        Route::DeleteWorker(id(i))
    }),
    (
        "GET",
        "/api/workers/{worker_id}/email",
        &["worker_id"],
        |i| Route::WorkerEmail(id(i)),
    ),
    (
        "POST",
        "/api/workers/{worker_id}/schedules",
        &["worker_id"],
        |i| Route::CreateSchedule(id(i)),
    ),
    (
        "GET",
        "/api/workers/{worker_id}/schedules",
        &["worker_id"],
        |i| Route::ListSchedules(id(i)),
    ),
    (
        "DELETE",
        "/api/workers/{worker_id}/schedules/{schedule_id}",
        &["worker_id", "schedule_id"],
        |i| Route::CancelSchedule(id(i), id(i)),
    ),
    (
        "GET",
        "/api/workers/{worker_id}/webhook",
        &["worker_id"],
        |i| Route::GetWebhook(id(i)),
    ),
    (
        "PUT",
        "/api/workers/{worker_id}/webhook",
        &["worker_id"],
        |i| Route::UpdateWebhook(id(i)),
    ),
    (
        "DELETE",
        "/api/workers/{worker_id}/webhook",
        &["worker_id"],
        |i| Route::DeleteWebhook(id(i)),
    ),
    (
        "GET",
        "/api/workers/{worker_id}/webhook/executions",
        &["worker_id"],
        |i| Route::WebhookExecutions(id(i)),
    ),
    (
        "POST",
        "/api/workers/{worker_id}/webhook/regenerate-token",
        &["worker_id"],
        |i| Route::RegenerateWebhookToken(id(i)),
    ),
];

pub fn register(face: &Arc<Handinger>, routes: &mut Routes) {
    // The face's own OpenAPI document, open like Parallel's.
    routes.add(
        "GET",
        "/api/openapi.json".to_string(),
        "/api/openapi.json",
        false,
        Arc::new(|_| Reply::Json(200, super::OPENAPI_JSON.to_string(), Vec::new())),
    );
    let face = face.clone();
    register_table(
        routes,
        API,
        |raw| super::error::HError::not_found(format!("{raw} is not a valid id")).into_reply(),
        Arc::new(move |request, route| handlers::answer(&face, request, route)),
    );
}
