//! Prometheus counters of the HTTP layer (spec 10.7), rendered as text
//! format 0.0.4. Every label comes from a fixed set, never from the client
//! as sent: routes are patterns, never raw paths; methods outside the
//! seven known ones are `other` (tiny_http takes any token as a method, and
//! a label per made-up method would let an unauthenticated client grow the
//! series without bound and write `"` into the exposition, issue 11);
//! statuses are the server's own, and one outside 100 to 599 is `other`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

/// Why the fan-out gave a stream back to its thread, for
/// `taskyard_sse_fanout_returns_total`.
#[derive(Debug, Clone, Copy)]
pub enum FanoutReturn {
    Due,
    Blocking,
    End,
    Unsent,
    Failed,
    Stopped,
}

const FANOUT_RETURNS: [&str; 6] = ["due", "blocking", "end", "unsent", "failed", "stopped"];

/// The methods that get a label of their own; any other is `other`.
const METHODS: [&str; 7] = ["GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The label of a request's method: one of [`METHODS`], or `other`.
fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("other")
}

/// A status as labelled: a valid HTTP status as itself, else `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum StatusLabel {
    Code(u16),
    Other,
}

impl StatusLabel {
    fn of(status: u16) -> StatusLabel {
        if (100..=599).contains(&status) {
            StatusLabel::Code(status)
        } else {
            StatusLabel::Other
        }
    }
}

impl std::fmt::Display for StatusLabel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusLabel::Code(status) => write!(formatter, "{status}"),
            StatusLabel::Other => formatter.write_str("other"),
        }
    }
}

pub struct Metrics {
    /// By method, route and status label: all three from fixed sets.
    requests: Mutex<BTreeMap<(&'static str, &'static str, StatusLabel), u64>>,
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Open streams by the label their face gave them; the faces' labels
    /// are listed at start, so the set is bounded by the faces' code.
    streams_open: Mutex<BTreeMap<&'static str, u64>>,
    fanout_chunks: AtomicU64,
    /// Streams the fan-out holds now.
    fanout_streams: AtomicU64,
    fanout_returns: [AtomicU64; FANOUT_RETURNS.len()],
}

impl Metrics {
    /// Metrics with every stream label of the faces shown from the start.
    pub fn new(stream_labels: &[&'static str]) -> Metrics {
        Metrics {
            requests: Mutex::default(),
            durations: Mutex::default(),
            streams_open: Mutex::new(stream_labels.iter().map(|label| (*label, 0)).collect()),
            fanout_chunks: AtomicU64::default(),
            fanout_streams: AtomicU64::default(),
            fanout_returns: Default::default(),
        }
    }

    pub fn record(&self, method: &str, route: &'static str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .entry((method_label(method), route, StatusLabel::of(status)))
            .or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        let mut durations = self.durations.lock();
        let histogram = durations.entry(route).or_default();
        for (index, bound) in BUCKETS_S.iter().enumerate() {
            if seconds <= *bound {
                histogram.counts[index] += 1;
            }
        }
        histogram.count += 1;
        histogram.sum_s += seconds;
    }

    pub fn stream_opened(&self, label: &'static str) {
        *self.streams_open.lock().entry(label).or_default() += 1;
    }

    pub fn stream_closed(&self, label: &'static str) {
        let mut open = self.streams_open.lock();
        let count = open.entry(label).or_default();
        *count = count.saturating_sub(1);
    }

    pub fn fanout_chunk_sent(&self) {
        self.fanout_chunks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fanout_lent(&self) {
        self.fanout_streams.fetch_add(1, Ordering::Relaxed);
    }

    /// A stream given back to its thread (or refused, when stopping: then
    /// it was never counted as lent).
    pub fn fanout_returned(&self, why: FanoutReturn, was_lent: bool) {
        self.fanout_returns[why as usize].fetch_add(1, Ordering::Relaxed);
        if was_lent {
            self.fanout_streams.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The text exposition; `engine_lines` adds the engine's own series.
    pub fn render(&self, engine_lines: &str) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP taskyard_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE taskyard_http_requests_total counter\n");
        for ((method, route, status), count) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "taskyard_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP taskyard_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE taskyard_http_request_duration_seconds histogram\n");
        for (route, histogram) in self.durations.lock().iter() {
            for (index, bound) in BUCKETS_S.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "taskyard_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    histogram.counts[index]
                );
            }
            let _ = writeln!(
                out,
                "taskyard_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "taskyard_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                histogram.sum_s
            );
            let _ = writeln!(
                out,
                "taskyard_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                histogram.count
            );
        }
        out.push_str("# HELP taskyard_sse_streams_open Open event streams by kind.\n");
        out.push_str("# TYPE taskyard_sse_streams_open gauge\n");
        for (name, count) in self.streams_open.lock().iter() {
            let _ = writeln!(
                out,
                "taskyard_sse_streams_open{{stream=\"{name}\"}} {count}"
            );
        }
        scalar(
            &mut out,
            "taskyard_sse_fanout_chunks_total",
            "counter",
            "Chunks the fan-out sent to caught-up streams.",
            self.fanout_chunks.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "taskyard_sse_fanout_streams",
            "gauge",
            "Caught-up streams the fan-out holds now.",
            self.fanout_streams.load(Ordering::Relaxed),
        );
        out.push_str(
            "# HELP taskyard_sse_fanout_returns_total Streams the fan-out gave back to their \
             thread, by reason.\n",
        );
        out.push_str("# TYPE taskyard_sse_fanout_returns_total counter\n");
        for (index, reason) in FANOUT_RETURNS.iter().enumerate() {
            let _ = writeln!(
                out,
                "taskyard_sse_fanout_returns_total{{reason=\"{reason}\"}} {}",
                self.fanout_returns[index].load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP taskyard_build_info The running version.\n");
        out.push_str("# TYPE taskyard_build_info gauge\n");
        let _ = writeln!(
            out,
            "taskyard_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out.push_str(engine_lines);
        out
    }
}

/// One unlabelled series with its HELP and TYPE lines.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}
