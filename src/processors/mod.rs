//! Processors: the code that turns a run's input into an output.
//!
//! Owns the [`Processor`] trait, the context a processor sees (input, task
//! spec, metadata, a cancel flag, a progress reporter) and the registry of
//! processor names. A processor sees the model and its context only: it
//! never touches the store, the scheduler's queues or the wire.

mod command;
mod echo;
pub mod fixtures;
pub mod kind;
mod mock;
mod openai;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use crate::model::{JsonObject, Output, ProgressKind, TaskSpec, Turn};

pub use command::CommandProcessor;
pub use echo::EchoProcessor;
pub(crate) use mock::fnv1a;
pub use mock::{mock_output, MockProcessor};
pub use openai::{OpenAiProcessor, ResponseFormat};

/// Why a processor did not produce an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessorError {
    /// Worth another attempt (a timeout, a busy model); retried with
    /// backoff up to the processor's `max_attempts`.
    Transient(String),
    /// Final: the run fails with this message.
    Permanent(String),
    /// Transient, and the other side said when to come back (a 429 or 503
    /// with `Retry-After`): the retry waits at least that long.
    Throttled {
        message: String,
        retry_after: Option<Duration>,
    },
}

impl ProcessorError {
    pub fn message(&self) -> &str {
        match self {
            ProcessorError::Transient(message)
            | ProcessorError::Permanent(message)
            | ProcessorError::Throttled { message, .. } => message,
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
    /// When this attempt must have ended (the processor's `timeout_ms`);
    /// a processor that blocks should stop there. The worker counts an
    /// attempt that ends later as timed out, whatever it returned.
    pub deadline: Option<Instant>,
    /// The earlier turns of the interaction this run continues, oldest
    /// first; empty for a first turn.
    pub turns: &'a [Turn],
    /// Every configured processor, for one that hands a run on (`replay`'s
    /// fallback).
    pub processors: &'a Registry,
}

impl RunContext<'_> {
    /// Sleeps for `duration`, cut short by a cancel (an error the worker
    /// reads as cancelled) or by the attempt's deadline (a transient
    /// error).
    pub fn sleep(&self, duration: Duration) -> Result<(), ProcessorError> {
        let left = self
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let wait = left.map_or(duration, |left| left.min(duration));
        if self.cancel.wait(wait) {
            return Err(ProcessorError::Permanent("cancelled".into()));
        }
        if wait < duration {
            return Err(ProcessorError::Transient(
                "the attempt's deadline (timeout_ms) passed".into(),
            ));
        }
        Ok(())
    }
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
    /// How long one attempt may take; past it the attempt is cancelled and
    /// counts as a transient failure. `None`: no bound.
    pub timeout: Option<Duration>,
    /// Waits between attempts.
    pub backoff: Backoff,
}

/// The wait before a retry: `first` doubling per attempt up to `max`, less
/// up to a quarter of jitter drawn from the run id, so that runs failing
/// together do not retry in lock-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s (Parallel's spec 10.9).
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_millis(crate::limits::RETRY_BACKOFF_MS_BASE),
            max: Duration::from_millis(crate::limits::RETRY_BACKOFF_MS_MAX),
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt + 1` of run `run_id`.
    pub fn before_retry(&self, run_id: &str, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let first_ms = self.first.as_millis().min(u64::MAX as u128) as u64;
        let max_ms = self.max.as_millis().min(u64::MAX as u128) as u64;
        let base_ms = first_ms.saturating_mul(1 << exponent).min(max_ms);
        let draw = fnv1a(&[run_id.as_bytes(), &attempt.to_le_bytes()]);
        let jitter_ms = draw % (base_ms / 4 + 1);
        Duration::from_millis(base_ms - jitter_ms)
    }
}

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

    /// The engine's own processors: `mock` (deterministic output that
    /// fits the task spec) and `echo`. A face adds the processor names of
    /// its hosted API as stand-ins with [`Registry::add_stand_ins`]
    /// (`crate::faces::default_registry`).
    pub fn with_defaults() -> Registry {
        let mut registry = Registry::empty();
        registry.insert(ProcessorConfig {
            description: "deterministic output that validates against the task spec".into(),
            ..ProcessorConfig::new("mock", "mock", Arc::new(MockProcessor::default()))
        });
        registry.insert(ProcessorConfig {
            description: "the input back as output".into(),
            ..ProcessorConfig::new("echo", "echo", Arc::new(EchoProcessor))
        });
        registry
    }

    /// Serves each of `names` offline with the deterministic `mock`, so
    /// that code written for a hosted API runs unchanged; `events` names
    /// those whose runs have events on by default.
    pub fn add_stand_ins(&mut self, names: &[(String, bool)], origin: &str) {
        let mock: Arc<dyn Processor> = Arc::new(MockProcessor::default());
        for (name, events) in names {
            self.insert(ProcessorConfig {
                description: format!("{origin} processor '{name}', served offline by mock"),
                enable_events_default: *events,
                ..ProcessorConfig::new(name, "mock", mock.clone())
            });
        }
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
            timeout: None,
            backoff: Backoff::default(),
        }
    }
}
