//! Groups through the engine: create, read, cancel every active run, list,
//! and the snapshot of a group's runs in the order they were added.
//!
//! Holds no SQL and no face's wire: a group's status is the model's
//! counts, and each face words it.

use super::error::{not_found, Result};
use super::idempotency::{created, fresh, keyed, Created, Idempotency, RenderAnswer};
use super::runs::{list_cursor, ListQuery, Page};
use super::{Engine, Error};
use crate::model::{is_id, new_id, to_json, Group, JsonObject, Output, Run, RunStatus, TaskSpec};
use crate::store::{self, GroupRunRow, NewGroup, Op};

/// Filters of the snapshot of a group's runs.
#[derive(Debug, Clone, Default)]
pub struct GroupRunsQuery {
    /// Only runs whose cursor (the id of their creation event) is above
    /// this.
    pub after: u64,
    pub status: Option<RunStatus>,
    pub include_request: bool,
    pub include_output: bool,
}

/// One run of a group's snapshot.
#[derive(Debug, Clone)]
pub struct GroupRun {
    /// The id of the run's creation event: where a resumed snapshot starts.
    pub cursor: u64,
    pub run: Run,
    /// The face's document of the run, when requests were asked for.
    pub document: Option<String>,
    /// The run's input, when requests were asked for and the run has no
    /// document (it came through the library, or another face).
    pub input: Option<serde_json::Value>,
    /// The group's default spec, when requests were asked for and the run
    /// had none of its own.
    pub group_spec: Option<TaskSpec>,
    /// The output, when outputs were asked for and the run completed.
    pub output: Option<Output>,
}

impl Engine {
    pub fn create_group(&self, metadata: Option<JsonObject>) -> Result<Group> {
        fresh(self.create_group_with(metadata, None)?)
    }

    /// [`Engine::create_group`] at most once per idempotency key.
    pub fn create_group_once(
        &self,
        metadata: Option<JsonObject>,
        key: Idempotency,
        answer: RenderAnswer<Group>,
    ) -> Result<Created<Group>> {
        created(self.create_group_with(metadata, Some((key, answer)))?)
    }

    fn create_group_with(
        &self,
        metadata: Option<JsonObject>,
        once: Option<(Idempotency, RenderAnswer<Group>)>,
    ) -> Result<store::Once<Group>> {
        let metadata = metadata.as_ref().map(to_json);
        Ok(self.write(|reply| Op::CreateGroup {
            group: NewGroup {
                id: new_id(),
                metadata: metadata.clone(),
            },
            once: keyed(&once),
            reply,
        })?)
    }

    pub(super) fn group_row(&self, group_id: &str) -> Result<store::GroupRow> {
        if !is_id(group_id) {
            return Err(not_found("group", group_id));
        }
        match self.inner.store.group(group_id)? {
            Some(row) => Ok(row),
            None => Err(self.missing("group", group_id)),
        }
    }

    pub fn get_group(&self, group_id: &str) -> Result<Group> {
        Ok(self.group_row(group_id)?.to_model()?)
    }

    /// Cancels every active run of a group in one transaction.
    pub fn cancel_group(&self, group_id: &str) -> Result<Group> {
        if !is_id(group_id) {
            return Err(not_found("group", group_id));
        }
        let (group, cancelling) = self.write(|reply| Op::CancelGroup {
            group_id: group_id.to_string(),
            reply,
        })?;
        self.inner.scheduler.cancel(cancelling);
        Ok(group.to_model()?)
    }

    /// A page of groups, newest first.
    pub fn list_groups(&self, query: &ListQuery) -> Result<Page<Group>> {
        let mut filter = store::ListFilter {
            limit: query.limit,
            is_active: query.is_active,
            ..store::ListFilter::default()
        };
        if let Some(after) = &query.after {
            filter.before_id = Some(list_cursor(after)?);
        }
        let page = self.inner.store.list_groups(&filter)?;
        let data = page
            .items
            .iter()
            .map(store::GroupRow::to_model)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = page
            .more
            .then(|| data.last().map(|group| group.id.clone()))
            .flatten();
        Ok(Page { data, next_cursor })
    }

    /// The runs of a group whose cursor is above `query.after`, in the
    /// order they were added, from one snapshot. `each` gets each run;
    /// answering false stops early.
    pub fn group_runs(
        &self,
        group_id: &str,
        query: &GroupRunsQuery,
        mut each: impl FnMut(GroupRun) -> bool,
    ) -> Result<()> {
        let group = self.group_row(group_id)?;
        let mut failure = None;
        self.inner.store.group_runs(
            group.seq,
            query.after,
            query.status,
            query.include_request,
            query.include_output,
            |row: GroupRunRow| match group_run(row) {
                Ok(item) => each(item),
                Err(error) => {
                    failure = Some(error);
                    false
                }
            },
        )?;
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn group_run(row: GroupRunRow) -> Result<GroupRun> {
    let group_spec = match &row.default_task_spec {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| Error::Internal(format!("stored task spec does not decode: {e}")))?,
        ),
        None => None,
    };
    let output = match &row.output {
        Some(text) => Some(store::parse_output(text)?),
        None => None,
    };
    let input = match &row.input {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| Error::Internal(format!("stored input does not decode: {e}")))?,
        ),
        None => None,
    };
    Ok(GroupRun {
        cursor: row.run.cursor as u64,
        run: row.run.to_model()?,
        document: row.document,
        input,
        group_spec,
        output,
    })
}
