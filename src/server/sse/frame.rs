//! One SSE frame and one chunk of a chunked `text/event-stream` body.
//!
//! The leaf of the stream code: the stream threads and the fan-out both
//! build chunks here. A frame is an `event:` line, a `data:` line and an
//! empty line; never an `id:` or `retry:` line (Parallel's Python SDK
//! breaks on an `id:` followed by a keep-alive, and no face needs one).
//! What the name and data of an engine event are is the face's, through
//! [`Render`].

use crate::model::Event;

/// How a face writes engine events and stream failures as SSE frames.
pub trait Render: Send + Sync {
    /// Queues one engine event.
    fn event(&self, event: &Event, chunk: &mut Chunk);
    /// Queues the error frame of a failure after the headers were sent.
    fn error(&self, message: &str, chunk: &mut Chunk);
    /// Queues what the stream sends when it ends because its lifetime
    /// ran out rather than because its events did; nothing by default.
    fn lifetime_over(&self, _chunk: &mut Chunk) {}
}

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
    /// Queues one frame: `event: {name}`, `data: {data}` (one line of
    /// compact JSON), and the empty line that ends it.
    pub fn frame(&mut self, name: &str, data: &str) {
        self.bytes.extend_from_slice(b"event: ");
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.extend_from_slice(b"\ndata: ");
        self.bytes.extend_from_slice(data.as_bytes());
        self.bytes.extend_from_slice(b"\n\n");
    }

    /// Queues a frame already made (a rendering kept with its event).
    pub fn framed_event(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
    }

    /// The frames queued so far, unframed (no chunk size line).
    pub fn queued(&self) -> &[u8] {
        &self.bytes[CHUNK_HEAD_ROOM..]
    }

    pub fn keep_alive(&mut self) {
        self.bytes.extend_from_slice(b": keep-alive\n\n");
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
