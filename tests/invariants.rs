//! One test per invariant of DESIGN.md, named after it. Invariant 7
//! (nothing acknowledged is lost on `kill -9`) needs a child process and
//! lives in `tests/crash.rs`.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::*;
use taskyard::faces::parallel::wire::{AddRuns, RunInput};
use taskyard::faces::parallel::Api;
use taskyard::processors::ProcessorConfig;
use taskyard::{Config, Error, RunStatus};

/// Adds `count` echo runs to a new group, some slow, some failing.
fn busy_group(engine: &Api, count: usize) -> (String, Vec<String>) {
    let group = engine.create_group(None).expect("group");
    let inputs = (0..count)
        .map(|i| {
            let run = json_run(&format!("item {i}"), "echo");
            match i % 5 {
                0 => run.with_metadata(metadata(json!({"mock_delay_ms": 2}))),
                1 => run.with_metadata(metadata(json!({"mock_fail": "forced"}))),
                _ => run,
            }
        })
        .collect();
    let added = engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect("runs added");
    (group.taskgroup_id, added.run_ids)
}

/// Every run's stored status equals the status of its last event row, and
/// its history of events is a path of the lifecycle (spec 3).
fn assert_runs_agree_with_their_events(dir: &TestDir) {
    let db = stored(dir);
    let pair = |row: Vec<Option<String>>| -> (i64, String) {
        let seq = row[0]
            .as_deref()
            .expect("a seq")
            .parse()
            .expect("an integer");
        (seq, row[1].clone().expect("a status"))
    };
    let mut history: HashMap<i64, Vec<String>> = HashMap::new();
    for (run, status) in db
        .rows(
            "SELECT run_seq, status FROM events WHERE status IS NOT NULL ORDER BY id",
            &[],
        )
        .into_iter()
        .map(pair)
    {
        history.entry(run).or_default().push(status);
    }
    let runs = db
        .rows("SELECT seq, status FROM runs", &[])
        .into_iter()
        .map(pair);
    let allowed = |from: &str, to: &str| {
        matches!(
            (from, to),
            ("queued", "running")
                | ("queued", "cancelled")
                | (
                    "running",
                    "completed" | "failed" | "cancelled" | "cancelling" | "queued"
                )
                | ("cancelling", "cancelled")
        )
    };
    for (seq, status) in runs {
        let events = history.get(&seq).expect("every run has events");
        assert_eq!(
            events.first().map(String::as_str),
            Some("queued"),
            "run {seq} starts queued"
        );
        assert_eq!(
            events.last(),
            Some(&status),
            "run {seq}: last event equals stored status"
        );
        for pair in events.windows(2) {
            assert!(
                allowed(&pair[0], &pair[1]),
                "run {seq}: {} -> {}",
                pair[0],
                pair[1]
            );
        }
    }
}

#[test]
fn invariant_1_a_state_change_and_its_event_commit_together() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let (group_id, _) = busy_group(&engine, 300);
    drain_group(&engine, &group_id, 0);
    let victim = engine.create_run(
        RunInput::new("slow", "echo").with_metadata(metadata(json!({"mock_delay_ms": 60_000}))),
    );
    let victim = victim.expect("run");
    wait_for("victim running", Duration::from_secs(10), || {
        engine.get_run(&victim.run_id).expect("run").status == RunStatus::Running
    });
    engine.cancel_run(&victim.run_id).expect("cancel");
    engine
        .wait_for_result(&victim.run_id, Duration::from_secs(10))
        .expect_err("cancelled");
    assert_runs_agree_with_their_events(&dir);

    // A commit that cannot happen writes neither the change nor its event:
    // another connection holds the write lock past the busy timeout.
    drop(engine);
    let engine = open_with(
        &dir,
        Config {
            busy_timeout: Duration::from_millis(50),
            ..taskyard::faces::default_config()
        },
    );
    let events_before: i64 = stored(&dir).int("SELECT count(*) FROM events", &[]);
    let blocker = WriteLock::take(&dir);
    let refused = engine.add_runs(
        &group_id,
        AddRuns {
            inputs: vec![json_run("blocked", "echo")],
            default_task_spec: None,
        },
    );
    assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
    blocker.release();
    let db = stored(&dir);
    let events_after: i64 = db.int("SELECT count(*) FROM events", &[]);
    assert_eq!(
        events_after, events_before,
        "no event row from the refused request"
    );
    let runs: i64 = db.int("SELECT count(*) FROM runs", &[]);
    assert_eq!(runs, 301, "no run row from the refused request");
    assert_runs_agree_with_their_events(&dir);
}

#[test]
fn invariant_2_event_ids_strictly_increase_and_are_never_reused() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let (group_id, _) = busy_group(&engine, 200);
    let first = drain_group(&engine, &group_id, 0);
    let ids: Vec<u64> = first
        .iter()
        .map(|e| e.id.expect("group events carry ids"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids strictly increase: {ids:?}"
    );
    for event in &first {
        assert_eq!(
            event.json()["event_id"],
            json!(event.id.expect("id").to_string())
        );
    }
    let last_before = engine.last_event_id();
    drop(engine);

    // Delete the newest rows, as nothing in taskyard ever does: AUTOINCREMENT
    // must still not hand their ids out again after a restart.
    stored(&dir).execute_batch(&format!(
        "DELETE FROM events WHERE id > {}",
        last_before as i64 - 5
    ));
    let engine = open(&dir);
    let (group_id, _) = busy_group(&engine, 10);
    let second = drain_group(&engine, &group_id, 0);
    assert!(
        second.iter().all(|e| e.id.expect("id") > last_before),
        "ids after restart exceed {last_before}"
    );
}

#[test]
fn invariant_3_resuming_yields_exactly_the_later_events_also_across_restart() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let (group_id, _) = busy_group(&engine, 120);
    // A second add while the first runs: the stream interleaves both.
    engine
        .add_runs(
            &group_id,
            AddRuns {
                inputs: vec![json_run("late", "echo")],
                default_task_spec: None,
            },
        )
        .expect("second add");
    let all = drain_group(&engine, &group_id, 0);
    assert!(all.len() > 120);
    let check = |engine: &Api| {
        let ids: Vec<u64> = all.iter().map(|e| e.id.expect("id")).collect();
        for cursor in [
            0,
            1,
            ids[0],
            ids[ids.len() / 3],
            ids[ids.len() / 2] + 1,
            ids[ids.len() - 1],
            u64::MAX >> 1,
        ] {
            let resumed = drain_group(engine, &group_id, cursor);
            let expected: Vec<_> = all
                .iter()
                .filter(|e| e.id.expect("id") > cursor)
                .cloned()
                .collect();
            assert_eq!(resumed, expected, "resume from {cursor}");
        }
    };
    check(&engine);
    drop(engine);
    let engine = open(&dir);
    check(&engine);
}

#[test]
fn invariant_4_a_subscriber_never_sees_an_uncommitted_event() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let group = engine.create_group(None).expect("group");
    engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs: vec![json_run("x", "echo")],
                default_task_spec: None,
            },
        )
        .expect("add");
    let committed = drain_group(&engine, &group.taskgroup_id, 0);
    let last = committed.last().expect("events").id.expect("id");

    // Another writer inserts a group-stream row but does not commit.
    let writer = WriteLock::take(&dir);
    writer.stored().execute_batch(&format!(
        "INSERT INTO events (id, type, group_seq, run_seq, stream, status, data, created_at) \
         SELECT {}, 'task_group_status', seq, NULL, 1, NULL, '{{\"type\":\"task_group_status\"}}', 0 \
         FROM groups WHERE id = '{}'",
        last as i64 + 1,
        support::stored_id(&group.taskgroup_id)
    ));
    let seen = drain_group(&engine, &group.taskgroup_id, last);
    assert!(seen.is_empty(), "uncommitted row was visible: {seen:?}");
    writer.release();

    // And under load: every event a live reader saw is in the database.
    let (group_id, _) = busy_group(&engine, 300);
    let seen = drain_group(&engine, &group_id, 0);
    let db = stored(&dir);
    for event in seen {
        let id = event.id.expect("id");
        let rows = db.rows(
            "SELECT data, status FROM events WHERE id = ?1",
            &[&(id as i64).to_string()],
        );
        assert_eq!(rows.len(), 1, "event {id} is committed");
        match (&rows[0][0], &rows[0][1]) {
            (Some(stored), _) => {
                assert_eq!(support::rendered_event_data(id, stored), event.data);
            }
            // A run's terminal event is stored without data and made from
            // the run's row: the row's status is the one seen.
            (None, Some(status)) => {
                let seen: serde_json::Value = serde_json::from_str(&event.data).expect("JSON data");
                assert_eq!(seen["run"]["status"], status.as_str(), "event {id}");
            }
            (None, None) => panic!("event {id} has neither data nor a status"),
        }
    }
}

/// A processor that ignores its cancel flag and returns late.
struct Stubborn;

impl taskyard::processors::Processor for Stubborn {
    fn run(
        &self,
        ctx: &taskyard::processors::RunContext<'_>,
    ) -> Result<taskyard::model::Output, taskyard::processors::ProcessorError> {
        std::thread::sleep(Duration::from_millis(300));
        taskyard::processors::EchoProcessor.run(ctx)
    }
}

#[test]
fn invariant_5_a_run_reaches_exactly_one_terminal_state() {
    let dir = TestDir::new();
    let mut registry = taskyard::faces::default_registry();
    registry.insert(ProcessorConfig::new("stubborn", "test", Arc::new(Stubborn)));
    let engine = open_with(
        &dir,
        Config {
            registry,
            cancel_grace: Duration::from_millis(20),
            ..taskyard::faces::default_config()
        },
    );
    // The grace runs out before the processor returns: the run is marked
    // cancelled, and the late completion is dropped.
    let run = engine
        .create_run(RunInput::new("late", "stubborn"))
        .expect("run");
    wait_for("stubborn running", Duration::from_secs(10), || {
        engine.get_run(&run.run_id).expect("run").status == RunStatus::Running
    });
    engine.cancel_run(&run.run_id).expect("cancel");
    let result = engine.wait_for_result(&run.run_id, Duration::from_secs(10));
    assert!(
        matches!(result, Err(Error::RunCancelled { .. })),
        "{result:?}"
    );

    // Cancels racing with completions, over many runs.
    let (group_id, run_ids) = busy_group(&engine, 200);
    for run_id in run_ids.iter().step_by(3) {
        match engine.cancel_run(run_id) {
            Ok(_) | Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("cancel failed: {other}"),
        }
    }
    drain_group(&engine, &group_id, 0);
    wait_for("stubborn returned", Duration::from_secs(5), || {
        engine.get_run(&run.run_id).expect("run").status == RunStatus::Cancelled
    });
    // Let the stubborn processor's late finish arrive and be ignored.
    engine.shutdown(Duration::from_secs(2));
    let db = stored(&dir);
    let doubles: i64 = db.int("SELECT count(*) FROM (SELECT run_seq FROM events \
             WHERE status IN ('completed', 'failed', 'cancelled') GROUP BY run_seq HAVING count(*) <> 1) AS doubles", &[]);
    assert_eq!(doubles, 0, "runs with more than one terminal event");
    let terminal_runs: i64 = db.int(
        "SELECT count(*) FROM runs WHERE status IN ('completed', 'failed', 'cancelled')",
        &[],
    );
    assert_eq!(terminal_runs, 201);
    let stubborn_status: String = db
        .text(
            "SELECT status FROM runs WHERE id = ?1",
            &[&(support::stored_id(&run.run_id)).to_string()],
        )
        .expect("query");
    assert_eq!(stubborn_status, "cancelled");
}

#[test]
fn invariant_6_group_counts_match_a_recount_at_every_moment() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let (group_id, run_ids) = busy_group(&engine, 500);
    for run_id in run_ids.iter().skip(400) {
        let _ = engine.cancel_run(run_id);
    }
    let db = stored(&dir);
    let begin = if on_postgres() {
        "BEGIN ISOLATION LEVEL REPEATABLE READ"
    } else {
        "BEGIN"
    };
    let mut samples = 0;
    loop {
        // One snapshot: the counters and the recount see the same commit.
        db.execute_batch(begin);
        let number = |text: &Option<String>| -> i64 {
            text.as_deref()
                .expect("a count")
                .parse()
                .expect("an integer")
        };
        let counts: Vec<i64> = db
            .rows(
                "SELECT num_runs, n_queued, n_running, n_cancelling, n_completed, n_failed, \
                 n_cancelled FROM groups WHERE id = ?1",
                &[&support::stored_id(&group_id)],
            )
            .first()
            .expect("group row")
            .iter()
            .map(number)
            .collect();
        let mut recount = [0i64; 7];
        for row in db.rows(
            "SELECT r.status, count(*) FROM runs r JOIN groups g ON g.seq = r.group_seq \
             WHERE g.id = ?1 GROUP BY r.status",
            &[&support::stored_id(&group_id)],
        ) {
            let status = row[0].clone().expect("a status");
            let count = number(&row[1]);
            let index = [
                "queued",
                "running",
                "cancelling",
                "completed",
                "failed",
                "cancelled",
            ]
            .iter()
            .position(|s| *s == status)
            .expect("known status");
            recount[index + 1] = count;
            recount[0] += count;
        }
        db.execute_batch("COMMIT");
        assert_eq!(
            counts,
            recount.to_vec(),
            "counters equal the recount (sample {samples})"
        );
        samples += 1;
        let status = engine.get_group(&group_id).expect("group").status;
        if !status.is_active {
            break;
        }
    }
    let status = engine.get_group(&group_id).expect("group").status;
    assert_eq!(status.num_task_runs, 500);
    let total: u64 = status
        .task_run_status_counts
        .values()
        .map(|v| v.as_u64().expect("count"))
        .sum();
    assert_eq!(total, 500);
    assert!(
        status
            .task_run_status_counts
            .values()
            .all(|v| v.as_u64() > Some(0)),
        "only counts above zero"
    );
    // The group status read is one row by id, whatever the group's size.
    if sqlite_only("the group read's plan") {
        let plan = db.rows(
            "EXPLAIN QUERY PLAN SELECT n_queued FROM groups WHERE id = 'x'",
            &[],
        )[0][3]
            .clone()
            .expect("plan");
        assert!(plan.contains("USING INDEX"), "{plan}");
    }
}

#[test]
fn invariant_8_a_bad_batch_is_rejected_whole_naming_the_bad_run() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let group = engine.create_group(None).expect("group");
    let events_before = engine.last_event_id();
    let mut inputs: Vec<RunInput> = (0..1_000)
        .map(|i| json_run(&format!("{i}"), "echo"))
        .collect();
    inputs[517].processor = "cor".into();
    inputs[998] = inputs[998]
        .clone()
        .with_metadata(metadata(json!({"mock_dleay_ms": 5})));
    let error = engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect_err("rejected");
    let Error::Invalid(problems) = error else {
        panic!("expected Invalid, got {error:?}")
    };
    let locations: Vec<String> = problems.iter().map(|p| p.loc_string()).collect();
    assert_eq!(
        locations,
        [
            "inputs[517].processor",
            "inputs[998].metadata.mock_dleay_ms"
        ]
    );
    assert_eq!(engine.last_event_id(), events_before, "no event written");
    let db = stored(&dir);
    let runs: i64 = db.int("SELECT count(*) FROM runs", &[]);
    assert_eq!(runs, 0, "no run written");
    assert_eq!(
        engine
            .get_group(&group.taskgroup_id)
            .expect("group")
            .status
            .num_task_runs,
        0
    );

    // Limits on the batch size are named.
    for count in [0, 1_001] {
        let inputs = (0..count)
            .map(|i| json_run(&format!("{i}"), "echo"))
            .collect();
        let error = engine
            .add_runs(
                &group.taskgroup_id,
                AddRuns {
                    inputs,
                    default_task_spec: None,
                },
            )
            .expect_err("limit");
        assert!(
            error.to_string().contains("RUNS_PER_REQUEST_MAX")
                || matches!(&error, Error::Invalid(p) if p[0].to_json()["limit"] == "RUNS_PER_REQUEST_MAX"),
            "{error}"
        );
    }
}
