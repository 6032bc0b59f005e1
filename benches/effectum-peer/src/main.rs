//! effectum's enqueue-and-run of no-op jobs, timed the way taskyard's
//! `engine` bench times its runs: jobs added in batches of 1,000, one worker
//! with taskyard's default concurrency (16), the clock stopped when effectum
//! reports no active job left, that is once every completion is committed.
//! The file is put in WAL mode first, as taskyard's is (effectum 0.7 would
//! run in rollback-journal mode: its journal pragma is misspelt).
//!
//! `effectum-peer JOBS DATABASE [MIN_CONCURRENCY MAX_CONCURRENCY PAYLOAD_BYTES]`
//! prints one JSON line: `{"jobs": N, "seconds": S, "jobs_per_s": R}`. The
//! optional three are issue 18's configuration (128, 256 and 102-byte
//! payloads); without them the worker runs 16 at a time with a payload of
//! `{"item": N}`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use effectum::{Job, JobRunner, Queue, RunningJob, Worker};

/// Worker concurrency by default: taskyard's default worker count.
const CONCURRENCY: u16 = 16;

/// Longest the bench waits for the queue to drain.
const DRAIN_WAIT_MAX: Duration = Duration::from_secs(3_600);

async fn no_op(_job: RunningJob, _context: ()) -> Result<(), String> {
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: effectum-peer JOBS DATABASE");
    let path = PathBuf::from(args.next().expect("usage: effectum-peer JOBS DATABASE"));
    let mut number = |default: usize| {
        args.next()
            .map(|n| n.parse::<usize>().expect("a number"))
            .unwrap_or(default)
    };
    let min_concurrency = number(usize::from(CONCURRENCY)) as u16;
    let max_concurrency = number(usize::from(CONCURRENCY)) as u16;
    let payload_bytes = number(0);
    // WAL is a setting of the file, kept once set: effectum's own open
    // (whose journal pragma is misspelt) leaves it so.
    let mode: String = rusqlite::Connection::open(&path)
        .expect("the database file")
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal", "WAL mode");
    let queue = Queue::new(&path).await.expect("queue");
    let runner = JobRunner::builder("no_op", no_op).build();
    let worker = Worker::builder(&queue, ())
        .min_concurrency(min_concurrency)
        .max_concurrency(max_concurrency)
        .jobs([runner])
        .build()
        .await
        .expect("worker");
    let started = Instant::now();
    let mut added = 0;
    while added < jobs {
        let batch = (jobs - added).min(1_000);
        let batch_jobs = (added..added + batch)
            .map(|item| {
                // Padded to `payload_bytes` of JSON when asked.
                let mut payload = serde_json::json!({ "item": item });
                let bare = payload.to_string().len() + ",\"pad\":\"\"".len();
                if payload_bytes > bare {
                    payload["pad"] = "x".repeat(payload_bytes - bare).into();
                }
                Job::builder("no_op")
                    .json_payload(&payload)
                    .expect("payload")
                    .build()
            })
            .collect();
        queue.add_jobs(batch_jobs).await.expect("jobs added");
        added += batch;
    }
    // Wait on the worker's in-memory count first: polling the database
    // would take read locks that hold up effectum's writer.
    while (worker.counts().finished as usize) < jobs {
        assert!(started.elapsed() < DRAIN_WAIT_MAX, "effectum never drained");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Then until effectum's own view says every completion is committed.
    loop {
        assert!(started.elapsed() < DRAIN_WAIT_MAX, "effectum never drained");
        let active = queue.num_active_jobs().await.expect("active jobs");
        if active.pending + active.running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs as f64 / seconds})
    );
    worker.unregister(None).await.expect("unregister");
}
