//! The face's routes (spec sections 3 and 4, choice 1) and the checks
//! every request passes before its handler, in Nextcloud's order (spec
//! 1.4): the login, then the route match (998, 405), then the route's own
//! guards (login required, ExApp required, CSRF).
//!
//! Every path under `/ocs/` is registered here, each with every method,
//! and a catch-all takes the rest: the server's own 404, 405 and key check
//! would answer before the login check and in another order. Each route is
//! served under `/ocs/v2.php` and `/ocs/v1.php`, counted under its v2
//! pattern. Parameters are gathered as Nextcloud does (spec 1.7): path,
//! then body (JSON or form, on any method), then query.

use std::sync::Arc;

use base64::Engine as _;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use super::envelope::Version;
use super::error::{Asked, NcError};
use super::limits::USER_ID_CHARS_MAX;
use super::{handlers, Nextcloud};
use crate::server::{Reply, Request, Routes};

/// One endpoint, with its integer ids cast as PHP does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    TaskTypes,
    Schedule,
    GetTask(i64),
    DeleteTask(i64),
    ListTasks,
    ListAppTasks(String),
    CancelTask(i64),
    TaskFile(i64),
    Capabilities,
    CurrentUser,
}

/// Who may call a route, and which guards it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// A login and `OCS-APIRequest` (or a Bearer token).
    User,
    /// A login, no CSRF check (`NoCSRFRequired`).
    UserNoCsrf,
    /// Anyone; wrong credentials are still refused.
    Public,
    /// AppAPI external apps only: 412 in phase 1.
    ExApp,
}

/// Makes the route from the path's parameters.
type Make = fn(&Params) -> Route;

const USER: &[(&str, &str, Guard, Make)] = &[
    (
        "GET",
        "/ocs/v2.php/taskprocessing/tasktypes",
        Guard::User,
        |_| Route::TaskTypes,
    ),
    (
        "POST",
        "/ocs/v2.php/taskprocessing/schedule",
        Guard::User,
        |_| Route::Schedule,
    ),
    (
        "GET",
        "/ocs/v2.php/taskprocessing/task/{id}",
        Guard::User,
        |p| Route::GetTask(p.path_int("id")),
    ),
    (
        "DELETE",
        "/ocs/v2.php/taskprocessing/task/{id}",
        Guard::User,
        |p| Route::DeleteTask(p.path_int("id")),
    ),
    (
        "GET",
        "/ocs/v2.php/taskprocessing/tasks",
        Guard::User,
        |_| Route::ListTasks,
    ),
    (
        "GET",
        "/ocs/v2.php/taskprocessing/tasks/app/{appId}",
        Guard::User,
        |p| Route::ListAppTasks(p.path("appId")),
    ),
    (
        "POST",
        "/ocs/v2.php/taskprocessing/tasks/{taskId}/cancel",
        Guard::User,
        |p| Route::CancelTask(p.path_int("taskId")),
    ),
    (
        "GET",
        "/ocs/v2.php/taskprocessing/tasks/{taskId}/file/{fileId}",
        Guard::UserNoCsrf,
        |p| Route::TaskFile(p.path_int("taskId")),
    ),
    (
        "GET",
        "/ocs/v2.php/cloud/capabilities",
        Guard::Public,
        |_| Route::Capabilities,
    ),
    ("GET", "/ocs/v2.php/cloud/user", Guard::User, |_| {
        Route::CurrentUser
    }),
];

/// The AppAPI routes (spec section 4): answered 412 `ExApp required`.
const EXAPP: &[(&str, &str)] = &[
    ("GET", "/ocs/v2.php/taskprocessing/tasks_provider/next"),
    (
        "GET",
        "/ocs/v2.php/taskprocessing/tasks_provider/next_batch",
    ),
    (
        "POST",
        "/ocs/v2.php/taskprocessing/tasks_provider/{taskId}/progress",
    ),
    (
        "POST",
        "/ocs/v2.php/taskprocessing/tasks_provider/{taskId}/result",
    ),
    (
        "POST",
        "/ocs/v2.php/taskprocessing/tasks_provider/{taskId}/file",
    ),
    (
        "GET",
        "/ocs/v2.php/taskprocessing/tasks_provider/{taskId}/file/{fileId}",
    ),
    ("GET", "/ocs/v2.php/taskprocessing/tasks_consumer/tasktypes"),
    ("POST", "/ocs/v2.php/taskprocessing/tasks_consumer/schedule"),
    ("GET", "/ocs/v2.php/taskprocessing/tasks_consumer/task/{id}"),
    (
        "DELETE",
        "/ocs/v2.php/taskprocessing/tasks_consumer/task/{id}",
    ),
    (
        "POST",
        "/ocs/v2.php/taskprocessing/tasks_consumer/tasks/{taskId}/cancel",
    ),
];

/// Every method a route is registered with, so that the face, not the
/// server, answers a wrong one (after the login check).
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// The v2 entry point, which the tables name; each route is served under
/// the v1 one too, counted under its v2 pattern.
const V2_PREFIX: &str = "/ocs/v2.php";
const V1_PREFIX: &str = "/ocs/v1.php";

/// What one path answers: its methods with their guard and route.
#[derive(Clone)]
struct PathRoutes {
    methods: Vec<(&'static str, Guard, Option<Make>)>,
}

pub fn register(face: &Arc<Nextcloud>, routes: &mut Routes) {
    let mut paths: Vec<(&'static str, PathRoutes)> = Vec::new();
    let mut add =
        |method: &'static str, path: &'static str, guard: Guard, make: Option<Make>| match paths
            .iter_mut()
            .find(|(known, _)| *known == path)
        {
            Some((_, entry)) => entry.methods.push((method, guard, make)),
            None => paths.push((
                path,
                PathRoutes {
                    methods: vec![(method, guard, make)],
                },
            )),
        };
    for (method, path, guard, make) in USER {
        add(method, path, *guard, Some(*make));
    }
    for (method, path) in EXAPP {
        add(method, path, Guard::ExApp, None);
    }
    for (path, entry) in paths {
        let v1 = path.replacen(V2_PREFIX, V1_PREFIX, 1);
        for served in [path.to_string(), v1] {
            for method in METHODS {
                let face = face.clone();
                let entry = entry.clone();
                routes.add(
                    method,
                    served.clone(),
                    path,
                    false,
                    Arc::new(move |request| answer(&face, request, Some(&entry))),
                );
            }
        }
    }
    for method in METHODS {
        let face = face.clone();
        routes.add(
            method,
            "/ocs/{*rest}",
            "/ocs/{*rest}",
            false,
            Arc::new(move |request| answer(&face, request, None)),
        );
    }
    routes.add(
        "GET",
        "/status.php",
        "/status.php",
        false,
        Arc::new(|_| handlers::status_php()),
    );
}

/// The login a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// No credentials (or the empty Basic `Og==`).
    Anonymous,
    /// A user, and whether by Bearer token (which skips the CSRF check).
    User { id: String, bearer: bool },
}

/// The user a Bearer token logs in as (spec 1.5 choice).
pub const BEARER_USER: &str = "taskyard";

/// What `Authorization` carries.
enum Credentials {
    None,
    Bearer(String),
    /// Login and password.
    Basic(String, String),
    /// A Basic value that does not decode to `login:password`.
    Unreadable,
}

fn credentials(header: Option<&str>) -> Credentials {
    let Some(header) = header else {
        return Credentials::None;
    };
    let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Bearer(value.trim().to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Credentials::None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match decoded.as_deref().and_then(|text| text.split_once(':')) {
        // nc-py-api sends `Og==` when given no user.
        Some(("", "")) => Credentials::None,
        Some((user, password)) => Credentials::Basic(user.to_string(), password.to_string()),
        None => Credentials::Unreadable,
    }
}

/// The key `Authorization` carries, for [`crate::server::Face::presented_key`].
pub fn presented_key(header: Option<&str>) -> Option<String> {
    match credentials(header) {
        Credentials::Bearer(key) | Credentials::Basic(_, key) => Some(key),
        Credentials::None | Credentials::Unreadable => None,
    }
}

/// Reads `Authorization` (spec 1.5): wrong credentials are `Unauthorised`.
fn login(face: &Nextcloud, header: Option<&str>) -> Result<Login, NcError> {
    let key_ok = |key: &str| crate::server::auth::authorized(&face.api_keys, Some(key));
    let (user, password) = match credentials(header) {
        Credentials::None => return Ok(Login::Anonymous),
        Credentials::Unreadable => return Err(NcError::Unauthorised),
        Credentials::Bearer(token) if token.is_empty() || !key_ok(&token) => {
            return Err(NcError::Unauthorised)
        }
        Credentials::Bearer(_) => {
            return Ok(Login::User {
                id: BEARER_USER.into(),
                bearer: true,
            })
        }
        Credentials::Basic(user, password) => (user, password),
    };
    let valid_user = (1..=USER_ID_CHARS_MAX).contains(&user.chars().count())
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
    if !valid_user || !key_ok(&password) {
        return Err(NcError::Unauthorised);
    }
    Ok(Login::User {
        id: user,
        bearer: false,
    })
}

/// A request's parameters, by source (spec 1.7).
#[derive(Debug, Default)]
pub struct Params {
    pub path: Vec<(String, String)>,
    pub body: Map<String, Value>,
    pub query: Vec<(String, String)>,
}

impl Params {
    /// A parameter: path, then body, then query (a query value is a string).
    pub fn get(&self, name: &str) -> Option<Value> {
        if let Some((_, value)) = self.path.iter().find(|(key, _)| key == name) {
            return Some(Value::String(value.clone()));
        }
        if let Some(value) = self.body.get(name) {
            return Some(value.clone());
        }
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| Value::String(value.clone()))
    }

    fn path(&self, name: &str) -> String {
        self.path
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    }

    /// An int path parameter as PHP casts it: its leading digits, else 0
    /// (so `abc` names no task).
    fn path_int(&self, name: &str) -> i64 {
        let text = self.path(name);
        let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or(0)
    }
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// `a=1&b=2`, decoded.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// The body's parameters: a JSON object, or a form; anything else none
/// (a handler then finds its required ones missing).
fn body_params(request: &Request<'_>, bytes: &[u8]) -> Map<String, Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Map::new();
    }
    let content_type = request.header("content-type").unwrap_or_default();
    if content_type.contains("application/x-www-form-urlencoded") {
        return pairs(&String::from_utf8_lossy(bytes))
            .into_iter()
            .map(|(key, value)| (key, Value::String(value)))
            .collect();
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    }
}

/// Reads what the guards and handlers need, runs the guards in order, and
/// answers. `entry` is `None` on the catch-all.
fn answer(face: &Nextcloud, request: &mut Request<'_>, entry: Option<&PathRoutes>) -> Reply {
    let mut asked = Asked {
        version: Version::of(request.path()),
        format: None,
        accept: request.header("accept"),
    };
    let query = pairs(request.raw_query());
    asked.format = query
        .iter()
        .find(|(key, _)| key == "format")
        .map(|(_, value)| value.clone());
    let bytes = match request.body() {
        Ok(bytes) => bytes,
        Err(refusal) => return NcError::from(refusal).into_reply(&asked),
    };
    let body = body_params(request, &bytes);
    if let Some(Value::String(format)) = body.get("format") {
        asked.format = Some(format.clone());
    }
    let params = Params {
        path: ["id", "taskId", "fileId", "appId"]
            .iter()
            .filter(|name| !request.param(name).is_empty())
            .map(|name| (name.to_string(), decode(request.param(name))))
            .collect(),
        body,
        query,
    };
    match guarded(face, request, entry, &params) {
        Ok((route, user)) => handlers::answer(face, request, &asked, route, &user, &params),
        Err(error) => error.into_reply(&asked),
    }
}

/// The guards of spec 1.4, in order; the route and its user when all pass.
fn guarded(
    face: &Nextcloud,
    request: &Request<'_>,
    entry: Option<&PathRoutes>,
    params: &Params,
) -> Result<(Route, Login), NcError> {
    let login = login(face, request.header("authorization").as_deref())?;
    // No OCS route takes OPTIONS (no CORS, spec 1.6): 405 on any path.
    if request.method() == "OPTIONS" {
        return Err(NcError::MethodNotAllowed);
    }
    let entry = entry.ok_or(NcError::NoRoute)?;
    // HEAD is answered where GET is, as Nextcloud's router does.
    let method = match request.method() {
        "HEAD" => "GET",
        other => other,
    };
    let (_, guard, make) = entry
        .methods
        .iter()
        .find(|(known, _, _)| *known == method)
        .ok_or(NcError::MethodNotAllowed)?;
    let logged_in = matches!(login, Login::User { .. });
    match guard {
        Guard::Public => {}
        Guard::ExApp => {
            // An ExApp logs in through AppAPI's own header, which phase 1
            // does not check: with it, or as a user, the answer is 412.
            if !logged_in && request.header("authorization-app-api").is_none() {
                return Err(NcError::NotLoggedIn);
            }
            return Err(NcError::ExAppRequired);
        }
        Guard::User | Guard::UserNoCsrf if !logged_in => return Err(NcError::NotLoggedIn),
        Guard::User => {
            let bearer = matches!(login, Login::User { bearer: true, .. });
            let csrf = request
                .header("ocs-apirequest")
                .is_some_and(|value| !value.is_empty());
            if !bearer && !csrf {
                return Err(NcError::Csrf);
            }
        }
        Guard::UserNoCsrf => {}
    }
    let make = make.ok_or(NcError::ExAppRequired)?;
    Ok((make(params), login))
}
