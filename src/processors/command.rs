//! `command`: runs a program from the config file for each attempt.
//!
//! The run goes to the program as one JSON object on stdin; what it prints
//! on stdout is the output; JSON lines of the form `{"progress": "..."}`
//! on stderr become progress events, and the rest of stderr is kept (its
//! tail) for the error message. The program runs in a process group of
//! its own, so that a timeout, a cancel, an oversized output, or its own
//! exit ends every process it started. Exit 75 (`EX_TEMPFAIL`) is a
//! transient failure, retried; any other non-zero exit fails the run.
//!
//! The program and its arguments come only from the config file, never
//! from a request. Knows nothing of the store, the scheduler or a face.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::kind::{Built, ConfigError, Kind, Section};
use super::{CancelToken, Processor, ProcessorError, RunContext};
use crate::limits::{COMMAND_OUTPUT_BYTES_MAX, COMMAND_STDERR_TAIL_BYTES};
use crate::model::{Content, Output, ProgressKind, SchemaKind, Turn};

/// The exit status that asks for another attempt (`EX_TEMPFAIL`).
pub const EXIT_TEMPFAIL: i32 = 75;

/// How often a running program is checked for a cancel; its exit and the
/// deadline wake the wait at once.
const CANCEL_LOOK: Duration = Duration::from_millis(20);

/// `kind = "command"`: `argv` (required), `env`, `cwd` (relative to the
/// config file's directory), `output_bytes_max`.
pub(super) struct CommandKind;

impl Kind for CommandKind {
    fn name(&self) -> &'static str {
        "command"
    }

    fn build(&self, section: &Section<'_>) -> Result<Built, ConfigError> {
        let argv = section
            .strings("argv")?
            .ok_or_else(|| section.error("argv", "is required for kind 'command'"))?;
        if argv.is_empty() || argv[0].is_empty() {
            return Err(section.error("argv", "must name a program"));
        }
        let cwd = section.string("cwd")?.map(|cwd| section.dir().join(cwd));
        if let Some(cwd) = &cwd {
            if !cwd.is_dir() {
                return Err(section.error("cwd", format!("{} is not a directory", cwd.display())));
            }
        }
        let output_bytes_max = section
            .u64("output_bytes_max", 1, 1 << 30)?
            .map_or(COMMAND_OUTPUT_BYTES_MAX, |bytes| bytes as usize);
        Ok(Built::new(Arc::new(CommandProcessor {
            argv,
            env: section.string_table("env")?.unwrap_or_default(),
            cwd,
            output_bytes_max,
        })))
    }
}

/// A program run once per attempt.
#[derive(Debug, Clone)]
pub struct CommandProcessor {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Added to the environment taskyard runs in.
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Largest stdout taken as an output; past it the attempt fails.
    pub output_bytes_max: usize,
}

impl Processor for CommandProcessor {
    fn run(&self, ctx: &RunContext<'_>) -> Result<Output, ProcessorError> {
        let stdin = json!({
            "run_id": ctx.run_id,
            "processor": ctx.processor,
            "input": ctx.input,
            "task_spec": ctx.task_spec,
            "metadata": ctx.metadata,
            "attempt": ctx.attempt,
            "turns": ctx.turns.iter().map(turn_json).collect::<Vec<_>>(),
        })
        .to_string();
        let mut command = Command::new(&self.argv[0]);
        command
            .args(&self.argv[1..])
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().map_err(|e| {
            ProcessorError::Permanent(format!("cannot start {}: {e}", self.argv[0]))
        })?;
        let group = Group(child.id() as i32);
        let exited = Arc::new(CancelToken::new());

        let mut input = child.stdin.take().expect("stdin is piped");
        // A program may exit without reading its stdin: a broken pipe here
        // is not the run's failure, its exit status says what happened.
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(stdin.as_bytes());
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let limit = self.output_bytes_max;
        let oversized = Arc::new(AtomicBool::new(false));
        let reader = {
            let (oversized, wake) = (oversized.clone(), exited.clone());
            std::thread::spawn(move || {
                let mut output = Vec::new();
                let read = stdout.take(limit as u64 + 1).read_to_end(&mut output);
                if output.len() > limit {
                    // The program may block on a full pipe: end it now.
                    oversized.store(true, Ordering::SeqCst);
                    wake.cancel();
                }
                read.map(|_| output)
            })
        };
        let stderr = child.stderr.take().expect("stderr is piped");
        let progress = Arc::new(Mutex::new(Lines::default()));
        let stderr_reader = {
            let progress = progress.clone();
            std::thread::spawn(move || read_stderr(stderr, &progress))
        };
        let waiter = {
            let exited = exited.clone();
            std::thread::spawn(move || {
                let status = child.wait();
                exited.cancel();
                status
            })
        };

        let ended = loop {
            // Progress lines reach the run's events while it runs.
            for (kind, message) in std::mem::take(&mut progress.lock().progress) {
                ctx.progress.message(kind, &message);
            }
            if oversized.load(Ordering::SeqCst) {
                break Ended::Oversized;
            }
            if exited.is_cancelled() {
                break Ended::Exited;
            }
            if ctx.cancel.is_cancelled() {
                break Ended::Cancelled;
            }
            let mut wait = CANCEL_LOOK;
            if let Some(deadline) = ctx.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Ended::TimedOut;
                }
                wait = wait.min(left);
            }
            exited.wait(wait);
        };
        // Whatever ended the wait, no process of the run outlives it: the
        // program's own children included.
        group.kill();
        let status = waiter.join().ok().and_then(Result::ok);
        let _ = writer.join();
        let output = reader.join().ok().and_then(Result::ok).unwrap_or_default();
        let _ = stderr_reader.join();
        for (kind, message) in std::mem::take(&mut progress.lock().progress) {
            ctx.progress.message(kind, &message);
        }
        let tail = progress.lock().tail.text();
        match ended {
            Ended::Cancelled => return Err(ProcessorError::Permanent("cancelled".into())),
            Ended::TimedOut => {
                return Err(ProcessorError::Transient(format!(
                    "{} did not end before the attempt's deadline (timeout_ms) and was killed{}",
                    self.argv[0],
                    with_tail(&tail)
                )))
            }
            Ended::Oversized => {
                return Err(ProcessorError::Permanent(format!(
                    "{} printed more than {} bytes on stdout (output_bytes_max) and was killed",
                    self.argv[0], self.output_bytes_max
                )))
            }
            Ended::Exited => {}
        }
        let Some(status) = status else {
            return Err(ProcessorError::Permanent(format!(
                "{}: its exit status could not be read",
                self.argv[0]
            )));
        };
        match (status.code(), status.signal()) {
            (Some(0), _) => parse_output(&output, ctx),
            (Some(EXIT_TEMPFAIL), _) => Err(ProcessorError::Transient(format!(
                "{} exited with status 75 (temporary failure){}",
                self.argv[0],
                with_tail(&tail)
            ))),
            (Some(code), _) => Err(ProcessorError::Permanent(format!(
                "{} exited with status {code}{}",
                self.argv[0],
                with_tail(&tail)
            ))),
            (None, signal) => Err(ProcessorError::Permanent(format!(
                "{} was killed by signal {}{}",
                self.argv[0],
                signal.unwrap_or(0),
                with_tail(&tail)
            ))),
        }
    }
}

enum Ended {
    Exited,
    Cancelled,
    TimedOut,
    Oversized,
}

/// The program's process group (its pid, as it leads the group).
struct Group(i32);

impl Group {
    fn kill(&self) {
        // SAFETY: kill(2) with a negative pid signals the process group;
        // it touches no memory of ours. A group already gone is ESRCH.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}

/// The program's stdout as the run's output: a JSON object for a JSON
/// schema, text for a text schema; for auto, an object when it parses as
/// one, else text.
fn parse_output(stdout: &[u8], ctx: &RunContext<'_>) -> Result<Output, ProcessorError> {
    let text = String::from_utf8_lossy(stdout);
    let object = || match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(format!("stdout is JSON but not an object: {other:.80}")),
        Err(e) => Err(format!("stdout is not JSON ({e})")),
    };
    match SchemaKind::of(&ctx.task_spec.output_schema) {
        SchemaKind::Json(_) => object()
            .map(|object| Output::json(object, Vec::new()))
            .map_err(|message| {
                ProcessorError::Permanent(format!("the output schema is json, but {message}"))
            }),
        SchemaKind::Text(_) => Ok(Output::text(text.trim_end_matches('\n'), Vec::new())),
        _ => Ok(match object() {
            Ok(object) => Output::json(object, Vec::new()),
            Err(_) => Output::text(text.trim_end_matches('\n'), Vec::new()),
        }),
    }
}

/// An earlier turn as a program reads it: its output as the object or
/// text it was (null when that run did not complete), not the engine's
/// tagged form.
fn turn_json(turn: &Turn) -> Value {
    let output = turn.output.as_ref().map(|output| match &output.content {
        Content::Json(object) => Value::Object(object.clone()),
        Content::Text(text) => Value::String(text.clone()),
    });
    json!({"run_id": turn.run_id, "input": turn.input, "output": output})
}

fn with_tail(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr ends: {tail}")
    }
}

/// What the stderr reader hands over.
#[derive(Default)]
struct Lines {
    tail: Tail,
    /// Progress lines not yet reported.
    progress: Vec<(ProgressKind, String)>,
}

/// The last `COMMAND_STDERR_TAIL_BYTES` of stderr that were not progress.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, line: &[u8]) {
        self.0.extend_from_slice(line);
        if self.0.len() > COMMAND_STDERR_TAIL_BYTES {
            let cut = self.0.len() - COMMAND_STDERR_TAIL_BYTES;
            self.0.drain(..cut);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).trim().to_string()
    }
}

/// Reads stderr line by line (each bounded) until it closes.
fn read_stderr(stderr: std::process::ChildStderr, lines: &Mutex<Lines>) {
    let mut stderr = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // A line longer than the tail is cut: its end is what is kept.
        match (&mut stderr)
            .take(COMMAND_STDERR_TAIL_BYTES as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut lines = lines.lock();
        match progress_line(&line) {
            Some(progress) => lines.progress.push(progress),
            None => lines.tail.push(&line),
        }
    }
}

/// `{"progress": "message"}`, with an optional `"kind"` (`plan`, the
/// default, `search`, `result` or `tool_call`).
fn progress_line(line: &[u8]) -> Option<(ProgressKind, String)> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let object = value.as_object()?;
    let message = object.get("progress")?.as_str()?.to_string();
    let kind = match object.get("kind").and_then(Value::as_str) {
        None => ProgressKind::Plan,
        Some(name) => ProgressKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name && *kind != ProgressKind::ExecStatus)?,
    };
    Some((kind, message))
}
