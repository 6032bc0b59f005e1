//! Agent sessions (spec 3.1 and 4.1): one engine run per turn, chained in
//! the engine interaction `archastro:<session id>`, so a follow-up turn's
//! processor sees the earlier ones. The session's status is its latest
//! turn's; a message opens a new turn, queued behind a turn still active
//! (the engine runs an interaction's turns one at a time, in order).

use serde_json::{json, Map, Value};

use super::error::{AError, Result};
use super::handlers::{optional_name, optional_object, optional_string, required_long_text};
use super::limits::{
    INBOX_MESSAGES_MAX, MAX_TURNS_DEFAULT, MAX_TURNS_MAX, SESSIONS_LIMIT_DEFAULT,
    SESSIONS_SCANNED_MAX,
};
use super::query::Query;
use super::records::{self, Session};
use super::{ids, wire, ArchAstro};
use crate::engine::Engine;
use crate::model::{InteractionTurn, RunRequest, RunStatus, TaskSpec, Timestamp};

const STATUSES: &[&str] = &[
    "pending",
    "running",
    "waiting",
    "completed",
    "failed",
    "cancelled",
];

/// The metadata key that names a turn's session on its engine run.
pub const SESSION_METADATA_KEY: &str = "archastro_session";

/// Locks that make each change of a session's record (read, change,
/// save) one at a time per session in this process: two messages sent at
/// once each keep their inbox entry, and a `PATCH` beside a message loses
/// neither. Striped by the session id, so sessions do not wait on each
/// other (but for the rare two that share a stripe).
static SESSION_STRIPES: [parking_lot::Mutex<()>; 64] = [const { parking_lot::Mutex::new(()) }; 64];

fn session_lock(id: &str) -> parking_lot::MutexGuard<'static, ()> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    let stripe = hasher.finish() as usize % SESSION_STRIPES.len();
    SESSION_STRIPES[stripe].lock()
}

/// `POST /api/v1/agent_sessions`.
pub fn create(face: &ArchAstro, engine: &Engine, body: &Map<String, Value>) -> Result<Value> {
    let mut problems = Vec::new();
    let agent = optional_string(body, "agent")?;
    if agent.is_none() {
        problems.push(("agent".to_string(), "is required".to_string()));
    }
    let instructions = match required_long_text(body, "instructions") {
        Ok(text) => Some(text),
        Err(error) => {
            problems.extend(error.fields);
            None
        }
    };
    let (Some(agent), Some(instructions)) = (agent, instructions) else {
        return Err(AError::invalid_fields(problems));
    };
    let name = optional_name(body, "name")?;
    let metadata = optional_object(body, "metadata")?.unwrap_or_default();
    let max_runs_per_turn = positive(body, "max_runs_per_turn", 25, u64::from(u32::MAX))?;
    let max_tokens = positive(body, "max_tokens", 20_000, u64::from(u32::MAX))?;
    let max_turns = positive(body, "max_turns", MAX_TURNS_DEFAULT, MAX_TURNS_MAX)?;
    let start_idle = match body.get("start_idle") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(AError::invalid("start_idle", "must be true or false")),
    };
    let processor = face
        .processor_of(engine, &agent)
        .ok_or_else(|| AError::not_found(format!("Agent {agent} not found")))?;
    let session = Session {
        id: ids::mint(wire::SESSION_PREFIX),
        agent,
        processor,
        instructions: instructions.clone(),
        name,
        metadata,
        inbox: Vec::new(),
        max_runs_per_turn: json!(max_runs_per_turn),
        max_tokens: json!(max_tokens),
        max_turns,
        start_idle,
        created_at: Timestamp::now().micros(),
    };
    // The run first: a session is only acknowledged once its turn is.
    if !start_idle {
        engine.create_run(turn_request(&session, instructions))?;
    }
    records::insert_session(engine, &session)?;
    let turns = engine.interaction(&session.interaction())?;
    Ok(wire::session_of_turns(&session, &turns))
}

/// A positive whole number field, `default` when absent or `null`.
fn positive(body: &Map<String, Value>, key: &str, default: u64, max: u64) -> Result<u64> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value
            .as_u64()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| AError::invalid(key, format!("must be a whole number from 1 to {max}"))),
    }
}

/// One turn of `session`: `input` on its processor, the next run of its
/// interaction.
fn turn_request(session: &Session, input: String) -> RunRequest {
    let mut request = RunRequest::new(Value::String(input), session.processor.clone());
    request.task_spec = Some(TaskSpec {
        output_schema: json!({"type": "text"}),
        input_schema: None,
    });
    let mut metadata = Map::new();
    metadata.insert(SESSION_METADATA_KEY.into(), json!(session.id));
    request.metadata = Some(metadata);
    request.interaction = Some(session.interaction());
    request
}

fn read(engine: &Engine, id: &str) -> Result<(Session, Vec<InteractionTurn>)> {
    let session = records::session(engine, id)?;
    let turns = engine.interaction(&session.interaction())?;
    Ok((session, turns))
}

/// `GET /api/v1/agent_sessions/{id}`.
pub fn get(engine: &Engine, id: &str) -> Result<Value> {
    let (session, turns) = read(engine, id)?;
    Ok(wire::session_of_turns(&session, &turns))
}

/// `GET /api/v1/agent_sessions`: newest first, `limit` of them.
pub fn list(engine: &Engine, query: &Query) -> Result<Value> {
    let agents = query.list("agent")?;
    let statuses = query.list("status")?;
    if let Some(bad) = statuses.iter().find(|s| !STATUSES.contains(&s.as_str())) {
        return Err(AError::invalid(
            "status",
            format!("'{bad}' is not one of {}", STATUSES.join(", ")),
        ));
    }
    let routine_runs = query.list("routine_run")?;
    query.flag("exclude_system")?;
    let limit = query.limit(SESSIONS_LIMIT_DEFAULT)?;
    // Routine runs make no sessions (spec 3.2); no session is a system one.
    if !routine_runs.is_empty() {
        return Ok(json!({ "data": [] }));
    }
    let mut data = Vec::new();
    for session in records::sessions(engine, SESSIONS_SCANNED_MAX)? {
        if data.len() >= limit {
            break;
        }
        if !agents.is_empty() && !agents.contains(&session.agent) {
            continue;
        }
        let turns = engine.interaction(&session.interaction())?;
        let answer = wire::session_of_turns(&session, &turns);
        let status = answer["status"].as_str().unwrap_or_default();
        if !statuses.is_empty() && !statuses.iter().any(|s| s == status) {
            continue;
        }
        data.push(answer);
    }
    Ok(json!({ "data": data }))
}

/// `PATCH /api/v1/agent_sessions/{id}`: `metadata` replaces the map,
/// `name` the label; nothing else changes, in any status.
pub fn update(engine: &Engine, id: &str, body: &Map<String, Value>) -> Result<Value> {
    let _changing = session_lock(id);
    let (mut session, turns) = read(engine, id)?;
    let metadata = optional_object(body, "metadata")?;
    let name = optional_name(body, "name")?;
    if metadata.is_some() || name.is_some() {
        if let Some(metadata) = metadata {
            session.metadata = metadata;
        }
        if name.is_some() {
            session.name = name;
        }
        records::save_session(engine, &session)?;
    }
    Ok(wire::session_of_turns(&session, &turns))
}

fn active(status: RunStatus) -> bool {
    // A cancelling turn shows as `cancelled` (wire::session_status) and
    // needs no second cancel: the session is ended for cancel and delete
    // alike, whenever the processor's stop commits (later on PostgreSQL,
    // where the commit is a round trip away).
    !status.is_terminal() && status != RunStatus::Cancelling
}

/// `POST /api/v1/agent_sessions/{id}/cancel`: cancels every turn still
/// active; a session already ended is answered as it is.
pub fn cancel(engine: &Engine, id: &str) -> Result<Value> {
    let (session, turns) = read(engine, id)?;
    for turn in turns.iter().filter(|turn| active(turn.run.status)) {
        match engine.cancel_run(&turn.run.id) {
            // It ended meanwhile: nothing left to cancel.
            Ok(_) | Err(crate::engine::Error::Conflict { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    get(engine, &session.id)
}

/// `DELETE /api/v1/agent_sessions/{id}`: the record goes, the runs stay
/// in the engine's log; an active session is a 422.
pub fn delete(engine: &Engine, id: &str) -> Result<()> {
    let (session, turns) = read(engine, id)?;
    if turns.iter().any(|turn| active(turn.run.status)) {
        return Err(AError::invalid(
            "status",
            "an active session cannot be deleted: cancel it first",
        ));
    }
    records::delete_session(engine, &session.id)
}

/// `POST /api/v1/agent_sessions/{id}/message`: the message joins the
/// inbox and becomes the input of the session's next turn.
pub fn message(engine: &Engine, id: &str, body: &Map<String, Value>) -> Result<Value> {
    let changing = session_lock(id);
    let (mut session, turns) = read(engine, id)?;
    let content = required_long_text(body, "content")?;
    let role = optional_name(body, "role")?.unwrap_or_else(|| "user".into());
    let metadata = optional_object(body, "metadata")?.unwrap_or_default();
    let status = wire::session_status(turns.last().map(|turn| &turn.run));
    if status == "failed" || status == "cancelled" {
        return Err(AError::invalid(
            "status",
            format!("the session is {status}: it takes no more messages"),
        ));
    }
    if turns.len() as u64 >= session.max_turns {
        return Err(AError::invalid(
            "max_turns",
            format!("the session has had its {} turns", session.max_turns),
        ));
    }
    if session.inbox.len() >= INBOX_MESSAGES_MAX {
        return Err(AError::invalid(
            "inbox",
            format!("holds {INBOX_MESSAGES_MAX} messages, at most (INBOX_MESSAGES_MAX)"),
        ));
    }
    // An idle session's first turn carries its instructions too.
    let input = if turns.is_empty() {
        format!("{}\n\n{content}", session.instructions)
    } else {
        content.clone()
    };
    engine.create_run(turn_request(&session, input))?;
    session.inbox.push(json!({
        "id": ids::mint(wire::MESSAGE_PREFIX),
        "role": role,
        "content": content,
        "sender_id": null,
        "sender_type": "api_key",
        "sent_at": wire::time(Timestamp::now()),
        "metadata": metadata,
    }));
    records::save_session(engine, &session)?;
    drop(changing);
    get(engine, &session.id)
}
