//! A throw-away PostgreSQL cluster for tests (issue 17): `initdb` into a
//! temporary directory, `pg_ctl start` on a free loopback port with the
//! socket in that directory, and on drop `pg_ctl stop -m immediate` and the
//! directory removed. No system service, no password: trust auth for one
//! superuser, reachable only from this machine.
//!
//! Needs Debian's `postgresql` package (scripts/test installs it when
//! `initdb` is missing); the binaries are found on PATH or under
//! `/usr/lib/postgresql/*/bin`, where Debian puts them off PATH.
//!
//! As root: `initdb` and `postgres` refuse to run as root, and CI runs as
//! root. Then every PostgreSQL command runs through `runuser -u USER`, USER
//! being `postgres` (which the Debian package creates) or `nobody`, and the
//! temporary directory is handed to that user first. The test process
//! itself stays root and connects over TCP, so nothing else changes.
//!
//! Touches nothing outside its temporary directory and its port.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The superuser `initdb` makes; trust auth, so no password.
pub const SUPERUSER: &str = "taskyard";

/// How long a fresh cluster may take to accept connections. initdb is
/// done by then; this is only the postmaster's start, about a second on
/// a loaded 2-core machine.
const READY_WAIT_MAX: Duration = Duration::from_secs(60);

/// What the postmaster logs before it exits when its port is taken.
const PORT_TAKEN_LOG: &str = "could not create any TCP/IP sockets";

/// Starts tried before giving up: the port is picked free, but another
/// process may take it between the pick and the postmaster's bind.
const START_TRIES_MAX: usize = 3;

/// A running cluster, stopped and removed on drop.
pub struct Postgres {
    /// Holds the data directory, the socket and the log.
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `Some(user)` when commands run as that user (the test runs as root).
    run_as: Option<String>,
    port: u16,
}

impl Postgres {
    /// initdb, start, and wait until the cluster accepts connections.
    /// Panics with the command's own output when a step fails: a test
    /// cannot go on without its database.
    pub fn start() -> Postgres {
        let bin = bin_dir().unwrap_or_else(|| {
            panic!(
                "initdb not found on PATH or in /usr/lib/postgresql/*/bin: \
                 install Debian's postgresql package (scripts/test does)"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("taskyard-pg-")
            .tempdir()
            .expect("temporary directory");
        let run_as = if is_root() {
            let user = unprivileged_user();
            hand_over(dir.path(), &user);
            Some(user)
        } else {
            None
        };
        let mut cluster = Postgres {
            dir,
            bin,
            run_as,
            port: 0,
        };
        let output = cluster
            .command("initdb")
            .arg("--pgdata")
            .arg(cluster.data_dir())
            .args(["--username", SUPERUSER, "--auth", "trust"])
            // Byte order for text, as SQLite's BINARY collation; UTF-8 as
            // taskyard writes. --no-sync: the cluster dies with the test.
            .args(["--no-locale", "--encoding", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        check("initdb", &output);
        let mut tries = 0;
        loop {
            tries += 1;
            cluster.port = free_port();
            // The last try's log would end this try's wait at once.
            let _ = std::fs::remove_file(cluster.log_path());
            cluster.pg_ctl_start();
            match cluster.wait_ready() {
                Ok(()) => return cluster,
                Err(error) if tries < START_TRIES_MAX && error.contains(PORT_TAKEN_LOG) => {
                    // The port was taken meanwhile. Stop whatever is
                    // left and try another.
                    eprintln!("postgres did not start on {}: {error}", cluster.port);
                    cluster.stop();
                }
                Err(error) => panic!(
                    "postgres did not accept connections on port {}: {error}\n{}",
                    cluster.port,
                    cluster.log()
                ),
            }
        }
    }

    /// `pg_ctl start` on the cluster's port, without waiting.
    fn pg_ctl_start(&self) {
        let output = self
            .command("pg_ctl")
            .arg("start")
            .arg("--pgdata")
            .arg(self.data_dir())
            .arg("--log")
            .arg(self.log_path())
            // -W: do not wait here; `wait_ready` waits with a deadline of
            // its own and says what it waited for.
            .arg("-W")
            .arg("-o")
            .arg(format!(
                // fsync off: the data is thrown away with the test.
                "-c listen_addresses=127.0.0.1 -c port={} \
                 -c unix_socket_directories='{}' -c fsync=off",
                self.port,
                self.dir.path().display()
            ))
            .output()
            .expect("pg_ctl start runs");
        check("pg_ctl start", &output);
    }

    /// Starts the server again after [`Postgres::stop`], on the same port
    /// and data: a restart that clients live through.
    pub fn start_again(&self) {
        let _ = std::fs::remove_file(self.log_path());
        self.pg_ctl_start();
        self.wait_ready().unwrap_or_else(|error| {
            panic!("postgres did not start again: {error}\n{}", self.log())
        });
    }

    /// A URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// A URL of database `name` (see [`Postgres::create_database`]).
    pub fn database_url(&self, name: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{name}?connect_timeout=10",
            self.port
        )
    }

    /// Creates an empty database `name` and answers its URL, so that one
    /// cluster serves several independent cases.
    pub fn create_database(&self, name: &str) -> String {
        let mut client = postgres::Client::connect(&self.url(), postgres::NoTls)
            .expect("connects to the cluster");
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("database created");
        self.database_url(name)
    }

    /// The server's log, for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `program` from the cluster's bin directory, as the cluster's user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    /// Connects until a query answers or the deadline passes; a condition
    /// with a deadline, never a bare sleep.
    fn wait_ready(&self) -> Result<(), String> {
        let until = Instant::now() + READY_WAIT_MAX;
        let mut pause = Duration::from_millis(10);
        loop {
            let answer = postgres::Client::connect(&self.url(), postgres::NoTls)
                .and_then(|mut client| client.simple_query("SELECT 1"));
            match answer {
                Ok(_) => return Ok(()),
                Err(error) => {
                    if Instant::now() >= until {
                        return Err(error.to_string());
                    }
                    // The port was taken between the pick and the bind:
                    // the postmaster has exited, and waiting on would only
                    // spend the deadline. Matched on the message itself: a
                    // FATAL line alone is also what each connection tried
                    // during start-up leaves ("the database system is
                    // starting up").
                    if self.log().contains(PORT_TAKEN_LOG) {
                        return Err(format!("{error}; the log says: {PORT_TAKEN_LOG}"));
                    }
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// `pg_ctl stop -m immediate`: the fastest stop; the data is thrown away.
    pub fn stop(&self) {
        let stopped = self
            .command("pg_ctl")
            .arg("stop")
            .arg("--pgdata")
            .arg(self.data_dir())
            .args(["-m", "immediate"])
            .output();
        match stopped {
            Ok(output) if output.status.success() => {}
            // Not started, or already gone: nothing left to stop.
            Ok(output) => eprintln!(
                "pg_ctl stop: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => eprintln!("pg_ctl stop did not run: {error}"),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        // The TempDir field removes the directory after this.
    }
}

fn check(step: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{step} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The directory holding `initdb` and `pg_ctl`: PATH first, then the
/// newest Debian version directory.
fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    let output = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// `postgres` when it exists (Debian's package makes it), else `nobody`.
fn unprivileged_user() -> String {
    ["postgres", "nobody"]
        .into_iter()
        .find(|user| {
            Command::new("id")
                .arg("-u")
                .arg(user)
                .output()
                .is_ok_and(|output| output.status.success())
        })
        .expect("a user other than root to run PostgreSQL as (postgres or nobody)")
        .to_string()
}

/// Gives `dir` to `user`, so that initdb can make the data directory in it
/// and the postmaster its socket and log.
fn hand_over(dir: &Path, user: &str) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .arg(flag)
            .arg(user)
            .output()
            .expect("id runs");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    std::os::unix::fs::chown(dir, Some(id("-u")), Some(id("-g")))
        .expect("temporary directory handed to the PostgreSQL user");
}

/// A loopback port nobody listens on now. The listener is dropped before
/// the postmaster binds, so another process may take the port meanwhile;
/// `Postgres::start` tries again then.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The cluster a test binary shares when the suite runs on PostgreSQL
/// (support/mod.rs): started at the first database asked for, stopped and
/// removed when the binary exits.
static SHARED: OnceLock<Postgres> = OnceLock::new();

/// A new, empty database in the shared cluster; its URL.
pub fn fresh_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cluster = SHARED.get_or_init(|| {
        let cluster = Postgres::start();
        // A static is never dropped: stop the cluster at exit instead,
        // which the test harness reaches however its tests ended.
        extern "C" fn stop_shared() {
            if let Some(cluster) = SHARED.get() {
                cluster.stop();
                let _ = std::fs::remove_dir_all(cluster.dir.path());
            }
        }
        // SAFETY: registers a plain function with no arguments; it runs
        // once, at exit, after the tests.
        unsafe {
            libc::atexit(stop_shared);
        }
        cluster
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    cluster.create_database(&format!("test_{n}"))
}
