//! `stream_latency`: with `TASKYARD_BENCH_SUBSCRIBERS` (1,000; smoke 20)
//! clients following streams over HTTP, the time from the commit of a
//! run's terminal state to its event reaching each client, and proof that
//! no client missed an event.
//!
//! One group gets `TASKYARD_BENCH_STREAM_RUNS` runs (200; smoke 10) in one
//! request, run `i` lasting `TASKYARD_BENCH_STREAM_DELAY_MS` (3,000; smoke
//! 1,000) plus `i` times `TASKYARD_BENCH_STREAM_GAP_MS` (5) so completions
//! are spread out, spread over the hosted processor names so that no
//! concurrency limit holds them back. Before the first can finish, half the
//! subscribers open the group's events stream and the other half open run
//! events streams, shared out over the runs; they connect one after another,
//! each stream's head read before the next connects, so that the figure is
//! stream latency, not the time a burst of connections waits in the listen
//! backlog. The streams are then read with epoll by
//! `TASKYARD_BENCH_CLIENT_THREADS` (2) threads, which parse only what they
//! time: a thread per client and a JSON parse per event cost as much CPU
//! as the server on this 2-core machine, and the figure measured the client.
//!
//! Each event's latency is its arrival (wall clock, when the read that
//! completed it returned) minus the run's `modified_at` in the event, the
//! time the terminal state was recorded in the committing transaction.
//! Every group subscriber must see every run's terminal event exactly once
//! and its stream must end (the group went inactive); every run subscriber
//! must see its run's terminal state. p50, p99 and max over all (run,
//! subscriber) pairs; target p99 < 5 ms. Writes
//! `target/bench/stream_latency.json`.

mod common;

use std::collections::HashSet;
use std::io::{self, IsTerminal, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{Client, Row};
use serde_json::{json, Value};
use taskyard::server::{Server, ServerConfig};
use taskyard::{Config, Engine};

/// Processor names served by `mock` by default, each with its own
/// concurrency limit; runs are dealt out over them.
const PROCESSORS: &[&str] = &[
    "lite", "base", "core", "core2x", "pro", "ultra", "ultra2x", "ultra4x", "ultra8x",
];

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    /// Latency of each terminal event, ms.
    latencies: Vec<f64>,
    /// Run ids whose terminal event arrived.
    runs: Vec<String>,
    ended: bool,
}

/// One open stream on a non-blocking socket.
struct Stream {
    socket: TcpStream,
    /// Bytes read and not yet taken as chunks.
    raw: Vec<u8>,
    /// Chunk payloads not yet taken as whole events.
    text: Vec<u8>,
    seen: Seen,
}

impl Stream {
    /// Takes every whole chunk from `raw` and every whole event from
    /// `text`; `arrived` is when the read that completed them returned.
    /// Byte slices throughout, no allocation per event: this runs once per
    /// delivery on the same two cores as the server it measures.
    fn take(&mut self, arrived: i64) {
        let mut at = 0;
        while let Some(line_end) = find(&self.raw[at..], b"\r\n").map(|end| at + end) {
            let size_text = std::str::from_utf8(&self.raw[at..line_end]).expect("chunk size");
            let size = usize::from_str_radix(size_text, 16).expect("chunk size");
            let chunk_end = line_end + 2 + size;
            if self.raw.len() < chunk_end + 2 {
                break;
            }
            assert_eq!(&self.raw[chunk_end..chunk_end + 2], b"\r\n", "chunk CRLF");
            if size == 0 {
                self.seen.ended = true;
            }
            self.text
                .extend_from_slice(&self.raw[line_end + 2..chunk_end]);
            at = chunk_end + 2;
        }
        self.raw.drain(..at);
        let mut start = 0;
        while let Some(end) = find(&self.text[start..], b"\n\n") {
            let block = &self.text[start..start + end];
            if let Some((run_id, completed)) = terminal_state(block) {
                self.seen.latencies.push((arrived - completed) as f64 / 1e3);
                self.seen.runs.push(run_id);
            }
            start += end + 2;
        }
        self.text.drain(..start);
    }
}

/// The run id and the terminal state's time (micros) of a
/// `task_run.state` event block whose run is no longer active; `None` for
/// every other block. Reads the first `run_id`, `is_active` and
/// `modified_at` of the data line, which are the run object's: it comes
/// before `input` and `output`, and this bench's metadata uses none of
/// those keys. Main checks every id against the runs it added.
fn terminal_state(block: &[u8]) -> Option<(String, i64)> {
    let data = block.strip_prefix(b"event: task_run.state\ndata: ")?;
    let inactive = find(data, b"\"is_active\":false").is_some();
    if !inactive {
        return None;
    }
    let string_after = |key: &[u8]| {
        let start = find(data, key)? + key.len();
        let end = start + find(&data[start..], b"\"")?;
        std::str::from_utf8(&data[start..end]).ok()
    };
    let run_id = string_after(b"\"run_id\":\"").expect("run_id");
    let modified_at = string_after(b"\"modified_at\":\"").expect("modified_at");
    Some((
        run_id.to_string(),
        common::parse_rfc3339_micros(modified_at),
    ))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(offset) = haystack.get(at..)?.iter().position(|&b| b == needle[0]) {
        let candidate = at + offset;
        if haystack[candidate..].starts_with(needle) {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

/// Reads `streams` with epoll on one thread until every one has ended, and
/// gives back what each saw, in the order given. One thread per client
/// would cost two context switches per delivery, as much CPU as the
/// server's side on this 2-core machine: the figure would then measure
/// the client.
fn read_streams(mut streams: Vec<Stream>) -> Vec<Seen> {
    // SAFETY: plain epoll calls on descriptors this function owns through
    // `streams`, which outlive the epoll instance (closed at the end).
    unsafe {
        let epoll = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        assert!(epoll >= 0, "epoll_create1");
        for (index, stream) in streams.iter().enumerate() {
            stream.socket.set_nonblocking(true).expect("non-blocking");
            let mut interest = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: index as u64,
            };
            let fd = stream.socket.as_raw_fd();
            assert_eq!(
                libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut interest),
                0,
                "epoll_ctl"
            );
        }
        let mut open = streams.len();
        let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut buffer = vec![0u8; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(120);
        while open > 0 {
            assert!(Instant::now() < deadline, "streams did not end in 120 s");
            let count = libc::epoll_wait(epoll, ready.as_mut_ptr(), ready.len() as i32, 1_000);
            if count < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            assert!(count >= 0, "epoll_wait: {}", io::Error::last_os_error());
            for event in &ready[..count as usize] {
                let stream = &mut streams[event.u64 as usize];
                if stream.seen.ended {
                    continue;
                }
                loop {
                    match stream.socket.read(&mut buffer) {
                        Ok(0) => panic!("a stream closed before its end chunk"),
                        Ok(read) => {
                            let arrived = common::now_micros();
                            stream.raw.extend_from_slice(&buffer[..read]);
                            stream.take(arrived);
                            // A short read took all there was; epoll is
                            // level-triggered and reports the socket again
                            // if more comes, so spare the read that would
                            // only say WouldBlock.
                            if read < buffer.len() {
                                break;
                            }
                        }
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                        Err(error) => panic!("stream read: {error}"),
                    }
                }
                if stream.seen.ended {
                    open -= 1;
                    let fd = stream.socket.as_raw_fd();
                    libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut());
                }
            }
        }
        libc::close(epoll);
    }
    streams.into_iter().map(|stream| stream.seen).collect()
}

/// Opens `path` as an SSE stream and returns it once the server's head
/// (200, chunked) has arrived.
fn open_stream(addr: std::net::SocketAddr, path: &str) -> Stream {
    let mut client = Client::connect(addr);
    client.send("GET", path, "");
    let (status, _, chunked) = client.head().expect("stream head");
    assert_eq!(status, 200, "GET {path}");
    assert!(chunked);
    let (socket, raw) = client.into_parts();
    Stream {
        socket,
        raw,
        text: Vec::new(),
        seen: Seen::default(),
    }
}

fn main() {
    let subscribers = common::env_usize("TASKYARD_BENCH_SUBSCRIBERS", 1_000, 20).max(2);
    let runs = common::env_usize("TASKYARD_BENCH_STREAM_RUNS", 200, 10).max(1);
    let delay_ms = common::env_usize("TASKYARD_BENCH_STREAM_DELAY_MS", 3_000, 1_000);
    let gap_ms = common::env_usize("TASKYARD_BENCH_STREAM_GAP_MS", 5, 5);
    let client_threads = common::env_usize("TASKYARD_BENCH_CLIENT_THREADS", 2, 2).max(1);
    let per_name = runs.div_ceil(PROCESSORS.len());
    assert!(
        per_name <= 64,
        "{runs} runs would queue behind the mock's concurrency limit of 64 per name"
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let config = Config {
        // Every run sleeps at once; none may wait for a worker.
        workers: runs + 4,
        ..taskyard::faces::default_config()
    };
    let engine = Engine::open(dir.path().join("bench.db"), config).expect("engine");
    let server = Server::start(
        engine.clone(),
        ServerConfig {
            addr: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        },
    )
    .expect("server");
    let addr = server.local_addr();
    let mut client = Client::connect(addr);
    let answer = client.call("POST", "/v1/tasks/groups", "{}");
    assert_eq!(answer.status, 200);
    let group_id = answer.json()["taskgroup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let inputs: Vec<Value> = (0..runs)
        .map(|i| {
            json!({
                "input": format!("run {i}"),
                "processor": PROCESSORS[i % PROCESSORS.len()],
                "metadata": {"mock_delay_ms": delay_ms + i * gap_ms},
            })
        })
        .collect();
    let added_at = Instant::now();
    let answer = client.call(
        "POST",
        &format!("/v1/tasks/groups/{group_id}/runs"),
        &json!({ "inputs": inputs }).to_string(),
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let run_ids: Vec<String> = answer.json()["run_ids"]
        .as_array()
        .expect("run_ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_string())
        .collect();

    // Even subscribers follow the group, odd ones a run. Streams open one
    // after another, each answered before the next connects, so that the
    // figure is stream latency, not the time a burst of connections waits
    // in the listen backlog.
    let group_subscribers = subscribers.div_ceil(2);
    let mut kinds = Vec::with_capacity(subscribers);
    let mut streams = Vec::with_capacity(subscribers);
    for index in 0..subscribers {
        let (path, run) = if index % 2 == 0 {
            (format!("/v1/tasks/groups/{group_id}/events"), None)
        } else {
            let run = (index / 2) % runs;
            (format!("/v1/tasks/runs/{}/events", run_ids[run]), Some(run))
        };
        streams.push(open_stream(addr, &path));
        kinds.push(run);
        if std::io::stderr().is_terminal() && (index + 1) % 50 == 0 {
            eprint!("\rstreams open: {} of {subscribers}", index + 1);
        }
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let all_connected_ms = added_at.elapsed().as_secs_f64() * 1e3;
    assert!(
        all_connected_ms < delay_ms as f64,
        "the subscribers took {all_connected_ms:.0} ms to connect, longer than the first run \
         lasts: raise TASKYARD_BENCH_STREAM_DELAY_MS"
    );

    // Deal the streams out over the client threads, then put what each saw
    // back in subscriber order.
    let mut shares: Vec<Vec<(usize, Stream)>> = (0..client_threads).map(|_| Vec::new()).collect();
    for (index, stream) in streams.into_iter().enumerate() {
        // Pairs (a group stream, a run stream) in turn, so that each
        // thread reads both kinds.
        shares[(index / 2) % client_threads].push((index, stream));
    }
    let handles: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(thread, share)| {
            common::spawn_small(format!("client-{thread}"), move || {
                let (indexes, streams): (Vec<usize>, Vec<Stream>) = share.into_iter().unzip();
                indexes
                    .into_iter()
                    .zip(read_streams(streams))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen_by: Vec<Option<Seen>> = (0..subscribers).map(|_| None).collect();
    for handle in handles {
        for (index, seen) in handle.join().expect("client thread") {
            seen_by[index] = Some(seen);
        }
    }

    let mut latencies = Vec::new();
    let mut group_latencies = Vec::new();
    let mut run_latencies = Vec::new();
    for (run, seen) in kinds.into_iter().zip(seen_by) {
        let seen = seen.expect("every subscriber is read");
        assert!(seen.ended, "every stream ends");
        match run {
            None => {
                let distinct: HashSet<&String> = seen.runs.iter().collect();
                assert_eq!(seen.runs.len(), runs, "a group subscriber missed events");
                assert_eq!(
                    distinct.len(),
                    runs,
                    "a group subscriber got an event twice"
                );
                group_latencies.extend(&seen.latencies);
            }
            Some(run) => {
                assert_eq!(
                    seen.runs,
                    vec![run_ids[run].clone()],
                    "a run subscriber missed its run's terminal state"
                );
                run_latencies.extend(&seen.latencies);
            }
        }
        latencies.extend(&seen.latencies);
    }
    assert_eq!(
        latencies.len(),
        group_subscribers * runs + (subscribers - group_subscribers),
        "one latency per (run, subscriber) pair"
    );
    let status = taskyard::faces::parallel::Api::new(engine.clone())
        .get_group(&group_id)
        .expect("group")
        .status;
    assert!(!status.is_active);
    assert_eq!(
        status.task_run_status_counts.get("completed"),
        Some(&json!(runs))
    );
    server.stop();
    engine.shutdown(Duration::from_secs(5));

    let (p50, p99, max) = common::summary(&mut latencies);
    let (group_p50, group_p99, _) = common::summary(&mut group_latencies);
    let (run_p50, run_p99, _) = common::summary(&mut run_latencies);
    let rows = vec![
        Row::new("commit -> client, all pairs, p50", p50, "ms"),
        Row::new("commit -> client, all pairs, p99", p99, "ms").below(5.0),
        Row::new("commit -> client, all pairs, max", max, "ms"),
        Row::new("  group stream subscribers, p50", group_p50, "ms"),
        Row::new("  group stream subscribers, p99", group_p99, "ms"),
        Row::new("  run stream subscribers, p50", run_p50, "ms"),
        Row::new("  run stream subscribers, p99", run_p99, "ms"),
        Row::new("subscribers that missed an event", 0.0, "").target("0", true),
    ];
    common::report(
        "stream_latency",
        &format!(
            "{subscribers} subscribers ({group_subscribers} on the group stream, {} on run \
             streams), {runs} runs completing {gap_ms} ms apart, {} pairs",
            subscribers - group_subscribers,
            latencies.len()
        ),
        &rows,
        json!({
            "subscribers": subscribers,
            "group_subscribers": group_subscribers,
            "run_subscribers": subscribers - group_subscribers,
            "runs": runs,
            "gap_ms": gap_ms,
            "pairs": latencies.len(),
            "connect_all_ms": all_connected_ms,
            "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            "group_p50_ms": group_p50, "group_p99_ms": group_p99,
            "run_p50_ms": run_p50, "run_p99_ms": run_p99,
        }),
    );
}
