//! The group, run and schedule commands: `taskyard groups`, `group
//! show|watch|cancel`, `runs`, `run show`, `schedules`, `schedule
//! pause|resume|cancel`. Each works on `--db FILE` or `--base-url URL`
//! (`backend.rs`), prints a table (or, for one object, its fields), and
//! `--json` prints the API's answer as is, for scripts.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::backend::Target;
use super::table::{cell, render};
use super::Failure;
use taskyard::faces::parallel::client::{group_id_of, run_group_of, Client};
use taskyard::faces::parallel::ScheduleVerb;

#[derive(Args)]
pub struct ListGroups {
    /// Only active groups.
    #[arg(long, conflicts_with = "inactive")]
    active: bool,
    /// Only inactive groups.
    #[arg(long)]
    inactive: bool,
    /// At most this many (1 to 100), newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// A group's counts by status.
    Show(One),
    /// Live counts until the group is inactive, from its events stream.
    Watch(One),
    /// Cancel the group's active runs.
    Cancel(One),
}

#[derive(Args)]
pub struct One {
    id: String,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct ListRuns {
    /// Only runs of this status (queued, running, completed, failed, ...).
    #[arg(long)]
    status: Option<String>,
    /// Only runs of this group.
    #[arg(long)]
    group: Option<String>,
    /// At most this many (1 to 100), newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
pub enum RunCommand {
    /// A run: status, output, basis and events.
    Show(One),
}

#[derive(Args)]
pub struct ListSchedules {
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
pub enum ScheduleCommand {
    Pause(One),
    Resume(One),
    Cancel(One),
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// `--limit`, checked as the API checks it.
fn limit(limit: usize) -> Result<usize, Failure> {
    if (1..=100).contains(&limit) {
        Ok(limit)
    } else {
        Err(Failure::usage(format!("--limit {limit}: from 1 to 100")))
    }
}

/// `completed 3, running 1`: the counts a group has.
fn counts(group: &Value) -> String {
    group["status"]["task_run_status_counts"]
        .as_object()
        .map(|counts| {
            counts
                .iter()
                .map(|(status, count)| format!("{status} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn group_row(group: &Value) -> Vec<String> {
    vec![
        cell(group_id_of(group)),
        if group["status"]["is_active"] == true {
            "active"
        } else {
            "inactive"
        }
        .into(),
        cell(&group["status"]["num_task_runs"]),
        counts(group),
        cell(&group["created_at"]),
    ]
}

const GROUP_HEADERS: [&str; 5] = ["id", "state", "runs", "by status", "created"];

pub fn groups(args: ListGroups) -> Result<(), Failure> {
    let client = args.target.open()?;
    let active = match (args.active, args.inactive) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let page = client.list_groups(limit(args.limit)?, None, active)?;
    if args.json {
        print_json(&page);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page["data"]
        .as_array()
        .map(|groups| groups.iter().map(group_row).collect())
        .unwrap_or_default();
    print!("{}", render(&GROUP_HEADERS, &rows));
    Ok(())
}

pub fn group(command: GroupCommand) -> Result<(), Failure> {
    match command {
        GroupCommand::Show(one) => {
            let group = one.target.open()?.group(&one.id)?;
            show_group(&group, one.json);
            Ok(())
        }
        GroupCommand::Cancel(one) => {
            let group = one.target.open()?.cancel_group(&one.id)?;
            show_group(&group, one.json);
            Ok(())
        }
        GroupCommand::Watch(one) => watch(&one.target.open()?, &one.id, one.json),
    }
}

fn show_group(group: &Value, json: bool) {
    if json {
        print_json(group);
    } else {
        print!("{}", render(&GROUP_HEADERS, &[group_row(group)]));
    }
}

/// A line per change of the group's counts, until it is inactive; with
/// `--json`, each event as one JSON line.
fn watch(client: &Client, id: &str, json: bool) -> Result<(), Failure> {
    let mut last = String::new();
    let mut result = Ok(());
    client.group_events(id, &mut |event| {
        if json {
            println!("{event}");
        } else if event["type"] == "task_group_status" {
            let status = &event["status"];
            let line = format!(
                "{} runs: {}{}",
                cell(&status["num_task_runs"]),
                counts(&json!({ "status": status })),
                if status["is_active"] == true {
                    ""
                } else {
                    " (inactive)"
                }
            );
            if line != last {
                println!("{line}");
                last = line;
            }
        }
        true
    })?;
    // The stream ends when the group is inactive: say where it ended.
    if !json {
        match client.group(id) {
            Ok(group) => println!("done: {}", counts(&group)),
            Err(error) => result = Err(error.into()),
        }
    }
    result
}

pub fn runs(args: ListRuns) -> Result<(), Failure> {
    let client = args.target.open()?;
    let page = client.list_runs(
        limit(args.limit)?,
        None,
        args.status.as_deref(),
        args.group.as_deref(),
    )?;
    if args.json {
        print_json(&page);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page["data"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .map(|run| {
                    vec![
                        cell(&run["run_id"]),
                        cell(&run["status"]),
                        cell(&run["processor"]),
                        cell(run_group_of(run)),
                        cell(&run["created_at"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print!(
        "{}",
        render(&["id", "status", "processor", "group", "created"], &rows)
    );
    Ok(())
}

pub fn run(command: RunCommand) -> Result<(), Failure> {
    let RunCommand::Show(one) = command;
    let client = one.target.open()?;
    let run = client.run(&one.id)?;
    let ended = ["completed", "failed", "cancelled"]
        .iter()
        .any(|status| run["status"] == *status);
    let result = if ended {
        Some(client.run_result(&one.id)?)
    } else {
        None
    };
    let mut events = Vec::new();
    client.run_events(&one.id, &mut |event| events.push(event))?;
    if one.json {
        print_json(&json!({
            "run": run,
            "output": result.as_ref().map(|result| result["output"].clone()),
            "events": events,
        }));
        return Ok(());
    }
    for (name, value) in [
        ("id", &run["run_id"]),
        ("status", &run["status"]),
        ("processor", &run["processor"]),
        ("group", run_group_of(&run)),
        ("created", &run["created_at"]),
        ("modified", &run["modified_at"]),
        ("error", &run["error"]),
    ] {
        println!("{name:<10} {}", cell(value));
    }
    if let Some(result) = &result {
        println!("output     {}", cell(&result["output"]["content"]));
        let basis = result["output"]["basis"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for field in basis {
            let citations = field["citations"].as_array().map_or(0, Vec::len);
            println!(
                "basis      {}: {} ({citations} citations)",
                cell(&field["field"]),
                cell(&field["reasoning"])
            );
        }
    }
    for event in &events {
        println!(
            "event      {} {}",
            cell(&event["type"]),
            event_summary(event)
        );
    }
    Ok(())
}

fn event_summary(event: &Value) -> String {
    match event["type"].as_str() {
        Some("task_run.state") => cell(&event["run"]["status"]),
        _ => cell(&event["message"]),
    }
}

pub fn schedules(args: ListSchedules) -> Result<(), Failure> {
    let page = args.target.open()?.schedules()?;
    if args.json {
        print_json(&page);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page["data"]
        .as_array()
        .map(|schedules| schedules.iter().map(schedule_row).collect())
        .unwrap_or_default();
    print!("{}", render(&SCHEDULE_HEADERS, &rows));
    Ok(())
}

const SCHEDULE_HEADERS: [&str; 4] = ["id", "state", "next fire", "fires"];

fn schedule_row(schedule: &Value) -> Vec<String> {
    vec![
        cell(&schedule["schedule_id"]),
        cell(&schedule["status"]),
        cell(&schedule["next_fire_at"]),
        cell(&schedule["fires"]),
    ]
}

pub fn schedule(command: ScheduleCommand) -> Result<(), Failure> {
    let (verb, one) = match command {
        ScheduleCommand::Pause(one) => (ScheduleVerb::Pause, one),
        ScheduleCommand::Resume(one) => (ScheduleVerb::Resume, one),
        ScheduleCommand::Cancel(one) => (ScheduleVerb::Cancel, one),
    };
    let schedule = one.target.open()?.change_schedule(&one.id, verb)?;
    if one.json {
        print_json(&schedule);
    } else {
        print!("{}", render(&SCHEDULE_HEADERS, &[schedule_row(&schedule)]));
    }
    Ok(())
}
