//! Runs through the engine: create (alone or added to a group, all or
//! nothing), read, wait for a result, cancel, list.
//!
//! Every run request passes the checks of `checks.rs` here, whichever face
//! sent it, so a library user gets the same guarantees as a face. Holds no
//! SQL: rows come from and go to the store as ops.

use std::time::{Duration, Instant};

use super::checks;
use super::error::{not_found, Error, Result};
use super::idempotency::{created, fresh, keyed, Created, Idempotency, RenderAnswer};
use super::Engine;
use crate::limits::{INTERACTION_KEY_BYTES_MAX, MAX_ATTEMPTS_DEFAULT, RUNS_PER_REQUEST_MAX};
use crate::model::{
    is_id, new_id, to_json, AddRuns, AddedRuns, FieldError, FieldErrorKind, Loc, Output, Run,
    RunError, RunRequest, RunStatus, StoredRequest, TaskSpec,
};
use crate::store::{self, NewRun, Op, StreamKey};

/// Filters of a list of runs or groups, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: usize,
    /// The id of the previous page's last item: ids sort by creation time,
    /// so any well-formed id is a position in the list.
    pub after: Option<String>,
    pub status: Option<RunStatus>,
    pub group_id: Option<String>,
    pub is_active: Option<bool>,
}

/// One page of a list, newest first; `next_cursor` is the id of its last
/// item when another page follows.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl Engine {
    /// The engine's problems with one run request (processor, forcing
    /// keys, task spec), located relative to the request.
    pub fn check_run(&self, run: &RunRequest) -> Vec<FieldError> {
        let mut errors = checks::check_run(run, &self.inner.registry, &self.inner.schemas);
        errors.extend(self.check_webhook(run.webhook.as_ref()));
        if let Some(interaction) = &run.interaction {
            if interaction.is_empty() || interaction.len() > INTERACTION_KEY_BYTES_MAX {
                errors.push(FieldError::limit(
                    vec![Loc::Key("interaction".into())],
                    "INTERACTION_KEY_BYTES_MAX",
                    INTERACTION_KEY_BYTES_MAX as u64,
                    interaction.len() as u64,
                ));
            }
            if run.previous_run_id.is_some() {
                errors.push(FieldError::new(
                    vec![Loc::Key("previous_run_id".into())],
                    FieldErrorKind::ValueError,
                    "a run in an interaction follows its latest run: give no previous_run_id",
                ));
            }
        }
        if let Some(previous) = &run.previous_run_id {
            if !self.run_exists(previous) {
                errors.push(FieldError::new(
                    vec![Loc::Key("previous_run_id".into())],
                    FieldErrorKind::ValueError,
                    format!("no run {previous} to follow up (it was never made, or was pruned)"),
                ));
            }
        }
        errors
    }

    /// True when a run of this id is stored (a follow-up may name it). A
    /// read that fails counts as there: the request is not refused for
    /// the store's trouble, and the chain of turns stops where it breaks.
    pub fn run_exists(&self, run_id: &str) -> bool {
        is_id(run_id) && !matches!(self.inner.store.run(run_id), Ok(None))
    }

    /// A webhook whose host the configuration does not allow, at
    /// `["webhook", "url"]`.
    pub fn check_webhook(&self, webhook: Option<&crate::model::WebhookTarget>) -> Vec<FieldError> {
        match webhook {
            Some(target) if !self.inner.webhooks.allows(&target.url) => {
                vec![FieldError::value_error(
                    vec![Loc::Key("webhook".into()), Loc::Key("url".into())],
                    "the URL's host is not in webhook_hosts_allowed",
                )]
            }
            _ => Vec::new(),
        }
    }

    /// The engine's problems with a task spec.
    pub fn check_task_spec(&self, spec: &TaskSpec) -> Vec<FieldError> {
        checks::check_task_spec(spec, &self.inner.schemas)
    }

    /// Every problem of an add: the default spec at `["default_task_spec"]`
    /// and each run at `["runs", index]`.
    fn check_add_runs(&self, request: &AddRuns) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(spec) = &request.default_task_spec {
            errors.extend(
                self.check_task_spec(spec)
                    .into_iter()
                    .map(|e| e.prefixed(&[Loc::Key("default_task_spec".into())])),
            );
        }
        for (index, run) in request.runs.iter().enumerate() {
            errors.extend(
                self.check_run(run)
                    .into_iter()
                    .map(|e| e.prefixed(&[Loc::Key("runs".into()), Loc::Index(index)])),
            );
        }
        errors
    }

    /// Adds runs to a group, all or nothing (invariant 8): one invalid run
    /// rejects the request, with every problem named by its index.
    pub fn add_runs(&self, group_id: &str, request: AddRuns) -> Result<AddedRuns> {
        fresh(self.add_runs_with(group_id, request, None)?)
    }

    /// [`Engine::add_runs`] at most once per idempotency key; `answer`
    /// renders what a replay gives back.
    pub fn add_runs_once(
        &self,
        group_id: &str,
        request: AddRuns,
        key: Idempotency,
        answer: RenderAnswer<AddedRuns>,
    ) -> Result<Created<AddedRuns>> {
        created(self.add_runs_with(group_id, request, Some((key, answer)))?)
    }

    fn add_runs_with(
        &self,
        group_id: &str,
        request: AddRuns,
        once: Option<(Idempotency, RenderAnswer<AddedRuns>)>,
    ) -> Result<store::Once<AddedRuns>> {
        if !is_id(group_id) {
            return Err(not_found("group", group_id));
        }
        let count = request.runs.len();
        if count == 0 || count > RUNS_PER_REQUEST_MAX {
            return Err(Error::Invalid(vec![FieldError::limit(
                vec![Loc::Key("runs".into())],
                "RUNS_PER_REQUEST_MAX",
                RUNS_PER_REQUEST_MAX as u64,
                count as u64,
            )]));
        }
        let errors = self.check_add_runs(&request);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let added = self.write(|reply| Op::AddRuns {
            group_id: group_id.to_string(),
            runs: request
                .runs
                .iter()
                .map(|run| self.new_run(run, request.default_task_spec.as_ref()))
                .collect(),
            once: keyed(&once),
            reply,
        })?;
        self.inner.scheduler.wake();
        Ok(added)
    }

    /// Creates a standalone run (no group).
    pub fn create_run(&self, request: RunRequest) -> Result<Run> {
        fresh(self.create_run_with(request, None)?)
    }

    /// [`Engine::create_run`] at most once per idempotency key.
    pub fn create_run_once(
        &self,
        request: RunRequest,
        key: Idempotency,
        answer: RenderAnswer<Run>,
    ) -> Result<Created<Run>> {
        created(self.create_run_with(request, Some((key, answer)))?)
    }

    /// [`Engine::create_run`] (at most once per key, when one is given)
    /// that also writes a face's index record in the run's transaction:
    /// `(face, kind, id_prefix + run id)`, an empty body, listed with
    /// [`Engine::list_records`] by `id_prefix`. A face that lists its runs
    /// by the record then never misses an acknowledged run, also across
    /// a crash. Without a key the answer is `Fresh` with an empty body
    /// (there is no answer to replay).
    pub fn create_indexed_run(
        &self,
        request: RunRequest,
        (face, kind, id_prefix): (&str, &str, &str),
        once: Option<(Idempotency, RenderAnswer<Run>)>,
    ) -> Result<Created<Run>> {
        let index = store::RecordKey {
            face: face.to_string(),
            kind: kind.to_string(),
            id: id_prefix.to_string(),
        };
        match once {
            Some(once) => created(self.create_run_with_index(request, Some(once), Some(index))?),
            None => {
                let run = fresh(self.create_run_with_index(request, None, Some(index))?)?;
                Ok(Created::Fresh {
                    body: String::new(),
                    value: run,
                })
            }
        }
    }

    fn create_run_with(
        &self,
        request: RunRequest,
        once: Option<(Idempotency, RenderAnswer<Run>)>,
    ) -> Result<store::Once<Run>> {
        self.create_run_with_index(request, once, None)
    }

    fn create_run_with_index(
        &self,
        request: RunRequest,
        once: Option<(Idempotency, RenderAnswer<Run>)>,
        index: Option<store::RecordKey>,
    ) -> Result<store::Once<Run>> {
        let errors = self.check_run(&request);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let created = self.write(|reply| Op::CreateRun {
            run: NewRun {
                index: index.clone(),
                ..self.new_run(&request, None)
            },
            once: keyed(&once),
            reply,
        })?;
        self.inner.scheduler.wake();
        Ok(created)
    }

    /// Turns a checked request into the row the store writes.
    pub(super) fn new_run(&self, request: &RunRequest, default_spec: Option<&TaskSpec>) -> NewRun {
        let auto = TaskSpec::auto();
        let (spec, from_default) = match (&request.task_spec, default_spec) {
            (Some(spec), _) => (spec, false),
            (None, Some(spec)) => (spec, true),
            (None, None) => (&auto, false),
        };
        let config = self.inner.registry.get(&request.processor);
        // The engine's warning first, then the face's, as before faces.
        let mut warnings: Vec<_> = checks::input_warning(&request.input, spec, &self.inner.schemas)
            .into_iter()
            .collect();
        warnings.extend(request.warnings.iter().cloned());
        NewRun {
            id: new_id(),
            processor: request.processor.clone(),
            input: to_json(&request.input),
            document: request.document.clone(),
            task_spec: to_json(spec),
            default_spec: from_default,
            metadata: request.metadata.as_ref().map(to_json),
            enable_events: request
                .enable_events
                .unwrap_or_else(|| config.is_some_and(|c| c.enable_events_default)),
            max_attempts: config.map_or(MAX_ATTEMPTS_DEFAULT, |c| c.max_attempts),
            warnings: (!warnings.is_empty()).then(|| to_json(&warnings)),
            webhook: request.webhook.clone(),
            previous_id: request.previous_run_id.clone(),
            interaction: request.interaction.clone(),
            skip_while_active: false,
            index: None,
        }
    }

    pub(super) fn run_row(&self, run_id: &str) -> Result<store::RunRow> {
        if !is_id(run_id) {
            return Err(not_found("run", run_id));
        }
        match self.inner.store.run(run_id)? {
            Some(row) => Ok(row),
            None => Err(self.missing("run", run_id)),
        }
    }

    /// Not found, or gone when retention pruned it.
    pub(super) fn missing(&self, kind: &'static str, id: &str) -> Error {
        match self.inner.store.pruned(id) {
            Ok(Some(_)) => Error::Gone {
                kind,
                id: id.to_string(),
            },
            _ => not_found(kind, id),
        }
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        Ok(self.run_row(run_id)?.to_model()?)
    }

    /// A run of a group; not found also when the run is in another group.
    pub fn get_group_run(&self, group_id: &str, run_id: &str) -> Result<Run> {
        let row = self.run_row(run_id)?;
        if row.group_id.as_deref() != Some(group_id) {
            return Err(not_found("run", run_id));
        }
        Ok(row.to_model()?)
    }

    /// The run's request as stored: the face's document, its input and its
    /// effective task spec.
    pub fn get_run_request(&self, run_id: &str) -> Result<StoredRequest> {
        if !is_id(run_id) {
            return Err(not_found("run", run_id));
        }
        self.inner
            .store
            .run_request(run_id)?
            .ok_or_else(|| not_found("run", run_id))
    }

    /// Waits up to `timeout` for the run to finish. A completed run gives
    /// its output; a failed or cancelled one an error; a run still active
    /// when the wait ends gives [`Error::Timeout`].
    pub fn wait_for_result(&self, run_id: &str, timeout: Duration) -> Result<(Run, Output)> {
        let row = self.run_row(run_id)?;
        let deadline = Instant::now() + timeout;
        let watcher = self.inner.hub.watch(StreamKey::Run(row.seq));
        loop {
            let seen = watcher.version();
            let (row, output) = self
                .inner
                .store
                .run_output(run_id)?
                .ok_or_else(|| not_found("run", run_id))?;
            match row.status {
                RunStatus::Completed => {
                    let output = store::parse_output(output.as_deref().unwrap_or(""))?;
                    return Ok((row.to_model()?, output));
                }
                RunStatus::Failed => {
                    let run = row.to_model()?;
                    return Err(Error::RunFailed {
                        run_id: run.id,
                        error: Box::new(
                            run.error
                                .unwrap_or_else(|| RunError::new("run failed", None)),
                        ),
                    });
                }
                RunStatus::Cancelled => {
                    return Err(Error::RunCancelled {
                        run_id: run_id.to_string(),
                    })
                }
                status if Instant::now() >= deadline => {
                    return Err(Error::Timeout {
                        run_id: run_id.to_string(),
                        status,
                    })
                }
                _ if watcher.is_closed() => {
                    return Err(Error::Unavailable(store::Error::Closed));
                }
                _ => {
                    watcher.wait(seen, deadline);
                }
            }
        }
    }

    /// Cancels a run: a queued run at once, a running one via
    /// `cancelling`. A completed or failed run is a conflict.
    pub fn cancel_run(&self, run_id: &str) -> Result<Run> {
        if !is_id(run_id) {
            return Err(not_found("run", run_id));
        }
        let cancel = self.write(|reply| Op::CancelRun {
            run_id: run_id.to_string(),
            reply,
        })?;
        if matches!(cancel.before, RunStatus::Completed | RunStatus::Failed) {
            return Err(Error::Conflict {
                run_id: run_id.to_string(),
                status: cancel.before,
            });
        }
        if cancel.run.status == RunStatus::Cancelling {
            self.inner.scheduler.cancel(vec![cancel.run.seq]);
        }
        Ok(cancel.run.to_model()?)
    }

    /// A page of runs, newest first. An unknown group gives an empty page.
    pub fn list_runs(&self, query: &ListQuery) -> Result<Page<Run>> {
        let mut filter = store::ListFilter {
            limit: query.limit,
            status: query.status,
            ..store::ListFilter::default()
        };
        if let Some(after) = &query.after {
            filter.before_id = Some(list_cursor(after)?);
        }
        if let Some(group_id) = &query.group_id {
            match self.inner.store.seq_of("groups", group_id)? {
                Some(seq) => filter.group_seq = Some(seq),
                None => {
                    return Ok(Page {
                        data: Vec::new(),
                        next_cursor: None,
                    })
                }
            }
        }
        let page = self.inner.store.list_runs(&filter)?;
        let data = page
            .items
            .iter()
            .map(store::RunRow::to_model)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = page
            .more
            .then(|| data.last().map(|run| run.id.clone()))
            .flatten();
        Ok(Page { data, next_cursor })
    }
}

/// A list cursor: any well-formed id is a position; anything else is
/// refused (a face checks its own wire form of it first).
pub(super) fn list_cursor(id: &str) -> Result<String> {
    if is_id(id) {
        Ok(id.to_string())
    } else {
        Err(Error::Invalid(vec![FieldError::value_error(
            vec![Loc::Key("cursor".into())],
            format!("'{id}' is not a list cursor (an id)"),
        )]))
    }
}
