//! The webhook deliverer: POSTs each run's terminal status to the URL its
//! request named, signed the Standard Webhooks way, retried with backoff
//! until a 2xx or until the delivery expires.
//!
//! The outbox rows it works from are written by the store in the same
//! transaction as the status change they tell of (`store/writer/finish.rs`),
//! so a delivery survives `kill -9` like a run: on restart the pending rows
//! are found and sent (at least once; receivers deduplicate on
//! `webhook-id`, the same on every attempt). What is sent, the body and the
//! form of the id, is the face's ([`WebhookRender`]); the engine signs,
//! sends, retries and records. Owns no SQL (store ops and reads) and knows
//! no face.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use base64::Engine as _;
use crossbeam_channel::{bounded, Receiver, Sender};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

use crate::engine::{Engine, WeakEngine};
use crate::limits::{
    WEBHOOK_DELIVERIES_CONCURRENT_MAX, WEBHOOK_DELIVERIES_PER_LOOK_MAX, WEBHOOK_ERROR_CHARS_MAX,
};
use crate::model::{DeliveryState, EventData, Run, Timestamp};
use crate::store::{DeliveryOutcome, DueDelivery, Op, Store};

/// How a face writes a delivery. Called on a delivery thread at each
/// attempt, with the engine to read what the face keeps (its records).
pub trait WebhookRender: Send + Sync {
    /// The body that tells of `run` reaching its terminal status (`run` as
    /// recorded then); `owner` is the key the face gave the run's target.
    /// An error fails the attempt, which is tried again like any other.
    fn body(&self, engine: &Engine, run: &Run, owner: Option<&str>) -> Result<String, String>;
    /// The `webhook-id` header for the delivery's id (32 hex digits).
    fn delivery_id(&self, id: &str) -> String;
    /// Headers of the face's own beside the Standard Webhooks ones (a
    /// token the receiver checks), read at each attempt.
    fn headers(&self, _engine: &Engine, _owner: Option<&str>) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// How deliveries are made.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Each signs every delivery; with none, no signature header is sent.
    pub secrets: Vec<String>,
    /// The wait before the second attempt; it doubles after each failure.
    pub retry_base: Duration,
    /// The longest wait between two attempts.
    pub retry_max: Duration,
    /// How long one attempt may take, connection to last byte.
    pub attempt_timeout: Duration,
    /// With a list, only URLs whose host is on it are accepted (a run that
    /// names another is refused) and delivered to.
    pub hosts_allowed: Option<Vec<String>>,
    /// Each face's rendering, by the face's name in the run's target.
    pub renderers: BTreeMap<String, Arc<dyn WebhookRender>>,
}

impl Default for WebhookConfig {
    /// Parallel's spec 9: 5 s doubling to at most 1 h; 10 s per attempt.
    fn default() -> WebhookConfig {
        WebhookConfig {
            secrets: Vec::new(),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3_600),
            attempt_timeout: Duration::from_secs(10),
            hosts_allowed: None,
            renderers: BTreeMap::new(),
        }
    }
}

impl WebhookConfig {
    /// Whether `url`'s host may be delivered to.
    pub fn allows(&self, url: &str) -> bool {
        let Some(allowed) = &self.hosts_allowed else {
            return true;
        };
        host_of(url).is_some_and(|host| allowed.iter().any(|name| name.eq_ignore_ascii_case(host)))
    }
}

/// The host of an http(s) URL, without port or credentials.
pub fn host_of(url: &str) -> Option<&str> {
    let scheme = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if scheme.starts_with("https://") {
        &url[8..]
    } else if scheme.starts_with("http://") {
        &url[7..]
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

/// Deliveries by outcome, for `/metrics`.
#[derive(Default)]
pub struct DeliveryCounts {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub expired: AtomicU64,
}

/// What the commit hook uses to wake the deliverer.
#[derive(Default)]
pub struct Wake {
    thread: Mutex<Option<Thread>>,
}

impl Wake {
    pub fn wake(&self) {
        if let Some(thread) = self.thread.lock().as_ref() {
            thread.unpark();
        }
    }
}

/// The running deliverer: one thread that finds due deliveries and a few
/// that send them.
pub struct Deliverer {
    stopping: Arc<AtomicBool>,
    wake: Arc<Wake>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Longest sleep with nothing due, so that a lost wake-up (there should be
/// none) costs at most this.
const IDLE_PARK_MAX: Duration = Duration::from_secs(1);

impl Deliverer {
    /// `engine` is set once the engine that owns this deliverer is made;
    /// nothing is looked for before, as renderings read through it.
    pub fn start(
        store: Arc<Store>,
        config: WebhookConfig,
        counts: Arc<DeliveryCounts>,
        wake: Arc<Wake>,
        engine: Arc<OnceLock<WeakEngine>>,
    ) -> std::io::Result<Deliverer> {
        let stopping = Arc::new(AtomicBool::new(false));
        let (jobs, take) = bounded::<DueDelivery>(WEBHOOK_DELIVERIES_CONCURRENT_MAX);
        let (done, finished) = bounded::<i64>(WEBHOOK_DELIVERIES_PER_LOOK_MAX * 2);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.attempt_timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let attempt_timeout = config.attempt_timeout;
        let config = Arc::new(config);
        let mut threads = Vec::new();
        for index in 0..WEBHOOK_DELIVERIES_CONCURRENT_MAX {
            let sender = Sender::clone(&done);
            let (store, config, counts, take, agent, engine) = (
                store.clone(),
                config.clone(),
                counts.clone(),
                take.clone(),
                agent.clone(),
                engine.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("taskyard-webhook-{index}"))
                    .spawn(move || {
                        for delivery in take {
                            let seq = delivery.seq;
                            // Held for the attempt only: the last handle
                            // dropped here stops the engine (see `stop`).
                            let engine = engine.get().and_then(WeakEngine::upgrade);
                            let outcome = attempt(&agent, &config, engine.as_ref(), &delivery);
                            drop(engine);
                            match outcome.state {
                                DeliveryState::Delivered => &counts.delivered,
                                DeliveryState::Pending => &counts.retried,
                                DeliveryState::Expired => &counts.expired,
                            }
                            .fetch_add(1, Ordering::Relaxed);
                            // A refused record is tried again: the row stays
                            // pending and falls due again.
                            let _ = store.writer.call(|reply| Op::RecordDelivery {
                                seq,
                                outcome,
                                reply,
                            });
                            let _ = sender.send(seq);
                        }
                    })?,
            );
        }
        drop(done);
        let looker = {
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("taskyard-deliverer".into())
                .spawn(move || {
                    // Unparked by the engine once it is made.
                    while engine.get().is_none() && !stopping.load(Ordering::SeqCst) {
                        std::thread::park_timeout(IDLE_PARK_MAX);
                    }
                    look(&store, &stopping, jobs, finished, attempt_timeout)
                })?
        };
        *wake.thread.lock() = Some(looker.thread().clone());
        threads.push(looker);
        Ok(Deliverer {
            stopping,
            wake,
            threads: Mutex::new(threads),
        })
    }

    /// Stops looking for deliveries and waits for the attempts in flight
    /// (each bounded by the attempt timeout). Pending rows stay pending.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.wake();
        // A sender thread may hold the last engine handle, and so stop the
        // engine itself: it cannot wait for itself, and ends on its own.
        let current = std::thread::current().id();
        for thread in self.threads.lock().drain(..) {
            if thread.thread().id() != current {
                let _ = thread.join();
            }
        }
    }
}

/// The looking thread: hands due deliveries to the senders, one attempt
/// in flight per delivery, and sleeps until the next falls due or a commit
/// writes new ones.
fn look(
    store: &Store,
    stopping: &AtomicBool,
    jobs: Sender<DueDelivery>,
    finished: Receiver<i64>,
    attempt_timeout: Duration,
) {
    let mut in_flight: HashSet<i64> = HashSet::new();
    while !stopping.load(Ordering::SeqCst) {
        for seq in finished.try_iter() {
            in_flight.remove(&seq);
        }
        let now = Timestamp::now().micros();
        // Held past an attempt's timeout: on PostgreSQL no other node
        // attempts these meanwhile; SQLite's one process needs no hold.
        let hold_until = now + (attempt_timeout.as_micros() as i64) * 2;
        let due = store
            .claim_due_deliveries(now, WEBHOOK_DELIVERIES_PER_LOOK_MAX, hold_until)
            .unwrap_or_default();
        for delivery in due {
            if stopping.load(Ordering::SeqCst) {
                break;
            }
            if in_flight.insert(delivery.seq) && jobs.send(delivery).is_err() {
                return;
            }
        }
        let next = store.next_delivery_at().ok().flatten();
        let wait = match next {
            Some(at) if in_flight.is_empty() || at > now => {
                Duration::from_micros((at - Timestamp::now().micros()).max(0) as u64)
            }
            // Everything due is in flight: look again when one finishes.
            _ => Duration::from_millis(10),
        };
        // A commit that writes deliveries unparks this thread; a spurious
        // wake-up costs one look.
        if finished.is_empty() && !stopping.load(Ordering::SeqCst) {
            std::thread::park_timeout(wait.min(IDLE_PARK_MAX));
        }
    }
}

/// One attempt: render, sign, POST, and what it came to.
fn attempt(
    agent: &ureq::Agent,
    config: &WebhookConfig,
    engine: Option<&Engine>,
    delivery: &DueDelivery,
) -> DeliveryOutcome {
    let started = std::time::Instant::now();
    let started_at = Timestamp::now().micros();
    let took = || started.elapsed().as_micros() as i64;
    let expired = |error: String| DeliveryOutcome {
        state: DeliveryState::Expired,
        next_at: delivery.expires_at,
        code: None,
        error: Some(error),
        started_at,
        duration_us: took(),
    };
    let Some(render) = config.renderers.get(&delivery.face) else {
        return expired(format!("no face '{}' renders this delivery", delivery.face));
    };
    if !config.allows(&delivery.url) {
        return expired(format!(
            "the host of {} is not in webhook_hosts_allowed",
            delivery.url
        ));
    }
    let run = match &delivery.event {
        EventData::RunStatus { run, .. } => run,
        _ => return expired("the delivery's event is not a run status".into()),
    };
    let owner = delivery.owner.as_deref();
    let sent = match engine {
        // The engine is stopping: tried again after a restart.
        None => Err((None, "the engine is stopping".to_string())),
        Some(engine) => render
            .body(engine, run, owner)
            .map_err(|error| (None, format!("the delivery could not be rendered: {error}")))
            .and_then(|body| {
                let id = render.delivery_id(&delivery.id);
                let timestamp = Timestamp::now().micros() / 1_000_000;
                let mut request = agent
                    .post(&delivery.url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", timestamp.to_string());
                for (name, value) in render.headers(engine, owner) {
                    request = request.header(name, value);
                }
                if !config.secrets.is_empty() {
                    request = request.header(
                        "webhook-signature",
                        signatures(&config.secrets, &id, timestamp, &body),
                    );
                }
                match request.send(body.as_bytes()) {
                    Ok(response) => {
                        let code = response.status().as_u16();
                        if (200..300).contains(&code) {
                            Ok(code)
                        } else {
                            Err((Some(code), format!("the receiver answered {code}")))
                        }
                    }
                    Err(error) => Err((None, error.to_string())),
                }
            }),
    };
    let (code, error) = match sent {
        Ok(code) => {
            return DeliveryOutcome {
                state: DeliveryState::Delivered,
                next_at: Timestamp::now().micros(),
                code: Some(code),
                error: None,
                started_at,
                duration_us: took(),
            }
        }
        Err(failed) => failed,
    };
    let error: String = error.chars().take(WEBHOOK_ERROR_CHARS_MAX).collect();
    let wait = retry_wait(config, delivery.attempts + 1);
    let next_at = Timestamp::now().micros() + wait.as_micros() as i64;
    if next_at > delivery.expires_at {
        return DeliveryOutcome {
            code,
            ..expired(error)
        };
    }
    DeliveryOutcome {
        state: DeliveryState::Pending,
        next_at,
        code,
        error: Some(error),
        started_at,
        duration_us: took(),
    }
}

/// The wait after attempt `attempts` failed: the base, doubled after each
/// failure, at most the maximum.
pub fn retry_wait(config: &WebhookConfig, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    config
        .retry_base
        .saturating_mul(1u32 << doublings)
        .min(config.retry_max)
}

/// The `webhook-signature` header: `v1,` and the Base64 HMAC-SHA256 of
/// `id.timestamp.body` under each secret, space-separated (Standard
/// Webhooks).
pub fn signatures(secrets: &[String], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .map(|secret| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The Standard Webhooks specification's example: secret bytes of
        // "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" base64-decoded there; here the
        // secret's UTF-8 bytes are the key (Parallel's spec 9), so the value
        // is checked against an independent computation in the tests.
        let one = signatures(&["s".into()], "whevent_1", 1, "{}");
        assert!(one.starts_with("v1,"));
        let two = signatures(&["s".into(), "t".into()], "whevent_1", 1, "{}");
        assert_eq!(two.split(' ').count(), 2);
        assert_eq!(two.split(' ').next(), Some(one.as_str()));
    }

    #[test]
    fn retries_double_up_to_the_cap() {
        let config = WebhookConfig::default();
        assert_eq!(retry_wait(&config, 1), Duration::from_secs(5));
        assert_eq!(retry_wait(&config, 2), Duration::from_secs(10));
        assert_eq!(retry_wait(&config, 10), Duration::from_secs(2_560));
        assert_eq!(retry_wait(&config, 11), Duration::from_secs(3_600));
        assert_eq!(retry_wait(&config, 400), Duration::from_secs(3_600));
    }

    #[test]
    fn hosts_are_read_from_urls() {
        assert_eq!(host_of("http://127.0.0.1:9000/hook"), Some("127.0.0.1"));
        assert_eq!(
            host_of("https://user:pw@Hooks.Example.com/x?y"),
            Some("Hooks.Example.com")
        );
        assert_eq!(host_of("http://[::1]:80/"), Some("::1"));
        assert_eq!(host_of("ftp://x"), None);
        let config = WebhookConfig {
            hosts_allowed: Some(vec!["hooks.example.com".into()]),
            ..WebhookConfig::default()
        };
        assert!(config.allows("https://HOOKS.example.com/a"));
        assert!(!config.allows("https://evil.example.com/a"));
    }
}
