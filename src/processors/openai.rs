//! `openai`: asks an OpenAI-compatible chat-completions server (llama.cpp's
//! `llama-server`, Ollama, vLLM, LM Studio, or the hosted API) for each
//! attempt.
//!
//! The run's task spec, earlier turns and input become the messages; a
//! JSON output schema goes in `response_format` (`json_schema`, or
//! `json_object` with the schema in the system message for servers that
//! take only that). The reply's content is the output, its token usage is
//! kept with it. 429, 5xx, timeouts and unreadable replies are transient
//! (a `Retry-After` is honoured); any other 4xx fails the run with the
//! server's message. The API key is read from an environment variable the
//! config names, never from the config itself. Knows nothing of the store,
//! the scheduler or a face.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use serde_json::{json, Map, Value};

use super::kind::{Built, ConfigError, Kind, Section};
use super::{Processor, ProcessorError, RunContext};
use crate::limits::{OPENAI_REPLY_BYTES_MAX, OPENAI_REQUEST_TIMEOUT_MS, RETRY_AFTER_MAX_S};
use crate::model::{Content, Output, SchemaKind, Turn, Usage};

/// How often a request in flight is checked for a cancel.
const CANCEL_LOOK: Duration = Duration::from_millis(20);

/// How a JSON output schema is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `{"type": "json_schema", "json_schema": {...}}`: the server holds
    /// the model to the schema (llama.cpp, vLLM, Ollama, OpenAI).
    JsonSchema,
    /// `{"type": "json_object"}` with the schema in the system message, for
    /// servers that take only JSON mode.
    JsonObject,
}

/// `kind = "openai"`: `base_url` and `model` (required), `api_key_env`,
/// `system_prompt`, `response_format`, `temperature`, `max_tokens`.
pub(super) struct OpenAiKind;

impl Kind for OpenAiKind {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn build(&self, section: &Section<'_>) -> Result<Built, ConfigError> {
        let base_url = section.required_string("base_url")?;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(section.error("base_url", "must be an http:// or https:// URL"));
        }
        let model = section.required_string("model")?;
        let api_key = match section.string("api_key_env")? {
            None => None,
            Some(name) => Some(std::env::var(&name).map_err(|_| {
                section.error(
                    "api_key_env",
                    format!("the environment variable {name} is not set"),
                )
            })?),
        };
        let response_format = match section.string("response_format")?.as_deref() {
            None | Some("json_schema") => ResponseFormat::JsonSchema,
            Some("json_object") => ResponseFormat::JsonObject,
            Some(other) => {
                return Err(section.error(
                    "response_format",
                    format!("must be 'json_schema' or 'json_object', not '{other}'"),
                ))
            }
        };
        Ok(Built::new(Arc::new(OpenAiProcessor {
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            model,
            api_key,
            system_prompt: section.string("system_prompt")?,
            response_format,
            temperature: section.f64("temperature", 0.0, 2.0)?,
            max_tokens: section.u64("max_tokens", 1, 10_000_000)?,
            agent: agent(),
        })))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into()
}

/// One model behind one server.
#[derive(Clone)]
pub struct OpenAiProcessor {
    /// `{base_url}/chat/completions`.
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub system_prompt: Option<String>,
    pub response_format: ResponseFormat,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    agent: ureq::Agent,
}

/// What came back from the server, before it is read as an output.
struct Answer {
    code: u16,
    retry_after: Option<Duration>,
    body: String,
}

impl Processor for OpenAiProcessor {
    fn run(&self, ctx: &RunContext<'_>) -> Result<Output, ProcessorError> {
        let body = self.request_body(ctx).to_string();
        let timeout = ctx.deadline.map_or(
            Duration::from_millis(OPENAI_REQUEST_TIMEOUT_MS),
            |deadline| deadline.saturating_duration_since(Instant::now()),
        );
        // The request runs on a thread of its own so that a cancel or the
        // deadline ends the attempt at once; an abandoned request ends by
        // its own timeout, and its answer is dropped.
        let (sender, answer) = crossbeam_channel::bounded(1);
        let request = self.clone();
        std::thread::Builder::new()
            .name("taskyard-openai".into())
            .spawn(move || {
                let _ = sender.send(request.send(&body, timeout));
            })
            .map_err(|e| ProcessorError::Transient(format!("cannot start a request: {e}")))?;
        let answer = loop {
            if ctx.cancel.is_cancelled() {
                return Err(ProcessorError::Permanent("cancelled".into()));
            }
            match answer.recv_timeout(CANCEL_LOOK) {
                Ok(answer) => break answer,
                Err(RecvTimeoutError::Timeout) => {
                    if ctx
                        .deadline
                        .is_some_and(|deadline| Instant::now() >= deadline)
                    {
                        return Err(ProcessorError::Transient(format!(
                            "{} did not answer before the attempt's deadline (timeout_ms)",
                            self.url
                        )));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(ProcessorError::Transient("the request thread ended".into()))
                }
            }
        };
        let past_deadline = ctx
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline);
        let answer = answer.map_err(|error| {
            // The request's own timeout is the deadline: say which.
            ProcessorError::Transient(if past_deadline {
                format!(
                    "{} did not answer before the attempt's deadline (timeout_ms): {error}",
                    self.url
                )
            } else {
                error
            })
        })?;
        self.read_answer(answer, ctx)
    }
}

impl OpenAiProcessor {
    fn send(&self, body: &str, timeout: Duration) -> Result<Answer, String> {
        let mut request = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(timeout.max(Duration::from_millis(1))))
            .build()
            .header("content-type", "application/json");
        if let Some(key) = &self.api_key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let mut response = request
            .send(body.as_bytes())
            .map_err(|e| format!("{}: {e}", self.url))?;
        let code = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(retry_after);
        let body = response
            .body_mut()
            .with_config()
            .limit(OPENAI_REPLY_BYTES_MAX)
            .read_to_string()
            .map_err(|e| format!("{}: reading the reply: {e}", self.url))?;
        Ok(Answer {
            code,
            retry_after,
            body,
        })
    }

    /// The chat-completions request for this attempt.
    fn request_body(&self, ctx: &RunContext<'_>) -> Value {
        let schema = SchemaKind::of(&ctx.task_spec.output_schema);
        let mut system: Vec<String> = self.system_prompt.iter().cloned().collect();
        let mut body = Map::new();
        // A JSON spec's own `description` (a Handinger worker's
        // instructions) is what the model is asked to do.
        if let (SchemaKind::Json(_), Some(description)) = (
            &schema,
            ctx.task_spec
                .output_schema
                .get("description")
                .and_then(Value::as_str),
        ) {
            system.push(description.to_string());
        }
        match &schema {
            SchemaKind::Json(json_schema) => match self.response_format {
                ResponseFormat::JsonSchema => {
                    body.insert(
                        "response_format".into(),
                        json!({"type": "json_schema",
                                   "json_schema": {"name": "output", "schema": json_schema}}),
                    );
                    system.push("Answer with one JSON object.".into());
                }
                ResponseFormat::JsonObject => {
                    body.insert("response_format".into(), json!({"type": "json_object"}));
                    system.push(format!(
                        "Answer with one JSON object that matches this JSON Schema: {json_schema}"
                    ));
                }
            },
            SchemaKind::Text(description) => {
                let mut text = "Answer in plain text.".to_string();
                if let Some(description) = description {
                    text.push_str(&format!(" The answer: {description}"));
                }
                system.push(text);
            }
            _ => {}
        }
        let mut messages = Vec::new();
        if !system.is_empty() {
            messages.push(json!({"role": "system", "content": system.join("\n\n")}));
        }
        for turn in ctx.turns {
            messages.extend(turn_messages(turn));
        }
        messages.push(json!({"role": "user", "content": as_text(ctx.input)}));
        body.insert("model".into(), json!(self.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), json!(false));
        if let Some(temperature) = self.temperature {
            body.insert("temperature".into(), json!(temperature));
        }
        if let Some(max_tokens) = self.max_tokens {
            body.insert("max_tokens".into(), json!(max_tokens));
        }
        Value::Object(body)
    }

    fn read_answer(&self, answer: Answer, ctx: &RunContext<'_>) -> Result<Output, ProcessorError> {
        let server_message = || server_message(&answer.body);
        match answer.code {
            200..=299 => {}
            429 => {
                return Err(ProcessorError::Throttled {
                    message: format!("{} answered 429: {}", self.url, server_message()),
                    retry_after: answer.retry_after,
                })
            }
            500..=599 => {
                return Err(ProcessorError::Throttled {
                    message: format!(
                        "{} answered {}: {}",
                        self.url,
                        answer.code,
                        server_message()
                    ),
                    retry_after: answer.retry_after,
                })
            }
            code => {
                return Err(ProcessorError::Permanent(format!(
                    "{} answered {code}: {}",
                    self.url,
                    server_message()
                )))
            }
        }
        let malformed = |why: String| {
            ProcessorError::Transient(format!("{} sent a malformed reply: {why}", self.url))
        };
        let reply: Value = serde_json::from_str(&answer.body)
            .map_err(|e| malformed(format!("not JSON ({e}): {:.120}", answer.body)))?;
        let content = reply
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(format!("no choices[0].message.content in {reply:.200}")))?;
        let mut output = match SchemaKind::of(&ctx.task_spec.output_schema) {
            SchemaKind::Json(_) => match json_object(content) {
                Some(object) => Output::json(object, Vec::new()),
                None => {
                    return Err(malformed(format!(
                        "the output schema is json, but the content is not a JSON object: {content:.200}"
                    )))
                }
            },
            SchemaKind::Text(_) => Output::text(content, Vec::new()),
            _ => match json_object(content) {
                Some(object) => Output::json(object, Vec::new()),
                None => Output::text(content, Vec::new()),
            },
        };
        output.usage = reply.get("usage").map(|usage| Usage {
            input_tokens: usage
                .get("prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            output_tokens: usage
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        });
        Ok(output)
    }
}

/// An earlier turn as the chat's history: what was asked, and what the
/// model answered when that turn completed.
fn turn_messages(turn: &Turn) -> Vec<Value> {
    let mut messages = vec![json!({"role": "user", "content": as_text(&turn.input)})];
    if let Some(output) = &turn.output {
        let content = match &output.content {
            Content::Text(text) => text.clone(),
            Content::Json(object) => Value::Object(object.clone()).to_string(),
        };
        messages.push(json!({"role": "assistant", "content": content}));
    }
    messages
}

/// A value as a message's text: a string as it is, anything else as JSON.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The content as a JSON object, also when a model wrapped it in a
/// Markdown code fence.
fn json_object(content: &str) -> Option<Map<String, Value>> {
    let trimmed = content.trim();
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .unwrap_or(trimmed);
    match serde_json::from_str(unfenced.trim()) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// The server's own error message (`{"error": {"message": ...}}`, as
/// OpenAI and llama.cpp send it), else the start of the body.
fn server_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|value| {
        value
            .pointer("/error/message")
            .or_else(|| value.get("error"))
            .or_else(|| value.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    message.unwrap_or_else(|| body.chars().take(300).collect())
}

/// `Retry-After` in seconds (an HTTP date is not read: the backoff then
/// applies), at most `RETRY_AFTER_MAX_S`.
fn retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(RETRY_AFTER_MAX_S as f64)))
}
