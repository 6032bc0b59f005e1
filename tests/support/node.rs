//! Running node scripts against a real `taskyard serve`: a child process
//! killed and reaped when dropped, output relayed to the test's, `npm ci`
//! from a committed lock file when `node_modules` is missing or stale,
//! and the server's base URL read from its start line.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

/// Time for the server to print its listening line.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// Time for `npm ci`.
pub const NPM_DEADLINE: Duration = Duration::from_secs(300);

/// A child process that is killed and reaped when dropped, so that a
/// failed assertion never leaves a server or a node process behind.
pub struct ChildGuard {
    pub name: &'static str,
    pub child: Child,
}

impl ChildGuard {
    pub fn spawn(name: &'static str, command: &mut Command) -> ChildGuard {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        ChildGuard { name, child }
    }

    /// Waits for the process to exit; kills it and panics after `deadline`.
    pub fn wait_with_deadline(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < until => thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("{} did not finish within {deadline:?}", self.name);
                }
                Err(e) => panic!("waiting for {}: {e}", self.name),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Copies each line of `source` to the test's output (shown when the test
/// fails), prefixed with `prefix`.
pub fn relay(prefix: &'static str, source: impl Read + Send + 'static) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            match line {
                Ok(line) => println!("[{prefix}] {line}"),
                Err(_) => break,
            }
        }
    })
}

/// Runs `command` to completion with its output relayed; panics unless it
/// exits 0 within `deadline`.
pub fn run_relayed(name: &'static str, command: &mut Command, deadline: Duration) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(name, command);
    let out = relay(name, guard.child.stdout.take().expect("stdout piped"));
    let err = relay(name, guard.child.stderr.take().expect("stderr piped"));
    let status = guard.wait_with_deadline(deadline);
    let _ = out.join();
    let _ = err.join();
    assert!(status.success(), "{name} failed: {status}");
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `npm ci` unless `node_modules` is there and at least as new as the lock
/// file (npm writes `node_modules/.package-lock.json` on every install).
pub fn ensure_node_modules(dir: &Path) {
    let lock = modified(&dir.join("package-lock.json"))
        .unwrap_or_else(|| panic!("{}/package-lock.json", dir.display()));
    let installed = modified(&dir.join("node_modules").join(".package-lock.json"));
    let fresh = dir.join("node_modules").is_dir() && installed.is_some_and(|t| t >= lock);
    if fresh {
        return;
    }
    run_relayed(
        "npm ci",
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir),
        NPM_DEADLINE,
    );
}

/// `taskyard serve` on a free loopback port, the database `db` and the
/// extra `args`; answers the guard and the base URL read from its first
/// stdout line. Settings of the surrounding shell (keys, config file)
/// do not leak in.
pub fn start_server(db: &Path, args: &[&str]) -> (ChildGuard, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskyard"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TASKYARD_") {
            command.env_remove(key);
        }
    }
    let mut server = ChildGuard::spawn("taskyard serve", &mut command);
    relay(
        "taskyard",
        server.child.stderr.take().expect("stderr piped"),
    );
    // The first stdout line names the port; the rest is relayed so that
    // the server never blocks on a full pipe.
    let stdout = server.child.stdout.take().expect("stdout piped");
    let (first_line, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = first_line.send(lines.next());
        for line in lines.map_while(Result::ok) {
            println!("[taskyard] {line}");
        }
    });
    let line = match rx.recv_timeout(STARTUP_DEADLINE) {
        Ok(Some(Ok(line))) => line,
        Ok(other) => panic!("taskyard serve ended before its listening line: {other:?}"),
        Err(_) => panic!("taskyard serve printed no listening line within {STARTUP_DEADLINE:?}"),
    };
    println!("[taskyard] {line}");
    let base_url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no http://127.0.0.1:<port> in {line:?}"))
        .to_string();
    (server, base_url)
}

/// Moves a `--test-clock` server's clock on by `advance_s` seconds;
/// answers the status (no key configured, none sent).
pub fn post_clock(base_url: &str, advance_s: u64) -> u16 {
    post_json(
        base_url,
        "/taskyard/clock",
        &format!("{{\"advance_s\": {advance_s}}}"),
    )
    .0
}

/// POSTs `body` (JSON) to `path` of a child server, on a connection of its
/// own, no key sent; answers the status (0 when none came) and the whole
/// answer as text.
pub fn post_json(base_url: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let addr = base_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, answer)
}
