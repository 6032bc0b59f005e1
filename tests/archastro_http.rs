//! The ArchAstro face over raw HTTP (issue 15), for what the SDK cannot
//! show: statuses and bodies of spec section 4, the nested error form with
//! `fields` on every 422 and nothing written, both `agent` query forms and
//! `null` as a query value, the SSE bytes (LF only, one frame per status
//! change, the end), keep-alives, the path split with Handinger's `/api/`,
//! auth by either header, and sessions and routine runs as the same runs on
//! the Parallel face.

#[path = "support/http.rs"]
mod client;
mod support;

use std::time::Duration;

use client::{Response, TestServer};
use serde_json::{json, Value};
use support::{config_from_toml, open_with, wait_for, TestDir};
use taskyard::faces::archastro::ids;

const DEADLINE: Duration = Duration::from_secs(20);

/// A server whose `agi_slow` takes `latency_ms` a turn, with `change` on
/// its config; the directory must outlive the server.
fn server_with(
    dir: &TestDir,
    latency_ms: u64,
    change: impl FnOnce(&mut taskyard::server::ServerConfig),
) -> TestServer {
    let config = config_from_toml(
        dir,
        "taskyard.toml",
        &format!("[processors.slow]\nkind = \"mock\"\nlatency_ms = {latency_ms}\n"),
    )
    .expect("config");
    TestServer::start_on_engine(open_with(dir, config), change)
}

fn call(server: &TestServer, method: &str, path: &str, body: Option<&Value>) -> Response {
    let body = body.map(Value::to_string);
    server.send(
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_deref().map(str::as_bytes),
    )
}

/// A call on one session: `tail` after its path, a JSON body.
fn session_call(server: &TestServer, method: &str, id: &str, tail: &str, body: Value) -> Response {
    call(
        server,
        method,
        &format!("/api/v1/agent_sessions/{id}{tail}"),
        Some(&body),
    )
}

/// A session made from `body` (a 201); its id.
fn create_session(server: &TestServer, body: Value) -> String {
    let created = call(server, "POST", "/api/v1/agent_sessions", Some(&body));
    assert_eq!(created.status, 201, "{}", created.text());
    created.json()["id"].as_str().expect("id").to_string()
}

/// Each `(query, field)`: `GET path?query` is a 422 naming `field` first.
fn assert_queries_refused(server: &TestServer, path: &str, cases: &[(&str, &str)]) {
    for (query, field) in cases {
        let answer = server.get(&format!("{path}{query}"));
        assert!(
            fields(&answer)[0].starts_with(field),
            "{query}: {}",
            answer.text()
        );
    }
}

fn raw(server: &TestServer, method: &str, path: &str, body: &[u8]) -> Response {
    server.send(
        method,
        path,
        &[("Content-Type", "application/json")],
        Some(body),
    )
}

/// The nested error (spec 1.6) with this status and code; its message.
fn assert_error(answer: &Response, status: u16, code: &str) -> Value {
    assert_eq!(answer.status, status, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    if status == 422 {
        assert!(
            body["error"]["fields"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
            "{body}"
        );
    } else {
        assert!(body["error"].get("fields").is_none(), "{body}");
    }
    body["error"].clone()
}

/// The fields a 422 names.
fn fields(answer: &Response) -> Vec<String> {
    let error = assert_error(answer, 422, "validation_failed");
    error["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|field| {
            format!(
                "{}: {}",
                field["field"].as_str().unwrap_or(""),
                field["message"]
            )
        })
        .collect()
}

/// `DELETE path` answers 204 with no body, and `GET path` is then 404.
fn assert_deleted(server: &TestServer, path: &str) {
    let deleted = raw(server, "DELETE", path, b"");
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(deleted.body.is_empty(), "a 204 has no body");
    assert_error(&server.get(path), 404, "not_found");
}

fn session_status(server: &TestServer, id: &str) -> String {
    let answer = server.get(&format!("/api/v1/agent_sessions/{id}"));
    answer.json()["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn sessions_answer_201_200_204_and_bad_input_is_a_422_that_writes_nothing() {
    let dir = TestDir::new();
    let server = server_with(&dir, 0, |_| {});
    let cases: Vec<(&[u8], &[&str])> = vec![
        (b"{not json", &["body"]),
        (b"[1]", &["body"]),
        (b"{}", &["agent", "instructions"]),
        (br#"{"agent": "agi_core"}"#, &["instructions"]),
        (
            br#"{"agent": "agi_core", "instructions": ""}"#,
            &["instructions"],
        ),
        (br#"{"agent": 7, "instructions": "x"}"#, &["agent"]),
        (
            br#"{"agent": "agi_core", "instructions": "x", "metadata": [1]}"#,
            &["metadata"],
        ),
        (
            br#"{"agent": "agi_core", "instructions": "x", "max_turns": 0}"#,
            &["max_turns"],
        ),
        (
            br#"{"agent": "agi_core", "instructions": "x", "start_idle": "no"}"#,
            &["start_idle"],
        ),
        (
            br#"{"agent": "agi_core", "instructions": "x", "name": 5}"#,
            &["name"],
        ),
    ];
    for (body, wanted) in cases {
        let answer = raw(&server, "POST", "/api/v1/agent_sessions", body);
        let named = fields(&answer);
        for field in wanted {
            assert!(
                named.iter().any(|n| n.starts_with(&format!("{field}:"))),
                "{field} in {named:?} for {}",
                String::from_utf8_lossy(body)
            );
        }
    }
    let unknown = call(
        &server,
        "POST",
        "/api/v1/agent_sessions",
        Some(&json!({"agent": "agi_nobody", "instructions": "x"})),
    );
    assert_error(&unknown, 404, "not_found");
    assert_eq!(server.runs_stored(), 0, "bad input wrote a run");
    let listed = server.get("/api/v1/agent_sessions");
    assert_eq!(
        listed.json(),
        json!({"data": []}),
        "bad input wrote a session"
    );

    let created = call(
        &server,
        "POST",
        "/api/v1/agent_sessions",
        Some(&json!({"agent": "agi_core", "instructions": "Summarize", "team": "t", "user": null})),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let session = created.json();
    let id = session["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("ase_") && id.len() == 26, "{id}");
    for key in [
        "agent",
        "status",
        "instructions",
        "name",
        "metadata",
        "inbox",
        "result",
        "error",
        "trajectory",
        "is_system_session",
        "max_runs_per_turn",
        "max_tokens",
        "max_turns",
        "created_at",
        "started_at",
        "completed_at",
    ] {
        assert!(session.get(key).is_some(), "{key} missing from {session}");
    }
    assert_eq!(session["name"], Value::Null);
    wait_for("the session completes", DEADLINE, || {
        session_status(&server, &id) == "completed"
    });

    // `{}` changes nothing; metadata replaces the map; a non-map is a 422.
    let same = session_call(&server, "PATCH", &id, "", json!({}));
    assert_eq!(same.status, 200);
    assert_eq!(same.json()["metadata"], json!({}));
    let set = session_call(&server, "PATCH", &id, "", json!({"metadata": {"a": 1}}));
    assert_eq!(set.json()["metadata"], json!({"a": 1}));
    let bad = session_call(&server, "PATCH", &id, "", json!({"metadata": "x"}));
    assert_eq!(fields(&bad), ["metadata: \"must be a map\""]);

    let message = session_call(&server, "POST", &id, "/message", json!({"role": "user"}));
    assert_eq!(fields(&message), ["content: \"is required\""]);

    // The body-less POST the SDK sends: content type, no body.
    let cancel = raw(
        &server,
        "POST",
        &format!("/api/v1/agent_sessions/{id}/cancel"),
        b"",
    );
    assert_eq!(cancel.status, 200, "{}", cancel.text());
    assert_eq!(
        cancel.json()["status"],
        "completed",
        "cancel leaves an ended session"
    );

    let events = server.get(&format!("/api/v1/agent_sessions/{id}/events"));
    assert_eq!(events.json(), json!([]));

    assert_deleted(&server, &format!("/api/v1/agent_sessions/{id}"));
    assert_error(
        &raw(
            &server,
            "DELETE",
            &format!("/api/v1/agent_sessions/{id}"),
            b"",
        ),
        404,
        "not_found",
    );
}

#[test]
fn an_active_session_is_not_deleted_and_turns_past_max_turns_are_422() {
    let dir = TestDir::new();
    let server = server_with(&dir, 20_000, |_| {});
    let id = create_session(
        &server,
        json!({"agent": "agi_slow", "instructions": "slow", "max_turns": 1}),
    );
    let delete = raw(
        &server,
        "DELETE",
        &format!("/api/v1/agent_sessions/{id}"),
        b"",
    );
    assert_eq!(fields(&delete).len(), 1);
    let more = session_call(
        &server,
        "POST",
        &id,
        "/message",
        json!({"content": "again"}),
    );
    assert!(
        fields(&more)[0].starts_with("max_turns:"),
        "{}",
        more.text()
    );
    assert_eq!(server.runs_stored(), 1, "a refused message wrote a run");
    let cancelled = raw(
        &server,
        "POST",
        &format!("/api/v1/agent_sessions/{id}/cancel"),
        b"",
    );
    assert_eq!(cancelled.json()["status"], "cancelled");
    let after = session_call(
        &server,
        "POST",
        &id,
        "/message",
        json!({"content": "again"}),
    );
    assert!(fields(&after)[0].starts_with("status:"), "{}", after.text());
    assert_eq!(
        raw(
            &server,
            "DELETE",
            &format!("/api/v1/agent_sessions/{id}"),
            b""
        )
        .status,
        204
    );
}

#[test]
fn list_reads_agent_and_agent_brackets_commas_and_null_alike() {
    let dir = TestDir::new();
    let server = server_with(&dir, 0, |_| {});
    let mut ids = Vec::new();
    for agent in ["agi_core", "agi_lite", "agi_core"] {
        let created = call(
            &server,
            "POST",
            "/api/v1/agent_sessions",
            Some(&json!({"agent": agent, "instructions": "x"})),
        );
        ids.push(created.json()["id"].as_str().expect("id").to_string());
    }
    let listed = |query: &str| -> Vec<String> {
        let answer = server.get(&format!("/api/v1/agent_sessions{query}"));
        assert_eq!(answer.status, 200, "{query}: {}", answer.text());
        answer.json()["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed(""), newest_first);
    let core = vec![ids[2].clone(), ids[0].clone()];
    assert_eq!(listed("?agent%5B%5D=agi_core"), core);
    assert_eq!(listed("?agent=agi_core"), core);
    assert_eq!(
        listed("?agent%5B%5D=agi_core&agent%5B%5D=agi_lite"),
        newest_first
    );
    assert_eq!(listed("?agent=agi_core,agi_lite"), newest_first);
    assert_eq!(
        listed("?agent=null&limit=null&status%5B%5D=null"),
        newest_first
    );
    assert_eq!(listed("?limit=1"), vec![ids[2].clone()]);
    assert_eq!(listed("?routine_run%5B%5D=arr_x"), Vec::<String>::new());
    assert_eq!(listed("?exclude_system=true").len(), 3);
    assert_queries_refused(
        &server,
        "/api/v1/agent_sessions",
        &[
            ("?limit=0", "limit"),
            ("?limit=101", "limit"),
            ("?limit=ten", "limit"),
            ("?status=bogus", "status"),
            ("?exclude_system=maybe", "exclude_system"),
        ],
    );
    let many: String = (0..101).map(|i| format!("agent%5B%5D=a{i}&")).collect();
    let answer = server.get(&format!("/api/v1/agent_sessions?{many}"));
    assert!(
        answer.text().contains("FILTER_VALUES_MAX"),
        "{}",
        answer.text()
    );
}

#[test]
fn unknown_paths_are_404_wrong_methods_405_and_handinger_keeps_its_api() {
    let dir = TestDir::new();
    let server = server_with(&dir, 0, |_| {});
    assert_error(&server.get("/api/v1/agents"), 404, "not_found");
    assert_error(&server.get("/api/v1"), 404, "not_found");
    assert_error(&server.get("/api/v1/auth/login"), 404, "not_found");
    assert_error(
        &raw(&server, "POST", "/api/v1/auth/refresh", b"{}"),
        404,
        "not_found",
    );
    let wrong = raw(&server, "PUT", "/api/v1/agent_sessions", b"{}");
    assert_error(&wrong, 405, "method_not_allowed");
    assert!(wrong.header("allow").is_some_and(|a| a.contains("POST")));
    assert_error(
        &raw(&server, "DELETE", "/api/v1/agent_routines/presets", b""),
        405,
        "method_not_allowed",
    );
    // A base URL ending in `/` sends `//api/v1/...`: slashes collapse.
    assert_eq!(server.get("//api/v1/agent_routines/presets").status, 200);
    assert_eq!(server.get("/api//v1///agent_sessions").status, 200);
    // An id that is not UTF-8 once decoded, and one with a space.
    assert_error(&server.get("/api/v1/agent_sessions/%FF"), 404, "not_found");
    assert_error(
        &server.get("/api/v1/agent_sessions/ase%201"),
        404,
        "not_found",
    );
    assert_error(
        &server.get("/api/v1/agent_routines/runs/arr_x"),
        404,
        "not_found",
    );
    // Handinger's `/api/` is still Handinger's, in its own error form.
    let handinger = raw(&server, "POST", "/api/tasks", b"{}");
    assert_eq!(handinger.status, 400, "{}", handinger.text());
    assert_eq!(handinger.json()["error"]["code"], "bad_request");
    let handinger_404 = server.get("/api/nothing");
    assert_eq!(handinger_404.status, 404);
    assert!(handinger_404.json()["error"].get("fields").is_none());
}

#[test]
fn a_configured_key_is_taken_from_either_header() {
    let dir = TestDir::new();
    let server = server_with(&dir, 0, |config| {
        config.api_keys = vec!["sk_local".into()];
    });
    let path = "/api/v1/agent_routines/presets";
    assert_error(&server.get(path), 401, "unauthenticated");
    let wrong = server.send("GET", path, &[("x-archastro-api-key", "sk_other")], None);
    assert_error(&wrong, 401, "unauthenticated");
    let key = server.send("GET", path, &[("x-archastro-api-key", "sk_local")], None);
    assert_eq!(key.status, 200);
    let bearer = server.send("GET", path, &[("Authorization", "Bearer sk_local")], None);
    assert_eq!(bearer.status, 200);
    // An unmatched path under the face needs the key too.
    assert_error(&server.get("/api/v1/nothing"), 401, "unauthenticated");
}

/// Reads a stream to its terminating chunk, unparsed (its frames carry no
/// `type` key, which `SseStream::read_to_end` checks for Parallel's).
fn read_raw(stream: &mut client::SseStream) -> Vec<u8> {
    let until = std::time::Instant::now() + DEADLINE;
    while !stream.ended {
        let left = until.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "the stream did not end within {DEADLINE:?}"
        );
        stream.next_chunk(left);
    }
    stream.body.clone()
}

/// The frames of an SSE body, checked byte for byte: `event: <name>\n`,
/// `data: <compact JSON>\n`, an empty line; or `: keep-alive\n\n`. No CR.
fn sse_frames(body: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(body).expect("UTF-8");
    assert!(!text.contains('\r'), "CR in {text:?}");
    assert!(text.ends_with("\n\n"), "the body ends mid-frame: {text:?}");
    let mut frames = Vec::new();
    for block in text[..text.len() - 2].split("\n\n") {
        if block == ": keep-alive" {
            continue;
        }
        let lines: Vec<&str> = block.split('\n').collect();
        assert_eq!(lines.len(), 2, "{block:?}");
        let name = lines[0].strip_prefix("event: ").expect("an event line");
        let data = lines[1].strip_prefix("data: ").expect("a data line");
        let parsed: Value = serde_json::from_str(data).expect("JSON data");
        assert_eq!(parsed.to_string(), data, "data is compact JSON");
        frames.push((name.to_string(), parsed));
    }
    frames
}

#[test]
fn streams_are_lf_framed_one_event_per_status_change_and_end_after_the_turn() {
    let dir = TestDir::new();
    let server = server_with(&dir, 600, |config| {
        config.keep_alive = Duration::from_millis(100);
    });
    let id = create_session(
        &server,
        json!({"agent": "agi_slow", "instructions": "slowly"}),
    );
    let mut stream = server
        .stream(
            &format!("/api/v1/agent_sessions/{id}/stream"),
            &[("Accept", "text/event-stream")],
        )
        .expect("a stream");
    assert!(stream
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream")));
    let bytes = read_raw(&mut stream);
    let body = String::from_utf8_lossy(&bytes).to_string();
    assert!(
        body.contains(": keep-alive\n\n"),
        "a keep-alive while the turn ran: {body:?}"
    );
    let frames = sse_frames(&bytes);
    let statuses: Vec<&str> = frames
        .iter()
        .map(|(name, data)| {
            assert_eq!(name, "session_update");
            data["status"].as_str().expect("status")
        })
        .collect();
    assert_eq!(statuses.last(), Some(&"completed"), "{statuses:?}");
    let mut unique = statuses.clone();
    unique.dedup();
    assert_eq!(unique, statuses, "one event per status change");
    assert!(frames.last().expect("a frame").1["result"]["content"].is_string());

    // A stream opened on an ended session replays its state and ends.
    let mut again = server
        .stream(&format!("/api/v1/agent_sessions/{id}/stream"), &[])
        .expect("a stream");
    let replay = sse_frames(&read_raw(&mut again));
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].1["status"], "completed");

    let missing = server.stream("/api/v1/agent_sessions/ase_none/stream", &[]);
    assert_error(&missing.err().expect("no stream"), 404, "not_found");
}

#[test]
fn a_stream_at_its_maximum_duration_ends_with_a_stream_timeout_error() {
    let dir = TestDir::new();
    let server = server_with(&dir, 60_000, |config| {
        config.faces.archastro.stream_s_max = 1;
    });
    let id = create_session(
        &server,
        json!({"agent": "agi_slow", "instructions": "forever"}),
    );
    let mut stream = server
        .stream(&format!("/api/v1/agent_sessions/{id}/stream"), &[])
        .expect("a stream");
    let frames = sse_frames(&read_raw(&mut stream));
    let (name, data) = frames.last().expect("frames");
    assert_eq!(name, "error");
    assert_eq!(data["error"]["code"], "stream_timeout", "{data}");
    assert!(frames[..frames.len() - 1]
        .iter()
        .all(|(name, _)| name == "session_update"));
    let cancelled = raw(
        &server,
        "POST",
        &format!("/api/v1/agent_sessions/{id}/cancel"),
        b"",
    );
    assert_eq!(cancelled.json()["status"], "cancelled");
}

fn routine(server: &TestServer, agent: &str, body: Value) -> Response {
    call(
        server,
        "POST",
        &format!("/api/v1/agents/{agent}/agent_routines"),
        Some(&body),
    )
}

fn preset(name: &str) -> Value {
    json!({"name": name, "handler_type": "preset", "preset_name": "do_task",
           "preset_config": {"instructions": "Do it"}})
}

#[test]
fn routines_refuse_bad_input_with_every_field_named_and_write_nothing() {
    let dir = TestDir::new();
    let server = server_with(&dir, 0, |_| {});
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({}), &["name", "handler_type"]),
        (json!({"name": "", "handler_type": "preset"}), &["name"]),
        (
            json!({"name": "n", "handler_type": "magic"}),
            &["handler_type"],
        ),
        (
            json!({"name": "n", "handler_type": "preset", "lookup_key": "presets"}),
            &["lookup_key"],
        ),
        (
            json!({"name": "n", "handler_type": "preset", "lookup_key": "runs"}),
            &["lookup_key"],
        ),
        (
            json!({"name": "n", "handler_type": "preset", "schedule": "*/5 * * * *"}),
            &["schedule"],
        ),
        (
            json!({"name": "n", "handler_type": "preset", "schedule": "0,30 * * * *"}),
            &["schedule"],
        ),
        (
            json!({"name": "n", "handler_type": "preset", "schedule": "not cron"}),
            &["schedule"],
        ),
        (
            json!({"name": "n", "handler_type": "preset", "preset_config": []}),
            &["preset_config"],
        ),
        (
            json!({"name": "n", "handler_type": "preset", "steps": {}}),
            &["steps"],
        ),
        (
            json!({"name": "n", "handler_type": "preset", "status": "paused"}),
            &["status"],
        ),
        (
            json!({"name": "n", "handler_type": "preset", "preset_config": {"instructions": 3}}),
            &["preset_config.instructions"],
        ),
        (
            json!({"name": "x".repeat(256), "handler_type": "preset"}),
            &["name"],
        ),
    ];
    for (body, wanted) in cases {
        let answer = routine(&server, "agi_core", body.clone());
        let named = fields(&answer);
        for field in wanted {
            assert!(
                named.iter().any(|n| n.starts_with(&format!("{field}:"))),
                "{field} in {named:?} for {body}"
            );
        }
    }
    let long = routine(
        &server,
        "agi_core",
        json!({"name": "x".repeat(256), "handler_type": "preset"}),
    );
    assert!(long.text().contains("NAME_CHARS_MAX"), "{}", long.text());
    assert_error(
        &routine(&server, "agi_nobody", preset("n")),
        404,
        "not_found",
    );
    assert_error(
        &server.get("/api/v1/agent_routines?agent=agi_nobody"),
        404,
        "not_found",
    );
    assert_eq!(
        server.get("/api/v1/agent_routines").json(),
        json!({"data": []})
    );

    // A script routine is stored but neither activated nor invoked.
    let script = routine(
        &server,
        "agi_core",
        json!({"name": "s", "handler_type": "script"}),
    );
    assert_eq!(script.status, 200, "{}", script.text());
    let id = script.json()["id"].as_str().expect("id").to_string();
    let activate = raw(
        &server,
        "POST",
        &format!("/api/v1/agent_routines/{id}/activate"),
        b"",
    );
    assert!(fields(&activate)[0].starts_with("handler_type:"));
    let active_script = routine(
        &server,
        "agi_core",
        json!({"name": "s", "handler_type": "script", "status": "active"}),
    );
    assert!(fields(&active_script)[0].starts_with("handler_type:"));
    assert_eq!(
        server.get("/api/v1/agent_routines").json()["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(server.runs_stored(), 0);
}

fn invoke(server: &TestServer, routine: &str, body: Value) -> Response {
    call(
        server,
        "POST",
        &format!("/api/v1/agent_routines/{routine}/invoke"),
        Some(&body),
    )
}

#[test]
fn invoke_needs_an_active_routine_and_an_idempotency_key_names_one_run() {
    let dir = TestDir::new();
    let server = server_with(&dir, 1_500, |_| {});
    let made = routine(
        &server,
        "agi_slow",
        json!({"name": "n", "handler_type": "preset",
        "preset_name": "do_task", "preset_config": {"instructions": "Do it"}, "lookup_key": "nightly"}),
    );
    let id = made.json()["id"].as_str().expect("id").to_string();
    assert!(fields(&invoke(&server, &id, json!({"message": "x"})))[0].starts_with("status:"));
    let active = raw(
        &server,
        "POST",
        &format!("/api/v1/agent_routines/{id}/activate"),
        b"",
    );
    assert_eq!(active.json()["status"], "active");
    assert_eq!(
        fields(&invoke(&server, &id, json!({}))),
        ["message: \"is required\""]
    );
    assert!(fields(&invoke(
        &server,
        &id,
        json!({"message": "x", "delivery": {"type": "fax"}})
    ))[0]
        .starts_with("delivery.type:"));
    assert_eq!(server.runs_stored(), 0, "refused invokes wrote runs");

    let body = json!({"message": "x", "idempotency_key": "once", "delivery": {"type": "thread", "thread": "th_1"},
                      "participants": ["u1"]});
    let first = invoke(&server, "nightly", body.clone());
    assert_eq!(first.status, 200, "{}", first.text());
    let run = first.json();
    assert_eq!(run["payload"], json!({"message": "x"}));
    assert_eq!(run["delivery"]["status"], "failed");
    assert_eq!(run["delivery"]["last_error"], "delivery_unsupported");
    assert_eq!(run["participants"], json!(["u1"]));
    let run_id = run["id"].as_str().expect("id").to_string();
    // While the run is active the key answers it again, whatever the body.
    let again = invoke(
        &server,
        &id,
        json!({"message": "other", "idempotency_key": "once"}),
    );
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["id"], run_id.as_str());
    assert_eq!(server.runs_stored(), 1);
    wait_for("the run ends", DEADLINE, || {
        server
            .get(&format!("/api/v1/agent_routines/runs/{run_id}"))
            .json()["status"]
            == "completed"
    });
    assert_error(&invoke(&server, &id, body), 409, "conflict");
    assert_eq!(server.runs_stored(), 1);

    // The same run on the Parallel face: arr_ and trun_ are one ULID.
    let hex = ids::run_of("arr_", &run_id).expect("an arr_ id");
    let parallel = server.get(&format!("/v1/tasks/runs/trun_{hex}"));
    assert_eq!(parallel.status, 200, "{}", parallel.text());
    assert_eq!(parallel.json()["status"], "completed");
    assert_eq!(
        parallel.json()["metadata"]["archastro_routine"],
        id.as_str()
    );

    // Pages: bad cursors and limits are 422s naming them.
    assert_queries_refused(
        &server,
        &format!("/api/v1/agent_routines/{id}/runs"),
        &[
            ("?limit=0", "limit"),
            ("?before_cursor=nope", "before_cursor"),
            ("?after_cursor=trun_1", "after_cursor"),
            ("?status=odd", "status"),
        ],
    );
    let page = server.get(&format!(
        "/api/v1/agent_routines/{id}/runs?status=completed&limit=null"
    ));
    assert_eq!(page.json()["data"][0]["id"], run_id.as_str());
    let listed = server.get("/api/v1/agent_routine_runs?agent=nightly");
    assert_eq!(
        listed.json()["data"][0]["id"],
        run_id.as_str(),
        "agent[] takes a lookup key"
    );

    assert_deleted(&server, &format!("/api/v1/agent_routines/{id}"));
    let kept = server.get(&format!("/api/v1/agent_routines/runs/{run_id}"));
    assert_eq!(kept.status, 200, "a deleted routine's runs stay readable");
    let journal = server.get(&format!("/api/v1/agent_routines/runs/{run_id}/journal"));
    assert_eq!(journal.json()["has_more"], false);
}

#[test]
fn a_session_turn_is_a_run_on_the_parallel_face() {
    let dir = TestDir::new();
    let server = server_with(&dir, 0, |_| {});
    let id = create_session(
        &server,
        json!({"agent": "agi_core", "instructions": "first"}),
    );
    wait_for("the first turn", DEADLINE, || {
        session_status(&server, &id) == "completed"
    });
    session_call(
        &server,
        "POST",
        &id,
        "/message",
        json!({"content": "second"}),
    );
    wait_for("the second turn", DEADLINE, || {
        session_status(&server, &id) == "completed"
    });
    let turns = server
        .engine
        .interaction(&format!("archastro:{id}"))
        .expect("turns");
    assert_eq!(turns.len(), 2);
    for turn in &turns {
        let run = server.get(&format!("/v1/tasks/runs/trun_{}", turn.run.id));
        assert_eq!(run.status, 200, "{}", run.text());
        assert_eq!(run.json()["metadata"]["archastro_session"], id.as_str());
        assert_eq!(run.json()["status"], "completed");
    }
    // The second turn follows the first on the Parallel face too.
    let input = server.get(&format!("/v1/tasks/runs/trun_{}/input", turns[1].run.id));
    assert_eq!(input.status, 200, "{}", input.text());
}

#[test]
fn an_invoked_run_and_its_index_record_are_one_write() {
    let dir = TestDir::new();
    let server = server_with(&dir, 0, |_| {});
    let engine = server.engine.engine();
    let index = ("archastro", "invoked", "arn_test/");
    let bad = taskyard::model::RunRequest::new(json!("x"), "no-such-processor");
    assert!(engine.create_indexed_run(bad, index, None).is_err());
    let listed = engine.list_records("archastro", "invoked", "arn_test/", 10);
    assert!(
        listed.expect("records").is_empty(),
        "a refused run left an index"
    );
    let good = taskyard::model::RunRequest::new(json!("x"), "core");
    let run = match engine.create_indexed_run(good, index, None).expect("a run") {
        taskyard::engine::Created::Fresh { value, .. } => value,
        other => panic!("{other:?}"),
    };
    let listed = engine
        .list_records("archastro", "invoked", "arn_test/", 10)
        .expect("records");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, format!("arn_test/{}", run.id));
}

/// Messages sent at once to one session each keep their inbox entry and
/// their turn: a session's record is changed one request at a time.
#[test]
fn messages_sent_at_once_all_reach_the_inbox() {
    let dir = TestDir::new();
    let server = server_with(&dir, 0, |_| {});
    let id = create_session(
        &server,
        json!({"agent": "agi_slow", "instructions": "Count"}),
    );
    let senders = 16;
    std::thread::scope(|scope| {
        for index in 0..senders {
            let (server, id) = (&server, &id);
            scope.spawn(move || {
                let sent = session_call(
                    server,
                    "POST",
                    id,
                    "/message",
                    json!({ "content": format!("message {index}") }),
                );
                assert_eq!(sent.status, 200, "{}", sent.text());
            });
        }
    });
    let session = call(
        &server,
        "GET",
        &format!("/api/v1/agent_sessions/{id}"),
        None,
    )
    .json();
    let mut contents: Vec<String> = session["inbox"]
        .as_array()
        .expect("an inbox")
        .iter()
        .map(|message| message["content"].as_str().expect("content").to_string())
        .collect();
    contents.sort();
    let mut expected: Vec<String> = (0..senders)
        .map(|index| format!("message {index}"))
        .collect();
    expected.sort();
    assert_eq!(contents, expected, "every message kept");
}
