//! The Handinger face's own OpenAPI document (`/api/openapi.json`, issue
//! 14): served without a key, it documents every `/api/` route of the
//! running server and nothing else, and real answers of each kind match
//! its schemas.

#[path = "support/http.rs"]
mod client;
mod support;

use std::collections::BTreeSet;

use client::TestServer;
use serde_json::{json, Value};

/// A validator for `#/components/schemas/{name}`, the whole document as
/// the root resource so that its references resolve.
fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
    let mut root = doc.clone();
    let object = root.as_object_mut().expect("an object");
    object.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    object.insert("$ref".into(), json!(format!("#/components/schemas/{name}")));
    jsonschema::options()
        .build(&root)
        .unwrap_or_else(|error| panic!("{name} does not compile: {error}"))
}

fn assert_matches(doc: &Value, name: &str, instance: &Value) {
    let validator = validator(doc, name);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|error| format!("{error} at {}", error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: {}\n{instance}",
        errors.join("\n")
    );
}

#[test]
fn every_route_is_documented_and_answers_match() {
    let server = TestServer::start_with(|config| config.api_keys = vec!["k".into()]);
    let served = server.get("/api/openapi.json");
    assert_eq!(served.status, 200, "no key needed: {}", served.text());
    let doc = served.json();
    assert!(doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1.")));

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(move |method| (path.clone(), method.to_uppercase()))
        })
        .collect();
    // The route table as a running server holds it.
    let second = taskyard::server::Server::start(
        server.engine.engine().clone(),
        taskyard::server::ServerConfig {
            addr: "127.0.0.1:0".into(),
            ..Default::default()
        },
    )
    .expect("a second server");
    let patterns = second.patterns();
    second.stop();
    let routed: BTreeSet<(String, String)> = patterns
        .into_iter()
        .filter(|(pattern, _)| pattern.starts_with("/api/") && !pattern.starts_with("/api/v1/"))
        .flat_map(|(pattern, methods)| {
            methods
                .into_iter()
                .map(move |method| (pattern.to_string(), method.to_string()))
        })
        .collect();
    assert_eq!(documented, routed);

    let auth = [
        ("Authorization", "Bearer k"),
        ("Content-Type", "application/json"),
    ];
    let call = |method: &str, path: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string());
        server
            .send(method, path, &auth, body.as_deref().map(str::as_bytes))
            .json()
    };
    let worker = call("POST", "/api/tasks", Some(json!({"input": "hello"})));
    assert_matches(&doc, "Worker", &worker);
    let task = worker["taskId"].as_str().expect("task id").to_string();
    assert_matches(
        &doc,
        "TaskWithTurns",
        &call("GET", &format!("/api/tasks/{task}"), None),
    );
    let template = call("POST", "/api/workers", Some(json!({"title": "t"})));
    assert_matches(&doc, "WorkerTemplate", &template);
    let id = template["id"].as_str().expect("worker id").to_string();
    assert_matches(
        &doc,
        "Worker",
        &call("GET", &format!("/api/workers/{id}"), None),
    );
    let schedule = call(
        "POST",
        &format!("/api/workers/{id}/schedules"),
        Some(json!({"input": "x", "when": {"type": "interval", "intervalSeconds": 60}})),
    );
    assert_matches(&doc, "WorkerSchedule", &schedule);
    assert_matches(
        &doc,
        "ScheduleList",
        &call("GET", &format!("/api/workers/{id}/schedules"), None),
    );
    assert_matches(
        &doc,
        "Email",
        &call("GET", &format!("/api/workers/{id}/email"), None),
    );
    assert_matches(
        &doc,
        "Webhook",
        &call("GET", &format!("/api/workers/{id}/webhook"), None),
    );
    let webhook = call(
        "PUT",
        &format!("/api/workers/{id}/webhook"),
        Some(json!({"url": "https://hooks.example.com/in"})),
    );
    assert_matches(&doc, "Webhook", &webhook);
    assert!(webhook["token"].is_string(), "{webhook}");
    assert_matches(
        &doc,
        "Webhook",
        &call(
            "POST",
            &format!("/api/workers/{id}/webhook/regenerate-token"),
            None,
        ),
    );
    assert_matches(
        &doc,
        "WebhookExecutionList",
        &call(
            "GET",
            &format!("/api/workers/{id}/webhook/executions"),
            None,
        ),
    );
    assert_matches(
        &doc,
        "Webhook",
        &call("DELETE", &format!("/api/workers/{id}/webhook"), None),
    );
    assert_matches(
        &doc,
        "Archived",
        &call("DELETE", &format!("/api/tasks/{task}"), None),
    );
    assert_matches(
        &doc,
        "Deleted",
        &call("DELETE", &format!("/api/workers/{id}"), None),
    );
    assert_matches(&doc, "Error", &call("GET", "/api/tasks/nobody", None));
    let unauthorized = server.get("/api/tasks/nobody").json();
    assert_matches(&doc, "Error", &unauthorized);
}
