//! The hub's in-memory window of recent stream events and its hand-over
//! with the store: a caught-up group subscriber takes new events from
//! memory, one that falls behind the window reads SQLite until it catches
//! up, and either way it gets every event of its stream after its cursor,
//! in id order, exactly once, byte for byte as stored (DESIGN invariant 3).

mod support;

use std::time::Duration;

use support::*;
use taskyard::events::WINDOW_EVENTS_MAX;
use taskyard::faces::parallel::wire::{AddRuns, Event};
use taskyard::faces::parallel::Api as Engine;
use taskyard::StreamKind;

fn as_rows(events: &[Event]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .map(|event| {
            (
                event.id.expect("group events carry an id"),
                event.kind.as_str().to_string(),
                event.data.clone(),
            )
        })
        .collect()
}

fn add_echo_runs(engine: &Engine, group_id: &str, count: usize, tag: &str) {
    let inputs = (0..count)
        .map(|i| json_run(&format!("{tag} {i}"), "echo"))
        .collect();
    engine
        .add_runs(
            group_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect("runs added");
}

fn inactive(engine: &Engine, group_id: &str) -> bool {
    !engine.get_group(group_id).expect("group").status.is_active
}

#[test]
fn a_subscriber_that_lags_past_the_window_gets_every_event_once_in_order() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let group = engine.create_group(None).expect("group");
    let group_id = group.taskgroup_id;
    let mut lagging = engine
        .subscribe(
            StreamKind::GroupEvents(group_id.clone()),
            0,
            Duration::from_secs(60),
        )
        .expect("subscribe");
    // More terminal events than the window holds, in two adds so that the
    // group also goes inactive and active again in the middle.
    let half = WINDOW_EVENTS_MAX + 20;
    add_echo_runs(&engine, &group_id, half, "first");
    // Read one event, so that the subscriber is caught up and on the
    // memory path, then stop reading while the rest is committed.
    let first = lagging.next().expect("an event").expect("the stream reads");
    wait_for("the first runs to finish", Duration::from_secs(60), || {
        inactive(&engine, &group_id)
    });
    add_echo_runs(&engine, &group_id, half, "second");
    wait_for("the second runs to finish", Duration::from_secs(60), || {
        inactive(&engine, &group_id)
    });
    let stored = stored_group_stream(&dir, &group_id);
    assert!(
        stored.len() > 2 * WINDOW_EVENTS_MAX,
        "{} stored events do not overflow the window of {WINDOW_EVENTS_MAX}",
        stored.len()
    );
    let mut seen = vec![first];
    seen.extend(lagging.map(|event| event.expect("the stream reads")));
    assert_eq!(as_rows(&seen), stored, "the lagging subscriber's stream");
}

#[test]
fn live_subscribers_and_a_resume_from_the_middle_agree_with_the_store() {
    let dir = TestDir::new();
    let engine = open(&dir);
    let group = engine.create_group(None).expect("group");
    let group_id = group.taskgroup_id;
    // One slow run keeps the group active while the followers subscribe,
    // so that most of them follow live; one that came late would read the
    // whole stream from the store and must get the same.
    let mut inputs =
        vec![json_run("slow", "echo")
            .with_metadata(metadata(serde_json::json!({"mock_delay_ms": 300})))];
    inputs.extend((0..300).map(|i| json_run(&format!("live {i}"), "echo")));
    engine
        .add_runs(
            &group_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect("runs added");
    let followers: Vec<_> = (0..32)
        .map(|_| {
            let subscription = engine
                .subscribe(
                    StreamKind::GroupEvents(group_id.clone()),
                    0,
                    Duration::from_secs(60),
                )
                .expect("subscribe");
            std::thread::spawn(move || {
                subscription
                    .collect::<Result<Vec<_>, _>>()
                    .expect("the stream reads")
            })
        })
        .collect();
    let streams: Vec<Vec<Event>> = followers
        .into_iter()
        .map(|follower| follower.join().expect("follower thread"))
        .collect();
    let stored = stored_group_stream(&dir, &group_id);
    assert!(stored.len() > 300);
    for (index, stream) in streams.iter().enumerate() {
        assert_eq!(as_rows(stream), stored, "follower {index}");
    }
    // While a second add runs, a resume from the middle of the first one
    // starts in the store and hands over to memory.
    let middle = stored[stored.len() / 2].0;
    let resumed = engine
        .subscribe(
            StreamKind::GroupEvents(group_id.clone()),
            middle,
            Duration::from_secs(60),
        )
        .expect("subscribe");
    let reader = std::thread::spawn(move || {
        resumed
            .collect::<Result<Vec<_>, _>>()
            .expect("the stream reads")
    });
    add_echo_runs(&engine, &group_id, 300, "late");
    wait_for("the late runs to finish", Duration::from_secs(60), || {
        inactive(&engine, &group_id)
    });
    let resumed = reader.join().expect("reader thread");
    let stored = stored_group_stream(&dir, &group_id);
    let expected: Vec<_> = stored
        .into_iter()
        .filter(|(id, _, _)| *id > middle)
        .collect();
    // The reader may have ended when the first add's runs were done (the
    // group was inactive then) or followed the late ones too; either way
    // it is an unbroken prefix of the stored stream after its cursor that
    // ends at a point where the group was inactive.
    let got = as_rows(&resumed);
    assert!(!got.is_empty());
    assert_eq!(got[..], expected[..got.len()], "resume from {middle}");
    let last = got.last().expect("an event");
    assert_eq!(last.1, "task_group_status");
    assert!(last.2.contains("\"is_active\":false"), "{}", last.2);
}
