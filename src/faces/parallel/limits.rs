//! The limits of Parallel's wire (spec 8 and the hosted API's behaviour),
//! named and documented; the engine's and the server's are in
//! `crate::limits`, re-exported here where this face's parser cites them.
//!
//! Owns the numbers only; the parser names a limit in its error.

pub use crate::limits::{JSON_DEPTH_MAX, RUNS_PER_REQUEST_MAX, SCHEMA_DEPTH_MAX};

/// Characters in a metadata key (hosted limit).
pub const METADATA_KEY_CHARS_MAX: usize = 16;

/// Characters in a string metadata value (hosted limit).
pub const METADATA_VALUE_CHARS_MAX: usize = 512;

/// Keys in one metadata object (a taskyard choice).
pub const METADATA_KEYS_MAX: usize = 64;

/// Domains in a source policy, include and exclude together (hosted limit).
pub const SOURCE_POLICY_DOMAINS_MAX: usize = 200;

/// Longest `/result` wait, in seconds; larger values are clamped.
pub const RESULT_TIMEOUT_S_MAX: u64 = 3_600;

/// Default `/result` wait, in seconds (hosted default).
pub const RESULT_TIMEOUT_S_DEFAULT: u64 = 600;

/// Longest life of a group events stream, in seconds (hosted limit).
pub const GROUP_EVENTS_TIMEOUT_S_MAX: u64 = 3_600;

/// Life of a run events stream, in seconds (hosted behaviour).
pub const RUN_EVENTS_STREAM_S_MAX: u64 = 570;

/// Characters in a webhook URL (a taskyard choice).
pub const WEBHOOK_URL_CHARS_MAX: usize = 2_048;

const _: () = assert!(RESULT_TIMEOUT_S_DEFAULT <= RESULT_TIMEOUT_S_MAX);

/// How long one `GET .../result` of a `replay` processor's upstream run
/// waits, in seconds: between two, a cancel is seen.
pub const REPLAY_RESULT_POLL_S: u64 = 2;

/// How long a `replay` processor waits for an upstream run when its
/// processor sets no `timeout_ms`, in seconds (the hosted `/result`'s own
/// longest wait).
pub const REPLAY_UPSTREAM_WAIT_S_MAX: u64 = 3_600;
