//! The engine: the library API ([`Engine`]) every face and the benchmarks
//! use, and nothing else.
//!
//! Owns the checks every run passes, the mapping from store rows to the
//! model's nouns, subscriptions to streams, idempotent creates, and the
//! start and stop of the store, the hub and the scheduler. It holds no SQL
//! (the store does) and no face's wire: its ids are the model's, its errors
//! say what went wrong, and each face alone decides how that reads on its
//! wire and with which status.

pub mod checks;
mod error;
mod groups;
mod idempotency;
mod records;
mod retention;
mod runs;
mod schedules;
mod subscription;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::events::Hub;
use crate::model::RunStatus;
use crate::processors::Registry;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::schema::SchemaCache;
pub use crate::store::Synchronous;
use crate::store::{self, CommitNotice, Recovered, Store};
use crate::webhooks::{Deliverer, DeliveryCounts, Wake, WebhookConfig};

pub use error::{Error, Result};
pub use groups::{GroupRun, GroupRunsQuery};
pub use idempotency::{Created, Idempotency, RenderAnswer};
pub use runs::{ListQuery, Page};
pub use schedules::{Clock, ManualClock, SystemClock};
pub use subscription::{Next, StreamKind, Subscription};

/// How to run an engine.
#[derive(Clone)]
pub struct Config {
    pub synchronous: Synchronous,
    /// How long a write waits for another process's lock.
    pub busy_timeout: Duration,
    /// Read-only connections in the store's pool.
    pub read_connections: usize,
    /// Largest size of the database file, in bytes; past it creates answer
    /// `Unavailable` (storage full) and reads keep working. `None`: no cap.
    pub database_bytes_max: Option<u64>,
    /// Worker threads of the scheduler.
    pub workers: usize,
    /// Time a cancelled running run gets before it is marked cancelled.
    pub cancel_grace: Duration,
    /// The processor names served, and what serves them.
    pub registry: Registry,
    /// How webhook deliveries are signed, retried and rendered.
    pub webhooks: WebhookConfig,
    /// The clock schedules fire by (tests move a [`ManualClock`]).
    pub clock: Arc<dyn Clock>,
    /// The shortest interval a schedule may have, in seconds.
    pub schedule_interval_s_min: u64,
    /// What is pruned, by age; the default keeps everything.
    pub retention: Retention,
    /// How event ids are numbered on PostgreSQL: leave it at the default
    /// ([`store::EventIds`] says why the other exists).
    pub event_ids: store::EventIds,
}

/// How old each kind of row may grow before it is pruned; `None` keeps it
/// for good (the default: a stand-in's users expect their data to stay).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Terminal runs (and inactive groups) last changed this long ago, with
    /// their events.
    pub runs: Option<Duration>,
    /// Idempotency keys made this long ago.
    pub idempotency_keys: Option<Duration>,
    /// Delivered or expired webhook deliveries last changed this long ago.
    pub deliveries: Option<Duration>,
    /// How often the pruner looks for old rows while the writer is idle;
    /// `None`: every `PRUNE_LOOK_MS`. A write that finds the database full
    /// prunes at once, whatever this is.
    pub look_every: Option<Duration>,
}

impl Retention {
    fn is_set(&self) -> bool {
        self.runs.is_some() || self.idempotency_keys.is_some() || self.deliveries.is_some()
    }
}

impl Default for Config {
    fn default() -> Config {
        let scheduler = SchedulerConfig::default();
        let store = store::Options::default();
        Config {
            synchronous: store.synchronous,
            busy_timeout: store.busy_timeout,
            read_connections: store.read_connections,
            database_bytes_max: store.database_bytes_max,
            workers: scheduler.workers,
            cancel_grace: scheduler.cancel_grace,
            registry: Registry::with_defaults(),
            webhooks: WebhookConfig::default(),
            clock: Arc::new(SystemClock::default()),
            schedule_interval_s_min: crate::limits::SCHEDULE_INTERVAL_S_MIN,
            retention: Retention::default(),
            event_ids: store.event_ids,
        }
    }
}

/// A taskyard engine: open it on a database file, then create groups and
/// runs; a pool of workers executes them. Clones share one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    hub: Arc<Hub>,
    scheduler: Scheduler,
    registry: Arc<Registry>,
    schemas: Arc<SchemaCache>,
    recovered: Recovered,
    stopped: AtomicBool,
    deliverer: Deliverer,
    delivery_counts: Arc<DeliveryCounts>,
    webhooks: Arc<WebhookConfig>,
    timer: schedules::Timer,
    clock: Arc<dyn Clock>,
    interval_floor_s: u64,
    pruner: Option<retention::Pruner>,
}

/// An [`Engine`] handle that does not keep it open: what the engine's own
/// threads hold when they need to call it.
#[derive(Clone)]
pub struct WeakEngine(Weak<Inner>);

impl WeakEngine {
    /// The engine, unless it was dropped.
    pub fn upgrade(&self) -> Option<Engine> {
        self.0.upgrade().map(|inner| Engine { inner })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            self.timer.stop();
            if let Some(pruner) = &self.pruner {
                pruner.stop();
            }
            self.scheduler.shutdown(Duration::ZERO);
            self.deliverer.stop();
            self.store.writer.stop();
        }
    }
}

impl Engine {
    /// Opens the database at `location` (a SQLite file, created if
    /// missing, or a `postgres://` URL), recovers runs a crash left
    /// running, and starts the workers.
    pub fn open(location: impl Into<store::Location>, config: Config) -> Result<Engine> {
        let location = location.into();
        let hub = Arc::new(Hub::new(0));
        let publisher = hub.clone();
        let wake = Arc::new(Wake::default());
        let deliveries_written = wake.clone();
        // Set once the scheduler and timer run: what wakes them when other
        // nodes commit (PostgreSQL), since their own commits wake them
        // in-process.
        let others_committed: Arc<OnceLock<Box<dyn Fn() + Send + Sync>>> = Arc::default();
        let on_others = others_committed.clone();
        let options = store::Options {
            synchronous: config.synchronous,
            busy_timeout: config.busy_timeout,
            read_connections: config.read_connections,
            database_bytes_max: config.database_bytes_max,
            event_ids: config.event_ids,
        };
        let (store, recovered) = Store::open(
            &location,
            &options,
            Box::new(move |notice: &CommitNotice| {
                publisher.publish(notice);
                if notice.deliveries {
                    deliveries_written.wake();
                }
                if notice.others_upto.is_some() || notice.runs_queued {
                    if let Some(wake) = on_others.get() {
                        wake();
                    }
                }
            }),
        )
        .map_err(|error| match error {
            store::Error::Open { .. } => Error::Unavailable(error),
            other => Error::from(other),
        })?;
        let store = Arc::new(store);
        hub.publish(&CommitNotice {
            last_event_id: store.last_event_id()?,
            keys: Vec::new(),
            events: Vec::new(),
            deliveries: false,
            others_upto: None,
            runs_queued: false,
        });
        let registry = Arc::new(config.registry);
        let schemas = Arc::new(SchemaCache::default());
        let scheduler = Scheduler::start(
            store.clone(),
            registry.clone(),
            schemas.clone(),
            SchedulerConfig {
                workers: config.workers,
                cancel_grace: config.cancel_grace,
            },
        )
        .map_err(|e| Error::Internal(format!("cannot start the scheduler: {e}")))?;
        let delivery_counts = Arc::new(DeliveryCounts::default());
        let for_renderings = Arc::new(OnceLock::new());
        let deliverer = Deliverer::start(
            store.clone(),
            config.webhooks.clone(),
            delivery_counts.clone(),
            wake.clone(),
            for_renderings.clone(),
        )
        .map_err(|e| Error::Internal(format!("cannot start the webhook deliverer: {e}")))?;
        let scheduler_wake = scheduler.waker();
        let timer = schedules::Timer::start(store.clone(), config.clock.clone(), move || {
            scheduler_wake()
        })
        .map_err(|e| Error::Internal(format!("cannot start the schedule timer: {e}")))?;
        let (scheduler_wake, clock) = (scheduler.waker(), config.clock.clone());
        let _ = others_committed.set(Box::new(move || {
            // Runs queued and schedules made by other nodes.
            scheduler_wake();
            clock.notify();
        }));
        let pruner = if config.retention.is_set() {
            Some(
                retention::Pruner::start(
                    store.clone(),
                    config.retention,
                    Box::new(scheduler.waker()),
                )
                .map_err(|e| Error::Internal(format!("cannot start the pruner: {e}")))?,
            )
        } else {
            None
        };
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                hub,
                scheduler,
                registry,
                schemas,
                recovered,
                stopped: AtomicBool::new(false),
                deliverer,
                delivery_counts,
                webhooks: Arc::new(config.webhooks),
                timer,
                clock: config.clock,
                interval_floor_s: config.schedule_interval_s_min,
                pruner,
            }),
        };
        // Weak: the deliverer is the engine's, and must not keep it alive.
        let _ = for_renderings.set(engine.downgrade());
        wake.wake();
        Ok(engine)
    }

    /// A handle that does not keep the engine open.
    pub fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.inner))
    }

    /// What crash recovery changed when this engine opened.
    pub fn recovered(&self) -> Recovered {
        self.inner.recovered
    }

    /// The processor names this engine serves.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The compiled JSON Schemas the checks share.
    pub fn schemas(&self) -> &SchemaCache {
        &self.inner.schemas
    }

    /// The largest committed event id.
    pub fn last_event_id(&self) -> u64 {
        self.inner.hub.last_event_id()
    }

    /// True when the database answers a read and the writer is alive.
    pub fn health(&self) -> Result<()> {
        if !self.inner.store.writer.is_alive() {
            return Err(Error::Unavailable(store::Error::Closed));
        }
        self.inner.store.ping()?;
        Ok(())
    }
}

impl Engine {
    /// Webhook deliveries by outcome since the engine opened (metrics).
    pub fn delivery_counts(&self) -> &DeliveryCounts {
        &self.inner.delivery_counts
    }

    /// Whether a webhook may name `url` (`webhook_hosts_allowed`).
    pub fn webhook_allowed(&self, url: &str) -> bool {
        self.inner.webhooks.allows(url)
    }

    /// The delivery attempts of the webhook targets a face gave `owner`,
    /// newest first: at most `limit` after skipping `offset`, and how many
    /// there are in all.
    pub fn owner_attempts(
        &self,
        owner: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<crate::model::DeliveryAttempt>, u64)> {
        Ok(self.inner.store.owner_attempts(owner, offset, limit)?)
    }

    /// The interaction `run_id` is a turn of, if any.
    pub fn run_interaction(&self, run_id: &str) -> Result<Option<String>> {
        Ok(self.inner.store.run_interaction(run_id)?)
    }

    /// Every webhook delivery of a run, oldest first.
    pub fn run_deliveries(&self, run_id: &str) -> Result<Vec<crate::model::Delivery>> {
        self.run_row(run_id)?;
        Ok(self.inner.store.run_deliveries(run_id)?)
    }

    /// Runs by status over the whole database (metrics).
    pub fn runs_by_status(&self) -> Result<Vec<(RunStatus, u64)>> {
        Ok(self.inner.store.runs_by_status()?)
    }

    /// Stops the engine: no new attempts start, running attempts get
    /// `grace` to finish, the rest go back to `queued`; then the writer
    /// drains and stops. Later calls fail with `Unavailable`.
    pub fn shutdown(&self, grace: Duration) {
        if !self.inner.stopped.swap(true, Ordering::SeqCst) {
            self.inner.timer.stop();
            if let Some(pruner) = &self.inner.pruner {
                pruner.stop();
            }
            self.inner.scheduler.shutdown(grace);
            self.inner.deliverer.stop();
            self.inner.store.writer.stop();
            self.inner.hub.close();
        }
    }
}
