//! The scheduler: a dispatcher thread and a fixed pool of worker threads.
//!
//! The dispatcher claims queued runs from the store in creation order (so
//! FIFO within a group), within the worker capacity and each processor's
//! `max_concurrency`, and hands them to the workers through a bounded
//! crossbeam channel. A worker applies the forcing keys of the run's
//! metadata ([`forcing`]), calls the processor, validates its output against the
//! task spec and queues the finish with the writer; the dispatcher frees the
//! slot once the finish is durable. Transient failures are retried with
//! exponential backoff and jitter; cancels reach running processors through
//! their [`CancelToken`]; shutdown stops claiming, lets running attempts
//! finish within a grace period and puts the rest back in the queue.
//!
//! It knows processors, the store's ops and the model; never HTTP, never
//! SQL, never the shape of a stream.

mod dispatcher;
pub mod forcing;
mod worker;

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use serde_json::Value;

use crate::limits::{
    CANCEL_GRACE_S, CLAIM_BATCH_MAX, CLAIM_SLOTS_PER_WORKER, SCHEDULER_CANCELS_QUEUED_MAX,
};
use crate::model::{
    to_json, Content, EventData, JsonObject, Output, ProgressKind, RunError, RunStatus, SchemaKind,
    TaskSpec, Timestamp, Warning,
};
use crate::processors::{CancelToken, ProcessorError, ProgressSink, Registry, RunContext};
use crate::schema::{first_violation, SchemaCache};
use crate::store::{ClaimedRun, Finish, Op, Store};

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Worker threads, each running one attempt at a time.
    pub workers: usize,
    /// Time a cancelled running run gets to return before it is marked
    /// `cancelled` anyway (spec 10.1).
    pub cancel_grace: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            workers: 16,
            cancel_grace: Duration::from_secs(CANCEL_GRACE_S),
        }
    }
}

/// Messages to the dispatcher thread.
enum Control {
    /// The mailbox has something: a wake-up or cancels (see [`Mailbox`]).
    Doorbell,
    /// A worker's finish is durable: free its slots.
    Done { run_seq: i64 },
    /// A transient failure: attempt again at `due`.
    Retry { job: Job, due: Instant },
    /// A finish the store could not take (busy, full): submit it again at
    /// `due`, so the run does not stay `running` until a restart.
    RetryFinish {
        run_seq: i64,
        finish: Finish,
        due: Instant,
    },
    /// Stop claiming; finish or requeue what runs, then answer.
    Shutdown { grace: Duration, done: Sender<()> },
}

/// One attempt of a run, as handed to a worker.
struct Job {
    run: ClaimedRun,
    token: Arc<CancelToken>,
    /// True when this attempt follows a transient failure.
    retry: bool,
}

/// Control messages beyond the one per claimed run: at most two doorbells
/// (see [`Mailbox::ring`]), one shutdown, and one to spare.
const CONTROL_MESSAGES_RESERVED: usize = 4;

/// What the HTTP layer and the engine tell the dispatcher, kept out of the
/// control channel so that no caller ever waits on the dispatcher (issue
/// 11: the channel was unbounded, and a bounded one would block an HTTP
/// handler, or the writer thread, while the dispatcher waits on the
/// writer). Wake-ups collapse into one flag; cancels wait in a queue of at
/// most `SCHEDULER_CANCELS_QUEUED_MAX` runs, and a cancel that finds it
/// full sets `Cancels::overflowed` instead: the dispatcher then asks the
/// store which runs are `cancelling` (each cancel is committed before it
/// is sent here), so that none is lost.
#[derive(Default)]
struct Mailbox {
    /// Set by senders after they write; the dispatcher clears it, then
    /// reads the rest.
    rung: AtomicBool,
    wake: AtomicBool,
    cancels: Mutex<Cancels>,
}

#[derive(Default)]
struct Cancels {
    run_seqs: Vec<i64>,
    overflowed: bool,
}

impl Mailbox {
    /// Makes sure the dispatcher reads the mailbox: a doorbell message
    /// unless one is pending since the dispatcher last read it, so at most
    /// two are ever in the channel (one it has not taken yet, one rung
    /// after its last read). A doorbell that does not fit is not needed:
    /// the dispatcher is awake with messages to take, and reads the
    /// mailbox after them while `rung` is still set.
    fn ring(&self, control: &Sender<Control>) {
        if !self.rung.swap(true, Ordering::SeqCst) {
            let _ = control.try_send(Control::Doorbell);
        }
    }
}

/// Handle to the scheduler's threads.
pub struct Scheduler {
    control: Sender<Control>,
    mailbox: Arc<Mailbox>,
    tokens: Arc<Mutex<HashMap<i64, Arc<CancelToken>>>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl Scheduler {
    pub fn start(
        store: Arc<Store>,
        registry: Arc<Registry>,
        schemas: Arc<SchemaCache>,
        config: SchedulerConfig,
    ) -> std::io::Result<Scheduler> {
        let workers = config.workers.max(1);
        let capacity = workers * CLAIM_SLOTS_PER_WORKER;
        // At most one control message per claimed run is in flight (a
        // finish's Done or RetryFinish, a worker's Retry): a run in backoff
        // has none, and a slot is freed only when its Done is taken. So
        // `send` on this channel never blocks, which matters because the
        // writer thread sends the replies of finishes, and the dispatcher
        // waits on the writer.
        let (control_sender, control_receiver) = bounded(capacity + CONTROL_MESSAGES_RESERVED);
        let mailbox = Arc::new(Mailbox::default());
        let (job_sender, job_receiver) = bounded::<Job>(capacity);
        let tokens: Arc<Mutex<HashMap<i64, Arc<CancelToken>>>> = Arc::default();
        let mut worker_threads = Vec::with_capacity(workers);
        for index in 0..workers {
            let worker = Worker {
                store: store.clone(),
                registry: registry.clone(),
                schemas: schemas.clone(),
                control: control_sender.clone(),
            };
            let jobs = job_receiver.clone();
            worker_threads.push(
                std::thread::Builder::new()
                    .name(format!("taskyard-worker-{index}"))
                    .spawn(move || {
                        for job in jobs {
                            worker.attempt(job);
                        }
                    })?,
            );
        }
        let dispatcher = Dispatcher {
            store,
            registry,
            config: config.clone(),
            jobs: Some(job_sender),
            control: control_sender.clone(),
            mailbox: mailbox.clone(),
            tokens: tokens.clone(),
            capacity,
            outstanding: HashMap::new(),
            by_processor: HashMap::new(),
            retries: BinaryHeap::new(),
            finish_retries: BinaryHeap::new(),
            cancel_deadlines: BinaryHeap::new(),
            cancels_recheck: None,
            maybe_work: true,
            worker_threads,
        };
        let dispatcher = std::thread::Builder::new()
            .name("taskyard-dispatcher".into())
            .spawn(move || dispatcher.run(control_receiver))?;
        Ok(Scheduler {
            control: control_sender,
            mailbox,
            tokens,
            dispatcher: Mutex::new(Some(dispatcher)),
        })
    }

    /// Tells the dispatcher that queued runs may be waiting. Never blocks;
    /// wake-ups not yet seen collapse into one.
    pub fn wake(&self) {
        self.mailbox.wake.store(true, Ordering::SeqCst);
        self.mailbox.ring(&self.control);
    }

    /// [`Scheduler::wake`] as a function another thread keeps (the
    /// schedule timer, after a fire made runs).
    pub fn waker(&self) -> impl Fn() + Send + 'static {
        let (mailbox, control) = (self.mailbox.clone(), self.control.clone());
        move || {
            mailbox.wake.store(true, Ordering::SeqCst);
            mailbox.ring(&control);
        }
    }

    /// Raises the cancel flag of these runs (now `cancelling`, committed)
    /// and starts their grace period. Never blocks: past
    /// `SCHEDULER_CANCELS_QUEUED_MAX` queued runs, the dispatcher finds the
    /// cancelling runs in the store instead (see `Mailbox`).
    pub fn cancel(&self, run_seqs: Vec<i64>) {
        if run_seqs.is_empty() {
            return;
        }
        {
            let tokens = self.tokens.lock();
            for seq in &run_seqs {
                if let Some(token) = tokens.get(seq) {
                    token.cancel();
                }
            }
        }
        {
            let mut cancels = self.mailbox.cancels.lock();
            if cancels.run_seqs.len() + run_seqs.len() <= SCHEDULER_CANCELS_QUEUED_MAX {
                cancels.run_seqs.extend(run_seqs);
            } else {
                cancels.overflowed = true;
            }
        }
        self.mailbox.ring(&self.control);
    }

    /// Stops claiming, waits up to `grace` for running attempts, puts the
    /// rest back to `queued` and stops the dispatcher. Afterwards no run is
    /// left `running` by this process.
    pub fn shutdown(&self, grace: Duration) {
        let (done, finished) = bounded(1);
        if self.control.send(Control::Shutdown { grace, done }).is_ok() {
            let _ = finished.recv();
        }
        if let Some(thread) = self.dispatcher.lock().take() {
            let _ = thread.join();
        }
    }
}

use dispatcher::Dispatcher;
use worker::{submit_finish, Worker, FINISH_RETRY_AFTER};

#[cfg(test)]
mod tests {
    use crate::limits::{RETRY_BACKOFF_MS_BASE, RETRY_BACKOFF_MS_MAX};
    use crate::processors::Backoff;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        for attempt in 1..=10 {
            let nominal = (RETRY_BACKOFF_MS_BASE << (attempt - 1)).min(RETRY_BACKOFF_MS_MAX);
            let wait = Backoff::default()
                .before_retry("0123456789abcdef0123456789abcdef", attempt)
                .as_millis() as u64;
            assert!(
                wait <= nominal && wait >= nominal - nominal / 4,
                "{attempt}: {wait}"
            );
        }
    }
}
