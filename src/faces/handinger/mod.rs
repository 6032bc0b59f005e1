//! Handinger's Tasks and Workers API (`/api/...`): the second face.
//!
//! Owns the routes, handlers, wire, error form and limits of the API the
//! official `handinger` Python SDK speaks, and the records it keeps (its
//! workers and tasks) through the engine. A task's turns are an engine
//! interaction, each turn one run, so the same runs are on the Parallel
//! face too. Calls the [`Engine`] and the server's registration API,
//! nothing else. The wire contract is `../shared/spec/handinger-tasks-api.md`.

mod error;
mod handlers;
pub mod limits;
mod records;
mod routes;
mod schedules;
mod stream;
pub mod webhooks;
pub mod wire;

use std::sync::Arc;

use crate::engine::Engine;
use crate::server::{Face, Refusal, Reply, Request, Routes};

pub use error::HError;

/// The OpenAPI 3.1 document of the face's routes, served at
/// `/api/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The face's name where the engine keeps its records.
pub const FACE_NAME: &str = "handinger";

/// The processor each budget picks (spec 4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budgets {
    pub low: String,
    pub standard: String,
    pub high: String,
    pub unlimited: String,
}

impl Default for Budgets {
    /// The hosted processor names of the Parallel face, served by `mock`
    /// unless the config gives them a real kind.
    fn default() -> Budgets {
        Budgets {
            low: "lite".into(),
            standard: "core".into(),
            high: "pro".into(),
            unlimited: "ultra".into(),
        }
    }
}

impl Budgets {
    pub fn processor(&self, budget: &str) -> Option<&str> {
        match budget {
            "low" => Some(&self.low),
            "standard" => Some(&self.standard),
            "high" => Some(&self.high),
            "unlimited" => Some(&self.unlimited),
            _ => None,
        }
    }
}

pub struct Handinger {
    budgets: Budgets,
}

impl Handinger {
    pub fn new(_engine: &Engine, budgets: Budgets) -> Arc<Handinger> {
        Arc::new(Handinger { budgets })
    }
}

impl Face for Arc<Handinger> {
    /// `/api/` less `/api/v1/`, ArchAstro's (`faces::archastro`).
    fn owns(&self, path: &str) -> bool {
        path.starts_with("/api/") && !path.starts_with("/api/v1/") && path != "/api/v1"
    }

    fn routes(&self, routes: &mut Routes) {
        routes::register(self, routes);
    }

    fn refuse(&self, refusal: Refusal) -> Reply {
        HError::from(refusal).into_reply()
    }

    /// The SDK sends `Authorization: Bearer <key>`, never `x-api-key`.
    fn presented_key(&self, request: &Request<'_>) -> Option<String> {
        let header = request.header("authorization")?;
        let (scheme, key) = header.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim().to_string())
    }
}
