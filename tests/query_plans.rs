//! The store's list queries answer in time proportional to the page, not
//! to the table (issue 11): for every filter a client can send, SQLite's
//! plan walks an index that serves the filter's equality terms and the
//! list's order, and the work a query does on a table of many runs that
//! match nothing does not grow with the table. (Runs filtered by group and
//! status search the group's index and check the status: bounded by the
//! group's runs, which the growing table here leaves alone.)
//!
//! The SQL and its parameters are the store's own
//! (`taskyard::store::list_runs_query` and `list_groups_query`), on a
//! database opened by the engine, so that schema and migrations are the
//! real ones.

mod support;

use rusqlite::{Connection, StatementStatus};
use support::TestDir;
use taskyard::store::Value;
use taskyard::store::{list_groups_query, list_runs_query, Dialect, ListFilter};
use taskyard::RunStatus;

/// A before-id that sorts after every id the tests write.
const BEFORE_ID: &str = "ffffffffffffffffffffffffffffffff";
const BEFORE_GROUP_ID: &str = "ffffffffffffffffffffffffffffffff";
const PAGE: usize = 20;

/// Every filter of a runs list, named.
fn run_filters() -> Vec<(String, ListFilter)> {
    let mut filters = Vec::new();
    for status in [None, Some(RunStatus::Queued)] {
        for group_seq in [None, Some(1)] {
            for before_id in [None, Some(BEFORE_ID.to_string())] {
                let name = format!(
                    "runs status={status:?} group={group_seq:?} before={}",
                    before_id.is_some()
                );
                filters.push((
                    name,
                    ListFilter {
                        limit: PAGE,
                        before_id,
                        status,
                        group_seq,
                        is_active: None,
                    },
                ));
            }
        }
    }
    filters
}

/// Every filter of a groups list, named.
fn group_filters() -> Vec<(String, ListFilter)> {
    let mut filters = Vec::new();
    for is_active in [None, Some(true), Some(false)] {
        for before_id in [None, Some(BEFORE_GROUP_ID.to_string())] {
            let name = format!(
                "groups is_active={is_active:?} before={}",
                before_id.is_some()
            );
            filters.push((
                name,
                ListFilter {
                    limit: PAGE,
                    before_id,
                    is_active,
                    ..ListFilter::default()
                },
            ));
        }
    }
    filters
}

/// Every list query: its name, its SQL, and whether it filters on more
/// than the before-id (then it must search an index by those terms).
fn list_queries() -> Vec<(String, (String, Vec<Value>), bool)> {
    let runs = run_filters().into_iter().map(|(name, filter)| {
        let filtered = filter.status.is_some() || filter.group_seq.is_some();
        (name, list_runs_query(&filter, Dialect::Sqlite), filtered)
    });
    let groups = group_filters().into_iter().map(|(name, filter)| {
        let filtered = filter.is_active.is_some();
        (name, list_groups_query(&filter), filtered)
    });
    runs.chain(groups).collect()
}

/// A database with the engine's schema, closed again.
fn database(dir: &TestDir) -> Connection {
    let engine = support::open(dir);
    engine.shutdown(std::time::Duration::from_secs(5));
    drop(engine);
    Connection::open(dir.db()).expect("database opens")
}

/// What is wrong with a query plan, if anything: a table read without an
/// index, a sort the index did not spare, or, for a filtered list, an
/// index walked instead of searched by the filter's equality terms.
fn plan_problems(plan: &[String], filtered: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for line in plan {
        let on_list_table = line.starts_with("SCAN r")
            || line.starts_with("SEARCH r")
            || line.starts_with("SCAN groups")
            || line.starts_with("SEARCH groups");
        let uses_index = line.contains("USING INDEX")
            || line.contains("USING COVERING INDEX")
            || line.contains("USING INTEGER PRIMARY KEY");
        if line.starts_with("SCAN") && !uses_index {
            problems.push(format!("reads a table without an index: {line}"));
        }
        if line.contains("USE TEMP B-TREE") {
            problems.push(format!("sorts outside an index: {line}"));
        }
        // `id<?` alone is a range of the id index, walked past every row
        // the filter skips: a filtered list must search by its equalities.
        if filtered && on_list_table && !(line.starts_with("SEARCH") && line.contains("=?")) {
            problems.push(format!("does not search an index by its filter: {line}"));
        }
    }
    problems
}

fn query_plan(connection: &Connection, (sql, parameters): &(String, Vec<Value>)) -> Vec<String> {
    let mut statement = connection
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    let rows = statement
        .query_map(rusqlite::params_from_iter(parameters), |row| {
            row.get::<_, String>(3)
        })
        .expect("plan")
        .collect::<Result<Vec<_>, _>>()
        .expect("plan rows");
    rows
}

/// The virtual machine steps a list query takes to answer.
fn steps(connection: &Connection, (sql, parameters): &(String, Vec<Value>), limit: usize) -> i32 {
    let mut statement = connection.prepare(sql).expect("prepares");
    let rows = statement
        .query_map(rusqlite::params_from_iter(parameters), |_| Ok(()))
        .expect("runs")
        .count();
    assert!(rows <= limit + 1);
    statement.get_status(StatementStatus::VmStep)
}

/// Adds `runs` completed runs, newer than any before, and as many finished
/// groups; group 1 holds the oldest runs only.
fn add_finished(connection: &Connection, from: usize, runs: usize) {
    connection
        .execute(
            "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
             INSERT INTO groups (id, created_at, modified_at) \
             SELECT printf('%032x', i), 0, 0 FROM n",
            [from as i64 + 1, (from + runs) as i64],
        )
        .expect("groups");
    connection
        .execute(
            "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
             INSERT INTO runs (id, group_seq, cursor, status, processor, input, task_spec, \
             default_spec, enable_events, max_attempts, created_at, modified_at) \
             SELECT printf('%032x', i), CASE WHEN i <= 10 THEN 1 END, i, 'completed', \
             'mock', '{}', '{}', 0, 0, 3, 0, 0 FROM n",
            [from as i64 + 1, (from + runs) as i64],
        )
        .expect("runs");
}

/// Regression (issue 11, bug 4): a runs list filtered by status (or by
/// group) walked every run newest first, seconds for a page with no queued
/// run among 1.1M; groups filtered by `is_active` walked every group.
#[test]
fn list_queries_walk_an_index_in_page_order() {
    if !support::sqlite_only("list_queries_walk_an_index_in_page_order") {
        return;
    }
    let dir = TestDir::new();
    let connection = database(&dir);
    let mut problems = Vec::new();
    for (name, query, filtered) in list_queries() {
        let plan = query_plan(&connection, &query);
        for problem in plan_problems(&plan, filtered) {
            problems.push(format!(
                "{name}: {problem}\n  {}\n  plan: {plan:?}",
                query.0
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The plans' promise, measured: a list whose filter matches nothing
    // among 2,000 and then 8,000 runs and groups takes the same steps.
    add_finished(&connection, 0, 2_000);
    let queries: Vec<_> = run_filters()
        .into_iter()
        .map(|(name, filter)| (name, list_runs_query(&filter, Dialect::Sqlite)))
        .chain(
            group_filters()
                .into_iter()
                .map(|(name, filter)| (name, list_groups_query(&filter))),
        )
        .collect();
    let small: Vec<i32> = queries
        .iter()
        .map(|(_, query)| steps(&connection, query, PAGE))
        .collect();
    add_finished(&connection, 2_000, 6_000);
    for ((name, query), small) in queries.iter().zip(small) {
        let large = steps(&connection, query, PAGE);
        assert!(
            large <= small + small / 10,
            "{name}: {small} steps at 2,000 rows, {large} at 8,000\n  {}",
            query.0
        );
    }
}
