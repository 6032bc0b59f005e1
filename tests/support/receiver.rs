//! A webhook receiver on loopback for the tests (`tests/webhooks/
//! receiver.py`): it checks Standard Webhooks signatures with Python's own
//! `hmac`, logs every request, and answers 500 or 204 as told.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The receiver, killed when dropped.
pub struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Receiver {
    /// Answers 500 to the first `fail_first` requests, then 204; with 0, it
    /// answers 500 until [`Receiver::accept`].
    pub fn start(dir: &Path, fail_first: u32, secrets: &[&str]) -> Receiver {
        let log = dir.join("deliveries.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks/receiver.py");
        let secrets = if secrets.is_empty() {
            "-".to_string()
        } else {
            secrets.join(",")
        };
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&log)
            .arg(fail_first.to_string())
            .arg(secrets)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the receiver's first line");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Receiver { child, port, log }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/run", self.port)
    }

    /// From now on every request gets a 204.
    pub fn accept(&self) {
        std::fs::write(self.log.with_file_name("accept"), b"").expect("accept file");
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a logged request"))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
