//! The OpenAPI document (`src/faces/parallel/openapi.json`, spec 10.8): it
//! is OpenAPI 3.1, it lists every route of the server's route table under `/v1` and
//! `/v1beta` with the same methods (and nothing the server does not
//! answer), every `$ref` resolves inside it, every component schema
//! compiles as JSON Schema 2020-12 and accepts its own examples, the server
//! serves it as `application/json`, and real answers of a running server
//! (runs, groups, results, lists, errors, a stream) match the schemas it
//! names for them, and the series its `/metrics` description names are
//! exactly those a running server exports, with the same labels.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use support::{open, TestDir};
use taskyard::faces::parallel::OPENAPI_JSON;
use taskyard::server::{Server, ServerConfig};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

/// Escapes one JSON Pointer token (RFC 6901).
fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The value at a local reference `#/a/b`, if any.
fn resolve_ref<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    // `Value::pointer` undoes the `~0` and `~1` escapes token by token.
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` string in the document, with where it was found.
fn collect_refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                let here = format!("{at}/{}", pointer_token(key));
                if key == "$ref" {
                    if let Value::String(reference) = inner {
                        out.push((here.clone(), reference.clone()));
                    }
                }
                collect_refs(inner, &here, out);
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                collect_refs(inner, &format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
}

/// Percent-encodes what a URI fragment cannot hold (`{`, `}` of path
/// templates, among others).
fn fragment_escape(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for byte in pointer.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A validator for the schema at `pointer` inside the document: the whole
/// document is the root resource, so `#/components/schemas/X` references
/// resolve as they do for an OpenAPI tool.
fn validator_at(doc: &Value, pointer: &str) -> jsonschema::Validator {
    assert!(
        doc.pointer(pointer).is_some(),
        "no schema at {pointer} in openapi.json"
    );
    let mut root = doc.clone();
    let object = root.as_object_mut().expect("the document is an object");
    object.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    object.insert(
        "$ref".into(),
        Value::String(format!("#{}", fragment_escape(pointer))),
    );
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|error| panic!("schema at {pointer} does not compile: {error}"))
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match openapi.json:\n{}\ninstance: {instance}",
        errors.join("\n")
    );
}

/// Follows a `$ref` of a response or parameter object to its pointer.
fn follow(doc: &Value, pointer: String) -> String {
    let value = doc.pointer(&pointer).expect("pointer exists");
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => follow(doc, reference.trim_start_matches('#').to_string()),
        None => pointer,
    }
}

/// The pointer of the schema the document gives for an answer.
fn response_schema_pointer(
    doc: &Value,
    path: &str,
    method: &str,
    status: u16,
    media: &str,
) -> String {
    let response = follow(
        doc,
        format!("/paths/{}/{method}/responses/{status}", pointer_token(path)),
    );
    format!("{response}/content/{}/schema", pointer_token(media))
}

#[test]
fn the_document_is_openapi_3_1() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1."), "openapi version {version}");
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
    assert!(doc["paths"].is_object());
    assert!(doc["components"]["schemas"].is_object());
}

#[test]
fn every_route_is_documented_under_both_prefixes_and_nothing_else() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    // The routes as the running server's one table holds them.
    let running = Running::start();
    let patterns = running.server.as_ref().expect("server").patterns();
    // This is the Parallel face's document: the Handinger face's `/api/`
    // routes are in its own (tests/handinger_openapi.rs), and the
    // Nextcloud face's (`/ocs/`, `/status.php`) have none.
    let parallel =
        |p: &str| !p.starts_with("/api/") && !p.starts_with("/ocs/") && p != "/status.php";
    for (pattern, methods) in patterns.iter().filter(|(p, _)| parallel(p)) {
        let mut served = vec![pattern.to_string()];
        if let Some(rest) = pattern.strip_prefix("/v1/") {
            served.push(format!("/v1beta/{rest}"));
        }
        for path in served {
            for method in methods {
                let method = method.to_ascii_lowercase();
                let operation = &paths
                    .get(&path)
                    .unwrap_or_else(|| panic!("{path} is not in openapi.json"))[&method];
                assert!(
                    operation.is_object(),
                    "{} {path} is not in openapi.json",
                    method.to_uppercase()
                );
                assert!(
                    operation["responses"].is_object(),
                    "{} {path} has no responses",
                    method.to_uppercase()
                );
                expected.insert((path.clone(), method));
            }
        }
    }
    // The document promises nothing the server does not answer.
    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                documented.insert((path.clone(), method.to_string()));
                let id = operation["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                assert!(
                    operation_ids.insert(id.to_string()),
                    "operationId {id} twice"
                );
            }
        }
    }
    assert_eq!(documented, expected);
}

#[test]
fn every_path_parameter_is_declared() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let in_path: BTreeSet<String> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let mut declared = BTreeSet::new();
            let parameters = item["parameters"]
                .as_array()
                .into_iter()
                .chain(operation["parameters"].as_array())
                .flatten();
            for parameter in parameters {
                let parameter = match parameter.get("$ref").and_then(Value::as_str) {
                    Some(reference) => resolve_ref(&doc, reference).expect("parameter resolves"),
                    None => parameter,
                };
                if parameter["in"] == "path" {
                    assert_eq!(
                        parameter["required"], true,
                        "{path}: path parameters are required"
                    );
                    declared.insert(parameter["name"].as_str().expect("name").to_string());
                }
            }
            assert_eq!(declared, in_path, "{method} {path}");
        }
    }
}

#[test]
fn every_ref_resolves_inside_the_document() {
    let doc = document();
    let mut refs = Vec::new();
    collect_refs(&doc, "", &mut refs);
    assert!(!refs.is_empty());
    for (at, reference) in refs {
        assert!(
            reference.starts_with("#/"),
            "{at}: {reference} is not a local reference"
        );
        assert!(
            resolve_ref(&doc, &reference).is_some(),
            "{at}: {reference} does not resolve"
        );
    }
}

#[test]
fn every_component_schema_compiles_and_accepts_its_examples() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    assert!(schemas.len() > 30, "only {} schemas", schemas.len());
    for (name, schema) in schemas {
        // Each schema compiles on its own too, with its references read
        // from a wrapper that embeds the document.
        let validator = validator_at(&doc, &format!("/components/schemas/{name}"));
        for example in schema["examples"].as_array().into_iter().flatten() {
            assert_valid(&validator, example, &format!("example of {name}"));
        }
    }
    // Every schema under the paths (parameters, bodies, answers) compiles.
    let mut pointers = Vec::new();
    find_schemas(&doc["paths"], "/paths", &mut pointers);
    find_schemas(
        &doc["components"]["parameters"],
        "/components/parameters",
        &mut pointers,
    );
    find_schemas(
        &doc["components"]["responses"],
        "/components/responses",
        &mut pointers,
    );
    assert!(pointers.len() > 50);
    for pointer in pointers {
        validator_at(&doc, &pointer);
    }
}

/// The pointers of every `schema` of parameters, bodies and headers.
fn find_schemas(value: &Value, at: &str, out: &mut Vec<String>) {
    if let Value::Object(object) = value {
        for (key, inner) in object {
            let here = format!("{at}/{}", pointer_token(key));
            if key == "schema" {
                out.push(here);
            } else {
                find_schemas(inner, &here, out);
            }
        }
    }
}

#[test]
fn schemas_say_what_the_spec_says() {
    let doc = document();
    let schema = |name: &str| validator_at(&doc, &format!("/components/schemas/{name}"));

    let metadata = schema("Metadata");
    assert!(metadata.is_valid(&json!({"a": "x", "b": 1.5, "c": true})));
    assert!(!metadata.is_valid(&json!({"a": null})));
    assert!(!metadata.is_valid(&json!({"a": [1]})));
    assert!(!metadata.is_valid(&json!({"a": "x".repeat(513)})));
    assert!(!metadata.is_valid(&json!({"seventeen_chars_k": 1})));
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
    assert!(!metadata.is_valid(&Value::Object(many)));

    let run_metadata = schema("RunMetadata");
    assert!(run_metadata.is_valid(&json!({"mock_delay_ms": "1500", "mock_fail": "boom"})));
    assert!(!run_metadata.is_valid(&json!({"mock_delays": 1})));
    assert!(!run_metadata.is_valid(&json!({"mock_": 1})));
    assert!(
        metadata.is_valid(&json!({"mock_delays": 1})),
        "plain keys in groups"
    );

    let run_input = schema("RunInput");
    assert!(run_input.is_valid(&json!({"input": "q", "processor": "core"})));
    assert!(run_input.is_valid(&json!({"input": {"a": 1}, "processor": "core", "metadata": null})));
    assert!(!run_input.is_valid(&json!({"input": 5, "processor": "core"})));
    assert!(!run_input.is_valid(&json!({"processor": "core"})));

    let spec = schema("TaskSpec");
    for output_schema in [
        json!("a haiku"),
        json!({"type": "text", "description": "a poem"}),
        json!({"description": "a poem"}),
        json!({"type": "auto"}),
        json!({"json_schema": {"type": "object"}}),
        json!({"type": "json", "json_schema": {"type": "object", "properties": {}}}),
    ] {
        assert!(
            spec.is_valid(&json!({"output_schema": output_schema})),
            "{output_schema}"
        );
    }
    for output_schema in [
        json!({"type": "xml"}),
        json!({"type": "json"}),
        json!({"type": "json", "json_schema": {"type": "array"}}),
        json!({"json_schema": 5}),
        json!(null),
        json!(3),
    ] {
        assert!(
            !spec.is_valid(&json!({"output_schema": output_schema})),
            "{output_schema}"
        );
    }
    assert!(!spec.is_valid(&json!({"output_schema": "x", "input_schema": {"type": "auto"}})));
    assert!(spec.is_valid(&json!({"output_schema": "x", "input_schema": null})));

    let add_runs = schema("AddRunsRequest");
    let one = json!({"input": "q", "processor": "core"});
    assert!(add_runs.is_valid(&json!({"inputs": [one]})));
    assert!(!add_runs.is_valid(&json!({"inputs": []})));
    let too_many: Vec<Value> = (0..1001).map(|_| one.clone()).collect();
    assert!(!add_runs.is_valid(&json!({ "inputs": too_many })));

    let cursor = schema("EventCursor");
    assert!(cursor.is_valid(&json!("9223372036854775807")));
    assert!(cursor.is_valid(&json!("0")));
    assert!(!cursor.is_valid(&json!("9223372036854775808")));
    assert!(!cursor.is_valid(&json!("-1")));
    assert!(!cursor.is_valid(&json!("1.5")));

    let error = schema("ErrorResponse");
    assert!(error.is_valid(
        &json!({"type": "error", "error": {"ref_id": "r", "message": "m", "detail": null}})
    ));
    assert!(!error.is_valid(&json!({"type": "error", "error": {"ref_id": "r", "message": "m"}})));
}

// ---------------------------------------------------------------------
// Against a running server
// ---------------------------------------------------------------------

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "answer {} is not JSON ({error}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One request on its own connection (`Connection: close`), read whole.
fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("writes");
    stream.write_all(body.as_bytes()).expect("writes");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reads the answer");
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a head ends with an empty line");
    let head = std::str::from_utf8(&raw[..split]).expect("the head is UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = raw
            .windows(2)
            .position(|window| window == b"\r\n")
            .expect("a chunk size line");
        let size_text = std::str::from_utf8(&raw[..end]).expect("chunk size is text");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size is hex");
        raw = &raw[end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The events of a whole Server-Sent Events body, as a reader parses them.
fn sse_events(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).expect("a stream is UTF-8");
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|block| !block.trim().is_empty()) {
        let mut event = serde_json::Map::new();
        let mut data = Vec::new();
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => data.push(value.to_string()),
                other => {
                    event.insert(other.to_string(), Value::String(value.to_string()));
                }
            }
        }
        if !data.is_empty() {
            event.insert("data".into(), Value::String(data.join("\n")));
            events.push(Value::Object(event));
        }
    }
    events
}

struct Running {
    _dir: TestDir,
    server: Option<Server>,
    addr: SocketAddr,
}

impl Running {
    fn start() -> Running {
        let dir = TestDir::new();
        let engine = open(&dir);
        let server = Server::start(
            engine.engine().clone(),
            ServerConfig {
                addr: "127.0.0.1:0".into(),
                ..ServerConfig::default()
            },
        )
        .expect("server starts");
        let addr = server.local_addr();
        Running {
            _dir: dir,
            server: Some(server),
            addr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

#[test]
fn the_server_serves_the_document_as_json() {
    let running = Running::start();
    let answer = request(running.addr, "GET", "/openapi.json", None);
    assert_eq!(answer.status, 200);
    let content_type = answer.header("content-type").expect("a Content-Type");
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type {content_type}"
    );
    assert_eq!(answer.json(), document());
}

/// Sends a request and checks its answer against the document: the status
/// is one it lists for the operation, the Content-Type is the one it names
/// and the body matches its schema. Answers the body.
fn checked(
    running: &Running,
    doc: &Value,
    (method, pattern, path): (&str, &str, &str),
    body: Option<&Value>,
    status: u16,
) -> Answer {
    let answer = request(running.addr, method, path, body);
    assert_eq!(
        answer.status,
        status,
        "{method} {path}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    let method = method.to_ascii_lowercase();
    let responses = &doc["paths"][pattern][&method]["responses"];
    assert!(
        responses.get(status.to_string()).is_some(),
        "{method} {pattern} does not list {status}"
    );
    let response = doc
        .pointer(&follow(
            doc,
            format!(
                "/paths/{}/{method}/responses/{status}",
                pointer_token(pattern)
            ),
        ))
        .expect("the response object");
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        if header["required"] == true {
            assert!(
                answer.header(name).is_some(),
                "{method} {path} {status}: no {name} header"
            );
        }
    }
    let content_type = answer.header("content-type").expect("a Content-Type");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let pointer = response_schema_pointer(doc, pattern, &method, status, &media);
    let validator = validator_at(doc, &pointer);
    if media == "text/event-stream" {
        let events = sse_events(&answer.body);
        assert!(!events.is_empty(), "{method} {path}: no events");
        // The item schema names the JSON of each `data:` through
        // `contentSchema`, an annotation: check the JSON as well.
        let data_pointer = pointer.clone();
        let item = doc
            .pointer(&follow(doc, data_pointer))
            .expect("item schema");
        let union = item["oneOf"].as_array().expect("event variants");
        for event in &events {
            assert_valid(&validator, event, &format!("{method} {path} event"));
            let data: Value =
                serde_json::from_str(event["data"].as_str().expect("data")).expect("data is JSON");
            assert_eq!(
                data["type"], event["event"],
                "event name equals the JSON type"
            );
            let matching: Vec<&Value> = union
                .iter()
                .filter(|variant| {
                    let names = &variant["properties"]["event"];
                    names["const"] == event["event"]
                        || names["enum"]
                            .as_array()
                            .is_some_and(|names| names.contains(&event["event"]))
                })
                .collect();
            assert_eq!(matching.len(), 1, "one variant for {}", event["event"]);
            let content = matching[0]["properties"]["data"]["contentSchema"]["$ref"]
                .as_str()
                .expect("a contentSchema reference");
            let content_validator = validator_at(doc, content.trim_start_matches('#'));
            assert_valid(
                &content_validator,
                &data,
                &format!("{method} {path} event data"),
            );
        }
    } else {
        assert_eq!(media, "application/json", "{method} {path}");
        assert_valid(
            &validator,
            &answer.json(),
            &format!("{method} {path} {status}"),
        );
    }
    answer
}

#[test]
fn real_answers_match_the_document() {
    let doc = document();
    let running = Running::start();
    let output_schema = json!({
        "type": "json",
        "json_schema": {
            "type": "object",
            "properties": {"capital": {"type": "string"}, "cities": {"type": "array", "items": {"type": "string"}}},
            "required": ["capital", "cities"],
            "additionalProperties": false
        }
    });

    // A standalone run, its input and its result.
    let run = checked(
        &running,
        &doc,
        ("POST", "/v1/tasks/runs", "/v1/tasks/runs"),
        Some(&json!({
            "input": {"country": "France"},
            "processor": "core",
            "metadata": {"team": "docs", "n": 2, "ok": true},
            "task_spec": {"output_schema": output_schema},
            "mcp_servers": [{"name": "s", "url": "https://mcp.example", "headers": {"k": "v"}}],
            "source_policy": {"include_domains": ["example.com"], "after_date": "2024-02-29"},
            "webhook": {"url": "http://127.0.0.1:9/hook"}
        })),
        202,
    )
    .json();
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    let result = checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/runs/{run_id}/result",
            &format!("/v1/tasks/runs/{run_id}/result?timeout=30"),
        ),
        None,
        200,
    )
    .json();
    assert_eq!(result["output"]["type"], "json");
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/runs/{run_id}/input",
            &format!("/v1/tasks/runs/{run_id}/input"),
        ),
        None,
        200,
    );
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1beta/tasks/runs/{run_id}",
            &format!("/v1beta/tasks/runs/{run_id}"),
        ),
        None,
        200,
    );
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/runs/{run_id}/events",
            &format!("/v1/tasks/runs/{run_id}/events"),
        ),
        None,
        200,
    );
    checked(
        &running,
        &doc,
        (
            "POST",
            "/v1/tasks/runs/{run_id}/cancel",
            &format!("/v1/tasks/runs/{run_id}/cancel"),
        ),
        None,
        409,
    );

    // A text run: the other output shape.
    let text_run = checked(
        &running,
        &doc,
        ("POST", "/v1beta/tasks/runs", "/v1beta/tasks/runs"),
        Some(&json!({"input": "Name a river", "processor": "mock", "task_spec": {"output_schema": "a river"}})),
        202,
    )
    .json();
    let text_id = text_run["run_id"].as_str().expect("run_id").to_string();
    let text_result = checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/runs/{run_id}/result",
            &format!(
                "/v1/tasks/runs/{run_id}/result?timeout=30",
                run_id = text_id
            ),
        ),
        None,
        200,
    )
    .json();
    assert_eq!(text_result["output"]["type"], "text");

    // A group, runs added to it, its streams and its lists.
    let group = checked(
        &running,
        &doc,
        ("POST", "/v1/tasks/groups", "/v1/tasks/groups"),
        Some(&json!({"metadata": {"batch": "nightly", "mock_x": 1}})),
        200,
    )
    .json();
    let group_id = group["taskgroup_id"]
        .as_str()
        .expect("taskgroup_id")
        .to_string();
    let added = checked(
        &running,
        &doc,
        (
            "POST",
            "/v1/tasks/groups/{taskgroup_id}/runs",
            &format!("/v1/tasks/groups/{group_id}/runs"),
        ),
        Some(&json!({
            "inputs": [
                {"input": {"country": "Italy"}, "processor": "core"},
                {"input": "Spain", "processor": "core-fast", "task_spec": {"output_schema": {"type": "auto"}}}
            ],
            "default_task_spec": {"output_schema": output_schema}
        })),
        200,
    )
    .json();
    let first = added["run_ids"][0].as_str().expect("a run id").to_string();
    for run_id in added["run_ids"].as_array().expect("run_ids") {
        let run_id = run_id.as_str().expect("a run id");
        checked(
            &running,
            &doc,
            (
                "GET",
                "/v1/tasks/runs/{run_id}/result",
                &format!("/v1/tasks/runs/{run_id}/result?timeout=30"),
            ),
            None,
            200,
        );
    }
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/groups/{taskgroup_id}/runs/{run_id}",
            &format!("/v1/tasks/groups/{group_id}/runs/{first}"),
        ),
        None,
        200,
    );
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/groups/{taskgroup_id}/runs",
            &format!("/v1/tasks/groups/{group_id}/runs?include_input=true&include_output=true"),
        ),
        None,
        200,
    );
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/groups/{taskgroup_id}/events",
            &format!("/v1/tasks/groups/{group_id}/events?timeout=10"),
        ),
        None,
        200,
    );
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/groups/{taskgroup_id}",
            &format!("/v1/tasks/groups/{group_id}"),
        ),
        None,
        200,
    );
    checked(
        &running,
        &doc,
        (
            "POST",
            "/v1/tasks/groups/{taskgroup_id}/cancel",
            &format!("/v1/tasks/groups/{group_id}/cancel"),
        ),
        None,
        200,
    );
    let page = checked(
        &running,
        &doc,
        ("GET", "/v1/tasks/runs", "/v1/tasks/runs?limit=2"),
        None,
        200,
    )
    .json();
    let after = page["next_cursor"].as_str().expect("more than one page");
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/runs",
            &format!("/v1/tasks/runs?limit=2&after={after}&status=completed"),
        ),
        None,
        200,
    );
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/groups",
            "/v1/tasks/groups?is_active=false&limit=",
        ),
        None,
        200,
    );
    checked(
        &running,
        &doc,
        ("GET", "/v1/processors", "/v1/processors"),
        None,
        200,
    );
    checked(
        &running,
        &doc,
        ("GET", "/v1/processors/{name}", "/v1/processors/core"),
        None,
        200,
    );
    checked(&running, &doc, ("GET", "/healthz", "/healthz"), None, 200);
    let metrics = request(running.addr, "GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .is_some_and(|value| value.starts_with("text/plain")));
    assert!(
        doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"].is_object()
    );

    // Error answers.
    let missing = "trun_0123456789abcdef0123456789abcdef";
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/runs/{run_id}",
            &format!("/v1/tasks/runs/{missing}"),
        ),
        None,
        404,
    );
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/runs/{run_id}/result",
            &format!("/v1/tasks/runs/{missing}/result?timeout=0"),
        ),
        None,
        404,
    );
    checked(
        &running,
        &doc,
        ("GET", "/v1/tasks/runs", "/v1/tasks/runs?limit=0"),
        None,
        400,
    );
    checked(
        &running,
        &doc,
        ("POST", "/v1/tasks/runs", "/v1/tasks/runs"),
        Some(&json!({"input": 5})),
        422,
    );
    checked(
        &running,
        &doc,
        ("POST", "/v1/tasks/runs", "/v1/tasks/runs"),
        Some(&json!({"input": "q", "processor": "cor"})),
        403,
    );
    checked(
        &running,
        &doc,
        (
            "POST",
            "/v1/tasks/groups/{taskgroup_id}/runs",
            &format!("/v1/tasks/groups/{group_id}/runs"),
        ),
        Some(&json!({"inputs": []})),
        422,
    );
    checked(
        &running,
        &doc,
        (
            "GET",
            "/v1/tasks/groups/{taskgroup_id}/events",
            &format!("/v1/tasks/groups/{group_id}/events?last_event_id=-1"),
        ),
        None,
        400,
    );
    let wrong_method = request(running.addr, "DELETE", "/v1/tasks/groups", None);
    assert_eq!(wrong_method.status, 405);
    let allowed = doc["components"]["responses"]["MethodNotAllowed"]["content"]["application/json"]
        ["schema"]["$ref"]
        .as_str()
        .expect("405 schema");
    assert_valid(
        &validator_at(&doc, allowed.trim_start_matches('#')),
        &wrong_method.json(),
        "405",
    );
}

// ---------------------------------------------------------------------
// The /metrics description against a real scrape
// ---------------------------------------------------------------------

/// The series the `/metrics` description names, with their labels: every
/// backticked word starting `taskyard_`, its labels being what it holds
/// between `{` and `}` (`taskyard_runs{status}`).
fn documented_series(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let description = doc["paths"]["/metrics"]["get"]["description"]
        .as_str()
        .expect("/metrics has a description");
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Between the 1st and 2nd backtick, the 3rd and 4th, ...
    for word in description.split('`').skip(1).step_by(2) {
        if !word.starts_with("taskyard_") {
            continue;
        }
        let (name, labels) = match word.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (word, ""),
        };
        series.entry(name.to_string()).or_default().extend(
            labels
                .split(',')
                .map(str::trim)
                .filter(|label| !label.is_empty())
                .map(String::from),
        );
    }
    series
}

/// The label names of one sample line's `{k="v",...}` (values may hold
/// `{`, `}` and `,`, as route patterns do), and the rest of the line.
fn sample_labels(mut rest: &str) -> (BTreeSet<String>, &str) {
    let mut labels = BTreeSet::new();
    let Some(inner) = rest.strip_prefix('{') else {
        return (labels, rest);
    };
    rest = inner;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (key, value) = rest.split_once("=\"").expect("a label is key=\"value\"");
        labels.insert(key.trim_start_matches(',').to_string());
        let mut end = None;
        let mut escaped = false;
        for (index, char) in value.char_indices() {
            match char {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(index);
                    break;
                }
                _ => {}
            }
        }
        let end = end.expect("a label value ends with a quote");
        rest = value[end + 1..].trim_start_matches(',');
    }
}

/// The series of a scrape, by their `# TYPE` lines, with the label names
/// their samples carry (`le` of histogram buckets left out).
fn exported_series(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            let earlier = kinds.insert(name.to_string(), kind.to_string());
            assert!(earlier.is_none(), "two # TYPE lines for {name}");
        }
    }
    let mut series: BTreeMap<String, BTreeSet<String>> = kinds
        .keys()
        .map(|name| (name.clone(), BTreeSet::new()))
        .collect();
    for line in text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
    {
        let name_end = line.find(['{', ' ']).expect("a sample has a value");
        let name = &line[..name_end];
        let (mut labels, value) = sample_labels(&line[name_end..]);
        assert!(
            value.trim().parse::<f64>().is_ok(),
            "sample {line:?} has no numeric value"
        );
        let base = if kinds.contains_key(name) {
            name
        } else {
            ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|base| kinds.get(*base).is_some_and(|kind| kind == "histogram"))
                .unwrap_or_else(|| panic!("sample {line:?} of no # TYPE line"))
        };
        if kinds[base] == "histogram" {
            labels.remove("le");
        }
        series.get_mut(base).expect("a typed series").extend(labels);
    }
    series
}

#[test]
fn the_metrics_description_names_exactly_the_exported_series() {
    let doc = document();
    let documented = documented_series(&doc);
    assert!(
        !documented.is_empty(),
        "the /metrics description names no `taskyard_` series"
    );

    // Requests, a run and a stream, so that every labelled series has a
    // sample.
    let running = Running::start();
    assert_eq!(request(running.addr, "GET", "/healthz", None).status, 200);
    let run = request(
        running.addr,
        "POST",
        "/v1/tasks/runs",
        Some(&json!({"input": "Name a river", "processor": "mock"})),
    );
    assert_eq!(run.status, 202, "{}", String::from_utf8_lossy(&run.body));
    let run_id = run.json()["run_id"].as_str().expect("run_id").to_string();
    let result = request(
        running.addr,
        "GET",
        &format!("/v1/tasks/runs/{run_id}/result?timeout=30"),
        None,
    );
    assert_eq!(result.status, 200);
    let stream = request(
        running.addr,
        "GET",
        &format!("/v1/tasks/runs/{run_id}/events"),
        None,
    );
    assert_eq!(stream.status, 200);
    assert!(
        !sse_events(&stream.body).is_empty(),
        "the stream sent events"
    );

    let scrape = request(running.addr, "GET", "/metrics", None);
    assert_eq!(scrape.status, 200);
    let text = String::from_utf8(scrape.body).expect("metrics are UTF-8");
    let exported = exported_series(&text);

    let names = |series: &BTreeMap<String, BTreeSet<String>>| -> BTreeSet<String> {
        series.keys().cloned().collect()
    };
    let not_exported: Vec<String> = names(&documented)
        .difference(&names(&exported))
        .cloned()
        .collect();
    let not_documented: Vec<String> = names(&exported)
        .difference(&names(&documented))
        .cloned()
        .collect();
    assert!(
        not_exported.is_empty() && not_documented.is_empty(),
        "the /metrics description and a real scrape disagree\n\
         named in openapi.json but not exported: {not_exported:?}\n\
         exported but not named in openapi.json: {not_documented:?}\n\
         scrape:\n{text}"
    );
    let wrong_labels: Vec<String> = documented
        .iter()
        .filter(|(name, labels)| exported[*name] != **labels)
        .map(|(name, labels)| {
            format!(
                "{name}: openapi.json says {labels:?}, the scrape has {:?}",
                exported[name]
            )
        })
        .collect();
    assert!(
        wrong_labels.is_empty(),
        "labels differ:\n{}\nscrape:\n{text}",
        wrong_labels.join("\n")
    );
}
