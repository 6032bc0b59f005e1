//! The dashboard at `GET /` (issue 16) in a real headless Chromium (Debian's
//! `chromium` and `chromium-driver`, over WebDriver): with API keys
//! required it asks for one; a group made through the API shows its counts
//! moving to all completed without a reload; a run shows its output and
//! events; on a phone-sized screen too. Screenshots are left in
//! `target/dashboard/` as test artefacts.

#[path = "support/http.rs"]
mod client;
mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use client::TestServer;
use serde_json::json;
use support::{metadata, wait_for};
use taskyard::faces::parallel::wire::{AddRuns, RunInput};
use webdriver::Browser;

fn artefact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/dashboard")
        .join(name)
}

/// A group of `runs` echo runs, each taking `delay_ms`.
fn group(server: &TestServer, runs: usize, delay_ms: u64) -> (String, Vec<String>) {
    let group = server.engine.create_group(None).expect("group");
    let added = server
        .engine
        .add_runs(
            &group.taskgroup_id,
            AddRuns {
                inputs: (0..runs)
                    .map(|index| {
                        RunInput::new(format!("row {index}"), "echo")
                            .with_metadata(metadata(json!({ "mock_delay_ms": delay_ms })))
                    })
                    .collect(),
                default_task_spec: None,
            },
        )
        .expect("runs");
    (group.taskgroup_id, added.run_ids)
}

#[test]
fn counts_move_live_to_completed_and_a_run_shows_its_output() {
    let server = TestServer::start_with(|config| config.api_keys = vec!["dash-key".into()]);
    let browser = Browser::start(1200, 900);
    let base = format!("http://{}", server.addr);
    browser.goto(&format!("{base}/"));
    // Keys are required: the page asks for one.
    wait_for("the key prompt", Duration::from_secs(20), || {
        browser.execute("return getComputedStyle(document.getElementById('login')).display")
            == json!("block")
    });
    browser.type_into("#key", "dash-key");
    browser.click("#save-key");
    wait_for("the groups list", Duration::from_secs(20), || {
        browser.find("#groups").is_some()
    });

    let (group_id, run_ids) = group(&server, 12, 1_500);
    browser.goto(&format!("{base}/#/group/{group_id}"));
    wait_for("the group's runs", Duration::from_secs(20), || {
        browser.text("#num-runs").as_deref() == Some("12")
    });
    // A marker that a reload would wipe out.
    browser.execute("window.stillTheSamePage = true; return null");
    wait_for("all 12 completed, live", Duration::from_secs(60), || {
        browser.text("#count-completed").as_deref() == Some("12")
            && browser.text("#activity").as_deref() == Some("inactive")
    });
    assert_eq!(
        browser.execute("return window.stillTheSamePage === true"),
        json!(true),
        "the counts moved without a reload"
    );
    wait_for("the runs table redrawn", Duration::from_secs(20), || {
        browser
            .text("#runs")
            .is_some_and(|table| table.matches("completed").count() == 12)
    });
    browser.screenshot(&artefact("group.png"));

    browser.click("#runs a");
    wait_for("the run's output", Duration::from_secs(20), || {
        browser
            .text("#output")
            .is_some_and(|text| text.contains("row ") && text != "not yet")
    });
    let shown = browser.text("h2").expect("a title");
    assert!(
        run_ids.iter().any(|id| shown.contains(id.as_str())),
        "{shown}"
    );
    assert_eq!(browser.text("#run-status").as_deref(), Some("completed"));
    wait_for("the run's events", Duration::from_secs(20), || {
        browser
            .text("#events")
            .is_some_and(|events| events.contains("task_run.state"))
    });
    browser.screenshot(&artefact("run.png"));
}

#[test]
fn on_a_phone_sized_screen_without_keys_the_lists_show() {
    let server = TestServer::start();
    let (group_id, _) = group(&server, 3, 0);
    let browser = Browser::start(412, 915);
    browser.goto(&format!("http://{}/", server.addr));
    wait_for("the group listed", Duration::from_secs(20), || {
        browser
            .text("#groups")
            .is_some_and(|groups| groups.contains(&group_id))
    });
    assert_eq!(
        browser.execute("return getComputedStyle(document.getElementById('login')).display"),
        json!("none"),
        "no key asked for"
    );
    // Nothing wider than the screen.
    assert_eq!(
        browser.execute("return document.documentElement.scrollWidth <= window.innerWidth"),
        json!(true)
    );
    browser.click("#nav-schedules");
    wait_for("the schedules view", Duration::from_secs(20), || {
        browser.find("#schedules").is_some()
    });
    browser.screenshot(&artefact("phone.png"));
}
