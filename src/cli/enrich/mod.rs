//! `taskyard enrich INPUT`: runs one task over every row of a file as one
//! task group, shows its progress, and writes each row's result, failed
//! rows included, in input order.
//!
//! Rows are added in batches of `ENRICH_BATCH_ROWS`, each one request; the
//! group's run count says how many batches landed, so `--resume` (after
//! Ctrl-C or `kill -9`) adds the rest and writes every row once. The
//! output is written whole at the end (a temporary file renamed into
//! place), so an interrupted enrichment leaves no half-written file.
//! Works on an engine in this process or against any Parallel-speaking
//! server (`backend.rs`); holds no engine or face logic.

mod fields;
mod output;
mod progress;
mod rows;

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Map, Value};

use super::backend::Target;
use super::Failure;
use fields::Field;
use rows::Format;
use taskyard::faces::parallel::client::Client;

/// Rows per add-runs request (the Parallel API takes at most 1,000).
pub const ENRICH_BATCH_ROWS: usize = 1_000;

/// Inputs `--dry-run` prints.
const DRY_RUN_INPUTS: usize = 3;

#[derive(Args)]
pub struct EnrichArgs {
    /// The rows: a CSV, JSON Lines or JSON array file, or `-` for stdin.
    input: String,
    /// An output field, `NAME:TYPE[:DESCRIPTION]` (TYPE: str, int, float,
    /// bool, list[...], with an optional `| None`); repeat for several.
    #[arg(long = "field")]
    fields: Vec<String>,
    /// The output as a JSON Schema instead of fields: a file, or the JSON.
    #[arg(long)]
    output_schema: Option<String>,
    /// A JSON Schema each row must match (a file, or the JSON).
    #[arg(long)]
    input_schema: Option<String>,
    /// Only these columns go into each run's input (comma-separated).
    #[arg(long, value_delimiter = ',')]
    source_columns: Vec<String>,
    /// The processor that runs each row.
    #[arg(long, default_value = "lite")]
    processor: String,
    /// Group metadata, `KEY=VALUE`; repeat for several.
    #[arg(long = "metadata")]
    metadata: Vec<String>,
    /// Where results go (`-` or absent: stdout).
    #[arg(short, long)]
    output: Option<String>,
    /// `csv` or `jsonl`; by default from the output's extension, else CSV.
    #[arg(long)]
    format: Option<String>,
    /// `csv`, `jsonl` or `json`; by default from the input's extension or
    /// its first character.
    #[arg(long)]
    input_format: Option<String>,
    /// What a row that does not read (or fails --input-schema) does:
    /// `fail` stops before anything is sent, `skip` leaves it out.
    #[arg(long, default_value = "fail")]
    bad_rows: String,
    /// Print the task spec and the first inputs; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Continue the enrichment an interrupted run of this command left.
    #[arg(long)]
    resume: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    target: Target,
}

/// What `--resume` reads back.
#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    group: String,
    input: String,
    rows: usize,
}

pub fn run(args: EnrichArgs) -> Result<(), Failure> {
    let fields = args
        .fields
        .iter()
        .map(|spec| fields::parse(spec))
        .collect::<Result<Vec<Field>, String>>()
        .map_err(Failure::usage)?;
    let output_schema = match (&args.output_schema, fields.is_empty()) {
        (Some(_), false) => {
            return Err(Failure::usage(
                "give the output as --field or as --output-schema, not both",
            ))
        }
        (Some(schema), true) => Some(json_or_file(schema, "--output-schema")?),
        (None, false) => Some(fields::object_schema(&fields)),
        (None, true) => None,
    };
    let columns = match &output_schema {
        Some(schema) => fields::columns_of(schema),
        None => Vec::new(),
    };
    let input_schema = args
        .input_schema
        .as_deref()
        .map(|schema| json_or_file(schema, "--input-schema"))
        .transpose()?;
    let format = match &args.format {
        Some(name) => Some(
            output::Format::parse(name)
                .ok_or_else(|| Failure::usage(format!("--format {name:?}: use csv or jsonl")))?,
        ),
        None => None,
    };
    let format = format.unwrap_or_else(|| {
        args.output
            .as_deref()
            .and_then(output::Format::of_path)
            .unwrap_or(output::Format::Csv)
    });
    let input_format = match &args.input_format {
        Some(name) => Some(Format::parse(name).ok_or_else(|| {
            Failure::usage(format!("--input-format {name:?}: use csv, jsonl or json"))
        })?),
        None => None,
    };
    let skip_bad = match args.bad_rows.as_str() {
        "skip" => true,
        "fail" => false,
        other => {
            return Err(Failure::usage(format!(
                "--bad-rows {other:?}: use skip or fail"
            )))
        }
    };
    let metadata = group_metadata(&args.metadata, &args.input)?;

    let input = rows::read(&args.input, input_format).map_err(Failure::usage)?;
    let (inputs, kept) = run_inputs(
        &input,
        &args.source_columns,
        input_schema.as_ref(),
        skip_bad,
    )?;
    let mut spec = Map::new();
    spec.insert(
        "output_schema".into(),
        match &output_schema {
            Some(schema) => json!({"type": "json", "json_schema": schema}),
            None => json!({"type": "text"}),
        },
    );
    if let Some(schema) = &input_schema {
        spec.insert(
            "input_schema".into(),
            json!({"type": "json", "json_schema": schema}),
        );
    }
    let spec = Value::Object(spec);
    if args.dry_run {
        println!("task spec: {spec}");
        println!("processor: {}", args.processor);
        println!("rows: {}", inputs.len());
        for input in inputs.iter().take(DRY_RUN_INPUTS) {
            println!("input: {input}");
        }
        return Ok(());
    }

    let state_path = state_path(&args.input, args.output.as_deref());
    let backend = args.target.open()?;
    let group = start_or_resume(
        &backend,
        &args,
        state_path.as_deref(),
        &metadata,
        inputs.len(),
    )?;
    add_missing(&backend, &group, &inputs, &args.processor, &spec)?;
    progress::follow(&backend, &group, inputs.len(), args.quiet)?;

    let mut results = Vec::with_capacity(inputs.len());
    backend.group_runs(&group, &mut |event| results.push(event))?;
    if results.len() != inputs.len() {
        return Err(Failure::runtime(format!(
            "group {group} has {} runs for {} rows",
            results.len(),
            inputs.len()
        )));
    }
    let rows: Vec<&Map<String, Value>> = kept
        .iter()
        .map(|index| input.rows[*index].object.as_ref().expect("kept rows read"))
        .collect();
    let failed = output::write(
        args.output.as_deref(),
        format,
        &input.columns,
        &columns,
        &rows,
        &results,
    )?;
    if let Some(path) = &state_path {
        let _ = std::fs::remove_file(path);
    }
    if failed > 0 {
        return Err(Failure {
            message: format!(
                "{failed} of {} rows did not complete; each is written with its status and error",
                rows.len()
            ),
            code: 1,
        });
    }
    Ok(())
}

/// Each kept row's run input, and the indexes of the kept rows. A bad row
/// is reported by its line; with `skip` it is left out, else nothing is
/// sent.
fn run_inputs(
    input: &rows::Input,
    source_columns: &[String],
    input_schema: Option<&Value>,
    skip_bad: bool,
) -> Result<(Vec<Value>, Vec<usize>), Failure> {
    for column in source_columns {
        if !input.columns.contains(column) {
            return Err(Failure::usage(format!(
                "--source-columns: the input has no column {column:?} (it has {})",
                input.columns.join(", ")
            )));
        }
    }
    let validator = match input_schema {
        Some(schema) => Some(jsonschema::validator_for(schema).map_err(|error| {
            Failure::usage(format!("--input-schema is not a JSON Schema: {error}"))
        })?),
        None => None,
    };
    let mut inputs = Vec::with_capacity(input.rows.len());
    let mut kept = Vec::with_capacity(input.rows.len());
    let mut bad = 0;
    for (index, row) in input.rows.iter().enumerate() {
        let object = match &row.object {
            Ok(object) => object,
            Err(reason) => {
                eprintln!("taskyard: {}: {reason}", row.at);
                bad += 1;
                continue;
            }
        };
        let value = if source_columns.is_empty() {
            Value::Object(object.clone())
        } else {
            Value::Object(
                source_columns
                    .iter()
                    .filter_map(|column| object.get(column).map(|v| (column.clone(), v.clone())))
                    .collect(),
            )
        };
        if let Some(validator) = &validator {
            if let Some(error) = validator.iter_errors(&value).next() {
                eprintln!("taskyard: {}: fails --input-schema: {error}", row.at);
                bad += 1;
                continue;
            }
        }
        inputs.push(value);
        kept.push(index);
    }
    if bad > 0 && !skip_bad {
        return Err(Failure::usage(format!(
            "{bad} bad rows (above); nothing was sent (--bad-rows skip leaves them out)"
        )));
    }
    Ok((inputs, kept))
}

/// A new group (its id kept in the state file), or the one the state file
/// names with `--resume`.
fn start_or_resume(
    backend: &Client,
    args: &EnrichArgs,
    state_path: Option<&Path>,
    metadata: &Value,
    rows: usize,
) -> Result<String, Failure> {
    if args.resume {
        let path = state_path.ok_or_else(|| {
            Failure::usage(
                "--resume needs a file input or an --output: stdin to stdout keeps no state",
            )
        })?;
        let text = std::fs::read_to_string(path).map_err(|error| {
            Failure::usage(format!(
                "--resume: no enrichment to resume ({}: {error})",
                path.display()
            ))
        })?;
        let state: State = serde_json::from_str(&text).map_err(|error| {
            Failure::usage(format!(
                "--resume: {} does not read: {error}",
                path.display()
            ))
        })?;
        if state.input != args.input || state.rows != rows {
            return Err(Failure::usage(format!(
                "--resume: {} is an enrichment of {} ({} rows), not of {} ({rows} rows)",
                path.display(),
                state.input,
                state.rows,
                args.input
            )));
        }
        return Ok(state.group);
    }
    if let Some(path) = state_path.filter(|path| path.exists()) {
        return Err(Failure::usage(format!(
            "an interrupted enrichment left {}: continue it with --resume, or delete the file",
            path.display()
        )));
    }
    let group = backend.create_group(metadata.clone())?;
    if let Some(path) = state_path {
        let state = State {
            group: group.clone(),
            input: args.input.clone(),
            rows,
        };
        let text = serde_json::to_string(&state).unwrap_or_default();
        std::fs::write(path, text).map_err(|error| {
            Failure::runtime(format!("cannot write {}: {error}", path.display()))
        })?;
    }
    Ok(group)
}

/// Adds the rows the group does not have yet, a batch per request. Each
/// batch lands whole or not at all, so the group's run count says where
/// to go on from.
fn add_missing(
    backend: &Client,
    group: &str,
    inputs: &[Value],
    processor: &str,
    spec: &Value,
) -> Result<(), Failure> {
    let have = backend.group(group)?["status"]["num_task_runs"]
        .as_u64()
        .unwrap_or(0) as usize;
    if have > inputs.len() {
        return Err(Failure::runtime(format!(
            "group {group} has {have} runs, more than the {} rows",
            inputs.len()
        )));
    }
    let mut start = have;
    while start < inputs.len() {
        let end = (start + ENRICH_BATCH_ROWS).min(inputs.len());
        let batch = inputs[start..end]
            .iter()
            .map(|input| Client::run_input(input.clone(), processor))
            .collect();
        let ids = backend.add_runs(
            group,
            batch,
            Some(spec.clone()),
            &format!("{group}:{start}"),
        )?;
        if ids.len() != end - start {
            return Err(Failure::runtime(format!(
                "adding rows {start} to {end} made {} runs",
                ids.len()
            )));
        }
        start = end;
    }
    Ok(())
}

/// `--metadata k=v` pairs, with the input's name under `taskyard_enrich`.
fn group_metadata(pairs: &[String], input: &str) -> Result<Value, Failure> {
    let mut metadata = Map::new();
    metadata.insert("taskyard_enrich".into(), json!(input));
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--metadata {pair:?}: expected KEY=VALUE")))?;
        metadata.insert(key.to_string(), json!(value));
    }
    Ok(Value::Object(metadata))
}

/// Where `--resume` finds its group: beside the output, else beside the
/// input; none for stdin to stdout.
fn state_path(input: &str, output: Option<&str>) -> Option<PathBuf> {
    match output.filter(|path| *path != "-") {
        Some(path) => Some(PathBuf::from(format!("{path}.taskyard-enrich"))),
        None if input != "-" => Some(PathBuf::from(format!("{input}.taskyard-enrich"))),
        None => None,
    }
}

/// A flag's JSON, given inline or as a file.
fn json_or_file(text: &str, flag: &str) -> Result<Value, Failure> {
    let trimmed = text.trim_start();
    let source = if trimmed.starts_with('{') {
        text.to_string()
    } else {
        std::fs::read_to_string(text)
            .map_err(|error| Failure::usage(format!("{flag}: cannot read {text}: {error}")))?
    };
    serde_json::from_str(&source)
        .map_err(|error| Failure::usage(format!("{flag}: not JSON: {error}")))
}
