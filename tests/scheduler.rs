//! The scheduler as a user sees it: cancellation, retries, concurrency
//! limits, FIFO order, graceful shutdown and recovery on open.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use support::*;
use taskyard::faces::parallel::wire::{AddRuns, RunInput};
use taskyard::model::Output;
use taskyard::processors::{EchoProcessor, Processor, ProcessorConfig, ProcessorError, RunContext};
use taskyard::{Config, Error, RunStatus};

fn slow(ms: u64) -> taskyard::JsonObject {
    metadata(json!({ "mock_delay_ms": ms }))
}

#[test]
fn cancelling_a_queued_run_cancels_it_at_once() {
    let dir = TestDir::new();
    // One worker busy with a long run keeps the next one queued.
    let engine = open_with(&dir, with_workers(1));
    let blocker = engine
        .create_run(RunInput::new("block", "echo").with_metadata(slow(60_000)))
        .expect("run");
    let queued = engine
        .create_run(RunInput::new("wait", "echo"))
        .expect("run");
    wait_for("blocker running", Duration::from_secs(10), || {
        engine.get_run(&blocker.run_id).expect("run").status == RunStatus::Running
    });
    // With one worker and a prefetch of two, the second run may already be
    // claimed; a third certainly waits in the queue.
    let third = engine
        .create_run(RunInput::new("third", "echo"))
        .expect("run");
    let _ = queued;
    let cancelled = engine.cancel_run(&third.run_id).expect("cancel");
    assert!(
        matches!(
            cancelled.status,
            RunStatus::Cancelled | RunStatus::Cancelling
        ),
        "{:?}",
        cancelled.status
    );
    engine.cancel_run(&blocker.run_id).expect("cancel blocker");
    for run_id in [&blocker.run_id, &third.run_id] {
        let result = engine.wait_for_result(run_id, Duration::from_secs(10));
        assert!(
            matches!(result, Err(Error::RunCancelled { .. })),
            "{result:?}"
        );
    }
    // Cancelling again is a no-op; cancelling a completed run is a conflict.
    let again = engine.cancel_run(&third.run_id).expect("cancel again");
    assert_eq!(again.status, RunStatus::Cancelled);
    let done = engine
        .create_run(RunInput::new("quick", "echo"))
        .expect("run");
    engine
        .wait_for_result(&done.run_id, Duration::from_secs(10))
        .expect("completes");
    assert!(matches!(
        engine.cancel_run(&done.run_id),
        Err(Error::Conflict {
            status: RunStatus::Completed,
            ..
        })
    ));
}

#[test]
fn a_queued_run_cancelled_before_any_worker_is_free_never_runs() {
    let dir = TestDir::new();
    let engine = open_with(&dir, with_workers(1));
    // More blockers than one worker's claim slots (four: one running, the
    // rest waiting for the worker in memory), so that the victim stays in
    // the database's queue behind them.
    let blockers: Vec<_> = (0..8)
        .map(|_| {
            engine
                .create_run(RunInput::new("b", "echo").with_metadata(slow(60_000)))
                .expect("run")
        })
        .collect();
    let victim = engine.create_run(RunInput::new("v", "echo")).expect("run");
    let cancelled = engine.cancel_run(&victim.run_id).expect("cancel");
    assert_eq!(
        cancelled.status,
        RunStatus::Cancelled,
        "queued runs cancel at once"
    );
    let attempts: i64 = stored(&dir).int(
        "SELECT attempts FROM runs WHERE id = ?1",
        &[&(stored_id(&victim.run_id)).to_string()],
    );
    assert_eq!(attempts, 0, "the cancelled run was never attempted");
    for blocker in blockers {
        engine.cancel_run(&blocker.run_id).expect("cancel");
    }
}

#[test]
fn cancelling_a_running_run_interrupts_its_processor() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let run = engine
        .create_run(RunInput::new("long", "echo").with_metadata(slow(60_000)))
        .expect("run");
    wait_for("run running", Duration::from_secs(10), || {
        engine.get_run(&run.run_id).expect("run").status == RunStatus::Running
    });
    let cancelling = engine.cancel_run(&run.run_id).expect("cancel");
    assert!(matches!(
        cancelling.status,
        RunStatus::Cancelling | RunStatus::Cancelled
    ));
    // Far less than the 60 s delay and the 10 s grace: the flag woke it.
    let result = engine.wait_for_result(&run.run_id, Duration::from_secs(5));
    assert!(
        matches!(result, Err(Error::RunCancelled { .. })),
        "{result:?}"
    );
}

#[test]
fn cancelling_a_group_cancels_every_active_run_and_the_group_stays_open() {
    let dir = TestDir::new();
    let engine = open_with(&dir, with_workers(2));
    let group = engine.create_group(None).expect("group");
    let inputs = (0..20)
        .map(|i| json_run(&i.to_string(), "echo").with_metadata(slow(60_000)))
        .collect();
    engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect("add");
    let after = engine
        .cancel_group(&group.taskgroup_id)
        .expect("cancel group");
    assert_eq!(after.status.num_task_runs, 20);
    let events: Vec<_> = drain_group(&engine, &group.taskgroup_id, 0);
    let last = events.last().expect("events").json();
    assert_eq!(
        last["status"]["task_run_status_counts"],
        json!({"cancelled": 20})
    );
    // Still open for new runs.
    let added = engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs: vec![json_run("more", "echo")],
                default_task_spec: None,
            },
        )
        .expect("add after cancel");
    engine
        .wait_for_result(&added.run_ids[0], Duration::from_secs(10))
        .expect("completes");
}

#[test]
fn transient_failures_are_retried_up_to_the_limit() {
    let dir = TestDir::new();
    let engine = open(&dir);
    // max_attempts is 3: two forced failures then success, with two warnings.
    let recovers = engine
        .create_run(
            RunInput::new("r", "echo").with_metadata(metadata(json!({"mock_fail_times": 2}))),
        )
        .expect("run");
    let result = engine
        .wait_for_result(&recovers.run_id, Duration::from_secs(10))
        .expect("completes");
    let warnings = result.run.warnings.expect("warnings");
    assert_eq!(warnings.len(), 2);
    assert_eq!(warnings[1].detail, Some(json!({"attempt": 2})));
    // Three forced failures exhaust the attempts.
    let gives_up = engine
        .create_run(
            RunInput::new("g", "echo").with_metadata(metadata(json!({"mock_fail_times": "3"}))),
        )
        .expect("run");
    let Err(Error::RunFailed { error, .. }) =
        engine.wait_for_result(&gives_up.run_id, Duration::from_secs(10))
    else {
        panic!("expected a failed run")
    };
    assert_eq!(
        error.message,
        "forced transient failure 3 of 3 (mock_fail_times)"
    );
    assert_eq!(
        error.detail,
        Some(json!({"attempts": 3, "transient": true}))
    );
    // A permanent failure is not retried.
    let permanent = engine
        .create_run(
            RunInput::new("p", "echo")
                .with_metadata(metadata(json!({"mock_fail": "no such thing"}))),
        )
        .expect("run");
    let Err(Error::RunFailed { error, .. }) =
        engine.wait_for_result(&permanent.run_id, Duration::from_secs(10))
    else {
        panic!("expected a failed run")
    };
    assert_eq!(error.message, "no such thing");
    assert_eq!(error.detail, None);
    let attempts: i64 = stored(&dir).int(
        "SELECT attempts FROM runs WHERE id = ?1",
        &[&(stored_id(&permanent.run_id)).to_string()],
    );
    assert_eq!(attempts, 1);
}

/// Counts how many of its runs execute at once.
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Processor for Gauge {
    fn run(&self, ctx: &RunContext<'_>) -> Result<Output, ProcessorError> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        ctx.cancel.wait(Duration::from_millis(20));
        self.now.fetch_sub(1, Ordering::SeqCst);
        EchoProcessor.run(ctx)
    }
}

#[test]
fn a_processor_never_runs_more_than_its_concurrency_limit() {
    let dir = TestDir::new();
    let gauge = Arc::new(Gauge {
        now: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });
    let mut registry = taskyard::faces::default_registry();
    registry.insert(ProcessorConfig {
        max_concurrency: 3,
        ..ProcessorConfig::new("gauge", "test", gauge.clone())
    });
    let engine = open_with(
        &dir,
        Config {
            registry,
            workers: 8,
            ..taskyard::faces::default_config()
        },
    );
    let group = engine.create_group(None).expect("group");
    let inputs = (0..30).map(|i| json_run(&i.to_string(), "gauge")).collect();
    engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect("add");
    drain_group(&engine, &group.taskgroup_id, 0);
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 3);
}

/// Records the order runs start in.
struct Recorder(Mutex<Vec<String>>);

impl Processor for Recorder {
    fn run(&self, ctx: &RunContext<'_>) -> Result<Output, ProcessorError> {
        self.0
            .lock()
            .push(ctx.input["text"].as_str().unwrap_or_default().to_string());
        EchoProcessor.run(ctx)
    }
}

#[test]
fn runs_of_a_group_start_in_creation_order() {
    let dir = TestDir::new();
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let mut registry = taskyard::faces::default_registry();
    registry.insert(ProcessorConfig::new("recorder", "test", recorder.clone()));
    let engine = open_with(
        &dir,
        Config {
            registry,
            workers: 1,
            ..taskyard::faces::default_config()
        },
    );
    let group = engine.create_group(None).expect("group");
    for batch in 0..4 {
        let inputs = (0..25)
            .map(|i| json_run(&format!("{:03}", batch * 25 + i), "recorder"))
            .collect();
        engine
            .add_runs(
                &group.taskgroup_id,
                AddRuns {
                    inputs,
                    default_task_spec: None,
                },
            )
            .expect("add");
    }
    wait_for("all started", Duration::from_secs(20), || {
        recorder.0.lock().len() == 100
    });
    let order = recorder.0.lock().clone();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "one worker starts runs in creation order");
}

#[test]
fn shutdown_leaves_nothing_running() {
    let dir = TestDir::new();
    let engine = open_with(&dir, with_workers(4));
    let group = engine.create_group(None).expect("group");
    let inputs = (0..40)
        .map(|i| {
            json_run(&i.to_string(), "echo").with_metadata(slow(if i % 2 == 0 {
                60_000
            } else {
                1
            }))
        })
        .collect();
    engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect("add");
    wait_for("some running", Duration::from_secs(10), || {
        let status = engine.get_group(&group.taskgroup_id).expect("group").status;
        status.task_run_status_counts.get("running").is_some()
    });
    engine.shutdown(Duration::from_millis(200));
    let db = stored(&dir);
    let running: i64 = db.int(
        "SELECT count(*) FROM runs WHERE status IN ('running', 'cancelling')",
        &[],
    );
    assert_eq!(running, 0, "shutdown left runs running");
    let queued: i64 = db.int("SELECT count(*) FROM runs WHERE status = 'queued'", &[]);
    assert!(
        queued > 0,
        "interrupted and unstarted runs wait in the queue"
    );
    // Calls after shutdown are refused, not hung.
    assert!(matches!(
        engine.create_group(None),
        Err(Error::Unavailable(_))
    ));
    drop(engine);

    // Reopening picks the queue up again; the long runs get cancelled.
    let engine = open(&dir);
    engine.cancel_group(&group.taskgroup_id).expect("cancel");
    drain_group(&engine, &group.taskgroup_id, 0);
    let status = engine.get_group(&group.taskgroup_id).expect("group").status;
    assert_eq!(status.num_task_runs, 40);
    assert!(!status.is_active);
}

#[test]
fn shutdown_does_not_wait_out_the_grace_period_for_a_run_in_backoff() {
    let dir = TestDir::new();
    // Nine forced failures with ten attempts: the run spends seconds in
    // growing backoffs (100 ms doubling up to 5 s), and almost no time in
    // its instant attempts.
    let mut registry = taskyard::faces::default_registry();
    registry.insert(ProcessorConfig {
        max_attempts: 10,
        ..ProcessorConfig::new("patient", "echo", Arc::new(EchoProcessor))
    });
    let engine = open_with(
        &dir,
        Config {
            registry,
            ..taskyard::faces::default_config()
        },
    );
    let run = engine
        .create_run(
            RunInput::new("r", "patient").with_metadata(metadata(json!({"mock_fail_times": 9}))),
        )
        .expect("run");
    wait_for("a first failure", Duration::from_secs(10), || {
        engine
            .get_run(&run.run_id)
            .expect("run")
            .warnings
            .is_some_and(|warnings| !warnings.is_empty())
    });
    let started = std::time::Instant::now();
    engine.shutdown(Duration::from_secs(60));
    // Nothing executes: the shutdown ends well before the grace period.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "shutdown waited {:?} for a run in backoff",
        started.elapsed()
    );
    let status: String = stored(&dir)
        .text("SELECT status FROM runs", &[])
        .expect("status");
    assert_eq!(
        status, "queued",
        "the run in backoff goes back to the queue"
    );
}

#[test]
fn recovery_requeues_interrupted_runs_or_fails_them_when_out_of_attempts() {
    let dir = TestDir::new();
    let engine = open_with(&dir, with_workers(1));
    let group = engine.create_group(None).expect("group");
    let inputs = (0..3)
        .map(|i| json_run(&i.to_string(), "echo").with_metadata(slow(60_000)))
        .collect();
    let added = engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect("add");
    engine.shutdown(Duration::ZERO);
    drop(engine);
    // Forge what a crash leaves: runs marked running, one out of attempts,
    // one cancelling (counts adjusted as the writer would have).
    let db = stored(&dir);
    db.execute_batch(&format!(
        "UPDATE runs SET status = 'running', attempts = 1 WHERE id = '{0}';
         UPDATE runs SET status = 'running', attempts = 3 WHERE id = '{1}';
         UPDATE runs SET status = 'cancelling', attempts = 1 WHERE id = '{2}';
         UPDATE groups SET n_queued = 0, n_running = 2, n_cancelling = 1;",
        stored_id(&added.run_ids[0]),
        stored_id(&added.run_ids[1]),
        stored_id(&added.run_ids[2])
    ));
    drop(db);
    let engine = open_with(&dir, with_workers(1));
    let recovered = engine.recovered();
    assert_eq!(
        (recovered.requeued, recovered.failed, recovered.cancelled),
        (1, 1, 1)
    );
    assert!(matches!(
        engine.get_run(&added.run_ids[1]).expect("run").status,
        RunStatus::Failed
    ));
    assert_eq!(
        engine.get_run(&added.run_ids[2]).expect("run").status,
        RunStatus::Cancelled
    );
    let requeued = engine.get_run(&added.run_ids[0]).expect("run").status;
    assert!(
        matches!(requeued, RunStatus::Queued | RunStatus::Running),
        "{requeued:?}"
    );
    let counts = engine
        .get_group(&group.taskgroup_id)
        .expect("group")
        .status
        .task_run_status_counts;
    assert_eq!(counts.get("failed"), Some(&json!(1)));
    assert_eq!(counts.get("cancelled"), Some(&json!(1)));
    engine.cancel_run(&added.run_ids[0]).expect("cancel");
}

/// What each thread allocated and has not freed itself, for the burst test
/// below: a queue that grows on every call shows as bytes its caller's
/// thread allocated and another thread will free.
mod thread_bytes {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static NET: Cell<i64> = const { Cell::new(0) };
    }

    fn add(delta: i64) {
        // A thread being torn down has no counter left: nothing to count.
        let _ = NET.try_with(|net| net.set(net.get() + delta));
    }

    /// Bytes this thread allocated, less those it freed.
    pub fn net() -> i64 {
        NET.with(Cell::get)
    }

    // SAFETY: every call goes to `System` unchanged; only counted.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as i64);
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as i64);
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            add(-(layout.size() as i64));
            unsafe { System.dealloc(pointer, layout) }
        }

        unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as i64 - layout.size() as i64);
            unsafe { System.realloc(pointer, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: thread_bytes::Counting = thread_bytes::Counting;

/// A processor that ignores its cancel flag: it says it started, then
/// returns only when released (or after a minute, so that a failing test
/// does not keep a thread forever).
struct Stuck {
    started: Mutex<std::sync::mpsc::Sender<()>>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Processor for Stuck {
    fn run(&self, ctx: &RunContext<'_>) -> Result<Output, ProcessorError> {
        let _ = self.started.lock().send(());
        let _ = self.release.lock().recv_timeout(Duration::from_secs(60));
        EchoProcessor.run(ctx)
    }
}

/// Regression (issue 11, bug 7): the scheduler's control channel was
/// unbounded: wake-ups and cancels sent while the dispatcher was busy (here,
/// waiting on a writer that is stalled) queued one message each, without
/// limit. Now wake-ups collapse into one and cancels wait in a bounded
/// queue; past it the dispatcher asks the store which runs are
/// cancelling, so that none is lost. A burst of 200,000 calls must return
/// at once, leave no growing queue behind, and the one real cancel in it
/// must still end its run after the grace period.
#[test]
fn scheduler_wake_and_cancel_burst_stays_bounded_and_loses_no_cancel() {
    use std::sync::mpsc;

    use taskyard::scheduler::{Scheduler, SchedulerConfig};
    use taskyard::schema::SchemaCache;
    use taskyard::store::{self, NewRun, Once, Op, Store};

    const BURST: i64 = 100_000;
    /// Far more than the bounded queue would hold, far less than a queue
    /// of one message per call.
    const BURST_BYTES_MAX: i64 = 1 << 20;

    let dir = TestDir::new();
    let (store, _) = Store::open(
        &dir.db().into(),
        &store::Options::default(),
        Box::new(|_| {}),
    )
    .expect("store opens");
    let store = Arc::new(store);
    let (started_sender, started) = mpsc::channel();
    let (release_sender, release) = mpsc::channel();
    let mut registry = taskyard::faces::default_registry();
    registry.insert(ProcessorConfig::new(
        "stuck",
        "test",
        Arc::new(Stuck {
            started: Mutex::new(started_sender),
            release: Mutex::new(release),
        }),
    ));
    let scheduler = Arc::new(
        Scheduler::start(
            store.clone(),
            Arc::new(registry),
            Arc::new(SchemaCache::default()),
            SchedulerConfig {
                workers: 1,
                cancel_grace: Duration::from_millis(100),
            },
        )
        .expect("scheduler starts"),
    );
    let create = |processor: &str| {
        let run = NewRun {
            id: taskyard::model::new_id(),
            processor: processor.to_string(),
            input: "\"x\"".to_string(),
            document: None,
            task_spec: taskyard::model::to_json(&taskyard::TaskSpec::auto()),
            default_spec: false,
            metadata: None,
            enable_events: false,
            max_attempts: 1,
            warnings: None,
            webhook: None,
            previous_id: None,
            interaction: None,
            skip_while_active: false,
            index: None,
        };
        let created = store
            .writer
            .call(|reply| Op::CreateRun {
                run,
                once: None,
                reply,
            })
            .expect("run created");
        scheduler.wake();
        let run = match created {
            Once::Fresh { value, .. } => value,
            Once::Replay { .. } => panic!("no key, no replay"),
        };
        // The row, for its seq.
        store.run(&run.id).expect("read").expect("row")
    };
    let status = |run_id: &str| store.run(run_id).expect("read").expect("row").status;

    let stuck = create("stuck");
    started
        .recv_timeout(Duration::from_secs(10))
        .expect("the stuck run starts");
    let cancel = store
        .writer
        .call(|reply| Op::CancelRun {
            run_id: stuck.id.clone(),
            reply,
        })
        .expect("cancel committed");
    assert_eq!(cancel.run.status, RunStatus::Cancelling);

    // Stall the writer in a reply, then wake the dispatcher: it claims,
    // and waits for the writer with everything sent to it queued.
    let (stalled_sender, stalled) = mpsc::channel();
    let (unstall_sender, unstall) = mpsc::channel::<()>();
    store
        .writer
        .submit(Op::Warn {
            run_seq: stuck.seq,
            warning: taskyard::model::Warning {
                kind: "warning".into(),
                message: "stalls the writer".into(),
                detail: None,
            },
            reply: Box::new(move |_| {
                let _ = stalled_sender.send(());
                let _ = unstall.recv_timeout(Duration::from_secs(60));
            }),
        })
        .expect("submitted");
    stalled
        .recv_timeout(Duration::from_secs(10))
        .expect("the writer stalls");
    scheduler.wake();

    let (burst_sender, burst) = mpsc::channel();
    {
        let scheduler = scheduler.clone();
        let run_seq = stuck.seq;
        std::thread::spawn(move || {
            let before = thread_bytes::net();
            for index in 0..BURST {
                scheduler.wake();
                // Runs that do not exist: cancels of runs that finished
                // meanwhile look the same to the scheduler.
                scheduler.cancel(vec![1_000_000_000 + index]);
            }
            // The real one last, when the queue is surely full.
            scheduler.cancel(vec![run_seq]);
            let _ = burst_sender.send(thread_bytes::net() - before);
        });
    }
    let burst_bytes = burst
        .recv_timeout(Duration::from_secs(30))
        .expect("the burst returns without blocking");
    // Let the writer and the dispatcher go before any assertion, so that a
    // failing test still stops.
    let _ = unstall_sender.send(());
    assert!(
        burst_bytes < BURST_BYTES_MAX,
        "{} calls left {burst_bytes} bytes queued",
        2 * BURST + 1
    );

    wait_for(
        "the stuck run cancelled after its grace period",
        Duration::from_secs(10),
        || status(&stuck.id) == RunStatus::Cancelled,
    );
    // Still scheduling: once the worker is back, a new run completes.
    let _ = release_sender.send(());
    let after = create("echo");
    wait_for(
        "a run after the burst completes",
        Duration::from_secs(10),
        || status(&after.id) == RunStatus::Completed,
    );
    scheduler.shutdown(Duration::from_secs(5));
    store.writer.stop();
}
