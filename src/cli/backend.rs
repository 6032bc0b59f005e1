//! Where the client commands (`enrich`, and the group and run commands)
//! send their work: `--db FILE` (or a `postgres://` URL), an engine in this process, or
//! `--base-url URL`, any server that speaks Parallel's Task API; and the
//! exit code of each way a call can fail. The calls themselves are the
//! Parallel face's client (`faces/parallel/client.rs`).

use std::path::PathBuf;

use taskyard::faces::parallel::client::{Client, ClientError};
use taskyard::store::Location;
use taskyard::Engine;

use super::Failure;

/// Where a client command works: `--db FILE` (the default,
/// `./taskyard.db`) or `--base-url URL`.
#[derive(clap::Args)]
pub struct Target {
    /// Work on this database in this process, no server needed: a SQLite
    /// file (default ./taskyard.db) or a `postgres://` URL.
    #[arg(long, conflicts_with = "base_url")]
    db: Option<String>,
    /// Processors for that engine: a `taskyard serve --config` file.
    #[arg(long, conflicts_with = "base_url")]
    config: Option<PathBuf>,
    /// Work against the server at this URL: taskyard's, or any that speaks
    /// Parallel's Task API.
    #[arg(long)]
    base_url: Option<String>,
    /// The server's API key.
    #[arg(long, env = "PARALLEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl Target {
    pub fn open(&self) -> Result<Client, Failure> {
        if let Some(base) = &self.base_url {
            return Ok(Client::remote(base, self.api_key.clone()));
        }
        let db = Location::parse(self.db.as_deref().unwrap_or("taskyard.db"));
        let mut config = taskyard::faces::default_config();
        if let Some(path) = &self.config {
            let file = taskyard::config::FileConfig::load(path).map_err(Failure::usage)?;
            config.registry = file.registry().map_err(Failure::usage)?;
        }
        let engine = Engine::open(db.clone(), config).map_err(|error| Failure {
            message: format!("cannot open the database {db}: {error}"),
            code: 3,
        })?;
        Ok(Client::embedded(engine))
    }
}

/// Exit codes: 3 when the server or database could not be reached, 2 for
/// a refused key, 1 for anything else the server refused.
impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        let code = match &error {
            ClientError::Unreachable(_) => 3,
            ClientError::Refused {
                status: 401 | 403, ..
            } => 2,
            ClientError::Refused { .. } | ClientError::Invalid(_) => 1,
        };
        Failure {
            message: error.to_string(),
            code,
        }
    }
}
