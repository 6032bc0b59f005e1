//! `taskyard enrich` (issue 16), run as the real binary: every row once
//! and in order, outputs of the typed fields' types, failed rows written
//! with their error, embedded and against a server; `--resume` after
//! `kill -9` writes nothing twice and misses nothing; `--dry-run` sends
//! nothing; bad rows are named by line; the exit codes are as documented.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{serve_child, wait_for, TestDir};

fn taskyard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskyard"));
    command.env_remove("PARALLEL_API_KEY");
    command
}

fn enrich(dir: &Path, args: &[&str]) -> Output {
    taskyard()
        .arg("enrich")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("taskyard enrich runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `rows` rows `c0..`: company, country.
fn companies_csv(dir: &Path, rows: usize) -> PathBuf {
    let path = dir.join("companies.csv");
    let mut text = String::from("company,country\n");
    for index in 0..rows {
        text.push_str(&format!("c{index},\"land, {}\"\n", index % 7));
    }
    std::fs::write(&path, text).expect("input written");
    path
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).expect("the output reads as CSV");
    let header = reader
        .headers()
        .expect("a header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|record| {
            record
                .expect("a record")
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    (header, rows)
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("the output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[test]
fn two_thousand_csv_rows_embedded_come_back_once_in_order_and_typed() {
    let dir = TestDir::new();
    let root = dir.dir.path();
    companies_csv(root, 2_000);
    let done = enrich(
        root,
        &[
            "companies.csv",
            "--db",
            "e.db",
            "--field",
            "ceo_name:str:The CEO's name",
            "--field",
            "founded:int",
            "--field",
            "public:bool",
            "--field",
            "tags:list[str]",
            "--field",
            "rating:float | None",
            "-o",
            "out.csv",
        ],
    );
    assert!(done.status.success(), "{}", text(&done.stderr));
    let (header, rows) = read_csv(&root.join("out.csv"));
    assert_eq!(
        header,
        [
            "company", "country", "ceo_name", "founded", "public", "tags", "rating", "status",
            "error"
        ]
    );
    assert_eq!(rows.len(), 2_000);
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row[0], format!("c{index}"), "in input order");
        assert_eq!(row[1], format!("land, {}", index % 7));
        assert!(!row[2].is_empty());
        assert!(row[3].parse::<i64>().is_ok(), "founded: {:?}", row[3]);
        assert!(
            ["true", "false"].contains(&row[4].as_str()),
            "public: {:?}",
            row[4]
        );
        let tags: Value = serde_json::from_str(&row[5]).expect("tags as JSON");
        assert!(tags
            .as_array()
            .is_some_and(|tags| tags.iter().all(Value::is_string)));
        assert!(
            row[6].is_empty() || row[6].parse::<f64>().is_ok(),
            "rating: {:?}",
            row[6]
        );
        assert_eq!((row[7].as_str(), row[8].as_str()), ("completed", ""));
    }
    // Plain progress lines on a stderr that is not a terminal.
    assert!(
        text(&done.stderr).contains("2000/2000 done"),
        "{}",
        text(&done.stderr)
    );
    // The state file went with the finished enrichment.
    assert!(!root.join("out.csv.taskyard-enrich").exists());
}

#[test]
fn against_a_server_failed_rows_are_written_with_their_error_and_exit_1() {
    let dir = TestDir::new();
    let root = dir.dir.path();
    let config = root.join("taskyard.toml");
    std::fs::write(
        &config,
        "[processors.flaky]\nkind = \"mock\"\nfailure_rate = 0.3\nmax_attempts = 1\n",
    )
    .expect("config");
    let (mut server, addr) = serve_child(&dir, &config);
    let mut lines = String::new();
    for index in 0..300 {
        lines.push_str(&format!("{{\"name\": \"n{index}\", \"size\": {index}}}\n"));
    }
    std::fs::write(root.join("in.jsonl"), lines).expect("input");
    let base = format!("http://{addr}");
    let done = enrich(
        root,
        &[
            "in.jsonl",
            "--base-url",
            &base,
            "--processor",
            "flaky",
            "--field",
            "summary:str",
            "-o",
            "out.jsonl",
            "--quiet",
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(done.status.code(), Some(1), "{}", text(&done.stderr));
    assert!(text(&done.stderr).contains("did not complete"));
    assert!(!text(&done.stderr).contains("/300 done"), "--quiet");
    let out = read_lines(&root.join("out.jsonl"));
    assert_eq!(out.len(), 300);
    let mut failed = 0;
    for (index, line) in out.iter().enumerate() {
        assert_eq!(line["input"]["name"], format!("n{index}"), "in input order");
        match line["status"].as_str() {
            Some("completed") => {
                assert!(line["output"]["summary"].is_string(), "{line}");
                assert!(line["basis"].is_array(), "{line}");
                assert_eq!(line["error"], Value::Null);
            }
            Some("failed") => {
                failed += 1;
                assert_eq!(line["output"], Value::Null);
                assert!(
                    line["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("simulated")),
                    "{line}"
                );
            }
            other => panic!("status {other:?}: {line}"),
        }
    }
    assert!(
        failed > 30 && failed < 150,
        "{failed} failed of 300 at a 0.3 rate"
    );
}

/// Killed with `kill -9` while adding rows, and again while they run:
/// `--resume` each time, and the output has every row exactly once.
#[test]
fn resume_after_kill_9_writes_every_row_once() {
    let dir = TestDir::new();
    let root = dir.dir.path();
    companies_csv(root, 3_000);
    let config = root.join("slow.toml");
    std::fs::write(
        &config,
        "[processors.slow]\nkind = \"mock\"\nlatency_ms = 40\n",
    )
    .expect("config");
    let start = |resume: bool| {
        let mut command = taskyard();
        command
            .args([
                "enrich",
                "companies.csv",
                "--db",
                "e.db",
                "--config",
                "slow.toml",
            ])
            .args([
                "--processor",
                "slow",
                "--field",
                "ceo:str",
                "-o",
                "out.csv",
                "--quiet",
            ])
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if resume {
            command.arg("--resume");
        }
        command.spawn().expect("taskyard enrich starts")
    };
    let runs_stored = || -> i64 {
        let db = root.join("e.db");
        if !db.exists() {
            return 0;
        }
        rusqlite::Connection::open(&db)
            .and_then(|db| db.query_row("SELECT count(*) FROM runs", [], |row| row.get(0)))
            .unwrap_or(0)
    };
    let completed = || -> i64 {
        rusqlite::Connection::open(root.join("e.db"))
            .and_then(|db| {
                db.query_row(
                    "SELECT count(*) FROM runs WHERE status = 'completed'",
                    [],
                    |row| row.get(0),
                )
            })
            .unwrap_or(0)
    };

    // 1. While the group is being made and filled.
    let mut first = start(false);
    wait_for("the group made", Duration::from_secs(30), || {
        root.join("out.csv.taskyard-enrich").exists()
    });
    first.kill().expect("kill -9");
    first.wait().expect("reaped");
    assert!(!root.join("out.csv").exists(), "no half-written output");

    // 2. While the rows run.
    let mut second = start(true);
    wait_for("every row added, some run", Duration::from_secs(60), || {
        runs_stored() == 3_000 && completed() > 100
    });
    assert!(completed() < 3_000, "killed while rows still run");
    second.kill().expect("kill -9");
    second.wait().expect("reaped");

    // 3. To the end.
    let last = start(true).wait_with_output().expect("the last run");
    assert!(last.status.success(), "{}", text(&last.stderr));
    assert_eq!(runs_stored(), 3_000, "no row added twice");
    let (_, rows) = read_csv(&root.join("out.csv"));
    assert_eq!(rows.len(), 3_000);
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row[0], format!("c{index}"));
        assert_eq!(row[3], "completed", "{row:?}");
    }
    assert!(!root.join("out.csv.taskyard-enrich").exists());
    // Nothing left to resume.
    let again = enrich(
        root,
        &["companies.csv", "--db", "e.db", "-o", "out.csv", "--resume"],
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
}

#[test]
fn dry_run_sends_nothing_and_bad_rows_are_named_by_line() {
    let dir = TestDir::new();
    let root = dir.dir.path();
    companies_csv(root, 5);
    let dry = enrich(
        root,
        &[
            "companies.csv",
            "--db",
            "e.db",
            "--field",
            "ceo:str",
            "--dry-run",
        ],
    );
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let shown = text(&dry.stdout);
    assert!(shown.contains("\"json_schema\""), "{shown}");
    assert!(shown.contains("\"company\":\"c0\""), "{shown}");
    assert!(!root.join("e.db").exists(), "nothing opened, nothing sent");

    std::fs::write(root.join("ragged.csv"), "a,b\n1,2\n3\n4,5\n").expect("input");
    let refused = enrich(root, &["ragged.csv", "--db", "e.db", "--field", "x:str"]);
    assert_eq!(refused.status.code(), Some(2));
    let said = text(&refused.stderr);
    assert!(
        said.contains("line 3") && said.contains("nothing was sent"),
        "{said}"
    );
    assert!(!root.join("e.db").exists());

    let skipped = enrich(
        root,
        &[
            "ragged.csv",
            "--db",
            "e.db",
            "--bad-rows",
            "skip",
            "--format",
            "jsonl",
            "--quiet",
        ],
    );
    assert!(skipped.status.success(), "{}", text(&skipped.stderr));
    let lines: Vec<Value> = text(&skipped.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    let firsts: Vec<&Value> = lines.iter().map(|line| &line["input"]["a"]).collect();
    assert_eq!(firsts, ["1", "4"]);
    assert!(
        lines.iter().all(|line| line["output"].is_string()),
        "text output"
    );

    // --input-schema rows that fail it are bad rows too.
    let schema =
        r#"{"type": "object", "properties": {"b": {"pattern": "^[0-9]+$"}}, "required": ["b"]}"#;
    std::fs::write(
        root.join("typed.jsonl"),
        "{\"b\": \"1\"}\n{\"b\": \"x\"}\n{\"c\": 1}\n",
    )
    .expect("input");
    let checked = enrich(
        root,
        &["typed.jsonl", "--db", "e.db", "--input-schema", schema],
    );
    assert_eq!(checked.status.code(), Some(2));
    let said = text(&checked.stderr);
    assert!(
        said.contains("line 2") && said.contains("line 3") && !said.contains("line 1:"),
        "{said}"
    );
}

#[test]
fn usage_errors_exit_2_and_an_unreachable_server_exits_3() {
    let dir = TestDir::new();
    let root = dir.dir.path();
    companies_csv(root, 2);
    for (args, says) in [
        (vec!["companies.csv", "--field", "x"], "NAME:TYPE"),
        (vec!["companies.csv", "--field", "x:date"], "unknown type"),
        (
            vec!["companies.csv", "--source-columns", "nope"],
            "no column \"nope\"",
        ),
        (vec!["companies.csv", "--format", "xml"], "--format"),
        (vec!["missing.csv"], "cannot read missing.csv"),
        (
            vec!["companies.csv", "--field", "x:str", "--output-schema", "{}"],
            "not both",
        ),
    ] {
        let done = enrich(root, &args);
        assert_eq!(
            done.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&done.stderr)
        );
        assert!(
            text(&done.stderr).contains(says),
            "{args:?}: {}",
            text(&done.stderr)
        );
    }
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let base = format!("http://127.0.0.1:{port}");
    let done = enrich(root, &["companies.csv", "--base-url", &base]);
    assert_eq!(done.status.code(), Some(3), "{}", text(&done.stderr));
    assert!(text(&done.stderr).contains("cannot reach"));
}

/// The README's first example, on `examples/enrich.csv`, as written there.
#[test]
fn the_readme_example_runs_as_written() {
    let dir = TestDir::new();
    let root = dir.dir.path();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/enrich.csv");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("the README");
    for flag in [
        "--field \"ceo_name:str:The company's chief executive\"",
        "--field \"founded:int | None\" --field \"tags:list[str]\"",
        "-o enriched.csv",
    ] {
        assert!(readme.contains(flag), "the README's example has {flag}");
    }
    let done = enrich(
        root,
        &[
            example.to_str().expect("a path"),
            "--field",
            "ceo_name:str:The company's chief executive",
            "--field",
            "founded:int | None",
            "--field",
            "tags:list[str]",
            "-o",
            "enriched.csv",
        ],
    );
    assert!(done.status.success(), "{}", text(&done.stderr));
    let (header, rows) = read_csv(&root.join("enriched.csv"));
    assert_eq!(
        header,
        ["company", "website", "ceo_name", "founded", "tags", "status", "error"]
    );
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|row| row[5] == "completed"));
    assert!(root.join("taskyard.db").exists(), "the default database");
}

/// The other two pairings of the issue's matrix: the 2,000-row CSV against
/// a running server, and JSON Lines embedded; every row once, in order.
#[test]
fn csv_against_a_server_and_json_lines_embedded_come_back_whole() {
    let dir = TestDir::new();
    let root = dir.dir.path();
    companies_csv(root, 2_000);
    let config = root.join("taskyard.toml");
    std::fs::write(&config, "").expect("config");
    let (mut server, addr) = serve_child(&dir, &config);
    let base = format!("http://{addr}");
    let done = enrich(
        root,
        &[
            "companies.csv",
            "--base-url",
            &base,
            "--field",
            "founded:int",
            "-o",
            "served.csv",
            "--quiet",
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(done.status.success(), "{}", text(&done.stderr));
    let (header, rows) = read_csv(&root.join("served.csv"));
    assert_eq!(header, ["company", "country", "founded", "status", "error"]);
    assert_eq!(rows.len(), 2_000);
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row[0], format!("c{index}"));
        assert!(row[2].parse::<i64>().is_ok(), "{row:?}");
        assert_eq!(row[3], "completed");
    }

    let mut lines = String::new();
    for index in 0..500 {
        lines.push_str(&format!("{{\"name\": \"n{index}\"}}\n"));
    }
    std::fs::write(root.join("in.jsonl"), lines).expect("input");
    let done = enrich(
        root,
        &[
            "in.jsonl",
            "--db",
            "e.db",
            "--field",
            "tags:list[str]",
            "-o",
            "out.jsonl",
            "--quiet",
        ],
    );
    assert!(done.status.success(), "{}", text(&done.stderr));
    let out = read_lines(&root.join("out.jsonl"));
    assert_eq!(out.len(), 500);
    for (index, line) in out.iter().enumerate() {
        assert_eq!(line["input"]["name"], format!("n{index}"));
        assert!(line["output"]["tags"].is_array(), "{line}");
        assert_eq!(line["status"], "completed");
    }
}
