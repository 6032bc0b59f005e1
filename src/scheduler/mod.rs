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

pub mod forcing;

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use serde_json::Value;

use crate::limits::{
    CANCEL_GRACE_S, CLAIM_BATCH_MAX, CLAIM_SLOTS_PER_WORKER, RETRY_BACKOFF_MS_BASE,
    RETRY_BACKOFF_MS_MAX, SCHEDULER_CANCELS_QUEUED_MAX,
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

    /// Raises the cancel flag of these runs (now `cancelling`, committed)
    /// and starts their grace period. Never blocks: past
    /// `SCHEDULER_CANCELS_QUEUED_MAX` queued runs, the dispatcher finds the
    /// cancelling runs in the store instead (see [`Mailbox`]).
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

/// A due time in a min-heap.
struct Due<T>(Instant, T);

impl<T> PartialEq for Due<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<T> Eq for Due<T> {}
impl<T> PartialOrd for Due<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Due<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.cmp(&self.0)
    }
}

struct Dispatcher {
    store: Arc<Store>,
    registry: Arc<Registry>,
    config: SchedulerConfig,
    /// Dropped at shutdown so that idle workers exit.
    jobs: Option<Sender<Job>>,
    control: Sender<Control>,
    mailbox: Arc<Mailbox>,
    tokens: Arc<Mutex<HashMap<i64, Arc<CancelToken>>>>,
    /// Attempts claimed and not yet durably finished, at most:
    /// [`CLAIM_SLOTS_PER_WORKER`] per worker.
    capacity: usize,
    /// Runs claimed and not yet durably finished, with their processor;
    /// those in `retries` included.
    outstanding: HashMap<i64, String>,
    by_processor: HashMap<String, usize>,
    retries: BinaryHeap<Due<Job>>,
    finish_retries: BinaryHeap<Due<(i64, Finish)>>,
    cancel_deadlines: BinaryHeap<Due<i64>>,
    /// When to ask the store which runs are cancelling, after cancels
    /// overflowed the mailbox (again later if the store did not answer).
    cancels_recheck: Option<Instant>,
    maybe_work: bool,
    worker_threads: Vec<JoinHandle<()>>,
}

impl Dispatcher {
    fn run(mut self, control: Receiver<Control>) {
        let mut shutdown: Option<(Instant, Sender<()>)> = None;
        // Runs left queued by an earlier process (or put back by recovery)
        // wait for no wake-up: claim them before the first message.
        self.claim();
        loop {
            let next_due = [
                // A due retry waits for a free slot, which a message brings.
                self.retries
                    .peek()
                    .filter(|_| self.busy() < self.capacity)
                    .map(|due| due.0),
                self.finish_retries.peek().map(|due| due.0),
                self.cancel_deadlines.peek().map(|due| due.0),
                self.cancels_recheck,
                shutdown.as_ref().map(|(deadline, _)| *deadline),
            ]
            .into_iter()
            .flatten()
            .min();
            let message = match next_due {
                Some(due) => control.recv_timeout(due.saturating_duration_since(Instant::now())),
                None => control.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match message {
                Ok(message) => {
                    if let Some(answer) = self.handle(message) {
                        shutdown = Some(answer);
                    }
                    // Take every message already waiting before claiming,
                    // so one claim covers many freed slots.
                    for message in control.try_iter() {
                        if let Some(answer) = self.handle(message) {
                            shutdown = Some(answer);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.read_mailbox();
            let now = Instant::now();
            self.recheck_cancels(now);
            self.fire_cancel_deadlines(now);
            if let Some((deadline, _)) = &shutdown {
                // Runs waiting out a backoff are not resumed while stopping,
                // so waiting for them would only run the grace period out:
                // they are requeued now with the rest.
                let stopping_now = self.busy() == 0 || now >= *deadline;
                if stopping_now {
                    let (_, done) = shutdown.take().expect("checked above");
                    self.requeue_outstanding();
                    let _ = done.send(());
                    break;
                }
                // While stopping, backoffs are not resumed: they are requeued.
                continue;
            }
            self.fire_retries(now);
            self.fire_finish_retries(now);
            self.claim();
        }
        // Let idle workers see the closed channel and exit. A worker stuck
        // in a processor that ignores its cancel flag is not waited for.
        self.jobs = None;
        for thread in self.worker_threads.drain(..) {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }

    /// Handles one message; answers the shutdown deadline when asked to stop.
    fn handle(&mut self, message: Control) -> Option<(Instant, Sender<()>)> {
        match message {
            // The mailbox is read after every batch of messages.
            Control::Doorbell => {}
            Control::Done { run_seq } => {
                if let Some(processor) = self.outstanding.remove(&run_seq) {
                    if let Some(count) = self.by_processor.get_mut(&processor) {
                        *count = count.saturating_sub(1);
                    }
                }
                self.tokens.lock().remove(&run_seq);
                self.maybe_work = true;
            }
            Control::Retry { job, due } => self.retries.push(Due(due, job)),
            Control::RetryFinish {
                run_seq,
                finish,
                due,
            } => self.finish_retries.push(Due(due, (run_seq, finish))),
            Control::Shutdown { grace, done } => {
                self.maybe_work = false;
                return Some((Instant::now() + grace, done));
            }
        }
        None
    }

    /// Takes what the mailbox holds (see [`Mailbox`]).
    fn read_mailbox(&mut self) {
        if !self.mailbox.rung.swap(false, Ordering::SeqCst) {
            return;
        }
        if self.mailbox.wake.swap(false, Ordering::SeqCst) {
            self.maybe_work = true;
        }
        let cancels = std::mem::take(&mut *self.mailbox.cancels.lock());
        // Paired with `Scheduler::cancel`'s bound where it is written.
        assert!(
            cancels.run_seqs.len() <= SCHEDULER_CANCELS_QUEUED_MAX,
            "the cancel queue is bounded"
        );
        if cancels.overflowed {
            self.cancels_recheck = Some(Instant::now());
        }
        self.cancelled(cancels.run_seqs);
    }

    /// After cancels overflowed the mailbox: the runs the store says are
    /// `cancelling` are the ones whose cancel may have been dropped.
    fn recheck_cancels(&mut self, now: Instant) {
        if self.cancels_recheck.is_none_or(|due| due > now) {
            return;
        }
        match self.store.cancelling_runs() {
            Ok(run_seqs) => {
                self.cancels_recheck = None;
                self.cancelled(run_seqs);
            }
            Err(error) => {
                eprintln!("taskyard: finding the cancelled runs failed: {error}");
                self.cancels_recheck = Some(now + FINISH_RETRY_AFTER);
            }
        }
    }

    /// Cancelled runs: raise their flags and start their grace periods.
    fn cancelled(&mut self, run_seqs: Vec<i64>) {
        if run_seqs.is_empty() {
            return;
        }
        let deadline = Instant::now() + self.config.cancel_grace;
        let tokens = self.tokens.lock();
        for seq in run_seqs {
            // A cancel that committed between a claim's commit and the
            // token's creation found no token to raise; raise it here,
            // where every claimed run has one.
            if let Some(token) = tokens.get(&seq) {
                token.cancel();
            }
            if self.outstanding.contains_key(&seq) {
                self.cancel_deadlines.push(Due(deadline, seq));
            }
        }
    }

    /// Marks `cancelled` the cancelled runs whose processor did not return
    /// within the grace period; the processor's late finish is ignored.
    fn fire_cancel_deadlines(&mut self, now: Instant) {
        while self.cancel_deadlines.peek().is_some_and(|due| due.0 <= now) {
            let Due(_, run_seq) = self.cancel_deadlines.pop().expect("peeked");
            if self.outstanding.contains_key(&run_seq) {
                let _ = self.store.writer.submit(Op::Finish {
                    run_seq,
                    finish: Finish::Cancelled,
                    reply: Box::new(|_| {}),
                });
            }
        }
    }

    fn fire_finish_retries(&mut self, now: Instant) {
        while self.finish_retries.peek().is_some_and(|due| due.0 <= now) {
            let Due(_, (run_seq, finish)) = self.finish_retries.pop().expect("peeked");
            submit_finish(&self.store, &self.control, run_seq, finish);
        }
    }

    fn fire_retries(&mut self, now: Instant) {
        // Within the capacity, so that the send below finds the bounded
        // job channel with room and never blocks the dispatcher.
        while self.busy() < self.capacity && self.retries.peek().is_some_and(|due| due.0 <= now) {
            let Due(_, job) = self.retries.pop().expect("peeked");
            if job.token.is_cancelled() {
                self.finish_without_worker(job.run.seq, Finish::Cancelled);
            } else if let Some(jobs) = &self.jobs {
                // The slot is already counted in `outstanding`.
                let _ = jobs.send(job);
            }
        }
    }

    /// Queues a finish whose durability frees the run's slot.
    fn finish_without_worker(&self, run_seq: i64, finish: Finish) {
        submit_finish(&self.store, &self.control, run_seq, finish);
    }

    /// Claimed runs that hold a worker or wait for one. Runs waiting out a
    /// retry backoff hold none: counting them would leave the workers idle
    /// while runs wait in the queue (found by tests/crash_http.rs).
    fn busy(&self) -> usize {
        self.outstanding.len().saturating_sub(self.retries.len())
    }

    fn claim(&mut self) {
        while self.maybe_work && self.busy() < self.capacity {
            let max = (self.capacity - self.busy()).min(CLAIM_BATCH_MAX);
            // Only processors whose headroom could run out in this batch
            // need a budget; the rest cannot exceed their limit.
            let budgets: HashMap<String, usize> = self
                .registry
                .iter()
                .map(|config| {
                    let active = self.by_processor.get(&config.name).copied().unwrap_or(0);
                    (
                        config.name.clone(),
                        config.max_concurrency.saturating_sub(active),
                    )
                })
                .filter(|(_, headroom)| *headroom < max)
                .collect();
            let claimed = match self.store.writer.call(|reply| Op::Claim {
                max,
                budgets,
                reply,
            }) {
                Ok(claimed) => claimed,
                Err(error) => {
                    // The store is busy or full: try again on the next wake.
                    eprintln!("taskyard: claiming runs failed: {error}");
                    self.maybe_work = false;
                    return;
                }
            };
            // Fewer than asked: the queue is empty, or what is left waits
            // for a processor's headroom, which only a finish brings back.
            if claimed.len() < max {
                self.maybe_work = false;
            }
            for run in claimed {
                *self.by_processor.entry(run.processor.clone()).or_default() += 1;
                self.outstanding.insert(run.seq, run.processor.clone());
                let token = Arc::new(CancelToken::new());
                self.tokens.lock().insert(run.seq, token.clone());
                let job = Job {
                    run,
                    token,
                    retry: false,
                };
                if let Some(jobs) = &self.jobs {
                    let _ = jobs.send(job);
                }
            }
        }
    }

    /// Shutdown: what is still outstanding goes back to the queue. The runs
    /// are requeued before their processors are told to stop, so that a
    /// processor's answer to the stop (a cancelled finish) finds the run
    /// queued and is ignored, instead of cancelling it.
    fn requeue_outstanding(&mut self) {
        let run_seqs: Vec<i64> = self.outstanding.keys().copied().collect();
        for run_seq in run_seqs {
            let _ = self.store.writer.call(|reply| Op::Finish {
                run_seq,
                finish: Finish::Requeue,
                reply,
            });
        }
        for token in self.tokens.lock().values() {
            token.cancel();
        }
    }
}

struct Worker {
    store: Arc<Store>,
    registry: Arc<Registry>,
    schemas: Arc<SchemaCache>,
    control: Sender<Control>,
}

/// What one attempt came to.
enum Attempt {
    Finished(Finish),
    Transient(String),
}

impl Worker {
    fn attempt(&self, job: Job) {
        let run_seq = job.run.seq;
        if job.retry {
            match self.store.writer.call(|reply| Op::StartAttempt {
                run_seq,
                attempt: job.run.attempt,
                reply,
            }) {
                Ok(RunStatus::Running) => {}
                // Cancelled or finished meanwhile: end it without running.
                _ => return self.finish(run_seq, Finish::Cancelled),
            }
        }
        match self.execute(&job) {
            Attempt::Finished(finish) => self.finish(run_seq, finish),
            Attempt::Transient(message) => self.retry_or_fail(job, message),
        }
    }

    fn finish(&self, run_seq: i64, finish: Finish) {
        submit_finish(&self.store, &self.control, run_seq, finish);
    }

    fn retry_or_fail(&self, mut job: Job, message: String) {
        let attempt = job.run.attempt;
        if attempt >= job.run.max_attempts {
            let error = RunError::new(
                message,
                Some(serde_json::json!({"attempts": attempt, "transient": true})),
            );
            return self.finish(job.run.seq, Finish::Failed { error });
        }
        let warning = Warning {
            kind: "warning".into(),
            message: format!("attempt {attempt} failed and will be retried: {message}"),
            detail: Some(serde_json::json!({"attempt": attempt})),
        };
        let _ = self.store.writer.call(|reply| Op::Warn {
            run_seq: job.run.seq,
            warning,
            reply,
        });
        let due = Instant::now() + backoff(&job.run.id, attempt);
        job.run.attempt += 1;
        job.retry = true;
        let _ = self.control.send(Control::Retry { job, due });
    }

    fn execute(&self, job: &Job) -> Attempt {
        let run = &job.run;
        if job.token.is_cancelled() {
            return Attempt::Finished(Finish::Cancelled);
        }
        let parsed = parse_claimed(run);
        let (input, task_spec, metadata) = match parsed {
            Ok(parsed) => parsed,
            Err(message) => return failed(message, None),
        };
        let controls = forcing::read(metadata.as_ref());
        if controls.delay_ms > 0 && job.token.wait(Duration::from_millis(controls.delay_ms)) {
            return Attempt::Finished(Finish::Cancelled);
        }
        if run.attempt <= controls.fail_times {
            return Attempt::Transient(format!(
                "forced transient failure {} of {} (mock_fail_times)",
                run.attempt, controls.fail_times
            ));
        }
        if let Some(message) = controls.fail {
            return failed(message, None);
        }
        let Some(config) = self.registry.get(&run.processor) else {
            return failed(
                format!("processor '{}' is no longer configured", run.processor),
                None,
            );
        };
        let progress = Progress {
            store: &self.store,
            run_seq: run.seq,
            enabled: run.enable_events,
        };
        let context = RunContext {
            run_id: &run.id,
            processor: &run.processor,
            input: &input,
            task_spec: &task_spec,
            metadata: metadata.as_ref(),
            attempt: run.attempt,
            cancel: &job.token,
            progress: &progress,
        };
        // A panicking processor fails its run, never the worker thread.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            config.processor.run(&context)
        }));
        if job.token.is_cancelled() {
            return Attempt::Finished(Finish::Cancelled);
        }
        match outcome {
            Ok(Ok(output)) => match self.check_output(&output, &task_spec) {
                Ok(()) => Attempt::Finished(Finish::Completed {
                    output: to_json(&output),
                }),
                Err(message) => failed(message, None),
            },
            Ok(Err(ProcessorError::Transient(message))) => Attempt::Transient(message),
            Ok(Err(ProcessorError::Permanent(message))) => failed(message, None),
            Err(_) => failed(format!("processor '{}' panicked", run.processor), None),
        }
    }

    /// Output must fit the task spec before a run is marked completed.
    fn check_output(&self, output: &Output, task_spec: &TaskSpec) -> Result<(), String> {
        match (SchemaKind::of(&task_spec.output_schema), &output.content) {
            (SchemaKind::Json(json_schema), Content::Json(content)) => {
                let validator = self
                    .schemas
                    .compile(json_schema)
                    .map_err(|message| format!("output schema does not compile: {message}"))?;
                match first_violation(&validator, &Value::Object(content.clone())) {
                    None => Ok(()),
                    Some(violation) => Err(format!(
                        "output does not match the output schema: {violation}"
                    )),
                }
            }
            (SchemaKind::Json(_), Content::Text(_)) => {
                Err("processor returned text where the output schema is json".into())
            }
            (SchemaKind::Text(_), Content::Json(_)) => {
                Err("processor returned json where the output schema is text".into())
            }
            _ => Ok(()),
        }
    }
}

/// How long a finish the store refused waits before it is sent again.
const FINISH_RETRY_AFTER: Duration = Duration::from_millis(500);

/// Queues a finish. Once durable, the run's slot is freed; when the store
/// cannot take it now (busy, full), it is tried again later, so that the
/// run is finished once space or the lock returns; when the store is
/// closed (shutdown), the slot is freed and recovery finishes the run.
fn submit_finish(store: &Store, control: &Sender<Control>, run_seq: i64, finish: Finish) {
    let retry = finish.clone();
    let control_reply = control.clone();
    let submitted = store.writer.submit(Op::Finish {
        run_seq,
        finish,
        reply: Box::new(move |result| {
            let message = match result {
                Err(crate::store::Error::Busy(_) | crate::store::Error::Full(_)) => {
                    Control::RetryFinish {
                        run_seq,
                        finish: retry,
                        due: Instant::now() + FINISH_RETRY_AFTER,
                    }
                }
                _ => Control::Done { run_seq },
            };
            let _ = control_reply.send(message);
        }),
    });
    if submitted.is_err() {
        let _ = control.send(Control::Done { run_seq });
    }
}

fn failed(message: String, detail: Option<Value>) -> Attempt {
    Attempt::Finished(Finish::Failed {
        error: RunError::new(message, detail),
    })
}

type Parsed = (Value, TaskSpec, Option<JsonObject>);

fn parse_claimed(run: &ClaimedRun) -> Result<Parsed, String> {
    let input: Value = serde_json::from_str(&run.input)
        .map_err(|e| format!("stored run input does not decode: {e}"))?;
    let task_spec: TaskSpec = serde_json::from_str(&run.task_spec)
        .map_err(|e| format!("stored task spec does not decode: {e}"))?;
    let metadata: Option<JsonObject> = match &run.metadata {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| format!("stored metadata does not decode: {e}"))?,
        ),
        None => None,
    };
    Ok((input, task_spec, metadata))
}

/// Backoff before attempt `attempt + 1`: 100 ms doubling, at most 5 s
/// (spec 10.9), less up to a quarter of jitter drawn from the run id so that
/// runs failing together do not retry in lock-step.
fn backoff(run_id: &str, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let base_ms = (RETRY_BACKOFF_MS_BASE << exponent).min(RETRY_BACKOFF_MS_MAX);
    let draw = crate::processors::fnv1a(&[run_id.as_bytes(), &attempt.to_le_bytes()]);
    let jitter_ms = draw % (base_ms / 4 + 1);
    Duration::from_millis(base_ms - jitter_ms)
}

/// Writes a running run's progress reports when its events are enabled.
struct Progress<'a> {
    store: &'a Store,
    run_seq: i64,
    enabled: bool,
}

impl ProgressSink for Progress<'_> {
    fn message(&self, kind: ProgressKind, message: &str) {
        if !self.enabled {
            return;
        }
        let data = EventData::Progress {
            progress: kind,
            message: message.to_string(),
            at: Timestamp::now(),
        };
        let _ = self.store.writer.call(|reply| Op::Progress {
            run_seq: self.run_seq,
            data,
            reply,
        });
    }

    fn stats(&self, meter: f64, counters: &[(&str, u64)]) {
        if !self.enabled || !(0.0..=100.0).contains(&meter) {
            return;
        }
        let counters: BTreeMap<String, u64> = counters
            .iter()
            .map(|(name, count)| (name.to_string(), *count))
            .collect();
        let _ = self.store.writer.call(|reply| Op::Progress {
            run_seq: self.run_seq,
            data: EventData::Stats { meter, counters },
            reply,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        for attempt in 1..=10 {
            let nominal = (RETRY_BACKOFF_MS_BASE << (attempt - 1)).min(RETRY_BACKOFF_MS_MAX);
            let wait = backoff("0123456789abcdef0123456789abcdef", attempt).as_millis() as u64;
            assert!(
                wait <= nominal && wait >= nominal - nominal / 4,
                "{attempt}: {wait}"
            );
        }
    }
}
