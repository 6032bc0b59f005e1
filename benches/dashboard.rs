//! `dashboard`: how soon the dashboard shows a big group, in headless
//! Chromium (Debian's `chromium` and `chromium-driver`). One group of
//! `TASKYARD_BENCH_RUNS` (100,000; smoke 1,000) finished `echo` runs is
//! made through the engine; then, in each of `TASKYARD_BENCH_REPEAT` (3;
//! smoke 1) fresh browser sessions, the group's page is opened and two
//! times are read: the browser's first contentful paint, and the time from
//! asking for the page until the group's count and its first page of runs
//! are on screen. Medians are reported. Writes `target/bench/dashboard.json`.

mod common;
#[path = "../tests/support/webdriver.rs"]
mod webdriver;

use std::time::{Duration, Instant};

use common::Row;
use serde_json::json;
use taskyard::faces::parallel::wire::{AddRuns, RunInput};
use taskyard::faces::parallel::Api;
use taskyard::server::{Server, ServerConfig};
use taskyard::Engine;
use webdriver::Browser;

fn main() {
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 100_000, 1_000);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1);
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(
        dir.path().join("bench.db"),
        taskyard::faces::default_config(),
    )
    .expect("engine");
    let api = Api::new(engine.clone());
    let group = api.create_group(None).expect("group");
    for first in (0..runs).step_by(1_000) {
        let inputs = (first..(first + 1_000).min(runs))
            .map(|index| RunInput::new(json!({ "row": index }), "echo"))
            .collect();
        api.add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs,
                default_task_spec: None,
            },
        )
        .expect("runs added");
    }
    common::wait_until("the group to finish", Duration::from_secs(900), || {
        !api.get_group(&group.taskgroup_id)
            .expect("group")
            .status
            .is_active
    });
    let server = Server::start(
        engine,
        ServerConfig {
            addr: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        },
    )
    .expect("server");
    let url = format!(
        "http://{}/#/group/{}",
        server.local_addr(),
        group.taskgroup_id
    );
    let expected = runs.to_string();
    let (mut paints, mut shown) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        let browser = Browser::start(1200, 900);
        let asked = Instant::now();
        browser.goto(&url);
        common::wait_until("the group on screen", Duration::from_secs(60), || {
            browser.text("#num-runs").as_deref() == Some(expected.as_str())
                && browser
                    .execute("return document.querySelectorAll('#runs tr').length")
                    .as_u64()
                    .is_some_and(|rows| rows > 1)
        });
        shown.push(asked.elapsed().as_secs_f64() * 1_000.0);
        let paint = browser.execute(
            "const p = performance.getEntriesByName('first-contentful-paint')[0]; \
             return p ? p.startTime : null",
        );
        if let Some(ms) = paint.as_f64() {
            paints.push(ms);
        }
    }
    server.stop();
    let rows = vec![
        Row::new(
            format!("first contentful paint, group of {runs} runs"),
            common::median(&paints),
            "ms",
        ),
        Row::new(
            format!("group count and first page of runs shown, {runs} runs"),
            common::median(&shown),
            "ms",
        ),
    ];
    common::report(
        "dashboard",
        "the dashboard on a big group, headless Chromium",
        &rows,
        json!({"runs": runs, "paint_passes_ms": paints, "shown_passes_ms": shown}),
    );
}
