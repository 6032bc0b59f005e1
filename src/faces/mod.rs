//! The faces: each hosted task API taskyard speaks, one folder each.
//!
//! A face owns its routes, wire types, request parsing, error form and the
//! rendering of engine events; it registers its routes with the server
//! (`crate::server::Face`) and calls the engine, nothing else. The engine
//! below knows none of them. A new hosted API is a new folder here and one
//! line in [`all`].

pub mod archastro;
pub mod handinger;
pub mod parallel;

use std::sync::Arc;

use crate::engine::{Config, Engine};
use crate::model::RENDER_SLOTS_MAX;
use crate::processors::kind::Kind;
use crate::processors::Registry;
use crate::server::{Face, ServerConfig};

/// Each face's slot in an event's kept renderings: one per face, below
/// `RENDER_SLOTS_MAX`.
pub const PARALLEL_RENDER_SLOT: usize = 0;

const _: () = assert!(PARALLEL_RENDER_SLOT < RENDER_SLOTS_MAX);

/// What each face takes from the config file (`config.rs` reads it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FacesConfig {
    /// The processor each Handinger budget picks.
    pub handinger: handinger::Budgets,
    /// ArchAstro's agents beyond `agi_<processor>`, and its app id.
    pub archastro: archastro::Settings,
}

/// Every face taskyard serves, in the order their refusals are preferred
/// for paths none of them owns (the first answers those). Each owns its
/// own prefix: Handinger `/api/` but `/api/v1/`, which is ArchAstro's.
pub fn all(engine: &Engine, config: &ServerConfig) -> Vec<Arc<dyn Face>> {
    vec![
        Arc::new(parallel::Parallel::new(engine.clone())),
        Arc::new(handinger::Handinger::new(
            engine,
            config.faces.handinger.clone(),
        )),
        Arc::new(archastro::ArchAstro::new(config.faces.archastro.clone())),
    ]
}

/// The processor kinds a config file may name: the engine's, and those a
/// face contributes (Parallel's `replay`, which speaks its wire upstream).
pub fn kinds() -> Vec<&'static dyn Kind> {
    let mut kinds = crate::processors::kind::KINDS.to_vec();
    kinds.push(&parallel::replay::ReplayKind);
    kinds
}

/// The engine's own processors and every face's hosted processor names,
/// served offline: what `taskyard serve` answers with no `--config`.
pub fn default_registry() -> Registry {
    let mut registry = Registry::with_defaults();
    registry.add_stand_ins(&parallel::processors::hosted(), "hosted");
    registry
}

/// The engine's default configuration with [`default_registry`] and every
/// face's webhook rendering.
pub fn default_config() -> Config {
    let mut config = Config {
        registry: default_registry(),
        ..Config::default()
    };
    config.webhooks.renderers.insert(
        parallel::FACE_NAME.to_string(),
        Arc::new(parallel::render::ParallelWebhooks),
    );
    config.webhooks.renderers.insert(
        handinger::FACE_NAME.to_string(),
        Arc::new(handinger::webhooks::HandingerWebhooks),
    );
    config
}
