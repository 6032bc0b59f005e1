//! Processor kinds as plug-ins: each kind (`mock`, `echo`, `command`, ...)
//! reads its own keys of a `[processors.NAME]` section of the config file
//! and builds its processor; this module owns the section reader, the
//! settings common to every kind, and the list of kinds.
//!
//! A new kind is a [`Kind`] added to [`KINDS`]; nothing else switches on a
//! kind's name. Errors name the file, the key and its line, and a key no
//! kind reads stops start-up (a misspelt `timout_ms` must not be ignored).
//! Reads no file and starts nothing: the config module hands it the text.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use toml::Spanned;

use super::{Processor, ProcessorConfig};

/// A `[processors.NAME]` section as the file gives it: each key with the
/// byte span of its value, so that an error can name the line.
pub type SectionKeys = BTreeMap<String, Spanned<toml::Value>>;

/// A bad key or value of the config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a kind builds from its section.
pub struct Built {
    pub processor: Arc<dyn Processor>,
    /// The input it takes, when the kind knows it; `None`: any.
    pub input_schema: Option<Value>,
    /// The output it makes, when the kind fixes it; `None`: as the run's
    /// task spec asks.
    pub output_schema: Option<Value>,
}

impl Built {
    pub fn new(processor: Arc<dyn Processor>) -> Built {
        Built {
            processor,
            input_schema: None,
            output_schema: None,
        }
    }
}

/// One kind of processor: its name in `kind = "..."` and how it is built
/// from its section. `build` reads every key it knows through `section`;
/// a key no one read is an error.
pub trait Kind: Sync {
    fn name(&self) -> &'static str;
    fn build(&self, section: &Section<'_>) -> Result<Built, ConfigError>;
}

/// The engine's kinds; faces add theirs (`crate::faces::kinds`).
pub const KINDS: &[&dyn Kind] = &[
    &super::mock::MockKind,
    &super::echo::EchoKind,
    &super::command::CommandKind,
    &super::openai::OpenAiKind,
];

/// The keys of a section, read by name; remembers which were read.
pub struct Section<'a> {
    name: &'a str,
    file: &'a Path,
    text: &'a str,
    keys: &'a SectionKeys,
    /// Every processor name there will be (the defaults and the file's).
    names: &'a BTreeSet<String>,
    read: RefCell<BTreeSet<&'a str>>,
}

impl<'a> Section<'a> {
    pub fn new(
        name: &'a str,
        file: &'a Path,
        text: &'a str,
        keys: &'a SectionKeys,
        names: &'a BTreeSet<String>,
    ) -> Section<'a> {
        Section {
            name,
            file,
            text,
            keys,
            names,
            read: RefCell::new(BTreeSet::new()),
        }
    }

    /// The processor's name (the section's).
    pub fn name(&self) -> &str {
        self.name
    }

    /// The directory of the config file, for relative paths in it.
    pub fn dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn value(&self, key: &str) -> Option<&'a Spanned<toml::Value>> {
        let (name, value) = self.keys.get_key_value(key)?;
        self.read.borrow_mut().insert(name.as_str());
        Some(value)
    }

    /// An error about `key`, with the line of its value (or of the
    /// section, when the key is missing).
    pub fn error(&self, key: &str, message: impl std::fmt::Display) -> ConfigError {
        let line = match self.keys.get(key) {
            Some(value) => Some(self.line_of(value.span().start)),
            None => self
                .keys
                .values()
                .map(|value| value.span().start)
                .min()
                .map(|start| self.line_of(start)),
        };
        let at = match line {
            Some(line) => format!("{}, line {line}", self.file.display()),
            None => self.file.display().to_string(),
        };
        ConfigError(format!("{at}: processors.{}.{key}: {message}", self.name))
    }

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.value(key).map(Spanned::get_ref) {
            None => Ok(None),
            Some(toml::Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => {
                Err(self.error(key, format!("must be a string, not {}", other.type_str())))
            }
        }
    }

    pub fn required_string(&self, key: &str) -> Result<String, ConfigError> {
        self.string(key)?
            .ok_or_else(|| self.error(key, "is required for this kind"))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.value(key).map(Spanned::get_ref) {
            None => Ok(None),
            Some(toml::Value::Boolean(value)) => Ok(Some(*value)),
            Some(other) => Err(self.error(
                key,
                format!("must be true or false, not {}", other.type_str()),
            )),
        }
    }

    /// A whole number from `min` to `max`.
    pub fn u64(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
        match self.value(key).map(Spanned::get_ref) {
            None => Ok(None),
            Some(toml::Value::Integer(value))
                if (min as i128..=max as i128).contains(&(*value as i128)) =>
            {
                Ok(Some(*value as u64))
            }
            Some(toml::Value::Integer(value)) => {
                Err(self.error(key, format!("must be from {min} to {max}, not {value}")))
            }
            Some(other) => Err(self.error(
                key,
                format!("must be a whole number, not {}", other.type_str()),
            )),
        }
    }

    /// A number from `min` to `max` (an integer is taken as well).
    pub fn f64(&self, key: &str, min: f64, max: f64) -> Result<Option<f64>, ConfigError> {
        let value = match self.value(key).map(Spanned::get_ref) {
            None => return Ok(None),
            Some(toml::Value::Float(value)) => *value,
            Some(toml::Value::Integer(value)) => *value as f64,
            Some(other) => {
                return Err(self.error(key, format!("must be a number, not {}", other.type_str())))
            }
        };
        if (min..=max).contains(&value) {
            Ok(Some(value))
        } else {
            Err(self.error(key, format!("must be from {min} to {max}, not {value}")))
        }
    }

    /// Milliseconds, as a duration of at least 1 ms.
    pub fn millis(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self
            .u64(key, 1, u32::MAX as u64)?
            .map(Duration::from_millis))
    }

    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let items = match self.value(key).map(Spanned::get_ref) {
            None => return Ok(None),
            Some(toml::Value::Array(items)) => items,
            Some(other) => {
                return Err(self.error(
                    key,
                    format!("must be an array of strings, not {}", other.type_str()),
                ))
            }
        };
        items
            .iter()
            .map(|item| match item {
                toml::Value::String(text) => Ok(text.clone()),
                other => Err(self.error(
                    key,
                    format!("must hold only strings, not {}", other.type_str()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A table of strings (an environment, headers).
    pub fn string_table(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, ConfigError> {
        let table = match self.value(key).map(Spanned::get_ref) {
            None => return Ok(None),
            Some(toml::Value::Table(table)) => table,
            Some(other) => {
                return Err(self.error(
                    key,
                    format!("must be a table of strings, not {}", other.type_str()),
                ))
            }
        };
        table
            .iter()
            .map(|(name, value)| match value {
                toml::Value::String(text) => Ok((name.clone(), text.clone())),
                other => Err(self.error(
                    key,
                    format!("{name} must be a string, not {}", other.type_str()),
                )),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some)
    }

    /// The name of another processor (there will be one of that name).
    pub fn processor_name(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.string(key)? {
            Some(name) if !self.names.contains(&name) => {
                Err(self.error(key, format!("no processor is named '{name}'")))
            }
            other => Ok(other),
        }
    }

    /// A JSON value written as TOML (a schema).
    pub fn json(&self, key: &str) -> Result<Option<Value>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(value) => serde_json::to_value(value.get_ref())
                .map(Some)
                .map_err(|e| self.error(key, e)),
        }
    }

    /// Fails on the first key nobody read, naming the kind's keys.
    fn finish(&self, kind: &str) -> Result<(), ConfigError> {
        let read = self.read.borrow();
        match self.keys.keys().find(|key| !read.contains(key.as_str())) {
            None => Ok(()),
            Some(key) => Err(self.error(key, format!("unknown key for kind '{kind}'"))),
        }
    }
}

/// Builds the processor a section names, with the settings every kind
/// takes (`description`, `max_attempts`, `max_concurrency`, `timeout_ms`,
/// `backoff_ms`, `backoff_max_ms`, `enable_events_default`) on top of
/// `base` (the name's existing config, when it overrides one).
pub fn build(
    section: &Section<'_>,
    base: Option<&ProcessorConfig>,
    kinds: &[&dyn Kind],
) -> Result<ProcessorConfig, ConfigError> {
    let names = || {
        kinds
            .iter()
            .map(|kind| kind.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind_name = section.required_string("kind")?;
    let kind = kinds
        .iter()
        .find(|kind| kind.name() == kind_name)
        .ok_or_else(|| {
            section.error(
                "kind",
                format!("unknown kind '{kind_name}' (one of {})", names()),
            )
        })?;
    let built = kind.build(section)?;
    let name = section.name();
    let mut config = match base {
        Some(existing) => ProcessorConfig {
            processor: built.processor.clone(),
            kind: kind_name.clone(),
            ..existing.clone()
        },
        None => ProcessorConfig::new(name, &kind_name, built.processor.clone()),
    };
    if let Some(schema) = built.input_schema {
        config.input_schema = Some(schema);
    }
    if let Some(schema) = built.output_schema {
        config.output_schema = schema;
    }
    if let Some(description) = section.string("description")? {
        config.description = description;
    }
    if let Some(attempts) = section.u64("max_attempts", 1, 100)? {
        config.max_attempts = attempts as u32;
    }
    if let Some(concurrency) = section.u64("max_concurrency", 1, 100_000)? {
        config.max_concurrency = concurrency as usize;
    }
    if let Some(timeout) = section.millis("timeout_ms")? {
        config.timeout = Some(timeout);
    }
    if let Some(first) = section.millis("backoff_ms")? {
        config.backoff.first = first;
    }
    if let Some(max) = section.millis("backoff_max_ms")? {
        config.backoff.max = max;
    }
    if config.backoff.max < config.backoff.first {
        return Err(section.error(
            "backoff_max_ms",
            format!(
                "must be at least backoff_ms ({} ms)",
                config.backoff.first.as_millis()
            ),
        ));
    }
    if let Some(enable) = section.bool("enable_events_default")? {
        config.enable_events_default = enable;
    }
    section.finish(&kind_name)?;
    Ok(config)
}
