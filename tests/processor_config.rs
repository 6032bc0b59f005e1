//! Processor sections of the config file (issue 13): each kind reads its
//! own keys; a key no kind reads, a value of the wrong type or out of
//! range, and an unknown kind stop start-up with the file, the key and
//! the line. The settings common to every kind reach the catalog.

use std::path::PathBuf;

use taskyard::config::FileConfig;

/// Loads `toml` from a file and builds its registry: the error if any.
fn build(toml: &str) -> (PathBuf, Result<taskyard::processors::Registry, String>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, toml).expect("config written");
    let built = FileConfig::load(&path).and_then(|file| file.registry());
    // The directory goes; the path stays a name for the messages.
    (path, built)
}

fn error_of(toml: &str) -> (String, String) {
    let (path, built) = build(toml);
    match built {
        Ok(_) => panic!("expected an error for:\n{toml}"),
        Err(error) => (path.display().to_string(), error),
    }
}

#[test]
fn a_misspelt_key_names_the_file_the_key_and_the_line() {
    let (path, error) = error_of(
        "workers = 2\n\n[processors.slow]\nkind = \"mock\"\nlatency_ms = 10\ntimout_ms = 500\n",
    );
    assert!(error.contains(&path), "{error}");
    assert!(error.contains("line 6"), "{error}");
    assert!(error.contains("processors.slow.timout_ms"), "{error}");
    assert!(error.contains("unknown key for kind 'mock'"), "{error}");
}

#[test]
fn bad_values_name_the_key_the_line_and_what_is_wanted() {
    let cases = [
        (
            "[processors.m]\nkind = \"mock\"\nfailure_rate = 2.5\n",
            "line 3",
            "processors.m.failure_rate: must be from 0 to 1, not 2.5",
        ),
        (
            "[processors.m]\nkind = \"mock\"\n\nmax_attempts = \"three\"\n",
            "line 4",
            "processors.m.max_attempts: must be a whole number, not string",
        ),
        (
            "[processors.m]\nkind = \"echo\"\nmax_concurrency = 0\n",
            "line 3",
            "processors.m.max_concurrency: must be from 1 to 100000, not 0",
        ),
        (
            "[processors.m]\nkind = \"echo\"\nbackoff_ms = 500\nbackoff_max_ms = 100\n",
            "line 4",
            "processors.m.backoff_max_ms: must be at least backoff_ms (500 ms)",
        ),
        (
            "[processors.c]\nkind = \"command\"\ntimeout_ms = 100\n",
            "line 2",
            "processors.c.argv: is required for kind 'command'",
        ),
        (
            "[processors.c]\nkind = \"command\"\nargv = [\"true\", 3]\n",
            "line 3",
            "processors.c.argv: must hold only strings, not integer",
        ),
        (
            "[processors.c]\nkind = \"command\"\nargv = [\"true\"]\ncwd = \"no/such/dir\"\n",
            "line 4",
            "is not a directory",
        ),
        (
            "[processors.t]\nkind = \"teleport\"\n",
            "line 2",
            "processors.t.kind: unknown kind 'teleport' (one of mock, echo, command",
        ),
    ];
    for (toml, line, wanted) in cases {
        let (path, error) = error_of(toml);
        assert!(error.contains(&path), "{error}");
        assert!(error.contains(line), "{line} in {error}");
        assert!(error.contains(wanted), "{wanted} in {error}");
    }
}

#[test]
fn an_unknown_top_level_key_names_its_line() {
    let (path, error) = error_of("addr = \"127.0.0.1:0\"\nworkerz = 2\n");
    assert!(error.contains(&path), "{error}");
    assert!(error.contains("line 2"), "{error}");
    assert!(error.contains("workerz"), "{error}");
}

#[test]
fn common_settings_reach_the_catalog_and_an_override_keeps_what_it_does_not_set() {
    let (_, built) = build(
        "[processors.core]\nkind = \"echo\"\ntimeout_ms = 2500\nbackoff_ms = 50\n\
         backoff_max_ms = 800\nmax_attempts = 5\nmax_concurrency = 2\n\
         description = \"core, echoed\"\n",
    );
    let registry = built.expect("registry");
    let core = registry.get("core").expect("core");
    assert_eq!(core.kind, "echo");
    assert_eq!(core.description, "core, echoed");
    assert_eq!(core.timeout, Some(std::time::Duration::from_millis(2_500)));
    assert_eq!(core.backoff.first, std::time::Duration::from_millis(50));
    assert_eq!(core.backoff.max, std::time::Duration::from_millis(800));
    assert_eq!((core.max_attempts, core.max_concurrency), (5, 2));
    // `core` is a premium-less hosted name: its events default stays.
    let defaults = taskyard::faces::default_registry();
    assert_eq!(
        core.enable_events_default,
        defaults
            .get("core")
            .expect("hosted core")
            .enable_events_default
    );
}

/// The README's edge-device file is a working config: it loads, and each
/// processor is of the kind it says.
#[test]
fn the_readme_edge_device_config_loads() {
    let readme = include_str!("../README.md");
    let start = readme
        .find("# /etc/taskyard/edge.toml")
        .expect("the README shows the edge config");
    let block = &readme[start..];
    let block = &block[..block.find("```").expect("the block ends")];
    let (_, built) = build(block);
    let registry = built.expect("the README's edge config builds");
    assert_eq!(registry.get("lookup").expect("lookup").kind, "command");
    let model = registry.get("local-model").expect("local-model");
    assert_eq!(model.kind, "openai");
    assert_eq!(model.max_attempts, 5);
}
