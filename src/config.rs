//! The `--config` file: server settings and the processor names served.
//!
//! Owns the TOML shape and its translation into [`crate::Config`] and
//! [`crate::server::ServerConfig`] pieces. Processor configuration comes only
//! from here (and the defaults), never from a request. It must not start
//! anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::faces::FacesConfig;
use crate::processors::kind::{self, Section, SectionKeys};
use crate::processors::Registry;
use crate::server::rate::{Limit, RateLimitConfig};

/// The whole file; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub addr: Option<String>,
    pub db: Option<String>,
    pub workers: Option<usize>,
    /// `normal` or `full`.
    pub synchronous: Option<String>,
    pub api_keys: Option<Vec<String>>,
    pub streams_open_max: Option<usize>,
    pub body_bytes_max: Option<usize>,
    /// Largest size of the database file, in MiB.
    pub db_size_max_mb: Option<u64>,
    /// Seconds a request may take to arrive; 0: no bound.
    pub read_timeout_s: Option<u64>,
    /// Seconds one write to a client may block; 0: no bound.
    pub write_timeout_s: Option<u64>,
    /// Secrets that sign webhook deliveries; none: no signature header.
    pub webhook_secrets: Option<Vec<String>>,
    /// Hosts webhooks may be delivered to; absent: any host.
    pub webhook_hosts_allowed: Option<Vec<String>>,
    /// Milliseconds before a failed delivery's first retry (5,000).
    pub webhook_retry_base_ms: Option<u64>,
    /// Seconds after which terminal runs (and inactive groups) are pruned
    /// with their events; absent: kept for good.
    pub retain_runs_s: Option<u64>,
    /// Seconds after which idempotency keys are pruned; absent: kept.
    pub retain_idempotency_keys_s: Option<u64>,
    /// Seconds after which delivered or expired webhook deliveries are
    /// pruned; absent: kept.
    pub retain_deliveries_s: Option<u64>,
    /// Requests per client and route class (`[rate_limits]`).
    pub rate_limits: Option<RateLimitsFile>,
    /// The Handinger face's settings (`[handinger]`).
    pub handinger: Option<HandingerFile>,
    /// The ArchAstro face's settings (`[archastro]`).
    pub archastro: Option<ArchAstroFile>,
    /// The Nextcloud face's settings (`[nextcloud]`), read by the face
    /// (`faces::nextcloud::NcConfig`).
    pub nextcloud: Option<toml::Table>,
    /// Processor names to add or override, by name; each section is read
    /// by its kind (`processors::kind`).
    #[serde(default)]
    pub processors: std::collections::BTreeMap<String, SectionKeys>,
    /// Where the file was read from, and its text, for errors that name a
    /// line.
    #[serde(skip)]
    pub path: PathBuf,
    #[serde(skip)]
    pub text: String,
}

/// `[rate_limits]`: `read` (GET) and `write` (other methods), each
/// `{ per_second = N, burst = M }`; a class left out is not limited.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsFile {
    pub read: Option<LimitFile>,
    pub write: Option<LimitFile>,
}

/// `[handinger]`: `budgets = { low = "...", standard = "...", high =
/// "...", unlimited = "..." }`, each a configured processor's name; a
/// budget left out keeps its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandingerFile {
    pub budgets: Option<BudgetsFile>,
}

/// `[archastro]`: `agents = { "agi_x" = "processor", ... }` adds agents
/// beyond `agi_<processor>`, each naming a configured processor; `app` is
/// the `app` id of routines and their runs (`dap_local`); `stream_s_max`
/// how long a stream stays open at most (3,600 seconds).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchAstroFile {
    pub agents: Option<std::collections::BTreeMap<String, String>>,
    pub app: Option<String>,
    /// Seconds a session or run stream stays open at most (3,600).
    pub stream_s_max: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetsFile {
    pub low: Option<String>,
    pub standard: Option<String>,
    pub high: Option<String>,
    pub unlimited: Option<String>,
}

/// One class's limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitFile {
    pub per_second: f64,
    /// Requests at once after a quiet spell; `per_second` rounded up when
    /// absent.
    pub burst: Option<u32>,
}

impl FileConfig {
    /// The server's rate limits; none unless `[rate_limits]` sets them.
    pub fn rate_limits(&self) -> Result<RateLimitConfig, String> {
        let Some(file) = &self.rate_limits else {
            return Ok(RateLimitConfig::default());
        };
        let limit = |class: &str, limit: &Option<LimitFile>| -> Result<Option<Limit>, String> {
            let Some(limit) = limit else {
                return Ok(None);
            };
            if !(limit.per_second.is_finite() && limit.per_second > 0.0) {
                return Err(format!(
                    "config file {}: rate_limits.{class}.per_second must be above 0, not {}",
                    self.path.display(),
                    limit.per_second
                ));
            }
            let burst = limit.burst.unwrap_or(limit.per_second.ceil() as u32);
            if burst == 0 {
                return Err(format!(
                    "config file {}: rate_limits.{class}.burst must be at least 1",
                    self.path.display()
                ));
            }
            Ok(Some(Limit {
                per_second: limit.per_second,
                burst,
            }))
        };
        Ok(RateLimitConfig {
            read: limit("read", &file.read)?,
            write: limit("write", &file.write)?,
        })
    }

    /// What the faces take from the file, checked against the processors
    /// `registry` serves: a budget or a task type must name one of them.
    pub fn faces(&self, registry: &Registry) -> Result<FacesConfig, String> {
        let mut faces = FacesConfig::default();
        let budgets = self
            .handinger
            .as_ref()
            .and_then(|file| file.budgets.as_ref());
        if let Some(file) = budgets {
            let slots = [
                ("low", &file.low, &mut faces.handinger.low),
                ("standard", &file.standard, &mut faces.handinger.standard),
                ("high", &file.high, &mut faces.handinger.high),
                ("unlimited", &file.unlimited, &mut faces.handinger.unlimited),
            ];
            for (budget, name, slot) in slots {
                let Some(name) = name else { continue };
                if registry.get(name).is_none() {
                    return Err(format!(
                        "config file {}: handinger.budgets.{budget} names processor '{name}', \
                         which is not served (configure it under [processors.{name}])",
                        self.path.display()
                    ));
                }
                *slot = name.clone();
            }
        }
        if let Some(file) = &self.archastro {
            for (agent, name) in file.agents.iter().flatten() {
                if registry.get(name).is_none() {
                    return Err(format!(
                        "config file {}: archastro.agents.{agent} names processor '{name}', \
                         which is not served (configure it under [processors.{name}])",
                        self.path.display()
                    ));
                }
                faces.archastro.agents.insert(agent.clone(), name.clone());
            }
            if let Some(app) = &file.app {
                faces.archastro.app = app.clone();
            }
            if let Some(seconds) = file.stream_s_max {
                faces.archastro.stream_s_max = seconds.max(1);
            }
        }
        faces.nextcloud =
            crate::faces::nextcloud::NcConfig::from_table(self.nextcloud.as_ref(), registry)
                .map_err(|error| format!("config file {}: {error}", self.path.display()))?;
        Ok(faces)
    }

    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        let mut file: FileConfig =
            toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
        file.path = path.to_path_buf();
        file.text = text;
        Ok(file)
    }

    /// The default registry with this file's processors added on top:
    /// each section is built by the kind it names (`processors::kind`),
    /// and an error names the file, the key and its line.
    pub fn registry(&self) -> Result<Registry, String> {
        let mut registry = crate::faces::default_registry();
        let kinds = crate::faces::kinds();
        let names: BTreeSet<String> = registry
            .iter()
            .map(|config| config.name.clone())
            .chain(self.processors.keys().cloned())
            .collect();
        for (name, keys) in &self.processors {
            let section = Section::new(name, &self.path, &self.text, keys, &names);
            let config = kind::build(&section, registry.get(name), &kinds)
                .map_err(|error| error.to_string())?;
            registry.insert(config);
        }
        Ok(registry)
    }
}
