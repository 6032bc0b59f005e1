//! A client of Parallel's Task API for taskyard's own commands (`taskyard
//! enrich`, the group and run commands): the face of an engine in this
//! process, or any server that speaks the API (taskyard's, or the hosted
//! one) over HTTP. Both answer Parallel's wire as JSON values, so a
//! command is written once and behaves the same either way.
//!
//! Owns the wire calls and their one error type; must not hold command
//! logic or exit codes (the command line maps [`ClientError`]).

use std::time::Duration;

use serde_json::{json, Value};

use super::wire::{AddRuns, RunInput};
use super::Api;
use crate::engine::{Engine, GroupRunsQuery};

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The server could not be reached, or its answer not read.
    Unreachable(String),
    /// The server (or the engine) said no, with this status.
    Refused { status: u16, message: String },
    /// An answer or a request that is not what the API says.
    Invalid(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(message)
            | ClientError::Refused { message, .. }
            | ClientError::Invalid(message) => f.write_str(message),
        }
    }
}

pub enum Client {
    Embedded(Api),
    Remote(Remote),
}

pub struct Remote {
    base: String,
    key: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// The Parallel face of an engine in this process.
    pub fn embedded(engine: Engine) -> Client {
        Client::Embedded(Api::new(engine))
    }

    /// A server at `base` (`http://127.0.0.1:8080`, or the hosted API).
    pub fn remote(base: &str, key: Option<String>) -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(600)))
            .http_status_as_error(false)
            .build()
            .into();
        Client::Remote(Remote {
            base: base.trim_end_matches('/').to_string(),
            key,
            agent,
        })
    }

    /// Makes a group; answers its id.
    pub fn create_group(&self, metadata: Value) -> Result<String, ClientError> {
        let group = match self {
            Client::Embedded(api) => {
                let metadata = metadata.as_object().cloned();
                to_value(api.create_group(metadata).map_err(refused)?)
            }
            Client::Remote(remote) => remote.call(
                "POST",
                "/v1beta/tasks/groups",
                Some(&json!({ "metadata": metadata })),
                &[],
            )?,
        };
        text(&group, "taskgroup_id")
    }

    /// Adds `inputs` to the group in one request; answers the new runs' ids
    /// in input order. `key` makes a retried add add nothing more (on a
    /// taskyard server; the hosted API ignores it).
    pub fn add_runs(
        &self,
        group: &str,
        inputs: Vec<Value>,
        default_task_spec: Option<Value>,
        key: &str,
    ) -> Result<Vec<String>, ClientError> {
        let body = json!({"inputs": inputs, "default_task_spec": default_task_spec});
        let answer = match self {
            Client::Embedded(api) => {
                let request: AddRuns = serde_json::from_value(body).map_err(|error| {
                    ClientError::Invalid(format!("a run input is not valid: {error}"))
                })?;
                to_value(api.add_runs(group, request).map_err(refused)?)
            }
            Client::Remote(remote) => remote.call(
                "POST",
                &format!("/v1beta/tasks/groups/{group}/runs"),
                Some(&body),
                &[("Idempotency-Key", key)],
            )?,
        };
        Ok(answer["run_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The group as Parallel answers it (`status.task_run_status_counts`,
    /// `status.is_active`, `status.num_task_runs`).
    pub fn group(&self, group: &str) -> Result<Value, ClientError> {
        match self {
            Client::Embedded(api) => Ok(to_value(api.get_group(group).map_err(refused)?)),
            Client::Remote(remote) => {
                remote.call("GET", &format!("/v1beta/tasks/groups/{group}"), None, &[])
            }
        }
    }

    /// Each run of the group, in the order it was added, as the data of a
    /// `task_run.state` event with its input and output.
    pub fn group_runs(&self, group: &str, each: &mut dyn FnMut(Value)) -> Result<(), ClientError> {
        match self {
            Client::Embedded(api) => {
                let query = GroupRunsQuery {
                    after: 0,
                    status: None,
                    include_request: true,
                    include_output: true,
                };
                api.group_runs(group, &query, |event| {
                    each(event.json());
                    true
                })
                .map_err(refused)
            }
            Client::Remote(remote) => remote.events(
                &format!(
                    "/v1beta/tasks/groups/{group}/runs?include_input=true&include_output=true"
                ),
                each,
            ),
        }
    }

    /// A run input as Parallel's wire has it, for `inputs` of `add_runs`.
    pub fn run_input(input: Value, processor: &str) -> Value {
        to_value(RunInput::new(input, processor))
    }
}

impl Remote {
    /// One JSON request; a non-2xx answer is a failure with the server's
    /// message, a connection that fails is unreachable.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = if method == "GET" {
            let mut request = self.agent.get(&url);
            if let Some(key) = &self.key {
                request = request.header("x-api-key", key);
            }
            request.call()
        } else {
            let mut request = self
                .agent
                .post(&url)
                .header("content-type", "application/json");
            if let Some(key) = &self.key {
                request = request.header("x-api-key", key);
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.send(body.map(Value::to_string).unwrap_or_default().as_bytes())
        };
        let mut response = response
            .map_err(|error| ClientError::Unreachable(format!("cannot reach {url}: {error}")))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|error| {
            ClientError::Unreachable(format!("reading the answer of {url}: {error}"))
        })?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Refused {
                status,
                message: format!(
                    "{method} {url} answered {status}: {}",
                    server_message(&text)
                ),
            });
        }
        serde_json::from_str(&text)
            .map_err(|error| ClientError::Invalid(format!("{url} answered no JSON: {error}")))
    }

    /// Reads an SSE answer to its end, handing each event's data on.
    fn events(&self, path: &str, each: &mut dyn FnMut(Value)) -> Result<(), ClientError> {
        use std::io::BufRead;
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url).header("accept", "text/event-stream");
        if let Some(key) = &self.key {
            request = request.header("x-api-key", key);
        }
        let mut response = request
            .call()
            .map_err(|error| ClientError::Unreachable(format!("cannot reach {url}: {error}")))?;
        let status = response.status().as_u16();
        if status != 200 {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            return Err(ClientError::Refused {
                status,
                message: format!("GET {url} answered {status}: {}", server_message(&text)),
            });
        }
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let line = line.map_err(|error| {
                ClientError::Unreachable(format!("reading the stream {url}: {error}"))
            })?;
            if let Some(data) = line.strip_prefix("data: ") {
                let data: Value = serde_json::from_str(data).map_err(|error| {
                    ClientError::Invalid(format!("{url} sent an event that is not JSON: {error}"))
                })?;
                if data["type"] == "error" {
                    return Err(ClientError::Invalid(format!(
                        "the stream {url} failed: {}",
                        data["error"]["message"]
                    )));
                }
                each(data);
            }
        }
        Ok(())
    }
}

/// The message of a Parallel error body, else the body itself.
fn server_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|body| body["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.chars().take(500).collect())
}

fn to_value(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn text(value: &Value, key: &str) -> Result<String, ClientError> {
    value[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ClientError::Invalid(format!("the answer has no {key}: {value}")))
}

/// An engine refusal, in the words and status the face gives it.
fn refused(error: crate::engine::Error) -> ClientError {
    let error = super::error::ApiError::from(error);
    ClientError::Refused {
        status: error.status,
        message: error.message,
    }
}
