//! taskyard: an embedded engine that runs groups of tasks, keeps every run,
//! every state change and an append-only event log in SQLite, and speaks
//! the wire formats of hosted task APIs ("faces") over that one engine.
//!
//! # Code map
//!
//! The dependency direction is `cli` (the binary) → [`server`] →
//! [`faces`] → [`engine`] → [`scheduler`], [`events`], [`store`] →
//! [`model`]. Processors see [`model`] and their run context only.
//!
//! - [`model`]: the engine's nouns (Run, Group, RunStatus, TaskSpec, Output
//!   with its evidence, Event, FieldError). No I/O.
//! - [`limits`]: the engine's and the server's limits, named; errors cite
//!   these names. Each face keeps its wire's limits in its folder.
//! - [`schema`]: JSON Schema compilation (cached) and instance validation.
//! - [`store`]: the only module that speaks SQL. One writer thread commits
//!   the requests that arrived together in one transaction (group commit);
//!   reads use a pool of read-only connections; `schema.sql` and the
//!   numbered migrations are the schema.
//! - [`events`]: the hub. After each commit it publishes the new high-water
//!   event id and keeps the last events of each followed stream in a
//!   bounded window; a caught-up subscriber takes them from memory, one
//!   that is behind reads the rows from the store until it catches up.
//! - [`scheduler`]: a fixed pool of worker threads, per-processor
//!   concurrency, retries with backoff, cancellation, forcing (the `mock_`
//!   metadata keys, for every processor), graceful shutdown.
//! - [`processors`]: the `Processor` trait, the registry, `mock` and `echo`.
//! - [`webhooks`]: the deliverer of the webhook outbox the store writes with
//!   each terminal status: signs (Standard Webhooks), sends, retries; what
//!   is sent is the face's rendering.
//! - [`engine`]: the library API ([`Engine`]): checks, creates (idempotent
//!   on request), reads, waits, cancels, lists, subscriptions, schedules
//!   and the timer that fires them (on an injected clock).
//! - [`faces`]: one folder per hosted API; today [`faces::parallel`]
//!   (routes, handlers, wire types, parsing, error envelope, event
//!   rendering, the OpenAPI document, and [`faces::parallel::Api`], the
//!   engine in Parallel's wire types for Rust callers),
//!   [`faces::handinger`] and [`faces::nextcloud`] (Nextcloud's OCS
//!   TaskProcessing: the OCS envelope in JSON and XML, integer task ids
//!   kept as face records).
//! - [`server`]: the HTTP server over tiny_http that every face shares:
//!   listener, auth, one route table, body limits, long-request slots, SSE
//!   frames and the stream fan-out, metrics, health.
//! - [`config`]: the `--config` TOML file: server settings, processors,
//!   and each face's own settings (`[faces.<name>]`), which the face reads.
//!
//! # Architecture invariants
//!
//! - The engine knows no face: nothing outside `faces/` and `server/` holds
//!   a face's field names, id prefixes, JSON shapes or HTTP statuses
//!   (`tests/tidy.rs` checks the names it can). Runs, outputs and events
//!   are stored in the model's form; a face renders them, and keeps what
//!   it needs to answer exactly (its request as sent) as the run's opaque
//!   document.
//! - One error type per layer (`store::Error`, `engine::Error`, a processor
//!   error), mapped once per face.
//!
//! # Invariants (DESIGN.md; each has a test in `tests/invariants.rs`)
//!
//! 1. A state change and its event are committed together or not at all.
//! 2. Event ids are strictly increasing and never reused.
//! 3. Resuming a stream from a cursor yields exactly the later events.
//! 4. A subscriber never sees an uncommitted event.
//! 5. A run reaches exactly one terminal state.
//! 6. Group counts are kept in the same transaction as each run change.
//! 7. Nothing acknowledged is lost on `kill -9`.
//! 8. A bad batch is rejected whole, naming the bad run.

pub mod config;
pub mod engine;
pub mod events;
pub mod faces;
pub mod limits;
pub mod model;
pub mod processors;
pub mod scheduler;
pub mod schema;
pub mod server;
pub mod store;
pub mod webhooks;

pub use engine::{Config, Engine, Error, Next, StreamKind, Subscription, Synchronous};
pub use model::{JsonObject, RunStatus, TaskSpec, Timestamp};
