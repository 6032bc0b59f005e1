//! The Nextcloud OCS TaskProcessing face over raw HTTP (issue 14): the
//! v1 and v2 envelopes in JSON and XML, the login, CSRF, 998 and 405
//! answers in Nextcloud's order and forms, bad input as Nextcloud words it
//! with nothing written, integer ids that stay put, per-user scoping, list
//! filters, cancel and delete, the schedule rate limit, and a task that is
//! the same run on the Parallel face.

#[path = "support/http.rs"]
mod client;
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use std::time::Duration;

use client::{Response, TestServer};
use receiver::Receiver;
use serde_json::{json, Value};
use support::{config_from_toml, open_with, wait_for, TestDir};
use taskyard::faces::nextcloud::NcConfig;

const V2: &str = "/ocs/v2.php/taskprocessing";
const V1: &str = "/ocs/v1.php/taskprocessing";

/// Processors for the tests: `slow` stays running until cancelled,
/// `broken` always fails.
const PROCESSORS: &str = r#"
[processors.slow]
kind = "mock"
latency_ms = 600000

[processors.broken]
kind = "mock"
failure_rate = 1.0
"#;

/// The face's table: the default types, one slow and one broken type, and
/// translate with two languages; `extra` adds keys.
fn face_table(extra: &str) -> toml::Table {
    let text = format!(
        r#"
{extra}
languages = [{{ value = "en", name = "English" }}, {{ value = "de", name = "German" }}]
[task_types]
"core:text2text" = "mock"
"core:text2text:chat" = "mock"
"core:text2text:summary" = "slow"
"core:text2text:headline" = "broken"
"core:text2text:translate" = "mock"
"#
    );
    toml::from_str(&text).expect("face table")
}

/// A server with the test processors and face settings, and `keys`.
fn start(dir: &TestDir, extra: &str, keys: &[&str]) -> TestServer {
    let config = config_from_toml(dir, "taskyard.toml", PROCESSORS).expect("config");
    let face = NcConfig::from_table(Some(&face_table(extra)), &config.registry)
        .expect("the face's settings");
    let keys: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
    TestServer::start_on_engine(open_with(dir, config), move |server| {
        server.api_keys = keys;
        server.faces.nextcloud = face;
    })
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// A request as nc-py-api sends it: Basic auth, `OCS-APIRequest`, JSON.
fn nc(server: &TestServer, user: &str, method: &str, path: &str, body: Option<&Value>) -> Response {
    let auth = basic(user, "k");
    let body = body.map(Value::to_string);
    server.send(
        method,
        path,
        &[
            ("Authorization", &auth),
            ("OCS-APIRequest", "true"),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ],
        body.as_deref().map(str::as_bytes),
    )
}

fn schedule(server: &TestServer, user: &str, body: &Value) -> Response {
    nc(server, user, "POST", &format!("{V2}/schedule"), Some(body))
}

fn text_task(custom_id: &str) -> Value {
    json!({"input": {"input": "hello"}, "type": "core:text2text", "appId": "mytest", "customId": custom_id})
}

/// The `ocs.data` of a v2 JSON answer with this status.
fn data(answer: &Response, status: u16) -> Value {
    assert_eq!(answer.status, status, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["ocs"]["meta"]["statuscode"], json!(status), "{body}");
    body["ocs"]["data"].clone()
}

/// A failure's `data.message`, with `meta.message` empty (spec 1.2).
fn failure(answer: &Response, status: u16) -> String {
    let body = answer.json();
    assert_eq!(answer.status, status, "{body}");
    assert_eq!(body["ocs"]["meta"]["status"], "failure", "{body}");
    assert_eq!(body["ocs"]["meta"]["message"], "", "{body}");
    body["ocs"]["data"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("a message in {body}"))
        .to_string()
}

/// The ids a list route answers `user`; `query` is the route after the
/// base, with its query string.
fn listed_ids(server: &TestServer, user: &str, query: &str) -> Vec<u64> {
    data(
        &nc(server, user, "GET", &format!("{V2}/{query}"), None),
        200,
    )["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|task| task["id"].as_u64().expect("id"))
        .collect()
}

/// An object's keys, in order.
fn keys(value: &Value) -> Vec<&str> {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"));
    object.keys().map(String::as_str).collect()
}

fn wait_status(server: &TestServer, user: &str, id: u64, status: &str) -> Value {
    let path = format!("{V2}/task/{id}");
    let mut last = Value::Null;
    wait_for(
        &format!("task {id} to be {status}"),
        Duration::from_secs(30),
        || {
            last = data(&nc(server, user, "GET", &path, None), 200)["task"].clone();
            last["status"] == status
        },
    );
    last
}

#[test]
fn envelopes_follow_v1_and_v2_in_json_and_xml() {
    let dir = TestDir::new();
    let server = start(&dir, "", &["k"]);
    let task = data(&schedule(&server, "alice", &text_task("doc-1")), 200)["task"].clone();
    assert_eq!(task["id"], json!(1));
    assert_eq!(task["status"], "STATUS_SCHEDULED");
    assert_eq!(
        keys(&task),
        [
            "id",
            "type",
            "lastUpdated",
            "status",
            "userId",
            "appId",
            "input",
            "output",
            "customId",
            "completionExpectedAt",
            "progress",
            "scheduledAt",
            "startedAt",
            "endedAt",
            "allowCleanup",
            "includeWatermark",
            "userFacingErrorMessage",
            "preferStreaming"
        ],
        "the 18 fields in the server's order"
    );
    let done = wait_status(&server, "alice", 1, "STATUS_SUCCESSFUL");
    assert!(done["output"]["output"].is_string(), "{done}");
    assert_eq!(done["progress"], json!(1.0));

    let auth = basic("alice", "k");
    let get = |path: &str, accept: Option<&str>| {
        let mut headers = vec![("Authorization", auth.as_str()), ("OCS-APIRequest", "true")];
        if let Some(accept) = accept {
            headers.push(("Accept", accept));
        }
        server.send("GET", path, &headers, None)
    };
    // v2 JSON: meta without the v1 paging keys.
    let v2 = get(&format!("{V2}/task/1?format=json"), None);
    assert_eq!(
        v2.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        v2.json()["ocs"]["meta"],
        json!({"status": "ok", "statuscode": 200, "message": "OK"})
    );
    // v1 JSON: statuscode 100 and the paging keys.
    let v1 = get(&format!("{V1}/task/1"), Some("application/json"));
    assert_eq!(v1.status, 200);
    assert_eq!(
        v1.json()["ocs"]["meta"],
        json!({"status": "ok", "statuscode": 100, "message": "OK", "totalitems": "", "itemsperpage": ""})
    );
    assert_eq!(v1.json()["ocs"]["data"], v2.json()["ocs"]["data"]);
    // XML by default, and when Accept is not exactly application/json.
    for accept in [
        None,
        Some("application/json; charset=utf-8"),
        Some("text/html"),
    ] {
        let xml = get(&format!("{V2}/task/1"), accept);
        assert_eq!(xml.status, 200);
        assert_eq!(
            xml.header("content-type"),
            Some("application/xml; charset=utf-8")
        );
        let text = xml.text();
        assert!(
            text.starts_with(
                "<?xml version=\"1.0\"?>\n<ocs>\n <meta>\n  <status>ok</status>\n  \
                 <statuscode>200</statuscode>\n  <message>OK</message>\n </meta>\n <data>\n  \
                 <task>\n   <id>1</id>\n   <type>core:text2text</type>\n"
            ),
            "{text}"
        );
        assert!(text.contains("   <input>\n    <input>hello</input>\n   </input>\n"));
        assert!(text.contains("   <progress>1</progress>\n"), "{text}");
        assert!(text.contains("   <userFacingErrorMessage/>\n"), "{text}");
        assert!(
            text.contains("   <allowCleanup>1</allowCleanup>\n"),
            "{text}"
        );
    }
    // `format` wins over Accept.
    let xml = get(&format!("{V2}/task/1?format=xml"), Some("application/json"));
    assert!(xml.text().starts_with("<?xml"), "{}", xml.text());
    // `format` may come in the body too, even on GET (spec 1.7).
    let json_by_body = server.send(
        "GET",
        &format!("{V2}/task/1"),
        &[
            ("Authorization", auth.as_str()),
            ("OCS-APIRequest", "true"),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"format": "json"}"#),
    );
    assert_eq!(json_by_body.json()["ocs"]["data"]["task"]["id"], json!(1));

    // Both entry points count as one route, under the v2 pattern.
    wait_for(
        "the v1 read in the metrics",
        Duration::from_secs(10),
        || {
            let metrics = server.get("/metrics").text();
            metrics.contains("route=\"/ocs/v2.php/taskprocessing/task/{id}\",status=\"200\"")
                && !metrics.contains("route=\"/ocs/v1.php")
        },
    );

    // A failure: v2 carries the status; v1 answers 200 with it in meta.
    let missing = get(&format!("{V2}/task/99?format=json"), None);
    assert_eq!(failure(&missing, 404), "Task not found");
    let missing = get(&format!("{V1}/task/99?format=json"), None);
    assert_eq!(missing.status, 200);
    assert_eq!(
        missing.json(),
        json!({"ocs": {"meta": {"status": "failure", "statuscode": 404, "message": "",
               "totalitems": "", "itemsperpage": ""}, "data": {"message": "Task not found"}}})
    );
    let xml = get(&format!("{V2}/task/99"), None);
    assert_eq!(xml.status, 404);
    assert!(xml
        .text()
        .contains(" <data>\n  <message>Task not found</message>\n </data>\n"));
}

#[test]
fn login_csrf_and_routing_answer_in_nextclouds_order_and_forms() {
    let dir = TestDir::new();
    let server = start(&dir, "", &["k"]);
    let path = format!("{V2}/tasktypes");
    // No credentials, or nc-py-api's empty Basic: not logged in, v1 too.
    for headers in [
        vec![("OCS-APIRequest", "true")],
        vec![("OCS-APIRequest", "true"), ("Authorization", "Basic Og==")],
    ] {
        for base in [V2, V1] {
            let answer = server.send(
                "GET",
                &format!("{base}/tasktypes?format=json"),
                &headers,
                None,
            );
            assert_eq!(answer.status, 401, "{}", answer.text());
            assert_eq!(answer.json()["ocs"]["meta"]["statuscode"], 997);
            assert_eq!(
                answer.json()["ocs"]["meta"]["message"],
                "Current user is not logged in"
            );
            assert_eq!(answer.json()["ocs"]["data"], json!([]));
        }
    }
    // Wrong credentials: Unauthorised, XML unless `format=json` (Accept
    // is not looked at), with a Basic challenge.
    for auth in [
        basic("alice", "wrong"),
        basic("al ice", "k"),
        basic(&"a".repeat(65), "k"),
        "Basic !!!".to_string(),
        "Bearer wrong".to_string(),
    ] {
        let answer = server.send(
            "GET",
            &path,
            &[
                ("Authorization", &auth),
                ("OCS-APIRequest", "true"),
                ("Accept", "application/json"),
            ],
            None,
        );
        assert_eq!(answer.status, 401, "{auth}: {}", answer.text());
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Basic realm=\"Authorisation Required\"")
        );
        assert_eq!(
            answer.header("content-type"),
            Some("text/xml; charset=UTF-8")
        );
        assert!(answer.text().contains("<statuscode>997</statuscode>"));
        assert!(answer.text().contains("<message>Unauthorised</message>"));
    }
    let wrong = basic("alice", "wrong");
    let answer = server.send(
        "GET",
        &format!("{V1}/nothing?format=json"),
        &[("Authorization", &wrong)],
        None,
    );
    assert_eq!(answer.status, 401, "wrong credentials before the route");
    assert_eq!(answer.json()["ocs"]["meta"]["message"], "Unauthorised");

    // Logged in without OCS-APIRequest: the CSRF check, not enveloped.
    let alice = basic("alice", "k");
    let answer = server.send("GET", &path, &[("Authorization", &alice)], None);
    assert_eq!(answer.status, 412);
    assert_eq!(answer.json(), json!({"message": "CSRF check failed"}));
    // A Bearer key needs no OCS-APIRequest.
    let answer = server.send(
        "GET",
        &format!("{path}?format=json"),
        &[("Authorization", "Bearer k")],
        None,
    );
    assert!(data(&answer, 200)["types"].is_object());
    // The file route is NoCSRFRequired: enveloped 404 (no file slots).
    let answer = server.send(
        "GET",
        &format!("{V2}/tasks/1/file/2?format=json"),
        &[("Authorization", &alice)],
        None,
    );
    assert_eq!(failure(&answer, 404), "Not found");

    // Unknown paths: 998, v2 404 and v1 200, XML unless format=json; the
    // docs' cancel path is one of them (spec 3.9).
    for (base, status) in [(V2, 404), (V1, 200)] {
        for unknown in ["nothing", "task/1/cancel", ""] {
            let answer = nc(
                &server,
                "alice",
                "GET",
                &format!("{base}/{unknown}?format=json"),
                None,
            );
            assert_eq!(answer.status, status, "{base}/{unknown}: {}", answer.text());
            let meta = &answer.json()["ocs"]["meta"];
            assert_eq!(meta["statuscode"], 998);
            assert_eq!(meta["status"], "failure");
            assert!(meta["message"]
                .as_str()
                .expect("message")
                .starts_with("Invalid query, please check the syntax."));
        }
    }
    let answer = server.send("GET", "/ocs/v2.php/nothing", &[], None);
    assert_eq!(answer.status, 404);
    assert_eq!(
        answer.header("content-type"),
        Some("text/xml; charset=UTF-8")
    );
    assert!(answer.text().contains("<statuscode>998</statuscode>"));

    // A known path with another method: 405 with no body, OPTIONS too.
    for (method, route) in [
        ("POST", "task/1"),
        ("PUT", "schedule"),
        ("GET", "schedule"),
        ("OPTIONS", "tasks"),
        ("OPTIONS", "nothing"),
        ("DELETE", "tasktypes"),
    ] {
        let answer = nc(&server, "alice", method, &format!("{V2}/{route}"), None);
        assert_eq!(answer.status, 405, "{method} {route}: {}", answer.text());
        assert!(answer.body.is_empty(), "{method} {route}");
        assert!(answer.header("access-control-allow-origin").is_none());
    }
    // A method no route lists at all: the server's 405, in this face's
    // form, once the key in the Basic password passes its check.
    let answer = nc(&server, "alice", "BREW", &format!("{V2}/tasks"), None);
    assert_eq!(answer.status, 405, "{}", answer.text());
    assert!(answer.body.is_empty());

    // ExApp-only routes: 412 `ExApp required` (phase 1), not enveloped.
    for (method, route) in [
        ("GET", "tasks_provider/next"),
        ("GET", "tasks_provider/next_batch"),
        ("POST", "tasks_provider/1/progress"),
        ("POST", "tasks_provider/1/result"),
        ("POST", "tasks_provider/1/file"),
        ("GET", "tasks_provider/1/file/2"),
        ("GET", "tasks_consumer/tasktypes"),
        ("POST", "tasks_consumer/schedule"),
        ("GET", "tasks_consumer/task/1"),
        ("DELETE", "tasks_consumer/task/1"),
        ("POST", "tasks_consumer/tasks/1/cancel"),
    ] {
        for base in [V2, V1] {
            let answer = nc(&server, "alice", method, &format!("{base}/{route}"), None);
            assert_eq!(answer.status, 412, "{method} {route}: {}", answer.text());
            assert_eq!(answer.json(), json!({"message": "ExApp required"}));
        }
        let answer = server.send(
            method,
            &format!("{V2}/{route}"),
            &[
                ("EX-APP-ID", "some_app"),
                ("AUTHORIZATION-APP-API", "OnNlY3JldA=="),
            ],
            None,
        );
        assert_eq!(answer.status, 412, "an ExApp's own call to {route}");
        let anonymous = server.send(method, &format!("{V2}/{route}"), &[], None);
        assert_eq!(anonymous.status, 401, "{route} without any login");
    }
}

#[test]
fn bad_input_is_refused_in_nextclouds_words_and_writes_nothing() {
    let dir = TestDir::new();
    // More schedules than the default limit of 20 are sent here.
    let server = start(&dir, "schedule_limit = 0", &[]);
    // Missing or ill-typed parameters: PHP's TypeError, 996 (v2 500).
    for body in [
        json!({"type": "core:text2text", "appId": "a"}),
        json!({"input": "text", "type": "core:text2text", "appId": "a"}),
        json!({"input": {"input": "x"}, "appId": "a"}),
        json!({"input": {"input": "x"}, "type": ["core:text2text"], "appId": "a"}),
        json!({"input": {"input": "x"}, "type": "core:text2text"}),
        json!({"input": {"input": "x"}, "type": "core:text2text", "appId": "a", "customId": null}),
        json!({"input": {"input": "x"}, "type": "core:text2text", "appId": "a", "includeWatermark": "maybe"}),
    ] {
        let answer = server.send(
            "POST",
            &format!("{V2}/schedule?format=json"),
            &[
                ("Authorization", &basic("alice", "any")),
                ("OCS-APIRequest", "true"),
                ("Content-Type", "application/json"),
            ],
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(answer.status, 500, "{body}: {}", answer.text());
        assert_eq!(
            answer.json()["ocs"]["meta"],
            json!({"status": "failure", "statuscode": 996, "message": "Internal Server Error\n"}),
            "{body}"
        );
    }
    // A body that is not JSON at all: no parameters, so the same.
    let answer = server.send(
        "POST",
        &format!("{V2}/schedule?format=json"),
        &[
            ("Authorization", &basic("alice", "any")),
            ("OCS-APIRequest", "true"),
        ],
        Some(b"{not json"),
    );
    assert_eq!(answer.status, 500, "{}", answer.text());

    // Types not served: 412, whatever the input.
    for type_id in [
        "core:text2image",
        "made:up",
        "core:text2text:topics",
        "core:text2text:proofread",
    ] {
        let answer = schedule(
            &server,
            "alice",
            &json!({"input": {"input": "x"}, "type": type_id, "appId": "a"}),
        );
        assert_eq!(
            failure(&answer, 412),
            "The given provider is not available",
            "{type_id}"
        );
    }
    // Input against the shapes: 400 with Nextcloud's words.
    let cases = [
        (
            json!({"input": {"text": "x"}, "type": "core:text2text", "appId": "a"}),
            "Missing key: \"input\"".to_string(),
        ),
        (
            json!({"input": {"input": null}, "type": "core:text2text", "appId": "a"}),
            "Missing key: \"input\"".to_string(),
        ),
        (
            json!({"input": {"input": 5}, "type": "core:text2text", "appId": "a"}),
            "Failed to validate input key \"input\": Non-text item provided for Text slot"
                .to_string(),
        ),
        (
            json!({"input": {"input": "x", "target_language": "xx"}, "type": "core:text2text:translate", "appId": "a"}),
            "Failed to validate input key \"target_language\": Wrong value given for Enum slot. \
             Got \"xx\", but expected one of the provided enum values: \"en\", \"de\""
                .to_string(),
        ),
        (
            json!({"input": {"input": "x", "system_prompt": "s", "history": [1]}, "type": "core:text2text:chat", "appId": "a"}),
            "Failed to validate input key \"history\": Non-text list item provided for ListOfTexts slot"
                .to_string(),
        ),
    ];
    for (body, wanted) in cases {
        assert_eq!(
            failure(&schedule(&server, "alice", &body), 400),
            wanted,
            "{body}"
        );
    }
    let long = json!({"input": {"input": "x"}, "type": "core:text2text", "appId": "a", "customId": "c".repeat(256)});
    let message = failure(&schedule(&server, "alice", &long), 400);
    assert!(message.contains("CUSTOM_ID_CHARS_MAX"), "{message}");
    let big = json!({"input": {"input": "x".repeat(1024 * 1024)}, "type": "core:text2text", "appId": "a"});
    let message = failure(&schedule(&server, "alice", &big), 400);
    assert!(message.contains("INPUT_BYTES_MAX"), "{message}");
    assert_eq!(server.runs_stored(), 0, "nothing was written");

    // The first task made after all that is still id 1.
    let task = data(&schedule(&server, "alice", &text_task("")), 200)["task"].clone();
    assert_eq!(task["id"], json!(1));
    assert_eq!(task["customId"], "");
}

#[test]
fn ids_are_stable_tasks_are_scoped_and_lists_filter() {
    let dir = TestDir::new();
    let server = start(&dir, "", &[]);
    let mut ids = Vec::new();
    for (user, body) in [
        ("alice", text_task("doc-1")),
        ("alice", text_task("")),
        ("bob", text_task("doc-1")),
        (
            "alice",
            json!({"input": {"input": "x", "target_language": "de", "extra": true},
                   "type": "core:text2text:translate", "appId": "other", "customId": "doc-1"}),
        ),
    ] {
        let task = data(&schedule(&server, user, &body), 200)["task"].clone();
        assert_eq!(task["userId"], user);
        ids.push(task["id"].as_u64().expect("an integer id"));
        if task["type"] == "core:text2text:translate" {
            // Unknown keys dropped, the default merged in (spec 3.2).
            assert_eq!(
                task["input"],
                json!({"input": "x", "origin_language": "detect_language", "target_language": "de"})
            );
        }
    }
    assert_eq!(ids, [1, 2, 3, 4]);
    for id in [1, 2, 4] {
        let task = wait_status(&server, "alice", id, "STATUS_SUCCESSFUL");
        assert_eq!(task["id"], json!(id), "the id reads back as given");
    }
    // Bob sees his own only; Alice's are not found for him.
    let bobs = nc(&server, "bob", "GET", &format!("{V2}/task/1"), None);
    assert_eq!(failure(&bobs, 404), "Task not found");
    let listed = |user: &str, query: &str| listed_ids(&server, user, query);
    assert_eq!(listed("alice", "tasks"), [1, 2, 4]);
    assert_eq!(listed("bob", "tasks"), [3]);
    assert_eq!(listed("alice", "tasks?customId=doc-1"), [1, 4]);
    assert_eq!(
        listed("alice", "tasks?customId="),
        [2],
        "empty filters on \"\""
    );
    assert_eq!(
        listed("alice", "tasks?taskType=core:text2text:translate"),
        [4]
    );
    assert_eq!(
        listed("alice", "tasks?taskType=core:text2text&customId=doc-1"),
        [1]
    );
    assert_eq!(listed("alice", "tasks/app/mytest"), [1, 2]);
    assert_eq!(listed("alice", "tasks/app/other?customId=doc-1"), [4]);
    assert_eq!(listed("alice", "tasks/app/nobody"), Vec::<u64>::new());
    // A filter may come in a JSON body too, even on GET (spec 1.7).
    let answer = nc(
        &server,
        "alice",
        "GET",
        &format!("{V2}/tasks"),
        Some(&json!({"customId": "doc-1"})),
    );
    assert_eq!(
        data(&answer, 200)["tasks"].as_array().expect("tasks").len(),
        2
    );

    // Delete: 200 null, hidden after, again 200, and for someone else's
    // task 200 without touching it.
    let deleted = nc(&server, "alice", "DELETE", &format!("{V2}/task/2"), None);
    assert_eq!(data(&deleted, 200), Value::Null);
    let gone = nc(&server, "alice", "GET", &format!("{V2}/task/2"), None);
    assert_eq!(failure(&gone, 404), "Task not found");
    let again = nc(&server, "alice", "DELETE", &format!("{V2}/task/2"), None);
    assert_eq!(data(&again, 200), Value::Null);
    let others = nc(&server, "alice", "DELETE", &format!("{V2}/task/3"), None);
    assert_eq!(data(&others, 200), Value::Null);
    wait_status(&server, "bob", 3, "STATUS_SUCCESSFUL");
    assert_eq!(listed("alice", "tasks"), [1, 4]);
    // Ids are never reused.
    let next = data(&schedule(&server, "alice", &text_task("n")), 200)["task"]["id"].clone();
    assert_eq!(next, json!(5));
    // A PHP-cast id that names nothing.
    let cast = nc(&server, "alice", "GET", &format!("{V2}/task/abc"), None);
    assert_eq!(failure(&cast, 404), "Task not found");
}

#[test]
fn cancel_acts_on_active_tasks_only_and_failures_show_their_reason() {
    let dir = TestDir::new();
    let server = start(&dir, "", &[]);
    let slow = json!({"input": {"input": "wait"}, "type": "core:text2text:summary", "appId": "a"});
    let id = data(&schedule(&server, "alice", &slow), 200)["task"]["id"].clone();
    let running = wait_status(&server, "alice", 1, "STATUS_RUNNING");
    assert!(running["startedAt"].is_i64(), "{running}");
    assert_eq!(running["endedAt"], Value::Null);
    let cancel = format!("{V2}/tasks/{id}/cancel");
    let cancelled = data(&nc(&server, "alice", "POST", &cancel, None), 200)["task"].clone();
    assert_eq!(cancelled["status"], "STATUS_CANCELLED", "shown at once");
    assert!(cancelled["endedAt"].is_i64(), "{cancelled}");
    let again = data(&nc(&server, "alice", "POST", &cancel, None), 200)["task"].clone();
    assert_eq!(again["status"], "STATUS_CANCELLED");
    wait_status(&server, "alice", 1, "STATUS_CANCELLED");
    // Someone else's, or no task: 404 `Not found`.
    let bobs = nc(&server, "bob", "POST", &cancel, None);
    assert_eq!(failure(&bobs, 404), "Not found");
    let none = nc(
        &server,
        "alice",
        "POST",
        &format!("{V2}/tasks/77/cancel"),
        None,
    );
    assert_eq!(failure(&none, 404), "Not found");

    // A finished task: cancel changes nothing and answers 200.
    let done = data(&schedule(&server, "alice", &text_task("")), 200)["task"]["id"].clone();
    wait_status(&server, "alice", 2, "STATUS_SUCCESSFUL");
    let answer = nc(
        &server,
        "alice",
        "POST",
        &format!("{V2}/tasks/{done}/cancel"),
        None,
    );
    assert_eq!(data(&answer, 200)["task"]["status"], "STATUS_SUCCESSFUL");

    // A failure carries the run's error as the user-facing message.
    let broken = json!({"input": {"input": "x"}, "type": "core:text2text:headline", "appId": "a"});
    data(&schedule(&server, "alice", &broken), 200);
    let failed = wait_status(&server, "alice", 3, "STATUS_FAILED");
    assert!(failed["userFacingErrorMessage"].is_string(), "{failed}");
    assert_eq!(failed["output"], Value::Null);
    assert!(failed["endedAt"].is_i64());

    // Deleting an active task cancels its run first.
    let slow_id = data(&schedule(&server, "alice", &slow), 200)["task"]["id"].clone();
    let run_id = nc(
        &server,
        "alice",
        "GET",
        &format!("{V2}/task/{slow_id}"),
        None,
    )
    .header("x-taskyard-run-id")
    .expect("run id")
    .to_string();
    nc(
        &server,
        "alice",
        "DELETE",
        &format!("{V2}/task/{slow_id}"),
        None,
    );
    wait_for(
        "the deleted task's run to stop",
        Duration::from_secs(30),
        || server.get(&format!("/v1/tasks/runs/{run_id}")).json()["status"] == "cancelled",
    );
}

#[test]
fn the_schedule_limit_is_per_user_and_answers_an_empty_429() {
    let dir = TestDir::new();
    let server = start(&dir, "schedule_limit = 3\nschedule_window_s = 120", &[]);
    // A refused schedule counts too.
    let bad = json!({"input": {}, "type": "core:text2text", "appId": "a"});
    assert_eq!(schedule(&server, "alice", &bad).status, 400);
    for _ in 0..2 {
        data(&schedule(&server, "alice", &text_task("")), 200);
    }
    for path in [format!("{V2}/schedule"), format!("{V1}/schedule")] {
        let limited = nc(&server, "alice", "POST", &path, Some(&text_task("")));
        assert_eq!(limited.status, 429, "{}", limited.text());
        assert!(limited.body.is_empty(), "not enveloped");
        assert!(limited.header("retry-after").is_none());
    }
    // Other routes and other users are not limited.
    data(&schedule(&server, "bob", &text_task("")), 200);
    data(
        &nc(&server, "alice", "GET", &format!("{V2}/tasks"), None),
        200,
    );
    assert_eq!(server.runs_stored(), 3);
}

#[test]
fn a_nextcloud_task_is_the_same_run_on_the_parallel_face() {
    let dir = TestDir::new();
    let server = start(&dir, "", &[]);
    let answer = schedule(&server, "alice", &text_task("x"));
    let run_id = answer
        .header("x-taskyard-run-id")
        .expect("the run id header")
        .to_string();
    assert!(run_id.starts_with("trun_"), "{run_id}");
    let result = server.get(&format!("/v1/tasks/runs/{run_id}/result?timeout=30"));
    assert_eq!(result.status, 200, "{}", result.text());
    assert_eq!(result.json()["run"]["run_id"], json!(run_id));
    assert_eq!(result.json()["run"]["processor"], "mock");
    // The run names its face and task id from its first event on.
    assert_eq!(
        result.json()["run"]["metadata"],
        json!({"face": "nextcloud", "nc_task_id": 1})
    );
    let task = wait_status(&server, "alice", 1, "STATUS_SUCCESSFUL");
    assert_eq!(
        task["output"]["output"],
        result.json()["output"]["content"],
        "one output, two faces"
    );
    let listed = server.get("/v1/tasks/runs?limit=10").json();
    assert!(
        listed["data"]
            .as_array()
            .expect("runs")
            .iter()
            .any(|run| run["run_id"] == json!(run_id)),
        "{listed}"
    );
}

#[test]
fn types_are_those_with_a_processor_and_discovery_answers() {
    let dir = TestDir::new();
    let server = start(&dir, "", &[]);
    let types = data(
        &nc(&server, "alice", "GET", &format!("{V2}/tasktypes"), None),
        200,
    )["types"]
        .clone();
    assert_eq!(
        keys(&types),
        [
            "core:text2text",
            "core:text2text:chat",
            "core:text2text:headline",
            "core:text2text:summary",
            "core:text2text:translate"
        ],
        "the configured types only"
    );
    let translate = &types["core:text2text:translate"];
    assert_eq!(
        translate.as_object().expect("type").len(),
        12,
        "{translate}"
    );
    assert_eq!(
        translate["inputShape"]["target_language"],
        json!({"name": "Target language", "description": "The desired language to translate the origin text in", "type": "Enum"})
    );
    assert_eq!(
        translate["inputShapeEnumValues"]["target_language"],
        json!([{"name": "English", "value": "en"}, {"name": "German", "value": "de"}])
    );
    assert_eq!(
        translate["inputShapeDefaults"],
        json!({"origin_language": "detect_language"})
    );
    assert_eq!(types["core:text2text"]["optionalInputShape"], json!({}));
    assert_eq!(types["core:text2text"]["inputShapeEnumValues"], json!({}));

    let capabilities = data(
        &nc(
            &server,
            "alice",
            "GET",
            "/ocs/v2.php/cloud/capabilities",
            None,
        ),
        200,
    );
    assert_eq!(capabilities["version"]["string"], "32.0.0");
    assert!(capabilities["capabilities"]["core"].is_object());
    let anonymous = server.get("/ocs/v1.php/cloud/capabilities?format=json");
    assert_eq!(anonymous.status, 200, "capabilities are public");
    let user = data(
        &nc(&server, "alice", "GET", "/ocs/v2.php/cloud/user", None),
        200,
    );
    assert_eq!(user["id"], "alice");
    let status = server.get("/status.php").json();
    assert_eq!(status["installed"], json!(true));
    assert_eq!(status["productname"], "taskyard");

    // With no face table the mock types are served.
    drop(server);
    let default = TestServer::start();
    let types = data(
        &nc(&default, "alice", "GET", &format!("{V2}/tasktypes"), None),
        200,
    )["types"]
        .clone();
    assert_eq!(types.as_object().expect("types").len(), 5, "{types}");
    assert!(types.get("core:text2text:translate").is_none());
}

#[test]
fn a_face_table_that_does_not_read_stops_the_start() {
    let dir = TestDir::new();
    for (text, wanted) in [
        ("[nextcloud]\nnonsense = 1", "unknown field"),
        (
            "[nextcloud.task_types]\n\"core:nope\" = \"mock\"",
            "unknown task type",
        ),
        (
            "[nextcloud.task_types]\n\"core:text2text:topics\" = \"no-such-processor\"",
            "not served",
        ),
        (
            "[nextcloud.task_types]\n\"core:text2text:translate\" = \"mock\"",
            "languages",
        ),
        ("[nextcloud]\nschedule_window_s = 0", "schedule_window_s"),
    ] {
        let path = dir.dir.path().join("bad.toml");
        std::fs::write(&path, format!("{text}\n")).expect("written");
        let file = taskyard::config::FileConfig::load(&path).expect("the file reads");
        let registry = file.registry().expect("the processors build");
        let error = file.faces(&registry).expect_err("refused");
        assert!(error.contains(wanted), "{wanted} in {error}");
    }
}

/// Ids are taken by inserting their record: schedules at once never share
/// one, and the ids stay dense, so the lists see every task.
#[test]
fn schedules_at_once_get_distinct_dense_ids() {
    let dir = TestDir::new();
    let server = start(&dir, "schedule_limit = 0", &[]);
    let threads_count = 8;
    let per_thread = 10;
    let ids: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads_count)
            .map(|thread| {
                let server = &server;
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|index| {
                            let body = text_task(&format!("t{thread}-{index}"));
                            data(&schedule(server, "alice", &body), 200)["task"]["id"]
                                .as_u64()
                                .expect("an integer id")
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("a scheduling thread"))
            .collect()
    });
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    let expected: Vec<u64> = (1..=(threads_count * per_thread) as u64).collect();
    assert_eq!(sorted, expected, "distinct and dense: {ids:?}");
    assert_eq!(
        listed_ids(&server, "alice", "tasks"),
        expected,
        "listed in id order"
    );
}

/// A task's `HTTP:POST` webhook on an allowed host is called with
/// `{"task": Task}` when the task ends (spec 3.2, choice 7); another
/// method or another host is kept with the task and not called.
#[test]
fn an_http_post_webhook_on_an_allowed_host_gets_the_ended_task() {
    let dir = TestDir::new();
    let receiver = Receiver::start(dir.dir.path(), 0, &[]);
    receiver.accept();
    let server = start(&dir, "webhook_hosts_allowed = [\"127.0.0.1\"]", &[]);
    let elsewhere = receiver.url().replace("127.0.0.1", "localhost");
    let mut run_ids = Vec::new();
    for (method, uri) in [
        ("HTTP:POST", receiver.url()),
        ("HTTP:GET", receiver.url()),
        ("HTTP:POST", elsewhere),
    ] {
        let body = json!({"input": {"input": "hook"}, "type": "core:text2text", "appId": "a",
                          "customId": method, "webhookUri": uri, "webhookMethod": method});
        let answer = schedule(&server, "alice", &body);
        data(&answer, 200);
        let run_id = answer.header("x-taskyard-run-id").expect("run id");
        run_ids.push(run_id.trim_start_matches("trun_").to_string());
    }
    wait_for("the webhook call", Duration::from_secs(30), || {
        !receiver.requests().is_empty()
    });
    let called = &receiver.requests()[0]["body"]["task"];
    assert_eq!(called["id"], json!(1), "{called}");
    assert_eq!(called["status"], "STATUS_SUCCESSFUL");
    assert!(called["output"]["output"].is_string(), "{called}");
    assert_eq!(
        called,
        &wait_status(&server, "alice", 1, "STATUS_SUCCESSFUL"),
        "the task as a GET reads it"
    );
    for (id, run_id) in [(2, &run_ids[1]), (3, &run_ids[2])] {
        wait_status(&server, "alice", id, "STATUS_SUCCESSFUL");
        assert!(
            server
                .engine
                .run_deliveries(run_id)
                .expect("deliveries")
                .is_empty(),
            "task {id}'s webhook is kept, not called"
        );
    }
    assert_eq!(
        server
            .engine
            .run_deliveries(&run_ids[0])
            .expect("deliveries")
            .len(),
        1
    );
    assert_eq!(receiver.requests().len(), 1);
}
