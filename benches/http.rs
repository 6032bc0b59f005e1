//! `http`: the HTTP layer under load on loopback, with its own keep-alive
//! client (raw HTTP/1.1 over `TcpStream`), in one process with the server.
//!
//! 1. `GET /v1/tasks/groups/{id}` from `TASKYARD_BENCH_CLIENTS` (32) keep-alive
//!    clients for `TASKYARD_BENCH_SECONDS` (5): requests/s.
//! 2. `POST /v1/tasks/runs` from the same number of clients: p50 and p99
//!    latency.
//! 3. Stream latency: a client follows a group's events while runs complete;
//!    the time from each run's recorded completion (`modified_at`) to its
//!    event reaching the client: p50 and p99.
//!
//! Prints a table and writes `target/bench/http.json`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use taskyard::http::{Server, ServerConfig};
use taskyard::{Config, Engine};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A keep-alive HTTP/1.1 connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        write!(
            self.writer,
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("length");
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        (status, String::from_utf8(body).expect("utf-8"))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `work` on `clients` threads for `seconds`; answers each call's
/// latency in milliseconds.
fn load(
    addr: SocketAddr,
    clients: usize,
    seconds: f64,
    work: impl Fn(&mut Client) + Sync,
) -> (Vec<f64>, f64) {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(clients + 1);
    let mut latencies = Vec::new();
    let mut elapsed = 0.0;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::connect(addr);
                    let mut mine = Vec::new();
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        work(&mut client);
                        mine.push(started.elapsed().as_secs_f64() * 1e3);
                    }
                    mine
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        for handle in handles {
            latencies.extend(handle.join().expect("client thread"));
        }
        elapsed = started.elapsed().as_secs_f64();
    });
    latencies.sort_by(|a, b| a.total_cmp(b));
    (latencies, elapsed)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64
}

fn parse_rfc3339_micros(text: &str) -> i64 {
    let time = humantime::parse_rfc3339(text).expect("timestamp");
    time.duration_since(UNIX_EPOCH)
        .expect("after epoch")
        .as_micros() as i64
}

/// Follows a group's events over SSE; answers completion-to-arrival
/// latencies in milliseconds.
fn stream_latency(addr: SocketAddr, runs: usize) -> Vec<f64> {
    let mut client = Client::connect(addr);
    let (_, body) = client.call("POST", "/v1/tasks/groups", "{}");
    let group_id = serde_json::from_str::<Value>(&body).expect("json")["taskgroup_id"]
        .as_str()
        .expect("id")
        .to_string();
    // One long run keeps the group active, so the stream stays open while
    // the measured runs are added one by one; it is cancelled at the end.
    let keeper = json!({"inputs": [{"input": "keeper", "processor": "lite",
        "metadata": {"mock_delay_ms": 600_000}}]})
    .to_string();
    let (status, _) = client.call(
        "POST",
        &format!("/v1/tasks/groups/{group_id}/runs"),
        &keeper,
    );
    assert_eq!(status, 200);
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET /v1/tasks/groups/{group_id}/events HTTP/1.1\r\nHost: bench\r\n\r\n"
    )
    .expect("write");
    let reader = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while latencies.len() < runs && reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false)
        {
            if let Some(data) = line.strip_prefix("data: ") {
                let arrived = now_micros();
                let event: Value = serde_json::from_str(data).expect("event json");
                if event["type"] == "task_run.state" {
                    let completed =
                        parse_rfc3339_micros(event["run"]["modified_at"].as_str().expect("time"));
                    latencies.push((arrived - completed) as f64 / 1e3);
                }
            }
            line.clear();
        }
        latencies
    });
    // Runs added one request at a time, spaced so completions are spread.
    for index in 0..runs {
        let body =
            json!({"inputs": [{"input": format!("run {index}"), "processor": "lite"}]}).to_string();
        let (status, _) = client.call("POST", &format!("/v1/tasks/groups/{group_id}/runs"), &body);
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut latencies = reader.join().expect("reader");
    let (status, _) = client.call("POST", &format!("/v1/tasks/groups/{group_id}/cancel"), "");
    assert_eq!(status, 200);
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}

fn main() {
    let clients = env_usize("TASKYARD_BENCH_CLIENTS", 32);
    let seconds = env_usize("TASKYARD_BENCH_SECONDS", 5) as f64;
    let stream_runs = env_usize("TASKYARD_BENCH_STREAM_RUNS", 1_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(dir.path().join("bench.db"), Config::default()).expect("engine");
    let server = Server::start(
        engine.clone(),
        ServerConfig {
            addr: "127.0.0.1:0".into(),
            request_threads: clients.max(16),
            ..ServerConfig::default()
        },
    )
    .expect("server");
    let addr = server.local_addr();

    let group_id = engine.create_group(None).expect("group").taskgroup_id;
    let path = format!("/v1/tasks/groups/{group_id}");
    let (get_latencies, get_elapsed) = load(addr, clients, seconds, |client| {
        let (status, _) = client.call("GET", &path, "");
        assert_eq!(status, 200);
    });
    let get_rps = get_latencies.len() as f64 / get_elapsed;

    let create = json!({"input": "bench", "processor": "lite"}).to_string();
    let (post_latencies, post_elapsed) = load(addr, clients, seconds, |client| {
        let (status, _) = client.call("POST", "/v1/tasks/runs", &create);
        assert_eq!(status, 202);
    });
    let post_rps = post_latencies.len() as f64 / post_elapsed;

    let sse = stream_latency(addr, stream_runs);
    assert_eq!(sse.len(), stream_runs, "every run's event arrived");

    println!("http: {clients} keep-alive clients on loopback, {seconds} s per load");
    println!(
        "{:<44} {:>12} {:>10} {:>10}",
        "measure", "req/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<44} {:>12.0} {:>10.3} {:>10.3}",
        "GET /v1/tasks/groups/{id}",
        get_rps,
        percentile(&get_latencies, 0.5),
        percentile(&get_latencies, 0.99)
    );
    println!(
        "{:<44} {:>12.0} {:>10.3} {:>10.3}",
        "POST /v1/tasks/runs",
        post_rps,
        percentile(&post_latencies, 0.5),
        percentile(&post_latencies, 0.99)
    );
    println!(
        "{:<44} {:>12} {:>10.3} {:>10.3}",
        format!("run completed -> SSE client ({stream_runs} runs)"),
        "",
        percentile(&sse, 0.5),
        percentile(&sse, 0.99)
    );
    let report = json!({
        "bench": "http",
        "clients": clients,
        "seconds": seconds,
        "get_group": {"requests_per_s": get_rps, "p50_ms": percentile(&get_latencies, 0.5), "p99_ms": percentile(&get_latencies, 0.99)},
        "post_run": {"requests_per_s": post_rps, "p50_ms": percentile(&post_latencies, 0.5), "p99_ms": percentile(&post_latencies, 0.99)},
        "sse_latency": {"runs": stream_runs, "p50_ms": percentile(&sse, 0.5), "p99_ms": percentile(&sse, 0.99), "max_ms": sse.last()},
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(out.join("http.json"), report.to_string()).expect("write report");
    server.stop();
    engine.shutdown(Duration::from_secs(5));
}
