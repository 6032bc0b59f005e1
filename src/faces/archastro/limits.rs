//! ArchAstro's wire limits, each named in the error that enforces it.

/// Items a page of sessions or routine runs holds at most (`limit`).
pub const PAGE_LIMIT_MAX: usize = 100;

/// Sessions a list answers when `limit` is absent (spec 1.7).
pub const SESSIONS_LIMIT_DEFAULT: usize = 25;

/// Routine runs a page answers when `limit` is absent (spec 1.7).
pub const RUNS_LIMIT_DEFAULT: usize = 50;

/// Newest sessions a list looks through for its filters; older ones are
/// out of reach, as hosted (spec 1.7: no cursor).
pub const SESSIONS_SCANNED_MAX: usize = 10_000;

/// Routines a list, a lookup by `lookup_key` or the top-level runs list
/// looks through.
pub const ROUTINES_SCANNED_MAX: usize = 10_000;

/// Routine runs the runs lists look through, newest first.
pub const RUNS_SCANNED_MAX: usize = 10_000;

/// Values of one list filter (`agent[]`, `status[]`, `routine_run[]`).
pub const FILTER_VALUES_MAX: usize = 100;

/// Characters of a session's `instructions`, a message's `content` or an
/// invoke's `message`.
pub const TEXT_CHARS_MAX: usize = 1_000_000;

/// Characters of a name, a lookup key or an idempotency key.
pub const NAME_CHARS_MAX: usize = 255;

/// Messages a session's inbox keeps (spec 2.4).
pub const INBOX_MESSAGES_MAX: usize = 1_000;

/// A session's `max_turns` when not given, and the largest it may be.
pub const MAX_TURNS_DEFAULT: u64 = 100;
pub const MAX_TURNS_MAX: u64 = 10_000;

/// Seconds a stream stays open at most, then `stream_timeout` (spec 1.9).
pub const STREAM_S_MAX: u64 = 3_600;

const _: () = assert!(SESSIONS_LIMIT_DEFAULT <= PAGE_LIMIT_MAX);
const _: () = assert!(RUNS_LIMIT_DEFAULT <= PAGE_LIMIT_MAX);
const _: () = assert!(MAX_TURNS_DEFAULT <= MAX_TURNS_MAX);
