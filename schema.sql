-- taskyard's whole schema, at the latest version. Applied on open when
-- PRAGMA user_version is 0, which then becomes the latest version at once;
-- a database made by an older taskyard is brought here by the migrations
-- numbered from 2 in src/store/migrate.rs (tests/fixtures/schema_v1.sql is
-- version 1, for the test that both paths end at the same schema).
-- Timestamps are Unix microseconds (UTC); JSON columns hold compact text,
-- in the engine's own form (src/model/), never a face's wire: ids are 32
-- hex digits without a face's prefix.

-- A task group and its status counts. The counts change in the same
-- transaction as every run change (DESIGN invariant 6), so reading a
-- group's status costs one row, whatever its size.
CREATE TABLE groups (
    seq            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    metadata       TEXT,
    created_at     INTEGER NOT NULL,
    modified_at    INTEGER NOT NULL,
    num_runs       INTEGER NOT NULL DEFAULT 0,
    n_queued       INTEGER NOT NULL DEFAULT 0,
    n_running      INTEGER NOT NULL DEFAULT 0,
    n_cancelling   INTEGER NOT NULL DEFAULT 0,
    n_completed    INTEGER NOT NULL DEFAULT 0,
    n_failed       INTEGER NOT NULL DEFAULT 0,
    n_cancelled    INTEGER NOT NULL DEFAULT 0
);

-- Runs by status over the whole database, grouped or not: one row, kept
-- in the same transaction as every run change, as a group's counts are
-- (DESIGN invariant 6), so that `/metrics` reads one row instead of
-- counting every run (issue 11: seconds per scrape at 1.1M runs).
CREATE TABLE run_counts (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    num_runs       INTEGER NOT NULL DEFAULT 0,
    n_queued       INTEGER NOT NULL DEFAULT 0,
    n_running      INTEGER NOT NULL DEFAULT 0,
    n_cancelling   INTEGER NOT NULL DEFAULT 0,
    n_completed    INTEGER NOT NULL DEFAULT 0,
    n_failed       INTEGER NOT NULL DEFAULT 0,
    n_cancelled    INTEGER NOT NULL DEFAULT 0
);

INSERT INTO run_counts (id) VALUES (1);

-- A task run. `input` is what the processor gets; `document` is the face's
-- own record of the request as it was sent (Parallel's RunInput, what
-- `.../input` answers), opaque to the engine and NULL for a run made
-- through the library. `task_spec` is the effective spec after the group
-- default was applied. `cursor` is the id of the run's creation event.
-- `previous_id` is the run this one follows up (the earlier turn of its
-- interaction): an id, not a seq, since a pruned run's seq may be reused
-- and ids never are; a chain ends where its earlier turn was pruned.
CREATE TABLE runs (
    seq            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    group_seq      INTEGER REFERENCES groups(seq),
    cursor         INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    processor      TEXT    NOT NULL,
    input          TEXT    NOT NULL,
    document       TEXT,
    task_spec      TEXT    NOT NULL,
    default_spec   INTEGER NOT NULL,
    metadata       TEXT,
    enable_events  INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    max_attempts   INTEGER NOT NULL,
    error          TEXT,
    warnings       TEXT,
    output         TEXT,
    created_at     INTEGER NOT NULL,
    modified_at    INTEGER NOT NULL,
    previous_id    TEXT
);

-- The group runs stream walks a group's runs in cursor order.
CREATE INDEX runs_by_group ON runs(group_seq, cursor);

-- The scheduler claims queued runs in creation order, and recovery finds
-- the runs a crash left running. Only active runs are indexed, so these
-- stay small however many finished runs the database holds. Queries must
-- repeat each WHERE term exactly, or SQLite will not use the index.
CREATE INDEX runs_queued ON runs(seq) WHERE status = 'queued';
CREATE INDEX runs_running ON runs(seq) WHERE status IN ('running', 'cancelling');

-- The lists (spec 10.3), newest first by id, each filter searched by an
-- index that also gives the order, so that a page reads about as many
-- entries as it answers, whatever the table holds (issue 11: a status
-- filter walked every run). The list queries write only the terms a
-- filter sets (store/read.rs), else SQLite could use none of these. Runs
-- of one group with one status walk the group's runs: a third index,
-- (group_seq, status, id), would cost every status change as much again
-- (see the commit that added these).
CREATE INDEX runs_by_status_id ON runs(status, id);
CREATE INDEX runs_by_group_id ON runs(group_seq, id);
-- Groups by is_active: an index on the expression rather than a stored
-- flag, so that it can never disagree with the counts it is made of; the
-- query repeats the expression exactly. It costs one index entry rewritten
-- per group count update, which happens once per group per transaction.
CREATE INDEX groups_by_activity ON groups((n_queued + n_running + n_cancelling > 0), id);

-- The append-only event log. `id` is the cursor on the wire: AUTOINCREMENT
-- makes it strictly increasing and never reused (DESIGN invariant 2).
-- `stream` says which stream shows the row: 0 none (history only), 1 the
-- group events stream, 2 the run events stream (progress). `type` and
-- `data` are the engine's event (model::EventData: `run.status`,
-- `group.status`, `run.progress`, `run.stats`); `data` is NULL for a
-- history row, which only its `status` says. Each face renders a stored
-- event in its own wire when it sends it.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    type           TEXT    NOT NULL,
    group_seq      INTEGER,
    run_seq        INTEGER,
    stream         INTEGER NOT NULL,
    status         TEXT,
    data           TEXT,
    created_at     INTEGER NOT NULL
);

CREATE INDEX events_group_stream ON events(group_seq, id) WHERE stream = 1;
-- Every event of a run, in order: a run stream reads its progress rows
-- here (filtering `stream = 2` within the run's few rows), and retention
-- deletes a pruned run's events by it (issue 12: with only the progress
-- rows indexed, each pruned run scanned the whole log).
CREATE INDEX events_by_run ON events(run_seq, id);

-- Idempotency keys: written in the same transaction as what the request
-- created, with the face's answer to replay byte for byte (which status it
-- goes out with is the face's). `fingerprint` is the face's canonical form
-- of the request (Parallel: method, path and canonical JSON body). Kept
-- forever for now: pruning comes with retention.
CREATE TABLE idempotency_keys (
    key            TEXT    PRIMARY KEY,
    fingerprint    TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
) WITHOUT ROWID;

-- Where a run's end is to be told (issue 12): the URL its request named and
-- the face that renders what is sent. Written with the run.
CREATE TABLE run_webhooks (
    run_seq        INTEGER PRIMARY KEY,
    url            TEXT    NOT NULL,
    face           TEXT    NOT NULL,
    owner          TEXT
);

-- The webhook outbox: a row is written in the same transaction as the
-- terminal status change it tells of, so there is no status change
-- without its delivery and no delivery without its status change, also
-- across kill -9. `id` is the same on every attempt (receivers deduplicate
-- on it); `event_id` is the terminal event, which holds the run as it was
-- recorded. `state` is `pending`, `delivered` or `expired`.
CREATE TABLE webhook_deliveries (
    seq            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    run_seq        INTEGER NOT NULL,
    event_id       INTEGER NOT NULL,
    url            TEXT    NOT NULL,
    face           TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_at        INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    last_code      INTEGER,
    last_error     TEXT,
    created_at     INTEGER NOT NULL,
    modified_at    INTEGER NOT NULL
);

-- The deliverer looks only at pending rows, in the order they fall due.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries(run_seq);

-- Each attempt of a delivery, as it ended (issue 14): a face's delivery
-- log. `owner` is the key the face gave the run's target (`run_webhooks`;
-- a Handinger worker), so that a face lists a worker's attempts newest
-- first without reading every delivery. Pruned with their delivery.
CREATE TABLE webhook_attempts (
    seq            INTEGER PRIMARY KEY,
    delivery_seq   INTEGER NOT NULL,
    run_seq        INTEGER NOT NULL,
    owner          TEXT,
    url            TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    duration_us    INTEGER NOT NULL,
    code           INTEGER,
    error          TEXT
);

CREATE INDEX webhook_attempts_by_owner ON webhook_attempts(owner, seq) WHERE owner IS NOT NULL;
CREATE INDEX webhook_attempts_by_run ON webhook_attempts(run_seq);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts(delivery_seq);

-- Schedules (issue 12): a run template (the run row every fire inserts,
-- less its id) and when to fire. A fire inserts its run in the same
-- transaction that moves `next_at` on (compare-and-set on the old value),
-- so a fire happens exactly once, also across kill -9. `state` is
-- `active`, `paused`, `done` (a one-time schedule that fired) or
-- `cancelled`.
CREATE TABLE schedules (
    seq            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    spec           TEXT    NOT NULL,
    template       TEXT    NOT NULL,
    processor      TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    next_at        INTEGER,
    fires          INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    modified_at    INTEGER NOT NULL
);

-- The timer looks only at active schedules, in the order they fall due.
CREATE INDEX schedules_due ON schedules(next_at) WHERE state = 'active';

-- The runs each schedule made, in order.
CREATE TABLE schedule_runs (
    schedule_seq   INTEGER NOT NULL,
    run_seq        INTEGER NOT NULL,
    PRIMARY KEY (schedule_seq, run_seq)
) WITHOUT ROWID;

-- Retention (issue 12): what was pruned, so that a pruned run or group is
-- "gone" (410), never silently "not found".
CREATE TABLE pruned (
    id             TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL,
    pruned_at      INTEGER NOT NULL
) WITHOUT ROWID;

-- Idempotency keys expire by age: pruning finds the oldest first.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_at);

-- Interactions (issue 14): the runs that follow one another under one key
-- a face chose (a Handinger task, an ArchAstro session), numbered from 1.
-- A run made in an interaction follows its latest run, found and written
-- in the same transaction, so that turns sent at once still make one
-- chain. A turn's row goes when its run is pruned.
CREATE TABLE interaction_turns (
    interaction    TEXT    NOT NULL,
    turn           INTEGER NOT NULL,
    run_id         TEXT    NOT NULL,
    PRIMARY KEY (interaction, turn)
) WITHOUT ROWID;

-- Pruning a run finds its turn by the run's id.
CREATE INDEX interaction_turns_by_run ON interaction_turns(run_id);

-- A face's own records (Handinger's workers and tasks): JSON bodies the
-- engine keeps and gives back by face, kind and id, never reads.
CREATE TABLE records (
    face           TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    modified_at    INTEGER NOT NULL,
    PRIMARY KEY (face, kind, id)
) WITHOUT ROWID;

-- PostgreSQL, several nodes (issue 17): which node runs a claimed run, and
-- until when its claim holds unless renewed; a run whose lease ran out is
-- another node's to take back, as an interrupted attempt. SQLite has one
-- process per file and keeps this table empty.
CREATE TABLE run_leases (
    run_seq        INTEGER PRIMARY KEY,
    node           TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL
);
