//! The session and routine-run streams (spec 1.9): SSE framed with `\n`
//! only (the SDK's parser splits on a bare line feed), `event:` and a
//! one-line JSON `data:`, the current state first, one event per status
//! change, closed after a terminal status. Owns the frames; following the
//! run is the server's (`sse::follow`) and the engine's.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;

use super::error::Result;
use super::records::{self, Session};
use super::runs::{max_attempts, read, run_id_of};
use super::wire::{self, RunDocument};
use super::ArchAstro;
use crate::engine::{Engine, StreamKind};
use crate::model::{Event, EventData, Output, Run, RunStatus, Timestamp};
use crate::server::sse::{self, Chunk, Render};
use crate::server::Reply;

/// The stream labels, counted in the metrics.
pub const SESSION_LABEL: &str = "archastro_session";
pub const RUN_LABEL: &str = "archastro_routine_run";

/// `GET /api/v1/agent_sessions/{id}/stream`: `session_update` events of
/// the session's latest turn, to its end.
pub fn session(face: &ArchAstro, engine: &Engine, id: &str) -> Result<Reply> {
    let session = records::session(engine, id)?;
    let turns = engine.interaction(&session.interaction())?;
    let render = Arc::new(SessionEvents {
        engine: engine.clone(),
        started: turns.first().map(|turn| turn.run.created_at),
        session,
        last: Mutex::new(None),
    });
    let lifetime = face.stream_lifetime();
    let Some(latest) = turns.last().map(|turn| turn.run.id.clone()) else {
        // No turn yet (`start_idle`): its one state, then the end.
        let data = wire::session(&render.session, None, None).to_string();
        return Ok(Reply::Stream(
            SESSION_LABEL,
            Box::new(move |out| {
                sse::snapshot(render, out, |send| {
                    send("session_update", &data);
                    Ok::<(), String>(())
                })
            }),
        ));
    };
    let engine = engine.clone();
    Ok(Reply::Stream(
        SESSION_LABEL,
        Box::new(move |out| {
            sse::follow(
                &engine,
                StreamKind::RunEvents(latest),
                0,
                lifetime,
                render,
                out,
            )
        }),
    ))
}

/// A turn's run events as `session_update` frames: the session as of
/// each status change (its record as read when the stream opened).
struct SessionEvents {
    engine: Engine,
    session: Session,
    started: Option<Timestamp>,
    /// The status last sent: `cancelling` and `cancelled` are one change.
    last: Mutex<Option<&'static str>>,
}

impl Render for SessionEvents {
    fn event(&self, event: &Event, chunk: &mut Chunk) {
        let EventData::RunStatus { run, output } = event.data() else {
            return;
        };
        let status = wire::session_status(Some(run));
        if self.last.lock().replace(status) == Some(status) {
            return;
        }
        let output = output_of(&self.engine, run, output.as_ref());
        let data = wire::session(
            &self.session,
            self.started.or(Some(run.created_at)),
            Some((run, output.as_ref())),
        );
        chunk.frame("session_update", &data.to_string());
    }

    fn error(&self, message: &str, chunk: &mut Chunk) {
        error_frame(message, chunk);
    }

    fn lifetime_over(&self, chunk: &mut Chunk) {
        timeout_frame(chunk);
    }
}

/// A completed run's output: the event's, else read (a status event
/// need not carry it).
fn output_of(engine: &Engine, run: &Run, output: Option<&Output>) -> Option<Output> {
    if output.is_some() || run.status != RunStatus::Completed {
        return output.cloned();
    }
    engine
        .wait_for_result(&run.id, Duration::ZERO)
        .ok()
        .map(|(_, output)| output)
}

/// The hosted end of a stream at its maximum duration (spec 1.9).
fn timeout_frame(chunk: &mut Chunk) {
    let data = json!({"error": {"code": "stream_timeout",
        "message": "the stream reached its maximum duration (STREAM_S_MAX); open it again"}});
    chunk.frame("error", &data.to_string());
}

fn error_frame(message: &str, chunk: &mut Chunk) {
    let data = json!({"error": {"code": "internal", "message": message}});
    chunk.frame("error", &data.to_string());
}

/// `GET /api/v1/agent_routine_runs/{run}/stream`: `run_update` events.
pub fn routine_run(face: &ArchAstro, engine: &Engine, id: &str) -> Result<Reply> {
    let run_id = run_id_of(id)?;
    let lifetime = face.stream_lifetime();
    let (run, _, document) = read(engine, &run_id)?;
    let render = Arc::new(RunEvents {
        engine: engine.clone(),
        document,
        app: face.app().to_string(),
        max_attempts: max_attempts(engine, &run.processor),
        last: Mutex::new(None),
    });
    let engine = engine.clone();
    Ok(Reply::Stream(
        RUN_LABEL,
        Box::new(move |out| {
            sse::follow(
                &engine,
                StreamKind::RunEvents(run_id),
                0,
                lifetime,
                render,
                out,
            )
        }),
    ))
}

struct RunEvents {
    engine: Engine,
    document: RunDocument,
    app: String,
    max_attempts: u32,
    last: Mutex<Option<&'static str>>,
}

impl Render for RunEvents {
    fn event(&self, event: &Event, chunk: &mut Chunk) {
        let EventData::RunStatus { run, output } = event.data() else {
            return;
        };
        let status = wire::run_status(run).0;
        if self.last.lock().replace(status) == Some(status) {
            return;
        }
        let output = output_of(&self.engine, run, output.as_ref());
        let data = wire::routine_run(
            run,
            output.as_ref(),
            &self.document,
            &self.app,
            self.max_attempts,
        );
        chunk.frame("run_update", &data.to_string());
    }

    fn error(&self, message: &str, chunk: &mut Chunk) {
        error_frame(message, chunk);
    }

    fn lifetime_over(&self, chunk: &mut Chunk) {
        timeout_frame(chunk);
    }
}
