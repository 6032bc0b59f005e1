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

impl super::Engine {
    /// Answers a face's operation at most once per key, for operations
    /// made of several engine calls (a Handinger task: a worker, a task and
    /// a turn). A key seen with the same fingerprint replays the answer
    /// stored; with another, `IdempotencyConflict`; a new key runs `work`
    /// and stores its answer. Unlike a keyed create, the answer is stored
    /// after the work commits: a crash between the two runs the work again
    /// on the retry. Two requests racing with one new key both run; the
    /// second answers the first's body.
    pub fn answer_once<E: From<Error>>(
        &self,
        key: Idempotency,
        work: impl FnOnce() -> std::result::Result<String, E>,
    ) -> std::result::Result<Created<String>, E> {
        let replay = |fingerprint: String, body: String| {
            if fingerprint == key.fingerprint {
                Ok(Created::Replayed { body })
            } else {
                Err(E::from(Error::IdempotencyConflict))
            }
        };
        let stored = self
            .inner
            .store
            .idempotency_key(&key.key)
            .map_err(|e| E::from(Error::from(e)))?;
        if let Some((fingerprint, body)) = stored {
            return replay(fingerprint, body);
        }
        let body = work()?;
        let record = IdempotencyRecord {
            key: key.key.clone(),
            fingerprint: key.fingerprint.clone(),
        };
        let seen = self
            .write(|reply| crate::store::Op::RememberKey {
                record: record.clone(),
                body: body.clone(),
                reply,
            })
            .map_err(|e| E::from(Error::from(e)))?;
        match seen {
            None => Ok(Created::Fresh {
                value: body.clone(),
                body,
            }),
            Some((fingerprint, first)) => replay(fingerprint, first),
        }
    }
}
