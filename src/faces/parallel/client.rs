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
use super::{Api, ListQuery, ScheduleVerb};
use crate::engine::{Engine, GroupRunsQuery, StreamKind};

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

    /// A page of groups, newest first (`after`: the last id of the page
    /// before; `active`: only active or inactive ones).
    pub fn list_groups(
        &self,
        limit: usize,
        after: Option<&str>,
        active: Option<bool>,
    ) -> Result<Value, ClientError> {
        match self {
            Client::Embedded(api) => {
                let query = ListQuery {
                    limit,
                    after: after.map(str::to_string),
                    is_active: active,
                    ..ListQuery::default()
                };
                Ok(to_value(api.list_groups(&query).map_err(refused)?))
            }
            Client::Remote(remote) => {
                let mut path = format!("/v1beta/tasks/groups?limit={limit}");
                if let Some(after) = after {
                    path.push_str(&format!("&after={after}"));
                }
                if let Some(active) = active {
                    path.push_str(&format!("&is_active={active}"));
                }
                remote.call("GET", &path, None, &[])
            }
        }
    }

    /// Cancels a group's active runs; answers the group.
    pub fn cancel_group(&self, group: &str) -> Result<Value, ClientError> {
        match self {
            Client::Embedded(api) => Ok(to_value(api.cancel_group(group).map_err(refused)?)),
            Client::Remote(remote) => remote.call(
                "POST",
                &format!("/v1beta/tasks/groups/{group}/cancel"),
                None,
                &[],
            ),
        }
    }

    /// Follows a group's events stream (each event's data), until the group
    /// is inactive and the stream ends, or `each` answers false.
    pub fn group_events(
        &self,
        group: &str,
        each: &mut dyn FnMut(Value) -> bool,
    ) -> Result<(), ClientError> {
        match self {
            Client::Embedded(api) => {
                let lifetime = Duration::from_secs(super::limits::GROUP_EVENTS_TIMEOUT_S_MAX);
                let events = api
                    .subscribe(StreamKind::GroupEvents(group.to_string()), 0, lifetime)
                    .map_err(refused)?;
                for event in events {
                    if !each(event.map_err(refused)?.json()) {
                        break;
                    }
                }
                Ok(())
            }
            Client::Remote(remote) => {
                let mut going = true;
                remote.events(
                    &format!("/v1beta/tasks/groups/{group}/events"),
                    &mut |data| {
                        if going {
                            going = each(data);
                        }
                    },
                )
            }
        }
    }

    /// A page of runs, newest first, by status and group when given.
    pub fn list_runs(
        &self,
        limit: usize,
        after: Option<&str>,
        status: Option<&str>,
        group: Option<&str>,
    ) -> Result<Value, ClientError> {
        match self {
            Client::Embedded(api) => {
                let status = match status {
                    Some(name) => {
                        Some(crate::model::RunStatus::parse(name).ok_or_else(|| {
                            ClientError::Invalid(format!("no run status {name:?}"))
                        })?)
                    }
                    None => None,
                };
                let query = ListQuery {
                    limit,
                    after: after.map(str::to_string),
                    status,
                    taskgroup_id: group.map(str::to_string),
                    ..ListQuery::default()
                };
                Ok(to_value(api.list_runs(&query).map_err(refused)?))
            }
            Client::Remote(remote) => {
                let mut path = format!("/v1/tasks/runs?limit={limit}");
                for (name, value) in [
                    ("after", after),
                    ("status", status),
                    ("taskgroup_id", group),
                ] {
                    if let Some(value) = value {
                        path.push_str(&format!("&{name}={value}"));
                    }
                }
                remote.call("GET", &path, None, &[])
            }
        }
    }

    /// A run as `GET /v1/tasks/runs/{id}` answers it.
    pub fn run(&self, run: &str) -> Result<Value, ClientError> {
        match self {
            Client::Embedded(api) => Ok(to_value(api.get_run(run).map_err(refused)?)),
            Client::Remote(remote) => {
                remote.call("GET", &format!("/v1/tasks/runs/{run}"), None, &[])
            }
        }
    }

    /// A finished run's result (`run` and `output`); call it on a run that
    /// has ended, as it waits otherwise.
    pub fn run_result(&self, run: &str) -> Result<Value, ClientError> {
        match self {
            Client::Embedded(api) => Ok(to_value(
                api.wait_for_result(run, Duration::from_secs(1))
                    .map_err(refused)?,
            )),
            Client::Remote(remote) => {
                remote.call("GET", &format!("/v1/tasks/runs/{run}/result"), None, &[])
            }
        }
    }

    /// A run's events stream, each event's data, to its end.
    pub fn run_events(&self, run: &str, each: &mut dyn FnMut(Value)) -> Result<(), ClientError> {
        match self {
            Client::Embedded(api) => {
                let lifetime = Duration::from_secs(super::limits::RUN_EVENTS_STREAM_S_MAX);
                let events = api
                    .subscribe(StreamKind::RunEvents(run.to_string()), 0, lifetime)
                    .map_err(refused)?;
                for event in events {
                    each(event.map_err(refused)?.json());
                }
                Ok(())
            }
            Client::Remote(remote) => {
                remote.events(&format!("/v1beta/tasks/runs/{run}/events"), each)
            }
        }
    }

    /// Every schedule.
    pub fn schedules(&self) -> Result<Value, ClientError> {
        match self {
            Client::Embedded(api) => Ok(to_value(api.list_schedules().map_err(refused)?)),
            Client::Remote(remote) => remote.call("GET", "/v1/schedules", None, &[]),
        }
    }

    /// Pauses, resumes or cancels a schedule; answers it.
    pub fn change_schedule(&self, id: &str, verb: ScheduleVerb) -> Result<Value, ClientError> {
        match self {
            Client::Embedded(api) => Ok(to_value(api.change_schedule(id, verb).map_err(refused)?)),
            Client::Remote(remote) => {
                let action = match verb {
                    ScheduleVerb::Pause => "pause",
                    ScheduleVerb::Resume => "resume",
                    ScheduleVerb::Cancel => "cancel",
                };
                remote.call("POST", &format!("/v1/schedules/{id}/{action}"), None, &[])
            }
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

/// The id of a group in an answer of this API.
pub fn group_id_of(group: &Value) -> &Value {
    &group["taskgroup_id"]
}

/// The group a run in an answer of this API belongs to, if any.
pub fn run_group_of(run: &Value) -> &Value {
    &run["taskgroup_id"]
}
