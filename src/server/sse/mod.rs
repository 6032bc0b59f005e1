//! Server-Sent Events: frames, the chunked writer, and the stream loop.
//!
//! `frame` is the leaf both the stream threads (`writer`) and the fan-out
//! (`super::fanout`) build on, so that neither imports the other's loop.
//! How an event reads on the wire (its `event:` name and `data:` JSON) is
//! the face's: it comes in through [`Render`].

mod frame;
mod writer;

pub use frame::{Chunk, Render, EVENTS_PER_FLUSH_MAX};
pub use writer::{follow, snapshot, Direct, Out, SseWriter};
