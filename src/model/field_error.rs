//! A problem with one field of a request, and where it is: shared by the
//! engine's checks and every face's parser, so that each face renders the
//! same list of problems in its own error form.
//!
//! Owns [`FieldError`], its kinds and its location path ([`Loc`]); holds no
//! face's envelope and no HTTP status (a face decides which status a kind
//! of problem gets).

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// One step of a field's location: an object key or an array index.
#[derive(Debug, Clone, PartialEq)]
pub enum Loc {
    Key(String),
    Index(usize),
}

impl From<&str> for Loc {
    fn from(key: &str) -> Loc {
        Loc::Key(key.to_string())
    }
}

impl From<String> for Loc {
    fn from(key: String) -> Loc {
        Loc::Key(key)
    }
}

impl From<usize> for Loc {
    fn from(index: usize) -> Loc {
        Loc::Index(index)
    }
}

impl Loc {
    fn to_json(&self) -> Value {
        match self {
            Loc::Key(key) => Value::String(key.clone()),
            Loc::Index(index) => Value::from(*index),
        }
    }
}

impl Serialize for Loc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Loc::Key(key) => serializer.serialize_str(key),
            Loc::Index(index) => serializer.serialize_u64(*index as u64),
        }
    }
}

/// What is wrong with a field; becomes the `type` of an error item
/// (spec 1.6).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorKind {
    /// A required field is absent or null.
    Missing,
    /// The field has the wrong JSON type.
    TypeError,
    /// The field has the right type but a value the spec does not allow.
    ValueError,
    /// `processor` names no processor in the registry (a 403 when alone).
    UnknownProcessor,
    /// A limit of section 8 or 10.9 was passed; `limit` is its name in
    /// `limits.rs`.
    LimitExceeded {
        limit: &'static str,
        max: u64,
        got: u64,
    },
}

/// One problem of a request, at one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub loc: Vec<Loc>,
    pub msg: String,
    pub kind: FieldErrorKind,
}

impl FieldError {
    pub fn new(loc: Vec<Loc>, kind: FieldErrorKind, msg: impl Into<String>) -> FieldError {
        FieldError {
            loc,
            msg: msg.into(),
            kind,
        }
    }

    pub fn missing(loc: Vec<Loc>) -> FieldError {
        FieldError::new(loc, FieldErrorKind::Missing, "field required")
    }

    /// `expected` names the type wanted, with its article: "a string".
    pub fn type_error(loc: Vec<Loc>, expected: &str) -> FieldError {
        FieldError::new(
            loc,
            FieldErrorKind::TypeError,
            format!("expected {expected}"),
        )
    }

    pub fn value_error(loc: Vec<Loc>, msg: impl Into<String>) -> FieldError {
        FieldError::new(loc, FieldErrorKind::ValueError, msg)
    }

    pub fn limit(loc: Vec<Loc>, limit: &'static str, max: u64, got: u64) -> FieldError {
        FieldError::new(
            loc,
            FieldErrorKind::LimitExceeded { limit, max, got },
            format!("got {got}, at most {max} ({limit})"),
        )
    }

    /// The same error, its location under `prefix`.
    pub fn prefixed(mut self, prefix: &[Loc]) -> FieldError {
        let mut loc = prefix.to_vec();
        loc.append(&mut self.loc);
        self.loc = loc;
        self
    }

    /// The wire `type` of the error item (spec 1.6).
    pub fn type_str(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Missing => "missing",
            FieldErrorKind::TypeError => "type_error",
            FieldErrorKind::ValueError => "value_error",
            FieldErrorKind::UnknownProcessor => "unknown_processor",
            FieldErrorKind::LimitExceeded { .. } => "limit_exceeded",
        }
    }

    /// The error item of spec 1.6: `loc`, `msg`, `type`, and for a limit
    /// also `limit`, `max`, `got`.
    pub fn to_json(&self) -> Value {
        let mut item = Map::new();
        item.insert(
            "loc".into(),
            Value::Array(self.loc.iter().map(Loc::to_json).collect()),
        );
        item.insert("msg".into(), Value::String(self.msg.clone()));
        item.insert("type".into(), Value::String(self.type_str().into()));
        if let FieldErrorKind::LimitExceeded { limit, max, got } = self.kind {
            item.insert("limit".into(), Value::String(limit.into()));
            item.insert("max".into(), Value::from(max));
            item.insert("got".into(), Value::from(got));
        }
        Value::Object(item)
    }

    /// The location as a path: keys joined by `.`, indices as `[n]`, e.g.
    /// `inputs[3].processor`.
    pub fn loc_string(&self) -> String {
        render_loc("", &self.loc)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc_string(), self.msg)
    }
}

fn render_loc(prefix: &str, loc: &[Loc]) -> String {
    let mut text = prefix.to_string();
    for step in loc {
        match step {
            Loc::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Loc::Index(index) => {
                text.push('[');
                text.push_str(&index.to_string());
                text.push(']');
            }
        }
    }
    text
}

/// The `message` of a validation error (spec 1.6): the first problem as
/// `loc: msg`, its location under `prefix` (`body`), then ` (and N more)`.
pub fn summarize(errors: &[FieldError], prefix: &str) -> String {
    let Some(first) = errors.first() else {
        return "invalid request".to_string();
    };
    let loc = render_loc(prefix, &first.loc);
    let mut message = if loc.is_empty() {
        first.msg.clone()
    } else {
        format!("{loc}: {}", first.msg)
    };
    if errors.len() > 1 {
        message.push_str(&format!(" (and {} more)", errors.len() - 1));
    }
    message
}
