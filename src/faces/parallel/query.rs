//! Query strings and the few headers the API reads, parsed by the rules of
//! spec 1.5: an empty value means absent, the last repeat wins, unknown
//! names are ignored, and a value that does not parse is a 400 naming it.

use std::collections::HashMap;
use std::time::Duration;

use super::error::ApiError;
use crate::model::RunStatus;

/// The parsed query of one request.
#[derive(Debug, Default)]
pub struct Query {
    values: HashMap<String, String>,
}

impl Query {
    pub fn parse(raw: &str) -> Query {
        let mut values = HashMap::new();
        for pair in raw.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            let name = percent_decode(name);
            if value.is_empty() {
                // TypeScript sends `name=` for null: absent, and it must not
                // hide an earlier value either (last non-empty repeat wins).
                continue;
            }
            values.insert(name, value);
        }
        Query { values }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => match text.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(ApiError::bad_query(
                    name,
                    format!("'{text}' is not a boolean (true, false, 1 or 0)"),
                )),
            },
        }
    }

    /// A cursor: a decimal integer from 0 to 2^63-1 (spec 6).
    pub fn cursor(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|text| parse_cursor(name, text))
            .transpose()
    }

    /// A wait in seconds, at least 0, clamped to `max_s`.
    pub fn seconds(&self, name: &str, max_s: u64) -> Result<Option<Duration>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let seconds: f64 = text
            .parse()
            .map_err(|_| ApiError::bad_query(name, format!("'{text}' is not a number")))?;
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(ApiError::bad_query(
                name,
                format!("'{text}' must be a number of seconds, 0 or more"),
            ));
        }
        Ok(Some(Duration::from_secs_f64(seconds.min(max_s as f64))))
    }

    pub fn status(&self, name: &str) -> Result<Option<RunStatus>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => RunStatus::parse(text)
                .map(Some)
                .ok_or_else(|| ApiError::bad_query(name, format!("'{text}' is not a run status"))),
        }
    }

    /// An integer within `min..=max`.
    pub fn integer(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => match text.parse::<u64>() {
                Ok(value) if (min..=max).contains(&value) => Ok(Some(value)),
                _ => Err(ApiError::bad_query(
                    name,
                    format!("'{text}' is not an integer from {min} to {max}"),
                )),
            },
        }
    }
}

/// Parses a cursor value, from the query or the `Last-Event-ID` header.
pub fn parse_cursor(name: &str, text: &str) -> Result<u64, ApiError> {
    let valid = !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<i64>() {
        Ok(value) if valid && value >= 0 => Ok(value as u64),
        _ => Err(ApiError::bad_query(
            name,
            format!("'{text}' is not a cursor (a decimal integer from 0 to 9223372036854775807)"),
        )),
    }
}

/// Decodes `%XX` escapes and `+` (a space in form encoding). Invalid
/// escapes are kept as they are; invalid UTF-8 is replaced.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_absent_and_the_last_repeat_wins() {
        let query = Query::parse("a=1&a=2&b=&c=x%20y&d=%zz&e=%41");
        assert_eq!(query.get("a"), Some("2"));
        assert_eq!(query.get("b"), None);
        assert_eq!(query.get("c"), Some("x y"));
        assert_eq!(query.get("d"), Some("%zz"));
        assert_eq!(query.get("e"), Some("A"));
    }

    #[test]
    fn cursors_and_booleans_parse_strictly() {
        assert_eq!(parse_cursor("c", "0").ok(), Some(0));
        assert_eq!(
            parse_cursor("c", "9223372036854775807").ok(),
            Some(i64::MAX as u64)
        );
        for bad in ["-1", "9223372036854775808", "1.5", "abc", " 1", "+1"] {
            assert!(parse_cursor("c", bad).is_err(), "{bad}");
        }
        let query = Query::parse("t=TRUE&f=0&x=yes");
        assert_eq!(query.bool("t").ok(), Some(Some(true)));
        assert_eq!(query.bool("f").ok(), Some(Some(false)));
        assert!(query.bool("x").is_err());
    }

    #[test]
    fn seconds_clamp_and_reject_negatives() {
        let query = Query::parse("a=2.5&b=99999&c=-1&d=nan");
        assert_eq!(
            query.seconds("a", 3600).ok(),
            Some(Some(Duration::from_millis(2500)))
        );
        assert_eq!(
            query.seconds("b", 3600).ok(),
            Some(Some(Duration::from_secs(3600)))
        );
        assert!(query.seconds("c", 3600).is_err());
        assert!(query.seconds("d", 3600).is_err());
    }
}
