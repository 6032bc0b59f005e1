//! Processors: the code that turns a run's input into an output.
//!
//! Owns the [`Processor`] trait, the context a processor sees (input, task
//! spec, metadata, a cancel flag, a progress reporter) and the registry of
//! processor names. A processor sees the model and its context only: it
//! never touches the store, the scheduler's queues or the wire.

mod echo;
mod mock;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use crate::model::{JsonObject, Output, ProgressKind, TaskSpec};

pub use echo::EchoProcessor;
pub(crate) use mock::fnv1a;
pub use mock::{mock_output, MockProcessor};

/// Why a processor did not produce an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessorError {
    /// Worth another attempt (a timeout, a busy model); retried with
    /// backoff up to the processor's `max_attempts`.
    Transient(String),
    /// Final: the run fails with this message.
    Permanent(String),
}

impl ProcessorError {
    pub fn message(&self) -> &str {
        match self {
            ProcessorError::Transient(message) | ProcessorError::Permanent(message) => message,
        }
    }
}

/// Turns one run into an output. Called on a worker thread; it may block
/// (a script, a model over HTTP) and should look at `ctx.cancel` when it
/// does, so that a cancel reaches it.
pub trait Processor: Send + Sync + 'static {
    fn run(&self, ctx: &RunContext<'_>) -> Result<Output, ProcessorError>;
}

/// Everything a processor may know of the run it works on.
pub struct RunContext<'a> {
    pub run_id: &'a str,
    /// The processor name the run asked for, e.g. `core-fast`.
    pub processor: &'a str,
    pub input: &'a Value,
    /// The effective spec: the run's own, else its group's default, else auto.
    pub task_spec: &'a TaskSpec,
    pub metadata: Option<&'a JsonObject>,
    /// 1-based attempt number.
    pub attempt: u32,
    pub cancel: &'a CancelToken,
    pub progress: &'a dyn ProgressSink,
}

/// Receives progress reports of a running run; the scheduler writes each
/// one as a progress event when the run has events enabled.
pub trait ProgressSink: Send + Sync {
    /// A progress message of one of the kinds every face can show.
    fn message(&self, kind: ProgressKind, message: &str);
    /// How far the run has come, `meter` from 0 to 100 (a value outside is
    /// dropped), with the processor's own named counters; a face shows
    /// those it knows (Parallel: `sources_considered`, `sources_read`).
    fn stats(&self, meter: f64, counters: &[(&str, u64)]);
}

/// A progress sink that drops everything; for processors run outside the
/// scheduler (tests, the mock's determinism check).
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn message(&self, _kind: ProgressKind, _message: &str) {}
    fn stats(&self, _meter: f64, _counters: &[(&str, u64)]) {}
}

/// The flag a cancel raises for a running run. Waiting on it is how a
/// processor (or the scheduler's `mock_delay_ms`) sleeps so that a cancel
/// wakes it at once instead of after the sleep.
#[derive(Default)]
pub struct CancelToken {
    cancelled: Mutex<bool>,
    wake: Condvar,
}

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    pub fn cancel(&self) {
        *self.cancelled.lock() = true;
        self.wake.notify_all();
    }

    pub fn is_cancelled(&self) -> bool {
        *self.cancelled.lock()
    }

    /// Sleeps for `duration` unless cancelled first; true when cancelled.
    pub fn wait(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut cancelled = self.cancelled.lock();
        while !*cancelled {
            if self.wake.wait_until(&mut cancelled, deadline).timed_out() {
                break;
            }
        }
        *cancelled
    }
}

/// A processor name and everything the engine needs to know about it.
#[derive(Clone)]
pub struct ProcessorConfig {
    pub name: String,
    /// Implementation, as listed by the catalog: `mock`, `echo`, ...
    pub kind: String,
    pub description: String,
    pub processor: Arc<dyn Processor>,
    /// Attempts before a transient failure is final.
    pub max_attempts: u32,
    /// Runs of this name executing at once.
    pub max_concurrency: usize,
    /// `enable_events` when a run does not say (true for premium names).
    pub enable_events_default: bool,
    /// Accepted input (catalog only); `None`: any string or object.
    pub input_schema: Option<Value>,
    /// Produced output (catalog only); auto: follows the run's task spec.
    pub output_schema: Value,
}

/// The hosted processor names (spec 7), each also with `-fast`.
pub const HOSTED_BASE_NAMES: [&str; 9] = [
    "lite", "base", "core", "core2x", "pro", "ultra", "ultra2x", "ultra4x", "ultra8x",
];

/// Hosted names whose runs have events enabled by default (spec 7).
const PREMIUM_BASE_NAMES: [&str; 5] = ["pro", "ultra", "ultra2x", "ultra4x", "ultra8x"];

/// The processor names a server knows, by name.
#[derive(Clone)]
pub struct Registry {
    by_name: BTreeMap<String, ProcessorConfig>,
}

impl Registry {
    pub fn empty() -> Registry {
        Registry {
            by_name: BTreeMap::new(),
        }
    }

    /// Every hosted name served offline by the deterministic `mock`, plus
    /// `mock` and `echo` themselves, so SDK code runs unchanged (spec 7).
    pub fn with_defaults() -> Registry {
        let mut registry = Registry::empty();
        let mock: Arc<dyn Processor> = Arc::new(MockProcessor::default());
        for base in HOSTED_BASE_NAMES {
            let premium = PREMIUM_BASE_NAMES.contains(&base);
            for name in [base.to_string(), format!("{base}-fast")] {
                registry.insert(ProcessorConfig {
                    description: format!("hosted processor '{name}', served offline by mock"),
                    ..ProcessorConfig::new(&name, "mock", mock.clone())
                });
                if premium {
                    registry
                        .by_name
                        .get_mut(&name)
                        .expect("just inserted")
                        .enable_events_default = true;
                }
            }
        }
        registry.insert(ProcessorConfig {
            description: "deterministic output that validates against the task spec".into(),
            ..ProcessorConfig::new("mock", "mock", mock)
        });
        registry.insert(ProcessorConfig {
            description: "the input back as output".into(),
            ..ProcessorConfig::new("echo", "echo", Arc::new(EchoProcessor))
        });
        registry
    }

    /// Adds or replaces a name.
    pub fn insert(&mut self, config: ProcessorConfig) {
        self.by_name.insert(config.name.clone(), config);
    }

    pub fn get(&self, name: &str) -> Option<&ProcessorConfig> {
        self.by_name.get(name)
    }

    /// Every name in byte order.
    pub fn iter(&self) -> impl Iterator<Item = &ProcessorConfig> {
        self.by_name.values()
    }
}

impl ProcessorConfig {
    /// A name with the default limits: 3 attempts, 64 at once, events off.
    pub fn new(name: &str, kind: &str, processor: Arc<dyn Processor>) -> ProcessorConfig {
        ProcessorConfig {
            name: name.to_string(),
            kind: kind.to_string(),
            description: String::new(),
            processor,
            max_attempts: crate::limits::MAX_ATTEMPTS_DEFAULT,
            max_concurrency: 64,
            enable_events_default: false,
            input_schema: None,
            output_schema: serde_json::json!({"type": "auto"}),
        }
    }
}
