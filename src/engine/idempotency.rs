//! Creates made at most once per idempotency key.
//!
//! The engine stores a key with a fingerprint of the request and the
//! face's answer, in the transaction that creates; the same key and
//! fingerprint replay that answer byte for byte, another fingerprint is a
//! conflict. What the key and fingerprint are made of, and which status the
//! answer goes out with, are the face's.

use std::sync::Arc;

use crate::store::{IdempotencyRecord, Keyed, Once};

use super::error::{Error, Result};

/// A key and what identifies the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    /// The face's canonical form of the request (method, path, body).
    pub fingerprint: String,
}

/// What a keyed create answered.
#[derive(Debug, Clone)]
pub enum Created<T> {
    /// Created now; `body` is the face's answer, stored for replays.
    Fresh { value: T, body: String },
    /// Seen before: the first answer, byte for byte; nothing was created.
    Replayed { body: String },
}

/// How a face renders the answer stored with a key: called in the
/// creating transaction, with the value as created.
pub type RenderAnswer<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// A key and its answer's rendering, as the store's op carries them.
pub(super) fn keyed<T: 'static>(once: &Option<(Idempotency, RenderAnswer<T>)>) -> Option<Keyed<T>> {
    once.as_ref().map(|(idempotency, answer)| {
        let answer = answer.clone();
        Keyed {
            record: Box::new(IdempotencyRecord {
                key: idempotency.key.clone(),
                fingerprint: idempotency.fingerprint.clone(),
            }),
            answer: Box::new(move |value: &T| answer(value)),
        }
    })
}

/// The value of a create made without a key (never a replay).
pub(super) fn fresh<T>(once: Once<T>) -> Result<T> {
    match once {
        Once::Fresh { value, .. } => Ok(value),
        Once::Replay { .. } => Err(Error::Internal("a replay without a key".into())),
    }
}

/// The answer of a keyed create.
pub(super) fn created<T>(once: Once<T>) -> Result<Created<T>> {
    match once {
        Once::Fresh {
            value,
            body: Some(body),
        } => Ok(Created::Fresh { value, body }),
        Once::Fresh { body: None, .. } => {
            Err(Error::Internal("a keyed create without a body".into()))
        }
        Once::Replay { body } => Ok(Created::Replayed { body }),
    }
}
