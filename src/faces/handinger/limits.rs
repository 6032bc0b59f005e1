//! Handinger's wire limits (spec section 6), each named in the error that
//! enforces it.

/// Characters of a turn's `input`.
pub const INPUT_CHARS_MAX: usize = 1_000_000;

/// Characters of a client's `taskId`.
pub const TASK_ID_CHARS_MAX: usize = 255;

/// Turns of one task; past it a create is a 409 (never retried).
pub const TURNS_PER_TASK_MAX: usize = 10_000;

/// Characters of a task's title, cut from its first input's first line.
pub const TITLE_CHARS_MAX: usize = 80;

/// Seconds of a `delayed` or `interval` schedule.
pub const SCHEDULE_SECONDS_MAX: u64 = 31_536_000;

/// Characters of a worker webhook's `url`.
pub const WEBHOOK_URL_CHARS_MAX: usize = 2_048;

/// Delivery attempts a page of `webhook/executions` lists (spec 4.6).
pub const EXECUTIONS_PER_PAGE: usize = 50;

/// Seconds a turn's event stream stays open at most (spec choice 4).
pub const TURN_STREAM_S_MAX: u64 = 3_600;
