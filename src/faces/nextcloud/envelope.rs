//! The OCS envelope (spec 1.2 and 1.3): `{"ocs": {"meta", "data"}}` in
//! JSON or XML, with the v1 and v2 rules for the HTTP status and `meta`.
//!
//! Owns the rendering only: which status and data an answer has is the
//! handlers' and `error.rs`'s. XML is written here by hand rather than with
//! a crate: PHP's `XMLWriter` output that Nextcloud sends is a fixed
//! subset (elements and text, one-space indent, no attributes), so the
//! whole writer is the escaping of three characters and the indent.

use serde_json::{json, Map, Value};

use crate::server::Reply;

/// Which entry point a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    /// The version a path names; `None` outside `/ocs/v{1,2}.php/`.
    pub fn of(path: &str) -> Option<Version> {
        if path.starts_with("/ocs/v1.php/") || path == "/ocs/v1.php" {
            Some(Version::V1)
        } else if path.starts_with("/ocs/v2.php/") || path == "/ocs/v2.php" {
            Some(Version::V2)
        } else {
            None
        }
    }
}

/// The answer's body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// What a controller answers in: the `format` parameter, else the
    /// first `Accept` item that is exactly `application/json` or
    /// `application/xml`, else XML (spec 1.3).
    pub fn negotiate(format: Option<&str>, accept: Option<&str>) -> Format {
        if let Some(format) = format.and_then(Format::named) {
            return format;
        }
        for item in accept.unwrap_or_default().split(',') {
            match item.trim() {
                "application/json" => return Format::Json,
                "application/xml" => return Format::Xml,
                _ => {}
            }
        }
        Format::Xml
    }

    /// What the router's own answers (998, 997, 996) use: `format` only.
    pub fn router(format: Option<&str>) -> Format {
        format.and_then(Format::named).unwrap_or(Format::Xml)
    }

    fn named(name: &str) -> Option<Format> {
        match name {
            "json" => Some(Format::Json),
            "xml" => Some(Format::Xml),
            _ => None,
        }
    }
}

/// An OCS answer before the envelope: the controller's status (or one of
/// the special codes 996..999), the `meta.message` of a failure, the data.
#[derive(Debug, Clone, PartialEq)]
pub struct Ocs {
    pub status: u16,
    pub message: String,
    pub data: Value,
}

impl Ocs {
    pub fn ok(data: Value) -> Ocs {
        Ocs {
            status: 200,
            message: String::new(),
            data,
        }
    }
}

/// Where the router answered (Content-Type `text/xml` for its XML) or a
/// controller did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Router,
    Controller,
}

/// The HTTP status v2 sends for an OCS status (spec 1.2).
fn v2_http_status(status: u16) -> u16 {
    match status {
        997 => 401,
        998 => 404,
        996 | 999 => 500,
        200..=599 => status,
        _ => 400,
    }
}

/// The envelope as a reply, with `headers` added.
pub fn render(
    answer: Ocs,
    version: Version,
    format: Format,
    origin: Origin,
    headers: Vec<(&'static str, String)>,
) -> Reply {
    let (http_status, statuscode, ok) = match version {
        Version::V2 => {
            let http = v2_http_status(answer.status);
            (http, answer.status, (200..300).contains(&answer.status))
        }
        Version::V1 => {
            let code = if answer.status == 200 {
                100
            } else {
                answer.status
            };
            let http = if answer.status == 997 { 401 } else { 200 };
            (http, code, code == 100)
        }
    };
    if version == Version::V2 && http_status == 204 {
        return Reply::Json(204, String::new(), headers);
    }
    let mut meta = Map::new();
    meta.insert("status".into(), json!(if ok { "ok" } else { "failure" }));
    meta.insert("statuscode".into(), json!(statuscode));
    meta.insert(
        "message".into(),
        json!(if ok { "OK".to_string() } else { answer.message }),
    );
    if version == Version::V1 {
        meta.insert("totalitems".into(), json!(""));
        meta.insert("itemsperpage".into(), json!(""));
    }
    let envelope = json!({"ocs": {"meta": Value::Object(meta), "data": answer.data}});
    let (body, content_type) = match (format, origin) {
        (Format::Json, _) => (envelope.to_string(), "application/json; charset=utf-8"),
        (Format::Xml, Origin::Controller) => (xml(&envelope), "application/xml; charset=utf-8"),
        (Format::Xml, Origin::Router) => (xml(&envelope), "text/xml; charset=UTF-8"),
    };
    let mut headers = headers;
    headers.push(("Content-Type", content_type.to_string()));
    Reply::Json(http_status, body, headers)
}

/// A JSON value as Nextcloud's XML (spec 1.3): list items are
/// `<element>`, null and empty maps or lists `<x/>`, true `1`, false
/// empty, a whole float without its `.0`.
pub fn xml(value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n");
    if let Value::Object(object) = value {
        for (key, value) in object {
            element(&mut out, key, value, 0);
        }
    }
    out
}

fn element(out: &mut String, name: &str, value: &Value, depth: usize) {
    // PHP turns a numeric key (a list index) into `element`.
    let name = if name.parse::<f64>().is_ok() {
        "element"
    } else {
        name
    };
    let indent = " ".repeat(depth);
    let children: Option<Vec<(String, &Value)>> = match value {
        Value::Object(object) => Some(object.iter().map(|(k, v)| (k.clone(), v)).collect()),
        Value::Array(items) => Some(items.iter().map(|v| ("element".to_string(), v)).collect()),
        _ => None,
    };
    match (children, value) {
        (Some(children), _) if children.is_empty() => {
            out.push_str(&format!("{indent}<{name}/>\n"));
        }
        (Some(children), _) => {
            out.push_str(&format!("{indent}<{name}>\n"));
            for (key, child) in children {
                element(out, &key, child, depth + 1);
            }
            out.push_str(&format!("{indent}</{name}>\n"));
        }
        (None, Value::Null) => out.push_str(&format!("{indent}<{name}/>\n")),
        (None, scalar) => {
            let text = match scalar {
                Value::Bool(true) => "1".to_string(),
                Value::Bool(false) => String::new(),
                Value::Number(number) => match number.as_f64() {
                    Some(float) if number.is_f64() && float.fract() == 0.0 => {
                        format!("{}", float as i64)
                    }
                    _ => number.to_string(),
                },
                Value::String(text) => escape(text),
                _ => String::new(),
            };
            out.push_str(&format!("{indent}<{name}>{text}</{name}>\n"));
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_must_match_exactly() {
        assert_eq!(Format::negotiate(None, None), Format::Xml);
        assert_eq!(
            Format::negotiate(None, Some("text/html, application/json")),
            Format::Json
        );
        assert_eq!(
            Format::negotiate(None, Some("application/json; charset=utf-8")),
            Format::Xml
        );
        assert_eq!(
            Format::negotiate(Some("xml"), Some("application/json")),
            Format::Xml
        );
        assert_eq!(Format::router(None), Format::Xml);
    }

    #[test]
    fn xml_follows_php() {
        let value = json!({"ocs": {"data": {"a": [1, 2], "b": null, "c": {}, "d": true,
                                            "e": false, "f": 1.0, "g": 0.5, "h": "x<y&z"}}});
        assert_eq!(
            xml(&value),
            "<?xml version=\"1.0\"?>\n<ocs>\n <data>\n  <a>\n   <element>1</element>\n   \
             <element>2</element>\n  </a>\n  <b/>\n  <c/>\n  <d>1</d>\n  <e></e>\n  <f>1</f>\n  \
             <g>0.5</g>\n  <h>x&lt;y&amp;z</h>\n </data>\n</ocs>\n"
        );
    }
}
