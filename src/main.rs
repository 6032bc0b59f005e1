//! The `taskyard` binary: parses the command line and hands over to
//! `cli/`; failures become a message and an exit code here and nowhere
//! else.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("taskyard: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
