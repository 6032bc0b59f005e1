//! Handinger's routes (spec section 4), registered in the server's one
//! route table. Path ids arrive percent-encoded as one segment and are
//! decoded once here (`a%2Fb` is the id `a/b`). Schedules and webhooks of
//! a worker are not served yet: their paths answer 404 (spec choice 9),
//! never a 5xx the SDK would retry.

use std::sync::Arc;

use percent_encoding::percent_decode_str;

use super::{handlers, Handinger};
use crate::server::{Request, Routes};

/// One endpoint, with the (decoded) id taken from its path.
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
}

type Make = fn(String) -> Route;

const API: &[(&str, &str, Option<&str>, Make)] = &[
    ("POST", "/api/tasks", None, |_| Route::CreateTask),
    (
        "GET",
        "/api/tasks/{task_id}",
        Some("task_id"),
        Route::GetTask,
    ),
    (
        "DELETE",
        "/api/tasks/{task_id}",
        Some("task_id"),
        Route::ArchiveTask,
    ),
    (
        "POST",
        "/api/tasks/{task_id}/abort",
        Some("task_id"),
        Route::AbortTask,
    ),
    ("POST", "/api/workers", None, |_| Route::CreateWorker),
    (
        "GET",
        "/api/workers/{worker_id}",
        Some("worker_id"),
        Route::GetWorker,
    ),
    (
        "PATCH",
        "/api/workers/{worker_id}",
        Some("worker_id"),
        Route::UpdateWorker,
    ),
    (
        "DELETE",
        "/api/workers/{worker_id}",
        Some("worker_id"),
        Route::DeleteWorker,
    ),
    (
        "GET",
        "/api/workers/{worker_id}/email",
        Some("worker_id"),
        Route::WorkerEmail,
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
    for (method, pattern, param, make) in API {
        let face = face.clone();
        let (param, make) = (*param, *make);
        routes.add(
            method,
            pattern.to_string(),
            pattern,
            true,
            Arc::new(move |request| {
                let id = match param {
                    None => String::new(),
                    Some(name) => match decoded(request, name) {
                        Some(id) => id,
                        None => {
                            return super::error::HError::not_found(format!(
                                "{} is not a valid id",
                                request.param(name)
                            ))
                            .into_reply()
                        }
                    },
                };
                handlers::answer(&face, request, make(id))
            }),
        );
    }
}
