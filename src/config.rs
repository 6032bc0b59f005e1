//! The `--config` file: server settings and the processor names served.
//!
//! Owns the TOML shape and its translation into [`crate::Config`] and
//! [`crate::server::ServerConfig`] pieces. Processor configuration comes only
//! from here (and the defaults), never from a request. It must not start
//! anything.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::processors::{EchoProcessor, MockProcessor, Processor, ProcessorConfig, Registry};

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
    /// Processor names to add or override, by name.
    #[serde(default)]
    pub processors: std::collections::BTreeMap<String, ProcessorFile>,
}

/// One processor name in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorFile {
    /// `mock` or `echo`.
    pub kind: String,
    pub description: Option<String>,
    /// Simulated latency of each attempt (mock).
    pub latency_ms: Option<u64>,
    /// Share of attempts that fail transiently, 0.0 to 1.0 (mock).
    pub failure_rate: Option<f64>,
    /// Seed of the failure draw (mock).
    pub seed: Option<u64>,
    pub max_attempts: Option<u32>,
    pub max_concurrency: Option<usize>,
    pub enable_events_default: Option<bool>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// The default registry with this file's processors added on top.
    pub fn registry(&self) -> Result<Registry, String> {
        let mut registry = crate::faces::default_registry();
        for (name, file) in &self.processors {
            let processor: Arc<dyn Processor> = match file.kind.as_str() {
                "mock" => {
                    let failure_rate = file.failure_rate.unwrap_or(0.0);
                    if !(0.0..=1.0).contains(&failure_rate) {
                        return Err(format!(
                            "processors.{name}.failure_rate must be from 0.0 to 1.0"
                        ));
                    }
                    Arc::new(MockProcessor {
                        latency: Duration::from_millis(file.latency_ms.unwrap_or(0)),
                        failure_rate,
                        seed: file.seed.unwrap_or(0),
                    })
                }
                "echo" => Arc::new(EchoProcessor),
                other => {
                    return Err(format!(
                        "processors.{name}.kind: unknown kind '{other}' (mock or echo)"
                    ))
                }
            };
            let mut config = match registry.get(name) {
                Some(existing) => ProcessorConfig {
                    processor,
                    kind: file.kind.clone(),
                    ..existing.clone()
                },
                None => ProcessorConfig::new(name, &file.kind, processor),
            };
            if let Some(description) = &file.description {
                config.description = description.clone();
            }
            if let Some(max_attempts) = file.max_attempts {
                config.max_attempts = max_attempts.max(1);
            }
            if let Some(max_concurrency) = file.max_concurrency {
                config.max_concurrency = max_concurrency.max(1);
            }
            if let Some(enable) = file.enable_events_default {
                config.enable_events_default = enable;
            }
            registry.insert(config);
        }
        Ok(registry)
    }
}
