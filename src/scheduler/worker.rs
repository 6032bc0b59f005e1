//! A worker thread's attempt at a run: applies the forcing keys, calls the
//! processor (a panic fails the run, never the thread), checks the output
//! against the task spec, and queues the finish, a retry with backoff, or
//! a failure; and the progress sink the processor reports to.
//!
//! Talks to the store only through ops; never SQL, never a face.

use super::*;
use crate::limits::TURNS_IN_CONTEXT_MAX;

pub(super) struct Worker {
    pub(super) store: Arc<Store>,
    pub(super) registry: Arc<Registry>,
    pub(super) schemas: Arc<SchemaCache>,
    pub(super) control: Sender<Control>,
}

/// What one attempt came to.
pub(super) enum Attempt {
    Finished(Finish),
    Transient(String),
    /// Transient, with the least wait before the retry the other side
    /// asked for.
    Throttled(String, Duration),
}

impl Worker {
    pub(super) fn attempt(&self, job: Job) {
        let run_seq = job.run.seq;
        if job.retry {
            match self.store.writer.call(|reply| Op::StartAttempt {
                run_seq,
                attempt: job.run.attempt,
                reply,
            }) {
                Ok(RunStatus::Running) => {}
                // Cancelled or finished meanwhile: end it without running.
                _ => return self.finish(run_seq, Finish::Cancelled),
            }
        }
        match self.execute(&job) {
            Attempt::Finished(finish) => self.finish(run_seq, finish),
            Attempt::Transient(message) => self.retry_or_fail(job, message, Duration::ZERO),
            Attempt::Throttled(message, wait) => self.retry_or_fail(job, message, wait),
        }
    }

    fn finish(&self, run_seq: i64, finish: Finish) {
        submit_finish(&self.store, &self.control, run_seq, finish);
    }

    /// Retries after the backoff, or after `at_least` when that is longer
    /// (a server's `Retry-After`); fails the run when out of attempts.
    fn retry_or_fail(&self, mut job: Job, message: String, at_least: Duration) {
        let attempt = job.run.attempt;
        if attempt >= job.run.max_attempts {
            let error = RunError::new(
                message,
                Some(serde_json::json!({"attempts": attempt, "transient": true})),
            );
            return self.finish(job.run.seq, Finish::Failed { error });
        }
        let warning = Warning {
            kind: "warning".into(),
            message: format!("attempt {attempt} failed and will be retried: {message}"),
            detail: Some(serde_json::json!({"attempt": attempt})),
        };
        let _ = self.store.writer.call(|reply| Op::Warn {
            run_seq: job.run.seq,
            warning,
            reply,
        });
        let backoff = self
            .registry
            .get(&job.run.processor)
            .map(|config| config.backoff)
            .unwrap_or_default();
        let due = Instant::now() + backoff.before_retry(&job.run.id, attempt).max(at_least);
        job.run.attempt += 1;
        job.retry = true;
        let _ = self.control.send(Control::Retry { job, due });
    }

    fn execute(&self, job: &Job) -> Attempt {
        let run = &job.run;
        if job.token.is_cancelled() {
            return Attempt::Finished(Finish::Cancelled);
        }
        let parsed = parse_claimed(run);
        let (input, task_spec, metadata) = match parsed {
            Ok(parsed) => parsed,
            Err(message) => return failed(message, None),
        };
        let controls = forcing::read(metadata.as_ref());
        if controls.delay_ms > 0 && job.token.wait(Duration::from_millis(controls.delay_ms)) {
            return Attempt::Finished(Finish::Cancelled);
        }
        if run.attempt <= controls.fail_times {
            return Attempt::Transient(format!(
                "forced transient failure {} of {} (mock_fail_times)",
                run.attempt, controls.fail_times
            ));
        }
        if let Some(message) = controls.fail {
            return failed(message, None);
        }
        let Some(config) = self.registry.get(&run.processor) else {
            return failed(
                format!("processor '{}' is no longer configured", run.processor),
                None,
            );
        };
        let progress = Progress {
            store: &self.store,
            run_seq: run.seq,
            enabled: run.enable_events,
        };
        let turns = match &run.previous_id {
            None => Vec::new(),
            Some(previous) => match self.store.turns(previous, TURNS_IN_CONTEXT_MAX) {
                Ok(turns) => turns,
                Err(error) => {
                    return Attempt::Transient(format!("cannot read the earlier turns: {error}"))
                }
            },
        };
        let deadline = config.timeout.map(|timeout| Instant::now() + timeout);
        let context = RunContext {
            deadline,
            turns: &turns,
            processors: &self.registry,
            run_id: &run.id,
            processor: &run.processor,
            input: &input,
            task_spec: &task_spec,
            metadata: metadata.as_ref(),
            attempt: run.attempt,
            cancel: &job.token,
            progress: &progress,
        };
        // A panicking processor fails its run, never the worker thread.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            config.processor.run(&context)
        }));
        if job.token.is_cancelled() {
            return Attempt::Finished(Finish::Cancelled);
        }
        if let (Some(deadline), Some(timeout), Ok(Ok(_))) = (deadline, config.timeout, &outcome) {
            // An output that came too late is not taken; a processor that
            // stopped at the deadline said why itself.
            if Instant::now() >= deadline {
                return Attempt::Transient(timed_out(timeout));
            }
        }
        match outcome {
            Ok(Ok(output)) => match self.check_output(output, &task_spec) {
                Ok(output) => Attempt::Finished(Finish::Completed {
                    output: to_json(&output).into(),
                }),
                Err(message) => failed(message, None),
            },
            Ok(Err(ProcessorError::Transient(message))) => Attempt::Transient(message),
            Ok(Err(ProcessorError::Throttled {
                message,
                retry_after,
            })) => Attempt::Throttled(message, retry_after.unwrap_or_default()),
            Ok(Err(ProcessorError::Permanent(message))) => failed(message, None),
            Err(_) => failed(format!("processor '{}' panicked", run.processor), None),
        }
    }

    /// Output must fit the task spec before a run is marked completed;
    /// answers it back when it does. Taken by value so that the content is
    /// checked where it lies: a copy of every JSON output, made only to
    /// be checked, showed in the workers' profile.
    fn check_output(&self, mut output: Output, task_spec: &TaskSpec) -> Result<Output, String> {
        match (
            SchemaKind::of(&task_spec.output_schema),
            &mut output.content,
        ) {
            (SchemaKind::Json(json_schema), Content::Json(content)) => {
                let validator = self
                    .schemas
                    .compile(json_schema)
                    .map_err(|message| format!("output schema does not compile: {message}"))?;
                let instance = Value::Object(std::mem::take(content));
                let violation = first_violation(&validator, &instance);
                if let Value::Object(checked) = instance {
                    *content = checked;
                }
                match violation {
                    None => Ok(output),
                    Some(violation) => Err(format!(
                        "output does not match the output schema: {violation}"
                    )),
                }
            }
            (SchemaKind::Json(_), Content::Text(_)) => {
                Err("processor returned text where the output schema is json".into())
            }
            (SchemaKind::Text(_), Content::Json(_)) => {
                Err("processor returned json where the output schema is text".into())
            }
            _ => Ok(output),
        }
    }
}

/// How long a finish the store refused waits before it is sent again.
pub(super) const FINISH_RETRY_AFTER: Duration = Duration::from_millis(500);

/// Queues a finish. Once durable, the run's slot is freed; when the store
/// cannot take it now (busy, full), it is tried again later, so that the
/// run is finished once space or the lock returns; when the store is
/// closed (shutdown), the slot is freed and recovery finishes the run.
pub(super) fn submit_finish(
    store: &Store,
    control: &Sender<Control>,
    run_seq: i64,
    finish: Finish,
) {
    let retry = finish.clone();
    let control_reply = control.clone();
    let submitted = store.writer.submit(Op::Finish {
        run_seq,
        finish,
        reply: Box::new(move |result| {
            let message = match result {
                Err(
                    crate::store::Error::Busy(_)
                    | crate::store::Error::Full(_)
                    | crate::store::Error::Unreachable(_),
                ) => Control::RetryFinish {
                    run_seq,
                    finish: retry,
                    due: Instant::now() + FINISH_RETRY_AFTER,
                },
                _ => Control::Done { run_seq },
            };
            let _ = control_reply.send(message);
        }),
    });
    if submitted.is_err() {
        let _ = control.send(Control::Done { run_seq });
    }
}

pub(super) fn failed(message: String, detail: Option<Value>) -> Attempt {
    Attempt::Finished(Finish::Failed {
        error: RunError::new(message, detail),
    })
}

/// The message of an attempt that ran past its processor's `timeout_ms`.
fn timed_out(timeout: Duration) -> String {
    format!(
        "the attempt timed out after {} ms (the processor's timeout_ms)",
        timeout.as_millis()
    )
}

pub(super) type Parsed = (Value, TaskSpec, Option<JsonObject>);

pub(super) fn parse_claimed(run: &ClaimedRun) -> Result<Parsed, String> {
    let input: Value = serde_json::from_str(&run.input)
        .map_err(|e| format!("stored run input does not decode: {e}"))?;
    let task_spec: TaskSpec = serde_json::from_str(&run.task_spec)
        .map_err(|e| format!("stored task spec does not decode: {e}"))?;
    let metadata: Option<JsonObject> = match &run.metadata {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| format!("stored metadata does not decode: {e}"))?,
        ),
        None => None,
    };
    Ok((input, task_spec, metadata))
}

/// Writes a running run's progress reports when its events are enabled.
pub(super) struct Progress<'a> {
    store: &'a Store,
    run_seq: i64,
    enabled: bool,
}

impl ProgressSink for Progress<'_> {
    fn message(&self, kind: ProgressKind, message: &str) {
        if !self.enabled {
            return;
        }
        let data = EventData::Progress {
            progress: kind,
            message: message.to_string(),
            at: Timestamp::now(),
        };
        let _ = self.store.writer.call(|reply| Op::Progress {
            run_seq: self.run_seq,
            data,
            reply,
        });
    }

    fn stats(&self, meter: f64, counters: &[(&str, u64)]) {
        if !self.enabled || !(0.0..=100.0).contains(&meter) {
            return;
        }
        let counters: BTreeMap<String, u64> = counters
            .iter()
            .map(|(name, count)| (name.to_string(), *count))
            .collect();
        let _ = self.store.writer.call(|reply| Op::Progress {
            run_seq: self.run_seq,
            data: EventData::Stats { meter, counters },
            reply,
        });
    }
}
