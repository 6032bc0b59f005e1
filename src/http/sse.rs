//! Server-Sent Events: the three streams, framed exactly as spec 5 says.
//!
//! Each event is one `event:` line equal to its JSON `type`, one `data:`
//! line with the compact JSON and an empty line; never an `id:` line (the
//! Python SDK breaks on one followed by a keep-alive), never `retry:`.
//! The response is written by hand on the raw connection, chunked, so that
//! the headers go out at once and every wake-up's events leave in one
//! flush. A stream runs on its own thread, never on the request pool, and
//! lends its subscription to the fan-out while it is caught up.

use std::io::{self, Write};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::fanout::{Fanout, Why};
use crate::engine::{Engine, GroupRunsQuery, Next, StreamKind, Subscription};
use crate::model::{ErrorObject, Event};

/// Events written per flush at most, so that a burst is batched but a
/// reader still sees progress.
pub const EVENTS_PER_FLUSH_MAX: usize = 256;

/// Room kept at the front of a chunk for its size line (at most 16 hex
/// digits and CRLF), so that a chunk leaves in one `write` of one buffer.
/// Written as three pieces through tiny_http's 1 KiB `BufWriter`, a chunk
/// larger than that left as three syscalls, and a client woke up for the
/// size line only to wait for the rest.
const CHUNK_HEAD_ROOM: usize = 18;

/// One chunk of a chunked `text/event-stream` body, being built.
pub struct Chunk {
    /// `CHUNK_HEAD_ROOM` bytes of room, then the queued events.
    bytes: Vec<u8>,
}

impl Default for Chunk {
    fn default() -> Chunk {
        let mut bytes = Vec::with_capacity(16 * 1024);
        bytes.resize(CHUNK_HEAD_ROOM, 0);
        Chunk { bytes }
    }
}

impl Chunk {
    /// Queues one event.
    pub fn event(&mut self, event: &Event) {
        self.bytes.extend_from_slice(b"event: ");
        self.bytes.extend_from_slice(event.kind.as_str().as_bytes());
        self.bytes.extend_from_slice(b"\ndata: ");
        self.bytes.extend_from_slice(event.data.as_bytes());
        self.bytes.extend_from_slice(b"\n\n");
    }

    pub fn keep_alive(&mut self) {
        self.bytes.extend_from_slice(b": keep-alive\n\n");
    }

    /// An ErrorEvent for a failure after the headers (spec 5, rule 7).
    pub fn error(&mut self, message: &str) {
        let error = ErrorObject::new(message, None);
        let data = serde_json::json!({"type": "error", "error": error}).to_string();
        self.bytes.extend_from_slice(b"event: error\ndata: ");
        self.bytes.extend_from_slice(data.as_bytes());
        self.bytes.extend_from_slice(b"\n\n");
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.len() == CHUNK_HEAD_ROOM
    }

    /// The queued events framed as one chunk (size line, events, CRLF);
    /// [`Chunk::clear`] once sent.
    pub fn framed(&mut self) -> &[u8] {
        let size = self.bytes.len() - CHUNK_HEAD_ROOM;
        let head = format!("{size:x}\r\n");
        let start = CHUNK_HEAD_ROOM - head.len();
        self.bytes[start..CHUNK_HEAD_ROOM].copy_from_slice(head.as_bytes());
        self.bytes.extend_from_slice(b"\r\n");
        &self.bytes[start..]
    }

    pub fn clear(&mut self) {
        self.bytes.truncate(CHUNK_HEAD_ROOM);
    }
}

/// Where a stream's body goes: the connection's writer, and, when the
/// server runs a fan-out and the socket is plain TCP, the way to hand the
/// stream to it while caught up.
pub struct Out {
    pub writer: Box<dyn Write + Send>,
    pub direct: Option<Direct>,
}

/// A stream's socket and the fan-out that may write to it.
pub struct Direct {
    pub fanout: Fanout,
    pub fd: RawFd,
}

/// A chunked `text/event-stream` response on a raw connection.
pub struct SseWriter {
    out: Box<dyn Write + Send>,
    chunk: Chunk,
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
            chunk: Chunk::default(),
        })
    }

    /// Queues one event; call [`SseWriter::flush`] to send.
    pub fn event(&mut self, event: &Event) {
        self.chunk.event(event);
    }

    pub fn keep_alive(&mut self) {
        self.chunk.keep_alive();
    }

    pub fn error(&mut self, message: &str) {
        self.chunk.error(message);
    }

    /// Sends what is queued as one chunk.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.out.write_all(self.chunk.framed())?;
        self.out.flush()?;
        self.chunk.clear();
        Ok(())
    }

    /// Writes bytes already framed (the rest of a chunk the fan-out could
    /// not send whole), before anything else.
    pub fn write_framed(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.flush()
    }

    /// Ends the body (the stream's end: spec 5, rule 6). The connection
    /// then serves the client's next request, like any keep-alive one.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        self.out.write_all(b"0\r\n\r\n")?;
        self.out.flush()
    }
}

/// What one step of a stream thread did.
enum Pumped {
    /// Events or a keep-alive went out; `caught_up` when nothing more was
    /// ready.
    Open {
        caught_up: bool,
    },
    Ended,
}

/// Takes the next events (waiting at most `wait`) and sends them as one
/// chunk, or a keep-alive after `wait` of silence if `keep_alive`, or ends
/// the stream.
fn pump(
    subscription: &mut Subscription,
    writer: &mut SseWriter,
    wait: Duration,
    keep_alive: bool,
) -> io::Result<Pumped> {
    let fail = |writer: &mut SseWriter, error: &dyn std::fmt::Display| {
        writer.error(&error.to_string());
        Ok(Pumped::Ended)
    };
    match subscription.next_within(wait) {
        Ok(Next::Event(event)) => {
            writer.event(&event);
            // Take what else is ready without waiting: one flush per
            // wake-up, not one per event.
            let mut caught_up = false;
            for _ in 1..EVENTS_PER_FLUSH_MAX {
                match subscription.next_within(Duration::ZERO) {
                    Ok(Next::Event(event)) => writer.event(&event),
                    Ok(Next::Idle) => {
                        caught_up = true;
                        break;
                    }
                    Ok(Next::End) => return Ok(Pumped::Ended),
                    Err(error) => return fail(writer, &error),
                }
            }
            writer.flush()?;
            Ok(Pumped::Open { caught_up })
        }
        Ok(Next::Idle) => {
            if keep_alive {
                writer.keep_alive();
                writer.flush()?;
            }
            Ok(Pumped::Open { caught_up: true })
        }
        Ok(Next::End) => Ok(Pumped::Ended),
        Err(error) => fail(writer, &error),
    }
}

/// Follows a subscription until it ends, the client leaves or an error.
///
/// While the stream is caught up and the connection allows it, the
/// subscription waits in the fan-out, which sends new events without
/// waking this thread; it comes back here for anything that blocks (see
/// [`super::fanout`]). A keep-alive is then due `keep_alive` after this
/// thread last wrote, not after the last event: a busy stream also gets
/// one every `keep_alive`, which a client ignores.
pub fn follow(
    engine: &Engine,
    stream: StreamKind,
    after: u64,
    lifetime: Duration,
    keep_alive: Duration,
    out: Out,
) -> io::Result<()> {
    // A run stream reads its run's row at every step (it has no window to
    // take from), so lending it would only bounce it back.
    let mut direct = out
        .direct
        .filter(|_| matches!(stream, StreamKind::GroupEvents(_)));
    let mut writer = SseWriter::start(out.writer)?;
    let mut subscription = match engine.subscribe(stream, after, lifetime) {
        Ok(subscription) => subscription,
        Err(error) => {
            writer.error(&error.to_string());
            return writer.finish();
        }
    };
    let mut keep_alive_now = false;
    loop {
        // Alone, the thread waits here and sends a keep-alive after
        // `keep_alive` of silence. With a fan-out it only looks, lends the
        // stream as soon as it is caught up, and sends a keep-alive when the
        // fan-out gives the stream back because one is due.
        let (wait, keep_alive_on_idle) = if direct.is_some() {
            (Duration::ZERO, std::mem::take(&mut keep_alive_now))
        } else {
            (keep_alive, true)
        };
        let caught_up = match pump(&mut subscription, &mut writer, wait, keep_alive_on_idle)? {
            Pumped::Open { caught_up } => caught_up,
            Pumped::Ended => return writer.finish(),
        };
        let Some(to) = direct.as_ref().filter(|_| caught_up) else {
            continue;
        };
        let due = (Instant::now() + keep_alive).min(subscription.deadline());
        let Some(back) = to.fanout.hand_off(subscription, to.fd, due) else {
            return Err(io::Error::other("the stream fan-out stopped"));
        };
        subscription = back.subscription;
        match back.why {
            // Events or the keep-alive at once; the end, if it is the
            // lifetime that is due.
            Why::Due => keep_alive_now = true,
            // The store is next (`next_within` reads it), or the end.
            Why::Blocking | Why::End => {}
            Why::Unsent(rest) => writer.write_framed(&rest)?,
            Why::Failed(error) => return Err(error),
            Why::Stopped => direct = None,
        }
    }
}

/// The group runs stream: one snapshot, then the end.
pub fn group_runs(
    engine: &Engine,
    group_id: &str,
    query: &GroupRunsQuery,
    out: Out,
) -> io::Result<()> {
    let mut writer = SseWriter::start(out.writer)?;
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
