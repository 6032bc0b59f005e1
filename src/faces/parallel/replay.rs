//! `replay`: record the answers of an upstream Parallel-compatible API
//! (in real use the hosted service) and replay them offline.
//!
//! A processor kind that this face contributes, since talking to the
//! upstream is speaking Parallel's wire as a client: `POST
//! /v1/tasks/runs`, then `GET .../result` until the run ends. The recorded
//! answers live in a fixtures file (`crate::processors::fixtures`), keyed
//! by what was asked. Modes: `record` asks the upstream every time and
//! stores the answer; `replay` answers from the file only, offline (a
//! missing key fails the run naming the key, or goes to a `fallback`
//! processor); `auto` replays what is there and records what is missing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::limits::{REPLAY_RESULT_POLL_S, REPLAY_UPSTREAM_WAIT_S_MAX};
use super::wire;
use crate::limits::RETRY_AFTER_MAX_S;
use crate::model::{self, Timestamp};
use crate::processors::fixtures::{self, Entry, Fixtures};
use crate::processors::kind::{Built, ConfigError, Kind, Section};
use crate::processors::{Processor, ProcessorError, RunContext};

/// What a `replay` processor does with a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Record,
    Replay,
    Auto,
}

/// `kind = "replay"`: `mode` and `fixtures` (required), `upstream_base_url`
/// and `upstream_key_env` (record and auto), `upstream_processor`,
/// `fallback`, `replay_duration` (`none` or `recorded`).
pub struct ReplayKind;

impl Kind for ReplayKind {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn build(&self, section: &Section<'_>) -> Result<Built, ConfigError> {
        let mode = match section.required_string("mode")?.as_str() {
            "record" => Mode::Record,
            "replay" => Mode::Replay,
            "auto" => Mode::Auto,
            other => {
                return Err(section.error(
                    "mode",
                    format!("must be 'record', 'replay' or 'auto', not '{other}'"),
                ))
            }
        };
        let path = section.dir().join(section.required_string("fixtures")?);
        let fixtures =
            Fixtures::open(&path).map_err(|message| section.error("fixtures", message))?;
        let upstream = match section.string("upstream_base_url")? {
            None if mode == Mode::Replay => None,
            None => {
                return Err(section.error(
                    "upstream_base_url",
                    "is required with mode 'record' or 'auto'",
                ))
            }
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(section.error("upstream_base_url", "must be an http:// or https:// URL"))
            }
            Some(url) => Some(Upstream {
                base_url: url.trim_end_matches('/').to_string(),
                key: match section.string("upstream_key_env")? {
                    None => None,
                    Some(name) => Some(std::env::var(&name).map_err(|_| {
                        section.error(
                            "upstream_key_env",
                            format!("the environment variable {name} is not set"),
                        )
                    })?),
                },
                agent: ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .max_redirects(0)
                    .proxy(None)
                    .build()
                    .into(),
            }),
        };
        let fallback = section.processor_name("fallback")?;
        if fallback.as_deref() == Some(section.name()) {
            return Err(section.error("fallback", "must name another processor"));
        }
        let replay_duration = match section.string("replay_duration")?.as_deref() {
            None | Some("none") => false,
            Some("recorded") => true,
            Some(other) => {
                return Err(section.error(
                    "replay_duration",
                    format!("must be 'none' or 'recorded', not '{other}'"),
                ))
            }
        };
        Ok(Built::new(Arc::new(ReplayProcessor {
            mode,
            fixtures: Arc::new(fixtures),
            upstream,
            upstream_processor: section.string("upstream_processor")?,
            fallback,
            replay_duration,
            upstream_ids: Mutex::new(HashMap::new()),
        })))
    }
}

/// The upstream API and its key.
struct Upstream {
    base_url: String,
    key: Option<String>,
    agent: ureq::Agent,
}

pub struct ReplayProcessor {
    mode: Mode,
    fixtures: Arc<Fixtures>,
    upstream: Option<Upstream>,
    /// The processor asked upstream; the run's own name when unset.
    upstream_processor: Option<String>,
    fallback: Option<String>,
    /// Replayed runs take as long as the recorded ones did.
    replay_duration: bool,
    /// Local run id → the upstream run id that answered it, so that a
    /// recorded follow-up continues the upstream's interaction.
    upstream_ids: Mutex<HashMap<String, String>>,
}

impl ReplayProcessor {
    pub fn fixtures_path(&self) -> &Path {
        self.fixtures.path()
    }
}

impl Processor for ReplayProcessor {
    fn run(&self, ctx: &RunContext<'_>) -> Result<model::Output, ProcessorError> {
        let processor = self.upstream_processor.as_deref().unwrap_or(ctx.processor);
        let key = fixtures::key(processor, ctx.input, ctx.task_spec, ctx.turns);
        if self.mode != Mode::Record {
            if let Some(entry) = self.fixtures.get(&key) {
                if self.replay_duration {
                    ctx.sleep(Duration::from_millis(entry.duration_ms))?;
                }
                return Ok(entry.output);
            }
        }
        if self.mode == Mode::Replay {
            if let Some(fallback) = &self.fallback {
                let Some(config) = ctx.processors.get(fallback) else {
                    return Err(ProcessorError::Permanent(format!(
                        "the fallback processor '{fallback}' is no longer configured"
                    )));
                };
                return config.processor.run(ctx);
            }
            return Err(ProcessorError::Permanent(format!(
                "no recorded answer for key {key} (processor '{processor}') in {}; \
                 record it with mode = \"record\" or \"auto\" and an upstream_base_url",
                self.fixtures.path().display()
            )));
        }
        let upstream = self
            .upstream
            .as_ref()
            .ok_or_else(|| ProcessorError::Permanent("no upstream_base_url".into()))?;
        let started = Instant::now();
        let previous = ctx
            .turns
            .last()
            .and_then(|turn| self.upstream_ids.lock().get(&turn.run_id).cloned());
        let upstream_id = upstream.create(processor, ctx, previous.as_deref())?;
        let output = upstream.wait(&upstream_id, ctx)?;
        self.upstream_ids
            .lock()
            .insert(ctx.run_id.to_string(), upstream_id.clone());
        let entry = Entry {
            key,
            processor: processor.to_string(),
            input: ctx.input.clone(),
            task_spec: serde_json::to_value(ctx.task_spec).unwrap_or(Value::Null),
            turns: ctx.turns.len(),
            output: output.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            recorded_at: Timestamp::now(),
            source_id: Some(upstream_id),
        };
        self.fixtures.put(entry).map_err(|message| {
            ProcessorError::Permanent(format!("the answer was not recorded: {message}"))
        })?;
        Ok(output)
    }
}

impl Upstream {
    fn post(&self, path: &str, wait: Duration) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base_url))
            .config()
            .timeout_global(Some(wait))
            .build();
        if let Some(key) = &self.key {
            request = request.header("x-api-key", key);
        }
        request
    }

    /// Starts the run upstream; answers its id.
    fn create(
        &self,
        processor: &str,
        ctx: &RunContext<'_>,
        previous: Option<&str>,
    ) -> Result<String, ProcessorError> {
        let mut body = json!({
            "input": ctx.input,
            "processor": processor,
            "task_spec": ctx.task_spec,
        });
        if let Some(previous) = previous {
            body["previous_interaction_id"] = json!(previous);
        }
        let answer = self
            .post("/v1/tasks/runs", Duration::from_secs(60))
            .header("content-type", "application/json")
            .send(body.to_string().as_bytes());
        let (code, retry_after, text) = read(answer, &self.base_url)?;
        if !(200..300).contains(&code) {
            return Err(refused(
                code,
                retry_after,
                &text,
                "creating the run upstream",
            ));
        }
        serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|run| run["run_id"].as_str().map(str::to_string))
            .ok_or_else(|| {
                ProcessorError::Transient(format!(
                    "the upstream's answer has no run_id: {text:.200}"
                ))
            })
    }

    /// Waits for the upstream run's result, a poll at a time, until the
    /// attempt's deadline (or `REPLAY_UPSTREAM_WAIT_S_MAX`).
    fn wait(&self, run_id: &str, ctx: &RunContext<'_>) -> Result<model::Output, ProcessorError> {
        let deadline = ctx
            .deadline
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(REPLAY_UPSTREAM_WAIT_S_MAX));
        let path = format!("/v1/tasks/runs/{run_id}/result");
        loop {
            if ctx.cancel.is_cancelled() {
                return Err(ProcessorError::Permanent("cancelled".into()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProcessorError::Transient(format!(
                    "upstream run {run_id} was still active at the attempt's deadline"
                )));
            }
            let poll = left.min(Duration::from_secs(REPLAY_RESULT_POLL_S));
            let answer = self
                .agent
                .get(format!(
                    "{}{path}?timeout={}",
                    self.base_url,
                    poll.as_secs().max(1)
                ))
                .config()
                .timeout_global(Some(poll + Duration::from_secs(10)))
                .build();
            let answer = match &self.key {
                Some(key) => answer.header("x-api-key", key),
                None => answer,
            }
            .call();
            let (code, retry_after, text) = read(answer, &self.base_url)?;
            match code {
                200 => {
                    let result: wire::RunResult = serde_json::from_str(&text).map_err(|e| {
                        ProcessorError::Transient(format!(
                            "the upstream's result does not read ({e}): {text:.200}"
                        ))
                    })?;
                    return Ok(model::Output::from(result.output));
                }
                // Still active: ask again.
                408 => {}
                // The hosted API's answer for a run that failed or was
                // cancelled (spec 4.2): final.
                404 => {
                    return Err(ProcessorError::Permanent(format!(
                        "upstream run {run_id} did not complete: {}",
                        message_of(&text)
                    )))
                }
                _ => {
                    return Err(refused(
                        code,
                        retry_after,
                        &text,
                        "waiting for the upstream run",
                    ))
                }
            }
        }
    }
}

type Read = (u16, Option<Duration>, String);

fn read(
    answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    base: &str,
) -> Result<Read, ProcessorError> {
    let mut response =
        answer.map_err(|e| ProcessorError::Transient(format!("upstream {base}: {e}")))?;
    let code = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(|seconds| Duration::from_secs_f64(seconds.min(RETRY_AFTER_MAX_S as f64)));
    let text = response.body_mut().read_to_string().map_err(|e| {
        ProcessorError::Transient(format!("upstream {base}: reading the answer: {e}"))
    })?;
    Ok((code, retry_after, text))
}

/// A refusal of the upstream: 408, 429 and 5xx are worth another attempt
/// (after its `Retry-After`), the rest fail the run with its message.
fn refused(code: u16, retry_after: Option<Duration>, text: &str, doing: &str) -> ProcessorError {
    let message = format!(
        "{doing}: the upstream answered {code}: {}",
        message_of(text)
    );
    match code {
        408 | 429 | 500..=599 => ProcessorError::Throttled {
            message,
            retry_after,
        },
        _ => ProcessorError::Permanent(message),
    }
}

/// The message of Parallel's error envelope, else the start of the text.
fn message_of(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|value| {
            value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| text.chars().take(300).collect())
}
