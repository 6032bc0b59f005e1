//! Parallel's Task API as a library: the engine's calls in Parallel's wire
//! types, for the HTTP handlers and for Rust code (tests, benches) that
//! wants Parallel's shapes without HTTP.
//!
//! Owns the mapping both ways: wire ids (`trun_…`, `tgrp_…`) to the
//! engine's and back, wire requests to [`RunRequest`]s (the request as
//! sent travels as the run's document), engine results and events to wire
//! objects, and engine errors to errors that name wire ids. Holds no SQL,
//! no scheduling, no HTTP status.

use std::time::Duration;

use serde::Serialize;

use super::parse;
use super::render;
use super::wire::{
    self, engine_id, wire_group_id, wire_run_id, AddRunsResponse, RunInput, RunResult,
    GROUP_ID_PREFIX, RUN_ID_PREFIX,
};
use crate::engine::{
    self, Created, Engine, Error, GroupRunsQuery, Idempotency, Next, Result, StreamKind,
    Subscription,
};
use crate::model::{
    self, to_json, AddRuns, FieldError, FieldErrorKind, JsonObject, Loc, RunRequest, RunStatus,
    TaskSpec,
};
use crate::processors::Registry;

/// Filters of a list call (spec 10.3), wire ids and all.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: usize,
    /// The id of the previous page's last item.
    pub after: Option<String>,
    pub status: Option<RunStatus>,
    pub taskgroup_id: Option<String>,
    pub is_active: Option<bool>,
}

/// One page of a list, newest first (spec 10.3).
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Parallel's API over an engine. Clones share the engine.
#[derive(Clone)]
pub struct Api {
    engine: Engine,
}

/// The engine's id of a wire run id, or not found naming the wire id.
fn run_id(wire: &str) -> Result<&str> {
    engine_id(RUN_ID_PREFIX, wire).ok_or_else(|| not_found("run", wire))
}

fn group_id(wire: &str) -> Result<&str> {
    engine_id(GROUP_ID_PREFIX, wire).ok_or_else(|| not_found("group", wire))
}

fn schedule_id(wire: &str) -> Result<&str> {
    engine_id(wire::SCHEDULE_ID_PREFIX, wire).ok_or_else(|| not_found("schedule", wire))
}

/// What a schedule is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleVerb {
    Pause,
    Resume,
    Cancel,
}

fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}

/// An engine error with its ids on Parallel's wire, so that every message
/// names the id the client sent.
fn wire_error(error: Error) -> Error {
    let run = |id: String| wire_run_id(&id);
    match error {
        Error::NotFound { kind: "run", id } => not_found("run", &run(id)),
        Error::NotFound { kind: "group", id } => not_found("group", &wire_group_id(&id)),
        Error::Gone { kind: "run", id } => Error::Gone {
            kind: "run",
            id: run(id),
        },
        Error::Gone { kind: "group", id } => Error::Gone {
            kind: "group",
            id: wire_group_id(&id),
        },
        Error::NotFound {
            kind: "schedule",
            id,
        } => not_found("schedule", &format!("{}{id}", wire::SCHEDULE_ID_PREFIX)),
        Error::ScheduleConflict { schedule_id, state } => Error::ScheduleConflict {
            schedule_id: format!("{}{schedule_id}", wire::SCHEDULE_ID_PREFIX),
            state,
        },
        Error::RunFailed { run_id, error } => Error::RunFailed {
            run_id: run(run_id),
            error,
        },
        Error::RunCancelled { run_id } => Error::RunCancelled {
            run_id: run(run_id),
        },
        Error::Timeout { run_id, status } => Error::Timeout {
            run_id: run(run_id),
            status,
        },
        Error::Conflict { run_id, status } => Error::Conflict {
            run_id: run(run_id),
            status,
        },
        other => other,
    }
}

/// The engine's request for a wire run, with the face's warnings.
fn run_request(input: &RunInput, default_spec: Option<&TaskSpec>) -> RunRequest {
    let mut request = input.to_request();
    let auto = TaskSpec::auto();
    let effective = input.task_spec.as_ref().or(default_spec).unwrap_or(&auto);
    request.warnings.extend(parse::spec_warning(effective));
    request
}

/// The engine's add for a wire add.
fn add_request(request: &wire::AddRuns) -> AddRuns {
    AddRuns {
        runs: request
            .inputs
            .iter()
            .map(|input| run_request(input, request.default_task_spec.as_ref()))
            .collect(),
        default_task_spec: request.default_task_spec.clone(),
    }
}

/// Everything of the engine that has no wire (shutdown, health, recovery,
/// metrics) is reached through the API as well: an `Api` is the engine
/// seen through Parallel's wire. Calls that take or give wire shapes are
/// `Api`'s own and come first.
impl std::ops::Deref for Api {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl Api {
    pub fn new(engine: Engine) -> Api {
        Api { engine }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The processor names served.
    pub fn registry(&self) -> &Registry {
        self.engine.registry()
    }

    pub fn create_group(&self, metadata: Option<JsonObject>) -> Result<wire::Group> {
        check_group_metadata(&metadata)?;
        let group = self.engine.create_group(metadata).map_err(wire_error)?;
        Ok(wire::Group::from(&group))
    }

    /// [`Api::create_group`] at most once per Idempotency-Key (spec 10.5).
    pub fn create_group_idempotent(
        &self,
        metadata: Option<JsonObject>,
        key: Idempotency,
    ) -> Result<Created<wire::Group>> {
        check_group_metadata(&metadata)?;
        let created = self
            .engine
            .create_group_once(
                metadata,
                key,
                std::sync::Arc::new(|group| to_json(&wire::Group::from(group))),
            )
            .map_err(wire_error)?;
        Ok(map_created(created, |group| wire::Group::from(&group)))
    }

    /// The problems of an add-runs request that parsed: the wire's own
    /// limits and the engine's checks, each named by its input's position
    /// in the request (`positions[i]` for `request.inputs[i]`).
    pub fn check_add_runs(&self, request: &wire::AddRuns, positions: &[usize]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(spec) = &request.default_task_spec {
            errors.extend(
                self.engine
                    .check_task_spec(spec)
                    .into_iter()
                    .map(|e| e.prefixed(&[Loc::Key("default_task_spec".into())])),
            );
        }
        for (input, &index) in request.inputs.iter().zip(positions) {
            errors.extend(
                self.check_run_input(input)
                    .into_iter()
                    .map(|e| e.prefixed(&[Loc::Key("inputs".into()), Loc::Index(index)])),
            );
        }
        errors
    }

    /// The problems of a run input that parsed (see [`Api::check_add_runs`]).
    pub fn check_run_input(&self, input: &RunInput) -> Vec<FieldError> {
        let mut errors =
            parse::check_run_input(input, None, self.engine.registry(), self.engine.schemas());
        errors.extend(self.engine.check_webhook(input.webhook_target().as_ref()));
        if let Some(previous) = &input.previous_interaction_id {
            let known = wire::engine_id(wire::RUN_ID_PREFIX, previous)
                .is_some_and(|id| self.engine.run_exists(id));
            if !known {
                errors.push(FieldError::new(
                    vec![Loc::Key("previous_interaction_id".into())],
                    FieldErrorKind::ValueError,
                    format!(
                        "previous_interaction_id '{previous}' is the interaction_id of no run \
                         (never made, or pruned)"
                    ),
                ));
            }
        }
        errors
    }

    /// Makes a schedule of `run` (a taskyard extension).
    pub fn create_schedule(&self, when: model::When, run: RunInput) -> Result<wire::Schedule> {
        let errors: Vec<FieldError> = self
            .check_run_input(&run)
            .into_iter()
            .map(|e| e.prefixed(&[Loc::Key("run".into())]))
            .collect();
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let schedule = self
            .engine
            .create_schedule(model::ScheduleRequest {
                when,
                run: run_request(&run, None),
            })
            .map_err(wire_error)?;
        Ok(wire::Schedule::from(&schedule))
    }

    pub fn get_schedule(&self, schedule_id: &str) -> Result<wire::Schedule> {
        let schedule = self
            .engine
            .get_schedule(self::schedule_id(schedule_id)?)
            .map_err(wire_error)?;
        Ok(wire::Schedule::from(&schedule))
    }

    /// Every schedule, newest first, on one page.
    pub fn list_schedules(&self) -> Result<Page<wire::Schedule>> {
        let schedules = self.engine.list_schedules().map_err(wire_error)?;
        Ok(Page {
            data: schedules.iter().map(wire::Schedule::from).collect(),
            next_cursor: None,
        })
    }

    /// Pauses, resumes or cancels a schedule.
    pub fn change_schedule(
        &self,
        schedule_id: &str,
        change: ScheduleVerb,
    ) -> Result<wire::Schedule> {
        let id = self::schedule_id(schedule_id)?;
        let schedule = match change {
            ScheduleVerb::Pause => self.engine.pause_schedule(id),
            ScheduleVerb::Resume => self.engine.resume_schedule(id),
            ScheduleVerb::Cancel => self.engine.cancel_schedule(id),
        }
        .map_err(wire_error)?;
        Ok(wire::Schedule::from(&schedule))
    }

    /// The runs a schedule made, oldest first, on one page.
    pub fn schedule_runs(&self, schedule_id: &str) -> Result<Page<wire::Run>> {
        let runs = self
            .engine
            .schedule_runs(self::schedule_id(schedule_id)?)
            .map_err(wire_error)?;
        Ok(Page {
            data: runs.iter().map(wire::Run::from).collect(),
            next_cursor: None,
        })
    }

    /// A run's webhook deliveries, oldest first (a taskyard extension).
    pub fn webhook_deliveries(&self, run_id: &str) -> Result<Page<wire::WebhookDelivery>> {
        let deliveries = self
            .engine
            .run_deliveries(self::run_id(run_id)?)
            .map_err(wire_error)?;
        Ok(Page {
            data: deliveries.iter().map(wire::WebhookDelivery::from).collect(),
            next_cursor: None,
        })
    }

    /// Adds runs to a group, all or nothing (invariant 8).
    pub fn add_runs(&self, group_id: &str, request: wire::AddRuns) -> Result<AddRunsResponse> {
        let id = self::group_id(group_id)?;
        self.check_add(&request)?;
        let added = self
            .engine
            .add_runs(id, add_request(&request))
            .map_err(wire_error)?;
        Ok(AddRunsResponse::from(&added))
    }

    /// [`Api::add_runs`] at most once per Idempotency-Key.
    pub fn add_runs_idempotent(
        &self,
        group_id: &str,
        request: wire::AddRuns,
        key: Idempotency,
    ) -> Result<Created<AddRunsResponse>> {
        let id = self::group_id(group_id)?;
        self.check_add(&request)?;
        let created = self
            .engine
            .add_runs_once(
                id,
                add_request(&request),
                key,
                std::sync::Arc::new(|added| to_json(&AddRunsResponse::from(added))),
            )
            .map_err(wire_error)?;
        Ok(map_created(created, |added| AddRunsResponse::from(&added)))
    }

    /// The whole request's problems in the wire's terms (count, limits,
    /// processors, schemas), before the engine sees it.
    fn check_add(&self, request: &wire::AddRuns) -> Result<()> {
        let count = request.inputs.len();
        if count == 0 || count > super::limits::RUNS_PER_REQUEST_MAX {
            return Err(Error::Invalid(vec![FieldError::limit(
                vec![Loc::Key("inputs".into())],
                "RUNS_PER_REQUEST_MAX",
                super::limits::RUNS_PER_REQUEST_MAX as u64,
                count as u64,
            )]));
        }
        let positions: Vec<usize> = (0..count).collect();
        let errors = self.check_add_runs(request, &positions);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(errors))
        }
    }

    /// Creates a standalone run (no group).
    pub fn create_run(&self, input: RunInput) -> Result<wire::Run> {
        self.check_run(&input)?;
        let run = self
            .engine
            .create_run(run_request(&input, None))
            .map_err(wire_error)?;
        Ok(wire::Run::from(&run))
    }

    /// [`Api::create_run`] at most once per Idempotency-Key.
    pub fn create_run_idempotent(
        &self,
        input: RunInput,
        key: Idempotency,
    ) -> Result<Created<wire::Run>> {
        self.check_run(&input)?;
        let created = self
            .engine
            .create_run_once(
                run_request(&input, None),
                key,
                std::sync::Arc::new(|run| to_json(&wire::Run::from(run))),
            )
            .map_err(wire_error)?;
        Ok(map_created(created, |run| wire::Run::from(&run)))
    }

    fn check_run(&self, input: &RunInput) -> Result<()> {
        let errors = self.check_run_input(input);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(errors))
        }
    }

    pub fn get_run(&self, run_id: &str) -> Result<wire::Run> {
        let run = self
            .engine
            .get_run(self::run_id(run_id)?)
            .map_err(wire_error)?;
        Ok(wire::Run::from(&run))
    }

    /// A run of a group; not found also when the run is in another group.
    pub fn get_group_run(&self, group_id: &str, run_id: &str) -> Result<wire::Run> {
        let run_engine_id = self::run_id(run_id)?;
        let Some(group_engine_id) = engine_id(GROUP_ID_PREFIX, group_id) else {
            return Err(not_found("run", run_id));
        };
        let run = self
            .engine
            .get_group_run(group_engine_id, run_engine_id)
            .map_err(wire_error)?;
        Ok(wire::Run::from(&run))
    }

    /// The run's input as given, plus the group default as `task_spec` when
    /// the run had none (spec 2.2 choice). A run created without a document
    /// (through the library, or another face) answers the request Parallel
    /// would have sent.
    pub fn get_run_input(&self, run_id: &str) -> Result<RunInput> {
        let stored = self
            .engine
            .get_run_request(self::run_id(run_id)?)
            .map_err(wire_error)?;
        let mut input = match &stored.document {
            Some(document) => serde_json::from_str(document)
                .map_err(|e| Error::Internal(format!("stored input does not decode: {e}")))?,
            None => {
                let mut input = RunInput::new(stored.input.clone(), stored.run.processor.clone());
                input.metadata = stored.run.metadata.clone();
                if !stored.spec_from_group {
                    input.task_spec = Some(stored.task_spec.clone());
                }
                input
            }
        };
        if stored.spec_from_group {
            input.task_spec = Some(stored.task_spec);
        }
        Ok(input)
    }

    pub fn get_group(&self, group_id: &str) -> Result<wire::Group> {
        let group = self
            .engine
            .get_group(self::group_id(group_id)?)
            .map_err(wire_error)?;
        Ok(wire::Group::from(&group))
    }

    /// Waits up to `timeout` for the run's result (spec 4.2): a failed or
    /// cancelled run is an error, as is one still active at the end.
    pub fn wait_for_result(&self, run_id: &str, timeout: Duration) -> Result<RunResult> {
        let (run, output) = self
            .engine
            .wait_for_result(self::run_id(run_id)?, timeout)
            .map_err(wire_error)?;
        Ok(RunResult {
            run: wire::Run::from(&run),
            output: wire::Output::from(&output),
        })
    }

    /// Cancels a run (spec 10.1).
    pub fn cancel_run(&self, run_id: &str) -> Result<wire::Run> {
        let run = self
            .engine
            .cancel_run(self::run_id(run_id)?)
            .map_err(wire_error)?;
        Ok(wire::Run::from(&run))
    }

    /// Cancels every active run of a group (spec 10.2).
    pub fn cancel_group(&self, group_id: &str) -> Result<wire::Group> {
        let group = self
            .engine
            .cancel_group(self::group_id(group_id)?)
            .map_err(wire_error)?;
        Ok(wire::Group::from(&group))
    }

    /// Follows a stream from just after `after` for at most `timeout`;
    /// `stream` names wire ids.
    pub fn subscribe(&self, stream: StreamKind, after: u64, timeout: Duration) -> Result<Events> {
        let stream = engine_stream(stream)?;
        let subscription = self
            .engine
            .subscribe(stream, after, timeout)
            .map_err(wire_error)?;
        Ok(Events { subscription })
    }

    /// The group runs stream (spec 4.7): one `task_run.state` event per run
    /// whose cursor is above `query.after`, in the order the runs were
    /// added, from one snapshot. `each` gets each event; answering false
    /// stops early.
    pub fn group_runs(
        &self,
        group_id: &str,
        query: &GroupRunsQuery,
        mut each: impl FnMut(wire::Event) -> bool,
    ) -> Result<()> {
        self.engine
            .group_runs(self::group_id(group_id)?, query, |item| {
                each(render::group_run(&item))
            })
            .map_err(wire_error)
    }

    /// A page of runs, newest first (spec 10.3). `after` is the id of the
    /// previous page's last run; an unknown group gives an empty page.
    pub fn list_runs(&self, query: &ListQuery) -> Result<Page<wire::Run>> {
        let mut engine_query = engine::ListQuery {
            limit: query.limit,
            after: cursor(RUN_ID_PREFIX, query.after.as_deref())?,
            status: query.status,
            ..engine::ListQuery::default()
        };
        if let Some(group) = &query.taskgroup_id {
            match engine_id(GROUP_ID_PREFIX, group) {
                Some(id) => engine_query.group_id = Some(id.to_string()),
                None => {
                    return Ok(Page {
                        data: Vec::new(),
                        next_cursor: None,
                    })
                }
            }
        }
        let page = self.engine.list_runs(&engine_query).map_err(wire_error)?;
        Ok(Page {
            data: page.data.iter().map(wire::Run::from).collect(),
            next_cursor: page.next_cursor.as_deref().map(wire_run_id),
        })
    }

    /// A page of groups, newest first (spec 10.3).
    pub fn list_groups(&self, query: &ListQuery) -> Result<Page<wire::Group>> {
        let engine_query = engine::ListQuery {
            limit: query.limit,
            after: cursor(GROUP_ID_PREFIX, query.after.as_deref())?,
            is_active: query.is_active,
            ..engine::ListQuery::default()
        };
        let page = self.engine.list_groups(&engine_query).map_err(wire_error)?;
        Ok(Page {
            data: page.data.iter().map(wire::Group::from).collect(),
            next_cursor: page.next_cursor.as_deref().map(wire_group_id),
        })
    }
}

/// A stream named by wire ids, as the engine names it.
pub fn engine_stream(stream: StreamKind) -> Result<StreamKind> {
    Ok(match stream {
        StreamKind::GroupEvents(id) => StreamKind::GroupEvents(group_id(&id)?.to_string()),
        StreamKind::RunEvents(id) => StreamKind::RunEvents(run_id(&id)?.to_string()),
    })
}

/// A list cursor: an id of the listed kind (spec 10.3). It need not exist:
/// ids sort by creation time, so any id is a position.
fn cursor(prefix: &str, after: Option<&str>) -> Result<Option<String>> {
    match after {
        None => Ok(None),
        Some(id) => match engine_id(prefix, id) {
            Some(id) => Ok(Some(id.to_string())),
            None => Err(Error::Invalid(vec![FieldError::value_error(
                vec![Loc::Key("after".into())],
                format!("'{id}' is not a cursor of this list (an id starting with {prefix})"),
            )])),
        },
    }
}

/// A group's metadata against the wire's limits (spec 8).
fn check_group_metadata(metadata: &Option<JsonObject>) -> Result<()> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    let errors = parse::check_metadata(metadata, false);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(errors))
    }
}

fn map_created<T, U>(created: Created<T>, map: impl FnOnce(T) -> U) -> Created<U> {
    match created {
        Created::Fresh { value, body } => Created::Fresh {
            value: map(value),
            body,
        },
        Created::Replayed { body } => Created::Replayed { body },
    }
}

/// A stream in Parallel's wire events: a blocking iterator.
pub struct Events {
    subscription: Subscription,
}

impl Events {
    /// The next event, waiting at most `wait`.
    pub fn next_within(&mut self, wait: Duration) -> Result<Option<wire::Event>> {
        match self.subscription.next_within(wait)? {
            Next::Event(event) => Ok(Some(render::to_wire(&event))),
            Next::Idle | Next::End => Ok(None),
        }
    }

    /// The engine's subscription underneath.
    pub fn subscription(&mut self) -> &mut Subscription {
        &mut self.subscription
    }
}

impl Iterator for Events {
    type Item = Result<wire::Event>;

    fn next(&mut self) -> Option<Result<wire::Event>> {
        self.subscription
            .next()
            .map(|event| event.map(|event| render::to_wire(&event)))
    }
}
