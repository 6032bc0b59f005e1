//! The one route table: every method and path pattern the server answers,
//! whichever face registered it.
//!
//! Owns matching (a `matchit` radix tree over the patterns), the 405 list
//! of allowed methods, and the pattern each route is counted under in the
//! metrics, so that a raw path (with its ids) never becomes a label. It
//! knows no face: routes arrive through [`Routes::add`] with a handler
//! closure, and nothing here reads a body or writes an answer.

use std::sync::Arc;

use super::{Reply, Request};

/// What answers a matched request.
pub type Handler = Arc<dyn Fn(&mut Request<'_>) -> Reply + Send + Sync>;

/// One endpoint: a method on a pattern.
#[derive(Clone)]
pub struct Endpoint {
    /// Which face registered it: that face's error form answers refusals
    /// on it (auth, body limits, stream slots).
    pub face: usize,
    /// The pattern it answers under: its metrics label.
    pub label: &'static str,
    /// False for the few routes open without a key (health, metrics, the
    /// OpenAPI document).
    pub needs_key: bool,
    pub handler: Handler,
}

/// Routes being registered, in the order the faces add them.
#[derive(Default)]
pub struct Routes {
    face: usize,
    entries: Vec<(&'static str, String, Endpoint)>,
}

impl Routes {
    /// Sets the face the next routes belong to.
    pub(super) fn for_face(&mut self, face: usize) {
        self.face = face;
    }

    /// Registers `method` on `path`, counted under `label` (usually `path`
    /// itself; an alias such as Parallel's `/v1beta/...` passes the main
    /// pattern so that both count as one route).
    pub fn add(
        &mut self,
        method: &'static str,
        path: impl Into<String>,
        label: &'static str,
        needs_key: bool,
        handler: Handler,
    ) {
        let endpoint = Endpoint {
            face: self.face,
            label,
            needs_key,
            handler,
        };
        self.entries.push((method, path.into(), endpoint));
    }
}

/// Why a request matched no route.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoute {
    NotFound,
    /// The path exists; these methods are allowed.
    MethodNotAllowed(Vec<&'static str>),
}

/// The methods registered on one path.
struct PathEntry {
    methods: Vec<(&'static str, Endpoint)>,
}

/// The built table.
pub struct RouteTable {
    tree: matchit::Router<usize>,
    paths: Vec<PathEntry>,
}

/// A matched request: its endpoint and the ids taken from its path.
pub struct Matched<'t> {
    pub endpoint: &'t Endpoint,
    pub params: Vec<(String, String)>,
}

impl RouteTable {
    /// Builds the table; a pattern registered twice with one method, or
    /// two patterns that overlap, is a programming error reported here.
    pub fn build(routes: Routes) -> Result<RouteTable, String> {
        let mut tree = matchit::Router::new();
        let mut paths: Vec<PathEntry> = Vec::new();
        let mut index_of: std::collections::HashMap<String, usize> = Default::default();
        for (method, path, endpoint) in routes.entries {
            let index = match index_of.get(&path) {
                Some(index) => *index,
                None => {
                    let index = paths.len();
                    tree.insert(path.clone(), index)
                        .map_err(|error| format!("route {path}: {error}"))?;
                    paths.push(PathEntry {
                        methods: Vec::new(),
                    });
                    index_of.insert(path.clone(), index);
                    index
                }
            };
            let entry = &mut paths[index];
            if entry.methods.iter().any(|(known, _)| *known == method) {
                return Err(format!("route {method} {path} registered twice"));
            }
            entry.methods.push((method, endpoint));
        }
        Ok(RouteTable { tree, paths })
    }

    /// Finds the endpoint for a method and a path (without its query). A
    /// trailing slash is ignored.
    pub fn find(&self, method: &str, path: &str) -> Result<Matched<'_>, NoRoute> {
        let path = path
            .strip_suffix('/')
            .filter(|path| !path.is_empty())
            .unwrap_or(path);
        let found = self.tree.at(path).map_err(|_| NoRoute::NotFound)?;
        let entry = &self.paths[*found.value];
        match entry.methods.iter().find(|(known, _)| *known == method) {
            Some((_, endpoint)) => Ok(Matched {
                endpoint,
                params: found
                    .params
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect(),
            }),
            // HEAD is answered where it is registered; it is never listed
            // as allowed, as before the table was shared.
            None => Err(NoRoute::MethodNotAllowed(
                entry
                    .methods
                    .iter()
                    .map(|(method, _)| *method)
                    .filter(|method| *method != "HEAD")
                    .collect(),
            )),
        }
    }

    /// Every pattern with its methods (HEAD left out), in registration
    /// order: for the OpenAPI check and the metrics tests.
    pub fn patterns(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for entry in &self.paths {
            for (method, endpoint) in &entry.methods {
                if *method == "HEAD" {
                    continue;
                }
                match out.iter_mut().find(|(label, _)| *label == endpoint.label) {
                    Some((_, methods)) => {
                        if !methods.contains(method) {
                            methods.push(method)
                        }
                    }
                    None => out.push((endpoint.label, vec![*method])),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Handler {
        Arc::new(move |_| Reply::Text(status, String::new(), "text/plain"))
    }

    fn table() -> RouteTable {
        let mut routes = Routes::default();
        routes.add("GET", "/a/{id}", "/a/{id}", true, answer(200));
        routes.add("POST", "/a/{id}", "/a/{id}", true, answer(201));
        routes.add("GET", "/b", "/b", false, answer(200));
        routes.add("HEAD", "/b", "/b", false, answer(200));
        RouteTable::build(routes).expect("table")
    }

    #[test]
    fn finds_params_and_ignores_a_trailing_slash() {
        let table = table();
        let Ok(found) = table.find("GET", "/a/x1/") else {
            panic!("GET /a/x1/ is routed");
        };
        assert_eq!(found.params, vec![("id".to_string(), "x1".to_string())]);
        assert_eq!(found.endpoint.label, "/a/{id}");
    }

    #[test]
    fn wrong_methods_list_the_allowed_ones_without_head() {
        let table = table();
        assert_eq!(
            table.find("DELETE", "/a/x").err(),
            Some(NoRoute::MethodNotAllowed(vec!["GET", "POST"]))
        );
        assert_eq!(
            table.find("POST", "/b").err(),
            Some(NoRoute::MethodNotAllowed(vec!["GET"]))
        );
        assert!(table.find("HEAD", "/b").is_ok());
        assert_eq!(table.find("GET", "/c").err(), Some(NoRoute::NotFound));
        assert_eq!(table.find("GET", "/").err(), Some(NoRoute::NotFound));
    }

    #[test]
    fn a_route_registered_twice_is_refused() {
        let mut routes = Routes::default();
        routes.add("GET", "/a", "/a", true, answer(200));
        routes.add("GET", "/a", "/a", true, answer(200));
        assert!(RouteTable::build(routes).is_err());
    }
}
