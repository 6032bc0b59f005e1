//! A node's ear for the others: one connection of its own in `LISTEN`
//! on the channel every PostgreSQL commit notifies (`pg_notify` inside the
//! writer's transaction, so only committed batches are heard), turned into
//! the [`CommitNotice`] the hub takes, marked as other nodes' events.
//!
//! Owns that connection and its thread. A notification only wakes it: the
//! id published is always read from `event_ids` itself, also every
//! [`EVENT_POLL_MS_MAX`] when nothing was heard, so a lost notification
//! (a dropped connection, a restart of the server) delays another node's
//! events by at most that. Knows nothing above the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};

use super::super::sql::{params, Sql};
use super::super::writer::postgres::EVENTS_CHANNEL;
use super::super::CommitNotice;
use crate::limits::EVENT_POLL_MS_MAX;

/// Where notices go: the engine's `on_commit`.
pub(crate) type Publish = Arc<dyn Fn(&CommitNotice) + Send + Sync>;

/// The listening thread; stopped and joined on drop.
pub(crate) struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub(crate) fn start(config: Config, publish: Publish) -> std::io::Result<Listener> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("taskyard-listen".into())
            .spawn(move || listen(&config, &publish, &stopping))?;
        Ok(Listener {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn listen(config: &Config, publish: &Publish, stop: &AtomicBool) {
    let poll = Duration::from_millis(EVENT_POLL_MS_MAX);
    let mut heard = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut client) = config.connect(NoTls) else {
            // The server is away: try again a poll later.
            std::thread::sleep(poll);
            continue;
        };
        if client
            .batch_execute(&format!("LISTEN {EVENTS_CHANNEL}"))
            .is_err()
        {
            continue;
        }
        // Heard or not, read the id at least every poll; stop on a broken
        // connection and open another.
        while !stop.load(Ordering::SeqCst) {
            let woken = {
                let mut notifications = client.notifications();
                let first = notifications.timeout_iter(poll).next();
                // Drain what else came, without waiting: one read of the
                // id answers for all of them.
                first.and_then(|_| notifications.iter().count().map(|_| ()))
            };
            if woken.is_err() {
                break;
            }
            match last_event_id(&mut client) {
                Ok(last) if last > heard => {
                    heard = last;
                    publish(&CommitNotice {
                        last_event_id: last,
                        keys: Vec::new(),
                        events: Vec::new(),
                        // Another node may have written deliveries due now.
                        deliveries: true,
                        others_upto: Some(last),
                        runs_queued: false,
                    });
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

fn last_event_id(client: &mut Client) -> super::super::Result<u64> {
    let statements = std::cell::RefCell::new(super::super::sql::Statements::new());
    let sql = Sql::postgres(client.transaction()?, &statements);
    let last: i64 = sql.query_one(
        "SELECT last_id FROM event_ids WHERE id = 1",
        params![],
        |row| row.get(0),
    )?;
    sql.commit()?;
    Ok(last as u64)
}
