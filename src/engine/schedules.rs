//! Schedules through the engine: make, read, list, pause, resume, cancel,
//! the runs a schedule made, and the timer thread that fires due ones.
//!
//! When a schedule fires next is computed here (cron in its time zone,
//! intervals from the schedule's creation); a fire is one store op that
//! inserts the run and moves the next time on with a compare-and-set, so a
//! fire happens exactly once, also across a crash. Catch-up: fires missed
//! while the process was down (or the clock jumped) make one run, not one
//! per missed tick, because the next time is computed from now. The clock
//! is injected (`Clock`), so tests move time instead of sleeping. Holds no
//! SQL and no face's wire.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use parking_lot::{Condvar, Mutex};

use super::error::{not_found, Error, Result};
use super::Engine;
use crate::limits::SCHEDULE_FIRES_PER_LOOK_MAX;
use crate::model::{
    is_id, new_id, FieldError, Loc, Run, Schedule, ScheduleRequest, ScheduleState, Timestamp, When,
};
use crate::store::{Fire, NewRun, NewSchedule, Op, ScheduleChange, Store};

/// Where the engine reads the time for schedules.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    /// Sleeps until `until` by this clock, or until [`Clock::notify`], or
    /// at most `max` of real time.
    fn sleep(&self, until: Option<Timestamp>, max: Duration);
    /// Ends a [`Clock::sleep`] early (a schedule changed).
    fn notify(&self);
}

/// The system's clock.
#[derive(Default)]
pub struct SystemClock {
    sleeper: Mutex<Option<Thread>>,
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep(&self, until: Option<Timestamp>, max: Duration) {
        *self.sleeper.lock() = Some(std::thread::current());
        let wait = until.map_or(max, |until| {
            Duration::from_micros((until.micros() - self.now().micros()).max(0) as u64).min(max)
        });
        std::thread::park_timeout(wait);
    }

    fn notify(&self) {
        if let Some(thread) = self.sleeper.lock().as_ref() {
            thread.unpark();
        }
    }
}

/// A clock that moves only when told to, for tests: `advance` wakes the
/// timer, which fires what became due.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
    moved: Condvar,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
            moved: Condvar::new(),
        }
    }

    /// Moves the clock on and wakes the timer.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock();
        *now = Timestamp(now.micros() + by.as_micros() as i64);
        self.moved.notify_all();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock()
    }

    fn sleep(&self, until: Option<Timestamp>, max: Duration) {
        let mut now = self.now.lock();
        if until.is_some_and(|until| *now >= until) {
            return;
        }
        self.moved.wait_for(&mut now, max);
    }

    fn notify(&self) {
        self.moved.notify_all();
    }
}

/// The timer thread.
pub(super) struct Timer {
    stopping: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Longest real-time sleep with nothing due, so that a lost wake-up (there
/// should be none) costs at most this.
const IDLE_SLEEP_MAX: Duration = Duration::from_secs(1);

impl Timer {
    pub(super) fn start(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        on_fire: impl Fn() + Send + 'static,
    ) -> std::io::Result<Timer> {
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stopping, clock) = (stopping.clone(), clock.clone());
            std::thread::Builder::new()
                .name("taskyard-timer".into())
                .spawn(move || {
                    while !stopping.load(Ordering::SeqCst) {
                        let now = clock.now();
                        match fire_due(&store, now) {
                            Ok(made) if made > 0 => on_fire(),
                            _ => {}
                        }
                        let next = store.next_schedule_at().ok().flatten().map(Timestamp);
                        if next.is_some_and(|next| next <= now) {
                            // Still due: a page of fires was full.
                            continue;
                        }
                        clock.sleep(next, IDLE_SLEEP_MAX);
                    }
                })?
        };
        Ok(Timer {
            stopping,
            clock,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Wakes the timer: a schedule changed.
    pub(super) fn wake(&self) {
        self.clock.notify();
    }

    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.clock.notify();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

/// Fires every schedule due at `now`; answers the runs made.
fn fire_due(store: &Store, now: Timestamp) -> Result<usize> {
    let due = store.due_schedules(now.micros(), SCHEDULE_FIRES_PER_LOOK_MAX)?;
    if due.is_empty() {
        return Ok(0);
    }
    let fires = due
        .into_iter()
        .map(|(seq, expected, spec, created_at)| {
            let when: When = serde_json::from_str(&spec)
                .map_err(|e| Error::Internal(format!("stored schedule does not decode: {e}")))?;
            Ok(Fire {
                seq,
                expected,
                next_at: next_after(&when, Timestamp(created_at), now)?.map(Timestamp::micros),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let made = store
        .writer
        .call(|reply| Op::FireSchedules { fires, reply })?;
    Ok(made.len())
}

/// When a schedule made at `created` fires first, seen at `created`.
fn first_at(when: &When, created: Timestamp) -> Result<Option<Timestamp>> {
    Ok(match when {
        When::At { at } => Some(*at),
        When::Delay { delay_ms } => {
            Some(Timestamp(created.micros().saturating_add(
                (*delay_ms).min(i64::MAX as u64 / 1_000) as i64 * 1_000,
            )))
        }
        When::Cron { .. } | When::Interval { .. } => next_after(when, created, created)?,
    })
}

/// The first fire time strictly after `now`; `None` for a one-time
/// schedule (it has fired).
fn next_after(when: &When, created: Timestamp, now: Timestamp) -> Result<Option<Timestamp>> {
    match when {
        When::At { .. } | When::Delay { .. } => Ok(None),
        When::Interval { every_s } => {
            let every = (*every_s as i64).max(1) * 1_000_000;
            let elapsed = (now.micros() - created.micros()).max(0);
            Ok(Some(Timestamp(
                created.micros() + (elapsed / every + 1) * every,
            )))
        }
        When::Cron { cron, timezone } => {
            let (cron, zone) = parse_cron(cron, timezone)
                .map_err(|error| Error::Internal(format!("stored cron: {}", error.msg)))?;
            let start = Utc
                .timestamp_micros(now.micros())
                .single()
                .ok_or_else(|| Error::Internal("time out of range".into()))?
                .with_timezone(&zone);
            let next = cron
                .find_next_occurrence(&start, false)
                .map_err(|e| Error::Internal(format!("no next fire time: {e}")))?;
            Ok(Some(Timestamp(next.with_timezone(&Utc).timestamp_micros())))
        }
    }
}

/// A 5-field cron expression and its time zone, or the problem with them.
fn parse_cron(
    cron: &str,
    timezone: &str,
) -> std::result::Result<(croner::Cron, chrono_tz::Tz), FieldError> {
    let fields = cron.split_whitespace().count();
    if fields != 5 {
        return Err(FieldError::value_error(
            vec![Loc::Key("when".into()), Loc::Key("cron".into())],
            format!("expected 5 fields (minute hour day month weekday), got {fields}"),
        ));
    }
    let parsed = croner::Cron::from_str(cron).map_err(|error| {
        FieldError::value_error(
            vec![Loc::Key("when".into()), Loc::Key("cron".into())],
            format!("not a cron expression: {error}"),
        )
    })?;
    let zone = chrono_tz::Tz::from_str(timezone).map_err(|_| {
        FieldError::value_error(
            vec![Loc::Key("when".into()), Loc::Key("timezone".into())],
            format!("'{timezone}' is not a time zone (an IANA name such as Europe/Paris, or UTC)"),
        )
    })?;
    Ok((parsed, zone))
}

impl Engine {
    /// The problems of a schedule's `when`, located at `["when", ...]`.
    pub fn check_when(&self, when: &When) -> Vec<FieldError> {
        match when {
            When::Cron { cron, timezone } => match parse_cron(cron, timezone) {
                Err(problem) => vec![problem],
                // A pattern no date matches (30 February) never fires.
                Ok(_)
                    if next_after(when, self.inner.clock.now(), self.inner.clock.now())
                        .is_err() =>
                {
                    vec![FieldError::value_error(
                        vec![Loc::Key("when".into()), Loc::Key("cron".into())],
                        format!("'{cron}' names no time that comes"),
                    )]
                }
                Ok(_) => Vec::new(),
            },
            When::Interval { every_s } if *every_s < self.inner.interval_floor_s => {
                vec![FieldError::limit(
                    vec![Loc::Key("when".into()), Loc::Key("every_s".into())],
                    "SCHEDULE_INTERVAL_S_MIN",
                    self.inner.interval_floor_s,
                    *every_s,
                )]
            }
            _ => Vec::new(),
        }
    }

    /// Makes a schedule; its runs pass the checks every run passes.
    pub fn create_schedule(&self, request: ScheduleRequest) -> Result<Schedule> {
        self.create_schedule_with(request, false, None)
    }

    /// [`Engine::create_schedule`] whose fires never overlap (a fire while
    /// the schedule's previous run is still active records a run that is
    /// already cancelled, its error's detail `{"skipped": true}`), with a
    /// face's index record `(face, kind, id_prefix + schedule id)` written
    /// in the same transaction, so the face finds every schedule it made,
    /// also across a crash.
    pub fn create_exclusive_schedule(
        &self,
        request: ScheduleRequest,
        (face, kind, id_prefix): (&str, &str, &str),
    ) -> Result<Schedule> {
        let index = crate::store::RecordKey {
            face: face.to_string(),
            kind: kind.to_string(),
            id: id_prefix.to_string(),
        };
        self.create_schedule_with(request, true, Some(index))
    }

    fn create_schedule_with(
        &self,
        request: ScheduleRequest,
        skip_while_active: bool,
        index: Option<crate::store::RecordKey>,
    ) -> Result<Schedule> {
        let mut errors = self.check_when(&request.when);
        errors.extend(
            self.check_run(&request.run)
                .into_iter()
                .map(|e| e.prefixed(&[Loc::Key("run".into())])),
        );
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let now = self.inner.clock.now();
        let first = first_at(&request.when, now)?
            .ok_or_else(|| Error::Internal("a schedule with no first fire".into()))?;
        let row = self.write(|reply| Op::CreateSchedule {
            schedule: NewSchedule {
                id: new_id(),
                spec: crate::model::to_json(&request.when),
                template: NewRun {
                    skip_while_active,
                    ..self.new_run(&request.run, None)
                },
                next_at: first.micros(),
                created_at: now.micros(),
                index: index.clone(),
            },
            reply,
        })?;
        self.inner.timer.wake();
        Ok(row.to_model()?)
    }

    fn schedule_row(&self, id: &str) -> Result<crate::store::ScheduleRow> {
        if !is_id(id) {
            return Err(not_found("schedule", id));
        }
        self.inner
            .store
            .schedule(id)?
            .ok_or_else(|| not_found("schedule", id))
    }

    pub fn get_schedule(&self, id: &str) -> Result<Schedule> {
        Ok(self.schedule_row(id)?.to_model()?)
    }

    /// Every schedule, newest first.
    pub fn list_schedules(&self) -> Result<Vec<Schedule>> {
        self.inner
            .store
            .list_schedules()?
            .iter()
            .map(|row| Ok(row.to_model()?))
            .collect()
    }

    /// Stops future fires; a paused schedule keeps its runs.
    pub fn pause_schedule(&self, id: &str) -> Result<Schedule> {
        self.change_schedule(id, ScheduleChange::Pause, ScheduleState::Paused)
    }

    /// Fires again: a recurring schedule from its next time after now, a
    /// one-time one at its time (at once if that has passed).
    pub fn resume_schedule(&self, id: &str) -> Result<Schedule> {
        let row = self.schedule_row(id)?;
        let schedule = row.to_model()?;
        let now = self.inner.clock.now();
        let next_at = match &schedule.when {
            When::Cron { .. } | When::Interval { .. } => {
                next_after(&schedule.when, Timestamp(row.created_at), now)?
            }
            when => first_at(when, Timestamp(row.created_at))?,
        };
        self.change_schedule(
            id,
            ScheduleChange::Resume {
                next_at: next_at.map(Timestamp::micros),
            },
            ScheduleState::Active,
        )
    }

    /// Removes a schedule: it fires no more. Its runs stay.
    pub fn cancel_schedule(&self, id: &str) -> Result<Schedule> {
        self.change_schedule(id, ScheduleChange::Cancel, ScheduleState::Cancelled)
    }

    fn change_schedule(
        &self,
        id: &str,
        change: ScheduleChange,
        wanted: ScheduleState,
    ) -> Result<Schedule> {
        let before = self.schedule_row(id)?.to_model()?;
        let row = self.write(|reply| Op::ChangeSchedule {
            id: id.to_string(),
            change: change.clone(),
            reply,
        })?;
        let after = row.to_model()?;
        self.inner.timer.wake();
        if after.state != wanted && after.state == before.state && before.state != wanted {
            return Err(Error::ScheduleConflict {
                schedule_id: id.to_string(),
                state: before.state,
            });
        }
        Ok(after)
    }

    /// The runs a schedule made, oldest first.
    pub fn schedule_runs(&self, id: &str) -> Result<Vec<Run>> {
        let row = self.schedule_row(id)?;
        self.inner
            .store
            .schedule_runs(row.seq)?
            .iter()
            .map(|run| Ok(run.to_model()?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_count_from_creation_and_skip_missed_ticks() {
        let created = Timestamp(1_000_000_000);
        let when = When::Interval { every_s: 10 };
        let next = next_after(&when, created, Timestamp(created.micros() + 25_000_000));
        assert_eq!(
            next.expect("next"),
            Some(Timestamp(created.micros() + 30_000_000))
        );
    }

    #[test]
    fn cron_follows_its_time_zone() {
        // 09:00 in Paris is 08:00 UTC in winter.
        let when = When::Cron {
            cron: "0 9 * * *".into(),
            timezone: "Europe/Paris".into(),
        };
        let now = Timestamp(
            Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0)
                .single()
                .expect("a time")
                .timestamp_micros(),
        );
        let next = next_after(&when, now, now)
            .expect("next")
            .expect("recurring");
        let expected = Utc
            .with_ymd_and_hms(2026, 12, 8, 8, 0, 0)
            .single()
            .expect("a time")
            .timestamp_micros();
        assert_eq!(next, Timestamp(expected));
    }

    #[test]
    fn bad_cron_and_zones_name_their_field() {
        let error = parse_cron("* * *", "UTC").expect_err("three fields");
        assert_eq!(error.loc_string(), "when.cron");
        let error = parse_cron("61 * * * *", "UTC").expect_err("minute 61");
        assert_eq!(error.loc_string(), "when.cron");
        let error = parse_cron("0 * * * *", "Mars/Olympus").expect_err("no such zone");
        assert_eq!(error.loc_string(), "when.timezone");
    }
}
