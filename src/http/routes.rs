//! The routing table: every path the server answers, as a pattern.
//!
//! Owns only the mapping from method and path to a [`Route`]; handlers live
//! in `handlers.rs`. The pattern strings are what metrics and the OpenAPI
//! test use, so a raw path (with ids) never becomes a metric label.

/// One endpoint, with the ids taken from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    CreateRun,
    ListRuns,
    GetRun(String),
    GetRunInput(String),
    GetRunResult(String),
    RunEvents(String),
    CancelRun(String),
    CreateGroup,
    ListGroups,
    GetGroup(String),
    AddRuns(String),
    GroupEvents(String),
    GroupRuns(String),
    GetGroupRun(String, String),
    CancelGroup(String),
    ListProcessors,
    GetProcessor(String),
    Health,
    Metrics,
    OpenApi,
}

/// Every route pattern with its methods, for 405 answers, metrics and the
/// OpenAPI check. `/v1beta` aliases are not listed: they answer the same.
pub const PATTERNS: &[(&str, &[&str])] = &[
    ("/v1/tasks/runs", &["GET", "POST"]),
    ("/v1/tasks/runs/{run_id}", &["GET"]),
    ("/v1/tasks/runs/{run_id}/input", &["GET"]),
    ("/v1/tasks/runs/{run_id}/result", &["GET"]),
    ("/v1/tasks/runs/{run_id}/events", &["GET"]),
    ("/v1/tasks/runs/{run_id}/cancel", &["POST"]),
    ("/v1/tasks/groups", &["GET", "POST"]),
    ("/v1/tasks/groups/{taskgroup_id}", &["GET"]),
    ("/v1/tasks/groups/{taskgroup_id}/runs", &["GET", "POST"]),
    ("/v1/tasks/groups/{taskgroup_id}/events", &["GET"]),
    ("/v1/tasks/groups/{taskgroup_id}/runs/{run_id}", &["GET"]),
    ("/v1/tasks/groups/{taskgroup_id}/cancel", &["POST"]),
    ("/v1/processors", &["GET"]),
    ("/v1/processors/{name}", &["GET"]),
    ("/healthz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/openapi.json", &["GET"]),
];

impl Route {
    /// The pattern this route answers under (its metrics label).
    pub fn pattern(&self) -> &'static str {
        match self {
            Route::CreateRun | Route::ListRuns => "/v1/tasks/runs",
            Route::GetRun(_) => "/v1/tasks/runs/{run_id}",
            Route::GetRunInput(_) => "/v1/tasks/runs/{run_id}/input",
            Route::GetRunResult(_) => "/v1/tasks/runs/{run_id}/result",
            Route::RunEvents(_) => "/v1/tasks/runs/{run_id}/events",
            Route::CancelRun(_) => "/v1/tasks/runs/{run_id}/cancel",
            Route::CreateGroup | Route::ListGroups => "/v1/tasks/groups",
            Route::GetGroup(_) => "/v1/tasks/groups/{taskgroup_id}",
            Route::AddRuns(_) | Route::GroupRuns(_) => "/v1/tasks/groups/{taskgroup_id}/runs",
            Route::GroupEvents(_) => "/v1/tasks/groups/{taskgroup_id}/events",
            Route::GetGroupRun(..) => "/v1/tasks/groups/{taskgroup_id}/runs/{run_id}",
            Route::CancelGroup(_) => "/v1/tasks/groups/{taskgroup_id}/cancel",
            Route::ListProcessors => "/v1/processors",
            Route::GetProcessor(_) => "/v1/processors/{name}",
            Route::Health => "/healthz",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
        }
    }

    /// True for the API routes that need a key when keys are configured.
    pub fn needs_key(&self) -> bool {
        !matches!(self, Route::Health | Route::Metrics | Route::OpenApi)
    }
}

/// Why a request matched no route.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoute {
    NotFound,
    /// The path exists; these methods are allowed.
    MethodNotAllowed(&'static [&'static str]),
}

/// Finds the route for a method and a path (without its query).
pub fn route(method: &str, path: &str) -> Result<Route, NoRoute> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let (api, rest) = match segments.split_first() {
        Some((&"v1", rest)) | Some((&"v1beta", rest)) => (true, rest),
        _ => (false, &segments[..]),
    };
    let owned = |text: &str| text.to_string();
    let found: Option<(Route, &'static [&'static str])> = if api {
        match (method, rest) {
            ("POST", ["tasks", "runs"]) => Some((Route::CreateRun, &["GET", "POST"])),
            ("GET", ["tasks", "runs"]) => Some((Route::ListRuns, &["GET", "POST"])),
            (_, ["tasks", "runs"]) => return Err(NoRoute::MethodNotAllowed(&["GET", "POST"])),
            ("GET", ["tasks", "runs", id]) => Some((Route::GetRun(owned(id)), &["GET"])),
            ("GET", ["tasks", "runs", id, "input"]) => {
                Some((Route::GetRunInput(owned(id)), &["GET"]))
            }
            ("GET", ["tasks", "runs", id, "result"]) => {
                Some((Route::GetRunResult(owned(id)), &["GET"]))
            }
            ("GET", ["tasks", "runs", id, "events"]) => {
                Some((Route::RunEvents(owned(id)), &["GET"]))
            }
            ("POST", ["tasks", "runs", id, "cancel"]) => {
                Some((Route::CancelRun(owned(id)), &["POST"]))
            }
            (_, ["tasks", "runs", _])
            | (_, ["tasks", "runs", _, "input" | "result" | "events"]) => {
                return Err(NoRoute::MethodNotAllowed(&["GET"]))
            }
            (_, ["tasks", "runs", _, "cancel"]) => {
                return Err(NoRoute::MethodNotAllowed(&["POST"]))
            }
            ("POST", ["tasks", "groups"]) => Some((Route::CreateGroup, &["GET", "POST"])),
            ("GET", ["tasks", "groups"]) => Some((Route::ListGroups, &["GET", "POST"])),
            (_, ["tasks", "groups"]) => return Err(NoRoute::MethodNotAllowed(&["GET", "POST"])),
            ("GET", ["tasks", "groups", id]) => Some((Route::GetGroup(owned(id)), &["GET"])),
            ("POST", ["tasks", "groups", id, "runs"]) => {
                Some((Route::AddRuns(owned(id)), &["GET", "POST"]))
            }
            ("GET", ["tasks", "groups", id, "runs"]) => {
                Some((Route::GroupRuns(owned(id)), &["GET", "POST"]))
            }
            (_, ["tasks", "groups", _, "runs"]) => {
                return Err(NoRoute::MethodNotAllowed(&["GET", "POST"]))
            }
            ("GET", ["tasks", "groups", id, "events"]) => {
                Some((Route::GroupEvents(owned(id)), &["GET"]))
            }
            ("GET", ["tasks", "groups", id, "runs", run]) => {
                Some((Route::GetGroupRun(owned(id), owned(run)), &["GET"]))
            }
            ("POST", ["tasks", "groups", id, "cancel"]) => {
                Some((Route::CancelGroup(owned(id)), &["POST"]))
            }
            (_, ["tasks", "groups", _]) | (_, ["tasks", "groups", _, "events"]) => {
                return Err(NoRoute::MethodNotAllowed(&["GET"]))
            }
            (_, ["tasks", "groups", _, "runs", _]) => {
                return Err(NoRoute::MethodNotAllowed(&["GET"]))
            }
            (_, ["tasks", "groups", _, "cancel"]) => {
                return Err(NoRoute::MethodNotAllowed(&["POST"]))
            }
            ("GET", ["processors"]) => Some((Route::ListProcessors, &["GET"])),
            ("GET", ["processors", name]) => Some((Route::GetProcessor(owned(name)), &["GET"])),
            (_, ["processors"]) | (_, ["processors", _]) => {
                return Err(NoRoute::MethodNotAllowed(&["GET"]))
            }
            _ => None,
        }
    } else {
        match (method, rest) {
            ("GET" | "HEAD", ["healthz"]) => Some((Route::Health, &["GET"])),
            ("GET" | "HEAD", ["metrics"]) => Some((Route::Metrics, &["GET"])),
            ("GET" | "HEAD", ["openapi.json"]) => Some((Route::OpenApi, &["GET"])),
            (_, ["healthz" | "metrics" | "openapi.json"]) => {
                return Err(NoRoute::MethodNotAllowed(&["GET"]))
            }
            _ => None,
        }
    };
    found.map(|(route, _)| route).ok_or(NoRoute::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_routes_under_both_prefixes() {
        for (pattern, methods) in PATTERNS {
            for method in *methods {
                let path = pattern
                    .replace("{run_id}", "trun_1")
                    .replace("{taskgroup_id}", "tgrp_1")
                    .replace("{name}", "core");
                let route =
                    route(method, &path).unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
                assert_eq!(route.pattern(), *pattern);
                if let Some(beta) = path.strip_prefix("/v1/") {
                    let aliased = super::route(method, &format!("/v1beta/{beta}"));
                    assert_eq!(aliased, Ok(route));
                }
            }
        }
    }

    #[test]
    fn wrong_methods_and_unknown_paths() {
        assert_eq!(
            route("DELETE", "/v1/tasks/runs/trun_1"),
            Err(NoRoute::MethodNotAllowed(&["GET"]))
        );
        assert_eq!(
            route("GET", "/v1/tasks/runs/trun_1/cancel"),
            Err(NoRoute::MethodNotAllowed(&["POST"]))
        );
        assert_eq!(route("GET", "/v1/monitors"), Err(NoRoute::NotFound));
        assert_eq!(route("GET", "/"), Err(NoRoute::NotFound));
        assert_eq!(route("GET", "/v2/tasks/runs"), Err(NoRoute::NotFound));
    }
}
