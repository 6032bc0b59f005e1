//! The `replay` processor (issue 13): record against a second taskyard
//! instance standing in for the hosted API (its `mock` playing the hosted
//! processors, behind an API key), stop it, and replay offline with
//! byte-identical outputs; `auto` records only what is missing; a missing
//! key fails naming it, or goes to a fallback; an upstream that fails or
//! times out fails the local run saying so; a fixtures file with a broken
//! line is a config error naming the line.

#[path = "support/http.rs"]
mod client;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use client::TestServer;
use serde_json::{json, Value};
use support::{config_from_toml, TestDir};
use taskyard::faces::parallel::Api;
use taskyard::model::RunRequest;
use taskyard::{Engine, Error, TaskSpec};

/// The upstream's key: PATH's value, since the local side reads its key
/// from an environment variable and PATH is always set.
fn upstream_key() -> String {
    std::env::var("PATH").expect("PATH")
}

/// A second taskyard, the hosted API's stand-in: `core` answers with mock,
/// `broken` always fails, `slow` takes five seconds.
fn upstream(dir: &TestDir) -> TestServer {
    let config = config_from_toml(
        dir,
        "upstream.toml",
        "[processors.broken]\nkind = \"mock\"\nfailure_rate = 1.0\nmax_attempts = 1\n\n\
         [processors.slow]\nkind = \"mock\"\nlatency_ms = 5000\n",
    )
    .expect("upstream processors");
    let engine = Engine::open(dir.dir.path().join("upstream.db"), config).expect("upstream");
    TestServer::start_on_engine(Api::new(engine), |server| {
        server.api_keys = vec![upstream_key()];
    })
}

/// A local engine whose `core` is a replay processor with `settings`.
fn local(dir: &TestDir, db: &str, settings: &str) -> Result<Engine, String> {
    let config = config_from_toml(
        dir,
        &format!("{db}.toml"),
        &format!(
            "[processors.core]\nkind = \"replay\"\nfixtures = \"answers.jsonl\"\n{settings}\n"
        ),
    )?;
    Ok(Engine::open(dir.dir.path().join(format!("{db}.db")), config).expect("engine"))
}

fn recording(server: &TestServer, mode: &str) -> String {
    format!(
        "mode = \"{mode}\"\nupstream_base_url = \"http://{}\"\nupstream_key_env = \"PATH\"\n",
        server.addr
    )
}

fn fixtures(dir: &TestDir) -> PathBuf {
    dir.dir.path().join("answers.jsonl")
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a fixture line is JSON"))
        .collect()
}

/// The questions of the record/replay round trip.
fn questions() -> Vec<RunRequest> {
    let spec: TaskSpec = serde_json::from_value(json!({"output_schema": {"type": "json",
        "json_schema": {"type": "object", "properties": {"ceo": {"type": "string"},
            "founded": {"type": "integer"}}, "required": ["ceo", "founded"]}}}))
    .expect("spec");
    let mut json_question = RunRequest::new(json!({"company": "Globex"}), "core");
    json_question.task_spec = Some(spec);
    vec![
        json_question,
        RunRequest::new("Write two lines about SQLite.", "core"),
        RunRequest::new("What is WAL mode?", "core"),
    ]
}

/// Runs `request` to its end: the output as JSON text, or the failure.
fn run(engine: &Engine, request: RunRequest) -> Result<(String, String), String> {
    let run = engine.create_run(request).map_err(|e| format!("{e:?}"))?;
    match engine.wait_for_result(&run.id, Duration::from_secs(60)) {
        Ok((_, output)) => Ok((run.id, serde_json::to_string(&output).expect("output"))),
        Err(Error::RunFailed { error, .. }) => Err(error.message),
        Err(other) => Err(format!("{other:?}")),
    }
}

#[test]
fn recorded_answers_replay_offline_byte_for_byte() {
    let dir = TestDir::new();
    let server = upstream(&dir);
    let recorder = local(&dir, "record", &recording(&server, "record")).expect("recorder");
    let mut recorded = Vec::new();
    for question in questions() {
        recorded.push(run(&recorder, question).expect("recorded").1);
    }
    // A follow-up is recorded as the upstream's follow-up of its own run.
    let (first, _) =
        run(&recorder, RunRequest::new("Who founded Globex?", "core")).expect("turn 1");
    let mut follow_up = RunRequest::new("And when?", "core");
    follow_up.previous_run_id = Some(first.clone());
    recorded.push(run(&recorder, follow_up.clone()).expect("turn 2").1);
    recorder.shutdown(Duration::from_secs(5));

    let entries = lines(&fixtures(&dir));
    assert_eq!(entries.len(), 5, "one line per question");
    let keys: Vec<&str> = entries
        .iter()
        .map(|e| e["key"].as_str().expect("key"))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "sorted by key, for reviewable diffs");
    assert!(entries.iter().all(|e| e["processor"] == "core"));
    // The follow-up reached the upstream as a follow-up of its first turn.
    let upstream_second = entries
        .iter()
        .find(|e| e["turns"] == 1)
        .and_then(|e| e["source_id"].as_str())
        .expect("the recorded follow-up");
    let input = server
        .engine
        .get_run_input(upstream_second)
        .expect("upstream run's input");
    assert!(input.previous_interaction_id.is_some(), "{input:?}");

    // Offline: the upstream is gone, and the answers come from the file.
    drop(server);
    let player = local(&dir, "replay", "mode = \"replay\"").expect("player");
    for (question, recorded) in questions().into_iter().zip(&recorded) {
        assert_eq!(&run(&player, question).expect("replayed").1, recorded);
    }
    let (first, _) = run(&player, RunRequest::new("Who founded Globex?", "core")).expect("turn 1");
    follow_up.previous_run_id = Some(first);
    assert_eq!(
        &run(&player, follow_up).expect("turn 2 replayed").1,
        &recorded[3]
    );

    // A question never recorded fails naming its key and how to record it.
    let message = run(&player, RunRequest::new("Never asked.", "core")).expect_err("missing");
    assert!(message.contains("no recorded answer for key "), "{message}");
    assert!(
        message.contains("mode = \"record\" or \"auto\""),
        "{message}"
    );
    assert!(message.contains("answers.jsonl"), "{message}");
}

#[test]
fn auto_records_only_what_is_missing_and_replay_can_fall_back() {
    let dir = TestDir::new();
    let server = upstream(&dir);
    let recorder = local(&dir, "auto", &recording(&server, "auto")).expect("auto");
    let ask = |text: &str| run(&recorder, RunRequest::new(text, "core")).expect("answered");
    let first = ask("one").1;
    assert_eq!(ask("one").1, first, "replayed");
    ask("two");
    let upstream_runs = server.engine.runs_by_status().expect("counts");
    let total: u64 = upstream_runs.iter().map(|(_, count)| count).sum();
    assert_eq!(total, 2, "the repeated question did not reach the upstream");
    assert_eq!(lines(&fixtures(&dir)).len(), 2);
    drop(server);

    let player = local(&dir, "fallback", "mode = \"replay\"\nfallback = \"echo\"").expect("player");
    let (_, output) = run(&player, RunRequest::new("never recorded", "core")).expect("fallback");
    assert!(output.contains("never recorded"), "echo answered: {output}");
    assert_eq!(
        run(&player, RunRequest::new("one", "core"))
            .expect("replayed")
            .1,
        first
    );
}

#[test]
fn an_upstream_that_fails_or_times_out_fails_the_local_run_saying_so() {
    let dir = TestDir::new();
    let server = upstream(&dir);
    let broken = local(
        &dir,
        "broken",
        &format!(
            "{}upstream_processor = \"broken\"\nmax_attempts = 1",
            recording(&server, "record")
        ),
    )
    .expect("engine");
    let message = run(&broken, RunRequest::new("x", "core")).expect_err("failed upstream");
    assert!(message.contains("did not complete"), "{message}");
    assert!(message.contains("failed"), "{message}");
    broken.shutdown(Duration::from_secs(5));

    let slow = local(
        &dir,
        "slow",
        &format!(
            "{}upstream_processor = \"slow\"\ntimeout_ms = 500\nmax_attempts = 1",
            recording(&server, "record")
        ),
    )
    .expect("engine");
    let message = run(&slow, RunRequest::new("x", "core")).expect_err("timed out");
    assert!(
        message.contains("still active at the attempt's deadline"),
        "{message}"
    );
    assert!(lines(&fixtures(&dir)).is_empty(), "nothing was recorded");
    slow.shutdown(Duration::from_secs(5));

    // A wrong key is the upstream's 401, final.
    let unkeyed = local(
        &dir,
        "unkeyed",
        &format!(
            "mode = \"record\"\nupstream_base_url = \"http://{}\"\nmax_attempts = 1",
            server.addr
        ),
    )
    .expect("engine");
    let message = run(&unkeyed, RunRequest::new("x", "core")).expect_err("refused");
    assert!(message.contains("answered 401"), "{message}");
    unkeyed.shutdown(Duration::from_secs(5));

    // Gone: the connection is refused, a transient failure until the last
    // attempt.
    let addr = server.addr;
    drop(server);
    let gone = local(
        &dir,
        "gone",
        &format!(
            "mode = \"record\"\nupstream_base_url = \"http://{addr}\"\nmax_attempts = 2\nbackoff_ms = 10"
        ),
    )
    .expect("engine");
    let message = run(&gone, RunRequest::new("x", "core")).expect_err("unreachable");
    assert!(
        message.contains(&format!("upstream http://{addr}")),
        "{message}"
    );
}

#[test]
fn a_broken_fixtures_line_and_bad_settings_name_the_line() {
    let dir = TestDir::new();
    std::fs::write(
        fixtures(&dir),
        "{\"key\": \"a\", \"processor\": \"core\"\nnot json at all\n",
    )
    .expect("fixtures written");
    let error = local(&dir, "bad", "mode = \"replay\"")
        .err()
        .expect("an error");
    assert!(error.contains("answers.jsonl, line 1"), "{error}");
    assert!(error.contains("processors.core.fixtures"), "{error}");

    std::fs::remove_file(fixtures(&dir)).expect("removed");
    let error = local(&dir, "bad", "mode = \"record\"")
        .err()
        .expect("an error");
    assert!(
        error.contains("processors.core.upstream_base_url: is required"),
        "{error}"
    );
    let error = local(&dir, "bad", "mode = \"replay\"\nfallback = \"nobody\"")
        .err()
        .expect("an error");
    assert!(
        error.contains("processors.core.fallback: no processor is named 'nobody'"),
        "{error}"
    );
    let error = local(&dir, "bad", "mode = \"rewind\"")
        .err()
        .expect("an error");
    assert!(error.contains("line 4"), "{error}");
}
