//! The stream threads' side of SSE: the chunked response on the raw
//! connection, and the loop that follows a subscription until it ends.
//!
//! The response is written by hand, chunked, so that the headers go out at
//! once and every wake-up's events leave in one flush. A stream runs on its
//! own thread, never on the request pool, and lends its subscription to the
//! fan-out while it is caught up. It knows no face's wire: frames come
//! from the face's [`Render`].

use std::io::{self, Write};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use std::sync::Arc;

use super::frame::{Chunk, Render, EVENTS_PER_FLUSH_MAX};
use crate::engine::{Engine, Next, StreamKind, Subscription};
use crate::model::Event;
use crate::server::fanout::{Fanout, Why};

/// Where a stream's body goes: the connection's writer, and, when the
/// server runs a fan-out and the socket is plain TCP, the way to hand the
/// stream to it while caught up.
pub struct Out {
    pub writer: Box<dyn Write + Send>,
    pub direct: Option<Direct>,
    /// Silence after which the stream sends a keep-alive comment.
    pub keep_alive: Duration,
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
    render: Arc<dyn Render>,
}

impl SseWriter {
    /// Writes the status line and headers, and flushes them at once.
    pub fn start(mut out: Box<dyn Write + Send>, render: Arc<dyn Render>) -> io::Result<SseWriter> {
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
            render,
        })
    }

    /// Queues one event; call [`SseWriter::flush`] to send.
    pub fn event(&mut self, event: &Event) {
        self.render.event(event, &mut self.chunk);
    }

    pub fn keep_alive(&mut self) {
        self.chunk.keep_alive();
    }

    pub fn error(&mut self, message: &str) {
        self.render.error(message, &mut self.chunk);
    }

    pub fn lifetime_over(&mut self) {
        self.render.lifetime_over(&mut self.chunk);
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
/// [`crate::server::fanout`]). A keep-alive is then due `keep_alive` after this
/// thread last wrote, not after the last event: a busy stream also gets
/// one every `keep_alive`, which a client ignores.
pub fn follow(
    engine: &Engine,
    stream: StreamKind,
    after: u64,
    lifetime: Duration,
    render: Arc<dyn Render>,
    out: Out,
) -> io::Result<()> {
    let keep_alive = out.keep_alive;
    // A run stream reads its run's row at every step (it has no window to
    // take from), so lending it would only bounce it back.
    let mut direct = out
        .direct
        .filter(|_| matches!(stream, StreamKind::GroupEvents(_)));
    let mut writer = SseWriter::start(out.writer, render.clone())?;
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
            Pumped::Ended => {
                if Instant::now() >= subscription.deadline() {
                    writer.lifetime_over();
                }
                return writer.finish();
            }
        };
        let Some(to) = direct.as_ref().filter(|_| caught_up) else {
            continue;
        };
        let due = (Instant::now() + keep_alive).min(subscription.deadline());
        let Some(back) = to.fanout.hand_off(subscription, render.clone(), to.fd, due) else {
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

/// A stream that is one snapshot, then the end: `produce` hands each
/// frame (its `event:` name and `data:` JSON, already the face's) to the
/// function it is given, which answers false once the client has gone; a
/// failure of `produce` ends the stream with the face's error frame.
pub fn snapshot<E: std::fmt::Display>(
    render: Arc<dyn Render>,
    out: Out,
    produce: impl FnOnce(&mut dyn FnMut(&str, &str) -> bool) -> Result<(), E>,
) -> io::Result<()> {
    let mut writer = SseWriter::start(out.writer, render)?;
    let mut write_error = None;
    let mut batched = 0;
    let result = produce(&mut |name, data| {
        writer.chunk.frame(name, data);
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
