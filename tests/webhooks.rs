//! Webhook deliveries (issue 12; Parallel's spec 9), against a receiver on
//! loopback (`tests/webhooks/receiver.py`) that checks every signature
//! with Python's own `hmac`, an implementation independent of taskyard's:
//! one delivery per terminal run, retried with the same `webhook-id` until
//! a 2xx, no signature header without a secret, and a delivery written with
//! its status change survives `kill -9` of the real server.

#[path = "support/http.rs"]
mod client;
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use std::time::Duration;

use receiver::Receiver;
use serde_json::Value;
use support::{open_with, serve_child, stored, stored_id, wait_for, TestDir};
use taskyard::faces::parallel::wire::RunInput;
use taskyard::model::DeliveryState;

fn with_webhook(input: &str, url: &str) -> RunInput {
    let mut run = RunInput::new(input, "echo");
    run.webhook = Some(serde_json::json!({ "url": url }));
    run
}

#[test]
fn a_terminal_run_is_delivered_signed_and_retried_with_one_id() {
    let dir = TestDir::new();
    let receiver = Receiver::start(dir.dir.path(), 2, &["first-secret", "second-secret"]);
    let mut config = taskyard::faces::default_config();
    config.webhooks.secrets = vec!["first-secret".into(), "second-secret".into()];
    config.webhooks.retry_base = Duration::from_millis(20);
    let engine = open_with(&dir, config);
    let run = engine
        .create_run(with_webhook("hello", &receiver.url()))
        .expect("a run");
    wait_for("the delivery", Duration::from_secs(30), || {
        let deliveries = engine.webhook_deliveries(&run.run_id).expect("deliveries");
        deliveries.data.first().map(|d| d.status) == Some(DeliveryState::Delivered)
    });
    let deliveries = engine
        .webhook_deliveries(&run.run_id)
        .expect("deliveries")
        .data;
    assert_eq!(deliveries.len(), 1, "one delivery per terminal run");
    let delivery = &deliveries[0];
    assert_eq!(delivery.attempts, 3);
    assert_eq!(delivery.last_response_status, Some(204));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "two failures, then a 2xx: {requests:?}");
    for request in &requests {
        assert_eq!(request["webhook_id"], Value::from(delivery.id.clone()));
        assert!(delivery.id.starts_with("whevent_") && delivery.id.len() == 40);
        assert_eq!(request["signature_valid"], Value::Bool(true), "{request}");
        let signature = request["signature"].as_str().expect("signed");
        assert_eq!(signature.split(' ').count(), 2, "one per secret");
        assert_eq!(request["content_type"], "application/json");
        assert_eq!(request["path"], "/hooks/run");
        let body = &request["body"];
        assert_eq!(body["type"], "task_run.status");
        assert_eq!(body["data"]["run_id"], Value::from(run.run_id.clone()));
        assert_eq!(body["data"]["status"], "completed");
        assert_eq!(body["timestamp"], body["data"]["modified_at"]);
    }
    // The run as GET answers it then.
    let got = engine.get_run(&run.run_id).expect("the run");
    assert_eq!(
        requests[0]["body"]["data"],
        serde_json::to_value(&got).expect("json")
    );
    let counts = engine.delivery_counts();
    assert_eq!(
        counts.delivered.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(counts.retried.load(std::sync::atomic::Ordering::Relaxed), 2);
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn without_a_secret_no_signature_header_and_runs_without_a_webhook_send_nothing() {
    let dir = TestDir::new();
    let receiver = Receiver::start(dir.dir.path(), 0, &[]);
    receiver.accept();
    let engine = open_with(&dir, taskyard::faces::default_config());
    let plain = engine
        .create_run(RunInput::new("quiet", "echo"))
        .expect("run");
    let run = engine
        .create_run(with_webhook("loud", &receiver.url()))
        .expect("run");
    wait_for("the delivery", Duration::from_secs(30), || {
        receiver.requests().len() == 1
    });
    let request = &receiver.requests()[0];
    assert_eq!(request["signature"], Value::Null);
    assert_eq!(request["body"]["data"]["run_id"], Value::from(run.run_id));
    engine
        .wait_for_result(&plain.run_id, Duration::from_secs(10))
        .expect("the plain run completes");
    assert!(engine
        .webhook_deliveries(&plain.run_id)
        .expect("deliveries")
        .data
        .is_empty());
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn a_host_off_the_allow_list_is_refused_naming_the_field() {
    let dir = TestDir::new();
    let mut config = taskyard::faces::default_config();
    config.webhooks.hosts_allowed = Some(vec!["hooks.example.com".into()]);
    let engine = open_with(&dir, config);
    let error = engine
        .create_run(with_webhook("x", "http://127.0.0.1:9/elsewhere"))
        .expect_err("refused");
    let taskyard::Error::Invalid(problems) = error else {
        panic!("{error:?}");
    };
    assert_eq!(problems[0].loc_string(), "webhook.url");
    engine.shutdown(Duration::from_secs(5));
}

fn post(addr: &str, path: &str, body: &Value) -> Value {
    let body = body.to_string();
    let answer = client::send(
        addr.parse().expect("an address"),
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert!(answer.status < 300, "{} {}", answer.status, answer.text());
    answer.json()
}

#[test]
fn a_delivery_written_with_its_status_survives_kill_9() {
    let dir = TestDir::new();
    let receiver = Receiver::start(dir.dir.path(), 0, &["crash-secret"]);
    let config = dir.dir.path().join("taskyard.toml");
    std::fs::write(
        &config,
        "webhook_secrets = [\"crash-secret\"]\nwebhook_retry_base_ms = 50\n",
    )
    .expect("config");
    let (mut server, addr) = serve_child(&dir, &config);
    let run = post(
        &addr,
        "/v1/tasks/runs",
        &serde_json::json!({"input": "x", "processor": "echo",
                            "webhook": {"url": receiver.url()}}),
    );
    let run_id = run["run_id"].as_str().expect("run id").to_string();
    // The status is committed and the receiver has refused at least once.
    wait_for("a refused attempt", Duration::from_secs(30), || {
        !receiver.requests().is_empty()
    });
    server.kill().expect("kill -9");
    server.wait().expect("reaped");
    let pending = stored(&dir).rows(
        "SELECT d.state, d.attempts FROM webhook_deliveries d \
         JOIN runs r ON r.seq = d.run_seq WHERE r.id = ?1",
        &[&stored_id(&run_id)],
    );
    assert_eq!(pending.len(), 1, "the delivery row: {pending:?}");
    assert_eq!(pending[0][0].as_deref(), Some("pending"), "{pending:?}");

    receiver.accept();
    let (mut server, _addr) = serve_child(&dir, &config);
    wait_for(
        "the delivery after the restart",
        Duration::from_secs(30),
        || {
            receiver
                .requests()
                .iter()
                .any(|request| request["answered"] == 204)
        },
    );
    let requests = receiver.requests();
    let ids: std::collections::BTreeSet<&str> = requests
        .iter()
        .map(|request| request["webhook_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 1, "one webhook-id across the kill: {ids:?}");
    for request in &requests {
        assert_eq!(request["signature_valid"], Value::Bool(true));
        assert_eq!(request["body"]["data"]["status"], "completed");
    }
    let terminal: i64 = stored(&dir).int(
        "SELECT count(*) FROM events e JOIN runs r ON r.seq = e.run_seq \
             WHERE r.id = ?1 AND e.status IN ('completed', 'failed', 'cancelled')",
        &[&(stored_id(&run_id)).to_string()],
    );
    assert_eq!(terminal, 1, "exactly one terminal status");
    let _ = server.kill();
    let _ = server.wait();
}
