//! The faces: each hosted task API taskyard speaks, one folder each.
//!
//! A face owns its routes, wire types, request parsing, error form and the
//! rendering of engine events; it registers its routes with the server
//! (`crate::server::Face`) and calls the engine, nothing else. The engine
//! below knows none of them. A new hosted API is a new folder here and one
//! line in [`all`].

pub mod archastro;
pub mod handinger;
pub mod nextcloud;
pub mod parallel;

use std::sync::Arc;

use crate::engine::{Config, Engine};
use crate::model::RENDER_SLOTS_MAX;
use crate::processors::kind::Kind;
use crate::processors::Registry;
use crate::server::{Face, Reply, Request, Routes, ServerConfig};

/// Each face's slot in an event's kept renderings: one per face, below
/// `RENDER_SLOTS_MAX`.
pub const PARALLEL_RENDER_SLOT: usize = 0;

const _: () = assert!(PARALLEL_RENDER_SLOT < RENDER_SLOTS_MAX);

/// One row of a face's route table: method, pattern, the names of the
/// ids in its path in order, and the face's route made of their values.
pub type RouteRow<R> = (
    &'static str,
    &'static str,
    &'static [&'static str],
    fn(&mut std::vec::IntoIter<String>) -> R,
);

/// How a face answers one of its routes.
pub type RouteAnswer<R> = Arc<dyn Fn(&mut Request<'_>, R) -> Reply + Send + Sync>;

/// The next id of a route row's decoded ids.
pub fn next_id(ids: &mut std::vec::IntoIter<String>) -> String {
    ids.next().unwrap_or_default()
}

/// Registers a face's route table. Path ids arrive percent-encoded as one
/// segment each and are decoded once here (`a%2Fb` is the id `a/b`); one
/// that does not decode to UTF-8 names nothing that can exist, and
/// `bad_id` answers it (the face's 404); the rest go to `answer`.
pub fn register_table<R: 'static>(
    routes: &mut Routes,
    table: &'static [RouteRow<R>],
    bad_id: fn(&str) -> Reply,
    answer: RouteAnswer<R>,
) {
    for (method, pattern, params, make) in table {
        let answer = answer.clone();
        let (params, make) = (*params, *make);
        routes.add(
            method,
            pattern.to_string(),
            pattern,
            true,
            Arc::new(move |request| {
                let mut ids = Vec::with_capacity(params.len());
                for name in params {
                    let raw = request.param(name);
                    match percent_encoding::percent_decode_str(raw).decode_utf8() {
                        Ok(id) => ids.push(id.into_owned()),
                        Err(_) => return bad_id(raw),
                    }
                }
                answer(request, make(&mut ids.into_iter()))
            }),
        );
    }
}

/// What each face takes from the config file (`config.rs` reads it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FacesConfig {
    /// The processor each Handinger budget picks.
    pub handinger: handinger::Budgets,
    /// ArchAstro's agents beyond `agi_<processor>`, and its app id.
    pub archastro: archastro::Settings,
    /// The Nextcloud face's task types, languages and schedule limit.
    pub nextcloud: nextcloud::NcConfig,
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
        Arc::new(nextcloud::Nextcloud::new(
            config.faces.nextcloud.clone(),
            config.api_keys.clone(),
        )),
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
    config.webhooks.renderers.insert(
        nextcloud::FACE_NAME.to_string(),
        Arc::new(nextcloud::webhooks::NextcloudWebhooks),
    );
    config
}
