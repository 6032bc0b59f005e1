//! The README's library example, compiled by `cargo test` so it stays true:
//! a group with one run of a JSON task spec, followed to its end.
//! Run it with `cargo run --example library`.

use std::time::Duration;

use serde_json::json;
use taskyard::model::{AddRuns, RunRequest};
use taskyard::{Engine, StreamKind, TaskSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("taskyard-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let engine = Engine::open(dir.join("taskyard.db"), taskyard::faces::default_config())?;
    let group = engine.create_group(None)?;
    let spec = TaskSpec {
        output_schema: json!({"type": "json", "json_schema": {
            "type": "object",
            "properties": {"founded": {"type": "integer"}},
            "required": ["founded"]
        }}),
        input_schema: None,
    };
    let added = engine.add_runs(
        &group.id,
        AddRuns {
            runs: vec![RunRequest::new("Parallel Web Systems", "core")],
            default_task_spec: Some(spec),
        },
    )?;
    // Follow the group until it is inactive; each event carries its cursor.
    let stream = StreamKind::GroupEvents(group.id.clone());
    for event in engine.subscribe(stream, 0, Duration::from_secs(60))? {
        let event = event?;
        println!(
            "{} {}",
            event.id().unwrap_or(0),
            serde_json::to_string(event.data())?
        );
    }
    let (_run, output) = engine.wait_for_result(&added.run_ids[0], Duration::from_secs(5))?;
    println!("{}", serde_json::to_string(&output)?);
    engine.shutdown(Duration::from_secs(10));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
