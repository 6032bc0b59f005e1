//! What a handler may read of its request: method, path, the ids its
//! pattern took, the raw query, headers, and the body, read on demand under
//! the body limits.
//!
//! The body is read only when the handler asks, so that a face can answer
//! an unknown id (404) before a body over the limit (413), as Parallel's
//! spec 1.6 orders them. Owns no parsing of a face's wire: the query stays
//! raw, the body stays bytes.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use super::metrics::Metrics;
use super::{Refusal, Reply, Shared};
use crate::engine::Engine;

/// A request being answered.
pub struct Request<'a> {
    shared: &'a Arc<Shared>,
    raw: &'a mut tiny_http::Request,
    method: &'a str,
    path: &'a str,
    raw_query: &'a str,
    params: Vec<(String, String)>,
    /// The face whose error form answers this request's refusals.
    face: usize,
}

impl<'a> Request<'a> {
    pub(super) fn new(
        shared: &'a Arc<Shared>,
        raw: &'a mut tiny_http::Request,
        method: &'a str,
        path: &'a str,
        raw_query: &'a str,
        params: Vec<(String, String)>,
        face: usize,
    ) -> Request<'a> {
        Request {
            shared,
            raw,
            method,
            path,
            raw_query,
            params,
            face,
        }
    }

    /// The method, upper case.
    pub fn method(&self) -> &str {
        self.method
    }

    /// The path, without its query.
    pub fn path(&self) -> &str {
        self.path
    }

    /// The query string, undecoded.
    pub fn raw_query(&self) -> &str {
        self.raw_query
    }

    /// The value a `{name}` of the route's pattern took; empty when the
    /// pattern has no such name (a programming error the tests catch).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(known, _)| known == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// A header's value; names compare without case.
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw
            .headers()
            .iter()
            .find(|header| header.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|header| header.value.as_str().to_string())
    }

    /// The engine every face answers from.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    pub(super) fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Silence after which a stream sends a keep-alive.
    pub fn keep_alive(&self) -> Duration {
        self.shared.config.keep_alive
    }

    /// The refusal in the error form of the face this request belongs to.
    pub fn refuse(&self, refusal: Refusal) -> Reply {
        self.shared.faces[self.face].refuse(refusal)
    }

    /// Reads the body, refusing more than the configured maximum with
    /// [`Refusal::BodyTooLarge`] and a body that does not arrive within the
    /// read timeout with [`Refusal::BodyTimeout`].
    pub fn body(&mut self) -> Result<Vec<u8>, Refusal> {
        let max = self.shared.config.body_bytes_max;
        let read_timeout = self.shared.config.read_timeout;
        if let Some(length) = self.raw.body_length() {
            if length > max {
                return Err(Refusal::BodyTooLarge { max, got: length });
            }
        }
        let mut body = Vec::new();
        self.raw
            .as_reader()
            .take(max as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| match e.kind() {
                // The connection's read deadline (tiny_http, patched) passed,
                // or one read waited the whole timeout: a client too slow to
                // serve. The connection is closed after this answer, unread
                // rest and all.
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Refusal::BodyTimeout {
                    timeout: read_timeout,
                },
                _ => Refusal::BodyUnreadable(e.to_string()),
            })?;
        if body.len() > max {
            return Err(Refusal::BodyTooLarge {
                max,
                got: body.len(),
            });
        }
        Ok(body)
    }
}
