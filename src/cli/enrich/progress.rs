//! Progress while a group runs: a bar with counts by status, throughput
//! and an ETA on a terminal (`indicatif`), a plain line every few seconds
//! otherwise, nothing with `--quiet`. Written to stderr, so that results
//! on stdout stay clean. Polls the group's counts, which both backends
//! answer the same way.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::table::counts_line;
use crate::cli::Failure;
use taskyard::faces::parallel::client::Client;

/// How often the counts are read. A poll, not the group's events stream:
/// both backends answer the counts the same way, and a progress line
/// needs no more than five updates a second.
const POLL: Duration = Duration::from_millis(200);

/// How often a plain line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// Waits until the group has `rows` runs and none is active.
pub fn follow(backend: &Client, group: &str, rows: usize, quiet: bool) -> Result<(), Failure> {
    let started = Instant::now();
    let terminal = !quiet && std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::new(rows as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {msg} [{elapsed_precise}, {per_sec}, ETA {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last_line = Instant::now();
    loop {
        let status = backend.group(group)?["status"].clone();
        let counts = &status["task_run_status_counts"];
        let done = ["completed", "failed", "cancelled"]
            .iter()
            .map(|name| counts[*name].as_u64().unwrap_or(0))
            .sum::<u64>();
        let finished = status["is_active"] == false
            && status["num_task_runs"].as_u64().unwrap_or(0) as usize == rows;
        if let Some(bar) = &bar {
            bar.set_position(done);
            bar.set_message(counts_line(counts));
        } else if !quiet && (finished || last_line.elapsed() >= PLAIN_EVERY) {
            last_line = Instant::now();
            let elapsed = started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "taskyard: {done}/{rows} done ({}), {:.0} rows/s",
                counts_line(counts),
                done as f64 / elapsed
            );
        }
        if finished {
            if let Some(bar) = &bar {
                bar.finish();
            }
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}
