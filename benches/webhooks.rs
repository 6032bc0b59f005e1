//! `webhooks`: deliveries per second from the outbox to a receiver on
//! loopback that answers 204 at once.
//!
//! Creates `TASKYARD_BENCH_RUNS` standalone runs (2,000; smoke 50) of the
//! zero-latency `echo`, each with a webhook to a tiny_http receiver in this
//! process, signed with one secret, and measures from the first create to
//! the last delivery the receiver saw; each of `TASKYARD_BENCH_REPEAT` (3;
//! smoke 1) passes on a fresh database. Every delivery is checked: one per
//! run, no id twice. Writes `target/bench/webhooks.json`.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Row;
use parking_lot::Mutex;
use serde_json::json;
use taskyard::faces::parallel::{wire::RunInput, Api};
use taskyard::Engine;

/// A receiver that answers 204 and keeps each `webhook-id` it saw.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>, Arc<AtomicBool>) {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("receiver");
    let url = format!(
        "http://{}/hook",
        server.server_addr().to_ip().expect("an ip address")
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (kept, stopping) = (seen.clone(), stop.clone());
    std::thread::spawn(move || {
        while !stopping.load(Ordering::SeqCst) {
            if let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) {
                let id = request
                    .headers()
                    .iter()
                    .find(|header| header.field.equiv("webhook-id"))
                    .map(|header| header.value.to_string())
                    .unwrap_or_default();
                kept.lock().push(id);
                let _ = request.respond(tiny_http::Response::empty(204));
            }
        }
    });
    (url, seen, stop)
}

fn pass(runs: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = taskyard::faces::default_config();
    config.webhooks.secrets = vec!["bench-secret".into()];
    let api = Api::new(Engine::open(dir.path().join("bench.db"), config).expect("engine"));
    let (url, seen, stop) = receiver();
    let started = Instant::now();
    for index in 0..runs {
        let mut run = RunInput::new(json!({ "item": index }), "echo");
        run.webhook = Some(json!({ "url": url }));
        api.create_run(run).expect("a run");
    }
    common::wait_until("every delivery", Duration::from_secs(300), || {
        seen.lock().len() >= runs
    });
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let ids = seen.lock().clone();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), runs, "one delivery per run");
    assert_eq!(unique.len(), runs, "no webhook-id twice");
    api.shutdown(Duration::from_secs(5));
    runs as f64 / elapsed
}

fn main() {
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 2_000, 50);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let passes: Vec<f64> = (0..repeat).map(|_| pass(runs)).collect();
    let median = common::median(&passes);
    let list = common::passes_list(&passes, 0);
    common::report(
        "webhooks",
        &format!("{runs} runs with a webhook to a loopback receiver, medians of {repeat}"),
        &[Row::new(
            format!("created to delivered ({list})"),
            median,
            "runs/s",
        )],
        json!({"runs": runs, "passes": passes, "deliveries_per_s": median}),
    );
}
