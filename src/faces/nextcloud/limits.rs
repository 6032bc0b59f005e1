//! The Nextcloud face's limits, each named in the error that enforces it,
//! and the schedule rate limit (spec 1.8): a sliding window per user, in
//! memory (a restart empties it), as Nextcloud's `UserRateLimit` counts.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Characters of a `customId` (Nextcloud's column is 255 wide).
pub const CUSTOM_ID_CHARS_MAX: usize = 255;

/// Characters of a `userId` (the Basic login).
pub const USER_ID_CHARS_MAX: usize = 64;

/// Characters of an `appId`: the spec sets none, so as many as a
/// `customId`.
pub const APP_ID_CHARS_MAX: usize = 255;

/// Characters of a `webhookUri` or a `webhookMethod`.
pub const WEBHOOK_CHARS_MAX: usize = 4000;

/// Bytes of a task's `input` as JSON, after the shape check: it is kept in
/// the run and in the task's record, which must fit the engine's record
/// limit with the rest of the task.
pub const INPUT_BYTES_MAX: usize = 1024 * 1024;

/// The most a record's other fields can take as JSON: every character
/// escaped (`\u00XX`, 6 bytes), and 4 KiB for the keys and numbers.
const RECORD_REST_BYTES_MAX: usize =
    6 * (2 * WEBHOOK_CHARS_MAX + CUSTOM_ID_CHARS_MAX + APP_ID_CHARS_MAX + USER_ID_CHARS_MAX) + 4096;

const _: () =
    assert!(INPUT_BYTES_MAX + RECORD_REST_BYTES_MAX <= crate::limits::RECORD_BODY_BYTES_MAX);

/// Characters of `userFacingErrorMessage`: a failed run's error, cut.
pub const ERROR_MESSAGE_CHARS_MAX: usize = 1000;

/// Schedules per user per window (Nextcloud: 20 per 120 s).
pub const SCHEDULES_PER_WINDOW_DEFAULT: u32 = 20;
pub const SCHEDULE_WINDOW_S_DEFAULT: u64 = 120;

/// Seconds from scheduling to `completionExpectedAt` (spec choice 2).
pub const EXPECTED_RUNTIME_S_DEFAULT: u64 = 1;

/// Users whose windows are kept at once; past it the oldest quiet ones go,
/// so that made-up logins cannot grow the map without bound.
pub const RATE_USERS_MAX: usize = 10_000;

/// Ids tried past the counter's hint when another schedule took the next
/// one first; more is a broken store, not a race.
pub const ID_PROBES_MAX: u64 = 10_000;

/// A sliding window of schedule times per user.
pub struct ScheduleLimiter {
    limit: u32,
    window: Duration,
    users: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl ScheduleLimiter {
    pub fn new(limit: u32, window_s: u64) -> ScheduleLimiter {
        ScheduleLimiter {
            limit,
            window: Duration::from_secs(window_s),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request of `user` at `now`; false when it is over the
    /// limit (and then it is not counted, as Nextcloud does not).
    pub fn take(&self, user: &str, now: Instant) -> bool {
        if self.limit == 0 {
            return true;
        }
        let mut users = self.users.lock();
        let window = self.window;
        let expired = |times: &mut VecDeque<Instant>| {
            while times
                .front()
                .is_some_and(|at| now.saturating_duration_since(*at) >= window)
            {
                times.pop_front();
            }
        };
        if !users.contains_key(user) && users.len() >= RATE_USERS_MAX {
            users.retain(|_, times| {
                expired(times);
                !times.is_empty()
            });
            if users.len() >= RATE_USERS_MAX {
                // Every kept user is busy: the newcomer is not tracked
                // rather than one of them forgotten.
                return true;
            }
        }
        let times = users.entry(user.to_string()).or_default();
        expired(times);
        if times.len() >= self.limit as usize {
            return false;
        }
        times.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides_and_refusals_do_not_count() {
        let limiter = ScheduleLimiter::new(2, 10);
        let start = Instant::now();
        assert!(limiter.take("alice", start));
        assert!(limiter.take("alice", start + Duration::from_secs(5)));
        assert!(!limiter.take("alice", start + Duration::from_secs(6)));
        assert!(limiter.take("bob", start + Duration::from_secs(6)));
        assert!(limiter.take("alice", start + Duration::from_secs(10)));
        assert!(!limiter.take("alice", start + Duration::from_secs(14)));
        assert!(limiter.take("alice", start + Duration::from_secs(15)));
    }
}
