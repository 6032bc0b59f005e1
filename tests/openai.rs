//! The `openai` processor (issue 13) against an OpenAI-compatible server
//! the test starts on loopback, behaving as llama.cpp's `llama-server`
//! does: `response_format` honoured (JSON schema and JSON mode), 429 with
//! `Retry-After`, a slow reply, a malformed reply, a 4xx with the server's
//! message, and token usage in the reply. What the model "answers" is
//! decided by the last user message, so each test picks a behaviour.

mod support;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use support::{config_from_toml, TestDir};
use taskyard::config::FileConfig;
use taskyard::model::{Content, RunRequest};
use taskyard::{Engine, Error, TaskSpec};

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    authorization: Option<String>,
    body: Value,
}

/// A llama.cpp-like chat-completions server on `127.0.0.1:0`.
struct FakeModel {
    base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl FakeModel {
    fn start() -> FakeModel {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("fake server"));
        let port = server.server_addr().to_ip().expect("ip").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (server, seen) = (server.clone(), seen.clone());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let seen = seen.clone();
                    // One thread per request: a slow reply holds no other.
                    std::thread::spawn(move || answer(request, &seen));
                }
            })
        };
        FakeModel {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            seen,
            server,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(mut request: tiny_http::Request, seen: &Mutex<Vec<Seen>>) {
    let mut text = String::new();
    let _ = request.as_reader().read_to_string(&mut text);
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let authorization = request
        .headers()
        .iter()
        .find(|header| header.field.equiv("authorization"))
        .map(|header| header.value.to_string());
    let earlier = {
        let mut seen = seen.lock();
        let earlier = seen.iter().filter(|s| s.body == body).count();
        seen.push(Seen {
            at: Instant::now(),
            authorization,
            body: body.clone(),
        });
        earlier
    };
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages
        .last()
        .and_then(|message| message["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let reply = |code: u16, body: String, headers: &[(&str, &str)]| {
        let mut response = tiny_http::Response::from_string(body).with_status_code(code);
        for (name, value) in headers {
            response.add_header(
                tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("header"),
            );
        }
        let _ = request.respond(response);
    };
    let error = |message: &str| json!({"error": {"code": 0, "message": message, "type": "x"}});
    if last.contains("[429]") && earlier == 0 {
        return reply(
            429,
            error("the slots are busy").to_string(),
            &[("Retry-After", "1")],
        );
    }
    if last.contains("[slow]") {
        // The server being slow, which the processor's deadline must cut.
        std::thread::sleep(Duration::from_secs(3));
    }
    if last.contains("[400]") {
        return reply(
            400,
            error("the prompt is too long for the context").to_string(),
            &[],
        );
    }
    if last.contains("[html]") {
        return reply(200, "<html>gateway</html>".into(), &[]);
    }
    // The history as the model got it: every message before the last.
    let history: Vec<Value> = messages[..messages.len().saturating_sub(1)]
        .iter()
        .filter(|message| message["role"] != "system")
        .map(|message| message["content"].clone())
        .collect();
    let content = match body["response_format"]["type"].as_str() {
        _ if last.contains("[prose]") => "Not JSON, sorry.".to_string(),
        Some("json_schema") | Some("json_object") => {
            json!({"answer": last, "history": history}).to_string()
        }
        _ => format!("You said: {last}"),
    };
    let completion = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 11 * messages.len(), "completion_tokens": 7,
                  "total_tokens": 11 * messages.len() + 7}
    });
    reply(
        200,
        completion.to_string(),
        &[("Content-Type", "application/json")],
    );
}

fn engine_with(dir: &TestDir, model: &FakeModel, extra: &str) -> Engine {
    let toml = format!(
        "[processors.local]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"qwen2.5-7b\"\n\
         backoff_ms = 10\n{extra}\n",
        model.base_url
    );
    let config = config_from_toml(dir, "taskyard.toml", &toml).expect("processors build");
    Engine::open(dir.db(), config).expect("engine opens")
}

fn answer_spec() -> TaskSpec {
    serde_json::from_value(json!({"output_schema": {"type": "json",
        "description": "Answer as the schema says.", "json_schema": {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "history": {"type": "array"}},
        "required": ["answer", "history"]
    }}}))
    .expect("task spec")
}

fn ask(
    engine: &Engine,
    input: &str,
    previous: Option<&str>,
) -> Result<(String, taskyard::model::Output), Error> {
    let mut request = RunRequest::new(input, "local");
    request.task_spec = Some(answer_spec());
    request.previous_run_id = previous.map(str::to_string);
    let run = engine.create_run(request)?;
    engine
        .wait_for_result(&run.id, Duration::from_secs(30))
        .map(|(run, output)| (run.id, output))
}

fn json_of(output: &taskyard::model::Output) -> Value {
    match &output.content {
        Content::Json(object) => Value::Object(object.clone()),
        Content::Text(text) => panic!("expected JSON, got text {text:?}"),
    }
}

#[test]
fn a_json_schema_goes_in_response_format_and_the_reply_is_the_output() {
    let dir = TestDir::new();
    let model = FakeModel::start();
    let engine = engine_with(&dir, &model, "temperature = 0.2\nmax_tokens = 64");
    let (_, output) = ask(&engine, "What is the capital of France?", None).expect("completed");
    assert_eq!(json_of(&output)["answer"], "What is the capital of France?");
    let usage = output.usage.expect("usage kept");
    assert_eq!((usage.input_tokens, usage.output_tokens), (22, 7));
    let sent = &model.seen()[0].body;
    assert_eq!(sent["model"], "qwen2.5-7b");
    assert_eq!(sent["temperature"], 0.2);
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"]["required"],
        json!(["answer", "history"])
    );
    assert_eq!(sent["messages"][0]["role"], "system");
    let system = sent["messages"][0]["content"]
        .as_str()
        .expect("system text");
    assert!(system.contains("Answer as the schema says."), "{system}");
    assert_eq!(model.seen()[0].authorization, None, "no key configured");
}

#[test]
fn json_mode_puts_the_schema_in_the_system_message_and_a_text_spec_asks_for_text() {
    let dir = TestDir::new();
    let model = FakeModel::start();
    let engine = engine_with(&dir, &model, "response_format = \"json_object\"");
    let (_, output) = ask(&engine, "hi", None).expect("completed");
    assert_eq!(json_of(&output)["answer"], "hi");
    let sent = &model.seen()[0].body;
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    let system = sent["messages"][0]["content"].as_str().expect("system");
    assert!(
        system.contains("\"required\":[\"answer\",\"history\"]"),
        "{system}"
    );

    let run = engine
        .create_run(RunRequest::new("plain, please", "local"))
        .expect("run");
    let (_, output) = engine
        .wait_for_result(&run.id, Duration::from_secs(30))
        .expect("completed");
    // Auto spec and no response format: the text comes back as text.
    assert_eq!(
        output.content,
        Content::Text("You said: plain, please".into())
    );
}

#[test]
fn follow_up_turns_are_the_earlier_messages() {
    let dir = TestDir::new();
    let model = FakeModel::start();
    let engine = engine_with(&dir, &model, "");
    let (first, _) = ask(&engine, "My name is Ada.", None).expect("first turn");
    let (_, output) = ask(&engine, "What is my name?", Some(&first)).expect("second turn");
    let history = json_of(&output)["history"].clone();
    assert_eq!(history[0], "My name is Ada.");
    // The first answer, as the model gave it, is the assistant's message.
    let said: Value = serde_json::from_str(history[1].as_str().expect("assistant text"))
        .expect("the first answer was JSON");
    assert_eq!(said["answer"], "My name is Ada.");
    let roles: Vec<Value> = model.seen()[1].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| message["role"].clone())
        .collect();
    assert_eq!(
        roles,
        [
            json!("system"),
            json!("user"),
            json!("assistant"),
            json!("user")
        ]
    );
}

#[test]
fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let dir = TestDir::new();
    let model = FakeModel::start();
    let engine = engine_with(&dir, &model, "");
    let (run_id, output) = ask(&engine, "busy? [429]", None).expect("completed on retry");
    assert_eq!(json_of(&output)["answer"], "busy? [429]");
    let seen = model.seen();
    assert_eq!(seen.len(), 2, "one refusal, one answer");
    // backoff_ms is 10: only the Retry-After of 1 s explains the wait.
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    let run = engine.get_run(&run_id).expect("run");
    let warnings = serde_json::to_string(&run.warnings).expect("warnings");
    assert!(
        warnings.contains("answered 429: the slots are busy"),
        "{warnings}"
    );
}

#[test]
fn a_slow_reply_times_out_and_other_failures_say_why() {
    let dir = TestDir::new();
    let model = FakeModel::start();
    let engine = engine_with(&dir, &model, "timeout_ms = 500\nmax_attempts = 2");
    let failure = |input: &str| match ask(&engine, input, None) {
        Err(Error::RunFailed { error, .. }) => error.message,
        other => panic!("{input}: expected a failure, got {other:?}"),
    };
    let started = Instant::now();
    let message = failure("take your time [slow]");
    assert!(message.contains("deadline (timeout_ms)"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the attempt did not wait the reply out"
    );

    // A reply that is not what was asked for fails the attempt, twice.
    let message = failure("[prose]");
    assert!(message.contains("malformed reply"), "{message}");
    assert!(
        message.contains("not a JSON object: Not JSON, sorry."),
        "{message}"
    );
    let message = failure("[html]");
    assert!(message.contains("malformed reply: not JSON"), "{message}");

    // A 4xx is final at once, with the server's message.
    let before = model.seen().len();
    let message = failure("[400]");
    assert!(
        message.contains("answered 400: the prompt is too long"),
        "{message}"
    );
    assert_eq!(model.seen().len(), before + 1, "a 400 is not retried");
}

#[test]
fn the_key_comes_from_the_named_environment_variable() {
    let dir = TestDir::new();
    let model = FakeModel::start();
    // PATH is always set: its value stands in for a key.
    let key = std::env::var("PATH").expect("PATH");
    let engine = engine_with(&dir, &model, "api_key_env = \"PATH\"");
    ask(&engine, "hello", None).expect("completed");
    assert_eq!(model.seen()[0].authorization, Some(format!("Bearer {key}")));

    let path = dir.dir.path().join("missing.toml");
    std::fs::write(
        &path,
        "[processors.m]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
         model = \"x\"\napi_key_env = \"TASKYARD_NO_SUCH_VARIABLE\"\n",
    )
    .expect("config written");
    let error = FileConfig::load(&path)
        .and_then(|file| file.registry())
        .err()
        .expect("an unset variable is an error");
    assert!(error.contains("line 5"), "{error}");
    assert!(
        error.contains("TASKYARD_NO_SUCH_VARIABLE is not set"),
        "{error}"
    );
}
