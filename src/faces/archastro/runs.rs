//! Routine runs (spec 4.3): each is one engine run, invoked or fired by
//! its routine's schedule, read back here by its `arr_` id (the same
//! 128 bits as its `trun_` id on the Parallel face). The lists gather a
//! routine's invoked runs (the face's index records) and its scheduled
//! runs (the engine schedules' runs), newest first, with cursors.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::error::{AError, Result};
use super::limits::{ROUTINES_SCANNED_MAX, RUNS_LIMIT_DEFAULT, RUNS_SCANNED_MAX};
use super::query::Query;
use super::records::{self, Routine};
use super::wire::{self, RunDocument, RUN_PREFIX};
use super::{ids, ArchAstro};
use crate::engine::Engine;
use crate::limits::MAX_ATTEMPTS_DEFAULT;
use crate::model::{Output, Run, RunStatus};

const STATUSES: &[&str] = &[
    "pending",
    "running",
    "completed",
    "failed",
    "skipped",
    "cancelled",
];

fn not_found() -> AError {
    AError::not_found("Agent routine run not found")
}

/// A run, its output once completed, and its routine document; not found
/// unless the run is a routine run.
pub fn read(engine: &Engine, run_id: &str) -> Result<(Run, Option<Output>, RunDocument)> {
    let run = match engine.get_run(run_id) {
        Ok(run) => run,
        Err(crate::engine::Error::NotFound { .. } | crate::engine::Error::Gone { .. }) => {
            return Err(not_found())
        }
        Err(other) => return Err(other.into()),
    };
    let document = RunDocument::of(engine.get_run_request(run_id)?.document.as_deref())
        .ok_or_else(not_found)?;
    let output = if run.status == RunStatus::Completed {
        Some(engine.wait_for_result(run_id, Duration::ZERO)?.1)
    } else {
        None
    };
    Ok((run, output, document))
}

/// Attempts a run of `processor` gets.
pub fn max_attempts(engine: &Engine, processor: &str) -> u32 {
    engine
        .registry()
        .get(processor)
        .map_or(MAX_ATTEMPTS_DEFAULT, |config| config.max_attempts)
}

/// The AgentRoutineRun of an engine run.
pub fn get_engine_run(face: &ArchAstro, engine: &Engine, run_id: &str) -> Result<Value> {
    let (run, output, document) = read(engine, run_id)?;
    Ok(wire::routine_run(
        &run,
        output.as_ref(),
        &document,
        face.app(),
        max_attempts(engine, &run.processor),
    ))
}

/// The engine run an `arr_` id names.
pub fn run_id_of(wire_id: &str) -> Result<String> {
    ids::run_of(RUN_PREFIX, wire_id).ok_or_else(not_found)
}

/// `GET /api/v1/agent_routines/runs/{run}`.
pub fn get(face: &ArchAstro, engine: &Engine, id: &str) -> Result<Value> {
    get_engine_run(face, engine, &run_id_of(id)?)
}

/// `GET /api/v1/agent_routines/runs/{run}/journal`: preset runs keep no
/// journal (spec 4.3 choice).
pub fn journal(engine: &Engine, id: &str) -> Result<Value> {
    read(engine, &run_id_of(id)?)?;
    Ok(json!({"data": [], "has_more": false, "journal": null,
              "after_cursor": null, "before_cursor": null}))
}

/// Every run of `routines`, newest first: (run, its routine's agent).
fn gather(engine: &Engine, routines: &[Routine], all: bool) -> Result<Vec<(Run, String)>> {
    let agents: BTreeMap<&str, &str> = routines
        .iter()
        .map(|routine| (routine.id.as_str(), routine.agent.as_str()))
        .collect();
    let mut runs = Vec::new();
    let invoked = if all {
        records::invoked(engine, None, RUNS_SCANNED_MAX)?
    } else {
        let mut invoked = Vec::new();
        for routine in routines {
            invoked.extend(records::invoked(
                engine,
                Some(&routine.id),
                RUNS_SCANNED_MAX,
            )?);
        }
        invoked
    };
    for (routine, run_id) in invoked {
        let Some(agent) = agents.get(routine.as_str()) else {
            continue;
        };
        match engine.get_run(&run_id) {
            Ok(run) => runs.push((run, agent.to_string())),
            // Pruned by retention: gone from the lists too.
            Err(crate::engine::Error::NotFound { .. } | crate::engine::Error::Gone { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    for routine in routines {
        for schedule in records::schedules(engine, &routine.id)? {
            for run in engine.schedule_runs(&schedule)? {
                runs.push((run, routine.agent.clone()));
            }
        }
    }
    runs.sort_by(|a, b| b.0.id.cmp(&a.0.id));
    runs.dedup_by(|a, b| a.0.id == b.0.id);
    runs.truncate(RUNS_SCANNED_MAX);
    Ok(runs)
}

/// One page of `runs` (newest first) by the query's status, limit and
/// cursors (spec 1.7: `before_cursor` older, `after_cursor` newer).
fn page(
    face: &ArchAstro,
    engine: &Engine,
    runs: Vec<(Run, String)>,
    query: &Query,
) -> Result<Value> {
    let status = query.one("status")?;
    if let Some(bad) = status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(AError::invalid(
            "status",
            format!("'{bad}' is not one of {}", STATUSES.join(", ")),
        ));
    }
    let limit = query.limit(RUNS_LIMIT_DEFAULT)?;
    let cursor = |name: &str| -> Result<Option<String>> {
        query
            .one(name)?
            .map(|id| {
                ids::run_of(RUN_PREFIX, &id)
                    .ok_or_else(|| AError::invalid(name, format!("'{id}' is not a routine run id")))
            })
            .transpose()
    };
    let (before, after) = (cursor("before_cursor")?, cursor("after_cursor")?);
    let runs: Vec<(Run, String)> = runs
        .into_iter()
        .filter(|(run, _)| {
            status
                .as_deref()
                .is_none_or(|s| wire::run_status(run).0 == s)
        })
        .collect();
    let chosen: Vec<&(Run, String)> = if let Some(before) = &before {
        runs.iter()
            .filter(|(run, _)| run.id < *before)
            .take(limit)
            .collect()
    } else if let Some(after) = &after {
        let newer: Vec<_> = runs.iter().filter(|(run, _)| run.id > *after).collect();
        newer[newer.len().saturating_sub(limit)..].to_vec()
    } else {
        runs.iter().take(limit).collect()
    };
    let oldest = chosen.last().map(|(run, _)| run.id.clone());
    let newest = chosen.first().map(|(run, _)| run.id.clone());
    let before_cursor = oldest
        .filter(|oldest| runs.iter().any(|(run, _)| run.id < *oldest))
        .map(|id| ids::of_run(RUN_PREFIX, &id));
    let after_cursor = newest
        .filter(|newest| runs.iter().any(|(run, _)| run.id > *newest))
        .map(|id| ids::of_run(RUN_PREFIX, &id));
    let data = chosen
        .iter()
        .map(|(run, _)| get_engine_run(face, engine, &run.id))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({"data": data, "before_cursor": before_cursor, "after_cursor": after_cursor}))
}

/// `GET /api/v1/agent_routines/{id}/runs`.
pub fn of_routine(face: &ArchAstro, engine: &Engine, id: &str, query: &Query) -> Result<Value> {
    let routine = records::routine(engine, id)?;
    let runs = gather(engine, std::slice::from_ref(&routine), false)?;
    page(face, engine, runs, query)
}

/// `GET /api/v1/agent_routine_runs`: every routine's runs, `agent[]`
/// naming agents or routine lookup keys.
pub fn list(face: &ArchAstro, engine: &Engine, query: &Query) -> Result<Value> {
    let agents = query.list("agent")?;
    let routines = records::routines(engine, ROUTINES_SCANNED_MAX)?;
    let runs = gather(engine, &routines, true)?;
    let keys: BTreeMap<&str, (&str, Option<&str>)> = routines
        .iter()
        .map(|r| (r.id.as_str(), (r.agent.as_str(), r.text("lookup_key"))))
        .collect();
    let runs = if agents.is_empty() {
        runs
    } else {
        runs.into_iter()
            .filter(|(run, agent)| {
                let lookup_key = run
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get(super::routines::ROUTINE_METADATA_KEY))
                    .and_then(Value::as_str)
                    .and_then(|routine| keys.get(routine))
                    .and_then(|(_, key)| *key);
                agents
                    .iter()
                    .any(|wanted| wanted == agent || Some(wanted.as_str()) == lookup_key)
            })
            .collect()
    };
    page(face, engine, runs, query)
}
