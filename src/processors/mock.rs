//! `mock`: deterministic output from (processor name, input, task spec).
//!
//! The same request gives byte-identical output on every machine and run,
//! so tests can pin it. For a JSON output schema the content validates
//! against it; for text, text; for auto, a small object plus the schema it
//! chose. It reads no clock, no environment and no randomness of its own.

use std::time::Duration;

use serde_json::Value;

use super::{Processor, ProcessorError, RunContext};
use crate::model::{Output, TaskSpec};

/// The deterministic stand-in for every hosted processor name.
#[derive(Debug, Clone, Default)]
pub struct MockProcessor {
    /// Simulated latency of every attempt; a cancel cuts it short.
    pub latency: Duration,
    /// Share of attempts, 0.0 to 1.0, that fail with a transient error,
    /// drawn from `seed` and the request so that a rerun fails the same way.
    pub failure_rate: f64,
    pub seed: u64,
}

impl Processor for MockProcessor {
    fn run(&self, ctx: &RunContext<'_>) -> Result<Output, ProcessorError> {
        if !self.latency.is_zero() && ctx.cancel.wait(self.latency) {
            return Err(ProcessorError::Permanent("cancelled".into()));
        }
        if self.failure_rate > 0.0 {
            let draw = fnv1a(&[
                &self.seed.to_le_bytes(),
                ctx.processor.as_bytes(),
                ctx.input.to_string().as_bytes(),
                &ctx.attempt.to_le_bytes(),
            ]);
            // The top 53 bits as a fraction in [0, 1).
            let fraction = (draw >> 11) as f64 / (1u64 << 53) as f64;
            if fraction < self.failure_rate {
                return Err(ProcessorError::Transient(format!(
                    "simulated transient failure (failure rate {})",
                    self.failure_rate
                )));
            }
        }
        Ok(mock_output(ctx.processor, ctx.input, ctx.task_spec))
    }
}

/// FNV-1a over several byte strings, each followed by a separator so that
/// ("ab", "c") and ("a", "bc") differ. Stable across machines and releases,
/// unlike `std`'s hashers.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The mock's output for a request. Pure: depends on its arguments only.
pub fn mock_output(processor: &str, input: &Value, task_spec: &TaskSpec) -> Output {
    let _ = (processor, input, task_spec);
    unimplemented!("generator is being written")
}
