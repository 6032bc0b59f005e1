//! The Nextcloud face's error form, mapped once: every way a request can
//! fail (spec 1.2, 1.4, 1.7, 1.8 and section 3) and how each reads on the
//! wire, enveloped or not, from the server's refusals and the engine's
//! errors alike.

use serde_json::json;

use super::envelope::{self, Format, Ocs, Origin, Version};
use crate::engine;
use crate::server::{Refusal, Reply};

/// One failed request.
#[derive(Debug, Clone, PartialEq)]
pub enum NcError {
    /// A controller's failure: `status` with `{"message": ...}` as data.
    Controller { status: u16, message: String },
    /// Wrong credentials, refused before routing: 997 `Unauthorised`.
    Unauthorised,
    /// No credentials on a route that needs a login: 997.
    NotLoggedIn,
    /// No route under `/ocs/v{1,2}.php/`: 998.
    NoRoute,
    /// A missing or ill-typed parameter (PHP's TypeError): 996.
    TypeError,
    /// A known path with another method: 405, empty body.
    MethodNotAllowed,
    /// Logged in without `OCS-APIRequest`: 412, plain JSON.
    Csrf,
    /// An ExApp-only route called by a user (phase 1: by anyone): 412.
    ExAppRequired,
    /// Over the schedule limit: 429, empty body.
    RateLimited,
}

pub type Result<T, E = NcError> = std::result::Result<T, E>;

/// What a request asked for that decides how its answer reads.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    pub version: Option<Version>,
    /// The `format` parameter (query or body).
    pub format: Option<String>,
    pub accept: Option<String>,
}

impl Asked {
    pub fn version(&self) -> Version {
        self.version.unwrap_or(Version::V2)
    }

    pub fn controller_format(&self) -> Format {
        Format::negotiate(self.format.as_deref(), self.accept.as_deref())
    }

    pub fn router_format(&self) -> Format {
        Format::router(self.format.as_deref())
    }

    /// A controller's answer in the envelope.
    pub fn answer(&self, answer: Ocs, headers: Vec<(&'static str, String)>) -> Reply {
        envelope::render(
            answer,
            self.version(),
            self.controller_format(),
            Origin::Controller,
            headers,
        )
    }
}

/// An unenveloped answer with a body of plain JSON, or none.
fn plain(status: u16, body: Option<serde_json::Value>) -> Reply {
    match body {
        Some(body) => Reply::Json(status, body.to_string(), Vec::new()),
        None => Reply::Text(status, String::new(), "text/html; charset=UTF-8"),
    }
}

impl NcError {
    pub fn new(status: u16, message: impl Into<String>) -> NcError {
        NcError::Controller {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> NcError {
        NcError::new(400, message)
    }

    pub fn into_reply(self, asked: &Asked) -> Reply {
        let empty = || json!([]);
        let router = |status: u16, message: &str, headers| {
            envelope::render(
                Ocs {
                    status,
                    message: message.to_string(),
                    data: empty(),
                },
                asked.version(),
                asked.router_format(),
                Origin::Router,
                headers,
            )
        };
        match self {
            NcError::Controller { status, message } => asked.answer(
                Ocs {
                    status,
                    message: String::new(),
                    data: json!({ "message": message }),
                },
                Vec::new(),
            ),
            NcError::Unauthorised => router(
                997,
                "Unauthorised",
                vec![(
                    "WWW-Authenticate",
                    "Basic realm=\"Authorisation Required\"".to_string(),
                )],
            ),
            NcError::NotLoggedIn => asked.answer(
                Ocs {
                    status: 997,
                    message: "Current user is not logged in".into(),
                    data: empty(),
                },
                Vec::new(),
            ),
            NcError::NoRoute => router(998, NO_ROUTE_MESSAGE, Vec::new()),
            NcError::TypeError => router(996, "Internal Server Error\n", Vec::new()),
            NcError::MethodNotAllowed => plain(405, None),
            NcError::Csrf => plain(412, Some(json!({"message": "CSRF check failed"}))),
            NcError::ExAppRequired => plain(412, Some(json!({"message": "ExApp required"}))),
            NcError::RateLimited => plain(429, None),
        }
    }
}

/// `meta.message` of a 998 (spec 1.1), newline and all.
pub const NO_ROUTE_MESSAGE: &str = "Invalid query, please check the syntax. API specifications are here: http://www.freedesktop.org/wiki/Specifications/open-collaboration-services.\n";

/// The server's refusals, which come without the request: v2 from the
/// path where it tells, XML (the router's default).
pub fn refusal_reply(refusal: Refusal) -> Reply {
    let (asked, error) = match refusal {
        Refusal::NotFound { path, .. } => (
            Asked {
                version: Version::of(&path),
                ..Asked::default()
            },
            NcError::NoRoute,
        ),
        other => (Asked::default(), NcError::from(other)),
    };
    error.into_reply(&asked)
}

impl From<Refusal> for NcError {
    fn from(refusal: Refusal) -> NcError {
        match refusal {
            Refusal::Unauthorized => NcError::Unauthorised,
            Refusal::NotFound { .. } => NcError::NoRoute,
            Refusal::MethodNotAllowed { .. } => NcError::MethodNotAllowed,
            Refusal::BodyTooLarge { max, got } => NcError::new(
                413,
                format!("request body is {got} bytes, over {max} (BODY_BYTES_MAX)"),
            ),
            Refusal::BodyTimeout { timeout } => NcError::new(
                408,
                format!(
                    "request body not received within the read timeout ({} s)",
                    timeout.as_secs_f64()
                ),
            ),
            Refusal::BodyUnreadable(message) => {
                NcError::bad_request(format!("cannot read the request body: {message}"))
            }
            Refusal::StreamsFull { open, max } => NcError::new(
                503,
                format!("too many long requests: {open} open, at most {max} (STREAMS_OPEN_MAX)"),
            ),
            Refusal::Engine(error) => NcError::from(error),
            Refusal::RateLimited(_) => NcError::RateLimited,
        }
    }
}

impl From<engine::Error> for NcError {
    fn from(error: engine::Error) -> NcError {
        use engine::Error as E;
        match error {
            E::Invalid(errors) => {
                NcError::bad_request(crate::model::field_error::summarize(&errors, ""))
            }
            E::NotFound { .. } | E::Gone { .. } => NcError::new(404, "Task not found"),
            // Nextcloud says no more than this on a 500 (spec 3.3); the
            // cause goes to the log.
            other => {
                eprintln!("taskyard: nextcloud face: {other}");
                NcError::new(500, "Internal error")
            }
        }
    }
}
