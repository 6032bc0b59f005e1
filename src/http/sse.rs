//! Server-Sent Events: the three streams, framed exactly as spec 5 says.
//!
//! Each event is one `event:` line equal to its JSON `type`, one `data:`
//! line with the compact JSON and an empty line; never an `id:` line (the
//! Python SDK breaks on one followed by a keep-alive), never `retry:`.
//! The response is written by hand on the raw connection, chunked, so that
//! the headers go out at once and every wake-up's events leave in one
//! flush. A stream runs on its own thread, never on the request pool.

use std::io::{self, Write};
use std::time::Duration;

use crate::engine::{Engine, GroupRunsQuery, Next, StreamKind};
use crate::model::{ErrorObject, Event};

/// Events written per flush at most, so that a burst is batched but a
/// reader still sees progress.
const EVENTS_PER_FLUSH_MAX: usize = 256;

/// A chunked `text/event-stream` response on a raw connection.
pub struct SseWriter {
    out: Box<dyn Write + Send>,
    pending: Vec<u8>,
}

impl SseWriter {
    /// Writes the status line and headers, and flushes them at once.
    pub fn start(mut out: Box<dyn Write + Send>) -> io::Result<SseWriter> {
        out.write_all(
            b"HTTP/1.1 200 OK\r\n\
              Content-Type: text/event-stream\r\n\
              Cache-Control: no-cache\r\n\
              Transfer-Encoding: chunked\r\n\
              X-Accel-Buffering: no\r\n\r\n",
        )?;
        out.flush()?;
        Ok(SseWriter {
            out,
            pending: Vec::with_capacity(16 * 1024),
        })
    }

    /// Queues one event; call [`SseWriter::flush`] to send.
    pub fn event(&mut self, event: &Event) {
        self.pending.extend_from_slice(b"event: ");
        self.pending
            .extend_from_slice(event.kind.as_str().as_bytes());
        self.pending.extend_from_slice(b"\ndata: ");
        self.pending.extend_from_slice(event.data.as_bytes());
        self.pending.extend_from_slice(b"\n\n");
    }

    pub fn keep_alive(&mut self) {
        self.pending.extend_from_slice(b": keep-alive\n\n");
    }

    /// An ErrorEvent for a failure after the headers (spec 5, rule 7).
    pub fn error(&mut self, message: &str) {
        let error = ErrorObject::new(message, None);
        let data = serde_json::json!({"type": "error", "error": error}).to_string();
        self.pending.extend_from_slice(b"event: error\ndata: ");
        self.pending.extend_from_slice(data.as_bytes());
        self.pending.extend_from_slice(b"\n\n");
    }

    /// Sends what is queued as one chunk.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        write!(self.out, "{:x}\r\n", self.pending.len())?;
        self.out.write_all(&self.pending)?;
        self.out.write_all(b"\r\n")?;
        self.out.flush()?;
        self.pending.clear();
        Ok(())
    }

    /// Ends the body (the stream's end: spec 5, rule 6). The connection
    /// then serves the client's next request, like any keep-alive one.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        self.out.write_all(b"0\r\n\r\n")?;
        self.out.flush()
    }
}

/// Follows a subscription until it ends, the client leaves or an error.
pub fn follow(
    engine: &Engine,
    stream: StreamKind,
    after: u64,
    lifetime: Duration,
    keep_alive: Duration,
    out: Box<dyn Write + Send>,
) -> io::Result<()> {
    let mut writer = SseWriter::start(out)?;
    let mut subscription = match engine.subscribe(stream, after, lifetime) {
        Ok(subscription) => subscription,
        Err(error) => {
            writer.error(&error.to_string());
            return writer.finish();
        }
    };
    loop {
        match subscription.next_within(keep_alive) {
            Ok(Next::Event(event)) => {
                writer.event(&event);
                // Take what else is ready without waiting: one flush per
                // wake-up, not one per event.
                let mut batched = 1;
                while batched < EVENTS_PER_FLUSH_MAX {
                    match subscription.next_within(Duration::ZERO) {
                        Ok(Next::Event(event)) => writer.event(&event),
                        Ok(Next::Idle) => break,
                        Ok(Next::End) => return writer.finish(),
                        Err(error) => {
                            writer.error(&error.to_string());
                            return writer.finish();
                        }
                    }
                    batched += 1;
                }
                writer.flush()?;
            }
            Ok(Next::Idle) => {
                writer.keep_alive();
                writer.flush()?;
            }
            Ok(Next::End) => return writer.finish(),
            Err(error) => {
                writer.error(&error.to_string());
                return writer.finish();
            }
        }
    }
}

/// The group runs stream: one snapshot, then the end.
pub fn group_runs(
    engine: &Engine,
    group_id: &str,
    query: &GroupRunsQuery,
    out: Box<dyn Write + Send>,
) -> io::Result<()> {
    let mut writer = SseWriter::start(out)?;
    let mut write_error = None;
    let mut batched = 0;
    let result = engine.group_runs(group_id, query, |event| {
        writer.event(&event);
        batched += 1;
        if batched >= EVENTS_PER_FLUSH_MAX {
            batched = 0;
            if let Err(error) = writer.flush() {
                write_error = Some(error);
                return false;
            }
        }
        true
    });
    if let Some(error) = write_error {
        return Err(error);
    }
    if let Err(error) = result {
        writer.error(&error.to_string());
    }
    writer.finish()
}
