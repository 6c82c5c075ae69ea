//! `lambda-bench`: cold init, first and warm invocation latency and peak RSS of the functions' release
//! binaries, each against a local Lambda Runtime API emulator (see `local::lambda_bench`). Local only.
//!
//! `cargo build --release -p webhook-receiver -p servicenow-writer …` first, then
//! `cargo run --release -p local --bin lambda-bench -- [--bin-dir DIR] [--invocations N] [--runs R] [FUNCTION...]`.

use local::lambda_bench::runner::{main_with, Options, USAGE};

#[tokio::main]
async fn main() {
    let options = match Options::parse(
        std::env::args().skip(1),
        std::env::var("CARGO_TARGET_DIR")
            .ok()
            .filter(|d| !d.is_empty()),
    ) {
        Ok(o) => o,
        Err(message) if message == USAGE => {
            println!("{USAGE}");
            return;
        }
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    std::process::exit(main_with(&options).await);
}
