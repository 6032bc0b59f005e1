//! The face's own settings, the `[nextcloud]` table of the config file:
//! which processor serves each task type (spec choice 3), the
//! languages of `core:text2text:translate`, the schedule rate limit (spec
//! 1.8), the expected runtime behind `completionExpectedAt`, and the hosts
//! a task's webhook may be called on (choice 7).
//!
//! With no table every key has its default, so `taskyard serve` serves the
//! mock types of spec choice 2 with no config at all.

use serde::Deserialize;

use super::limits::{
    EXPECTED_RUNTIME_S_DEFAULT, SCHEDULES_PER_WINDOW_DEFAULT, SCHEDULE_WINDOW_S_DEFAULT,
};
use super::types::{self, Choice, Provided};
use crate::processors::Registry;

/// The types served with no config: Text in, `output` Text out, by the
/// deterministic `mock` (spec choice 2). No translate: a made-up list of
/// languages would mislead.
pub const DEFAULT_TASK_TYPES: &[&str] = &[
    "core:text2text",
    "core:text2text:summary",
    "core:text2text:headline",
    "core:text2text:topics",
    "core:text2text:chat",
];

/// The processor the default types map to.
pub const DEFAULT_PROCESSOR: &str = "mock";

/// The table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Task type id → processor name; replaces the default list.
    task_types: Option<std::collections::BTreeMap<String, String>>,
    /// The languages translate offers, in order.
    languages: Option<Vec<Language>>,
    /// Schedules per user per window; 0: no limit.
    schedule_limit: Option<u32>,
    schedule_window_s: Option<u64>,
    expected_runtime_s: Option<u64>,
    /// Hosts a task's `HTTP:POST` webhook may be called on.
    webhook_hosts_allowed: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Language {
    value: String,
    name: String,
}

/// The face's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NcConfig {
    /// Task type id → processor name, in the order listed.
    pub task_types: Vec<(String, String)>,
    pub languages: Vec<Choice>,
    pub schedule_limit: u32,
    pub schedule_window_s: u64,
    pub expected_runtime_s: u64,
    /// Hosts a task's `HTTP:POST` webhook is called on; none by default
    /// (spec choice 7: offline).
    pub webhook_hosts_allowed: Vec<String>,
}

impl Default for NcConfig {
    fn default() -> NcConfig {
        NcConfig {
            task_types: DEFAULT_TASK_TYPES
                .iter()
                .map(|id| (id.to_string(), DEFAULT_PROCESSOR.to_string()))
                .collect(),
            languages: Vec::new(),
            schedule_limit: SCHEDULES_PER_WINDOW_DEFAULT,
            schedule_window_s: SCHEDULE_WINDOW_S_DEFAULT,
            expected_runtime_s: EXPECTED_RUNTIME_S_DEFAULT,
            webhook_hosts_allowed: Vec::new(),
        }
    }
}

impl NcConfig {
    /// Reads the `[nextcloud]` table; an error names the key. Each task
    /// type must map to a processor `registry` serves: a type whose name
    /// is mistyped would otherwise vanish from the list without a word.
    pub fn from_table(
        table: Option<&toml::Table>,
        registry: &Registry,
    ) -> Result<NcConfig, String> {
        let Some(table) = table else {
            return Ok(NcConfig::default());
        };
        let file: File = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e| format!("nextcloud: {e}"))?;
        let mut config = NcConfig::default();
        if let Some(task_types) = file.task_types {
            for (id, processor) in &task_types {
                if types::known(id).is_none() {
                    let known: Vec<&str> = types::TASK_TYPES.iter().map(|t| t.id).collect();
                    return Err(format!(
                        "nextcloud.task_types: unknown task type '{id}'; known: {}",
                        known.join(", ")
                    ));
                }
                if registry.get(processor).is_none() {
                    return Err(format!(
                        "nextcloud.task_types.\"{id}\" names processor '{processor}', which is \
                         not served (configure it under [processors.{processor}])"
                    ));
                }
            }
            config.task_types = task_types.into_iter().collect();
        }
        config.languages = file
            .languages
            .unwrap_or_default()
            .into_iter()
            .map(|language| Choice {
                name: language.name,
                value: language.value,
            })
            .collect();
        let translates = config
            .task_types
            .iter()
            .any(|(id, _)| id == "core:text2text:translate");
        if translates && config.languages.is_empty() {
            return Err(
                "nextcloud: core:text2text:translate needs `languages` (its enum values)".into(),
            );
        }
        if let Some(limit) = file.schedule_limit {
            config.schedule_limit = limit;
        }
        if let Some(window) = file.schedule_window_s {
            if window == 0 {
                return Err("nextcloud.schedule_window_s must be at least 1".into());
            }
            config.schedule_window_s = window;
        }
        if let Some(runtime) = file.expected_runtime_s {
            config.expected_runtime_s = runtime;
        }
        config.webhook_hosts_allowed = file.webhook_hosts_allowed.unwrap_or_default();
        Ok(config)
    }

    /// The processor a type maps to, if the config maps it.
    pub fn processor(&self, type_id: &str) -> Option<&str> {
        self.task_types
            .iter()
            .find(|(id, _)| id == type_id)
            .map(|(_, processor)| processor.as_str())
    }

    /// The enum lists and defaults a type's provider offers.
    pub fn provided(&self, type_id: &str) -> Provided {
        if type_id != "core:text2text:translate" {
            return Provided::default();
        }
        let mut origin = vec![Choice {
            name: "Detect language".into(),
            value: "detect_language".into(),
        }];
        origin.extend(self.languages.iter().cloned());
        Provided {
            enums: vec![
                ("origin_language", origin),
                ("target_language", self.languages.clone()),
            ],
            defaults: vec![("origin_language", serde_json::json!("detect_language"))],
        }
    }
}
