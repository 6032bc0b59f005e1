//! A face's own record (a Handinger worker or task) as the engine keeps
//! it, and a turn of an interaction.
//!
//! The engine stores a record's body and gives it back; what is in it is
//! the face's. No I/O.

use serde_json::Value;

use super::{Output, Run, Timestamp};

/// A face's record: its id, its body, and when it was made and changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub body: Value,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

/// One turn of an interaction: its number (from 1), its run and input, and
/// the run's output once it completed.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionTurn {
    pub turn: u32,
    pub run: Run,
    pub input: Value,
    pub output: Option<Output>,
}
