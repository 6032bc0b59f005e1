//! The HTTP layer: Parallel's Task API over tiny_http.
//!
//! Owns the listener, the request threads, request limits, auth, the
//! routes' handlers and the hand-off of long requests (streams, result
//! waits) to threads of their own, so that they never starve ordinary
//! requests. It holds no SQL and no scheduling logic: every handler calls
//! the [`Engine`] API, and every engine error becomes HTTP in `error.rs`.

mod error;
mod fanout;
mod handlers;
mod metrics;
mod query;
mod routes;
mod sse;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::limits::{BODY_BYTES_MAX, STREAMS_OPEN_MAX};

pub use error::ApiError;
pub use routes::{Route, PATTERNS};

/// The OpenAPI 3.1 document of everything served (spec 10.8).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Fan-out threads at most; one per core below that.
const FANOUT_THREADS_MAX: usize = 4;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `host:port`; port 0 picks a free one.
    pub addr: String,
    /// Accepted `x-api-key` values; empty: no auth.
    pub api_keys: Vec<String>,
    /// Threads answering ordinary requests.
    pub request_threads: usize,
    /// Streams and result waits open at once; 503 past it.
    pub streams_open_max: usize,
    pub body_bytes_max: usize,
    /// Silence after which a stream sends a keep-alive comment.
    pub keep_alive: Duration,
    /// How long a request may take to arrive, head and body, from its
    /// first byte, and how long a keep-alive connection may sit idle between
    /// requests. A body that misses it is a 408; a head, the connection
    /// closed. Zero: no bound.
    pub read_timeout: Duration,
    /// How long one write to a client may block (a client that stopped
    /// reading); past it the connection is closed and a stream on it ends,
    /// freeing its slot and its thread. Zero: no bound.
    pub write_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            addr: "127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            request_threads: 16,
            streams_open_max: STREAMS_OPEN_MAX,
            body_bytes_max: BODY_BYTES_MAX,
            keep_alive: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// What the request threads share.
pub(crate) struct Shared {
    pub engine: Engine,
    pub config: ServerConfig,
    pub metrics: Arc<metrics::Metrics>,
    /// Long requests (streams, result waits) open now.
    pub long_open: Arc<AtomicUsize>,
    /// Sends new events to caught-up streams (`fanout.rs`).
    pub fanout: fanout::Fanout,
    http: tiny_http::Server,
    stopping: AtomicBool,
}

/// A running server; [`Server::stop`] ends it.
pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Server {
    /// Binds and starts answering.
    pub fn start(engine: Engine, config: ServerConfig) -> io::Result<Server> {
        let bound = |timeout: Duration| Some(timeout).filter(|timeout| !timeout.is_zero());
        let http = tiny_http::Server::new(tiny_http::ServerConfig {
            addr: tiny_http::ConfigListenAddr::from_socket_addrs(config.addr.as_str())?,
            ssl: None,
            read_timeout: bound(config.read_timeout),
            write_timeout: bound(config.write_timeout),
        })
        .map_err(|e| io::Error::new(io::ErrorKind::AddrNotAvailable, e.to_string()))?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the server is not on an IP address"))?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let metrics = Arc::new(metrics::Metrics::default());
        let (fanout, fanout_threads) =
            fanout::start(cores.min(FANOUT_THREADS_MAX), metrics.clone())?;
        let shared = Arc::new(Shared {
            engine,
            fanout,
            metrics,
            long_open: Arc::new(AtomicUsize::new(0)),
            http,
            stopping: AtomicBool::new(false),
            config,
        });
        let mut threads = fanout_threads;
        for index in 0..shared.config.request_threads.max(1) {
            let shared = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("taskyard-http-{index}"))
                    .spawn(move || serve(&shared))?,
            );
        }
        Ok(Server {
            shared,
            threads,
            addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The count of open streams and result waits, live.
    pub fn open_long_requests(&self) -> Arc<AtomicUsize> {
        self.shared.long_open.clone()
    }

    /// Stops taking requests and waits for the request threads. Open
    /// streams end when the engine shuts down (their subscriptions fail).
    pub fn stop(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.fanout.stop();
        for _ in &self.threads {
            self.shared.http.unblock();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn serve(shared: &Arc<Shared>) {
    while !shared.stopping.load(Ordering::SeqCst) {
        // An error is `stop` unblocking this thread; the loop's test ends it.
        if let Ok(request) = shared.http.recv() {
            handle(shared, request);
        }
    }
}

/// What a handler answers.
pub(crate) enum Reply {
    /// A JSON body with a status and extra headers.
    Json(u16, String, Vec<(&'static str, String)>),
    /// Plain text (metrics).
    Text(u16, String, &'static str),
    /// A stream, written on a thread of its own.
    Stream(metrics::StreamLabel, StreamBody),
    /// A long wait (`/result`), answered on a thread of its own.
    Wait(Box<dyn FnOnce() -> Result<Reply, ApiError> + Send>),
}

pub(crate) type StreamBody = Box<dyn FnOnce(sse::Out) -> io::Result<()> + Send>;

fn handle(shared: &Arc<Shared>, mut request: tiny_http::Request) {
    let started = Instant::now();
    let method = request.method().as_str().to_ascii_uppercase();
    let url = request.url().to_string();
    let (path, raw_query) = url.split_once('?').unwrap_or((&url, ""));
    let route = routes::route(&method, path);
    let label = route.as_ref().map_or("unmatched", Route::pattern);
    let reply = answer(shared, &mut request, &method, path, raw_query, route);
    let reply = match reply {
        Ok(Reply::Wait(wait)) => {
            return hand_off_wait(shared, request, &method, label, started, wait)
        }
        Ok(Reply::Stream(stream, body)) => {
            return hand_off_stream(shared, request, &method, label, started, stream, body)
        }
        other => other,
    };
    let status = respond(request, reply);
    shared
        .metrics
        .record(&method, label, status, started.elapsed());
}

/// Takes a long-request slot, or answers why not.
fn take_long_slot(shared: &Arc<Shared>) -> Result<LongSlot, ApiError> {
    let open = shared.long_open.fetch_add(1, Ordering::SeqCst);
    let slot = LongSlot(shared.clone());
    if open >= shared.config.streams_open_max {
        return Err(ApiError::unavailable(
            format!(
                "too many open streams: {} open, at most {} (STREAMS_OPEN_MAX)",
                open, shared.config.streams_open_max
            ),
            1,
        ));
    }
    Ok(slot)
}

struct LongSlot(Arc<Shared>);

impl Drop for LongSlot {
    fn drop(&mut self) {
        self.0.long_open.fetch_sub(1, Ordering::SeqCst);
    }
}

fn hand_off_wait(
    shared: &Arc<Shared>,
    request: tiny_http::Request,
    method: &str,
    label: &'static str,
    started: Instant,
    wait: Box<dyn FnOnce() -> Result<Reply, ApiError> + Send>,
) {
    let slot = match take_long_slot(shared) {
        Ok(slot) => slot,
        Err(error) => {
            let status = respond(request, Err(error));
            return shared
                .metrics
                .record(method, label, status, started.elapsed());
        }
    };
    let shared = shared.clone();
    let method = method.to_string();
    let spawned = std::thread::Builder::new()
        .name("taskyard-wait".into())
        .spawn(move || {
            let _slot = slot;
            let status = respond(request, wait());
            shared
                .metrics
                .record(&method, label, status, started.elapsed());
        });
    if let Err(error) = spawned {
        eprintln!("taskyard: cannot start a thread for a long request: {error}");
    }
}

fn hand_off_stream(
    shared: &Arc<Shared>,
    request: tiny_http::Request,
    method: &str,
    label: &'static str,
    started: Instant,
    stream: metrics::StreamLabel,
    body: StreamBody,
) {
    let slot = match take_long_slot(shared) {
        Ok(slot) => slot,
        Err(error) => {
            let status = respond(request, Err(error));
            return shared
                .metrics
                .record(method, label, status, started.elapsed());
        }
    };
    shared.metrics.record(method, label, 200, started.elapsed());
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("taskyard-stream".into())
        .spawn(move || {
            let _slot = slot;
            shared.metrics.stream_opened(stream);
            // A client that leaves mid-stream is a write error: not ours
            // to report.
            let direct = request.raw_fd().map(|fd| sse::Direct {
                fanout: shared.fanout.clone(),
                fd,
            });
            let writer = request.into_writer();
            let _ = body(sse::Out { writer, direct });
            shared.metrics.stream_closed(stream);
        });
    if let Err(error) = spawned {
        eprintln!("taskyard: cannot start a thread for a stream: {error}");
    }
}

/// Checks auth, route and body limits, then runs the handler.
fn answer(
    shared: &Arc<Shared>,
    request: &mut tiny_http::Request,
    method: &str,
    path: &str,
    raw_query: &str,
    route: Result<Route, routes::NoRoute>,
) -> Result<Reply, ApiError> {
    let api_path = path.starts_with("/v1/") || path.starts_with("/v1beta/");
    let needs_key = route.as_ref().map_or(api_path, Route::needs_key);
    if needs_key && !shared.config.api_keys.is_empty() {
        let given = header(request, "x-api-key");
        if !key_matches(&shared.config.api_keys, given.as_deref().unwrap_or("")) {
            return Err(ApiError::new(
                401,
                "Unauthorized: invalid or missing credentials",
            ));
        }
    }
    let route = match route {
        Ok(route) => route,
        Err(routes::NoRoute::NotFound) => {
            return Err(ApiError::new(404, format!("no route for {method} {path}")))
        }
        Err(routes::NoRoute::MethodNotAllowed(allowed)) => {
            return Err(ApiError::new(
                405,
                format!(
                    "method {method} is not allowed on {path}; allowed: {}",
                    allowed.join(", ")
                ),
            )
            .with_header("allow", allowed.join(", ")))
        }
    };
    // Spec 1.6 order: an unknown id (404) before a body over the limit (413).
    handlers::precheck(&shared.engine, &route)?;
    let body = read_body(
        request,
        shared.config.body_bytes_max,
        shared.config.read_timeout,
    )?;
    let query = query::Query::parse(raw_query);
    let context = handlers::Context {
        shared,
        query: &query,
        body: &body,
        method,
        path,
        last_event_id_header: header(request, "last-event-id"),
        idempotency_key: header(request, "idempotency-key"),
    };
    handlers::dispatch(&context, route)
}

fn header(request: &tiny_http::Request, name: &str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|header| header.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|header| header.value.as_str().to_string())
}

/// Compares a key with every configured key in time that depends only on
/// the lengths, so that a caller cannot learn a key byte by byte.
fn key_matches(keys: &[String], given: &str) -> bool {
    let mut matched = false;
    for key in keys {
        let (a, b) = (key.as_bytes(), given.as_bytes());
        let mut difference = (a.len() ^ b.len()) as u64;
        for index in 0..a.len().max(b.len()) {
            let x = a.get(index).copied().unwrap_or(0);
            let y = b.get(index).copied().unwrap_or(0);
            difference |= u64::from(x ^ y);
        }
        matched |= difference == 0;
    }
    matched
}

/// Reads the body, refusing more than `max` bytes with a 413 and a body
/// that does not arrive within the read timeout with a 408.
fn read_body(
    request: &mut tiny_http::Request,
    max: usize,
    read_timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let too_large = |got: usize| {
        ApiError::new(
            413,
            format!("request body is over {max} bytes (BODY_BYTES_MAX)"),
        )
        .with_detail(serde_json::json!({"errors": [{
            "loc": ["body"], "msg": format!("body is over {max} bytes"),
            "type": "limit_exceeded", "limit": "BODY_BYTES_MAX", "max": max, "got": got,
        }]}))
    };
    if let Some(length) = request.body_length() {
        if length > max {
            return Err(too_large(length));
        }
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| match e.kind() {
            // The connection's read deadline (tiny_http, patched) passed, or
            // one read waited the whole timeout: a client too slow to serve.
            // The connection is closed after this answer, unread rest and all.
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ApiError::new(
                408,
                format!(
                    "request body not received within the read timeout ({} s)",
                    read_timeout.as_secs_f64()
                ),
            ),
            _ => ApiError::new(400, format!("cannot read the request body: {e}")),
        })?;
    if body.len() > max {
        return Err(too_large(body.len()));
    }
    Ok(body)
}

/// Writes a reply; answers the status sent.
fn respond(request: tiny_http::Request, reply: Result<Reply, ApiError>) -> u16 {
    let (status, body, content_type, headers) = match reply {
        Ok(Reply::Json(status, body, headers)) => (status, body, "application/json", headers),
        Ok(Reply::Text(status, body, content_type)) => (status, body, content_type, Vec::new()),
        Ok(Reply::Stream(..)) | Ok(Reply::Wait(_)) => (
            500,
            r#"{"type":"error","error":{"ref_id":"","message":"internal error: nested long request","detail":null}}"#
                .to_string(),
            "application/json",
            Vec::new(),
        ),
        Err(error) => {
            let (ref_id, body) = error.body();
            if error.status >= 500 {
                eprintln!("taskyard: {} {} (ref_id {ref_id})", error.status, error.message);
            }
            (error.status, body, "application/json", error.headers)
        }
    };
    let mut response = tiny_http::Response::from_data(body.into_bytes()).with_status_code(status);
    let mut add = |name: &str, value: &str| {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    };
    add("Content-Type", content_type);
    for (name, value) in &headers {
        add(name, value);
    }
    let _ = request.respond(response);
    status
}
