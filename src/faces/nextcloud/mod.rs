//! Nextcloud's OCS TaskProcessing API (`/ocs/v2.php/taskprocessing/...`
//! and `/ocs/v1.php/...`): the third face.
//!
//! Owns the OCS envelope (v1 and v2, JSON and XML), Nextcloud's login and
//! CSRF rules, the task types and their input shapes, the schedule rate
//! limit, the integer task ids (face records mapping each to an engine
//! run, so the same run is on the Parallel face too), and the discovery
//! routes a client may ask first (`cloud/capabilities`, `cloud/user`,
//! `/status.php`). It calls the [`Engine`](crate::engine::Engine) and the server's registration
//! API, nothing else: no SQL, no scheduling, and the engine learns no
//! Nextcloud name. It must not touch another face's records or routes.
//! The wire contract is `../shared/spec/nextcloud-taskprocessing-api.md`.

pub mod config;
mod envelope;
mod error;
mod handlers;
pub mod limits;
mod records;
mod routes;
pub mod types;
pub mod webhooks;
mod wire;

use std::sync::Arc;

use crate::server::{Face, Refusal, Reply, Request, Routes};

pub use config::NcConfig;
pub use error::NcError;

/// The face's name where the engine keeps its records.
pub const FACE_NAME: &str = "nextcloud";

/// The face: its settings, the API keys its logins are checked against,
/// and the schedule limiter.
pub struct Nextcloud {
    config: NcConfig,
    api_keys: Vec<String>,
    limiter: limits::ScheduleLimiter,
}

impl Nextcloud {
    pub fn new(config: NcConfig, api_keys: Vec<String>) -> Arc<Nextcloud> {
        let limiter = limits::ScheduleLimiter::new(config.schedule_limit, config.schedule_window_s);
        Arc::new(Nextcloud {
            config,
            api_keys,
            limiter,
        })
    }
}

impl Face for Arc<Nextcloud> {
    fn owns(&self, path: &str) -> bool {
        path.starts_with("/ocs/") || path == "/status.php"
    }

    fn routes(&self, routes: &mut Routes) {
        routes::register(self, routes);
    }

    /// Reached only for what the face's own routes cannot see: every
    /// path under `/ocs/` is routed here (a catch-all answers 998 after
    /// the login check), so these are methods no route lists.
    fn refuse(&self, refusal: Refusal) -> Reply {
        error::refusal_reply(refusal)
    }

    /// The key a Nextcloud client carries: the Basic password or the
    /// Bearer token. The face checks its own logins on its routes; this is
    /// for the server's check of a method no route lists.
    fn presented_key(&self, request: &Request<'_>) -> Option<String> {
        routes::presented_key(request.header("authorization").as_deref())
    }
}
