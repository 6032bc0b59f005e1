//! The `command` processor (issue 13): the run as JSON on stdin, stdout as
//! the output, progress lines from stderr, a timeout and a cancel that end
//! the whole process group, exit 75 retried, an oversized output refused,
//! and the example in `examples/`. Processors come from a real config file,
//! read as `taskyard serve --config` reads it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::{config_from_toml, wait_for, TestDir};
use taskyard::model::{Content, RunRequest};
use taskyard::{Engine, Error, StreamKind, TaskSpec};

/// An engine whose processors are those of `toml` (written to a file in
/// the test's directory first).
fn engine_with(dir: &TestDir, toml: &str) -> Engine {
    let config = config_from_toml(dir, "taskyard.toml", toml).expect("processors build");
    Engine::open(dir.db(), config).expect("engine opens")
}

/// A shell script in the test's directory, made executable.
fn script(dir: &TestDir, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script written");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn toml_string(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).expect("a path as a string")
}

fn json_spec(schema: Value) -> TaskSpec {
    serde_json::from_value(json!({"output_schema": {"type": "json", "json_schema": schema}}))
        .expect("task spec")
}

fn failure(engine: &Engine, run_id: &str) -> String {
    match engine.wait_for_result(run_id, Duration::from_secs(30)) {
        Err(Error::RunFailed { error, .. }) => error.message,
        other => panic!("expected a failed run, got {other:?}"),
    }
}

/// An engine whose processors run the given scripts, one `command`
/// processor per (name, program).
fn engine_running(dir: &TestDir, programs: &[(&str, &Path)]) -> Engine {
    let toml: Vec<String> = programs
        .iter()
        .map(|(name, program)| {
            format!(
                "[processors.{name}]\nkind = \"command\"\nargv = [{}]\n",
                toml_string(program)
            )
        })
        .collect();
    engine_with(dir, &toml.join("\n"))
}

/// The JSON content of a run that must complete.
fn completed_json(engine: &Engine, run_id: &str) -> serde_json::Map<String, Value> {
    let (_, output) = engine
        .wait_for_result(run_id, Duration::from_secs(30))
        .expect("completed");
    let Content::Json(content) = output.content else {
        panic!("{output:?}")
    };
    content
}

/// True while a process with this pid runs (a zombie is not running).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // The state follows the parenthesised name, which may hold spaces.
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            !matches!(state, Some("Z") | Some("X"))
        }
    }
}

/// Pids a script wrote to `pids` (its own and its child's), once both are
/// there.
fn pids_written(pids: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    wait_for(
        "the script to write its pids",
        Duration::from_secs(30),
        || {
            found = std::fs::read_to_string(pids)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect();
            found.len() == 2
        },
    );
    found
}

#[test]
fn the_run_goes_in_on_stdin_and_stdout_is_the_output() {
    let dir = TestDir::new();
    let program = script(
        &dir,
        "answer.sh",
        // The whole run back, as the output's `run` field.
        r#"printf '{"run": %s}' "$(cat)""#,
    );
    let engine = engine_running(&dir, &[("answer", &program)]);
    let mut request = RunRequest::new(json!({"company": "Globex"}), "answer");
    request.metadata = Some(json!({"team": "a"}).as_object().cloned().expect("object"));
    let run = engine.create_run(request).expect("run");
    let content = completed_json(&engine, &run.id);
    let sent = &content["run"];
    assert_eq!(sent["run_id"], json!(run.id));
    assert_eq!(sent["processor"], "answer");
    assert_eq!(sent["input"], json!({"company": "Globex"}));
    assert_eq!(sent["metadata"], json!({"team": "a"}));
    assert_eq!(sent["attempt"], 1);
    assert_eq!(sent["turns"], json!([]));
    assert!(sent["task_spec"].is_object(), "{sent}");
}

#[test]
fn the_example_answers_from_its_csv_and_its_progress_is_an_event() {
    let dir = TestDir::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/csv_lookup.py");
    let engine = engine_with(
        &dir,
        &format!(
            "[processors.lookup]\nkind = \"command\"\nargv = [\"python3\", {}]\n\
             enable_events_default = true\n",
            toml_string(&example)
        ),
    );
    let spec = json_spec(json!({
        "type": "object",
        "properties": {
            "ceo_name": {"type": "string"},
            "founded": {"type": "integer"},
            "public": {"type": "boolean"}
        },
        "required": ["ceo_name", "founded", "public"]
    }));
    let mut request = RunRequest::new(json!({"company": "initech"}), "lookup");
    request.task_spec = Some(spec.clone());
    let run = engine.create_run(request).expect("run");
    let (_, output) = engine
        .wait_for_result(&run.id, Duration::from_secs(30))
        .expect("completed");
    let Content::Json(content) = output.content else {
        panic!("{output:?}")
    };
    assert_eq!(content["ceo_name"], "Bill Lumbergh");
    assert_eq!(content["founded"], 1999);
    assert_eq!(content["public"], false);
    let events: Vec<String> = engine
        .subscribe(
            StreamKind::RunEvents(run.id.clone()),
            0,
            Duration::from_secs(10),
        )
        .expect("run events")
        .map(|event| format!("{:?}", event.expect("event").data()))
        .collect();
    assert!(
        events
            .iter()
            .any(|event| event.contains("looking up initech")),
        "{events:?}"
    );

    // No such company: exit 1, and stderr's tail is the error.
    let mut missing = RunRequest::new("Hooli", "lookup");
    missing.task_spec = Some(spec);
    let run = engine.create_run(missing).expect("run");
    let message = failure(&engine, &run.id);
    assert!(message.contains("exited with status 1"), "{message}");
    assert!(message.contains("no row for company 'Hooli'"), "{message}");
    assert!(
        !message.contains("progress"),
        "progress lines are not the tail: {message}"
    );
}

/// An engine whose `hang` runs a script that starts a child and waits on
/// it forever, writing both pids to the file answered; `settings` are more
/// keys of the processor.
fn hanging(dir: &TestDir, settings: &str) -> (Engine, PathBuf) {
    let pids = dir.dir.path().join("pids");
    let program = script(
        dir,
        "hang.sh",
        &format!("sleep 600 &\necho $$ $! > {}\nwait", toml_string(&pids)),
    );
    let engine = engine_with(
        dir,
        &format!(
            "[processors.hang]\nkind = \"command\"\nargv = [{}]\n{settings}\n",
            toml_string(&program)
        ),
    );
    (engine, pids)
}

#[test]
fn a_timeout_kills_the_whole_process_group_and_fails_the_attempt() {
    let dir = TestDir::new();
    let (engine, pids) = hanging(&dir, "timeout_ms = 500\nmax_attempts = 1");
    let run = engine
        .create_run(RunRequest::new("x", "hang"))
        .expect("run");
    let message = failure(&engine, &run.id);
    assert!(message.contains("deadline (timeout_ms)"), "{message}");
    for pid in pids_written(&pids) {
        assert!(!running(pid), "process {pid} outlived the timeout");
    }
}

#[test]
fn a_cancel_kills_the_whole_process_group() {
    let dir = TestDir::new();
    let (engine, pids) = hanging(&dir, "");
    let run = engine
        .create_run(RunRequest::new("x", "hang"))
        .expect("run");
    let written = pids_written(&pids);
    engine.cancel_run(&run.id).expect("cancel");
    match engine.wait_for_result(&run.id, Duration::from_secs(30)) {
        Err(Error::RunCancelled { .. }) => {}
        other => panic!("expected cancelled, got {other:?}"),
    }
    wait_for("the group to be gone", Duration::from_secs(10), || {
        written.iter().all(|pid| !running(*pid))
    });
}

#[test]
fn exit_75_is_retried_and_other_exits_fail_with_stderr() {
    let dir = TestDir::new();
    let count = dir.dir.path().join("count");
    let program = script(
        &dir,
        "flaky.sh",
        &format!(
            "cat > /dev/null\nn=$(cat {count} 2>/dev/null || echo 0)\necho $((n + 1)) > {count}\n\
             if [ \"$n\" = 0 ]; then echo 'model is warming up' >&2; exit 75; fi\n\
             echo done",
            count = toml_string(&count)
        ),
    );
    let broken = script(&dir, "broken.sh", "echo 'disk on fire' >&2\nexit 3");
    let engine = engine_with(
        &dir,
        &format!(
            "[processors.flaky]\nkind = \"command\"\nargv = [{}]\nbackoff_ms = 10\n\n\
             [processors.broken]\nkind = \"command\"\nargv = [{}]\n",
            toml_string(&program),
            toml_string(&broken)
        ),
    );
    let run = engine
        .create_run(RunRequest::new("x", "flaky"))
        .expect("run");
    let (run, output) = engine
        .wait_for_result(&run.id, Duration::from_secs(30))
        .expect("completed on the second attempt");
    assert_eq!(output.content, Content::Text("done".into()));
    let warnings = serde_json::to_string(&run.warnings).expect("warnings");
    assert!(warnings.contains("status 75"), "{warnings}");
    assert!(warnings.contains("model is warming up"), "{warnings}");
    assert_eq!(std::fs::read_to_string(&count).expect("count").trim(), "2");

    let run = engine
        .create_run(RunRequest::new("x", "broken"))
        .expect("run");
    let message = failure(&engine, &run.id);
    assert!(message.contains("exited with status 3"), "{message}");
    assert!(message.contains("disk on fire"), "{message}");
}

#[test]
fn an_output_over_the_limit_fails_the_run_and_stops_the_program() {
    let dir = TestDir::new();
    // Prints forever: only the limit ends it.
    let program = script(&dir, "flood.sh", "cat > /dev/null\nyes flood");
    let engine = engine_with(
        &dir,
        &format!(
            "[processors.flood]\nkind = \"command\"\nargv = [{}]\noutput_bytes_max = 4096\n",
            toml_string(&program)
        ),
    );
    let run = engine
        .create_run(RunRequest::new("x", "flood"))
        .expect("run");
    let message = failure(&engine, &run.id);
    assert!(message.contains("output_bytes_max"), "{message}");
    assert!(message.contains("4096"), "{message}");
}

#[test]
fn a_json_schema_wants_a_json_object_on_stdout() {
    let dir = TestDir::new();
    let program = script(&dir, "prose.sh", "cat > /dev/null\necho 'just words'");
    let engine = engine_with(
        &dir,
        &format!(
            "[processors.prose]\nkind = \"command\"\nargv = [{}]\n",
            toml_string(&program)
        ),
    );
    let mut request = RunRequest::new("x", "prose");
    request.task_spec = Some(json_spec(json!({"type": "object"})));
    let run = engine.create_run(request).expect("run");
    let message = failure(&engine, &run.id);
    assert!(message.contains("not JSON"), "{message}");
}

/// The worker checks a JSON output against the output schema in place
/// (no copy): what it checked is what the run stores, every field intact,
/// and an output that breaks the schema fails the run with the rule.
#[test]
fn a_json_output_is_checked_against_the_schema_and_stored_whole() {
    let dir = TestDir::new();
    let good = script(
        &dir,
        "good.sh",
        "cat > /dev/null\necho '{\"answer\": \"forty-two\", \"score\": 7, \"tags\": [\"a\", \"b\"]}'",
    );
    let bad = script(&dir, "bad.sh", "cat > /dev/null\necho '{\"answer\": 42}'");
    let engine = engine_running(&dir, &[("good", &good), ("bad", &bad)]);
    let schema = json!({
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "score": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["answer"]
    });
    let mut request = RunRequest::new("x", "good");
    request.task_spec = Some(json_spec(schema.clone()));
    let run = engine.create_run(request).expect("run");
    assert_eq!(
        Value::Object(completed_json(&engine, &run.id)),
        json!({"answer": "forty-two", "score": 7, "tags": ["a", "b"]})
    );

    let mut request = RunRequest::new("x", "bad");
    request.task_spec = Some(json_spec(schema));
    let run = engine.create_run(request).expect("run");
    let message = failure(&engine, &run.id);
    assert!(
        message.contains("does not match the output schema") && message.contains("/answer"),
        "{message}"
    );
}
