//! The rows of an enrichment's input: CSV (a header line, then one row per
//! record), JSON Lines (one object per line) or a JSON array of objects,
//! from a file or stdin. Each row keeps where it came from, so that a bad
//! one is reported by its line.

use std::io::Read;

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
    JsonArray,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            "json" => Some(Format::JsonArray),
            _ => None,
        }
    }

    /// By the file's extension; `None` when it says nothing.
    pub fn of_path(path: &str) -> Option<Format> {
        let extension = std::path::Path::new(path).extension()?.to_str()?;
        Format::parse(&extension.to_ascii_lowercase())
    }

    /// By the first character: `[` an array, `{` lines of objects, else CSV.
    fn sniff(text: &str) -> Format {
        match text.trim_start().chars().next() {
            Some('[') => Format::JsonArray,
            Some('{') => Format::JsonLines,
            _ => Format::Csv,
        }
    }
}

/// One row: where it came from, and its object or why it is not one.
#[derive(Debug, Clone)]
pub struct Row {
    /// `line 12` (CSV, JSON Lines) or `item 3` (a JSON array), 1-based.
    pub at: String,
    pub object: Result<Map<String, Value>, String>,
}

/// The rows, and the columns in first-seen order (a CSV's header).
pub struct Input {
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

/// Reads `path` (`-` for stdin) whole: the input is also read again, the
/// same way, by `--resume`.
pub fn read(path: &str, format: Option<Format>) -> Result<Input, String> {
    let mut text = String::new();
    if path == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| format!("cannot read stdin: {error}"))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {path}: {error}"))?;
    }
    let format = format
        .or_else(|| (path != "-").then(|| Format::of_path(path)).flatten())
        .unwrap_or_else(|| Format::sniff(&text));
    match format {
        Format::Csv => csv_rows(&text),
        Format::JsonLines => Ok(with_columns(
            text.lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(index, line)| Row {
                    at: format!("line {}", index + 1),
                    object: object_of(serde_json::from_str(line).map_err(|e| e.to_string())),
                })
                .collect(),
        )),
        Format::JsonArray => {
            let items: Vec<Value> = serde_json::from_str(&text)
                .map_err(|error| format!("{path} is not a JSON array: {error}"))?;
            Ok(with_columns(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| Row {
                        at: format!("item {}", index + 1),
                        object: object_of(Ok(item)),
                    })
                    .collect(),
            ))
        }
    }
}

fn object_of(value: Result<Value, String>) -> Result<Map<String, Value>, String> {
    match value? {
        Value::Object(object) => Ok(object),
        other => Err(format!("not a JSON object: {other}")),
    }
}

fn with_columns(rows: Vec<Row>) -> Input {
    let mut columns: Vec<String> = Vec::new();
    for row in &rows {
        if let Ok(object) = &row.object {
            for key in object.keys() {
                if !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
    }
    Input { columns, rows }
}

fn csv_rows(text: &str) -> Result<Input, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let columns: Vec<String> = reader
        .headers()
        .map_err(|error| format!("the CSV header does not read: {error}"))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let row = match record {
            Ok(record) => {
                let line = record.position().map_or(0, |position| position.line());
                let object = if record.len() == columns.len() {
                    Ok(columns
                        .iter()
                        .zip(record.iter())
                        .map(|(column, value)| (column.clone(), Value::String(value.to_string())))
                        .collect())
                } else {
                    Err(format!(
                        "{} fields, where the header has {}",
                        record.len(),
                        columns.len()
                    ))
                };
                Row {
                    at: format!("line {line}"),
                    object,
                }
            }
            Err(error) => Row {
                at: error.position().map_or("a row".into(), |position| {
                    format!("line {}", position.line())
                }),
                object: Err(error.to_string()),
            },
        };
        rows.push(row);
    }
    Ok(Input { columns, rows })
}
