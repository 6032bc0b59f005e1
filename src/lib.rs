//! taskyard: an embedded engine that runs groups of tasks, keeps every run,
//! every state change and an append-only event log in SQLite, and speaks
//! the wire format of Parallel's Task API.
//!
//! # Layout
//!
//! The dependency direction is `engine` → `scheduler`, `events`, `store` →
//! `model`; processors see `model` and their run context only.
//!
//! - [`model`]: the wire nouns (Run, Group, TaskSpec, Output, Event). No I/O.
//! - [`limits`]: every enforced limit, named; errors cite these names.
//! - [`validate`]: request shapes and semantic checks; errors name the field.
//! - [`schema`]: JSON Schema compilation (cached) and instance validation.
//! - [`store`]: the only module that speaks SQL. One writer thread commits
//!   the requests that arrived together in one transaction (group commit);
//!   reads use a pool of read-only connections. `schema.sql` is the schema.
//! - [`events`]: the hub. After each commit it publishes the new high-water
//!   event id and keeps the last events of each followed stream in a
//!   bounded window; a caught-up subscriber takes them from memory, one
//!   that is behind reads the rows from the store until it catches up.
//! - [`scheduler`]: a fixed pool of worker threads, per-processor
//!   concurrency, retries with backoff, cancellation, graceful shutdown.
//! - [`processors`]: the `Processor` trait, the registry, `mock` and `echo`.
//! - [`engine`]: the library API ([`Engine`]) that the HTTP layer and the
//!   benchmarks use, and nothing else.
//! - [`config`]: the `--config` TOML file: server settings and processors.
//! - [`http`]: Parallel's Task API over tiny_http: routes, limits, auth,
//!   SSE framing, the stream fan-out (caught-up group streams written from
//!   one thread per core with non-blocking sends), the one error map. No
//!   SQL, no scheduling; only `main` starts it.
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
pub mod validate;

pub use engine::{
    Config, Engine, Error, GroupRunsQuery, ListQuery, Next, Page, StreamKind, Subscription,
    Synchronous,
};
pub use model::*;
