//! The dispatcher thread: claims queued runs from the store within the
//! worker capacity and each processor's `max_concurrency`, hands them to
//! the workers, fires retries and cancel deadlines, frees a run's slot once
//! its finish is durable, and drives a graceful shutdown.
//!
//! Talks to the store only through ops; never SQL, never a face.

use super::*;
use crate::limits::WORKER_EXIT_WAIT_MS_MAX;

/// A due time in a min-heap.
pub(super) struct Due<T>(Instant, T);

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

pub(super) struct Dispatcher {
    pub(super) store: Arc<Store>,
    pub(super) registry: Arc<Registry>,
    pub(super) config: SchedulerConfig,
    /// Dropped at shutdown so that idle workers exit.
    pub(super) jobs: Option<Sender<Job>>,
    pub(super) control: Sender<Control>,
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) tokens: Arc<Mutex<HashMap<i64, Arc<CancelToken>>>>,
    /// Attempts claimed and not yet durably finished, at most:
    /// [`CLAIM_SLOTS_PER_WORKER`] per worker.
    pub(super) capacity: usize,
    /// Runs claimed and not yet durably finished, with their processor;
    /// those in `retries` included.
    pub(super) outstanding: HashMap<i64, String>,
    pub(super) by_processor: HashMap<String, usize>,
    pub(super) retries: BinaryHeap<Due<Job>>,
    pub(super) finish_retries: BinaryHeap<Due<(i64, Finish)>>,
    pub(super) cancel_deadlines: BinaryHeap<Due<i64>>,
    /// When to ask the store which runs are cancelling, after cancels
    /// overflowed the mailbox (again later if the store did not answer).
    pub(super) cancels_recheck: Option<Instant>,
    pub(super) maybe_work: bool,
    pub(super) worker_threads: Vec<JoinHandle<()>>,
}

impl Dispatcher {
    pub(super) fn run(mut self, control: Receiver<Control>) {
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
        // Let idle workers see the closed channel and exit, and wait for
        // them, so that none holds the store after a shutdown returns. A
        // worker stuck in a processor that ignores its cancel flag is not
        // waited for past WORKER_EXIT_WAIT_MS_MAX.
        self.jobs = None;
        let deadline = Instant::now() + Duration::from_millis(WORKER_EXIT_WAIT_MS_MAX);
        let mut pause = Duration::from_micros(100);
        while !self.worker_threads.is_empty() && Instant::now() < deadline {
            let (finished, running): (Vec<_>, Vec<_>) = self
                .worker_threads
                .drain(..)
                .partition(|thread| thread.is_finished());
            for thread in finished {
                let _ = thread.join();
            }
            self.worker_threads = running;
            if !self.worker_threads.is_empty() {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
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
            let limits: HashMap<String, usize> = self
                .registry
                .iter()
                .map(|config| (config.name.clone(), config.max_concurrency))
                .collect();
            let claimed = match self.store.writer.call(|reply| Op::Claim {
                max,
                budgets,
                limits,
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
