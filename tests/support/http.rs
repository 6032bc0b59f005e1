//! A tiny HTTP/1.1 client over `std::net::TcpStream` for the HTTP tests:
//! one request and its whole answer (`Content-Length` or chunked), several
//! requests on one keep-alive connection, and a Server-Sent Events reader
//! that takes chunks as they come, with a read timeout, and checks the
//! framing of spec 5 byte by byte. It parses strictly (CRLF line ends, hex
//! chunk sizes, no trailers) so that a framing slip in the server shows up
//! here instead of being forgiven.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use taskyard::faces::parallel::Api;
use taskyard::server::{Server, ServerConfig};

use crate::support::{open, TestDir};

/// How long a plain request may take before the helper gives up. Well above
/// any answer the tests expect, so that a slow answer is a clear failure of
/// the test's own bound rather than a hang.
pub const ANSWER_WAIT_MAX: Duration = Duration::from_secs(15);

/// A server on a fresh database, on `127.0.0.1:0`, stopped on drop.
pub struct TestServer {
    /// The database's directory when the server made its own.
    pub dir: Option<TestDir>,
    /// The server's engine, seen through Parallel's wire types.
    pub engine: Api,
    pub addr: SocketAddr,
    server: Option<Server>,
}

impl TestServer {
    /// The default configuration, with a free port.
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// The default configuration, changed by `change`, with a free port.
    pub fn start_with(change: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = TestDir::new();
        let engine = open(&dir);
        let mut config = ServerConfig {
            addr: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        };
        change(&mut config);
        let server = Server::start(engine.engine().clone(), config).expect("server starts");
        let addr = server.local_addr();
        TestServer {
            dir: Some(dir),
            engine,
            addr,
            server: Some(server),
        }
    }

    /// A server on an engine of the caller's, on a database the caller
    /// keeps (to reopen it, or to look inside).
    pub fn start_on_engine(engine: Api, change: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig {
            addr: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        };
        change(&mut config);
        let server = Server::start(engine.engine().clone(), config).expect("server starts");
        let addr = server.local_addr();
        TestServer {
            dir: None,
            engine,
            addr,
            server: Some(server),
        }
    }

    /// One request on a new connection (`Connection: close`).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        send(self.addr, method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> Response {
        self.send("GET", path, &[], None)
    }

    /// Runs stored, whatever their status: what a refused request must
    /// leave as it was.
    pub fn runs_stored(&self) -> u64 {
        self.engine
            .runs_by_status()
            .expect("counts")
            .iter()
            .map(|(_, count)| count)
            .sum()
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    }

    /// Opens a stream; `Err` carries the answer when it is not a 200.
    pub fn stream(&self, path: &str, headers: &[(&str, &str)]) -> Result<SseStream, Response> {
        SseStream::open(self.addr, path, headers)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
        // Let the engine go too, so the database can be reopened.
        self.engine.shutdown(std::time::Duration::from_secs(1));
    }
}

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names as sent; look them up with [`Response::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// True when the body came chunked.
    pub chunked: bool,
}

impl Response {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics naming the status and body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "answer {} is not JSON ({error}): {:?}",
                self.status,
                self.text()
            )
        })
    }
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// One request with a JSON body (or none) to a `host:port`, as a child
/// server prints it.
pub fn send_json(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Response {
    let body = body.map(Value::to_string);
    send(
        addr.parse().expect("an address"),
        method,
        path,
        headers,
        body.as_deref().map(str::as_bytes),
    )
}

/// The bytes of a request: request line, `Host`, the given headers,
/// `Content-Length` when there is a body, then the body.
pub fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(body) = body {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
    out
}

/// One request on a new connection that asks to be closed after it.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut all_headers = vec![("Connection", "close")];
    all_headers.extend_from_slice(headers);
    send_raw(addr, &request_bytes(method, path, &all_headers, body))
}

/// Writes `bytes` as they are on a new connection and reads one answer.
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Response {
    let stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(ANSWER_WAIT_MAX))
        .expect("read timeout");
    stream.set_nodelay(true).expect("nodelay");
    (&stream).write_all(bytes).expect("request written");
    let mut reader = BufReader::new(stream);
    read_response(&mut reader).unwrap_or_else(|error| panic!("reading the answer: {error}"))
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// One line ending in CRLF, without it.
fn read_crlf_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad(format!(
            "line does not end in CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| bad("line is not UTF-8"))
}

/// Status line and headers.
pub fn read_head(reader: &mut impl BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    let status_line = read_crlf_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" {
        return Err(bad(format!("status line {status_line:?} is not HTTP/1.1")));
    }
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad(format!("status line {status_line:?} has no code")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_crlf_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header line {line:?} has no colon")))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok((status, headers))
}

/// One chunk of a chunked body: `Some(bytes)`, or `None` for the final
/// zero-length chunk (after which the blank line is consumed).
pub fn read_chunk(reader: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let size_line = read_crlf_line(reader)?;
    let size = usize::from_str_radix(size_line.trim(), 16)
        .map_err(|_| bad(format!("chunk size {size_line:?} is not hex")))?;
    if size == 0 {
        let blank = read_crlf_line(reader)?;
        if !blank.is_empty() {
            return Err(bad(format!("trailer {blank:?} after the last chunk")));
        }
        return Ok(None);
    }
    let mut data = vec![0; size];
    reader.read_exact(&mut data)?;
    let mut end = [0; 2];
    reader.read_exact(&mut end)?;
    if &end != b"\r\n" {
        return Err(bad("chunk data is not followed by CRLF"));
    }
    Ok(Some(data))
}

/// A whole answer: `Content-Length`, chunked, or until the connection
/// closes when it has neither.
pub fn read_response(reader: &mut impl BufRead) -> io::Result<Response> {
    let (status, headers) = read_head(reader)?;
    let chunked = header_of(&headers, "transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(data) = read_chunk(reader)? {
            body.extend_from_slice(&data);
        }
    } else if let Some(length) = header_of(&headers, "content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| bad("Content-Length is not a number"))?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
        chunked,
    })
}

/// An open event stream: the head has been read, the body comes chunk by
/// chunk.
pub struct SseStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// From the request written to the head read.
    pub head_after: Duration,
    /// Every body byte read so far, chunk boundaries removed.
    pub body: Vec<u8>,
    /// True once the zero-length chunk arrived.
    pub ended: bool,
}

/// What [`SseStream::next_chunk`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    Data(Vec<u8>),
    /// The terminating zero-length chunk: the stream ended.
    End,
    /// Nothing arrived within the wait.
    Nothing,
}

impl SseStream {
    /// Sends `GET path` with `Accept: text/event-stream` and reads the head
    /// (within [`ANSWER_WAIT_MAX`]). A status other than 200 is read whole
    /// and returned as `Err`.
    pub fn open(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<SseStream, Response> {
        SseStream::send(addr, "GET", path, headers, None)
    }

    /// [`SseStream::open`] with any method and body.
    pub fn send(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<SseStream, Response> {
        let stream = TcpStream::connect(addr).expect("connects");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(ANSWER_WAIT_MAX))
            .expect("read timeout");
        let mut all_headers = vec![("Accept", "text/event-stream")];
        all_headers.extend_from_slice(headers);
        let started = Instant::now();
        (&stream)
            .write_all(&request_bytes(method, path, &all_headers, body))
            .expect("request written");
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader)
            .unwrap_or_else(|error| panic!("reading the head of {path}: {error}"));
        let head_after = started.elapsed();
        if status != 200 {
            let chunked = header_of(&headers, "transfer-encoding").is_some();
            let mut body = Vec::new();
            if let Some(length) = header_of(&headers, "content-length") {
                body.resize(length.parse().expect("Content-Length"), 0);
                reader.read_exact(&mut body).expect("error body");
            }
            return Err(Response {
                status,
                headers,
                body,
                chunked,
            });
        }
        Ok(SseStream {
            reader,
            status,
            headers,
            head_after,
            body: Vec::new(),
            ended: false,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// The next chunk, waiting at most `wait` for its first byte; once it
    /// starts, the rest of the chunk may take [`ANSWER_WAIT_MAX`].
    pub fn next_chunk(&mut self, wait: Duration) -> Chunk {
        assert!(!self.ended, "read past the end of the stream");
        let wait = wait.max(Duration::from_millis(1));
        self.reader
            .get_ref()
            .set_read_timeout(Some(wait))
            .expect("read timeout");
        match self.reader.fill_buf() {
            Ok([]) => panic!("the connection closed before the terminating chunk"),
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Chunk::Nothing
            }
            Err(error) => panic!("reading the stream: {error}"),
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(ANSWER_WAIT_MAX))
            .expect("read timeout");
        match read_chunk(&mut self.reader) {
            Ok(Some(data)) => {
                self.body.extend_from_slice(&data);
                Chunk::Data(data)
            }
            Ok(None) => {
                self.ended = true;
                Chunk::End
            }
            Err(error) => panic!(
                "bad chunk: {error}; body so far {:?}",
                String::from_utf8_lossy(&self.body)
            ),
        }
    }

    /// Reads until the terminating chunk; panics if it has not come within
    /// `deadline`. Answers the events read (keep-alives included).
    pub fn read_to_end(&mut self, deadline: Duration) -> Vec<Frame> {
        let until = Instant::now() + deadline;
        while !self.ended {
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the stream did not end within {deadline:?}; body so far {:?}",
                String::from_utf8_lossy(&self.body)
            );
            self.next_chunk(left);
        }
        self.frames()
    }

    /// Reads until `found` holds for the frames so far, or panics after
    /// `deadline`. Answers the frames read.
    pub fn read_until(
        &mut self,
        deadline: Duration,
        mut found: impl FnMut(&[Frame]) -> bool,
    ) -> Vec<Frame> {
        let until = Instant::now() + deadline;
        loop {
            let frames = frames_of(&self.body, true);
            if found(&frames) {
                return frames;
            }
            assert!(!self.ended, "the stream ended first; frames {frames:#?}");
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "not found within {deadline:?}; frames {frames:#?}"
            );
            self.next_chunk(left);
        }
    }

    /// The frames of the whole body read so far, checked strictly.
    pub fn frames(&self) -> Vec<Frame> {
        frames_of(&self.body, false)
    }

    /// After the terminating chunk the connection is a keep-alive one like
    /// any other: sends `GET path` on it and answers the status line's code.
    pub fn reuse(&mut self, path: &str, wait: Duration) -> Option<u16> {
        use std::io::{BufRead, Write};
        self.reader
            .get_ref()
            .set_read_timeout(Some(wait))
            .expect("read timeout");
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"
        )
        .ok()?;
        let mut line = String::new();
        self.reader.read_line(&mut line).ok()?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// True when the server closes the connection within `wait`.
    pub fn closes_within(&mut self, wait: Duration) -> bool {
        self.reader
            .get_ref()
            .set_read_timeout(Some(wait))
            .expect("read timeout");
        let mut byte = [0; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

/// One unit of an event stream body.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `: keep-alive\n\n`.
    KeepAlive,
    /// `event: <name>\ndata: <data>\n\n`, `data` parsed.
    Event { name: String, data: Value },
}

impl Frame {
    pub fn event(&self) -> Option<(&str, &Value)> {
        match self {
            Frame::Event { name, data } => Some((name, data)),
            Frame::KeepAlive => None,
        }
    }
}

/// The events of `frames`, keep-alives dropped.
pub fn events(frames: &[Frame]) -> Vec<Value> {
    frames
        .iter()
        .filter_map(|frame| frame.event().map(|(_, data)| data.clone()))
        .collect()
}

/// Splits a stream body into frames, checking spec 5 byte by byte: each
/// frame is exactly `: keep-alive\n\n` or `event: T\ndata: J\n\n` where `J`
/// is compact JSON (equal to its own re-serialization), `T` equals the
/// JSON `type`, and nothing else appears (no `id:`, no `retry:`, no `\r`).
/// With `partial`, an incomplete last frame is left out instead of failing.
pub fn frames_of(body: &[u8], partial: bool) -> Vec<Frame> {
    let text = std::str::from_utf8(body).expect("the stream body is UTF-8");
    assert!(!text.contains('\r'), "a stream line ends in CR: {text:?}");
    for line in text.split('\n') {
        assert!(
            !line.starts_with("id:"),
            "an `id:` line in the stream: {text:?}"
        );
        assert!(
            !line.starts_with("retry:"),
            "a `retry:` line in the stream: {text:?}"
        );
    }
    let mut frames = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some(end) = rest.find("\n\n") else {
            assert!(partial, "the stream body ends inside a frame: {rest:?}");
            break;
        };
        let frame = &rest[..end];
        rest = &rest[end + 2..];
        if frame == ": keep-alive" {
            frames.push(Frame::KeepAlive);
            continue;
        }
        let (event_line, data_line) = frame
            .split_once('\n')
            .unwrap_or_else(|| panic!("a frame is not two lines: {frame:?}"));
        let name = event_line
            .strip_prefix("event: ")
            .unwrap_or_else(|| panic!("a frame does not open with `event: `: {frame:?}"));
        let data = data_line
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("a frame's second line is not `data: `: {frame:?}"));
        assert!(
            !data.contains('\n'),
            "a frame has more than two lines: {frame:?}"
        );
        let value: Value = serde_json::from_str(data)
            .unwrap_or_else(|error| panic!("event data is not JSON ({error}): {data:?}"));
        assert_eq!(
            serde_json::to_string(&value).expect("serializes"),
            data,
            "event data is not compact JSON"
        );
        assert_eq!(
            value["type"].as_str(),
            Some(name),
            "the event line differs from the JSON type: {frame:?}"
        );
        frames.push(Frame::Event {
            name: name.to_string(),
            data: value,
        });
    }
    frames
}
