//! Handinger's routes (spec section 4), registered in the server's one
//! route table. Path ids arrive percent-encoded as one segment and are
//! decoded once here (`a%2Fb` is the id `a/b`).

use std::sync::Arc;

use percent_encoding::percent_decode_str;

use super::{handlers, Handinger};
use crate::server::{Reply, Request, Routes};

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

/// Builds a route from the decoded ids of its pattern, in order.
type Make = fn(&mut std::vec::IntoIter<String>) -> Route;

fn id(ids: &mut std::vec::IntoIter<String>) -> String {
    ids.next().unwrap_or_default()
}

const API: &[(&str, &str, &[&str], Make)] = &[
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

/// The id a path segment names, decoded once; `None` when it does not
/// decode to UTF-8 (no such id can exist).
fn decoded(request: &Request<'_>, name: &str) -> Option<String> {
    percent_decode_str(request.param(name))
        .decode_utf8()
        .ok()
        .map(|id| id.into_owned())
}

pub fn register(face: &Arc<Handinger>, routes: &mut Routes) {
    // The face's own OpenAPI document, open like Parallel's.
    routes.add(
        "GET",
        "/api/openapi.json".to_string(),
        "/api/openapi.json",
        false,
        Arc::new(|_| Reply::Json(200, super::OPENAPI_JSON.to_string(), Vec::new())),
    );
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
                            return super::error::HError::not_found(format!(
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
