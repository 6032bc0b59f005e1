//! A task's webhook (spec 3.2 `webhookUri`/`webhookMethod`, choice 7):
//! which ones are called, and the body the engine's deliverer sends.
//!
//! Nextcloud calls the URI with `{"task": Task}` when the task ends. The
//! engine delivers by POST only (signed, retried, kept across `kill -9`),
//! so a task's webhook is called when its method is `HTTP:POST` and its
//! host is in the face's `webhook_hosts_allowed` (none by default:
//! offline); any other is kept with the task and not called. Owns the
//! choice and the rendering; the sending is the engine's.

use serde_json::json;

use super::config::NcConfig;
use super::records::{self, TaskRecord};
use super::{handlers, wire, FACE_NAME};
use crate::engine::Engine;
use crate::model::{Run, WebhookTarget};
use crate::webhooks::WebhookRender;

/// The only method the engine's deliverer sends.
pub const DELIVERED_METHOD: &str = "HTTP:POST";

/// The target the run is made with, or `None` when the task's webhook is
/// only kept: no URI, another method, a host not allowed here or by the
/// engine's own `webhook_hosts_allowed`.
pub fn target(config: &NcConfig, engine: &Engine, record: &TaskRecord) -> Option<WebhookTarget> {
    let url = record.webhook_uri.as_deref()?;
    if record.webhook_method.as_deref() != Some(DELIVERED_METHOD) {
        return None;
    }
    let host = crate::webhooks::host_of(url)?;
    let allowed = config
        .webhook_hosts_allowed
        .iter()
        .any(|name| name.eq_ignore_ascii_case(host));
    let target = WebhookTarget {
        url: url.to_string(),
        face: FACE_NAME.to_string(),
        owner: Some(record.id.to_string()),
    };
    (allowed && engine.check_webhook(Some(&target)).is_empty()).then_some(target)
}

/// `{"task": Task}` as of the run's end; the target's owner is the task id.
pub struct NextcloudWebhooks;

impl WebhookRender for NextcloudWebhooks {
    fn body(&self, engine: &Engine, run: &Run, owner: Option<&str>) -> Result<String, String> {
        let id: u64 = owner
            .and_then(|owner| owner.parse().ok())
            .ok_or_else(|| format!("run {} names no Nextcloud task", run.id))?;
        let record = records::task(engine, id)
            .map_err(|error| format!("task {id} does not read: {error:?}"))?
            .ok_or_else(|| format!("no Nextcloud task {id}"))?;
        let output = handlers::output_of(engine, run)
            .map_err(|error| format!("task {id}'s output does not read: {error:?}"))?;
        Ok(json!({ "task": wire::task(&record, run, output.as_ref()) }).to_string())
    }

    fn delivery_id(&self, id: &str) -> String {
        id.to_string()
    }
}
