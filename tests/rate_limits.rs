//! Rate limits (issue 14): a token bucket per client key and route class,
//! set in config; a request over it is a 429 in the face's own error form
//! with `retry-after` and `retry-after-ms`, nothing is written, and the
//! client gets its token back after that wait. `/healthz` and `/metrics`
//! are never limited.

#[path = "support/http.rs"]
mod client;
mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use client::TestServer;
use serde_json::json;
use support::wait_for;
use taskyard::server::rate::{Limit, RateLimitConfig};

fn limited_server() -> TestServer {
    TestServer::start_with(|config| {
        config.rate_limits = RateLimitConfig {
            read: None,
            write: Some(Limit {
                per_second: 2.0,
                burst: 2,
            }),
        };
    })
}

fn create(server: &TestServer, key: &str) -> client::Response {
    server.send(
        "POST",
        "/v1/tasks/runs",
        &[("Content-Type", "application/json"), ("x-api-key", key)],
        Some(
            json!({"input": "x", "processor": "lite"})
                .to_string()
                .as_bytes(),
        ),
    )
}

#[test]
fn past_the_burst_a_429_with_retry_after_and_nothing_written() {
    let server = limited_server();
    for _ in 0..2 {
        let created = create(&server, "alpha");
        assert_eq!(created.status, 202, "{}", created.text());
    }
    let refused_at = Instant::now();
    let refused = create(&server, "alpha");
    assert_eq!(refused.status, 429, "{}", refused.text());
    let body = refused.json();
    assert_eq!(body["type"], "error");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("rate_limits.write"), "{message}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let wait_ms: u64 = refused
        .header("retry-after-ms")
        .expect("retry-after-ms")
        .parse()
        .expect("milliseconds");
    assert!(wait_ms > 0 && wait_ms <= 500, "{wait_ms}");
    let counted: u64 = server
        .engine
        .runs_by_status()
        .expect("counts")
        .iter()
        .map(|(_, count)| count)
        .sum();
    assert_eq!(counted, 2, "the refused create wrote nothing");

    // Reads are not limited, nor are the server's own routes.
    for _ in 0..20 {
        assert_eq!(server.get("/v1/tasks/runs?limit=1").status, 200);
        assert_eq!(server.get("/healthz").status, 200);
    }
    // Another key has its own bucket.
    assert_eq!(create(&server, "beta").status, 202);
    // The token is back after the wait it named, not before it is asked.
    wait_for("a token back", Duration::from_secs(10), || {
        create(&server, "alpha").status == 202
    });
    assert!(refused_at.elapsed() >= Duration::from_millis(wait_ms));
}

/// Every face answers the limit in its own form: Handinger's
/// `{"error": {"code": "rate_limited"}}`, keyed by its Bearer key.
#[test]
fn the_handinger_face_answers_the_limit_in_its_own_form() {
    let server = limited_server();
    let create = |key: &str| {
        server.send(
            "POST",
            "/api/tasks",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &format!("Bearer {key}")),
            ],
            Some(br#"{"input": "hi"}"#),
        )
    };
    for _ in 0..2 {
        assert_eq!(create("gamma").status, 200);
    }
    let refused = create("gamma");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "rate_limited");
    assert!(refused.header("retry-after-ms").is_some());
    assert_eq!(create("delta").status, 200, "another key, another bucket");
}

/// The Nextcloud face checks its own logins, and the server's limit holds
/// for it too, counted against the Basic password (the key), answered as
/// Nextcloud answers a 429: an empty body, outside the OCS envelope.
#[test]
fn the_nextcloud_face_is_limited_too_and_answers_in_its_own_form() {
    let server = limited_server();
    let schedule = |password: &str| {
        let login = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
        server.send(
            "POST",
            "/ocs/v2.php/taskprocessing/schedule?format=json",
            &[
                ("Content-Type", "application/json"),
                ("OCS-APIRequest", "true"),
                ("Authorization", &format!("Basic {login}")),
            ],
            Some(br#"{"input": {"input": "hi"}, "type": "core:text2text", "appId": "t"}"#),
        )
    };
    for _ in 0..2 {
        let made = schedule("epsilon");
        assert_eq!(made.status, 200, "{}", made.text());
    }
    let refused = schedule("epsilon");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.body.is_empty(), "{}", refused.text());
    assert_eq!(schedule("zeta").status, 200, "another key, another bucket");
}
