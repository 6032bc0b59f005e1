-- taskyard's whole schema for the PostgreSQL backend (issue 17), at the
-- latest version. It is schema.sql translated, and the two are kept in
-- step: the same tables, columns (in the same order) and named indexes,
-- which tests/pg_store.rs checks against schema.sql. Migrations of both
-- backends share one numbering (src/store/migrate.rs's SCHEMA_VERSION,
-- recorded here in `schema_version`): a change to one schema is a
-- migration of both with the same number, and src/store/postgres/mod.rs
-- fails to compile when the two counts disagree. Applied by
-- src/store/postgres/mod.rs to an empty database in one transaction.
--
-- The translation, column by column:
-- - INTEGER is BIGINT: SQLite's integers are 64-bit, and the postgres
--   crate maps Rust's i64 to BIGINT only. The two flags SQLite keeps as
--   0/1 (`runs.default_spec`, `runs.enable_events`) are BOOLEAN, which the
--   crate maps from Rust's bool.
-- - `seq INTEGER PRIMARY KEY` (a rowid) is an IDENTITY column BY DEFAULT.
--   A key that SQLite takes from the row it belongs to
--   (`run_webhooks.run_seq`, `run_counts.id`) is a plain BIGINT, and so is
--   `events.id` (AUTOINCREMENT): its ids come from `event_ids`, the
--   counterpart of SQLite's sqlite_sequence row, by the scheme below.
-- - TEXT is TEXT COLLATE "C" everywhere: byte order, as SQLite's BINARY
--   collation, so that keys, list pages and keyset cursors sort the same
--   on both backends whatever locale the database was created with.
-- - JSON stays TEXT, not JSONB: the engine stores compact text and reads
--   it back byte for byte (an idempotency key's stored answer is replayed
--   exactly; metadata keeps its key order); JSONB would rewrite both.
-- - Timestamps stay BIGINT Unix microseconds (UTC), as in schema.sql, so
--   the rows map to the model the same way on both backends.
-- - Partial and expression indexes are kept as they are; WITHOUT ROWID is
--   dropped (every PostgreSQL table is a heap with its key's index).
--
-- Cursors stay exact (issue 17, DESIGN invariant 3). An event id is the
-- resumable cursor, so an event must never become visible after a reader
-- has passed its id. A sequence alone (BIGSERIAL, IDENTITY) breaks that
-- with several writers: transaction A takes id 7, B takes id 8 and
-- commits first, a reader sees 8 and resumes after it, then A commits 7,
-- which that reader never sees.
--
-- The scheme: event ids are assigned under a row lock held to commit.
-- `event_ids` holds one row, the last id ever assigned (never lowered, so
-- ids are never reused, also when retention deletes the newest events;
-- DESIGN invariant 2). A writer transaction, before its first event
-- insert, reads it with
--     SELECT last_id FROM event_ids WHERE id = 1 FOR UPDATE
-- numbers its events from last_id + 1 in memory, exactly as the SQLite
-- writer numbers them from sqlite_sequence (Batch::next_event_id, rewound
-- when an op's savepoint rolls back), inserts them with explicit ids, and
-- writes the last one back (UPDATE event_ids SET last_id = ...) before
-- COMMIT. The row lock is held to the end of the transaction, so ids are
-- assigned by one transaction at a time across every node and that
-- transaction commits before the next can read the row: ids become
-- visible in id order. A reader that sees id N sees every committed id
-- below N, and an id below N that it does not see was rolled back and
-- will never appear. PostgreSQL makes a commit visible (proc array)
-- before it releases the transaction's locks, so the next writer cannot
-- commit a higher id that is visible before a lower one. The writer runs
-- at READ COMMITTED: there a FOR UPDATE that waited returns the row as its
-- previous holder committed it (at REPEATABLE READ it would fail with a
-- serialisation error instead). A plain sequence
-- gave neither this nor the rewind on rollback, which is why `events.id`
-- is not an IDENTITY column.
--
-- The cost: event-writing commits are serialised across nodes. Each
-- node's writer commits whole batches (group commit), and takes the row
-- as late as it can (its first event insert), so the cluster's event rate
-- is the batch size over the lock's hold (the batch's tail and its commit
-- round trip). Readers read the primary. Not implemented yet: this file
-- only fixes the scheme; the writer that follows it is a later step of
-- issue 17 (docs/postgres.md), with a test that fails with a plain
-- sequence.
--
-- Advisory lock keys, each a 64-bit ASCII tag: 'migrate!'
-- 7883946363647714593 serialises schema application between nodes
-- starting at once (src/store/postgres/mod.rs); 'retentn!'
-- 8243122671965204001 lets one node prune at a time
-- (src/store/writer/prune.rs).

-- The schema version, as SQLite's PRAGMA user_version: one row, written
-- in the transaction that applies the schema or a migration.
CREATE TABLE schema_version (
    id             SMALLINT PRIMARY KEY CHECK (id = 1),
    version        BIGINT   NOT NULL
);

-- A task group and its status counts, changed in the same transaction as
-- every run change (DESIGN invariant 6).
CREATE TABLE groups (
    seq            BIGINT  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id             TEXT    COLLATE "C" NOT NULL UNIQUE,
    metadata       TEXT    COLLATE "C",
    created_at     BIGINT  NOT NULL,
    modified_at    BIGINT  NOT NULL,
    num_runs       BIGINT  NOT NULL DEFAULT 0,
    n_queued       BIGINT  NOT NULL DEFAULT 0,
    n_running      BIGINT  NOT NULL DEFAULT 0,
    n_cancelling   BIGINT  NOT NULL DEFAULT 0,
    n_completed    BIGINT  NOT NULL DEFAULT 0,
    n_failed       BIGINT  NOT NULL DEFAULT 0,
    n_cancelled    BIGINT  NOT NULL DEFAULT 0
);

-- Runs by status over the whole database: one row (issue 11). With
-- several nodes it is a hot row every run change updates; docs/postgres.md
-- says how it is to be split if it limits.
CREATE TABLE run_counts (
    id             BIGINT  PRIMARY KEY CHECK (id = 1),
    num_runs       BIGINT  NOT NULL DEFAULT 0,
    n_queued       BIGINT  NOT NULL DEFAULT 0,
    n_running      BIGINT  NOT NULL DEFAULT 0,
    n_cancelling   BIGINT  NOT NULL DEFAULT 0,
    n_completed    BIGINT  NOT NULL DEFAULT 0,
    n_failed       BIGINT  NOT NULL DEFAULT 0,
    n_cancelled    BIGINT  NOT NULL DEFAULT 0
);

INSERT INTO run_counts (id) VALUES (1);

-- A task run (see schema.sql for each column).
CREATE TABLE runs (
    seq            BIGINT  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id             TEXT    COLLATE "C" NOT NULL UNIQUE,
    group_seq      BIGINT  REFERENCES groups(seq),
    cursor         BIGINT  NOT NULL,
    status         TEXT    COLLATE "C" NOT NULL,
    processor      TEXT    COLLATE "C" NOT NULL,
    input          TEXT    COLLATE "C" NOT NULL,
    document       TEXT    COLLATE "C",
    task_spec      TEXT    COLLATE "C" NOT NULL,
    default_spec   BOOLEAN NOT NULL,
    metadata       TEXT    COLLATE "C",
    enable_events  BOOLEAN NOT NULL,
    attempts       BIGINT  NOT NULL DEFAULT 0,
    max_attempts   BIGINT  NOT NULL,
    error          TEXT    COLLATE "C",
    warnings       TEXT    COLLATE "C",
    output         TEXT    COLLATE "C",
    created_at     BIGINT  NOT NULL,
    modified_at    BIGINT  NOT NULL,
    previous_id    TEXT    COLLATE "C"
);

CREATE INDEX runs_by_group ON runs(group_seq, cursor);
-- Claiming (FOR UPDATE SKIP LOCKED, oldest first) and recovery read only
-- active runs; PostgreSQL, like SQLite, uses a partial index only when the
-- query repeats its WHERE term.
CREATE INDEX runs_queued ON runs(seq) WHERE status = 'queued';
CREATE INDEX runs_running ON runs(seq) WHERE status IN ('running', 'cancelling');
CREATE INDEX runs_by_status_id ON runs(status, id);
CREATE INDEX runs_by_group_id ON runs(group_seq, id);
CREATE INDEX groups_by_activity ON groups((n_queued + n_running + n_cancelling > 0), id);

-- The last event id ever assigned, the counterpart of SQLite's
-- sqlite_sequence row for `events`: read FOR UPDATE by the transaction
-- that assigns the next ids and written back before it commits (see the
-- header: the row lock is what keeps cursors exact).
CREATE TABLE event_ids (
    id             SMALLINT PRIMARY KEY CHECK (id = 1),
    last_id        BIGINT   NOT NULL
);

INSERT INTO event_ids (id, last_id) VALUES (1, 0);

-- The append-only event log; `id` is the cursor on the wire (DESIGN
-- invariant 2), assigned from `event_ids` (see the header).
CREATE TABLE events (
    id             BIGINT  PRIMARY KEY,
    type           TEXT    COLLATE "C" NOT NULL,
    group_seq      BIGINT,
    run_seq        BIGINT,
    stream         BIGINT  NOT NULL,
    status         TEXT    COLLATE "C",
    data           TEXT    COLLATE "C",
    created_at     BIGINT  NOT NULL
);

CREATE INDEX events_group_stream ON events(group_seq, id) WHERE stream = 1;
CREATE INDEX events_by_run ON events(run_seq, id);

CREATE TABLE idempotency_keys (
    key            TEXT    COLLATE "C" PRIMARY KEY,
    fingerprint    TEXT    COLLATE "C" NOT NULL,
    body           TEXT    COLLATE "C" NOT NULL,
    created_at     BIGINT  NOT NULL
);

CREATE TABLE run_webhooks (
    run_seq        BIGINT  PRIMARY KEY,
    url            TEXT    COLLATE "C" NOT NULL,
    face           TEXT    COLLATE "C" NOT NULL,
    owner          TEXT    COLLATE "C"
);

-- The webhook outbox. With several nodes a delivery is claimed like a run
-- (FOR UPDATE SKIP LOCKED on the due index), so each attempt is made once.
CREATE TABLE webhook_deliveries (
    seq            BIGINT  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id             TEXT    COLLATE "C" NOT NULL UNIQUE,
    run_seq        BIGINT  NOT NULL,
    event_id       BIGINT  NOT NULL,
    url            TEXT    COLLATE "C" NOT NULL,
    face           TEXT    COLLATE "C" NOT NULL,
    state          TEXT    COLLATE "C" NOT NULL,
    attempts       BIGINT  NOT NULL DEFAULT 0,
    next_at        BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    last_code      BIGINT,
    last_error     TEXT    COLLATE "C",
    created_at     BIGINT  NOT NULL,
    modified_at    BIGINT  NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries(run_seq);

CREATE TABLE webhook_attempts (
    seq            BIGINT  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    delivery_seq   BIGINT  NOT NULL,
    run_seq        BIGINT  NOT NULL,
    owner          TEXT    COLLATE "C",
    url            TEXT    COLLATE "C" NOT NULL,
    started_at     BIGINT  NOT NULL,
    duration_us    BIGINT  NOT NULL,
    code           BIGINT,
    error          TEXT    COLLATE "C"
);

CREATE INDEX webhook_attempts_by_owner ON webhook_attempts(owner, seq) WHERE owner IS NOT NULL;
CREATE INDEX webhook_attempts_by_run ON webhook_attempts(run_seq);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts(delivery_seq);

-- Schedules: a fire moves `next_at` on with a compare-and-set on the old
-- value in the transaction that inserts its run, which under READ
-- COMMITTED makes a second node's fire of the same slot update no row:
-- once across nodes, as once across kill -9.
CREATE TABLE schedules (
    seq            BIGINT  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id             TEXT    COLLATE "C" NOT NULL UNIQUE,
    spec           TEXT    COLLATE "C" NOT NULL,
    template       TEXT    COLLATE "C" NOT NULL,
    processor      TEXT    COLLATE "C" NOT NULL,
    state          TEXT    COLLATE "C" NOT NULL,
    next_at        BIGINT,
    fires          BIGINT  NOT NULL DEFAULT 0,
    created_at     BIGINT  NOT NULL,
    modified_at    BIGINT  NOT NULL
);

CREATE INDEX schedules_due ON schedules(next_at) WHERE state = 'active';

CREATE TABLE schedule_runs (
    schedule_seq   BIGINT  NOT NULL,
    run_seq        BIGINT  NOT NULL,
    PRIMARY KEY (schedule_seq, run_seq)
);

CREATE TABLE pruned (
    id             TEXT    COLLATE "C" PRIMARY KEY,
    kind           TEXT    COLLATE "C" NOT NULL,
    pruned_at      BIGINT  NOT NULL
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_at);

CREATE TABLE interaction_turns (
    interaction    TEXT    COLLATE "C" NOT NULL,
    turn           BIGINT  NOT NULL,
    run_id         TEXT    COLLATE "C" NOT NULL,
    PRIMARY KEY (interaction, turn)
);

CREATE INDEX interaction_turns_by_run ON interaction_turns(run_id);

CREATE TABLE records (
    face           TEXT    COLLATE "C" NOT NULL,
    kind           TEXT    COLLATE "C" NOT NULL,
    id             TEXT    COLLATE "C" NOT NULL,
    body           TEXT    COLLATE "C" NOT NULL,
    created_at     BIGINT  NOT NULL,
    modified_at    BIGINT  NOT NULL,
    PRIMARY KEY (face, kind, id)
);

CREATE TABLE run_leases (
    run_seq        BIGINT  PRIMARY KEY,
    node           TEXT    COLLATE "C" NOT NULL,
    expires_at     BIGINT  NOT NULL
);
