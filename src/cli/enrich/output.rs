//! An enrichment's results: CSV (the input columns, one column per output
//! field, then `status` and `error`) or JSON Lines (`input`, `output`,
//! `basis`, `status`, `error`), one row per input row in input order,
//! failed rows included.

use std::io::Write;

use serde_json::{json, Map, Value};

use crate::cli::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            _ => None,
        }
    }

    pub fn of_path(path: &str) -> Option<Format> {
        let extension = std::path::Path::new(path).extension()?.to_str()?;
        Format::parse(&extension.to_ascii_lowercase())
    }
}

/// Writes every row with its run's result (`results[i]` is the
/// `task_run.state` data of row `i`'s run) to `path`, or stdout; answers
/// how many rows did not complete. A file is written beside its final
/// name and renamed into place, so it is whole or absent.
pub fn write(
    path: Option<&str>,
    format: Format,
    input_columns: &[String],
    output_columns: &[String],
    rows: &[&Map<String, Value>],
    results: &[Value],
) -> Result<usize, Failure> {
    let failed = results
        .iter()
        .filter(|result| result["run"]["status"] != "completed")
        .count();
    let mut bytes = Vec::new();
    match format {
        Format::Csv => csv_rows(&mut bytes, input_columns, output_columns, rows, results)?,
        Format::JsonLines => {
            for (row, result) in rows.iter().zip(results) {
                let line = json!({
                    "input": row,
                    "output": result["output"]["content"],
                    "basis": result["output"]["basis"],
                    "status": result["run"]["status"],
                    "error": error_of(result),
                });
                bytes.extend_from_slice(line.to_string().as_bytes());
                bytes.push(b'\n');
            }
        }
    }
    match path.filter(|path| *path != "-") {
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|error| Failure::runtime(format!("cannot write the results: {error}")))?,
        Some(path) => {
            let partial = format!("{path}.partial");
            std::fs::write(&partial, &bytes)
                .and_then(|()| std::fs::rename(&partial, path))
                .map_err(|error| Failure::runtime(format!("cannot write {path}: {error}")))?;
        }
    }
    Ok(failed)
}

fn csv_rows(
    bytes: &mut Vec<u8>,
    input_columns: &[String],
    output_columns: &[String],
    rows: &[&Map<String, Value>],
    results: &[Value],
) -> Result<(), Failure> {
    let text_output = output_columns.is_empty();
    let mut writer = csv::Writer::from_writer(bytes);
    let mut header: Vec<&str> = input_columns.iter().map(String::as_str).collect();
    if text_output {
        header.push("output");
    } else {
        header.extend(output_columns.iter().map(String::as_str));
    }
    header.extend(["status", "error"]);
    let failure = |error: csv::Error| Failure::runtime(format!("cannot write CSV: {error}"));
    writer.write_record(&header).map_err(failure)?;
    for (row, result) in rows.iter().zip(results) {
        let content = &result["output"]["content"];
        let mut record: Vec<String> = input_columns
            .iter()
            .map(|column| cell(row.get(column).unwrap_or(&Value::Null)))
            .collect();
        if text_output {
            record.push(cell(content));
        } else {
            record.extend(output_columns.iter().map(|column| cell(&content[column])));
        }
        record.push(cell(&result["run"]["status"]));
        record.push(cell(&error_of(result)));
        writer.write_record(&record).map_err(failure)?;
    }
    writer
        .flush()
        .map_err(|error| Failure::runtime(format!("cannot write CSV: {error}")))
}

/// A value as a CSV cell: text as is, null empty, the rest as JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn error_of(result: &Value) -> Value {
    match &result["run"]["error"] {
        Value::Null => Value::Null,
        error => error
            .get("message")
            .cloned()
            .unwrap_or_else(|| error.clone()),
    }
}
