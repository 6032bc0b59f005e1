//! The stream fan-out (`src/server/fanout.rs`): caught-up group streams are
//! written by the fan-out thread, and every way a stream comes back to its
//! own thread keeps the stream whole. Each test checks, through
//! `/metrics`, that the path it is about was taken, so that it cannot pass
//! by never reaching the fan-out.

#[path = "support/http.rs"]
mod client;
mod support;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

use client::{events, frames_of, read_chunk, read_head, SseStream, TestServer};
use serde_json::{json, Value};
use support::{stored_group_stream, wait_for};

/// A counter or gauge from `/metrics`, by its full series name.
fn metric(server: &TestServer, series: &str) -> u64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in /metrics"))
        .parse()
        .expect("a whole number")
}

/// A group kept active by one mock run that lasts ten minutes, so that its
/// events stream stays open (an empty group is inactive and its stream
/// ends at once) until [`release`].
fn held_group(server: &TestServer) -> String {
    let answer = server.post_json("/v1/tasks/groups", &json!({}));
    assert_eq!(answer.status, 200);
    let group_id = answer.json()["taskgroup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let answer = server.post_json(
        &format!("/v1/tasks/groups/{group_id}/runs"),
        &json!({"inputs": [
            {"input": "hold", "processor": "lite", "metadata": {"mock_delay_ms": 600_000}}
        ]}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    group_id
}

/// Cancels the group: its holding run ends and the group goes inactive.
fn release(server: &TestServer, group_id: &str) {
    let answer = server.send(
        "POST",
        &format!("/v1/tasks/groups/{group_id}/cancel"),
        &[],
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
}

/// Adds `count` echo runs, each carrying about 4 KB of metadata so that
/// its events are large.
fn add_big_runs(server: &TestServer, group_id: &str, count: usize, batch: usize) {
    let metadata: serde_json::Map<String, Value> = (0..8)
        .map(|key| (format!("k{key}"), json!("x".repeat(500))))
        .collect();
    let inputs: Vec<Value> = (0..count)
        .map(|i| json!({"input": format!("run {batch}.{i}"), "processor": "echo", "metadata": metadata}))
        .collect();
    let answer = server.post_json(
        &format!("/v1/tasks/groups/{group_id}/runs"),
        &json!({ "inputs": inputs }),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
}

/// Runs of the group not yet done (queued or running).
fn running(server: &TestServer, group_id: &str) -> u64 {
    let group = server.get(&format!("/v1/tasks/groups/{group_id}")).json();
    let counts = &group["status"]["task_run_status_counts"];
    ["queued", "running"]
        .iter()
        .map(|status| counts[status].as_u64().unwrap_or(0))
        .sum()
}

/// The group's stored stream as (type, compact JSON), in id order, to
/// compare with what a client parsed.
fn stored_events(server: &TestServer, group_id: &str) -> Vec<(String, String)> {
    stored_group_stream(server.dir.as_ref().expect("dir"), group_id)
        .into_iter()
        .map(|(_, kind, data)| {
            let value: Value = serde_json::from_str(&data).expect("stored json");
            (kind, value.to_string())
        })
        .collect()
}

/// What a client parsed, as (type, compact JSON).
fn received(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|event| {
            (
                event["type"].as_str().expect("type").to_string(),
                event.to_string(),
            )
        })
        .collect()
}

/// A held group and a stream of its events that the fan-out holds.
fn lent_stream(server: &TestServer) -> (String, SseStream) {
    let group_id = held_group(server);
    let stream = server
        .stream(&format!("/v1/tasks/groups/{group_id}/events"), &[])
        .expect("stream opens");
    wait_until_lent(server, 1);
    (group_id, stream)
}

/// A TCP connection whose receive buffer is set to 4 KiB before it
/// connects (so that the window it offers stays small): a reader that
/// pauses fills the server's socket buffer after a few megabytes instead
/// of tens.
fn connect_small_buffer(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("the test server listens on IPv4");
    };
    // SAFETY: a fresh socket, owned by the TcpStream made from it below
    // (or closed here on failure); the option and address structures are
    // live locals of the sizes given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let size: libc::c_int = 4096;
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(set, 0, "setsockopt");
        let address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let connected = libc::connect(
            fd,
            (&address as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if connected != 0 {
            libc::close(fd);
            panic!("connect: {}", std::io::Error::last_os_error());
        }
        TcpStream::from_raw_fd(fd)
    }
}

/// A caught-up follower of a busy group gets its events from the fan-out,
/// every one of them, byte for byte as stored, and its stream ends when
/// the group goes inactive (the end comes through a hand-back).
#[test]
fn a_caught_up_group_stream_is_fed_by_the_fan_out_whole_and_in_order() {
    let server = TestServer::start();
    let (group_id, mut stream) = lent_stream(&server);
    for batch in 0..5 {
        add_big_runs(&server, &group_id, 40, batch);
    }
    release(&server, &group_id);
    let frames = stream.read_to_end(Duration::from_secs(60));
    let got = received(&events(&frames));
    let stored = stored_events(&server, &group_id);
    assert_eq!(got.len(), stored.len(), "every stored event arrives once");
    assert_eq!(got, stored, "in id order, as stored");
    assert!(
        metric(&server, "taskyard_sse_fanout_chunks_total") > 0,
        "the fan-out sent some of them"
    );
}

fn wait_until_lent(server: &TestServer, streams: u64) {
    wait_for(
        "the fan-out to hold the streams",
        Duration::from_secs(10),
        || metric(server, "taskyard_sse_fanout_streams") == streams,
    );
}

/// A stream the fan-out holds ends there when its group goes inactive: the
/// fan-out sends the last events and gives the stream back to end it.
#[test]
fn a_lent_stream_ends_through_the_fan_out_when_its_group_goes_inactive() {
    let server = TestServer::start();
    let (group_id, mut stream) = lent_stream(&server);
    let end = "taskyard_sse_fanout_returns_total{reason=\"end\"}";
    assert_eq!(metric(&server, end), 0);
    release(&server, &group_id);
    let frames = stream.read_to_end(Duration::from_secs(30));
    let kinds: Vec<String> = events(&frames)
        .iter()
        .map(|event| event["type"].as_str().expect("type").to_string())
        .collect();
    assert!(
        kinds.iter().any(|kind| kind == "task_run.state"),
        "{kinds:?}"
    );
    assert_eq!(metric(&server, end), 1, "the end came through the fan-out");
    wait_until_lent(&server, 0);
}

/// A reader that stops reading while a group runs makes the fan-out's
/// non-blocking send come up short. The stream's own thread then writes
/// the rest of that chunk before anything else, and once the reader reads
/// again it gets every event whole, in order, and the stream's end.
#[test]
fn a_reader_that_pauses_gets_the_rest_of_a_short_send_and_every_event_after() {
    let server = TestServer::start();
    let group_id = held_group(&server);
    let mut socket = connect_small_buffer(server.addr);
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        socket,
        "GET /v1/tasks/groups/{group_id}/events HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("request");
    let mut reader = BufReader::new(socket);
    let (status, _) = read_head(&mut reader).expect("head");
    assert_eq!(status, 200);
    // Not reading: add big runs until a send comes up short.
    let unsent = "taskyard_sse_fanout_returns_total{reason=\"unsent\"}";
    let mut batch = 0;
    while metric(&server, unsent) == 0 {
        assert!(batch < 20, "no send came up short after {batch} batches");
        add_big_runs(&server, &group_id, 500, batch);
        batch += 1;
        wait_for("the batch to finish", Duration::from_secs(60), || {
            running(&server, &group_id) == 1 || metric(&server, unsent) > 0
        });
    }
    wait_for("the batches to finish", Duration::from_secs(60), || {
        running(&server, &group_id) == 1
    });
    release(&server, &group_id);
    let mut body = Vec::new();
    while let Some(chunk) = read_chunk(&mut reader).expect("a whole chunk") {
        body.extend_from_slice(&chunk);
    }
    let got = received(&events(&frames_of(&body, false)));
    let stored = stored_events(&server, &group_id);
    assert_eq!(got.len(), stored.len(), "every stored event arrives once");
    assert!(got == stored, "the events arrive in id order, as stored");
}

/// A follower that leaves while the fan-out holds its stream: the next
/// send fails, the stream's thread ends and its slot is free.
#[test]
fn a_follower_that_leaves_frees_its_stream_through_a_failed_send() {
    let server = TestServer::start();
    let group_id = held_group(&server);
    let open = "taskyard_sse_streams_open{stream=\"group_events\"}";
    let stream = server
        .stream(&format!("/v1/tasks/groups/{group_id}/events"), &[])
        .expect("stream opens");
    assert_eq!(metric(&server, open), 1);
    wait_until_lent(&server, 1);
    drop(stream);
    let mut batch = 0;
    while metric(&server, open) != 0 {
        assert!(batch < 200, "the stream stayed open after {batch} batches");
        // Sends into a closed connection fail within a few events. One
        // small batch at a time, each finished before the next: a burst
        // could put the fan-out behind its window on a loaded machine, and
        // it would then hand the stream back to its thread, whose write
        // fails instead (CI saw that once).
        add_big_runs(&server, &group_id, 5, batch);
        batch += 1;
        wait_for("the batch to finish", Duration::from_secs(30), || {
            running(&server, &group_id) == 1
        });
    }
    let returns: Vec<(&str, u64)> = ["failed", "blocking", "due", "end", "unsent", "stopped"]
        .into_iter()
        .map(|reason| {
            let name = format!("taskyard_sse_fanout_returns_total{{reason=\"{reason}\"}}");
            (reason, metric(&server, &name))
        })
        .collect();
    assert!(
        returns[0].1 >= 1,
        "the fan-out's own send failed: returns {returns:?}"
    );
}
