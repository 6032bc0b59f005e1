//! The `taskyard` command line: parses flags, opens the engine, serves.
//! It holds no engine logic of its own.

fn main() {
    println!("taskyard {}", env!("CARGO_PKG_VERSION"));
}
