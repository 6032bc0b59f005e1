//! `taskyard serve`: opens the engine on a database (a SQLite file or a PostgreSQL URL), serves every
//! face over HTTP, and shuts down cleanly on SIGINT or SIGTERM.
//!
//! Owns the serve flags and how they combine with the environment and the
//! `--config` file (flags, then environment variables, then the file, then
//! defaults). Holds no engine or HTTP logic of its own.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use taskyard::config::FileConfig;
use taskyard::server::{Server, ServerConfig};
use taskyard::store::Location;
use taskyard::{Config, Engine, Synchronous};

use super::Failure;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, host:port.
    #[arg(long, env = "TASKYARD_ADDR")]
    addr: Option<String>,
    /// The database: a SQLite file (created if missing; also written
    /// `sqlite:PATH`), or a `postgres://` URL that several nodes share.
    #[arg(long, env = "TASKYARD_DB")]
    db: Option<String>,
    /// Worker threads that execute runs.
    #[arg(long, env = "TASKYARD_WORKERS")]
    workers: Option<usize>,
    /// TOML file with settings and processor definitions.
    #[arg(long, env = "TASKYARD_CONFIG")]
    config: Option<PathBuf>,
    /// An accepted x-api-key; repeat for several. With none, no auth.
    #[arg(long = "api-key", env = "TASKYARD_API_KEYS", value_delimiter = ',')]
    api_keys: Vec<String>,
    /// A file with one accepted API key per line.
    #[arg(long, env = "TASKYARD_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// Commit durability: `normal` (survives a crash) or `full` (survives
    /// a power loss).
    #[arg(long, env = "TASKYARD_SYNCHRONOUS")]
    synchronous: Option<String>,
    /// Streams and result waits open at once (STREAMS_OPEN_MAX).
    #[arg(long, env = "TASKYARD_STREAMS_OPEN_MAX")]
    streams_open_max: Option<usize>,
    /// Largest size of the database file in MiB (an edge device's budget);
    /// past it creates answer 503 and reads keep working.
    #[arg(long, env = "TASKYARD_DB_SIZE_MAX_MB")]
    db_size_max_mb: Option<u64>,
    /// Seconds a request may take to arrive (head and body) and a
    /// keep-alive connection may sit idle; 0: no bound.
    #[arg(long, env = "TASKYARD_READ_TIMEOUT_S")]
    read_timeout_s: Option<u64>,
    /// Seconds one write to a client that stopped reading may block before
    /// the connection (and a stream on it) is closed; 0: no bound.
    #[arg(long, env = "TASKYARD_WRITE_TIMEOUT_S")]
    write_timeout_s: Option<u64>,
    /// Seconds running runs get to finish on shutdown.
    #[arg(long, env = "TASKYARD_SHUTDOWN_GRACE_S", default_value_t = 10)]
    shutdown_grace_s: u64,
    /// A secret that signs webhook deliveries; repeat for several.
    #[arg(
        long = "webhook-secret",
        env = "TASKYARD_WEBHOOK_SECRETS",
        value_delimiter = ','
    )]
    webhook_secrets: Vec<String>,
    /// Seconds after which terminal runs (and inactive groups) are pruned
    /// with their events; absent: kept for good.
    #[arg(long, env = "TASKYARD_RETAIN_RUNS_S")]
    retain_runs_s: Option<u64>,
    /// Seconds after which idempotency keys are pruned; absent: kept.
    #[arg(long, env = "TASKYARD_RETAIN_IDEMPOTENCY_KEYS_S")]
    retain_idempotency_keys_s: Option<u64>,
    /// Seconds after which delivered or expired webhook deliveries are
    /// pruned; absent: kept.
    #[arg(long, env = "TASKYARD_RETAIN_DELIVERIES_S")]
    retain_deliveries_s: Option<u64>,
    /// For test suites: schedules fire by a clock that starts now and moves
    /// only when `POST /taskyard/clock {"advance_s": N}` says.
    #[arg(long, env = "TASKYARD_TEST_CLOCK")]
    test_clock: bool,
}

/// Serves until a signal asks to stop.
pub fn run(args: ServeArgs) -> Result<(), Failure> {
    super::memory::cap_malloc_arenas();
    let file = match &args.config {
        Some(path) => FileConfig::load(path).map_err(Failure::usage)?,
        None => FileConfig::default(),
    };
    let addr = args
        .addr
        .clone()
        .or_else(|| file.addr.clone())
        .unwrap_or_else(|| ServerConfig::default().addr);
    let db = Location::parse(
        args.db
            .as_deref()
            .or(file.db.as_deref())
            .unwrap_or("taskyard.db"),
    );
    let synchronous = match args
        .synchronous
        .as_deref()
        .or(file.synchronous.as_deref())
        .unwrap_or("normal")
    {
        "normal" => Synchronous::Normal,
        "full" => Synchronous::Full,
        other => {
            return Err(Failure::usage(format!(
                "synchronous must be 'normal' or 'full', not '{other}'"
            )))
        }
    };
    let mut api_keys = args.api_keys.clone();
    api_keys.extend(file.api_keys.clone().unwrap_or_default());
    if let Some(path) = &args.api_key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(format!("cannot read API key file {}: {e}", path.display()))
        })?;
        api_keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_string),
        );
    }
    api_keys.retain(|key| !key.is_empty());

    let registry = file.registry().map_err(Failure::usage)?;
    let faces = file.faces(&registry).map_err(Failure::usage)?;
    let mut config = Config {
        synchronous,
        registry,
        ..taskyard::faces::default_config()
    };
    config.webhooks.secrets = args.webhook_secrets.clone();
    config
        .webhooks
        .secrets
        .extend(file.webhook_secrets.clone().unwrap_or_default());
    config.webhooks.secrets.retain(|secret| !secret.is_empty());
    config.webhooks.hosts_allowed = file.webhook_hosts_allowed.clone();
    let seconds = |flag: Option<u64>, file: Option<u64>| flag.or(file).map(Duration::from_secs);
    config.retention = taskyard::engine::Retention {
        runs: seconds(args.retain_runs_s, file.retain_runs_s),
        idempotency_keys: seconds(
            args.retain_idempotency_keys_s,
            file.retain_idempotency_keys_s,
        ),
        deliveries: seconds(args.retain_deliveries_s, file.retain_deliveries_s),
        look_every: None,
    };
    if let Some(ms) = file.webhook_retry_base_ms {
        config.webhooks.retry_base = Duration::from_millis(ms.max(1));
    }
    config.database_bytes_max = args
        .db_size_max_mb
        .or(file.db_size_max_mb)
        .map(|mb| mb * 1024 * 1024);
    if let Some(workers) = args.workers.or(file.workers) {
        config.workers = workers.max(1);
    }
    let test_clock = args.test_clock.then(|| {
        std::sync::Arc::new(taskyard::engine::ManualClock::new(
            taskyard::model::Timestamp::now(),
        ))
    });
    if let Some(clock) = &test_clock {
        config.clock = clock.clone();
    }
    let engine =
        Engine::open(db.clone(), config).map_err(|error| Failure::runtime(error.to_string()))?;
    let server_config = ServerConfig {
        addr: addr.clone(),
        api_keys: api_keys.clone(),
        streams_open_max: args
            .streams_open_max
            .or(file.streams_open_max)
            .unwrap_or(ServerConfig::default().streams_open_max),
        body_bytes_max: file
            .body_bytes_max
            .unwrap_or(ServerConfig::default().body_bytes_max),
        read_timeout: args
            .read_timeout_s
            .or(file.read_timeout_s)
            .map_or(ServerConfig::default().read_timeout, Duration::from_secs),
        write_timeout: args
            .write_timeout_s
            .or(file.write_timeout_s)
            .map_or(ServerConfig::default().write_timeout, Duration::from_secs),
        rate_limits: file.rate_limits().map_err(Failure::usage)?,
        faces,
        test_clock,
        ..ServerConfig::default()
    };
    let server = Server::start(engine.clone(), server_config)
        .map_err(|error| Failure::runtime(format!("cannot listen on {addr}: {error}")))?;
    let local = server.local_addr();
    if !local.ip().is_loopback() && api_keys.is_empty() {
        eprintln!(
            "taskyard: warning: listening on {local}, beyond this machine, with no API key; \
             anyone who can reach it can use it (set --api-key)"
        );
    }
    println!(
        "taskyard {} listening on http://{local} (database {db})",
        env!("CARGO_PKG_VERSION"),
    );

    let (stop_sender, stop) = crossbeam_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = stop_sender.try_send(());
    })
    .map_err(|e| Failure::runtime(format!("cannot handle signals: {e}")))?;
    let _ = stop.recv();
    eprintln!("taskyard: shutting down");
    let open_streams = server.open_long_requests();
    server.stop();
    engine.shutdown(Duration::from_secs(args.shutdown_grace_s));
    // Streams end once the engine is shut down; give them a moment to send
    // their last chunk before the process exits.
    let deadline = Instant::now() + Duration::from_secs(2);
    while open_streams.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
