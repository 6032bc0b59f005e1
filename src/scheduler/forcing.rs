//! Failures and delays on demand: the reserved `mock_` keys of a run's
//! metadata, which force what any processor's run does.
//!
//! `mock_delay_ms` makes each attempt last at least that long (a cancel
//! still ends it at once), `mock_fail_times` fails the first attempts with
//! a transient error, `mock_fail` then fails the run for good. They apply
//! to every processor, not only `mock`: a test suite forces a failure of a
//! real `command` or `openai` run the same way. The keys keep the `mock_`
//! prefix of Parallel's spec 10.9, where they began; any other `mock_` key
//! is refused as a typo. Owns checking and reading them; the scheduler
//! applies them.

use serde_json::Value;

use crate::limits;
use crate::model::{FieldError, FieldErrorKind, JsonObject, Loc};
use crate::schema::json_type_name;

/// A limit's name and value together, so an error can never cite one
/// limit with another's number.
macro_rules! named_limit {
    ($name:ident) => {
        (stringify!($name), limits::$name as u64)
    };
}

/// Keys with this prefix are reserved for forcing.
pub const KEY_PREFIX: &str = "mock_";
const MOCK_DELAY_MS_KEY: &str = "mock_delay_ms";
const MOCK_FAIL_KEY: &str = "mock_fail";
const MOCK_FAIL_TIMES_KEY: &str = "mock_fail_times";

/// The problems of the reserved keys of a run's metadata, at
/// `["metadata", key]`; other keys are not looked at.
pub fn check(metadata: &JsonObject) -> Vec<FieldError> {
    metadata
        .iter()
        .filter(|(key, _)| key.starts_with(KEY_PREFIX))
        .filter_map(|(key, value)| {
            check_key(
                key,
                value,
                vec![Loc::Key("metadata".into()), Loc::Key(key.clone())],
            )
        })
        .collect()
}

/// One reserved key of run metadata; any other `mock_` key is a typo
/// guard error. `loc` is where the key is.
pub fn check_key(key: &str, value: &Value, loc: Vec<Loc>) -> Option<FieldError> {
    match key {
        MOCK_DELAY_MS_KEY => {
            let Some(delay_ms) = mock_number(value) else {
                return Some(FieldError::value_error(
                    loc,
                    format!(
                        "expected a number of milliseconds >= 0 or a string holding one, \
                         got {}",
                        describe_value(value)
                    ),
                ));
            };
            let (limit, max) = named_limit!(MOCK_DELAY_MS_MAX);
            // The sub-millisecond part is ignored (spec 10.9); `as`
            // saturates, so a huge number reports `u64::MAX`.
            let got = delay_ms.floor() as u64;
            (got > max).then(|| {
                FieldError::new(
                    loc,
                    FieldErrorKind::LimitExceeded { limit, max, got },
                    format!("delay too long: {got} ms, at most {max} ({limit})"),
                )
            })
        }
        MOCK_FAIL_KEY => {
            let Value::String(message) = value else {
                return Some(FieldError::new(
                    loc,
                    FieldErrorKind::TypeError,
                    format!("expected a string, got {}", json_type_name(value)),
                ));
            };
            let (limit, max) = named_limit!(MOCK_FAIL_CHARS_MAX);
            let chars = message.chars().count() as u64;
            if chars == 0 {
                Some(FieldError::value_error(
                    loc,
                    "expected a failure message of 1 or more characters",
                ))
            } else if chars > max {
                Some(FieldError::new(
                    loc,
                    FieldErrorKind::LimitExceeded {
                        limit,
                        max,
                        got: chars,
                    },
                    format!("message too long: {chars} characters, at most {max} ({limit})"),
                ))
            } else {
                None
            }
        }
        MOCK_FAIL_TIMES_KEY => {
            let Some(times) = mock_integer(value) else {
                return Some(FieldError::value_error(
                    loc,
                    format!(
                        "expected an integer >= 0 or a string of digits, got {}",
                        describe_value(value)
                    ),
                ));
            };
            let (limit, max) = named_limit!(MOCK_FAIL_TIMES_MAX);
            (times > max).then(|| {
                FieldError::new(
                    loc,
                    FieldErrorKind::LimitExceeded {
                        limit,
                        max,
                        got: times,
                    },
                    format!("too many forced failures: {times}, at most {max} ({limit})"),
                )
            })
        }
        _ => Some(FieldError::value_error(
            loc,
            format!(
                "unknown reserved key '{key}': keys starting with '{KEY_PREFIX}' are \
                 reserved; the known ones are {MOCK_DELAY_MS_KEY}, {MOCK_FAIL_KEY} and \
                 {MOCK_FAIL_TIMES_KEY}"
            ),
        )),
    }
}

/// A short rendering of a bad value for a message, cut so that a huge
/// value does not make a huge message.
fn describe_value(value: &Value) -> String {
    const SHOWN_CHARS_MAX: usize = 40;
    let text = value.to_string();
    if text.chars().count() > SHOWN_CHARS_MAX {
        let cut: String = text.chars().take(SHOWN_CHARS_MAX).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// A non-negative number, or a string holding one in plain decimal
/// (`"1500"`, `"1500.5"`).
fn mock_number(value: &Value) -> Option<f64> {
    let number = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => {
            let (whole, fraction) = match text.split_once('.') {
                Some((whole, fraction)) => (whole, Some(fraction)),
                None => (text.as_str(), None),
            };
            let all_digits =
                |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            if !all_digits(whole) || !fraction.is_none_or(all_digits) {
                return None;
            }
            text.parse::<f64>().ok()?
        }
        _ => return None,
    };
    (number.is_finite() && number >= 0.0).then_some(number)
}

/// A non-negative JSON integer, or a string of digits; a digit string too
/// large for `u64` reads as `u64::MAX` so the limit check names it. A
/// whole float (`33.0`, `1e3`) counts as an integer, as JSON Schema's
/// `integer` (the OpenAPI document's type for this key) says; `as`
/// saturates, so a huge one reaches the limit check too.
fn mock_integer(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64().or_else(|| {
            let float = number.as_f64()?;
            (float >= 0.0 && float.fract() == 0.0).then_some(float as u64)
        }),
        Value::String(text) => {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(text.parse::<u64>().unwrap_or(u64::MAX))
        }
        _ => None,
    }
}

/// The forced behaviour a run's metadata asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forcing {
    /// Least duration of each attempt, in whole milliseconds.
    pub delay_ms: u64,
    /// Fail permanently with this message (after the forced transient
    /// failures).
    pub fail: Option<String>,
    /// Attempts 1 to `fail_times` fail with a transient error.
    pub fail_times: u32,
}

/// Reads the reserved keys of metadata that [`check`] accepted. Tolerant:
/// a value it cannot read counts as absent and an out-of-range one is
/// clamped to its limit, so a bad row read back can never panic.
pub fn read(metadata: Option<&JsonObject>) -> Forcing {
    let Some(metadata) = metadata else {
        return Forcing::default();
    };
    let delay_ms = metadata
        .get(MOCK_DELAY_MS_KEY)
        .and_then(mock_number)
        .map(|delay_ms| (delay_ms.floor() as u64).min(limits::MOCK_DELAY_MS_MAX))
        .unwrap_or(0);
    let fail = metadata
        .get(MOCK_FAIL_KEY)
        .and_then(Value::as_str)
        .filter(|message| !message.is_empty())
        .map(str::to_string);
    let fail_times = metadata
        .get(MOCK_FAIL_TIMES_KEY)
        .and_then(mock_integer)
        .map(|times| times.min(limits::MOCK_FAIL_TIMES_MAX))
        .and_then(|times| u32::try_from(times).ok())
        .unwrap_or(0);
    Forcing {
        delay_ms,
        fail,
        fail_times,
    }
}
