//! Webhooks: where a run's end is to be told, and each delivery of that
//! news with its attempts.
//!
//! No I/O. What is sent (body, id form) is the face's; how it is signed
//! and retried is the engine's (`crate::webhooks`).

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// Where a run's terminal status is to be POSTed, and which face renders
/// what is sent (its body and the form of its `webhook-id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTarget {
    pub url: String,
    pub face: String,
    /// A key of the face's choosing that the run's delivery attempts are
    /// listed by ([`DeliveryAttempt`]); a Handinger worker's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet taken by a 2xx; tried again at `next_at`.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// No 2xx before the retries ran out (or the host is not allowed).
    Expired,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Expired,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// One delivery of a run's terminal status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The same on every attempt: 32 hex digits (a face adds its prefix).
    pub id: String,
    pub run_id: String,
    pub url: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When a pending delivery is tried next.
    pub next_at: Option<Timestamp>,
    /// When a pending delivery gives up.
    pub expires_at: Timestamp,
    /// The HTTP status the receiver answered last, if it answered.
    pub last_code: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

/// One attempt to make a delivery, as it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// Rises with every attempt: newer attempts have larger ones.
    pub seq: i64,
    /// The delivery's id, the same on all its attempts.
    pub delivery_id: String,
    pub run_id: String,
    pub url: String,
    pub started_at: Timestamp,
    pub duration_ms: u64,
    /// The receiver's HTTP status, if it answered.
    pub code: Option<u16>,
    /// Why the attempt failed, if it did.
    pub error: Option<String>,
}

impl DeliveryAttempt {
    /// A receiver took it (2xx).
    pub fn delivered(&self) -> bool {
        self.code.is_some_and(|code| (200..300).contains(&code))
    }
}
