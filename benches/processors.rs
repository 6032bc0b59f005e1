//! `processors`: what the processor kinds that do real work cost per run,
//! end to end through the engine with 2 workers.
//!
//! - `command`: `TASKYARD_BENCH_RUNS` runs (1,000; smoke 20) of `cat`, the
//!   most trivial program that answers (it prints the run back): runs/s,
//!   so the cost of a process per run.
//! - `openai`: as many runs against an OpenAI-compatible server on loopback
//!   that answers at once (tiny_http, in this process): runs/s; and the
//!   latency it adds, the median time from create to completed of 200
//!   runs made one after another, less that of `echo` measured the same
//!   way in the same pass.
//! - `replay`: as many runs answered from a fixtures file that holds one
//!   entry per run: runs/s.
//!
//! Each of `TASKYARD_BENCH_REPEAT` (3; smoke 1) passes on fresh databases;
//! every run must complete. Writes `target/bench/processors.json`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Row;
use serde_json::json;
use taskyard::config::FileConfig;
use taskyard::model::{RunRequest, Timestamp};
use taskyard::processors::fixtures::{self, Entry, Fixtures};
use taskyard::{Engine, TaskSpec};

/// An engine with 2 workers and the processors of `toml`.
fn engine(dir: &std::path::Path, toml: &str) -> Engine {
    let path = dir.join("bench.toml");
    std::fs::write(&path, toml).expect("config written");
    let registry = FileConfig::load(&path)
        .and_then(|file| file.registry())
        .expect("processors build");
    let config = taskyard::Config {
        registry,
        workers: 2,
        ..taskyard::faces::default_config()
    };
    Engine::open(dir.join("bench.db"), config).expect("engine")
}

/// Runs/s of `runs` runs of `processor`, all completed.
fn throughput(engine: &Engine, runs: usize, processor: &str) -> f64 {
    let started = Instant::now();
    let group = common::engine_lifecycle(engine, runs, processor);
    let seconds = started.elapsed().as_secs_f64();
    let status = engine.get_group(&group).expect("group").status;
    assert_eq!(
        status.counts.completed as usize, runs,
        "every run completed"
    );
    runs as f64 / seconds
}

/// The median create-to-completed time of `runs` runs made one by one, ms.
fn latency_ms(engine: &Engine, runs: usize, processor: &str) -> f64 {
    let mut times = Vec::with_capacity(runs);
    for index in 0..runs {
        let started = Instant::now();
        let run = engine
            .create_run(RunRequest::new(common::bench_input(index), processor))
            .expect("run");
        engine
            .wait_for_result(&run.id, Duration::from_secs(30))
            .expect("completed");
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    common::median(&times)
}

/// A chat-completions server on loopback that answers at once.
fn model_server() -> String {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("model server"));
    let port = server.server_addr().to_ip().expect("ip").port();
    for _ in 0..4 {
        let server = server.clone();
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let reply = json!({
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "{\"ok\": true}"}}],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 5}
                });
                let _ = request.respond(tiny_http::Response::from_string(reply.to_string()));
            }
        });
    }
    format!("http://127.0.0.1:{port}/v1")
}

struct Pass {
    command: f64,
    openai: f64,
    openai_added_ms: f64,
    replay: f64,
}

fn pass(runs: usize, sequential: usize, base_url: &str) -> Pass {
    let dir = tempfile::tempdir().expect("temporary directory");
    let command = {
        let engine = engine(
            dir.path(),
            "[processors.cat]\nkind = \"command\"\nargv = [\"cat\"]\nmax_concurrency = 2\n",
        );
        let rate = throughput(&engine, runs, "cat");
        engine.shutdown(Duration::from_secs(5));
        rate
    };

    let dir = tempfile::tempdir().expect("temporary directory");
    let (openai, openai_added_ms) = {
        let engine = engine(
            dir.path(),
            &format!(
                "[processors.local]\nkind = \"openai\"\nbase_url = \"{base_url}\"\n\
                 model = \"bench\"\nmax_concurrency = 2\n"
            ),
        );
        let rate = throughput(&engine, runs, "local");
        let added =
            latency_ms(&engine, sequential, "local") - latency_ms(&engine, sequential, "echo");
        engine.shutdown(Duration::from_secs(5));
        (rate, added)
    };

    let dir = tempfile::tempdir().expect("temporary directory");
    let replay = {
        // One recorded entry per run the lifecycle will make, written as
        // the recorder would (the order of lines does not matter to a read).
        let output = taskyard::model::Output::json(
            json!({"ok": true}).as_object().cloned().expect("object"),
            Vec::new(),
        );
        let mut lines = String::new();
        for index in 0..runs {
            let input = common::bench_input(index);
            let entry = Entry {
                key: fixtures::key("recorded", &input, &TaskSpec::auto(), &[]),
                processor: "recorded".into(),
                input,
                task_spec: json!({}),
                turns: 0,
                output: output.clone(),
                duration_ms: 0,
                recorded_at: Timestamp::now(),
                source_id: None,
            };
            lines.push_str(&serde_json::to_string(&entry).expect("entry"));
            lines.push('\n');
        }
        let path = dir.path().join("answers.jsonl");
        std::fs::write(&path, lines).expect("fixtures written");
        assert_eq!(Fixtures::open(&path).expect("fixtures").len(), runs);
        let engine = engine(
            dir.path(),
            "[processors.recorded]\nkind = \"replay\"\nmode = \"replay\"\n\
             fixtures = \"answers.jsonl\"\nmax_concurrency = 2\n",
        );
        let rate = throughput(&engine, runs, "recorded");
        engine.shutdown(Duration::from_secs(5));
        rate
    };
    Pass {
        command,
        openai,
        openai_added_ms,
        replay,
    }
}

fn main() {
    let runs = common::env_usize("TASKYARD_BENCH_RUNS", 1_000, 20);
    let sequential = common::env_usize("TASKYARD_BENCH_SEQUENTIAL", 200, 10);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1).max(1);
    let base_url = model_server();
    let passes: Vec<Pass> = (0..repeat)
        .map(|_| pass(runs, sequential, &base_url))
        .collect();
    let of = |field: fn(&Pass) -> f64| passes.iter().map(field).collect::<Vec<f64>>();
    let (command, openai, added, replay) = (
        of(|p| p.command),
        of(|p| p.openai),
        of(|p| p.openai_added_ms),
        of(|p| p.replay),
    );
    let list = common::passes_list;
    common::report(
        "processors",
        &format!("{runs} runs per kind, 2 workers, medians of {repeat}"),
        &[
            Row::new(
                format!("command, `cat` ({})", list(&command, 0)),
                common::median(&command),
                "runs/s",
            ),
            Row::new(
                format!("openai, loopback server ({})", list(&openai, 0)),
                common::median(&openai),
                "runs/s",
            ),
            Row::new(
                format!("openai added latency p50, vs echo ({})", list(&added, 2)),
                common::median(&added),
                "ms",
            ),
            Row::new(
                format!("replay from fixtures ({})", list(&replay, 0)),
                common::median(&replay),
                "runs/s",
            ),
        ],
        json!({"runs": runs, "command_runs_per_s": command, "openai_runs_per_s": openai,
               "openai_added_latency_ms": added, "replay_runs_per_s": replay}),
    );
}
