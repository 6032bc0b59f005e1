//! `enrich`: rows/s of `taskyard enrich` end to end (read the CSV, make
//! the group, add the rows, wait, fetch every result, write the CSV), on
//! `TASKYARD_BENCH_ROWS` rows (10,000; smoke 200) with the zero-latency
//! `mock`, embedded (`--db`) and against a `taskyard serve` on loopback
//! (`--base-url`). With `TASKYARD_BENCH_PWT` set to a `parallel-cli`
//! (`pip install parallel-web-tools==0.9.4`), its `enrich run` on the same
//! file against a fresh taskyard server too, for comparison.
//! Each of `TASKYARD_BENCH_REPEAT` (3; smoke 1) passes uses fresh
//! databases; medians are reported. Writes `target/bench/enrich.json`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::Row;
use serde_json::json;

fn taskyard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskyard"));
    command.env_remove("PARALLEL_API_KEY");
    command
}

/// A `taskyard serve` on a free loopback port, and its address.
fn serve(db: &Path) -> (Child, String) {
    let mut child = taskyard()
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskyard serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the start line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, addr)
}

/// Seconds `command` took; it must succeed.
fn timed(mut command: Command) -> f64 {
    let started = Instant::now();
    let output = command.output().expect("the command runs");
    let took = started.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

fn enrich(dir: &Path, target: &[&str]) -> Command {
    let mut command = taskyard();
    command
        .args(["enrich", "rows.csv", "--field", "ceo_name:str", "--quiet"])
        .args(["-o", "out.csv"])
        .args(target)
        .current_dir(dir);
    command
}

fn main() {
    let rows = common::env_usize("TASKYARD_BENCH_ROWS", 10_000, 200);
    let repeat = common::env_usize("TASKYARD_BENCH_REPEAT", 3, 1);
    let pwt = std::env::var("TASKYARD_BENCH_PWT").ok();
    let (mut embedded, mut http, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeat {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        let mut csv = String::from("company\n");
        for index in 0..rows {
            csv.push_str(&format!("company {index}\n"));
        }
        std::fs::write(root.join("rows.csv"), csv).expect("rows");

        embedded.push(rows as f64 / timed(enrich(root, &["--db", "embedded.db"])));

        let (mut server, addr) = serve(&root.join("served.db"));
        let base = format!("http://{addr}");
        std::fs::remove_file(root.join("out.csv")).ok();
        http.push(rows as f64 / timed(enrich(root, &["--base-url", &base])));
        let _ = server.kill();
        let _ = server.wait();

        if let Some(cli) = &pwt {
            let (mut server, addr) = serve(&root.join("peer.db"));
            let mut command = Command::new(cli);
            command
                .args([
                    "enrich",
                    "run",
                    "--source-type",
                    "csv",
                    "--source",
                    "rows.csv",
                ])
                .args(["--target", "pwt.csv", "--processor", "lite"])
                .args([
                    "--source-columns",
                    r#"[{"name":"company","description":"Company name"}]"#,
                ])
                .args([
                    "--enriched-columns",
                    r#"[{"name":"ceo_name","description":"CEO name"}]"#,
                ])
                .env("PARALLEL_API_URL", format!("http://{addr}"))
                .env("PARALLEL_API_KEY", "bench")
                .current_dir(root);
            peer.push(rows as f64 / timed(command));
            let written = std::fs::read_to_string(root.join("pwt.csv")).unwrap_or_default();
            assert_eq!(
                written.lines().count(),
                rows + 1,
                "parallel-web-tools wrote every row"
            );
            let _ = server.kill();
            let _ = server.wait();
        }
    }
    let mut table = vec![
        Row::new(
            format!("enrich {rows} rows, embedded (--db)"),
            common::median(&embedded),
            "rows/s",
        ),
        Row::new(
            format!("enrich {rows} rows, over HTTP (--base-url)"),
            common::median(&http),
            "rows/s",
        ),
    ];
    if !peer.is_empty() {
        table.push(Row::new(
            format!("parallel-web-tools 0.9.4 enrich run, {rows} rows, same server"),
            common::median(&peer),
            "rows/s",
        ));
    }
    common::report(
        "enrich",
        "taskyard enrich end to end, zero-latency mock",
        &table,
        json!({
            "rows": rows,
            "embedded_passes": embedded,
            "http_passes": http,
            "parallel_web_tools_passes": peer,
        }),
    );
}
