//! A worker's webhook (spec 4.6): its URL and token, kept on the worker's
//! record; the deliveries themselves are the engine's outbox.
//!
//! Each turn of a worker with a webhook is an engine run whose webhook
//! target names the worker as its owner, so that the engine lists the
//! worker's delivery attempts (`executions`) by it. At each attempt the
//! engine asks [`HandingerWebhooks`] for the body (the turn's
//! TaskWithTurns, as of that turn) and the `X-Handinger-Token` header (the
//! worker's token then, so a regenerated token is used from the next
//! attempt on). Signing, retries and the attempt log are the engine's.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{HError, Result};
use super::limits::{EXECUTIONS_PER_PAGE, WEBHOOK_URL_CHARS_MAX};
use super::records::{self, Task, Worker};
use super::{wire, FACE_NAME};
use crate::engine::Engine;
use crate::model::{Run, WebhookTarget};
use crate::webhooks::WebhookRender;

/// A worker's webhook as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerWebhook {
    pub url: String,
    /// Sent as `X-Handinger-Token`; minted when a URL is first set.
    pub token: String,
    /// This server as the client reached it when the URL was set: where
    /// the links in a delivered task point.
    pub base: String,
}

/// The Webhook object (spec 2.5): both null when none is set.
pub fn webhook_json(worker: &Worker) -> Value {
    match &worker.webhook {
        Some(webhook) => json!({"url": webhook.url, "token": webhook.token}),
        None => json!({"url": null, "token": null}),
    }
}

/// The engine target a new turn of `worker` carries, if it has a webhook.
/// The URL is the one set when the turn (or the schedule that fires it)
/// was made.
pub fn target(worker: &Worker) -> Option<WebhookTarget> {
    worker.webhook.as_ref().map(|webhook| WebhookTarget {
        url: webhook.url.clone(),
        face: FACE_NAME.to_string(),
        owner: Some(worker.id.clone()),
    })
}

fn new_token() -> String {
    format!("hwt_{}", uuid::Uuid::new_v4().simple())
}

/// `PUT /api/workers/{id}/webhook`: `{"url": "..."}` sets the URL (the
/// token is kept, or minted the first time), `{"url": null}` clears both.
pub fn update(
    engine: &Engine,
    worker_id: &str,
    body: &serde_json::Map<String, Value>,
    base: &str,
) -> Result<Value> {
    let mut worker = records::live_worker(engine, worker_id)?;
    match body.get("url") {
        None => return Err(HError::bad_request("url is required: a URL or null")),
        Some(Value::Null) => worker.webhook = None,
        Some(Value::String(url)) => {
            check_url(engine, url)?;
            let token = worker
                .webhook
                .as_ref()
                .map_or_else(new_token, |webhook| webhook.token.clone());
            worker.webhook = Some(WorkerWebhook {
                url: url.clone(),
                token,
                base: base.to_string(),
            });
        }
        Some(_) => return Err(HError::bad_request("url must be a string or null")),
    }
    records::save_worker(engine, &worker)?;
    Ok(webhook_json(&worker))
}

/// `DELETE /api/workers/{id}/webhook`.
pub fn delete(engine: &Engine, worker_id: &str) -> Result<Value> {
    let mut worker = records::live_worker(engine, worker_id)?;
    if worker.webhook.take().is_some() {
        records::save_worker(engine, &worker)?;
    }
    Ok(webhook_json(&worker))
}

/// `POST /api/workers/{id}/webhook/regenerate-token`: a new token for the
/// URL set; with none set there is no token to make, and the nulls say so.
pub fn regenerate_token(engine: &Engine, worker_id: &str) -> Result<Value> {
    let mut worker = records::live_worker(engine, worker_id)?;
    if let Some(webhook) = &mut worker.webhook {
        webhook.token = new_token();
        records::save_worker(engine, &worker)?;
    }
    Ok(webhook_json(&worker))
}

/// An http(s) URL of at most `WEBHOOK_URL_CHARS_MAX` characters; `http://`
/// only to this machine (spec choice 9), and a host the server allows.
fn check_url(engine: &Engine, url: &str) -> Result<()> {
    let length = url.chars().count();
    if length > WEBHOOK_URL_CHARS_MAX {
        return Err(HError::bad_request(format!(
            "url is {length} characters, at most {WEBHOOK_URL_CHARS_MAX} (WEBHOOK_URL_CHARS_MAX)"
        )));
    }
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("https://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("http://") {
        let host = host_of(rest);
        if !matches!(host, "127.0.0.1" | "localhost" | "::1") {
            return Err(HError::bad_request(format!(
                "url must be https, or http to this machine (127.0.0.1, localhost, [::1]); not {url}"
            )));
        }
        rest
    } else {
        return Err(HError::bad_request(format!(
            "url must be an http(s) URL, not {url}"
        )));
    };
    if host_of(rest).is_empty() {
        return Err(HError::bad_request(format!("url {url} names no host")));
    }
    if !engine.webhook_allowed(url) {
        return Err(HError::bad_request(format!(
            "the host of {url} is not in this server's webhook_hosts_allowed"
        )));
    }
    Ok(())
}

/// The host of what follows a URL's scheme, without port or credentials.
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    }
}

/// `GET /api/workers/{id}/webhook/executions?page=N`: the worker's delivery
/// attempts, newest first, `EXECUTIONS_PER_PAGE` a page (spec 4.6).
pub fn executions(engine: &Engine, worker_id: &str, query: &str) -> Result<Value> {
    let worker = records::live_worker(engine, worker_id)?;
    let page = page_of(query)?;
    let offset = (page - 1).saturating_mul(EXECUTIONS_PER_PAGE as u64);
    let (attempts, total) = engine.owner_attempts(
        &worker.id,
        usize::try_from(offset).unwrap_or(usize::MAX),
        EXECUTIONS_PER_PAGE,
    )?;
    let mut logs = Vec::with_capacity(attempts.len());
    for attempt in attempts {
        let task = task_of_run(engine, &attempt.run_id)?;
        logs.push(json!({
            "id": format!("whx_{}", attempt.seq),
            "createdAt": wire::time(attempt.started_at),
            "durationMs": attempt.duration_ms,
            "requestStatus": if attempt.delivered() { "success" } else { "error" },
            "responseStatus": attempt.code,
            "errorMessage": attempt.error,
            "taskId": task.as_ref().map(|task| task.id.clone()),
            "taskTitle": task.as_ref().map(|task| task.title.clone()),
            "url": attempt.url,
            "workerId": worker.id,
        }));
    }
    let per_page = EXECUTIONS_PER_PAGE as u64;
    Ok(json!({
        "logs": logs,
        "page": page,
        // Page 1 exists, empty, when there is nothing yet.
        "pageCount": total.div_ceil(per_page).max(1),
        "totalCount": total,
    }))
}

/// `page`: a whole number from 1, 1 when absent.
fn page_of(query: &str) -> Result<u64> {
    match super::handlers::query_value(query, "page") {
        None => Ok(1),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|page| *page >= 1)
            .ok_or_else(|| {
                HError::bad_request(format!("page must be a whole number from 1, not {text:?}"))
            }),
    }
}

/// The task a run is a turn of, if it is one of this face's.
fn task_of_run(engine: &Engine, run_id: &str) -> Result<Option<Task>> {
    let Some(interaction) = engine.run_interaction(run_id)? else {
        return Ok(None);
    };
    let Some(task_id) = interaction.strip_prefix(&format!("{FACE_NAME}:")) else {
        return Ok(None);
    };
    match records::task(engine, task_id)? {
        Some(task) => Ok(Some(task)),
        None => super::schedules::fired_task(engine, task_id),
    }
}

/// The face's rendering of a delivery: the TaskWithTurns as of the turn
/// that ended, with the worker's token.
pub struct HandingerWebhooks;

impl WebhookRender for HandingerWebhooks {
    fn body(
        &self,
        engine: &Engine,
        run: &Run,
        owner: Option<&str>,
    ) -> std::result::Result<String, String> {
        let task = task_of_run(engine, &run.id)
            .map_err(|error| error.message)?
            .ok_or_else(|| format!("run {} is no Handinger task's turn", run.id))?;
        let worker = match owner {
            Some(id) => records::worker(engine, id).map_err(|error| error.message)?,
            None => None,
        }
        .unwrap_or_else(|| super::handlers::gone_worker(&task));
        let mut turns = engine
            .interaction(&task.interaction())
            .map_err(|error| error.to_string())?;
        if let Some(position) = turns.iter().position(|turn| turn.run.id == run.id) {
            turns.truncate(position + 1);
        }
        let base = worker
            .webhook
            .as_ref()
            .map_or("http://127.0.0.1", |webhook| webhook.base.as_str());
        Ok(wire::task_with_turns(&task, &turns, &worker, base).to_string())
    }

    fn delivery_id(&self, id: &str) -> String {
        format!("whd_{id}")
    }

    fn headers(&self, engine: &Engine, owner: Option<&str>) -> Vec<(String, String)> {
        let token = owner
            .and_then(|id| records::worker(engine, id).ok().flatten())
            .and_then(|worker| worker.webhook)
            .map(|webhook| webhook.token);
        token
            .map(|token| vec![("X-Handinger-Token".to_string(), token)])
            .unwrap_or_default()
    }
}
