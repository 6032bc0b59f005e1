//! ArchAstro's agent API (`/api/v1/...`): the fourth face.
//!
//! Owns the routes, handlers, wire, error form and limits of the
//! task-like part of ArchAstro's Platform API as the official
//! `@archastro/sdk` speaks it (agent sessions, routines, routine runs),
//! and the records it keeps through the engine (sessions, routines, the
//! runs invoked). A session's turns are an engine interaction and a
//! routine run is one engine run, so the same runs are on the Parallel
//! face too. Calls the [`Engine`] and the server's registration API,
//! nothing else; the engine knows no ArchAstro name. The wire contract is
//! `../shared/spec/archastro-agent-api.md`.

mod error;
mod handlers;
pub mod ids;
pub mod limits;
mod query;
mod records;
mod routes;
mod routines;
mod runs;
mod sessions;
mod stream;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::Engine;
use crate::server::{Face, Refusal, Reply, Request, Routes};

pub use error::AError;

/// The face's name where the engine keeps its records.
pub const FACE_NAME: &str = "archastro";

/// The prefix of an agent named after a processor (spec choice 2).
pub const AGENT_PREFIX: &str = "agi_";

/// What the config file's `[archastro]` section sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Agents beyond `agi_<processor>`: agent id to processor name.
    pub agents: BTreeMap<String, String>,
    /// The `app` of every routine and routine run (spec choice 3).
    pub app: String,
    /// Seconds a stream stays open at most, then `stream_timeout`.
    pub stream_s_max: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            agents: BTreeMap::new(),
            app: "dap_local".into(),
            stream_s_max: limits::STREAM_S_MAX,
        }
    }
}

pub struct ArchAstro {
    settings: Settings,
}

impl ArchAstro {
    pub fn new(settings: Settings) -> Arc<ArchAstro> {
        Arc::new(ArchAstro { settings })
    }

    /// The processor an agent id names: a configured agent, else
    /// `agi_<processor>` for a processor the engine serves.
    pub fn processor_of(&self, engine: &Engine, agent: &str) -> Option<String> {
        if let Some(processor) = self.settings.agents.get(agent) {
            return Some(processor.clone());
        }
        let name = agent.strip_prefix(AGENT_PREFIX)?;
        engine
            .registry()
            .get(name)
            .map(|config| config.name.clone())
    }

    pub fn app(&self) -> &str {
        &self.settings.app
    }

    pub fn stream_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.settings.stream_s_max)
    }
}

impl Face for Arc<ArchAstro> {
    fn owns(&self, path: &str) -> bool {
        path.starts_with("/api/v1/") || path == "/api/v1"
    }

    fn routes(&self, routes: &mut Routes) {
        routes::register(self, routes);
    }

    fn refuse(&self, refusal: Refusal) -> Reply {
        AError::from(refusal).into_reply()
    }

    /// The SDK sends its key in `x-archastro-api-key`, a user's token as
    /// `Authorization: Bearer`; either may carry a configured key (spec
    /// 1.3).
    fn presented_key(&self, request: &Request<'_>) -> Option<String> {
        if let Some(key) = request.header("x-archastro-api-key") {
            return Some(key);
        }
        let header = request.header("authorization")?;
        let (scheme, key) = header.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim().to_string())
    }

    fn stream_labels(&self) -> &'static [&'static str] {
        &[stream::SESSION_LABEL, stream::RUN_LABEL]
    }
}
