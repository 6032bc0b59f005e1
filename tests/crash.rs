//! Crash safety end to end (DESIGN invariants 2, 3, 5, 6 and 7): the engine
//! runs in a child process that adds a 5,000-run group in batches while
//! its workers execute them, and is SIGKILLed at several points, both
//! while batches are being added and while runs are executing; each time
//! it is restarted on the same database and carries on.
//!
//! Afterwards the test proves that every run the child acknowledged is in
//! the database, that each run reached exactly one terminal state (one
//! terminal event, matching status, group counts equal to a recount), that
//! a reader which followed the group stream across the kills saw exactly
//! the final stream, and that resuming the engine's group stream from the
//! cursor the reader held at each kill yields every later event once.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use taskyard::faces::parallel::wire::AddRuns;
use taskyard::faces::parallel::Api;
use taskyard::{Engine, StreamKind};

/// Runs in the group, added `BATCH` at a time.
const TOTAL: u64 = 5_000;
const BATCH: u64 = 100;
/// The last runs sleep this long, so that the group is still busy when
/// every batch is in and the kills of the drain phase find runs running.
const SLOW_TAIL_RUNS: u64 = 200;
const SLOW_TAIL_DELAY_MS: u64 = 60;
/// Fixed seed of the kill points and the run delays: reruns kill at the
/// same logical points.
const SEED: u64 = 0x5eed_c4a5_4b11_0007;

/// Environment of the child mode: the database, and the group once known.
const CHILD_DB_ENV: &str = "TASKYARD_CRASH_CHILD_DB";
const CHILD_GROUP_ENV: &str = "TASKYARD_CRASH_CHILD_GROUP";
const CHILD_TEST_NAME: &str = "child_process_entry";
/// Marks the child's protocol lines; libtest may print its own text on
/// the same line before ours, and a line cut by a kill lacks the END.
const MARK: &str = "CRASHCHILD";

/// Every wait of the parent ends by this much time at the latest.
const STEP_DEADLINE: Duration = Duration::from_secs(20);

/// The child's entry point, not a test of its own: without
/// `TASKYARD_CRASH_CHILD_DB` it returns at once. The parent test re-runs
/// this binary with only this test selected and that variable set.
#[test]
fn child_process_entry() {
    let Some(db) = std::env::var_os(CHILD_DB_ENV) else {
        return;
    };
    child_main(Path::new(&db));
}

/// Child mode: open the engine, create the group if there is none yet,
/// top the group up to `TOTAL` runs, then wait until it is inactive.
fn child_main(db: &Path) {
    let engine =
        Api::new(Engine::open(db, taskyard::faces::default_config()).expect("child: engine opens"));
    let recovered = engine.recovered();
    let group_id = match std::env::var(CHILD_GROUP_ENV) {
        Ok(id) => id,
        Err(_) => {
            let group = engine.create_group(None).expect("child: group created");
            say(&format!("group {}", group.taskgroup_id));
            group.taskgroup_id
        }
    };
    // Count what is stored, not what was acknowledged: a batch committed
    // just before a kill, whose line never got out, is in the group too.
    let mut stored = engine
        .get_group(&group_id)
        .expect("child: group exists")
        .status
        .num_task_runs;
    say(&format!(
        "opened {} {} {} {}",
        recovered.requeued, recovered.failed, recovered.cancelled, stored
    ));
    while stored < TOTAL {
        let count = BATCH.min(TOTAL - stored);
        let inputs = (stored..stored + count)
            .map(|index| {
                json_run(&format!("run {index}"), "mock")
                    .with_metadata(metadata(json!({ "mock_delay_ms": run_delay_ms(index) })))
            })
            .collect();
        let added = engine
            .add_runs(
                &group_id,
                AddRuns {
                    inputs,
                    default_task_spec: None,
                },
            )
            .expect("child: runs added");
        stored += count;
        // The line goes out only after add_runs returned, i.e. after the
        // rows were durable: these ids are acknowledged.
        say(&format!("batch {stored} {}", added.run_ids.join(",")));
    }
    say("added_all");
    let until = Instant::now() + Duration::from_secs(50);
    loop {
        let group = engine.get_group(&group_id).expect("child: group reads");
        if !group.status.is_active {
            break;
        }
        assert!(Instant::now() < until, "child: group still active");
        std::thread::sleep(Duration::from_millis(10));
    }
    say("inactive");
    engine.shutdown(Duration::from_secs(5));
}

/// Writes one protocol line and flushes it, so the parent sees it before
/// any later kill.
fn say(message: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{MARK} {message} END").expect("child: stdout");
    out.flush().expect("child: stdout flush");
}

/// The mock delay of run `index`: a few ms, so that runs are executing at
/// most moments, and longer for the tail.
fn run_delay_ms(index: u64) -> u64 {
    if index >= TOTAL - SLOW_TAIL_RUNS {
        SLOW_TAIL_DELAY_MS
    } else {
        mix(SEED ^ index) % 4
    }
}

/// SplitMix64's finaliser: a fixed, portable hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A line of the child's protocol.
#[derive(Debug)]
enum Said {
    Group(String),
    Opened {
        requeued: u64,
        failed: u64,
        cancelled: u64,
        stored: u64,
    },
    Batch {
        total: u64,
        ids: Vec<String>,
    },
    AddedAll,
    Inactive,
}

fn parse(line: &str) -> Option<Said> {
    let start = line.find(MARK)?;
    let body = line[start + MARK.len()..].trim().strip_suffix("END")?;
    let words: Vec<&str> = body.split_whitespace().collect();
    let number = |index: usize| words.get(index)?.parse::<u64>().ok();
    match *words.first()? {
        "group" => Some(Said::Group(words.get(1)?.to_string())),
        "opened" => Some(Said::Opened {
            requeued: number(1)?,
            failed: number(2)?,
            cancelled: number(3)?,
            stored: number(4)?,
        }),
        "batch" => Some(Said::Batch {
            total: number(1)?,
            ids: words.get(2)?.split(',').map(str::to_string).collect(),
        }),
        "added_all" => Some(Said::AddedAll),
        "inactive" => Some(Said::Inactive),
        _ => None,
    }
}

/// One life of the child process: the process, and its parsed lines.
struct Life {
    child: Child,
    said: Receiver<Said>,
    reader: Option<JoinHandle<()>>,
    stderr: std::path::PathBuf,
}

fn spawn_child(dir: &TestDir, group: Option<&str>, life: usize) -> Life {
    let stderr = dir.dir.path().join(format!("child-{life}.stderr"));
    let mut command = Command::new(std::env::current_exe().expect("test binary path"));
    command
        .args([
            "--exact",
            CHILD_TEST_NAME,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB_ENV, dir.db())
        .env_remove(CHILD_GROUP_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(&stderr).expect("stderr file"),
        ));
    if let Some(group) = group {
        command.env(CHILD_GROUP_ENV, group);
    }
    let mut child = command.spawn().expect("child starts");
    let stdout = child.stdout.take().expect("child stdout");
    let (sender, said) = mpsc::channel();
    // Reads until EOF: after a kill, every complete line is still read.
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(message) = parse(&line) {
                if sender.send(message).is_err() {
                    break;
                }
            }
        }
    });
    Life {
        child,
        said,
        reader: Some(reader),
        stderr,
    }
}

impl Life {
    fn stderr_tail(&self) -> String {
        let bytes = std::fs::read(&self.stderr).unwrap_or_default();
        let start = bytes.len().saturating_sub(4_000);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// Waits for the reader thread to hit EOF (the process is gone).
    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stdout reader");
        }
    }
}

/// What the parent learnt from the child's lines over all its lives.
#[derive(Default)]
struct Acknowledged {
    group: Option<String>,
    run_ids: Vec<String>,
    /// The largest group size a batch line reported.
    total: u64,
    added_all: bool,
    inactive: bool,
    requeued: u64,
    failed: u64,
    cancelled: u64,
    opens: usize,
}

impl Acknowledged {
    fn take(&mut self, said: Said) {
        match said {
            Said::Group(id) => self.group = Some(id),
            Said::Opened {
                requeued,
                failed,
                cancelled,
                stored,
            } => {
                self.requeued += requeued;
                self.failed += failed;
                self.cancelled += cancelled;
                self.opens += 1;
                assert!(
                    stored >= self.total,
                    "after a restart the group holds {stored} runs, fewer than the {} acknowledged",
                    self.total
                );
            }
            Said::Batch { total, ids } => {
                assert_eq!(ids.len() as u64, BATCH, "a batch line lists its runs");
                self.total = self.total.max(total);
                self.run_ids.extend(ids);
            }
            Said::AddedAll => self.added_all = true,
            Said::Inactive => self.inactive = true,
        }
    }
}

/// When to kill a life of the child.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// As soon as this many runs are acknowledged: the kill lands in the
    /// next add, a claim or a finish.
    AfterAcked(u64),
    /// Once this many runs are acknowledged and the database shows runs
    /// running: the kill lands while processors execute.
    AfterAckedWhileRunning(u64),
    /// After every batch is in, once the restarted child has finished at
    /// least one run and others are running: a kill in the drain phase.
    DrainingWhileRunning,
}

/// The kill points, from the fixed seed: two during the adds, two during
/// the adds while runs execute, two in the drain phase.
fn kill_plan() -> Vec<KillPoint> {
    let mut state = SEED;
    let mut draw = |modulo: u64| {
        state = mix(state);
        state % modulo
    };
    let first = 3 + draw(3);
    let second = first + 6 + draw(6);
    let third = second + 6 + draw(6);
    let fourth = third + 6 + draw(6);
    assert!(
        fourth * BATCH < TOTAL,
        "every add-phase kill is before the end"
    );
    vec![
        KillPoint::AfterAcked(first * BATCH),
        KillPoint::AfterAckedWhileRunning(second * BATCH),
        KillPoint::AfterAckedWhileRunning(third * BATCH),
        KillPoint::AfterAcked(fourth * BATCH),
        KillPoint::DrainingWhileRunning,
        KillPoint::DrainingWhileRunning,
    ]
}

/// A read-only SQLite connection beside the child's engine. Reads see only
/// committed transactions (WAL), so what they show survives the kill.
fn reader_connection(dir: &TestDir) -> rusqlite::Connection {
    let connection = sqlite(dir);
    connection
        .busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    connection
}

/// (running, terminal) counts of the group as committed.
fn group_progress(connection: &rusqlite::Connection, group: &str) -> Option<(i64, i64)> {
    connection
        .query_row(
            "SELECT n_running, n_completed + n_failed + n_cancelled FROM groups WHERE id = ?1",
            [support::stored_id(group)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ok()
}

/// The group's committed counts, for failure messages.
fn group_state(connection: &rusqlite::Connection, group: &str) -> String {
    let counts = connection.query_row(
        "SELECT num_runs, n_queued, n_running, n_cancelling, n_completed, n_failed, \
         n_cancelled FROM groups WHERE id = ?1",
        [support::stored_id(group)],
        |row| {
            (0..7)
                .map(|i| row.get::<_, i64>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
        },
    );
    match counts {
        Ok(c) => {
            let stalled = if c[1] > 0 && c[2] == 0 && c[3] == 0 {
                " (runs are queued but none runs: nothing claims them)"
            } else {
                ""
            };
            format!(
                "group as committed: runs {} queued {} running {} cancelling {} \
                 completed {} failed {} cancelled {}{stalled}",
                c[0], c[1], c[2], c[3], c[4], c[5], c[6]
            )
        }
        Err(error) => format!("group counts unreadable: {error}"),
    }
}

/// An event of the group stream as a reader saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    id: u64,
    kind: String,
    data: String,
}

/// A reader that follows the group events stream straight from SQLite
/// with the stream's own query, across the kills and restarts of the
/// writer, and keeps its cursor the way a resuming client would.
struct Follower {
    seen: Arc<Mutex<Vec<Seen>>>,
    cursor: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), String>>,
}

impl Follower {
    fn start(dir: &TestDir, group: &str) -> Follower {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let cursor = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let connection = reader_connection(dir);
        let group = group.to_string();
        let thread = {
            let (seen, cursor, stop) = (seen.clone(), cursor.clone(), stop.clone());
            std::thread::spawn(move || follow(&connection, &group, &seen, &cursor, &stop))
        };
        Follower {
            seen,
            cursor,
            stop,
            thread,
        }
    }

    fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::SeqCst)
    }

    /// Stops after one last read that finds nothing new.
    fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.join().expect("follower thread") {
            Ok(()) => {}
            Err(message) => panic!("the follower failed: {message}"),
        }
        let seen = self.seen.lock().expect("seen").clone();
        seen
    }
}

fn follow(
    connection: &rusqlite::Connection,
    group: &str,
    seen: &Mutex<Vec<Seen>>,
    cursor: &AtomicU64,
    stop: &AtomicBool,
) -> Result<(), String> {
    let group_seq: i64 = connection
        .query_row(
            "SELECT seq FROM groups WHERE id = ?1",
            [support::stored_id(group)],
            |row| row.get(0),
        )
        .map_err(|e| format!("group row: {e}"))?;
    let mut last = 0u64;
    let mut failing_since: Option<Instant> = None;
    loop {
        // Read the flag before the query: a stop seen here means the writer
        // is gone, so an empty read afterwards is the end of the stream.
        let stopping = stop.load(Ordering::SeqCst);
        // Read as the engine's streams read the log (a run's terminal event
        // is made from its row), and compared with what the engine's
        // subscribers got: each event as Parallel's face renders it.
        let rows =
            taskyard::store::sqlite_group_events(connection, group_seq, last, 500).map(|events| {
                events
                    .into_iter()
                    .map(|(id, data)| {
                        let event = taskyard::faces::parallel::render::to_wire(
                            &taskyard::model::Event::new(Some(id), data),
                        );
                        Seen {
                            id,
                            kind: event.kind.as_str().to_string(),
                            data: event.data,
                        }
                    })
                    .collect::<Vec<_>>()
            });
        let rows = match rows {
            Ok(rows) => {
                failing_since = None;
                rows
            }
            // A read can fail while a restarted child recovers the WAL; it
            // must not fail for long.
            Err(error) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(10) {
                    return Err(format!("reads keep failing: {error}"));
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        if rows.is_empty() {
            if stopping {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        for row in rows {
            if row.id <= last {
                return Err(format!("event {} came after event {last}", row.id));
            }
            last = row.id;
            seen.lock().expect("seen").push(row);
        }
        cursor.store(last, Ordering::SeqCst);
    }
}

/// Waits for the child's lines until `done` holds, failing after
/// `STEP_DEADLINE` or if the child exits first; `state` describes the
/// database for the failure message.
fn drive(
    life: &mut Life,
    acked: &mut Acknowledged,
    label: &str,
    state: &dyn Fn() -> String,
    mut done: impl FnMut(&Acknowledged) -> bool,
) {
    let until = Instant::now() + STEP_DEADLINE;
    loop {
        if done(acked) {
            return;
        }
        match life.said.recv_timeout(Duration::from_millis(2)) {
            Ok(said) => {
                acked.take(said);
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let status = life.child.wait().expect("child status");
                panic!(
                    "the child exited ({status}) before: {label}\n{}\n--- child stderr ---\n{}",
                    state(),
                    life.stderr_tail()
                );
            }
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for: {label}\n{}\n--- child stderr ---\n{}",
            state(),
            life.stderr_tail()
        );
    }
}

/// SIGKILLs the child (`Child::kill` sends SIGKILL on unix), reaps it and
/// takes every line it completed before it died.
fn kill(mut life: Life, acked: &mut Acknowledged) {
    life.child.kill().expect("child killed");
    let status = life.child.wait().expect("child reaped");
    // Exit 0 would mean the child had finished on its own before the kill
    // point was reached: the kill would have tested nothing.
    assert!(!status.success(), "the child finished before its kill");
    life.join_reader();
    for said in life.said.try_iter() {
        acked.take(said);
    }
}

#[test]
fn invariant_7_kill_9_during_a_5000_run_group_loses_nothing_acknowledged() {
    if !support::sqlite_only(
        "invariant_7_kill_9_during_a_5000_run_group_loses_nothing_acknowledged",
    ) {
        return;
    }
    let started = Instant::now();
    let dir = TestDir::new();
    let plan = kill_plan();
    let mut acked = Acknowledged::default();
    let mut life = spawn_child(&dir, None, 0);
    let no_group = || String::from("(no group yet)");
    drive(
        &mut life,
        &mut acked,
        "the group is created",
        &no_group,
        |a| a.group.is_some(),
    );
    let group = acked.group.clone().expect("group id");
    let follower = Follower::start(&dir, &group);
    let progress_reader = reader_connection(&dir);
    let state = || group_state(&progress_reader, &group);
    let mut kills = 0usize;
    let mut kills_while_running = 0usize;
    let mut resume_cursors = Vec::new();
    let mut terminal_at_last_kill = 0i64;
    for (index, point) in plan.iter().enumerate() {
        let label = format!("kill point {index}: {point:?}");
        match *point {
            KillPoint::AfterAcked(runs) => {
                drive(&mut life, &mut acked, &label, &state, |a| a.total >= runs)
            }
            KillPoint::AfterAckedWhileRunning(runs) => {
                drive(&mut life, &mut acked, &label, &state, |a| {
                    a.total >= runs
                        && group_progress(&progress_reader, &group).is_some_and(|(r, _)| r > 0)
                })
            }
            KillPoint::DrainingWhileRunning => drive(&mut life, &mut acked, &label, &state, |a| {
                a.added_all
                    && group_progress(&progress_reader, &group)
                        .is_some_and(|(r, t)| r > 0 && t > terminal_at_last_kill)
            }),
        }
        // The reader's cursor before the kill: a client that resumes from
        // it after the restart must get everything later, once.
        resume_cursors.push(follower.cursor());
        kill(life, &mut acked);
        kills += 1;
        let (running, terminal) =
            group_progress(&progress_reader, &group).expect("group row after the kill");
        if running > 0 {
            kills_while_running += 1;
        }
        terminal_at_last_kill = terminal;
        life = spawn_child(&dir, Some(&group), index + 1);
        drive(
            &mut life,
            &mut acked,
            "the restarted child opened",
            &state,
            |a| a.opens == index + 2,
        );
    }
    // The last life runs to the end: every batch in, the group inactive.
    drive(
        &mut life,
        &mut acked,
        "the group becomes inactive",
        &state,
        |a| a.inactive,
    );
    let until = Instant::now() + STEP_DEADLINE;
    let status = loop {
        if let Some(status) = life.child.try_wait().expect("child status") {
            break status;
        }
        assert!(Instant::now() < until, "the last child does not exit");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        status.success(),
        "the last child failed ({status})\n{}",
        life.stderr_tail()
    );
    life.join_reader();
    for said in life.said.try_iter() {
        acked.take(said);
    }
    let followed = follower.finish();
    drop(progress_reader);

    assert_eq!(kills, plan.len());
    assert!(
        kills_while_running >= 3,
        "only {kills_while_running} kills found runs running"
    );
    // Recovery put the runs a kill interrupted back in the queue (or
    // failed them when out of attempts).
    assert!(
        acked.requeued + acked.failed > 0,
        "no restart recovered a running run"
    );

    let engine = Api::new(
        Engine::open(dir.db(), taskyard::faces::default_config()).expect("engine reopens"),
    );
    let events = check_runs_and_stream(&engine, &group, &acked, &followed, &resume_cursors);
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    check_database(&dir, &group);

    eprintln!(
        "crash test: {kills} kills ({kills_while_running} with runs running), \
         {} runs acknowledged, recovery requeued {} failed {} cancelled {}, \
         {events} group events checked, {:.1} s",
        acked.run_ids.len(),
        acked.requeued,
        acked.failed,
        acked.cancelled,
        started.elapsed().as_secs_f64()
    );
}

/// Runs and streams through the engine API; answers the events checked.
fn check_runs_and_stream(
    engine: &Api,
    group: &str,
    acked: &Acknowledged,
    followed: &[Seen],
    resume_cursors: &[u64],
) -> usize {
    // Invariant 7: every acknowledged run is there, and finished.
    let unique: HashSet<&String> = acked.run_ids.iter().collect();
    assert_eq!(unique.len(), acked.run_ids.len(), "acknowledged ids repeat");
    for run_id in &acked.run_ids {
        let run = engine
            .get_run(run_id)
            .unwrap_or_else(|e| panic!("acknowledged run {run_id} is lost: {e}"));
        assert!(run.status.is_terminal(), "{run_id} ends {:?}", run.status);
        assert_eq!(run.taskgroup_id.as_deref(), Some(group));
    }
    // The child tops the group up from what is stored, so a batch that was
    // committed but not acknowledged before a kill is counted, not added
    // twice: the group holds exactly TOTAL runs.
    let status = engine.get_group(group).expect("group").status;
    assert_eq!(status.num_task_runs, TOTAL);
    assert!(!status.is_active);
    assert!(acked.run_ids.len() as u64 <= TOTAL);

    // The whole group stream, through the engine's own read path.
    let full = read_stream(engine, group, 0);
    assert!(!full.is_empty());
    for pair in full.windows(2) {
        assert!(
            pair[0].id < pair[1].id,
            "stream ids {} then {}",
            pair[0].id,
            pair[1].id
        );
    }
    for event in &full {
        let data: Value = serde_json::from_str(&event.data).expect("event data is JSON");
        assert_eq!(data["event_id"], json!(event.id.to_string()));
        assert_eq!(data["type"], json!(event.kind));
    }
    // Each run shows on the group stream once, with its terminal state.
    let mut states: HashMap<String, usize> = HashMap::new();
    for event in full.iter().filter(|e| e.kind == "task_run.state") {
        let data: Value = serde_json::from_str(&event.data).expect("json");
        let status = data["run"]["status"].as_str().expect("run status");
        assert!(
            matches!(status, "completed" | "failed" | "cancelled"),
            "group stream shows {status}"
        );
        *states
            .entry(data["run"]["run_id"].as_str().expect("run id").to_string())
            .or_default() += 1;
    }
    assert_eq!(states.len() as u64, TOTAL, "runs on the group stream");
    if let Some((run_id, count)) = states.iter().find(|(_, count)| **count != 1) {
        panic!("run {run_id} shows {count} times on the group stream");
    }
    for run_id in &acked.run_ids {
        assert!(
            states.contains_key(run_id),
            "{run_id} not on the group stream"
        );
    }
    let last = serde_json::from_str::<Value>(&full.last().expect("events").data).expect("json");
    assert_eq!(last["type"], "task_group_status");
    assert_eq!(last["status"]["is_active"], false);

    // The reader that followed SQLite across the kills saw exactly the final
    // stream: no event appeared later below its cursor, none vanished.
    assert_eq!(followed.len(), full.len(), "events followed vs stored");
    for (seen, event) in followed.iter().zip(&full) {
        assert_eq!(seen, event, "followed event differs from the stored one");
    }

    // Invariant 3 across restarts: resuming from the cursor held at each
    // kill (and from a few more) yields exactly the later events, in order.
    let mut cursors: Vec<u64> = resume_cursors.to_vec();
    cursors.push(full[full.len() / 2].id);
    cursors.push(full.last().expect("events").id);
    let mut checked = full.len();
    for cursor in cursors {
        let resumed = read_stream(engine, group, cursor);
        let expected: Vec<&Seen> = full.iter().filter(|e| e.id > cursor).collect();
        assert_eq!(
            resumed.len(),
            expected.len(),
            "events after cursor {cursor}"
        );
        for (got, want) in resumed.iter().zip(expected) {
            assert_eq!(got, want, "resumed from {cursor}");
        }
        checked += resumed.len();
    }
    checked
}

/// The group events stream after `cursor`, to its end (the group is
/// inactive, so the stream ends once it has caught up).
fn read_stream(engine: &Api, group: &str, cursor: u64) -> Vec<Seen> {
    engine
        .subscribe(
            StreamKind::GroupEvents(group.to_string()),
            cursor,
            Duration::from_secs(30),
        )
        .expect("subscribe")
        .map(|event| {
            let event = event.expect("stream reads");
            Seen {
                id: event.id.expect("group stream events have ids"),
                kind: event.kind.as_str().to_string(),
                data: event.data,
            }
        })
        .collect()
}

/// What only SQL can see: the event log and the counts.
fn check_database(dir: &TestDir, group: &str) {
    let db = sqlite(dir);
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(integrity, "ok");
    let group_seq: i64 = db
        .query_row(
            "SELECT seq FROM groups WHERE id = ?1",
            [support::stored_id(group)],
            |row| row.get(0),
        )
        .expect("group row");
    let one = |sql: &str| -> i64 {
        db.query_row(sql, [group_seq], |row| row.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };

    // Invariant 5: one terminal event per run, and it matches the run.
    let mut twice = db
        .prepare(
            "SELECT run_seq, count(*) FROM events \
             WHERE status IN ('completed', 'failed', 'cancelled') \
             GROUP BY run_seq HAVING count(*) <> 1",
        )
        .expect("query");
    let doubles: Vec<(i64, i64)> = twice
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(
        doubles.is_empty(),
        "runs with other than one terminal event: {doubles:?}"
    );
    let runs = one("SELECT count(*) FROM runs WHERE group_seq = ?1");
    assert_eq!(runs as u64, TOTAL);
    let terminal_runs = one("SELECT count(*) FROM runs WHERE group_seq = ?1 \
         AND status IN ('completed', 'failed', 'cancelled')");
    assert_eq!(terminal_runs, runs, "runs not terminal");
    let matching = one(
        "SELECT count(*) FROM runs r JOIN events e ON e.run_seq = r.seq \
         WHERE r.group_seq = ?1 AND e.status IN ('completed', 'failed', 'cancelled') \
         AND e.status = r.status AND e.stream = 1",
    );
    assert_eq!(
        matching, runs,
        "terminal events matching their run's status"
    );

    // Every input index was added once: no batch lost, none added twice.
    let distinct_inputs = one(
        "SELECT count(DISTINCT json_extract(input, '$.text')) FROM runs \
         WHERE group_seq = ?1",
    );
    assert_eq!(distinct_inputs, runs, "each input once");

    // A run's cursor is its creation event.
    let bad_cursors = one(
        "SELECT count(*) FROM runs r WHERE r.group_seq = ?1 AND r.cursor <> \
         (SELECT min(id) FROM events e WHERE e.run_seq = r.seq)",
    );
    assert_eq!(bad_cursors, 0, "runs whose cursor is not their first event");

    // Invariant 6: the counts kept with each change equal a recount.
    let mut recount: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_status = db
        .prepare("SELECT status, count(*) FROM runs WHERE group_seq = ?1 GROUP BY status")
        .expect("query");
    for row in by_status
        .query_map([group_seq], |row| {
            Ok((row.get::<_, String>(0)?, row.get(1)?))
        })
        .expect("rows")
    {
        let (status, count) = row.expect("row");
        recount.insert(status, count);
    }
    let kept: Vec<i64> = db
        .query_row(
            "SELECT num_runs, n_queued, n_running, n_cancelling, n_completed, n_failed, \
             n_cancelled FROM groups WHERE seq = ?1",
            [group_seq],
            |row| (0..7).map(|i| row.get(i)).collect(),
        )
        .expect("group counts");
    let count = |status: &str| recount.get(status).copied().unwrap_or(0);
    assert_eq!(
        kept,
        vec![
            runs,
            count("queued"),
            count("running"),
            count("cancelling"),
            count("completed"),
            count("failed"),
            count("cancelled"),
        ],
        "kept counts vs recount {recount:?}"
    );

    // Invariant 2: the log's ids are the AUTOINCREMENT sequence, and no id
    // is above the sequence's high-water mark.
    let (max_id, rows): (i64, i64) = db
        .query_row("SELECT max(id), count(*) FROM events", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .expect("event ids");
    let sequence: i64 = db
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |row| row.get(0),
        )
        .expect("sequence");
    assert_eq!(max_id, sequence, "sqlite_sequence vs max event id");
    assert!(rows <= max_id);
}
