//! The command line: one file per subcommand, and [`Failure`], the message
//! and exit code a subcommand ends with (`main` prints it, nothing else).
//!
//! Holds no engine, server or face logic: each subcommand parses what it
//! was given and calls the library.

mod backend;
mod enrich;
mod inspect;
mod memory;
mod serve;
mod table;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "taskyard",
    version,
    about = "A local Task API server on SQLite"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Task API (default 127.0.0.1:8080, ./taskyard.db).
    Serve(serve::ServeArgs),
    /// Run a task over every row of a CSV or JSON file as one task group,
    /// and write each row's result.
    Enrich(enrich::EnrichArgs),
    /// List task groups with their counts.
    Groups(inspect::ListGroups),
    /// Show, watch or cancel one task group.
    #[command(subcommand)]
    Group(inspect::GroupCommand),
    /// List runs, by status and group.
    Runs(inspect::ListRuns),
    /// Show one run: status, output, basis, events.
    #[command(subcommand)]
    Run(inspect::RunCommand),
    /// List schedules.
    Schedules(inspect::ListSchedules),
    /// Pause, resume or cancel a schedule.
    #[command(subcommand)]
    Schedule(inspect::ScheduleCommand),
}

/// A failure with the exit code it deserves.
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// Bad flags or configuration: exit 2, as for usage errors.
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 2,
        }
    }

    /// The environment refused (database, address): exit 1.
    fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

impl Cli {
    /// Runs the subcommand; a failure says what to print and how to exit.
    pub fn run(self) -> Result<(), Failure> {
        match self.command {
            Command::Serve(args) => serve::run(args),
            Command::Enrich(args) => enrich::run(args),
            Command::Groups(args) => inspect::groups(args),
            Command::Group(command) => inspect::group(command),
            Command::Runs(args) => inspect::runs(args),
            Command::Run(command) => inspect::run(command),
            Command::Schedules(args) => inspect::schedules(args),
            Command::Schedule(command) => inspect::schedule(command),
        }
    }
}
