//! The writer's batches: claims and finishes run without a savepoint (the
//! hot path; see `Op::needs_savepoint`), so when one fails, nothing of its
//! batch may commit, and every op in the batch is answered with the error.
//! Ops with a savepoint still fail alone.

mod support;

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver};
use support::{sqlite, TestDir};
use taskyard::model::Group;
use taskyard::store::{self, Finish, NewGroup, Once, Op, Reply, Store};

/// A reply that hands its result to the returned receiver.
fn reply<T: Send + 'static>() -> (Reply<T>, Receiver<store::Result<T>>) {
    let (sender, receiver) = bounded(1);
    (
        Box::new(move |result| {
            let _ = sender.send(result);
        }),
        receiver,
    )
}

/// A create of group `id` that answers on `reply`.
fn create_group(id: &str, reply: Reply<Once<Group>>) -> Op {
    Op::CreateGroup {
        group: NewGroup {
            id: id.to_string(),
            metadata: None,
        },
        once: None,
        reply,
    }
}

/// A create whose answer nobody waits for.
fn new_group(id: &str) -> Op {
    create_group(id, Box::new(|_| {}))
}

fn groups_stored(dir: &TestDir) -> Vec<String> {
    let db = sqlite(dir);
    let mut statement = db
        .prepare("SELECT id FROM groups ORDER BY id")
        .expect("query");
    let ids = statement
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<Result<Vec<String>, _>>()
        .expect("ids");
    ids
}

/// Holds the writer thread inside the reply of a first op, so that the ops
/// sent meanwhile wait in its queue and are taken as one batch; answers
/// the function that lets it go.
fn hold_writer(store: &Store) -> impl FnOnce() {
    let (entered, wait_entered) = bounded::<()>(1);
    let (release, wait_release) = bounded::<()>(1);
    store
        .writer
        .submit(create_group(
            "tgrp_hold",
            Box::new(move |_| {
                let _ = entered.send(());
                let _ = wait_release.recv_timeout(Duration::from_secs(30));
            }),
        ))
        .expect("submit");
    wait_entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the writer runs the holding op's reply");
    move || {
        let _ = release.send(());
    }
}

#[test]
fn a_failing_finish_fails_its_whole_batch_and_nothing_of_it_commits() {
    // SQLite's batch semantics: on PostgreSQL a finish of a run this node
    // holds no lease on is ignored, not an error.
    if !support::sqlite_only("a_failing_finish_fails_its_whole_batch_and_nothing_of_it_commits") {
        return;
    }
    let dir = TestDir::new();
    let (store, _) = Store::open(
        &dir.db().into(),
        &store::Options::default(),
        Box::new(|_| {}),
    )
    .expect("store opens");
    let release = hold_writer(&store);
    // Taken as one batch once the writer is free: a valid create, a finish
    // of a run that does not exist, and another valid create.
    let (created_reply, created) = reply();
    store
        .writer
        .submit(create_group("tgrp_before", created_reply))
        .expect("submit");
    let (finished_reply, finished) = reply();
    store
        .writer
        .submit(Op::Finish {
            run_seq: 999_999,
            finish: Finish::Completed {
                output: "{}".into(),
            },
            reply: finished_reply,
        })
        .expect("submit");
    store
        .writer
        .submit(new_group("tgrp_after"))
        .expect("submit");
    release();

    let finish_error = finished
        .recv_timeout(Duration::from_secs(10))
        .expect("answered")
        .expect_err("an unknown run cannot finish");
    assert!(
        matches!(finish_error, store::Error::NotFound { .. }),
        "{finish_error:?}"
    );
    let create_error = created
        .recv_timeout(Duration::from_secs(10))
        .expect("answered")
        .expect_err("the batch failed, so the create is not acknowledged");
    assert!(
        matches!(create_error, store::Error::NotFound { .. }),
        "the batch's error, which says why: {create_error:?}"
    );
    // A later op proves the writer goes on.
    let (later_reply, later) = reply();
    store
        .writer
        .submit(create_group("tgrp_later", later_reply))
        .expect("submit");
    later
        .recv_timeout(Duration::from_secs(10))
        .expect("answered")
        .expect("a later batch commits");
    assert_eq!(
        groups_stored(&dir),
        vec!["tgrp_hold", "tgrp_later"],
        "nothing of the failed batch is stored"
    );
}

#[test]
fn an_op_with_a_savepoint_fails_alone() {
    // SQLite's batch semantics: on PostgreSQL a finish of a run this node
    // holds no lease on is ignored, not an error.
    if !support::sqlite_only("an_op_with_a_savepoint_fails_alone") {
        return;
    }
    let dir = TestDir::new();
    let (store, _) = Store::open(
        &dir.db().into(),
        &store::Options::default(),
        Box::new(|_| {}),
    )
    .expect("store opens");
    let release = hold_writer(&store);
    store.writer.submit(new_group("tgrp_one")).expect("submit");
    // The same id again: a unique-constraint failure inside its savepoint.
    let (duplicate_reply, duplicate) = reply();
    store
        .writer
        .submit(create_group("tgrp_one", duplicate_reply))
        .expect("submit");
    let (other_reply, other) = reply();
    store
        .writer
        .submit(create_group("tgrp_two", other_reply))
        .expect("submit");
    release();
    duplicate
        .recv_timeout(Duration::from_secs(10))
        .expect("answered")
        .expect_err("a second group with the same id is refused");
    other
        .recv_timeout(Duration::from_secs(10))
        .expect("answered")
        .expect("the rest of the batch commits");
    assert_eq!(
        groups_stored(&dir),
        vec!["tgrp_hold", "tgrp_one", "tgrp_two"]
    );
}
