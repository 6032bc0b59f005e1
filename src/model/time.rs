//! Time as the engine keeps it: Unix microseconds, shown as RFC 3339 UTC
//! with six fractional digits.
//!
//! No I/O beyond reading the clock.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};

/// A point in time with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(since.as_micros() as i64)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    fn system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.0.max(0) as u64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_micros(self.system_time())
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let time = humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)?;
        let since = time
            .duration_since(UNIX_EPOCH)
            .map_err(serde::de::Error::custom)?;
        Ok(Timestamp(since.as_micros() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_six_fraction_digits_and_z() {
        let text = Timestamp(1_745_439_708_037_943).to_string();
        assert_eq!(text, "2025-04-23T20:21:48.037943Z");
    }
}
