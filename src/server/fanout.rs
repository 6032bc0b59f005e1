//! The stream fan-out: one thread that sends new events of caught-up group
//! streams straight to their sockets.
//!
//! With only a thread per stream, each commit that 500 followers of a group
//! waited on cost 500 wake-ups, context switches and parks besides the 500
//! writes; on 2 cores that was most of the 1,000-subscriber bench's CPU,
//! and its p99 from commit to client was 22 ms. Here a stream thread that
//! has caught up lends its subscription to this thread and sleeps. This
//! thread is unparked by the hub like any follower, takes what is new from
//! the hub's window ([`Subscription::next_in_memory`]) and sends each
//! stream's chunk with one non-blocking `send`. It hands the subscription
//! back as soon as anything would block: a send that did not go whole (a
//! slow reader: the stream thread writes the rest under the write timeout),
//! a read of the store (behind the window, or a run stream), the stream's
//! end, or a keep-alive or the lifetime falling due.
//!
//! It owns no connection: the stream thread keeps the connection's writer,
//! and so the socket, open until its subscription is back, and flushes that
//! writer before lending. It holds no SQL and knows the wire only through
//! [`Chunk`] and the face's [`Render`].

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::metrics::{FanoutReturn, Metrics};
use super::sse::{Chunk, Render, EVENTS_PER_FLUSH_MAX};
use crate::engine::{Next, Subscription};

/// Longest sleep without a due time, so that a lost unpark (there should
/// be none) costs at most this.
const IDLE_PARK_MAX: Duration = Duration::from_secs(1);

/// Why a subscription came back to its stream thread.
pub enum Why {
    /// The keep-alive or the stream's lifetime is due.
    Due,
    /// The next step blocks: a store read, or an error to report.
    Blocking,
    /// The stream has ended.
    End,
    /// The client did not take a whole chunk: write these bytes (the rest
    /// of it, framed) before anything else.
    Unsent(Vec<u8>),
    /// The socket failed: the client has gone.
    Failed(io::Error),
    /// The fan-out is stopping (the server is): the stream thread goes on
    /// alone.
    Stopped,
}

/// A subscription coming back, with why.
pub struct Back {
    pub subscription: Subscription,
    pub why: Why,
}

/// The fan-out threads' handle; clones share them.
#[derive(Clone)]
pub struct Fanout {
    shards: Arc<[Arc<Inner>]>,
    /// Deals hand-offs out over the shards in turn.
    next: Arc<AtomicUsize>,
}

/// One fan-out thread and what it shares with the stream threads.
struct Inner {
    metrics: Arc<Metrics>,
    inbox: Mutex<Vec<Lent>>,
    /// Set under the inbox lock, so nothing is lent after the last look.
    stopping: AtomicBool,
    thread: Thread,
}

/// A lent subscription.
struct Lent {
    subscription: Subscription,
    /// The face's rendering of the stream's events.
    render: Arc<dyn Render>,
    fd: RawFd,
    due: Instant,
    /// The stream version when it was last found caught up.
    seen: Option<u64>,
    back: Sender<Back>,
}

impl Why {
    fn label(&self) -> FanoutReturn {
        match self {
            Why::Due => FanoutReturn::Due,
            Why::Blocking => FanoutReturn::Blocking,
            Why::End => FanoutReturn::End,
            Why::Unsent(_) => FanoutReturn::Unsent,
            Why::Failed(_) => FanoutReturn::Failed,
            Why::Stopped => FanoutReturn::Stopped,
        }
    }
}

impl Lent {
    fn give_back(self, why: Why, metrics: &Metrics) {
        metrics.fanout_returned(why.label(), true);
        // The stream thread waits on the other end; if it has gone, so has
        // the connection.
        let _ = self.back.send(Back {
            subscription: self.subscription,
            why,
        });
    }
}

/// Starts `threads` fan-out threads (at least one); streams are dealt out
/// over them in turn, so that the sends after one commit run on every
/// core.
pub fn start(threads: usize, metrics: Arc<Metrics>) -> io::Result<(Fanout, Vec<JoinHandle<()>>)> {
    let mut shards = Vec::new();
    let mut handles = Vec::new();
    for index in 0..threads.max(1) {
        // The thread's handle goes into what it shares, so it gets that
        // after it starts.
        let (send_inner, receive_inner) = crossbeam_channel::bounded::<Arc<Inner>>(1);
        let handle = std::thread::Builder::new()
            .name(format!("taskyard-fanout-{index}"))
            .spawn(move || {
                if let Ok(inner) = receive_inner.recv() {
                    run(&inner);
                }
            })?;
        let inner = Arc::new(Inner {
            metrics: metrics.clone(),
            inbox: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            thread: handle.thread().clone(),
        });
        let _ = send_inner.send(inner.clone());
        shards.push(inner);
        handles.push(handle);
    }
    Ok((
        Fanout {
            shards: shards.into(),
            next: Arc::new(AtomicUsize::new(0)),
        },
        handles,
    ))
}

impl Fanout {
    /// Lends `subscription` (caught up, its connection's writer flushed)
    /// until something blocks or `due`; blocks the calling stream thread
    /// until then. `None` if the fan-out went away with it (it panicked).
    pub fn hand_off(
        &self,
        subscription: Subscription,
        render: Arc<dyn Render>,
        fd: RawFd,
        due: Instant,
    ) -> Option<Back> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let inner = &self.shards[turn % self.shards.len()];
        let (back, receive): (Sender<Back>, Receiver<Back>) = crossbeam_channel::bounded(1);
        {
            let mut inbox = inner.inbox.lock();
            if inner.stopping.load(Ordering::SeqCst) {
                inner.metrics.fanout_returned(FanoutReturn::Stopped, false);
                return Some(Back {
                    subscription,
                    why: Why::Stopped,
                });
            }
            inner.metrics.fanout_lent();
            inbox.push(Lent {
                subscription,
                render,
                fd,
                due,
                seen: None,
                back,
            });
        }
        inner.thread.unpark();
        receive.recv().ok()
    }

    /// Gives every subscription back and ends the threads (join their
    /// handles).
    pub fn stop(&self) {
        for inner in self.shards.iter() {
            let _inbox = inner.inbox.lock();
            inner.stopping.store(true, Ordering::SeqCst);
            inner.thread.unpark();
        }
    }
}

fn run(inner: &Inner) {
    let mut lent: Vec<Lent> = Vec::new();
    let mut chunk = Chunk::default();
    // Given back after the round's sends: each give-back wakes a stream
    // thread, and when a group ends, 500 of them woken mid-round took the
    // cores from the sends still to go (the last event's p99 was 30 ms).
    let mut returning: Vec<(Lent, Why)> = Vec::new();
    loop {
        {
            let mut inbox = inner.inbox.lock();
            if inner.stopping.load(Ordering::SeqCst) {
                for one in lent.drain(..).chain(inbox.drain(..)) {
                    one.give_back(Why::Stopped, &inner.metrics);
                }
                return;
            }
            for one in inbox.drain(..) {
                // Listed before its version is read: a commit after the
                // read unparks this thread.
                one.subscription.listen();
                lent.push(one);
            }
        }
        let now = Instant::now();
        let mut wake_at = now + IDLE_PARK_MAX;
        // A stream that had more than one chunk's worth is looked at again
        // at once, not after the next commit.
        let mut again = false;
        let mut index = 0;
        while index < lent.len() {
            let one = &mut lent[index];
            if now >= one.due {
                returning.push((lent.swap_remove(index), Why::Due));
                continue;
            }
            let version = one.subscription.version();
            if one.seen == Some(version) {
                wake_at = wake_at.min(one.due);
                index += 1;
                continue;
            }
            one.seen = Some(version);
            match pump(one, &mut chunk, &inner.metrics) {
                None => {
                    wake_at = wake_at.min(one.due);
                    again |= one.seen.is_none();
                    index += 1;
                }
                Some(why) => returning.push((lent.swap_remove(index), why)),
            }
        }
        for (one, why) in returning.drain(..) {
            one.give_back(why, &inner.metrics);
        }
        if !again {
            std::thread::park_timeout(wake_at.saturating_duration_since(Instant::now()));
        }
    }
}

/// Sends what is new for one subscription; `Some` when it must go back.
fn pump(one: &mut Lent, chunk: &mut Chunk, metrics: &Metrics) -> Option<Why> {
    chunk.clear();
    let mut then = None;
    let mut taken = 0;
    while taken < EVENTS_PER_FLUSH_MAX {
        match one.subscription.next_in_memory() {
            Ok(Some(Next::Event(event))) => one.render.event(&event, chunk),
            Ok(Some(Next::Idle)) => break,
            Ok(Some(Next::End)) => {
                then = Some(Why::End);
                break;
            }
            // The stream thread reads the store, or meets the error again
            // and reports it.
            Ok(None) | Err(_) => {
                then = Some(Why::Blocking);
                break;
            }
        }
        taken += 1;
    }
    if taken == EVENTS_PER_FLUSH_MAX {
        // More may be ready: look again on the next round.
        one.seen = None;
    }
    if !chunk.is_empty() {
        let bytes = chunk.framed();
        match send_now(one.fd, bytes) {
            Ok(sent) if sent == bytes.len() => metrics.fanout_chunk_sent(),
            Ok(sent) => return Some(Why::Unsent(bytes[sent..].to_vec())),
            Err(error) => return Some(Why::Failed(error)),
        }
    }
    then
}

/// Sends as much of `bytes` as the socket takes without blocking.
fn send_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        // SAFETY: `fd` is the stream's socket, kept open by its stream
        // thread until this subscription is given back; `rest` is a live
        // buffer of the length given. MSG_DONTWAIT makes this one call
        // non-blocking without touching the socket's flags, which the
        // connection's other users (blocking, with timeouts) share.
        let written = unsafe {
            libc::send(
                fd,
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if written < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => return Ok(sent),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(error),
            }
        }
        sent += written as usize;
    }
    Ok(sent)
}
