//! The limits of the engine and the server, named and documented in one
//! place; each face keeps its wire's own (`faces/parallel/limits.rs`).
//!
//! Owns the numbers only; the code that enforces a limit names it in its
//! error (`limit_exceeded` with `limit`, `max`, `got`), so a user who hits
//! one can find it here.

/// Largest request body, in bytes (spec 8, a taskyard choice): 413 past it.
pub const BODY_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Deepest nesting of a request body (spec 8): 400 past it.
pub const JSON_DEPTH_MAX: usize = 128;

/// Runs in one add-runs request (hosted limit).
pub const RUNS_PER_REQUEST_MAX: usize = 1_000;

/// Nesting of a `json_schema` (a taskyard choice): keeps schema compilation
/// and the mock generator's recursion bounded.
pub const SCHEMA_DEPTH_MAX: usize = 32;

/// Open streams at once (a taskyard choice): 503 with `retry-after` past it.
pub const STREAMS_OPEN_MAX: usize = 4_096;

/// Largest `mock_delay_ms` (one day).
pub const MOCK_DELAY_MS_MAX: u64 = 86_400_000;

/// Largest `mock_fail_times`.
pub const MOCK_FAIL_TIMES_MAX: u64 = 1_000;

/// Characters in a `mock_fail` message.
pub const MOCK_FAIL_CHARS_MAX: usize = 512;

/// Write requests the writer thread folds into one transaction. Bounds the
/// time a single commit holds the write lock and the replies it carries.
pub const WRITER_BATCH_OPS_MAX: usize = 256;

/// Write requests waiting for the writer thread; a full queue makes callers
/// wait (back-pressure), never grows memory.
pub const WRITER_QUEUE_MAX: usize = 4_096;

/// Longest a read waits for one of the store's pooled read connections, in
/// milliseconds; past it the read fails as unavailable (503 with
/// `retry-after`) instead of waiting forever. Streams of a group's runs hold
/// a connection while they write to their client, so slow clients can hold
/// every one; two seconds is longer than any read takes and short enough
/// for a client to retry.
pub const READ_CONNECTION_WAIT_MS_MAX: u64 = 2_000;

/// Event rows a stream reads from SQLite per query.
pub const STREAM_PAGE_ROWS_MAX: usize = 512;

/// Runs the scheduler claims per transaction.
pub const CLAIM_BATCH_MAX: usize = 256;

/// Runs claimed and not yet durably finished, per scheduler worker. A slot
/// is held from the claim until the finish is committed, so it covers a run
/// being executed, runs queued for a worker, and finishes waiting for their
/// commit; with two per worker, workers of a zero-latency processor waited
/// for slots while their finishes were being committed (engine bench: 19k
/// runs/s with 2, 21.5k with 4, no gain past 4). The cost: up to three
/// runs per worker show `running` while they wait in memory for a worker.
pub const CLAIM_SLOTS_PER_WORKER: usize = 4;

/// Runs whose cancel waits for the scheduler's dispatcher to start their
/// grace period. A cancel past it is not queued: the dispatcher finds every
/// `cancelling` run in the store instead, once, so no cancel is lost and
/// no caller waits (issue 11). Only runs running in this process can be
/// cancelling, so a full queue means duplicate or stale cancels.
pub const SCHEDULER_CANCELS_QUEUED_MAX: usize = 1_024;

/// Seconds between a cancel of a running run and its forced `cancelled`
/// status when the processor does not return (spec 10.1).
pub const CANCEL_GRACE_S: u64 = 10;

/// How long a stopping scheduler waits for its idle workers to exit, so
/// that a shutdown returns with no thread of the engine left holding the
/// store (a caller may then move or delete the database files). A worker
/// stuck in a processor that ignores its cancel flag is not waited for
/// past this.
pub const WORKER_EXIT_WAIT_MS_MAX: u64 = 1_000;

/// Processor attempts when a processor's configuration names none.
pub const MAX_ATTEMPTS_DEFAULT: u32 = 3;

/// First retry backoff, in milliseconds; doubles per attempt (spec 10.9).
pub const RETRY_BACKOFF_MS_BASE: u64 = 100;

/// Longest retry backoff, in milliseconds (spec 10.9).
pub const RETRY_BACKOFF_MS_MAX: u64 = 5_000;

const _: () = assert!(CLAIM_BATCH_MAX <= WRITER_QUEUE_MAX);
const _: () = assert!(CLAIM_SLOTS_PER_WORKER >= 1);
// A group cancel of every run one worker holds fits in the queue.
const _: () = assert!(SCHEDULER_CANCELS_QUEUED_MAX >= CLAIM_SLOTS_PER_WORKER);
const _: () = assert!(RUNS_PER_REQUEST_MAX >= 1);
const _: () = assert!(RETRY_BACKOFF_MS_BASE <= RETRY_BACKOFF_MS_MAX);

/// How long after the status change a webhook delivery is retried before
/// it expires, in seconds (48 h, as hosted: Parallel's spec 9).
pub const WEBHOOK_DELIVERY_S_MAX: u64 = 48 * 3_600;

/// Webhook deliveries in flight at once.
pub const WEBHOOK_DELIVERIES_CONCURRENT_MAX: usize = 4;

/// Deliveries the deliverer takes from the store per look.
pub const WEBHOOK_DELIVERIES_PER_LOOK_MAX: usize = 64;

/// Bytes of a receiver's answer read at most (it is only counted, never
/// kept), and characters of a delivery's error kept.
pub const WEBHOOK_ERROR_CHARS_MAX: usize = 512;

/// Due schedules the timer fires per look (one transaction).
pub const SCHEDULE_FIRES_PER_LOOK_MAX: usize = 256;

/// The shortest interval a schedule may have, in seconds, unless the
/// configuration sets another floor.
pub const SCHEDULE_INTERVAL_S_MIN: u64 = 1;

/// Runs (or keys, or deliveries) one prune batch removes at most: each
/// batch is one transaction that holds the writer a few milliseconds.
pub const PRUNE_ROWS_PER_BATCH: usize = 200;

/// How often the pruner looks for an idle writer and old rows, in ms.
pub const PRUNE_LOOK_MS: u64 = 200;

/// Free pages one prune batch gives back to the file system at most
/// (`PRAGMA incremental_vacuum`; 1 MiB of 4 KiB pages), for the same
/// reason its rows are bounded.
pub const PRUNE_PAGES_PER_BATCH: usize = 256;

/// Pages a prune batch may take beyond the `--db-size-max-mb` cap while it
/// runs: deleting can itself need a page (a tombstone's leaf, a b-tree
/// rebalance), and a full database that cannot prune stays full for good.
/// 64 pages of 4 KiB; the batch frees far more than it takes.
pub const PRUNE_SLACK_PAGES: u64 = 64;

/// Prune batches a write that found the database full runs before it
/// tries once more (and answers 503 if still full): up to 5,000 runs, a
/// fraction of a second, so that the request waits a bounded time.
pub const PRUNE_ROOM_BATCHES_MAX: usize = 25;

/// Times a write that found the database full makes room and tries again
/// before it answers 503 (other writes may take the room first).
pub const PRUNE_ROOM_TRIES_MAX: usize = 3;

/// Largest stdout a `command` processor's program may print as its output,
/// in bytes, unless its `output_bytes_max` says otherwise; past it the
/// program is killed and the attempt fails, so an output never exhausts
/// memory.
pub const COMMAND_OUTPUT_BYTES_MAX: usize = 1024 * 1024;

/// How much of the end of a `command` program's stderr (less its progress
/// lines) is kept for the error message, in bytes.
pub const COMMAND_STDERR_TAIL_BYTES: usize = 4096;

/// Earlier turns a follow-up run's processor sees at most (the latest,
/// oldest first): a long interaction costs each turn a bounded read.
pub const TURNS_IN_CONTEXT_MAX: usize = 32;

/// Longest reply an `openai` processor reads from its server, in bytes;
/// a longer one fails the attempt.
pub const OPENAI_REPLY_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// How long an `openai` request may take when the processor sets no
/// `timeout_ms`, in milliseconds.
pub const OPENAI_REQUEST_TIMEOUT_MS: u64 = 300_000;

/// The longest `Retry-After` a processor honours, in seconds: a server
/// asking for more gets its retry this soon (and may refuse it again).
pub const RETRY_AFTER_MAX_S: u64 = 600;

/// Rate-limit buckets kept at most (one per client and route class); past
/// it the buckets that have refilled, which are as good as new, are
/// forgotten.
pub const RATE_BUCKETS_MAX: usize = 10_000;

/// Largest body of a face's record (a Handinger worker: its instructions
/// and output schema), in bytes of compact JSON.
pub const RECORD_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest interaction key a face may choose (a Handinger task id), in
/// bytes.
pub const INTERACTION_KEY_BYTES_MAX: usize = 512;

/// Seconds one move of the test clock (`taskyard serve --test-clock`) may
/// cover: a year, as the longest schedule delay.
pub const TEST_CLOCK_ADVANCE_S_MAX: u64 = 31_536_000;

/// PostgreSQL, several nodes: how often each node reads the last event id
/// when no notification came, so a lost `NOTIFY` (a dropped listener
/// connection) makes another node's events reach its streams at most this
/// late.
pub const EVENT_POLL_MS_MAX: u64 = 200;

/// PostgreSQL, several nodes: how long a claimed run's lease lasts. Its
/// node renews it every third of this; a node that stops (killed, cut off)
/// loses its runs to the others this long after its last renewal, as an
/// interrupted attempt.
pub const LEASE_MS: u64 = 3_000;
