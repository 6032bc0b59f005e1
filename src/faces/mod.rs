//! The faces: each hosted task API taskyard speaks, one folder each.
//!
//! A face owns its routes, wire types, request parsing, error form and the
//! rendering of engine events; it registers its routes with the server
//! (`crate::server::Face`) and calls the engine, nothing else. The engine
//! below knows none of them. A new hosted API is a new folder here and one
//! line in [`all`].

pub mod handinger;
pub mod nextcloud;
pub mod parallel;

use std::collections::BTreeMap;
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

/// Every face taskyard serves, in the order their refusals are preferred
/// for paths none of them owns (the first answers those); a face's own
/// settings (`config.faces`) that do not read are an error.
pub fn all(engine: &Engine, config: &ServerConfig) -> Result<Vec<Arc<dyn Face>>, String> {
    check_config(&config.faces)?;
    let nextcloud = nextcloud::NcConfig::from_table(config.faces.get(nextcloud::CONFIG_KEY))?;
    Ok(vec![
        Arc::new(parallel::Parallel::new(engine.clone())),
        Arc::new(handinger::Handinger::new(
            engine,
            handinger::Budgets::default(),
        )),
        Arc::new(nextcloud::Nextcloud::new(
            nextcloud,
            config.api_keys.clone(),
        )),
    ])
}

/// Checks the faces' own settings (the config file's `[faces.<name>]`
/// tables): each names a face that has settings, and each reads.
pub fn check_config(faces: &BTreeMap<String, toml::Table>) -> Result<(), String> {
    for (name, table) in faces {
        match name.as_str() {
            nextcloud::CONFIG_KEY => {
                nextcloud::NcConfig::from_table(Some(table))?;
            }
            other => {
                return Err(format!(
                    "faces.{other}: no face of that name has settings (known: {})",
                    nextcloud::CONFIG_KEY
                ))
            }
        }
    }
    Ok(())
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
    config
}
