//! Parallel's Task API (`/v1/tasks/...`, `/v1beta/...`): the first face.
//!
//! Owns the routes, handlers, query parsing, error envelope, the rendering
//! of engine events as Parallel's SSE events, and the OpenAPI document. It
//! calls the [`Engine`] API and the server's registration API, nothing
//! else: no SQL, no scheduling. The wire contract is
//! `../shared/spec/parallel-task-api.md`.

mod api;
pub mod client;
mod dashboard;
mod error;
mod handlers;
pub mod limits;
pub mod parse;
pub mod processors;
mod query;
pub mod render;
pub mod replay;
mod routes;
pub mod wire;

use std::sync::Arc;

use crate::engine::Engine;
use crate::server::{sse::Render, Face, Refusal, Reply, Routes};

pub use api::{Api, Events, ListQuery, Page, ScheduleVerb};
pub use error::ApiError;
pub use routes::Route;

/// The face's name where the engine keeps it (a run's webhook target).
pub const FACE_NAME: &str = "parallel";

/// The OpenAPI 3.1 document of everything served (spec 10.8).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The face: the API it answers from, and its event rendering.
pub struct Parallel {
    api: Api,
    render: Arc<dyn Render>,
}

impl Parallel {
    pub fn new(engine: Engine) -> Arc<Parallel> {
        Arc::new(Parallel {
            api: Api::new(engine),
            render: Arc::new(render::ParallelEvents),
        })
    }
}

/// The face behind the `Arc` the routes share.
impl Face for Arc<Parallel> {
    fn owns(&self, path: &str) -> bool {
        path.starts_with("/v1/") || path.starts_with("/v1beta/")
    }

    fn routes(&self, routes: &mut Routes) {
        routes::register(self, routes);
    }

    fn refuse(&self, refusal: Refusal) -> Reply {
        ApiError::from(refusal).into_reply()
    }

    fn stream_labels(&self) -> &'static [&'static str] {
        &["run_events", "group_events", "group_runs"]
    }
}
