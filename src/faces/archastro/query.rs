//! Query strings as the SDK sends them (spec 1.5): arrays as repeated
//! `k[]=`, 0.5.3's single `k=`, and commas all read alike; an empty
//! value or the text `null` (an SDK `null`) is absent; a bad value or a
//! `limit` outside 1..=`PAGE_LIMIT_MAX` is a 422 naming the parameter.

use percent_encoding::percent_decode_str;

use super::error::{AError, Result};
use super::limits::{FILTER_VALUES_MAX, PAGE_LIMIT_MAX};

pub struct Query {
    pairs: Vec<(String, String)>,
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

impl Query {
    pub fn parse(raw: &str) -> Query {
        let pairs = raw
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(key), decode(value))
            })
            .collect();
        Query { pairs }
    }

    /// Every value of `name` and `name[]`, commas split, absent ones left
    /// out.
    pub fn list(&self, name: &str) -> Result<Vec<String>> {
        let array = format!("{name}[]");
        let values: Vec<String> = self
            .pairs
            .iter()
            .filter(|(key, _)| *key == name || *key == array)
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
            .filter(|value| !value.is_empty() && *value != "null")
            .map(str::to_string)
            .collect();
        if values.len() > FILTER_VALUES_MAX {
            return Err(AError::invalid(
                name,
                format!(
                    "has {} values, at most {FILTER_VALUES_MAX} (FILTER_VALUES_MAX)",
                    values.len()
                ),
            ));
        }
        Ok(values)
    }

    /// The one value of `name`; several are a 422.
    pub fn one(&self, name: &str) -> Result<Option<String>> {
        let mut values = self.list(name)?;
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            _ => Err(AError::invalid(name, "takes one value")),
        }
    }

    /// `limit`, `default` when absent.
    pub fn limit(&self, default: usize) -> Result<usize> {
        match self.one("limit")? {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=PAGE_LIMIT_MAX).contains(limit))
                .ok_or_else(|| {
                    AError::invalid(
                        "limit",
                        format!("must be a whole number from 1 to {PAGE_LIMIT_MAX} (PAGE_LIMIT_MAX), not '{text}'"),
                    )
                }),
        }
    }

    pub fn flag(&self, name: &str) -> Result<Option<bool>> {
        match self.one(name)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(AError::invalid(
                name,
                format!("must be true or false, not '{other}'"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_agent_forms_commas_and_null_read_alike() {
        let query = Query::parse("agent%5B%5D=a&agent%5B%5D=b&agent=c,d&agent=null&limit=null");
        assert_eq!(query.list("agent").expect("agents"), ["a", "b", "c", "d"]);
        assert_eq!(query.limit(25).expect("absent limit"), 25);
        assert!(Query::parse("limit=0").limit(25).is_err());
        assert!(Query::parse("limit=101").limit(25).is_err());
    }
}
