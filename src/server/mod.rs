//! The HTTP server every face shares: the listener and its request
//! threads, auth, the one route table, body limits, the hand-off of long
//! requests (streams, result waits) to threads of their own so that they
//! never starve ordinary requests, SSE framing and the stream fan-out, and
//! the metrics.
//!
//! It holds no SQL, no scheduling and no face's wire: a face (a folder
//! under `src/faces/`) registers its routes here through [`Face::routes`],
//! answers them with the [`Engine`] API, and renders every refusal the
//! server makes (a missing key, no route, a body over the limit, no stream
//! slot) in its own error form through [`Face::refuse`].

pub mod auth;
mod clock;
pub mod fanout;
mod metrics;
pub mod rate;
mod request;
pub mod router;
pub mod sse;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::limits::{BODY_BYTES_MAX, STREAMS_OPEN_MAX};

pub use request::Request;
pub use router::{Endpoint, Handler, NoRoute, RouteTable, Routes};

/// Fan-out threads at most; one per core below that.
const FANOUT_THREADS_MAX: usize = 4;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `host:port`; port 0 picks a free one.
    pub addr: String,
    /// Accepted API keys; empty: no auth.
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
    /// Requests per client and route class (`rate.rs`); none by default.
    pub rate_limits: rate::RateLimitConfig,
    /// What each face takes from the config file.
    pub faces: crate::faces::FacesConfig,
    /// With a clock, its routes are served (`clock.rs`, `--test-clock`);
    /// it must be the engine's schedule clock.
    pub test_clock: Option<Arc<crate::engine::ManualClock>>,
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
            rate_limits: rate::RateLimitConfig::default(),
            faces: crate::faces::FacesConfig::default(),
            test_clock: None,
        }
    }
}

/// Why the server answered a request before (or instead of) its handler.
/// The face that owns the path renders it in its own error form.
#[derive(Debug)]
pub enum Refusal {
    /// No key, or a key that is not configured.
    Unauthorized,
    NotFound {
        method: String,
        path: String,
    },
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: Vec<&'static str>,
    },
    /// The body is over `max` bytes (BODY_BYTES_MAX).
    BodyTooLarge {
        max: usize,
        got: usize,
    },
    /// The body did not arrive within the read timeout.
    BodyTimeout {
        timeout: Duration,
    },
    BodyUnreadable(String),
    /// Every long-request slot is taken (STREAMS_OPEN_MAX).
    StreamsFull {
        open: usize,
        max: usize,
    },
    /// An engine call of a server route (`/metrics`) failed.
    Engine(crate::engine::Error),
    /// The client is over a rate limit of its route class (`rate_limits`).
    RateLimited(rate::Limited),
}

impl Refusal {
    /// What went wrong, in words every face may use as its message (a face
    /// still picks its own status, code and form).
    pub fn message(&self) -> String {
        match self {
            Refusal::Unauthorized => "invalid or missing API key".into(),
            Refusal::NotFound { method, path } => format!("no route for {method} {path}"),
            Refusal::MethodNotAllowed {
                method,
                path,
                allowed,
            } => format!(
                "method {method} is not allowed on {path}; allowed: {}",
                allowed.join(", ")
            ),
            Refusal::BodyTooLarge { max, .. } => {
                format!("request body is over {max} bytes (BODY_BYTES_MAX)")
            }
            Refusal::BodyTimeout { timeout } => format!(
                "request body not received within the read timeout ({} s)",
                timeout.as_secs_f64()
            ),
            Refusal::BodyUnreadable(message) => format!("cannot read the request body: {message}"),
            Refusal::StreamsFull { open, max } => {
                format!("too many open streams: {open} open, at most {max} (STREAMS_OPEN_MAX)")
            }
            Refusal::Engine(error) => error.to_string(),
            Refusal::RateLimited(limited) => limited.message(),
        }
    }
}

/// A hosted API's wire format, served over the engine.
pub trait Face: Send + Sync + 'static {
    /// True for the paths this face owns: an unmatched request under them
    /// needs a key and gets this face's 404.
    fn owns(&self, path: &str) -> bool;
    /// Registers the face's routes.
    fn routes(&self, routes: &mut Routes);
    /// Renders a refusal in the face's error form.
    fn refuse(&self, refusal: Refusal) -> Reply;
    /// The API key a request carries, in the header this face's clients
    /// send it in (Parallel's SDKs: `x-api-key`).
    fn presented_key(&self, request: &Request<'_>) -> Option<String> {
        request.header("x-api-key")
    }
    /// The stream labels the face's streams are counted under, so that
    /// each is shown (at 0) before its first stream opens.
    fn stream_labels(&self) -> &'static [&'static str] {
        &[]
    }
}

/// What a handler answers.
pub enum Reply {
    /// A JSON body with a status and extra headers.
    Json(u16, String, Vec<(&'static str, String)>),
    /// Plain text (metrics) with its content type.
    Text(u16, String, &'static str),
    /// A stream, written on a thread of its own, counted under its label.
    Stream(&'static str, StreamBody),
    /// A long wait (a result), answered on a thread of its own.
    Wait(Box<dyn FnOnce() -> Reply + Send>),
}

/// The body of a stream: it writes to the connection until it ends.
pub type StreamBody = Box<dyn FnOnce(sse::Out) -> io::Result<()> + Send>;

/// What the request threads share.
struct Shared {
    engine: Engine,
    config: ServerConfig,
    metrics: Arc<metrics::Metrics>,
    /// Long requests (streams, result waits) open now.
    long_open: Arc<AtomicUsize>,
    /// Sends new events to caught-up streams (`fanout.rs`).
    fanout: fanout::Fanout,
    table: RouteTable,
    faces: Vec<Arc<dyn Face>>,
    http: tiny_http::Server,
    stopping: AtomicBool,
    rate: rate::RateLimits,
}

/// A running server; [`Server::stop`] ends it.
pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Server {
    /// Binds and serves every face taskyard has (`faces::all`).
    pub fn start(engine: Engine, config: ServerConfig) -> io::Result<Server> {
        let faces = crate::faces::all(&engine, &config);
        Server::start_with(engine, config, faces)
    }

    /// Binds and serves `faces`; the first one also renders the refusals of
    /// the server's own routes and of paths no face owns.
    pub fn start_with(
        engine: Engine,
        config: ServerConfig,
        faces: Vec<Arc<dyn Face>>,
    ) -> io::Result<Server> {
        if faces.is_empty() {
            return Err(io::Error::other("a server needs at least one face"));
        }
        let mut routes = Routes::default();
        for (index, face) in faces.iter().enumerate() {
            routes.for_face(index);
            face.routes(&mut routes);
        }
        routes.for_face(0);
        server_routes(&mut routes);
        if let Some(clock) = &config.test_clock {
            clock::register(&mut routes, clock.clone());
        }
        let table = RouteTable::build(routes).map_err(io::Error::other)?;
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
        let stream_labels: Vec<&'static str> = faces
            .iter()
            .flat_map(|face| face.stream_labels().iter().copied())
            .collect();
        let metrics = Arc::new(metrics::Metrics::new(&stream_labels));
        let (fanout, fanout_threads) =
            fanout::start(cores.min(FANOUT_THREADS_MAX), metrics.clone())?;
        let shared = Arc::new(Shared {
            engine,
            fanout,
            metrics,
            long_open: Arc::new(AtomicUsize::new(0)),
            table,
            faces,
            http,
            stopping: AtomicBool::new(false),
            rate: rate::RateLimits::new(config.rate_limits),
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

    /// Every route pattern with its methods, as the route table holds them.
    pub fn patterns(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        self.shared.table.patterns()
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

/// The server's own routes: health and metrics speak no face's wire.
fn server_routes(routes: &mut Routes) {
    // Both answer without a key, for probes and scrapers; HEAD as GET.
    for method in ["GET", "HEAD"] {
        routes.add(method, "/healthz", "/healthz", false, Arc::new(health));
        routes.add(method, "/metrics", "/metrics", false, Arc::new(scrape));
    }
}

fn health(request: &mut Request<'_>) -> Reply {
    let version = env!("CARGO_PKG_VERSION");
    let (status, body) = match request.engine().health() {
        Ok(()) => (200, serde_json::json!({"status": "ok", "version": version})),
        Err(error) => (
            503,
            serde_json::json!({"status": "unavailable", "version": version, "message": error.to_string()}),
        ),
    };
    Reply::Json(status, body.to_string(), Vec::new())
}

fn scrape(request: &mut Request<'_>) -> Reply {
    let engine = request.engine();
    let counts = match engine.runs_by_status() {
        Ok(counts) => counts,
        Err(error) => return request.refuse(Refusal::Engine(error)),
    };
    let mut engine_lines =
        String::from("# HELP taskyard_runs Runs by status.\n# TYPE taskyard_runs gauge\n");
    for (status, count) in counts {
        engine_lines.push_str(&format!("taskyard_runs{{status=\"{status}\"}} {count}\n"));
    }
    engine_lines.push_str(&format!(
        "# HELP taskyard_events_total Events appended to the log.\n\
         # TYPE taskyard_events_total counter\ntaskyard_events_total {}\n",
        engine.last_event_id()
    ));
    let deliveries = engine.delivery_counts();
    engine_lines.push_str(
        "# HELP taskyard_webhook_deliveries_total Webhook delivery attempts by outcome.\n\
         # TYPE taskyard_webhook_deliveries_total counter\n",
    );
    for (outcome, count) in [
        ("delivered", &deliveries.delivered),
        ("retry", &deliveries.retried),
        ("expired", &deliveries.expired),
    ] {
        engine_lines.push_str(&format!(
            "taskyard_webhook_deliveries_total{{outcome=\"{outcome}\"}} {}\n",
            count.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    Reply::Text(
        200,
        request.metrics().render(&engine_lines),
        "text/plain; version=0.0.4; charset=utf-8",
    )
}

fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for character in path.chars() {
        if !(character == '/' && out.ends_with('/')) {
            out.push(character);
        }
    }
    out
}

fn serve(shared: &Arc<Shared>) {
    while !shared.stopping.load(Ordering::SeqCst) {
        // An error is `stop` unblocking this thread; the loop's test ends it.
        if let Ok(request) = shared.http.recv() {
            handle(shared, request);
        }
    }
}

fn handle(shared: &Arc<Shared>, mut raw: tiny_http::Request) {
    let started = Instant::now();
    let method = raw.method().as_str().to_ascii_uppercase();
    let url = raw.url().to_string();
    let (path, raw_query) = url.split_once('?').unwrap_or((&url, ""));
    // Repeated slashes read as one: a client whose base URL ends in `/`
    // sends `//api/...` (ArchAstro's SDK does, spec 1.1). An id with a
    // slash in it arrives percent-encoded, so none is cut here.
    let collapsed;
    let path = if path.contains("//") {
        collapsed = collapse_slashes(path);
        collapsed.as_str()
    } else {
        path
    };
    let found = shared.table.find(&method, path);
    let label = found
        .as_ref()
        .map_or("unmatched", |found| found.endpoint.label);
    // The face that answers refusals: the route's, else the one that owns
    // the path, else the first.
    let face = match &found {
        Ok(found) => found.endpoint.face,
        Err(_) => shared
            .faces
            .iter()
            .position(|face| face.owns(path))
            .unwrap_or(0),
    };
    let needs_key = match &found {
        Ok(found) => found.endpoint.needs_key,
        Err(_) => shared.faces.iter().any(|face| face.owns(path)),
    };
    let raw_peer = raw.remote_addr().map(|addr| addr.ip().to_string());
    let reply = {
        let params = found
            .as_ref()
            .map(|found| found.params.clone())
            .unwrap_or_default();
        let mut request = Request::new(shared, &mut raw, &method, path, raw_query, params, face);
        let presented = shared.faces[face].presented_key(&request);
        // Face routes only are limited: `/healthz` and `/metrics` never. A
        // face that checks its own logins (Nextcloud's) registers its routes
        // without the server's key check, and is limited all the same.
        let limited = || match &found {
            Ok(found) if found.endpoint.needs_key || shared.faces[face].owns(path) => shared
                .rate
                .take(
                    &client_of(presented.as_deref(), &raw_peer),
                    rate::RouteClass::of(&method),
                    Instant::now(),
                )
                .err(),
            _ => None,
        };
        if needs_key && !auth::authorized(&shared.config.api_keys, presented.as_deref()) {
            request.refuse(Refusal::Unauthorized)
        } else if let Some(limited) = limited() {
            request.refuse(Refusal::RateLimited(limited))
        } else {
            match found {
                Ok(found) => (found.endpoint.handler)(&mut request),
                Err(NoRoute::NotFound) => request.refuse(Refusal::NotFound {
                    method: method.clone(),
                    path: path.to_string(),
                }),
                Err(NoRoute::MethodNotAllowed(allowed)) => {
                    request.refuse(Refusal::MethodNotAllowed {
                        method: method.clone(),
                        path: path.to_string(),
                        allowed,
                    })
                }
            }
        }
    };
    let counted = Counted {
        method: method.clone(),
        label,
        face,
        started,
    };
    match reply {
        Reply::Wait(wait) => hand_off_wait(shared, raw, counted, wait),
        Reply::Stream(stream, body) => hand_off_stream(shared, raw, counted, stream, body),
        reply => {
            let status = respond(raw, reply);
            counted.record(shared, status);
        }
    }
}

/// Who a rate limit counts a request against: the key it carries, in any
/// face's header, else the address it came from.
fn client_of(presented: Option<&str>, peer: &Option<String>) -> String {
    presented
        .map(|key| format!("key:{key}"))
        .or_else(|| peer.as_ref().map(|ip| format!("ip:{ip}")))
        .unwrap_or_default()
}

/// Takes a long-request slot, or answers why not.
fn take_long_slot(shared: &Arc<Shared>) -> Result<LongSlot, Refusal> {
    let open = shared.long_open.fetch_add(1, Ordering::SeqCst);
    let slot = LongSlot(shared.clone());
    if open >= shared.config.streams_open_max {
        return Err(Refusal::StreamsFull {
            open,
            max: shared.config.streams_open_max,
        });
    }
    Ok(slot)
}

/// A long-request slot, given back when dropped.
struct LongSlot(Arc<Shared>);

impl Drop for LongSlot {
    fn drop(&mut self) {
        self.0.long_open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where a request's answer is counted in the metrics, and whose error
/// form refuses it.
struct Counted {
    method: String,
    label: &'static str,
    face: usize,
    started: Instant,
}

impl Counted {
    fn record(&self, shared: &Shared, status: u16) {
        shared
            .metrics
            .record(&self.method, self.label, status, self.started.elapsed());
    }
}

/// A long-request slot for `request`, or `None` once the refusal is
/// answered and counted.
fn long_slot(
    shared: &Arc<Shared>,
    request: tiny_http::Request,
    counted: &Counted,
) -> Option<(LongSlot, tiny_http::Request)> {
    match take_long_slot(shared) {
        Ok(slot) => Some((slot, request)),
        Err(refusal) => {
            let status = respond(request, shared.faces[counted.face].refuse(refusal));
            counted.record(shared, status);
            None
        }
    }
}

fn hand_off_wait(
    shared: &Arc<Shared>,
    request: tiny_http::Request,
    counted: Counted,
    wait: Box<dyn FnOnce() -> Reply + Send>,
) {
    let Some((slot, request)) = long_slot(shared, request, &counted) else {
        return;
    };
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("taskyard-wait".into())
        .spawn(move || {
            let _slot = slot;
            let status = respond(request, wait());
            counted.record(&shared, status);
        });
    if let Err(error) = spawned {
        eprintln!("taskyard: cannot start a thread for a long request: {error}");
    }
}

fn hand_off_stream(
    shared: &Arc<Shared>,
    request: tiny_http::Request,
    counted: Counted,
    stream: &'static str,
    body: StreamBody,
) {
    let Some((slot, request)) = long_slot(shared, request, &counted) else {
        return;
    };
    counted.record(shared, 200);
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
            let _ = body(sse::Out {
                writer,
                direct,
                keep_alive: shared.config.keep_alive,
            });
            shared.metrics.stream_closed(stream);
        });
    if let Err(error) = spawned {
        eprintln!("taskyard: cannot start a thread for a stream: {error}");
    }
}

/// Writes a reply; answers the status sent.
fn respond(request: tiny_http::Request, reply: Reply) -> u16 {
    let (status, body, content_type, headers) = match reply {
        Reply::Json(status, body, headers) => (status, body, "application/json", headers),
        Reply::Text(status, body, content_type) => (status, body, content_type, Vec::new()),
        // A handler's wait or stream that answered another long request: a
        // bug, said plainly rather than in some face's form.
        Reply::Stream(..) | Reply::Wait(_) => (
            500,
            "internal error: nested long request".to_string(),
            "text/plain; charset=utf-8",
            Vec::new(),
        ),
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
