//! What the engine keeps for faces with nouns of their own (issue 14):
//! records (a face's JSON by face, kind and id), and interactions (runs
//! that follow one another under a key the face chose, one chain even when
//! turns arrive at once).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{config_from_toml, TestDir};
use taskyard::model::{Content, RunRequest};
use taskyard::{Engine, Error};

/// `turns` answers with how many earlier turns it was given.
fn engine(dir: &TestDir) -> Engine {
    let config = config_from_toml(
        dir,
        "taskyard.toml",
        r#"
[processors.turns]
kind = "command"
argv = ["python3", "-c", "import json, sys; run = json.load(sys.stdin); print(json.dumps({'earlier': [t['input'] for t in run['turns']]}))"]
"#,
    )
    .expect("processors");
    Engine::open(dir.db(), config).expect("engine")
}

#[test]
fn records_are_kept_by_face_kind_and_id_and_survive_a_restart() {
    let dir = TestDir::new();
    let engine = engine(&dir);
    let body = json!({"instructions": "Be brief.", "outputSchema": null});
    let made = engine
        .insert_record("handinger", "worker", "wrk_1", &body)
        .expect("inserted");
    assert_eq!(made.body, body);
    match engine.insert_record("handinger", "worker", "wrk_1", &json!({})) {
        Err(Error::Exists { kind, id }) => {
            assert_eq!((kind.as_str(), id.as_str()), ("worker", "wrk_1"))
        }
        other => panic!("expected Exists, got {other:?}"),
    }
    // Another face, or another kind, is another record.
    assert!(engine
        .record("nextcloud", "worker", "wrk_1")
        .expect("read")
        .is_none());
    assert!(engine
        .record("handinger", "task", "wrk_1")
        .expect("read")
        .is_none());
    assert!(matches!(
        engine.update_record("handinger", "worker", "wrk_2", &json!({})),
        Err(Error::NotFound { .. })
    ));
    let changed = engine
        .update_record(
            "handinger",
            "worker",
            "wrk_1",
            &json!({"instructions": "Be thorough."}),
        )
        .expect("updated");
    assert_eq!(changed.created_at, made.created_at);
    assert!(changed.modified_at >= made.modified_at);
    engine.shutdown(Duration::from_secs(5));
    drop(engine);

    let engine = self::engine(&dir);
    let kept = engine
        .record("handinger", "worker", "wrk_1")
        .expect("read")
        .expect("kept");
    assert_eq!(kept.body["instructions"], "Be thorough.");
    assert!(engine
        .delete_record("handinger", "worker", "wrk_1")
        .expect("deleted"));
    assert!(!engine
        .delete_record("handinger", "worker", "wrk_1")
        .expect("gone"));
}

#[test]
fn turns_sent_at_once_make_one_chain_in_order() {
    let dir = TestDir::new();
    let engine = engine(&dir);
    let ids: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|index| {
                let engine = engine.clone();
                scope.spawn(move || {
                    let mut request = RunRequest::new(format!("turn {index}"), "turns");
                    request.interaction = Some("tsk_chain".into());
                    engine.create_run(request).expect("turn").id
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for id in &ids {
        engine
            .wait_for_result(id, Duration::from_secs(60))
            .expect("completed");
    }
    let turns = engine.interaction("tsk_chain").expect("turns");
    assert_eq!(turns.len(), 6);
    let numbers: Vec<u32> = turns.iter().map(|turn| turn.turn).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    // Each turn saw exactly the turns before it: one chain, whatever order
    // the creates were committed in.
    let mut inputs_so_far: Vec<Value> = Vec::new();
    for turn in &turns {
        let output = turn.output.as_ref().expect("completed");
        let Content::Json(content) = &output.content else {
            panic!("{output:?}")
        };
        assert_eq!(content["earlier"], Value::Array(inputs_so_far.clone()));
        let (_, input) = engine
            .get_run_request(&turn.run.id)
            .map(|stored| (stored.document, stored.input))
            .expect("request");
        inputs_so_far.push(input);
    }
    assert!(engine.interaction("tsk_none").expect("read").is_empty());

    let mut both = RunRequest::new("x", "turns");
    both.interaction = Some("tsk_chain".into());
    both.previous_run_id = Some(ids[0].clone());
    assert!(matches!(engine.create_run(both), Err(Error::Invalid(_))));
}
