//! Follow-up turns (issue 13): a run may follow up an earlier run; that run
//! must exist (else a 422 naming the field, in the engine and over
//! Parallel's wire), and the processor receives the earlier turns of the
//! interaction, input and output of each, oldest first, at most
//! `TURNS_IN_CONTEXT_MAX`.

#[path = "support/http.rs"]
mod client;
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{config_from_toml, TestDir};
use taskyard::faces::parallel::Api;
use taskyard::limits::TURNS_IN_CONTEXT_MAX;
use taskyard::model::{Content, FieldErrorKind, Loc, RunRequest};
use taskyard::{Engine, Error};

/// `turns`: answers with the turns it was given and the input it was asked.
const TURNS_TOML: &str = r#"
[processors.turns]
kind = "command"
argv = ["python3", "-c", """
import json, sys
run = json.load(sys.stdin)
# Each earlier turn's own `turns` left out: the answer stays small.
turns = [{"run_id": t["run_id"], "input": t["input"], "said": (t["output"] or {}).get("said")} for t in run["turns"]]
print(json.dumps({"said": run["input"], "turns": turns}))
"""]
"#;

fn config(dir: &TestDir) -> taskyard::Config {
    config_from_toml(dir, "taskyard.toml", TURNS_TOML).expect("processors build")
}

/// Runs `input` as a follow-up of `previous` and answers its output.
fn turn(engine: &Engine, input: &str, previous: Option<&str>) -> (String, Value) {
    let mut request = RunRequest::new(input, "turns");
    request.previous_run_id = previous.map(str::to_string);
    let run = engine.create_run(request).expect("run");
    let (_, output) = engine
        .wait_for_result(&run.id, Duration::from_secs(30))
        .expect("completed");
    let Content::Json(content) = output.content else {
        panic!("{output:?}")
    };
    (run.id, Value::Object(content))
}

#[test]
fn each_turn_sees_the_earlier_ones_oldest_first() {
    let dir = TestDir::new();
    let engine = Engine::open(dir.db(), config(&dir)).expect("engine");
    let (first, answer) = turn(&engine, "hello", None);
    assert_eq!(answer["turns"], json!([]));
    let (second, answer) = turn(&engine, "and then?", Some(&first));
    let turns = answer["turns"].as_array().expect("turns");
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0]["run_id"], json!(first));
    assert_eq!(turns[0]["input"], "hello");
    // The earlier output as that run gave it.
    assert_eq!(turns[0]["said"], "hello");
    let (_, answer) = turn(&engine, "last", Some(&second));
    let inputs: Vec<&Value> = answer["turns"]
        .as_array()
        .expect("turns")
        .iter()
        .map(|turn| &turn["input"])
        .collect();
    assert_eq!(inputs, [&json!("hello"), &json!("and then?")]);
}

#[test]
fn a_long_interaction_hands_over_only_the_latest_turns() {
    let dir = TestDir::new();
    let engine = Engine::open(dir.db(), config(&dir)).expect("engine");
    let mut previous: Option<String> = None;
    let mut last = Value::Null;
    for index in 0..=TURNS_IN_CONTEXT_MAX + 1 {
        let (id, answer) = turn(&engine, &format!("turn {index}"), previous.as_deref());
        previous = Some(id);
        last = answer;
    }
    let turns = last["turns"].as_array().expect("turns");
    assert_eq!(turns.len(), TURNS_IN_CONTEXT_MAX);
    // The latest, oldest first: the first two are left out.
    assert_eq!(turns[0]["input"], "turn 1");
    assert_eq!(
        turns[TURNS_IN_CONTEXT_MAX - 1]["input"],
        json!(format!("turn {TURNS_IN_CONTEXT_MAX}"))
    );
}

#[test]
fn following_up_a_run_that_is_not_there_is_refused_naming_the_field() {
    let dir = TestDir::new();
    let engine = Engine::open(dir.db(), config(&dir)).expect("engine");
    let mut request = RunRequest::new("hi", "turns");
    request.previous_run_id = Some("0".repeat(32));
    match engine.create_run(request) {
        Err(Error::Invalid(errors)) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].loc, [Loc::Key("previous_run_id".into())]);
            assert_eq!(errors[0].kind, FieldErrorKind::ValueError);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn over_http_an_unknown_previous_interaction_is_a_422_at_the_field() {
    let dir = TestDir::new();
    let engine = Engine::open(dir.db(), config(&dir)).expect("engine");
    let server = client::TestServer::start_on_engine(Api::new(engine), |_| {});
    let made_up = format!("trun_{}", "0".repeat(32));
    for body in [
        json!({"input": "hi", "processor": "turns", "previous_interaction_id": made_up}),
        json!({"input": "hi", "processor": "turns", "previous_interaction_id": "interaction-1"}),
    ] {
        let answer = server.post_json("/v1/tasks/runs", &body);
        assert_eq!(answer.status, 422, "{}", answer.text());
        let detail = &answer.json()["error"]["detail"]["errors"][0];
        assert_eq!(detail["loc"], json!(["body", "previous_interaction_id"]));
        assert!(
            detail["msg"]
                .as_str()
                .is_some_and(|msg| msg.contains("no run")),
            "{detail}"
        );
    }
    // A real interaction id is followed, and a group's runs may follow too.
    let first = server.post_json(
        "/v1/tasks/runs",
        &json!({"input": "hello", "processor": "turns"}),
    );
    assert_eq!(first.status, 202, "{}", first.text());
    let interaction = first.json()["interaction_id"].clone();
    let second = server.post_json(
        "/v1/tasks/runs",
        &json!({"input": "more", "processor": "turns", "previous_interaction_id": interaction}),
    );
    assert_eq!(second.status, 202, "{}", second.text());
    let run_id = second.json()["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let result = server.get(&format!("/v1/tasks/runs/{run_id}/result?timeout=30"));
    assert_eq!(result.status, 200, "{}", result.text());
    let content = &result.json()["output"]["content"];
    assert_eq!(content["turns"][0]["input"], "hello");
}

/// A follow-up of a run still at work waits, queued, until that run has
/// ended: its processor sees the earlier turn's output.
#[test]
fn a_follow_up_waits_for_the_turn_it_follows() {
    let dir = TestDir::new();
    let engine = Engine::open(dir.db(), config(&dir)).expect("engine");
    let mut first = RunRequest::new("slow to answer", "turns");
    first.metadata = json!({"mock_delay_ms": 500}).as_object().cloned();
    let first = engine.create_run(first).expect("first turn");
    let (_, answer) = turn(&engine, "next", Some(&first.id));
    let turns = answer["turns"].as_array().expect("turns");
    assert_eq!(
        turns[0]["said"], "slow to answer",
        "the first turn had ended: {answer}"
    );
    let first = engine.get_run(&first.id).expect("first");
    assert!(first.status.is_terminal());
}
