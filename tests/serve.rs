//! The `taskyard serve` command as a user runs it: the start line, flags,
//! environment variables and the config file, clear failures with exit
//! codes, and a clean shutdown on SIGTERM and SIGINT with streams ended
//! and nothing left running.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A server process, killed when dropped (also when a test fails).
struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(db: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskyard"));
    command
        .arg("serve")
        .arg("--addr")
        .arg("127.0.0.1:0")
        .arg("--db")
        .arg(db)
        .env_remove("TASKYARD_ADDR")
        .env_remove("TASKYARD_DB")
        .env_remove("TASKYARD_API_KEYS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts the server and reads the address from its start line.
fn serve(mut command: Command) -> Served {
    let mut child = command.spawn().expect("taskyard starts");
    let line = start_line(&mut child, Duration::from_secs(20)).expect("the start line within 20 s");
    let addr = start_line_addr(&line)
        .unwrap_or_else(|| panic!("no address in the start line: {line:?}"))
        .to_string();
    assert!(
        line.contains("database"),
        "the start line names the database: {line}"
    );
    Served { child, addr }
}

/// One request on a fresh connection; answers status and body.
fn request(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn json_field(body: &str, field: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    value[field].as_str().unwrap_or_default().to_string()
}

#[test]
fn serve_answers_and_logs_one_start_line() {
    let dir = TestDir::new();
    let server = serve(command(&dir.db()));
    let (status, body) = request(&server.addr, "GET", "/healthz", "", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_field(&body, "status"), "ok");
    let (status, body) = request(&server.addr, "POST", "/v1/tasks/groups", "", "{}");
    assert_eq!(status, 200, "{body}");
    assert!(json_field(&body, "taskgroup_id").starts_with("tgrp_"));
}

#[test]
fn api_keys_from_flags_environment_and_file_are_all_accepted() {
    let dir = TestDir::new();
    let key_file = dir.dir.path().join("keys.txt");
    std::fs::write(&key_file, "from-file\n\n").expect("key file");
    let mut command = command(&dir.db());
    command
        .args(["--api-key", "from-flag", "--api-key-file"])
        .arg(&key_file);
    let server = serve(command);
    let (status, body) = request(&server.addr, "GET", "/v1/processors", "", "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Unauthorized: invalid or missing credentials"));
    for key in ["from-flag", "from-file"] {
        let header = format!("x-api-key: {key}\r\n");
        let (status, _) = request(&server.addr, "GET", "/v1/processors", &header, "");
        assert_eq!(status, 200, "key {key}");
    }
    let (status, _) = request(&server.addr, "GET", "/healthz", "", "");
    assert_eq!(status, 200, "/healthz needs no key");
    drop(server);

    let mut command = self::command(&dir.db());
    command.env("TASKYARD_API_KEYS", "env-one,env-two");
    let server = serve(command);
    let (status, _) = request(
        &server.addr,
        "GET",
        "/v1/processors",
        "x-api-key: env-two\r\n",
        "",
    );
    assert_eq!(status, 200);
}

#[test]
fn the_config_file_defines_processors() {
    let dir = TestDir::new();
    let config = dir.dir.path().join("taskyard.toml");
    std::fs::write(
        &config,
        "workers = 2\n[processors.my-echo]\nkind = \"echo\"\nmax_concurrency = 2\n\
         description = \"echo for tests\"\n[processors.core]\nkind = \"mock\"\nmax_attempts = 5\n",
    )
    .expect("config");
    let mut command = command(&dir.db());
    command.arg("--config").arg(&config);
    let server = serve(command);
    let (status, body) = request(&server.addr, "GET", "/v1/processors/my-echo", "", "");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"kind\":\"echo\"") && body.contains("\"max_concurrency\":2"),
        "{body}"
    );
    let (status, body) = request(&server.addr, "GET", "/v1/processors/core", "", "");
    assert_eq!(status, 200);
    assert!(body.contains("\"max_attempts\":5"), "{body}");
    let run =
        r#"{"input": "hello", "processor": "my-echo", "task_spec": {"output_schema": "text"}}"#;
    let (status, body) = request(&server.addr, "POST", "/v1/tasks/runs", "", run);
    assert_eq!(status, 202, "{body}");
    let run_id = json_field(&body, "run_id");
    let (status, body) = request(
        &server.addr,
        "GET",
        &format!("/v1/tasks/runs/{run_id}/result?timeout=10"),
        "",
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"content\":\"hello\""), "{body}");
}

/// Runs the command to its end; answers exit code and stderr.
fn fails(mut command: Command) -> (i32, String) {
    let output = command.output().expect("runs");
    assert!(
        output.stdout.is_empty() || !String::from_utf8_lossy(&output.stdout).contains("listening")
    );
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_and_unusable_databases_fail_clearly() {
    let dir = TestDir::new();
    let missing = dir.dir.path().join("no/such/dir/taskyard.db");
    let (code, stderr) = fails(command(&missing));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("does not exist") && !stderr.contains("panicked"),
        "{stderr}"
    );

    // A directory the server cannot write: a read-only tmpfs as root (root
    // ignores permission bits), a mode 0555 directory otherwise.
    let read_only = dir.dir.path().join("read-only");
    std::fs::create_dir(&read_only).expect("directory");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&read_only)
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555))
            .expect("chmod");
    }
    let (code, stderr) = fails(command(&read_only.join("taskyard.db")));
    if mounted {
        let _ = Command::new("umount").arg("-l").arg(&read_only).status();
    }
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot open database") && !stderr.contains("panicked"),
        "{stderr}"
    );

    let config = dir.dir.path().join("bad.toml");
    std::fs::write(&config, "[processors.x]\nkind = \"teleport\"\n").expect("config");
    let mut command = self::command(&dir.db());
    command.arg("--config").arg(&config);
    let (code, stderr) = fails(command);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown kind 'teleport'"), "{stderr}");

    let mut command = self::command(&dir.db());
    command.args(["--synchronous", "sometimes"]);
    let (code, stderr) = fails(command);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("synchronous"), "{stderr}");

    let _holder = serve(self::command(&dir.db()));
    let taken = _holder.addr.clone();
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskyard"));
    command
        .args(["serve", "--addr", &taken, "--db"])
        .arg(dir.dir.path().join("other.db"));
    let (code, stderr) = fails(command);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

/// Sends a signal with the system's `kill`, as an operator would.
fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < until, "the server did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly() {
    for name in ["TERM", "INT"] {
        let dir = TestDir::new();
        let mut command = command(&dir.db());
        command.args(["--shutdown-grace-s", "1"]);
        let mut server = serve(command);
        let (_, body) = request(&server.addr, "POST", "/v1/tasks/groups", "", "{}");
        let group_id = json_field(&body, "taskgroup_id");
        let slow = r#"{"inputs": [{"input": "slow", "processor": "lite", "metadata": {"mock_delay_ms": 60000}}]}"#;
        let (status, _) = request(
            &server.addr,
            "POST",
            &format!("/v1/tasks/groups/{group_id}/runs"),
            "",
            slow,
        );
        assert_eq!(status, 200);
        // A follower of the group's events, open when the signal comes.
        let mut stream = TcpStream::connect(&server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write!(
            stream,
            "GET /v1/tasks/groups/{group_id}/events HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .expect("write");
        let mut head = [0u8; 64];
        let read = stream.read(&mut head).expect("headers arrive at once");
        assert!(String::from_utf8_lossy(&head[..read]).starts_with("HTTP/1.1 200"));
        wait_for("the run is running", Duration::from_secs(10), || {
            let (_, body) = request(
                &server.addr,
                "GET",
                &format!("/v1/tasks/groups/{group_id}"),
                "",
                "",
            );
            body.contains("\"running\":1")
        });
        signal(&server.child, name);
        let status = wait_exit(&mut server.child, Duration::from_secs(15));
        assert!(status.success(), "SIG{name}: exit {status:?}");
        // The stream was ended with its last chunk, not cut.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(
            String::from_utf8_lossy(&rest).ends_with("0\r\n\r\n"),
            "SIG{name}: stream not ended cleanly"
        );
        let db = stored(&dir);
        let running: i64 = db.int(
            "SELECT count(*) FROM runs WHERE status IN ('running', 'cancelling')",
            &[],
        );
        assert_eq!(running, 0, "SIG{name}: nothing left running");
        let queued: i64 = db.int("SELECT count(*) FROM runs WHERE status = 'queued'", &[]);
        assert_eq!(
            queued, 1,
            "SIG{name}: the interrupted run waits in the queue"
        );
    }
}

/// `--test-clock`: `GET /taskyard/clock` reads the clock schedules fire by
/// and `POST` moves it on, behind the API key; bad moves are 400s naming
/// the limit; without the flag there is no such route.
#[test]
fn the_test_clock_is_read_and_moved_only_when_asked_for() {
    let dir = TestDir::new();
    let mut with = command(&dir.db());
    with.args(["--test-clock", "--api-key", "k"]);
    let served = serve(with);
    let key = "x-api-key: k\r\n";
    assert_eq!(
        request(&served.addr, "GET", "/taskyard/clock", "", "").0,
        401
    );
    let (status, body) = request(&served.addr, "GET", "/taskyard/clock", key, "");
    assert_eq!(status, 200, "{body}");
    let micros = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body).expect("JSON")["now_us"]
            .as_i64()
            .expect("now_us")
    };
    let before = micros(&body);
    for bad in [
        "{}",
        r#"{"advance_s": 0}"#,
        r#"{"advance_s": -5}"#,
        r#"{"advance_s": 31536001}"#,
        "nope",
    ] {
        let (status, body) = request(&served.addr, "POST", "/taskyard/clock", key, bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("TEST_CLOCK_ADVANCE_S_MAX"), "{body}");
    }
    let (status, body) = request(
        &served.addr,
        "POST",
        "/taskyard/clock",
        key,
        r#"{"advance_s": 90}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(micros(&body) - before, 90_000_000, "moved by exactly 90 s");
    drop(served);

    let plain = serve(command(&TestDir::new().db()));
    assert_eq!(
        request(&plain.addr, "GET", "/taskyard/clock", "", "").0,
        404
    );
}
